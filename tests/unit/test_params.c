/*
 * test_params - unit tests of the ESMTP parameters of MAIL and RCPT
 * (smtp_mail_params_parse, smtp_rcpt_params_parse) and of xtext.
 * Table-driven: each row is the text after the path, the extensions the
 * server advertised, and the expected values or reply.
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

/* Extension sets. */
#define X_SIZE 0x1
#define X_8BIT 0x2
#define X_UTF8 0x4
#define X_DSN 0x8
#define X_AUTH 0x10
#define X_ALL 0x1f

struct mail_case {
    const char *in;
    unsigned ext;
    int code; /* 0: accepted */
    const char *enh;
    /* expected on success */
    bool has_size;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    const char *envid; /* NULL: none */
};

/* A refused MAIL / RCPT parameter list. */
#define MBAD(in, ext, code, enh)                                                                   \
    {                                                                                              \
        in, ext, code, enh, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL                   \
    }
#define RBAD(in, ext, code, enh)                                                                   \
    {                                                                                              \
        in, ext, code, enh, 0, NULL                                                                \
    }

static const struct mail_case mail_cases[] = {
    {"", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL},
    {"   ", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL},
    {" SIZE=1000", X_ALL, 0, NULL, true, 1000, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL},
    {"size=0", X_ALL, 0, NULL, true, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL},
    {"SIZE=18446744073709551615", X_ALL, 0, NULL, true, UINT64_MAX, SMTP_BODY_NONE, false,
     SMTP_RET_NONE, NULL},
    /* past 2^64-1: saturates (the server answers 552 for any size past its limit) */
    {"SIZE=18446744073709551616", X_ALL, 0, NULL, true, UINT64_MAX, SMTP_BODY_NONE, false,
     SMTP_RET_NONE, NULL},
    {"SIZE=99999999999999999999999999", X_ALL, 0, NULL, true, UINT64_MAX, SMTP_BODY_NONE, false,
     SMTP_RET_NONE, NULL},
    MBAD("SIZE=1000000000000000000000000000000000000000000000000000000000000000000", X_ALL, 501,
         "5.5.4"),
    MBAD("SIZE=abc", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=-1", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=", X_ALL, 501, "5.5.4"),
    MBAD("SIZE", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=10 SIZE=10", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=10 size=20", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=10", X_ALL & ~X_SIZE, 555, "5.5.4"),
    {"BODY=8BITMIME", X_ALL, 0, NULL, false, 0, SMTP_BODY_8BITMIME, false, SMTP_RET_NONE, NULL},
    {"body=8bitmime", X_ALL, 0, NULL, false, 0, SMTP_BODY_8BITMIME, false, SMTP_RET_NONE, NULL},
    {"BODY=7BIT", X_ALL, 0, NULL, false, 0, SMTP_BODY_7BIT, false, SMTP_RET_NONE, NULL},
    MBAD("BODY=BINARYMIME", X_ALL, 555, "5.5.4"),
    MBAD("BODY=FOO", X_ALL, 501, "5.5.4"),
    MBAD("BODY=", X_ALL, 501, "5.5.4"),
    MBAD("BODY", X_ALL, 501, "5.5.4"),
    MBAD("BODY=8BITMIME", X_ALL & ~X_8BIT, 555, "5.5.4"),
    {"SMTPUTF8", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, true, SMTP_RET_NONE, NULL},
    {"smtputf8", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, true, SMTP_RET_NONE, NULL},
    MBAD("SMTPUTF8=yes", X_ALL, 501, "5.5.4"),
    MBAD("SMTPUTF8", X_ALL & ~X_UTF8, 555, "5.5.4"),
    MBAD("SMTPUTF8 SMTPUTF8", X_ALL, 501, "5.5.4"),
    {"RET=FULL", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_FULL, NULL},
    {"ret=hdrs", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_HDRS, NULL},
    MBAD("RET=ALL", X_ALL, 501, "5.5.4"),
    MBAD("RET", X_ALL, 501, "5.5.4"),
    MBAD("RET=FULL", X_ALL & ~X_DSN, 555, "5.5.4"),
    {"ENVID=QQ314159", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, "QQ314159"},
    {"ENVID=a+2Bb+3Dc", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE,
     "a+2Bb+3Dc"},
    MBAD("ENVID=a+2bb", X_ALL, 501, "5.5.4"), /* lowercase hex */
    MBAD("ENVID=a+2", X_ALL, 501, "5.5.4"),   /* truncated hexchar */
    MBAD("ENVID=a+0Db", X_ALL, 501, "5.5.4"), /* decodes to a CR */
    MBAD("ENVID=a+00b", X_ALL, 501, "5.5.4"), /* decodes to a NUL */
    MBAD("ENVID=a+C3b", X_ALL, 501, "5.5.4"), /* decodes to a non-ASCII octet */
    MBAD("ENVID=a=b", X_ALL, 501, "5.5.4"),
    MBAD("ENVID=", X_ALL, 501, "5.5.4"),
    MBAD("ENVID=x", X_ALL & ~X_DSN, 555, "5.5.4"),
    MBAD("ENVID=x ENVID=y", X_ALL, 501, "5.5.4"),
    {"SIZE=4096 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id-1", X_ALL, 0, NULL, true, 4096,
     SMTP_BODY_8BITMIME, true, SMTP_RET_HDRS, "id-1"},
    {"  SIZE=4096   BODY=7BIT  ", X_ALL, 0, NULL, true, 4096, SMTP_BODY_7BIT, false, SMTP_RET_NONE,
     NULL},
    MBAD("XAUTH=<>", X_ALL, 555, "5.5.4"),
    MBAD("XFOO", X_ALL, 555, "5.5.4"),
    MBAD("X-FOO=bar", X_ALL, 555, "5.5.4"),
    MBAD("NOTIFY=NEVER", X_ALL, 555, "5.5.4"), /* a RCPT parameter */
    MBAD("-SIZE=1", X_ALL, 501, "5.5.4"),
    MBAD("SI_ZE=1", X_ALL, 501, "5.5.4"),
    MBAD("=1", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=1\t", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=1=2", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=\xc3\xa9", X_ALL, 501, "5.5.4"),
    MBAD("SIZE=1\x01", X_ALL, 501, "5.5.4"),
    /* AUTH= (RFC 4954 §5): only when AUTH is offered; "<>" or xtext */
    {"AUTH=<>", X_ALL, 0, NULL, false, 0, SMTP_BODY_NONE, false, SMTP_RET_NONE, NULL},
    {"AUTH=demo+40example.test SIZE=10", X_ALL, 0, NULL, true, 10, SMTP_BODY_NONE, false,
     SMTP_RET_NONE, NULL},
    MBAD("AUTH=<>", X_ALL & ~X_AUTH, 555, "5.5.4"),
    MBAD("AUTH=", X_ALL, 501, "5.5.4"),
    MBAD("AUTH", X_ALL, 501, "5.5.4"),
    MBAD("AUTH=a+4", X_ALL, 501, "5.5.4"),
    MBAD("AUTH=a=b", X_ALL, 501, "5.5.4"),
    MBAD("AUTH=<> AUTH=<>", X_ALL, 501, "5.5.4"),
};

static struct smtp_ext ext_of(unsigned m)
{
    struct smtp_ext e = {.size = m & X_SIZE,
                         .eightbit = m & X_8BIT,
                         .smtputf8 = m & X_UTF8,
                         .dsn = m & X_DSN,
                         .auth = m & X_AUTH};
    return e;
}

static void test_mail_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(mail_cases); i++) {
        const struct mail_case *c = &mail_cases[i];
        struct smtp_ext ext = ext_of(c->ext);
        struct smtp_mail_params mp;
        memset(&mp, 0xa5, sizeof mp);
        const struct smtp_status *st = smtp_mail_params_parse(c->in, strlen(c->in), &ext, &mp);
        if (c->code != 0) {
            if (st == NULL)
                fail_msg("mail case %zu \"%s\": accepted", i, c->in);
            if (st->code != c->code || strcmp(st->enh, c->enh) != 0)
                fail_msg("mail case %zu \"%s\": got %d %s, want %d %s", i, c->in, st->code, st->enh,
                         c->code, c->enh);
            assert_false(mp.has_size); /* cleared on failure */
            continue;
        }
        if (st != NULL)
            fail_msg("mail case %zu \"%s\": refused %d %s %s", i, c->in, st->code, st->enh,
                     st->text);
        assert_int_equal(mp.has_size, c->has_size);
        assert_true(mp.size == c->size);
        assert_int_equal(mp.body, c->body);
        assert_int_equal(mp.smtputf8, c->smtputf8);
        assert_int_equal(mp.ret, c->ret);
        assert_int_equal(mp.has_envid, c->envid != NULL);
        if (c->envid)
            assert_string_equal(mp.envid, c->envid);
    }
}

struct rcpt_case {
    const char *in;
    unsigned ext;
    int code;
    const char *enh;
    unsigned notify;
    const char *orcpt;
};

static const struct rcpt_case rcpt_cases[] = {
    {"", X_ALL, 0, NULL, 0, NULL},
    {"NOTIFY=NEVER", X_ALL, 0, NULL, SMTP_NOTIFY_NEVER, NULL},
    {"NOTIFY=SUCCESS", X_ALL, 0, NULL, SMTP_NOTIFY_SUCCESS, NULL},
    {"notify=success,failure,delay", X_ALL, 0, NULL,
     SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, NULL},
    {"NOTIFY=DELAY,FAILURE", X_ALL, 0, NULL, SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE, NULL},
    RBAD("NOTIFY=NEVER,SUCCESS", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=FAILURE,NEVER", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=SUCCESS,", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=,SUCCESS", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=SUCCESS,,DELAY", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=ALWAYS", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=NEVER NOTIFY=NEVER", X_ALL, 501, "5.5.4"),
    RBAD("NOTIFY=NEVER", X_ALL & ~X_DSN, 555, "5.5.4"),
    {"ORCPT=rfc822;user@example.org", X_ALL, 0, NULL, 0, "rfc822;user@example.org"},
    {"ORCPT=RFC822;user+2Btag@example.org", X_ALL, 0, NULL, 0, "RFC822;user+2Btag@example.org"},
    {"ORCPT=utf-8;u+5Cx{00E9}@example.org", X_ALL, 0, NULL, 0, "utf-8;u+5Cx{00E9}@example.org"},
    {"NOTIFY=FAILURE ORCPT=rfc822;a@b", X_ALL, 0, NULL, SMTP_NOTIFY_FAILURE, "rfc822;a@b"},
    RBAD("ORCPT=rfc822", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc822;", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=;user@example.org", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc(822);a@b", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc822;a+2@b", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc822;a+0A@b", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc822;a@b ORCPT=rfc822;a@b", X_ALL, 501, "5.5.4"),
    RBAD("ORCPT=rfc822;a@b", X_ALL & ~X_DSN, 555, "5.5.4"),
    RBAD("SIZE=100", X_ALL, 555, "5.5.4"), /* a MAIL parameter */
    RBAD("XFOO=1", X_ALL, 555, "5.5.4"),
    RBAD("NOTIFY=NEVER XFOO", X_ALL, 555, "5.5.4"),
};

static void test_rcpt_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(rcpt_cases); i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        struct smtp_ext ext = ext_of(c->ext);
        struct smtp_rcpt_params rp;
        memset(&rp, 0xa5, sizeof rp);
        const struct smtp_status *st = smtp_rcpt_params_parse(c->in, strlen(c->in), &ext, &rp);
        if (c->code != 0) {
            if (st == NULL)
                fail_msg("rcpt case %zu \"%s\": accepted", i, c->in);
            if (st->code != c->code || strcmp(st->enh, c->enh) != 0)
                fail_msg("rcpt case %zu \"%s\": got %d %s, want %d %s", i, c->in, st->code, st->enh,
                         c->code, c->enh);
            continue;
        }
        if (st != NULL)
            fail_msg("rcpt case %zu \"%s\": refused %d %s %s", i, c->in, st->code, st->enh,
                     st->text);
        assert_int_equal(rp.notify, c->notify);
        assert_int_equal(rp.has_orcpt, c->orcpt != NULL);
        if (c->orcpt)
            assert_string_equal(rp.orcpt, c->orcpt);
    }
}

static void test_lengths(void **state)
{
    (void)state;
    char buf[1200];
    struct smtp_ext ext = ext_of(X_ALL);
    struct smtp_mail_params mp;
    struct smtp_rcpt_params rp;

    /* ENVID: 100 octets fine, 101 refused */
    memcpy(buf, "ENVID=", 6);
    memset(buf + 6, 'e', 100);
    assert_null(smtp_mail_params_parse(buf, 106, &ext, &mp));
    assert_int_equal(strlen(mp.envid), 100);
    memset(buf + 6, 'e', 101);
    assert_non_null(smtp_mail_params_parse(buf, 107, &ext, &mp));
    /* 34 encoded octets decode to fewer; an encoded form over 100 is refused */
    for (int i = 0; i < 34; i++)
        memcpy(buf + 6 + 3 * i, "+2B", 3);
    assert_null(smtp_mail_params_parse(buf, 6 + 102 - 3, &ext, &mp));
    assert_non_null(smtp_mail_params_parse(buf, 6 + 102, &ext, &mp));

    /* ORCPT: 500 octets fine, 501 refused */
    memcpy(buf, "ORCPT=rfc822;", 13);
    memset(buf + 13, 'o', 500 - 7);
    assert_null(smtp_rcpt_params_parse(buf, 6 + 500, &ext, &rp));
    assert_int_equal(strlen(rp.orcpt), 500);
    memset(buf + 13, 'o', 501 - 7);
    assert_non_null(smtp_rcpt_params_parse(buf, 6 + 501, &ext, &rp));

    /* NULL ext: nothing offered */
    assert_non_null(smtp_mail_params_parse("SIZE=1", 6, NULL, &mp));
    assert_null(smtp_mail_params_parse("", 0, NULL, &mp));
}

struct xtext_case {
    const char *in;
    long n; /* decoded length, -1 invalid */
    const char *out;
};

static const struct xtext_case xtext_cases[] = {
    {"", 0, ""},       {"abc", 3, "abc"},       {"a+2Bb", 3, "a+b"},
    {"+3D", 1, "="},   {"+41+42+43", 3, "ABC"}, {"+20", 1, " "},
    {"!~", 2, "!~"},   {"+2b", -1, NULL},       {"+", -1, NULL},
    {"+4", -1, NULL},  {"a+G0", -1, NULL},      {"a=b", -1, NULL},
    {"a b", -1, NULL}, {"a\x7f", -1, NULL},     {"\xc3\xa9", -1, NULL},
};

static void test_xtext(void **state)
{
    (void)state;
    char out[64];
    for (size_t i = 0; i < N(xtext_cases); i++) {
        const struct xtext_case *c = &xtext_cases[i];
        size_t len = strlen(c->in);
        assert_int_equal(smtp_xtext_valid(c->in, len), c->n >= 0);
        long n = smtp_xtext_decode(c->in, len, out, sizeof out);
        if (n != c->n)
            fail_msg("xtext case %zu \"%s\": got %ld", i, c->in, n);
        if (n >= 0)
            assert_string_equal(out, c->out);
    }
    /* the output bound: 3 decoded octets need 4 bytes */
    assert_int_equal(smtp_xtext_decode("abc", 3, out, 4), 3);
    assert_int_equal(smtp_xtext_decode("abc", 3, out, 3), -1);
    assert_int_equal(smtp_xtext_decode("+41+42+43", 9, out, 3), -1);
    assert_int_equal(smtp_xtext_decode("", 0, out, 1), 0);
    assert_int_equal(smtp_xtext_decode("", 0, out, 0), -1);
}

/* Every prefix of some parameter lists, in an exact-size heap buffer (run under ASan). */
static void test_prefixes(void **state)
{
    (void)state;
    static const char *full[] = {
        "SIZE=4096 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb",
        "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+2Btag@example.org",
        "ENVID=+41+4",
    };
    struct smtp_ext ext = ext_of(X_ALL);
    for (size_t i = 0; i < N(full); i++) {
        size_t n = strlen(full[i]);
        for (size_t k = 0; k <= n; k++) {
            char *buf = malloc(k ? k : 1), out[8];
            assert_non_null(buf);
            memcpy(buf, full[i], k);
            struct smtp_mail_params mp;
            struct smtp_rcpt_params rp;
            (void)smtp_mail_params_parse(buf, k, &ext, &mp);
            (void)smtp_rcpt_params_parse(buf, k, &ext, &rp);
            (void)smtp_xtext_decode(buf, k, out, sizeof out);
            free(buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mail_table), cmocka_unit_test(test_rcpt_table),
        cmocka_unit_test(test_lengths),    cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
