/*
 * The REST API server as `vmm --api-sock` runs it, in a test process: a controller (never
 * started: InstanceStart gets as far as opening a KVM device that does not exist) whose VMM
 * thread runs an event loop, and the API server on a socket path, with limits of the test's
 * choosing. Shared by the HTTP fuzz targets and the server's unit test.
 */
#ifndef TESTS_SUPPORT_API_HARNESS_H
#define TESTS_SUPPORT_API_HARNESS_H

#include <pthread.h>
#include <stdbool.h>

#include "api/server.h"

struct api_harness {
        struct event_loop *loop;
        int stop_fd; /* an eventfd: written to stop the VMM thread */
        int null_fd; /* the console */
        bool stop;
        pthread_t vmm_thread;
        struct controller *ctl;
        struct api_server *srv;
};

/* Starts the controller, its VMM thread and the server on path; aborts on failure. */
void api_harness_start(struct api_harness *h, const char *path,
                       const struct api_server_limits *limits);
/* main.c's order: stops the VMM thread's loop, answers what is queued (controller_close),
 * stops the server, then the controller. */
void api_harness_stop(struct api_harness *h);

/* A client connection to path (aborts when it cannot connect). */
int api_harness_connect(const char *path);

#endif
