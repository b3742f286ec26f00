/*
 * test_transport - unit tests of the transport file, the relayhost value and
 * the relayhost credentials file (config/transport.h): next-hop syntax (smtp
 * with and without brackets, ports, IP literals, lmtp on unix sockets and
 * TCP, maildir) and its errors; table parsing with lines in errors and
 * duplicates; lookups (exact first, then the closest ".parent" / "*.parent",
 * then "*", any case); credentials lines; and the mode check of the file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/transport.h"

struct hop_case {
    const char *in;
    bool with_kind;
    int rc;            /* 0 or -1 */
    const char *fmt;   /* transport_route_format() of the result when rc == 0 */
    bool mx;           /* expected mx */
    const char *error; /* a part of the message when rc == -1 */
};

static const struct hop_case hops[] = {
    {"smtp:[mail.example.com]:587", true, 0, "smtp:[mail.example.com]:587", false, NULL},
    {"smtp:Relay.Example.NET", true, 0, "smtp:relay.example.net", true, NULL},
    {"smtp:relay.example.net:2525", true, 0, "smtp:relay.example.net:2525", true, NULL},
    {"SMTP:[10.0.0.5]", true, 0, "smtp:[10.0.0.5]", false, NULL},
    {"smtp:[2001:db8::1]:25", true, 0, "smtp:[2001:db8::1]:25", false, NULL},
    {"smtp:192.0.2.1:25", true, 0, "smtp:[192.0.2.1]:25", false, NULL}, /* no MX for an address */
    {"lmtp:unix:/run/dovecot/lmtp", true, 0, "lmtp:unix:/run/dovecot/lmtp", false, NULL},
    {"lmtp:[127.0.0.1]:2424", true, 0, "lmtp:[127.0.0.1]:2424", false, NULL},
    {"lmtp:dovecot.internal", true, 0, "lmtp:[dovecot.internal]:24", false, NULL},
    {"maildir", true, 0, "maildir", false, NULL},
    {"[smarthost.example]:587", false, 0, "smtp:[smarthost.example]:587", false, NULL},
    {"smarthost.example", false, 0, "smtp:smarthost.example", true, NULL},
    {"smtp:", true, -1, NULL, false, "expected smtp:"},
    {"smtp:[host.example", true, -1, NULL, false, "missing ']'"},
    {"smtp:[]:25", true, -1, NULL, false, "no host name"},
    {"smtp:[a.example]:0", true, -1, NULL, false, "bad port"},
    {"smtp:[a.example]:65536", true, -1, NULL, false, "bad port"},
    {"smtp:[a.example]25", true, -1, NULL, false, "bad port"},
    {"smtp:a.example:x", true, -1, NULL, false, "bad port"},
    {"smtp:2001:db8::1", true, -1, NULL, false, "IPv6 address needs brackets"},
    {"smtp:bad_host!", true, -1, NULL, false, "not a host name"},
    {"lmtp:unix:run/lmtp", true, -1, NULL, false, "must be absolute"},
    {"uucp:host", true, -1, NULL, false, "expected smtp:"},
    {"smtp:[a.example]:25", false, -1, NULL, false, "without a prefix"},
};

static void test_nexthops(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof hops / sizeof hops[0]; i++) {
        const struct hop_case *c = &hops[i];
        struct route r;
        char err[300] = "", fmt[400];
        int rc = transport_parse_nexthop(c->in, strlen(c->in), c->with_kind, &r, err, sizeof err);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d (%s)", c->in, rc, c->rc, err);
        if (rc == 0) {
            transport_route_format(&r, fmt, sizeof fmt);
            if (strcmp(fmt, c->fmt) != 0 || r.mx != c->mx)
                fail_msg("%s: got %s mx=%d, want %s mx=%d", c->in, fmt, r.mx, c->fmt, c->mx);
        } else if (!strstr(err, c->error)) {
            fail_msg("%s: error \"%s\" lacks \"%s\"", c->in, err, c->error);
        }
    }
}

static const char table_text[] = "# routes\n"
                                 "example.com      smtp:[mail.example.com]:587\n"
                                 ".example.com     smtp:[sub.example.com]\n"
                                 "*.deep.example.com lmtp:unix:/run/lmtp  # inline comment\n"
                                 "dovecot.test     lmtp:[127.0.0.1]:24\n"
                                 "Archive.TEST     maildir\n"
                                 "*                smtp:[fallback.example]\n"
                                 "long.test\n"
                                 "  smtp:[continued.example]\n";

static void check_lookup(const struct transport_table *t, const char *domain, const char *want)
{
    const struct route *r = transport_lookup(t, domain);
    char fmt[400] = "(none)";
    if (r)
        transport_route_format(r, fmt, sizeof fmt);
    if (strcmp(fmt, want) != 0)
        fail_msg("lookup %s: got %s, want %s", domain, fmt, want);
}

static void test_table(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct transport_table *t = transport_parse(table_text, sizeof table_text - 1, "t", &d);
    assert_non_null(t);
    assert_int_equal(d.n, 0);
    assert_int_equal(transport_count(t), 7);
    check_lookup(t, "example.com", "smtp:[mail.example.com]:587");
    check_lookup(t, "EXAMPLE.com", "smtp:[mail.example.com]:587");
    check_lookup(t, "a.example.com", "smtp:[sub.example.com]");
    check_lookup(t, "x.y.example.com", "smtp:[sub.example.com]");
    check_lookup(t, "deep.example.com", "smtp:[sub.example.com]");
    check_lookup(t, "a.deep.example.com", "lmtp:unix:/run/lmtp");
    check_lookup(t, "dovecot.test", "lmtp:[127.0.0.1]:24");
    check_lookup(t, "archive.test", "maildir");
    check_lookup(t, "long.test", "smtp:[continued.example]");
    check_lookup(t, "other.org", "smtp:[fallback.example]");
    check_lookup(t, "", "smtp:[fallback.example]");
    /* without "*": only entries naming the domain or a parent */
    assert_null(transport_lookup_named(t, "other.org"));
    assert_null(transport_lookup_named(t, ""));
    assert_null(transport_lookup_named(NULL, "archive.test"));
    assert_ptr_equal(transport_lookup_named(t, "Archive.test"),
                     transport_lookup(t, "archive.test"));
    assert_ptr_equal(transport_lookup_named(t, "x.y.example.com"),
                     transport_lookup(t, "x.y.example.com"));
    transport_free(t);

    static const char no_star[] = "example.com smtp:[a.example]\n";
    t = transport_parse(no_star, sizeof no_star - 1, "t", &d);
    assert_non_null(t);
    check_lookup(t, "other.org", "(none)");
    check_lookup(t, "sub.example.com", "(none)");
    transport_free(t);
    check_lookup(NULL, "example.com", "(none)");
    config_diags_free(&d);
}

static bool has_diag(const struct config_diags *d, unsigned line, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && strstr(d->v[i].msg, text))
            return true;
    return false;
}

static void test_table_errors(void **state)
{
    (void)state;
    static const char text[] = "example.com\n"                      /* 1: no next hop */
                               "a.example smtp:[x] extra\n"         /* 2: junk after */
                               "bad_domain! smtp:[x.example]\n"     /* 3: bad domain */
                               "b.example smtp:[x.example]:99999\n" /* 4: bad port */
                               "c.example smtp:[x.example]\n"       /* 5 */
                               "C.example smtp:[y.example]\n"       /* 6: twice */
                               "*.d.example smtp:[x.example]\n"     /* 7 */
                               ".d.example smtp:[y.example]\n"      /* 8: twice */
                               "**.e.example smtp:[x.example]\n";   /* 9: bad pattern */
    struct config_diags d = {0};
    struct transport_table *t = transport_parse(text, sizeof text - 1, "t", &d);
    assert_null(t);
    assert_true(has_diag(&d, 1, "expected \"domain nexthop\""));
    assert_true(has_diag(&d, 2, "unexpected \"extra\""));
    assert_true(has_diag(&d, 3, "is not a domain"));
    assert_true(has_diag(&d, 4, "bad port"));
    assert_true(has_diag(&d, 6, "given twice (first at line 5)"));
    assert_true(has_diag(&d, 8, "given twice (first at line 7)"));
    assert_true(has_diag(&d, 9, "is not a domain"));
    assert_int_equal(d.n, 7);
    config_diags_free(&d);
}

/* The tls= attribute: a policy per smtp: route. */
static void test_tls_attribute(void **state)
{
    (void)state;
    struct config_diags d = {0};
    static const char ok[] = "bank.test smtp:bank.test tls=verify\n"
                             "old.test smtp:[10.0.0.1]:25 TLS=none\n"
                             "plain.test smtp:plain.test\n";
    struct transport_table *t = transport_parse(ok, sizeof ok - 1, "t", &d);
    assert_non_null(t);
    assert_int_equal(transport_lookup(t, "bank.test")->tls, ROUTE_TLS_VERIFY);
    assert_int_equal(transport_lookup(t, "old.test")->tls, ROUTE_TLS_NONE);
    assert_int_equal(transport_lookup(t, "plain.test")->tls, ROUTE_TLS_DEFAULT);
    transport_free(t);
    static const char *const bad[] = {
        "a.test smtp:a.test tls=always\n",
        "a.test smtp:a.test tls=verify extra\n",
        "a.test lmtp:[127.0.0.1]:24 tls=verify\n",
        "a.test maildir tls=may\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = transport_parse(bad[i], strlen(bad[i]), "t", &d);
        if (t)
            fail_msg("accepted: %s", bad[i]);
        assert_true(d.n > 0);
        config_diags_free(&d);
    }
}

static void test_auth_parse(void **state)
{
    (void)state;
    struct transport_auth a;
    char err[200];
    static const char ok1[] = "relayuser s3cret pass word \r\n";
    assert_int_equal(transport_auth_parse(ok1, sizeof ok1 - 1, &a, err, sizeof err), 0);
    assert_string_equal(a.user, "relayuser");
    assert_string_equal(a.pass, "s3cret pass word");
    static const char ok2[] = "# comment\n\n  u@example.org\tpw\n";
    assert_int_equal(transport_auth_parse(ok2, sizeof ok2 - 1, &a, err, sizeof err), 0);
    assert_string_equal(a.user, "u@example.org");
    assert_string_equal(a.pass, "pw");
    static const struct {
        const char *in, *error;
    } bad[] = {
        {"", "empty"},
        {"\n# only a comment\n", "empty"},
        {"useronly\n", "no password"},
        {"u p\nv q\n", "more than one line"},
        {"u p\x01q\n", "control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(transport_auth_parse(bad[i].in, strlen(bad[i].in), &a, err, sizeof err),
                         -1);
        if (!strstr(err, bad[i].error))
            fail_msg("%s: error \"%s\" lacks \"%s\"", bad[i].in, err, bad[i].error);
    }
    char longpw[400];
    memset(longpw, 'x', sizeof longpw);
    memcpy(longpw, "u ", 2);
    assert_int_equal(transport_auth_parse(longpw, sizeof longpw, &a, err, sizeof err), -1);
    /* The password never appears in a message. */
    static const char dup[] = "user hunter2\nuser hunter3\n";
    assert_int_equal(transport_auth_parse(dup, sizeof dup - 1, &a, err, sizeof err), -1);
    assert_null(strstr(err, "hunter"));
}

static void test_auth_load_mode(void **state)
{
    (void)state;
    char path[] = "/tmp/tern-test-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "user hunter2\n", 13), 13);
    close(fd);
    struct transport_auth a;
    char err[600];
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(transport_auth_load(path, &a, err, sizeof err), 0);
    assert_string_equal(a.pass, "hunter2");
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(transport_auth_load(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "mode 0640"));
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(transport_auth_load(path, &a, err, sizeof err), -1);
    unlink(path);
    assert_int_equal(transport_auth_load(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nexthops),       cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_errors),   cmocka_unit_test(test_auth_parse),
        cmocka_unit_test(test_auth_load_mode), cmocka_unit_test(test_tls_attribute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
