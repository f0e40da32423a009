/*
 * The guest's HTTP requests to the MMDS and their answers, byte for byte as Firecracker's
 * (its micro_http request parser, then its MMDS rules; docs/mmds.md lists them):
 *
 * - A request ends at its first blank line ("\n\n" or "\n\r\n"); it has no body (any
 *   Content-Length but 0 is "Invalid request."). Lines end in CRLF; the request line is
 *   METHOD SP URI SP HTTP/1.0|HTTP/1.1; methods GET, PUT, PATCH, DELETE (others: 501).
 * - GET reads the store at the path, a JSON pointer ("//" collapsed, one trailing '/'
 *   ignored): JSON with "Accept: application/json", IMDS text otherwise or with imds_compat.
 *   V2 requires a valid X-metadata-token (or X-aws-ec2-metadata-token): 401 otherwise; V1
 *   only counts requests without a valid one (rx_no_token, rx_invalid_token).
 * - PUT /latest/api/token with X-metadata-token-ttl-seconds (or
 *   X-aws-ec2-metadata-token-ttl-seconds) of 1 to 21600 answers a token; X-Forwarded-For
 *   refuses it (400).
 * - PATCH and DELETE: 405 with "Allow: GET, PUT".
 *
 * Answers: "HTTP/1.x NNN \r\n" (no reason phrase, as micro_http writes it), "Connection:
 * keep-alive", Content-Type and Content-Length, the body. (Firecracker also sends
 * "Server: Firecracker API"; this service does not claim to be Firecracker.)
 */
#ifndef DEVICES_MMDS_MMDS_HTTP_H
#define DEVICES_MMDS_MMDS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "mmds.h"

/* Where the first request in buf ends (just after its blank line), 0 when not there yet. */
size_t mmds_http_request_end(const uint8_t *buf, size_t len);

/* The answer to one request (the bytes up to mmds_http_request_end), appended to out. */
void mmds_http_respond(struct mmds *m, const uint8_t *req, size_t len, struct mmds_buf *out);

#endif
