/*
 * test_tls - tls/: self-signed pairs (files, modes, names, signature),
 * server contexts from a configuration and their errors (missing file,
 * crossed pair, garbage PEM, bad cipher list), the minimum protocol version,
 * and real handshakes over a memory BIO pair against an OpenSSL client: a
 * client that stops at TLS 1.1 is refused by the server, TLS 1.2 and 1.3
 * clients get in and verify the certificate for the hostname.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOST "mail.example.test"
#define OTHER_HOST "other.example.test"

/* A temporary directory with two self-signed pairs (a and b) under sub/dirs. */
struct fixture {
    char dir[64];
    char cert_a[128], key_a[128];
    char cert_b[128], key_b[128];
    char garbage[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tern-test-tls-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->cert_a, sizeof f->cert_a, "%s/certs/a/cert.pem", f->dir);
    snprintf(f->key_a, sizeof f->key_a, "%s/private/a/key.pem", f->dir);
    snprintf(f->cert_b, sizeof f->cert_b, "%s/b/cert.pem", f->dir);
    snprintf(f->key_b, sizeof f->key_b, "%s/b/key.pem", f->dir);
    snprintf(f->garbage, sizeof f->garbage, "%s/garbage.pem", f->dir);
    char err[512];
    if (tls_selfsigned_create(HOST, f->cert_a, f->key_a, err, sizeof err) < 0 ||
        tls_selfsigned_create(OTHER_HOST, f->cert_b, f->key_b, err, sizeof err) < 0) {
        fprintf(stderr, "# %s\n", err);
        return -1;
    }
    FILE *g = fopen(f->garbage, "w");
    if (!g)
        return -1;
    fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", g);
    fclose(g);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    const char *files[] = {f->cert_a, f->key_a, f->cert_b, f->key_b, f->garbage};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    const char *dirs[] = {"certs/a", "certs", "private/a", "private", "b", ""};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", f->dir, dirs[i]);
        rmdir(p);
    }
    free(f);
    return 0;
}

/* A configuration with only the TLS keys set (the strings are not owned). */
static struct config tls_config(const char *cert, const char *key)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.hostname = (char *)HOST;
    cfg.tls_cert_file = (char *)cert;
    cfg.tls_key_file = (char *)key;
    cfg.tls_min_version = CONFIG_TLS_1_2;
    cfg.tls_ciphers = (char *)"HIGH:!aNULL:!MD5:!RC4:!3DES";
    return cfg;
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static void test_selfsigned_files(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(f->key_a, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(f->cert_a, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* no temporary file is left beside them */
    char p[160];
    snprintf(p, sizeof p, "%s/b", f->dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    assert_int_equal(n, 2);
}

static void test_selfsigned_content(void **state)
{
    struct fixture *f = *state;
    X509 *x = read_cert(f->cert_a);
    EVP_PKEY *k = read_key(f->key_a);
    /* subject and issuer CN = hostname, SAN DNS:hostname */
    char cn[256];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) >
                0);
    assert_string_equal(cn, HOST);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(gn->type, GEN_DNS);
    assert_int_equal(ASN1_STRING_length(gn->d.dNSName), strlen(HOST));
    assert_memory_equal(ASN1_STRING_get0_data(gn->d.dNSName), HOST, strlen(HOST));
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_check_host(x, HOST, 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_host(x, OTHER_HOST, 0, 0, NULL), 1);
    /* v3, not a CA, signed with its own key, SHA-256, RSA 2048 */
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    /* 825 days, from an hour ago */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_int_equal(days, 825);
    assert_int_equal(secs, 0);
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), NULL), 1);
    assert_int_equal(days, 0);
    assert_in_range(secs, 3590, 3700);
    /* a 128-bit serial */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_int_equal(BN_num_bits(serial), 128);
    BN_free(serial);
    /* the second pair has another serial and key */
    X509 *y = read_cert(f->cert_b);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)), 0);
    assert_int_not_equal(X509_check_private_key(y, k), 1);
    X509_free(y);
    EVP_PKEY_free(k);
    X509_free(x);
    ERR_clear_error();
}

static void test_cert_info(void **state)
{
    struct fixture *f = *state;
    struct tls_cert_info info;
    char err[512];
    assert_int_equal(tls_cert_info_read(f->cert_a, &info, err, sizeof err), 0);
    assert_string_equal(info.subject_cn, HOST);
    assert_int_equal(strlen(info.not_after), 20);
    assert_int_equal(strlen(info.sha256), 95);
    X509 *x = read_cert(f->cert_a);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    char hex[4];
    snprintf(hex, sizeof hex, "%02X:", md[0]);
    assert_memory_equal(info.sha256, hex, 3);
    X509_free(x);
    assert_int_equal(tls_cert_info_read(f->garbage, &info, err, sizeof err), -1);
    assert_non_null(strstr(err, f->garbage));
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_selfsigned_bad_hostname(void **state)
{
    struct fixture *f = *state;
    char cert[160], key[160], err[512];
    snprintf(cert, sizeof cert, "%s/bad/cert.pem", f->dir);
    snprintf(key, sizeof key, "%s/bad/key.pem", f->dir);
    assert_int_equal(tls_selfsigned_create("", cert, key, err, sizeof err), -1);
    assert_int_equal(tls_selfsigned_create("a,DNS:evil.example", cert, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "hostname"));
    assert_int_equal(access(cert, F_OK), -1);
}

static void test_server_loads(void **state)
{
    struct fixture *f = *state;
    struct config cfg = tls_config(f->cert_a, f->key_a);
    char err[512] = "";
    struct tls_server *t = tls_server_new(&cfg, err, sizeof err);
    assert_non_null(t);
    char desc[256];
    tls_server_describe(t, desc, sizeof desc);
    assert_non_null(strstr(desc, "cn=" HOST " "));
    assert_non_null(strstr(desc, "sans=1 san=" HOST " "));
    assert_non_null(strstr(desc, "not_after=20"));
    SSL *ssl = tls_server_ssl_new(t);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_min_proto_version(ssl), TLS1_2_VERSION);
    long opts = (long)SSL_get_options(ssl);
    assert_true(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
    assert_true(opts & SSL_OP_NO_COMPRESSION);
    assert_true(opts & SSL_OP_NO_RENEGOTIATION);
    assert_true(SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS);
    /* the connection keeps the context alive after a reload frees the server */
    tls_server_free(t);
    assert_non_null(SSL_get_certificate(ssl));
    SSL_free(ssl);
    tls_server_free(NULL);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_server_min_tls13(void **state)
{
    struct fixture *f = *state;
    struct config cfg = tls_config(f->cert_a, f->key_a);
    cfg.tls_min_version = CONFIG_TLS_1_3;
    cfg.tls_ciphersuites = (char *)"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
    char err[512];
    struct tls_server *t = tls_server_new(&cfg, err, sizeof err);
    assert_non_null(t);
    SSL *ssl = tls_server_ssl_new(t);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_min_proto_version(ssl), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_min_proto_version(SSL_get_SSL_CTX(ssl)), TLS1_3_VERSION);
    SSL_free(ssl);
    tls_server_free(t);
}

/* tls_server_new fails, err names `names` and says `reason`, the queue is empty. */
static void expect_failure(struct config *cfg, const char *names, const char *reason)
{
    char err[512] = "";
    struct tls_server *t = tls_server_new(cfg, err, sizeof err);
    assert_null(t);
    if (!strstr(err, names) || !strstr(err, reason))
        fail_msg("error \"%s\" should name \"%s\" and say \"%s\"", err, names, reason);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_server_errors(void **state)
{
    struct fixture *f = *state;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nonexistent.pem", f->dir);

    struct config cfg = tls_config(missing, f->key_a);
    expect_failure(&cfg, missing, "No such file");
    cfg = tls_config(f->cert_a, missing);
    expect_failure(&cfg, missing, "No such file");
    /* crossed pairs */
    cfg = tls_config(f->cert_a, f->key_b);
    expect_failure(&cfg, f->key_b, "key values mismatch");
    cfg = tls_config(f->cert_b, f->key_a);
    expect_failure(&cfg, f->cert_b, "key values mismatch");
    /* garbage PEM as certificate and as key */
    cfg = tls_config(f->garbage, f->key_a);
    expect_failure(&cfg, f->garbage, "tls_cert_file");
    cfg = tls_config(f->cert_a, f->garbage);
    expect_failure(&cfg, f->garbage, "tls_key_file");
    /* a certificate given as the key */
    cfg = tls_config(f->cert_a, f->cert_a);
    expect_failure(&cfg, "tls_key_file", f->cert_a);
    /* cipher lists that select nothing */
    cfg = tls_config(f->cert_a, f->key_a);
    cfg.tls_ciphers = (char *)"NO-SUCH-CIPHER";
    expect_failure(&cfg, "tls_ciphers \"NO-SUCH-CIPHER\"", "no cipher match");
    cfg = tls_config(f->cert_a, f->key_a);
    cfg.tls_ciphersuites = (char *)"TLS_NO_SUCH_SUITE";
    expect_failure(&cfg, "tls_ciphersuites \"TLS_NO_SUCH_SUITE\"", "error:");
    /* no files configured */
    cfg = tls_config(NULL, NULL);
    expect_failure(&cfg, "tls_cert_file", "tls_key_file");
}

/*
 * Handshake a server SSL from t with a client limited to [cmin, cmax] over a
 * BIO pair. Returns the negotiated version, or 0 if the handshake failed
 * (then *server_reason is the server's OpenSSL reason code).
 */
static int handshake(struct tls_server *t, const char *cafile, int cmin, int cmax,
                     int *server_reason)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    /* security level 0, so that the client really offers TLS 1.1 and it is the
       server that refuses it */
    SSL_CTX_set_security_level(cctx, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(cctx, cmin), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, cmax), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(cctx, cafile, NULL), 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    SSL *client = SSL_new(cctx);
    assert_non_null(client);
    assert_int_equal(SSL_set1_host(client, HOST), 1);
    SSL_set_connect_state(client);

    SSL *server = tls_server_ssl_new(t);
    assert_non_null(server);
    SSL_set_accept_state(server);
    BIO *sb = NULL, *cb = NULL;
    assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
    SSL_set_bio(server, sb, sb);
    SSL_set_bio(client, cb, cb);

    bool cdone = false, sdone = false, failed = false;
    *server_reason = 0;
    for (int i = 0; i < 100 && !(cdone && sdone) && !failed; i++) {
        if (!cdone) {
            int r = SSL_do_handshake(client);
            if (r == 1)
                cdone = true;
            else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
                failed = true;
            ERR_clear_error();
        }
        if (!sdone) {
            int r = SSL_do_handshake(server);
            if (r == 1) {
                sdone = true;
            } else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ) {
                *server_reason = ERR_GET_REASON(ERR_peek_error());
                failed = true;
            }
            ERR_clear_error();
        }
    }
    int version = 0;
    if (cdone && sdone && !failed) {
        assert_int_equal(SSL_get_verify_result(client), X509_V_OK);
        assert_int_equal(SSL_version(client), SSL_version(server));
        /* application data flows both ways */
        assert_int_equal(SSL_write(client, "EHLO x\r\n", 8), 8);
        char buf[16];
        assert_int_equal(SSL_read(server, buf, sizeof buf), 8);
        assert_memory_equal(buf, "EHLO x\r\n", 8);
        version = SSL_version(client);
    }
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    return version;
}

static void test_handshake_versions(void **state)
{
    struct fixture *f = *state;
    struct config cfg = tls_config(f->cert_a, f->key_a);
    char err[512];
    struct tls_server *t = tls_server_new(&cfg, err, sizeof err);
    assert_non_null(t);
    int reason = 0;
    assert_int_equal(handshake(t, f->cert_a, TLS1_VERSION, TLS1_1_VERSION, &reason), 0);
    assert_int_equal(reason, SSL_R_UNSUPPORTED_PROTOCOL);
    assert_int_equal(handshake(t, f->cert_a, TLS1_2_VERSION, TLS1_2_VERSION, &reason),
                     TLS1_2_VERSION);
    assert_int_equal(handshake(t, f->cert_a, TLS1_3_VERSION, TLS1_3_VERSION, &reason),
                     TLS1_3_VERSION);
    assert_int_equal(handshake(t, f->cert_a, TLS1_VERSION, 0, &reason), TLS1_3_VERSION);
    tls_server_free(t);

    /* tls_min_version = TLSv1.3 refuses a TLS 1.2 client */
    cfg.tls_min_version = CONFIG_TLS_1_3;
    t = tls_server_new(&cfg, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(handshake(t, f->cert_a, TLS1_2_VERSION, TLS1_2_VERSION, &reason), 0);
    assert_int_equal(reason, SSL_R_UNSUPPORTED_PROTOCOL);
    assert_int_equal(handshake(t, f->cert_a, TLS1_2_VERSION, 0, &reason), TLS1_3_VERSION);
    tls_server_free(t);
}

/* The client checks the certificate: another pair's certificate is not trusted. */
static void test_handshake_untrusted(void **state)
{
    struct fixture *f = *state;
    struct config cfg = tls_config(f->cert_a, f->key_a);
    char err[512];
    struct tls_server *t = tls_server_new(&cfg, err, sizeof err);
    assert_non_null(t);
    int reason = 0;
    assert_int_equal(handshake(t, f->cert_b, TLS1_2_VERSION, 0, &reason), 0);
    tls_server_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selfsigned_files),    cmocka_unit_test(test_selfsigned_content),
        cmocka_unit_test(test_cert_info),           cmocka_unit_test(test_selfsigned_bad_hostname),
        cmocka_unit_test(test_server_loads),        cmocka_unit_test(test_server_min_tls13),
        cmocka_unit_test(test_server_errors),       cmocka_unit_test(test_handshake_versions),
        cmocka_unit_test(test_handshake_untrusted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
