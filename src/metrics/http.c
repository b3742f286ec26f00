/*
 * metrics/http - the request parser of the metrics endpoint (see http.h).
 *
 * RFC 9112 §3: request-line = method SP request-target SP HTTP-version, each
 * separated by exactly one space; §5: field-line = field-name ":" OWS
 * field-value OWS, with no whitespace before the colon and no obsolete line
 * folding (both answered 400). Lines end with CRLF or a bare LF (§2.2); a CR
 * anywhere else, a NUL or another control character is refused.
 */
#include "metrics/http.h"

#include <string.h>

#define MAX_METHOD 16
#define MAX_TARGET 2048

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The length of the line at p[0..n) without its CRLF or LF, and where the
   next line starts; -1 when a CR appears elsewhere than before the LF. */
static long line_len(const char *p, size_t n, size_t *next)
{
    const char *lf = memchr(p, '\n', n);
    size_t end = lf ? (size_t)(lf - p) : n;
    *next = lf ? end + 1 : n;
    if (end > 0 && p[end - 1] == '\r')
        end--;
    if (memchr(p, '\r', end))
        return -1;
    return (long)end;
}

static enum metrics_http_verdict parse_request_line(const char *p, size_t n, bool *head,
                                                    bool *metrics_path)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p || (size_t)(sp1 - p) > MAX_METHOD)
        return METRICS_HTTP_BAD;
    size_t mlen = (size_t)(sp1 - p);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)p[i]))
            return METRICS_HTTP_BAD;
    const char *t = sp1 + 1;
    size_t rest = n - mlen - 1;
    const char *sp2 = memchr(t, ' ', rest);
    if (!sp2 || sp2 == t || (size_t)(sp2 - t) > MAX_TARGET)
        return METRICS_HTTP_BAD;
    size_t tlen = (size_t)(sp2 - t);
    if (t[0] != '/')
        return METRICS_HTTP_BAD; /* origin-form only (§3.2.1) */
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return METRICS_HTTP_BAD;
    const char *v = sp2 + 1;
    size_t vlen = rest - tlen - 1;
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT (§2.3) */
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return METRICS_HTTP_BAD;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return METRICS_HTTP_VERSION;
    size_t plen = tlen;
    const char *q = memchr(t, '?', tlen);
    if (q)
        plen = (size_t)(q - t);
    *metrics_path = plen == 8 && memcmp(t, "/metrics", 8) == 0;
    bool get = mlen == 3 && memcmp(p, "GET", 3) == 0;
    *head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
    if (!*metrics_path)
        return METRICS_HTTP_NOT_FOUND;
    return get || *head ? METRICS_HTTP_OK : METRICS_HTTP_METHOD;
}

static bool valid_field_line(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return false;
    for (const char *c = p; c < colon; c++)
        if (!is_tchar((unsigned char)*c))
            return false;
    for (const char *c = colon + 1; c < p + n; c++) {
        unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\t') || u == 0x7f)
            return false;
    }
    return true;
}

enum metrics_http_verdict metrics_http_parse(const char *p, size_t len,
                                             struct metrics_http_request *req)
{
    /* Find the empty line that ends the head. */
    size_t end = 0;
    bool complete = false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n')
            continue;
        size_t j = i + 1;
        if (j < len && p[j] == '\n') {
            end = j + 1;
            complete = true;
            break;
        }
        if (j + 1 < len && p[j] == '\r' && p[j + 1] == '\n') {
            end = j + 2;
            complete = true;
            break;
        }
    }
    if (!complete)
        return len >= METRICS_HTTP_MAX_HEAD ? METRICS_HTTP_TOO_LARGE : METRICS_HTTP_MORE;
    if (end > METRICS_HTTP_MAX_HEAD)
        return METRICS_HTTP_TOO_LARGE;
    size_t next;
    long n = line_len(p, end, &next);
    if (n <= 0)
        return METRICS_HTTP_BAD;
    bool head = false, metrics_path = false;
    enum metrics_http_verdict v = parse_request_line(p, (size_t)n, &head, &metrics_path);
    if (v == METRICS_HTTP_BAD || v == METRICS_HTTP_VERSION)
        return v;
    size_t off = next;
    for (;;) {
        long fl = line_len(p + off, end - off, &next);
        if (fl < 0)
            return METRICS_HTTP_BAD;
        if (fl == 0)
            break; /* the empty line */
        if (p[off] == ' ' || p[off] == '\t' || !valid_field_line(p + off, (size_t)fl))
            return METRICS_HTTP_BAD;
        off += next;
    }
    if (memchr(p, '\0', end))
        return METRICS_HTTP_BAD;
    if (req)
        req->head = head;
    return v;
}

const char *metrics_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}
