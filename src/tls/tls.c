/*
 * tls - OpenSSL 3 server contexts for STARTTLS (RFC 3207) and implicit TLS
 * (RFC 8314 section 3), and self-signed certificates (RFC 5280 profile) for
 * the embedded default. See tls.h.
 *
 * A tls_server owns one reference to an SSL_CTX; every SSL made from it holds
 * another, so freeing a tls_server on reload never pulls a context from under
 * a connection in flight. Errors are returned as text naming the file and
 * OpenSSL's reason, and the OpenSSL error queue is always left empty, so a
 * later failure never reports an older, unrelated reason.
 *
 * Self-signed pairs are written atomically: each file goes to a temporary
 * name in its own directory, is fsynced, renamed over the final name, and the
 * directory is fsynced.
 */
#include "tls/tls.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define SELFSIGNED_RSA_BITS 2048
#define SELFSIGNED_DAYS 825
#define SELFSIGNED_BACKDATE_SECONDS 3600
#define SELFSIGNED_SERIAL_BITS 128
/* RFC 5280 upper bound of a commonName (ub-common-name). */
#define CN_MAX 64

/* Sessions resumed from the cache or a ticket must come from this context. */
static const unsigned char session_id_context[] = "tern-smtp";

struct tls_server {
    SSL_CTX *ctx; /* our reference; each SSL made from it holds its own */
};

/*
 * Fill err with "what: OpenSSL's reason" (the first error queued, which is
 * the most specific one), or "what: fallback" when the queue is empty; then
 * empty the queue.
 */
static void ssl_error(char *err, size_t errlen, const char *fallback, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    char reason[256];
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "%s", fallback ? fallback : "unknown error");
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, reason);
    ERR_clear_error();
}

static void plain_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

struct tls_server *tls_server_new(const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->tls_cert_file || !cfg->tls_key_file) {
        plain_error(err, errlen, "TLS needs both tls_cert_file and tls_key_file");
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, errlen, NULL, "cannot create a TLS context");
        return NULL;
    }
    int min = cfg->tls_min_version == CONFIG_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (!SSL_CTX_set_min_proto_version(ctx, min)) {
        ssl_error(err, errlen, NULL, "cannot set tls_min_version");
        goto fail;
    }
    if (cfg->tls_ciphers && !SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers)) {
        ssl_error(err, errlen, "no usable cipher", "tls_ciphers \"%s\"", cfg->tls_ciphers);
        goto fail;
    }
    if (cfg->tls_ciphersuites && !SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites)) {
        ssl_error(err, errlen, "no usable cipher suite", "tls_ciphersuites \"%s\"",
                  cfg->tls_ciphersuites);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION);
    /* Idle sessions (an SMTP client thinking, a queue run waiting) give their
       read and write buffers back (up to about 34 KiB a connection). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* DHE suites in tls_ciphers get parameters matched to the key size. */
    SSL_CTX_set_dh_auto(ctx, 1);
    /* Resumption (server-side cache and tickets, OpenSSL's defaults) is bound
       to this context; a reload starts a new cache and new ticket keys. */
    if (!SSL_CTX_set_session_id_context(ctx, session_id_context,
                                        (unsigned)sizeof session_id_context - 1)) {
        ssl_error(err, errlen, NULL, "cannot set the session id context");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        ssl_error(err, errlen, NULL, "tls_cert_file %s", cfg->tls_cert_file);
        goto fail;
    }
    /* The key is checked against the certificate as it is loaded, and once
       more below; a mismatch names both files either way. */
    bool key_ok = SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) == 1;
    if (!key_ok && ERR_GET_REASON(ERR_peek_error()) != X509_R_KEY_VALUES_MISMATCH) {
        ssl_error(err, errlen, NULL, "tls_key_file %s", cfg->tls_key_file);
        goto fail;
    }
    if (!key_ok || SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, errlen, NULL, "tls_key_file %s does not match tls_cert_file %s",
                  cfg->tls_key_file, cfg->tls_cert_file);
        goto fail;
    }
    ERR_clear_error();
    struct tls_server *t = xcalloc(1, sizeof *t);
    t->ctx = ctx;
    return t;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void tls_server_free(struct tls_server *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/* ---- client side (outbound SMTP) ---- */

struct tls_client {
    SSL_CTX *ctx; /* our reference; each SSL made from it holds its own */
};

struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_error(err, errlen, NULL, "cannot create a TLS client context");
        return NULL;
    }
    /* TLS 1.2 at least, as on the server side. Certificates are checked only
       for destinations whose policy is "verify" (tls_client_ssl_new). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_error(err, errlen, NULL, "cannot load the CA certificates %s",
                  ca_file ? ca_file : "(system default)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct tls_client *t = xcalloc(1, sizeof *t);
    t->ctx = ctx;
    return t;
}

void tls_client_free(struct tls_client *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

struct ssl_st *tls_client_ssl_new(struct tls_client *t, const char *servername, bool verify)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        panic("SSL_new failed");
    if (servername && *servername)
        SSL_set_tlsext_host_name(ssl, servername);
    if (verify) {
        /* RFC 6125 host name check against the name we connected to. */
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (servername)
            SSL_set1_host(ssl, servername);
    }
    return ssl;
}

struct ssl_st *tls_server_ssl_new(struct tls_server *t)
{
    SSL *ssl = SSL_new(t->ctx);
    ERR_clear_error();
    return ssl;
}

/* notAfter as "2029-02-25T12:00:00Z"; "?" if it cannot be read. */
static void format_time(const ASN1_TIME *at, char *out, size_t outlen)
{
    struct tm tm;
    if (!at || ASN1_TIME_to_tm(at, &tm) != 1 ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "?");
}

/* The subject's commonName, or "" if it has none. */
static void subject_cn(const X509 *x, char *out, size_t outlen)
{
    out[0] = '\0';
    const X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0)
        return;
    snprintf(out, outlen, "%.*s", n, (const char *)utf8);
    OPENSSL_free(utf8);
}

/* Number of DNS subjectAltNames, and the first one in first ("" if none). */
static int dns_sans(const X509 *x, char *first, size_t firstlen)
{
    first[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int count = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        if (gn->type != GEN_DNS)
            continue;
        if (count++ == 0)
            snprintf(first, firstlen, "%.*s", ASN1_STRING_length(gn->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
    return count;
}

void tls_server_describe(const struct tls_server *t, char *out, size_t outlen)
{
    const X509 *x = SSL_CTX_get0_certificate(t->ctx);
    if (!x) {
        snprintf(out, outlen, "cn= sans=0 not_after=?");
        return;
    }
    char cn[256], san[256], not_after[32];
    subject_cn(x, cn, sizeof cn);
    int nsans = dns_sans(x, san, sizeof san);
    format_time(X509_get0_notAfter(x), not_after, sizeof not_after);
    if (nsans > 0)
        snprintf(out, outlen, "cn=%s sans=%d san=%s not_after=%s", cn, nsans, san, not_after);
    else
        snprintf(out, outlen, "cn=%s sans=0 not_after=%s", cn, not_after);
    ERR_clear_error();
}

int tls_cert_info_read(const char *cert_file, struct tls_cert_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    ERR_clear_error();
    FILE *f = fopen(cert_file, "re");
    if (!f) {
        plain_error(err, errlen, "%s: %s", cert_file, strerror(errno));
        return -1;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        ssl_error(err, errlen, "no certificate", "%s", cert_file);
        return -1;
    }
    subject_cn(x, info->subject_cn, sizeof info->subject_cn);
    format_time(X509_get0_notAfter(x), info->not_after, sizeof info->not_after);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1) {
        ssl_error(err, errlen, NULL, "%s: cannot compute the SHA-256 fingerprint", cert_file);
        X509_free(x);
        return -1;
    }
    char *p = info->sha256;
    for (unsigned i = 0; i < mdlen && (size_t)(p - info->sha256) + 4 <= sizeof info->sha256; i++)
        p += snprintf(p, 4, i ? ":%02X" : "%02X", md[i]);
    X509_free(x);
    ERR_clear_error();
    return 0;
}

/* A hostname we put in a certificate: LDH labels separated by dots. */
static bool plain_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > CN_MAX || h[0] == '.' || h[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int add_san_dns(X509 *x, const char *hostname)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    int rc = -1;
    if (!gens || !gn || !ia5 || !ASN1_STRING_set(ia5, hostname, (int)strlen(hostname))) {
        ASN1_IA5STRING_free(ia5);
        GENERAL_NAME_free(gn);
        goto out;
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    if (!sk_GENERAL_NAME_push(gens, gn)) {
        GENERAL_NAME_free(gn);
        goto out;
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
out:
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Build and sign the certificate for hostname with key. NULL with err. */
static X509 *make_certificate(const char *hostname, EVP_PKEY *key, char *err, size_t errlen)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    if (!x || !serial || !X509_set_version(x, X509_VERSION_3))
        goto fail;
    if (!BN_rand(serial, SELFSIGNED_SERIAL_BITS, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
        goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -SELFSIGNED_BACKDATE_SECONDS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), SELFSIGNED_DAYS, -SELFSIGNED_BACKDATE_SECONDS,
                          NULL))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                    (const unsigned char *)hostname, -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
        goto fail;
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") < 0 || add_san_dns(x, hostname) < 0)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto fail;
    BN_free(serial);
    return x;
fail:
    ssl_error(err, errlen, NULL, "cannot build a certificate for %s", hostname);
    BN_free(serial);
    X509_free(x);
    return NULL;
}

/* A file being written under a temporary name beside its final one. */
struct pending_file {
    const char *path; /* final name */
    char *dir;        /* its directory (owned) */
    char *tmp;        /* temporary name (owned); NULL once renamed or removed */
};

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

/*
 * Create pf->dir if needed, write the PEM of key (when key is given) or of
 * cert to a temporary file in it with mode, and fsync it. 0 or -1 with err.
 */
static int write_pending(struct pending_file *pf, unsigned mode, EVP_PKEY *key, X509 *cert,
                         char *err, size_t errlen)
{
    pf->dir = dir_of(pf->path);
    if (mkdir_p(pf->dir, 0755) < 0) {
        plain_error(err, errlen, "cannot create directory %s: %s", pf->dir, strerror(errno));
        return -1;
    }
    const char *base = strrchr(pf->path, '/');
    base = base ? base + 1 : pf->path;
    size_t n = strlen(pf->dir) + strlen(base) + 16;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s/.%s.XXXXXX", pf->dir, base);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        plain_error(err, errlen, "cannot create a temporary file in %s: %s", pf->dir,
                    strerror(errno));
        free(tmp);
        return -1;
    }
    pf->tmp = tmp;
    if (fchmod(fd, (mode_t)mode) < 0) {
        plain_error(err, errlen, "%s: cannot set mode: %s", tmp, strerror(errno));
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        plain_error(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        return -1;
    }
    int ok =
        key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    if (!ok) {
        ssl_error(err, errlen, NULL, "cannot write %s", tmp);
        fclose(f);
        return -1;
    }
    if (fflush(f) != 0 || fsync(fd) < 0) {
        plain_error(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0) {
        plain_error(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

/* Rename pf into place and fsync its directory. 0 or -1 with err. */
static int commit_pending(struct pending_file *pf, char *err, size_t errlen)
{
    if (rename(pf->tmp, pf->path) < 0) {
        plain_error(err, errlen, "cannot rename %s to %s: %s", pf->tmp, pf->path, strerror(errno));
        return -1;
    }
    free(pf->tmp);
    pf->tmp = NULL;
    int dfd = open(pf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        plain_error(err, errlen, "cannot fsync directory %s: %s", pf->dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
}

/* Remove a temporary file left behind by a failure, and free the names. */
static void pending_done(struct pending_file *pf)
{
    if (pf->tmp)
        unlink(pf->tmp);
    free(pf->tmp);
    free(pf->dir);
}

int tls_selfsigned_create(const char *hostname, const char *cert_file, const char *key_file,
                          char *err, size_t errlen)
{
    if (!plain_hostname(hostname)) {
        plain_error(err, errlen,
                    "hostname \"%s\" cannot name a certificate (letters, digits, '-' and "
                    "'.', at most %d characters)",
                    hostname, CN_MAX);
        return -1;
    }
    ERR_clear_error();
    int rc = -1;
    X509 *cert = NULL;
    struct pending_file kf = {.path = key_file}, cf = {.path = cert_file};
    EVP_PKEY *key = EVP_RSA_gen(SELFSIGNED_RSA_BITS);
    if (!key) {
        ssl_error(err, errlen, NULL, "cannot generate an RSA key");
        goto out;
    }
    cert = make_certificate(hostname, key, err, errlen);
    if (!cert)
        goto out;
    /* Both files are complete on disk before either replaces anything. */
    if (write_pending(&kf, 0600, key, NULL, err, errlen) < 0 ||
        write_pending(&cf, 0644, NULL, cert, err, errlen) < 0)
        goto out;
    if (commit_pending(&kf, err, errlen) < 0 || commit_pending(&cf, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    pending_done(&kf);
    pending_done(&cf);
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
