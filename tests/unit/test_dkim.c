/*
 * test_dkim - unit tests of the DKIM key store (src/mailauth/dkimkey.c), the
 * signer on libopendkim (src/mailauth/dkim.c) and the records `tern dns`
 * prints (src/mailauth/publish.c).
 *
 * Keys are generated into a temporary directory. The signer runs with a
 * fixed t= so that its output is reproducible: RSA PKCS#1 v1.5 and Ed25519
 * signatures are deterministic, so the same canonical message gives the same
 * DKIM-Signature field. That shows the streaming (any chunking gives the
 * same signature) and relaxed canonicalization (white space changes give
 * the same signature, a changed word does not). Verification needs DNS and
 * is tested end to end in tests/integration/test_dkim.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config/config.h"
#include "core/buf.h"
#include "dns/dns.h"
#include "mailauth/dkim.h"
#include "mailauth/dkimkey.h"
#include "mailauth/publish.h"

static const char message[] = "From: Alice <alice@example.test>\r\n"
                              "To: bob@example.org\r\n"
                              "Subject: a test   of\r\n"
                              " folding\r\n"
                              "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                              "Message-ID: <1@example.test>\r\n"
                              "\r\n"
                              "Hello  world.\r\n"
                              "\r\n"
                              "Bye.\r\n";

struct fixture {
    char dir[64];
};

static void write_key(const char *dir, const char *domain, const char *sel, enum dkim_key_type type,
                      unsigned bits)
{
    char err[256], path[4096];
    char *pem = dkim_key_generate(type, bits, err, sizeof err);
    assert_non_null(pem);
    assert_int_equal(
        dkim_key_write(dir, domain, sel, pem, false, path, sizeof path, err, sizeof err), 0);
    free(pem);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tern-test-dkim.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    strcat(f->dir, "/keys");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    f->dir[strlen(f->dir) - 5] = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct dkim_keystore *load(const char *dir, struct config_diags *d)
{
    struct dkim_keystore *ks = dkim_keystore_load(dir, d);
    for (size_t i = 0; i < d->n; i++)
        print_message("# diag %s: %s\n", d->v[i].file, d->v[i].msg);
    return ks;
}

static void test_keystore(void **state)
{
    struct fixture *f = *state;
    struct config_diags d = {0, NULL};
    /* a directory that does not exist is an empty store */
    struct dkim_keystore *ks = load(f->dir, &d);
    assert_non_null(ks);
    assert_int_equal(dkim_keystore_count(ks), 0);
    dkim_keystore_free(ks);

    write_key(f->dir, "Example.TEST", "r1", DKIM_KEY_RSA, 1024);
    write_key(f->dir, "example.test", "e1", DKIM_KEY_ED25519, 0);
    write_key(f->dir, "other.test", "a", DKIM_KEY_ED25519, 0);
    char err[256], path[4096];
    /* an existing selector is not replaced without force */
    char *pem = dkim_key_generate(DKIM_KEY_ED25519, 0, err, sizeof err);
    assert_int_equal(dkim_key_write(f->dir, "example.test", "e1", pem, false, path, sizeof path,
                                    err, sizeof err),
                     1);
    assert_non_null(strstr(err, "exists"));
    assert_int_equal(dkim_key_write(f->dir, "example.test", "bad sel", pem, false, path,
                                    sizeof path, err, sizeof err),
                     -1);
    free(pem);
    /* files that are not keys by name are skipped */
    char other[4200];
    snprintf(other, sizeof other, "%s/example.test/README", f->dir);
    FILE *fp = fopen(other, "w");
    fputs("not a key\n", fp);
    fclose(fp);

    struct stat st;
    snprintf(path, sizeof path, "%s/example.test/e1.key", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/example.test", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    ks = load(f->dir, &d);
    assert_non_null(ks);
    assert_int_equal(d.n, 0);
    assert_int_equal(dkim_keystore_count(ks), 3);
    const struct dkim_key *first;
    assert_int_equal(dkim_keystore_domain(ks, "EXAMPLE.test", &first), 2);
    assert_string_equal(first[0].domain, "example.test");
    assert_string_equal(first[0].selector, "e1");
    assert_int_equal(first[0].type, DKIM_KEY_ED25519);
    assert_int_equal(first[0].bits, 256);
    assert_int_equal(strncmp(first[0].record, "v=DKIM1; k=ed25519; p=", 22), 0);
    assert_int_equal(strlen(first[0].record), 22 + 44);
    assert_string_equal(first[1].selector, "r1");
    assert_int_equal(first[1].type, DKIM_KEY_RSA);
    assert_int_equal(first[1].bits, 1024);
    assert_int_equal(strncmp(first[1].record, "v=DKIM1; k=rsa; p=MIGfMA0G", 26), 0);
    /* the record parses as a key record */
    struct dkim_key_tags kt;
    assert_int_equal(dkim_key_parse(first[1].record, strlen(first[1].record), &kt, err, sizeof err),
                     0);
    assert_int_equal(kt.key_len, 162); /* SubjectPublicKeyInfo of RSA 1024 */
    assert_int_equal(dkim_keystore_domain(ks, "none.test", &first), 0);
    assert_null(first);
    dkim_keystore_free(ks);

    /* a key others may read is refused, naming the file */
    snprintf(path, sizeof path, "%s/example.test/r1.key", f->dir);
    assert_int_equal(chmod(path, 0644), 0);
    ks = load(f->dir, &d);
    assert_null(ks);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.v[0].file, path);
    assert_non_null(strstr(d.v[0].msg, "permissions 0644 are too open"));
    config_diags_free(&d);
    assert_int_equal(chmod(path, 0600), 0);

    /* not a key; an RSA key too small */
    snprintf(path, sizeof path, "%s/other.test/junk.key", f->dir);
    fp = fopen(path, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", fp);
    fclose(fp);
    chmod(path, 0600);
    ks = load(f->dir, &d);
    assert_null(ks);
    assert_non_null(strstr(d.v[0].msg, "not a PEM private key"));
    config_diags_free(&d);
    EVP_PKEY *small = EVP_RSA_gen(512);
    fp = fopen(path, "w");
    PEM_write_PrivateKey(fp, small, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
    EVP_PKEY_free(small);
    ks = load(f->dir, &d);
    assert_null(ks);
    assert_non_null(strstr(d.v[0].msg, "at least 1024"));
    config_diags_free(&d);
    unlink(path);
}

/* Sign msg with every key of domain, fed in chunks of `chunk` octets (0: at
   once); returns the signature fields (malloc'd) or NULL with err. */
static char *sign(struct dkim_ctx *ctx, const struct dkim_keystore *ks, const char *domain,
                  const char *msg, size_t chunk, char *err, size_t errlen)
{
    struct dkim_signer *s = dkim_signer_new(ctx, ks, domain, "test", err, errlen);
    if (!s)
        return NULL;
    size_t len = strlen(msg);
    if (chunk == 0)
        chunk = len;
    for (size_t off = 0; off < len; off += chunk)
        dkim_signer_feed(s, msg + off, len - off < chunk ? len - off : chunk);
    struct buf out;
    buf_init(&out, 65536);
    int n = dkim_signer_finish(s, &out, err, errlen);
    dkim_signer_free(s);
    if (n < 0) {
        buf_free(&out);
        return NULL;
    }
    char *r = strdup(out.data);
    buf_free(&out);
    return r;
}

/* Replace the first `from` in text by `to` (malloc'd). */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    assert_non_null(p);
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    return r;
}

static void test_signer(void **state)
{
    struct fixture *f = *state;
    write_key(f->dir, "example.test", "r1", DKIM_KEY_RSA, 1024);
    write_key(f->dir, "example.test", "e1", DKIM_KEY_ED25519, 0);
    write_key(f->dir, "ed.test", "e", DKIM_KEY_ED25519, 0);
    struct config_diags d = {0, NULL};
    struct dkim_keystore *ks = load(f->dir, &d);
    assert_non_null(ks);
    char err[256];
    struct dkim_ctx *ctx = dkim_ctx_new(err, sizeof err);
    assert_non_null(ctx);
    dkim_ctx_set_time(ctx, 1700000000);

    char *whole = sign(ctx, ks, "example.test", message, 0, err, sizeof err);
    assert_non_null(whole);
    /* two fields, Ed25519 (e1) first, CRLF line ends only */
    static const char start[] = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; "
                                "d=example.test;\r\n\t";
    assert_int_equal(strncmp(whole, start, strlen(start)), 0);
    const char *second = strstr(whole + 1, "\r\nDKIM-Signature: v=1; a=rsa-sha256;");
    assert_non_null(second);
    for (const char *p = whole; *p; p++)
        if (*p == '\n')
            assert_int_equal(p[-1], '\r');
    assert_int_equal(whole[strlen(whole) - 1], '\n');
    assert_non_null(strstr(whole, "t=1700000000;"));
    assert_non_null(strstr(whole, "h=From:To:Subject:Date:Message-ID:from;"));

    /* any chunking gives the same signatures */
    static const size_t chunks[] = {1, 2, 3, 7, 33, 100};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        char *c = sign(ctx, ks, "example.test", message, chunks[i], err, sizeof err);
        assert_non_null(c);
        assert_string_equal(c, whole);
        free(c);
    }

    /* relaxed/relaxed: white space changes give the same signature... */
    char *m1 = replace(message, "Subject: a test   of\r\n folding", "Subject:a test of folding  ");
    char *m2 = replace(m1, "Hello  world.\r\n", "Hello \t world.   \r\n");
    char *m3 = replace(m2, "Bye.\r\n", "Bye.\r\n\r\n\r\n");
    char *ws = sign(ctx, ks, "example.test", m3, 5, err, sizeof err);
    assert_non_null(ws);
    assert_string_equal(ws, whole);
    /* ...a change of content does not: the body hash and the signature differ */
    char *m4 = replace(message, "Bye.", "Bye!");
    char *changed = sign(ctx, ks, "example.test", m4, 0, err, sizeof err);
    assert_non_null(changed);
    assert_string_not_equal(changed, whole);
    const char *bh1 = strstr(whole, "bh="), *bh2 = strstr(changed, "bh=");
    assert_int_not_equal(strncmp(bh1, bh2, 47), 0);
    char *m5 = replace(message, "Subject: a test", "Subject: a best");
    char *hdr = sign(ctx, ks, "example.test", m5, 0, err, sizeof err);
    assert_int_equal(strncmp(strstr(hdr, "bh="), bh1, 47), 0); /* same body */
    assert_string_not_equal(hdr, whole);
    free(m1);
    free(m2);
    free(m3);
    free(m4);
    free(m5);
    free(ws);
    free(changed);
    free(hdr);

    /* a message without a body (no empty line) can be signed */
    char *nobody =
        sign(ctx, ks, "ed.test", "From: a@ed.test\r\nSubject: x\r\n", 4, err, sizeof err);
    assert_non_null(nobody);
    assert_non_null(strstr(nobody, "d=ed.test;"));
    free(nobody);

    /* errors: no key for the domain, no From field */
    assert_null(sign(ctx, ks, "nokey.test", message, 0, err, sizeof err));
    assert_non_null(strstr(err, "no DKIM key for nokey.test"));
    assert_null(sign(ctx, ks, "ed.test", "To: b@x.test\r\n\r\nbody\r\n", 0, err, sizeof err));
    print_message("# %s\n", err);
    assert_non_null(strstr(err, "required header \"from\" not found"));

    /* a header field beyond DKIM_FIELD_MAX */
    size_t big = DKIM_FIELD_MAX + 100;
    char *huge = malloc(big + 64);
    strcpy(huge, "From: a@ed.test\r\nX-Big: ");
    size_t n = strlen(huge);
    memset(huge + n, 'x', big);
    strcpy(huge + n + big, "\r\n\r\nbody\r\n");
    assert_null(sign(ctx, ks, "ed.test", huge, 4096, err, sizeof err));
    assert_non_null(strstr(err, "beyond the limits"));
    free(huge);

    free(whole);
    dkim_ctx_free(ctx);
    dkim_keystore_free(ks);
}

static void test_publish(void **state)
{
    (void)state;
    struct publish_dkim keys[] = {{"s1", "v=DKIM1; k=rsa; p=QUJD"}};
    struct publish_list *l = calloc(1, sizeof *l);
    assert_int_equal(publish_records("Example.ORG", "mail.example.org", keys, 1, l), 0);
    assert_int_equal(l->n, 6);
    static const char *const names[] = {
        "example.org",        "example.org",          "s1._domainkey.example.org",
        "_dmarc.example.org", "_mta-sts.example.org", "_smtp._tls.example.org"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(l->v[i].name, names[i]);
    assert_int_equal(l->v[0].type, DNS_TYPE_MX);
    assert_string_equal(l->v[1].value, "v=spf1 mx -all");
    assert_string_equal(l->v[3].value, "v=DMARC1; p=none; rua=mailto:postmaster@example.org");
    assert_string_equal(l->v[5].value, "v=TLSRPTv1; rua=mailto:postmaster@example.org");
    assert_int_equal(strlen(l->v[4].value), strlen("v=STSv1; id=") + 20);
    struct buf b;
    buf_init(&b, 4096);
    publish_zone_line(&l->v[0], &b);
    publish_zone_line(&l->v[2], &b);
    assert_string_equal(b.data, "example.org. IN MX 10 mail.example.org.\n"
                                "s1._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=QUJD\"\n");
    buf_reset(&b);
    publish_mtasts_policy("mail.example.org", &b);
    assert_string_equal(b.data, "version: STSv1\nmode: testing\nmx: mail.example.org\n"
                                "max_age: 604800\n");
    buf_free(&b);

    /* the MTA-STS id follows the policy */
    struct publish_list *l2 = calloc(1, sizeof *l2);
    assert_int_equal(publish_records("example.org", "mx2.example.org", keys, 1, l2), 0);
    assert_string_not_equal(l->v[4].value, l2->v[4].value);
    publish_list_free(l2);
    assert_int_equal(publish_records("example.org", "mail.example.org", NULL, 0, l2), 0);
    assert_int_equal(l2->n, 5);
    assert_string_equal(l->v[4].value, l2->v[3].value);
    publish_list_free(l2);
    free(l2);

    static const struct {
        size_t rec;
        const char *dns;
        bool kind, match;
    } cases[] = {
        {0, "mail.example.org.", true, true},
        {0, "MAIL.example.org", true, true},
        {0, "mx.example.org", true, false},
        {1, "v=spf1 mx -all", true, true},
        {1, "V=SPF1   MX  -ALL", true, true},
        {1, "v=spf1 mx ~all", true, false},
        {1, "v=spf1", true, false},
        {1, "v=spf10 mx -all", false, false},
        {1, "google-site-verification=x", false, false},
        {2, "v=DKIM1; k=rsa; p=QUJD", true, true},
        {2, "p=QU JD;k=rsa", true, true},
        {2, "p=QUJD", true, true},
        {2, "v=DKIM1; k=rsa; p=QUJE", true, false},
        {2, "v=DKIM1; k=ed25519; p=QUJD", true, false},
        {2, "v=DKIM1; k=rsa; p=QUJD; t=y", true, false},
        {3, "v=DMARC1;rua=mailto:postmaster@example.org; p=none", true, true},
        {3, "v=DMARC1; p=reject; rua=mailto:postmaster@example.org", true, false},
        {3, "v=DMARC1; p=none", true, false},
        {5, "v=TLSRPTv1;rua=mailto:postmaster@example.org;", true, true},
        {5, "v=TLSRPTv1; rua=mailto:tls@example.org", true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct publish_record *r = &l->v[cases[i].rec];
        size_t n = strlen(cases[i].dns);
        print_message("# %zu: %s\n", i, cases[i].dns);
        if (r->type == DNS_TYPE_TXT)
            assert_int_equal(publish_txt_is_kind(r, cases[i].dns, n), cases[i].kind);
        assert_int_equal(publish_matches(r, cases[i].dns, n), cases[i].match);
    }
    publish_list_free(l);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keystore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signer, setup, teardown),
        cmocka_unit_test(test_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
