/*
 * fuzz_data - libFuzzer target for the DATA / BDAT decoder
 * (src/smtp/data.c, RFC 5321 §4.1.1.4, §4.5.2, RFC 3030). The first input
 * octet selects DATA or BDAT, the newline policy and the line limit; the
 * rest is the content. Invariants:
 *  - feeding in pieces (sizes derived from the input) gives the same
 *    content, end, flags and counters as one feed;
 *  - no call writes more than 2 * in_len + 2 octets (exact-size heap
 *    buffers, so ASan sees any overflow);
 *  - DATA ends exactly after the first CR LF "." CR LF of CRLF + input;
 *  - normalized content holds no bare CR or LF; `octets` counts the output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

struct run {
    uint8_t *out;
    size_t out_len, consumed;
    bool ended;
    struct smtp_data_dec d;
};

static void feed(const uint8_t *cfg, const uint8_t *in, size_t len, const uint8_t *sizes,
                 size_t nsizes, struct run *r)
{
    smtp_data_init(&r->d, cfg[0] & 1, (cfg[0] & 2) ? SMTP_NEWLINE_NORMALIZE : SMTP_NEWLINE_REJECT,
                   3 + cfg[0] / 4, 1 + cfg[0] % 5);
    r->out = malloc(2 * len + 4);
    r->out_len = r->consumed = 0;
    r->ended = false;
    size_t k = 0;
    while (r->consumed < len && !r->ended) {
        size_t n = nsizes ? 1 + sizes[k++ % nsizes] % 16 : len;
        if (n > len - r->consumed)
            n = len - r->consumed;
        uint8_t *buf = malloc(2 * n + 2);
        size_t used, wrote;
        r->ended = smtp_data_feed(&r->d, in + r->consumed, n, &used, buf, &wrote);
        if (used > n || wrote > 2 * n + 2 || (!r->ended && used != n))
            abort();
        memcpy(r->out + r->out_len, buf, wrote);
        free(buf);
        r->out_len += wrote;
        r->consumed += used;
    }
    uint8_t tail[2];
    size_t wrote;
    smtp_data_finish(&r->d, tail, &wrote);
    if (wrote > 2)
        abort();
    memcpy(r->out + r->out_len, tail, wrote);
    r->out_len += wrote;
    if (r->d.octets != r->out_len || r->ended != r->d.ended)
        abort();
}

/* Index just past the first CRLF "." CRLF in CRLF + in, or 0 when none. */
static size_t oracle_end(const uint8_t *in, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        if (in[i] != '.' || in[i + 1] != '\r' || in[i + 2] != '\n')
            continue;
        if (i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n'))
            return i + 3;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    bool bdat = data[0] & 1, norm = data[0] & 2;
    struct run a, b;
    feed(data, in, len, NULL, 0, &a);
    feed(data, in, len, in, len < 32 ? len : 32, &b);
    if (a.out_len != b.out_len || memcmp(a.out, b.out, a.out_len) != 0 ||
        a.consumed != b.consumed || a.ended != b.ended || a.d.flags != b.d.flags ||
        a.d.headers != b.d.headers || a.d.in_headers != b.d.in_headers)
        abort();
    if (bdat && (a.ended || a.consumed != len))
        abort();
    if (!bdat) {
        size_t e = oracle_end(in, len);
        if (a.ended != (e != 0) || (e != 0 && a.consumed != e))
            abort();
        if (a.ended && a.out_len > 0 &&
            (a.out_len < 2 || a.out[a.out_len - 2] != '\r' || a.out[a.out_len - 1] != '\n'))
            abort();
    }
    if (norm) {
        for (size_t i = 0; i < a.out_len; i++) {
            if (a.out[i] == '\n' && (i == 0 || a.out[i - 1] != '\r'))
                abort();
            if (a.out[i] == '\r' && (i + 1 >= a.out_len || a.out[i + 1] != '\n'))
                abort();
        }
        if (a.d.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF))
            abort();
    }
    if (memchr(a.out, 0, a.out_len) != NULL && !(a.d.flags & SMTP_DATA_NUL))
        abort();
    if (a.out_len > 2 * len + 2)
        abort();
    free(a.out);
    free(b.out);
    return 0;
}
