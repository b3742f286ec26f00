/*
 * fuzz_compose - libFuzzer target for the message builder of `tern send`
 * (src/smtp/compose.c; RFC 5322, 2045, 2046, 2047, 2231, 5321 §4.5.2).
 *
 * Input: octet 0 chooses whether there is an attachment (bit 0) and the
 * dot-stuffing chunk size (the rest); then NUL-separated fields: subject,
 * From, To, the attachment's file name, and the text; what follows the
 * fifth NUL is the attachment's content.
 * Invariants, whenever compose_message accepts the input:
 *  - every line ends in CRLF (no bare CR or LF) and holds at most 998
 *    octets; the body is 7-bit, and so is the header section unless an
 *    address holds UTF-8;
 *  - the Subject field, unfolded and its RFC 2047 words decoded, is the
 *    subject given;
 *  - the text decodes (7bit or quoted-printable) to the text given with its
 *    line ends made CRLF (and one added at the end);
 *  - the attachment's base64 decodes to its content;
 *  - dot-stuffing the message in chunks and undoing it gives it back, and
 *    no stuffed line is "." alone.
 * compose_parse_mailbox also sees every field (no crash, pointers inside).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/compose.h"

#define FIELD_MAX 4096

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Append the base64 s[0..n) (CR and LF skipped) to out; false if malformed. */
static bool b64_decode(const char *s, size_t n, struct buf *out)
{
    int q[4], k = 0;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            q[k++] = 0;
            pad++;
        } else {
            if (pad)
                return false;
            q[k] = b64val((unsigned char)c);
            if (q[k++] < 0)
                return false;
        }
        if (k == 4) {
            unsigned char o[3] = {(unsigned char)(q[0] << 2 | q[1] >> 4),
                                  (unsigned char)(q[1] << 4 | q[2] >> 2),
                                  (unsigned char)(q[2] << 6 | q[3])};
            if (pad > 2 || buf_append(out, o, 3 - pad) < 0)
                return false;
            k = 0;
        }
    }
    return k == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool qp_decode(const char *s, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '=') {
            if (buf_append(out, s + i, 1) < 0)
                return false;
            continue;
        }
        if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2; /* soft break */
            continue;
        }
        if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
            return false;
        char c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
        if (buf_append(out, &c, 1) < 0)
            return false;
        i += 2;
    }
    return true;
}

/* The field "Name:" of the header section, unfolded, decoded. */
static bool header_value(const char *head, size_t hlen, const char *name, struct buf *out)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < hlen; i++) {
        if ((i > 0 && head[i - 1] != '\n') || memcmp(head + i, name, nl) != 0 ||
            head[i + nl] != ':')
            continue;
        struct buf raw;
        buf_init(&raw, FIELD_MAX * 8);
        size_t j = i + nl + 1;
        for (; j < hlen; j++) {
            if (head[j] == '\r' && j + 2 < hlen && head[j + 1] == '\n' &&
                (head[j + 2] == ' ' || head[j + 2] == '\t')) {
                j++;
                continue;
            }
            if (head[j] == '\r')
                break;
            buf_append(&raw, head + j, 1);
        }
        const char *v = raw.data ? raw.data : "";
        size_t vl = raw.len;
        if (vl && v[0] == ' ') {
            v++;
            vl--;
        }
        bool ok = true;
        if (vl >= 10 && memcmp(v, "=?UTF-8?B?", 10) == 0) {
            size_t p = 0;
            while (ok && p < vl) {
                while (p < vl && v[p] == ' ')
                    p++;
                if (p == vl)
                    break;
                const char *e = p + 10 <= vl ? strstr(v + p + 10, "?=") : NULL;
                if (memcmp(v + p, "=?UTF-8?B?", 10) != 0 || !e || e - (v + p) + 2 > 75) {
                    ok = false;
                    break;
                }
                ok = b64_decode(v + p + 10, (size_t)(e - v - p - 10), out);
                p = (size_t)(e - v) + 2;
            }
        } else {
            buf_append(out, v, vl);
        }
        buf_free(&raw);
        return ok;
    }
    return false;
}

/* The text with LF made CRLF and a final CRLF. */
static void normalize(const uint8_t *p, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            buf_append(out, "\r", 1);
        buf_append(out, p + i, 1);
    }
    if (n > 0 && p[n - 1] != '\n')
        buf_append(out, "\r\n", 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    unsigned flags = data[0];
    const char *f[5] = {"", "", "", "", ""};
    char *copy = malloc(size);
    if (!copy)
        abort();
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    size_t pos = 0, rest = size - 1;
    bool have_text = false; /* f[4] points into copy */
    for (int i = 0; i < 4 && pos < rest; i++) {
        f[i] = copy + pos;
        char *z = memchr(copy + pos, '\0', rest - pos);
        if (!z)
            break;
        pos = (size_t)(z - copy) + 1;
        f[i + 1] = copy + pos;
        have_text = i == 3;
    }
    /* the text is the fifth field; what follows its NUL is the attachment */
    const uint8_t *body = (const uint8_t *)"", *att = (const uint8_t *)"";
    size_t body_len = 0, att_len = 0;
    if (have_text) {
        size_t off = (size_t)(f[4] - copy);
        body = (const uint8_t *)f[4];
        body_len = strnlen(f[4], rest - off);
        if (off + body_len < rest) {
            att = body + body_len + 1;
            att_len = rest - off - body_len - 1;
        }
    }

    for (int i = 0; i < 4; i++) {
        struct compose_mailbox mb;
        if (compose_parse_mailbox(f[i], &mb)) {
            const char *end = f[i] + strlen(f[i]);
            if (mb.addr < f[i] || mb.addr + mb.addr_len > end || mb.addr_len == 0)
                abort();
            if (mb.display && (mb.display < f[i] || mb.display + mb.display_len > end))
                abort();
        }
    }

    const char *to[1] = {f[2]};
    struct compose_part part = {f[3][0] ? f[3] : "x.bin", compose_content_type(f[3]), att, att_len};
    bool with_part = flags & 1;
    struct compose_msg m = {
        .from = f[1],
        .to = to,
        .nto = 1,
        .subject = f[0],
        .date = "Mon, 01 Jan 2024 00:00:00 +0000",
        .message_id = "<fuzz@example.org>",
        .body = body,
        .body_len = body_len,
        .parts = with_part ? &part : NULL,
        .nparts = with_part ? 1 : 0,
        .boundary = "=_tern_fuzz",
    };
    struct buf msg;
    buf_init(&msg, 1 << 20);
    char err[300];
    if (compose_message(&m, &msg, err, sizeof err) < 0) {
        if (err[0] == '\0')
            abort();
        buf_free(&msg);
        free(copy);
        return 0;
    }

    /* lines */
    const char *s = msg.data;
    size_t n = msg.len, start = 0, head_end = 0;
    bool utf8_addr = false;
    for (const char *p = f[1]; *p; p++)
        utf8_addr |= (unsigned char)*p >= 0x80;
    for (const char *p = f[2]; *p; p++)
        utf8_addr |= (unsigned char)*p >= 0x80;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            abort(); /* a LF not after CR */
        if (s[i] == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n' || i - start > 998)
                abort();
            if (i == start && head_end == 0)
                head_end = i;
            start = i + 2;
            i++;
            continue;
        }
        if ((unsigned char)s[i] >= 0x80 && (head_end != 0 || !utf8_addr))
            abort();
    }
    if (start != n || head_end == 0)
        abort();

    /* subject */
    struct buf sub;
    buf_init(&sub, FIELD_MAX * 4);
    if (!header_value(s, head_end + 2, "Subject", &sub) || sub.len != strlen(f[0]) ||
        memcmp(sub.data ? sub.data : "", f[0], sub.len) != 0)
        abort();
    buf_free(&sub);

    /* text and attachment */
    struct buf want, got;
    buf_init(&want, 1 << 21);
    buf_init(&got, 1 << 21);
    normalize(body, body_len, &want);
    const char *text = NULL;
    size_t text_len = 0;
    bool qp = false;
    if (!with_part) {
        text = s + head_end + 2;
        text_len = n - head_end - 2;
        qp = memmem(s, head_end + 2, "\r\nContent-Transfer-Encoding: quoted-printable\r\n", 47) !=
             NULL;
    } else if (body_len > 0) {
        const char *ph = strstr(s + head_end, "\r\n--=_tern_fuzz\r\nContent-Type: text/plain");
        if (!ph)
            abort();
        const char *pb = strstr(ph, "\r\n\r\n");
        const char *pe = strstr(pb + 4, "\r\n--=_tern_fuzz\r\n");
        if (!pb || !pe)
            abort();
        qp = memmem(ph, (size_t)(pb - ph), "quoted-printable", 16) != NULL;
        text = pb + 4;
        text_len = (size_t)(pe - text); /* the CRLF at pe is the delimiter's */
    }
    if (text) {
        if (qp ? !qp_decode(text, text_len, &got) : buf_append(&got, text, text_len) < 0)
            abort();
        if (got.len != want.len || (got.len && memcmp(got.data, want.data, got.len) != 0))
            abort();
    }
    if (with_part) {
        const char *last = NULL; /* the attachment is the last part */
        for (const char *q = s + head_end; (q = strstr(q, "\r\n--=_tern_fuzz\r\n")); q++)
            last = q;
        const char *ph = last ? strstr(last, "Content-Transfer-Encoding: base64\r\n\r\n") : NULL;
        if (!ph)
            abort();
        const char *pb = ph + strlen("Content-Transfer-Encoding: base64\r\n\r\n");
        const char *pe = strstr(pb, "\r\n--=_tern_fuzz--\r\n");
        if (!pe)
            abort();
        buf_reset(&got);
        if (!b64_decode(pb, (size_t)(pe - pb), &got) || got.len != att_len ||
            (att_len && memcmp(got.data, att, att_len) != 0))
            abort();
    }

    /* dot-stuffing in chunks, undone */
    size_t chunk = (flags >> 1) + 1;
    buf_reset(&got);
    bool bol = true;
    for (size_t off = 0; off < n; off += chunk)
        if (compose_dot_stuff(&got, (const uint8_t *)s + off, n - off < chunk ? n - off : chunk,
                              &bol) < 0)
            abort();
    buf_reset(&want);
    for (size_t i = 0; i < got.len;) {
        const char *e = memmem(got.data + i, got.len - i, "\r\n", 2);
        size_t l = e ? (size_t)(e - (got.data + i)) + 2 : got.len - i;
        if (l == 3 && got.data[i] == '.')
            abort(); /* "." alone would end DATA */
        size_t skip = got.data[i] == '.' ? 1 : 0;
        buf_append(&want, got.data + i + skip, l - skip);
        i += l;
    }
    if (want.len != n || memcmp(want.data, s, n) != 0)
        abort();

    buf_free(&want);
    buf_free(&got);
    buf_free(&msg);
    free(copy);
    return 0;
}
