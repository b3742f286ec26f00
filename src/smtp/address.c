/*
 * address - parse the reverse-path of MAIL FROM and the forward-path of
 * RCPT TO into a struct smtp_path.
 *
 * RFCs: 5321 §4.1.2 (Path, A-d-l source routes, Mailbox, Dot-string,
 * Quoted-string, Domain, address literals), §4.1.3 (IPv4, IPv6 and general
 * address literals), §4.5.3.1 (local-part 64, domain 255, path 256 octets),
 * §4.1.1.3 and §4.5.1 (<Postmaster> as a forward-path), 6531 §3.3 (UTF-8 in
 * local-parts and U-labels when SMTPUTF8 was given), 3629 (well-formed UTF-8).
 *
 * smtp_path_parse() is handed the text after "FROM:" or "TO:" (the session
 * strips those, case-insensitively): optional spaces, then "<path>", then
 * either the end or a space before the ESMTP parameters. A source route is
 * checked and then dropped. Label lengths (1..63) count octets, U-labels
 * included; a bare "Postmaster" is only a forward-path. Pure: no I/O, no
 * allocation; the result lives in the caller's struct and error replies are
 * static.
 */
#include "smtp/smtp.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/util.h"

static const struct smtp_status st_brackets = {501, "5.5.4",
                                               "Syntax error: address must be enclosed in <>"};
static const struct smtp_status st_unterminated = {501, "5.5.4",
                                                   "Syntax error: missing \">\" after address"};
static const struct smtp_status st_trailing = {501, "5.5.4",
                                               "Syntax error: unexpected text after \">\""};
static const struct smtp_status st_too_long = {501, "5.1.3", "Path too long"};
static const struct smtp_status st_utf8 = {553, "5.6.7",
                                           "Non-ASCII address not permitted without SMTPUTF8"};
static const struct smtp_status st_null_rcpt = {553, "5.1.3",
                                                "Null recipient address not permitted"};
/* Indexed by enum smtp_path_kind. */
static const struct smtp_status st_bad[2] = {
    {553, "5.1.7", "Bad sender address syntax"},
    {553, "5.1.3", "Bad recipient address syntax"},
};
static const struct smtp_status st_local_long[2] = {
    {553, "5.1.7", "Sender local-part too long"},
    {553, "5.1.3", "Recipient local-part too long"},
};
static const struct smtp_status st_domain_long[2] = {
    {553, "5.1.7", "Sender domain too long"},
    {553, "5.1.3", "Recipient domain too long"},
};

/* Why a piece of the grammar did not match. */
enum perr {
    P_OK = 0,
    P_SYNTAX,  /* not the grammar */
    P_NOUTF8,  /* an octet >= 0x80 without SMTPUTF8 */
    P_BADUTF8, /* malformed UTF-8 */
};

/* A mailbox found in the input: offsets of its parts. */
struct mbox {
    size_t lstart, lend; /* local-part as written */
    size_t dstart, dend; /* domain or address literal as written */
    bool quoted, utf8;
};

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 5321 atext (RFC 5322 §3.2.3), ASCII part. */
static bool is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Length of a well-formed UTF-8 sequence at p (RFC 3629 §4), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < k)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return k;
}

/* At an octet >= 0x80: step over one UTF-8 character if allowed. */
static enum perr take_utf8(const unsigned char *s, size_t n, size_t *p, bool utf8_ok, bool *seen)
{
    if (!utf8_ok)
        return P_NOUTF8;
    size_t k = utf8_len(s + *p, n - *p);
    if (k == 0)
        return P_BADUTF8;
    *p += k;
    *seen = true;
    return P_OK;
}

/* Local-part = Dot-string / Quoted-string (RFC 5321 §4.1.2, RFC 6531 §3.3). */
static enum perr parse_local(const unsigned char *s, size_t n, size_t *pp, bool utf8_ok,
                             struct mbox *m)
{
    size_t p = *pp;
    enum perr e;
    m->lstart = p;
    if (p < n && s[p] == '"') {
        m->quoted = true;
        p++;
        for (;;) {
            if (p >= n)
                return P_SYNTAX;
            unsigned char c = s[p];
            if (c == '"') {
                p++;
                break;
            }
            if (c == '\\') {
                if (p + 1 >= n || s[p + 1] < 32 || s[p + 1] > 126)
                    return P_SYNTAX;
                p += 2;
            } else if (c >= 0x80) {
                if ((e = take_utf8(s, n, &p, utf8_ok, &m->utf8)) != P_OK)
                    return e;
            } else if (c >= 32 && c <= 126) {
                p++;
            } else {
                return P_SYNTAX;
            }
        }
    } else {
        for (;;) {
            size_t atom = p;
            while (p < n) {
                if (s[p] >= 0x80) {
                    if ((e = take_utf8(s, n, &p, utf8_ok, &m->utf8)) != P_OK)
                        return e;
                } else if (is_atext(s[p])) {
                    p++;
                } else {
                    break;
                }
            }
            if (p == atom)
                return P_SYNTAX; /* empty atom: leading, trailing or double dot */
            if (p < n && s[p] == '.') {
                p++;
                continue;
            }
            break;
        }
    }
    m->lend = p;
    *pp = p;
    return P_OK;
}

/* Domain = sub-domain *("." sub-domain), LDH labels of 1..63 octets that neither
   start nor end with '-'; U-labels (any well-formed UTF-8) when utf8_ok. */
static enum perr parse_domain_name(const unsigned char *s, size_t n, size_t *pp, bool utf8_ok,
                                   bool *utf8)
{
    size_t p = *pp;
    enum perr e;
    for (;;) {
        size_t label = p;
        while (p < n) {
            if (s[p] >= 0x80) {
                if ((e = take_utf8(s, n, &p, utf8_ok, utf8)) != P_OK)
                    return e;
            } else if (is_alpha(s[p]) || is_digit(s[p]) || s[p] == '-') {
                p++;
            } else {
                break;
            }
        }
        if (p == label || p - label > 63 || s[label] == '-' || s[p - 1] == '-')
            return P_SYNTAX;
        if (p < n && s[p] == '.') {
            p++;
            continue;
        }
        break;
    }
    *pp = p;
    return P_OK;
}

/* IPv4-address-literal: Snum 3("." Snum), Snum = 1*3DIGIT with value <= 255. */
static bool ipv4_literal(const unsigned char *s, size_t n)
{
    size_t p = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (p >= n || s[p] != '.')
                return false;
            p++;
        }
        unsigned v = 0;
        size_t d = 0;
        while (p < n && is_digit(s[p]) && d < 3) {
            v = v * 10 + (unsigned)(s[p] - '0');
            p++;
            d++;
        }
        if (d == 0 || v > 255)
            return false;
    }
    return p == n;
}

/* IPv6-addr, checked by inet_pton on a bounded NUL-terminated copy. */
static bool ipv6_literal(const unsigned char *s, size_t n)
{
    char buf[64];
    struct in6_addr a;
    if (n == 0 || n >= sizeof buf)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F') ||
              s[i] == ':' || s[i] == '.'))
            return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

/* General-address-literal: Standardized-tag ":" 1*dcontent, where the tag is an
   Ldh-str; a tag of "IPv6" is held to the IPv6 grammar. */
static bool general_literal(const unsigned char *s, size_t n)
{
    size_t p = 0;
    while (p < n && (is_alpha(s[p]) || is_digit(s[p]) || s[p] == '-'))
        p++;
    if (p == 0 || p >= n || s[p] != ':' || s[p - 1] == '-')
        return false;
    if (p == 4 && ascii_nieq((const char *)s, "IPv6", 4))
        return ipv6_literal(s + 5, n - 5);
    if (p + 1 >= n)
        return false;
    for (size_t i = p + 1; i < n; i++)
        if (s[i] < 33 || s[i] > 126 || s[i] == '[' || s[i] == '\\' || s[i] == ']')
            return false;
    return true;
}

/* Domain / address-literal after the '@'. */
static enum perr parse_domain(const unsigned char *s, size_t n, size_t *pp, bool utf8_ok,
                              struct mbox *m)
{
    size_t p = *pp;
    m->dstart = p;
    if (p < n && s[p] == '[') {
        size_t q = p + 1;
        while (q < n && s[q] != ']') {
            if (s[q] >= 0x80)
                return utf8_ok ? P_SYNTAX : P_NOUTF8;
            if (s[q] < 33 || s[q] > 126 || s[q] == '[' || s[q] == '\\')
                return P_SYNTAX;
            q++;
        }
        if (q >= n)
            return P_SYNTAX;
        const unsigned char *lit = s + p + 1;
        size_t ln = q - p - 1;
        if (!ipv4_literal(lit, ln) && !general_literal(lit, ln))
            return P_SYNTAX;
        p = q + 1;
    } else {
        enum perr e = parse_domain_name(s, n, &p, utf8_ok, &m->utf8);
        if (e != P_OK)
            return e;
    }
    m->dend = p;
    *pp = p;
    return P_OK;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ). */
static enum perr parse_mailbox(const unsigned char *s, size_t n, size_t *pp, bool utf8_ok,
                               struct mbox *m)
{
    size_t p = *pp;
    enum perr e = parse_local(s, n, &p, utf8_ok, m);
    if (e != P_OK)
        return e;
    if (p >= n || s[p] != '@')
        return P_SYNTAX;
    p++;
    if ((e = parse_domain(s, n, &p, utf8_ok, m)) != P_OK)
        return e;
    *pp = p;
    return P_OK;
}

/* A-d-l ":" = At-domain *( "," At-domain ) ":", checked and dropped. */
static enum perr parse_route(const unsigned char *s, size_t n, size_t *pp, bool utf8_ok)
{
    size_t p = *pp;
    bool utf8 = false;
    for (;;) {
        if (p >= n || s[p] != '@')
            return P_SYNTAX;
        p++;
        enum perr e = parse_domain_name(s, n, &p, utf8_ok, &utf8);
        if (e != P_OK)
            return e;
        if (p < n && s[p] == ',') {
            p++;
            continue;
        }
        if (p < n && s[p] == ':') {
            p++;
            break;
        }
        return P_SYNTAX;
    }
    *pp = p;
    return P_OK;
}

/* True when the unescaped content of a quoted local-part is a plain dot-atom;
   then it is written to canon (NUL-terminated). */
static bool quoted_to_atom(const unsigned char *s, size_t n, bool utf8_ok, char *canon)
{
    char tmp[SMTP_LOCAL_MAX + 1];
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] == '\\')
            i++;
        if (k >= SMTP_LOCAL_MAX)
            return false;
        tmp[k++] = (char)s[i];
    }
    if (k == 0)
        return false;
    struct mbox m;
    size_t p = 0;
    memset(&m, 0, sizeof m);
    if (tmp[0] == '"' || parse_local((const unsigned char *)tmp, k, &p, utf8_ok, &m) != P_OK ||
        p != k)
        return false;
    memcpy(canon, tmp, k);
    canon[k] = '\0';
    return true;
}

static const struct smtp_status *perr_status(enum perr e, enum smtp_path_kind kind)
{
    if (e == P_NOUTF8)
        return &st_utf8;
    return &st_bad[kind];
}

/* Copy the mailbox found at m into out, after the length limits. */
static const struct smtp_status *fill(const unsigned char *s, const struct mbox *m,
                                      enum smtp_path_kind kind, bool utf8_ok, struct smtp_path *out)
{
    size_t ll = m->lend - m->lstart, dl = m->dend - m->dstart;
    if (ll > SMTP_LOCAL_MAX)
        return &st_local_long[kind];
    if (dl > SMTP_DOMAIN_MAX)
        return &st_domain_long[kind];
    if (ll + 1 + dl > SMTP_PATH_MAX - 2)
        return &st_too_long;
    out->utf8 = m->utf8;
    out->quoted = m->quoted;
    memcpy(out->local, s + m->lstart, ll);
    out->local[ll] = '\0';
    memcpy(out->domain, s + m->dstart, dl);
    out->domain[dl] = '\0';
    if (!m->quoted || !quoted_to_atom(s + m->lstart, ll, utf8_ok, out->local_canon))
        memcpy(out->local_canon, out->local, ll + 1);
    memcpy(out->addr, out->local, ll);
    out->addr[ll] = '@';
    memcpy(out->addr + ll + 1, out->domain, dl + 1);
    return NULL;
}

/* "MAIL FROM:user@example.org" from a broken client: one word, a valid mailbox. */
static const struct smtp_status *parse_bare(const unsigned char *s, size_t n, size_t p,
                                            enum smtp_path_kind kind, bool utf8_ok,
                                            struct smtp_path *out, const char **end)
{
    size_t w = p;
    while (w < n && s[w] != ' ')
        w++;
    for (size_t i = w; i < n; i++)
        if (s[i] != ' ')
            return &st_brackets;
    struct mbox m;
    memset(&m, 0, sizeof m);
    size_t q = p;
    if (w == p || parse_mailbox(s, w, &q, utf8_ok, &m) != P_OK || q != w)
        return &st_brackets;
    if (w - p + 2 > SMTP_PATH_MAX)
        return &st_too_long;
    const struct smtp_status *st = fill(s, &m, kind, utf8_ok, out);
    if (st == NULL)
        *end = (const char *)s + w;
    return st;
}

const struct smtp_status *smtp_path_parse(const char *str, size_t len, enum smtp_path_kind kind,
                                          bool utf8_ok, struct smtp_path *out, const char **end)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t p = 0;
    memset(out, 0, sizeof *out);
    if (kind != SMTP_PATH_REVERSE)
        kind = SMTP_PATH_FORWARD;
    *end = str;

    while (p < len && s[p] == ' ')
        p++;
    if (p >= len)
        return &st_brackets;
    if (s[p] != '<')
        return parse_bare(s, len, p, kind, utf8_ok, out, end);

    size_t open = p++;
    const struct smtp_status *st = NULL;
    size_t close;

    if (p < len && s[p] == '>') {
        /* "<>": the null reverse-path. */
        if (kind == SMTP_PATH_FORWARD)
            return &st_null_rcpt;
        out->null = true;
        close = p;
    } else if (kind == SMTP_PATH_FORWARD && len - p >= 11 &&
               ascii_nieq((const char *)s + p, "postmaster", 10) && s[p + 10] == '>') {
        /* "<Postmaster>" (any case): RCPT only. */
        out->postmaster = true;
        memcpy(out->local, s + p, 10);
        out->local[10] = '\0';
        memcpy(out->local_canon, out->local, 11);
        memcpy(out->addr, "postmaster", 11);
        close = p + 10;
    } else {
        enum perr e = P_OK;
        struct mbox m;
        memset(&m, 0, sizeof m);
        if (p < len && s[p] == '@')
            e = parse_route(s, len, &p, utf8_ok);
        if (e == P_OK)
            e = parse_mailbox(s, len, &p, utf8_ok, &m);
        if (e == P_OK && (p >= len || s[p] != '>'))
            e = P_SYNTAX;
        if (e != P_OK) {
            if (e == P_SYNTAX && memchr(s + p, '>', len - p) == NULL)
                return &st_unterminated;
            return perr_status(e, kind);
        }
        close = p;
        if (close + 1 - open > SMTP_PATH_MAX)
            return &st_too_long;
        st = fill(s, &m, kind, utf8_ok, out);
        if (st != NULL) {
            memset(out, 0, sizeof *out);
            return st;
        }
    }

    if (close + 1 - open > SMTP_PATH_MAX) {
        memset(out, 0, sizeof *out);
        return &st_too_long;
    }
    if (close + 1 < len && s[close + 1] != ' ') {
        memset(out, 0, sizeof *out);
        return &st_trailing;
    }
    *end = str + close + 1;
    return NULL;
}
