/*
 * dkimtag - DKIM tag lists, signature tags, key records and the signature
 * header field's line ends (see dkimtag.h).
 *
 * RFC 6376 §3.2, §3.5, §3.6.1, §6.1.1; RFC 8463 §3-4; RFC 1035 §3.3.14 for
 * the zone-file form of a TXT record. Pure: no allocation beyond the caller's
 * struct buf, no I/O.
 */
#include "mailauth/dkimtag.h"

#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_valchar(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 0x21 && u <= 0x7e && u != ';';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A printable rendering of a name for error messages (at most 20 octets). */
static int shown(size_t len)
{
    return len > 20 ? 20 : (int)len;
}

int dkim_taglist_parse(const char *text, size_t len, struct dkim_taglist *out, char *err,
                       size_t errlen)
{
    out->n = 0;
    size_t i = 0;
    while (i < len) {
        /* one tag-spec, up to the next ';' or the end */
        size_t end = i;
        while (end < len && text[end] != ';')
            end++;
        size_t p = i;
        while (p < end && is_ws(text[p]))
            p++;
        if (p == end) { /* an empty spec: tolerated */
            i = end + 1;
            continue;
        }
        if (!is_alpha(text[p])) {
            set_err(err, errlen, "a tag name must start with a letter");
            return -1;
        }
        size_t name = p;
        while (p < end && (is_alpha(text[p]) || is_digit(text[p]) || text[p] == '_'))
            p++;
        size_t name_len = p - name;
        while (p < end && is_ws(text[p]))
            p++;
        if (p == end || text[p] != '=') {
            set_err(err, errlen, "tag \"%.*s\" has no '='", shown(name_len), text + name);
            return -1;
        }
        p++;
        while (p < end && is_ws(text[p]))
            p++;
        size_t vend = end;
        while (vend > p && is_ws(text[vend - 1]))
            vend--;
        for (size_t k = p; k < vend; k++) {
            if (!is_valchar(text[k]) && !is_ws(text[k])) {
                set_err(err, errlen, "tag %.*s= holds an invalid octet 0x%02x", shown(name_len),
                        text + name, (unsigned char)text[k]);
                return -1;
            }
        }
        for (size_t k = 0; k < out->n; k++) {
            if (out->v[k].name_len == name_len &&
                memcmp(out->v[k].name, text + name, name_len) == 0) {
                set_err(err, errlen, "tag %.*s= appears twice", shown(name_len), text + name);
                return -1;
            }
        }
        if (out->n == DKIM_TAGS_MAX) {
            set_err(err, errlen, "more than %d tags", DKIM_TAGS_MAX);
            return -1;
        }
        struct dkim_tag *t = &out->v[out->n++];
        t->name = text + name;
        t->name_len = name_len;
        t->value = text + p;
        t->value_len = vend - p;
        i = end + 1;
    }
    return 0;
}

const struct dkim_tag *dkim_taglist_get(const struct dkim_taglist *l, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].name_len == n && memcmp(l->v[i].name, name, n) == 0)
            return &l->v[i];
    return NULL;
}

/* Does the tag's value equal s exactly? */
static bool value_is(const struct dkim_tag *t, const char *s)
{
    size_t n = strlen(s);
    return t->value_len == n && memcmp(t->value, s, n) == 0;
}

/* Copy a value without its white space into out (outlen >= 1), truncated;
   returns the full length without white space. */
static size_t copy_compact(const struct dkim_tag *t, char *out, size_t outlen)
{
    size_t n = 0, full = 0;
    for (size_t i = 0; i < t->value_len; i++) {
        if (is_ws(t->value[i]))
            continue;
        if (n + 1 < outlen)
            out[n++] = t->value[i];
        full++;
    }
    out[n] = '\0';
    return full;
}

/* Is text[0..len) a domain name: labels of letters, digits, '-' and '_'
   (selectors and some d= hold underscores), 1..63 octets, not starting or
   ending with '-', 253 octets in all? Copy it lowercased into out. */
static bool domain_copy(const char *text, size_t len, char *out, size_t outlen)
{
    if (len == 0 || len > DKIM_NAME_MAX || len >= outlen)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '.') {
            if (label == 0 || text[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alpha(c) || is_digit(c) || c == '_' || c == '-') {
            if (c == '-' && label == 0)
                return false;
            if (++label > 63)
                return false;
        } else {
            return false;
        }
        out[i] = lower(c);
    }
    if (label == 0 || text[len - 1] == '-')
        return false;
    out[len] = '\0';
    return true;
}

static bool parse_number(const struct dkim_tag *t, uint64_t *out)
{
    if (t->value_len == 0 || t->value_len > 12) /* RFC 6376 §3.5: at most 12 digits */
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < t->value_len; i++) {
        if (!is_digit(t->value[i]))
            return false;
        v = v * 10 + (uint64_t)(t->value[i] - '0');
    }
    *out = v;
    return true;
}

/* Does a ':'-separated list (white space around items allowed) hold item
   (compared case-insensitively when nocase)? */
static bool list_has(const char *text, size_t len, const char *item, bool nocase)
{
    size_t n = strlen(item);
    size_t i = 0;
    while (i <= len) {
        size_t end = i;
        while (end < len && text[end] != ':')
            end++;
        size_t a = i, b = end;
        while (a < b && is_ws(text[a]))
            a++;
        while (b > a && is_ws(text[b - 1]))
            b--;
        if (b - a == n) {
            bool eq = true;
            for (size_t k = 0; k < n && eq; k++)
                eq = nocase ? lower(text[a + k]) == lower(item[k]) : text[a + k] == item[k];
            if (eq)
                return true;
        }
        i = end + 1;
    }
    return false;
}

static bool canon_ok(const char *s, size_t n)
{
    return (n == 6 && memcmp(s, "simple", 6) == 0) || (n == 7 && memcmp(s, "relaxed", 7) == 0);
}

int dkim_sig_parse(const char *value, size_t len, struct dkim_sig_tags *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct dkim_taglist tl;
    if (dkim_taglist_parse(value, len, &tl, err, errlen) < 0)
        return -1;
    const struct dkim_tag *v = dkim_taglist_get(&tl, "v"), *a = dkim_taglist_get(&tl, "a"),
                          *b = dkim_taglist_get(&tl, "b"), *bh = dkim_taglist_get(&tl, "bh"),
                          *c = dkim_taglist_get(&tl, "c"), *d = dkim_taglist_get(&tl, "d"),
                          *h = dkim_taglist_get(&tl, "h"), *i = dkim_taglist_get(&tl, "i"),
                          *l = dkim_taglist_get(&tl, "l"), *q = dkim_taglist_get(&tl, "q"),
                          *s = dkim_taglist_get(&tl, "s"), *t = dkim_taglist_get(&tl, "t"),
                          *x = dkim_taglist_get(&tl, "x");
    /* what can be reported even when something else is wrong */
    if (a) {
        size_t n =
            a->value_len < sizeof out->alg_text - 1 ? a->value_len : sizeof out->alg_text - 1;
        memcpy(out->alg_text, a->value, n);
        out->alg_text[n] = '\0';
        if (value_is(a, "rsa-sha256"))
            out->alg = DKIM_ALG_RSA_SHA256;
        else if (value_is(a, "ed25519-sha256"))
            out->alg = DKIM_ALG_ED25519;
        else if (value_is(a, "rsa-sha1"))
            out->alg = DKIM_ALG_RSA_SHA1;
    }
    bool d_ok = d && domain_copy(d->value, d->value_len, out->domain, sizeof out->domain);
    if (!d_ok)
        out->domain[0] = '\0';
    bool s_ok = s && domain_copy(s->value, s->value_len, out->selector, sizeof out->selector);
    if (!s_ok)
        out->selector[0] = '\0';
    if (b)
        copy_compact(b, out->b, sizeof out->b);
    if (i) {
        size_t n =
            i->value_len < sizeof out->identity - 1 ? i->value_len : sizeof out->identity - 1;
        memcpy(out->identity, i->value, n);
        out->identity[n] = '\0';
    }

    static const char *const required[] = {"v", "a", "b", "bh", "d", "h", "s"};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++) {
        if (!dkim_taglist_get(&tl, required[k])) {
            set_err(err, errlen, "no %s= tag", required[k]);
            return -1;
        }
    }
    if (!value_is(v, "1")) {
        set_err(err, errlen, "unsupported version v=%.*s", shown(v->value_len), v->value);
        return -1;
    }
    if (out->alg == DKIM_ALG_UNKNOWN) {
        set_err(err, errlen, "unknown algorithm a=%s", out->alg_text);
        return -1;
    }
    if (!d_ok) {
        set_err(err, errlen, "d= is not a domain name");
        return -1;
    }
    if (!s_ok) {
        set_err(err, errlen, "s= is not a valid selector");
        return -1;
    }
    if (strlen(out->selector) + strlen("._domainkey.") + strlen(out->domain) > DKIM_NAME_MAX) {
        set_err(err, errlen, "s=%s d=%s: the key's name is longer than 253 octets", out->selector,
                out->domain);
        return -1;
    }
    if (c) {
        const char *slash = memchr(c->value, '/', c->value_len);
        size_t hl = slash ? (size_t)(slash - c->value) : c->value_len;
        if (!canon_ok(c->value, hl) || (slash && !canon_ok(slash + 1, c->value_len - hl - 1))) {
            set_err(err, errlen, "unknown canonicalization c=%.*s", shown(c->value_len), c->value);
            return -1;
        }
    }
    if (!list_has(h->value, h->value_len, "from", true)) {
        set_err(err, errlen, "h= does not include From");
        return -1;
    }
    if (i) {
        /* i= is [local-part] "@" domain, and the domain is d= or under it (§3.5) */
        const char *at = NULL;
        for (size_t k = 0; k < i->value_len; k++)
            if (i->value[k] == '@')
                at = i->value + k;
        char idom[DKIM_NAME_MAX + 1];
        size_t dl = at ? i->value_len - (size_t)(at + 1 - i->value) : 0;
        if (!at || !domain_copy(at + 1, dl, idom, sizeof idom)) {
            set_err(err, errlen, "i= has no valid domain");
            return -1;
        }
        size_t dn = strlen(out->domain);
        bool under = dl == dn ? strcmp(idom, out->domain) == 0
                              : dl > dn && idom[dl - dn - 1] == '.' &&
                                    strcmp(idom + dl - dn, out->domain) == 0;
        if (!under) {
            set_err(err, errlen, "i= domain %s is not d=%s or under it", idom, out->domain);
            return -1;
        }
    }
    if (q && !list_has(q->value, q->value_len, "dns/txt", false)) {
        set_err(err, errlen, "q= does not offer dns/txt");
        return -1;
    }
    uint64_t num;
    if (l) {
        if (!parse_number(l, &num)) {
            set_err(err, errlen, "l= is not a number");
            return -1;
        }
        out->has_length = true;
    }
    if (t) {
        if (!parse_number(t, &out->timestamp)) {
            set_err(err, errlen, "t= is not a number");
            return -1;
        }
        out->has_timestamp = true;
    }
    if (x) {
        if (!parse_number(x, &out->expiry)) {
            set_err(err, errlen, "x= is not a number");
            return -1;
        }
        out->has_expiry = true;
        if (t && out->expiry < out->timestamp) {
            set_err(err, errlen, "x= is before t=");
            return -1;
        }
    }
    long blen = dkim_base64_len(b->value, b->value_len);
    if (blen <= 0) {
        set_err(err, errlen, blen == 0 ? "b= is empty" : "b= is not base64");
        return -1;
    }
    long bhlen = dkim_base64_len(bh->value, bh->value_len);
    if (bhlen <= 0) {
        set_err(err, errlen, bhlen == 0 ? "bh= is empty" : "bh= is not base64");
        return -1;
    }
    return 0;
}

int dkim_key_parse(const char *text, size_t len, struct dkim_key_tags *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->sha256 = true;
    struct dkim_taglist tl;
    if (dkim_taglist_parse(text, len, &tl, err, errlen) < 0)
        return -1;
    const struct dkim_tag *v = dkim_taglist_get(&tl, "v"), *h = dkim_taglist_get(&tl, "h"),
                          *k = dkim_taglist_get(&tl, "k"), *s = dkim_taglist_get(&tl, "s"),
                          *t = dkim_taglist_get(&tl, "t"), *p = dkim_taglist_get(&tl, "p");
    if (v && !value_is(v, "DKIM1")) {
        set_err(err, errlen, "unsupported key version v=%.*s", shown(v->value_len), v->value);
        return -1;
    }
    if (h)
        out->sha256 = list_has(h->value, h->value_len, "sha256", false);
    if (k) {
        if (value_is(k, "rsa")) {
            out->kind = DKIM_KEYKIND_RSA;
        } else if (value_is(k, "ed25519")) {
            out->kind = DKIM_KEYKIND_ED25519;
        } else {
            set_err(err, errlen, "unknown key type k=%.*s", shown(k->value_len), k->value);
            return -1;
        }
    }
    if (s && !list_has(s->value, s->value_len, "*", false) &&
        !list_has(s->value, s->value_len, "email", false)) {
        set_err(err, errlen, "the key is not for email (s=%.*s)", shown(s->value_len), s->value);
        return -1;
    }
    if (t) {
        out->testing = list_has(t->value, t->value_len, "y", false);
        out->strict = list_has(t->value, t->value_len, "s", false);
    }
    if (!p) {
        set_err(err, errlen, "no p= tag");
        return -1;
    }
    long plen = dkim_base64_len(p->value, p->value_len);
    if (plen < 0) {
        set_err(err, errlen, "p= is not base64");
        return -1;
    }
    out->key_len = (size_t)plen;
    out->revoked = plen == 0;
    if (!out->revoked && out->kind == DKIM_KEYKIND_ED25519 && plen != 32) {
        set_err(err, errlen, "an ed25519 key has 32 octets, p= has %ld", plen);
        return -1;
    }
    return 0;
}

static bool is_b64(char c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '/';
}

long dkim_base64_len(const char *text, size_t len)
{
    size_t chars = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (is_ws(c))
            continue;
        if (c == '=') {
            if (++pad > 2)
                return -1;
        } else if (is_b64(c) && pad == 0) {
            chars++;
        } else {
            return -1;
        }
    }
    if ((chars + pad) % 4 != 0)
        return -1;
    if (pad > 0 && (chars + pad) % 4 != 0)
        return -1;
    return (long)((chars + pad) / 4 * 3 - pad);
}

int dkim_sighdr_crlf(const char *value, size_t len, struct buf *out)
{
    size_t start = out->len;
    static const char name[] = "DKIM-Signature: ";
    if (buf_append(out, name, sizeof name - 1) < 0)
        return -1;
    size_t run = 0; /* start of the run of ordinary octets being copied */
    for (size_t i = 0; i < len; i++) {
        if (value[i] != '\n' && value[i] != '\r')
            continue;
        if (buf_append(out, value + run, i - run) < 0)
            goto overflow;
        if (value[i] == '\n' && buf_append(out, "\r\n", 2) < 0)
            goto overflow;
        run = i + 1; /* a CR is dropped: kept once before its LF, a lone one not at all */
    }
    if (buf_append(out, value + run, len - run) < 0 || buf_append(out, "\r\n", 2) < 0)
        goto overflow;
    return 0;
overflow:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}

int dkim_zone_txt(const char *text, size_t len, struct buf *out)
{
    size_t start = out->len;
    size_t i = 0;
    bool first = true;
    do {
        if ((!first && buf_append(out, " ", 1) < 0) || buf_append(out, "\"", 1) < 0)
            goto overflow;
        first = false;
        size_t n = 0; /* octets in this character-string */
        while (i < len && n < 255) {
            unsigned char c = (unsigned char)text[i];
            int rc;
            if (c == '"' || c == '\\')
                rc = buf_printf(out, "\\%c", c);
            else if (c < 0x20 || c > 0x7e)
                rc = buf_printf(out, "\\%03u", (unsigned)c); /* RFC 1035 §5.1 \DDD */
            else
                rc = buf_append(out, &c, 1);
            if (rc < 0)
                goto overflow;
            n++;
            i++;
        }
        if (buf_append(out, "\"", 1) < 0)
            goto overflow;
    } while (i < len);
    return 0;
overflow:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}
