/*
 * test_authres - unit tests of src/smtp/authres.c: Authentication-Results
 * composition (RFC 8601 §2.2: the fields, "none", quoting of values and
 * property values, escaped comments, folding at 78 octets with CRLF, bounds
 * and invalid inputs), Received-SPF (RFC 7208 §9.1), and the reader: the
 * authserv-id with comments, quoted strings and a version, resinfos with
 * reasons and properties, malformed values, and round trips of composed
 * fields.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/authres.h"

/* Every line of a composed field ends in CRLF, is at most max octets, and
   every line but the first starts with white space. */
static void check_lines(const char *field, size_t max)
{
    const char *p = field;
    bool first = true;
    while (*p) {
        const char *crlf = strstr(p, "\r\n");
        assert_non_null(crlf);
        size_t n = (size_t)(crlf - p);
        if (n > max)
            fail_msg("line of %zu octets: %.*s", n, (int)n, p);
        if (!first)
            assert_true(p[0] == '\t' || p[0] == ' ');
        assert_null(memchr(p, '\n', n));
        assert_null(memchr(p, '\r', n));
        first = false;
        p = crlf + 2;
    }
}

static void test_compose_example(void **state)
{
    (void)state;
    struct authres_result r[3] = {
        {.method = "spf",
         .result = "pass",
         .nprops = 1,
         .props = {{"smtp", "mailfrom", "example.org"}}},
        {.method = "dkim",
         .result = "pass",
         .nprops = 4,
         .props = {{"header", "d", "example.org"},
                   {"header", "s", "sel"},
                   {"header", "a", "rsa-sha256"},
                   {"header", "b", "abcdefgh"}}},
        {.method = "dmarc",
         .result = "pass",
         .nprops = 1,
         .props = {{"header", "from", "example.org"}},
         .comment = "p=reject dis=none"},
    };
    char out[1024];
    long n = authres_compose("mx.example.net", r, 3, out, sizeof out);
    const char *want = "Authentication-Results: mx.example.net;\r\n"
                       "\tspf=pass smtp.mailfrom=example.org;\r\n"
                       "\tdkim=pass header.d=example.org header.s=sel header.a=rsa-sha256\r\n"
                       "\theader.b=abcdefgh;\r\n"
                       "\tdmarc=pass header.from=example.org (p=reject dis=none)\r\n";
    assert_string_equal(out, want);
    assert_int_equal(n, (long)strlen(want));
    check_lines(out, 78);
}

static void test_compose_none(void **state)
{
    (void)state;
    char out[128];
    long n = authres_compose("mx.example.net", NULL, 0, out, sizeof out);
    assert_string_equal(out, "Authentication-Results: mx.example.net; none\r\n");
    assert_int_equal(n, (long)strlen(out));
}

static void test_compose_quoting(void **state)
{
    (void)state;
    static const struct {
        const char *value; /* a property value */
        const char *want;  /* as written */
    } cases[] = {
        {"example.org", "example.org"},
        {"user@example.org", "user@example.org"},
        {"@example.org", "@example.org"},
        {"first.last+tag@mail.example.org", "first.last+tag@mail.example.org"},
        {"\"odd local\"@example.org", "\"\\\"odd local\\\"@example.org\""},
        {"a@b@example.org", "\"a@b@example.org\""},
        {"ab/cd+ef=", "\"ab/cd+ef=\""},
        {"AbCd1234", "AbCd1234"},
        {"", "\"\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"with space", "\"with space\""},
        {"semi;colon", "\"semi;colon\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct authres_result r = {.method = "dkim",
                                   .result = "pass",
                                   .nprops = 1,
                                   .props = {{"header", "b", cases[i].value}}};
        char out[512], want[512];
        assert_true(authres_compose("mx", &r, 1, out, sizeof out) > 0);
        snprintf(want, sizeof want, "Authentication-Results: mx;\r\n\tdkim=pass header.b=%s\r\n",
                 cases[i].want);
        if (strcmp(out, want) != 0)
            fail_msg("case %zu: got %s want %s", i, out, want);
    }
    /* reason and authserv-id are values: token or quoted-string */
    struct authres_result r = {.method = "dkim", .result = "fail", .reason = "bad signature"};
    char out[256];
    assert_true(authres_compose("mx example", &r, 1, out, sizeof out) > 0);
    assert_string_equal(out, "Authentication-Results: \"mx example\";\r\n\tdkim=fail reason=\"bad "
                             "signature\"\r\n");
    r.reason = "timeout";
    assert_true(authres_compose("mx.example.net", &r, 1, out, sizeof out) > 0);
    assert_string_equal(out, "Authentication-Results: mx.example.net;\r\n\tdkim=fail "
                             "reason=timeout\r\n");
    /* a comment's parentheses and backslashes are escaped */
    struct authres_result c = {.method = "spf", .result = "none", .comment = "a (b) \\ c"};
    assert_true(authres_compose("mx", &c, 1, out, sizeof out) > 0);
    assert_string_equal(out, "Authentication-Results: mx;\r\n\tspf=none (a \\(b\\) \\\\ c)\r\n");
}

static void test_compose_folding(void **state)
{
    (void)state;
    char d[64];
    memset(d, 'a', 50);
    memcpy(d + 50, ".example.org", 13);
    struct authres_result r[4];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++) {
        r[i].method = i % 2 ? "dkim" : "spf";
        r[i].result = "pass";
        r[i].nprops = 3;
        r[i].props[0] = (struct authres_prop){"header", "d", d};
        r[i].props[1] = (struct authres_prop){"header", "i", "@mail.example.org"};
        r[i].props[2] = (struct authres_prop){"smtp", "mailfrom", d};
        r[i].comment = "a comment that is long enough to need folding on its own line too";
    }
    char out[4096];
    long n = authres_compose("mx.example.net", r, 4, out, sizeof out);
    assert_true(n > 0);
    check_lines(out, 78);
    /* an unbreakable word longer than a line stays whole, under 998 */
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct authres_result b = {
        .method = "dkim", .result = "pass", .nprops = 1, .props = {{"header", "b", big}}};
    assert_true(authres_compose("mx", &b, 1, out, sizeof out) > 0);
    check_lines(out, 998);
    assert_non_null(strstr(out, big));
    char huge[1100];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    b.props[0].value = huge;
    assert_int_equal(authres_compose("mx", &b, 1, out, sizeof out), -1);
    assert_string_equal(out, "");
}

static void test_compose_invalid(void **state)
{
    (void)state;
    char out[512];
    struct authres_result ok = {.method = "spf", .result = "pass"};
    assert_true(authres_compose("mx", &ok, 1, out, sizeof out) > 0);
    assert_int_equal(authres_compose("", &ok, 1, out, sizeof out), -1);
    assert_int_equal(authres_compose(NULL, &ok, 1, out, sizeof out), -1);
    assert_int_equal(authres_compose("m\nx", &ok, 1, out, sizeof out), -1);
    struct authres_result bad[] = {
        {.method = "sp f", .result = "pass"},
        {.method = "spf", .result = ""},
        {.method = "spf", .result = "pass-"},
        {.method = NULL, .result = "pass"},
        {.method = "spf", .result = "pass", .nprops = 1, .props = {{"smtp.x", "mailfrom", "a"}}},
        {.method = "spf", .result = "pass", .nprops = 1, .props = {{"smtp", "", "a"}}},
        {.method = "spf", .result = "pass", .nprops = 1, .props = {{"smtp", "mailfrom", NULL}}},
        {.method = "spf", .result = "pass", .nprops = 1, .props = {{"smtp", "mailfrom", "a\r\nb"}}},
        {.method = "spf", .result = "pass", .reason = "x\001"},
        {.method = "spf", .result = "pass", .comment = "bell\007"},
        {.method = "spf", .result = "pass", .nprops = AUTHRES_MAX_PROPS + 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (authres_compose("mx", &bad[i], 1, out, sizeof out) != -1)
            fail_msg("case %zu was accepted: %s", i, out);
    /* every buffer too small fails, NUL-terminated */
    char full[512];
    long n = authres_compose("mx.example.net", &ok, 1, full, sizeof full);
    assert_true(n > 0);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        char small[512];
        memset(small, 'z', sizeof small);
        assert_int_equal(authres_compose("mx.example.net", &ok, 1, small, cap), -1);
        if (cap)
            assert_int_equal(small[0], '\0');
    }
    assert_int_equal(authres_compose("mx.example.net", &ok, 1, full, (size_t)n + 1), n);
}

static void test_received_spf(void **state)
{
    (void)state;
    struct received_spf r = {
        .result = "pass",
        .comment = "mybox.example.org: domain of myname@example.com designates 192.0.2.1 as "
                   "permitted sender",
        .receiver = "mybox.example.org",
        .client_ip = "192.0.2.1",
        .envelope_from = "myname@example.com",
        .helo = "foo.example.com",
    };
    char out[1024];
    long n = received_spf_compose(&r, out, sizeof out);
    assert_true(n > 0);
    assert_string_equal(
        out,
        "Received-SPF: pass (mybox.example.org: domain of myname@example.com designates\r\n"
        "\t192.0.2.1 as permitted sender) receiver=mybox.example.org;\r\n"
        "\tclient-ip=192.0.2.1; envelope-from=\"myname@example.com\"; helo=foo.example.com\r\n");
    check_lines(out, 78);
    struct received_spf r2 = {.result = "softfail",
                              .client_ip = "2001:db8::1",
                              .envelope_from = "",
                              .identity = "helo",
                              .problem = "a \"quoted\" word"};
    assert_true(received_spf_compose(&r2, out, sizeof out) > 0);
    assert_string_equal(out,
                        "Received-SPF: softfail client-ip=\"2001:db8::1\"; envelope-from=\"\";\r\n"
                        "\tidentity=helo; problem=\"a \\\"quoted\\\" word\"\r\n");
    struct received_spf bad = {.result = "pa ss"};
    assert_int_equal(received_spf_compose(&bad, out, sizeof out), -1);
    assert_int_equal(received_spf_compose(NULL, out, sizeof out), -1);
}

/* ---- reading ---- */

static void test_parse_table(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        enum authres_parse want;
        const char *id;        /* authserv-id as read ("" when malformed) */
        unsigned long version; /* authres-version */
        size_t nresults;
        bool ours; /* is it ours (mx.example.net)? */
    } cases[] = {
        {"mx.example.net; spf=pass smtp.mailfrom=example.org", AUTHRES_PARSE_OK, "mx.example.net",
         1, 1, true},
        {" MX.Example.NET 1; none", AUTHRES_PARSE_OK, "MX.Example.NET", 1, 0, true},
        {"mx.example.net 2; spf=pass", AUTHRES_PARSE_OK, "mx.example.net", 2, 1, true},
        {"mx.example.net (comment) 1 (again); none", AUTHRES_PARSE_OK, "mx.example.net", 1, 0,
         true},
        {"(lead (nested) comment) mx.example.net ; dkim=pass", AUTHRES_PARSE_OK, "mx.example.net",
         1, 1, true},
        {"\"mx.example.net\"; none", AUTHRES_PARSE_OK, "mx.example.net", 1, 0, true},
        {"\"mx.ex\\ample.net\"; none", AUTHRES_PARSE_OK, "mx.example.net", 1, 0, true},
        {"mx.example.net(c);none", AUTHRES_PARSE_OK, "mx.example.net", 1, 0, true},
        {"mx.example.net.evil.org; none", AUTHRES_PARSE_OK, "mx.example.net.evil.org", 1, 0, false},
        {"evil.org; spf=pass smtp.mailfrom=mx.example.net", AUTHRES_PARSE_OK, "evil.org", 1, 1,
         false},
        {"xmx.example.net; none", AUTHRES_PARSE_OK, "xmx.example.net", 1, 0, false},
        {"mx.example.net", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0, true},
        {"mx.example.net;", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0, true},
        {"mx.example.net; spf", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0, true},
        {"mx.example.net; spf=pass smtp.mailfrom", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0,
         true},
        {"mx.example.net; spf=pass smtp.mailfrom=", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0,
         true},
        {"mx.example.net; none; spf=pass", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0, true},
        {"mx.example.net x; none", AUTHRES_PARSE_ID_ONLY, "mx.example.net", 1, 0, true},
        {"mx.example.net; spf=pass;", AUTHRES_PARSE_OK, "mx.example.net", 1, 1, true},
        {"mx.example.net;\r\n\tspf=pass\r\n smtp.mailfrom=example.org;\r\n dkim=none",
         AUTHRES_PARSE_OK, "mx.example.net", 1, 2, true},
        {"mx.example.net; dkim/1=fail (bad) reason=\"bad sig\" header.d=x.org header.b=ab/cd+=",
         AUTHRES_PARSE_OK, "mx.example.net", 1, 1, true},
        {"mx.example.net; auth=pass smtp.auth=user@example.org", AUTHRES_PARSE_OK, "mx.example.net",
         1, 1, true},
        {"mx.example.net; spf=pass smtp.mailfrom=\"unterminated", AUTHRES_PARSE_ID_ONLY,
         "mx.example.net", 1, 0, true},
        {"(unterminated mx.example.net; none", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"((((((((((x)))))))))) mx.example.net; none", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"(((((((x))))))) mx.example.net; none", AUTHRES_PARSE_OK, "mx.example.net", 1, 0, true},
        {"", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"   ", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"; spf=pass", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"\"unterminated; none", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"\"\"; none", AUTHRES_PARSE_MALFORMED, "", 1, 0, false},
        {"mx.example.net 1234567890; none", AUTHRES_PARSE_MALFORMED, "mx.example.net", 1, 0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct authres_parsed p;
        const char *v = cases[i].v;
        enum authres_parse got = authres_parse(v, strlen(v), &p);
        bool ours = authres_is_ours(v, strlen(v), "mx.example.net");
        bool id_ok =
            cases[i].want == AUTHRES_PARSE_MALFORMED || strcmp(p.authserv_id, cases[i].id) == 0;
        if (got != cases[i].want || !id_ok || p.version != cases[i].version ||
            p.nresults != cases[i].nresults || ours != cases[i].ours)
            fail_msg("case %zu \"%s\": got %d id=\"%s\" version=%lu n=%zu ours=%d", i, v, got,
                     p.authserv_id, p.version, p.nresults, ours);
    }
    assert_false(authres_is_ours("mx; none", 8, ""));
    assert_false(authres_is_ours("mx; none", 8, NULL));
    assert_false(authres_is_ours(NULL, 0, "mx"));
}

static void test_parse_fields(void **state)
{
    (void)state;
    const char *v = "mx.example.net; SPF=Pass smtp.MailFrom=a@example.org; "
                    "dkim/1=fail (bad) reason=\"bad \\\"sig\\\"\" header.d=x.org header.b=ab/cd+=;"
                    " dmarc=pass (p=reject) header.from=\"example.org\"";
    struct authres_parsed p;
    assert_int_equal(authres_parse(v, strlen(v), &p), AUTHRES_PARSE_OK);
    assert_int_equal(p.nresults, 3);
    assert_string_equal(p.results[0].method, "spf");
    assert_string_equal(p.results[0].result, "pass");
    assert_int_equal(p.results[0].nprops, 1);
    assert_string_equal(p.results[0].props[0].ptype, "smtp");
    assert_string_equal(p.results[0].props[0].property, "mailfrom");
    assert_string_equal(p.results[0].props[0].value, "a@example.org");
    assert_string_equal(p.results[1].method, "dkim");
    assert_string_equal(p.results[1].result, "fail");
    assert_string_equal(p.results[1].reason, "bad \"sig\"");
    assert_int_equal(p.results[1].nprops, 2);
    assert_string_equal(p.results[1].props[1].value, "ab/cd+=");
    assert_string_equal(p.results[2].props[0].value, "example.org");
    /* bounds: results and properties past the arrays are counted */
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof many, "mx");
    for (int i = 0; i < AUTHRES_PARSE_MAX + 3; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "; spf=pass");
    assert_int_equal(authres_parse(many, n, &p), AUTHRES_PARSE_OK);
    assert_int_equal(p.nresults, AUTHRES_PARSE_MAX);
    assert_int_equal(p.results_dropped, 3);
    n = (size_t)snprintf(many, sizeof many, "mx; dkim=pass");
    for (int i = 0; i < AUTHRES_PARSE_PROPS + 2; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, " header.d=x%d.org", i);
    assert_int_equal(authres_parse(many, n, &p), AUTHRES_PARSE_OK);
    assert_int_equal(p.results[0].nprops, AUTHRES_PARSE_PROPS);
    assert_int_equal(p.results[0].props_dropped, 2);
    /* too long a word or value */
    char longid[AUTHRES_VALUE_MAX + 20];
    memset(longid, 'a', sizeof longid);
    assert_int_equal(authres_parse(longid, sizeof longid, &p), AUTHRES_PARSE_MALFORMED);
    assert_false(authres_is_ours(longid, sizeof longid, "a"));
}

static void test_round_trip(void **state)
{
    (void)state;
    struct authres_result r[3] = {
        {.method = "spf",
         .result = "softfail",
         .nprops = 1,
         .props = {{"smtp", "mailfrom", "\"odd one\"@example.org"}},
         .comment = "x (y) z"},
        {.method = "dkim",
         .result = "pass",
         .reason = "fine; really",
         .nprops = 2,
         .props = {{"header", "d", "example.org"}, {"header", "b", "ab/c+d=="}}},
        {.method = "dmarc",
         .result = "fail",
         .nprops = 1,
         .props = {{"header", "from", "example.org"}},
         .comment = "p=reject dis=quarantine"},
    };
    char out[2048];
    long n = authres_compose("\"mx (id)\"", r, 3, out, sizeof out);
    assert_true(n > 0);
    check_lines(out, 78);
    const char *value = out + strlen("Authentication-Results:");
    struct authres_parsed p;
    assert_int_equal(authres_parse(value, strlen(value), &p), AUTHRES_PARSE_OK);
    assert_string_equal(p.authserv_id, "\"mx (id)\"");
    assert_true(authres_is_ours(value, strlen(value), "\"MX (ID)\""));
    assert_int_equal(p.nresults, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(p.results[i].method, r[i].method);
        assert_string_equal(p.results[i].result, r[i].result);
        assert_string_equal(p.results[i].reason, r[i].reason ? r[i].reason : "");
        assert_int_equal(p.results[i].nprops, r[i].nprops);
        for (size_t k = 0; k < r[i].nprops; k++) {
            assert_string_equal(p.results[i].props[k].ptype, r[i].props[k].ptype);
            assert_string_equal(p.results[i].props[k].property, r[i].props[k].property);
            assert_string_equal(p.results[i].props[k].value, r[i].props[k].value);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compose_example), cmocka_unit_test(test_compose_none),
        cmocka_unit_test(test_compose_quoting), cmocka_unit_test(test_compose_folding),
        cmocka_unit_test(test_compose_invalid), cmocka_unit_test(test_received_spf),
        cmocka_unit_test(test_parse_table),     cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
