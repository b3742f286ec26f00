/*
 * test_data - unit tests of the DATA / BDAT content decoder (smtp_data_*).
 * Table-driven: each row is the raw input after the DATA command's CRLF, the
 * mode, and the expected content, end, flags and header count. Every row is
 * fed whole, one octet at a time and in many random splits, and all three
 * must agree: the decoder is resumable at any octet. The rows include the
 * "SMTP smuggling" end-of-data variants, none of which may end DATA.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/smtp.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1

enum mode { REJ, NORM, BDAT_REJ, BDAT_NORM };

struct data_case {
    const char *in;
    size_t in_len;
    enum mode mode;
    bool end;    /* CRLF.CRLF found */
    size_t rest; /* octets left unconsumed after the end */
    const char *out;
    size_t out_len;
    unsigned flags;
    int headers; /* expected header fields, -1: do not check */
    size_t max_line;
    size_t max_headers;
};

#define BLF SMTP_DATA_BARE_LF
#define BCR SMTP_DATA_BARE_CR
#define LONG SMTP_DATA_LONG_LINE
#define HDRS SMTP_DATA_TOO_MANY_HDRS
#define NUL SMTP_DATA_NUL

static const struct data_case cases[] = {
    /* plain messages */
    {S(".\r\n"), REJ, true, 0, S(""), 0, 0, 1000, 100},
    {S("\r\n.\r\n"), REJ, true, 0, S("\r\n"), 0, 0, 1000, 100},
    {S("Subject: x\r\n\r\nbody\r\n.\r\n"), REJ, true, 0, S("Subject: x\r\n\r\nbody\r\n"), 0, 1,
     1000, 100},
    {S("a\r\n.\r\nQUIT\r\n"), REJ, true, 6, S("a\r\n"), 0, 1, 1000, 100},
    {S("a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\n"), NORM, true, 38, S("a\r\n"), 0, 1,
     1000, 100},
    {S("a\r\nb"), REJ, false, 0, S("a\r\nb"), 0, 2, 1000, 100},
    {S(""), REJ, false, 0, S(""), 0, 0, 1000, 100},
    /* dot-unstuffing */
    {S("..\r\n.\r\n"), REJ, true, 0, S(".\r\n"), 0, 1, 1000, 100},
    {S("..x\r\n.\r\n"), REJ, true, 0, S(".x\r\n"), 0, 1, 1000, 100},
    {S("...\r\n.\r\n"), REJ, true, 0, S("..\r\n"), 0, 1, 1000, 100},
    {S(".x\r\n.\r\n"), REJ, true, 0, S("x\r\n"), 0, 1, 1000, 100},
    {S("a\r\n..\r\n.\r\n"), REJ, true, 0, S("a\r\n.\r\n"), 0, 2, 1000, 100},
    {S("a.\r\n.b\r\n.\r\n"), REJ, true, 0, S("a.\r\nb\r\n"), 0, 2, 1000, 100},
    {S("a\r\n. \r\n.\r\n"), REJ, true, 0, S("a\r\n \r\n"), 0, 1, 1000, 100},
    /* SMTP smuggling: none of these end DATA */
    {S("a\n.\nb\r\n.\r\n"), REJ, true, 0, S("a\n\nb\r\n"), BLF, -1, 1000, 100},
    {S("a\n.\nb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\nb\r\n.\r\n"), REJ, true, 0, S("a\r\n\nb\r\n"), BLF, -1, 1000, 100},
    {S("a\r\n.\nb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, -1, 1000, 100},
    {S("a\n.\r\nb\r\n.\r\n"), REJ, true, 0, S("a\n\r\nb\r\n"), BLF, -1, 1000, 100},
    {S("a\n.\r\nb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, -1, 1000, 100},
    {S("a\r.\r\nb\r\n.\r\n"), REJ, true, 0, S("a\r\r\nb\r\n"), BCR, -1, 1000, 100},
    {S("a\r.\r\nb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\rb\r\n.\r\n"), REJ, true, 0, S("a\r\n\rb\r\n"), BCR, -1, 1000, 100},
    {S("a\r\n.\rb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\r\r\n.\r\n"), REJ, true, 0, S("a\r\n\r\r\n"), BCR, -1, 1000, 100},
    {S("a\r.\rb\r\n.\r\n"), REJ, true, 0, S("a\r\rb\r\n"), BCR, -1, 1000, 100},
    {S("a\n.\n"), REJ, false, 0, S("a\n\n"), BLF, -1, 1000, 100},
    {S("a\n.\n"), NORM, false, 0, S("a\r\n\r\n"), 0, -1, 1000, 100},
    {S("\n.\n"), REJ, false, 0, S("\n\n"), BLF, -1, 1000, 100},
    {S("\r\n.\n"), REJ, false, 0, S("\r\n\n"), BLF, -1, 1000, 100},
    {S("\n.\r\n"), REJ, false, 0, S("\n\r\n"), BLF, -1, 1000, 100},
    {S("\r.\r\n"), REJ, false, 0, S("\r\r\n"), BCR, -1, 1000, 100},
    {S("\r\n.\r"), REJ, false, 0, S("\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\r"), NORM, false, 0, S("a\r\n"), 0, -1, 1000, 100},
    {S("a\r\n\n.\r\n"), NORM, false, 0, S("a\r\n\r\n\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\n.\r\n"), NORM, false, 0, S("a\r\n\r\n\r\n"), 0, -1, 1000, 100},
    {S("a\r\n.\r\n"), BDAT_REJ, false, 0, S("a\r\n.\r\n"), 0, -1, 1000, 100},
    /* a proper CRLF.CRLF after bare newlines still ends DATA */
    {S("a\n\r\n.\r\n"), REJ, true, 0, S("a\n\r\n"), BLF, -1, 1000, 100},
    {S("a\r\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\n"), 0, -1, 1000, 100},
    /* bare CR / LF */
    {S("a\nb\r\n.\r\n"), REJ, true, 0, S("a\nb\r\n"), BLF, 2, 1000, 100},
    {S("a\nb\r\n.\r\n"), NORM, true, 0, S("a\r\nb\r\n"), 0, 2, 1000, 100},
    {S("a\rb\r\n.\r\n"), REJ, true, 0, S("a\rb\r\n"), BCR, 2, 1000, 100},
    {S("a\rb\r\n.\r\n"), NORM, true, 0, S("a\r\nb\r\n"), 0, 2, 1000, 100},
    {S("a\r\rb\r\n.\r\n"), NORM, true, 0, S("a\r\n\r\nb\r\n"), 0, 1, 1000, 100},
    {S("a\n\rb\n.\r\n"), REJ, false, 0, S("a\n\rb\n\r\n"), BLF | BCR, -1, 1000, 100},
    /* NUL */
    {S("a\0b\r\n.\r\n"), REJ, true, 0, S("a\0b\r\n"), NUL, 1, 1000, 100},
    {S("\0\r\n.\r\n"), NORM, true, 0, S("\0\r\n"), NUL, 1, 1000, 100},
    /* line length, CRLF included, a removed dot not counted */
    {S("12345678\r\n.\r\n"), REJ, true, 0, S("12345678\r\n"), 0, 1, 10, 100},
    {S("123456789\r\n.\r\n"), REJ, true, 0, S("123456789\r\n"), LONG, 1, 10, 100},
    {S("..2345678\r\n.\r\n"), REJ, true, 0, S(".2345678\r\n"), 0, 1, 10, 100},
    {S("12345678\n"), NORM, false, 0, S("12345678\r\n"), 0, 1, 10, 100},
    {S("123456789\n"), NORM, false, 0, S("123456789\r\n"), LONG, 1, 10, 100},
    {S("123456789\n"), REJ, false, 0, S("123456789\n"), BLF, 1, 10, 100},
    {S("12345678901234"), BDAT_REJ, false, 0, S("12345678901234"), LONG, 1, 10, 100},
    /* header fields: counted until the first empty line, folded lines not counted */
    {S("A: 1\r\nB: 2\r\n\r\nC: body\r\nD: body\r\n.\r\n"), REJ, true, 0,
     S("A: 1\r\nB: 2\r\n\r\nC: body\r\nD: body\r\n"), 0, 2, 1000, 2},
    {S("A: 1\r\nB: 2\r\nC: 3\r\n\r\n.\r\n"), REJ, true, 0, S("A: 1\r\nB: 2\r\nC: 3\r\n\r\n"), HDRS,
     3, 1000, 2},
    {S("A: 1\r\n 2\r\n\t3\r\nB: x\r\n\r\n.\r\n"), REJ, true, 0,
     S("A: 1\r\n 2\r\n\t3\r\nB: x\r\n\r\n"), 0, 2, 1000, 2},
    {S("A: 1\nB: 2\nC: 3\n\nD: 4\n"), NORM, false, 0, S("A: 1\r\nB: 2\r\nC: 3\r\n\r\nD: 4\r\n"),
     HDRS, 3, 1000, 2},
    {S("A: 1\r\n.\r\nB: 2\r\nC: 3\r\n"), BDAT_REJ, false, 0, S("A: 1\r\n.\r\nB: 2\r\nC: 3\r\n"),
     HDRS, 4, 1000, 3},
    /* BDAT: raw octets, no dot handling, no end */
    {S("a\r\n.\r\nb"), BDAT_REJ, false, 0, S("a\r\n.\r\nb"), 0, -1, 1000, 100},
    {S("..x\r\n"), BDAT_REJ, false, 0, S("..x\r\n"), 0, 1, 1000, 100},
    {S("a\nb"), BDAT_REJ, false, 0, S("a\nb"), BLF, 2, 1000, 100},
    {S("a\nb"), BDAT_NORM, false, 0, S("a\r\nb"), 0, 2, 1000, 100},
    {S("a\r"), BDAT_NORM, false, 0, S("a\r\n"), 0, 1, 1000, 100}, /* completed by finish */
    {S("a\r"), BDAT_REJ, false, 0, S("a\r"), BCR, 1, 1000, 100},
    {S("a\r\n"), BDAT_REJ, false, 0, S("a\r\n"), 0, 1, 1000, 100},
};

struct result {
    uint8_t out[4096];
    size_t out_len;
    size_t consumed;
    bool ended;
    struct smtp_data_dec d;
};

static uint64_t rng = 88172645463325252ull;

static size_t next_rand(size_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (size_t)(rng % n);
}

/* Feed a case in pieces: piece == 0 means random sizes, else fixed size. */
static void run(const struct data_case *c, size_t piece, struct result *r)
{
    bool bdat = c->mode == BDAT_REJ || c->mode == BDAT_NORM;
    enum smtp_newline nl =
        (c->mode == NORM || c->mode == BDAT_NORM) ? SMTP_NEWLINE_NORMALIZE : SMTP_NEWLINE_REJECT;
    memset(r, 0, sizeof *r);
    smtp_data_init(&r->d, bdat, nl, c->max_line, c->max_headers);
    const uint8_t *in = (const uint8_t *)c->in;
    size_t pos = 0;
    while (pos < c->in_len && !r->ended) {
        size_t n = piece ? piece : 1 + next_rand(8);
        if (n > c->in_len - pos)
            n = c->in_len - pos;
        uint8_t buf[256];
        size_t used, wrote;
        assert_true(2 * n + 2 <= sizeof buf);
        memset(buf, 0xee, sizeof buf);
        r->ended = smtp_data_feed(&r->d, in + pos, n, &used, buf, &wrote);
        assert_true(used <= n);
        assert_true(wrote <= 2 * n + 2);
        assert_true(2 * n + 2 >= sizeof buf || buf[2 * n + 2] == 0xee);
        if (!r->ended)
            assert_int_equal(used, n); /* all is consumed until the end */
        assert_true(r->out_len + wrote <= sizeof r->out);
        memcpy(r->out + r->out_len, buf, wrote);
        r->out_len += wrote;
        pos += used;
    }
    r->consumed = pos;
    if (bdat) {
        uint8_t buf[2];
        size_t wrote;
        smtp_data_finish(&r->d, buf, &wrote);
        assert_true(wrote <= 2);
        memcpy(r->out + r->out_len, buf, wrote);
        r->out_len += wrote;
    }
}

static void show(const char *what, size_t i, const uint8_t *s, size_t n)
{
    fprintf(stderr, "case %zu %s: \"", i, what);
    for (size_t k = 0; k < n; k++) {
        if (s[k] >= 0x20 && s[k] < 0x7f && s[k] != '\\')
            fputc(s[k], stderr);
        else
            fprintf(stderr, "\\x%02x", s[k]);
    }
    fprintf(stderr, "\"\n");
}

static void check(size_t i, const struct data_case *c, const struct result *r)
{
    if (r->out_len != c->out_len || memcmp(r->out, c->out, c->out_len) != 0) {
        show("input", i, (const uint8_t *)c->in, c->in_len);
        show("want", i, (const uint8_t *)c->out, c->out_len);
        show("got", i, r->out, r->out_len);
        fail_msg("case %zu: content differs", i);
    }
    if (r->ended != c->end)
        fail_msg("case %zu: ended %d, want %d", i, r->ended, c->end);
    assert_int_equal(r->d.ended, c->end);
    assert_int_equal(r->consumed, c->in_len - c->rest);
    if (r->d.flags != c->flags)
        fail_msg("case %zu: flags %#x, want %#x", i, r->d.flags, c->flags);
    if (c->headers >= 0 && r->d.headers != (size_t)c->headers)
        fail_msg("case %zu: headers %zu, want %d", i, r->d.headers, c->headers);
    assert_true(r->d.octets == r->out_len);
}

static void test_data_table(void **state)
{
    (void)state;
    static struct result whole, bytes, split;
    for (size_t i = 0; i < N(cases); i++) {
        const struct data_case *c = &cases[i];
        run(c, c->in_len ? c->in_len : 1, &whole);
        check(i, c, &whole);
        run(c, 1, &bytes);
        check(i, c, &bytes);
        for (int k = 0; k < 200; k++) {
            run(c, 0, &split);
            check(i, c, &split);
            assert_int_equal(split.d.flags, whole.d.flags);
            assert_int_equal(split.d.in_headers, whole.d.in_headers);
        }
    }
}

static void test_data_after_end(void **state)
{
    (void)state;
    struct smtp_data_dec d;
    uint8_t out[64];
    size_t used, wrote;
    smtp_data_init(&d, false, SMTP_NEWLINE_REJECT, 1000, 100);
    assert_true(smtp_data_feed(&d, (const uint8_t *)".\r\nNOOP\r\n", 9, &used, out, &wrote));
    assert_int_equal(used, 3);
    assert_int_equal(wrote, 0);
    /* once ended, nothing more is consumed */
    assert_true(smtp_data_feed(&d, (const uint8_t *)"NOOP\r\n", 6, &used, out, &wrote));
    assert_int_equal(used, 0);
    assert_int_equal(wrote, 0);
    assert_null(smtp_data_status(&d));
}

static void test_data_status(void **state)
{
    (void)state;
    static const struct {
        unsigned flags;
        int code;
        const char *enh;
    } rows[] = {
        {0, 0, NULL},         {NUL, 550, "5.6.0"},         {NUL | BLF | LONG | HDRS, 550, "5.6.0"},
        {BLF, 550, "5.5.2"},  {BCR, 550, "5.5.2"},         {BCR | LONG | HDRS, 550, "5.5.2"},
        {LONG, 500, "5.5.2"}, {LONG | HDRS, 500, "5.5.2"}, {HDRS, 552, "5.3.4"},
    };
    struct smtp_data_dec d;
    smtp_data_init(&d, false, SMTP_NEWLINE_REJECT, 1000, 100);
    for (size_t i = 0; i < N(rows); i++) {
        d.flags = rows[i].flags;
        const struct smtp_status *st = smtp_data_status(&d);
        if (rows[i].code == 0) {
            assert_null(st);
            continue;
        }
        assert_non_null(st);
        assert_int_equal(st->code, rows[i].code);
        assert_string_equal(st->enh, rows[i].enh);
        assert_true(strlen(st->text) > 10);
    }
}

/* Index just past the first CR LF "." CR LF of CRLF + in, 0 when there is none. */
static size_t first_end(const uint8_t *in, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++)
        if (in[i] == '.' && in[i + 1] == '\r' && in[i + 2] == '\n' &&
            (i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n')))
            return i + 3;
    return 0;
}

/* A long message of mixed lines, split at random: same output as one feed, and
   DATA ends exactly after the first CRLF.CRLF. */
static void test_data_random_message(void **state)
{
    (void)state;
    static uint8_t in[20000], out1[45000], out2[45000];
    static const char *pieces[] = {
        "Subject: hi\r\n",  "\r\n",    ".",     "..", "\r",          "\n",       "x",
        "line of text\r\n", "\r\n.\r", "\n.\n", "\0", " folded\r\n", "\r\n.\r\n"};
    for (int round = 0; round < 50; round++) {
        size_t n = 0;
        while (n < sizeof in - 32) {
            /* the real end marker is rare: pieces[N - 1] one time in 2000 */
            size_t pick = next_rand(2000) == 0 ? N(pieces) - 1 : next_rand(N(pieces) - 1);
            const char *p = pieces[pick];
            size_t l = p[0] ? strlen(p) : 1;
            memcpy(in + n, p, l);
            n += l;
        }
        for (int nl = 0; nl < 2; nl++) {
            for (int bdat = 0; bdat < 2; bdat++) {
                struct smtp_data_dec d1, d2;
                size_t used1, len1, pos = 0, len2 = 0;
                smtp_data_init(&d1, bdat, nl, 80, 20);
                smtp_data_init(&d2, bdat, nl, 80, 20);
                bool e1 = smtp_data_feed(&d1, in, n, &used1, out1, &len1);
                bool e2 = false;
                while (pos < n && !e2) {
                    size_t k = 1 + next_rand(300), used, wrote;
                    if (k > n - pos)
                        k = n - pos;
                    e2 = smtp_data_feed(&d2, in + pos, k, &used, out2 + len2, &wrote);
                    assert_true(wrote <= 2 * k + 2);
                    len2 += wrote;
                    pos += used;
                }
                assert_int_equal(e1, e2);
                assert_int_equal(used1, pos);
                assert_int_equal(len1, len2);
                assert_memory_equal(out1, out2, len1);
                assert_int_equal(d1.flags, d2.flags);
                assert_int_equal(d1.headers, d2.headers);
                assert_true(d1.octets == len1);
                if (bdat) {
                    assert_false(e1);
                } else {
                    size_t e = first_end(in, n);
                    assert_int_equal(e1, e != 0);
                    if (e1)
                        assert_int_equal(used1, e);
                }
                /* normalized output holds no bare CR or LF */
                if (nl == SMTP_NEWLINE_NORMALIZE) {
                    for (size_t k = 0; k < len1; k++) {
                        if (out1[k] == '\n')
                            assert_true(k > 0 && out1[k - 1] == '\r');
                        if (out1[k] == '\r' && k + 1 < len1)
                            assert_true(out1[k + 1] == '\n');
                    }
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_table),
        cmocka_unit_test(test_data_after_end),
        cmocka_unit_test(test_data_status),
        cmocka_unit_test(test_data_random_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
