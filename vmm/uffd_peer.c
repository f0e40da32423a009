#include "uffd_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/escape.h"
#include "common/log.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct uffd_peer {
        struct uffd_peer_params p;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path) * 4]; /* escaped, for messages */
        int sock, uffd, pidfd, stop_fd;
        pid_t pid; /* 0: not visible from here */
        pthread_t thread;
        bool thread_started;
};

int uffd_peer_message(const struct guest_mem *mem, char *buf, size_t cap)
{
        uint64_t page = guest_mem_page_size(mem);
        size_t n = 0;
        int w;

        w = snprintf(buf, cap, "[");
        for (unsigned i = 0; w >= 0 && (size_t)w < cap - n && i < guest_mem_region_count(mem);
             i++) {
                struct guest_mem_region g = guest_mem_region_get(mem, i);

                n += (size_t)w;
                w = snprintf(buf + n, cap - n,
                             "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,"
                             "\"page_size\":%llu,\"page_size_kib\":%llu}",
                             i ? "," : "", (unsigned long long)(uintptr_t)g.host,
                             (unsigned long long)g.size, (unsigned long long)g.offset,
                             (unsigned long long)page, (unsigned long long)page);
        }
        if (w < 0 || (size_t)w >= cap - n)
                return -ENOSPC;
        n += (size_t)w;
        w = snprintf(buf + n, cap - n, "]");
        if (w < 0 || (size_t)w >= cap - n)
                return -ENOSPC;
        return (int)(n + (size_t)w);
}

static void gone(struct uffd_peer *peer, const char *how)
{
        char msg[sizeof(peer->path) + 160];

        snprintf(msg, sizeof(msg),
                 "the page-fault handler of the Uffd memory backend '%s' (pid %d) %s: guest "
                 "memory can no longer be served",
                 peer->path, (int)peer->pid, how);
        peer->p.on_gone(peer->p.opaque, msg);
        /* Then the userfaultfd goes: its last reference closed, the kernel wakes every
         * fault waiting on it and resolves each as an ordinary fault (a zero page). The
         * kick on_gone sends does not free a vCPU by itself: KVM's own accesses to guest
         * memory (its emulator reading the guest's page tables) fault in kernel mode, and
         * the kernel retries such a fault until the page arrives or a fatal signal is
         * pending -- never, once the handler is gone. on_gone has already asked the vCPUs
         * to stop, so none runs guest code past the instruction it was in. */
        close(peer->uffd);
        peer->uffd = -1;
}

/* The watcher: the handler's process, its end of the connection, and the stop request. */
static void *watch(void *arg)
{
        struct uffd_peer *peer = arg;
        struct pollfd fds[3] = {
            {.fd = peer->stop_fd, .events = POLLIN},
            {.fd = peer->pidfd, .events = POLLIN},
            {.fd = peer->sock, .events = POLLIN | POLLRDHUP},
        };

        if (peer->p.thread_init && peer->p.thread_init(peer->p.opaque))
                return NULL;
        for (;;) {
                char junk[256];
                ssize_t n;

                if (ppoll(fds, 3, NULL, NULL) < 0) {
                        if (errno == EINTR)
                                continue;
                        LOG_ERROR("page-fault handler watch: %s", strerror(errno));
                        return NULL;
                }
                if (fds[0].revents)
                        return NULL;
                if (fds[1].revents) {
                        gone(peer, "exited");
                        return NULL;
                }
                if (!fds[2].revents)
                        continue;
                /* The protocol has nothing for the handler to say: anything it sends is
                 * read and dropped, so only the end of the connection counts. */
                n = read(peer->sock, junk, sizeof(junk));
                if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN)))
                        continue;
                if (peer->pidfd < 0) {
                        gone(peer, "closed its connection");
                        return NULL;
                }
                LOG_INFO("the page-fault handler (pid %d) closed its connection; its process "
                         "still serves the guest's memory",
                         (int)peer->pid);
                fds[2].fd = -1;
        }
}

static int connect_socket(struct uffd_peer *peer, struct error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = strlen(peer->p.path);

        if (len == 0 || len >= sizeof(sa.sun_path))
                return error_config(err,
                                    "mem_backend: backend_path '%s' is %s (a Unix socket's path "
                                    "has 1 to %zu bytes)",
                                    peer->path, len ? "too long" : "empty",
                                    sizeof(sa.sun_path) - 1);
        memcpy(sa.sun_path, peer->p.path, len);
        /* Non-blocking: a handler whose backlog is full refuses at once (EAGAIN) instead
         * of holding the VMM thread. */
        peer->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (peer->sock < 0)
                return error_set(err, -errno, "socket: %s", strerror(errno));
        if (connect(peer->sock, (struct sockaddr *)&sa, sizeof(sa)))
                return error_config(
                    err, "cannot connect to the page-fault handler's socket '%s': %s", peer->path,
                    errno == EAGAIN ? "it accepts no more connections" : strerror(errno));
        return 0;
}

static int send_message(struct uffd_peer *peer, struct error *err)
{
        char msg[1024], cbuf[CMSG_SPACE(sizeof(int))] = {0};
        struct iovec iov;
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        int len = uffd_peer_message(peer->p.mem, msg, sizeof(msg));
        ssize_t n;

        if (len < 0)
                return error_set(err, len, "the page-fault handler's message does not fit");
        iov = (struct iovec){.iov_base = msg, .iov_len = (size_t)len};
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &peer->uffd, sizeof(int));
        n = sendmsg(peer->sock, &mh, MSG_NOSIGNAL);
        if (n != len)
                return error_config(err,
                                    "cannot send the guest memory regions to the page-fault "
                                    "handler's socket '%s': %s",
                                    peer->path, n < 0 ? strerror(errno) : "sent in part");
        return 0;
}

/* The handler's process, as a pidfd; -1 when it cannot be watched that way. */
static void open_pidfd(struct uffd_peer *peer)
{
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);

        peer->pidfd = -1;
        if (getsockopt(peer->sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.pid <= 0)
                return; /* another PID namespace: the connection alone tells */
        peer->pid = cred.pid;
        peer->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
        if (peer->pidfd < 0)
                LOG_WARN("the page-fault handler (pid %d) cannot be watched (pidfd_open: %s): "
                         "only its connection closing tells that it is gone",
                         (int)cred.pid, strerror(errno));
}

int uffd_peer_connect(const struct uffd_peer_params *p, struct error *err, struct uffd_peer **out)
{
        struct uffd_peer *peer = calloc(1, sizeof(*peer));
        sigset_t all, old;
        int r;

        if (!peer) {
                close(p->uffd);
                return error_set(err, -ENOMEM, "out of memory");
        }
        peer->p = *p;
        peer->uffd = p->uffd;
        peer->sock = peer->pidfd = peer->stop_fd = -1;
        escape_controls(peer->path, sizeof(peer->path), p->path);
        r = connect_socket(peer, err);
        if (!r)
                r = send_message(peer, err);
        if (!r) {
                open_pidfd(peer);
                peer->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (peer->stop_fd < 0)
                        r = error_set(err, -errno, "eventfd: %s", strerror(errno));
        }
        if (!r) {
                /* No asynchronous signal is for this thread (the vCPUs' kick, the
                 * process's); the synchronous ones stay deliverable (a blocked seccomp
                 * SIGSYS would kill the process without its message). */
                sigfillset(&all);
                sigdelset(&all, SIGSYS);
                sigdelset(&all, SIGBUS);
                sigdelset(&all, SIGSEGV);
                sigdelset(&all, SIGILL);
                sigdelset(&all, SIGFPE);
                pthread_sigmask(SIG_BLOCK, &all, &old);
                r = -pthread_create(&peer->thread, NULL, watch, peer);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (r)
                        error_set(err, r, "cannot start the page-fault handler's watcher: %s",
                                  strerror(-r));
                peer->thread_started = !r;
        }
        if (r) {
                uffd_peer_destroy(peer);
                return r;
        }
        LOG_INFO("guest memory is served by the page-fault handler on '%s' (pid %d)", peer->path,
                 (int)peer->pid);
        *out = peer;
        return 0;
}

void uffd_peer_destroy(struct uffd_peer *peer)
{
        uint64_t one = 1;

        if (!peer)
                return;
        if (peer->thread_started) {
                if (write(peer->stop_fd, &one, sizeof(one)) < 0)
                        LOG_ERROR("page-fault handler watch: %s", strerror(errno));
                pthread_join(peer->thread, NULL);
        }
        if (peer->stop_fd >= 0)
                close(peer->stop_fd);
        if (peer->pidfd >= 0)
                close(peer->pidfd);
        if (peer->sock >= 0)
                close(peer->sock);
        if (peer->uffd >= 0)
                close(peer->uffd);
        free(peer);
}
