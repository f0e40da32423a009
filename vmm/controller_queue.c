/* The command queue: any thread submits, the VMM thread executes in submission order. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "controller_priv.h"

int controller_submit(struct controller *c, struct controller_request *req)
{
        uint64_t one = 1;

        req->next = NULL;
        pthread_mutex_lock(&c->lock);
        if (c->closed) {
                pthread_mutex_unlock(&c->lock);
                return -ESHUTDOWN;
        }
        if (c->tail)
                c->tail->next = req;
        else
                c->head = req;
        c->tail = req;
        pthread_mutex_unlock(&c->lock);
        if (write(c->wake_fd, &one, sizeof(one)) < 0)
                LOG_ERROR("controller eventfd: %s", strerror(errno));
        return 0;
}

static struct controller_request *pop(struct controller *c)
{
        struct controller_request *req;

        pthread_mutex_lock(&c->lock);
        req = c->head;
        if (req) {
                c->head = req->next;
                if (!c->head)
                        c->tail = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        return req;
}

static void finish(struct controller *c, struct controller_request *req)
{
        /* API-level latencies of the last pause / resume (Firecracker's latencies_us). */
        if (!req->reply.status && req->received_ns &&
            (req->action == VMM_PAUSE || req->action == VMM_RESUME)) {
                uint64_t us = (clock_ns(CLOCK_MONOTONIC) - req->received_ns) / 1000;
                if (req->action == VMM_PAUSE)
                        c->pause_us = us;
                else
                        c->resume_us = us;
        }
        /* After done the request may be gone (its owner frees it on another thread). */
        if (req->done)
                req->done(req);
}

void controller_on_wake(void *opaque, uint32_t events)
{
        struct controller *c = opaque;
        struct controller_request *req;
        uint64_t v;

        (void)events;
        if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                LOG_ERROR("controller eventfd: %s", strerror(errno));
        while ((req = pop(c))) {
                controller_execute(c, req);
                finish(c, req);
        }
}

void controller_close(struct controller *c)
{
        struct controller_request *req;

        pthread_mutex_lock(&c->lock);
        c->closed = true;
        pthread_mutex_unlock(&c->lock);
        while ((req = pop(c))) {
                error_clear(&req->reply.err);
                req->reply.status = error_set(&req->reply.err, -ESHUTDOWN, MSG_SHUTDOWN);
                finish(c, req);
        }
}
