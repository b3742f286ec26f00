/*
 * test_dmarc - unit tests of the pure half of DMARC (src/dns/dmarc.c):
 * record parsing (every tag, invalid values, v not first, white space,
 * case, bounds), record choice, the author domain of From fields, identifier
 * alignment (relaxed and strict, SPF and DKIM, subdomain, organisational
 * domain, another domain, a public suffix), policy discovery fed scripted
 * DNS answers (fallback to the organisational domain, temporary failures,
 * several records, RFC 9091 existence checks), policy selection (p, sp,
 * np), pct sampling and the disposition.
 *
 * The organisational domain here is a small fake public suffix list with
 * the shapes of the real one (uk and co.uk, a wildcard *.ck with the
 * exception www.ck); test_orgdomain checks the real list.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dns/dmarc.h"

/* ---- a fake public suffix list ---- */

static bool fake_is_suffix(const char *s)
{
    static const char *const list[] = {"uk", "co.uk", "org", "com", "net", "test", "ck", "example"};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    /* *.ck, except www.ck */
    const char *dot = strchr(s, '.');
    return dot && strcmp(dot, ".ck") == 0 && strncmp(s, "www.", 4) != 0;
}

static int org_calls;

static bool fake_org(void *arg, const char *domain, char out[DNS_NAME_MAX + 1])
{
    (void)arg;
    org_calls++;
    /* the longest public suffix of domain, plus one label */
    const char *prev = NULL;
    for (const char *p = domain; p; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
        if (fake_is_suffix(p)) {
            if (!prev)
                return false; /* the domain is a public suffix */
            strcpy(out, prev);
            return true;
        }
        prev = p;
    }
    /* no rule: the last label is the suffix (the list's "*") */
    const char *last = strrchr(domain, '.');
    if (!last)
        return false;
    const char *p = domain, *before = domain;
    while ((p = strchr(p, '.')) && p != last) {
        p++;
        before = p;
    }
    strcpy(out, before);
    return true;
}

/* ---- record parsing ---- */

static void test_record_tags(void **state)
{
    (void)state;
    struct dmarc_record r;
    const char *s = "v=DMARC1; p=reject; sp=quarantine; np=none; pct=25; adkim=s; aspf=s; "
                    "rua=mailto:agg@example.org!10m, https://r.example.net/dmarc; "
                    "ruf=mailto:f@example.org!512; fo=1:d:s; rf=afrf; ri=3600";
    assert_int_equal(dmarc_record_parse(s, strlen(s), &r), DMARC_PARSE_OK);
    assert_int_equal(r.p, DMARC_POLICY_REJECT);
    assert_false(r.p_implied);
    assert_int_equal(r.sp, DMARC_POLICY_QUARANTINE);
    assert_int_equal(r.np, DMARC_POLICY_NONE);
    assert_int_equal(r.pct, 25);
    assert_int_equal(r.adkim, DMARC_ALIGN_STRICT);
    assert_int_equal(r.aspf, DMARC_ALIGN_STRICT);
    assert_int_equal(r.nrua, 2);
    assert_string_equal(r.rua[0].uri, "mailto:agg@example.org");
    assert_int_equal(r.rua[0].max_size, 10u << 20);
    assert_string_equal(r.rua[1].uri, "https://r.example.net/dmarc");
    assert_int_equal(r.rua[1].max_size, 0);
    assert_int_equal(r.nruf, 1);
    assert_string_equal(r.ruf[0].uri, "mailto:f@example.org");
    assert_int_equal(r.ruf[0].max_size, 512);
    assert_int_equal(r.fo, DMARC_FO_1 | DMARC_FO_D | DMARC_FO_S);
    assert_int_equal(r.rf, DMARC_RF_AFRF);
    assert_int_equal(r.ri, 3600);
    assert_int_equal(r.unknown, 0);
    assert_int_equal(r.invalid, 0);
    assert_int_equal(r.uris_dropped, 0);
}

static void test_record_defaults(void **state)
{
    (void)state;
    struct dmarc_record r;
    assert_int_equal(dmarc_record_parse("v=DMARC1; p=none", 16, &r), DMARC_PARSE_OK);
    assert_int_equal(r.p, DMARC_POLICY_NONE);
    assert_int_equal(r.sp, DMARC_POLICY_UNSET);
    assert_int_equal(r.np, DMARC_POLICY_UNSET);
    assert_int_equal(r.pct, 100);
    assert_int_equal(r.adkim, DMARC_ALIGN_RELAXED);
    assert_int_equal(r.aspf, DMARC_ALIGN_RELAXED);
    assert_int_equal(r.nrua + r.nruf, 0);
    assert_int_equal(r.fo, DMARC_FO_0);
    assert_int_equal(r.rf, DMARC_RF_AFRF);
    assert_int_equal(r.ri, 86400);
}

/* One record and what parsing it gives. */
struct rec_case {
    const char *text;
    enum dmarc_parse want;
    enum dmarc_policy p; /* when OK */
    unsigned invalid;    /* invalid tag count */
    unsigned unknown;    /* unknown tag count */
};

static void test_record_table(void **state)
{
    (void)state;
    static const struct rec_case cases[] = {
        /* the v tag */
        {"v=DMARC1;p=reject", DMARC_PARSE_OK, DMARC_POLICY_REJECT, 0, 0},
        {"v = DMARC1 ;\tp = reject ; ", DMARC_PARSE_OK, DMARC_POLICY_REJECT, 0, 0},
        {"V=DMARC1; P=Reject", DMARC_PARSE_OK, DMARC_POLICY_REJECT, 0, 0},
        {"v=DMARC1", DMARC_PARSE_UNUSABLE, 0, 0, 0},
        {"v=DMARC1;", DMARC_PARSE_UNUSABLE, 0, 0, 0},
        {"v=dmarc1; p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"v=DMARC10; p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"v=DMARC2; p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"p=none; v=DMARC1", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {" v=DMARC1; p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"v=spf1 -all", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"vDMARC1; p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"v=DMARC1 p=none", DMARC_PARSE_NOT_DMARC, 0, 0, 0},
        {"v=DMARC1; p=none; v=DMARC1", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        /* p */
        {"v=DMARC1; p=quarantine", DMARC_PARSE_OK, DMARC_POLICY_QUARANTINE, 0, 0},
        {"v=DMARC1; p=QUARANTINE", DMARC_PARSE_OK, DMARC_POLICY_QUARANTINE, 0, 0},
        {"v=DMARC1; p=", DMARC_PARSE_UNUSABLE, 0, 1, 0},
        {"v=DMARC1; p=rejected", DMARC_PARSE_UNUSABLE, 0, 1, 0},
        {"v=DMARC1; p=reject quarantine", DMARC_PARSE_UNUSABLE, 0, 1, 0},
        {"v=DMARC1; p=none; p=reject", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; sp=reject; p=reject", DMARC_PARSE_OK, DMARC_POLICY_REJECT, 0, 0},
        /* §6.6.3: no valid p (or an invalid sp), but a valid rua: p=none */
        {"v=DMARC1; rua=mailto:a@example.org", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 0},
        {"v=DMARC1; p=bogus; rua=mailto:a@example.org", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=reject; sp=bogus; rua=mailto:a@example.org", DMARC_PARSE_OK,
         DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=reject; sp=bogus", DMARC_PARSE_UNUSABLE, 0, 1, 0},
        {"v=DMARC1; p=bogus; rua=bogus", DMARC_PARSE_UNUSABLE, 0, 2, 0},
        {"v=DMARC1; rua=mailto:a@example.org; p=bogus; ", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        /* other invalid values keep their defaults */
        {"v=DMARC1; p=none; pct=101", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; pct=-1", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; pct=50.5", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; pct=", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; pct=0100", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; adkim=x", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; aspf=relaxed", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; fo=2", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; fo=0:", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; fo=0 : 1", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 0},
        {"v=DMARC1; p=none; rf=afrf:iodef", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 0},
        {"v=DMARC1; p=none; rf=a f", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; ri=4294967295", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 0},
        {"v=DMARC1; p=none; ri=4294967296", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; ri=1h", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; np=maybe", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        /* malformed tag-specs and unknown tags are ignored */
        {"v=DMARC1; p=none; junk", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; =x", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; 1x=y", DMARC_PARSE_OK, DMARC_POLICY_NONE, 1, 0},
        {"v=DMARC1; p=none; foo=bar; t=y; psd=n", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 3},
        {"v=DMARC1;;; p=none;;", DMARC_PARSE_OK, DMARC_POLICY_NONE, 0, 0},
        {"v=DMARC1; p=none\r\n", DMARC_PARSE_UNUSABLE, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct rec_case *c = &cases[i];
        struct dmarc_record r;
        enum dmarc_parse got = dmarc_record_parse(c->text, strlen(c->text), &r);
        if (got != c->want || (got == DMARC_PARSE_OK && r.p != c->p) ||
            (c->want != DMARC_PARSE_NOT_DMARC &&
             (r.invalid != c->invalid || r.unknown != c->unknown)))
            fail_msg("case %zu \"%s\": got %d p=%d invalid=%u unknown=%u", i, c->text, got, r.p,
                     r.invalid, r.unknown);
        assert_int_equal(dmarc_record_is_dmarc(c->text, strlen(c->text)),
                         c->want != DMARC_PARSE_NOT_DMARC);
    }
}

static void test_record_values(void **state)
{
    (void)state;
    struct dmarc_record r;
#define PARSE(s) assert_int_equal(dmarc_record_parse(s, strlen(s), &r), DMARC_PARSE_OK)
    PARSE("v=DMARC1; p=none; pct=0");
    assert_int_equal(r.pct, 0);
    PARSE("v=DMARC1; p=none; pct=100");
    assert_int_equal(r.pct, 100);
    PARSE("v=DMARC1; p=none; pct=7");
    assert_int_equal(r.pct, 7);
    PARSE("v=DMARC1; p=none; pct=101");
    assert_int_equal(r.pct, 100);
    PARSE("v=DMARC1; p=none; adkim=S; aspf=r");
    assert_int_equal(r.adkim, DMARC_ALIGN_STRICT);
    assert_int_equal(r.aspf, DMARC_ALIGN_RELAXED);
    PARSE("v=DMARC1; p=none; fo=0");
    assert_int_equal(r.fo, DMARC_FO_0);
    PARSE("v=DMARC1; p=none; fo=1:x");
    assert_int_equal(r.fo, DMARC_FO_0); /* invalid: default */
    PARSE("v=DMARC1; p=none; rf=iodef");
    assert_int_equal(r.rf, DMARC_RF_OTHER);
    PARSE("v=DMARC1; p=none; rf=AFRF:x-new");
    assert_int_equal(r.rf, DMARC_RF_AFRF | DMARC_RF_OTHER);
    PARSE("v=DMARC1; p=none; ri=0");
    assert_int_equal(r.ri, 0);
    PARSE("v=DMARC1; p=none; np=reject; sp=none");
    assert_int_equal(r.np, DMARC_POLICY_REJECT);
    assert_int_equal(r.sp, DMARC_POLICY_NONE);
    /* an implied p=none drops sp and np */
    PARSE("v=DMARC1; sp=bogus; np=reject; rua=mailto:x@example.org");
    assert_true(r.p_implied);
    assert_int_equal(r.p, DMARC_POLICY_NONE);
    assert_int_equal(r.sp, DMARC_POLICY_UNSET);
    assert_int_equal(r.np, DMARC_POLICY_UNSET);
#undef PARSE
}

static void test_record_uris(void **state)
{
    (void)state;
    struct dmarc_record r;
    static const struct {
        const char *rua;
        size_t n;           /* valid URIs kept */
        size_t dropped;     /* URIs dropped */
        const char *first;  /* the first URI kept */
        uint64_t first_max; /* its size limit */
    } cases[] = {
        {"mailto:a@example.org", 1, 0, "mailto:a@example.org", 0},
        {"mailto:a@example.org!1k", 1, 0, "mailto:a@example.org", 1024},
        {"mailto:a@example.org!2G", 1, 0, "mailto:a@example.org", 2ull << 30},
        {"mailto:a@example.org!3t", 1, 0, "mailto:a@example.org", 3ull << 40},
        {"mailto:a@example.org!", 0, 1, "", 0},
        {"mailto:a@example.org!10x", 0, 1, "", 0},
        {"mailto:a@example.org!k", 0, 1, "", 0},
        {"mailto:a@example.org!99999999999999999999", 0, 1, "", 0},
        {"mailto:a@example.org!16777216t", 0, 1, "", 0}, /* 2^64: overflow */
        {"mailto:a%21b@example.org", 1, 0, "mailto:a%21b@example.org", 0},
        {"mailto:a%2@example.org", 0, 1, "", 0},
        {"mailto:a%zz@example.org", 0, 1, "", 0},
        {"mailto:a b@example.org", 0, 1, "", 0},
        {"mailto:", 0, 1, "", 0},
        {"example.org", 0, 1, "", 0},
        {"1mailto:a@example.org", 0, 1, "", 0},
        {":a@example.org", 0, 1, "", 0},
        {"bogus, mailto:b@example.org , mailto:c@example.org!5m", 2, 1, "mailto:b@example.org", 0},
        {"mailto:a@example.org,", 1, 1, "mailto:a@example.org", 0},
        {"mailto:1@x.org,mailto:2@x.org,mailto:3@x.org,mailto:4@x.org,mailto:5@x.org,"
         "mailto:6@x.org,mailto:7@x.org,mailto:8@x.org,mailto:9@x.org,mailto:10@x.org",
         DMARC_URIS_MAX, 10 - DMARC_URIS_MAX, "mailto:1@x.org", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "v=DMARC1; p=none; rua=%s; ruf=%s", cases[i].rua, cases[i].rua);
        assert_int_equal(dmarc_record_parse(text, strlen(text), &r), DMARC_PARSE_OK);
        if (r.nrua != cases[i].n || r.nruf != cases[i].n || r.uris_dropped != 2 * cases[i].dropped)
            fail_msg("case %zu \"%s\": nrua=%zu nruf=%zu dropped=%zu", i, cases[i].rua, r.nrua,
                     r.nruf, r.uris_dropped);
        if (cases[i].n) {
            assert_string_equal(r.rua[0].uri, cases[i].first);
            assert_int_equal(r.rua[0].max_size, cases[i].first_max);
            assert_string_equal(r.ruf[0].uri, cases[i].first);
        }
        assert_int_equal(r.invalid, cases[i].n ? 0 : 2);
    }
    /* a URI longer than DMARC_URI_MAX is dropped */
    char text[2 * DMARC_URI_MAX];
    int n =
        snprintf(text, sizeof text, "v=DMARC1; p=none; rua=mailto:%0*d@x.org", DMARC_URI_MAX, 0);
    assert_int_equal(dmarc_record_parse(text, (size_t)n, &r), DMARC_PARSE_OK);
    assert_int_equal(r.nrua, 0);
}

static void test_record_bounds(void **state)
{
    (void)state;
    struct dmarc_record r;
    char text[DMARC_RECORD_MAX + 64];
    memset(text, ' ', sizeof text);
    memcpy(text, "v=DMARC1; p=reject;", 19);
    /* exactly the bound parses; one more octet is unusable */
    assert_int_equal(dmarc_record_parse(text, DMARC_RECORD_MAX, &r), DMARC_PARSE_OK);
    assert_int_equal(dmarc_record_parse(text, DMARC_RECORD_MAX + 1, &r), DMARC_PARSE_UNUSABLE);
    /* a NUL in the record is an invalid tag-spec, not the end */
    static const char nul[] = "v=DMARC1; p=reject; x\0y=1; pct=5";
    assert_int_equal(dmarc_record_parse(nul, sizeof nul - 1, &r), DMARC_PARSE_OK);
    assert_int_equal(r.pct, 5);
    assert_int_equal(r.invalid, 1);
}

/* ---- the author domain ---- */

static void test_from_domain(void **state)
{
    (void)state;
    static const struct {
        size_t nfields;
        const char *value;
        bool truncated;
        enum dmarc_from want;
        const char *domain;
    } cases[] = {
        {1, "a@Example.ORG", false, DMARC_FROM_OK, "example.org"},
        {1, "Alice <alice@Mail.Example.org>", false, DMARC_FROM_OK, "mail.example.org"},
        {1, "Alice <alice@mail.example.org.>", false, DMARC_FROM_NO_ADDRESS, ""},
        {1, "\"Doe, J\" <j@x.org> (work)", false, DMARC_FROM_OK, "x.org"},
        {1, "a@x.org, B <b@X.ORG>", false, DMARC_FROM_OK, "x.org"},
        {1, "a@x.org, b@y.org", false, DMARC_FROM_MANY_DOMAINS, ""},
        {1, "friends: a@x.org, b@y.org;", false, DMARC_FROM_MANY_DOMAINS, ""},
        {1, "undisclosed-recipients:;", false, DMARC_FROM_NO_ADDRESS, ""},
        {1, "", false, DMARC_FROM_NO_ADDRESS, ""},
        {1, "not an address", false, DMARC_FROM_NO_ADDRESS, ""},
        {1, "a@x.org", true, DMARC_FROM_NO_ADDRESS, ""},
        {1, "a@[192.0.2.1]", false, DMARC_FROM_BAD_DOMAIN, ""},
        {1, "a@x_y.org", false, DMARC_FROM_BAD_DOMAIN, ""},
        {1, "a@x.org, b@[192.0.2.1]", false, DMARC_FROM_BAD_DOMAIN, ""},
        {1,
         "a@b\xc3\xbc"
         "cher.example",
         false, DMARC_FROM_OK,
         "b\xc3\xbc"
         "cher.example"},
        {0, NULL, false, DMARC_FROM_NONE, ""},
        {2, "a@x.org", false, DMARC_FROM_MANY_FIELDS, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dom[DNS_NAME_MAX + 1] = "junk";
        const char *v = cases[i].value;
        enum dmarc_from got =
            dmarc_from_domain(cases[i].nfields, v, v ? strlen(v) : 0, cases[i].truncated, dom);
        if (got != cases[i].want || strcmp(dom, cases[i].domain) != 0)
            fail_msg("case %zu \"%s\": got %s \"%s\"", i, v ? v : "(none)", dmarc_from_name(got),
                     dom);
    }
}

/* ---- alignment ---- */

static void test_alignment_table(void **state)
{
    (void)state;
    static const struct {
        const char *auth, *from;
        bool relaxed, strict;
    } cases[] = {
        /* the same name */
        {"example.org", "example.org", true, true},
        {"EXAMPLE.org.", "example.ORG", true, true},
        /* a subdomain and its organisational domain, either way round */
        {"mail.example.org", "example.org", true, false},
        {"example.org", "news.example.org", true, false},
        {"a.example.org", "b.example.org", true, false},
        /* another organisation */
        {"example.net", "example.org", false, false},
        {"example.org.evil.net", "example.org", false, false},
        {"xexample.org", "example.org", false, false},
        /* under a two-label public suffix */
        {"mail.example.co.uk", "example.co.uk", true, false},
        {"other.co.uk", "example.co.uk", false, false},
        /* a public suffix never aligns with a name below it */
        {"co.uk", "example.co.uk", false, false},
        {"example.co.uk", "co.uk", false, false},
        {"org", "example.org", false, false},
        {"uk", "example.co.uk", false, false},
        /* the wildcard *.ck: foo.ck is a suffix, www.ck is not */
        {"foo.ck", "a.foo.ck", false, false},
        {"b.a.foo.ck", "a.foo.ck", true, false},
        {"a.foo.ck", "b.foo.ck", false, false},
        {"www.ck", "mail.www.ck", true, false},
        /* a public suffix aligns with itself, as the same name */
        {"co.uk", "co.uk", true, true},
        /* nothing */
        {"", "example.org", false, false},
        {NULL, "example.org", false, false},
        {"example.org", "", false, false},
        {"a..example.org", "example.org", false, false},
        {"example.org..", "example.org", false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool r = dmarc_aligned(cases[i].auth, cases[i].from, DMARC_ALIGN_RELAXED, fake_org, NULL);
        bool s = dmarc_aligned(cases[i].auth, cases[i].from, DMARC_ALIGN_STRICT, fake_org, NULL);
        if (r != cases[i].relaxed || s != cases[i].strict)
            fail_msg("case %zu %s vs %s: relaxed=%d strict=%d", i,
                     cases[i].auth ? cases[i].auth : "(null)", cases[i].from, r, s);
    }
}

/* ---- discovery with scripted answers ---- */

/* One scripted DNS answer: a name, a type, a status and TXT strings. */
struct scripted {
    const char *name;
    int type;
    enum dns_answer_status status;
    const char *txt[4]; /* TXT records (each one character-string, or split when long) */
};

/* Build TXT rdata for s: character-strings of at most 255 octets. */
static size_t txt_rdata(uint8_t *out, size_t cap, const char *s)
{
    size_t len = strlen(s), o = 0;
    do {
        size_t l = len > 255 ? 255 : len;
        assert_true(o + 1 + l <= cap);
        out[o++] = (uint8_t)l;
        memcpy(out + o, s, l);
        o += l;
        s += l;
        len -= l;
    } while (len > 0);
    return o;
}

/* Run discovery for from against the script (every query must be the next
   step of the script, in order); returns how many queries were made. */
static size_t discover(struct dmarc_discovery *d, const char *from, const struct dmarc_input *in,
                       const struct scripted *script, size_t n)
{
    static uint8_t rdata[4][8192];
    dmarc_discovery_init(d, from, fake_org, NULL, in);
    size_t q = 0;
    char name[DNS_NAME_MAX + 1];
    int type;
    while (dmarc_discovery_next(d, name, &type)) {
        if (q >= n)
            fail_msg("unexpected query %zu: %s type %d", q, name, type);
        const struct scripted *s = &script[q++];
        if (strcmp(name, s->name) != 0 || type != s->type)
            fail_msg("query %zu: got %s type %d, want %s type %d", q, name, type, s->name, s->type);
        struct dns_answer a;
        memset(&a, 0, sizeof a);
        a.status = s->status;
        a.type = type;
        strcpy(a.name, name);
        for (size_t i = 0; i < 4 && s->txt[i]; i++) {
            a.len[i] = txt_rdata(rdata[i], sizeof rdata[i], s->txt[i]);
            a.rdata[i] = rdata[i];
            a.n++;
        }
        dmarc_discovery_answer(d, &a, fake_org, NULL);
    }
    assert_int_equal(q, n);
    assert_int_not_equal(d->status, DMARC_DISC_PENDING);
    return q;
}

#define TXT DNS_TYPE_TXT
#define DATA DNS_ANSWER_DATA
#define NODATA DNS_ANSWER_NODATA
#define NX DNS_ANSWER_NXDOMAIN
#define TEMP DNS_ANSWER_TEMPFAIL

static void test_discovery_at_from(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    struct scripted s[] = {
        {"_dmarc.example.org", TXT, DATA, {"v=spf1 -all", "v=DMARC1; p=reject", "something else"}}};
    discover(&d, "Example.ORG.", NULL, s, 1);
    assert_int_equal(d.status, DMARC_DISC_FOUND);
    assert_string_equal(d.domain, "example.org");
    assert_string_equal(d.from, "example.org");
    assert_string_equal(d.org, "example.org");
    assert_false(d.at_org);
    assert_int_equal(d.rec.p, DMARC_POLICY_REJECT);
}

static void test_discovery_falls_back_to_org(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    /* NXDOMAIN, NODATA, and TXT without a DMARC record all fall back */
    enum dns_answer_status first[] = {NX, NODATA, DATA};
    for (size_t i = 0; i < 3; i++) {
        struct scripted s[] = {
            {"_dmarc.a.b.example.co.uk",
             TXT,
             first[i],
             {first[i] == DATA ? "v=DMARC2; p=none" : NULL}},
            {"_dmarc.example.co.uk", TXT, DATA, {"v=DMARC1; p=reject; sp=quarantine"}},
        };
        discover(&d, "a.b.example.co.uk", NULL, s, 2);
        assert_int_equal(d.status, DMARC_DISC_FOUND);
        assert_string_equal(d.domain, "example.co.uk");
        assert_true(d.at_org);
        assert_int_equal(d.rec.sp, DMARC_POLICY_QUARANTINE);
    }
    /* nothing at either */
    struct scripted none[] = {{"_dmarc.mail.example.org", TXT, NX, {NULL}},
                              {"_dmarc.example.org", TXT, NODATA, {NULL}}};
    discover(&d, "mail.example.org", NULL, none, 2);
    assert_int_equal(d.status, DMARC_DISC_ABSENT);
    assert_string_equal(d.domain, "");
    assert_non_null(strstr(d.reason, "_dmarc.example.org"));
}

static void test_discovery_failures(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    /* a temporary failure at the From domain: no fallback */
    struct scripted t1[] = {{"_dmarc.mail.example.org", TXT, TEMP, {NULL}}};
    discover(&d, "mail.example.org", NULL, t1, 1);
    assert_int_equal(d.status, DMARC_DISC_TEMPFAIL);
    /* ... and at the organisational domain */
    struct scripted t2[] = {{"_dmarc.mail.example.org", TXT, NX, {NULL}},
                            {"_dmarc.example.org", TXT, TEMP, {NULL}}};
    discover(&d, "mail.example.org", NULL, t2, 2);
    assert_int_equal(d.status, DMARC_DISC_TEMPFAIL);
    /* two DMARC records: no policy, and no fallback */
    struct scripted many[] = {
        {"_dmarc.mail.example.org", TXT, DATA, {"v=DMARC1; p=none", "v=DMARC1; p=reject"}}};
    discover(&d, "mail.example.org", NULL, many, 1);
    assert_int_equal(d.status, DMARC_DISC_MANY);
    /* an unusable record: no fallback either */
    struct scripted bad[] = {{"_dmarc.mail.example.org", TXT, DATA, {"v=DMARC1; p=maybe"}}};
    discover(&d, "mail.example.org", NULL, bad, 1);
    assert_int_equal(d.status, DMARC_DISC_UNUSABLE);
    assert_string_equal(d.domain, "mail.example.org");
    /* the From domain is its own organisational domain: one query */
    struct scripted own[] = {{"_dmarc.example.org", TXT, NX, {NULL}}};
    discover(&d, "example.org", NULL, own, 1);
    assert_int_equal(d.status, DMARC_DISC_ABSENT);
    /* a public suffix has no organisational domain: one query */
    struct scripted ps[] = {{"_dmarc.co.uk", TXT, NX, {NULL}}};
    discover(&d, "co.uk", NULL, ps, 1);
    assert_int_equal(d.status, DMARC_DISC_ABSENT);
    assert_string_equal(d.org, "");
    /* not a domain name: no query */
    discover(&d, "a..b", NULL, NULL, 0);
    assert_int_equal(d.status, DMARC_DISC_BAD_FROM);
    discover(&d, "", NULL, NULL, 0);
    assert_int_equal(d.status, DMARC_DISC_BAD_FROM);
}

static void test_discovery_long_records(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    static char big[DMARC_RECORD_MAX + 200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "v=DMARC1; p=reject; x=", 22);
    /* a record in several character-strings is joined */
    static char split[600];
    memset(split, ' ', sizeof split - 1);
    split[sizeof split - 1] = '\0';
    memcpy(split, "v=DMARC1; p=quarantine;", 23);
    memcpy(split + 400, "pct=5", 5);
    struct scripted s1[] = {{"_dmarc.example.org", TXT, DATA, {split}}};
    discover(&d, "example.org", NULL, s1, 1);
    assert_int_equal(d.status, DMARC_DISC_FOUND);
    assert_int_equal(d.rec.p, DMARC_POLICY_QUARANTINE);
    assert_int_equal(d.rec.pct, 5);
    /* too long: unusable */
    struct scripted s2[] = {{"_dmarc.example.org", TXT, DATA, {big}}};
    discover(&d, "example.org", NULL, s2, 1);
    assert_int_equal(d.status, DMARC_DISC_UNUSABLE);
    /* too long, next to a normal one: still two records */
    struct scripted s3[] = {{"_dmarc.example.org", TXT, DATA, {"v=DMARC1; p=none", big}}};
    discover(&d, "example.org", NULL, s3, 1);
    assert_int_equal(d.status, DMARC_DISC_MANY);
}

/* ---- evaluation ---- */

static struct dmarc_result eval(const struct dmarc_discovery *d, enum dmarc_auth spf,
                                const char *spf_domain, enum dmarc_auth dkim,
                                const char *dkim_domain, unsigned roll)
{
    struct dmarc_dkim sig = {dkim, dkim_domain, "sel"};
    struct dmarc_input in = {spf, spf_domain, dkim_domain ? 1 : 0, &sig};
    struct dmarc_result r;
    dmarc_evaluate(d, &in, roll, fake_org, NULL, &r);
    return r;
}

/* A discovery that found `record` at `at` for the From domain `from`. */
static void found(struct dmarc_discovery *d, const char *from, const char *at, const char *record)
{
    if (strcmp(from, at) == 0) {
        struct scripted s[] = {{"", TXT, DATA, {record}}};
        char name[300];
        snprintf(name, sizeof name, "_dmarc.%s", from);
        s[0].name = name;
        discover(d, from, NULL, s, 1);
    } else {
        char n1[300], n2[300];
        snprintf(n1, sizeof n1, "_dmarc.%s", from);
        snprintf(n2, sizeof n2, "_dmarc.%s", at);
        struct scripted s[] = {{n1, TXT, NX, {NULL}}, {n2, TXT, DATA, {record}}};
        discover(d, from, NULL, s, 2);
    }
    assert_int_equal(d->status, DMARC_DISC_FOUND);
}

#define PASS DMARC_AUTH_PASS
#define FAIL DMARC_AUTH_FAIL
#define NONE DMARC_AUTH_NONE

static void test_evaluate_alignment(void **state)
{
    (void)state;
    struct dmarc_discovery relaxed, strict;
    found(&relaxed, "example.org", "example.org", "v=DMARC1; p=reject");
    found(&strict, "example.org", "example.org", "v=DMARC1; p=reject; adkim=s; aspf=s");
    static const struct {
        enum dmarc_auth spf;
        const char *spf_domain;
        enum dmarc_auth dkim;
        const char *dkim_domain;
        bool spf_r, dkim_r, spf_s, dkim_s; /* aligned, relaxed and strict */
    } cases[] = {
        {PASS, "example.org", NONE, NULL, true, false, true, false},
        {PASS, "bounce.example.org", NONE, NULL, true, false, false, false},
        {PASS, "example.net", NONE, NULL, false, false, false, false},
        {PASS, "org", NONE, NULL, false, false, false, false},
        {FAIL, "example.org", NONE, NULL, false, false, false, false},
        {DMARC_AUTH_SOFTFAIL, "example.org", NONE, NULL, false, false, false, false},
        {NONE, NULL, PASS, "example.org", false, true, false, true},
        {NONE, NULL, PASS, "mail.example.org", false, true, false, false},
        {NONE, NULL, PASS, "example.net", false, false, false, false},
        {NONE, NULL, PASS, "org", false, false, false, false},
        {NONE, NULL, FAIL, "example.org", false, false, false, false},
        {PASS, "example.org", PASS, "example.org", true, true, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dmarc_result r = eval(&relaxed, cases[i].spf, cases[i].spf_domain, cases[i].dkim,
                                     cases[i].dkim_domain, 0);
        struct dmarc_result s = eval(&strict, cases[i].spf, cases[i].spf_domain, cases[i].dkim,
                                     cases[i].dkim_domain, 0);
        if (r.spf_aligned != cases[i].spf_r || r.dkim_aligned != cases[i].dkim_r ||
            s.spf_aligned != cases[i].spf_s || s.dkim_aligned != cases[i].dkim_s)
            fail_msg("case %zu: relaxed spf=%d dkim=%d strict spf=%d dkim=%d", i, r.spf_aligned,
                     r.dkim_aligned, s.spf_aligned, s.dkim_aligned);
        bool rpass = cases[i].spf_r || cases[i].dkim_r;
        assert_int_equal(r.status, rpass ? DMARC_STATUS_PASS : DMARC_STATUS_FAIL);
        assert_int_equal(r.disposition, rpass ? DMARC_DISP_NONE : DMARC_DISP_REJECT);
        bool spass = cases[i].spf_s || cases[i].dkim_s;
        assert_int_equal(s.status, spass ? DMARC_STATUS_PASS : DMARC_STATUS_FAIL);
    }
}

static void test_evaluate_many_dkim(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    found(&d, "example.org", "example.org", "v=DMARC1; p=quarantine");
    struct dmarc_dkim sigs[] = {
        {FAIL, "example.org", "a"}, {PASS, "example.net", "b"}, {PASS, "mail.example.org", "c"}};
    struct dmarc_input in = {DMARC_AUTH_NONE, NULL, 3, sigs};
    struct dmarc_result r;
    dmarc_evaluate(&d, &in, 0, fake_org, NULL, &r);
    assert_int_equal(r.status, DMARC_STATUS_PASS);
    assert_true(r.dkim_aligned);
    assert_int_equal(r.dkim_index, 2);
    /* only the first DMARC_MAX_DKIM signatures count */
    struct dmarc_dkim lots[DMARC_MAX_DKIM + 1];
    for (size_t i = 0; i < DMARC_MAX_DKIM; i++)
        lots[i] = (struct dmarc_dkim){FAIL, "example.org", "x"};
    lots[DMARC_MAX_DKIM] = (struct dmarc_dkim){PASS, "example.org", "y"};
    struct dmarc_input in2 = {DMARC_AUTH_NONE, NULL, DMARC_MAX_DKIM + 1, lots};
    dmarc_evaluate(&d, &in2, 0, fake_org, NULL, &r);
    assert_int_equal(r.status, DMARC_STATUS_FAIL);
    assert_int_equal(r.disposition, DMARC_DISP_QUARANTINE);
}

static void test_evaluate_policy_selection(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    struct dmarc_result r;
    /* the From domain's own record: p */
    found(&d, "mail.example.org", "mail.example.org", "v=DMARC1; p=quarantine; sp=none");
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy, DMARC_POLICY_QUARANTINE);
    assert_int_equal(r.policy_tag, DMARC_TAG_P);
    /* the organisational domain's record for a subdomain: sp */
    found(&d, "mail.example.org", "example.org", "v=DMARC1; p=quarantine; sp=reject");
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy, DMARC_POLICY_REJECT);
    assert_int_equal(r.policy_tag, DMARC_TAG_SP);
    assert_int_equal(r.disposition, DMARC_DISP_REJECT);
    /* no sp: p */
    found(&d, "mail.example.org", "example.org", "v=DMARC1; p=quarantine");
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy, DMARC_POLICY_QUARANTINE);
    assert_int_equal(r.policy_tag, DMARC_TAG_P);
    /* np equal to sp: no existence check, sp */
    found(&d, "mail.example.org", "example.org", "v=DMARC1; p=reject; sp=none; np=none");
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy_tag, DMARC_TAG_SP);
    assert_int_equal(r.disposition, DMARC_DISP_NONE);
    /* the policy is reported on a pass too */
    found(&d, "mail.example.org", "example.org", "v=DMARC1; p=reject; sp=quarantine");
    r = eval(&d, PASS, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_PASS);
    assert_int_equal(r.policy, DMARC_POLICY_QUARANTINE);
    assert_int_equal(r.disposition, DMARC_DISP_NONE);
}

static void test_evaluate_np(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    struct dmarc_result r;
    const char *rec = "v=DMARC1; p=none; sp=quarantine; np=reject";
    /* the From domain has no A, AAAA or MX: np */
    struct scripted gone[] = {
        {"_dmarc.nx.example.org", TXT, NX, {NULL}},
        {"_dmarc.example.org", TXT, DATA, {rec}},
        {"nx.example.org", DNS_TYPE_A, NX, {NULL}},
        {"nx.example.org", DNS_TYPE_AAAA, NODATA, {NULL}},
        {"nx.example.org", DNS_TYPE_MX, NX, {NULL}},
    };
    discover(&d, "nx.example.org", NULL, gone, 5);
    assert_int_equal(d.from_exists, DMARC_EXISTS_NO);
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy, DMARC_POLICY_REJECT);
    assert_int_equal(r.policy_tag, DMARC_TAG_NP);
    assert_int_equal(r.disposition, DMARC_DISP_REJECT);
    /* an address record: it exists, sp */
    struct scripted there[] = {
        {"_dmarc.www.example.org", TXT, NX, {NULL}},
        {"_dmarc.example.org", TXT, DATA, {rec}},
        {"www.example.org", DNS_TYPE_A, NODATA, {NULL}},
        {"www.example.org", DNS_TYPE_AAAA, DATA, {NULL}},
    };
    discover(&d, "www.example.org", NULL, there, 4);
    assert_int_equal(d.from_exists, DMARC_EXISTS_YES);
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy_tag, DMARC_TAG_SP);
    assert_int_equal(r.disposition, DMARC_DISP_QUARANTINE);
    /* a temporary failure: treated as existing */
    struct scripted unsure[] = {
        {"_dmarc.nx.example.org", TXT, NX, {NULL}},
        {"_dmarc.example.org", TXT, DATA, {rec}},
        {"nx.example.org", DNS_TYPE_A, TEMP, {NULL}},
    };
    discover(&d, "nx.example.org", NULL, unsure, 3);
    assert_int_equal(d.status, DMARC_DISC_FOUND);
    assert_int_equal(d.from_exists, DMARC_EXISTS_UNKNOWN);
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy_tag, DMARC_TAG_SP);
    /* an input that passes anyway: no existence check */
    struct dmarc_dkim sig = {PASS, "example.org", "s"};
    struct dmarc_input in = {DMARC_AUTH_NONE, NULL, 1, &sig};
    discover(&d, "nx.example.org", &in, gone, 2);
    assert_int_equal(d.from_exists, DMARC_EXISTS_UNKNOWN);
    /* np without sp: np against p */
    struct scripted nosp[] = {
        {"_dmarc.nx.example.org", TXT, NX, {NULL}},
        {"_dmarc.example.org", TXT, DATA, {"v=DMARC1; p=quarantine; np=reject"}},
        {"nx.example.org", DNS_TYPE_A, NX, {NULL}},
        {"nx.example.org", DNS_TYPE_AAAA, NX, {NULL}},
        {"nx.example.org", DNS_TYPE_MX, NODATA, {NULL}},
    };
    discover(&d, "nx.example.org", NULL, nosp, 5);
    r = eval(&d, FAIL, "x.net", NONE, NULL, 0);
    assert_int_equal(r.policy, DMARC_POLICY_REJECT);
    assert_int_equal(r.policy_tag, DMARC_TAG_NP);
}

static void test_evaluate_pct(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    static const struct {
        const char *record;
        unsigned roll;
        enum dmarc_disposition disp;
        bool sampled_out;
    } cases[] = {
        {"v=DMARC1; p=reject; pct=100", 99, DMARC_DISP_REJECT, false},
        {"v=DMARC1; p=reject", 0, DMARC_DISP_REJECT, false},
        {"v=DMARC1; p=reject; pct=50", 49, DMARC_DISP_REJECT, false},
        {"v=DMARC1; p=reject; pct=50", 50, DMARC_DISP_QUARANTINE, true},
        {"v=DMARC1; p=reject; pct=0", 0, DMARC_DISP_QUARANTINE, true},
        {"v=DMARC1; p=quarantine; pct=0", 0, DMARC_DISP_NONE, true},
        {"v=DMARC1; p=quarantine; pct=0", 99, DMARC_DISP_NONE, true},
        {"v=DMARC1; p=quarantine; pct=1", 0, DMARC_DISP_QUARANTINE, false},
        {"v=DMARC1; p=quarantine; pct=1", 1, DMARC_DISP_NONE, true},
        {"v=DMARC1; p=quarantine; pct=1", 100, DMARC_DISP_QUARANTINE, false}, /* 100 % 100 */
        {"v=DMARC1; p=none; pct=0", 5, DMARC_DISP_NONE, false},
        {"v=DMARC1; p=none; pct=100", 5, DMARC_DISP_NONE, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        found(&d, "example.org", "example.org", cases[i].record);
        struct dmarc_result r = eval(&d, FAIL, "example.org", FAIL, "example.org", cases[i].roll);
        if (r.status != DMARC_STATUS_FAIL || r.disposition != cases[i].disp ||
            r.sampled_out != cases[i].sampled_out)
            fail_msg("case %zu %s roll %u: disposition %s sampled_out %d", i, cases[i].record,
                     cases[i].roll, dmarc_disposition_name(r.disposition), r.sampled_out);
    }
    /* over many rolls, pct=30 applies to exactly 30 of 100 */
    found(&d, "example.org", "example.org", "v=DMARC1; p=reject; pct=30");
    unsigned applied = 0;
    for (unsigned roll = 0; roll < 100; roll++)
        applied += eval(&d, NONE, NULL, NONE, NULL, roll).disposition == DMARC_DISP_REJECT;
    assert_int_equal(applied, 30);
}

static void test_evaluate_statuses(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    struct dmarc_result r;
    struct scripted t[] = {{"_dmarc.example.org", TXT, TEMP, {NULL}}};
    discover(&d, "example.org", NULL, t, 1);
    r = eval(&d, PASS, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_TEMPERROR);
    assert_int_equal(r.disposition, DMARC_DISP_NONE);
    struct scripted m[] = {
        {"_dmarc.example.org", TXT, DATA, {"v=DMARC1; p=reject", "v=DMARC1; p=reject"}}};
    discover(&d, "example.org", NULL, m, 1);
    r = eval(&d, FAIL, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_NONE);
    assert_int_equal(r.disposition, DMARC_DISP_NONE);
    assert_int_equal(r.policy, DMARC_POLICY_UNSET);
    struct scripted u[] = {{"_dmarc.example.org", TXT, DATA, {"v=DMARC1; pct=5"}}};
    discover(&d, "example.org", NULL, u, 1);
    r = eval(&d, FAIL, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_PERMERROR);
    discover(&d, "-", NULL, NULL, 0);
    r = eval(&d, FAIL, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_PERMERROR);
    /* an implied p=none (invalid p, valid rua) fails without a disposition */
    struct scripted rua[] = {
        {"_dmarc.example.org", TXT, DATA, {"v=DMARC1; p=rejectt; rua=mailto:r@example.org"}}};
    discover(&d, "example.org", NULL, rua, 1);
    r = eval(&d, FAIL, "example.org", NONE, NULL, 0);
    assert_int_equal(r.status, DMARC_STATUS_FAIL);
    assert_int_equal(r.policy, DMARC_POLICY_NONE);
    assert_int_equal(r.disposition, DMARC_DISP_NONE);
}

static void test_names(void **state)
{
    (void)state;
    enum dmarc_auth a;
    assert_true(dmarc_auth_parse("PASS", 4, &a));
    assert_int_equal(a, DMARC_AUTH_PASS);
    assert_true(dmarc_auth_parse("softfail", 8, &a));
    assert_int_equal(a, DMARC_AUTH_SOFTFAIL);
    assert_false(dmarc_auth_parse("passed", 6, &a));
    assert_false(dmarc_auth_parse("", 0, &a));
    for (int i = DMARC_AUTH_NONE; i <= DMARC_AUTH_PERMERROR; i++) {
        const char *n = dmarc_auth_name((enum dmarc_auth)i);
        assert_true(dmarc_auth_parse(n, strlen(n), &a));
        assert_int_equal(a, i);
    }
    assert_string_equal(dmarc_status_name(DMARC_STATUS_TEMPERROR), "temperror");
    assert_string_equal(dmarc_disposition_name(DMARC_DISP_QUARANTINE), "quarantine");
    assert_string_equal(dmarc_policy_name(DMARC_POLICY_UNSET), "");
    assert_string_equal(dmarc_policy_tag_name(DMARC_TAG_NP), "np");
    assert_string_equal(dmarc_from_name(DMARC_FROM_MANY_FIELDS), "multiple-from-fields");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_tags),
        cmocka_unit_test(test_record_defaults),
        cmocka_unit_test(test_record_table),
        cmocka_unit_test(test_record_values),
        cmocka_unit_test(test_record_uris),
        cmocka_unit_test(test_record_bounds),
        cmocka_unit_test(test_from_domain),
        cmocka_unit_test(test_alignment_table),
        cmocka_unit_test(test_discovery_at_from),
        cmocka_unit_test(test_discovery_falls_back_to_org),
        cmocka_unit_test(test_discovery_failures),
        cmocka_unit_test(test_discovery_long_records),
        cmocka_unit_test(test_evaluate_alignment),
        cmocka_unit_test(test_evaluate_many_dkim),
        cmocka_unit_test(test_evaluate_policy_selection),
        cmocka_unit_test(test_evaluate_np),
        cmocka_unit_test(test_evaluate_pct),
        cmocka_unit_test(test_evaluate_statuses),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
