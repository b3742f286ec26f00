/*
 * dmarc - DMARC policy records, discovery, alignment and evaluation
 * (RFC 7489 §3.1, §6.3-§6.6, §11.2; RFC 9091 §4). See dmarc.h for the
 * interface and for where this code is tolerant of what the ABNF forbids.
 *
 * A record is read as a tag-list split on ';'. The v tag must come first
 * and read "DMARC1"; every other tag-spec is trimmed of white space,
 * matched by name and its value checked; what does not check keeps its
 * default. Discovery is a small state machine: _dmarc.<From domain> TXT,
 * then _dmarc.<organisational domain> TXT when the first held no DMARC
 * record, then (RFC 9091, only when np would change the outcome) A, AAAA
 * and MX of the From domain to learn whether it exists. Pure: no I/O, no
 * allocation; results live in the caller's structs.
 */
#include "dns/dmarc.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "dns/mx.h"
#include "smtp/header.h"
#include "smtp/smtp.h"

/* Query steps of discovery (struct dmarc_discovery.step). */
enum disc_step {
    STEP_FROM_TXT = 0, /* _dmarc.<From domain> TXT */
    STEP_ORG_TXT,      /* _dmarc.<organisational domain> TXT */
    STEP_A,            /* From domain A (RFC 9091 existence) */
    STEP_AAAA,         /* From domain AAAA */
    STEP_MX,           /* From domain MX */
    STEP_DONE,
};

/* Known tags, as bits of the set already seen. */
enum tag {
    TAG_V = 0,
    TAG_P,
    TAG_SP,
    TAG_NP,
    TAG_PCT,
    TAG_ADKIM,
    TAG_ASPF,
    TAG_RUA,
    TAG_RUF,
    TAG_FO,
    TAG_RF,
    TAG_RI,
    TAG_UNKNOWN,
};

static const char *const tag_names[] = {
    [TAG_V] = "v",     [TAG_P] = "p",         [TAG_SP] = "sp",     [TAG_NP] = "np",
    [TAG_PCT] = "pct", [TAG_ADKIM] = "adkim", [TAG_ASPF] = "aspf", [TAG_RUA] = "rua",
    [TAG_RUF] = "ruf", [TAG_FO] = "fo",       [TAG_RF] = "rf",     [TAG_RI] = "ri",
};

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Does s[0..n) equal the lowercase literal lit, in any case? */
static bool word_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && ascii_nieq(s, lit, n);
}

/* s[*b..*e) without white space at either end. */
static void trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && is_wsp(s[*b]))
        (*b)++;
    while (*e > *b && is_wsp(s[*e - 1]))
        (*e)--;
}

bool dmarc_record_is_dmarc(const char *s, size_t len)
{
    if (!s || len == 0 || lower(s[0]) != 'v')
        return false;
    size_t i = 1;
    while (i < len && is_wsp(s[i]))
        i++;
    if (i >= len || s[i] != '=')
        return false;
    i++;
    while (i < len && is_wsp(s[i]))
        i++;
    if (len - i < 6 || memcmp(s + i, "DMARC1", 6) != 0)
        return false;
    i += 6;
    while (i < len && is_wsp(s[i]))
        i++;
    return i == len || s[i] == ';';
}

static void record_defaults(struct dmarc_record *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->pct = 100;
    rec->fo = DMARC_FO_0;
    rec->rf = DMARC_RF_AFRF;
    rec->ri = 86400;
}

static bool parse_policy(const char *s, size_t n, enum dmarc_policy *out)
{
    if (word_is(s, n, "none"))
        *out = DMARC_POLICY_NONE;
    else if (word_is(s, n, "quarantine"))
        *out = DMARC_POLICY_QUARANTINE;
    else if (word_is(s, n, "reject"))
        *out = DMARC_POLICY_REJECT;
    else
        return false;
    return true;
}

static bool parse_align(const char *s, size_t n, enum dmarc_align *out)
{
    if (n != 1)
        return false;
    if (lower(s[0]) == 'r')
        *out = DMARC_ALIGN_RELAXED;
    else if (lower(s[0]) == 's')
        *out = DMARC_ALIGN_STRICT;
    else
        return false;
    return true;
}

/* Digits only, at most max. */
static bool parse_number(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return parse_u64(s, n, out) && *out <= max;
}

/* fo: "0" / "1" / "d" / "s" separated by ':' with optional white space. */
static bool parse_fo(const char *s, size_t n, unsigned *out)
{
    unsigned fo = 0;
    size_t pos = 0;
    for (;;) {
        const char *c = memchr(s + pos, ':', n - pos);
        size_t b = pos, e = c ? (size_t)(c - s) : n;
        trim(s, &b, &e);
        if (e - b != 1)
            return false;
        switch (lower(s[b])) {
        case '0':
            fo |= DMARC_FO_0;
            break;
        case '1':
            fo |= DMARC_FO_1;
            break;
        case 'd':
            fo |= DMARC_FO_D;
            break;
        case 's':
            fo |= DMARC_FO_S;
            break;
        default:
            return false;
        }
        if (!c)
            break;
        pos = (size_t)(c - s) + 1;
    }
    *out = fo;
    return true;
}

/* rf: Keywords (RFC 5321 Ldh-str) separated by ':'. */
static bool parse_rf(const char *s, size_t n, unsigned *out)
{
    unsigned rf = 0;
    size_t pos = 0;
    for (;;) {
        const char *c = memchr(s + pos, ':', n - pos);
        size_t b = pos, e = c ? (size_t)(c - s) : n;
        trim(s, &b, &e);
        if (e == b || s[e - 1] == '-')
            return false;
        for (size_t i = b; i < e; i++)
            if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-')
                return false;
        rf |= word_is(s + b, e - b, "afrf") ? DMARC_RF_AFRF : DMARC_RF_OTHER;
        if (!c)
            break;
        pos = (size_t)(c - s) + 1;
    }
    *out = rf;
    return true;
}

/* A character RFC 3986 allows in a URI after the scheme (unreserved,
   reserved and '%'), less ',' and '!' which a DMARC URI must
   percent-encode (§6.2). */
static bool is_uri_char(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-._~:/?#[]@$&'()*+;=%", c));
}

/* One dmarc-uri: URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]. */
static bool parse_uri(const char *s, size_t n, struct dmarc_uri *out)
{
    uint64_t size = 0;
    const char *bang = NULL;
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '!') {
            bang = s + i - 1;
            break;
        }
    }
    if (bang) {
        size_t b = (size_t)(bang - s) + 1;
        size_t e = n;
        unsigned shift = 0;
        if (e > b && !is_digit(s[e - 1])) {
            switch (lower(s[e - 1])) {
            case 'k':
                shift = 10;
                break;
            case 'm':
                shift = 20;
                break;
            case 'g':
                shift = 30;
                break;
            case 't':
                shift = 40;
                break;
            default:
                return false;
            }
            e--;
        }
        if (!parse_number(s + b, e - b, UINT64_MAX >> shift, &size))
            return false;
        size <<= shift;
        n = (size_t)(bang - s);
    }
    /* scheme ":" 1*uri-char */
    if (n == 0 || n > DMARC_URI_MAX || !is_alpha(s[0]))
        return false;
    size_t i = 1;
    while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= n || s[i] != ':' || i + 1 >= n)
        return false;
    for (size_t k = i + 1; k < n; k++) {
        if (!is_uri_char(s[k]))
            return false;
        if (s[k] == '%' && (k + 2 >= n || !is_hex(s[k + 1]) || !is_hex(s[k + 2])))
            return false;
    }
    memcpy(out->uri, s, n);
    out->uri[n] = '\0';
    out->max_size = size;
    return true;
}

/* rua, ruf: dmarc-uri *(*WSP "," *WSP dmarc-uri). Invalid URIs are dropped
   (and counted); the list is valid when it has at least one. */
static bool parse_uri_list(const char *s, size_t n, struct dmarc_uri *v, size_t *nv,
                           size_t *dropped)
{
    size_t pos = 0;
    *nv = 0;
    for (;;) {
        const char *c = memchr(s + pos, ',', n - pos);
        size_t b = pos, e = c ? (size_t)(c - s) : n;
        trim(s, &b, &e);
        struct dmarc_uri u;
        if (parse_uri(s + b, e - b, &u) && *nv < DMARC_URIS_MAX)
            v[(*nv)++] = u;
        else
            (*dropped)++;
        if (!c)
            break;
        pos = (size_t)(c - s) + 1;
    }
    return *nv > 0;
}

/* What one tag-spec did to the record. */
struct parse_state {
    unsigned seen;   /* bits of enum tag already given */
    bool sp_invalid; /* sp was given with an invalid value (§6.6.3) */
};

static void tag_spec(struct dmarc_record *rec, struct parse_state *ps, const char *s, size_t n)
{
    size_t b = 0, e = n;
    trim(s, &b, &e);
    if (b == e)
        return; /* an empty tag-spec: "p=none;" ends with one */
    size_t i = b;
    if (!is_alpha(s[i])) {
        rec->invalid++;
        return;
    }
    while (i < e && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_'))
        i++;
    size_t name_end = i;
    while (i < e && is_wsp(s[i]))
        i++;
    if (i >= e || s[i] != '=') {
        rec->invalid++;
        return;
    }
    i++;
    while (i < e && is_wsp(s[i]))
        i++;
    const char *v = s + i;
    size_t vn = e - i;

    enum tag t = TAG_UNKNOWN;
    for (int k = 0; k < TAG_UNKNOWN; k++) {
        if (word_is(s + b, name_end - b, tag_names[k])) {
            t = (enum tag)k;
            break;
        }
    }
    if (t == TAG_UNKNOWN) {
        rec->unknown++;
        return;
    }
    if (ps->seen & (1u << t)) {
        rec->invalid++;
        return;
    }
    ps->seen |= 1u << t;
    bool ok = true;
    uint64_t num;
    switch (t) {
    case TAG_V: /* a second v tag */
        ok = false;
        break;
    case TAG_P:
        ok = parse_policy(v, vn, &rec->p);
        break;
    case TAG_SP:
        ok = parse_policy(v, vn, &rec->sp);
        ps->sp_invalid = !ok;
        break;
    case TAG_NP:
        ok = parse_policy(v, vn, &rec->np);
        break;
    case TAG_PCT:
        ok = vn <= 3 && parse_number(v, vn, 100, &num);
        if (ok)
            rec->pct = (unsigned)num;
        break;
    case TAG_ADKIM:
        ok = parse_align(v, vn, &rec->adkim);
        break;
    case TAG_ASPF:
        ok = parse_align(v, vn, &rec->aspf);
        break;
    case TAG_RUA:
        ok = parse_uri_list(v, vn, rec->rua, &rec->nrua, &rec->uris_dropped);
        break;
    case TAG_RUF:
        ok = parse_uri_list(v, vn, rec->ruf, &rec->nruf, &rec->uris_dropped);
        break;
    case TAG_FO:
        ok = parse_fo(v, vn, &rec->fo);
        break;
    case TAG_RF:
        ok = parse_rf(v, vn, &rec->rf);
        break;
    case TAG_RI:
        ok = parse_number(v, vn, UINT32_MAX, &num);
        if (ok)
            rec->ri = (uint32_t)num;
        break;
    case TAG_UNKNOWN:
        break;
    }
    if (!ok)
        rec->invalid++;
}

enum dmarc_parse dmarc_record_parse(const char *s, size_t len, struct dmarc_record *rec)
{
    record_defaults(rec);
    if (!dmarc_record_is_dmarc(s, len))
        return DMARC_PARSE_NOT_DMARC;
    if (len > DMARC_RECORD_MAX)
        return DMARC_PARSE_UNUSABLE;
    struct parse_state ps = {.seen = 1u << TAG_V};
    const char *semi = memchr(s, ';', len);
    size_t pos = semi ? (size_t)(semi - s) + 1 : len;
    while (pos < len) {
        const char *e = memchr(s + pos, ';', len - pos);
        size_t end = e ? (size_t)(e - s) : len;
        tag_spec(rec, &ps, s + pos, end - pos);
        pos = end + 1;
    }
    if (rec->p == DMARC_POLICY_UNSET || ps.sp_invalid) {
        if (rec->nrua == 0)
            return DMARC_PARSE_UNUSABLE;
        /* §6.6.3: act as if the record were "v=DMARC1; p=none" */
        rec->p = DMARC_POLICY_NONE;
        rec->sp = DMARC_POLICY_UNSET;
        rec->np = DMARC_POLICY_UNSET;
        rec->p_implied = true;
    }
    return DMARC_PARSE_OK;
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    switch (p) {
    case DMARC_POLICY_NONE:
        return "none";
    case DMARC_POLICY_QUARANTINE:
        return "quarantine";
    case DMARC_POLICY_REJECT:
        return "reject";
    case DMARC_POLICY_UNSET:
        break;
    }
    return "";
}

/* ---------------------------------------------------------------------
 * Alignment
 */

/* A domain as given: lowercase, one trailing dot dropped, checked as a
   DNS name. */
static bool domain_copy(const char *in, char out[DNS_NAME_MAX + 1])
{
    if (!in || !in[0] || !dns_query_name_normalize(in, out))
        return false;
    size_t n = strlen(out);
    return n > 0 && out[n - 1] != '.'; /* no empty last label ("example.org..") */
}

bool dmarc_aligned(const char *auth, const char *from, enum dmarc_align mode,
                   dmarc_orgdomain_fn org, void *org_arg)
{
    char a[DNS_NAME_MAX + 1], f[DNS_NAME_MAX + 1];
    if (!domain_copy(auth, a) || !domain_copy(from, f))
        return false;
    if (strcmp(a, f) == 0)
        return true;
    if (mode == DMARC_ALIGN_STRICT || !org)
        return false;
    char oa[DNS_NAME_MAX + 1], of[DNS_NAME_MAX + 1];
    if (!org(org_arg, a, oa) || !org(org_arg, f, of))
        return false;
    return strcmp(oa, of) == 0;
}

/* ---------------------------------------------------------------------
 * The author domain
 */

/* A domain name that may hold UTF-8 octets: labels of 1..63 octets of
   letters, digits, hyphens and octets >= 0x80, at most 253 in all. */
static bool from_domain_valid(const char *s, size_t len)
{
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(c >= 0x80 || is_alpha((char)c) || is_digit((char)c) || c == '-'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

enum dmarc_from dmarc_from_domain(size_t nfields, const char *value, size_t len, bool truncated,
                                  char domain[DNS_NAME_MAX + 1])
{
    domain[0] = '\0';
    if (nfields == 0)
        return DMARC_FROM_NONE;
    if (nfields > 1)
        return DMARC_FROM_MANY_FIELDS;
    if (truncated || !value)
        return DMARC_FROM_NO_ADDRESS;
    char list[SMTP_ADDR_LIST_MAX][SMTP_PATH_MAX + 1];
    int n = smtp_addr_list_parse(value, len, list, SMTP_ADDR_LIST_MAX);
    if (n <= 0)
        return DMARC_FROM_NO_ADDRESS;
    for (int i = 0; i < n; i++) {
        const char *at = strrchr(list[i], '@');
        if (!at) {
            domain[0] = '\0';
            return DMARC_FROM_NO_ADDRESS;
        }
        const char *d = at + 1;
        size_t dlen = strlen(d);
        if (dlen > 0 && d[dlen - 1] == '.')
            dlen--;
        if (dlen == 0 || d[0] == '[' || !from_domain_valid(d, dlen)) {
            domain[0] = '\0';
            return DMARC_FROM_BAD_DOMAIN;
        }
        char this[DNS_NAME_MAX + 1];
        for (size_t k = 0; k < dlen; k++)
            this[k] = lower(d[k]);
        this[dlen] = '\0';
        if (i == 0)
            memcpy(domain, this, dlen + 1);
        else if (strcmp(domain, this) != 0) {
            domain[0] = '\0';
            return DMARC_FROM_MANY_DOMAINS;
        }
    }
    return DMARC_FROM_OK;
}

const char *dmarc_from_name(enum dmarc_from f)
{
    switch (f) {
    case DMARC_FROM_OK:
        return "ok";
    case DMARC_FROM_NONE:
        return "no-from";
    case DMARC_FROM_MANY_FIELDS:
        return "multiple-from-fields";
    case DMARC_FROM_NO_ADDRESS:
        return "no-address";
    case DMARC_FROM_MANY_DOMAINS:
        return "multiple-domains";
    case DMARC_FROM_BAD_DOMAIN:
        return "bad-domain";
    }
    return "?";
}

/* ---------------------------------------------------------------------
 * Policy discovery
 */

/* "_dmarc." + name into out; false when that is longer than a DNS name. */
static bool dmarc_name(const char *name, char out[DNS_NAME_MAX + 1])
{
    size_t n = strlen(name);
    if (n == 0 || n + 7 > DNS_NAME_MAX)
        return false;
    memcpy(out, "_dmarc.", 7);
    memcpy(out + 7, name, n + 1);
    return true;
}

void dmarc_discovery_init(struct dmarc_discovery *d, const char *from, dmarc_orgdomain_fn org,
                          void *org_arg, const struct dmarc_input *in)
{
    memset(d, 0, sizeof *d);
    record_defaults(&d->rec);
    d->in = in;
    d->status = DMARC_DISC_PENDING;
    d->step = STEP_FROM_TXT;
    if (!domain_copy(from, d->from) || !dns_host_name_valid(d->from)) {
        d->from[0] = '\0';
        d->status = DMARC_DISC_BAD_FROM;
        d->step = STEP_DONE;
        snprintf(d->reason, sizeof d->reason, "the From domain is not a DNS name");
        return;
    }
    if (!org || !org(org_arg, d->from, d->org))
        d->org[0] = '\0';
    if (strlen(d->from) + 7 > DNS_NAME_MAX) {
        /* _dmarc.<From domain> is too long to ask for: go on with the
           organisational domain */
        if (d->org[0] && strcmp(d->org, d->from) != 0) {
            d->step = STEP_ORG_TXT;
        } else {
            d->status = DMARC_DISC_ABSENT;
            d->step = STEP_DONE;
            snprintf(d->reason, sizeof d->reason, "no DMARC record can be looked up for %s",
                     d->from);
        }
    }
}

bool dmarc_discovery_next(const struct dmarc_discovery *d, char name[DNS_NAME_MAX + 1], int *type)
{
    if (d->status != DMARC_DISC_PENDING)
        return false;
    switch (d->step) {
    case STEP_FROM_TXT:
        *type = DNS_TYPE_TXT;
        return dmarc_name(d->from, name);
    case STEP_ORG_TXT:
        *type = DNS_TYPE_TXT;
        return dmarc_name(d->org, name);
    case STEP_A:
    case STEP_AAAA:
    case STEP_MX:
        *type = d->step == STEP_A ? DNS_TYPE_A : d->step == STEP_AAAA ? DNS_TYPE_AAAA : DNS_TYPE_MX;
        memcpy(name, d->from, strlen(d->from) + 1);
        return true;
    default:
        return false;
    }
}

/* The character-strings of TXT rdata joined, at most max octets of them
   into out; *truncated when there were more. False when malformed. */
static bool txt_prefix(const uint8_t *p, size_t len, char *out, size_t max, size_t *outlen,
                       bool *truncated)
{
    size_t i = 0, o = 0;
    *truncated = false;
    if (len == 0)
        return false;
    while (i < len) {
        size_t l = p[i++];
        if (l > len - i)
            return false;
        size_t take = l < max - o ? l : max - o;
        memcpy(out + o, p + i, take);
        o += take;
        if (take < l)
            *truncated = true;
        i += l;
    }
    *outlen = o;
    return true;
}

/* Is the policy np would give different from the one sp or p gives? */
static bool np_matters(const struct dmarc_record *rec)
{
    enum dmarc_policy sub = rec->sp != DMARC_POLICY_UNSET ? rec->sp : rec->p;
    return rec->np != DMARC_POLICY_UNSET && rec->np != sub;
}

static bool input_aligned(const struct dmarc_discovery *d, dmarc_orgdomain_fn org, void *org_arg)
{
    const struct dmarc_input *in = d->in;
    if (!in)
        return false;
    if (in->spf == DMARC_AUTH_PASS &&
        dmarc_aligned(in->spf_domain, d->from, d->rec.aspf, org, org_arg))
        return true;
    for (size_t i = 0; i < in->ndkim && i < DMARC_MAX_DKIM; i++)
        if (in->dkim[i].result == DMARC_AUTH_PASS &&
            dmarc_aligned(in->dkim[i].domain, d->from, d->rec.adkim, org, org_arg))
            return true;
    return false;
}

/* The TXT answer of _dmarc.<name>: the DMARC records in it. */
static void txt_answer(struct dmarc_discovery *d, const struct dns_answer *a,
                       dmarc_orgdomain_fn org, void *org_arg)
{
    const char *name = d->step == STEP_FROM_TXT ? d->from : d->org;
    if (a->status == DNS_ANSWER_TEMPFAIL) {
        d->status = DMARC_DISC_TEMPFAIL;
        snprintf(d->reason, sizeof d->reason, "temporary failure looking up TXT for _dmarc.%s",
                 name);
        return;
    }
    size_t count = 0;
    enum dmarc_parse parsed = DMARC_PARSE_NOT_DMARC;
    if (a->status == DNS_ANSWER_DATA) {
        for (size_t i = 0; i < a->n && count < 2; i++) {
            char text[DMARC_RECORD_MAX + 1];
            size_t n;
            bool cut;
            if (!txt_prefix(a->rdata[i], a->len[i], text, sizeof text, &n, &cut))
                continue;
            if (!dmarc_record_is_dmarc(text, n))
                continue;
            if (++count == 1)
                parsed = dmarc_record_parse(text, n, &d->rec);
        }
    }
    if (count > 1) {
        record_defaults(&d->rec);
        d->status = DMARC_DISC_MANY;
        snprintf(d->reason, sizeof d->reason, "more than one DMARC record at _dmarc.%s", name);
        return;
    }
    if (count == 1) {
        memcpy(d->domain, name, strlen(name) + 1);
        d->at_org = d->step == STEP_ORG_TXT;
        if (parsed != DMARC_PARSE_OK) {
            d->status = DMARC_DISC_UNUSABLE;
            snprintf(d->reason, sizeof d->reason,
                     "the DMARC record at _dmarc.%s has no valid p= and no valid rua=", name);
            return;
        }
        if (d->at_org && np_matters(&d->rec) && !input_aligned(d, org, org_arg)) {
            d->step = STEP_A;
            return;
        }
        d->status = DMARC_DISC_FOUND;
        return;
    }
    /* no DMARC record at this name */
    if (d->step == STEP_FROM_TXT && d->org[0] && strcmp(d->org, d->from) != 0) {
        d->step = STEP_ORG_TXT;
        return;
    }
    d->status = DMARC_DISC_ABSENT;
    if (d->step == STEP_ORG_TXT)
        snprintf(d->reason, sizeof d->reason, "no DMARC record at _dmarc.%s or _dmarc.%s", d->from,
                 d->org);
    else
        snprintf(d->reason, sizeof d->reason, "no DMARC record at _dmarc.%s", d->from);
}

void dmarc_discovery_answer(struct dmarc_discovery *d, const struct dns_answer *a,
                            dmarc_orgdomain_fn org, void *org_arg)
{
    if (d->status != DMARC_DISC_PENDING)
        return;
    switch (d->step) {
    case STEP_FROM_TXT:
    case STEP_ORG_TXT:
        txt_answer(d, a, org, org_arg);
        return;
    case STEP_A:
    case STEP_AAAA:
    case STEP_MX:
        if (a->status == DNS_ANSWER_DATA) {
            d->from_exists = DMARC_EXISTS_YES;
        } else if (a->status == DNS_ANSWER_NODATA || a->status == DNS_ANSWER_NXDOMAIN) {
            if (d->step != STEP_MX) {
                d->step++;
                return;
            }
            d->from_exists = DMARC_EXISTS_NO;
        } else {
            d->from_exists = DMARC_EXISTS_UNKNOWN; /* treated as existing */
        }
        d->status = DMARC_DISC_FOUND;
        d->step = STEP_DONE;
        return;
    default:
        return;
    }
}

/* ---------------------------------------------------------------------
 * Evaluation
 */

static const char *const auth_names[] = {
    [DMARC_AUTH_NONE] = "none",           [DMARC_AUTH_PASS] = "pass",
    [DMARC_AUTH_FAIL] = "fail",           [DMARC_AUTH_SOFTFAIL] = "softfail",
    [DMARC_AUTH_NEUTRAL] = "neutral",     [DMARC_AUTH_POLICY] = "policy",
    [DMARC_AUTH_TEMPERROR] = "temperror", [DMARC_AUTH_PERMERROR] = "permerror",
};

const char *dmarc_auth_name(enum dmarc_auth a)
{
    if ((unsigned)a < sizeof auth_names / sizeof auth_names[0])
        return auth_names[a];
    return "none";
}

bool dmarc_auth_parse(const char *s, size_t len, enum dmarc_auth *out)
{
    for (size_t i = 0; i < sizeof auth_names / sizeof auth_names[0]; i++) {
        if (word_is(s, len, auth_names[i])) {
            *out = (enum dmarc_auth)i;
            return true;
        }
    }
    return false;
}

void dmarc_evaluate(const struct dmarc_discovery *d, const struct dmarc_input *in,
                    unsigned pct_roll, dmarc_orgdomain_fn org, void *org_arg,
                    struct dmarc_result *out)
{
    memset(out, 0, sizeof *out);
    switch (d->status) {
    case DMARC_DISC_FOUND:
        break;
    case DMARC_DISC_ABSENT:
    case DMARC_DISC_MANY:
        out->status = DMARC_STATUS_NONE;
        return;
    case DMARC_DISC_UNUSABLE:
    case DMARC_DISC_BAD_FROM:
        out->status = DMARC_STATUS_PERMERROR;
        return;
    case DMARC_DISC_TEMPFAIL:
    case DMARC_DISC_PENDING:
        out->status = DMARC_STATUS_TEMPERROR;
        return;
    }
    const struct dmarc_record *rec = &d->rec;
    if (in && in->spf == DMARC_AUTH_PASS)
        out->spf_aligned = dmarc_aligned(in->spf_domain, d->from, rec->aspf, org, org_arg);
    for (size_t i = 0; in && i < in->ndkim && i < DMARC_MAX_DKIM; i++) {
        if (in->dkim[i].result == DMARC_AUTH_PASS &&
            dmarc_aligned(in->dkim[i].domain, d->from, rec->adkim, org, org_arg)) {
            out->dkim_aligned = true;
            out->dkim_index = i;
            break;
        }
    }

    if (!d->at_org) {
        out->policy = rec->p;
        out->policy_tag = DMARC_TAG_P;
    } else if (rec->np != DMARC_POLICY_UNSET && d->from_exists == DMARC_EXISTS_NO) {
        out->policy = rec->np;
        out->policy_tag = DMARC_TAG_NP;
    } else if (rec->sp != DMARC_POLICY_UNSET) {
        out->policy = rec->sp;
        out->policy_tag = DMARC_TAG_SP;
    } else {
        out->policy = rec->p;
        out->policy_tag = DMARC_TAG_P;
    }

    if (out->spf_aligned || out->dkim_aligned) {
        out->status = DMARC_STATUS_PASS;
        out->disposition = DMARC_DISP_NONE;
        return;
    }
    out->status = DMARC_STATUS_FAIL;
    enum dmarc_disposition disp = out->policy == DMARC_POLICY_REJECT       ? DMARC_DISP_REJECT
                                  : out->policy == DMARC_POLICY_QUARANTINE ? DMARC_DISP_QUARANTINE
                                                                           : DMARC_DISP_NONE;
    if (disp != DMARC_DISP_NONE && pct_roll % 100 >= rec->pct) {
        /* §6.6.4: left out of the sample, the next lower policy applies */
        out->sampled_out = true;
        disp = disp == DMARC_DISP_REJECT ? DMARC_DISP_QUARANTINE : DMARC_DISP_NONE;
    }
    out->disposition = disp;
}

const char *dmarc_status_name(enum dmarc_status s)
{
    switch (s) {
    case DMARC_STATUS_NONE:
        return "none";
    case DMARC_STATUS_PASS:
        return "pass";
    case DMARC_STATUS_FAIL:
        return "fail";
    case DMARC_STATUS_TEMPERROR:
        return "temperror";
    case DMARC_STATUS_PERMERROR:
        return "permerror";
    }
    return "none";
}

const char *dmarc_disposition_name(enum dmarc_disposition d)
{
    switch (d) {
    case DMARC_DISP_NONE:
        return "none";
    case DMARC_DISP_QUARANTINE:
        return "quarantine";
    case DMARC_DISP_REJECT:
        return "reject";
    }
    return "none";
}

const char *dmarc_policy_tag_name(enum dmarc_policy_tag t)
{
    switch (t) {
    case DMARC_TAG_P:
        return "p";
    case DMARC_TAG_SP:
        return "sp";
    case DMARC_TAG_NP:
        return "np";
    case DMARC_TAG_NONE:
        break;
    }
    return "";
}
