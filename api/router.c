#include "router.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config_json.h"
#include "http.h"

#define MAX_SEGMENTS 4

/* A body parser: fills req (action and payload) from the JSON body and the path id. */
typedef int (*parse_fn)(const cJSON *j, const char *id, struct controller_request *req,
                        struct error *err);

struct route {
        const char *method;
        const char *pattern; /* '/'-separated segments, "{id}" captures one */
        int action;          /* the command (or, with a parser, the one counted on refusal) */
        parse_fn parse;      /* NULL: no body, the command is `action` */
        const char *not_implemented; /* the feature's name when the endpoint is not */
};

/* ---- body parsers ---- */

static const char *const id_mismatch = "The id from the path does not match the id from the "
                                       "body!";

static int parse_put_machine(const cJSON *j, const char *id, struct controller_request *req,
                             struct error *err)
{
        (void)id;
        req->action = VMM_PUT_MACHINE_CONFIG;
        return api_parse_machine(j, true, &req->u.machine.update, &req->u.machine.cpu_hide, err);
}

static int parse_patch_machine(const cJSON *j, const char *id, struct controller_request *req,
                               struct error *err)
{
        (void)id;
        req->action = VMM_PATCH_MACHINE_CONFIG;
        return api_parse_machine(j, false, &req->u.machine.update, &req->u.machine.cpu_hide, err);
}

static int parse_vm(const cJSON *j, const char *id, struct controller_request *req,
                    struct error *err)
{
        enum vmm_action a;
        int r = api_parse_vm_state(j, &a, err);

        (void)id;
        if (!r)
                req->action = a;
        return r;
}

static int parse_actions(const cJSON *j, const char *id, struct controller_request *req,
                         struct error *err)
{
        enum vmm_action a;
        int r = api_parse_action(j, &a, err);

        (void)id;
        if (!r)
                req->action = a;
        return r;
}

static int parse_boot(const cJSON *j, const char *id, struct controller_request *req,
                      struct error *err)
{
        (void)id;
        req->action = VMM_PUT_BOOT_SOURCE;
        return api_parse_boot_source(j, &req->u.boot, err);
}

static int check_id(const char *path_id, const char *body_id, struct error *err)
{
        return strcmp(path_id, body_id) ? error_set(err, -EINVAL, "%s", id_mismatch) : 0;
}

static int parse_put_drive(const cJSON *j, const char *id, struct controller_request *req,
                           struct error *err)
{
        req->action = VMM_PUT_DRIVE;
        int r = api_parse_drive(j, &req->u.drive, err);
        return r ? r : check_id(id, req->u.drive.drive_id, err);
}

static int parse_patch_drive(const cJSON *j, const char *id, struct controller_request *req,
                             struct error *err)
{
        req->action = VMM_PATCH_DRIVE;
        int r = api_parse_drive_update(j, &req->u.drive_update, err);
        return r ? r : check_id(id, req->u.drive_update.drive_id, err);
}

static int parse_put_net(const cJSON *j, const char *id, struct controller_request *req,
                         struct error *err)
{
        req->action = VMM_PUT_NET;
        int r = api_parse_net(j, &req->u.net, err);
        return r ? r : check_id(id, req->u.net.iface_id, err);
}

static int parse_patch_net(const cJSON *j, const char *id, struct controller_request *req,
                           struct error *err)
{
        req->action = VMM_PATCH_NET;
        int r = api_parse_net_update(j, &req->u.net_update, err);
        return r ? r : check_id(id, req->u.net_update.iface_id, err);
}

static int parse_vsock(const cJSON *j, const char *id, struct controller_request *req,
                       struct error *err)
{
        (void)id;
        req->action = VMM_PUT_VSOCK;
        return api_parse_vsock(j, &req->u.vsock, err);
}

static int parse_entropy(const cJSON *j, const char *id, struct controller_request *req,
                         struct error *err)
{
        (void)id;
        req->action = VMM_PUT_ENTROPY;
        return api_parse_entropy(j, &req->u.entropy, err);
}

static int parse_confidential(const cJSON *j, const char *id, struct controller_request *req,
                              struct error *err)
{
        (void)id;
        req->action = VMM_PUT_CONFIDENTIAL;
        return api_parse_confidential(j, &req->u.confidential, err);
}

static int parse_memory_dump(const cJSON *j, const char *id, struct controller_request *req,
                             struct error *err)
{
        (void)id;
        req->action = VMM_PUT_MEMORY_DUMP;
        return api_parse_memory_dump(j, &req->u.memory_dump_path, err);
}

static int parse_serial(const cJSON *j, const char *id, struct controller_request *req,
                        struct error *err)
{
        (void)id;
        req->action = VMM_PUT_SERIAL;
        return api_parse_serial(j, &req->u.serial_out_path, err);
}

static int parse_put_balloon(const cJSON *j, const char *id, struct controller_request *req,
                             struct error *err)
{
        (void)id;
        req->action = VMM_PUT_BALLOON;
        return api_parse_balloon(j, &req->u.balloon, err);
}

static int parse_patch_balloon(const cJSON *j, const char *id, struct controller_request *req,
                               struct error *err)
{
        (void)id;
        req->action = VMM_PATCH_BALLOON;
        return api_parse_balloon_update(j, &req->u.balloon_amount_mib, err);
}

static int parse_patch_balloon_stats(const cJSON *j, const char *id, struct controller_request *req,
                                     struct error *err)
{
        (void)id;
        req->action = VMM_PATCH_BALLOON_STATS;
        return api_parse_balloon_stats_update(j, &req->u.balloon_stats_interval_s, err);
}

static int parse_snapshot_create(const cJSON *j, const char *id, struct controller_request *req,
                                 struct error *err)
{
        (void)id;
        req->action = VMM_SNAPSHOT_CREATE;
        return api_parse_snapshot_create(j, &req->u.snapshot_create, err);
}

static int parse_snapshot_load(const cJSON *j, const char *id, struct controller_request *req,
                               struct error *err)
{
        (void)id;
        req->action = VMM_SNAPSHOT_LOAD;
        return api_parse_snapshot_load(j, &req->u.snapshot_load, err);
}

static int parse_logger(const cJSON *j, const char *id, struct controller_request *req,
                        struct error *err)
{
        (void)id;
        req->action = VMM_PUT_LOGGER;
        return api_parse_logger(j, &req->u.logger, err);
}

static int parse_metrics(const cJSON *j, const char *id, struct controller_request *req,
                         struct error *err)
{
        (void)id;
        req->action = VMM_PUT_METRICS;
        return api_parse_metrics(j, &req->u.metrics, err);
}

/* ---- the table ---- */

#define NI(method, pattern, what)                                                                  \
        {                                                                                          \
                method, pattern, -1, NULL, what                                                    \
        }

static const struct route routes[] = {
    {"GET", "", VMM_GET_INSTANCE_INFO, NULL, NULL},
    {"GET", "version", VMM_GET_VERSION, NULL, NULL},
    {"GET", "machine-config", VMM_GET_MACHINE_CONFIG, NULL, NULL},
    {"PUT", "machine-config", VMM_PUT_MACHINE_CONFIG, parse_put_machine, NULL},
    {"PATCH", "machine-config", VMM_PATCH_MACHINE_CONFIG, parse_patch_machine, NULL},
    {"GET", "vm/config", VMM_GET_VM_CONFIG, NULL, NULL},
    {"PATCH", "vm", VMM_PAUSE, parse_vm, NULL},
    {"PUT", "actions", VMM_INSTANCE_START, parse_actions, NULL},
    {"PUT", "boot-source", VMM_PUT_BOOT_SOURCE, parse_boot, NULL},
    {"PUT", "drives/{id}", VMM_PUT_DRIVE, parse_put_drive, NULL},
    {"PATCH", "drives/{id}", VMM_PATCH_DRIVE, parse_patch_drive, NULL},
    {"PUT", "network-interfaces/{id}", VMM_PUT_NET, parse_put_net, NULL},
    {"PATCH", "network-interfaces/{id}", VMM_PATCH_NET, parse_patch_net, NULL},
    {"PUT", "vsock", VMM_PUT_VSOCK, parse_vsock, NULL},
    {"PUT", "entropy", VMM_PUT_ENTROPY, parse_entropy, NULL},
    {"PUT", "confidential", VMM_PUT_CONFIDENTIAL, parse_confidential, NULL},
    {"GET", "vm/memory/{id}", VMM_GET_MEMORY, NULL, NULL},
    {"PUT", "vm/memory-dump", VMM_PUT_MEMORY_DUMP, parse_memory_dump, NULL},
    {"PUT", "serial", VMM_PUT_SERIAL, parse_serial, NULL},
    {"GET", "balloon", VMM_GET_BALLOON, NULL, NULL},
    {"PUT", "balloon", VMM_PUT_BALLOON, parse_put_balloon, NULL},
    {"PATCH", "balloon", VMM_PATCH_BALLOON, parse_patch_balloon, NULL},
    {"GET", "balloon/statistics", VMM_GET_BALLOON_STATS, NULL, NULL},
    {"PATCH", "balloon/statistics", VMM_PATCH_BALLOON_STATS, parse_patch_balloon_stats, NULL},
    {"PUT", "logger", VMM_PUT_LOGGER, parse_logger, NULL},
    {"PUT", "metrics", VMM_PUT_METRICS, parse_metrics, NULL},
    {"PUT", "snapshot/create", VMM_SNAPSHOT_CREATE, parse_snapshot_create, NULL},
    {"PUT", "snapshot/load", VMM_SNAPSHOT_LOAD, parse_snapshot_load, NULL},
    /* In the specification, not here yet: each answers that it is not implemented. */
    NI("GET", "mmds", "The microVM metadata service (MMDS)"),
    NI("PUT", "mmds", "The microVM metadata service (MMDS)"),
    NI("PATCH", "mmds", "The microVM metadata service (MMDS)"),
    NI("PUT", "mmds/config", "The microVM metadata service (MMDS)"),
    NI("PUT", "cpu-config", "Custom CPU templates"),
    NI("PUT", "pmem/{id}", "virtio-pmem devices"),
    NI("PATCH", "pmem/{id}", "virtio-pmem devices"),
    NI("GET", "hotplug/memory", "Memory hotplug"),
    NI("PUT", "hotplug/memory", "Memory hotplug"),
    NI("PATCH", "hotplug/memory", "Memory hotplug"),
    NI("PATCH", "balloon/hinting/start", "Balloon free page hinting"),
    NI("GET", "balloon/hinting/status", "Balloon free page hinting"),
    NI("PATCH", "balloon/hinting/stop", "Balloon free page hinting"),
};

/* ---- responses ---- */

static void set_json(struct api_response *resp, unsigned status, cJSON *j)
{
        resp->status = status;
        resp->body = j ? cJSON_PrintUnformatted(j) : NULL;
        cJSON_Delete(j);
        if (!resp->body) {
                resp->status = 500;
                resp->body = strdup("{\"fault_message\":\"out of memory\"}");
        }
        resp->len = resp->body ? strlen(resp->body) : 0;
}

void api_fault(struct api_response *resp, unsigned status, const char *fmt, ...)
{
        char msg[sizeof(((struct error *)0)->msg) + 128];
        cJSON *j = cJSON_CreateObject();
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (j && !cJSON_AddStringToObject(j, "fault_message", msg)) {
                cJSON_Delete(j);
                j = NULL;
        }
        set_json(resp, status, j);
}

void api_response_free(struct api_response *resp)
{
        free(resp->body);
        memset(resp, 0, sizeof(*resp));
}

void api_reply(const struct controller_request *req, struct api_response *resp)
{
        const struct controller_reply *rep = &req->reply;
        cJSON *j;

        memset(resp, 0, sizeof(*resp));
        if (rep->status) {
                api_fault(resp, 400, "%s", rep->err.msg);
                return;
        }
        switch (req->action) {
        case VMM_GET_INSTANCE_INFO:
                j = cJSON_CreateObject();
                if (j) {
                        cJSON_AddStringToObject(j, "id", rep->id);
                        cJSON_AddStringToObject(j, "state", controller_state_name(rep->state));
                        cJSON_AddStringToObject(j, "vmm_version", VMM_VERSION);
                        cJSON_AddStringToObject(j, "app_name", VMM_APP_NAME);
                }
                set_json(resp, 200, j);
                return;
        case VMM_GET_VERSION:
                j = cJSON_CreateObject();
                if (j)
                        cJSON_AddStringToObject(j, "firecracker_version", VMM_VERSION);
                set_json(resp, 200, j);
                return;
        case VMM_GET_MACHINE_CONFIG:
                set_json(resp, 200, rep->config ? api_json_machine(&rep->config->machine) : NULL);
                return;
        case VMM_GET_VM_CONFIG:
                set_json(resp, 200, rep->config ? api_json_vm_config(rep->config) : NULL);
                return;
        case VMM_GET_BALLOON:
                set_json(resp, 200, rep->config ? api_json_balloon(&rep->config->balloon) : NULL);
                return;
        case VMM_GET_BALLOON_STATS:
                set_json(resp, 200, api_json_balloon_stats(&rep->balloon_stats));
                return;
        case VMM_GET_MEMORY:
                set_json(resp, 200,
                         api_json_memory(rep->memory_address, rep->memory, rep->memory_len));
                return;
        default:
                resp->status = 204;
                return;
        }
}

static int parse_address(const char *s, uint64_t *out)
{
        char *end;

        if (!s || !*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        *out = strtoull(s, &end, 0);
        return errno || *end ? -EINVAL : 0;
}

/* ---- routing ---- */

/* Splits the path of url ("/a/b/", decoded) into at most MAX_SEGMENTS segments (a trailing
 * '/' is ignored, as Firecracker's split_terminator does); -1 when there are more, or when
 * the path cannot be decoded (http_decode_path). */
static int split_path(const char *url, char *buf, size_t cap, char *seg[MAX_SEGMENTS])
{
        size_t len;
        int n = 0;
        char *p;

        while (*url == '/')
                url++;
        /* An escaped NUL is refused: a C string would end there, so "/drives/a%00xyz" would
         * name drive "a". */
        if (http_decode_path(url, buf, cap))
                return -1;
        len = strlen(buf);
        if (len && buf[len - 1] == '/')
                buf[len - 1] = '\0';
        if (!buf[0])
                return 0;
        for (p = buf;; p++) {
                if (n == MAX_SEGMENTS)
                        return -1;
                seg[n++] = p;
                p = strchr(p, '/');
                if (!p)
                        return n;
                *p = '\0';
        }
}

/* Whether the path matches the pattern; *id gets the "{id}" segment. An id pattern also
 * matches the path without its id (reported as an empty id). */
static bool match(const char *pattern, char *const *seg, int n, const char **id)
{
        char pat[64];
        char *pseg[MAX_SEGMENTS];
        int pn = split_path(pattern, pat, sizeof(pat), pseg);

        *id = NULL;
        for (int i = 0; i < pn; i++) {
                if (strcmp(pseg[i], "{id}") == 0) {
                        if (i == n && i == pn - 1) {
                                *id = "";
                                return true;
                        }
                        if (i >= n)
                                return false;
                        *id = seg[i];
                        continue;
                }
                if (i >= n || strcmp(pseg[i], seg[i]) != 0)
                        return false;
        }
        return pn == n;
}

/* The route for method and path (seg, n). */
static const struct route *find_route(const char *method, char *const *seg, int n, const char **id)
{
        for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
                const char *rid;

                if (!match(routes[i].pattern, seg, n, &rid))
                        continue;
                if (strcmp(routes[i].method, method) == 0) {
                        *id = rid;
                        return &routes[i];
                }
        }
        return NULL;
}

enum api_route_result api_route(const char *method, const char *url, const char *body, size_t len,
                                struct controller_request *req, int *action,
                                struct api_response *resp)
{
        const struct route *rt = NULL;
        const char *id = NULL;
        struct error err = {0};
        char buf[512];
        char *seg[MAX_SEGMENTS];
        int n = split_path(url, buf, sizeof(buf), seg);
        cJSON *j;
        int r;

        memset(resp, 0, sizeof(*resp));
        controller_request_init(req, VMM_GET_INSTANCE_INFO);
        *action = -1;
        if (n >= 0)
                rt = find_route(method, seg, n, &id);
        if (!rt) {
                api_fault(resp, 400, "Invalid request method and/or path: %s %.*s.", method,
                          (int)strcspn(url, "?"), url);
                return API_ROUTE_RESPOND;
        }
        if (rt->not_implemented) {
                api_fault(resp, 400, "%s (%s %.*s): not implemented yet.", rt->not_implemented,
                          method, (int)strcspn(url, "?"), url);
                return API_ROUTE_RESPOND;
        }
        *action = rt->action;
        if (!rt->parse) {
                if (len) {
                        api_fault(resp, 400, "%s request cannot have a body.", method);
                        return API_ROUTE_RESPOND;
                }
                req->action = (enum vmm_action)rt->action;
                /* GET /vm/memory/{address}: the address in hex (0x...) or decimal. */
                if (rt->action == VMM_GET_MEMORY && parse_address(id, &req->u.memory_address)) {
                        api_fault(resp, 400, "'%s' is not a guest physical address.", id);
                        return API_ROUTE_RESPOND;
                }
                return API_ROUTE_SUBMIT;
        }
        if (!len) {
                api_fault(resp, 400, "Empty %s request.", method);
                return API_ROUTE_RESPOND;
        }
        if (id && !*id) {
                api_fault(resp, 400, "The ID cannot be empty.");
                return API_ROUTE_RESPOND;
        }
        if (id && !vmm_valid_id(id)) {
                api_fault(resp, 400,
                          "API Resource IDs can only contain alphanumeric characters and "
                          "underscores (1 to 64 of them).");
                return API_ROUTE_RESPOND;
        }
        j = api_json_parse(body, len, &err);
        r = j ? rt->parse(j, id, req, &err) : -EINVAL;
        cJSON_Delete(j);
        if (r) {
                if (strcmp(err.msg, id_mismatch) == 0)
                        api_fault(resp, 400, "%s", err.msg);
                else
                        api_fault(resp, 400,
                                  "An error occurred when deserializing the json body of a "
                                  "request: %s.",
                                  err.msg);
                controller_request_clear(req);
                return API_ROUTE_RESPOND;
        }
        return API_ROUTE_SUBMIT;
}
