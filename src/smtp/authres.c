/*
 * authres - composing and reading Authentication-Results (RFC 8601 §2.2,
 * §2.3, §2.7, §5) and composing Received-SPF (RFC 7208 §9.1).
 *
 * Composition goes word by word through a small folder: a word is written
 * after a space when the line stays within 78 octets, else after CRLF and a
 * TAB; a word is only ever cut at the spaces inside a comment. The word
 * being built is held back until the next one starts, so that a ';' can
 * still join it. Values are written per RFC 8601 §2.2: `value` is an RFC
 * 2045 token or a quoted-string, and a property value may also be a domain
 * name or local-part@domain bare.
 *
 * Reading is a cursor over the value with CFWS skipped between lexical
 * items (RFC 5322 §3.2.2: white space, folding, comments that nest).
 * Everything is bounded: words by AUTHRES_WORD_MAX, values by
 * AUTHRES_VALUE_MAX, kept results and properties by the array sizes.
 */
#include "smtp/authres.h"

#include <string.h>

#include "core/util.h"

/* Lines are folded before they pass this many octets (CRLF not counted). */
#define LINE_SOFT 78
/* ... and never pass this many (RFC 5322 §2.1.1). */
#define LINE_HARD 998
/* Comments nest at most this deep when reading. */
#define COMMENT_DEPTH 8

/* ---------------------------------------------------------------------
 * Character classes
 */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A control character that no header field may carry here (TAB is
   white space). */
static bool is_bad_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* RFC 2045 token characters: printable US-ASCII except tspecials. */
static bool is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* RFC 5322 atext. */
static bool is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool all_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_token_char((unsigned char)s[i]))
            return false;
    return true;
}

/* dot-atom-text (RFC 5322 §3.2.3). */
static bool is_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return false;
        } else if (!is_atext((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* A domain name: labels of letters, digits and hyphens (and underscores,
   which DNS names of services carry), 1..63 octets each. */
static bool is_domain(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* RFC 5321 Keyword (Ldh-str): a letter or digit, then letters, digits and
   hyphens, not ending with a hyphen. */
static bool is_keyword(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AUTHRES_WORD_MAX || s[n - 1] == '-' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alpha((unsigned char)s[i]) && !is_digit((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* ---------------------------------------------------------------------
 * The folder
 */

struct fold {
    char *out;                /* the caller's buffer */
    size_t cap;               /* its size */
    size_t len;               /* octets written */
    size_t line;              /* octets in the current line */
    bool fresh;               /* the current line is a continuation with nothing on it yet */
    bool err;                 /* it did not fit, or an input was invalid */
    char word[LINE_HARD + 1]; /* the word being built */
    size_t wlen;              /* its length */
    bool have_word;           /* a word is being built */
    bool word_newline;        /* it starts a new line */
};

static void put(struct fold *f, const char *s, size_t n)
{
    if (f->err)
        return;
    if (f->len + n + 1 > f->cap) {
        f->err = true;
        return;
    }
    memcpy(f->out + f->len, s, n);
    f->len += n;
    f->out[f->len] = '\0';
    f->line += n;
}

static void newline(struct fold *f)
{
    put(f, "\r\n\t", 3);
    f->line = 1;
    f->fresh = true;
}

/* Write the word held back. */
static void flush_word(struct fold *f)
{
    if (!f->have_word || f->err)
        return;
    f->have_word = false;
    if (f->word_newline && !f->fresh) {
        newline(f);
    } else if (!f->fresh) {
        if (f->line + 1 + f->wlen > LINE_SOFT)
            newline(f);
        else
            put(f, " ", 1);
    }
    if (f->line + f->wlen > LINE_HARD) {
        f->err = true;
        return;
    }
    put(f, f->word, f->wlen);
    f->fresh = false;
}

/* Start a new word (writing the one before). */
static void begin_word(struct fold *f, bool on_new_line)
{
    flush_word(f);
    f->have_word = true;
    f->wlen = 0;
    f->word_newline = on_new_line;
}

/* Append to the word being built. */
static void wput(struct fold *f, const char *s, size_t n)
{
    if (f->err)
        return;
    if (f->wlen + n > LINE_HARD) {
        f->err = true;
        return;
    }
    memcpy(f->word + f->wlen, s, n);
    f->wlen += n;
}

static void wputs(struct fold *f, const char *s)
{
    wput(f, s, strlen(s));
}

/* A quoted-string of s. */
static void wput_quoted(struct fold *f, const char *s)
{
    wput(f, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (is_bad_ctl(c)) {
            f->err = true;
            return;
        }
        if (c == '"' || c == '\\')
            wput(f, "\\", 1);
        wput(f, p, 1);
    }
    wput(f, "\"", 1);
}

/* A value: a token bare, anything else quoted. */
static void wput_value(struct fold *f, const char *s)
{
    if (all_token(s, strlen(s)))
        wputs(f, s);
    else
        wput_quoted(f, s);
}

/* A property value (pvalue): also a domain or local-part@domain bare. */
static void wput_pvalue(struct fold *f, const char *s)
{
    size_t n = strlen(s);
    const char *at = memchr(s, '@', n);
    if (at && !memchr(at + 1, '@', n - (size_t)(at - s) - 1)) {
        size_t local = (size_t)(at - s);
        if ((local == 0 || is_dot_atom(s, local)) && is_domain(at + 1, n - local - 1)) {
            wputs(f, s);
            return;
        }
    }
    wput_value(f, s);
}

/* A comment, one word per run of text between its spaces. */
static void comment_words(struct fold *f, const char *s)
{
    begin_word(f, false);
    wput(f, "(", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (is_bad_ctl(c)) {
            f->err = true;
            return;
        }
        if (c == ' ' || c == '\t') {
            if (f->wlen > 0 && f->word[f->wlen - 1] != '(')
                begin_word(f, false);
            continue;
        }
        if (c == '(' || c == ')' || c == '\\')
            wput(f, "\\", 1);
        wput(f, p, 1);
    }
    wput(f, ")", 1);
}

/* End the field: the last word, CRLF. */
static long finish(struct fold *f)
{
    flush_word(f);
    put(f, "\r\n", 2);
    if (f->err) {
        if (f->cap)
            f->out[0] = '\0';
        return -1;
    }
    return (long)f->len;
}

static bool no_ctl(const char *s)
{
    for (; s && *s; s++)
        if (is_bad_ctl((unsigned char)*s))
            return false;
    return true;
}

long authres_compose(const char *authserv_id, const struct authres_result *r, size_t n, char *out,
                     size_t outlen)
{
    struct fold f;
    f.out = out;
    f.cap = outlen;
    f.len = f.line = f.wlen = 0;
    f.fresh = f.err = f.have_word = f.word_newline = false;
    if (outlen)
        out[0] = '\0';
    if (!authserv_id || !authserv_id[0] || !no_ctl(authserv_id))
        f.err = true;
    put(&f, "Authentication-Results:", 23);
    begin_word(&f, false);
    wput_value(&f, authserv_id ? authserv_id : "");
    wput(&f, ";", 1);
    if (n == 0) {
        begin_word(&f, false);
        wputs(&f, "none");
    }
    for (size_t i = 0; i < n && !f.err; i++) {
        const struct authres_result *x = &r[i];
        if (!is_keyword(x->method) || !is_keyword(x->result) || x->nprops > AUTHRES_MAX_PROPS) {
            f.err = true;
            break;
        }
        begin_word(&f, true);
        wputs(&f, x->method);
        wput(&f, "=", 1);
        wputs(&f, x->result);
        if (x->reason) {
            begin_word(&f, false);
            wputs(&f, "reason=");
            wput_value(&f, x->reason);
        }
        for (size_t k = 0; k < x->nprops; k++) {
            const struct authres_prop *p = &x->props[k];
            if (!is_keyword(p->ptype) || !is_keyword(p->property) || !p->value) {
                f.err = true;
                break;
            }
            begin_word(&f, false);
            wputs(&f, p->ptype);
            wput(&f, ".", 1);
            wputs(&f, p->property);
            wput(&f, "=", 1);
            wput_pvalue(&f, p->value);
        }
        if (x->comment)
            comment_words(&f, x->comment);
        if (i + 1 < n)
            wput(&f, ";", 1);
    }
    return finish(&f);
}

/* key=value of Received-SPF: a dot-atom bare, else a quoted-string. */
static void spf_pair(struct fold *f, const char *key, const char *value, bool *first)
{
    if (!value)
        return;
    if (!*first)
        wput(f, ";", 1);
    *first = false;
    begin_word(f, false);
    wputs(f, key);
    wput(f, "=", 1);
    if (is_dot_atom(value, strlen(value)))
        wputs(f, value);
    else
        wput_quoted(f, value);
}

long received_spf_compose(const struct received_spf *r, char *out, size_t outlen)
{
    struct fold f;
    f.out = out;
    f.cap = outlen;
    f.len = f.line = f.wlen = 0;
    f.fresh = f.err = f.have_word = f.word_newline = false;
    if (outlen)
        out[0] = '\0';
    if (!r || !is_keyword(r->result))
        f.err = true;
    put(&f, "Received-SPF:", 13);
    begin_word(&f, false);
    wputs(&f, r && r->result ? r->result : "");
    if (r && r->comment)
        comment_words(&f, r->comment);
    bool first = true;
    if (r) {
        spf_pair(&f, "receiver", r->receiver, &first);
        spf_pair(&f, "client-ip", r->client_ip, &first);
        spf_pair(&f, "envelope-from", r->envelope_from, &first);
        spf_pair(&f, "helo", r->helo, &first);
        spf_pair(&f, "identity", r->identity, &first);
        spf_pair(&f, "mechanism", r->mechanism, &first);
        spf_pair(&f, "problem", r->problem, &first);
    }
    return finish(&f);
}

/* ---------------------------------------------------------------------
 * Reading
 */

struct cur {
    const char *s;
    size_t n, i;
};

static bool at_end(const struct cur *c)
{
    return c->i >= c->n;
}

static unsigned char peek(const struct cur *c)
{
    return c->i < c->n ? (unsigned char)c->s[c->i] : 0;
}

/* Skip white space, line breaks and comments; false on a comment that
   does not end or nests too deep. */
static bool skip_cfws(struct cur *c)
{
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->s[c->i];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            c->i++;
            continue;
        }
        if (ch != '(')
            return true;
        int depth = 0;
        do {
            if (c->i >= c->n)
                return false;
            ch = (unsigned char)c->s[c->i++];
            if (ch == '\\') {
                if (c->i >= c->n)
                    return false;
                c->i++;
            } else if (ch == '(') {
                if (++depth > COMMENT_DEPTH)
                    return false;
            } else if (ch == ')') {
                depth--;
            } else if (ch == '\0') {
                return false;
            }
        } while (depth > 0);
    }
    return true;
}

/* A quoted-string (at '"') unquoted into out (at most max octets). */
static bool read_quoted(struct cur *c, char *out, size_t max)
{
    size_t o = 0;
    c->i++; /* the opening quote */
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->s[c->i++];
        if (ch == '"') {
            out[o] = '\0';
            return true;
        }
        if (ch == '\\') {
            if (c->i >= c->n)
                return false;
            ch = (unsigned char)c->s[c->i++];
        } else if (ch == '\r' || ch == '\n') {
            continue; /* folding inside the string */
        }
        if (ch == '\0' || o >= max)
            return false;
        out[o++] = (char)ch;
    }
    return false;
}

/* A value (RFC 2045 token or quoted-string) into out. */
static bool read_value(struct cur *c, char *out, size_t max)
{
    if (peek(c) == '"')
        return read_quoted(c, out, max);
    size_t o = 0;
    while (c->i < c->n && is_token_char((unsigned char)c->s[c->i])) {
        if (o >= max)
            return false;
        out[o++] = c->s[c->i++];
    }
    out[o] = '\0';
    return o > 0;
}

/* A keyword (letters, digits, '-', '_'), lowercase, into out. */
static bool read_keyword(struct cur *c, char *out, size_t max)
{
    size_t o = 0;
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->s[c->i];
        if (!is_alpha(ch) && !is_digit(ch) && ch != '-' && ch != '_')
            break;
        if (o >= max)
            return false;
        out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
        c->i++;
    }
    out[o] = '\0';
    return o > 0;
}

/* A property value: a quoted-string, or a run of printable octets up to
   white space, ';', '(' or '"' (a token, a domain, local@domain, and in
   practice base64 such as header.b=). */
static bool read_pvalue(struct cur *c, char *out, size_t max)
{
    if (peek(c) == '"')
        return read_quoted(c, out, max);
    size_t o = 0;
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->s[c->i];
        if (ch <= 0x20 || ch == 0x7f || ch == ';' || ch == '(' || ch == '"')
            break;
        if (o >= max)
            return false;
        out[o++] = (char)ch;
        c->i++;
    }
    out[o] = '\0';
    return o > 0;
}

/* digits, at most 9 of them */
static bool read_number(struct cur *c, unsigned long *out)
{
    size_t start = c->i;
    unsigned long v = 0;
    while (c->i < c->n && is_digit(peek(c))) {
        if (c->i - start >= 9)
            return false;
        v = v * 10 + (unsigned long)(peek(c) - '0');
        c->i++;
    }
    *out = v;
    return c->i > start;
}

/* authserv-id [CFWS authres-version]: leaves the cursor after them. */
static bool read_id(struct cur *c, struct authres_parsed *out)
{
    if (!skip_cfws(c) || !read_value(c, out->authserv_id, AUTHRES_VALUE_MAX) ||
        !out->authserv_id[0])
        return false; /* an empty quoted-string is no authserv-id */
    if (!skip_cfws(c))
        return false;
    if (is_digit(peek(c))) {
        if (!read_number(c, &out->version) || !skip_cfws(c))
            return false;
    }
    return true;
}

/* One resinfo after its ';': methodspec [reasonspec] *propspec. */
static bool read_resinfo(struct cur *c, struct authres_parsed_result *r)
{
    unsigned long ver;
    if (!read_keyword(c, r->method, AUTHRES_WORD_MAX) || !skip_cfws(c))
        return false;
    if (peek(c) == '/') {
        c->i++;
        if (!skip_cfws(c) || !read_number(c, &ver) || !skip_cfws(c))
            return false;
    }
    if (peek(c) != '=')
        return false;
    c->i++;
    if (!skip_cfws(c) || !read_keyword(c, r->result, AUTHRES_WORD_MAX) || !skip_cfws(c))
        return false;
    bool first = true;
    while (!at_end(c) && peek(c) != ';') {
        char ptype[AUTHRES_WORD_MAX + 1], property[AUTHRES_WORD_MAX + 1];
        if (!read_keyword(c, ptype, AUTHRES_WORD_MAX) || !skip_cfws(c))
            return false;
        if (first && strcmp(ptype, "reason") == 0 && peek(c) == '=') {
            c->i++;
            if (!skip_cfws(c) || !read_value(c, r->reason, AUTHRES_VALUE_MAX) || !skip_cfws(c))
                return false;
            first = false;
            continue;
        }
        first = false;
        if (peek(c) != '.')
            return false;
        c->i++;
        if (!skip_cfws(c) || !read_keyword(c, property, AUTHRES_WORD_MAX) || !skip_cfws(c))
            return false;
        if (peek(c) != '=')
            return false;
        c->i++;
        char value[AUTHRES_VALUE_MAX + 1];
        if (!skip_cfws(c) || !read_pvalue(c, value, AUTHRES_VALUE_MAX) || !skip_cfws(c))
            return false;
        if (r->nprops < AUTHRES_PARSE_PROPS) {
            memcpy(r->props[r->nprops].ptype, ptype, sizeof ptype);
            memcpy(r->props[r->nprops].property, property, sizeof property);
            memcpy(r->props[r->nprops].value, value, strlen(value) + 1);
            r->nprops++;
        } else {
            r->props_dropped++;
        }
    }
    return true;
}

enum authres_parse authres_parse(const char *v, size_t len, struct authres_parsed *out)
{
    memset(out, 0, sizeof *out);
    out->version = 1;
    struct cur c = {v ? v : "", v ? len : 0, 0};
    if (!read_id(&c, out))
        return AUTHRES_PARSE_MALFORMED;
    if (peek(&c) != ';')
        return AUTHRES_PARSE_ID_ONLY;
    c.i++;
    if (!skip_cfws(&c))
        return AUTHRES_PARSE_ID_ONLY;
    /* no-result: "; none" and nothing more */
    struct cur look = c;
    char word[AUTHRES_WORD_MAX + 1];
    if (read_keyword(&look, word, AUTHRES_WORD_MAX) && strcmp(word, "none") == 0 &&
        skip_cfws(&look) && at_end(&look)) {
        out->none = true;
        return AUTHRES_PARSE_OK;
    }
    for (;;) {
        if (at_end(&c))
            return out->nresults + out->results_dropped > 0 ? AUTHRES_PARSE_OK
                                                            : AUTHRES_PARSE_ID_ONLY;
        struct authres_parsed_result scratch;
        struct authres_parsed_result *r =
            out->nresults < AUTHRES_PARSE_MAX ? &out->results[out->nresults] : &scratch;
        memset(r, 0, sizeof *r);
        if (!read_resinfo(&c, r)) {
            memset(r, 0, sizeof *r);
            return AUTHRES_PARSE_ID_ONLY;
        }
        if (r == &scratch)
            out->results_dropped++;
        else
            out->nresults++;
        if (at_end(&c))
            return AUTHRES_PARSE_OK;
        c.i++; /* the ';' */
        if (!skip_cfws(&c))
            return AUTHRES_PARSE_ID_ONLY;
    }
}

bool authres_is_ours(const char *v, size_t len, const char *authserv_id)
{
    char id[AUTHRES_VALUE_MAX + 1];
    struct cur c = {v ? v : "", v ? len : 0, 0};
    if (!authserv_id || !authserv_id[0])
        return false;
    if (!skip_cfws(&c) || !read_value(&c, id, AUTHRES_VALUE_MAX))
        return false;
    return ascii_ieq(id, authserv_id);
}
