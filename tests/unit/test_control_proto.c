/*
 * test_control_proto - unit tests of the control protocol's pure code
 * (src/control/proto.c): line framing and its limit, request validation
 * (JSON syntax, UTF-8, duplicates, depth, shape, command names), argument
 * checks, queue ids, selectors and their matching, the JSON of a message
 * with text that is not UTF-8, base64 and durations. Table-driven.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Table rows leave trailing fields out (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/proto.h"
#include "core/util.h"
#include "smtp/smtp.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_frame(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t max;
        enum proto_frame want;
        size_t linelen, consumed;
    } cases[] = {
        {"{}\n", 100, PROTO_FRAME_LINE, 2, 3},
        {"{}\r\n", 100, PROTO_FRAME_LINE, 2, 4},
        {"{}\r\nmore", 100, PROTO_FRAME_LINE, 2, 4},
        {"\n", 100, PROTO_FRAME_LINE, 0, 1},
        {"\r\n", 100, PROTO_FRAME_LINE, 0, 2},
        {"{\"cmd\":", 100, PROTO_FRAME_MORE, 0, 0},
        {"", 100, PROTO_FRAME_MORE, 0, 0},
        {"abcd", 4, PROTO_FRAME_TOO_LONG, 0, 0},   /* max octets and no LF */
        {"abc\n", 4, PROTO_FRAME_LINE, 3, 4},      /* exactly max with its LF */
        {"abcd\n", 4, PROTO_FRAME_TOO_LONG, 0, 0}, /* the LF is past max */
        {"abc", 4, PROTO_FRAME_MORE, 0, 0},
        {"a\rb\n", 10, PROTO_FRAME_LINE, 3, 4}, /* a CR inside is data */
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t linelen = 0, consumed = 0;
        enum proto_frame r = proto_frame((const uint8_t *)cases[i].in, strlen(cases[i].in),
                                         cases[i].max, &linelen, &consumed);
        if (r != cases[i].want)
            fail_msg("case %zu: %d, want %d", i, r, cases[i].want);
        if (r == PROTO_FRAME_LINE) {
            assert_int_equal(linelen, cases[i].linelen);
            assert_int_equal(consumed, cases[i].consumed);
        }
    }
    /* the protocol's own limit */
    char *big = xmalloc(PROTO_LINE_MAX + 1);
    memset(big, 'x', PROTO_LINE_MAX + 1);
    size_t l, c;
    assert_int_equal(proto_frame((uint8_t *)big, PROTO_LINE_MAX, PROTO_LINE_MAX, &l, &c),
                     PROTO_FRAME_TOO_LONG);
    big[PROTO_LINE_MAX - 1] = '\n';
    assert_int_equal(proto_frame((uint8_t *)big, PROTO_LINE_MAX + 1, PROTO_LINE_MAX, &l, &c),
                     PROTO_FRAME_LINE);
    assert_int_equal(l, PROTO_LINE_MAX - 1);
    free(big);
}

static void test_request(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;      /* 0: strlen */
        const char *cmd; /* NULL: refused */
        const char *err; /* substring of the error */
        size_t nargs;
    } cases[] = {
        {"{\"cmd\":\"queue.list\"}", 0, "queue.list", NULL, 0},
        {"{\"cmd\":\"queue.list\",\"args\":{}}", 0, "queue.list", NULL, 0},
        {"{\"args\":{\"all\":true},\"cmd\":\"queue.delete\"}", 0, "queue.delete", NULL, 1},
        {" { \"cmd\" : \"ping\" } ", 0, "ping", NULL, 0},
        {"{\"cmd\":\"submit_2\"}", 0, "submit_2", NULL, 0},
        /* syntax */
        {"", 0, NULL, "empty"},
        {"{", 0, NULL, "invalid JSON"},
        {"{\"cmd\":\"ping\"} x", 0, NULL, "invalid JSON"},
        {"{\"cmd\":\"ping\"}{}", 0, NULL, "invalid JSON"},
        {"{'cmd':'ping'}", 0, NULL, "invalid JSON"},
        {"{\"cmd\":\"ping\",}", 0, NULL, "invalid JSON"},
        {"{\"cmd\":\"p\\u0000ng\"}", 0, NULL, "invalid JSON"},      /* NUL escape */
        {"{\"cmd\":\"p\xffng\"}", 0, NULL, "invalid JSON"},         /* not UTF-8 */
        {"{\"cmd\":\"p\xc0\xafng\"}", 0, NULL, "invalid JSON"},     /* overlong */
        {"{\"cmd\":\"ping\"}\0", 15, NULL, "invalid JSON"},         /* a NUL octet */
        {"{\"cmd\":\"a\",\"cmd\":\"b\"}", 0, NULL, "invalid JSON"}, /* duplicate */
        /* shape */
        {"[]", 0, NULL, "a request is a JSON object"},
        {"\"ping\"", 0, NULL, "invalid JSON"},
        {"{}", 0, NULL, "\"cmd\" must be a string"},
        {"{\"cmd\":7}", 0, NULL, "\"cmd\" must be a string"},
        {"{\"cmd\":\"\"}", 0, NULL, "1 to 31"},
        {"{\"cmd\":\"abcdefghijklmnopqrstuvwxyz012345\"}", 0, NULL, "1 to 31"},
        {"{\"cmd\":\"Queue.List\"}", 0, NULL, "a-z"},
        {"{\"cmd\":\"queue list\"}", 0, NULL, "a-z"},
        {"{\"cmd\":\"ping\",\"args\":[]}", 0, NULL, "\"args\" must be an object"},
        {"{\"cmd\":\"ping\",\"args\":null}", 0, NULL, "\"args\" must be an object"},
        {"{\"cmd\":\"ping\",\"id\":1}", 0, NULL, "unknown request member \"id\""},
        /* depth */
        {"{\"cmd\":\"x\",\"args\":{\"a\":[[[[[[[1]]]]]]]}}", 0, NULL, "nested deeper"},
        {"{\"cmd\":\"x\",\"args\":{\"a\":[[[[[[1]]]]]]}}", 0, "x", NULL, 1}, /* 8 deep */
        {"{\"cmd\":\"x\",\"args\":{\"a\":\"[[[[[[[[[[\"}}", 0, "x", NULL, 1},
        {"{\"cmd\":\"x\",\"args\":{\"a\":\"\\\"[[[[[[[[[[\"}}", 0, "x", NULL, 1},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct proto_request req;
        char err[200] = "";
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        int r = proto_request_parse(cases[i].in, len, &req, err, sizeof err);
        if (cases[i].cmd) {
            if (r != 0)
                fail_msg("case %zu (%s): refused: %s", i, cases[i].in, err);
            assert_string_equal(req.cmd, cases[i].cmd);
            assert_true(json_is_object(req.args));
            assert_int_equal(json_object_size(req.args), cases[i].nargs);
            proto_request_free(&req);
        } else {
            if (r == 0)
                fail_msg("case %zu (%s): accepted", i, cases[i].in);
            if (!strstr(err, cases[i].err))
                fail_msg("case %zu: error \"%s\", want \"%s\"", i, err, cases[i].err);
            assert_null(req.args);
        }
    }
    proto_request_free(NULL);
}

static json_t *args_of(const char *json)
{
    json_error_t je;
    json_t *v = json_loads(json, 0, &je);
    if (!v)
        fail_msg("test JSON: %s", je.text);
    return v;
}

static void test_args(void **state)
{
    (void)state;
    json_t *a = args_of("{\"domain\":\"example.test\",\"n\":3,\"ctl\":\"a\\u0001b\","
                        "\"long\":\"abcdefgh\"}");
    static const char *const allowed[] = {"domain", "n", "ctl", "long", NULL};
    static const char *const fewer[] = {"domain", NULL};
    char err[100];
    assert_int_equal(proto_args_allowed(a, allowed, err, sizeof err), 0);
    assert_int_equal(proto_args_allowed(a, fewer, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown argument"));
    bool bad = false;
    assert_string_equal(proto_arg_str(a, "domain", 100, &bad, err, sizeof err), "example.test");
    assert_false(bad);
    assert_null(proto_arg_str(a, "absent", 100, &bad, err, sizeof err));
    assert_false(bad);
    assert_null(proto_arg_str(a, "n", 100, &bad, err, sizeof err));
    assert_true(bad);
    bad = false;
    assert_null(proto_arg_str(a, "ctl", 100, &bad, err, sizeof err));
    assert_true(bad);
    assert_non_null(strstr(err, "control character"));
    bad = false;
    assert_null(proto_arg_str(a, "long", 7, &bad, err, sizeof err));
    assert_true(bad);
    bad = false;
    assert_non_null(proto_arg_str(a, "long", 8, &bad, err, sizeof err));
    json_decref(a);
}

static void test_qid(void **state)
{
    (void)state;
    spool_id id = 0;
    assert_true(proto_qid_parse("0000018F3A2B4C5D", &id));
    assert_true(id == 0x18F3A2B4C5Dull);
    assert_true(proto_qid_parse("18f3a2b4c5d", &id));
    assert_true(id == 0x18F3A2B4C5Dull);
    assert_true(proto_qid_parse("FFFFFFFFFFFFFFFF", &id));
    assert_true(id == UINT64_MAX);
    assert_false(proto_qid_parse("", &id));
    assert_false(proto_qid_parse("0", &id)); /* never an id */
    assert_false(proto_qid_parse("10000000000000000", &id));
    assert_false(proto_qid_parse("12G4", &id));
    assert_false(proto_qid_parse("-1", &id));
    assert_false(proto_qid_parse(" 12", &id));
    char out[17];
    proto_qid_format(0x18F3A2B4C5Dull, out);
    assert_string_equal(out, "0000018F3A2B4C5D");
}

static void test_selector_parse(void **state)
{
    (void)state;
    static const struct {
        const char *args;
        const char *err; /* NULL: accepted */
        bool empty;
    } cases[] = {
        {"{}", NULL, true},
        {"{\"all\":true}", NULL, false},
        {"{\"all\":false}", NULL, true},
        {"{\"ids\":[\"00000000000000A1\",\"a1\",\"B2\"]}", NULL, false},
        {"{\"sender\":\"*@example.org\",\"rcpt\":\"x@*\",\"domain\":\"remote.test\"}", NULL, false},
        {"{\"older_than\":0}", NULL, false},
        {"{\"status\":\"deferred\"}", NULL, false},
        {"{\"status\":\"hold\",\"error_class\":\"5xx\"}", NULL, false},
        {"{\"all\":1}", "\"all\" must be true or false"},
        {"{\"ids\":[]}", "\"ids\" must be an array"},
        {"{\"ids\":\"A1\"}", "\"ids\" must be an array"},
        {"{\"ids\":[\"A1\",\"zz\"]}", "\"ids\"[1] is not a queue id"},
        {"{\"ids\":[7]}", "\"ids\"[0] is not a queue id"},
        {"{\"sender\":\"\"}", "\"sender\" is empty"},
        {"{\"rcpt\":5}", "\"rcpt\" must be a string"},
        {"{\"older_than\":-1}", "number of seconds"},
        {"{\"older_than\":\"1h\"}", "number of seconds"},
        {"{\"older_than\":1.5}", "number of seconds"},
        {"{\"status\":\"frozen\"}", "\"status\" must be"},
        {"{\"error_class\":\"3xx\"}", "\"error_class\" must be"},
        {"{\"error_class\":4}", "\"error_class\" must be"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        json_t *a = args_of(cases[i].args);
        struct proto_selector sel;
        char err[200] = "";
        int r = proto_selector_parse(a, &sel, err, sizeof err);
        if (!cases[i].err) {
            if (r != 0)
                fail_msg("case %zu: refused: %s", i, err);
            assert_int_equal(proto_selector_empty(&sel), cases[i].empty);
        } else {
            if (r == 0 || !strstr(err, cases[i].err))
                fail_msg("case %zu: r=%d err \"%s\", want \"%s\"", i, r, err, cases[i].err);
            assert_null(sel.ids);
        }
        proto_selector_free(&sel);
        json_decref(a);
    }
    /* ids are sorted, duplicates (in any case) dropped */
    json_t *a = args_of("{\"ids\":[\"B2\",\"00000000000000A1\",\"a1\",\"b2\"]}");
    struct proto_selector sel;
    char err[100];
    assert_int_equal(proto_selector_parse(a, &sel, err, sizeof err), 0);
    assert_int_equal(sel.nids, 2);
    assert_true(sel.ids[0] == 0xA1 && sel.ids[1] == 0xB2);
    proto_selector_free(&sel);
    proto_selector_free(NULL);
    json_decref(a);
}

/* A test envelope: sender, arrival, held, and recipients "addr:state:status". */
static struct spool_envelope *make_env(const char *sender, int64_t arrival, bool held,
                                       const char *const *rcpts)
{
    struct spool_envelope *e = xcalloc(1, sizeof *e);
    e->sender = xstrdup(sender);
    e->arrival = arrival;
    e->held = held;
    e->listener = xstrdup("mx");
    while (rcpts[e->nrcpt])
        e->nrcpt++;
    e->rcpt = xcalloc(e->nrcpt, sizeof *e->rcpt);
    for (size_t i = 0; i < e->nrcpt; i++) {
        char *copy = xstrdup(rcpts[i]);
        char *c1 = strchr(copy, ':');
        *c1 = '\0';
        char *c2 = strchr(c1 + 1, ':');
        *c2 = '\0';
        e->rcpt[i].addr = xstrdup(copy);
        e->rcpt[i].state = (uint8_t)atoi(c1 + 1);
        e->rcpt[i].status = c2[1] ? xstrdup(c2 + 1) : NULL;
        free(copy);
    }
    return e;
}

static void free_env(struct spool_envelope *e)
{
    for (size_t i = 0; i < e->nrcpt; i++) {
        free(e->rcpt[i].addr);
        free(e->rcpt[i].status);
    }
    free(e->rcpt);
    free(e->sender);
    free(e->listener);
    free(e);
}

static void test_selector_match(void **state)
{
    (void)state;
    const int64_t now = 1700010000;
    /* deferred to remote.test (4xx), delivered locally */
    static const char *const r1[] = {"bob@remote.test:1:dsn=4.4.1 connection refused",
                                     "demo@example.test:2:dsn=2.0.0 delivered", NULL};
    /* pending (never tried): active */
    static const char *const r2[] = {"carol@Other.Test:0:", NULL};
    /* a 5xx bounced recipient and a deferred one */
    static const char *const r3[] = {"x@remote.test:3:dsn=5.1.1 no such user",
                                     "y@third.test:1:dsn=4.2.0 busy", NULL};
    struct spool_envelope *e1 = make_env("alice@example.org", now - 7200, false, r1);
    struct spool_envelope *e2 = make_env("", now - 60, false, r2);
    struct spool_envelope *e3 = make_env("Alice@Example.ORG", now - 86400, true, r3);
    assert_int_equal(proto_message_status(e1, false), PROTO_STATUS_DEFERRED);
    assert_int_equal(proto_message_status(e1, true), PROTO_STATUS_ACTIVE);
    assert_int_equal(proto_message_status(e2, false), PROTO_STATUS_ACTIVE);
    assert_int_equal(proto_message_status(e3, true), PROTO_STATUS_HOLD);
    static const struct {
        const char *args;
        bool m1, m2, m3;
    } cases[] = {
        {"{\"all\":true}", true, true, true},
        {"{\"ids\":[\"A1\",\"A3\"]}", true, false, true},
        {"{\"sender\":\"alice@example.org\"}", true, false, true}, /* case-insensitive */
        {"{\"sender\":\"*@example.org\"}", true, false, true},
        {"{\"sender\":\"<>\"}", false, true, false},
        {"{\"rcpt\":\"bob@remote.test\"}", true, false, false},
        {"{\"rcpt\":\"demo@example.test\"}", false, false, false}, /* delivered: not open */
        {"{\"rcpt\":\"*@remote.test\"}", true, false, false},      /* x@ is bounced */
        {"{\"domain\":\"remote.test\"}", true, false, false},
        {"{\"domain\":\"other.test\"}", false, true, false},
        {"{\"domain\":\"*.test\"}", true, true, true},
        {"{\"rcpt\":\"y@*\",\"domain\":\"third.test\"}", false, false, true},
        {"{\"rcpt\":\"bob@*\",\"domain\":\"third.test\"}", false, false, false}, /* same rcpt */
        {"{\"older_than\":3600}", true, false, true},
        {"{\"older_than\":7200}", true, false, true},
        {"{\"older_than\":7201}", false, false, true},
        {"{\"status\":\"deferred\"}", true, false, false},
        {"{\"status\":\"active\"}", false, true, false},
        {"{\"status\":\"hold\"}", false, false, true},
        {"{\"error_class\":\"4xx\"}", true, false, true},
        {"{\"error_class\":\"5xx\"}", false, false, true},
        {"{\"sender\":\"*example.org\",\"status\":\"deferred\"}", true, false, false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        json_t *a = args_of(cases[i].args);
        struct proto_selector sel;
        char err[100];
        assert_int_equal(proto_selector_parse(a, &sel, err, sizeof err), 0);
        bool m1 = proto_selector_match(&sel, 0xA1, e1, false, now);
        bool m2 = proto_selector_match(&sel, 0xA2, e2, false, now);
        bool m3 = proto_selector_match(&sel, 0xA3, e3, false, now);
        if (m1 != cases[i].m1 || m2 != cases[i].m2 || m3 != cases[i].m3)
            fail_msg("case %zu (%s): %d %d %d", i, cases[i].args, m1, m2, m3);
        proto_selector_free(&sel);
        json_decref(a);
    }
    free_env(e1);
    free_env(e2);
    free_env(e3);
}

static void test_message_json(void **state)
{
    (void)state;
    static const char *const r[] = {"b\xc3\xa9@remote.test:1:dsn=4.4.1 said \xff\xfe oops", NULL};
    struct spool_envelope *e = make_env("al\xe9@example.org", 1700000000, true, r);
    e->rcpt[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY;
    size_t len;
    char *line = proto_dump(proto_message_json(0x18F3A2B4C5Dull, e, false, true), &len);
    assert_int_equal(line[len - 1], '\n');
    assert_int_equal(strlen(line), len);
    /* valid JSON, one line, the invalid octets replaced by U+FFFD */
    assert_null(memchr(line, '\n', len - 1));
    json_error_t je;
    json_t *v = json_loadb(line, len, 0, &je);
    if (!v)
        fail_msg("not JSON: %s: %s", je.text, line);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "0000018F3A2B4C5D");
    assert_string_equal(json_string_value(json_object_get(v, "sender")),
                        "al\xef\xbf\xbd@example.org");
    assert_string_equal(json_string_value(json_object_get(v, "status")), "hold");
    assert_true(json_is_true(json_object_get(v, "held")));
    json_t *r0 = json_array_get(json_object_get(v, "rcpts"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "addr")), "b\xc3\xa9@remote.test");
    assert_string_equal(json_string_value(json_object_get(r0, "state")), "deferred");
    assert_string_equal(json_string_value(json_object_get(r0, "status")),
                        "dsn=4.4.1 said \xef\xbf\xbd\xef\xbf\xbd oops");
    json_t *notify = json_object_get(r0, "notify");
    assert_int_equal(json_array_size(notify), 2);
    assert_true(json_is_null(json_object_get(v, "envid")));
    json_decref(v);
    free(line);
    free_env(e);

    /* UTF-8 edge cases of proto_text */
    static const struct {
        const char *in;
        const char *out;
    } t[] = {
        {"plain", "plain"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},                 /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\xe2\x82\xac", "\xe2\x82\xac"}, /* the euro sign */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd"}, /* cut short */
    };
    for (size_t i = 0; i < N(t); i++) {
        json_t *s = proto_text(t[i].in, strlen(t[i].in));
        if (strcmp(json_string_value(s), t[i].out) != 0)
            fail_msg("proto_text case %zu", i);
        json_decref(s);
    }
    json_t *nul = proto_text("a\0b", 3);
    assert_memory_equal(json_string_value(nul),
                        "a\xef\xbf\xbd"
                        "b",
                        5);
    json_decref(nul);
    assert_true(json_is_null(proto_str(NULL)));

    char *el = proto_dump(proto_error("no such message", 0, NULL), &len);
    assert_string_equal(el, "{\"ok\":false,\"error\":\"no such message\"}\n");
    free(el);
    el = proto_dump(proto_error("user unknown", 550, "5.1.1"), &len);
    assert_string_equal(
        el, "{\"ok\":false,\"error\":\"user unknown\",\"code\":550,\"enh\":\"5.1.1\"}\n");
    free(el);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out; /* NULL: invalid */
    } cases[] = {
        {"", ""},
        {"Zg==", "f"},
        {"Zm8=", "fo"},
        {"Zm9v", "foo"},
        {"Zm9vYg==", "foob"},
        {"Zm9vYmE=", "fooba"},
        {"Zm9vYmFy", "foobar"},
        {"Zg=", NULL},
        {"Zg", NULL},
        {"Z===", NULL},
        {"Zm9v YmFy", NULL},
        {"Zh==", NULL}, /* bits left over */
        {"Zm9=", NULL},
        {"Zg==Zg==", NULL},
        {"Zm9v\n", NULL},
        {"Zm-v", NULL},
        {"=Zm9", NULL},
    };
    uint8_t out[64];
    for (size_t i = 0; i < N(cases); i++) {
        long n = proto_base64_decode(cases[i].in, strlen(cases[i].in), out, sizeof out);
        if (!cases[i].out) {
            if (n >= 0)
                fail_msg("case %zu (%s): accepted", i, cases[i].in);
            continue;
        }
        if (n != (long)strlen(cases[i].out) || memcmp(out, cases[i].out, (size_t)n) != 0)
            fail_msg("case %zu (%s): %ld", i, cases[i].in, n);
    }
    /* round trip over every length and octet value; and the capacity */
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37 + 11);
    char enc[4 * (sizeof data + 2) / 3 + 1];
    uint8_t dec[sizeof data];
    for (size_t n = 0; n <= sizeof data; n++) {
        size_t e = proto_base64_encode(data, n, enc);
        assert_int_equal(e, 4 * ((n + 2) / 3));
        assert_int_equal(proto_base64_decode(enc, e, dec, sizeof dec), (long)n);
        assert_memory_equal(dec, data, n);
        if (n > 0)
            assert_int_equal(proto_base64_decode(enc, e, dec, n - 1), -1);
    }
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t out; /* -1: invalid */
    } cases[] = {
        {"90", 90},
        {"90s", 90},
        {"15m", 900},
        {"2h", 7200},
        {"3d", 259200},
        {"1w", 604800},
        {"0", 0},
        {"", -1},
        {"h", -1},
        {"1x", -1},
        {"-5m", -1},
        {"1.5h", -1},
        {"2 h", -1},
        {"999999999999", -1},
        {"36500d", 3153600000LL},
        {"36501d", -1},
    };
    for (size_t i = 0; i < N(cases); i++) {
        int64_t v = -1;
        bool ok = proto_duration_parse(cases[i].in, &v);
        if (ok != (cases[i].out >= 0) || (ok && v != cases[i].out))
            fail_msg("case %zu (%s): ok=%d v=%lld", i, cases[i].in, ok, (long long)v);
    }
}

int main(void)
{
    proto_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),          cmocka_unit_test(test_request),
        cmocka_unit_test(test_args),           cmocka_unit_test(test_qid),
        cmocka_unit_test(test_selector_parse), cmocka_unit_test(test_selector_match),
        cmocka_unit_test(test_message_json),   cmocka_unit_test(test_base64),
        cmocka_unit_test(test_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
