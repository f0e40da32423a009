/*
 * Saving a paused VM to a state file and a memory file, and the restore half of
 * vm_create (vm.h, snapshot.h). The order matters both ways:
 *
 * save: the two files' places first (snapshot_files_begin: refusals before anything
 * changes), the virtio devices (finishing their in-flight work writes guest memory and
 * raises interrupts), then the dirty pages are collected and the memory file written, then
 * the irqchip, the vCPUs and the legacy devices, which no longer change; both files go into
 * place last (snapshot_files_commit), the state file after the memory file, so a state file
 * never describes a memory file that is not complete and a failure keeps the old snapshot.
 *
 * restore: the irqchip and PIT before the vCPUs (their LAPICs route through it), the
 * vCPUs, the clock, the UART and i8042, and the virtio devices last: a running device
 * processes its queues again at once and may interrupt the guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpu_state.h"
#include "common/log.h"
#include "memory/uffd.h"
#include "snapshot.h"
#include "vm_priv.h"

static uint64_t realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct x86_cpu_state_env cpu_env(struct vm *vm)
{
        return (struct x86_cpu_state_env){.sys_fd = vm->kvm->sys_fd, .msr_list = vm->kvm->msr_list};
}

static void describe(struct vm *vm, bool diff, struct snapshot_info *info)
{
        memset(info, 0, sizeof(*info));
        snprintf(info->vmm_version, sizeof(info->vmm_version), "%s", VMM_VERSION);
        snprintf(info->arch, sizeof(info->arch), "x86_64");
        info->type = diff ? SNAPSHOT_DIFF : SNAPSHOT_FULL;
        info->created_ns = realtime_ns();
        x86_host_cpu_vendor(info->cpu_vendor);
        info->mem_bytes = guest_mem_size(vm->mem);
        /* A Diff holds what changed since the memory of the last snapshot (or the restore).
         * Without one, since the boot: memory that was all zeros then, whose every page
         * written since (by the guest, the VMM or the kernel loader) the Diff holds, so it is
         * complete as it stands. */
        info->mem.kind = diff && vm->mem_base ? SNAPSHOT_DIFF : SNAPSHOT_FULL;
        info->mem.ram_bytes = info->mem_bytes;
        info->mem.id = snapshot_new_id();
        info->mem.parent = diff ? vm->mem_base : 0;
        info->nr_regions = guest_mem_region_count(vm->mem);
        for (unsigned i = 0; i < info->nr_regions; i++) {
                struct guest_mem_region r = guest_mem_region_get(vm->mem, i);

                info->regions[i].gpa = r.gpa;
                info->regions[i].size = r.size;
                info->regions[i].offset = r.offset;
        }
        info->nr_vcpus = vm->nr_vcpus;
        info->nr_devices = vm_devices_count(vm->devices);
}

static int save_machine(struct vm *vm, struct snapbuf_writer *w, struct error *err)
{
        struct x86_cpu_state_env env = cpu_env(vm);
        size_t sec;
        int r;

        sec = snapbuf_begin_section(w, SNAPSHOT_TAG_KVM);
        r = kvm_save_vm_state(vm->kvm, w, err);
        snapbuf_end_section(w, sec);
        for (unsigned i = 0; !r && i < vm->nr_vcpus; i++) {
                sec = snapbuf_begin_section(w, SNAPSHOT_TAG_VCPU);
                snapbuf_put_u32(w, i);
                r = x86_cpu_state_save(&env, vcpu_fd(vm->vcpus[i]), w, err);
                if (r)
                        error_prefix(err, "vcpu%u", i);
                snapbuf_end_section(w, sec);
        }
        if (r)
                return r;
        sec = snapbuf_begin_section(w, SNAPSHOT_TAG_SERL);
        serial_save(vm->serial, w);
        snapbuf_end_section(w, sec);
        sec = snapbuf_begin_section(w, SNAPSHOT_TAG_KBD);
        i8042_save(vm->i8042, w);
        snapbuf_end_section(w, sec);
        return 0;
}

/* The pages written since the previous snapshot (or the start): KVM's log for the vCPUs,
 * guest_mem's record for the VMM. Both logs are cleared. */
static int take_dirty(struct vm *vm, uint64_t **out, struct error *err)
{
        uint64_t *bm = calloc(guest_mem_bitmap_words(vm->mem), sizeof(uint64_t));
        int r;

        if (!bm)
                return error_set(err, -ENOMEM, "out of memory");
        guest_mem_take_dirty(vm->mem, bm);
        r = kvm_take_dirty_log(vm->kvm, vm->mem, bm, err);
        if (r) {
                guest_mem_restore_dirty(vm->mem, bm);
                free(bm);
                return r;
        }
        *out = bm;
        return 0;
}

int vm_snapshot(struct vm *vm, const struct vmm_config *cfg, bool diff, const char *state_path,
                const char *mem_path, struct error *err)
{
        bool tracking = guest_mem_tracking_dirty(vm->mem);
        struct virtio_mem *hotplug = vm_devices_mem(vm->devices);
        struct virtio_mem_layout hp;
        struct snapbuf_writer w, devs;
        struct snapshot_info info;
        struct snapshot_files files;
        uint64_t *dirty = NULL;
        size_t sec;
        int r;

        if (vm->cc)
                return error_config(err,
                                    "a snapshot of a protected (%s) VM is refused: the host may "
                                    "not read its private memory (CC-13)",
                                    cc_platform_name(cc_platform_of(vm->cc)));
        /* The region is not guest RAM: KVM's dirty log does not cover it, so a Diff would
         * lose what the guest wrote into plugged blocks. */
        if (diff && hotplug)
                return error_config(err, "Diff snapshots of a VM with hotpluggable memory "
                                         "(virtio-mem) are not supported: take a Full snapshot");
        if (diff && !tracking)
                return error_config(err, "Diff snapshots need dirty page tracking: set "
                                         "track_dirty_pages in the machine configuration");
        /* Pages a truncated memory file lost would be saved as zeros (never touched). */
        if (vm_mem_file_truncated(vm, err))
                return -EIO;
        describe(vm, diff, &info);
        r = snapshot_files_begin(&files, state_path, mem_path, guest_mem_backing_file(vm->mem),
                                 info.mem.id, err);
        if (r)
                return r;
        snapbuf_writer_init(&w);
        snapbuf_writer_init(&devs);
        /* Devices first: completing their in-flight work changes memory and interrupts. */
        vm_devices_save(vm->devices, &devs);
        if (tracking) {
                r = take_dirty(vm, &dirty, err);
                if (r)
                        goto out;
        }
        /* After the devices' save: the plugged blocks are final. */
        if (hotplug)
                virtio_mem_layout(hotplug, &hp);
        info.mem.hotplug_bytes = hotplug ? hp.nr_blocks * hp.block_size : 0;
        r = snapshot_write_memory(vm->mem, snapshot_files_mem_fd(&files), diff ? dirty : NULL,
                                  hotplug ? &hp : NULL, &info.mem);
        if (r) {
                /* EIO, EFAULT: a page of the memory file this VM runs from is gone. */
                if (!vm_mem_file_truncated(vm, err))
                        error_set(err, r, "snapshot memory file '%s': %s", mem_path, strerror(-r));
                goto out;
        }
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_INFO);
        snapshot_info_save(&w, &info);
        snapbuf_end_section(&w, sec);
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_CONF);
        snapshot_config_save(&w, cfg);
        snapbuf_end_section(&w, sec);
        /* The CPU configuration: the template and what the vCPUs have (vCPU 0's). */
        r = x86_cpu_record_read(vm->cpu, vcpu_fd(vm->vcpus[0]), err);
        if (r)
                goto out;
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_CPUC);
        x86_cpu_record_save(&w, vm->cpu);
        snapbuf_end_section(&w, sec);
        r = save_machine(vm, &w, err);
        if (!r) {
                snapbuf_put_bytes(&w, devs.data, devs.len);
                w.failed |= devs.failed;
                r = snapshot_files_commit(&files, &w, err);
        }
out:
        snapshot_files_end(&files);
        /* A snapshot that was not written cannot be the base of the next Diff. */
        if (r && dirty)
                guest_mem_restore_dirty(vm->mem, dirty);
        if (!r)
                vm->mem_base = info.mem.id;
        free(dirty);
        snapbuf_writer_free(&w);
        snapbuf_writer_free(&devs);
        if (!r)
                LOG_INFO("%s snapshot written: %s, %s", diff ? "Diff" : "Full", state_path,
                         mem_path);
        return r;
}

/* ---- restore ---- */

int vm_restore_memory(const struct vm_restore *rs, const struct guest_mem_spec *spec,
                      struct error *err, struct guest_mem **out, int *uffd)
{
        const struct snapshot_info *info = rs->info;
        struct guest_mem_spec s = *spec;
        struct guest_mem *mem;
        int fd = -1, r;

        *uffd = -1;
        if ((spec->flags & GUEST_MEM_HUGEPAGES) && !rs->mem_uffd)
                return error_config(err, "a snapshot's memory file cannot be mapped with 2 MiB "
                                         "huge pages (load it with huge_pages None, or serve its "
                                         "memory with the Uffd backend)");
        if (info->mem_bytes != spec->size)
                return error_config(err,
                                    "the snapshot's memory (%llu bytes) does not match its "
                                    "configuration (%llu MiB)",
                                    (unsigned long long)info->mem_bytes,
                                    (unsigned long long)(spec->size >> 20));
        if (rs->mem_uffd) {
                /* Anonymous memory the handler fills: nothing to check here but the layout
                 * (the handler checks the memory file it serves, docs/snapshots.md). */
                s.flags |= GUEST_MEM_USERFAULT;
        } else {
                fd = snapshot_open_memory(rs->mem_path, info, err);
                if (fd < 0)
                        return fd;
                s.flags |= GUEST_MEM_FILE;
                s.file = fd;
        }
        r = guest_mem_create(&s, err, &mem);
        if (fd >= 0)
                close(fd);
        if (r)
                return r;
        /* The layout must be the one the snapshot was taken with. */
        if (guest_mem_region_count(mem) != info->nr_regions)
                r = -EINVAL;
        for (unsigned i = 0; !r && i < info->nr_regions; i++) {
                struct guest_mem_region g = guest_mem_region_get(mem, i);

                if (g.gpa != info->regions[i].gpa || g.size != info->regions[i].size ||
                    g.offset != info->regions[i].offset)
                        r = -EINVAL;
        }
        if (r) {
                guest_mem_destroy(mem);
                return error_config(err, "the snapshot's memory layout is not this VMM's: a "
                                         "snapshot of a different machine");
        }
        if (rs->mem_uffd) {
                *uffd = uffd_register_guest_mem(mem, err);
                if (*uffd < 0) {
                        r = *uffd;
                        guest_mem_destroy(mem);
                        return r;
                }
        }
        *out = mem;
        return 0;
}

static int section(struct snapbuf_reader *r, uint32_t tag, struct snapbuf_reader *sec,
                   const char *what, struct error *err)
{
        if (!snapbuf_get_section(r, tag, sec, what))
                return error_config(err, "snapshot state: %s", r->err);
        return 0;
}

static int reader_error(struct snapbuf_reader *r, struct error *err)
{
        return error_config(err, "snapshot state: %s", r->err);
}

/* The plugged blocks of the virtio-mem region (its device state restored: the bitmap is
 * the snapshot's), from the memory file after RAM. */
static int restore_hotplug(struct vm *vm, const struct vm_restore *rs, struct error *err)
{
        struct virtio_mem *m = vm_devices_mem(vm->devices);
        struct snapshot_mem_id id;
        struct virtio_mem_layout hp;
        int fd, r;

        if (!m)
                return 0;
        virtio_mem_layout(m, &hp);
        fd = snapshot_open_memory(rs->mem_path, rs->info, err);
        if (fd < 0)
                return fd;
        r = snapshot_read_mem_id(fd, &id);
        if (!r)
                r = snapshot_read_hotplug(fd, &id, &hp);
        close(fd);
        if (r == -EINVAL)
                return error_config(err,
                                    "snapshot memory file '%s' holds %llu bytes of hotpluggable "
                                    "memory; the VM's region is %llu bytes",
                                    rs->mem_path, (unsigned long long)id.hotplug_bytes,
                                    (unsigned long long)(hp.nr_blocks * hp.block_size));
        if (r)
                return error_set(err, r, "snapshot memory file '%s': the hotpluggable memory: %s",
                                 rs->mem_path, strerror(-r));
        return 0;
}

int vm_restore_state(struct vm *vm, const struct vm_restore *rs, struct error *err)
{
        struct x86_cpu_state_env env = cpu_env(vm);
        struct snapbuf_reader *r = rs->state, sec;
        struct kvm_clock_data clock;
        int ret;

        if (rs->info->nr_vcpus != vm->nr_vcpus ||
            rs->info->nr_devices != vm_devices_count(vm->devices))
                return error_config(err,
                                    "snapshot state: %u vCPUs and %u devices, its "
                                    "configuration makes %u and %u",
                                    rs->info->nr_vcpus, rs->info->nr_devices, vm->nr_vcpus,
                                    vm_devices_count(vm->devices));
        ret = section(r, SNAPSHOT_TAG_KVM, &sec, "irqchip", err);
        if (!ret)
                ret = kvm_restore_vm_state(vm->kvm, &sec, &clock, err);
        for (unsigned i = 0; !ret && i < vm->nr_vcpus; i++) {
                ret = section(r, SNAPSHOT_TAG_VCPU, &sec, "vcpu", err);
                if (!ret && snapbuf_get_u32(&sec, "vcpu index") != i)
                        ret = snapbuf_ok(&sec) ? error_config(err, "snapshot state: vCPUs out of "
                                                                   "order")
                                               : reader_error(&sec, err);
                if (!ret)
                        ret = x86_cpu_state_restore(&env, vcpu_fd(vm->vcpus[i]), &sec, err);
                if (ret)
                        error_prefix(err, "vcpu%u", i);
        }
        if (!ret) {
                struct kvm_clock_data set =
                    kvm_clock_for_load(&clock, rs->clock_realtime, realtime_ns());

                ret = kvm_set_clock(vm->kvm, &set, err);
                if (!ret && rs->clock_realtime) {
                        if (set.flags & KVM_CLOCK_REALTIME)
                                LOG_INFO("clock_realtime: KVM moves the guest's clock on by the "
                                         "wall-clock time since the snapshot");
                        else if (clock.realtime)
                                LOG_INFO("clock_realtime: the guest's clock moved on by %llu ms, "
                                         "the wall-clock time since the snapshot",
                                         (unsigned long long)(set.clock - clock.clock) / 1000000);
                        else
                                LOG_WARN("clock_realtime: the snapshot holds no wall-clock "
                                         "time: the guest's clock resumes where it stopped");
                }
        }
        if (!ret)
                ret = section(r, SNAPSHOT_TAG_SERL, &sec, "serial", err);
        if (!ret && (serial_restore(vm->serial, &sec) || !snapbuf_expect_end(&sec, "serial")))
                ret = reader_error(&sec, err);
        if (!ret)
                ret = section(r, SNAPSHOT_TAG_KBD, &sec, "i8042", err);
        if (!ret && (i8042_restore(vm->i8042, &sec) || !snapbuf_expect_end(&sec, "i8042")))
                ret = reader_error(&sec, err);
        if (!ret)
                ret = vm_devices_restore(vm->devices, r, err);
        if (!ret)
                ret = restore_hotplug(vm, rs, err);
        if (!ret && !snapbuf_expect_end(r, "state file"))
                ret = reader_error(r, err);
        return ret;
}
