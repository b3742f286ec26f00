/*
 * metrics/http - the request half of the minimal HTTP/1.x server behind the
 * metrics endpoint (RFC 9112 §2-§3 and §5: request line and header fields;
 * RFC 9110 §9.3.1-§9.3.2: GET and HEAD). Pure: bytes in, a decision out.
 *
 * Only what a Prometheus scraper sends is understood: one request, then the
 * connection closes (no keep-alive, no body, no chunked transfer coding). The
 * head is bounded by the caller (METRICS_HTTP_MAX_HEAD).
 */
#ifndef TERN_METRICS_HTTP_H
#define TERN_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* The largest request head (request line and header fields) accepted. */
#define METRICS_HTTP_MAX_HEAD 8192

enum metrics_http_verdict {
    METRICS_HTTP_MORE = 0,        /* the head is not complete yet */
    METRICS_HTTP_OK = 200,        /* GET or HEAD of /metrics */
    METRICS_HTTP_BAD = 400,       /* malformed request line or header field */
    METRICS_HTTP_NOT_FOUND = 404, /* another path */
    METRICS_HTTP_METHOD = 405,    /* another method on /metrics */
    METRICS_HTTP_TOO_LARGE = 431, /* the head passed METRICS_HTTP_MAX_HEAD */
    METRICS_HTTP_VERSION = 505,   /* not HTTP/1.0 or HTTP/1.1 */
};

/* What a complete request asks for. */
struct metrics_http_request {
    bool head; /* HEAD: the same answer without its body */
};

/* Look at the first len octets received on a connection. Returns
   METRICS_HTTP_MORE while the head (ending with an empty line, CRLF or bare
   LF) is incomplete and shorter than METRICS_HTTP_MAX_HEAD, else the status
   to answer with; req is filled for METRICS_HTTP_OK. */
enum metrics_http_verdict metrics_http_parse(const char *p, size_t len,
                                             struct metrics_http_request *req);

/* The reason phrase of a status the endpoint sends. */
const char *metrics_http_reason(int status);

#endif
