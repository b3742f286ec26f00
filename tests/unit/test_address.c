/*
 * test_address - unit tests of smtp_path_parse (RFC 5321 §4.1.2 paths).
 * Table-driven: each row is the text after "FROM:" / "TO:", the kind of
 * path, whether SMTPUTF8 was given, and the expected result or reply.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define M SMTP_PATH_REVERSE
#define R SMTP_PATH_FORWARD

struct path_case {
    const char *in;
    enum smtp_path_kind kind;
    bool utf8_ok;
    int code; /* 0: accepted */
    const char *enh;
    const char *addr;  /* expected addr on success */
    const char *canon; /* expected local_canon, NULL: same as local */
    const char *rest;  /* expected text after *end, NULL: "" */
};

static const struct path_case cases[] = {
    /* plain mailboxes */
    {"<user@example.org>", M, false, 0, NULL, "user@example.org", NULL, NULL},
    {"<user@example.org>", R, false, 0, NULL, "user@example.org", NULL, NULL},
    {"<User.Name+tag@Sub.Example.ORG>", R, false, 0, NULL, "User.Name+tag@Sub.Example.ORG", NULL,
     NULL},
    {"<!#$%&'*+-/=?^_`{|}~@example.org>", R, false, 0, NULL, "!#$%&'*+-/=?^_`{|}~@example.org",
     NULL, NULL},
    {"<u@localhost>", R, false, 0, NULL, "u@localhost", NULL, NULL},
    {"<u@a-b.c-d.example>", R, false, 0, NULL, "u@a-b.c-d.example", NULL, NULL},
    {"<u@123.example>", R, false, 0, NULL, "u@123.example", NULL, NULL},
    {"<user@example.org> SIZE=100", M, false, 0, NULL, "user@example.org", NULL, " SIZE=100"},
    {" <user@example.org>", M, false, 0, NULL, "user@example.org", NULL, NULL},
    {"   <user@example.org>  ", M, false, 0, NULL, "user@example.org", NULL, "  "},
    /* null path and postmaster */
    {"<>", M, false, 0, NULL, "", NULL, NULL},
    {"<> BODY=8BITMIME", M, false, 0, NULL, "", NULL, " BODY=8BITMIME"},
    {"<>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<postmaster>", R, false, 0, NULL, "postmaster", NULL, NULL},
    {"<PostMaster>", R, false, 0, NULL, "postmaster", NULL, NULL},
    {"<POSTMASTER> NOTIFY=NEVER", R, false, 0, NULL, "postmaster", NULL, " NOTIFY=NEVER"},
    {"<postmaster>", M, false, 553, "5.1.7", NULL, NULL, NULL},
    {"<postmaster@example.org>", R, false, 0, NULL, "postmaster@example.org", NULL, NULL},
    {"<postmasterx>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    /* quoted local-parts */
    {"<\"john.doe\"@example.org>", R, false, 0, NULL, "\"john.doe\"@example.org", "john.doe", NULL},
    {"<\"john doe\"@example.org>", R, false, 0, NULL, "\"john doe\"@example.org", "\"john doe\"",
     NULL},
    {"<\"a\\\"b\"@example.org>", R, false, 0, NULL, "\"a\\\"b\"@example.org", "\"a\\\"b\"", NULL},
    {"<\"j\\ohn\"@example.org>", R, false, 0, NULL, "\"j\\ohn\"@example.org", "john", NULL},
    {"<\"a@b\"@example.org>", R, false, 0, NULL, "\"a@b\"@example.org", "\"a@b\"", NULL},
    {"<\"\"@example.org>", R, false, 0, NULL, "\"\"@example.org", "\"\"", NULL},
    {"<\"a>b\"@example.org>", R, false, 0, NULL, "\"a>b\"@example.org", "\"a>b\"", NULL},
    {"<\"a\\\x01\"@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<\"a\tb\"@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<\"unterminated@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<\"unterminated@example.org", R, false, 501, "5.5.4", NULL, NULL, NULL},
    /* source routes are accepted and dropped */
    {"<@a.example,@b.example:user@c.example>", R, false, 0, NULL, "user@c.example", NULL, NULL},
    {"<@a.example:user@c.example>", M, false, 0, NULL, "user@c.example", NULL, NULL},
    {"<@a.example,user@c.example>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<@:user@c.example>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<@a.example:>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<@[1.2.3.4]:user@c.example>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    /* address literals */
    {"<u@[192.0.2.1]>", R, false, 0, NULL, "u@[192.0.2.1]", NULL, NULL},
    {"<u@[0.0.0.0]>", R, false, 0, NULL, "u@[0.0.0.0]", NULL, NULL},
    {"<u@[255.255.255.255]>", R, false, 0, NULL, "u@[255.255.255.255]", NULL, NULL},
    {"<u@[300.1.2.3]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[1.2.3.256]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[1.2.3]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[1.2.3.4.5]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[1.2.3.0004]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[IPv6:2001:db8::1]>", R, false, 0, NULL, "u@[IPv6:2001:db8::1]", NULL, NULL},
    {"<u@[ipv6:::1]>", R, false, 0, NULL, "u@[ipv6:::1]", NULL, NULL},
    {"<u@[IPv6:::ffff:192.0.2.1]>", R, false, 0, NULL, "u@[IPv6:::ffff:192.0.2.1]", NULL, NULL},
    {"<u@[IPv6:2001:db8::g]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[IPv6:1:2:3:4:5:6:7:8:9]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[IPv6:]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[IPv6:2001:db8::1%eth0]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[x-tag:some.content]>", R, false, 0, NULL, "u@[x-tag:some.content]", NULL, NULL},
    {"<u@[tag-:x]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[tag:]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[tag:a\\b]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[tag:a b]>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<u@[192.0.2.1>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    /* bad syntax */
    {"<a b@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<a b@example.org>", M, false, 553, "5.1.7", NULL, NULL, NULL},
    {"<a@b@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example.org", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"<user@example.org", M, false, 501, "5.5.4", NULL, NULL, NULL},
    {"<", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"   ", M, false, 501, "5.5.4", NULL, NULL, NULL},
    {"<user>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<.user@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user.@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<us..er@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example..org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@.example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example.org.>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@-example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example-.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@exa_mple.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"< user@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example.org >", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user(comment)@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example.org>x", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"<user@example.org><x@y>", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"<<user@example.org>>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    /* control characters and NUL */
    {"<us\x01r@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@exa\x7fmple.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@example.org\r>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    {"<user\t@example.org>", R, false, 553, "5.1.3", NULL, NULL, NULL},
    /* UTF-8 */
    {"<j\xc3\xb6rg@example.org>", R, false, 553, "5.6.7", NULL, NULL, NULL},
    {"<j\xc3\xb6rg@example.org>", M, false, 553, "5.6.7", NULL, NULL, NULL},
    {"<user@b\xc3\xbc"
     "cher.example>",
     R, false, 553, "5.6.7", NULL, NULL, NULL},
    {"<j\xc3\xb6rg@example.org>", R, true, 0, NULL, "j\xc3\xb6rg@example.org", NULL, NULL},
    {"<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>", R, true, 0,
     NULL, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", NULL,
     NULL},
    {"<\"j\xc3\xb6 rg\"@example.org>", R, true, 0, NULL, "\"j\xc3\xb6 rg\"@example.org", NULL,
     NULL},
    {"<j\xc3rg@example.org>", R, true, 553, "5.1.3", NULL, NULL, NULL},           /* truncated */
    {"<j\xc0\xafrg@example.org>", R, true, 553, "5.1.3", NULL, NULL, NULL},       /* overlong */
    {"<j\xed\xa0\x80rg@example.org>", R, true, 553, "5.1.3", NULL, NULL, NULL},   /* surrogate */
    {"<j\xf4\x90\x80\x80@example.org>", R, true, 553, "5.1.3", NULL, NULL, NULL}, /* > U+10FFFF */
    {"<j\x80@example.org>", R, true, 553, "5.1.3", NULL, NULL, NULL},
    {"<user@[\xc3\xbc]>", R, true, 553, "5.1.3", NULL, NULL, NULL},
    /* missing angle brackets: one word that is a mailbox */
    {"user@example.org", M, false, 0, NULL, "user@example.org", NULL, NULL},
    {" user@example.org  ", R, false, 0, NULL, "user@example.org", NULL, "  "},
    {"user@example.org SIZE=100", M, false, 501, "5.5.4", NULL, NULL, NULL},
    {"user", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"postmaster", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"user@example.org>", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"a b@example.org", R, false, 501, "5.5.4", NULL, NULL, NULL},
    {"j\xc3\xb6rg@example.org", R, false, 501, "5.5.4", NULL, NULL, NULL},
};

static void check_case(size_t i, const struct path_case *c)
{
    struct smtp_path p;
    const char *end = NULL;
    size_t len = strlen(c->in);
    const struct smtp_status *st = smtp_path_parse(c->in, len, c->kind, c->utf8_ok, &p, &end);
    if (c->code != 0) {
        if (st == NULL)
            fail_msg("case %zu \"%s\": accepted as \"%s\"", i, c->in, p.addr);
        if (st->code != c->code || strcmp(st->enh, c->enh) != 0)
            fail_msg("case %zu \"%s\": got %d %s %s, want %d %s", i, c->in, st->code, st->enh,
                     st->text, c->code, c->enh);
        return;
    }
    if (st != NULL)
        fail_msg("case %zu \"%s\": refused %d %s %s", i, c->in, st->code, st->enh, st->text);
    assert_string_equal(p.addr, c->addr);
    assert_non_null(end);
    assert_string_equal(end, c->rest ? c->rest : "");
    assert_int_equal(p.null, c->addr[0] == '\0');
    if (!p.null && !p.postmaster) {
        char joined[2 * SMTP_PATH_MAX];
        snprintf(joined, sizeof joined, "%s@%s", p.local, p.domain);
        assert_string_equal(joined, p.addr);
        assert_string_equal(p.local_canon, c->canon ? c->canon : p.local);
        assert_int_equal(p.quoted, p.local[0] == '"');
    }
    bool high = false;
    for (const char *s = p.addr; *s; s++)
        high |= (unsigned char)*s >= 0x80;
    assert_int_equal(p.utf8, high);
}

static void test_path_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(cases); i++)
        check_case(i, &cases[i]);
}

static void test_path_flags(void **state)
{
    (void)state;
    struct smtp_path p;
    const char *end;
    assert_null(smtp_path_parse("<>", 2, M, false, &p, &end));
    assert_true(p.null);
    assert_false(p.postmaster);
    assert_string_equal(p.addr, "");
    assert_null(smtp_path_parse("<Postmaster>", 12, R, false, &p, &end));
    assert_true(p.postmaster);
    assert_false(p.null);
    assert_string_equal(p.local, "Postmaster");
    assert_string_equal(p.domain, "");
    assert_null(smtp_path_parse("<u@[192.0.2.1]>", 15, R, false, &p, &end));
    assert_string_equal(p.domain, "[192.0.2.1]");
    assert_string_equal(p.local, "u");
    /* the length given is honoured: the NUL terminator is not needed */
    assert_null(smtp_path_parse("<a@b.example>trailing", 13, R, false, &p, &end));
    assert_string_equal(p.addr, "a@b.example");
    /* a NUL inside the length is refused */
    assert_non_null(smtp_path_parse("<a\0b@example>", 13, R, false, &p, &end));
}

/* Build "<" + local + "@" + domain + ">" into buf. */
static size_t build(char *buf, size_t nlocal, size_t nlabels, size_t labellen)
{
    size_t o = 0;
    buf[o++] = '<';
    memset(buf + o, 'l', nlocal);
    o += nlocal;
    buf[o++] = '@';
    for (size_t i = 0; i < nlabels; i++) {
        if (i > 0)
            buf[o++] = '.';
        memset(buf + o, 'd', labellen);
        o += labellen;
    }
    buf[o++] = '>';
    buf[o] = '\0';
    return o;
}

static void test_path_limits(void **state)
{
    (void)state;
    char buf[2048];
    struct smtp_path p;
    const char *end;
    const struct smtp_status *st;
    size_t n;

    /* local-part: 64 octets fine, 65 refused */
    n = build(buf, 64, 1, 10);
    assert_null(smtp_path_parse(buf, n, R, false, &p, &end));
    assert_int_equal(strlen(p.local), 64);
    n = build(buf, 65, 1, 10);
    st = smtp_path_parse(buf, n, R, false, &p, &end);
    assert_non_null(st);
    assert_int_equal(st->code, 553);
    st = smtp_path_parse(buf, n, M, false, &p, &end);
    assert_non_null(st);
    assert_string_equal(st->enh, "5.1.7");

    /* label: 63 octets fine, 64 refused */
    n = build(buf, 1, 2, 63);
    assert_null(smtp_path_parse(buf, n, R, false, &p, &end));
    n = build(buf, 1, 2, 64);
    st = smtp_path_parse(buf, n, R, false, &p, &end);
    assert_non_null(st);
    assert_int_equal(st->code, 553);

    /* path: 256 octets with brackets fine, 257 refused with 501 5.1.3 */
    n = build(buf, 2, 4, 61); /* 1+2+1+(4*61+3)+1 = 252 */
    assert_int_equal(n, 252);
    assert_null(smtp_path_parse(buf, n, R, false, &p, &end));
    n = build(buf, 6, 4, 61); /* 256 */
    assert_int_equal(n, 256);
    assert_null(smtp_path_parse(buf, n, R, false, &p, &end));
    assert_int_equal(strlen(p.addr), 254);
    n = build(buf, 7, 4, 61); /* 257 */
    st = smtp_path_parse(buf, n, R, false, &p, &end);
    assert_non_null(st);
    assert_int_equal(st->code, 501);
    assert_string_equal(st->enh, "5.1.3");
    /* the same without brackets */
    st = smtp_path_parse(buf + 1, n - 2, R, false, &p, &end);
    assert_non_null(st);
    assert_int_equal(st->code, 501);
    assert_string_equal(st->enh, "5.1.3");

    /* domain far past 255 octets */
    n = build(buf, 1, 20, 63);
    st = smtp_path_parse(buf, n, R, false, &p, &end);
    assert_non_null(st);
    assert_true(st->code == 501 || st->code == 553);

    /* a source route counts towards the 256 octets */
    size_t o = 0;
    buf[o++] = '<';
    for (int i = 0; i < 30; i++) {
        memcpy(buf + o, "@relay.example,", 15);
        o += 15;
    }
    buf[o - 1] = ':';
    memcpy(buf + o, "u@example.org>", 14);
    o += 14;
    st = smtp_path_parse(buf, o, R, false, &p, &end);
    assert_non_null(st);
    assert_int_equal(st->code, 501);
}

/* Every prefix of some paths, in an exact-size heap buffer: no read past the end
   (run under ASan). */
static void test_path_prefixes(void **state)
{
    (void)state;
    static const char *full[] = {
        "<user@example.org> SIZE=1",
        "<\"a\\\"b\"@example.org>",
        "<@a.example,@b.example:u@c.example>",
        "<u@[192.0.2.1]>",
        "<u@[IPv6:2001:db8::1]>",
        "<u@[tag:x]>",
        "<Postmaster>",
        "<>",
        "<j\xc3\xb6rg@b\xc3\xbc.example>",
        "user@example.org",
    };
    for (size_t i = 0; i < N(full); i++) {
        size_t n = strlen(full[i]);
        for (size_t k = 0; k <= n; k++) {
            char *buf = malloc(k ? k : 1);
            assert_non_null(buf);
            memcpy(buf, full[i], k);
            for (int f = 0; f < 4; f++) {
                struct smtp_path p;
                const char *end;
                (void)smtp_path_parse(buf, k, (f & 1) ? R : M, f & 2, &p, &end);
            }
            free(buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_path_flags),
        cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_path_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
