/*
 * test_header - unit tests of the header scanner (smtp_hdr_feed) and the
 * address-list parser (smtp_addr_list_parse), src/smtp/header.c.
 * Table-driven. Each scanner row is a message and the expected end of its
 * header section, Date/Message-ID/From findings and unfolded From value; it
 * is fed whole, split in two at every point, one octet at a time and in
 * random pieces, and all must agree (the scanner is resumable at any octet).
 * Each address row is a value and the expected addr-specs, or -1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp/header.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1

/* ---- scanner ---------------------------------------------------------------- */

struct scan_case {
    const char *in;
    size_t in_len;
    long end; /* offset of the line ending the header section, -1: none */
    bool date, mid;
    size_t from_fields;
    const char *from; /* expected unfolded From value */
};

static const struct scan_case scan_cases[] = {
    /* the empty line */
    {S("Subject: x\r\n\r\nbody\r\n"), 12, false, false, 0, ""},
    {S("\r\nbody\r\n"), 0, false, false, 0, ""},
    {S("\r\n"), 0, false, false, 0, ""},
    {S(""), -1, false, false, 0, ""},
    {S("A: 1\r\nB: 2\r\n\r\n"), 12, false, false, 0, ""},
    {S("A: 1\r\nB: 2\r\n"), -1, false, false, 0, ""},
    {S("A: 1\r\nB: 2"), -1, false, false, 0, ""},
    {S("A: 1\r\nB"), -1, false, false, 0, ""},
    {S("A: 1\r\n\r"), 6, false, false, 0, ""},
    /* Date, Message-ID, From in any case */
    {S("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"), 38, true, false, 0, ""},
    {S("date:x\r\nMESSAGE-ID: <a@b>\r\n\r\n"), 27, true, true, 0, ""},
    {S("DaTe:\r\nmessage-id:<a@b>\r\n\r\n"), 25, true, true, 0, ""},
    {S("Message-Id: <a@b>\r\n\r\n"), 19, false, true, 0, ""},
    {S("Resent-Date: x\r\nX-Message-ID: y\r\nDates: z\r\nDat: z\r\n\r\n"), 51, false, false, 0, ""},
    {S("From: a@b\r\n\r\n"), 11, false, false, 1, "a@b"},
    {S("FROM:a@b\r\n\r\n"), 10, false, false, 1, "a@b"},
    {S("from: \t  a@b  \r\n\r\n"), 16, false, false, 1, "a@b  "},
    {S("From: a@b\r\nfrom: c@d\r\n\r\n"), 22, false, false, 2, "a@b"},
    {S("From:\r\n\r\n"), 7, false, false, 1, ""},
    {S("Fromage: x\r\nX-From: y\r\n\r\n"), 23, false, false, 0, ""},
    /* obsolete white space before the colon */
    {S("From : a@b\r\nDate\t: x\r\n\r\n"), 22, true, false, 1, "a@b"},
    {S("From x: a@b\r\n\r\n"), 0, false, false, 0, ""},
    /* folding */
    {S("From: A\r\n <a@b>\r\n\r\n"), 17, false, false, 1, "A <a@b>"},
    {S("From: \"A\r\n\tB\" <a@b>,\r\n c@d\r\nTo: x\r\n\r\n"), 35, false, false, 1,
     "\"A\tB\" <a@b>, c@d"},
    {S("From:\r\n a@b\r\n\r\n"), 13, false, false, 1, "a@b"},
    {S("From:\r\n \r\n\t a@b\r\n\r\n"), 17, false, false, 1, "a@b"},
    {S("Subject: a\r\n b\r\nDate: x\r\n\r\n"), 25, true, false, 0, ""},
    {S("X: a\r\n Date: x\r\n\r\n"), 16, false, false, 0, ""},
    {S("From: a@b\r\n (c)\r\n\r\n"), 17, false, false, 1, "a@b (c)"},
    /* a body line that starts with white space after the empty line */
    {S("From: a@b\r\n\r\n Date: x\r\n"), 11, false, false, 1, "a@b"},
    {S("A: 1\r\n\r\n\tx\r\n\r\n"), 6, false, false, 0, ""},
    /* lines that are not fields start the body */
    {S("From: a@b\r\nhello world\r\nDate: x\r\n"), 11, false, false, 1, "a@b"},
    {S("From: a@b\r\nhello\r\n"), 11, false, false, 1, "a@b"},
    {S("From: a@b\r\n:x\r\n"), 11, false, false, 1, "a@b"},
    {S("A: 1\r\n\x80: x\r\n"), 6, false, false, 0, ""},
    {S("A: 1\r\nB\x01: x\r\n"), 6, false, false, 0, ""},
    {S("A: 1\r\nB\r\n"), 6, false, false, 0, ""},
    {S("A: 1\r\nnocolonatallbutlong"), -1, false, false, 0, ""},
    {S("A: 1\r\nnocolonatallbutlong "), -1, false, false, 0, ""},
    {S("A: 1\r\nnocolonatallbutlong x"), 6, false, false, 0, ""},
    {S(" folded first line\r\n\r\n"), 0, false, false, 0, ""},
    {S("\tDate: x\r\n\r\n"), 0, false, false, 0, ""},
    {S("hello\r\n\r\n"), 0, false, false, 0, ""},
    {S("Date: x\r\n\x80\r\n"), 9, true, false, 0, ""},
    /* bare LF is a line end; bare CR is body text */
    {S("From: a@b\nDate: x\n\nbody\n"), 18, true, false, 1, "a@b"},
    {S("From: a\n b@c\n\n"), 13, false, false, 1, "a b@c"},
    {S("A: 1\n\r\n"), 5, false, false, 0, ""},
    {S("From: a\rb\r\n\r\n"), 11, false, false, 1, "a\rb"},
    {S("From: a\r\r\n\r\n"), 10, false, false, 1, "a\r"},
    {S("From: a\r\r\r\n b\r\n\r\n"), 15, false, false, 1, "a\r\r b"},
    {S("X: a\rDate: y\r\n\r\n"), 14, false, false, 0, ""},
    {S("A: 1\r\n\rB: 2\r\n"), 6, false, false, 0, ""},
    /* NUL in a body is skipped over */
    {S("X: a\0b\r\n\r\n"), 8, false, false, 0, ""},
    /* long names are not mistaken for known ones */
    {S("From-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxx: a\r\nDate: d\r\n\r\n"),
     110, true, false, 0, ""},
};

/* What a run of the scanner over one message found. */
struct scan_result {
    struct smtp_hdr_scan h;
    long reported; /* absolute offset from a return value, -1: none */
    int reports;   /* return values >= 0 */
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static size_t next_rand(size_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (size_t)(rng % n);
}

/* Feed `in` in pieces: at `split` (0 < split < len) in two pieces, else in
   pieces of `piece` octets (0: random sizes). Checks each return value. */
static void scan_run(const char *in, size_t len, size_t split, size_t piece, struct scan_result *r)
{
    smtp_hdr_init(&r->h);
    r->reported = -1;
    r->reports = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t n;
        if (split > 0 && split < len)
            n = pos == 0 ? split : len - pos;
        else
            n = piece ? piece : 1 + next_rand(9);
        if (n > len - pos)
            n = len - pos;
        bool was_done = r->h.done;
        long ret = smtp_hdr_feed(&r->h, (const uint8_t *)in + pos, n);
        assert_true(ret >= -1 && ret < (long)n);
        if (ret >= 0) {
            assert_false(was_done);
            assert_true(r->h.done);
            assert_int_equal(r->h.end, pos + (size_t)ret);
            r->reported = (long)(pos + (size_t)ret);
            r->reports++;
        } else if (r->h.done && !was_done) {
            /* a non-field line recognised after the chunk it began in */
            assert_true(r->h.end < pos);
        }
        pos += n;
        assert_int_equal(r->h.offset, pos);
    }
    /* an empty feed changes nothing */
    assert_int_equal(smtp_hdr_feed(&r->h, (const uint8_t *)"", 0), -1);
}

static void show(const char *what, size_t i, const char *s, size_t n)
{
    fprintf(stderr, "case %zu %s: \"", i, what);
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

static void scan_check(size_t i, const struct scan_case *c, const struct scan_result *r)
{
    const struct smtp_hdr_scan *h = &r->h;
    long end = h->done ? (long)h->end : -1;
    if (end != c->end) {
        show("input", i, c->in, c->in_len);
        fail_msg("case %zu: end %ld, want %ld", i, end, c->end);
    }
    if (h->has_date != c->date || h->has_message_id != c->mid)
        fail_msg("case %zu: date %d message-id %d, want %d %d", i, h->has_date, h->has_message_id,
                 c->date, c->mid);
    if (h->from_fields != c->from_fields)
        fail_msg("case %zu: %zu From fields, want %zu", i, h->from_fields, c->from_fields);
    if (h->from_len != strlen(c->from) || strcmp(h->from, c->from) != 0) {
        show("from", i, h->from, h->from_len);
        show("want", i, c->from, strlen(c->from));
        fail_msg("case %zu: From value differs", i);
    }
    assert_false(h->from_truncated);
    assert_int_equal(h->offset, c->in_len);
}

static void same(const struct scan_result *a, const struct scan_result *b)
{
    assert_int_equal(a->h.done, b->h.done);
    assert_int_equal(a->h.end, b->h.end);
    assert_int_equal(a->h.has_date, b->h.has_date);
    assert_int_equal(a->h.has_message_id, b->h.has_message_id);
    assert_int_equal(a->h.from_fields, b->h.from_fields);
    assert_int_equal(a->h.from_len, b->h.from_len);
    assert_memory_equal(a->h.from, b->h.from, a->h.from_len + 1);
    assert_int_equal(a->h.from_truncated, b->h.from_truncated);
    assert_int_equal(a->h.offset, b->h.offset);
}

static void test_scan_table(void **state)
{
    (void)state;
    static struct scan_result whole, part;
    for (size_t i = 0; i < N(scan_cases); i++) {
        const struct scan_case *c = &scan_cases[i];
        scan_run(c->in, c->in_len, 0, c->in_len ? c->in_len : 1, &whole);
        scan_check(i, c, &whole);
        /* fed whole, the end is always reported by the return value */
        assert_int_equal(whole.reported, c->end);
        for (size_t k = 1; k < c->in_len; k++) {
            scan_run(c->in, c->in_len, k, 0, &part);
            scan_check(i, c, &part);
            same(&whole, &part);
            assert_true(part.reports <= 1);
        }
        scan_run(c->in, c->in_len, 0, 1, &part);
        scan_check(i, c, &part);
        same(&whole, &part);
        for (int k = 0; k < 100; k++) {
            scan_run(c->in, c->in_len, 0, 0, &part);
            same(&whole, &part);
        }
    }
}

/* Where fields can be inserted: the empty line's first octet, in every split. */
static void test_scan_insert_point(void **state)
{
    (void)state;
    const char msg[] = "From: a@b\r\nSubject: x\r\n\r\nbody\r\n";
    size_t len = sizeof msg - 1;
    for (size_t k = 1; k < len; k++) {
        struct smtp_hdr_scan h;
        smtp_hdr_init(&h);
        long r1 = smtp_hdr_feed(&h, (const uint8_t *)msg, k);
        long r2 = smtp_hdr_feed(&h, (const uint8_t *)msg + k, len - k);
        if (k <= 23) {
            assert_int_equal(r1, -1);
            assert_int_equal(r2, 23 - (long)k);
        } else {
            assert_int_equal(r1, 23);
            assert_int_equal(r2, -1);
        }
        assert_true(h.done);
        assert_int_equal(h.end, 23);
    }
}

/* A non-field line that spans chunks: done, end where it began, return -1. */
static void test_scan_late_body(void **state)
{
    (void)state;
    struct smtp_hdr_scan h;
    smtp_hdr_init(&h);
    assert_int_equal(smtp_hdr_feed(&h, (const uint8_t *)"A: 1\r\nhel", 9), -1);
    assert_false(h.done);
    assert_int_equal(smtp_hdr_feed(&h, (const uint8_t *)"lo\r\n", 4), -1);
    assert_true(h.done);
    assert_int_equal(h.end, 6);
    /* after the end, feeding only counts */
    assert_int_equal(smtp_hdr_feed(&h, (const uint8_t *)"Date: x\r\n\r\n", 11), -1);
    assert_false(h.has_date);
    assert_int_equal(h.offset, 24);
}

static void test_scan_from_limit(void **state)
{
    (void)state;
    static char msg[SMTP_HDR_FROM_MAX + 256];
    static struct smtp_hdr_scan h;
    for (int extra = 0; extra <= 1; extra++) {
        size_t len = 0;
        memcpy(msg, "From:  ", 7);
        len = 7;
        for (size_t k = 0; k < SMTP_HDR_FROM_MAX + (size_t)extra; k++) {
            if (k > 0 && k % 70 == 0) {
                memcpy(msg + len, "\r\n", 2);
                len += 2;
            }
            msg[len++] = (k % 70 == 0 && k > 0) ? ' ' : 'x';
        }
        memcpy(msg + len, "\r\n\r\n", 4);
        len += 4;
        assert_true(len <= sizeof msg);
        for (size_t piece = 1; piece <= 2; piece++) {
            smtp_hdr_init(&h);
            size_t pos = 0;
            long ret = -1;
            while (pos < len) {
                size_t n = piece == 1 ? len : 1 + next_rand(100);
                if (n > len - pos)
                    n = len - pos;
                long r = smtp_hdr_feed(&h, (const uint8_t *)msg + pos, n);
                if (r >= 0)
                    ret = (long)pos + r;
                pos += n;
            }
            assert_int_equal(ret, (long)len - 2);
            assert_int_equal(h.from_len, SMTP_HDR_FROM_MAX);
            assert_int_equal(h.from_truncated, extra == 1);
            assert_int_equal(h.from[SMTP_HDR_FROM_MAX], '\0');
            assert_int_equal(strlen(h.from), SMTP_HDR_FROM_MAX);
        }
    }
}

/* ---- address lists ---------------------------------------------------------- */

struct addr_case {
    const char *in;
    int ret;
    const char *addr[4];
};

static const struct addr_case addr_cases[] = {
    /* empty */
    {"", 0, {NULL}},
    {"   ", 0, {NULL}},
    {" (just a comment) ", 0, {NULL}},
    /* addr-spec */
    {"a@b", 1, {"a@b"}},
    {"  a@b  ", 1, {"a@b"}},
    {"user.name+tag@sub.example.org", 1, {"user.name+tag@sub.example.org"}},
    {"!#$%&'*+-/=?^_`{|}~@example.org", 1, {"!#$%&'*+-/=?^_`{|}~@example.org"}},
    {"a@b (c@d)", 1, {"a@b"}},
    {"(c@d) a@b", 1, {"a@b"}},
    {"a(x)@(y)b", 1, {"a@b"}},
    {"a . b @ c . d", 1, {"a.b@c.d"}},
    {"a.(x)b@c", 1, {"a.b@c"}},
    {"\"a b\"@c", 1, {"\"a b\"@c"}},
    {"\"a@b\"@c", 1, {"\"a@b\"@c"}},
    {"\"a\\\"b\"@c", 1, {"\"a\\\"b\"@c"}},
    {"\"\"@c", 1, {"\"\"@c"}},
    {"\"a\".b@c", 1, {"\"a\".b@c"}},
    {"a@[192.0.2.1]", 1, {"a@[192.0.2.1]"}},
    {"a@[ IPv6:2001:db8::1 ]", 1, {"a@[IPv6:2001:db8::1]"}},
    {"a@ [1.2.3.4] (x)", 1, {"a@[1.2.3.4]"}},
    /* name-addr */
    {"<a@b>", 1, {"a@b"}},
    {"Name <a@b>", 1, {"a@b"}},
    {"Name<a@b>", 1, {"a@b"}},
    {"John Q. Public <jqp@example.org>", 1, {"jqp@example.org"}},
    {"\"a@b\" <c@d>", 1, {"c@d"}},
    {"\"Q, R\" <c@d>", 1, {"c@d"}},
    {"\"a@b\" <c@d> (e@f)", 1, {"c@d"}},
    {"a@b <c@d>", -1, {NULL}},
    {"Name < a @ b >", 1, {"a@b"}},
    {"Name <\"x y\"@b>", 1, {"\"x y\"@b"}},
    {"(x) Name (y) <(z) a@b (w)> (v)", 1, {"a@b"}},
    {"=?utf-8?q?J=C3=B6rg?= <j@example.org>", 1, {"j@example.org"}},
    /* lists */
    {"a@b, c@d", 2, {"a@b", "c@d"}},
    {"Name <a@b>, \"Q, R\" <c@d> (comment), e@f, Group: g@h;", 4, {"a@b", "c@d", "e@f", "g@h"}},
    {"a@b,c@d,e@f", 3, {"a@b", "c@d", "e@f"}},
    {"a@b,,c@d", 2, {"a@b", "c@d"}},
    {", a@b ,", 1, {"a@b"}},
    {",", 0, {NULL}},
    {"a@b c@d", -1, {NULL}},
    {"a@b; c@d", -1, {NULL}},
    /* groups */
    {"undisclosed-recipients:;", 0, {NULL}},
    {"undisclosed-recipients: ;", 0, {NULL}},
    {"Undisclosed recipients:(none);", 0, {NULL}},
    {"G: a@b, Name <c@d>;", 2, {"a@b", "c@d"}},
    {"G: a@b;, e@f", 2, {"a@b", "e@f"}},
    {"x@y, G: a@b; (c)", 2, {"x@y", "a@b"}},
    {"G: a@b,,c@d,;", 2, {"a@b", "c@d"}},
    {"\"G\": a@b;", 1, {"a@b"}},
    {"G: a@b", -1, {NULL}},
    {"G:", -1, {NULL}},
    {": a@b;", -1, {NULL}},
    {"G: H: a@b;;", -1, {NULL}},
    {"G: a@b; c@d", -1, {NULL}},
    {"a@b;", -1, {NULL}},
    /* comments */
    {"a@b (x (y (z)))", 1, {"a@b"}},
    {"a@b (\\) \\( x)", 1, {"a@b"}},
    {"a@b (caf\xc3\xa9)", 1, {"a@b"}},
    {"a@b (x", -1, {NULL}},
    {"a@b (x))", -1, {NULL}},
    {"a@b )", -1, {NULL}},
    {"a@b ((x)", -1, {NULL}},
    /* obs-route */
    {"<@a,@b:x@y>", 1, {"x@y"}},
    {"Name <@a.example:x@y>", 1, {"x@y"}},
    {"<@a, @b , ,@c:x@y>", 1, {"x@y"}},
    {"<,@a:x@y>", 1, {"x@y"}},
    {"<@a:>", -1, {NULL}},
    {"<@:x@y>", -1, {NULL}},
    {"<@a,x@y>", -1, {NULL}},
    {"<@a x@y>", -1, {NULL}},
    /* UTF-8 (RFC 6532) */
    {"J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc\x63her.example>",
     1,
     {"j\xc3\xb6rg@b\xc3\xbc\x63her.example"}},
    {"\"\xe7\x94\xb0\xe4\xb8\xad\" <\xe7\x94\xb0@\xe4\xbe\x8b.jp>",
     1,
     {"\xe7\x94\xb0@\xe4\xbe\x8b.jp"}},
    /* folding white space in the value */
    {"Name\r\n <a@b>,\r\n\tc@d", 2, {"a@b", "c@d"}},
    {"\"a\r\n b\"@c", 1, {"\"a b\"@c"}},
    {"a@b\r\nc@d", -1, {NULL}},
    {"a@b\r\n", -1, {NULL}},
    {"a@b\n c@d", -1, {NULL}},
    /* syntax errors */
    {"a", -1, {NULL}},
    {"Name", -1, {NULL}},
    {"a@", -1, {NULL}},
    {"@b", -1, {NULL}},
    {"<@b>", -1, {NULL}},
    {"<>", -1, {NULL}},
    {"<a>", -1, {NULL}},
    {"a@b@c", -1, {NULL}},
    {"a..b@c", -1, {NULL}},
    {".a@c", -1, {NULL}},
    {"a.@c", -1, {NULL}},
    {"a b@c", -1, {NULL}},
    {"a@b..c", -1, {NULL}},
    {"a@b.", -1, {NULL}},
    {"a@.b", -1, {NULL}},
    {"a@\"b\"", -1, {NULL}},
    {"a@[b", -1, {NULL}},
    {"a@[b[c]", -1, {NULL}},
    {"a@[b]c", -1, {NULL}},
    {"Name <a@b", -1, {NULL}},
    {"Name a@b>", -1, {NULL}},
    {"Name <<a@b>>", -1, {NULL}},
    {"<a@b>>", -1, {NULL}},
    {"Name <a@b> <c@d>", -1, {NULL}},
    {". Name <a@b>", -1, {NULL}},
    {"\"unterminated <a@b>", -1, {NULL}},
    {"\"a\\", -1, {NULL}},
    {"a\\b@c", -1, {NULL}},
    {"a@b]", -1, {NULL}},
    {"a\x01@b", -1, {NULL}},
    {"\"a\x01\"@b", 1, {"\"a\x01\"@b"}},
};

static void test_addr_table(void **state)
{
    (void)state;
    static char out[SMTP_ADDR_LIST_MAX][SMTP_PATH_MAX + 1];
    for (size_t i = 0; i < N(addr_cases); i++) {
        const struct addr_case *c = &addr_cases[i];
        int n = smtp_addr_list_parse(c->in, strlen(c->in), out, SMTP_ADDR_LIST_MAX);
        if (n != c->ret) {
            show("input", i, c->in, strlen(c->in));
            fail_msg("case %zu: returned %d, want %d", i, n, c->ret);
        }
        for (int k = 0; k < n; k++) {
            assert_true(k < 4 && c->addr[k] != NULL);
            if (strcmp(out[k], c->addr[k]) != 0) {
                show("input", i, c->in, strlen(c->in));
                show("got", i, out[k], strlen(out[k]));
                fail_msg("case %zu: address %d differs", i, k);
            }
        }
        if (n >= 0 && n < 4)
            assert_null(c->addr[n]);
    }
}

/* The value is read by its length, not to a NUL. */
static void test_addr_length(void **state)
{
    (void)state;
    char out[2][SMTP_PATH_MAX + 1];
    assert_int_equal(smtp_addr_list_parse("a@b, c@d", 3, out, 2), 1);
    assert_string_equal(out[0], "a@b");
    assert_int_equal(smtp_addr_list_parse("a@b\0c", 5, out, 2), -1);
    assert_int_equal(smtp_addr_list_parse(NULL, 0, out, 2), 0);
}

static void test_addr_max(void **state)
{
    (void)state;
    static char v[SMTP_ADDR_LIST_MAX * 8 + 16];
    static char out[SMTP_ADDR_LIST_MAX + 1][SMTP_PATH_MAX + 1];
    size_t len = 0;
    for (int k = 0; k < SMTP_ADDR_LIST_MAX; k++)
        len += (size_t)snprintf(v + len, sizeof v - len, "%sa%d@b", k ? "," : "", k);
    assert_int_equal(smtp_addr_list_parse(v, len, out, SMTP_ADDR_LIST_MAX), SMTP_ADDR_LIST_MAX);
    assert_string_equal(out[SMTP_ADDR_LIST_MAX - 1], "a31@b");
    assert_int_equal(smtp_addr_list_parse(v, len, out, SMTP_ADDR_LIST_MAX - 1), -1);
    len += (size_t)snprintf(v + len, sizeof v - len, ",G:x@y;");
    assert_int_equal(smtp_addr_list_parse(v, len, out, SMTP_ADDR_LIST_MAX), -1);
    assert_int_equal(smtp_addr_list_parse(v, len, out, SMTP_ADDR_LIST_MAX + 1),
                     SMTP_ADDR_LIST_MAX + 1);
    assert_int_equal(smtp_addr_list_parse("a@b", 3, out, 0), -1);
    assert_int_equal(smtp_addr_list_parse("G:;", 3, NULL, 0), 0);
}

/* An address of SMTP_PATH_MAX octets fits; one more does not. Comments and
   white space do not count, a long display name does not matter. */
static void test_addr_too_long(void **state)
{
    (void)state;
    static char v[4 * SMTP_PATH_MAX];
    static char out[1][SMTP_PATH_MAX + 1];
    for (size_t total = SMTP_PATH_MAX; total <= SMTP_PATH_MAX + 1; total++) {
        size_t local = total - 2;
        int len = snprintf(v, sizeof v, "%0*d@b", (int)local, 0);
        int want = total <= SMTP_PATH_MAX ? 1 : -1;
        assert_int_equal(smtp_addr_list_parse(v, (size_t)len, out, 1), want);
        if (want == 1)
            assert_int_equal(strlen(out[0]), SMTP_PATH_MAX);
        len = snprintf(v, sizeof v, "Name <%0*d@b>", (int)local, 0);
        assert_int_equal(smtp_addr_list_parse(v, (size_t)len, out, 1), want);
    }
    size_t len = 0;
    for (int k = 0; k < 300; k++)
        v[len++] = 'n';
    len += (size_t)snprintf(v + len, sizeof v - len, " (%0300d) <a@b>", 0);
    assert_int_equal(smtp_addr_list_parse(v, len, out, 1), 1);
    assert_string_equal(out[0], "a@b");
}

/* Comments nest up to 16 deep. */
static void test_addr_comment_depth(void **state)
{
    (void)state;
    char v[128];
    char out[1][SMTP_PATH_MAX + 1];
    for (int depth = 1; depth <= 40; depth++) {
        size_t len = (size_t)snprintf(v, sizeof v, "a@b ");
        for (int k = 0; k < depth; k++)
            v[len++] = '(';
        for (int k = 0; k < depth; k++)
            v[len++] = ')';
        assert_int_equal(smtp_addr_list_parse(v, len, out, 1), depth <= 16 ? 1 : -1);
    }
}

/* The scanner's From value goes straight to the parser. */
static void test_scan_then_parse(void **state)
{
    (void)state;
    const char msg[] = "Date: x\r\nfrom: \"Doe, J\" <j@x.example>,\r\n"
                       "\t(second) k@x.example\r\nTo: y@z\r\n\r\n";
    static struct smtp_hdr_scan h;
    char out[SMTP_ADDR_LIST_MAX][SMTP_PATH_MAX + 1];
    smtp_hdr_init(&h);
    for (size_t i = 0; i < sizeof msg - 1; i++)
        smtp_hdr_feed(&h, (const uint8_t *)msg + i, 1);
    assert_true(h.done);
    assert_int_equal(smtp_addr_list_parse(h.from, h.from_len, out, SMTP_ADDR_LIST_MAX), 2);
    assert_string_equal(out[0], "j@x.example");
    assert_string_equal(out[1], "k@x.example");
}

/* Drop fields named like arg (case-insensitive) whose value holds "ours". */
static bool drop_named(void *arg, const char *name, size_t namelen, const char *value,
                       size_t valuelen)
{
    const char *want = arg;
    if (namelen != strlen(want) || strncasecmp(name, want, namelen) != 0)
        return false;
    for (size_t i = 0; i + 4 <= valuelen; i++)
        if (memcmp(value + i, "ours", 4) == 0)
            return true;
    return false;
}

static void check_remove(const char *in, const char *want, size_t want_removed)
{
    char buf[512];
    size_t len = strlen(in), removed = 99;
    memcpy(buf, in, len);
    size_t n = smtp_hdr_remove((uint8_t *)buf, len, drop_named, "Authentication-Results", &removed);
    buf[n] = '\0';
    assert_string_equal(buf, want);
    assert_int_equal(removed, want_removed);
}

static void test_remove_fields(void **state)
{
    (void)state;
    /* one field, folded over two lines, removed; others kept in order */
    check_remove("Received: x\r\nAuthentication-Results: ours;\r\n\tspf=pass\r\n"
                 "Subject: s\r\n\r\nbody\r\nAuthentication-Results: ours\r\n",
                 "Received: x\r\nSubject: s\r\n\r\nbody\r\nAuthentication-Results: ours\r\n", 1);
    /* not ours, other names, case of the name, white space before the colon */
    check_remove("authentication-results : ours; none\r\nAuthentication-Results: theirs; "
                 "none\r\nX-Authentication-Results: ours\r\n\r\n",
                 "Authentication-Results: theirs; none\r\nX-Authentication-Results: "
                 "ours\r\n\r\n",
                 1);
    /* the last field of the section, then the body without separator line
       (a line that is not a field ends the section) */
    check_remove("A: 1\r\nAuthentication-Results: ours\r\nnot a field\r\n",
                 "A: 1\r\nnot a field\r\n", 1);
    /* a field cut off by the end of the buffer is kept, even when it would go */
    check_remove("A: 1\r\nAuthentication-Results: ours\r\n",
                 "A: 1\r\nAuthentication-Results: ours\r\n", 0);
    check_remove("Authentication-Results: ours\r\n\tmore", "Authentication-Results: ours\r\n\tmore",
                 0);
    /* LF line ends; several in a row */
    check_remove("Authentication-Results: ours\nAuthentication-Results: ours 2\nB: 2\n\nx",
                 "B: 2\n\nx", 2);
    /* empty input, no header section */
    check_remove("", "", 0);
    check_remove("\r\nAuthentication-Results: ours\r\n\r\n",
                 "\r\nAuthentication-Results: ours\r\n\r\n", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_table),      cmocka_unit_test(test_scan_insert_point),
        cmocka_unit_test(test_scan_late_body),  cmocka_unit_test(test_scan_from_limit),
        cmocka_unit_test(test_scan_then_parse), cmocka_unit_test(test_addr_table),
        cmocka_unit_test(test_addr_length),     cmocka_unit_test(test_addr_max),
        cmocka_unit_test(test_addr_too_long),   cmocka_unit_test(test_addr_comment_depth),
        cmocka_unit_test(test_remove_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
