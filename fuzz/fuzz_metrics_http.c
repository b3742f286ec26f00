/*
 * fuzz_metrics_http - libFuzzer target for the request parser of the metrics
 * endpoint (src/metrics/http.c). The input is what a client sent (any
 * octets, at most twice the head limit).
 * Invariants:
 *  - the verdict is one of the statuses the endpoint knows, each with a
 *    reason phrase;
 *  - every prefix of the input gets "more" or the same verdict once the head
 *    is complete: a verdict never depends on octets after the head's end;
 *  - input of the head limit or more never asks for more;
 *  - a 200 comes only for a request line that starts with "GET /metrics" or
 *    "HEAD /metrics", and an input holding a NUL before the head's end is
 *    never a 200.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/http.h"

static int known(int v)
{
    return v == 0 || v == 200 || v == 400 || v == 404 || v == 405 || v == 431 || v == 505;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * METRICS_HTTP_MAX_HEAD)
        return 0;
    const char *p = (const char *)data;
    struct metrics_http_request req = {0};
    int v = (int)metrics_http_parse(p, size, &req);
    if (!known(v) || (v && strcmp(metrics_http_reason(v), "Error") == 0))
        abort();
    if (size >= METRICS_HTTP_MAX_HEAD && v == 0)
        abort();
    if (v == 200) {
        if (!(size >= 13 && memcmp(p, "GET /metrics", 12) == 0) &&
            !(size >= 14 && memcmp(p, "HEAD /metrics", 13) == 0))
            abort();
        if (req.head != (p[0] == 'H'))
            abort();
    }
    /* the shortest prefix with a verdict has the same verdict (checked on a
       few prefix lengths to stay fast) */
    if (v != 0 && v != 431) {
        size_t lo = 0, hi = size;
        while (lo < hi) { /* smallest n with a verdict */
            size_t mid = lo + (hi - lo) / 2;
            if (metrics_http_parse(p, mid, NULL) == 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        int first = (int)metrics_http_parse(p, lo, NULL);
        if (first != v)
            abort();
        if (v == 200 && memchr(p, '\0', lo))
            abort();
    }
    return 0;
}
