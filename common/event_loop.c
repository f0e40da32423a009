#include "event_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct handler {
        int fd;
        event_cb cb;
        void *opaque;
        bool removed;
        struct handler *next;
};

/* Registration may happen on any thread (a device activated from a vCPU); the lock guards
 * the handler lists, never a callback. */
struct event_loop {
        pthread_mutex_t lock;
        int epfd;
        struct handler *handlers;  /* live list */
        struct handler *graveyard; /* removed while a dispatch may still see them */
        bool dispatching;
};

int event_loop_create(struct event_loop **out)
{
        struct event_loop *loop = calloc(1, sizeof(*loop));

        if (!loop)
                return -ENOMEM;
        pthread_mutex_init(&loop->lock, NULL);
        loop->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (loop->epfd < 0) {
                int r = -errno;
                free(loop);
                return r;
        }
        *out = loop;
        return 0;
}

static void free_list(struct handler *h)
{
        while (h) {
                struct handler *next = h->next;
                free(h);
                h = next;
        }
}

void event_loop_destroy(struct event_loop *loop)
{
        if (!loop)
                return;
        free_list(loop->handlers);
        free_list(loop->graveyard);
        close(loop->epfd);
        pthread_mutex_destroy(&loop->lock);
        free(loop);
}

static struct handler *find(struct event_loop *loop, int fd)
{
        for (struct handler *h = loop->handlers; h; h = h->next)
                if (h->fd == fd)
                        return h;
        return NULL;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb cb, void *opaque)
{
        struct epoll_event ev = {.events = events};
        struct handler *h;
        int r = 0;

        pthread_mutex_lock(&loop->lock);
        if (find(loop, fd)) {
                r = -EEXIST;
                goto out;
        }
        h = calloc(1, sizeof(*h));
        if (!h) {
                r = -ENOMEM;
                goto out;
        }
        *h = (struct handler){.fd = fd, .cb = cb, .opaque = opaque, .next = loop->handlers};
        ev.data.ptr = h;
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev)) {
                r = -errno;
                free(h);
                goto out;
        }
        loop->handlers = h;
out:
        pthread_mutex_unlock(&loop->lock);
        return r;
}

int event_loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
        struct epoll_event ev = {.events = events};
        struct handler *h;
        int r = -ENOENT;

        pthread_mutex_lock(&loop->lock);
        h = find(loop, fd);
        if (h) {
                ev.data.ptr = h;
                r = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
        }
        pthread_mutex_unlock(&loop->lock);
        return r;
}

int event_loop_remove(struct event_loop *loop, int fd)
{
        struct handler **pp;
        int r = -ENOENT;

        pthread_mutex_lock(&loop->lock);
        for (pp = &loop->handlers; *pp; pp = &(*pp)->next) {
                struct handler *h = *pp;
                if (h->fd != fd)
                        continue;
                *pp = h->next;
                epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
                __atomic_store_n(&h->removed, true, __ATOMIC_RELEASE);
                /* An event for it may already sit in the current batch. */
                h->next = loop->graveyard;
                loop->graveyard = h;
                if (!loop->dispatching) {
                        free_list(loop->graveyard);
                        loop->graveyard = NULL;
                }
                r = 0;
                break;
        }
        pthread_mutex_unlock(&loop->lock);
        return r;
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
        struct epoll_event evs[32];
        int n;

        /* From before the wait: a handler removed by another thread while events for it
         * are being collected must stay allocated until this batch is done. */
        pthread_mutex_lock(&loop->lock);
        loop->dispatching = true;
        pthread_mutex_unlock(&loop->lock);
        n = epoll_wait(loop->epfd, evs, 32, timeout_ms);
        if (n < 0)
                n = errno == EINTR ? 0 : -errno;
        for (int i = 0; i < n; i++) {
                struct handler *h = evs[i].data.ptr;
                /* A handler removed meanwhile stays allocated (graveyard) until the batch
                 * ends, so this read is safe; a callback removed after this check still
                 * runs once, with its owner alive (owners remove before they free). */
                if (!__atomic_load_n(&h->removed, __ATOMIC_ACQUIRE))
                        h->cb(h->opaque, evs[i].events);
        }
        pthread_mutex_lock(&loop->lock);
        loop->dispatching = false;
        free_list(loop->graveyard);
        loop->graveyard = NULL;
        pthread_mutex_unlock(&loop->lock);
        return n;
}
