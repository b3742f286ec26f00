/*
 * test_reply - unit tests of the client side of src/smtp/: the reply parser
 * (reply.c), EHLO keywords and the MAIL/RCPT formatters with xtext (ehlo.c).
 * Table-driven: each reply row is a list of lines and the expected outcome.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/client.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------
 * Replies
 */
struct reply_case {
    const char *lines[6]; /* NULL-terminated */
    enum smtp_reply_step last_step;
    int code;
    const char *enh;
    const char *text;
    const char *status; /* smtp_reply_status */
};

static const struct reply_case reply_cases[] = {
    {{"250 OK", NULL}, SMTP_REPLY_DONE, 250, "", "OK", "2.0.0"},
    {{"250", NULL}, SMTP_REPLY_DONE, 250, "", "", "2.0.0"},
    {{"250 ", NULL}, SMTP_REPLY_DONE, 250, "", "", "2.0.0"},
    {{"220 mx.example ESMTP", NULL}, SMTP_REPLY_DONE, 220, "", "mx.example ESMTP", "2.0.0"},
    {{"250 2.1.0 Ok", NULL}, SMTP_REPLY_DONE, 250, "2.1.0", "Ok", "2.1.0"},
    {{"550 5.1.1 <a@b>: Recipient address rejected", NULL},
     SMTP_REPLY_DONE,
     550,
     "5.1.1",
     "<a@b>: Recipient address rejected",
     "5.1.1"},
    {{"550 5.1.1", NULL}, SMTP_REPLY_DONE, 550, "5.1.1", "", "5.1.1"},
    {{"451 4.3.0 Try later", NULL}, SMTP_REPLY_DONE, 451, "4.3.0", "Try later", "4.3.0"},
    {{"554 5.123.999 x", NULL}, SMTP_REPLY_DONE, 554, "5.123.999", "x", "5.123.999"},
    /* enhanced code syntax and class */
    {{"550 4.1.1 wrong class", NULL}, SMTP_REPLY_DONE, 550, "", "4.1.1 wrong class", "5.0.0"},
    {{"550 5.01.1 leading zero", NULL}, SMTP_REPLY_DONE, 550, "", "5.01.1 leading zero", "5.0.0"},
    {{"550 5.1234.1 x", NULL}, SMTP_REPLY_DONE, 550, "", "5.1234.1 x", "5.0.0"},
    {{"550 5.1 x", NULL}, SMTP_REPLY_DONE, 550, "", "5.1 x", "5.0.0"},
    {{"550 3.1.1 x", NULL}, SMTP_REPLY_DONE, 550, "", "3.1.1 x", "5.0.0"},
    {{"550 5.1.1x y", NULL}, SMTP_REPLY_DONE, 550, "", "5.1.1x y", "5.0.0"},
    {{"550 5.0.0 ok", NULL}, SMTP_REPLY_DONE, 550, "5.0.0", "ok", "5.0.0"},
    /* multi-line */
    {{"250-mx.example", "250-PIPELINING", "250 SIZE 1000", NULL},
     SMTP_REPLY_DONE,
     250,
     "",
     "mx.example\nPIPELINING\nSIZE 1000",
     "2.0.0"},
    {{"550-5.7.1 first", "550-5.7.1 second", "550 5.7.1 third", NULL},
     SMTP_REPLY_DONE,
     550,
     "5.7.1",
     "first\nsecond\nthird",
     "5.7.1"},
    {{"550-5.7.1 first", "550-5.7.2 other code kept", "550 last", NULL},
     SMTP_REPLY_DONE,
     550,
     "5.7.1",
     "first\n5.7.2 other code kept\nlast",
     "5.7.1"},
    {{"250-first", "250", NULL}, SMTP_REPLY_DONE, 250, "", "first\n", "2.0.0"},
    {{"250-first", NULL}, SMTP_REPLY_MORE, 250, "", "first", "4.5.0"},
    /* control characters become spaces; 8-bit is kept */
    {{"550 bad\rthing\tx", NULL}, SMTP_REPLY_DONE, 550, "", "bad thing x", "5.0.0"},
    {{"550 caf\xc3\xa9", NULL}, SMTP_REPLY_DONE, 550, "", "caf\xc3\xa9", "5.0.0"},
    /* malformed */
    {{"25", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"150 preliminary", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"650 no", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"050 no", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"2a0 no", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"250x", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"2500 OK", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"250_OK", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"HTTP/1.1 400 Bad", NULL}, SMTP_REPLY_MALFORMED, 0, "", "", "4.5.0"},
    {{"250-a", "251 b", NULL}, SMTP_REPLY_MALFORMED, 250, "", "a", "4.5.0"},
    {{"250-a", "550 b", NULL}, SMTP_REPLY_MALFORMED, 250, "", "a", "4.5.0"},
    {{"250-a", "250xb", NULL}, SMTP_REPLY_MALFORMED, 250, "", "a", "4.5.0"},
    {{"250 a", "250 b", NULL}, SMTP_REPLY_MALFORMED, 250, "", "a", "4.5.0"},
};

static enum smtp_reply_step feed_all(struct smtp_reply *r, const char *const *lines)
{
    enum smtp_reply_step st = SMTP_REPLY_MORE;
    smtp_reply_init(r);
    for (size_t i = 0; lines[i] != NULL; i++) {
        st = smtp_reply_feed(r, lines[i], strlen(lines[i]));
        if (st == SMTP_REPLY_MALFORMED)
            break;
    }
    return st;
}

static void test_reply_table(void **state)
{
    (void)state;
    static struct smtp_reply r;
    for (size_t i = 0; i < N(reply_cases); i++) {
        const struct reply_case *c = &reply_cases[i];
        enum smtp_reply_step st = feed_all(&r, c->lines);
        if (st != c->last_step)
            fail_msg("case %zu (%s): step %d, want %d", i, c->lines[0], st, c->last_step);
        assert_int_equal(r.code, c->code);
        if (strcmp(r.enh, c->enh) != 0)
            fail_msg("case %zu: enh '%s', want '%s'", i, r.enh, c->enh);
        if (strcmp(r.text, c->text) != 0)
            fail_msg("case %zu: text '%s', want '%s'", i, r.text, c->text);
        assert_int_equal(r.text_len, strlen(r.text));
        char st_code[SMTP_ENH_MAX];
        smtp_reply_status(&r, st_code);
        if (strcmp(st_code, c->status) != 0)
            fail_msg("case %zu: status '%s', want '%s'", i, st_code, c->status);
        assert_int_equal(r.malformed, st == SMTP_REPLY_MALFORMED);
    }
}

static void test_reply_limits(void **state)
{
    (void)state;
    static struct smtp_reply r;
    char line[SMTP_REPLY_LINE_MAX + 2];

    /* a line of exactly SMTP_REPLY_LINE_MAX octets is fine; one more is not */
    memset(line, 'x', sizeof line);
    memcpy(line, "250 ", 4);
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX), SMTP_REPLY_DONE);
    assert_int_equal(r.text_len, SMTP_REPLY_LINE_MAX - 4);
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX + 1), SMTP_REPLY_MALFORMED);
    assert_true(r.malformed);
    /* sticky */
    assert_int_equal(smtp_reply_feed(&r, "250 ok", 6), SMTP_REPLY_MALFORMED);

    /* 64 lines are fine, the 65th is malformed */
    smtp_reply_init(&r);
    for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        assert_int_equal(smtp_reply_feed(&r, "250-line", 8), SMTP_REPLY_MORE);
    assert_int_equal(smtp_reply_feed(&r, "250 end", 7), SMTP_REPLY_DONE);
    assert_int_equal(r.lines, SMTP_REPLY_LINES_MAX);
    smtp_reply_init(&r);
    for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
        assert_int_equal(smtp_reply_feed(&r, "250-line", 8), SMTP_REPLY_MORE);
    assert_int_equal(smtp_reply_feed(&r, "250 end", 7), SMTP_REPLY_MALFORMED);

    /* feeding after DONE is malformed */
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, "250 ok", 6), SMTP_REPLY_DONE);
    assert_int_equal(smtp_reply_feed(&r, "250 ok", 6), SMTP_REPLY_MALFORMED);

    /* text over 4 KiB is cut, and not inside a UTF-8 character */
    smtp_reply_init(&r);
    memset(line, 'a', sizeof line);
    memcpy(line, "550-a", 5); /* then 250 two-octet characters: one is cut at 4096 */
    for (size_t k = 5; k + 1 < 505; k += 2) {
        line[k] = (char)0xc3;
        line[k + 1] = (char)0xa9;
    }
    size_t fed = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(smtp_reply_feed(&r, line, 505), SMTP_REPLY_MORE);
        fed += 501 + (size_t)(i > 0);
    }
    assert_int_equal(smtp_reply_feed(&r, "550 end", 7), SMTP_REPLY_DONE);
    assert_true(fed > SMTP_REPLY_TEXT_MAX);
    assert_true(r.truncated);
    assert_true(r.text_len <= SMTP_REPLY_TEXT_MAX);
    assert_int_equal(r.text[r.text_len], '\0');
    /* the last octet is not a lone lead octet or an unfinished sequence */
    unsigned char lastc = (unsigned char)r.text[r.text_len - 1];
    assert_true(lastc < 0xc0);
    if (lastc >= 0x80)
        assert_int_equal((unsigned char)r.text[r.text_len - 2], 0xc3);
}

static void test_reply_nul(void **state)
{
    (void)state;
    static struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(smtp_reply_feed(&r, "550 a\0b", 7), SMTP_REPLY_DONE);
    assert_string_equal(r.text, "a b");
}

static void test_reply_describe(void **state)
{
    (void)state;
    static struct smtp_reply r;
    char d[64];
    const char *l[] = {"550-5.1.1 no such", "550 5.1.1 user", NULL};
    assert_int_equal(feed_all(&r, l), SMTP_REPLY_DONE);
    size_t n = smtp_reply_describe(&r, d, sizeof d);
    assert_string_equal(d, "550 5.1.1 no such\nuser");
    assert_int_equal(n, strlen(d));
    n = smtp_reply_describe(&r, d, 6);
    assert_string_equal(d, "550 5");
    const char *l2[] = {"250", NULL};
    feed_all(&r, l2);
    smtp_reply_describe(&r, d, sizeof d);
    assert_string_equal(d, "250");
    assert_int_equal(smtp_reply_describe(&r, d, 0), 0);
}

static void test_outcome(void **state)
{
    (void)state;
    assert_int_equal(smtp_reply_outcome(250), SMTP_OUTCOME_OK);
    assert_int_equal(smtp_reply_outcome(221), SMTP_OUTCOME_OK);
    assert_int_equal(smtp_reply_outcome(354), SMTP_OUTCOME_CONTINUE);
    assert_int_equal(smtp_reply_outcome(421), SMTP_OUTCOME_DEFER);
    assert_int_equal(smtp_reply_outcome(452), SMTP_OUTCOME_DEFER);
    assert_int_equal(smtp_reply_outcome(550), SMTP_OUTCOME_BOUNCE);
    assert_int_equal(smtp_reply_outcome(0), SMTP_OUTCOME_DEFER);
    assert_int_equal(smtp_reply_outcome(600), SMTP_OUTCOME_DEFER);
    assert_int_equal(smtp_reply_outcome(199), SMTP_OUTCOME_DEFER);
}

static void test_enh_valid(void **state)
{
    (void)state;
    const char *good[] = {"2.0.0", "4.4.1", "5.7.1", "5.123.456", "5.0.10"};
    const char *bad[] = {"",      "5",       "5.",     "5.1",    "5.1.",     "1.1.1",
                         "3.1.1", "6.0.0",   "5.01.1", "5.1.01", "5.1234.1", "5.1.1234",
                         "5..1",  "5.1.1.1", "x.1.1",  "5.a.1"};
    for (size_t i = 0; i < N(good); i++)
        if (!smtp_enh_valid(good[i], strlen(good[i])))
            fail_msg("%s should be valid", good[i]);
    for (size_t i = 0; i < N(bad); i++)
        if (smtp_enh_valid(bad[i], strlen(bad[i])))
            fail_msg("%s should be invalid", bad[i]);
}

/* ---------------------------------------------------------------------
 * EHLO
 */
static void ehlo(const char *const *lines, struct smtp_peer_ext *ext)
{
    static struct smtp_reply r;
    feed_all(&r, lines);
    smtp_ehlo_parse(&r, ext);
}

static void test_ehlo(void **state)
{
    (void)state;
    struct smtp_peer_ext e;
    const char *full[] = {"250-mx.example Hello client [192.0.2.1]",
                          "250-PIPELINING",
                          "250-SIZE 52428800",
                          "250-8BITMIME",
                          "250-SMTPUTF8",
                          "250-STARTTLS",
                          "250-chunking",
                          "250-Dsn",
                          "250-ENHANCEDSTATUSCODES",
                          "250-AUTH PLAIN LOGIN CRAM-MD5",
                          "250 X-FOO bar",
                          NULL};
    /* only 6 lines fit the table struct; feed the long list by hand */
    static struct smtp_reply r;
    smtp_reply_init(&r);
    for (size_t i = 0; full[i] != NULL; i++)
        smtp_reply_feed(&r, full[i], strlen(full[i]));
    smtp_ehlo_parse(&r, &e);
    assert_true(e.pipelining && e.size && e.eightbitmime && e.smtputf8 && e.starttls &&
                e.chunking && e.dsn && e.enhancedstatuscodes);
    assert_int_equal(e.size_max, 52428800);
    assert_int_equal(e.auth, SMTP_AUTH_MECH_PLAIN | SMTP_AUTH_MECH_LOGIN);

    /* the greeting line is not a keyword; SIZE without a value; AUTH= form */
    const char *l2[] = {"250-PIPELINING", "250-SIZE", "250-AUTH=LOGIN", "250 AUTH CRAM-MD5", NULL};
    ehlo(l2, &e);
    assert_false(e.pipelining);
    assert_true(e.size);
    assert_int_equal(e.size_max, 0);
    assert_int_equal(e.auth, SMTP_AUTH_MECH_LOGIN);

    /* junk and near-miss keywords are ignored; SIZE junk and overflow */
    const char *l3[] = {"250-x",
                        "250-PIPELININGX",
                        "250-8BITMIME=yes",
                        "250-  STARTTLS  ",
                        "250-SIZE 99999999999999999999999",
                        "250 ",
                        NULL};
    ehlo(l3, &e);
    assert_false(e.pipelining);
    assert_false(e.eightbitmime);
    assert_true(e.starttls);
    assert_true(e.size);
    assert_int_equal(e.size_max, UINT64_MAX);
    const char *l4[] = {"250-x", "250 SIZE 12abc", NULL};
    ehlo(l4, &e);
    assert_true(e.size);
    assert_int_equal(e.size_max, 0);

    /* not a 250, malformed or incomplete: nothing */
    const char *l5[] = {"550-x", "550 PIPELINING", NULL};
    ehlo(l5, &e);
    assert_false(e.pipelining);
    const char *l6[] = {"250-x", "250-PIPELINING", NULL};
    ehlo(l6, &e);
    assert_false(e.pipelining);
    const char *l7[] = {"250-x", "250-PIPELINING", "251 DSN", NULL};
    ehlo(l7, &e);
    assert_false(e.pipelining || e.dsn);
}

/* ---------------------------------------------------------------------
 * MAIL, RCPT, xtext
 */
static void test_format_mail(void **state)
{
    (void)state;
    char out[600];
    struct smtp_peer_ext none = {0}, all = {0};
    all.size = all.eightbitmime = all.smtputf8 = all.dsn = true;

    assert_int_equal(smtp_format_mail(out, sizeof out, "a@b.example", &none, 123, true, true,
                                      SMTP_RET_FULL, "ID+2B1"),
                     (long)strlen("MAIL FROM:<a@b.example>\r\n"));
    assert_string_equal(out, "MAIL FROM:<a@b.example>\r\n");
    smtp_format_mail(out, sizeof out, "a@b.example", NULL, 123, true, true, SMTP_RET_FULL, NULL);
    assert_string_equal(out, "MAIL FROM:<a@b.example>\r\n");

    smtp_format_mail(out, sizeof out, "a@b.example", &all, 123, true, true, SMTP_RET_HDRS,
                     "ID+2B1");
    assert_string_equal(
        out, "MAIL FROM:<a@b.example> SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=ID+2B1\r\n");
    smtp_format_mail(out, sizeof out, "", &all, 0, false, false, SMTP_RET_NONE, NULL);
    assert_string_equal(out, "MAIL FROM:<> SIZE=0\r\n");
    smtp_format_mail(out, sizeof out, "a@b", &all, 18446744073709551615u, false, false,
                     SMTP_RET_FULL, NULL);
    assert_string_equal(out, "MAIL FROM:<a@b> SIZE=18446744073709551615 RET=FULL\r\n");

    /* errors: control characters, bad ENVID, too small */
    assert_int_equal(
        smtp_format_mail(out, sizeof out, "a\r\n@b", &all, 1, false, false, SMTP_RET_NONE, NULL),
        -1);
    assert_int_equal(
        smtp_format_mail(out, sizeof out, "a@b", &all, 1, false, false, SMTP_RET_NONE, "a=b"), -1);
    long n = smtp_format_mail(out, sizeof out, "a@b", &none, 1, false, false, SMTP_RET_NONE, NULL);
    assert_int_equal(
        smtp_format_mail(out, (size_t)n, "a@b", &none, 1, false, false, SMTP_RET_NONE, NULL), -1);
    assert_int_equal(
        smtp_format_mail(out, (size_t)n + 1, "a@b", &none, 1, false, false, SMTP_RET_NONE, NULL),
        n);
    assert_int_equal(smtp_format_mail(out, 0, "a@b", &none, 1, false, false, SMTP_RET_NONE, NULL),
                     -1);
}

static void test_format_rcpt(void **state)
{
    (void)state;
    char out[700];
    struct smtp_peer_ext none = {0}, dsn = {0};
    dsn.dsn = true;

    smtp_format_rcpt(out, sizeof out, "u@d.example", SMTP_NOTIFY_SUCCESS, "rfc822;x@y", &none);
    assert_string_equal(out, "RCPT TO:<u@d.example>\r\n");
    assert_true(smtp_rcpt_needs_relayed_dsn(&none, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE));
    assert_true(smtp_rcpt_needs_relayed_dsn(NULL, SMTP_NOTIFY_SUCCESS));
    assert_false(smtp_rcpt_needs_relayed_dsn(&dsn, SMTP_NOTIFY_SUCCESS));
    assert_false(smtp_rcpt_needs_relayed_dsn(&none, SMTP_NOTIFY_FAILURE));
    assert_false(smtp_rcpt_needs_relayed_dsn(&none, 0));

    smtp_format_rcpt(out, sizeof out, "u@d.example",
                     SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
                     "rfc822;x+2By@y", &dsn);
    assert_string_equal(
        out, "RCPT TO:<u@d.example> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;x+2By@y\r\n");
    smtp_format_rcpt(out, sizeof out, "u@d.example", SMTP_NOTIFY_NEVER, NULL, &dsn);
    assert_string_equal(out, "RCPT TO:<u@d.example> NOTIFY=NEVER ORCPT=rfc822;u@d.example\r\n");
    smtp_format_rcpt(out, sizeof out, "a+b=c@d", SMTP_NOTIFY_DELAY, NULL, &dsn);
    assert_string_equal(out, "RCPT TO:<a+b=c@d> NOTIFY=DELAY ORCPT=rfc822;a+2Bb+3Dc@d\r\n");
    smtp_format_rcpt(out, sizeof out, "\"a b\"@d", 0, NULL, &dsn);
    assert_string_equal(out, "RCPT TO:<\"a b\"@d> ORCPT=rfc822;\"a+20b\"@d\r\n");
    /* a UTF-8 address: no ORCPT built */
    smtp_format_rcpt(out, sizeof out, "j\xc3\xb6rg@d", 0, NULL, &dsn);
    assert_string_equal(out, "RCPT TO:<j\xc3\xb6rg@d>\r\n");

    /* errors */
    assert_int_equal(smtp_format_rcpt(out, sizeof out, "a\n@b", 0, NULL, &dsn), -1);
    assert_int_equal(smtp_format_rcpt(out, sizeof out, "a@b", 0, "rfc822", &dsn), -1);
    assert_int_equal(smtp_format_rcpt(out, sizeof out, "a@b", 0, ";x", &dsn), -1);
    assert_int_equal(smtp_format_rcpt(out, sizeof out, "a@b", 0, "rfc822;a b", &dsn), -1);
    assert_int_equal(smtp_format_rcpt(out, sizeof out, "a@b", 0, "rfc 822;ab", &dsn), -1);
    assert_int_equal(smtp_format_rcpt(out, 10, "a@b", 0, NULL, &dsn), -1);
}

static void test_xtext(void **state)
{
    (void)state;
    char out[64], back[64];
    const char *in[] = {"", "plain@example.com", "a+b=c", "sp ace", "\x01\x7f\xff", "~!"};
    const char *want[] = {"", "plain@example.com", "a+2Bb+3Dc", "sp+20ace", "+01+7F+FF", "~!"};
    for (size_t i = 0; i < N(in); i++) {
        long n = smtp_xtext_encode(in[i], strlen(in[i]), out, sizeof out);
        assert_int_equal(n, (long)strlen(want[i]));
        assert_string_equal(out, want[i]);
        assert_true(smtp_xtext_valid(out, (size_t)n));
        assert_int_equal(smtp_xtext_decode(out, (size_t)n, back, sizeof back), (long)strlen(in[i]));
        assert_string_equal(back, in[i]);
    }
    assert_int_equal(smtp_xtext_encode("a+", 2, out, 4), -1);
    assert_int_equal(smtp_xtext_encode("a+", 2, out, 5), 4);
    assert_int_equal(smtp_xtext_encode("a", 1, out, 1), -1);
    assert_int_equal(smtp_xtext_encode("a", 1, out, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_table), cmocka_unit_test(test_reply_limits),
        cmocka_unit_test(test_reply_nul),   cmocka_unit_test(test_reply_describe),
        cmocka_unit_test(test_outcome),     cmocka_unit_test(test_enh_valid),
        cmocka_unit_test(test_ehlo),        cmocka_unit_test(test_format_mail),
        cmocka_unit_test(test_format_rcpt), cmocka_unit_test(test_xtext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
