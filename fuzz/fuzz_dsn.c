/*
 * fuzz_dsn - libFuzzer target for DSN composition (src/deliver/dsn.c,
 * RFC 3464, RFC 6522, RFC 6533) and the 8BITMIME downgrade
 * (src/smtp/eightbit.c, RFC 6152, RFC 2045 §6.7).
 * Input: octet 0 chooses RET (bits 0-1), SMTPUTF8 (bit 2), the number of
 * recipients (bits 3-5, plus one) and a small return cap (bit 6); octet 1
 * chooses the chunk size for the converter. The rest holds NUL-separated
 * fields: a remote reply, a recipient address, an ORCPT, an ENVID, and then
 * the original message (everything after the fourth NUL).
 * Invariants:
 *  - dsn_compose returns 0 or -1, and on -1 leaves the buffer as it was;
 *  - on 0 the report, up to the returned original, is CRLF lines of at most
 *    998 octets; "--boundary" occurs exactly four times (three parts and the
 *    end); DSN_OUT_8BIT is set exactly when the report holds 8-bit octets;
 *    without SMTPUTF8, only the returned original may hold them;
 *  - the converter, fed in chunks, either cannot convert, or writes 7-bit
 *    output whose body lines are at most 76 octets and whose quoted-printable
 *    body decodes back to the original body exactly; a message without a
 *    body comes out unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dsn.h"
#include "smtp/client.h"

struct mem {
    const uint8_t *p;
    size_t n;
};

static ssize_t mem_read(void *arg, uint64_t off, void *buf, size_t n)
{
    struct mem *m = arg;
    if (off >= m->n)
        return 0;
    size_t k = m->n - (size_t)off < n ? m->n - (size_t)off : n;
    memcpy(buf, m->p + off, k);
    return (ssize_t)k;
}

static size_t count(const char *h, size_t hl, const char *needle)
{
    size_t c = 0, nl = strlen(needle);
    for (const char *s = h; (s = memmem(s, hl - (size_t)(s - h), needle, nl)) != NULL; s++)
        c++;
    return c;
}

static void check_dsn(uint8_t cfg, const char **f, const uint8_t *orig, size_t on)
{
    struct mem m = {orig, on};
    static const enum dsn_action acts[] = {DSN_ACTION_FAILED, DSN_ACTION_DELAYED,
                                           DSN_ACTION_DELIVERED, DSN_ACTION_RELAYED,
                                           DSN_ACTION_EXPANDED};
    struct dsn_rcpt rc[8];
    size_t n = 1 + ((cfg >> 3) & 7);
    for (size_t i = 0; i < n; i++) {
        rc[i] = (struct dsn_rcpt){
            .addr = i == 0 ? f[1] : "user@example.net",
            .orcpt = i % 2 == 0 ? f[2] : NULL,
            .action = acts[(i + cfg) % 5],
            .status = i == 1 ? "4.4.1" : f[0],
            .remote_mta = i == 2 ? NULL : "mx.example.net",
            .diagnostic = f[0],
            .last_attempt = 1700000000 + (int64_t)i,
            .retry_until = 1800000000,
        };
    }
    struct dsn_report r = {
        .hostname = "mx.example",
        .to = "sender@example.org",
        .unique = "00000000000000AB",
        .queue_id = "0000000000000012",
        .envid = f[3][0] != '\0' ? f[3] : NULL,
        .ret = (enum smtp_ret)(cfg & 3) % 3,
        .smtputf8 = (cfg & 4) != 0,
        .arrival = 1700000000,
        .now = 1700003600,
        .nrcpt = n,
        .rcpt = rc,
        .orig_size = on,
        .read = mem_read,
        .read_arg = &m,
        .return_max = (cfg & 64) ? 64 : 0,
    };
    struct buf out;
    buf_init(&out, 4u << 20);
    buf_puts(&out, "x");
    unsigned flags = 0;
    int res = dsn_compose(&r, &out, &flags);
    if (res != 0) {
        if (res != -1 || out.len != 1 || strcmp(out.data, "x") != 0)
            abort();
        buf_free(&out);
        return;
    }
    const char *msg = out.data + 1;
    size_t ml = out.len - 1;
    const char *b = strstr(msg, "boundary=\"");
    if (b == NULL)
        abort();
    b += 10;
    const char *q = strchr(b, '"');
    if (q == NULL || q - b > 70)
        abort();
    char needle[100];
    snprintf(needle, sizeof needle, "--%.*s", (int)(q - b), b);
    if (count(msg, ml, needle) != 4)
        abort();
    /* The third part's header section ends the generated text. */
    const char *p3 = msg;
    for (int k = 0; k < 3; k++) {
        p3 = memmem(p3, ml - (size_t)(p3 - msg), needle, strlen(needle));
        if (p3 == NULL)
            abort();
        p3++;
    }
    const char *p3e = memmem(p3, ml - (size_t)(p3 - msg), "\r\n\r\n", 4);
    if (p3e == NULL)
        abort();
    size_t gen = (size_t)(p3e - msg) + 4, col = 0;
    for (size_t i = 0; i < gen; i++) {
        if (msg[i] == '\r') {
            if (msg[i + 1] != '\n')
                abort();
            i++;
            col = 0;
        } else if (msg[i] == '\n' || ++col > 998) {
            abort();
        }
    }
    bool has8 = smtp_needs_8bit((const uint8_t *)msg, ml);
    if (has8 != ((flags & DSN_OUT_8BIT) != 0))
        abort();
    if (!r.smtputf8 && smtp_needs_8bit((const uint8_t *)msg, gen))
        abort();
    buf_free(&out);
}

static size_t qp_decode(const char *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '=') {
            out[o++] = (uint8_t)in[i];
            continue;
        }
        if (i + 2 >= n)
            abort();
        if (in[i + 1] == '\r' && in[i + 2] == '\n') {
            i += 2;
            continue;
        }
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = in[i + k];
            if (c >= '0' && c <= '9')
                v = v * 16 + (c - '0');
            else if (c >= 'A' && c <= 'F')
                v = v * 16 + (c - 'A' + 10);
            else
                abort(); /* only uppercase hex is written */
        }
        out[o++] = (uint8_t)v;
        i += 2;
    }
    return o;
}

static void check_8to7(uint8_t step, const uint8_t *p, size_t n)
{
    struct smtp_8to7 c;
    struct buf out;
    smtp_8to7_init(&c);
    buf_init(&out, 16u << 20);
    size_t chunk = 1 + step;
    enum smtp_8to7_result res = SMTP_8TO7_OK;
    for (size_t i = 0; i < n && res == SMTP_8TO7_OK; i += chunk)
        res = smtp_8to7_feed(&c, p + i, n - i < chunk ? n - i : chunk, &out);
    if (res == SMTP_8TO7_OK)
        res = smtp_8to7_finish(&c, &out);
    smtp_8to7_free(&c);
    if (res == SMTP_8TO7_FULL)
        abort();
    if (res == SMTP_8TO7_CANNOT) {
        buf_free(&out);
        return;
    }
    if (c.out != out.len || c.in != n)
        abort();
    const char *o = out.data != NULL ? out.data : "";
    if (smtp_needs_8bit((const uint8_t *)o, out.len))
        abort();
    /* Where the body starts, in the input and in the output. */
    size_t ib;
    if (n >= 2 && p[0] == '\r' && p[1] == '\n') {
        ib = 2;
    } else {
        const uint8_t *e = n > 0 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
        if (e == NULL) { /* no body: unchanged */
            if (out.len != n || (n > 0 && memcmp(o, p, n) != 0))
                abort();
            buf_free(&out);
            return;
        }
        ib = (size_t)(e - p) + 4;
    }
    const char *oe = memmem(o, out.len, "\r\n\r\n", 4);
    if (oe == NULL)
        abort();
    size_t ob = (size_t)(oe - o) + 4;
    for (size_t i = ob, col = 0; i < out.len; i++) {
        if (o[i] == '\r' && i + 1 < out.len && o[i + 1] == '\n') {
            i++;
            col = 0;
        } else if (o[i] == '\r' || o[i] == '\n' || ++col > SMTP_QP_LINE_MAX) {
            abort();
        }
    }
    uint8_t *dec = malloc(out.len - ob + 1);
    if (dec == NULL)
        abort();
    size_t dl = qp_decode(o + ob, out.len - ob, dec);
    if (dl != n - ib || (dl > 0 && memcmp(dec, p + ib, dl) != 0))
        abort();
    free(dec);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cfg = data[0], step = data[1];
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    static char fields[4][600];
    const char *f[4];
    size_t pos = 0;
    for (int k = 0; k < 4; k++) {
        const uint8_t *z = pos < n ? memchr(p + pos, 0, n - pos) : NULL;
        size_t end = z != NULL ? (size_t)(z - p) : n;
        size_t l = end - pos < sizeof fields[k] - 1 ? end - pos : sizeof fields[k] - 1;
        memcpy(fields[k], p + pos, l);
        fields[k][l] = '\0';
        f[k] = fields[k];
        pos = z != NULL ? end + 1 : n;
    }
    const uint8_t *orig = p + pos;
    size_t on = n - pos;
    check_dsn(cfg, f, orig, on);
    check_8to7(step, orig, on);
    return 0;
}
