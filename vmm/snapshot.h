/*
 * Snapshot files: the state file's container and configuration encoding, the memory file
 * (full, or the dirty pages of a diff), merging a diff over its base, and describing a
 * state file. What goes into the sections is each component's business (vm_snapshot.c
 * calls them); this module knows the envelope.
 *
 * STATE FILE, format version 3. All integers little-endian.
 *
 *   offset  size  field
 *        0     8  magic "VMMSNAP\0"
 *        8     4  format version (3); any other is refused, naming both versions
 *       12     4  header length (40)
 *       16     8  payload length: the file is exactly header + payload long
 *       24     8  CRC-64/XZ (ECMA-182, reflected) of the payload
 *       32     8  reserved, 0
 *       40     -  payload: a sequence of sections
 *
 *   section = le32 tag (4 ASCII characters), le32 0, le64 body length, body. Strings are
 *   le32 length + bytes (0xffffffff: absent); blobs are le32 length + bytes, and a blob that
 *   holds a KVM structure must have that structure's exact size.
 *
 *   "INFO"  le32 version; vmm version (string); architecture ("x86_64"); u8 snapshot type
 *           (0 Full, 1 Diff); le64 creation time (CLOCK_REALTIME ns); host CPU vendor
 *           (string, e.g. "AuthenticAMD"); le64 guest RAM bytes; the memory file's identity
 *           (u8 kind, le64 id, le64 parent: see MEMORY FILE); le32 region count, then per region
 *           le64 guest address, le64 size, le64 offset in the memory file; le32 vCPU count; le32
 *           device count
 *   "CONF"  the machine configuration (snapshot_config_save: le32 version 2 (1, without the
 *           last part, is still read), boot source, machine, drives, network interfaces,
 *           vsock, balloon, entropy, confidential platform, boot timer, the metadata
 *           service's settings (present, version, imds_compat, address, le32 bitmap of the
 *           interfaces answering for it; its data store is not saved: Firecracker's rule);
 *           backends are referenced by path / TAP name, never copied)
 *   "CPUC"  the CPU configuration (arch/x86/cpu_template.h, x86_cpu_record): le32 version (1);
 *           the static template's name (string, absent: none); u8 whether a template was
 *           applied, then its kvm_capabilities (le32 count; le32 number, u8 remove), CPUID
 *           modifiers (le32 count; le32 leaf, subleaf, flags; per register eax..edx le64
 *           filter, le64 value) and MSR modifiers (le32 count; le32 index, le64 filter, le64
 *           value); vCPU 0's CPUID (le32 count of kvm_cpuid_entry2 blobs); the values of the
 *           MSRs the template changed (le32 count; le32 index, le64 value). A load refuses a
 *           host whose KVM lacks a capability bit of that CPUID, one of those MSRs or one of
 *           the template's capabilities (docs/cpu-templates.md)
 *   "KVM "  le32 version (2); the in-kernel irqchip (PIC master, PIC slave, IOAPIC); le32 1
 *           and the PIT if the VM has one, else le32 0 (version 1: the PIT, always); the
 *           KVM clock (kvm/kvm.c)
 *   "VCPU"  one per vCPU in index order: le32 index, then arch/x86/cpu_state.h's record
 *           (CPUID, MP state, registers, special registers, XSAVE or FPU, XCRs, debug
 *           registers, LAPIC, MSRs, events, TSC kHz)
 *   "SERL"  the COM1 UART (devices/serial.h)
 *   "I804"  the i8042 (devices/i8042.h)
 *   "VDEV"  one per virtio device in slot order: le32 kind (vm_device_kind), the id
 *           (drive_id / iface_id / ""), then the transport's record (devices/virtio/mmio.h:
 *           the model's own section, the registers, every queue)
 *
 *   Every count and length is checked against its limit before anything is allocated, and
 *   the sections must match the configuration they describe (vCPU count, device kinds and
 *   ids in slot order, each device's offered features); a mismatch is "a snapshot of a
 *   different machine". Where the devices are (their windows and GSIs) is not saved: the
 *   board is built again from CONF (vmm/vm_board.h), which gives the layout it gave then.
 *
 * MEMORY FILE: guest RAM, the regions back to back in address order (the INFO offsets),
 * then the virtio-mem region when the VM has one (its plugged blocks at their offsets in
 * the region, unplugged blocks holes; a Full snapshot only), then a 4 KiB trailer that
 * says which snapshot the file belongs to:
 *
 *   offset  size  field (from the end of the hotplug region)
 *        0     8  magic "VMMMEM\0\0"
 *        8     4  trailer version (2; 1, written before the hotplug region, is still read
 *                 with a region of 0 bytes)
 *       12     4  kind: 0 Full (the whole RAM), 1 Diff (only the pages written since the
 *                 memory `parent`: it must be merged over that memory file before a load)
 *       16     8  guest RAM bytes
 *       24     8  id: random, new for every snapshot; the state file names it (INFO)
 *       32     8  parent: the id of the memory a Diff goes over (0: none)
 *       40     8  hotplug region bytes (version 2; RAM + this = where the trailer starts)
 *       48  4048  zero
 *
 * A load refuses a memory file whose id is not its state file's (another snapshot's memory
 * file, even of the same size), and a Diff that was not merged.
 * A Full snapshot writes every page that is not zero and leaves the rest a hole (the file
 * is sparse). A Diff snapshot writes only the pages written since the previous snapshot
 * (KVM's dirty log for vCPU writes, guest_mem's record for the VMM's own), holes elsewhere:
 * merge it over the memory file of the snapshot it follows (snapshot_merge_memory, or
 * `vmm --base-file BASE --diff-file DIFF`, Firecracker's rebase-snap) to get a complete
 * file. Loading maps the memory file privately: pages are read when the guest first
 * touches them and the guest's writes never reach the file.
 */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "common/file.h"
#include "common/snapbuf.h"
#include "common/util.h"
#include "config.h"
#include "devices/virtio/mem.h"
#include "memory/guest_mem.h"

#define SNAPSHOT_MAGIC       "VMMSNAP"
#define SNAPSHOT_VERSION     3
#define SNAPSHOT_HEADER_LEN  40
#define SNAPSHOT_MAX_PAYLOAD (256u << 20) /* far beyond any real state file */

#define SNAPSHOT_TAG_INFO SNAPBUF_TAG('I', 'N', 'F', 'O')
#define SNAPSHOT_TAG_CONF SNAPBUF_TAG('C', 'O', 'N', 'F')
#define SNAPSHOT_TAG_CPUC SNAPBUF_TAG('C', 'P', 'U', 'C')
#define SNAPSHOT_TAG_KVM  SNAPBUF_TAG('K', 'V', 'M', ' ')
#define SNAPSHOT_TAG_VCPU SNAPBUF_TAG('V', 'C', 'P', 'U')
#define SNAPSHOT_TAG_SERL SNAPBUF_TAG('S', 'E', 'R', 'L')
#define SNAPSHOT_TAG_KBD  SNAPBUF_TAG('I', '8', '0', '4')
#define SNAPSHOT_TAG_VDEV SNAPBUF_TAG('V', 'D', 'E', 'V')

enum snapshot_type { SNAPSHOT_FULL = 0, SNAPSHOT_DIFF = 1 };

#define SNAPSHOT_MEM_MAGIC       "VMMMEM\0"
#define SNAPSHOT_MEM_TRAILER_LEN 4096u

/* Which memory a memory file holds (its trailer; the state file's INFO names it too). */
struct snapshot_mem_id {
        enum snapshot_type kind; /* Full: complete; Diff: only what changed since parent */
        uint64_t ram_bytes;
        /* The virtio-mem region after RAM (trailer version 2; 0 in version 1 files): its
         * plugged blocks at their offsets in the region, the rest holes. */
        uint64_t hotplug_bytes;
        uint64_t id;
        uint64_t parent;
};

struct snapshot_info {
        char vmm_version[32];
        char arch[16];
        enum snapshot_type type;
        uint64_t created_ns;
        char cpu_vendor[16];
        uint64_t mem_bytes;
        struct snapshot_mem_id mem; /* the memory file it needs (mem.ram_bytes = mem_bytes) */
        unsigned nr_regions;
        struct {
                uint64_t gpa, size, offset;
        } regions[GUEST_MEM_MAX_REGIONS];
        unsigned nr_vcpus;
        unsigned nr_devices;
};

const char *snapshot_type_name(enum snapshot_type t); /* "Full", "Diff" */

/* Writes the header and payload to path (a temporary file renamed into place, so a failed
 * write never leaves a half file under the name). */
int snapshot_write_state(const char *path, const struct snapbuf_writer *payload,
                         struct error *err) MUST_CHECK;
/* Reads path and checks magic, version, lengths and checksum; *payload (malloc'd, the
 * caller frees it) is the payload. Errors are ERROR_CONFIG and say what is wrong:
 * "... is not a snapshot state file", "... is truncated", "... is corrupted (checksum
 * mismatch)", "... has format version N; this VMM reads version 3", "... is not a regular
 * file: it is a FIFO" (never opened: a FIFO would block). */
int snapshot_read_state(const char *path, uint8_t **payload, size_t *len,
                        struct error *err) MUST_CHECK;

/*
 * Writing a snapshot's two files so that, whatever fails and wherever the process is killed,
 * the snapshot that was at those paths before still loads:
 *
 *   begin   both paths resolved; refused when they are the same file, when the memory path
 *           is the file the VM's memory is mapped from (restored_from: its pages are still
 *           read from it), or when either names something that is not a regular file (a
 *           device node or a FIFO is never written, nor removed); a temporary file created
 *           next to each target ("PATH.tmp-ID")
 *   (the caller writes the memory to mem_fd)
 *   commit  the state file written; both synced to the disk; the memory file that was at
 *           the path kept under a second name ("PATH.OLDID.keep", a hard link); the new
 *           memory file renamed into place, then the state file (the commit point); the
 *           kept name removed. A failure before the state file's rename puts the old memory
 *           file back.
 *
 * A kill between the two renames leaves the old state file with the new memory file: its
 * load finds its own memory file under the kept name (snapshot_open_memory). Only the
 * temporary files and the kept name, all created here, are ever removed.
 */
struct snapshot_files {
        struct file_replace state, mem;
        uint64_t id;
        char *keep; /* the old memory file's second name while the new one goes in */
        /* Tests: called after each step of the commit (a kill there is simulated). */
        void (*step_hook)(unsigned step);
};
int snapshot_files_begin(struct snapshot_files *f, const char *state_path, const char *mem_path,
                         int restored_from, uint64_t id, struct error *err) MUST_CHECK;
static inline int snapshot_files_mem_fd(const struct snapshot_files *f)
{
        return f->mem.fd;
}
int snapshot_files_commit(struct snapshot_files *f, const struct snapbuf_writer *payload,
                          struct error *err) MUST_CHECK;
/* Removes what a failed or abandoned create made; frees f. */
void snapshot_files_end(struct snapshot_files *f);

/* A new memory file id: random, never 0. */
uint64_t snapshot_new_id(void);

void snapshot_info_save(struct snapbuf_writer *w, const struct snapshot_info *info);
bool snapshot_info_load(struct snapbuf_reader *r, struct snapshot_info *info);

void snapshot_config_save(struct snapbuf_writer *w, const struct vmm_config *cfg);
/* Fills cfg (initialised here; vmm_config_free it) with the machine of the snapshot. Only
 * the shape is checked here; vmm_config_validate decides whether it is a valid machine. */
bool snapshot_config_load(struct snapbuf_reader *r, struct vmm_config *cfg);

/* Writes guest RAM to fd: every non-zero page (dirty NULL), or only the pages set in dirty
 * (guest_mem's bitmap layout: a Diff), then the plugged blocks of the virtio-mem
 * region hp (hp NULL: none; a Full only; id->hotplug_bytes = nr_blocks * block_size), then the
 * trailer of id. The file is sparse, guest_mem_size + id->hotplug_bytes + SNAPSHOT_MEM_TRAILER_LEN
 * bytes long. 0 or a negative errno. */
int snapshot_write_memory(const struct guest_mem *mem, int fd, const uint64_t *dirty,
                          const struct virtio_mem_layout *hp,
                          const struct snapshot_mem_id *id) MUST_CHECK;
/* Reads hp's plugged blocks from the memory file fd (whose trailer id is): 0, or -EINVAL
 * when the file holds no region of hp's size, or a negative errno. */
int snapshot_read_hotplug(int fd, const struct snapshot_mem_id *id,
                          const struct virtio_mem_layout *hp) MUST_CHECK;
/* Reads the trailer of the memory file fd: 0, -EINVAL when it has none (not a memory file),
 * or a negative errno. */
int snapshot_read_mem_id(int fd, struct snapshot_mem_id *out) MUST_CHECK;
/* Opens the memory file of the snapshot info describes (read-only): path, or, when path
 * holds another snapshot's memory, the copy an interrupted create kept of this one
 * ("PATH.ID.keep"). Refused (ERROR_CONFIG, naming the file and what it is): not a regular
 * file, not a memory file, another snapshot's, an unmerged Diff, truncated. */
int snapshot_open_memory(const char *path, const struct snapshot_info *info,
                         struct error *err) MUST_CHECK;
/* Copies the pages of diff (its data ranges) over base, which must be the memory file the
 * Diff follows; base then is the Diff snapshot's complete memory file. */
int snapshot_merge_memory(const char *base, const char *diff, struct error *err) MUST_CHECK;

/* --describe-snapshot: the format version and a summary of every section. */
int snapshot_describe(const char *path, FILE *out, struct error *err) MUST_CHECK;

#endif
