/*
 * spf - SPF record syntax, macros and check_host() as a state machine (see
 * spf.h for the interface and the choices RFC 7208 leaves open).
 *
 * RFC 7208 §2.3, §2.4, §2.6, §4.3-§4.8, §5, §6, §7, §12 (the ABNF).
 *
 * The evaluator keeps a stack of frames, one per check_host() in progress:
 * the identity's record and one per include being evaluated. A frame holds
 * its record's text and the offset of its next term; terms are parsed again
 * from the text when they are evaluated (the whole record was checked when
 * it was fetched), so nothing is allocated past spf_eval_new()'s one block.
 * redirect= replaces the frame it ends. Every state that needs DNS goes
 * through ask(), which either leaves a query for the caller or, for a name
 * that cannot be queried, answers it at once as a name that does not exist.
 * A temperror or permerror anywhere ends the whole evaluation.
 */
#include "dns/spf.h"

#include "core/util.h"
#include "dns/mx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The longest macro value (a sender, a HELO name, an address) expanded. */
#define VALUE_MAX 1024
/* The window kept while a domain-spec is expanded: only its last 254
   octets can survive the truncation of §7.3. */
#define DOMAIN_WINDOW 1024
/* The longest exp= TXT text read. */
#define EXP_TEXT_MAX 1024
/* Digit transformers above this keep every part anyway. */
#define DIGITS_CAP 1000

/* ---------------------------------------------------------------------
 * Names
 */

const char *spf_result_name(enum spf_result_code r)
{
    switch (r) {
    case SPF_NONE:
        return "none";
    case SPF_NEUTRAL:
        return "neutral";
    case SPF_PASS:
        return "pass";
    case SPF_FAIL:
        return "fail";
    case SPF_SOFTFAIL:
        return "softfail";
    case SPF_TEMPERROR:
        return "temperror";
    case SPF_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

const char *spf_identity_name(enum spf_identity id)
{
    return id == SPF_IDENTITY_HELO ? "helo" : "mailfrom";
}

/* ---------------------------------------------------------------------
 * Small helpers
 */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* s[0..len) equals the lowercase literal lit, ignoring case. */
static bool word_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && ascii_nieq(s, lit, len);
}

/* Copy at most n octets of s into out (size n + 1). */
static void copy_bounded(char *out, size_t n, const char *s)
{
    size_t l = strnlen(s, n);
    memcpy(out, s, l);
    out[l] = '\0';
}

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

/* A term or other untrusted text for a message: printable ASCII, others as
   '?', at most 60 octets then "...". */
static void show(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < outlen; i++) {
        if (i == 60) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (outlen)
        out[o < outlen ? o : outlen - 1] = '\0';
}

bool spf_record_is_spf1(const char *s, size_t len)
{
    return len >= 6 && ascii_nieq(s, "v=spf1", 6) && (len == 6 || s[6] == ' ');
}

/* ---------------------------------------------------------------------
 * Macros (§7.1, §7.2, §7.3)
 */

enum tok_kind {
    TOK_LITERAL,   /* s[at..at+len) as it is */
    TOK_PERCENT,   /* %% */
    TOK_SPACE,     /* %_ */
    TOK_ENC_SPACE, /* %- ("%20") */
    TOK_MACRO,     /* %{...} */
};

/* One token of a macro-string. */
struct mtok {
    enum tok_kind kind;
    size_t at, len;  /* where it is in the string */
    char letter;     /* TOK_MACRO: lowercase macro letter */
    bool upper;      /* the letter was upper case: URL-escape the value */
    bool reverse;    /* the "r" transformer */
    unsigned digits; /* the digit transformer; 0 when absent */
    unsigned delims; /* bit per delimiter of DELIMS; 0: "." */
};

static const char DELIMS[] = ".-+,/_=";

/* The next token of s at *i. 1 a token, 0 the end, -1 a syntax error. */
static int mtok_next(const char *s, size_t len, size_t *i, bool explain, struct mtok *t, char *err,
                     size_t errlen)
{
    size_t p = *i;
    if (p >= len)
        return 0;
    memset(t, 0, sizeof *t);
    t->at = p;
    if (s[p] != '%') {
        while (p < len && s[p] != '%') {
            unsigned char c = (unsigned char)s[p];
            if (!((c >= 0x21 && c <= 0x7e) || (explain && c == ' '))) {
                set_err(err, errlen, "octet 0x%02x is not allowed", c);
                return -1;
            }
            p++;
        }
        t->kind = TOK_LITERAL;
        t->len = p - t->at;
        *i = p;
        return 1;
    }
    if (p + 1 >= len) {
        set_err(err, errlen, "'%%' at the end");
        return -1;
    }
    char c = s[p + 1];
    if (c == '%' || c == '_' || c == '-') {
        t->kind = c == '%' ? TOK_PERCENT : c == '_' ? TOK_SPACE : TOK_ENC_SPACE;
        t->len = 2;
        *i = p + 2;
        return 1;
    }
    if (c != '{') {
        set_err(err, errlen, "'%%' followed by '%c'", c >= 0x21 && c < 0x7f ? c : '?');
        return -1;
    }
    p += 2;
    if (p >= len) {
        set_err(err, errlen, "unterminated macro");
        return -1;
    }
    char letter = lower(s[p]);
    if (!strchr("slodiphv", letter) || letter == '\0') {
        if (letter != '\0' && strchr("crt", letter)) {
            if (!explain) {
                set_err(err, errlen, "macro %%{%c} is allowed only in exp= text", s[p]);
                return -1;
            }
        } else {
            set_err(err, errlen, "unknown macro letter '%c'",
                    s[p] >= 0x21 && s[p] < 0x7f ? s[p] : '?');
            return -1;
        }
    }
    t->kind = TOK_MACRO;
    t->letter = letter;
    t->upper = s[p] != letter;
    p++;
    size_t nd = 0;
    unsigned v = 0;
    while (p < len && is_digit(s[p])) {
        v = v * 10 + (unsigned)(s[p] - '0');
        if (v > DIGITS_CAP)
            v = DIGITS_CAP + 1;
        nd++;
        p++;
    }
    if (nd > 0 && v == 0) {
        set_err(err, errlen, "a digit transformer of 0");
        return -1;
    }
    t->digits = v;
    if (p < len && (s[p] == 'r' || s[p] == 'R')) {
        t->reverse = true;
        p++;
    }
    while (p < len && s[p] != '\0' && strchr(DELIMS, s[p])) {
        t->delims |= 1u << (strchr(DELIMS, s[p]) - DELIMS);
        p++;
    }
    if (p >= len || s[p] != '}') {
        set_err(err, errlen, "malformed macro");
        return -1;
    }
    p++;
    t->len = p - t->at;
    *i = p;
    return 1;
}

bool spf_macro_check(const char *s, size_t len, bool explain, char *err, size_t errlen)
{
    size_t i = 0;
    struct mtok t;
    int r;
    while ((r = mtok_next(s, len, &i, explain, &t, err, errlen)) == 1)
        ;
    return r == 0;
}

bool spf_macro_uses_p(const char *s, size_t len)
{
    size_t i = 0;
    struct mtok t;
    while (mtok_next(s, len, &i, true, &t, NULL, 0) == 1)
        if (t.kind == TOK_MACRO && t.letter == 'p')
            return true;
    return false;
}

/* Where expanded text goes: cut at cap - 1 octets, or (slide) keeping the
   last octets by dropping the first half whenever it fills. */
struct sink {
    char *buf;
    size_t cap;
    size_t len;
    bool slide;
};

static void sink_put(struct sink *k, char c)
{
    if (k->len + 1 >= k->cap) {
        if (!k->slide)
            return;
        size_t drop = k->cap / 2;
        memmove(k->buf, k->buf + drop, k->len - drop);
        k->len -= drop;
    }
    k->buf[k->len++] = c;
}

static void sink_puts(struct sink *k, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink_put(k, s[i]);
}

/* The value of a macro letter into buf (VALUE_MAX octets); returns its
   length. */
static size_t macro_value(const struct spf_macro_ctx *c, char letter, char *buf)
{
    const char *v = NULL;
    switch (letter) {
    case 's':
        v = c->sender;
        break;
    case 'l':
        v = c->local;
        break;
    case 'o':
        v = c->sender_domain;
        break;
    case 'd':
        v = c->domain;
        break;
    case 'h':
        v = c->helo;
        break;
    case 'p':
        v = c->validated && c->validated[0] ? c->validated : "unknown";
        break;
    case 'r':
        v = c->receiver && c->receiver[0] ? c->receiver : "unknown";
        break;
    case 'v':
        v = c->ip.family == AF_INET6 ? "ip6" : "in-addr";
        break;
    case 't':
        snprintf(buf, VALUE_MAX, "%lld", (long long)c->now);
        return strlen(buf);
    case 'c':
        dns_addr_format(&c->ip, buf, VALUE_MAX);
        return strlen(buf);
    case 'i':
        if (c->ip.family == AF_INET6) {
            static const char hex[] = "0123456789abcdef";
            size_t n = 0;
            for (size_t k = 0; k < 16; k++) {
                buf[n++] = hex[c->ip.bytes[k] >> 4];
                buf[n++] = '.';
                buf[n++] = hex[c->ip.bytes[k] & 15];
                buf[n++] = '.';
            }
            buf[--n] = '\0';
            return n;
        }
        snprintf(buf, VALUE_MAX, "%u.%u.%u.%u", c->ip.bytes[0], c->ip.bytes[1], c->ip.bytes[2],
                 c->ip.bytes[3]);
        return strlen(buf);
    default:
        break;
    }
    if (!v)
        v = "";
    size_t n = strnlen(v, VALUE_MAX - 1);
    memcpy(buf, v, n);
    buf[n] = '\0';
    return n;
}

static bool is_delim(const struct mtok *t, char c)
{
    if (t->delims == 0)
        return c == '.';
    const char *d = c ? strchr(DELIMS, c) : NULL;
    return d && (t->delims & (1u << (d - DELIMS)));
}

/* Put one octet of an expanded macro, URL-escaped when asked (RFC 3986
   unreserved octets stay as they are). */
static void put_escaped(struct sink *k, char c, bool escape)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!escape || is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        sink_put(k, c);
        return;
    }
    unsigned char u = (unsigned char)c;
    sink_put(k, '%');
    sink_put(k, hex[u >> 4]);
    sink_put(k, hex[u & 15]);
}

/* §7.3: split the value on the delimiters, reverse, keep the right-hand
   parts, join with ".", URL-escape for an upper-case letter. */
static void expand_macro(const struct spf_macro_ctx *c, const struct mtok *t, struct sink *k)
{
    char v[VALUE_MAX];
    size_t n = macro_value(c, t->letter, v);
    uint16_t start[VALUE_MAX + 1], end[VALUE_MAX + 1];
    size_t parts = 0;
    size_t s = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || is_delim(t, v[i])) {
            start[parts] = (uint16_t)s;
            end[parts] = (uint16_t)i;
            parts++;
            s = i + 1;
        }
    }
    size_t keep = t->digits && t->digits < parts ? t->digits : parts;
    for (size_t j = parts - keep; j < parts; j++) {
        size_t idx = t->reverse ? parts - 1 - j : j;
        if (j > parts - keep)
            sink_put(k, '.');
        for (size_t i = start[idx]; i < end[idx]; i++)
            put_escaped(k, v[i], t->upper);
    }
}

/* Expand a macro-string (already checked) into k. */
static void expand(const struct spf_macro_ctx *c, const char *s, size_t len, bool explain,
                   struct sink *k)
{
    size_t i = 0;
    struct mtok t;
    while (mtok_next(s, len, &i, explain, &t, NULL, 0) == 1) {
        switch (t.kind) {
        case TOK_LITERAL:
            sink_puts(k, s + t.at, t.len);
            break;
        case TOK_PERCENT:
            sink_put(k, '%');
            break;
        case TOK_SPACE:
            sink_put(k, ' ');
            break;
        case TOK_ENC_SPACE:
            sink_puts(k, "%20", 3);
            break;
        case TOK_MACRO:
            expand_macro(c, &t, k);
            break;
        }
    }
}

void spf_expand_domain(const struct spf_macro_ctx *ctx, const char *s, size_t len,
                       char out[DNS_NAME_MAX + 1])
{
    char buf[DOMAIN_WINDOW];
    struct sink k = {buf, sizeof buf, 0, true};
    expand(ctx, s, len, false, &k);
    size_t n = k.len;
    if (n > 0 && buf[n - 1] == '.')
        n--;
    size_t from = 0;
    if (n > DNS_NAME_MAX) {
        /* remove labels from the left until the rest fits (§7.3) */
        from = n;
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == '.' && n - i - 1 <= DNS_NAME_MAX) {
                from = i + 1;
                break;
            }
        }
    }
    memcpy(out, buf + from, n - from);
    out[n - from] = '\0';
}

void spf_expand_text(const struct spf_macro_ctx *ctx, const char *s, size_t len, char *out,
                     size_t outlen)
{
    if (outlen == 0)
        return;
    struct sink k = {out, outlen, 0, false};
    expand(ctx, s, len, true, &k);
    out[k.len] = '\0';
}

/* ---------------------------------------------------------------------
 * Terms (§4.6.1, §5, §6, §12)
 */

/* toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum /
   "-" ) alphanum ) */
static bool toplabel_ok(const char *s, size_t len)
{
    if (len == 0 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
        return false;
    bool alpha = false, hyphen = false;
    for (size_t i = 0; i < len; i++) {
        if (is_alpha(s[i]))
            alpha = true;
        else if (s[i] == '-')
            hyphen = true;
        else if (!is_digit(s[i]))
            return false;
    }
    return alpha || hyphen;
}

/* domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "."
   ] ) / macro-expand */
static bool domain_spec_check(const char *s, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        set_err(err, errlen, "empty domain-spec");
        return false;
    }
    size_t i = 0;
    struct mtok t, last = {0};
    int r;
    while ((r = mtok_next(s, len, &i, false, &t, err, errlen)) == 1)
        last = t;
    if (r < 0)
        return false;
    if (last.kind != TOK_LITERAL)
        return true; /* ends with a macro-expand */
    size_t e = last.at + last.len;
    if (e > last.at && s[e - 1] == '.')
        e--;
    size_t dot = e;
    while (dot > last.at && s[dot - 1] != '.')
        dot--;
    if (dot == last.at || !toplabel_ok(s + dot, e - dot)) {
        set_err(err, errlen, "the domain does not end in a top-level label");
        return false;
    }
    return true;
}

/* A CIDR length: "0" or digits without a leading zero, at most 3. -1 when
   s[0..len) is not one. */
static int cidr_value(const char *s, size_t len)
{
    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* If s[0..*len) ends with "/" and a CIDR length (not "//..."), take it off:
   its value, or -1 when there is none. */
static int take_cidr(const char *s, size_t *len, bool dual)
{
    size_t n = *len;
    size_t d = n;
    while (d > 0 && is_digit(s[d - 1]))
        d--;
    if (d == n || d == 0 || s[d - 1] != '/')
        return -1;
    if (dual ? (d < 2 || s[d - 2] != '/') : (d >= 2 && s[d - 2] == '/'))
        return -1;
    int v = cidr_value(s + d, n - d);
    if (v < 0)
        return -2; /* "/0024", "/1234": a length, badly written */
    *len = d - (dual ? 2 : 1);
    return v;
}

/* ip4-network = qnum "." qnum "." qnum "." qnum; qnum = 0..255 without
   leading zeros. */
static bool ip4_parse(const char *s, size_t len, uint8_t out[4])
{
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        if (k > 0) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
        size_t st = i;
        unsigned v = 0;
        while (i < len && is_digit(s[i]) && i - st < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
            return false;
        out[k] = (uint8_t)v;
    }
    return i == len;
}

static bool ip6_parse(const char *s, size_t len, uint8_t out[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof buf)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(is_digit(s[i]) || strchr("abcdefABCDEF:.", s[i])) || s[i] == '\0')
            return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1;
}

static const struct {
    const char *name;
    enum spf_term_kind kind;
} mechanisms[] = {
    {"all", SPF_TERM_ALL}, {"include", SPF_TERM_INCLUDE}, {"a", SPF_TERM_A},
    {"mx", SPF_TERM_MX},   {"ptr", SPF_TERM_PTR},         {"ip4", SPF_TERM_IP4},
    {"ip6", SPF_TERM_IP6}, {"exists", SPF_TERM_EXISTS},
};

bool spf_term_parse(const char *s, size_t len, struct spf_term *t, char *err, size_t errlen)
{
    char shown[80];
    char why[160] = "";
    memset(t, 0, sizeof *t);
    t->qualifier = SPF_PASS;
    t->cidr4 = 32;
    t->cidr6 = 128;
    show(shown, sizeof shown, s, len);
    if (len == 0) {
        set_err(err, errlen, "empty term");
        return false;
    }

    /* modifier = name "=" macro-string; name = ALPHA *( ALPHA / DIGIT / "-"
       / "_" / "." ) */
    size_t i = 0;
    if (is_alpha(s[0])) {
        i = 1;
        while (i < len && (is_alnum(s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            i++;
        if (i < len && s[i] == '=') {
            const char *v = s + i + 1;
            size_t vlen = len - i - 1;
            t->spec = v;
            t->spec_len = vlen;
            if (word_is(s, i, "redirect") || word_is(s, i, "exp")) {
                t->kind = word_is(s, i, "exp") ? SPF_TERM_EXP : SPF_TERM_REDIRECT;
                if (!domain_spec_check(v, vlen, why, sizeof why))
                    goto bad;
                return true;
            }
            t->kind = SPF_TERM_UNKNOWN_MODIFIER;
            if (!spf_macro_check(v, vlen, false, why, sizeof why))
                goto bad;
            return true;
        }
    }

    /* directive = [ qualifier ] mechanism */
    i = 0;
    switch (s[0]) {
    case '+':
        i = 1;
        break;
    case '-':
        t->qualifier = SPF_FAIL;
        i = 1;
        break;
    case '~':
        t->qualifier = SPF_SOFTFAIL;
        i = 1;
        break;
    case '?':
        t->qualifier = SPF_NEUTRAL;
        i = 1;
        break;
    default:
        break;
    }
    size_t j = i;
    while (j < len && is_alnum(s[j]))
        j++;
    size_t m;
    for (m = 0; m < sizeof mechanisms / sizeof mechanisms[0]; m++)
        if (word_is(s + i, j - i, mechanisms[m].name))
            break;
    if (m == sizeof mechanisms / sizeof mechanisms[0] || (j < len && s[j] != ':' && s[j] != '/')) {
        set_err(err, errlen, "'%s': unknown mechanism", shown);
        return false;
    }
    t->kind = mechanisms[m].kind;
    const char *rest = s + j;
    size_t rlen = len - j;

    switch (t->kind) {
    case SPF_TERM_ALL:
        if (rlen != 0) {
            snprintf(why, sizeof why, "all takes no argument");
            goto bad;
        }
        return true;
    case SPF_TERM_INCLUDE:
    case SPF_TERM_EXISTS:
        if (rlen < 1 || rest[0] != ':') {
            snprintf(why, sizeof why, "a domain is required");
            goto bad;
        }
        t->spec = rest + 1;
        t->spec_len = rlen - 1;
        if (!domain_spec_check(t->spec, t->spec_len, why, sizeof why))
            goto bad;
        return true;
    case SPF_TERM_A:
    case SPF_TERM_MX: {
        int c6 = take_cidr(rest, &rlen, true);
        int c4 = take_cidr(rest, &rlen, false);
        if (c6 == -2 || c4 == -2 || c6 > 128 || c4 > 32) {
            snprintf(why, sizeof why, "invalid CIDR length");
            goto bad;
        }
        if (c6 >= 0)
            t->cidr6 = (unsigned)c6;
        if (c4 >= 0)
            t->cidr4 = (unsigned)c4;
    }
        /* fall through */
    case SPF_TERM_PTR:
        if (rlen == 0)
            return true;
        if (rest[0] != ':') {
            snprintf(why, sizeof why, "malformed argument");
            goto bad;
        }
        t->spec = rest + 1;
        t->spec_len = rlen - 1;
        if (!domain_spec_check(t->spec, t->spec_len, why, sizeof why))
            goto bad;
        return true;
    case SPF_TERM_IP4:
    case SPF_TERM_IP6: {
        bool v4 = t->kind == SPF_TERM_IP4;
        if (rlen < 1 || rest[0] != ':') {
            snprintf(why, sizeof why, "a network is required");
            goto bad;
        }
        const char *net = rest + 1;
        size_t nlen = rlen - 1;
        const char *slash = memchr(net, '/', nlen);
        size_t alen = slash ? (size_t)(slash - net) : nlen;
        if (slash) {
            int c = cidr_value(slash + 1, nlen - alen - 1);
            if (c < 0 || c > (v4 ? 32 : 128)) {
                snprintf(why, sizeof why, "invalid CIDR length");
                goto bad;
            }
            if (v4)
                t->cidr4 = (unsigned)c;
            else
                t->cidr6 = (unsigned)c;
        }
        if (v4 ? !ip4_parse(net, alen, t->net) : !ip6_parse(net, alen, t->net)) {
            snprintf(why, sizeof why, "invalid %s address", v4 ? "IPv4" : "IPv6");
            goto bad;
        }
        return true;
    }
    default:
        break;
    }
bad:
    set_err(err, errlen, "'%s': %s", shown, why);
    return false;
}

int spf_record_check(const char *s, size_t len, struct spf_record_info *info, char *err,
                     size_t errlen)
{
    memset(info, 0, sizeof *info);
    if (!spf_record_is_spf1(s, len)) {
        set_err(err, errlen, "not an SPF version 1 record");
        return -1;
    }
    size_t i = 6;
    for (;;) {
        while (i < len && s[i] == ' ')
            i++;
        if (i >= len)
            break;
        size_t at = i;
        while (i < len && s[i] != ' ')
            i++;
        struct spf_term t;
        if (!spf_term_parse(s + at, i - at, &t, err, errlen))
            return -1;
        info->terms++;
        if (t.kind == SPF_TERM_REDIRECT || t.kind == SPF_TERM_EXP) {
            bool redirect = t.kind == SPF_TERM_REDIRECT;
            if (redirect ? info->has_redirect : info->has_exp) {
                set_err(err, errlen, "%s= given twice", redirect ? "redirect" : "exp");
                return -1;
            }
            if (redirect) {
                info->has_redirect = true;
                info->redirect_at = at;
                info->redirect_len = i - at;
            } else {
                info->has_exp = true;
                info->exp_at = at;
                info->exp_len = i - at;
            }
        } else if (t.kind != SPF_TERM_UNKNOWN_MODIFIER) {
            info->directives++;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Evaluation
 */

/* Where the evaluation is. A *_WAIT state has a query outstanding (or
   answered at once by ask()) and takes its answer. */
enum state {
    ST_START,         /* the identity is checked and the first frame pushed */
    ST_RECORD,        /* the top frame's TXT records are needed */
    ST_RECORD_WAIT,   /* ... asked */
    ST_TERMS,         /* evaluate the top frame's next term */
    ST_A_WAIT,        /* a: the target's addresses asked */
    ST_MX_WAIT,       /* mx: the target's MX asked */
    ST_MX_ADDR,       /* mx: the addresses of the next MX name are needed */
    ST_MX_ADDR_WAIT,  /* ... asked */
    ST_EXISTS_WAIT,   /* exists: the target's A asked */
    ST_PTR_MATCH,     /* ptr: the validated names are known; compare */
    ST_VAL_PTR,       /* validation of the client's PTR names: PTR needed */
    ST_VAL_PTR_WAIT,  /* ... asked */
    ST_VAL_ADDR,      /* the addresses of the next PTR name are needed */
    ST_VAL_ADDR_WAIT, /* ... asked */
    ST_EXP,           /* fail: the exp= TXT record is needed */
    ST_EXP_WAIT,      /* ... asked */
    ST_EXP_TEXT,      /* the explain-string is fetched; expand it */
    ST_DONE,          /* res is final */
};

/* One check_host() in progress. */
struct frame {
    char domain[DNS_NAME_MAX + 1];   /* <domain>: %{d}, and where the record is */
    char record[SPF_RECORD_MAX + 1]; /* the selected record (after ST_RECORD_WAIT) */
    size_t len;
    size_t pos;                     /* offset of the next term */
    size_t term_at, term_len;       /* the term being evaluated */
    enum spf_result_code qualifier; /* its qualifier */
    struct spf_record_info info;
    bool redirected; /* reached by redirect=: no record is permerror */
};

struct spf_eval {
    struct spf_result res;
    enum state state;
    bool waiting;       /* q is outstanding */
    struct spf_query q; /* the query asked */
    /* the request */
    char sender[SPF_SENDER_MAX + 16];
    char local[SPF_SENDER_MAX + 16];
    char sender_domain[SPF_SENDER_MAX + 16];
    char helo[SPF_HELO_MAX + 1];
    char receiver[SPF_HELO_MAX + 1];
    struct dns_addr ip;
    int64_t now;
    char top_term[SPF_MECHANISM_MAX + 1]; /* the identity frame's term in progress */
    /* frames */
    size_t depth; /* frames in use */
    struct frame frames[SPF_MAX_DEPTH];
    /* the mechanism in progress */
    char target[DNS_NAME_MAX + 1]; /* its expanded domain */
    unsigned cidr;                 /* its prefix length for the client's family */
    size_t nmx, mx_idx;
    char mx[SPF_MAX_MX][DNS_NAME_MAX + 1]; /* MX names to look up */
    /* validated PTR names of the client (§5.5), computed once */
    bool val_done;
    bool val_void;         /* count void lookups (for the ptr mechanism) */
    enum state val_return; /* where to go when done */
    size_t nptr, ptr_idx;
    char ptr[SPF_MAX_PTR][DNS_NAME_MAX + 1];
    size_t nvalid;
    char valid[SPF_MAX_PTR][DNS_NAME_MAX + 1];
    /* exp= */
    char exp_text[EXP_TEXT_MAX + 1];
};

static struct frame *top(struct spf_eval *e)
{
    return &e->frames[e->depth - 1];
}

static int addr_type(const struct spf_eval *e)
{
    return e->ip.family == AF_INET6 ? DNS_TYPE_AAAA : DNS_TYPE_A;
}

static void finish(struct spf_eval *e, enum spf_result_code r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct spf_eval *e, enum spf_result_code r, const char *fmt, ...)
{
    e->res.result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->res.reason, sizeof e->res.reason, fmt, ap);
    va_end(ap);
    for (char *p = e->res.reason; *p; p++) /* names may carry any octet */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    e->waiting = false;
    e->state = ST_DONE;
}

/* A permerror or temperror: the mechanism is the directive in progress. */
static void fail_error(struct spf_eval *e, enum spf_result_code r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_error(struct spf_eval *e, enum spf_result_code r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(e->res.mechanism, sizeof e->res.mechanism, "%s", e->top_term);
    finish(e, r, "%s checking SPF for %s: %s",
           r == SPF_TEMPERROR ? "temporary error" : "permanent error", e->res.domain, msg);
}

/* The macro values for the current domain. */
static void macro_ctx(const struct spf_eval *e, const char *domain, struct spf_macro_ctx *c)
{
    c->sender = e->sender;
    c->local = e->local;
    c->sender_domain = e->sender_domain;
    c->domain = domain;
    c->helo = e->helo;
    c->receiver = e->receiver;
    c->ip = e->ip;
    c->now = e->now;
    c->validated = "unknown";
    if (!e->val_done || e->nvalid == 0)
        return;
    /* §7.3: the target domain itself, else a subdomain of it, else any */
    size_t dl = strlen(domain);
    for (size_t i = 0; i < e->nvalid; i++)
        if (ascii_ieq(e->valid[i], domain)) {
            c->validated = e->valid[i];
            return;
        }
    for (size_t i = 0; i < e->nvalid; i++) {
        size_t vl = strlen(e->valid[i]);
        if (vl > dl && e->valid[i][vl - dl - 1] == '.' &&
            ascii_ieq(e->valid[i] + vl - dl, domain)) {
            c->validated = e->valid[i];
            return;
        }
    }
    c->validated = e->valid[0];
}

/* Ask for name/type and go to wait. A name that cannot be queried is
   answered at once as one that does not exist. */
static void handle_answer(struct spf_eval *e, const struct dns_answer *a);

static void ask(struct spf_eval *e, const char *name, int type, enum state wait)
{
    e->state = wait;
    char norm[DNS_NAME_MAX + 1];
    if (!dns_query_name_normalize(name, norm)) {
        static const struct dns_answer nx = {.status = DNS_ANSWER_NXDOMAIN};
        handle_answer(e, &nx);
        return;
    }
    memcpy(e->q.name, norm, sizeof norm);
    e->q.type = type;
    e->waiting = true;
    e->res.queries++;
}

/* A void lookup (§4.6.4): false when it is one too many (the evaluation
   ended with permerror). */
static bool count_void(struct spf_eval *e, const char *name)
{
    if (++e->res.void_lookups > SPF_MAX_VOID_LOOKUPS) {
        fail_error(e, SPF_PERMERROR, "more than %d void lookups (the last: %s)",
                   SPF_MAX_VOID_LOOKUPS, name);
        return false;
    }
    return true;
}

static const char *type_name(int type)
{
    switch (type) {
    case DNS_TYPE_A:
        return "A";
    case DNS_TYPE_AAAA:
        return "AAAA";
    case DNS_TYPE_MX:
        return "MX";
    case DNS_TYPE_PTR:
        return "PTR";
    default:
        return "TXT";
    }
}

static void dns_error(struct spf_eval *e, const struct dns_answer *a)
{
    if (a->reason[0])
        fail_error(e, SPF_TEMPERROR, "%s", a->reason);
    else
        fail_error(e, SPF_TEMPERROR, "DNS error looking up %s for %s", type_name(e->q.type),
                   e->q.name);
}

/* The final result of the identity's frame (not an error). */
static void conclude(struct spf_eval *e, enum spf_result_code r)
{
    const char *d = e->res.domain, *c = e->res.client;
    e->res.result = r;
    switch (r) {
    case SPF_PASS:
        finish(e, r, "%s designates %s as permitted sender", d, c);
        break;
    case SPF_FAIL:
        if (e->frames[0].info.has_exp) {
            e->state = ST_EXP;
            return;
        }
        finish(e, r, "%s is not a permitted sender of %s", c, d);
        break;
    case SPF_SOFTFAIL:
        finish(e, r, "%s does not designate %s as permitted sender (softfail)", d, c);
        break;
    case SPF_NEUTRAL:
        finish(e, r, "%s neither permits nor denies %s as a sender", d, c);
        break;
    default:
        finish(e, r, "%s publishes no SPF record", d);
        break;
    }
}

/* The record of the top frame came to r without an error; matched: a
   directive decided it (else no record, or no directive matched). */
static void frame_result(struct spf_eval *e, enum spf_result_code r, bool matched)
{
    struct frame *f = top(e);
    if (r == SPF_NONE && f->redirected) {
        fail_error(e, SPF_PERMERROR, "the redirect= domain %s has no SPF record", f->domain);
        return;
    }
    if (e->depth > 1) {
        e->depth--;
        struct frame *p = top(e);
        if (r == SPF_NONE) {
            fail_error(e, SPF_PERMERROR, "the include: domain %s has no SPF record", f->domain);
        } else if (r == SPF_PASS) {
            frame_result(e, p->qualifier, true); /* the include matches */
        } else {
            e->state = ST_TERMS; /* fail, softfail, neutral: no match (§5.2) */
        }
        return;
    }
    if (matched)
        snprintf(e->res.mechanism, sizeof e->res.mechanism, "%s", e->top_term);
    else if (r == SPF_NEUTRAL)
        snprintf(e->res.mechanism, sizeof e->res.mechanism, "default");
    conclude(e, r);
}

static void push_frame(struct spf_eval *e, const char *domain)
{
    struct frame *f = &e->frames[e->depth++];
    memset(f, 0, sizeof *f);
    copy_bounded(f->domain, DNS_NAME_MAX, domain);
    e->state = ST_RECORD;
}

static void start_validation(struct spf_eval *e, enum state ret, bool count_voids)
{
    e->val_return = ret;
    e->val_void = count_voids;
    e->state = ST_VAL_PTR;
}

/* The term of the top frame at at/len, already checked. */
static void term_at(struct frame *f, size_t at, size_t len, struct spf_term *t)
{
    if (!spf_term_parse(f->record + at, len, t, NULL, 0))
        memset(t, 0, sizeof *t); /* cannot happen: the record was checked */
}

static void note_term(struct spf_eval *e, struct frame *f)
{
    if (e->depth == 1) {
        size_t n = f->term_len < SPF_MECHANISM_MAX ? f->term_len : SPF_MECHANISM_MAX;
        memcpy(e->top_term, f->record + f->term_at, n);
        e->top_term[n] = '\0';
    }
}

static bool net_match(const struct dns_addr *ip, int family, const uint8_t *net, unsigned prefix)
{
    if (ip->family != family)
        return false;
    unsigned bytes = prefix / 8, bits = prefix % 8;
    if (memcmp(ip->bytes, net, bytes) != 0)
        return false;
    if (bits) {
        uint8_t mask = (uint8_t)(0xff << (8 - bits));
        return ((ip->bytes[bytes] ^ net[bytes]) & mask) == 0;
    }
    return true;
}

/* No term matched: redirect= or the default (§4.7, §6.1). */
static void end_of_terms(struct spf_eval *e)
{
    struct frame *f = top(e);
    if (!f->info.has_redirect) {
        frame_result(e, SPF_NEUTRAL, false);
        return;
    }
    struct spf_term t;
    term_at(f, f->info.redirect_at, f->info.redirect_len, &t);
    if (spf_macro_uses_p(t.spec, t.spec_len) && !e->val_done) {
        start_validation(e, ST_TERMS, false);
        return;
    }
    f->term_at = f->info.redirect_at;
    f->term_len = f->info.redirect_len;
    note_term(e, f);
    if (++e->res.lookups > SPF_MAX_LOOKUPS) {
        fail_error(e, SPF_PERMERROR, "more than %d DNS-querying terms", SPF_MAX_LOOKUPS);
        return;
    }
    struct spf_macro_ctx c;
    char target[DNS_NAME_MAX + 1];
    macro_ctx(e, f->domain, &c);
    spf_expand_domain(&c, t.spec, t.spec_len, target);
    memset(f, 0, sizeof *f);
    copy_bounded(f->domain, DNS_NAME_MAX, target);
    f->redirected = true;
    e->state = ST_RECORD;
}

/* Evaluate the next term of the top frame. */
static void next_term(struct spf_eval *e)
{
    struct frame *f = top(e);
    while (f->pos < f->len && f->record[f->pos] == ' ')
        f->pos++;
    if (f->pos >= f->len) {
        end_of_terms(e);
        return;
    }
    size_t at = f->pos;
    while (f->pos < f->len && f->record[f->pos] != ' ')
        f->pos++;
    struct spf_term t;
    term_at(f, at, f->pos - at, &t);
    f->term_at = at;
    f->term_len = f->pos - at;
    f->qualifier = t.qualifier;
    switch (t.kind) {
    case SPF_TERM_REDIRECT:
    case SPF_TERM_EXP:
    case SPF_TERM_UNKNOWN_MODIFIER:
        return; /* modifiers act after the mechanisms */
    case SPF_TERM_ALL:
        note_term(e, f);
        frame_result(e, t.qualifier, true);
        return;
    case SPF_TERM_IP4:
    case SPF_TERM_IP6:
        note_term(e, f);
        if (t.kind == SPF_TERM_IP4 ? net_match(&e->ip, AF_INET, t.net, t.cidr4)
                                   : net_match(&e->ip, AF_INET6, t.net, t.cidr6))
            frame_result(e, t.qualifier, true);
        return;
    default:
        break;
    }
    /* include, a, mx, ptr, exists: DNS-querying terms */
    if (t.spec && spf_macro_uses_p(t.spec, t.spec_len) && !e->val_done) {
        f->pos = at; /* evaluate it again once %{p} is known */
        start_validation(e, ST_TERMS, false);
        return;
    }
    note_term(e, f);
    if (++e->res.lookups > SPF_MAX_LOOKUPS) {
        fail_error(e, SPF_PERMERROR, "more than %d DNS-querying terms", SPF_MAX_LOOKUPS);
        return;
    }
    if (t.spec) {
        struct spf_macro_ctx c;
        macro_ctx(e, f->domain, &c);
        spf_expand_domain(&c, t.spec, t.spec_len, e->target);
    } else {
        snprintf(e->target, sizeof e->target, "%s", f->domain);
    }
    e->cidr = e->ip.family == AF_INET6 ? t.cidr6 : t.cidr4;
    switch (t.kind) {
    case SPF_TERM_INCLUDE:
        if (e->depth >= SPF_MAX_DEPTH) {
            fail_error(e, SPF_PERMERROR, "include nested too deep");
            return;
        }
        push_frame(e, e->target);
        return;
    case SPF_TERM_A:
        ask(e, e->target, addr_type(e), ST_A_WAIT);
        return;
    case SPF_TERM_MX:
        ask(e, e->target, DNS_TYPE_MX, ST_MX_WAIT);
        return;
    case SPF_TERM_EXISTS:
        ask(e, e->target, DNS_TYPE_A, ST_EXISTS_WAIT);
        return;
    case SPF_TERM_PTR:
        if (e->val_done)
            e->state = ST_PTR_MATCH;
        else
            start_validation(e, ST_PTR_MATCH, true);
        return;
    default:
        return;
    }
}

/* The reverse name of the client (§5.5). */
static void reverse_name(const struct dns_addr *ip, char out[DNS_NAME_MAX + 1])
{
    if (ip->family == AF_INET6) {
        static const char hex[] = "0123456789abcdef";
        size_t n = 0;
        for (int k = 15; k >= 0; k--) {
            out[n++] = hex[ip->bytes[k] & 15];
            out[n++] = '.';
            out[n++] = hex[ip->bytes[k] >> 4];
            out[n++] = '.';
        }
        memcpy(out + n, "ip6.arpa", 9);
        return;
    }
    snprintf(out, DNS_NAME_MAX + 1, "%u.%u.%u.%u.in-addr.arpa", ip->bytes[3], ip->bytes[2],
             ip->bytes[1], ip->bytes[0]);
}

/* Is name the domain itself or a subdomain of it? */
static bool in_domain(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    if (d > 0 && domain[d - 1] == '.')
        d--;
    if (n == d)
        return ascii_nieq(name, domain, d);
    return n > d && name[n - d - 1] == '.' && ascii_nieq(name + n - d, domain, d);
}

/* Select the SPF record among TXT records (§4.5). */
static void on_record(struct spf_eval *e, const struct dns_answer *a)
{
    struct frame *f = top(e);
    bool counted = e->depth > 1 || f->redirected;
    if (a->status == DNS_ANSWER_TEMPFAIL) {
        dns_error(e, a);
        return;
    }
    if (a->status != DNS_ANSWER_DATA) {
        if (counted && !count_void(e, f->domain))
            return;
        frame_result(e, SPF_NONE, false);
        return;
    }
    size_t found = 0, which = 0;
    for (size_t i = 0; i < a->n; i++) {
        /* the first 7 octets of the joined character-strings */
        char head[7];
        size_t h = 0, p = 0;
        while (p < a->len[i] && h < sizeof head) {
            size_t l = a->rdata[i][p++];
            for (size_t k = 0; k < l && p < a->len[i] && h < sizeof head; k++)
                head[h++] = (char)a->rdata[i][p++];
        }
        if (spf_record_is_spf1(head, h)) {
            found++;
            which = i;
        }
    }
    if (found == 0) {
        frame_result(e, SPF_NONE, false);
        return;
    }
    if (found > 1) {
        fail_error(e, SPF_PERMERROR, "%s has %zu SPF records", f->domain, found);
        return;
    }
    long n = dns_txt_join(a->rdata[which], a->len[which], f->record, sizeof f->record);
    if (n < 0) {
        fail_error(e, SPF_PERMERROR, "the SPF record of %s is malformed or longer than %d octets",
                   f->domain, SPF_RECORD_MAX);
        return;
    }
    f->len = (size_t)n;
    char err[256];
    if (spf_record_check(f->record, f->len, &f->info, err, sizeof err) < 0) {
        fail_error(e, SPF_PERMERROR, "the SPF record of %s: %s", f->domain, err);
        return;
    }
    f->pos = 6;
    e->state = ST_TERMS;
}

/* An answer of addresses (a, mx): 1 one matches, 0 none, -1 the evaluation
   ended. */
static int on_addrs(struct spf_eval *e, const struct dns_answer *a, unsigned prefix)
{
    if (a->status == DNS_ANSWER_TEMPFAIL) {
        dns_error(e, a);
        return -1;
    }
    if (a->status != DNS_ANSWER_DATA)
        return count_void(e, e->q.name) ? 0 : -1;
    int family = e->ip.family;
    for (size_t i = 0; i < a->n; i++) {
        struct dns_addr x;
        if (dns_rdata_addr(family, a->rdata[i], a->len[i], &x) &&
            net_match(&e->ip, family, x.bytes, prefix))
            return 1;
    }
    return 0;
}

static void on_mx(struct spf_eval *e, const struct dns_answer *a)
{
    if (a->status == DNS_ANSWER_TEMPFAIL) {
        dns_error(e, a);
        return;
    }
    if (a->status != DNS_ANSWER_DATA) {
        if (count_void(e, e->q.name))
            e->state = ST_TERMS;
        return;
    }
    if (a->n + a->dropped > SPF_MAX_MX) {
        fail_error(e, SPF_PERMERROR, "%s has more than %d MX records", e->q.name, SPF_MAX_MX);
        return;
    }
    /* in preference order (the order only changes which error is met first) */
    uint16_t pref[SPF_MAX_MX];
    e->nmx = 0;
    for (size_t i = 0; i < a->n; i++) {
        uint16_t p;
        char name[DNS_NAME_MAX + 1];
        if (!mx_rdata_parse(a->rdata[i], a->len[i], &p, name) || name[0] == '\0')
            continue;
        size_t k = e->nmx++;
        while (k > 0 && pref[k - 1] > p) {
            pref[k] = pref[k - 1];
            memcpy(e->mx[k], e->mx[k - 1], sizeof e->mx[k]);
            k--;
        }
        pref[k] = p;
        memcpy(e->mx[k], name, sizeof name);
    }
    e->mx_idx = 0;
    e->state = ST_MX_ADDR;
}

static void on_ptr(struct spf_eval *e, const struct dns_answer *a)
{
    e->nptr = 0;
    e->ptr_idx = 0;
    e->state = ST_VAL_ADDR;
    if (a->status == DNS_ANSWER_TEMPFAIL)
        return; /* §5.5: no match; %{p} is "unknown" */
    if (a->status != DNS_ANSWER_DATA) {
        if (e->val_void)
            count_void(e, e->q.name);
        return;
    }
    /* §4.6.4: only the first 10 names */
    for (size_t i = 0; i < a->n && e->nptr < SPF_MAX_PTR; i++)
        if (dns_name_from_wire(a->rdata[i], a->len[i], e->ptr[e->nptr]) && e->ptr[e->nptr][0])
            e->nptr++;
}

static void on_ptr_addrs(struct spf_eval *e, const struct dns_answer *a)
{
    const char *name = e->ptr[e->ptr_idx];
    e->ptr_idx++;
    e->state = ST_VAL_ADDR;
    if (a->status == DNS_ANSWER_TEMPFAIL)
        return; /* §5.5: that name is skipped */
    if (a->status != DNS_ANSWER_DATA) {
        if (e->val_void)
            count_void(e, e->q.name);
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        struct dns_addr x;
        if (dns_rdata_addr(e->ip.family, a->rdata[i], a->len[i], &x) &&
            memcmp(x.bytes, e->ip.bytes, e->ip.family == AF_INET6 ? 16 : 4) == 0) {
            memcpy(e->valid[e->nvalid++], name, DNS_NAME_MAX + 1);
            return;
        }
    }
}

static void on_exp(struct spf_eval *e, const struct dns_answer *a)
{
    const char *c = e->res.client, *d = e->res.domain;
    /* §6.2: anything but exactly one TXT record: no explanation */
    if (a->status != DNS_ANSWER_DATA || a->n != 1 || a->dropped != 0 ||
        dns_txt_join(a->rdata[0], a->len[0], e->exp_text, sizeof e->exp_text) < 0 ||
        !spf_macro_check(e->exp_text, strlen(e->exp_text), true, NULL, 0)) {
        finish(e, SPF_FAIL, "%s is not a permitted sender of %s", c, d);
        return;
    }
    e->state = ST_EXP_TEXT;
}

static void handle_answer(struct spf_eval *e, const struct dns_answer *ans)
{
    struct dns_answer nx;
    const struct dns_answer *a = ans;
    if (ans->status == DNS_ANSWER_INVALID) {
        memset(&nx, 0, sizeof nx);
        nx.status = DNS_ANSWER_NXDOMAIN;
        a = &nx;
    }
    e->waiting = false;
    switch (e->state) {
    case ST_RECORD_WAIT:
        on_record(e, a);
        break;
    case ST_A_WAIT: {
        int r = on_addrs(e, a, e->cidr);
        if (r == 1)
            frame_result(e, top(e)->qualifier, true);
        else if (r == 0)
            e->state = ST_TERMS;
        break;
    }
    case ST_MX_WAIT:
        on_mx(e, a);
        break;
    case ST_MX_ADDR_WAIT: {
        int r = on_addrs(e, a, e->cidr);
        if (r == 1) {
            frame_result(e, top(e)->qualifier, true);
        } else if (r == 0) {
            e->mx_idx++;
            e->state = ST_MX_ADDR;
        }
        break;
    }
    case ST_EXISTS_WAIT:
        if (a->status == DNS_ANSWER_TEMPFAIL)
            dns_error(e, a);
        else if (a->status == DNS_ANSWER_DATA)
            frame_result(e, top(e)->qualifier, true);
        else if (count_void(e, e->q.name))
            e->state = ST_TERMS;
        break;
    case ST_VAL_PTR_WAIT:
        on_ptr(e, a);
        break;
    case ST_VAL_ADDR_WAIT:
        on_ptr_addrs(e, a);
        break;
    case ST_EXP_WAIT:
        on_exp(e, a);
        break;
    default:
        break;
    }
}

/* One transition from a state that needs no answer. */
static void step(struct spf_eval *e)
{
    switch (e->state) {
    case ST_RECORD: {
        struct frame *f = top(e);
        char norm[DNS_NAME_MAX + 1];
        if (!dns_query_name_normalize(f->domain, norm) || !strchr(norm, '.')) {
            /* §4.3: not a valid multi-label domain: "none" (an include or
               redirect of it: permerror) */
            if (e->depth == 1 && !f->redirected) {
                finish(e, SPF_NONE, "%s is not a valid domain name", e->res.domain);
                return;
            }
            frame_result(e, SPF_NONE, false);
            return;
        }
        ask(e, f->domain, DNS_TYPE_TXT, ST_RECORD_WAIT);
        return;
    }
    case ST_TERMS:
        next_term(e);
        return;
    case ST_MX_ADDR:
        if (e->mx_idx >= e->nmx) {
            e->state = ST_TERMS;
            return;
        }
        ask(e, e->mx[e->mx_idx], addr_type(e), ST_MX_ADDR_WAIT);
        return;
    case ST_PTR_MATCH:
        for (size_t i = 0; i < e->nvalid; i++) {
            if (in_domain(e->valid[i], e->target)) {
                frame_result(e, top(e)->qualifier, true);
                return;
            }
        }
        e->state = ST_TERMS;
        return;
    case ST_VAL_PTR: {
        char rev[DNS_NAME_MAX + 1];
        reverse_name(&e->ip, rev);
        ask(e, rev, DNS_TYPE_PTR, ST_VAL_PTR_WAIT);
        return;
    }
    case ST_VAL_ADDR:
        if (e->ptr_idx >= e->nptr) {
            e->val_done = true;
            e->state = e->val_return;
            return;
        }
        ask(e, e->ptr[e->ptr_idx], addr_type(e), ST_VAL_ADDR_WAIT);
        return;
    case ST_EXP: {
        struct frame *f = &e->frames[0];
        struct spf_term t;
        term_at(f, f->info.exp_at, f->info.exp_len, &t);
        if (spf_macro_uses_p(t.spec, t.spec_len) && !e->val_done) {
            start_validation(e, ST_EXP, false);
            return;
        }
        struct spf_macro_ctx c;
        macro_ctx(e, f->domain, &c);
        spf_expand_domain(&c, t.spec, t.spec_len, e->target);
        ask(e, e->target, DNS_TYPE_TXT, ST_EXP_WAIT);
        return;
    }
    case ST_EXP_TEXT: {
        size_t n = strlen(e->exp_text);
        if (spf_macro_uses_p(e->exp_text, n) && !e->val_done) {
            start_validation(e, ST_EXP_TEXT, false);
            return;
        }
        struct spf_macro_ctx c;
        macro_ctx(e, e->frames[0].domain, &c);
        spf_expand_text(&c, e->exp_text, n, e->res.explanation, sizeof e->res.explanation);
        for (char *p = e->res.explanation; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        finish(e, SPF_FAIL, "%s is not a permitted sender of %s", e->res.client, e->res.domain);
        return;
    }
    default:
        /* a *_WAIT state without a query cannot happen */
        fail_error(e, SPF_PERMERROR, "internal error");
        return;
    }
}

/* §4.3, §2.3, §2.4: the identity's domain and <sender>. */
static void start(struct spf_eval *e, const struct spf_request *req)
{
    const char *helo = req->helo ? req->helo : "";
    const char *sender = req->sender ? req->sender : "";
    size_t hl = strlen(helo), sl = strlen(sender);
    if (hl <= SPF_HELO_MAX)
        memcpy(e->helo, helo, hl + 1);
    bool helo_ok = hl > 0 && hl <= SPF_HELO_MAX && helo[0] != '[';
    const char *domain;
    if (req->identity == SPF_IDENTITY_HELO || sl == 0) {
        /* the HELO identity, and the null sender (§2.4) */
        if (!helo_ok) {
            finish(e, SPF_NONE, "%s",
                   hl == 0          ? "no HELO name to check"
                   : helo[0] == '[' ? "the HELO name is an address literal"
                                    : "the HELO name is too long");
            return;
        }
        snprintf(e->sender, sizeof e->sender, "postmaster@%s", e->helo);
        snprintf(e->local, sizeof e->local, "postmaster");
        snprintf(e->sender_domain, sizeof e->sender_domain, "%s", e->helo);
        domain = e->helo;
    } else {
        if (sl > SPF_SENDER_MAX) {
            finish(e, SPF_NONE, "the sender is longer than %d octets", SPF_SENDER_MAX);
            return;
        }
        memcpy(e->sender, sender, sl + 1);
        const char *at = strrchr(sender, '@');
        if (!at) {
            /* §4.3: no local-part: postmaster */
            snprintf(e->local, sizeof e->local, "postmaster");
            memcpy(e->sender_domain, sender, sl + 1);
            snprintf(e->sender, sizeof e->sender, "postmaster@%s", sender);
        } else {
            size_t ll = (size_t)(at - sender);
            if (ll == 0)
                snprintf(e->local, sizeof e->local, "postmaster");
            else
                copy_bounded(e->local, ll, sender);
            snprintf(e->sender_domain, sizeof e->sender_domain, "%s", at + 1);
        }
        domain = e->sender_domain;
    }
    snprintf(e->res.sender, sizeof e->res.sender, "%s", e->sender);
    size_t dl = strlen(domain);
    char norm[DNS_NAME_MAX + 1];
    if (dl > DNS_NAME_MAX + 1 || !dns_query_name_normalize(domain, norm) || !strchr(norm, '.')) {
        show(e->res.domain, sizeof e->res.domain, domain, dl);
        finish(e, SPF_NONE, "%s is not a valid domain name", e->res.domain);
        return;
    }
    char given[DNS_NAME_MAX + 2]; /* as written (%{d}), without its trailing dot */
    memcpy(given, domain, dl + 1);
    if (given[dl - 1] == '.')
        given[dl - 1] = '\0';
    memcpy(e->res.domain, norm, sizeof norm);
    push_frame(e, given);
}

struct spf_eval *spf_eval_new(const struct spf_request *req)
{
    struct spf_eval *e = xcalloc(1, sizeof *e);
    e->ip = req->client;
    if (e->ip.family == AF_INET6) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(e->ip.bytes, mapped, 12) == 0) {
            e->ip.family = AF_INET;
            memmove(e->ip.bytes, e->ip.bytes + 12, 4);
            memset(e->ip.bytes + 4, 0, 12);
        }
    } else {
        e->ip.family = AF_INET;
    }
    e->now = req->now;
    copy_bounded(e->receiver, SPF_HELO_MAX,
                 req->receiver && req->receiver[0] ? req->receiver : "unknown");
    e->res.identity = req->identity;
    dns_addr_format(&e->ip, e->res.client, sizeof e->res.client);
    e->state = ST_START;
    start(e, req);
    return e;
}

void spf_eval_free(struct spf_eval *e)
{
    free(e);
}

enum spf_step spf_eval_next(struct spf_eval *e, struct spf_query *q)
{
    for (;;) {
        if (e->state == ST_DONE)
            return SPF_STEP_DONE;
        if (e->waiting) {
            *q = e->q;
            return SPF_STEP_QUERY;
        }
        step(e);
    }
}

void spf_eval_answer(struct spf_eval *e, const struct dns_answer *a)
{
    if (!e->waiting || e->state == ST_DONE)
        return;
    handle_answer(e, a);
}

void spf_eval_abort(struct spf_eval *e, const char *why)
{
    if (e->state == ST_DONE)
        return;
    fail_error(e, SPF_TEMPERROR, "%s", why);
}

const struct spf_result *spf_eval_result(const struct spf_eval *e)
{
    return &e->res;
}
