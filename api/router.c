#include "router.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "config_json.h"
#include "common/util.h"
#include "http.h"

#define MAX_SEGMENTS 4

struct route {
        const char *method;
        const char *pattern; /* '/'-separated segments, "{id}" captures one; NULL: no route */
        int action;          /* the command (or, with a body that picks, the one counted on
                                refusal) */
};

/* ---- the table ---- */

/* Every command's route, from the table of commands (the endpoints not built yet too: they
 * are commands that answer so). */
#define X(NAME, PHASE, CONFIGURES, HANDLER, CLEAR, EVENT, METHOD, PATH, PARSE, METRIC)             \
        {#METHOD, PATH, VMM_##NAME},

static const struct route routes[] = {
#include "vmm/controller_actions.def"
};

#undef X

/* ---- responses ---- */

/* The whole answer: status and body (a response may be on the caller's stack, unset). */
static void set_json(struct api_response *resp, unsigned status, cJSON *j)
{
        memset(resp, 0, sizeof(*resp));
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

static void reply(const struct controller_request *req, struct api_response *resp)
{
        const struct controller_reply *rep = &req->reply;
        cJSON *j;

        memset(resp, 0, sizeof(*resp));
        if (rep->status) {
                /* Firecracker's one other status: a data store that would outgrow its limit. */
                api_fault(resp, rep->status == -EFBIG ? 413 : 400, "%s", rep->err.msg);
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
                set_json(resp, 200, rep->config ? api_json_machine_config(rep->config) : NULL);
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
        case VMM_GET_MEMORY_HOTPLUG:
                set_json(resp, 200,
                         api_json_memory_hotplug(&rep->hotplug, rep->hotplug_plugged_mib));
                return;
        case VMM_GET_BALLOON_HINTING:
                set_json(resp, 200, api_json_balloon_hinting(&rep->balloon_hinting));
                return;
        case VMM_GET_MEMORY:
                set_json(resp, 200,
                         api_json_memory(rep->memory_address, rep->memory, rep->memory_len));
                return;
        case VMM_GET_MMDS:
                /* Already JSON (the store's own printing): sent as it is. */
                resp->status = rep->mmds ? 200 : 500;
                resp->body =
                    strdup(rep->mmds ? rep->mmds : "{\"fault_message\":\"out of memory\"}");
                resp->len = resp->body ? strlen(resp->body) : 0;
                return;
        default:
                resp->status = 204;
                return;
        }
}

void api_reply(const struct controller_request *req, struct api_response *resp)
{
        reply(req, resp);
        /* Whatever the outcome (Firecracker sets the header on every answer). */
        resp->deprecation = req->deprecation;
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

                if (!routes[i].pattern || !match(routes[i].pattern, seg, n, &rid))
                        continue;
                if (strcmp(routes[i].method, method) == 0) {
                        *id = rid;
                        return &routes[i];
                }
        }
        return NULL;
}

/* Firecracker's answer to a method and path it does not serve: its router takes the body
 * rules first (a GET with a body, a PUT or PATCH without one), then names the path's first
 * segment, or the sub-resource for the few it knows ("/snapshot/...", "/balloon/...",
 * "/mmds/..."). */
static void refuse_route(const char *method, char *const *seg, int n, size_t len,
                         struct api_response *resp)
{
        const char *first = n > 0 ? seg[0] : "";
        bool put = strcmp(method, "PUT") == 0, get = strcmp(method, "GET") == 0;

        if (get && len) {
                api_fault(resp, 400, "GET request cannot have a body.");
        } else if ((put || strcmp(method, "PATCH") == 0) && !len) {
                api_fault(resp, 400, "Empty %s request.", method);
        } else if (put && strcmp(first, "snapshot") == 0) {
                if (n < 2)
                        api_fault(resp, 400, "Missing snapshot operation type.");
                else
                        api_fault(resp, 400,
                                  "Invalid request method and/or path: PUT /snapshot/%s.", seg[1]);
        } else if (put && strcmp(first, "mmds") == 0 && n >= 2) {
                api_fault(resp, 400, "Unrecognized PUT request path `%s`.", seg[1]);
        } else if (get && strcmp(first, "balloon") == 0 && n >= 2) {
                if (strcmp(seg[1], "hinting") == 0)
                        api_fault(resp, 400, "Unrecognized GET request path `/hinting/%s`.",
                                  n >= 3 ? seg[2] : "");
                else
                        api_fault(resp, 400, "Unrecognized GET request path `%s`.", seg[1]);
        } else {
                api_fault(resp, 400, "Invalid request method and/or path: %s %s.", method, first);
        }
}

/* PUT and PATCH /mmds keep the body's text: the data store holds exactly what was sent
 * (cJSON would round its large integers). It has been checked to be one JSON value. */
static bool take_body_text(struct controller_request *req, const char *body, size_t len)
{
        if (req->action != VMM_PUT_MMDS && req->action != VMM_PATCH_MMDS)
                return true;
        req->u.mmds_data.json = text_dup(body, len);
        req->u.mmds_data.len = len;
        return req->u.mmds_data.json != NULL;
}

enum api_route_result api_route(const char *method, const char *url, const char *body, size_t len,
                                struct controller_request *req, int *action,
                                struct api_response *resp)
{
        const struct route *rt = NULL;
        const char *id = NULL, *body_id = NULL;
        struct error err = {0};
        char buf[512];
        char *seg[MAX_SEGMENTS];
        int n = split_path(url, buf, sizeof(buf), seg);
        int r;

        memset(resp, 0, sizeof(*resp));
        controller_request_init(req, VMM_GET_INSTANCE_INFO);
        *action = -1;
        if (n >= 0)
                rt = find_route(method, seg, n, &id);
        if (!rt) {
                if (n < 0) { /* too many segments, or undecodable: named by the first */
                        const char *first = url + strspn(url, "/");

                        snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(first, "/?"), first);
                        seg[0] = buf;
                        n = 1;
                }
                refuse_route(method, seg, n, len, resp);
                return API_ROUTE_RESPOND;
        }
        *action = rt->action;
        if (!api_command_has_body(rt->action)) {
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
        if (!len || api_command_body_ignored(rt->action)) {
                if (!api_command_body_optional(rt->action)) {
                        api_fault(resp, 400, "Empty %s request.", method);
                        return API_ROUTE_RESPOND;
                }
                /* No body (or one never read): the command's defaults. */
                req->action = (enum vmm_action)rt->action;
                r = api_parse_command(NULL, req, &body_id, &err);
                if (!r)
                        return API_ROUTE_SUBMIT;
                api_fault(resp, 400, "%s", err.msg);
                controller_request_clear(req);
                return API_ROUTE_RESPOND;
        }
        if (id && !*id) {
                api_fault(resp, 400, "The ID cannot be empty.");
                return API_ROUTE_RESPOND;
        }
        if (id && !vmm_valid_id(id)) {
                if (strlen(id) > 64)
                        api_fault(resp, 400,
                                  "API Resource IDs can only contain alphanumeric characters and "
                                  "underscores (at most 64 of them).");
                else
                        api_fault(resp, 400,
                                  "API Resource IDs can only contain alphanumeric characters and "
                                  "underscores.");
                return API_ROUTE_RESPOND;
        }
        req->action = (enum vmm_action)rt->action;
        r = len ? api_parse_command_text(body, len, req, &body_id, &err) : 0;
        if (r == -EINVAL)
                api_fault(resp, 400,
                          "An error occurred when deserializing the json body of a request: %s.",
                          err.msg);
        else if (r)
                api_fault(resp, 400, "%s", err.msg);
        else if (id && body_id && strcmp(id, body_id) != 0 &&
                 (rt->action == VMM_PUT_NET || rt->action == VMM_PATCH_NET))
                api_fault(resp, 400,
                          "The id from the path [%s] does not match the id from the body [%s]!", id,
                          body_id);
        else if (id && body_id && strcmp(id, body_id) != 0)
                api_fault(resp, 400, "The id from the path does not match the id from the body!");
        else if (!take_body_text(req, body, len))
                api_fault(resp, 500, "out of memory");
        else
                return API_ROUTE_SUBMIT;
        controller_request_clear(req);
        return API_ROUTE_RESPOND;
}
