/*
 * bench/bare-kvm: the least a process must do to run the tiny guest (bench/tiny.S) on KVM,
 * the floor `vmm` is compared with (bench/tiny). It creates a VM with one 128 MiB memory slot
 * and one vCPU, enters the guest where a PVH loader would (32-bit protected mode, paging
 * off, at the ELF's entry, 1 MiB) and runs it to its first exit, the `out 0x64` the tiny
 * guest makes at its first instruction; then it exits without closing anything, as a
 * process that is done would (the kernel tears the VM down as the process exits).
 *
 *   bench/bare-kvm [plain|irqchip|irqchip-nopit|split] [-v]
 *
 *   plain    nothing else (the "bare KVM program")
 *   irqchip  plus KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 (what a VMM with the in-kernel
 *            PIC, IOAPIC, LAPIC and PIT does)
 *   irqchip-nopit  KVM_CREATE_IRQCHIP alone (vmm's default since the PIT became optional)
 *   split    plus KVM_CAP_SPLIT_IRQCHIP with 24 routes (LAPIC in the kernel, IOAPIC and PIC
 *            in user space)
 *   -v       times each phase (monotonic clock) on stderr, the VM fd's close included
 *
 * The guest's code is the tiny guest's first instruction bytes, written at 1 MiB: the
 * program does not parse the ELF (reading a 4 KiB file is not what is being compared).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE    (128ull << 20)
#define ENTRY       0x100000ull
#define EXIT_PORT   0x64
#define IOAPIC_PINS 24

static int verbose;
static double t_last;

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void phase(const char *what)
{
        double t = now_ms();

        if (verbose)
                fprintf(stderr, "  %-28s %8.3f ms\n", what, t - t_last);
        t_last = t;
}

static void die(const char *what)
{
        fprintf(stderr, "bare-kvm: %s: %s\n", what, strerror(errno));
        exit(1);
}

int main(int argc, char **argv)
{
        /* mov $0xfe, %al; out %al, $0x64: the tiny guest's first instruction. */
        static const unsigned char code[] = {0xb0, 0xfe, 0xe6, 0x64, 0x0f, 0x0b};
        const char *mode = "plain";
        struct kvm_userspace_memory_region slot;
        struct kvm_sregs sregs;
        struct kvm_regs regs;
        struct kvm_run *run;
        int kvm, vm, vcpu, run_size;
        unsigned char *mem;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-v") == 0)
                        verbose = 1;
                else if (strcmp(argv[i], "plain") == 0 || strcmp(argv[i], "irqchip") == 0 ||
                         strcmp(argv[i], "irqchip-nopit") == 0 || strcmp(argv[i], "split") == 0)
                        mode = argv[i];
                else {
                        fprintf(stderr,
                                "usage: bare-kvm [plain|irqchip|irqchip-nopit|split] [-v]\n");
                        return 2;
                }
        }
        t_last = now_ms();
        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0)
                die("/dev/kvm");
        vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0)
                die("KVM_CREATE_VM");
        phase("open + KVM_CREATE_VM");
        if (strcmp(mode, "irqchip") == 0) {
                struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

                if (ioctl(vm, KVM_CREATE_IRQCHIP, 0))
                        die("KVM_CREATE_IRQCHIP");
                if (ioctl(vm, KVM_CREATE_PIT2, &pit))
                        die("KVM_CREATE_PIT2");
                phase("KVM_CREATE_IRQCHIP + PIT2");
        } else if (strcmp(mode, "irqchip-nopit") == 0) {
                if (ioctl(vm, KVM_CREATE_IRQCHIP, 0))
                        die("KVM_CREATE_IRQCHIP");
                phase("KVM_CREATE_IRQCHIP");
        } else if (strcmp(mode, "split") == 0) {
                struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {IOAPIC_PINS}};

                if (ioctl(vm, KVM_ENABLE_CAP, &cap))
                        die("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)");
                phase("KVM_CAP_SPLIT_IRQCHIP");
        }
        mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED)
                die("mmap");
        memcpy(mem + ENTRY, code, sizeof(code));
        slot = (struct kvm_userspace_memory_region){.slot = 0,
                                                    .guest_phys_addr = 0,
                                                    .memory_size = MEM_SIZE,
                                                    .userspace_addr = (unsigned long)mem};
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot))
                die("KVM_SET_USER_MEMORY_REGION");
        phase("memory slot");
        vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        if (vcpu < 0)
                die("KVM_CREATE_VCPU");
        run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (run_size < (int)sizeof(*run))
                die("KVM_GET_VCPU_MMAP_SIZE");
        run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
        if (run == MAP_FAILED)
                die("mmap(kvm_run)");
        phase("KVM_CREATE_VCPU + mmap");
        /* PVH's entry state: flat 32-bit code and data segments, CR0.PE, no paging. */
        if (ioctl(vcpu, KVM_GET_SREGS, &sregs))
                die("KVM_GET_SREGS");
        struct kvm_segment cs = {.base = 0,
                                 .limit = 0xffffffff,
                                 .selector = 0x10,
                                 .type = 11,
                                 .present = 1,
                                 .dpl = 0,
                                 .db = 1,
                                 .s = 1,
                                 .g = 1};
        struct kvm_segment ds = cs;
        ds.type = 3;
        ds.selector = 0x18;
        sregs.cs = cs;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
        sregs.cr0 |= 1; /* PE */
        if (ioctl(vcpu, KVM_SET_SREGS, &sregs))
                die("KVM_SET_SREGS");
        memset(&regs, 0, sizeof(regs));
        regs.rip = ENTRY;
        regs.rflags = 2;
        if (ioctl(vcpu, KVM_SET_REGS, &regs))
                die("KVM_SET_REGS");
        phase("registers");
        for (;;) {
                if (ioctl(vcpu, KVM_RUN, 0)) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        die("KVM_RUN");
                }
                if (run->exit_reason == KVM_EXIT_IO && run->io.port == EXIT_PORT)
                        break;
                fprintf(stderr, "bare-kvm: unexpected exit %u\n", run->exit_reason);
                return 1;
        }
        phase("KVM_RUN to the port exit");
        if (verbose) {
                /* Timed only on request: a process that is done just exits. */
                munmap(run, (size_t)run_size);
                close(vcpu);
                phase("close vCPU fd");
                close(vm);
                phase("close VM fd");
                close(kvm);
        }
        return 0;
}
