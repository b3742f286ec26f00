/*
 * test_command - unit tests of smtp_cmd_parse, smtp_bdat_parse and the reply
 * functions of reply.c (smtp_reply_format, smtp_reply_line_parse).
 * Table-driven: each row is an input line and the expected outcome.
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

struct cmd_case {
    const char *line;
    size_t len; /* 0: strlen(line) */
    enum smtp_verb verb;
    const char *arg; /* expected argument on success */
    int code;        /* 0: success */
    const char *enh;
};

static const struct cmd_case cmd_cases[] = {
    {"HELO client.example", 0, SMTP_VERB_HELO, "client.example", 0, NULL},
    {"EHLO client.example", 0, SMTP_VERB_EHLO, "client.example", 0, NULL},
    {"ehlo client.example", 0, SMTP_VERB_EHLO, "client.example", 0, NULL},
    {"EhLo   client.example   ", 0, SMTP_VERB_EHLO, "client.example", 0, NULL},
    {"MAIL FROM:<a@b.example>", 0, SMTP_VERB_MAIL, "FROM:<a@b.example>", 0, NULL},
    {"mail from:<> SIZE=10", 0, SMTP_VERB_MAIL, "from:<> SIZE=10", 0, NULL},
    {"RCPT TO:<a@b.example>", 0, SMTP_VERB_RCPT, "TO:<a@b.example>", 0, NULL},
    {"DATA", 0, SMTP_VERB_DATA, "", 0, NULL},
    {"data", 0, SMTP_VERB_DATA, "", 0, NULL},
    {"DATA ", 0, SMTP_VERB_DATA, "", 0, NULL},
    {"BDAT 100 LAST", 0, SMTP_VERB_BDAT, "100 LAST", 0, NULL},
    {"RSET", 0, SMTP_VERB_RSET, "", 0, NULL},
    {"NOOP hello there", 0, SMTP_VERB_NOOP, "hello there", 0, NULL},
    {"QUIT", 0, SMTP_VERB_QUIT, "", 0, NULL},
    {"VRFY user", 0, SMTP_VERB_VRFY, "user", 0, NULL},
    {"EXPN list", 0, SMTP_VERB_EXPN, "list", 0, NULL},
    {"HELP", 0, SMTP_VERB_HELP, "", 0, NULL},
    {"STARTTLS", 0, SMTP_VERB_STARTTLS, "", 0, NULL},
    {"starttls", 0, SMTP_VERB_STARTTLS, "", 0, NULL},
    {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", 0, SMTP_VERB_AUTH, "PLAIN AGFsaWNlAHNlY3JldA==", 0, NULL},
    {"NOOP\targ\t", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"}, /* verb needs SP */
    {"NOOP \targ\t", 0, SMTP_VERB_NOOP, "arg", 0, NULL},       /* TAB allowed in arg */
    {"MAILX FROM:<a@b>", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {"MAI", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {"", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {" DATA", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {"XYZZY", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {"GET / HTTP/1.1", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.1"},
    {"DATA\r", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"MAIL FROM:<a@b>\rRCPT TO:<c@d>", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"NOOP a\0b", 8, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"NOOP \x1b[31m", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"NOOP \x7f", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"NOOP a\nb", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"},
    {"XYZZY \r", 0, SMTP_VERB_UNKNOWN, NULL, 500, "5.5.2"}, /* control checked first */
    {"NOOP caf\xc3\xa9", 0, SMTP_VERB_NOOP, "caf\xc3\xa9", 0, NULL},
};

static void test_cmd_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(cmd_cases); i++) {
        const struct cmd_case *c = &cmd_cases[i];
        size_t len = c->len ? c->len : strlen(c->line);
        struct smtp_cmd cmd;
        const struct smtp_status *st = smtp_cmd_parse(c->line, len, &cmd);
        if (c->code == 0) {
            if (st != NULL)
                fail_msg("case %zu \"%s\": unexpected %d %s", i, c->line, st->code, st->enh);
            assert_int_equal(cmd.verb, c->verb);
            assert_int_equal(cmd.arg_len, strlen(c->arg));
            assert_memory_equal(cmd.arg, c->arg, cmd.arg_len);
            if (cmd.arg_len > 0) /* the argument points into the line */
                assert_true(cmd.arg >= c->line && cmd.arg + cmd.arg_len <= c->line + len);
        } else {
            if (st == NULL)
                fail_msg("case %zu \"%s\": accepted", i, c->line);
            assert_int_equal(st->code, c->code);
            assert_string_equal(st->enh, c->enh);
            assert_non_null(st->text);
            assert_int_equal(cmd.verb, SMTP_VERB_UNKNOWN);
        }
    }
}

struct bdat_case {
    const char *arg;
    bool ok;
    uint64_t size;
    bool last;
};

static const struct bdat_case bdat_cases[] = {
    {"0", true, 0, false},
    {"100", true, 100, false},
    {"100 LAST", true, 100, true},
    {"0 LAST", true, 0, true},
    {"100 last", true, 100, true},
    {"  7   LAST  ", true, 7, true},
    {"18446744073709551615", true, UINT64_MAX, false},
    {"18446744073709551616", false, 0, false},
    {"99999999999999999999999", false, 0, false},
    {"-5", false, 0, false},
    {"+5", false, 0, false},
    {"", false, 0, false},
    {"LAST", false, 0, false},
    {"10 LAST x", false, 0, false},
    {"10 LASTX", false, 0, false},
    {"10 FIRST", false, 0, false},
    {"0x10", false, 0, false},
    {"1e3", false, 0, false},
    {"10\tLAST", false, 0, false},
};

static void test_bdat_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(bdat_cases); i++) {
        const struct bdat_case *c = &bdat_cases[i];
        uint64_t size = 42;
        bool last = true;
        const struct smtp_status *st = smtp_bdat_parse(c->arg, strlen(c->arg), &size, &last);
        if (c->ok) {
            if (st != NULL)
                fail_msg("bdat case %zu \"%s\": refused", i, c->arg);
            assert_true(size == c->size);
            assert_int_equal(last, c->last);
        } else {
            if (st == NULL)
                fail_msg("bdat case %zu \"%s\": accepted", i, c->arg);
            assert_int_equal(st->code, 501);
            assert_string_equal(st->enh, "5.5.4");
        }
    }
}

struct fmt_case {
    int code;
    const char *enh;
    const char *text;
    const char *want;
};

static const struct fmt_case fmt_cases[] = {
    {250, "2.0.0", "OK", "250 2.0.0 OK\r\n"},
    {250, NULL, "OK", "250 OK\r\n"},
    {250, "", "OK", "250 OK\r\n"},
    {221, "2.0.0", "", "221 2.0.0\r\n"},
    {250, "2.0.0", "mx.example\nPIPELINING\nSIZE 10240000",
     "250-2.0.0 mx.example\r\n250-2.0.0 PIPELINING\r\n250 2.0.0 SIZE 10240000\r\n"},
    {250, NULL, "a\nb", "250-a\r\n250 b\r\n"},
    {250, "2.0.0", "trailing newline\n", "250 2.0.0 trailing newline\r\n"},
    {500, "5.5.2", "bad\rcr", "500 5.5.2 bad cr\r\n"},
    {500, "5.5.2", "nul\x01", "500 5.5.2 nul \r\n"},
    {550, "not-a-code", "x", "550 x\r\n"},
};

static void test_reply_format(void **state)
{
    (void)state;
    char buf[2048];
    for (size_t i = 0; i < N(fmt_cases); i++) {
        const struct fmt_case *c = &fmt_cases[i];
        size_t n = smtp_reply_format(buf, sizeof buf, c->code, c->enh, c->text);
        assert_int_equal(n, strlen(c->want));
        assert_string_equal(buf, c->want);
    }
}

static void test_reply_format_long(void **state)
{
    (void)state;
    char text[1200], buf[2048];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    text[600] = '\n';
    size_t n = smtp_reply_format(buf, sizeof buf, 250, "2.0.0", text);
    /* two lines, each cut to 510 octets plus CRLF */
    assert_int_equal(n, 2 * 512);
    assert_memory_equal(buf, "250-2.0.0 xxx", 13);
    assert_memory_equal(buf + 510, "\r\n250 2.0.0 xxx", 15);
    assert_memory_equal(buf + 1022, "\r\n", 2);

    /* a small buffer: only whole lines, and the last one written ends the reply */
    n = smtp_reply_format(buf, 25, 250, "2.0.0", "one\ntwo\nthree");
    assert_string_equal(buf, "250 2.0.0 one\r\n");
    assert_int_equal(n, 15);
    /* nothing fits whole: the first line is cut */
    n = smtp_reply_format(buf, 10, 250, "2.0.0", "hello");
    assert_string_equal(buf, "250 2.0\r\n");
    assert_int_equal(n, 9);
    assert_int_equal(smtp_reply_format(buf, 3, 250, "2.0.0", "hello"), 0);
    assert_int_equal(smtp_reply_format(buf, 0, 250, "2.0.0", "hello"), 0);
}

struct rl_case {
    const char *line;
    bool ok;
    int code;
    bool last;
    const char *text;
};

static const struct rl_case rl_cases[] = {
    {"250 OK", true, 250, true, "OK"},
    {"250-mx.example", true, 250, false, "mx.example"},
    {"250", true, 250, true, ""},
    {"220 mx.example ESMTP\r\n", true, 220, true, "mx.example ESMTP"},
    {"421 4.3.2 shutting down", true, 421, true, "4.3.2 shutting down"},
    {"554-", true, 554, false, ""},
    {"25", false, 0, false, NULL},
    {"2500 x", false, 0, false, NULL},
    {"abc def", false, 0, false, NULL},
    {"650 x", false, 0, false, NULL},
    {"150 x", false, 0, false, NULL},
    {"250_x", false, 0, false, NULL},
    {"250 a\rb", false, 0, false, NULL},
    {"", false, 0, false, NULL},
};

static void test_reply_line_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(rl_cases); i++) {
        const struct rl_case *c = &rl_cases[i];
        int code = 0;
        bool last = false;
        const char *text = NULL;
        size_t len = strlen(c->line);
        bool ok = smtp_reply_line_parse(c->line, len, &code, &last, &text);
        if (ok != c->ok)
            fail_msg("reply case %zu \"%s\": got %d", i, c->line, ok);
        if (!ok)
            continue;
        assert_int_equal(code, c->code);
        assert_int_equal(last, c->last);
        size_t tl = strlen(c->text);
        assert_memory_equal(text, c->text, tl);
    }
}

/* Every prefix of some lines, in an exact-size heap buffer (run under ASan). */
static void test_prefixes(void **state)
{
    (void)state;
    static const char *full[] = {"MAIL FROM:<a@b> SIZE=1  ", "BDAT 100 LAST ", "250-2.0.0 ok"};
    for (size_t i = 0; i < N(full); i++) {
        size_t n = strlen(full[i]);
        for (size_t k = 0; k <= n; k++) {
            char *buf = malloc(k ? k : 1);
            assert_non_null(buf);
            memcpy(buf, full[i], k);
            struct smtp_cmd cmd;
            uint64_t size;
            bool last;
            int code;
            const char *text;
            (void)smtp_cmd_parse(buf, k, &cmd);
            (void)smtp_bdat_parse(buf, k, &size, &last);
            (void)smtp_reply_line_parse(buf, k, &code, &last, &text);
            free(buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_table),        cmocka_unit_test(test_bdat_table),
        cmocka_unit_test(test_reply_format),     cmocka_unit_test(test_reply_format_long),
        cmocka_unit_test(test_reply_line_parse), cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
