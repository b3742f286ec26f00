/*
 * test_dkimtag - unit tests of the DKIM text formats (src/mailauth/dkimtag.c):
 * tag lists (RFC 6376 §3.2), DKIM-Signature tags (§3.5), key records
 * (§3.6.1, RFC 8463 §4), base64 lengths, the CRLF conversion of
 * libopendkim's LF-folded signature header, and TXT records in zone-file
 * form (RFC 1035 §3.3.14).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "mailauth/dkimtag.h"

static void test_taglist(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        size_t n;           /* tags when rc == 0 */
        const char *expect; /* "name=value|name=value" when rc == 0, else part of the error */
    } cases[] = {
        {"", 0, 0, ""},
        {"v=1", 0, 1, "v=1"},
        {"v=1;", 0, 1, "v=1"},
        {" v = 1 ; a=rsa-sha256 ;", 0, 2, "v=1|a=rsa-sha256"},
        {"v=1;;a=x", 0, 2, "v=1|a=x"},                          /* empty spec tolerated */
        {"p=", 0, 1, "p="},                                     /* empty value */
        {"b=abc\r\n\t def;bh=x", 0, 2, "b=abc\r\n\t def|bh=x"}, /* folded value */
        {"x_1=a:b:c", 0, 1, "x_1=a:b:c"},
        {"h=From : To", 0, 1, "h=From : To"},
        {"\r\n v=1", 0, 1, "v=1"},
        {"1v=1", -1, 0, "must start with a letter"},
        {"=1", -1, 0, "must start with a letter"},
        {"v", -1, 0, "has no '='"},
        {"v 1=2", -1, 0, "has no '='"},
        {"v-x=1", -1, 0, "has no '='"},
        {"v=1;v=2", -1, 0, "appears twice"},
        {"v=a\x01", -1, 0, "invalid octet 0x01"},
        {"v=caf\xc3\xa9", -1, 0, "invalid octet 0xc3"},
        {"V=1;v=2", 0, 2, "V=1|v=2"}, /* names are case-sensitive */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_taglist tl;
        char err[128] = "";
        int rc = dkim_taglist_parse(cases[i].text, strlen(cases[i].text), &tl, err, sizeof err);
        print_message("# %zu: %d %s\n", i, rc, err);
        assert_int_equal(rc, cases[i].rc);
        if (rc < 0) {
            assert_non_null(strstr(err, cases[i].expect));
            continue;
        }
        assert_int_equal(tl.n, cases[i].n);
        char got[256] = "";
        for (size_t k = 0; k < tl.n; k++) {
            char one[128];
            snprintf(one, sizeof one, "%s%.*s=%.*s", k ? "|" : "", (int)tl.v[k].name_len,
                     tl.v[k].name, (int)tl.v[k].value_len, tl.v[k].value);
            strcat(got, one);
        }
        assert_string_equal(got, cases[i].expect);
    }
    /* the tag count is bounded */
    char many[2048] = "";
    for (int i = 0; i < DKIM_TAGS_MAX + 1; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d=x;", i);
        strcat(many, t);
    }
    struct dkim_taglist tl;
    char err[64];
    assert_int_equal(dkim_taglist_parse(many, strlen(many), &tl, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than"));
    assert_non_null(dkim_taglist_get(&tl, "t0"));
    assert_null(dkim_taglist_get(&tl, "T0"));
}

#define SIG_OK                                                                                     \
    "v=1; a=rsa-sha256; c=relaxed/relaxed; d=Example.ORG; s=Sel2024;\r\n\tt=1700000000; "          \
    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\th=From:To:Subject:from; "               \
    "b=dGVzdHNp\r\n\t Z25hdHVyZQ=="

static void test_sig_parse(void **state)
{
    (void)state;
    struct dkim_sig_tags t;
    char err[600] = "";
    assert_int_equal(dkim_sig_parse(SIG_OK, strlen(SIG_OK), &t, err, sizeof err), 0);
    assert_int_equal(t.alg, DKIM_ALG_RSA_SHA256);
    assert_string_equal(t.alg_text, "rsa-sha256");
    assert_string_equal(t.domain, "example.org");
    assert_string_equal(t.selector, "sel2024");
    assert_string_equal(t.b, "dGVzdHNpZ25hdHVyZQ==");
    assert_true(t.has_timestamp);
    assert_true(t.timestamp == 1700000000);
    assert_false(t.has_expiry);
    assert_false(t.has_length);

    static const struct {
        const char *text;
        const char *error; /* NULL: parses */
        enum dkim_alg alg;
    } cases[] = {
        {"v=1; a=ed25519-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA", NULL, DKIM_ALG_ED25519},
        {"v=1; a=rsa-sha1; d=a.b; s=s; h=from; bh=AAAA; b=AAAA", NULL, DKIM_ALG_RSA_SHA1},
        {"v=1; a=rsa-sha256; d=a.b; s=s.t; h=To:FROM; bh=AAAA; b=AAAA; c=simple", NULL,
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; i=@a.b", NULL,
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; i=u@x.a.b; l=10; t=1; x=2; "
         "q=dns/txt; z=foo",
         NULL, DKIM_ALG_RSA_SHA256},
        {"a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA", "no v= tag", DKIM_ALG_RSA_SHA256},
        {"v=2; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA", "unsupported version",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=dsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA", "unknown algorithm",
         DKIM_ALG_UNKNOWN},
        {"v=1; a=rsa-sha256; s=s; h=from; bh=AAAA; b=AAAA", "no d= tag", DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a..b; s=s; h=from; bh=AAAA; b=AAAA", "not a domain",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=-s; h=from; bh=AAAA; b=AAAA", "not a valid selector",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=to:subject; bh=AAAA; b=AAAA", "does not include From",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; c=fancy", "canonicalization",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; c=relaxed/", "canonicalization",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; i=u@c.d", "not d=a.b",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; i=u@xa.b", "not d=a.b",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; i=nobody", "no valid domain",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; q=http", "dns/txt",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; l=x", "l= is not",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; t=1234567890123", "t= is not",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAAA; t=5; x=4",
         "before t=", DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=", "b= is empty", DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AA*A; b=AAAA", "bh= is not base64",
         DKIM_ALG_RSA_SHA256},
        {"v=1; a=rsa-sha256; d=a.b; s=s; h=from; bh=AAAA; b=AAA", "b= is not base64",
         DKIM_ALG_RSA_SHA256},
        {"v=1; v=1; a=rsa-sha256", "appears twice", DKIM_ALG_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = dkim_sig_parse(cases[i].text, strlen(cases[i].text), &t, err, sizeof err);
        print_message("# %zu: %d %s\n", i, rc, err);
        if (!cases[i].error) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, cases[i].error));
        }
        assert_int_equal(t.alg, cases[i].alg);
    }
    /* d= and s= are reported even when another tag is wrong */
    const char *partial = "v=1; a=rsa-sha256; d=Mail.Example; s=k1; b=QUJD";
    assert_int_equal(dkim_sig_parse(partial, strlen(partial), &t, err, sizeof err), -1);
    assert_string_equal(t.domain, "mail.example");
    assert_string_equal(t.selector, "k1");
    assert_string_equal(t.b, "QUJD");
    /* s._domainkey.d longer than 253 octets */
    char longname[400];
    snprintf(longname, sizeof longname,
             "v=1; a=rsa-sha256; h=from; bh=AAAA; b=AAAA; s=%.63s.%.63s; d=%.63s.%.63s.com",
             "sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss",
             "sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss",
             "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
             "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    assert_int_equal(dkim_sig_parse(longname, strlen(longname), &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than 253"));
}

static void test_key_parse(void **state)
{
    (void)state;
    static const char ed[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    static const struct {
        const char *text;
        const char *error;
        enum dkim_key_kind kind;
        bool revoked, sha256, testing, strict;
        size_t key_len;
    } cases[] = {
        {"v=DKIM1; k=rsa; p=QUJDRA==", NULL, DKIM_KEYKIND_RSA, false, true, false, false, 4},
        {"p=QUJD", NULL, DKIM_KEYKIND_RSA, false, true, false, false, 3},
        {ed, NULL, DKIM_KEYKIND_ED25519, false, true, false, false, 32},
        {"v=DKIM1; p=", NULL, DKIM_KEYKIND_RSA, true, true, false, false, 0},
        {"v=DKIM1; h=sha1:sha256; t=y:s; s=email; p=QUJD\r\n RA==", NULL, DKIM_KEYKIND_RSA, false,
         true, true, true, 4},
        {"v=DKIM1; h=sha1; p=QUJD", NULL, DKIM_KEYKIND_RSA, false, false, false, false, 3},
        {"v=DKIM1; s=*; n=notes; x=unknown; t=q; p=QUJD", NULL, DKIM_KEYKIND_RSA, false, true,
         false, false, 3},
        {"v=DKIM2; p=QUJD", "unsupported key version", 0, 0, 0, 0, 0, 0},
        {"v=DKIM1; k=dsa; p=QUJD", "unknown key type", 0, 0, 0, 0, 0, 0},
        {"v=DKIM1; s=web; p=QUJD", "not for email", 0, 0, 0, 0, 0, 0},
        {"v=DKIM1; k=rsa", "no p= tag", 0, 0, 0, 0, 0, 0},
        {"v=DKIM1; p=QUJ", "not base64", 0, 0, 0, 0, 0, 0},
        {"v=DKIM1; k=ed25519; p=QUJD", "32 octets", DKIM_KEYKIND_ED25519, 0, 0, 0, 0, 0},
        {"v=spf1 -all", "unsupported key version", 0, 0, 0, 0, 0, 0},
        {"spf1 -all", "has no '='", 0, 0, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkim_key_tags k;
        char err[128] = "";
        int rc = dkim_key_parse(cases[i].text, strlen(cases[i].text), &k, err, sizeof err);
        print_message("# %zu: %d %s\n", i, rc, err);
        if (cases[i].error) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, cases[i].error));
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(k.kind, cases[i].kind);
        assert_int_equal(k.revoked, cases[i].revoked);
        assert_int_equal(k.sha256, cases[i].sha256);
        assert_int_equal(k.testing, cases[i].testing);
        assert_int_equal(k.strict, cases[i].strict);
        assert_int_equal(k.key_len, cases[i].key_len);
    }
}

static void test_base64_len(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        long len;
    } cases[] = {
        {"", 0},     {"QQ==", 1},  {"QUI=", 2},  {"QUJD", 3},  {" Q U\r\n JD ", 3}, {"QUJDRA==", 4},
        {"QUJ", -1}, {"Q===", -1}, {"QQ=A", -1}, {"QU*D", -1}, {"=QUJ", -1},        {"QUJDRA=", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(dkim_base64_len(cases[i].text, strlen(cases[i].text)), cases[i].len);
}

static void test_sighdr_crlf(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *field;
    } cases[] = {
        {"v=1; a=rsa-sha256;\n\tb=abc", "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n"},
        {"v=1;\n\ta=x;\n\t b=y\n", "DKIM-Signature: v=1;\r\n\ta=x;\r\n\t b=y\r\n\r\n"},
        {"v=1;\r\n\ta=x", "DKIM-Signature: v=1;\r\n\ta=x\r\n"}, /* CRLF kept once */
        {"v=1;\r\ta=x", "DKIM-Signature: v=1;\ta=x\r\n"},       /* a lone CR is dropped */
        {"", "DKIM-Signature: \r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b;
        buf_init(&b, 4096);
        buf_puts(&b, "X: y\r\n");
        assert_int_equal(dkim_sighdr_crlf(cases[i].value, strlen(cases[i].value), &b), 0);
        assert_string_equal(b.data + 6, cases[i].field);
        buf_free(&b);
    }
    /* no room: the buffer is left as it was */
    struct buf b;
    buf_init(&b, 24);
    buf_puts(&b, "X: y\r\n");
    assert_int_equal(dkim_sighdr_crlf("v=1;\n\tb=0123456789", 19, &b), -1);
    assert_string_equal(b.data, "X: y\r\n");
    assert_int_equal(b.len, 6);
    buf_free(&b);
}

static void test_zone_txt(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8192);
    assert_int_equal(dkim_zone_txt("v=spf1 -all", 11, &b), 0);
    assert_string_equal(b.data, "\"v=spf1 -all\"");
    buf_reset(&b);
    assert_int_equal(dkim_zone_txt("", 0, &b), 0);
    assert_string_equal(b.data, "\"\"");
    buf_reset(&b);
    assert_int_equal(dkim_zone_txt("a\"b\\c\x01", 6, &b), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\001\"");
    /* 600 octets: 255 + 255 + 90, each escape counted as one octet */
    char text[601];
    memset(text, 'x', 600);
    text[254] = '"';
    text[600] = '\0';
    buf_reset(&b);
    assert_int_equal(dkim_zone_txt(text, 600, &b), 0);
    const char *p = b.data;
    size_t strings = 0, octets[4] = {0};
    while (*p) {
        assert_int_equal(*p, '"');
        p++;
        while (*p != '"') {
            if (*p == '\\')
                p++;
            p++;
            octets[strings]++;
        }
        p++;
        strings++;
        if (*p == ' ')
            p++;
    }
    assert_int_equal(strings, 3);
    assert_int_equal(octets[0], 255);
    assert_int_equal(octets[1], 255);
    assert_int_equal(octets[2], 90);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taglist),     cmocka_unit_test(test_sig_parse),
        cmocka_unit_test(test_key_parse),   cmocka_unit_test(test_base64_len),
        cmocka_unit_test(test_sighdr_crlf), cmocka_unit_test(test_zone_txt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
