/*
 * eightbit - downgrade a message with an 8-bit body for a peer that did not
 * advertise 8BITMIME, streaming, by re-encoding its body as quoted-printable.
 *
 * RFCs: 6152 §3 (an 8-bit message to a server without 8BITMIME must be
 * converted to 7 bits or returned as undeliverable), 1652 (the same, older),
 * 2045 §6.7 (quoted-printable: rules 1-5, lines of at most 76 octets, soft
 * line breaks, trailing white space encoded), §6.4 (CTE of composite types:
 * multipart and message bodies cannot be quoted-printable), 2045 §4 and §5.2
 * (MIME-Version, the default Content-Type), 1428 (charset=unknown-8bit),
 * 3463 (5.6.3 when the conversion is not possible: the caller's reply).
 *
 * The header section is held (bounded) until it ends, because the decision
 * depends on all of it: Content-Type and Content-Transfer-Encoding may come
 * after other fields. Then the rewritten header section goes out and the body
 * streams through the encoder octet by octet, holding back at most one white
 * space and one CR (to know whether a line ends there).
 *
 * Pure: appends to the caller's struct buf; the one allocation is the held
 * header section, freed by smtp_8to7_free().
 */
#include "smtp/client.h"

#include <string.h>

#include "core/util.h"

enum { ST_HEADER = 0, ST_BODY, ST_CANNOT, ST_FULL };

bool smtp_needs_8bit(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x80)
            return true;
    return false;
}

void smtp_8to7_init(struct smtp_8to7 *c)
{
    c->state = ST_HEADER;
    buf_init(&c->hdr, SMTP_8TO7_HEADER_MAX);
    c->col = 0;
    c->pend_ws = -1;
    c->pend_cr = false;
    c->in = 0;
    c->out = 0;
}

void smtp_8to7_free(struct smtp_8to7 *c)
{
    buf_free(&c->hdr);
}

static enum smtp_8to7_result fail(struct smtp_8to7 *c, int st)
{
    c->state = st;
    buf_free(&c->hdr);
    return st == ST_FULL ? SMTP_8TO7_FULL : SMTP_8TO7_CANNOT;
}

static bool out_put(struct smtp_8to7 *c, struct buf *out, const void *p, size_t n)
{
    if (buf_append(out, p, n) != 0)
        return false;
    c->out += n;
    return true;
}

/* ---------------------------------------------------------------------
 * The header section
 */

/* The first token of a field value (after white space, folding and comments),
   up to '/', ';', white space or the end: "multipart" of "multipart/mixed". */
static size_t first_token(const char *v, size_t n, const char **tok)
{
    size_t i = 0;
    for (;;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
            i++;
        if (i < n && v[i] == '(') {
            size_t depth = 0; /* at least 1 inside: the loop starts at the '(' */
            for (; i < n; i++) {
                if (v[i] == '\\' && i + 1 < n) {
                    i++;
                } else if (v[i] == '(') {
                    depth++;
                } else if (v[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
            }
            continue;
        }
        break;
    }
    size_t s = i;
    while (i < n && v[i] != '/' && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '\r' &&
           v[i] != '(')
        i++;
    *tok = v + s;
    return i - s;
}

static bool tok_is(const char *t, size_t n, const char *w)
{
    return strlen(w) == n && ascii_nieq(t, w, n);
}

/* Decide on the header section h[0..n) (complete lines, without the empty
   line) and write it out rewritten. */
static enum smtp_8to7_result header_out(struct smtp_8to7 *c, const char *h, size_t n,
                                        struct buf *out)
{
    if (smtp_needs_8bit((const uint8_t *)h, n))
        return fail(c, ST_CANNOT); /* 8-bit header fields: RFC 2047 is not ours to apply */
    bool has_mv = false;
    int n_ct = 0;
    size_t i = 0;
    while (i < n) {
        /* One field: its first line and the continuation lines after it. */
        size_t s = i;
        if (h[i] == ' ' || h[i] == '\t')
            return fail(c, ST_CANNOT); /* continuation without a field */
        do {
            const char *e = memmem(h + i, n - i, "\r\n", 2);
            i = e != NULL ? (size_t)(e - h) + 2 : n;
        } while (i < n && (h[i] == ' ' || h[i] == '\t'));
        const char *f = h + s;
        size_t fl = i - s;
        const char *colon = memchr(f, ':', fl);
        if (colon == NULL)
            return fail(c, ST_CANNOT);
        size_t nl = (size_t)(colon - f);
        while (nl > 0 && (f[nl - 1] == ' ' || f[nl - 1] == '\t'))
            nl--;
        if (nl == 0)
            return fail(c, ST_CANNOT);
        for (size_t k = 0; k < nl; k++)
            if ((unsigned char)f[k] < 33 || (unsigned char)f[k] > 126)
                return fail(c, ST_CANNOT);
        const char *v = colon + 1;
        size_t vl = fl - (size_t)(v - f);
        const char *tok;
        if (tok_is(f, nl, "Content-Transfer-Encoding")) {
            size_t tl = first_token(v, vl, &tok);
            if (!tok_is(tok, tl, "7bit") && !tok_is(tok, tl, "8bit"))
                return fail(c, ST_CANNOT); /* base64, quoted-printable, binary, x-... */
            continue;                      /* dropped: replaced below */
        }
        if (tok_is(f, nl, "Content-Type")) {
            size_t tl = first_token(v, vl, &tok);
            if (++n_ct > 1 || tok_is(tok, tl, "multipart") || tok_is(tok, tl, "message"))
                return fail(c, ST_CANNOT);
        } else if (tok_is(f, nl, "MIME-Version")) {
            has_mv = true;
        }
        if (!out_put(c, out, f, fl))
            return fail(c, ST_FULL);
    }
    if (n > 0 && (n < 2 || h[n - 2] != '\r' || h[n - 1] != '\n'))
        return fail(c, ST_CANNOT); /* cannot happen: the section ends with CRLF */
    static const char mv[] = "MIME-Version: 1.0\r\n";
    static const char ct[] = "Content-Type: text/plain; charset=unknown-8bit\r\n";
    static const char cte[] = "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    if ((!has_mv && !out_put(c, out, mv, sizeof mv - 1)) ||
        (n_ct == 0 && !out_put(c, out, ct, sizeof ct - 1)) || !out_put(c, out, cte, sizeof cte - 1))
        return fail(c, ST_FULL);
    return SMTP_8TO7_OK;
}

/* ---------------------------------------------------------------------
 * The body: quoted-printable
 */
static bool emit(struct smtp_8to7 *c, struct buf *out, const char *tok, size_t n)
{
    if (c->col + n > SMTP_QP_LINE_MAX - 1) {
        if (!out_put(c, out, "=\r\n", 3))
            return false;
        c->col = 0;
    }
    if (!out_put(c, out, tok, n))
        return false;
    c->col += n;
    return true;
}

static bool emit_enc(struct smtp_8to7 *c, struct buf *out, unsigned char b)
{
    static const char hex[] = "0123456789ABCDEF";
    char t[3] = {'=', hex[b >> 4], hex[b & 15]};
    return emit(c, out, t, 3);
}

/* The held white space, written literally (more follows on its line) or
   encoded (it ends its line). */
static bool flush_ws(struct smtp_8to7 *c, struct buf *out, bool at_eol)
{
    if (c->pend_ws < 0)
        return true;
    char ws = (char)c->pend_ws;
    c->pend_ws = -1;
    return at_eol ? emit_enc(c, out, (unsigned char)ws) : emit(c, out, &ws, 1);
}

static bool body_octet(struct smtp_8to7 *c, struct buf *out, unsigned char b)
{
    if (c->pend_cr) {
        c->pend_cr = false;
        if (b == '\n') {
            if (!flush_ws(c, out, true) || !out_put(c, out, "\r\n", 2))
                return false;
            c->col = 0;
            return true;
        }
        if (!flush_ws(c, out, false) || !emit_enc(c, out, '\r'))
            return false;
    }
    if (b == '\r') {
        c->pend_cr = true;
        return true;
    }
    if (!flush_ws(c, out, false))
        return false;
    if (b == ' ' || b == '\t') {
        c->pend_ws = b;
        return true;
    }
    if (b == '=' || b < 0x20 || b >= 0x7f)
        return emit_enc(c, out, b);
    char ch = (char)b;
    return emit(c, out, &ch, 1);
}

static enum smtp_8to7_result body(struct smtp_8to7 *c, const uint8_t *p, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++)
        if (!body_octet(c, out, p[i]))
            return fail(c, ST_FULL);
    return SMTP_8TO7_OK;
}

/* ---------------------------------------------------------------------
 * Feeding
 */
enum smtp_8to7_result smtp_8to7_feed(struct smtp_8to7 *c, const uint8_t *p, size_t n,
                                     struct buf *out)
{
    if (c->state == ST_CANNOT)
        return SMTP_8TO7_CANNOT;
    if (c->state == ST_FULL)
        return SMTP_8TO7_FULL;
    c->in += n;
    if (c->state == ST_BODY)
        return body(c, p, n, out);

    /* Header section: hold it until the empty line. */
    size_t old = c->hdr.len;
    size_t room = c->hdr.max - old;
    size_t take = n < room ? n : room;
    if (take > 0 && buf_append(&c->hdr, p, take) != 0)
        return fail(c, ST_CANNOT);
    const char *h = c->hdr.data;
    size_t hl = c->hdr.len;
    size_t end; /* offset of the empty line */
    if (hl >= 2 && h[0] == '\r' && h[1] == '\n') {
        end = 0;
    } else {
        size_t from = old >= 3 ? old - 3 : 0;
        const char *e = hl > from ? memmem(h + from, hl - from, "\r\n\r\n", 4) : NULL;
        if (e == NULL) {
            if (take < n)
                return fail(c, ST_CANNOT); /* header section too large */
            return SMTP_8TO7_OK;
        }
        end = (size_t)(e - h) + 2;
    }
    enum smtp_8to7_result res = header_out(c, h, end, out);
    if (res != SMTP_8TO7_OK)
        return res;
    c->state = ST_BODY;
    res = body(c, (const uint8_t *)h + end + 2, hl - end - 2, out);
    buf_free(&c->hdr);
    if (res != SMTP_8TO7_OK)
        return res;
    return body(c, p + take, n - take, out);
}

enum smtp_8to7_result smtp_8to7_finish(struct smtp_8to7 *c, struct buf *out)
{
    if (c->state == ST_CANNOT)
        return SMTP_8TO7_CANNOT;
    if (c->state == ST_FULL)
        return SMTP_8TO7_FULL;
    if (c->state == ST_HEADER) {
        /* Only a header section: no body to convert. */
        if (smtp_needs_8bit((const uint8_t *)c->hdr.data, c->hdr.len))
            return fail(c, ST_CANNOT);
        if (c->hdr.len > 0 && !out_put(c, out, c->hdr.data, c->hdr.len))
            return fail(c, ST_FULL);
        buf_free(&c->hdr);
        c->state = ST_BODY;
        return SMTP_8TO7_OK;
    }
    if (c->pend_cr) {
        c->pend_cr = false;
        if (!flush_ws(c, out, false) || !emit_enc(c, out, '\r'))
            return fail(c, ST_FULL);
    }
    if (!flush_ws(c, out, true))
        return fail(c, ST_FULL);
    if (c->col > 0) {
        /* The body did not end with CRLF: a soft break keeps it so. */
        if (!out_put(c, out, "=\r\n", 3))
            return fail(c, ST_FULL);
        c->col = 0;
    }
    return SMTP_8TO7_OK;
}
