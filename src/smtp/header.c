/*
 * header - a resumable scanner of a message's header section and a parser of
 * address lists.
 *
 * RFCs: 5322 §2.2 (header fields: name, colon, body), §2.2.3 (folding and
 * unfolding), §3.2.2 (FWS, comments, CFWS), §3.2.3-3.2.5 (atoms, quoted
 * strings, phrases), §3.4 (address-list, mailbox, name-addr, angle-addr,
 * group, addr-spec, domain-literal), §3.6 (the Date, Message-ID and From
 * fields), §4.1-4.5 (obsolete syntax: white space before a field's colon,
 * obs-phrase, obs-local-part, obs-domain, obs-route, empty list elements),
 * 6532 §3.2 (UTF-8 in atoms, quoted strings, comments and domain literals).
 *
 * smtp_hdr_feed() is a state machine fed the content in chunks of any size;
 * one octet at a time gives the same result as one call. smtp_addr_list_parse()
 * reads a value with a small lexer (atoms, quoted strings, domain literals,
 * specials; CFWS skipped between tokens, comments nesting at most
 * HDR_COMMENT_DEPTH deep) and a recursive-descent parser whose depth is fixed
 * (a group holds mailboxes, never groups). Pure: no I/O, no allocation; all
 * results live in the caller's struct or array.
 */
#include "smtp/header.h"

#include <string.h>

#include "core/util.h"

/* Comments nest at most this deep; deeper is a syntax error. */
#define HDR_COMMENT_DEPTH 16

/* Where in a line the scanner is (struct smtp_hdr_scan.state). */
enum scan_state {
    SC_FIRST = 0, /* at the first octet of the content: no field before */
    SC_BOL,       /* at the start of a line that follows a field's line */
    SC_NAME,      /* in a field name */
    SC_NAME_WSP,  /* in white space between a field name and its colon */
    SC_VALUE,     /* in a field body */
    SC_VALUE_CR,  /* after a CR in a field body: a line end if LF follows */
    SC_DONE,      /* the header section has ended */
};

/* Which field the current line belongs to (struct smtp_hdr_scan.field). */
enum scan_field {
    FLD_OTHER = 0, /* any field whose body is not kept */
    FLD_FROM,      /* the first From: field, whose body goes to h->from */
};

void smtp_hdr_init(struct smtp_hdr_scan *h)
{
    memset(h, 0, sizeof *h);
    h->state = SC_FIRST;
    h->field = FLD_OTHER;
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* ftext (RFC 5322 §3.6.8): printable US-ASCII except the colon. */
static bool is_ftext(unsigned char c)
{
    return c >= 33 && c <= 126 && c != ':';
}

/* Append an octet of the From: body; white space before the first octet is
   not kept. */
static void from_add(struct smtp_hdr_scan *h, unsigned char c)
{
    if (h->from_len == 0 && is_wsp(c))
        return;
    if (h->from_len >= SMTP_HDR_FROM_MAX) {
        h->from_truncated = true;
        return;
    }
    h->from[h->from_len++] = (char)c;
    h->from[h->from_len] = '\0';
}

/* A field name and its colon were read: note which field this is. */
static void field_named(struct smtp_hdr_scan *h)
{
    h->field = FLD_OTHER;
    if (h->name_len >= sizeof h->name)
        return; /* longer than any name of interest */
    if (h->name_len == 4 && ascii_nieq(h->name, "From", 4)) {
        if (++h->from_fields == 1)
            h->field = FLD_FROM;
    } else if (h->name_len == 4 && ascii_nieq(h->name, "Date", 4)) {
        h->has_date = true;
    } else if (h->name_len == 10 && ascii_nieq(h->name, "Message-ID", 10)) {
        h->has_message_id = true;
    }
}

/* The header section ends at the line starting at offset `at`; returns that
   offset within the chunk that started at `base`, or -1 if it is earlier. */
static long hdr_end(struct smtp_hdr_scan *h, uint64_t at, uint64_t base)
{
    h->done = true;
    h->end = at;
    h->state = SC_DONE;
    return at >= base ? (long)(at - base) : -1;
}

long smtp_hdr_feed(struct smtp_hdr_scan *h, const uint8_t *p, size_t n)
{
    uint64_t base = h->offset;
    h->offset += n;
    if (h->done)
        return -1;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        switch (h->state) {
        case SC_FIRST:
        case SC_BOL:
            if (h->state == SC_BOL && is_wsp(c)) {
                /* a folded line: the white space belongs to the body */
                h->state = SC_VALUE;
                continue;
            }
            h->line = base + i;
            h->field = FLD_OTHER;
            if (!is_ftext(c)) /* empty line (CR, LF), WSP first, or no name */
                return hdr_end(h, h->line, base);
            h->name_len = 0;
            h->state = SC_NAME;
            continue;
        case SC_NAME:
            if (is_ftext(c)) {
                if (h->name_len < sizeof h->name)
                    h->name[h->name_len] = (char)c;
                h->name_len++;
                i++;
            } else if (c == ':') {
                field_named(h);
                h->state = SC_VALUE;
                i++;
            } else if (is_wsp(c)) {
                h->state = SC_NAME_WSP;
                i++;
            } else {
                return hdr_end(h, h->line, base);
            }
            break;
        case SC_NAME_WSP:
            if (is_wsp(c)) {
                i++;
            } else if (c == ':') {
                field_named(h);
                h->state = SC_VALUE;
                i++;
            } else {
                return hdr_end(h, h->line, base);
            }
            break;
        case SC_VALUE:
            if (h->field != FLD_FROM) {
                /* fast path: nothing of this body is kept */
                while (i < n && p[i] != '\r' && p[i] != '\n')
                    i++;
                if (i >= n)
                    break;
                c = p[i];
            }
            if (c == '\r')
                h->state = SC_VALUE_CR;
            else if (c == '\n') /* bare LF: a line end all the same */
                h->state = SC_BOL;
            else
                from_add(h, c);
            i++;
            break;
        case SC_VALUE_CR:
            if (c == '\n') {
                h->state = SC_BOL;
                i++;
                break;
            }
            /* a bare CR is part of the body; c is read again as body */
            if (h->field == FLD_FROM)
                from_add(h, '\r');
            h->state = SC_VALUE;
            break;
        default:
            return -1;
        }
    }
    return -1;
}

/* ---- address lists (RFC 5322 §3.4) ---------------------------------------- */

/* A position in the value being parsed. */
struct cur {
    const unsigned char *s; /* the value */
    size_t n;               /* its length */
    size_t p;               /* the next octet to read */
};

/* Kinds of token of the lexer. */
enum tok_kind {
    T_END,     /* end of the value */
    T_ATOM,    /* 1*atext */
    T_QSTR,    /* a quoted string, quotes included */
    T_DLIT,    /* a domain literal, brackets included */
    T_SPECIAL, /* one of < > @ , : ; . */
    T_ERR,     /* anything else: a syntax error */
};

/* A token: its kind and where it lies in the value. */
struct tok {
    enum tok_kind kind;
    size_t start, end; /* octets [start, end) of the value */
    unsigned char ch;  /* the character of a T_SPECIAL */
};

/* An addr-spec being assembled. */
struct abuf {
    char s[SMTP_PATH_MAX + 1]; /* the text, NUL-terminated when emitted */
    size_t len;                /* octets in s */
    bool over;                 /* the text did not fit */
};

/* Where the addresses go. */
struct alist {
    char (*out)[SMTP_PATH_MAX + 1]; /* the caller's array */
    size_t max;                     /* its size */
    size_t count;                   /* addresses written */
};

/* Words and dots read before a "<", ":" or "@": a phrase or a local-part. */
struct words {
    size_t tokens;  /* words and dots read */
    bool phrase_ok; /* a phrase: a word first (obs-phrase allows dots after) */
    bool local_ok;  /* a local-part: word *("." word) */
};

/* obs-NO-WS-CTL (RFC 5322 §4.1): control characters other than white space,
   CR, LF and NUL. */
static bool is_obs_ctl(unsigned char c)
{
    return (c >= 1 && c <= 8) || c == 11 || c == 12 || (c >= 14 && c <= 31) || c == 127;
}

/* atext (RFC 5322 §3.2.3), with UTF-8 octets (RFC 6532 §3.2). */
static bool is_atext(unsigned char c)
{
    if (c >= 0x80)
        return true;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* ctext, qtext and dtext (RFC 5322 §3.2.2, §3.2.4, §3.4.1), obsolete control
   characters and UTF-8 octets included. */
static bool is_ctext(unsigned char c)
{
    return (c >= 33 && c <= 126 && c != '(' && c != ')' && c != '\\') || c >= 0x80 || is_obs_ctl(c);
}

static bool is_qtext(unsigned char c)
{
    return (c >= 33 && c <= 126 && c != '"' && c != '\\') || c >= 0x80 || is_obs_ctl(c);
}

static bool is_dtext(unsigned char c)
{
    return (c >= 33 && c <= 126 && c != '[' && c != ']' && c != '\\') || c >= 0x80 || is_obs_ctl(c);
}

/* Octets of folding white space at p: WSP, or CRLF followed by WSP; 0 if none. */
static size_t fws_len(const struct cur *c, size_t p)
{
    if (p < c->n && is_wsp(c->s[p]))
        return 1;
    if (p + 2 < c->n && c->s[p] == '\r' && c->s[p + 1] == '\n' && is_wsp(c->s[p + 2]))
        return 3;
    return 0;
}

/* A quoted-pair at p ("\" and any octet but NUL, CR and LF). */
static bool quoted_pair_at(const struct cur *c, size_t p)
{
    if (p + 1 >= c->n)
        return false;
    unsigned char q = c->s[p + 1];
    return q != 0 && q != '\r' && q != '\n';
}

/* Skip a comment at c->p (an opening parenthesis); nesting is counted, not
   recursed into. */
static bool skip_comment(struct cur *c)
{
    int depth = 0;
    while (c->p < c->n) {
        unsigned char ch = c->s[c->p];
        size_t w;
        if (ch == '(') {
            if (++depth > HDR_COMMENT_DEPTH)
                return false;
            c->p++;
        } else if (ch == ')') {
            c->p++;
            if (--depth == 0)
                return true;
        } else if (ch == '\\') {
            if (!quoted_pair_at(c, c->p))
                return false;
            c->p += 2;
        } else if ((w = fws_len(c, c->p)) > 0) {
            c->p += w;
        } else if (is_ctext(ch)) {
            c->p++;
        } else {
            return false;
        }
    }
    return false; /* unterminated */
}

/* Skip CFWS; false on a malformed comment. */
static bool skip_cfws(struct cur *c)
{
    for (;;) {
        size_t w = fws_len(c, c->p);
        if (w > 0)
            c->p += w;
        else if (c->p < c->n && c->s[c->p] == '(') {
            if (!skip_comment(c))
                return false;
        } else
            return true;
    }
}

/* The end (just past the closing octet `close`) of the quoted string or
   domain literal that opens at p, or 0 when it is malformed or unterminated. */
static size_t delimited_end(const struct cur *c, size_t p, unsigned char close,
                            bool (*is_text)(unsigned char))
{
    p++;
    while (p < c->n) {
        unsigned char ch = c->s[p];
        size_t w;
        if (ch == close)
            return p + 1;
        if (ch == '\\') {
            if (!quoted_pair_at(c, p))
                return 0;
            p += 2;
        } else if ((w = fws_len(c, p)) > 0) {
            p += w;
        } else if (is_text(ch)) {
            p++;
        } else {
            return 0;
        }
    }
    return 0; /* unterminated */
}

/* The next token after CFWS, without moving c; *after is where it ends. */
static struct tok peek(const struct cur *c, size_t *after)
{
    struct cur k = *c;
    struct tok t = {T_ERR, 0, 0, 0};
    *after = c->p;
    if (!skip_cfws(&k))
        return t;
    t.start = k.p;
    if (k.p >= k.n) {
        t.kind = T_END;
        t.end = k.p;
    } else if (is_atext(k.s[k.p])) {
        size_t e = k.p;
        while (e < k.n && is_atext(k.s[e]))
            e++;
        t.kind = T_ATOM;
        t.end = e;
    } else if (k.s[k.p] == '"' || k.s[k.p] == '[') {
        bool q = k.s[k.p] == '"';
        size_t e = delimited_end(&k, k.p, q ? '"' : ']', q ? is_qtext : is_dtext);
        if (e == 0)
            return t;
        t.kind = q ? T_QSTR : T_DLIT;
        t.end = e;
    } else if (k.s[k.p] != 0 && strchr("<>@,:;.", k.s[k.p]) != NULL) {
        t.kind = T_SPECIAL;
        t.ch = k.s[k.p];
        t.end = k.p + 1;
    } else {
        return t;
    }
    *after = t.end;
    return t;
}

/* Consume the next token if it is the special character ch. */
static bool take(struct cur *c, unsigned char ch)
{
    size_t after;
    struct tok t = peek(c, &after);
    if (t.kind != T_SPECIAL || t.ch != ch)
        return false;
    c->p = after;
    return true;
}

static void ab_put(struct abuf *b, unsigned char ch)
{
    if (b->len >= SMTP_PATH_MAX) {
        b->over = true;
        return;
    }
    b->s[b->len++] = (char)ch;
}

/* Append a token's text; inside quoted strings and domain literals, CRLF of
   folding white space is dropped, and so is all white space of a literal. */
static void ab_tok(struct abuf *b, const struct cur *c, const struct tok *t)
{
    for (size_t i = t->start; i < t->end; i++) {
        unsigned char ch = c->s[i];
        if (ch == '\\' && i + 1 < t->end) {
            ab_put(b, ch);
            ab_put(b, c->s[++i]);
        } else if (ch == '\r' || ch == '\n' || (t->kind == T_DLIT && is_wsp(ch))) {
            continue;
        } else {
            ab_put(b, ch);
        }
    }
}

/* Read words and dots, appending their text to b; stop before anything else. */
static void read_words(struct cur *c, struct abuf *b, struct words *w)
{
    bool last_word = false;
    w->tokens = 0;
    w->phrase_ok = false;
    w->local_ok = true;
    for (;;) {
        size_t after;
        struct tok t = peek(c, &after);
        bool word = t.kind == T_ATOM || t.kind == T_QSTR;
        bool dot = t.kind == T_SPECIAL && t.ch == '.';
        if (!word && !dot)
            break;
        if (w->tokens == 0)
            w->phrase_ok = word;
        if (word == last_word) /* two words, a dot first or two dots */
            w->local_ok = false;
        ab_tok(b, c, &t);
        last_word = word;
        w->tokens++;
        c->p = after;
    }
    if (!last_word)
        w->local_ok = false; /* none, or a dot last */
}

/* domain = dot-atom / domain-literal / obs-domain, appended to b. */
static bool read_domain(struct cur *c, struct abuf *b)
{
    size_t after;
    struct tok t = peek(c, &after);
    if (t.kind == T_DLIT) {
        ab_tok(b, c, &t);
        c->p = after;
        return true;
    }
    for (;;) {
        if (t.kind != T_ATOM)
            return false;
        ab_tok(b, c, &t);
        c->p = after;
        if (!take(c, '.'))
            return true;
        ab_put(b, '.');
        t = peek(c, &after);
    }
}

/* obs-route = obs-domain-list ":", after the "<"; checked and dropped. */
static bool read_route(struct cur *c)
{
    struct abuf scratch;
    while (take(c, ','))
        ;
    if (!take(c, '@'))
        return false;
    for (;;) {
        scratch.len = 0;
        if (!read_domain(c, &scratch))
            return false;
        for (;;) {
            if (take(c, ':'))
                return true;
            if (!take(c, ','))
                return false;
            if (take(c, '@'))
                break;
        }
    }
}

/* Hand an assembled addr-spec to the caller. */
static bool emit(struct alist *l, struct abuf *b)
{
    if (b->over || l->count >= l->max)
        return false;
    memcpy(l->out[l->count], b->s, b->len);
    l->out[l->count][b->len] = '\0';
    l->count++;
    return true;
}

/* local-part "@" domain, then the caller's next token. */
static bool finish_addr_spec(struct cur *c, struct abuf *b, const struct words *w)
{
    if (!w->local_ok || !take(c, '@'))
        return false;
    ab_put(b, '@');
    return read_domain(c, b);
}

/* angle-addr / obs-angle-addr after its "<". */
static bool read_angle(struct cur *c, struct alist *l)
{
    struct abuf b = {.len = 0, .over = false};
    struct words w;
    size_t after;
    struct tok t = peek(c, &after);
    if (t.kind == T_SPECIAL && (t.ch == '@' || t.ch == ',') && !read_route(c))
        return false;
    read_words(c, &b, &w);
    if (!finish_addr_spec(c, &b, &w) || !take(c, '>'))
        return false;
    return emit(l, &b);
}

static bool read_address(struct cur *c, struct alist *l, bool in_group);

/* group-list after "display-name :", through the ";". */
static bool read_group(struct cur *c, struct alist *l)
{
    for (;;) {
        if (take(c, ';'))
            return true;
        if (take(c, ',')) /* obs-mbox-list: empty elements */
            continue;
        if (!read_address(c, l, true))
            return false;
        if (take(c, ';'))
            return true;
        if (!take(c, ','))
            return false;
    }
}

/* address = mailbox / group; mailbox = name-addr / addr-spec. In a group,
   only a mailbox. */
static bool read_address(struct cur *c, struct alist *l, bool in_group)
{
    struct abuf b = {.len = 0, .over = false};
    struct words w;
    read_words(c, &b, &w);
    size_t after;
    struct tok t = peek(c, &after);
    if (t.kind != T_SPECIAL)
        return false;
    if (t.ch == '@') {
        if (!finish_addr_spec(c, &b, &w))
            return false;
        return emit(l, &b);
    }
    if (w.tokens > 0 && !w.phrase_ok)
        return false;
    if (t.ch == '<') {
        c->p = after;
        return read_angle(c, l);
    }
    if (t.ch == ':' && !in_group && w.tokens > 0) {
        c->p = after;
        return read_group(c, l);
    }
    return false;
}

int smtp_addr_list_parse(const char *v, size_t len, char (*out)[SMTP_PATH_MAX + 1], size_t max)
{
    struct cur c = {(const unsigned char *)v, len, 0};
    struct alist l = {out, max, 0};
    for (;;) {
        size_t after;
        struct tok t = peek(&c, &after);
        if (t.kind == T_END)
            break;
        if (take(&c, ',')) /* obs-addr-list: empty elements */
            continue;
        if (!read_address(&c, &l, false))
            return -1;
        t = peek(&c, &after);
        if (t.kind == T_END)
            break;
        if (!take(&c, ','))
            return -1;
    }
    return (int)l.count;
}

/* ---- removing fields ----------------------------------------------------- */

/* The end of the line that starts at i (the octet after its LF), or len when
   the line has no LF within p. */
static size_t line_end(const uint8_t *p, size_t len, size_t i)
{
    const uint8_t *nl = memchr(p + i, '\n', len - i);
    return nl ? (size_t)(nl - p) + 1 : len;
}

size_t smtp_hdr_remove(uint8_t *p, size_t len, smtp_hdr_drop_fn drop, void *arg, size_t *removed)
{
    size_t in = 0, out = 0, count = 0;
    while (in < len) {
        /* the empty line ends the section */
        if (p[in] == '\n' || (p[in] == '\r' && in + 1 < len && p[in + 1] == '\n'))
            break;
        /* a field: name, optional white space, colon */
        size_t name_end = in;
        while (name_end < len && is_ftext(p[name_end]))
            name_end++;
        size_t colon = name_end;
        while (colon < len && is_wsp(p[colon]))
            colon++;
        if (name_end == in || colon >= len || p[colon] != ':')
            break; /* not a field (or cut off): the section ends here */
        /* the field runs until a line that does not start with white space */
        size_t end = line_end(p, len, in);
        while (end < len && is_wsp(p[end]))
            end = line_end(p, len, end);
        if (end >= len)
            break; /* nothing starts after it within p: it may go on, keep it */
        size_t vstart = colon + 1;
        size_t vend = end;
        if (vend > vstart && p[vend - 1] == '\n')
            vend--;
        if (vend > vstart && p[vend - 1] == '\r')
            vend--;
        if (drop(arg, (const char *)p + in, name_end - in, (const char *)p + vstart,
                 vend - vstart)) {
            count++;
        } else {
            memmove(p + out, p + in, end - in);
            out += end - in;
        }
        in = end;
    }
    if (in < len) {
        memmove(p + out, p + in, len - in);
        out += len - in;
    }
    if (removed)
        *removed = count;
    return out;
}
