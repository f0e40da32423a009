#include "api_harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/event_loop.h"
#include "vmm/controller.h"

static void on_stop(void *opaque, uint32_t events)
{
        struct api_harness *h = opaque;

        (void)events;
        h->stop = true;
}

static void *vmm_main(void *opaque)
{
        struct api_harness *h = opaque;

        while (!h->stop)
                event_loop_run_once(h->loop, -1);
        return NULL;
}

void api_harness_start(struct api_harness *h, const char *path,
                       const struct api_server_limits *limits)
{
        struct controller_params p = {
            .instance_id = "harness",
            .kvm_path = "/nonexistent/kvm",
            .console_in_fd = -1,
        };
        struct vmm_config cfg;
        struct error err = {0};

        memset(h, 0, sizeof(*h));
        h->null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        h->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (h->null_fd < 0 || h->stop_fd < 0 || event_loop_create(&h->loop) ||
            event_loop_add(h->loop, h->stop_fd, EPOLLIN, on_stop, h))
                abort();
        p.loop = h->loop;
        p.console_out_fd = h->null_fd;
        vmm_config_init(&cfg);
        if (controller_create(&p, &cfg, &err, &h->ctl) ||
            api_server_start_limits(path, h->ctl, limits, &err, &h->srv)) {
                fprintf(stderr, "api_harness: %s\n", err.msg);
                abort();
        }
        if (pthread_create(&h->vmm_thread, NULL, vmm_main, h))
                abort();
}

void api_harness_stop(struct api_harness *h)
{
        if (eventfd_write(h->stop_fd, 1))
                abort();
        pthread_join(h->vmm_thread, NULL);
        controller_close(h->ctl);
        api_server_stop(h->srv);
        controller_destroy(h->ctl);
        event_loop_remove(h->loop, h->stop_fd);
        event_loop_destroy(h->loop);
        close(h->stop_fd);
        close(h->null_fd);
}

int api_harness_connect(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
                perror("api_harness: connect");
                abort();
        }
        return fd;
}
