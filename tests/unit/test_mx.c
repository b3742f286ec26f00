/*
 * test_mx - unit tests of the pure half of dns/ (src/dns/mx.c): names on the
 * wire, MX and address rdata (well-formed and malformed), host name syntax,
 * MX ordering with a fixed random source, null MX (RFC 7505), duplicates
 * and bounds, address lists and the helpers of dns.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "dns/mx.h"

/* Encode "pref name" as MX rdata (name in text, "." for the root) into out;
   returns its length. */
static size_t mx_rdata(uint8_t *out, uint16_t pref, const char *name)
{
    size_t n = 0;
    out[n++] = (uint8_t)(pref >> 8);
    out[n++] = (uint8_t)pref;
    if (strcmp(name, ".") != 0) {
        const char *s = name;
        while (*s) {
            const char *dot = strchr(s, '.');
            size_t l = dot ? (size_t)(dot - s) : strlen(s);
            out[n++] = (uint8_t)l;
            memcpy(out + n, s, l);
            n += l;
            s += l + (dot ? 1 : 0);
        }
    }
    out[n++] = 0;
    return n;
}

static void add_mx(struct mx_list *l, uint16_t pref, const char *name)
{
    uint8_t buf[600];
    mx_list_add(l, buf, mx_rdata(buf, pref, name));
}

/* A fixed random source: returns the values of seq in turn, cycling. */
struct seq {
    const uint32_t *v;
    size_t n, i;
};

static uint32_t seq_next(void *arg)
{
    struct seq *s = arg;
    uint32_t x = s->v[s->i % s->n];
    s->i++;
    return x;
}

static void test_name_from_wire(void **state)
{
    (void)state;
    static const struct {
        const char *wire; /* octets as a C string literal, length given */
        size_t len;
        bool ok;
        const char *text;
    } cases[] = {
        {"\0", 1, true, ""},
        {"\3com\0", 5, true, "com"},
        {"\7EXAMPLE\3Org\0", 13, true, "example.org"},
        {"\2mx\7example\4test\0", 17, true, "mx.example.test"},
        {"", 0, false, ""},              /* empty */
        {"\3com", 4, false, ""},         /* no root label */
        {"\5com\0", 5, false, ""},       /* label past the end */
        {"\3com\0\0", 6, false, ""},     /* octets after the root */
        {"\xc0\x0c", 2, false, ""},      /* compression pointer */
        {"\3www\xc0\x0c", 6, false, ""}, /* pointer after a label */
        {"\x40"
         "a",
         2, false, ""},            /* label type 01 (reserved) */
        {"\3a.b\0", 5, false, ""}, /* a dot inside a label */
        {"\3a b\0", 5, false, ""}, /* a space */
        {"\3a\x01"
         "b\0",
         5, false, ""}, /* a control character */
        {"\3a\xff"
         "b\0",
         5, false, ""}, /* a non-ASCII octet */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[DNS_NAME_MAX + 1];
        bool ok = dns_name_from_wire((const uint8_t *)cases[i].wire, cases[i].len, out);
        if (ok != cases[i].ok)
            fail_msg("case %zu: got %d", i, ok);
        if (ok)
            assert_string_equal(out, cases[i].text);
    }
}

static void test_name_lengths(void **state)
{
    (void)state;
    uint8_t wire[300];
    char out[DNS_NAME_MAX + 1];
    /* a 63-octet label is fine, 64 is not */
    wire[0] = 63;
    memset(wire + 1, 'a', 63);
    wire[64] = 0;
    assert_true(dns_name_from_wire(wire, 65, out));
    assert_int_equal(strlen(out), 63);
    wire[0] = 64;
    memset(wire + 1, 'a', 64);
    wire[65] = 0;
    assert_false(dns_name_from_wire(wire, 66, out));
    /* 255 octets on the wire (253 in text) is the longest name */
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        wire[n++] = 63;
        memset(wire + n, 'b', 63);
        n += 63;
    }
    wire[n++] = 61;
    memset(wire + n, 'c', 61);
    n += 61;
    wire[n++] = 0;
    assert_int_equal(n, 255);
    assert_true(dns_name_from_wire(wire, n, out));
    assert_int_equal(strlen(out), 253);
    /* one more octet is too long */
    wire[n - 1 - 61 - 1] = 62;
    memmove(wire + n - 61, wire + n - 62, 62);
    wire[n - 1] = 'c';
    wire[n] = 0;
    assert_false(dns_name_from_wire(wire, n + 1, out));
}

static void test_host_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool ok;
    } cases[] = {
        {"mx.example.org", true},
        {"MX1.Example.ORG", true},
        {"a-b.example", true},
        {"1mx.example.com", true},
        {"xn--bcher-kva.example", true},
        {"localhost", false}, /* one label */
        {"", false},
        {"example.", false}, /* trailing dot: callers strip it */
        {".example", false},
        {"a..example", false},
        {"-a.example", false},
        {"a-.example", false},
        {"a_b.example", false},
        {"192.0.2.1", false}, /* last label all digits */
        {"mx.example.123", false},
        {"mx example.org", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (dns_host_name_valid(cases[i].name) != cases[i].ok)
            fail_msg("%s: expected %d", cases[i].name, cases[i].ok);
    char big[300];
    memset(big, 'a', 63);
    big[63] = '\0';
    strcat(big, ".example");
    assert_true(dns_host_name_valid(big));
    big[0] = '\0';
    memset(big, 'a', 64);
    big[64] = '\0';
    strcat(big, ".example");
    assert_false(dns_host_name_valid(big));

    char out[DNS_NAME_MAX + 1];
    assert_true(dns_name_normalize("Example.ORG.", out));
    assert_string_equal(out, "example.org");
    assert_false(dns_name_normalize("example.org..", out));
    assert_false(dns_name_normalize(".", out));
    assert_false(dns_name_normalize("[192.0.2.1]", out));
}

static void test_mx_rdata(void **state)
{
    (void)state;
    uint8_t buf[600];
    uint16_t pref = 1;
    char name[DNS_NAME_MAX + 1];
    size_t n = mx_rdata(buf, 10, "MX1.Example.Test");
    assert_true(mx_rdata_parse(buf, n, &pref, name));
    assert_int_equal(pref, 10);
    assert_string_equal(name, "mx1.example.test");
    n = mx_rdata(buf, 0, ".");
    assert_true(mx_rdata_parse(buf, n, &pref, name));
    assert_int_equal(pref, 0);
    assert_string_equal(name, "");
    n = mx_rdata(buf, 65535, "a.b");
    assert_true(mx_rdata_parse(buf, n, &pref, name));
    assert_int_equal(pref, 65535);
    /* truncated: every shorter prefix fails */
    n = mx_rdata(buf, 5, "mx.example.test");
    for (size_t k = 0; k < n; k++)
        if (mx_rdata_parse(buf, k, &pref, name))
            fail_msg("prefix of %zu octets parsed", k);
    /* trailing garbage */
    buf[n] = 0;
    assert_false(mx_rdata_parse(buf, n + 1, &pref, name));
    /* compression pointer instead of the name */
    const uint8_t ptr[] = {0, 10, 0xc0, 0x0c};
    assert_false(mx_rdata_parse(ptr, sizeof ptr, &pref, name));
    /* a label length past the end */
    const uint8_t bad[] = {0, 10, 9, 'a', 'b', 0};
    assert_false(mx_rdata_parse(bad, sizeof bad, &pref, name));
}

static void test_addr_rdata(void **state)
{
    (void)state;
    struct dns_addr a;
    const uint8_t v4[4] = {192, 0, 2, 1};
    uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    v6[15] = 1;
    char text[64];
    assert_true(dns_rdata_addr(AF_INET, v4, 4, &a));
    dns_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "192.0.2.1");
    assert_true(dns_rdata_addr(AF_INET6, v6, 16, &a));
    dns_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "2001:db8::1");
    assert_false(dns_rdata_addr(AF_INET, v4, 3, &a));
    assert_false(dns_rdata_addr(AF_INET, v6, 16, &a));
    assert_false(dns_rdata_addr(AF_INET6, v6, 15, &a));
    assert_false(dns_rdata_addr(AF_INET6, v4, 4, &a));
    assert_false(dns_rdata_addr(AF_UNIX, v4, 4, &a));
    assert_false(dns_rdata_addr(AF_INET, v4, 0, &a));

    struct sockaddr_storage ss;
    assert_true(dns_rdata_addr(AF_INET, v4, 4, &a));
    assert_int_equal(dns_addr_sockaddr(&a, 2525, &ss), sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2525);
    assert_true(dns_rdata_addr(AF_INET6, v6, 16, &a));
    assert_int_equal(dns_addr_sockaddr(&a, 25, &ss), sizeof(struct sockaddr_in6));
    a.family = 0;
    assert_int_equal(dns_addr_sockaddr(&a, 25, &ss), 0);

    static const struct {
        const char *s;
        int family;
    } lits[] = {
        {"192.0.2.1", AF_INET},    {"[192.0.2.1]", AF_INET},
        {"2001:db8::1", AF_INET6}, {"[IPv6:2001:db8::1]", AF_INET6},
        {"[ipv6:::1]", AF_INET6},  {"mx.example", 0},
        {"[mx.example]", 0},       {"192.0.2", 0},
        {"[192.0.2.1", 0},         {"", 0},
    };
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        bool ok = dns_addr_parse(lits[i].s, &a);
        if (ok != (lits[i].family != 0) || (ok && a.family != lits[i].family))
            fail_msg("%s: parsed %d family %d", lits[i].s, ok, a.family);
    }
}

/* The hosts of l as "pref name,pref name". */
static void hosts_text(const struct mx_list *l, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->n && o < outlen; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%s%u %s", i ? "," : "",
                              (unsigned)l->v[i].preference, l->v[i].name);
}

static void test_mx_order(void **state)
{
    (void)state;
    static const uint32_t zero[] = {0};
    static const struct {
        const char *in; /* "pref name;pref name" */
        const char *out;
        enum mx_verdict verdict;
    } cases[] = {
        {"10 a.test;20 b.test", "10 a.test,20 b.test", MX_HOSTS},
        {"20 b.test;10 a.test", "10 a.test,20 b.test", MX_HOSTS},
        {"30 c.test;10 a.test;20 b.test;5 z.test", "5 z.test,10 a.test,20 b.test,30 c.test",
         MX_HOSTS},
        /* duplicates: one host, the lower preference */
        {"20 a.test;10 a.test;10 A.TEST", "10 a.test", MX_HOSTS},
        /* null MX */
        {"0 .", "", MX_NULL},
        {"10 .", "", MX_NULL},
        {"0 .;0 .", "", MX_NULL},
        /* a "." among real hosts is ignored */
        {"0 .;10 mx.test", "10 mx.test", MX_HOSTS},
        /* invalid names are skipped */
        {"10 bad_name.test;20 ok.test", "20 ok.test", MX_HOSTS},
        {"10 bad_name.test", "", MX_UNUSABLE},
        {"10 192.0.2.1", "", MX_UNUSABLE},
        {"10 localhost", "", MX_UNUSABLE},
        {"", "", MX_EMPTY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mx_list l;
        mx_list_init(&l);
        char in[256];
        snprintf(in, sizeof in, "%s", cases[i].in);
        for (char *save = NULL, *tok = strtok_r(in, ";", &save); tok;
             tok = strtok_r(NULL, ";", &save)) {
            unsigned pref;
            char name[200];
            if (sscanf(tok, "%u %199s", &pref, name) != 2)
                fail_msg("bad case %s", tok);
            add_mx(&l, (uint16_t)pref, name);
        }
        struct seq s = {zero, 1, 0};
        enum mx_verdict v = mx_list_finish(&l, seq_next, &s);
        char out[512];
        hosts_text(&l, out, sizeof out);
        if (v != cases[i].verdict || strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu (%s): verdict %d hosts \"%s\"", i, cases[i].in, v, out);
    }
}

static void test_mx_malformed(void **state)
{
    (void)state;
    struct mx_list l;
    mx_list_init(&l);
    const uint8_t ptr[] = {0, 10, 0xc0, 0x0c};
    mx_list_add(&l, ptr, sizeof ptr);
    mx_list_add(&l, ptr, 1);
    assert_int_equal(mx_list_finish(&l, NULL, NULL), MX_MALFORMED);
    assert_int_equal(l.malformed, 2);
    assert_int_equal(l.records, 2);
    /* a malformed record next to a good one: the good one is used */
    mx_list_init(&l);
    mx_list_add(&l, ptr, sizeof ptr);
    add_mx(&l, 10, "mx.test");
    assert_int_equal(mx_list_finish(&l, NULL, NULL), MX_HOSTS);
    assert_int_equal(l.n, 1);
    /* a malformed record next to a null MX: still a null MX */
    mx_list_init(&l);
    mx_list_add(&l, ptr, sizeof ptr);
    add_mx(&l, 0, ".");
    assert_int_equal(mx_list_finish(&l, NULL, NULL), MX_NULL);
}

/* Equal preferences are shuffled with the random source, and only among
   themselves. */
static void test_mx_shuffle(void **state)
{
    (void)state;
    static const struct {
        uint32_t rnd[4];
        const char *out;
    } cases[] = {
        /* Fisher-Yates over the run "a b c" of preference 10: i=3 swaps
           slot 2 with k = rnd%3, then i=2 swaps slot 1 with k = rnd%2 */
        {{2, 1, 0, 0}, "5 first.test,10 a.test,10 b.test,10 c.test,20 last.test"},
        {{0, 0, 0, 0}, "5 first.test,10 b.test,10 c.test,10 a.test,20 last.test"},
        {{1, 0, 0, 0}, "5 first.test,10 c.test,10 a.test,10 b.test,20 last.test"},
        {{2, 0, 0, 0}, "5 first.test,10 b.test,10 a.test,10 c.test,20 last.test"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mx_list l;
        mx_list_init(&l);
        add_mx(&l, 10, "a.test");
        add_mx(&l, 20, "last.test");
        add_mx(&l, 10, "b.test");
        add_mx(&l, 5, "first.test");
        add_mx(&l, 10, "c.test");
        struct seq s = {cases[i].rnd, 4, 0};
        assert_int_equal(mx_list_finish(&l, seq_next, &s), MX_HOSTS);
        char out[512];
        hosts_text(&l, out, sizeof out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: %s", i, out);
    }
    /* without a random source the answer order is kept */
    struct mx_list l;
    mx_list_init(&l);
    add_mx(&l, 10, "b.test");
    add_mx(&l, 10, "a.test");
    assert_int_equal(mx_list_finish(&l, NULL, NULL), MX_HOSTS);
    assert_string_equal(l.v[0].name, "b.test");
    /* every order of two equal hosts is reachable */
    bool seen[2] = {false, false};
    for (uint32_t r = 0; r < 4; r++) {
        mx_list_init(&l);
        add_mx(&l, 10, "a.test");
        add_mx(&l, 10, "b.test");
        struct seq s = {&r, 1, 0};
        mx_list_finish(&l, seq_next, &s);
        seen[strcmp(l.v[0].name, "a.test") == 0] = true;
    }
    assert_true(seen[0] && seen[1]);
}

static void test_mx_bounds(void **state)
{
    (void)state;
    struct mx_list l;
    mx_list_init(&l);
    /* 40 hosts of preferences 40..1: the 32 lowest are kept */
    for (unsigned i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "mx%u.test", 40 - i);
        add_mx(&l, (uint16_t)(40 - i), name);
    }
    assert_int_equal(mx_list_finish(&l, NULL, NULL), MX_HOSTS);
    assert_int_equal(l.n, DNS_MAX_HOSTS);
    assert_int_equal(l.dropped, 8);
    for (size_t i = 0; i < l.n; i++) {
        assert_int_equal(l.v[i].preference, i + 1);
        char name[32];
        snprintf(name, sizeof name, "mx%zu.test", i + 1);
        assert_string_equal(l.v[i].name, name);
    }
    /* a full list keeps its hosts against higher preferences */
    mx_list_init(&l);
    for (unsigned i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "h%u.test", i);
        add_mx(&l, (uint16_t)(i < DNS_MAX_HOSTS ? 1 : 2), name);
    }
    mx_list_finish(&l, NULL, NULL);
    assert_int_equal(l.n, DNS_MAX_HOSTS);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.v[i].preference, 1);
}

static void test_addr_lists(void **state)
{
    (void)state;
    struct dns_addr_list v4, v6;
    dns_addr_list_init(&v4);
    dns_addr_list_init(&v6);
    for (uint8_t i = 0; i < 12; i++) {
        uint8_t a[4] = {192, 0, 2, i};
        dns_addr_list_add(&v4, AF_INET, a, 4);
        dns_addr_list_add(&v4, AF_INET, a, 4); /* duplicate */
    }
    assert_int_equal(v4.n, DNS_MAX_ADDRS_PER_FAMILY);
    assert_int_equal(v4.dropped, 8); /* the 4 past the bound, twice each */
    uint8_t six[16] = {0x20, 0x01, 0x0d, 0xb8};
    dns_addr_list_add(&v6, AF_INET6, six, 16);
    dns_addr_list_add(&v6, AF_INET6, six, 15); /* malformed */
    dns_addr_list_add(&v6, AF_INET, six, 4);   /* wrong family is still A rdata */
    assert_int_equal(v6.malformed, 1);

    struct dns_host h;
    memset(&h, 0, sizeof h);
    assert_int_equal(dns_host_set_addrs(&h, &v6, &v4), 2 + DNS_MAX_ADDRS_PER_FAMILY);
    assert_int_equal(h.addrs[0].family, AF_INET6);
    assert_int_equal(h.addrs[1].family, AF_INET);
    assert_int_equal(h.addrs[2].family, AF_INET);
    assert_int_equal(dns_host_set_addrs(&h, &v4, &v6), 2 + DNS_MAX_ADDRS_PER_FAMILY);
    assert_int_equal(h.addrs[0].family, AF_INET);
    assert_int_equal(h.addrs[0].bytes[3], 0);
    assert_int_equal(h.addrs[DNS_MAX_ADDRS_PER_FAMILY].family, AF_INET6);
    assert_int_equal(dns_host_set_addrs(&h, NULL, NULL), 0);
}

static void test_status(void **state)
{
    (void)state;
    assert_string_equal(dns_status_name(DNS_NULL_MX), "null-mx");
    assert_string_equal(dns_status_dsn(DNS_NULL_MX), "5.1.10");
    assert_string_equal(dns_status_dsn(DNS_NXDOMAIN), "5.1.2");
    assert_string_equal(dns_status_dsn(DNS_NO_ADDRESS), "5.4.4");
    assert_string_equal(dns_status_dsn(DNS_TEMPFAIL), "4.4.3");
    assert_true(dns_status_temporary(DNS_TEMPFAIL));
    assert_false(dns_status_temporary(DNS_NXDOMAIN));
    assert_false(dns_status_temporary(DNS_NULL_MX));
    assert_false(dns_status_temporary(DNS_NO_ADDRESS));
    assert_false(dns_status_temporary(DNS_OK));
}

static void test_txt_join(void **state)
{
    (void)state;
    char out[16];
    /* two character-strings, joined without a separator */
    static const uint8_t two[] = {3, 'a', 'b', 'c', 2, 'd', 'e'};
    assert_int_equal(dns_txt_join(two, sizeof two, out, sizeof out), 5);
    assert_string_equal(out, "abcde");
    /* an empty string and no string at all */
    static const uint8_t empty[] = {0};
    assert_int_equal(dns_txt_join(empty, sizeof empty, out, sizeof out), 0);
    assert_int_equal(dns_txt_join(empty, 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* a length past the rdata */
    static const uint8_t past[] = {4, 'a', 'b'};
    assert_int_equal(dns_txt_join(past, sizeof past, out, sizeof out), -1);
    /* a NUL octet inside */
    static const uint8_t nul[] = {3, 'a', 0, 'b'};
    assert_int_equal(dns_txt_join(nul, sizeof nul, out, sizeof out), -1);
    /* exactly fits (15 octets and the NUL), one more does not */
    uint8_t fit[16] = {15};
    memset(fit + 1, 'x', 15);
    assert_int_equal(dns_txt_join(fit, sizeof fit, out, sizeof out), 15);
    fit[0] = 14;
    uint8_t over[18] = {15};
    memset(over + 1, 'x', 15);
    over[16] = 1;
    over[17] = 'y';
    assert_int_equal(dns_txt_join(over, sizeof over, out, sizeof out), -1);
    assert_int_equal(dns_txt_join(two, sizeof two, out, 0), -1);
}

static void test_query_names(void **state)
{
    (void)state;
    char out[DNS_NAME_MAX + 1];
    assert_true(dns_query_name_normalize("Sel._DomainKey.Example.ORG.", out));
    assert_string_equal(out, "sel._domainkey.example.org");
    assert_true(dns_query_name_normalize("a+b=c.example", out));
    assert_string_equal(out, "a+b=c.example");
    assert_false(dns_query_name_normalize("", out));
    assert_false(dns_query_name_normalize(".", out));
    assert_false(dns_query_name_normalize("a..b", out));
    assert_false(dns_query_name_normalize(".a", out));
    assert_false(dns_query_name_normalize("a.b..", out)); /* one trailing dot only */
    assert_false(dns_query_name_normalize("..", out));
    assert_false(dns_query_name_normalize("a b.example", out));
    assert_false(dns_query_name_normalize("a\tb.example", out));
    char label[70];
    memset(label, 'l', 63);
    strcpy(label + 63, ".x");
    assert_true(dns_query_name_normalize(label, out));
    label[63] = 'l';
    strcpy(label + 64, ".x");
    assert_false(dns_query_name_normalize(label, out));
    char longname[300];
    for (size_t i = 0; i < 127; i++)
        memcpy(longname + 2 * i, "a.", 2);
    longname[253] = '\0'; /* 253 octets: "a.a. ... a" */
    assert_true(dns_query_name_normalize(longname, out));
    longname[253] = 'a';
    longname[254] = '\0';
    assert_false(dns_query_name_normalize(longname, out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_from_wire), cmocka_unit_test(test_name_lengths),
        cmocka_unit_test(test_host_names),     cmocka_unit_test(test_mx_rdata),
        cmocka_unit_test(test_addr_rdata),     cmocka_unit_test(test_mx_order),
        cmocka_unit_test(test_mx_malformed),   cmocka_unit_test(test_mx_shuffle),
        cmocka_unit_test(test_mx_bounds),      cmocka_unit_test(test_addr_lists),
        cmocka_unit_test(test_status),         cmocka_unit_test(test_txt_join),
        cmocka_unit_test(test_query_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
