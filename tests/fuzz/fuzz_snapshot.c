/*
 * The snapshot state file (vmm/snapshot.h) as `vmm --describe-snapshot` and PUT
 * /snapshot/load read it: snapshot_describe, then controller_snapshot_load on a fresh
 * controller, which reads and checks the file, parses INFO and CONF, applies the load's
 * rules, validates the machine and builds the VM from it (memory file, devices with their
 * backends) as far as opening KVM (a path that does not exist).
 *
 * Input: a mode byte, then the file. Mode bit 0 clear: the rest is the payload, and the
 * harness writes the header around it (magic, version, lengths, the CRC-64 computed over
 * it), so mutations reach the sections instead of failing the checksum; set: the rest is
 * the whole file, header included. When the payload's INFO section parses, the harness also
 * makes the memory file it names (sparse, the right size and trailer), so the load gets
 * past the memory file to the machine's devices. Bit 1 set: drive_overrides,
 * network_overrides and vsock_override, pointing at scratch files and a TAP "fz0" (the
 * paths saved in a seed are those of the machine it was made on).
 *
 * Checked: a refusal (describe or load) has a one-line message; the description has no
 * control character but each line's newline (the file's strings are escaped); the load
 * never succeeds without KVM and leaves the controller Not started.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/event_loop.h"
#include "common/util.h"
#include "fuzz_common.h"
#include "vmm/controller.h"
#include "vmm/snapshot.h"

#define MAX_INPUT (1u << 20)

static struct event_loop *loop;
static int null_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fz_sandbox(argc, argv);
        fz_quiet_log();
        /* TAPs a crafted state file names are created in a network namespace of our own
         * (when the process may make one) and vanish with it. */
        if (unshare(CLONE_NEWNET) && getenv("VMM_FUZZ_LOG"))
                perror("unshare(CLONE_NEWNET)");
        if (event_loop_create(&loop))
                abort();
        null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        return 0;
}

static void fail(const char *what, const char *detail)
{
        fprintf(stderr, "%s: %s\n", what, detail);
        abort();
}

static void check_refusal(const char *what, const struct error *err)
{
        if (!err->msg[0])
                fail(what, "a refusal without a message");
        if (strchr(err->msg, '\n'))
                fail(what, err->msg);
}

/* A file of its own in the scratch directory (the working directory). */
static void write_file(const char *name, const void *data, size_t len)
{
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
                fail("scratch file", name);
        close(fd);
}

/* What the payload's INFO and CONF sections say (when they parse): the memory file it
 * names is made (RAM as holes, then the trailer of that id) and overrides get its ids. */
static struct vmm_config saved;
static bool have_saved;

static void read_payload(const uint8_t *payload, size_t len)
{
        struct snapbuf_reader r, sec;
        struct snapshot_info info;
        uint8_t trailer[48] = {0};
        int fd;

        snapbuf_reader_init(&r, payload, len);
        if (!snapbuf_get_section(&r, SNAPSHOT_TAG_INFO, &sec, "INFO") ||
            !snapshot_info_load(&sec, &info))
                return;
        if (snapbuf_get_section(&r, SNAPSHOT_TAG_CONF, &sec, "CONF")) {
                have_saved = snapshot_config_load(&sec, &saved);
                if (!have_saved)
                        vmm_config_free(&saved);
        }
        if (info.mem_bytes > GiB(4) || info.mem_bytes % 4096)
                return;
        memcpy(trailer, SNAPSHOT_MEM_MAGIC, 8);
        put_le32(trailer + 8, 1);
        put_le32(trailer + 12, SNAPSHOT_FULL);
        put_le64(trailer + 16, info.mem_bytes);
        put_le64(trailer + 24, info.mem.id);
        fd = open("mem", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)(info.mem_bytes + SNAPSHOT_MEM_TRAILER_LEN)) ||
            pwrite(fd, trailer, sizeof(trailer), (off_t)info.mem_bytes) != sizeof(trailer))
                fail("scratch file", "mem");
        close(fd);
}

/* The description has no control character but the newline ending each line. */
static void check_description(const char *text, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)text[i];

                if ((c < 0x20 && c != '\n') || c == 0x7f)
                        fail("a control character in the description", text);
        }
}

static void describe(void)
{
        struct error err = {0};
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);

        if (!out)
                abort();
        if (snapshot_describe("state", out, &err))
                check_refusal("describe", &err);
        fclose(out);
        check_description(text, len);
        free(text);
}

/* Every saved drive on a scratch file, every interface on a TAP "fzN", the vsock on a
 * scratch socket, plus an id the snapshot does not have (refused: a path of its own) when
 * the file names nothing. */
static void add_overrides(struct vmm_snapshot_load *l)
{
        if (!have_saved || (!saved.nr_drives && !saved.nr_nets)) {
                l->drive_overrides[0].id = strdup("none");
                l->drive_overrides[0].value = strdup("disk");
                l->nr_drive_overrides = 1;
                return;
        }
        for (unsigned i = 0; i < saved.nr_drives; i++) {
                l->drive_overrides[i].id = strdup(saved.drives[i].drive_id);
                l->drive_overrides[i].value = strdup("disk");
        }
        l->nr_drive_overrides = saved.nr_drives;
        for (unsigned i = 0; i < saved.nr_nets; i++) {
                char tap[16];

                snprintf(tap, sizeof(tap), "fz%u", i);
                l->net_overrides[i].id = strdup(saved.nets[i].iface_id);
                l->net_overrides[i].value = strdup(tap);
        }
        l->nr_net_overrides = saved.nr_nets;
        if (saved.vsock.present)
                l->vsock_uds_path = strdup("v.sock");
}

static void load(bool overrides)
{
        struct controller_params p = {
            .loop = loop,
            .instance_id = "fuzz",
            .kvm_path = "/nonexistent/kvm", /* the load stops there */
            .console_in_fd = -1,
            .console_out_fd = null_fd,
        };
        struct vmm_snapshot_load l = {0};
        struct vmm_config cfg;
        struct controller *c;
        struct error err = {0};

        vmm_config_init(&cfg);
        if (controller_create(&p, &cfg, &err, &c))
                abort();
        l.snapshot_path = strdup("state");
        l.mem_file_path = strdup("mem");
        if (overrides)
                add_overrides(&l);
        if (!controller_snapshot_load(c, &l, &err))
                fail("load", "succeeded without KVM");
        check_refusal("load", &err);
        if (getenv("VMM_FUZZ_LOG"))
                fprintf(stderr, "load: %s\n", err.msg);
        if (controller_get_state(c) != CONTROLLER_NOT_STARTED)
                fail("load", "a refused load left the controller started");
        vmm_snapshot_load_free(&l);
        controller_close(c);
        controller_destroy(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t hdr[SNAPSHOT_HEADER_LEN] = {0};
        const uint8_t *payload;
        uint8_t mode;
        size_t len;

        if (size < 1 || size > MAX_INPUT)
                return 0;
        mode = data[0];
        payload = data + 1;
        len = size - 1;
        if (mode & 1) {
                write_file("state", payload, len);
                if (len > SNAPSHOT_HEADER_LEN)
                        read_payload(payload + SNAPSHOT_HEADER_LEN, len - SNAPSHOT_HEADER_LEN);
        } else {
                int fd = open("state", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

                memcpy(hdr, SNAPSHOT_MAGIC, 8);
                put_le32(hdr + 8, SNAPSHOT_VERSION);
                put_le32(hdr + 12, SNAPSHOT_HEADER_LEN);
                put_le64(hdr + 16, len);
                put_le64(hdr + 24, snapbuf_crc64(0, payload, len));
                if (fd < 0 || write(fd, hdr, sizeof(hdr)) != sizeof(hdr) ||
                    (len && write(fd, payload, len) != (ssize_t)len))
                        fail("scratch file", "state");
                close(fd);
                read_payload(payload, len);
        }
        write_file("disk", "\0", 1);
        describe();
        load(mode & 2);
        if (have_saved)
                vmm_config_free(&saved);
        have_saved = false;
        fz_quiet_log();
        fz_scratch_clean();
        return 0;
}
