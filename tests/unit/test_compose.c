/*
 * test_compose - unit tests of src/smtp/compose.c, the message builder of
 * `tern send`: RFC 2047 encoded-words (checked by decoding them back),
 * RFC 2231 parameters, quoted-printable and base64, mailboxes, media types,
 * boundaries, dot-stuffing, and whole messages (structure, line lengths,
 * field overrides, errors). Table-driven where there is a table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/compose.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode base64 (no line breaks, '=' padding) into out; returns its length or -1. */
static long b64dec(const char *s, size_t n, unsigned char *out)
{
    if (n % 4)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++)
            v[j] = s[i + j] == '=' ? 0 : b64val(s[i + j]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return -1;
        uint32_t x =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (unsigned char)(x >> 16);
        if (s[i + 2] != '=')
            out[k++] = (unsigned char)(x >> 8);
        if (s[i + 3] != '=')
            out[k++] = (unsigned char)x;
    }
    return (long)k;
}

/* Every line of s ends in CRLF and is at most max octets without it. */
static void check_lines(const char *s, size_t n, size_t max)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            assert_true(i + 1 < n && s[i + 1] == '\n');
            if (i - start > max)
                fail_msg("line of %zu octets: %.*s", i - start, (int)(i - start), s + start);
            start = i + 2;
            i++;
        } else {
            assert_true(s[i] != '\n');
        }
    }
    assert_int_equal(start, n);
}

/* Decode a header field written by compose_header_text: "Name: " then
   either folded text or encoded-words; unfolded and decoded into out. */
static void decode_field(const char *field, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    assert_memory_equal(field, name, nl);
    assert_true(field[nl] == ':');
    const char *p = field + nl + 1;
    /* unfold */
    char u[4096];
    size_t k = 0;
    for (; *p; p++) {
        if (p[0] == '\r' && p[1] == '\n') {
            p++;
            if (p[1] == '\0')
                break;
            assert_true(p[1] == ' ' || p[1] == '\t');
            continue;
        }
        u[k++] = *p;
    }
    u[k] = '\0';
    const char *v = u[0] == ' ' ? u + 1 : u;
    size_t o = 0;
    if (strncmp(v, "=?UTF-8?B?", 10) != 0) {
        snprintf(out, outlen, "%s", v);
        return;
    }
    /* encoded-words separated by white space */
    while (*v) {
        while (*v == ' ' || *v == '\t')
            v++;
        if (!*v)
            break;
        assert_true(strncmp(v, "=?UTF-8?B?", 10) == 0);
        const char *e = strstr(v + 10, "?=");
        assert_non_null(e);
        assert_true(e - v + 2 <= COMPOSE_WORD_MAX);
        long d = b64dec(v + 10, (size_t)(e - v - 10), (unsigned char *)out + o);
        assert_true(d >= 0);
        o += (size_t)d;
        v = e + 2;
    }
    out[o] = '\0';
}

static const char *const texts[] = {
    "Hello",
    "Grüße aus Köln",
    "a subject with =?encoded-word?= look-alikes",
    "日本語の件名はとても長いのでいくつかの行に分けて折り返す必要があります。日本語の件名はとても長"
    "い",
    "emoji 😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀",
    "a plain ASCII subject that is long enough to be folded at one of its spaces, twice "
    "or more, when written in a header field",
    "tab\there",
    "",
};

static void test_header_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(texts); i++) {
        struct buf b;
        buf_init(&b, 65536);
        assert_int_equal(compose_header_text(&b, "Subject", texts[i]), 0);
        check_lines(b.data, b.len, 78);
        char back[4096];
        decode_field(b.data, "Subject", back, sizeof back);
        if (strcmp(back, texts[i]) != 0)
            fail_msg("case %zu: %s\ngave: %s\ndecoded: %s", i, texts[i], b.data, back);
        /* non-ASCII and "=?" are encoded; plain ASCII is not */
        bool ascii = true;
        for (const char *p = texts[i]; *p; p++)
            ascii = ascii && (unsigned char)*p < 0x80;
        assert_true((strncmp(b.data, "Subject: =?UTF-8?B?", 19) == 0) ==
                    (!ascii || strstr(texts[i], "=?") != NULL));
        buf_free(&b);
    }
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(compose_header_text(&b, "Subject", "bad \xff utf-8"), -1);
    assert_int_equal(compose_header_text(&b, "Subject", "two\r\nlines"), -1);
    assert_int_equal(compose_header_text(&b, "Subject", "two\nlines"), -1);
    buf_free(&b);
    /* a word too long for a line is encoded (and so cut) rather than passing 998 */
    char longword[2000];
    memset(longword, 'x', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    buf_init(&b, 65536);
    assert_int_equal(compose_header_text(&b, "X-Long", longword), 0);
    check_lines(b.data, b.len, 78);
    char back[4096];
    decode_field(b.data, "X-Long", back, sizeof back);
    assert_string_equal(back, longword);
    buf_free(&b);
}

/* RFC 2231 and quoted-string parameters: exact output. */
static const struct param_case {
    const char *value;
    const char *out; /* after "Content-Disposition: attachment" (col 32) */
} param_cases[] = {
    {"report.pdf", "; filename=\"report.pdf\""},
    {"my \"best\" \\file.txt", "; filename=\"my \\\"best\\\" \\\\file.txt\""},
    {"Grüße.txt", ";\r\n filename*=utf-8''Gr%C3%BC%C3%9Fe.txt"},
    {"a;b=c d.txt", "; filename=\"a;b=c d.txt\""},
    {"tab\tname", ";\r\n filename*=utf-8''tab%09name"},
    {"日本語のファイル名はとても長いのでいくつかの行に分けます.pdf",
     ";\r\n filename*0*=utf-8''%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%81%AE%E3%83%95%E3%82%A1"
     ";\r\n filename*1*=%E3%82%A4%E3%83%AB%E5%90%8D%E3%81%AF%E3%81%A8%E3%81%A6%E3%82%82"
     ";\r\n filename*2*=%E9%95%B7%E3%81%84%E3%81%AE%E3%81%A7%E3%81%84%E3%81%8F%E3%81%A4"
     ";\r\n filename*3*=%E3%81%8B%E3%81%AE%E8%A1%8C%E3%81%AB%E5%88%86%E3%81%91%E3%81%BE"
     ";\r\n filename*4*=%E3%81%99.pdf"},
};

static void test_param(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(param_cases); i++) {
        struct buf b;
        buf_init(&b, 4096);
        size_t col = 32;
        assert_int_equal(compose_param(&b, &col, "filename", param_cases[i].value), 0);
        if (strcmp(b.data, param_cases[i].out) != 0)
            fail_msg("case %zu:\n got: %s\nwant: %s", i, b.data, param_cases[i].out);
        buf_free(&b);
    }
    /* a long ASCII name: continuations too, and no line past 78 */
    char name[200];
    memset(name, 'n', sizeof name - 5);
    memcpy(name + sizeof name - 5, ".txt", 5);
    struct buf b;
    buf_init(&b, 4096);
    size_t col = 32;
    assert_true(buf_puts(&b, "Content-Disposition: attachment") == 0);
    assert_int_equal(compose_param(&b, &col, "filename", name), 0);
    assert_true(buf_puts(&b, "\r\n") == 0);
    check_lines(b.data, b.len, 78);
    assert_non_null(strstr(b.data, "filename*0*=utf-8''nnn"));
    assert_non_null(strstr(b.data, "filename*2*="));
    buf_reset(&b);
    assert_int_equal(compose_param(&b, &col, "filename", "bad\xc3"), -1);
    buf_free(&b);
}

static void test_base64_qp(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 20);
    static const struct {
        const char *in, *out;
    } b64[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}};
    for (size_t i = 0; i < N(b64); i++) {
        buf_reset(&b);
        assert_int_equal(compose_base64(&b, (const uint8_t *)b64[i].in, strlen(b64[i].in)), 0);
        assert_string_equal(b.data ? b.data : "", b64[i].out);
    }
    /* lines of 76, every octet value, decodes back */
    uint8_t all[1000];
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (uint8_t)(i * 7);
    buf_reset(&b);
    assert_int_equal(compose_base64_lines(&b, all, sizeof all), 0);
    check_lines(b.data, b.len, 76);
    unsigned char back[1100];
    size_t k = 0;
    for (char *line = b.data; *line;) {
        char *e = strstr(line, "\r\n");
        long d = b64dec(line, (size_t)(e - line), back + k);
        assert_true(d >= 0);
        k += (size_t)d;
        line = e + 2;
    }
    assert_int_equal(k, sizeof all);
    assert_memory_equal(back, all, sizeof all);

    static const struct {
        const char *in, *out;
    } qp[] = {
        {"plain\n", "plain\r\n"},
        {"crlf\r\nline\r\n", "crlf\r\nline\r\n"},
        {"no end", "no end\r\n"},
        {"caf\xc3\xa9 = ok\n", "caf=C3=A9 =3D ok\r\n"},
        {"trailing space \nand tab\t\n", "trailing space=20\r\nand tab=09\r\n"},
        {"bare\rcr\n", "bare=0Dcr\r\n"},
        {"\n\n", "\r\n\r\n"},
        {"", ""},
        {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\r\n"
         "xxxxxxx\r\n"},
    };
    for (size_t i = 0; i < N(qp); i++) {
        buf_reset(&b);
        assert_int_equal(compose_qp(&b, (const uint8_t *)qp[i].in, strlen(qp[i].in)), 0);
        if (strcmp(b.data ? b.data : "", qp[i].out) != 0)
            fail_msg("qp case %zu:\n got: %s\nwant: %s", i, b.data ? b.data : "", qp[i].out);
        if (b.len)
            check_lines(b.data, b.len, 76);
    }
    /* a long line of escapes never splits an =XX */
    char esc[300];
    memset(esc, '=', sizeof esc - 1);
    esc[sizeof esc - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(compose_qp(&b, (const uint8_t *)esc, strlen(esc)), 0);
    check_lines(b.data, b.len, 76);
    for (char *line = b.data; *line;) {
        char *e = strstr(line, "\r\n");
        size_t n = (size_t)(e - line);
        for (size_t i = 0; i < n; i++) {
            if (line[i] != '=')
                continue;
            if (i + 1 == n)
                break; /* soft break */
            assert_true(i + 2 < n && line[i + 1] == '3' && line[i + 2] == 'D');
            i += 2;
        }
        line = e + 2;
    }
    buf_free(&b);
}

static const struct mailbox_case {
    const char *in;
    bool ok;
    const char *display; /* NULL: none */
    const char *addr;
} mailbox_cases[] = {
    {"a@b.example", true, NULL, "a@b.example"},
    {"  a@b.example  ", true, NULL, "a@b.example"},
    {"Alice <a@b.example>", true, "Alice", "a@b.example"},
    {"\"Alice Q. Doe\" <a@b.example>", true, "Alice Q. Doe", "a@b.example"},
    {"<a@b.example>", true, NULL, "a@b.example"},
    {"Jörg <jörg@exämple.test>", true, "Jörg", "jörg@exämple.test"},
    {"\"john doe\"@example.org", true, NULL, "\"john doe\"@example.org"},
    {"a@[192.0.2.1]", true, NULL, "a@[192.0.2.1]"},
    {"nodomain", false, NULL, NULL},
    {"postmaster", false, NULL, NULL},
    {"a@", false, NULL, NULL},
    {"a b@c.example", false, NULL, NULL},
    {"Alice <a@b.example", false, NULL, NULL},
    {"Alice a@b.example>", false, NULL, NULL},
    {"<>", false, NULL, NULL},
    {"", false, NULL, NULL},
    {"Bad\x01Name <a@b.example>", false, NULL, NULL},
};

static void test_mailbox(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(mailbox_cases); i++) {
        const struct mailbox_case *c = &mailbox_cases[i];
        struct compose_mailbox mb;
        bool ok = compose_parse_mailbox(c->in, &mb);
        if (ok != c->ok)
            fail_msg("case %zu \"%s\": %s", i, c->in, ok ? "accepted" : "refused");
        if (!ok)
            continue;
        assert_int_equal(mb.addr_len, strlen(c->addr));
        assert_memory_equal(mb.addr, c->addr, mb.addr_len);
        if (c->display) {
            assert_non_null(mb.display);
            assert_int_equal(mb.display_len, strlen(c->display));
            assert_memory_equal(mb.display, c->display, mb.display_len);
        } else {
            assert_null(mb.display);
        }
    }
}

static void test_types_boundaries_dots(void **state)
{
    (void)state;
    assert_string_equal(compose_content_type("a.pdf"), "application/pdf");
    assert_string_equal(compose_content_type("dir/x.PNG"), "image/png");
    assert_string_equal(compose_content_type("notes.txt"), "text/plain");
    assert_string_equal(compose_content_type("archive.tar.gz"), "application/gzip");
    assert_string_equal(compose_content_type("README"), "application/octet-stream");
    assert_string_equal(compose_content_type(".bashrc"), "application/octet-stream");
    assert_string_equal(compose_content_type("x."), "application/octet-stream");
    assert_string_equal(compose_content_type("a.unknownext"), "application/octet-stream");
    assert_string_equal(compose_content_type("d.v1/file"), "application/octet-stream");

    assert_true(compose_boundary_valid("=_tern_0123456789abcdef"));
    assert_true(compose_boundary_valid("a'()+_,-./:=? b"));
    assert_false(compose_boundary_valid(""));
    assert_false(compose_boundary_valid("ends in space "));
    assert_false(compose_boundary_valid("bad\"quote"));
    char b71[72];
    memset(b71, 'b', 71);
    b71[71] = '\0';
    assert_false(compose_boundary_valid(b71));
    b71[70] = '\0';
    assert_true(compose_boundary_valid(b71));

    static const struct {
        const char *chunks[4];
        const char *out;
    } dots[] = {
        {{".\r\n", NULL}, "..\r\n"},
        {{"a\r\n.b\r\n..c\r\n", NULL}, "a\r\n..b\r\n...c\r\n"},
        {{"a\r", "\n", ".x\r\n", NULL}, "a\r\n..x\r\n"},
        {{"a.b\r\n", NULL}, "a.b\r\n"},
        {{"x\r\n", ".", ".", NULL}, "x\r\n..."},
    };
    for (size_t i = 0; i < N(dots); i++) {
        struct buf b;
        buf_init(&b, 4096);
        bool bol = true;
        for (size_t j = 0; dots[i].chunks[j]; j++)
            assert_int_equal(compose_dot_stuff(&b, (const uint8_t *)dots[i].chunks[j],
                                               strlen(dots[i].chunks[j]), &bol),
                             0);
        assert_string_equal(b.data, dots[i].out);
        buf_free(&b);
    }
}

/* The header section of a built message, and its body. */
static void split(const char *msg, char *head, size_t headlen, const char **body)
{
    const char *e = strstr(msg, "\r\n\r\n");
    assert_non_null(e);
    size_t n = (size_t)(e - msg) + 2;
    assert_true(n < headlen);
    memcpy(head, msg, n);
    head[n] = '\0';
    *body = e + 4;
}

static void test_message(void **state)
{
    (void)state;
    const char *to[] = {"Alice <alice@example.org>", "bob@example.org",
                        "\"Doe, John\" <john@example.org>", "Jörg Müller <jm@example.org>"};
    const char *cc[] = {"carol@example.org"};
    uint8_t att1[3000];
    for (size_t i = 0; i < sizeof att1; i++)
        att1[i] = (uint8_t)(i * 31 + 7);
    struct compose_part parts[] = {
        {"data.bin", "application/octet-stream", att1, sizeof att1},
        {"Übersicht.pdf", "application/pdf", (const uint8_t *)"%PDF-1.4\n", 9},
    };
    struct compose_field fields[] = {{"X-Mailer-Test", "yes"}, {"Reply-To", "r@example.org"}};
    const char *body = "Hello,\n.a line with a dot\nbye\n";
    struct compose_msg m = {
        .from = "Sender <s@example.org>",
        .to = to,
        .nto = N(to),
        .cc = cc,
        .ncc = 1,
        .subject = "Grüße",
        .date = "Mon, 01 Jan 2024 00:00:00 +0000",
        .message_id = "<id.1@example.org>",
        .fields = fields,
        .nfields = N(fields),
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .parts = parts,
        .nparts = N(parts),
        .boundary = "=_tern_abc",
    };
    struct buf b;
    buf_init(&b, 1 << 20);
    char err[200];
    assert_int_equal(compose_message(&m, &b, err, sizeof err), 0);
    check_lines(b.data, b.len, 78);
    for (size_t i = 0; i < b.len; i++)
        assert_true((unsigned char)b.data[i] < 0x80);
    char head[8192];
    const char *rest;
    split(b.data, head, sizeof head, &rest);
    assert_non_null(strstr(head, "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"));
    assert_non_null(strstr(head, "From: Sender <s@example.org>\r\n"));
    assert_non_null(strstr(head, "To: Alice <alice@example.org>, bob@example.org,\r\n "
                                 "\"Doe, John\" <john@example.org>,\r\n "
                                 "=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <jm@example.org>\r\n"));
    assert_non_null(strstr(head, "Cc: carol@example.org\r\n"));
    assert_non_null(strstr(head, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
    assert_non_null(strstr(head, "Message-ID: <id.1@example.org>\r\n"));
    assert_non_null(strstr(head, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(head, "X-Mailer-Test: yes\r\nReply-To: r@example.org\r\n"));
    assert_non_null(strstr(head, "Content-Type: multipart/mixed; boundary=\"=_tern_abc\"\r\n"));
    /* the parts */
    assert_non_null(strstr(rest, "\r\n--=_tern_abc\r\nContent-Type: text/plain; "
                                 "charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                                 "Hello,\r\n.a line with a dot\r\nbye\r\n\r\n--=_tern_abc\r\n"));
    assert_non_null(strstr(rest, "Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
                                 "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
                                 "Content-Transfer-Encoding: base64\r\n\r\n"));
    assert_non_null(strstr(rest, "Content-Disposition: attachment;\r\n "
                                 "filename*=utf-8''%C3%9Cbersicht.pdf\r\n"));
    assert_non_null(strstr(rest, "\r\nJVBERi0xLjQK\r\n\r\n--=_tern_abc--\r\n"));
    size_t nb = 0;
    for (const char *p = rest; (p = strstr(p, "\r\n--=_tern_abc")); p++)
        nb++;
    assert_int_equal(nb, 4); /* three parts and the close */
    assert_true(b.len > 2 && strcmp(b.data + b.len - 2, "\r\n") == 0);

    /* the fields given replace ours; MIME fields are refused */
    struct compose_field over[] = {{"date", "Tue, 02 Jan 2024 00:00:00 +0000"},
                                   {"Message-ID", "<mine@example.org>"},
                                   {"To", "list@example.org"}};
    struct compose_msg m2 = {.from = "s@example.org",
                             .to = to,
                             .nto = 1,
                             .date = "Mon, 01 Jan 2024 00:00:00 +0000",
                             .message_id = "<id.2@example.org>",
                             .fields = over,
                             .nfields = N(over),
                             .body = (const uint8_t *)"caf\xc3\xa9\n",
                             .body_len = 6};
    buf_reset(&b);
    assert_int_equal(compose_message(&m2, &b, err, sizeof err), 0);
    assert_null(strstr(b.data, "Mon, 01 Jan"));
    assert_null(strstr(b.data, "id.2"));
    assert_null(strstr(b.data, "alice"));
    assert_non_null(strstr(b.data, "date: Tue, 02 Jan 2024"));
    assert_non_null(strstr(b.data, "Content-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                   "caf=C3=A9\r\n"));
    /* not UTF-8: unknown-8bit */
    m2.body = (const uint8_t *)"\xff\xfe\n";
    m2.body_len = 3;
    buf_reset(&b);
    assert_int_equal(compose_message(&m2, &b, err, sizeof err), 0);
    assert_non_null(strstr(b.data, "charset=unknown-8bit\r\nContent-Transfer-Encoding: "
                                   "quoted-printable\r\n\r\n=FF=FE\r\n"));

    static const struct {
        struct compose_field f;
        const char *err;
    } bad_fields[] = {
        {{"Content-Type", "text/html"}, "Content-Type: Tern writes the MIME fields itself"},
        {{"MIME-Version", "1.0"}, "MIME-Version: Tern writes"},
        {{"Bad Name", "x"}, "\"Bad Name\" is not a header field name"},
        {{"X-Test", "line\r\nbreak"}, "X-Test: the value is not one line of UTF-8 text"},
        {{"X-Test", "\xff"}, "X-Test: the value is not one line"},
    };
    for (size_t i = 0; i < N(bad_fields); i++) {
        m2.fields = &bad_fields[i].f;
        m2.nfields = 1;
        buf_reset(&b);
        assert_int_equal(compose_message(&m2, &b, err, sizeof err), -1);
        if (!strstr(err, bad_fields[i].err))
            fail_msg("field %zu: %s", i, err);
    }
    m2.nfields = 0;
    const char *bad_to[] = {"not an address"};
    m2.to = bad_to;
    buf_reset(&b);
    assert_int_equal(compose_message(&m2, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "\"not an address\" is not an address"));
    m2.to = to;
    m2.subject = "two\nlines";
    buf_reset(&b);
    assert_int_equal(compose_message(&m2, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "subject"));
    buf_free(&b);

    /* the message must fit in the buffer's max: an error, not a cut */
    m.subject = "x";
    buf_init(&b, 2000);
    assert_int_equal(compose_message(&m, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger than 2000 octets"));
    buf_free(&b);

    /* a text that holds the boundary is sent quoted-printable */
    const char *tricky = "--=_tern_abc\n";
    m.body = (const uint8_t *)tricky;
    m.body_len = strlen(tricky);
    buf_init(&b, 1 << 20);
    assert_int_equal(compose_message(&m, &b, err, sizeof err), 0);
    assert_non_null(strstr(b.data, "quoted-printable\r\n\r\n--=3D_tern_abc\r\n"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_param),
        cmocka_unit_test(test_base64_qp),
        cmocka_unit_test(test_mailbox),
        cmocka_unit_test(test_types_boundaries_dots),
        cmocka_unit_test(test_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
