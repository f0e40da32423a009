#include "vm.h"

#include <errno.h>
#include <linux/kvm_para.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/cc/cc.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/cpu_state.h"
#include "arch/x86/cpu_template.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/loader.h"
#include "common/escape.h"
#include "common/fdio.h"
#include "common/file.h"
#include "common/log.h"
#include "devices/boot_timer.h"
#include "devices/bus.h"
#include "devices/acpi_sleep.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "vm_devices.h"
#include "kvm/kvm.h"
#include "snapshot.h"
#include "vcpu.h"
#include "vm_priv.h"

/* ---- interrupt lines into the in-kernel irqchip ---- */

static void gsi_set(void *opaque, bool level)
{
        struct gsi_line *l = opaque;
        int r = kvm_irq_line(l->kvm, l->gsi, level);
        if (r)
                LOG_ERROR("KVM_IRQ_LINE gsi %u: %s", l->gsi, strerror(-r));
}

/* ---- guest memory mapped from a memory file ---- */

/* The memory files guest RAM is mapped from, for the SIGBUS handler's message (a handler
 * can take no lock: each slot is claimed, then published by its end address). */
#define FILE_MAPS 16

static struct file_map {
        atomic_bool used;
        _Atomic uintptr_t lo, hi; /* hi 0: not published */
        char file[256];           /* escaped: the message is one line */
} file_maps[FILE_MAPS];

static void file_maps_add(struct vm *vm)
{
        for (unsigned i = 0; i < guest_mem_region_count(vm->mem); i++) {
                struct guest_mem_region r = guest_mem_region_get(vm->mem, i);

                for (unsigned k = 0; k < FILE_MAPS; k++) {
                        struct file_map *m = &file_maps[k];
                        bool free_slot = false;

                        if (!atomic_compare_exchange_strong(&m->used, &free_slot, true))
                                continue;
                        escape_controls(m->file, sizeof(m->file), vm->mem_file);
                        atomic_store(&m->lo, (uintptr_t)r.host);
                        atomic_store(&m->hi, (uintptr_t)r.host + r.size);
                        break;
                }
        }
}

static void file_maps_remove(struct vm *vm)
{
        for (unsigned i = 0; vm->mem_file && i < guest_mem_region_count(vm->mem); i++) {
                uintptr_t lo = (uintptr_t)guest_mem_region_get(vm->mem, i).host;

                for (unsigned k = 0; k < FILE_MAPS; k++) {
                        struct file_map *m = &file_maps[k];

                        if (atomic_load(&m->used) && atomic_load(&m->lo) == lo &&
                            atomic_load(&m->hi)) {
                                atomic_store(&m->hi, 0);
                                atomic_store(&m->used, false);
                        }
                }
        }
}

static size_t append(char *buf, size_t n, size_t cap, const char *s)
{
        while (*s && n + 1 < cap)
                buf[n++] = *s++;
        buf[n] = '\0';
        return n;
}

size_t vm_sigbus_message(const void *addr, char *buf, size_t cap)
{
        uintptr_t a = (uintptr_t)addr;

        guest_mem_sigbus_recover();
        for (unsigned k = 0; k < FILE_MAPS; k++) {
                struct file_map *m = &file_maps[k];
                uintptr_t hi = atomic_load(&m->hi);
                size_t n = 0;

                if (!hi || a < atomic_load(&m->lo) || a >= hi)
                        continue;
                n = append(buf, n, cap, "vmm: guest memory is gone: the snapshot memory file '");
                n = append(buf, n, cap, m->file);
                n = append(buf, n, cap, "' was truncated while the VM ran from it; exiting\n");
                return n;
        }
        return 0;
}

bool vm_mem_file_truncated(struct vm *vm, struct error *err)
{
        int fd = guest_mem_backing_file(vm->mem);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) || (uint64_t)st.st_size >= guest_mem_size(vm->mem))
                return false;
        error_set(err, -EIO,
                  "the snapshot memory file '%s' was truncated to %lld bytes while the VM ran "
                  "from it: the guest memory past that is lost",
                  vm->mem_file, (long long)st.st_size);
        return true;
}

/* ---- console ---- */

static void console_out(void *opaque, const uint8_t *buf, size_t len)
{
        struct vm *vm = opaque;

        while (len) {
                ssize_t n = write(vm->console_out_fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* a closed console loses output; the guest keeps running */
                buf += n;
                len -= (size_t)n;
        }
}

static void console_rx_space(void *opaque)
{
        struct vm *vm = opaque;
        uint64_t one = 1;

        if (write(vm->rx_space_fd, &one, sizeof(one)) < 0)
                LOG_DEBUG("rx_space eventfd: %s", strerror(errno));
}

static void console_poll(struct vm *vm, bool on)
{
        if (vm->console_in_fd < 0 || vm->console_in_polling == on)
                return;
        if (event_loop_modify(vm->params.loop, vm->console_in_fd, on ? EPOLLIN : 0) == 0)
                vm->console_in_polling = on;
}

static void on_console_in(void *opaque, uint32_t events)
{
        struct vm *vm = opaque;
        uint8_t buf[SERIAL_FIFO_SIZE];
        size_t space = serial_rx_space(vm->serial);
        ssize_t n;

        (void)events;
        if (space == 0) {
                console_poll(vm, false); /* resumed by console_rx_space */
                return;
        }
        n = read(vm->console_in_fd, buf, space < sizeof(buf) ? space : sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0) {
                /* End of input: stop listening; the guest keeps running. */
                event_loop_remove(vm->params.loop, vm->console_in_fd);
                vm->console_in_fd = -1;
                return;
        }
        serial_rx_push(vm->serial, buf, (size_t)n);
}

static void on_rx_space(void *opaque, uint32_t events)
{
        struct vm *vm = opaque;
        uint64_t v;

        (void)events;
        if (read(vm->rx_space_fd, &v, sizeof(v)) < 0)
                return;
        console_poll(vm, true);
}

/* ---- stopping ---- */

static int exit_code_of(enum vcpu_stop_reason why)
{
        return why == VCPU_STOP_ERROR ? 1 : 0;
}

static void request_stop(void *opaque, unsigned index, enum vcpu_stop_reason why)
{
        struct vm *vm = opaque;
        int expected = -1;
        uint64_t one = 1;

        (void)index;
        /* The first reason wins: later vCPUs stopping because of it do not override it. */
        if (!atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)why))
                return;
        /* No vCPU may run guest code past the event that ended the VM (a reset write must
         * not be followed by the guest's fallback reset methods). */
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_request_stop(vm->vcpus[i]);
        if (write(vm->stop_fd, &one, sizeof(one)) < 0)
                LOG_ERROR("stop eventfd: %s", strerror(errno));
}

/* ---- guest memory served by a page-fault handler (the Uffd backend) ---- */

static void on_handler_gone(void *opaque, const char *msg)
{
        struct vm *vm = opaque;

        LOG_ERROR("%s", msg);
        if (vm->params.on_memory_lost)
                vm->params.on_memory_lost(vm->params.opaque, msg);
        /* Paired with vm_start: whichever comes second stops the VM (a vCPU waiting for a
         * page leaves KVM_RUN once kicked and the watcher has closed the userfaultfd). */
        atomic_store(&vm->mem_lost, true);
        if (atomic_load(&vm->stoppable))
                request_stop(vm, 0, VCPU_STOP_ERROR);
}

static int watcher_init(void *opaque)
{
        struct vm *vm = opaque;

        log_bind(vm->params.log);
        log_set_thread_name("uffd");
        return vm->params.thread_init ? vm->params.thread_init(vm->params.opaque, VMM_THREAD_UFFD)
                                      : 0;
}

static int connect_handler(struct vm *vm, int uffd, struct error *err)
{
        struct uffd_peer_params p = {.path = vm->params.restore->mem_path,
                                     .mem = vm->mem,
                                     .uffd = uffd,
                                     .on_gone = on_handler_gone,
                                     .thread_init = watcher_init,
                                     .opaque = vm};

        return uffd_peer_connect(&p, err, &vm->uffd_peer);
}

static void on_i8042_reset(void *opaque)
{
        LOG_INFO("guest requested a reset through the i8042");
        request_stop(opaque, 0, VCPU_STOP_RESET);
}

static void on_acpi_power_off(void *opaque)
{
        LOG_INFO("guest powered off through ACPI (S5)");
        request_stop(opaque, 0, VCPU_STOP_SHUTDOWN);
}

static void on_stop_event(void *opaque, uint32_t events)
{
        struct vm *vm = opaque;
        int code = exit_code_of((enum vcpu_stop_reason)atomic_load(&vm->stop_reason));
        struct error err = {0};
        uint64_t v;

        (void)events;
        if (read(vm->stop_fd, &v, sizeof(v)) < 0)
                return;
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_stop(vm->vcpus[i]);
        /* A guest that touched a page its truncated memory file no longer has stops however
         * KVM reports it (EFAULT, or here an emulator's triple fault): not a reset. */
        if (vm_mem_file_truncated(vm, &err)) {
                LOG_ERROR("%s", err.msg);
                code = exit_code_of(VCPU_STOP_ERROR);
        }
        if (vm->params.on_stop)
                vm->params.on_stop(vm->params.opaque, code);
}

/* ---- board composition ---- */

/* mkdir -p */
static int write_file(const char *dir, const char *name, const void *data, size_t len,
                      struct error *err)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f || fwrite(data, 1, len, f) != len) {
                int r = error_config(err, "--dump-platform: cannot write '%s': %s", path,
                                     strerror(errno));
                if (f)
                        fclose(f);
                return r;
        }
        if (fclose(f))
                return error_config(err, "--dump-platform: cannot write '%s': %s", path,
                                    strerror(errno));
        return 0;
}

int vm_dump_platform(const struct vmm_config *cfg, const char *dir, struct error *err)
{
        struct vm_board *board = malloc(sizeof(*board));
        struct platform_tables tables;
        char name[32];
        void *fdt = NULL;
        size_t fdt_len = 0;
        int r;

        if (!board)
                return error_set(err, -ENOMEM, "out of memory");
        r = vm_board_build(cfg, board, err);
        if (!r)
                r = platform_tables_build(&board->desc, &tables, err);
        /* A POWER guest of a pef machine would get a device tree instead of ACPI. */
        if (!r && cfg->confidential.platform == CC_PLATFORM_PEF) {
                r = cc_pef_fdt(&board->desc, cfg->machine.mem_size_mib << 20,
                               cfg->boot.boot_args ? cfg->boot.boot_args : VMM_DEFAULT_CMDLINE,
                               &fdt, &fdt_len, err);
                if (r)
                        platform_tables_free(&tables);
        }
        free(board);
        if (r)
                return r;
        /* The directory itself, never missing parents: a mistyped path creates nothing. */
        if (mkdir(dir, 0755) && errno != EEXIST) {
                r = error_config(err, "--dump-platform: cannot create '%s': %s", dir,
                                 strerror(errno));
                goto out;
        }
        for (unsigned i = 0; !r && i < tables.nr; i++) {
                snprintf(name, sizeof(name), "%s.dat", tables.blobs[i].name);
                r = write_file(dir, name, tables.blobs[i].data, tables.blobs[i].len, err);
        }
        if (!r && fdt)
                r = write_file(dir, "platform.dtb", fdt, fdt_len, err);
        if (!r)
                LOG_INFO("wrote %u platform tables%s to %s", tables.nr,
                         fdt ? " and platform.dtb" : "", dir);
out:
        free(fdt);
        platform_tables_free(&tables);
        return r;
}

/* The platform-call window is part of the trusted platform model, not a device: the bus
 * only routes the guest's accesses to it. */
static void callwin_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        cc_callwin_read(opaque, off, data, len);
}

static void callwin_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        cc_callwin_write(opaque, off, data, len);
}

static const struct bus_ops *callwin_ops(void)
{
        static const struct bus_ops ops = {.read = callwin_read, .write = callwin_write};
        return &ops;
}

static int create_legacy_devices(struct vm *vm, struct error *err)
{
        const struct vmm_rate_limiter *limit = &vm->params.cfg->serial_rate_limiter;
        struct serial_config sc = {.out = console_out,
                                   .rx_space = console_rx_space,
                                   .opaque = vm,
                                   .out_limit = limit->present ? &limit->cfg : NULL};
        struct i8042_config kc = {.reset = on_i8042_reset, .opaque = vm};
        int r;
        struct acpi_sleep_config pc = {
            .s5_type = X86_ACPI_S5_TYPE, .power_off = on_acpi_power_off, .opaque = vm};

        /* Their lines' GSIs come from the board (attach_board). */
        sc.irq = (struct irq_line){.set = gsi_set, .opaque = &vm->com1_line};
        kc.kbd_irq = (struct irq_line){.set = gsi_set, .opaque = &vm->kbd_line};
        r = serial_create(&sc, &vm->serial);
        if (r)
                return error_set(err, r, "COM1: %s", strerror(-r));
        if (i8042_create(&kc, &vm->i8042) || acpi_sleep_create(&pc, &vm->acpi_sleep))
                return error_set(err, -ENOMEM, "out of memory");
        if (vm->params.cfg->boot_timer &&
            boot_timer_create(vm->params.start_ns, vm->params.start_cpu_ns, &vm->boot_timer))
                return error_set(err, -ENOMEM, "out of memory");
        if (vm_board_find(vm->board, VM_BOARD_VMGENID, 0))
                return vmgenid_create(
                    (struct irq_line){.set = gsi_set, .opaque = &vm->vmgenid_line}, err,
                    &vm->vmgenid);
        return 0;
}

/* Registers every window of board entry dev on its bus: window i goes to ops[i] (a device
 * with fewer handlers than windows is a board mistake, refused). */
static int add_windows(struct vm *vm, const struct platform_dev *dev,
                       const struct bus_ops *const ops[PLATFORM_MAX_WINDOWS], void *opaque,
                       struct error *err)
{
        struct platform_window w[PLATFORM_MAX_WINDOWS];
        unsigned n = platform_dev_windows(dev, w);
        int r = 0;

        for (unsigned i = 0; !r && i < n; i++) {
                struct bus_window bw = {.name = dev->name,
                                        .base = w[i].base,
                                        .len = w[i].len,
                                        .ops = ops[i],
                                        .opaque = opaque};
                r = ops[i]
                        ? bus_register(w[i].space == PLATFORM_PIO ? vm->pio : vm->mmio, &bw, err)
                        : error_set(err, -EINVAL, "%s: no handler for its window %u", dev->name, i);
        }
        return r;
}

/* Wires every device where the board placed it: its windows on the buses, its interrupt. */
static int attach_board(struct vm *vm, struct error *err)
{
        const struct vm_board *b = vm->board;
        int r = 0;

        for (unsigned i = 0; !r && i < b->desc.nr_devs; i++) {
                const struct platform_dev *dev = &b->desc.devs[i];
                const struct bus_ops *ops[PLATFORM_MAX_WINDOWS] = {NULL};
                void *opaque = NULL;

                switch (b->roles[i].role) {
                case VM_BOARD_SERIAL:
                        vm->com1_line = (struct gsi_line){.kvm = vm->kvm, .gsi = dev->gsi};
                        ops[0] = serial_bus_ops();
                        opaque = vm->serial;
                        break;
                case VM_BOARD_I8042:
                        vm->kbd_line = (struct gsi_line){.kvm = vm->kvm, .gsi = dev->gsi};
                        ops[0] = i8042_data_ops();
                        ops[1] = i8042_cmd_ops();
                        opaque = vm->i8042;
                        break;
                case VM_BOARD_ACPI_SLEEP: {
                        /* The FADT names its control register at dev->base, its status at
                         * +1, and the board's check holds it to 2 ports. (A block: C11 puts
                         * no declaration right after a label, and clang refuses it.) */
                        _Static_assert(ACPI_SLEEP_CONTROL_OFF == 0 && ACPI_SLEEP_STATUS_OFF == 1 &&
                                           ACPI_SLEEP_REGS_LEN == 2,
                                       "the FADT's sleep registers are the device's window");
                        ops[0] = acpi_sleep_ops();
                        opaque = vm->acpi_sleep;
                        break;
                }
                case VM_BOARD_BOOT_TIMER:
                        ops[0] = boot_timer_bus_ops();
                        opaque = vm->boot_timer;
                        break;
                case VM_BOARD_CALLWIN:
                        ops[0] = callwin_ops();
                        opaque = vm->cc;
                        break;
                case VM_BOARD_VMGENID:
                        vm->vmgenid_line = (struct gsi_line){.kvm = vm->kvm, .gsi = dev->gsi};
                        ops[0] = vmgenid_bus_ops();
                        opaque = vm->vmgenid;
                        break;
                case VM_BOARD_VIRTIO:
                        r = vm_devices_attach(vm->devices, b->roles[i].index, dev, vm->kvm,
                                              vm->mmio, err);
                        continue;
                case VM_BOARD_PMEM: /* memory, mapped with RAM (vm_devices_map_windows) */
                case VM_BOARD_HOTPLUG:
                        continue;
                }
                r = add_windows(vm, dev, ops, opaque, err);
        }
        return r;
}

/* Maps a user-supplied file read-only; the caller munmaps it. */
static int map_input_file(const char *what, const char *path, uint8_t **data, size_t *len,
                          struct error *err)
{
        struct stat st;
        void *p;
        int fd = file_open(what, path, O_RDONLY, 0, FILE_REGULAR, err);

        if (fd < 0)
                return fd;
        if (fstat(fd, &st)) {
                close(fd);
                return error_config(err, "%s '%s': %s", what, path, strerror(errno));
        }
        if (st.st_size == 0) {
                close(fd);
                return error_config(err, "%s '%s' is empty", what, path);
        }
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return error_config(err, "%s '%s': %s", what, path, strerror(errno));
        *data = p;
        *len = (size_t)st.st_size;
        return 0;
}

static int load_guest(struct vm *vm, struct error *err)
{
        const struct vmm_config *cfg = vm->params.cfg;
        struct platform_tables tables;
        struct x86_boot_args args = {.kernel = &vm->kernel};
        char cmdline[X86_CMDLINE_MAX];
        uint8_t *img = NULL;
        size_t len = 0;
        int r;

        if (!cfg->boot.kernel_image_path)
                return error_config(err, "no kernel image was given (--kernel)");
        r = map_input_file("kernel image", cfg->boot.kernel_image_path, &img, &len, err);
        if (r)
                return r;
        r = x86_kernel_load(vm->mem, img, len, &vm->kernel, err);
        munmap(img, len);
        if (r) {
                error_prefix(err, "kernel image '%s'", cfg->boot.kernel_image_path);
                err->kind = ERROR_CONFIG;
                return r;
        }
        if (cfg->boot.initrd_path) {
                r = map_input_file("initrd", cfg->boot.initrd_path, &img, &len, err);
                if (r)
                        return r;
                r = x86_initrd_load(vm->mem, &vm->kernel, img, len, &args.initrd_addr, err);
                munmap(img, len);
                if (r) {
                        error_prefix(err, "initrd '%s'", cfg->boot.initrd_path);
                        err->kind = ERROR_CONFIG;
                        return r;
                }
                args.initrd_size = len;
        }

        snprintf(cmdline, sizeof(cmdline), "%s",
                 cfg->boot.boot_args ? cfg->boot.boot_args : VMM_DEFAULT_CMDLINE);
        r = vm_devices_cmdline(cfg, cmdline, sizeof(cmdline), err);
        if (!r)
                r = cc_cmdline_append(cfg->confidential.platform,
                                      vm_board_find(vm->board, VM_BOARD_CALLWIN, 0), cmdline,
                                      sizeof(cmdline), err);
        if (!r)
                r = platform_cmdline_append(&vm->board->desc, cmdline, sizeof(cmdline), err);
        if (!r)
                r = x86_cmdline_check(&vm->kernel, cmdline, err);
        if (r) {
                err->kind = ERROR_CONFIG;
                return r;
        }
        args.cmdline = cmdline;

        r = platform_tables_build(&vm->board->desc, &tables, err);
        if (r)
                return r;
        r = platform_tables_write(&tables, vm->mem, err);
        args.rsdp = tables.rsdp;
        platform_tables_free(&tables);
        if (!r)
                r = x86_boot_write(vm->mem, &args, err);
        return r;
}

static bool platform_exit(void *opaque, unsigned index, int fd, struct kvm_run *run)
{
        return cc_handle_exit(opaque, index, fd, run);
}

static bool platform_fault(void *opaque, int fd)
{
        return cc_handle_fault(opaque, fd);
}

/* SEV's page-state changes reach user space: the GHCB MSR and MAP_GPA_RANGE. */
static int setup_platform_exits(struct vm *vm, struct error *err)
{
        uint32_t msrs[4];
        unsigned n = cc_intercepted_msrs(vm->cc, msrs, ARRAY_SIZE(msrs));
        int r = n ? kvm_intercept_msrs(vm->kvm, msrs, n, err) : 0;

        if (!r && cc_wants_map_gpa_range(vm->cc))
                r = kvm_exit_on_hypercalls(vm->kvm, 1ull << KVM_HC_MAP_GPA_RANGE, err);
        return r;
}

/* At the top of each vCPU thread: its lines are the VM's, then its confinement. */
static int vcpu_thread_init(void *opaque, unsigned index)
{
        struct vm *vm = opaque;

        (void)index;
        log_bind(vm->params.log);
        return vm->params.thread_init ? vm->params.thread_init(vm->params.opaque, VMM_THREAD_VCPU)
                                      : 0;
}

static int create_vcpus(struct vm *vm, struct error *err)
{
        struct vcpu_env env = {
            .pio = vm->pio,
            .mmio = vm->mmio,
            .request_stop = request_stop,
            .opaque = vm,
            .platform_exit = vm->cc ? platform_exit : NULL,
            .platform_fault = vm->cc ? platform_fault : NULL,
            .platform_opaque = vm->cc,
            .thread_init = vcpu_thread_init,
        };
        int r;

        vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
        if (!vm->vcpus)
                return error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < vm->nr_vcpus; i++) {
                struct x86_cpu_init init = {
                    .index = i,
                    .nr_vcpus = vm->nr_vcpus,
                    .smt = vm->params.cfg->machine.smt,
                    .cpuid = vm->cpuid,
                    .msr_list = vm->kvm->msr_list,
                    .tmpl = vm->cpu->has_template ? &vm->cpu->tmpl : NULL,
                    .hide = &vm->cpuid_hide,
                    .kernel = &vm->kernel,
                };
                r = vcpu_create(vm->kvm, i, &env, err, &vm->vcpus[i]);
                /* A restored vCPU gets its whole state from the snapshot instead. */
                if (!r && !vm->params.restore)
                        r = x86_cpu_init(vcpu_fd(vm->vcpus[i]), &init, err);
                if (r)
                        return r;
        }
        return 0;
}

/* ---- the guest CPU (docs/cpu-templates.md) ---- */

/* The CPU configuration, before anything is built: a boot's template (a static one only on
 * its vendor's CPUs, as Firecracker requires), or the snapshot's. */
static int prepare_cpu(struct vm *vm, struct error *err)
{
        const struct vmm_config *cfg = vm->params.cfg;
        char vendor[13];
        int r;

        vm->cpu = calloc(1, sizeof(*vm->cpu));
        if (!vm->cpu)
                return error_set(err, -ENOMEM, "out of memory");
        if (vm->params.restore) {
                *vm->cpu = *vm->params.restore->cpu;
                return 0;
        }
        if (cfg->cpu.tmpl) {
                vm->cpu->has_template = true;
                vm->cpu->tmpl = *cfg->cpu.tmpl;
        }
        snprintf(vm->cpu->static_template, sizeof(vm->cpu->static_template), "%s",
                 cfg->cpu.static_template);
        if (!cfg->cpu.static_template[0])
                return 0;
        x86_host_cpu_vendor(vendor);
        r = x86_static_template_check(cfg->cpu.static_template, vendor, err);
        if (r)
                error_prefix(err, "Failed to get CPU template");
        return r;
}

_Static_assert(X86_TEMPLATE_MAX_CAPS <= KVM_MAX_CAP_CHECKS, "every template capability fits");

static void cap_checks(const struct x86_cpu_record *cpu, struct kvm_cap_checks *out)
{
        memset(out, 0, sizeof(*out));
        for (unsigned i = 0; cpu->has_template && i < cpu->tmpl.nr_caps; i++) {
                const struct x86_kvm_cap *c = &cpu->tmpl.caps[i];

                if (c->remove)
                        out->skip[out->nr_skip++] = c->cap;
                else
                        out->require[out->nr_require++] = c->cap;
        }
}

/* A boot: the VM's CPUID is KVM's with the template applied, which KVM must provide, and KVM
 * must list every MSR the template changes. A restore: this host must provide the snapshot's
 * CPU configuration. */
static int setup_cpuid(struct vm *vm, struct error *err)
{
        const struct kvm_cpuid2 *sup = vm->kvm->supported_cpuid;
        size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
        int r = 0;

        if (vm->params.restore)
                return x86_cpu_record_check(vm->cpu, sup, vm->kvm->msr_list, err);
        vm->cpuid = malloc(size);
        if (!vm->cpuid)
                return error_set(err, -ENOMEM, "out of memory");
        memcpy(vm->cpuid, sup, size);
        if (vm->cpu->has_template)
                r = x86_cpu_template_apply_cpuid(vm->cpuid, &vm->cpu->tmpl, sup, err);
        for (unsigned i = 0; !r && i < vm->cpu->tmpl.nr_msrs; i++)
                if (!x86_msr_listed(vm->kvm->msr_list, vm->cpu->tmpl.msrs[i].index))
                        r = error_config(err,
                                         "Template changes an MSR entry not supported by KVM: "
                                         "Register Address: %x",
                                         vm->cpu->tmpl.msrs[i].index);
        if (r) {
                error_prefix(err, "Failed to create guest config");
                return r;
        }
        return x86_cpu_record_set_cpuid(vm->cpu, vm->cpuid, vm->nr_vcpus,
                                        vm->params.cfg->machine.smt, &vm->cpuid_hide, err);
}

static int open_console(struct vm *vm, struct error *err)
{
        const struct vmm_config *cfg = vm->params.cfg;
        int r;

        vm->console_out_fd = vm->params.console_out_fd;
        if (cfg->serial_out_path) {
                vm->console_out_fd =
                    file_open("serial output", cfg->serial_out_path,
                              O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644, FILE_REGULAR, err);
                if (vm->console_out_fd < 0)
                        return vm->console_out_fd;
                vm->own_console_out = true;
        }
        vm->rx_space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->rx_space_fd < 0 || vm->stop_fd < 0)
                return error_set(err, -errno, "eventfd: %s", strerror(errno));
        r = event_loop_add(vm->params.loop, vm->stop_fd, EPOLLIN, on_stop_event, vm);
        if (!r)
                r = event_loop_add(vm->params.loop, vm->rx_space_fd, EPOLLIN, on_rx_space, vm);
        if (r)
                return error_set(err, r, "event loop: %s", strerror(-r));
        if (vm->params.console_in_fd >= 0 && cfg->serial_in) {
                /* Regular files and /dev/null cannot be polled: such input is simply absent. */
                if (event_loop_add(vm->params.loop, vm->params.console_in_fd, EPOLLIN,
                                   on_console_in, vm) == 0) {
                        vm->console_in_fd = vm->params.console_in_fd;
                        vm->console_in_polling = true;
                }
        }
        return 0;
}

int vm_create(const struct vm_params *params, struct error *err, struct vm **out)
{
        const struct vmm_config *cfg = params->cfg;
        struct guest_mem_spec spec = {
            .size = cfg->machine.mem_size_mib << 20,
            .hole_start = X86_MMIO_HOLE_START,
            .hole_end = X86_MMIO_HOLE_END,
            .flags = cfg->machine.huge_pages ? GUEST_MEM_HUGEPAGES : 0,
        };
        struct kvm_cap_checks checks;
        struct vm *vm;
        int r, uffd = -1;

        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return error_set(err, -ENOMEM, "out of memory");
        vm->params = *params;
        vm->console_in_fd = -1;
        vm->console_out_fd = -1;
        vm->rx_space_fd = vm->stop_fd = -1;
        atomic_store(&vm->stop_reason, -1);
        vm->nr_vcpus = cfg->machine.vcpu_count;

        r = x86_cpuid_parse_hide(cfg->machine.cpu_hide, &vm->cpuid_hide, err);
        if (r) {
                err->kind = ERROR_CONFIG;
                goto fail;
        }
        r = prepare_cpu(vm, err);
        if (r)
                goto fail;
        /* Everything that depends only on the user's input is checked and loaded before
         * KVM is opened, so a bad configuration is reported the same way on any host. */
        r = params->restore ? vm_restore_memory(params->restore, &spec, err, &vm->mem, &uffd)
                            : guest_mem_create(&spec, err, &vm->mem);
        if (!r && uffd >= 0)
                r = connect_handler(vm, uffd, err);
        else if (!r && params->restore) {
                vm->mem_base = params->restore->info->mem.id;
                vm->mem_file = strdup(params->restore->mem_path);
                if (!vm->mem_file)
                        r = error_set(err, -ENOMEM, "out of memory");
                else
                        file_maps_add(vm);
        }
        /* Diff snapshots: what the VMM writes into guest memory is recorded from now on
         * (the kernel loads too: a first Diff without a Full before it holds them). */
        if (!r && cfg->machine.track_dirty_pages && guest_mem_track_dirty(vm->mem))
                r = error_set(err, -ENOMEM, "out of memory");
        if (!r)
                r = cc_create(&(struct cc_config){.platform = cfg->confidential.platform}, vm->mem,
                              err, &vm->cc);
        if (r)
                goto fail;
        vm->board = malloc(sizeof(*vm->board));
        if (!vm->board) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        r = vm_board_build(cfg, vm->board, err);
        if (!r && !params->restore)
                r = load_guest(vm, err);
        if (!r)
                r = vm_devices_create(cfg, vm->mem, cc_ownership(vm->cc), params->loop,
                                      params->mmds, err, &vm->devices);
        if (r)
                goto fail;

        cap_checks(vm->cpu, &checks);
        r = kvm_open(params->kvm_path ? params->kvm_path : "/dev/kvm", &checks, err, &vm->kvm);
        if (r)
                goto fail;
        if (vm->nr_vcpus > vm->kvm->max_vcpus) {
                r = error_config(err, "vcpu count %u exceeds this KVM's limit of %u", vm->nr_vcpus,
                                 vm->kvm->max_vcpus);
                goto fail;
        }
        r = setup_cpuid(vm, err);
        if (r)
                goto fail;
        /* RAM slots go in before the irqchip: once KVM has its internal slots (TSS, APIC
         * page), each slot change waits for an SRCU grace period (7 ms measured here). */
        r = kvm_map_memory(vm->kvm, vm->mem, cfg->machine.track_dirty_pages, err);
        if (!r)
                r = vm_devices_map_windows(vm->devices, vm->board, vm->kvm, err);
        if (!r)
                r = kvm_create_platform(vm->kvm, cfg->machine.pit, err);
        if (!r)
                r = setup_platform_exits(vm, err);
        if (!r)
                r = bus_create("pio", &vm->pio) || bus_create("mmio", &vm->mmio)
                        ? error_set(err, -ENOMEM, "out of memory")
                        : 0;
        if (!r)
                r = open_console(vm, err);
        if (!r)
                r = create_legacy_devices(vm, err);
        if (!r)
                r = attach_board(vm, err);
        if (!r)
                r = create_vcpus(vm, err);
        if (!r && params->restore)
                r = vm_restore_state(vm, params->restore, err);
        /* A restored guest is a new generation: after every vCPU's state is back (the edge
         * must not be overwritten by a restored local APIC), before any of them runs. */
        if (!r && params->restore && vm->vmgenid) {
                r = vmgenid_new_generation(vm->vmgenid, err);
                if (!r)
                        LOG_INFO("VMGenID: a new generation for the restored guest (GSI %u)",
                                 vm->vmgenid_line.gsi);
        }
        vm->restored = params->restore != NULL;
        vm->params.restore = NULL; /* the caller's, valid during vm_create only */
        if (r)
                goto fail;
        *out = vm;
        return 0;
fail:
        vm_destroy(vm);
        return r;
}

int vm_start(struct vm *vm, struct error *err)
{
        /* Confined, the vCPUs start parked: they run the guest only once the calling thread
         * (the VMM thread, which serves the devices) is confined too. */
        bool hold = vm->params.thread_init != NULL;
        int r;

        for (unsigned i = 0; i < vm->nr_vcpus; i++) {
                r = vcpu_start(vm->vcpus[i], vm->restored || hold, err);
                if (r)
                        return r;
        }
        if (hold) {
                r = vm->params.thread_init(vm->params.opaque, VMM_THREAD_VMM);
                if (r)
                        return error_set(err, r, "cannot confine the VMM thread: %s", strerror(-r));
        }
        vm->started = true;
        atomic_store(&vm->stoppable, true);
        if (atomic_load(&vm->mem_lost))
                request_stop(vm, 0, VCPU_STOP_ERROR);
        if (hold && !vm->restored)
                vm_resume(vm);
        return 0;
}

void vm_pause(struct vm *vm)
{
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_pause(vm->vcpus[i]);
}

void vm_resume(struct vm *vm)
{
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_resume(vm->vcpus[i]);
}

int vm_send_ctrl_alt_del(struct vm *vm)
{
        return i8042_send_ctrl_alt_del(vm->i8042);
}

uint64_t vm_first_exit_ns(struct vm *vm)
{
        uint64_t first = 0;

        for (unsigned i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
                uint64_t t = atomic_load(&vcpu_stats(vm->vcpus[i])->first_exit_ns);
                if (t && (!first || t < first))
                        first = t;
        }
        return first;
}

void vm_log_startup_stats(struct vm *vm)
{
        struct vcpu_stats *st;
        uint64_t guest, rss_pages = 0, resident = 0;
        long page = sysconf(_SC_PAGESIZE);
        FILE *f;

        if (!log_enabled(LOG_LEVEL_DEBUG) || !vm->nr_vcpus)
                return;
        st = vcpu_stats(vm->vcpus[0]);
        f = fopen("/proc/self/statm", "re");
        if (f) {
                unsigned long long size, res;
                if (fscanf(f, "%llu %llu", &size, &res) == 2)
                        rss_pages = res;
                fclose(f);
        }
        resident = rss_pages * (uint64_t)page;
        guest = guest_mem_resident_bytes(vm->mem);
        LOG_DEBUG("startup: first guest exit at monotonic %llu ns, process cpu %llu ns; rss %llu "
                  "KiB, guest ram resident %llu KiB, vmm overhead %llu KiB; main at monotonic "
                  "%llu ns, process cpu %llu ns",
                  (unsigned long long)atomic_load(&st->first_exit_ns),
                  (unsigned long long)atomic_load(&st->first_exit_cpu_ns),
                  (unsigned long long)(resident >> 10), (unsigned long long)(guest >> 10),
                  (unsigned long long)((resident > guest ? resident - guest : 0) >> 10),
                  (unsigned long long)vm->params.start_ns,
                  (unsigned long long)vm->params.start_cpu_ns);
}

void vm_destroy(struct vm *vm)
{
        if (!vm)
                return;
        /* No longer watched: the VM ends anyway, and its parts go away below. */
        uffd_peer_destroy(vm->uffd_peer);
        for (unsigned i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
                vcpu_stop(vm->vcpus[i]);
        for (unsigned i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
                vcpu_destroy(vm->vcpus[i]);
        free(vm->vcpus);
        vm_devices_destroy(vm->devices);
        cc_destroy(vm->cc); /* after the devices: their accessors use its ownership map */
        if (vm->console_in_fd >= 0)
                event_loop_remove(vm->params.loop, vm->console_in_fd);
        if (vm->stop_fd >= 0) {
                event_loop_remove(vm->params.loop, vm->stop_fd);
                close(vm->stop_fd);
        }
        if (vm->rx_space_fd >= 0) {
                event_loop_remove(vm->params.loop, vm->rx_space_fd);
                close(vm->rx_space_fd);
        }
        if (vm->own_console_out)
                close(vm->console_out_fd);
        boot_timer_destroy(vm->boot_timer);
        vmgenid_destroy(vm->vmgenid);
        i8042_destroy(vm->i8042);
        acpi_sleep_destroy(vm->acpi_sleep);
        serial_destroy(vm->serial);
        bus_destroy(vm->pio);
        bus_destroy(vm->mmio);
        file_maps_remove(vm);
        guest_mem_destroy(vm->mem);
        kvm_close(vm->kvm);
        free(vm->cpu);
        free(vm->cpuid);
        free(vm->mem_file);
        free(vm->board);
        free(vm);
}

void vm_get_stats(struct vm *vm, struct vm_stats *out)
{
        memset(out, 0, sizeof(*out));
        for (unsigned i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
                struct vcpu_stats *st = vcpu_stats(vm->vcpus[i]);

                out->exit_io_in += atomic_load(&st->exit_io_in);
                out->exit_io_out += atomic_load(&st->exit_io_out);
                out->exit_mmio_read += atomic_load(&st->exit_mmio_read);
                out->exit_mmio_write += atomic_load(&st->exit_mmio_write);
                out->failures += atomic_load(&st->failures);
        }
        if (vm->serial)
                serial_get_stats(vm->serial, &out->serial);
        if (vm->i8042)
                out->i8042_resets = i8042_reset_count(vm->i8042);
        if (vm->pio)
                out->pio_unhandled = bus_unhandled_count(vm->pio);
        if (vm->mmio)
                out->mmio_unhandled = bus_unhandled_count(vm->mmio);
        out->cc_platform = cc_platform_of(vm->cc);
        if (vm->cc)
                cc_get_stats(vm->cc, &out->cc);
}

static int dump_error(struct vm *vm, const char *path, int e, struct error *err)
{
        if (e == EFAULT && vm_mem_file_truncated(vm, err))
                return -EIO;
        return error_set(err, -e, "memory dump '%s': %s", path, strerror(e));
}

int vm_host_read(struct vm *vm, gpa_t gpa, void *buf, size_t len, struct error *err)
{
        int r = vm->cc ? cc_host_read(vm->cc, gpa, buf, len)
                       : guest_mem_read_snapshot(vm->mem, gpa, buf, len);

        if (r == -EIO && vm_mem_file_truncated(vm, err))
                return r;
        if (r)
                return error_config(err, "0x%llx+0x%zx is not guest RAM", (unsigned long long)gpa,
                                    len);
        return 0;
}

int vm_memory_dump(struct vm *vm, const char *path, struct error *err)
{
        struct file_replace fr;
        char suffix[17];
        int r = 0;

        if (vm->cc)
                return error_config(err,
                                    "a memory dump of a protected (%s) VM is refused: the host "
                                    "may not read its private memory (CC-13)",
                                    cc_platform_name(cc_platform_of(vm->cc)));
        /* A dump that fails leaves what was at path as it was. */
        snprintf(suffix, sizeof(suffix), "%016llx", (unsigned long long)snapshot_new_id());
        r = file_replace_begin(&fr, "memory dump", path, suffix, 0600, err);
        if (r)
                return r;
        for (unsigned i = 0; !r && i < guest_mem_region_count(vm->mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(vm->mem, i);

                r = fd_write_all(fr.fd, reg.host, reg.size);
                if (r)
                        r = dump_error(vm, path, -r, err);
        }
        if (!r)
                r = file_replace_sync(&fr, "memory dump", err);
        if (!r)
                r = file_replace_commit(&fr, "memory dump", err);
        file_replace_end(&fr);
        return r;
}

struct vm_devices *vm_get_devices(struct vm *vm)
{
        return vm->devices;
}
