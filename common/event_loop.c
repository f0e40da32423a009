#include "event_loop.h"

#include <errno.h>
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

struct event_loop {
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

        if (find(loop, fd))
                return -EEXIST;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        *h = (struct handler){.fd = fd, .cb = cb, .opaque = opaque, .next = loop->handlers};
        ev.data.ptr = h;
        if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev)) {
                int r = -errno;
                free(h);
                return r;
        }
        loop->handlers = h;
        return 0;
}

int event_loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
        struct handler *h = find(loop, fd);
        struct epoll_event ev = {.events = events};

        if (!h)
                return -ENOENT;
        ev.data.ptr = h;
        return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
}

int event_loop_remove(struct event_loop *loop, int fd)
{
        struct handler **pp = &loop->handlers;

        for (; *pp; pp = &(*pp)->next) {
                struct handler *h = *pp;
                if (h->fd != fd)
                        continue;
                *pp = h->next;
                epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
                h->removed = true;
                /* An event for it may already sit in the current batch. */
                h->next = loop->graveyard;
                loop->graveyard = h;
                if (!loop->dispatching) {
                        free_list(loop->graveyard);
                        loop->graveyard = NULL;
                }
                return 0;
        }
        return -ENOENT;
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
        struct epoll_event evs[32];
        int n = epoll_wait(loop->epfd, evs, 32, timeout_ms);

        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        loop->dispatching = true;
        for (int i = 0; i < n; i++) {
                struct handler *h = evs[i].data.ptr;
                if (!h->removed)
                        h->cb(h->opaque, evs[i].events);
        }
        loop->dispatching = false;
        free_list(loop->graveyard);
        loop->graveyard = NULL;
        return n;
}
