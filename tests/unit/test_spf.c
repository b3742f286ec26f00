/*
 * test_spf - unit tests of the pure SPF code (src/dns/spf.c, RFC 7208):
 * record selection, the syntax of every mechanism and modifier, macro
 * expansion (every example of §7.4, URL escaping, truncation to 253
 * octets), CIDR matching, the limits of §4.6.4, and check_host() driven by a
 * DNS answered from a table in this file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns/mx.h"
#include "dns/spf.h"

/* ---------------------------------------------------------------------
 * A DNS from a table
 */

/* One record of the table. type is "TXT", "A", "AAAA", "MX", "PTR", or
   "SERVFAIL" (every query for the name fails) or "EMPTY" (the name exists
   without records). TXT data is character-strings separated by '|'; MX data
   "PREF NAME". */
struct rr {
    const char *name;
    const char *type;
    const char *data;
};

static int type_code(const char *t)
{
    if (strcmp(t, "TXT") == 0)
        return DNS_TYPE_TXT;
    if (strcmp(t, "A") == 0)
        return DNS_TYPE_A;
    if (strcmp(t, "AAAA") == 0)
        return DNS_TYPE_AAAA;
    if (strcmp(t, "MX") == 0)
        return DNS_TYPE_MX;
    if (strcmp(t, "PTR") == 0)
        return DNS_TYPE_PTR;
    return -1;
}

static size_t wire_name(uint8_t *out, const char *name)
{
    size_t n = 0;
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        out[n++] = (uint8_t)l;
        memcpy(out + n, s, l);
        n += l;
        s += l + (dot ? 1 : 0);
    }
    out[n++] = 0;
    return n;
}

static size_t rdata_of(int type, const char *data, uint8_t *out)
{
    size_t n = 0;
    switch (type) {
    case DNS_TYPE_TXT: {
        const char *s = data;
        for (;;) {
            const char *bar = strchr(s, '|');
            size_t l = bar ? (size_t)(bar - s) : strlen(s);
            while (l > 255) { /* long text: split into 255-octet strings */
                out[n++] = 255;
                memcpy(out + n, s, 255);
                n += 255;
                s += 255;
                l -= 255;
            }
            out[n++] = (uint8_t)l;
            memcpy(out + n, s, l);
            n += l;
            if (!bar)
                break;
            s = bar + 1;
        }
        return n;
    }
    case DNS_TYPE_A:
        assert_int_equal(inet_pton(AF_INET, data, out), 1);
        return 4;
    case DNS_TYPE_AAAA:
        assert_int_equal(inet_pton(AF_INET6, data, out), 1);
        return 16;
    case DNS_TYPE_MX: {
        unsigned pref = (unsigned)atoi(data);
        out[0] = (uint8_t)(pref >> 8);
        out[1] = (uint8_t)pref;
        return 2 + wire_name(out + 2, strchr(data, ' ') + 1);
    }
    default:
        return wire_name(out, data);
    }
}

/* What the table DNS saw. */
struct fake {
    const struct rr *zone;
    size_t n;
    size_t queries;
    char log[64][DNS_NAME_MAX + 32]; /* "TYPE name" of the first 64 queries */
};

static uint8_t store[DNS_MAX_RECORDS][8192];

static void fake_answer(struct fake *f, const struct spf_query *q, struct dns_answer *a)
{
    memset(a, 0, sizeof *a);
    a->type = q->type;
    snprintf(a->name, sizeof a->name, "%s", q->name);
    if (f->queries < 64)
        snprintf(f->log[f->queries], sizeof f->log[0], "%d %s", q->type, q->name);
    f->queries++;
    bool exists = false;
    for (size_t i = 0; i < f->n; i++) {
        const struct rr *r = &f->zone[i];
        if (strcasecmp(r->name, q->name) != 0)
            continue;
        exists = true;
        if (strcmp(r->type, "SERVFAIL") == 0) {
            a->status = DNS_ANSWER_TEMPFAIL;
            snprintf(a->reason, sizeof a->reason, "SERVFAIL for %.200s", q->name);
            a->n = 0;
            return;
        }
        if (type_code(r->type) != q->type)
            continue;
        if (a->n == DNS_MAX_RECORDS) {
            a->dropped++;
            continue;
        }
        a->len[a->n] = rdata_of(q->type, r->data, store[a->n]);
        a->rdata[a->n] = store[a->n];
        a->n++;
    }
    a->status = a->n ? DNS_ANSWER_DATA : exists ? DNS_ANSWER_NODATA : DNS_ANSWER_NXDOMAIN;
}

/* The client addresses of RFC 7208 §7.4. */
#define IP4 "192.0.2.3"
#define IP6 "2001:db8::cb01"

static struct spf_request request(const char *ip, const char *sender, const char *helo,
                                  enum spf_identity id)
{
    struct spf_request r;
    memset(&r, 0, sizeof r);
    assert_true(dns_addr_parse(ip, &r.client));
    r.sender = sender;
    r.helo = helo;
    r.identity = id;
    r.receiver = "mx.receiver.example";
    r.now = 1700000000;
    return r;
}

/* Evaluate req against zone; the result is copied into out. */
static void evaluate(const struct rr *zone, size_t n, const struct spf_request *req,
                     struct spf_result *out, struct fake *f)
{
    memset(f, 0, sizeof *f);
    f->zone = zone;
    f->n = n;
    struct spf_eval *e = spf_eval_new(req);
    struct spf_query q;
    size_t guard = 0;
    while (spf_eval_next(e, &q) == SPF_STEP_QUERY) {
        struct dns_answer a;
        fake_answer(f, &q, &a);
        spf_eval_answer(e, &a);
        assert_true(++guard < 200);
    }
    *out = *spf_eval_result(e);
    spf_eval_free(e);
}

/* ---------------------------------------------------------------------
 * Record selection and term syntax
 */

static void test_version(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool spf;
    } cases[] = {
        {"v=spf1", true},
        {"v=spf1 -all", true},
        {"V=SPF1 -all", true},
        {"v=spf1  ", true},
        {"v=spf10 -all", false},
        {"v=spf1-all", false},
        {"v=spf2.0/pra -all", false},
        {"spf1 -all", false},
        {"", false},
        {" v=spf1 -all", false},
        {"v=spf", false},
        {"v=spf1\t-all", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (spf_record_is_spf1(cases[i].s, strlen(cases[i].s)) != cases[i].spf)
            fail_msg("case %zu: %s", i, cases[i].s);
}

/* A term that does not parse. */
#define BAD(s)                                                                                     \
    {                                                                                              \
        s, false, SPF_TERM_ALL, SPF_PASS, NULL, 0, 0, NULL                                         \
    }

static void test_terms(void **state)
{
    (void)state;
    static const struct {
        const char *term;
        bool ok;
        enum spf_term_kind kind;
        enum spf_result_code qualifier;
        const char *spec; /* NULL: none */
        unsigned cidr4, cidr6;
        const char *net; /* ip4/ip6 */
    } cases[] = {
        /* all */
        {"all", true, SPF_TERM_ALL, SPF_PASS, NULL, 32, 128, NULL},
        {"-all", true, SPF_TERM_ALL, SPF_FAIL, NULL, 32, 128, NULL},
        {"~ALL", true, SPF_TERM_ALL, SPF_SOFTFAIL, NULL, 32, 128, NULL},
        {"?all", true, SPF_TERM_ALL, SPF_NEUTRAL, NULL, 32, 128, NULL},
        {"+all", true, SPF_TERM_ALL, SPF_PASS, NULL, 32, 128, NULL},
        BAD("all:foo.example"),
        BAD("all/24"),
        BAD("all."),
        BAD("-"),
        BAD("!all"),
        /* include */
        {"include:_spf.example.org", true, SPF_TERM_INCLUDE, SPF_PASS, "_spf.example.org", 0, 0,
         NULL},
        {"-include:%{d}", true, SPF_TERM_INCLUDE, SPF_FAIL, "%{d}", 0, 0, NULL},
        BAD("include"),
        BAD("include:"),
        BAD("include:foo"), /* no "." toplabel */
        BAD("include:example.org/24"),
        BAD("include:example.123"), /* all-numeric top label */
        {"include:example.1-2", true, SPF_TERM_INCLUDE, SPF_PASS, "example.1-2", 0, 0, NULL},
        {"include:example.org.", true, SPF_TERM_INCLUDE, SPF_PASS, "example.org.", 0, 0, NULL},
        BAD("include:example.-org"),
        /* a */
        {"a", true, SPF_TERM_A, SPF_PASS, NULL, 32, 128, NULL},
        {"A", true, SPF_TERM_A, SPF_PASS, NULL, 32, 128, NULL},
        {"a/24", true, SPF_TERM_A, SPF_PASS, NULL, 24, 128, NULL},
        {"a//64", true, SPF_TERM_A, SPF_PASS, NULL, 32, 64, NULL},
        {"a/24//64", true, SPF_TERM_A, SPF_PASS, NULL, 24, 64, NULL},
        {"a:mail.example.org", true, SPF_TERM_A, SPF_PASS, "mail.example.org", 32, 128, NULL},
        {"a:mail.example.org/0", true, SPF_TERM_A, SPF_PASS, "mail.example.org", 0, 128, NULL},
        {"a:mail.example.org/32//128", true, SPF_TERM_A, SPF_PASS, "mail.example.org", 32, 128,
         NULL},
        {"a:%{d}/27", true, SPF_TERM_A, SPF_PASS, "%{d}", 27, 128, NULL},
        BAD("a/33"),
        BAD("a//129"),
        BAD("a/024"),
        BAD("a/"),
        BAD("a:"),
        BAD("a:192.0.2.1"), /* not a domain (use ip4) */
        BAD("a:example.org:8080"),
        BAD("a:example.org,"),
        BAD("a24"),
        /* mx */
        {"mx", true, SPF_TERM_MX, SPF_PASS, NULL, 32, 128, NULL},
        {"?mx:%{d}/27", true, SPF_TERM_MX, SPF_NEUTRAL, "%{d}", 27, 128, NULL},
        {"mx:example.org//48", true, SPF_TERM_MX, SPF_PASS, "example.org", 32, 48, NULL},
        {"-mx:%%%_/.Clara.de/27", true, SPF_TERM_MX, SPF_FAIL, "%%%_/.Clara.de", 27, 128, NULL},
        BAD("mx/-1"),
        /* ptr */
        {"ptr", true, SPF_TERM_PTR, SPF_PASS, NULL, 0, 0, NULL},
        {"ptr:example.org", true, SPF_TERM_PTR, SPF_PASS, "example.org", 0, 0, NULL},
        BAD("ptr/24"),
        BAD("ptr:example.org/24"),
        BAD("prt"),
        /* ip4 */
        {"ip4:192.0.2.1", true, SPF_TERM_IP4, SPF_PASS, NULL, 32, 128, "192.0.2.1"},
        {"ip4:192.0.2.0/24", true, SPF_TERM_IP4, SPF_PASS, NULL, 24, 128, "192.0.2.0"},
        {"-IP4:0.0.0.0/0", true, SPF_TERM_IP4, SPF_FAIL, NULL, 0, 128, "0.0.0.0"},
        BAD("ip4:192.0.2.1/33"),
        BAD("ip4:192.0.2.1/024"),
        BAD("ip4:192.0.2.1//32"),
        BAD("ip4:192.0.2"),
        BAD("ip4:192.0.2.256"),
        BAD("ip4:192.0.02.1"),
        BAD("ip4:192.0.2.1."),
        BAD("ip4"),
        BAD("ip4:"),
        BAD("ip4:2001:db8::1"),
        BAD("ip:192.0.2.1"),
        /* ip6 */
        {"ip6:2001:db8::1", true, SPF_TERM_IP6, SPF_PASS, NULL, 32, 128, "2001:db8::1"},
        {"ip6:2001:DB8::/32", true, SPF_TERM_IP6, SPF_PASS, NULL, 32, 32, "2001:db8::"},
        {"~ip6:::ffff:192.0.2.1/96", true, SPF_TERM_IP6, SPF_SOFTFAIL, NULL, 32, 96,
         "::ffff:192.0.2.1"},
        {"ip6:::/0", true, SPF_TERM_IP6, SPF_PASS, NULL, 32, 0, "::"},
        BAD("ip6:2001:db8::1/129"),
        BAD("ip6:2001:db8::g"),
        BAD("ip6:192.0.2.1"),
        BAD("ip6:2001:db8::1%eth0"),
        BAD("ip6:2001:db8::1//64"),
        /* exists */
        {"exists:%{i}.rbl.example.org", true, SPF_TERM_EXISTS, SPF_PASS, "%{i}.rbl.example.org", 0,
         0, NULL},
        {"exists:%{ir}.%{l1r+-}._spf.%{d}", true, SPF_TERM_EXISTS, SPF_PASS,
         "%{ir}.%{l1r+-}._spf.%{d}", 0, 0, NULL},
        BAD("exists"),
        BAD("exists:"),
        BAD("exists:%{i}.example.org/24"),
        BAD("exists:%{x}.example.org"),
        BAD("exists:%{c}.example.org"), /* c, r, t only in exp= text */
        BAD("exists:%{d0}.example.org"),
        BAD("exists:%{d}.example.org%"),
        BAD("exists:%(d).example.org"),
        /* modifiers */
        {"redirect=_spf.example.org", true, SPF_TERM_REDIRECT, SPF_PASS, "_spf.example.org", 0, 0,
         NULL},
        {"REDIRECT=%{d}", true, SPF_TERM_REDIRECT, SPF_PASS, "%{d}", 0, 0, NULL},
        BAD("redirect="),
        BAD("redirect=foo"),
        {"exp=explain.example.org", true, SPF_TERM_EXP, SPF_PASS, "explain.example.org", 0, 0,
         NULL},
        BAD("exp="),
        BAD("exp=%{c}.example.org"),
        {"foo=bar", true, SPF_TERM_UNKNOWN_MODIFIER, SPF_PASS, "bar", 0, 0, NULL},
        {"x-y.z_1=%{d}", true, SPF_TERM_UNKNOWN_MODIFIER, SPF_PASS, "%{d}", 0, 0, NULL},
        {"foo=", true, SPF_TERM_UNKNOWN_MODIFIER, SPF_PASS, "", 0, 0, NULL},
        {"a=b", true, SPF_TERM_UNKNOWN_MODIFIER, SPF_PASS, "b", 0, 0, NULL},
        BAD("foo=%"),
        BAD("foo=%{t}"),
        BAD("1foo=bar"),
        BAD("=bar"),
        BAD("-foo=bar"),
        /* unknown mechanisms */
        BAD("foo"),
        BAD("foo:bar.example"),
        BAD("spf2.0/pra"),
        {"v=spf1", true, SPF_TERM_UNKNOWN_MODIFIER, SPF_PASS, "spf1", 0, 0, NULL},
        BAD("a:ex\xc3\xa4mple.org"),
        BAD("a:exa\001mple.org"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spf_term t;
        char err[256] = "";
        const char *s = cases[i].term;
        bool ok = spf_term_parse(s, strlen(s), &t, err, sizeof err);
        if (ok != cases[i].ok)
            fail_msg("case %zu (%s): got %d (%s)", i, s, ok, err);
        if (!ok) {
            assert_true(err[0] != '\0');
            continue;
        }
        if (t.kind != cases[i].kind || t.qualifier != cases[i].qualifier)
            fail_msg("case %zu (%s): kind %d qualifier %d", i, s, t.kind, t.qualifier);
        if (cases[i].spec == NULL) {
            if (t.spec != NULL)
                fail_msg("case %zu (%s): a spec", i, s);
        } else if (t.spec == NULL || t.spec_len != strlen(cases[i].spec) ||
                   memcmp(t.spec, cases[i].spec, t.spec_len) != 0) {
            fail_msg("case %zu (%s): spec %.*s", i, s, (int)t.spec_len, t.spec ? t.spec : "");
        }
        if (cases[i].cidr4 && (t.cidr4 != cases[i].cidr4 || t.cidr6 != cases[i].cidr6))
            fail_msg("case %zu (%s): cidr %u/%u", i, s, t.cidr4, t.cidr6);
        if (cases[i].net) {
            uint8_t want[16] = {0};
            int fam = t.kind == SPF_TERM_IP4 ? AF_INET : AF_INET6;
            assert_int_equal(inet_pton(fam, cases[i].net, want), 1);
            if (memcmp(want, t.net, fam == AF_INET ? 4 : 16) != 0)
                fail_msg("case %zu (%s): network", i, s);
        }
    }
    /* cidr lengths of 0 are kept (the table uses 0 for "not checked") */
    struct spf_term t;
    assert_true(spf_term_parse("a/0//0", 6, &t, NULL, 0));
    assert_int_equal(t.cidr4, 0);
    assert_int_equal(t.cidr6, 0);
}

static void test_records(void **state)
{
    (void)state;
    static const struct {
        const char *rec;
        bool ok;
        size_t terms, directives;
        bool redirect, exp;
        const char *err; /* a part of the message */
    } cases[] = {
        {"v=spf1", true, 0, 0, false, false, NULL},
        {"v=spf1 -all", true, 1, 1, false, false, NULL},
        {"V=SPF1 MX -ALL", true, 2, 2, false, false, NULL},
        {"v=spf1   a    mx  -all   ", true, 3, 3, false, false, NULL},
        {"v=spf1 redirect=_spf.example.org", true, 1, 0, true, false, NULL},
        {"v=spf1 -all exp=explain.example.org foo=bar", true, 3, 1, false, true, NULL},
        {"v=spf1 a redirect=a.example redirect=b.example", false, 0, 0, false, false, "twice"},
        {"v=spf1 exp=a.example exp=b.example -all", false, 0, 0, false, false, "twice"},
        {"v=spf1 ip4:192.0.2.1 foo -all", false, 0, 0, false, false, "'foo': unknown mechanism"},
        {"v=spf1 ip4:192.0.2.1 ip4:1.2.3.4/33", false, 0, 0, false, false, "CIDR"},
        {"v=spf1 a:foo.example,", false, 0, 0, false, false, NULL},
        {"v=spf1\t-all", false, 0, 0, false, false, NULL},
        {"v=spf1 -all\t", false, 0, 0, false, false, NULL},
        {"v=spf10", false, 0, 0, false, false, "not an SPF"},
        {"spf1 -all", false, 0, 0, false, false, NULL},
        {"v=spf1 include:a.example include:b.example include:c.example ip6:2001:db8::/32 ~all",
         true, 5, 5, false, false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spf_record_info info;
        char err[256] = "";
        int r = spf_record_check(cases[i].rec, strlen(cases[i].rec), &info, err, sizeof err);
        if ((r == 0) != cases[i].ok)
            fail_msg("case %zu (%s): got %d (%s)", i, cases[i].rec, r, err);
        if (!cases[i].ok) {
            if (cases[i].err && !strstr(err, cases[i].err))
                fail_msg("case %zu: message %s", i, err);
            continue;
        }
        assert_int_equal(info.terms, cases[i].terms);
        assert_int_equal(info.directives, cases[i].directives);
        assert_int_equal(info.has_redirect, cases[i].redirect);
        assert_int_equal(info.has_exp, cases[i].exp);
    }
    struct spf_record_info info;
    const char *rec = "v=spf1 mx redirect=_spf.example.org";
    assert_int_equal(spf_record_check(rec, strlen(rec), &info, NULL, 0), 0);
    assert_int_equal(info.redirect_at, 10);
    assert_int_equal(info.redirect_len, strlen("redirect=_spf.example.org"));
}

/* ---------------------------------------------------------------------
 * Macros
 */

static struct spf_macro_ctx rfc_ctx(const char *ip)
{
    struct spf_macro_ctx c;
    memset(&c, 0, sizeof c);
    c.sender = "strong-bad@email.example.com";
    c.local = "strong-bad";
    c.sender_domain = "email.example.com";
    c.domain = "email.example.com";
    c.helo = "mx.example.org";
    c.validated = "mx.example.org";
    c.receiver = "receiver.example.net";
    c.now = 1234567890;
    assert_true(dns_addr_parse(ip, &c.ip));
    return c;
}

static void check_domain(const struct spf_macro_ctx *c, const char *in, const char *want)
{
    char out[DNS_NAME_MAX + 1];
    char err[128];
    if (!spf_macro_check(in, strlen(in), false, err, sizeof err))
        fail_msg("%s: %s", in, err);
    spf_expand_domain(c, in, strlen(in), out);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", in, out, want);
}

static void check_text(const struct spf_macro_ctx *c, const char *in, const char *want)
{
    char out[SPF_EXPLANATION_MAX + 1];
    char err[128];
    if (!spf_macro_check(in, strlen(in), true, err, sizeof err))
        fail_msg("%s: %s", in, err);
    spf_expand_text(c, in, strlen(in), out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", in, out, want);
}

/* Every example of RFC 7208 §7.4. */
static void test_macros_rfc(void **state)
{
    (void)state;
    struct spf_macro_ctx c = rfc_ctx(IP4);
    static const char *const table[][2] = {
        {"%{s}", "strong-bad@email.example.com"},
        {"%{o}", "email.example.com"},
        {"%{d}", "email.example.com"},
        {"%{d4}", "email.example.com"},
        {"%{d3}", "email.example.com"},
        {"%{d2}", "example.com"},
        {"%{d1}", "com"},
        {"%{dr}", "com.example.email"},
        {"%{d2r}", "example.email"},
        {"%{l}", "strong-bad"},
        {"%{l-}", "strong.bad"},
        {"%{lr}", "strong-bad"},
        {"%{lr-}", "bad.strong"},
        {"%{l1r-}", "strong"},
        {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
        {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
        {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
        {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
        {"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        check_domain(&c, table[i][0], table[i][1]);
    /* the IPv6 example */
    struct spf_macro_ctx c6 = rfc_ctx(IP6);
    check_domain(&c6, "%{ir}.%{v}._spf.%{d2}",
                 "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf."
                 "example.com");
    /* the same examples as explain text */
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        check_text(&c, table[i][0], table[i][1]);
}

static void test_macros_more(void **state)
{
    (void)state;
    struct spf_macro_ctx c = rfc_ctx(IP4);
    struct spf_macro_ctx c6 = rfc_ctx(IP6);
    /* URL escaping of upper-case letters (§7.3) */
    check_text(&c, "%{S}", "strong-bad%40email.example.com");
    check_text(&c, "%{L}", "strong-bad");
    check_text(&c, "%{Lr-}", "bad.strong");
    /* literal escapes */
    check_text(&c, "100%% sure", "100% sure");
    check_text(&c, "a%_b%-c", "a b%20c");
    /* the letters of exp= text */
    check_text(&c, "%{c}", "192.0.2.3");
    check_text(&c6, "%{c}", "2001:db8::cb01");
    check_text(&c, "%{r}", "receiver.example.net");
    check_text(&c, "%{t}", "1234567890");
    check_text(&c, "%{h} %{p} %{v}", "mx.example.org mx.example.org in-addr");
    check_text(&c6, "%{v} %{i}",
               "ip6 2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1");
    check_text(&c, "%{p2}.trusted", "example.org.trusted");
    check_text(&c, "%{I}", "192.0.2.3");
    /* digits larger than the parts, big numbers, leading zeros */
    check_domain(&c, "%{d99}", "email.example.com");
    check_domain(&c, "%{d99999999999999999999}", "email.example.com");
    check_domain(&c, "%{d02}", "example.com");
    /* several delimiters at once, and each one */
    c.local = "a+b-c.d_e=f/g,h";
    check_domain(&c, "%{l+-}.example", "a.b.c.d_e=f/g,h.example");
    check_domain(&c, "%{l.-+,/_=}.example", "a.b.c.d.e.f.g.h.example");
    check_domain(&c, "%{l2r+-./_=,}.example", "b.a.example");
    c.local = "strong-bad";
    /* a trailing dot goes */
    check_domain(&c, "%{d}.", "email.example.com");
    check_domain(&c, "foo.example.org.", "foo.example.org");
    /* %{p} without a validated name */
    c.validated = NULL;
    check_domain(&c, "%{p}.example", "unknown.example");
    c.validated = "mx.example.org";
    /* %{r} without a receiver */
    c.receiver = NULL;
    check_text(&c, "%{r}", "unknown");

    /* syntax */
    static const struct {
        const char *s;
        bool domain_ok, text_ok;
    } syntax[] = {
        {"%{d}", true, true},     {"%{D}", true, true},       {"%{c}", false, true},
        {"%{R}", false, true},    {"%{t}", false, true},      {"%{x}", false, false},
        {"%{d", false, false},    {"%{}", false, false},      {"%d", false, false},
        {"%", false, false},      {"a b", false, true},       {"%{d0}", false, false},
        {"%{d1r}", true, true},   {"%{dR}", true, true},      {"%{d1rr}", false, false},
        {"%{d.-}", true, true},   {"%{d:}", false, false},    {"%{d }", false, false},
        {"\x7f", false, false},   {"\xc3\xa4", false, false}, {"%%%_%-", true, true},
        {"%{i}%{I}", true, true}, {"%{s2r=}", true, true},
    };
    for (size_t i = 0; i < sizeof syntax / sizeof syntax[0]; i++) {
        const char *s = syntax[i].s;
        if (spf_macro_check(s, strlen(s), false, NULL, 0) != syntax[i].domain_ok)
            fail_msg("domain syntax %zu: %s", i, s);
        if (spf_macro_check(s, strlen(s), true, NULL, 0) != syntax[i].text_ok)
            fail_msg("text syntax %zu: %s", i, s);
    }
    assert_true(spf_macro_uses_p("%{p}", 4));
    assert_true(spf_macro_uses_p("a.%{P2r}.b", 10));
    assert_false(spf_macro_uses_p("%{d}.p", 6));
    assert_false(spf_macro_uses_p("%%{p}", 5));
}

/* §7.3: past 253 octets, labels are removed from the left. */
static void test_truncation(void **state)
{
    (void)state;
    struct spf_macro_ctx c = rfc_ctx(IP4);
    char local[200];
    /* 30 labels "abcdef" joined by '-' ... then split on '-' into labels */
    size_t n = 0;
    for (int i = 0; i < 28; i++) {
        if (i)
            local[n++] = '-';
        memcpy(local + n, "abcdef", 6);
        n += 6;
    }
    local[n] = '\0'; /* 28 * 7 - 1 = 195 octets */
    c.local = local;
    char out[DNS_NAME_MAX + 1];
    /* 195 + "." + 195 + ".example.org" = 403 octets */
    const char *spec = "%{l-}.%{l-}.example.org";
    spf_expand_domain(&c, spec, strlen(spec), out);
    assert_true(strlen(out) <= 253);
    assert_true(strlen(out) > 253 - 7);
    assert_string_equal(out + strlen(out) - 12, ".example.org");
    assert_true(strncmp(out, "abcdef.", 7) == 0); /* whole labels only */
    /* a very long expansion keeps its right end */
    const char *many = "%{s}%{s}%{s}%{s}%{s}%{s}%{s}%{s}%{s}%{s}%{s}%{s}.x.example.org";
    spf_expand_domain(&c, many, strlen(many), out);
    assert_true(strlen(out) <= 253);
    assert_string_equal(out + strlen(out) - 14, ".x.example.org");
    /* one label too long to fit: nothing */
    char big[300];
    memset(big, 'a', 260);
    big[260] = '\0';
    c.local = big;
    spf_expand_domain(&c, "%{l}", 4, out);
    assert_string_equal(out, "");
    /* exactly 253 octets is kept */
    char exact[254];
    memset(exact, 'b', 253);
    for (int i = 60; i < 253; i += 61)
        exact[i] = '.';
    exact[253] = '\0';
    c.local = exact;
    spf_expand_domain(&c, "%{l}", 4, out);
    assert_string_equal(out, exact);
    /* explain text is cut at its buffer */
    char small[8];
    c.local = "strong-bad";
    spf_expand_text(&c, "%{s}", 4, small, sizeof small);
    assert_string_equal(small, "strong-");
}

/* ---------------------------------------------------------------------
 * Evaluation
 */

static const struct rr zone[] = {
    /* results of all and ip4 */
    {"pass.example", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"},
    {"fail.example", "TXT", "v=spf1 ip4:198.51.100.1 -all"},
    {"soft.example", "TXT", "v=spf1 ~all"},
    {"neutral.example", "TXT", "v=spf1 ?all"},
    {"plus.example", "TXT", "v=spf1 +all"},
    {"default.example", "TXT", "v=spf1 ip4:198.51.100.1"},
    {"empty.example", "TXT", "v=spf1"},
    {"ip6.example", "TXT", "v=spf1 ip4:192.0.2.3 ip6:2001:db8::/32 -all"},
    {"ip6-narrow.example", "TXT", "v=spf1 ip6:2001:db8::cb00/127 ip6:2001:db8::cb02 -all"},
    {"ip4-cidr.example", "TXT", "v=spf1 ip4:192.0.2.2/31 -all"},
    {"ip4-cidr-miss.example", "TXT", "v=spf1 ip4:192.0.2.4/31 ip4:192.0.2.0/30 -all"},
    {"ip4-zero.example", "TXT", "v=spf1 -ip4:0.0.0.0/0 +all"},
    /* selection */
    {"none.example", "TXT", "hello world"},
    {"none.example", "TXT", "v=spf10 -all"},
    {"two.example", "TXT", "v=spf1 -all"},
    {"two.example", "TXT", "v=spf1 +all"},
    {"upper.example", "TXT", "V=SPF1 IP4:192.0.2.3 -ALL"},
    {"split.example", "TXT", "v=spf1 ip4:192.0.|2.3 -all"},
    {"split2.example", "TXT", "v=sp|f1 ip4:192.0.2.3 -all"},
    {"other-txt.example", "TXT", "google-site-verification=abc"},
    {"other-txt.example", "TXT", "v=spf1 ip4:192.0.2.3 -all"},
    {"nospf.example", "A", "192.0.2.3"},
    {"servfail.example", "SERVFAIL", NULL},
    {"syntax.example", "TXT", "v=spf1 ip4:192.0.2.3 foo -all"},
    {"syntax2.example", "TXT", "v=spf1 ip4:192.0.2.3 -all ip4:1.2.3.4/33"},
    {"dup.example", "TXT", "v=spf1 redirect=pass.example redirect=fail.example"},
    {"modifier.example", "TXT", "v=spf1 foo=bar other=%{d} ip4:192.0.2.3 -all"},
    /* a */
    {"a.example", "TXT", "v=spf1 a -all"},
    {"a.example", "A", "192.0.2.3"},
    {"a.example", "AAAA", "2001:db8::cb01"},
    {"a-cidr.example", "TXT", "v=spf1 a/24//64 -all"},
    {"a-cidr.example", "A", "192.0.2.200"},
    {"a-cidr.example", "AAAA", "2001:db8::1"},
    {"a-narrow.example", "TXT", "v=spf1 a:host.a-narrow.example/31 -all"},
    {"host.a-narrow.example", "A", "192.0.2.1"},
    {"a-other.example", "TXT", "v=spf1 a:host.a-other.example/30 -all"},
    {"host.a-other.example", "A", "192.0.2.1"},
    {"a-none.example", "TXT", "v=spf1 a -all"},
    {"a-temp.example", "TXT", "v=spf1 a:broken.a-temp.example -all"},
    {"broken.a-temp.example", "SERVFAIL", NULL},
    /* mx */
    {"mx.example", "TXT", "v=spf1 mx -all"},
    {"mx.example", "MX", "10 mail.mx.example"},
    {"mx.example", "MX", "20 other.mx.example"},
    {"mail.mx.example", "A", "198.51.100.7"},
    {"other.mx.example", "A", "192.0.2.3"},
    {"mx-cidr.example", "TXT", "v=spf1 mx/24 -all"},
    {"mx-cidr.example", "MX", "10 mail.mx-cidr.example"},
    {"mail.mx-cidr.example", "A", "192.0.2.250"},
    {"mx-nohost.example", "TXT", "v=spf1 mx:mx.example -all"},
    {"mx-temp.example", "TXT", "v=spf1 mx -all"},
    {"mx-temp.example", "MX", "10 broken.mx-temp.example"},
    {"broken.mx-temp.example", "SERVFAIL", NULL},
    {"mx-null.example", "TXT", "v=spf1 mx -all"},
    {"mx-null.example", "MX", "0 ."},
    {"mx11.example", "TXT", "v=spf1 mx -all"},
    {"mx11.example", "MX", "1 m1.example"},
    {"mx11.example", "MX", "2 m2.example"},
    {"mx11.example", "MX", "3 m3.example"},
    {"mx11.example", "MX", "4 m4.example"},
    {"mx11.example", "MX", "5 m5.example"},
    {"mx11.example", "MX", "6 m6.example"},
    {"mx11.example", "MX", "7 m7.example"},
    {"mx11.example", "MX", "8 m8.example"},
    {"mx11.example", "MX", "9 m9.example"},
    {"mx11.example", "MX", "10 m10.example"},
    {"mx11.example", "MX", "11 a.example"},
    /* ptr */
    {"3.2.0.192.in-addr.arpa", "PTR", "unvalidated.example"},
    {"3.2.0.192.in-addr.arpa", "PTR", "mail.ptr.example"},
    {"mail.ptr.example", "A", "192.0.2.3"},
    {"unvalidated.example", "A", "198.51.100.3"},
    {"ptr.example", "TXT", "v=spf1 ptr -all"},
    {"ptr-other.example", "TXT", "v=spf1 ptr:unvalidated.example -all"},
    {"ptr-parent.example", "TXT", "v=spf1 ptr:ptr.example -all"},
    {"1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR",
     "v6.ptr.example"},
    {"v6.ptr.example", "AAAA", "2001:db8::cb01"},
    /* exists */
    {"exists.example", "TXT", "v=spf1 exists:%{i}.ok.%{d} -all"},
    {"192.0.2.3.ok.exists.example", "A", "127.0.0.2"},
    {"exists6.example", "TXT", "v=spf1 exists:%{ir}.%{v}.ok.%{d} -all"},
    {"1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.ok.exists6.example", "A",
     "127.0.0.2"},
    {"exists-temp.example", "TXT", "v=spf1 exists:broken.a-temp.example -all"},
    {"exists-l.example", "TXT", "v=spf1 exists:%{l1r-}.users.%{d} -all"},
    {"strong.users.exists-l.example", "A", "127.0.0.2"},
    {"exists-h.example", "TXT", "v=spf1 exists:%{h}.helos.%{d} -all"},
    {"helo.example.helos.exists-h.example", "A", "127.0.0.2"},
    {"exists-p.example", "TXT", "v=spf1 exists:%{p}.names.%{d} -all"},
    {"mail.ptr.example.names.exists-p.example", "A", "127.0.0.2"},
    /* include */
    {"include.example", "TXT", "v=spf1 include:pass.example -all"},
    {"include-fail.example", "TXT", "v=spf1 include:fail.example ~all"},
    {"include-soft.example", "TXT", "v=spf1 -include:pass.example +all"},
    {"include-none.example", "TXT", "v=spf1 include:none.example -all"},
    {"include-nx.example", "TXT", "v=spf1 include:nx.example -all"},
    {"include-temp.example", "TXT", "v=spf1 include:servfail.example -all"},
    {"include-perm.example", "TXT", "v=spf1 include:two.example -all"},
    {"include-chain.example", "TXT", "v=spf1 include:include.example -all"},
    {"include-redirect.example", "TXT", "v=spf1 include:redirect.example -all"},
    {"loop.example", "TXT", "v=spf1 include:loop.example -all"},
    /* redirect */
    {"redirect.example", "TXT", "v=spf1 redirect=pass.example"},
    {"redirect-fail.example", "TXT", "v=spf1 redirect=fail.example"},
    {"redirect-none.example", "TXT", "v=spf1 redirect=none.example"},
    {"redirect-nx.example", "TXT", "v=spf1 redirect=nx.example"},
    {"redirect-matched.example", "TXT", "v=spf1 ip4:192.0.2.3 redirect=nx.example"},
    {"redirect-all.example", "TXT", "v=spf1 -all redirect=pass.example"},
    {"redirect-macro.example", "TXT", "v=spf1 redirect=%{l1r-}.redirect.example"},
    {"strong.redirect.example", "TXT", "v=spf1 ip4:192.0.2.3 -all"},
    /* the lookup limit: 10 a: terms and -all is fine, 11 is not */
    {"ten.example", "TXT",
     "v=spf1 a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example -all"},
    {"h.ten.example", "A", "198.51.100.1"},
    {"eleven.example", "TXT",
     "v=spf1 a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "ip4:192.0.2.3 a:h.ten.example -all"},
    {"ten-redirect.example", "TXT",
     "v=spf1 a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "redirect=pass.example"},
    {"ten-matched.example", "TXT",
     "v=spf1 a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example "
     "a:h.ten.example a:h.ten.example a:h.ten.example a:h.ten.example a "
     "redirect=fail.example"},
    {"ten-matched.example", "A", "192.0.2.3"},
    {"nested.example", "TXT", "v=spf1 include:n1.example -all"},
    {"n1.example", "TXT", "v=spf1 include:n2.example include:n2.example include:n2.example -all"},
    {"n2.example", "TXT", "v=spf1 a:h.ten.example a:h.ten.example a:h.ten.example ?all"},
    /* void lookups: two are fine, the third is permerror */
    {"void2.example", "TXT", "v=spf1 a:nx1.example mx:nx2.example -all"},
    {"void3.example", "TXT", "v=spf1 a:nx1.example mx:nx2.example exists:nx3.example -all"},
    {"void-nodata.example", "TXT", "v=spf1 a:a-none.example a:a-none.example a:a-none.example"},
    {"void-ok.example", "TXT", "v=spf1 a:nx1.example a:nx2.example ip4:192.0.2.3 a:nx3.example"},
    /* exp= */
    {"exp.example", "TXT", "v=spf1 -all exp=explain.exp.example"},
    {"explain.exp.example", "TXT", "%{i} is not one of %{d}'s designated mail servers."},
    {"exp-pass.example", "TXT", "v=spf1 +all exp=explain.exp.example"},
    {"exp-multi.example", "TXT", "v=spf1 -all exp=two.exp.example"},
    {"two.exp.example", "TXT", "one"},
    {"two.exp.example", "TXT", "two"},
    {"exp-none.example", "TXT", "v=spf1 -all exp=nx.exp.example"},
    {"exp-temp.example", "TXT", "v=spf1 -all exp=servfail.example"},
    {"exp-bad.example", "TXT", "v=spf1 -all exp=bad.exp.example"},
    {"bad.exp.example", "TXT", "100% wrong"},
    {"exp-include.example", "TXT", "v=spf1 include:exp.example -all"},
    {"exp-inc-own.example", "TXT", "v=spf1 include:exp.example -all exp=own.exp.example"},
    {"own.exp.example", "TXT", "own text for %{d}"},
    {"exp-redirect.example", "TXT", "v=spf1 redirect=exp.example exp=own.exp.example"},
    {"exp-macros.example", "TXT", "v=spf1 -all exp=%{l}.macros.exp.example"},
    {"strong-bad.macros.exp.example", "TXT",
     "%{c} %{s} %{o} %{h} %{r} %{t} %{p} %{v}%_%%%-|s are %{L}"},
    /* identities */
    {"helo.example", "TXT", "v=spf1 a -all"},
    {"helo.example", "A", "192.0.2.3"},
};
#define NZONE (sizeof zone / sizeof zone[0])

struct eval_case {
    const char *ip;
    const char *sender;
    const char *helo;
    enum spf_identity id;
    enum spf_result_code result;
    const char *mechanism;   /* NULL: not checked */
    const char *explanation; /* NULL: not checked */
    const char *reason;      /* a part of the reason; NULL: not checked */
};

static void run_cases(const struct eval_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct eval_case *c = &cases[i];
        struct spf_request req = request(c->ip, c->sender, c->helo, c->id);
        struct spf_result res;
        struct fake f;
        evaluate(zone, NZONE, &req, &res, &f);
        if (res.result != c->result)
            fail_msg("case %zu (%s from %s): %s, want %s (%s)", i, c->sender, c->ip,
                     spf_result_name(res.result), spf_result_name(c->result), res.reason);
        if (c->mechanism && strcmp(res.mechanism, c->mechanism) != 0)
            fail_msg("case %zu (%s): mechanism \"%s\", want \"%s\"", i, c->sender, res.mechanism,
                     c->mechanism);
        if (c->explanation && strcmp(res.explanation, c->explanation) != 0)
            fail_msg("case %zu (%s): explanation \"%s\", want \"%s\"", i, c->sender,
                     res.explanation, c->explanation);
        if (c->reason && !strstr(res.reason, c->reason))
            fail_msg("case %zu (%s): reason \"%s\" lacks \"%s\"", i, c->sender, res.reason,
                     c->reason);
        if (res.result != SPF_FAIL)
            assert_string_equal(res.explanation, "");
        assert_true(res.lookups <= SPF_MAX_LOOKUPS + 1);
        assert_true(res.void_lookups <= SPF_MAX_VOID_LOOKUPS + 1);
    }
}

#define MF SPF_IDENTITY_MAILFROM

static void test_eval_basic(void **state)
{
    (void)state;
    static const struct eval_case cases[] = {
        {IP4, "user@pass.example", "helo.example", MF, SPF_PASS, "ip4:192.0.2.0/24", NULL,
         "pass.example designates 192.0.2.3 as permitted sender"},
        {IP4, "user@fail.example", "helo.example", MF, SPF_FAIL, "-all", "",
         "192.0.2.3 is not a permitted sender of fail.example"},
        {IP4, "user@soft.example", "helo.example", MF, SPF_SOFTFAIL, "~all", NULL, "softfail"},
        {IP4, "user@neutral.example", "h.example", MF, SPF_NEUTRAL, "?all", NULL, NULL},
        {IP4, "user@plus.example", "h.example", MF, SPF_PASS, "+all", NULL, NULL},
        {IP4, "user@default.example", "h.example", MF, SPF_NEUTRAL, "default", NULL, NULL},
        {IP4, "user@empty.example", "h.example", MF, SPF_NEUTRAL, "default", NULL, NULL},
        {IP4, "user@ip6.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {IP6, "user@ip6.example", "h.example", MF, SPF_PASS, "ip6:2001:db8::/32", NULL, NULL},
        {IP6, "user@ip6-narrow.example", "h.example", MF, SPF_PASS, "ip6:2001:db8::cb00/127", NULL,
         NULL},
        {"2001:db8::cb03", "user@ip6-narrow.example", "h.example", MF, SPF_FAIL, "-all", NULL,
         NULL},
        {IP6, "user@pass.example", "h.example", MF, SPF_FAIL, "-all", NULL,
         NULL}, /* ip4 never matches v6 */
        {"::ffff:192.0.2.3", "user@pass.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.0/24",
         NULL, "192.0.2.3"}, /* IPv4-mapped is IPv4 */
        {IP4, "user@ip4-cidr.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.2/31", NULL, NULL},
        {IP4, "user@ip4-cidr-miss.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.0/30", NULL,
         NULL},
        {"192.0.2.5", "user@ip4-cidr-miss.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.4/31",
         NULL, NULL},
        {"192.0.2.6", "user@ip4-cidr-miss.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "user@ip4-zero.example", "h.example", MF, SPF_FAIL, "-ip4:0.0.0.0/0", NULL, NULL},
        {IP6, "user@ip4-zero.example", "h.example", MF, SPF_PASS, "+all", NULL, NULL},
        /* selection */
        {IP4, "user@none.example", "h.example", MF, SPF_NONE, "", NULL, "no SPF record"},
        {IP4, "user@nx.example", "h.example", MF, SPF_NONE, "", NULL, NULL},
        {IP4, "user@nospf.example", "h.example", MF, SPF_NONE, NULL, NULL, NULL},
        {IP4, "user@two.example", "h.example", MF, SPF_PERMERROR, "", NULL, "2 SPF records"},
        {IP4, "user@upper.example", "h.example", MF, SPF_PASS, "IP4:192.0.2.3", NULL, NULL},
        {IP4, "user@split.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {IP4, "user@split2.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {IP4, "user@other-txt.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {IP4, "user@servfail.example", "h.example", MF, SPF_TEMPERROR, "", NULL, "SERVFAIL"},
        {IP4, "user@syntax.example", "h.example", MF, SPF_PERMERROR, "", NULL, "'foo'"},
        {IP4, "user@syntax2.example", "h.example", MF, SPF_PERMERROR, "", NULL, "CIDR"},
        {IP4, "user@dup.example", "h.example", MF, SPF_PERMERROR, NULL, NULL, "twice"},
        {IP4, "user@modifier.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        /* domains that are not */
        {IP4, "user@localhost", "h.example", MF, SPF_NONE, "", NULL, "not a valid domain"},
        {IP4, "user@a..example", "h.example", MF, SPF_NONE, NULL, NULL, NULL},
        {IP4, "user@", "h.example", MF, SPF_NONE, NULL, NULL, NULL},
        {IP4, "pass.example", "h.example", MF, SPF_PASS, NULL, NULL,
         NULL}, /* no local part: postmaster */
        {IP4, "@pass.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "user@PASS.Example.", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "user@pass.example..", "h.example", MF, SPF_NONE, NULL, NULL, NULL},
        {IP4, "", "helo.example..", MF, SPF_NONE, NULL, NULL, NULL},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_eval_mechanisms(void **state)
{
    (void)state;
    static const struct eval_case cases[] = {
        {IP4, "u@a.example", "h.example", MF, SPF_PASS, "a", NULL, NULL},
        {IP6, "u@a.example", "h.example", MF, SPF_PASS, "a", NULL, NULL},
        {"192.0.2.4", "u@a.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@a-cidr.example", "h.example", MF, SPF_PASS, "a/24//64", NULL, NULL},
        {IP6, "u@a-cidr.example", "h.example", MF, SPF_PASS, "a/24//64", NULL, NULL},
        {"2001:db8:1::1", "u@a-cidr.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@a-narrow.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@a-other.example", "h.example", MF, SPF_PASS, "a:host.a-other.example/30", NULL,
         NULL},
        {IP4, "u@a-none.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@a-temp.example", "h.example", MF, SPF_TEMPERROR, "a:broken.a-temp.example", NULL,
         NULL},
        {IP4, "u@mx.example", "h.example", MF, SPF_PASS, "mx", NULL, NULL},
        {"198.51.100.7", "u@mx.example", "h.example", MF, SPF_PASS, "mx", NULL, NULL},
        {"198.51.100.8", "u@mx.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@mx-cidr.example", "h.example", MF, SPF_PASS, "mx/24", NULL, NULL},
        {IP4, "u@mx-nohost.example", "h.example", MF, SPF_PASS, "mx:mx.example", NULL, NULL},
        {IP4, "u@mx-temp.example", "h.example", MF, SPF_TEMPERROR, "mx", NULL, NULL},
        {IP4, "u@mx-null.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@mx11.example", "h.example", MF, SPF_PERMERROR, "mx", NULL, "MX records"},
        {IP4, "u@ptr.example", "h.example", MF, SPF_PASS, "ptr", NULL, NULL},
        {IP4, "u@ptr-other.example", "h.example", MF, SPF_FAIL, "-all", NULL,
         NULL}, /* not validated */
        {IP4, "u@ptr-parent.example", "h.example", MF, SPF_PASS, "ptr:ptr.example", NULL, NULL},
        {"192.0.2.99", "u@ptr.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL}, /* no PTR */
        {IP6, "u@ptr.example", "h.example", MF, SPF_PASS, "ptr", NULL, NULL},
        {IP4, "u@exists.example", "h.example", MF, SPF_PASS, "exists:%{i}.ok.%{d}", NULL, NULL},
        {"192.0.2.4", "u@exists.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP6, "u@exists6.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "u@exists-temp.example", "h.example", MF, SPF_TEMPERROR, NULL, NULL, NULL},
        {IP4, "strong-bad@exists-l.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "weak-bad@exists-l.example", "h.example", MF, SPF_FAIL, NULL, NULL, NULL},
        {IP4, "u@exists-h.example", "helo.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "u@exists-h.example", "other.example", MF, SPF_FAIL, NULL, NULL, NULL},
        {IP4, "u@exists-p.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        /* include */
        {IP4, "u@include.example", "h.example", MF, SPF_PASS, "include:pass.example", NULL,
         "include.example designates"},
        {"198.51.100.1", "u@include.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@include-fail.example", "h.example", MF, SPF_SOFTFAIL, "~all", NULL, NULL},
        {IP4, "u@include-soft.example", "h.example", MF, SPF_FAIL, "-include:pass.example", NULL,
         NULL},
        {IP4, "u@include-none.example", "h.example", MF, SPF_PERMERROR, "include:none.example",
         NULL, "none.example has no SPF record"},
        {IP4, "u@include-nx.example", "h.example", MF, SPF_PERMERROR, "include:nx.example", NULL,
         NULL},
        {IP4, "u@include-temp.example", "h.example", MF, SPF_TEMPERROR, NULL, NULL, NULL},
        {IP4, "u@include-perm.example", "h.example", MF, SPF_PERMERROR, NULL, NULL, NULL},
        {IP4, "u@include-chain.example", "h.example", MF, SPF_PASS, "include:include.example", NULL,
         NULL},
        {IP4, "u@include-redirect.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        {IP4, "u@loop.example", "h.example", MF, SPF_PERMERROR, NULL, NULL, "more than 10"},
        /* redirect */
        {IP4, "u@redirect.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.0/24", NULL, NULL},
        {IP4, "u@redirect-fail.example", "h.example", MF, SPF_FAIL, "-all", NULL,
         "not a permitted sender of redirect-fail.example"},
        {IP4, "u@redirect-none.example", "h.example", MF, SPF_PERMERROR, "redirect=none.example",
         NULL, NULL},
        {IP4, "u@redirect-nx.example", "h.example", MF, SPF_PERMERROR, NULL, NULL, NULL},
        {IP4, "u@redirect-matched.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {IP4, "u@redirect-all.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "strong-bad@redirect-macro.example", "h.example", MF, SPF_PASS, NULL, NULL, NULL},
        /* identities */
        {IP4, "u@fail.example", "helo.example", SPF_IDENTITY_HELO, SPF_PASS, "a", NULL,
         "helo.example designates"},
        {IP4, "", "helo.example", MF, SPF_PASS, "a", NULL, NULL},
        {IP4, NULL, "helo.example", MF, SPF_PASS, "a", NULL, NULL},
        {IP4, "", "[192.0.2.3]", MF, SPF_NONE, NULL, NULL, "address literal"},
        {IP4, "u@pass.example", "[192.0.2.3]", SPF_IDENTITY_HELO, SPF_NONE, NULL, NULL, NULL},
        {IP4, "u@pass.example", "", SPF_IDENTITY_HELO, SPF_NONE, NULL, NULL, "no HELO"},
        {IP4, "u@pass.example", NULL, SPF_IDENTITY_HELO, SPF_NONE, NULL, NULL, NULL},
        {IP4, "u@pass.example", "localhost", SPF_IDENTITY_HELO, SPF_NONE, NULL, NULL, NULL},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);

    /* the sender of a HELO check is postmaster@HELO */
    struct spf_request req = request(IP4, "", "helo.example", MF);
    struct spf_result res;
    struct fake f;
    evaluate(zone, NZONE, &req, &res, &f);
    assert_string_equal(res.sender, "postmaster@helo.example");
    assert_string_equal(res.domain, "helo.example");
    assert_string_equal(res.client, "192.0.2.3");
    req = request(IP6, "Someone@Pass.Example", "helo.example", MF);
    evaluate(zone, NZONE, &req, &res, &f);
    assert_string_equal(res.sender, "Someone@Pass.Example");
    assert_string_equal(res.domain, "pass.example");
    assert_string_equal(res.client, "2001:db8::cb01");
    assert_string_equal(spf_identity_name(SPF_IDENTITY_HELO), "helo");
    assert_string_equal(spf_identity_name(SPF_IDENTITY_MAILFROM), "mailfrom");
}

static void test_eval_limits(void **state)
{
    (void)state;
    static const struct eval_case cases[] = {
        {IP4, "u@ten.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@eleven.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
        {"192.0.2.4", "u@eleven.example", "h.example", MF, SPF_PERMERROR, "a:h.ten.example", NULL,
         "more than 10 DNS-querying terms"},
        {IP4, "u@ten-redirect.example", "h.example", MF, SPF_PERMERROR, "redirect=pass.example",
         NULL, NULL},
        /* redirect= counts only when it is followed */
        {IP4, "u@ten-matched.example", "h.example", MF, SPF_PASS, "a", NULL, NULL},
        {IP4, "u@nested.example", "h.example", MF, SPF_PERMERROR, "include:n1.example", NULL, NULL},
        {IP4, "u@void2.example", "h.example", MF, SPF_FAIL, "-all", NULL, NULL},
        {IP4, "u@void3.example", "h.example", MF, SPF_PERMERROR, "exists:nx3.example", NULL,
         "void lookups"},
        {IP4, "u@void-nodata.example", "h.example", MF, SPF_PERMERROR, NULL, NULL, NULL},
        {IP4, "u@void-ok.example", "h.example", MF, SPF_PASS, "ip4:192.0.2.3", NULL, NULL},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);

    /* counts */
    struct spf_request req = request("192.0.2.4", "u@ten.example", "h.example", MF);
    struct spf_result res;
    struct fake f;
    evaluate(zone, NZONE, &req, &res, &f);
    assert_int_equal(res.result, SPF_FAIL);
    assert_int_equal(res.lookups, 10);
    assert_int_equal(res.void_lookups, 0);
    assert_int_equal(res.queries, 11);
    assert_int_equal(f.queries, 11);
    req = request(IP4, "u@void2.example", "h.example", MF);
    evaluate(zone, NZONE, &req, &res, &f);
    assert_int_equal(res.void_lookups, 2);
    /* mx11: no address is looked up */
    req = request(IP4, "u@mx11.example", "h.example", MF);
    evaluate(zone, NZONE, &req, &res, &f);
    assert_int_equal(f.queries, 2);
}

/* PTR names past the first 10 are ignored. */
static void test_eval_ptr_limit(void **state)
{
    (void)state;
    static char names[12][32];
    static struct rr z[40];
    size_t n = 0;
    z[n++] = (struct rr){"ptr.example", "TXT", "v=spf1 ptr -all"};
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "h%d.ptr.example", i);
        z[n++] = (struct rr){"3.2.0.192.in-addr.arpa", "PTR", names[i]};
    }
    /* only the 11th name resolves back to the client */
    z[n++] = (struct rr){names[10], "A", "192.0.2.3"};
    for (int i = 0; i < 10; i++)
        z[n++] = (struct rr){names[i], "A", "198.51.100.1"};
    struct spf_request req = request(IP4, "u@ptr.example", "h.example", MF);
    struct spf_result res;
    struct fake f;
    evaluate(z, n, &req, &res, &f);
    assert_int_equal(res.result, SPF_FAIL);
    assert_int_equal(f.queries, 12); /* TXT, PTR, 10 A */
    /* the 10th does */
    z[n - 1] = (struct rr){names[9], "A", "192.0.2.3"};
    evaluate(z, n, &req, &res, &f);
    assert_int_equal(res.result, SPF_PASS);
}

static void test_eval_exp(void **state)
{
    (void)state;
    static const struct eval_case cases[] = {
        {IP4, "u@exp.example", "h.example", MF, SPF_FAIL, "-all",
         "192.0.2.3 is not one of exp.example's designated mail servers.", NULL},
        {IP4, "u@exp-pass.example", "h.example", MF, SPF_PASS, "+all", "", NULL},
        {IP4, "u@exp-multi.example", "h.example", MF, SPF_FAIL, "-all", "", NULL},
        {IP4, "u@exp-none.example", "h.example", MF, SPF_FAIL, "-all", "", NULL},
        {IP4, "u@exp-temp.example", "h.example", MF, SPF_FAIL, "-all", "", NULL},
        {IP4, "u@exp-bad.example", "h.example", MF, SPF_FAIL, "-all", "", NULL},
        /* an include's exp= is not used (§6.2) */
        {IP4, "u@exp-include.example", "h.example", MF, SPF_FAIL, "-all", "", NULL},
        {IP4, "u@exp-inc-own.example", "h.example", MF, SPF_FAIL, "-all",
         "own text for exp-inc-own.example", NULL},
        /* redirect: the target's exp=, not the original's */
        {IP4, "u@exp-redirect.example", "h.example", MF, SPF_FAIL, "-all",
         "192.0.2.3 is not one of exp.example's designated mail servers.", NULL},
        {IP4, "strong-bad@exp-macros.example", "helo.example", MF, SPF_FAIL, "-all",
         "192.0.2.3 strong-bad@exp-macros.example exp-macros.example helo.example "
         "mx.receiver.example 1700000000 mail.ptr.example in-addr %%20s are strong-bad",
         NULL},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

/* A record longer than SPF_RECORD_MAX is a permerror; one just below is
   fine. */
static void test_eval_long_record(void **state)
{
    (void)state;
    static char rec[SPF_RECORD_MAX + 64];
    static struct rr z[1];
    size_t n = (size_t)snprintf(rec, sizeof rec, "v=spf1");
    while (n + 15 < SPF_RECORD_MAX)
        n += (size_t)snprintf(rec + n, sizeof rec - n, " ip4:10.0.0.1");
    n += (size_t)snprintf(rec + n, sizeof rec - n, " +all");
    assert_true(n <= SPF_RECORD_MAX);
    z[0] = (struct rr){"long.example", "TXT", rec};
    struct spf_request req = request(IP4, "u@long.example", "h.example", MF);
    struct spf_result res;
    struct fake f;
    evaluate(z, 1, &req, &res, &f);
    assert_int_equal(res.result, SPF_PASS);
    while (n <= SPF_RECORD_MAX)
        n += (size_t)snprintf(rec + n, sizeof rec - n, " a");
    evaluate(z, 1, &req, &res, &f);
    assert_int_equal(res.result, SPF_PERMERROR);
    assert_non_null(strstr(res.reason, "longer than"));
}

/* The stepping contract: next() repeats an unanswered query, answer() with
   nothing outstanding is ignored, abort() ends with temperror. */
static void test_eval_api(void **state)
{
    (void)state;
    struct spf_request req = request(IP4, "u@mx.example", "h.example", MF);
    struct spf_eval *e = spf_eval_new(&req);
    struct spf_query q1, q2;
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_QUERY);
    assert_int_equal(spf_eval_next(e, &q2), SPF_STEP_QUERY);
    assert_string_equal(q1.name, "mx.example");
    assert_int_equal(q1.type, DNS_TYPE_TXT);
    assert_string_equal(q2.name, q1.name);
    struct fake f = {zone, NZONE, 0, {{0}}};
    struct dns_answer a;
    fake_answer(&f, &q1, &a);
    spf_eval_answer(e, &a);
    spf_eval_answer(e, &a); /* nothing outstanding: ignored */
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_QUERY);
    assert_string_equal(q1.name, "mx.example");
    assert_int_equal(q1.type, DNS_TYPE_MX);
    spf_eval_abort(e, "timed out after 20 s");
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_DONE);
    const struct spf_result *r = spf_eval_result(e);
    assert_int_equal(r->result, SPF_TEMPERROR);
    assert_non_null(strstr(r->reason, "timed out after 20 s"));
    assert_string_equal(r->mechanism, "mx");
    spf_eval_abort(e, "again"); /* done: nothing changes */
    assert_null(strstr(spf_eval_result(e)->reason, "again"));
    spf_eval_free(e);
    spf_eval_free(NULL);

    /* a result known without DNS */
    req = request(IP4, "u@localhost", "h.example", MF);
    e = spf_eval_new(&req);
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_DONE);
    spf_eval_free(e);

    /* an answer of the INVALID kind is a name that does not exist */
    req = request(IP4, "u@a.example", "h.example", MF);
    e = spf_eval_new(&req);
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_QUERY);
    memset(&a, 0, sizeof a);
    a.status = DNS_ANSWER_INVALID;
    spf_eval_answer(e, &a);
    assert_int_equal(spf_eval_next(e, &q1), SPF_STEP_DONE);
    assert_int_equal(spf_eval_result(e)->result, SPF_NONE);
    spf_eval_free(e);

    static const char *const names[] = {"none",     "neutral",   "pass",     "fail",
                                        "softfail", "temperror", "permerror"};
    for (int i = SPF_NONE; i <= SPF_PERMERROR; i++)
        assert_string_equal(spf_result_name((enum spf_result_code)i), names[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),     cmocka_unit_test(test_terms),
        cmocka_unit_test(test_records),     cmocka_unit_test(test_macros_rfc),
        cmocka_unit_test(test_macros_more), cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_eval_basic),  cmocka_unit_test(test_eval_mechanisms),
        cmocka_unit_test(test_eval_limits), cmocka_unit_test(test_eval_ptr_limit),
        cmocka_unit_test(test_eval_exp),    cmocka_unit_test(test_eval_long_record),
        cmocka_unit_test(test_eval_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
