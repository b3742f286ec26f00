/*
 * test_logline - unit tests of src/core/logline.c: key=value log messages as
 * JSON objects. Table-driven: each row is a message and the exact object
 * expected (timestamp "T", level "info"); then escaping, the output bound
 * and the too-small buffer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logline.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define HEAD "{\"ts\":\"T\",\"level\":\"info\""

static const struct json_case {
    const char *msg;
    const char *json;
} json_cases[] = {
    {"", HEAD "}"},
    {"   ", HEAD "}"},
    /* fields, in order; every value a string */
    {"sid=00000001 event=connect client=127.0.0.1 listener=mx trusted=no",
     HEAD ",\"sid\":\"00000001\",\"event\":\"connect\",\"client\":\"127.0.0.1\","
          "\"listener\":\"mx\",\"trusted\":\"no\"}"},
    /* qid gives trace; angle brackets dropped */
    {"sid=00000001 qid=000660DC2D4E21B9 event=queued from=<a@b.example> nrcpt=1 size=409 "
     "client=127.0.0.1",
     HEAD ",\"trace\":\"000660DC2D4E21B9\",\"sid\":\"00000001\",\"qid\":\"000660DC2D4E21B9\","
          "\"event\":\"queued\",\"from\":\"a@b.example\",\"nrcpt\":\"1\",\"size\":\"409\","
          "\"client\":\"127.0.0.1\"}"},
    {"event=bounce qid=A bounce_qid=B to=<> nrcpt=1",
     HEAD ",\"trace\":\"A\",\"event\":\"bounce\",\"qid\":\"A\",\"bounce_qid\":\"B\",\"to\":\"\","
          "\"nrcpt\":\"1\"}"},
    /* the delivery line: the parenthesised reply is "text" */
    {"qid=Q to=<demo@example.test> relay=maildir delay=0 dsn=2.0.0 status=sent (delivered to "
     "maildir)",
     HEAD ",\"trace\":\"Q\",\"qid\":\"Q\",\"to\":\"demo@example.test\",\"relay\":\"maildir\","
          "\"delay\":\"0\",\"dsn\":\"2.0.0\",\"status\":\"sent\",\"text\":\"delivered to "
          "maildir\"}"},
    {"qid=Q to=<x@y> relay=maildir delay=3 dsn=4.3.0 status=deferred (disk full) retry_in=60s",
     HEAD ",\"trace\":\"Q\",\"qid\":\"Q\",\"to\":\"x@y\",\"relay\":\"maildir\",\"delay\":\"3\","
          "\"dsn\":\"4.3.0\",\"status\":\"deferred\",\"text\":\"disk full\","
          "\"retry_in\":\"60s\"}"},
    /* a reply with parentheses of its own, nested and unbalanced */
    {"qid=Q to=<x@y> relay=mx1.example.org[192.0.2.25]:25 status=bounced (host "
     "mx1.example.org[192.0.2.25] said: 550 5.1.1 <x@y>: no (such) user (in reply to RCPT TO))",
     HEAD ",\"trace\":\"Q\",\"qid\":\"Q\",\"to\":\"x@y\","
          "\"relay\":\"mx1.example.org[192.0.2.25]:25\",\"status\":\"bounced\",\"text\":\"host "
          "mx1.example.org[192.0.2.25] said: 550 5.1.1 <x@y>: no (such) user (in reply to RCPT "
          "TO)\"}"},
    {"status=bounced (said: 550 :-) go away) retry=1",
     HEAD ",\"status\":\"bounced\",\"text\":\"said: 550 :-) go away\",\"retry\":\"1\"}"},
    {"status=x (a ( b) c=d", HEAD ",\"status\":\"x\",\"text\":\"a ( b\",\"c\":\"d\"}"},
    {"status=x (no end", HEAD ",\"status\":\"x\",\"text\":\"no end\"}"},
    {"(a) (b)", HEAD ",\"text\":\"a\",\"text_2\":\"b\"}"},
    /* quoted values: no escapes in the text form; a quote inside stays */
    {"sid=1 event=reject client=1.2.3.4 cmd=RCPT reply=\"550 5.1.1 <x@y>: no such user\"",
     HEAD ",\"sid\":\"1\",\"event\":\"reject\",\"client\":\"1.2.3.4\",\"cmd\":\"RCPT\","
          "\"reply\":\"550 5.1.1 <x@y>: no such user\"}"},
    {"reason=\"say \"hi\" now\" next=1", HEAD ",\"reason\":\"say \\\"hi\\\" now\",\"next\":\"1\"}"},
    {"reason=\"a\" b\" c", HEAD ",\"reason\":\"a\",\"msg\":\"b\\\" c\"}"},
    {"reason=\"unterminated value", HEAD ",\"reason\":\"unterminated value\"}"},
    {"reason=\"\"", HEAD ",\"reason\":\"\"}"},
    {"a= b=", HEAD ",\"a\":\"\",\"b\":\"\"}"},
    /* angle brackets: to the '>' before a space or the end */
    {"from=<\"john doe\"@example> x=1", HEAD ",\"from\":\"\\\"john doe\\\"@example\",\"x\":\"1\"}"},
    {"from=<no-end x=1", HEAD ",\"from\":\"<no-end\",\"x\":\"1\"}"},
    /* bare words go to msg */
    {"qid=Q event=relay_state A_EHLO -> A_MAIL",
     HEAD ",\"trace\":\"Q\",\"qid\":\"Q\",\"event\":\"relay_state\",\"msg\":\"A_EHLO -> "
          "A_MAIL\"}"},
    {"=x <y> z", HEAD ",\"msg\":\"=x <y> z\"}"},
    /* reserved and repeated names */
    {"ts=1 level=2 trace=3 msg=4 a=5 a=6 a=7",
     HEAD ",\"ts_2\":\"1\",\"level_2\":\"2\",\"trace_2\":\"3\",\"msg_2\":\"4\",\"a\":\"5\","
          "\"a_2\":\"6\",\"a_3\":\"7\"}"},
    {"text=a (b)", HEAD ",\"text\":\"a\",\"text_2\":\"b\"}"},
    /* trace: the first qid, when not empty */
    {"qid= x=1", HEAD ",\"qid\":\"\",\"x\":\"1\"}"},
    {"qid=A qid=B", HEAD ",\"trace\":\"A\",\"qid\":\"A\",\"qid_2\":\"B\"}"},
    /* keys may hold '.', '-', digits */
    {"a.b-c_9=v", HEAD ",\"a.b-c_9\":\"v\"}"},
};

static void test_json_table(void **state)
{
    (void)state;
    char out[4096];
    for (size_t i = 0; i < N(json_cases); i++) {
        const struct json_case *c = &json_cases[i];
        size_t n = logline_json("T", "info", c->msg, strlen(c->msg), out, sizeof out);
        if (n == 0 || strcmp(out, c->json) != 0 || n != strlen(out))
            fail_msg("case %zu: \"%s\"\n got: %s\nwant: %s", i, c->msg, out, c->json);
    }
}

static const struct esc_case {
    const char *msg;
    size_t len; /* 0: strlen */
    const char *value;
} esc_cases[] = {
    {"v=a\\b", 0, "a\\\\b"},
    {"v=a\tb", 0, "a\\tb"},
    {"v=a\rb", 0, "a\\rb"},
    {"v=a\nb", 0, "a\\nb"},
    {"v=a\x01\x1f\x7f", 0, "a\\u0001\\u001f\\u007f"},
    {"v=a\0b", 5, "a\\u0000b"},
    /* well-formed UTF-8 is copied */
    {"v=j\xc3\xb6rg\xe2\x82\xac\xf0\x9f\x98\x80", 0, "j\xc3\xb6rg\xe2\x82\xac\xf0\x9f\x98\x80"},
    /* anything else is U+FFFD, one per octet */
    {"v=\xff", 0, "\\ufffd"},
    {"v=\xc3", 0, "\\ufffd"},
    {"v=\xc3(", 0, "\\ufffd("},
    {"v=\xc0\xaf", 0, "\\ufffd\\ufffd"},                       /* overlong '/' */
    {"v=\xed\xa0\x80", 0, "\\ufffd\\ufffd\\ufffd"},            /* surrogate D800 */
    {"v=\xf4\x90\x80\x80", 0, "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* past U+10FFFF */
    {"v=\xe2\x82", 0, "\\ufffd\\ufffd"},                       /* cut short */
};

static void test_escapes(void **state)
{
    (void)state;
    char out[512], want[512];
    for (size_t i = 0; i < N(esc_cases); i++) {
        const struct esc_case *c = &esc_cases[i];
        size_t len = c->len ? c->len : strlen(c->msg);
        logline_json("T", "info", c->msg, len, out, sizeof out);
        snprintf(want, sizeof want, HEAD ",\"v\":\"%s\"}", c->value);
        if (strcmp(out, want) != 0)
            fail_msg("case %zu:\n got: %s\nwant: %s", i, out, want);
    }
    /* ts and level are escaped too */
    logline_json("a\"b", "x\\y", "", 0, out, sizeof out);
    assert_string_equal(out, "{\"ts\":\"a\\\"b\",\"level\":\"x\\\\y\"}");
}

/* LOGLINE_JSON_MAX suffices for the worst inputs; a smaller buffer gives 0 and "". */
static void test_bound(void **state)
{
    (void)state;
    static const char *const units[] = {"\x01", "a= ", "() ", "qid=\x01", "\xff", "a=\"\x01\" ",
                                        "x ",   "(",   "=",   "a=b ",     "a=< "};
    const size_t len = 3000;
    char *msg = malloc(len);
    assert_non_null(msg);
    for (size_t u = 0; u < N(units); u++) {
        for (size_t i = 0; i < len; i++)
            msg[i] = units[u][i % strlen(units[u])];
        size_t cap = LOGLINE_JSON_MAX(len, 1, 4);
        char *out = malloc(cap);
        assert_non_null(out);
        size_t n = logline_json("T", "info", msg, len, out, cap);
        if (n == 0 || n >= cap || strlen(out) != n)
            fail_msg("unit %zu: %zu octets in %zu", u, n, cap);
        /* one octet short of what was needed: refused, not cut */
        size_t m = logline_json("T", "info", msg, len, out, n);
        assert_int_equal(m, 0);
        assert_string_equal(out, "");
        free(out);
    }
    free(msg);
    char tiny[1];
    assert_int_equal(logline_json("T", "info", "a=b", 3, tiny, 1), 0);
    assert_int_equal(logline_json("T", "info", "a=b", 3, tiny, 0), 0);
}

/* More distinct names than the table holds: the names stay unique (the rest
   are counted by scanning). */
static void test_many_names(void **state)
{
    (void)state;
    const size_t nkeys = 2000;
    size_t cap = nkeys * 12 + 64, len = 0;
    char *msg = malloc(cap);
    assert_non_null(msg);
    for (size_t i = 0; i < nkeys; i++)
        len += (size_t)snprintf(msg + len, cap - len, "k%zu=%zu ", i, i);
    len += (size_t)snprintf(msg + len, cap - len, "k5=again k1999=again (t) text=x k5=third");
    size_t ocap = LOGLINE_JSON_MAX(len, 1, 4);
    char *out = malloc(ocap);
    assert_non_null(out);
    assert_true(logline_json("T", "info", msg, len, out, ocap) > 0);
    assert_non_null(strstr(out, ",\"k0\":\"0\","));
    assert_non_null(strstr(out, ",\"k1999\":\"1999\","));
    assert_non_null(strstr(out, ",\"k5_2\":\"again\",\"k1999_2\":\"again\",\"text\":\"t\","
                                "\"text_2\":\"x\",\"k5_3\":\"third\"}"));
    assert_null(strstr(out, "\"k5\":\"again\""));
    free(out);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_table),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_many_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
