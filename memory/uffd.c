#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int uffd_open(struct error *err)
{
        int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        int dev, e;

        if (fd >= 0)
                return fd;
        e = errno;
        if (e != EPERM && e != ENOSYS)
                return error_set(err, -e, "cannot create a userfaultfd: %s", strerror(e));
        /* Kernel 6.1 and later: the device's file permissions decide instead. */
        dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev < 0)
                return error_set(err, -e,
                                 "cannot create a userfaultfd: %s (the Uffd memory backend needs "
                                 "CAP_SYS_PTRACE, vm.unprivileged_userfaultfd = 1, or read and "
                                 "write access to /dev/userfaultfd: %s)",
                                 strerror(e), strerror(errno));
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        e = errno;
        close(dev);
        if (fd < 0)
                return error_set(err, -e,
                                 "cannot create a userfaultfd through /dev/userfaultfd: %s",
                                 strerror(e));
        return fd;
}

int uffd_register_guest_mem(const struct guest_mem *mem, struct error *err)
{
        /* Balloon discards reach the handler; nothing else is asked for. */
        struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
        int fd = uffd_open(err), r = 0;

        if (fd < 0)
                return fd;
        if (ioctl(fd, UFFDIO_API, &api))
                r = error_set(err, -errno,
                              "userfaultfd: this kernel does not report removed pages "
                              "(UFFD_FEATURE_EVENT_REMOVE): %s",
                              strerror(errno));
        for (unsigned i = 0; !r && i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region g = guest_mem_region_get(mem, i);
                struct uffdio_register reg = {
                    .range = {.start = (uintptr_t)g.host, .len = g.size},
                    .mode = UFFDIO_REGISTER_MODE_MISSING,
                };

                if (ioctl(fd, UFFDIO_REGISTER, &reg))
                        r = error_set(err, -errno,
                                      "userfaultfd: cannot register guest memory 0x%llx+0x%llx: "
                                      "%s",
                                      (unsigned long long)g.gpa, (unsigned long long)g.size,
                                      strerror(errno));
                else if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
                        r = error_set(err, -EOPNOTSUPP,
                                      "userfaultfd: guest memory registered without UFFDIO_COPY");
        }
        if (r) {
                close(fd);
                return r;
        }
        return fd;
}
