/*
 * The REST API without the HTTP server: request line and body -> api_route (path, method,
 * id and JSON body checks) -> a typed command -> controller_execute against a controller
 * that was never started -> api_reply. Several requests per input share one controller, so
 * sequences (PUT /drives, PUT /machine-config, GET /vm/config, InstanceStart ...) reach the
 * configuration object as the real VMM thread would.
 *
 * Input: requests separated by NUL bytes, each "METHOD URL\nBODY" (no newline: no body).
 * Checked: every answer is 200/204 or a 400 with a JSON {"fault_message"} (or a 413 with
 * one: a metadata store past its limit); a 200 body is JSON; GET /vm/config's answer is a
 * config file the parser accepts back.
 *
 * InstanceStart gets as far as opening KVM (a path that does not exist), and file paths
 * in bodies (logger, metrics, drives, vsock) are real: the target runs in the fuzz sandbox
 * and empties its scratch directory after each input.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/config_json.h"
#include "api/router.h"
#include "common/event_loop.h"
#include "fuzz_common.h"
#include "vmm/controller.h"

#define MAX_REQUESTS 32

static struct event_loop *loop;
static int null_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fz_sandbox(argc, argv);
        fz_quiet_log();
        if (event_loop_create(&loop))
                abort();
        null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        return 0;
}

static void fail(const char *what, const char *method, const char *url,
                 const struct api_response *resp)
{
        fprintf(stderr, "%s: %s %s -> %u %.*s\n", what, method, url, resp->status, (int)resp->len,
                resp->body ? resp->body : "");
        abort();
}

/* The answer's shape (router.h): 204 without a body, 200 with JSON, 400 with a fault. */
static void check_response(const char *method, const char *url, const struct api_response *resp,
                           enum vmm_action action)
{
        cJSON *j = NULL;

        if (getenv("VMM_FUZZ_LOG"))
                fprintf(stderr, "%s %s -> %u %.*s\n", method, url, resp->status, (int)resp->len,
                        resp->body ? resp->body : "");
        if (resp->status == 204) {
                if (resp->body)
                        fail("204 with a body", method, url, resp);
                return;
        }
        if (!resp->body || strlen(resp->body) != resp->len)
                fail("answer without a proper body", method, url, resp);
        j = cJSON_Parse(resp->body);
        if (!j)
                fail("answer is not JSON", method, url, resp);
        if (resp->status == 400 ||
            (resp->status == 413 && (action == VMM_PUT_MMDS || action == VMM_PATCH_MMDS))) {
                if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "fault_message")))
                        fail("error without fault_message", method, url, resp);
        } else if (resp->status != 200) {
                fail("unexpected status", method, url, resp);
        } else if (action == VMM_GET_VM_CONFIG) {
                struct vmm_config back;
                struct error err = {0};

                if (api_config_parse(resp->body, resp->len, &back, &err)) {
                        fprintf(stderr, "GET /vm/config is not a valid config file: %s\n", err.msg);
                        fail("config round trip", method, url, resp);
                }
                vmm_config_free(&back);
        }
        cJSON_Delete(j);
}

static void one_request(struct controller *c, const char *req, size_t len)
{
        char method[16], *url, *nl, *copy = malloc(len + 1);
        const char *body = "", *sp;
        struct controller_request creq;
        struct api_response resp;
        size_t body_len = 0;
        int action;

        if (!copy)
                return;
        memcpy(copy, req, len);
        copy[len] = '\0';
        sp = strchr(copy, ' ');
        if (!sp || (size_t)(sp - copy) >= sizeof(method)) {
                free(copy);
                return;
        }
        memcpy(method, copy, (size_t)(sp - copy));
        method[sp - copy] = '\0';
        url = (char *)sp + 1;
        nl = strchr(url, '\n');
        if (nl) {
                *nl = '\0';
                body = nl + 1;
                body_len = len - (size_t)(body - copy);
        }
        if (api_route(method, url, body, body_len, &creq, &action, &resp) == API_ROUTE_RESPOND) {
                if (action >= 0)
                        controller_count_rejected(c, (enum vmm_action)action);
                check_response(method, url, &resp, (enum vmm_action) - 1);
        } else {
                controller_execute(c, &creq);
                api_reply(&creq, &resp);
                check_response(method, url, &resp, creq.action);
        }
        api_response_free(&resp);
        controller_request_clear(&creq);
        free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct controller_params p = {
            .loop = loop,
            .instance_id = "fuzz",
            .kvm_path = "/nonexistent/kvm", /* InstanceStart stops there */
            .console_in_fd = -1,
            .console_out_fd = null_fd,
        };
        struct vmm_config cfg;
        struct controller *c;
        struct error err = {0};
        const char *p0 = (const char *)data, *end = p0 + size;
        unsigned n = 0;

        vmm_config_init(&cfg);
        if (controller_create(&p, &cfg, &err, &c))
                abort();
        while (p0 < end && n++ < MAX_REQUESTS) {
                const char *z = memchr(p0, '\0', (size_t)(end - p0));
                size_t len = z ? (size_t)(z - p0) : (size_t)(end - p0);

                one_request(c, p0, len);
                p0 += len + 1;
        }
        controller_close(c);
        controller_destroy(c);
        fz_quiet_log(); /* PUT /logger may have changed the level or the sink */
        fz_scratch_clean();
        return 0;
}
