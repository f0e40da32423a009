/*
 * The page-fault handler at the other end of a snapshot load's Uffd memory backend
 * (Firecracker's protocol, docs/snapshots.md "Uffd"): a process that listens on a Unix
 * stream socket and fills the guest's pages from the snapshot's memory file.
 *
 * The load connects to the socket and sends one message: the JSON list of the guest's RAM
 * regions as this process maps them, with the userfaultfd (memory/uffd.h) as SCM_RIGHTS
 * ancillary data,
 *
 *   [{"base_host_virt_addr":139872,"size":134217728,"offset":0,"page_size":4096,
 *     "page_size_kib":4096}]
 *
 * (Firecracker 1.17's fields in its order, serde_json's compact form: `offset` is where the
 * region starts in the memory file, the regions back to back; `page_size` is in bytes, and
 * so is `page_size_kib`, Firecracker's deprecated misnamed duplicate). Nothing else is sent,
 * ever; the connection stays open (Firecracker leaves it open too, so the message is never
 * overtaken by a hang-up).
 *
 * Then the peer is watched on a thread of its own, since every other thread may be waiting
 * for a page at the time: when the handler process exits (a pidfd of the pid SO_PEERCRED
 * reports, the process that listens on the socket) -- or, when that pid is not visible here
 * (another PID namespace), when its end of the connection closes -- guest memory can no
 * longer be served and on_gone runs on that thread with a one-line message; then the
 * userfaultfd is closed, which releases every fault still waiting on it (a vCPU inside KVM
 * waits for a page even when kicked, until then). A handler that
 * closes the connection but keeps serving (its pid visible) is not gone.
 */
#ifndef VMM_UFFD_PEER_H
#define VMM_UFFD_PEER_H

#include <stddef.h>

#include "common/error.h"
#include "common/util.h"
#include "memory/guest_mem.h"

struct uffd_peer;

struct uffd_peer_params {
        const char *path;            /* the handler's socket (backend_path) */
        const struct guest_mem *mem; /* registered with uffd */
        int uffd;                    /* taken over: closed by uffd_peer_destroy (or on failure) */
        /* The handler is gone (the watcher thread); msg is one line naming it. */
        void (*on_gone)(void *opaque, const char *msg);
        /* Called first on the watcher thread (its confinement); nonzero ends the watcher
         * without watching. NULL: none. */
        int (*thread_init)(void *opaque);
        void *opaque;
};

/* Connects, sends the message and starts watching. A failure (the socket missing or
 * refusing, the message not sent whole) is ERROR_CONFIG naming the socket; the userfaultfd
 * is closed then too. */
int uffd_peer_connect(const struct uffd_peer_params *p, struct error *err,
                      struct uffd_peer **out) MUST_CHECK;
/* Stops watching (on_gone no longer runs once this returns), closes the connection and
 * the userfaultfd. NULL is allowed. */
void uffd_peer_destroy(struct uffd_peer *peer);

/* The message for mem's regions into buf (NUL-terminated): its length, or -ENOSPC. */
int uffd_peer_message(const struct guest_mem *mem, char *buf, size_t cap) MUST_CHECK;

#endif
