/*
 * An epoll loop: file descriptors with callbacks. The VMM thread runs one; devices register
 * their backend descriptors (TAP, sockets, io_uring completions, timers) with it.
 *
 * Only one thread runs the loop; any thread may add, modify or remove handlers, including a
 * handler removing itself while it is dispatched. An owner removes its handlers before it
 * frees the callback's opaque data, and only from the loop's thread while the loop runs
 * (a removal from another thread can race with a dispatch already under way).
 */
#ifndef COMMON_EVENT_LOOP_H
#define COMMON_EVENT_LOOP_H

#include <stdint.h>

#include "common/util.h"

typedef void (*event_cb)(void *opaque, uint32_t events);

struct event_loop;

int event_loop_create(struct event_loop **out) MUST_CHECK;
void event_loop_destroy(struct event_loop *loop);

/* events are EPOLLIN/EPOLLOUT/...; one registration per fd. */
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb cb,
                   void *opaque) MUST_CHECK;
int event_loop_modify(struct event_loop *loop, int fd, uint32_t events);
int event_loop_remove(struct event_loop *loop, int fd);

/* Waits up to timeout_ms (-1: forever) and dispatches ready handlers; returns the number
 * dispatched or a negative errno. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms);

#endif
