/*
 * dkimkey - the DKIM key store (see dkimkey.h).
 *
 * RFC 6376 §3.6.1 (key records), RFC 8463 §4 (Ed25519 key records), RFC 8301
 * §3.2 (RSA keys of at least 1024 bits). Keys are read with OpenSSL's PEM
 * reader from a bounded buffer, after checking the file's mode on the open
 * descriptor (no race between the check and the read).
 */
#include "mailauth/dkimkey.h"
#include "mailauth/keycache.h"

#include "config/config.h"
#include "config/internal.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct dkim_keystore {
    size_t n;           /* keys in v[] */
    struct dkim_key *v; /* sorted by domain, then selector */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* OpenSSL's reason for the last failure, or "unknown error". */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static bool name_valid(const char *s, size_t max)
{
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '-') {
            if ((c == '-' && label == 0) || ++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

bool dkim_selector_valid(const char *s)
{
    return name_valid(s, DKIM_SELECTOR_MAX);
}

bool dkim_domain_valid(const char *d)
{
    return name_valid(d, DKIM_NAME_MAX) && strchr(d, '.') != NULL;
}

/* Base64 of n octets (RFC 4648, no line breaks), malloc'd. */
static char *b64(const unsigned char *p, size_t n)
{
    size_t outlen = 4 * ((n + 2) / 3) + 1;
    char *out = xmalloc(outlen);
    int w = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    out[w < 0 ? 0 : w] = '\0';
    return out;
}

/* The public record of pkey, malloc'd; NULL with err. */
static char *public_record(EVP_PKEY *pkey, enum dkim_key_type type, char *err, size_t errlen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    unsigned char raw[32];
    if (type == DKIM_KEY_RSA) {
        int n = i2d_PUBKEY(pkey, &der); /* SubjectPublicKeyInfo */
        if (n <= 0) {
            set_err(err, errlen, "cannot encode the public key: %s", ssl_reason());
            return NULL;
        }
        derlen = (size_t)n;
    } else {
        derlen = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pkey, raw, &derlen) != 1 || derlen != sizeof raw) {
            set_err(err, errlen, "cannot read the Ed25519 public key: %s", ssl_reason());
            return NULL;
        }
    }
    char *p = b64(type == DKIM_KEY_RSA ? der : raw, derlen);
    OPENSSL_free(der);
    const char *k = type == DKIM_KEY_RSA ? "rsa" : "ed25519";
    size_t len = strlen(p) + 32;
    char *rec = xmalloc(len);
    snprintf(rec, len, "v=DKIM1; k=%s; p=%s", k, p);
    free(p);
    return rec;
}

int dkim_key_describe(const char *pem, size_t len, enum dkim_key_type *type, unsigned *bits,
                      char **record, char *err, size_t errlen)
{
    ERR_clear_error();
    if (len > DKIM_KEY_FILE_MAX) {
        set_err(err, errlen, "larger than %d octets", DKIM_KEY_FILE_MAX);
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pkey) {
        set_err(err, errlen, "not a PEM private key (%s)", ssl_reason());
        ERR_clear_error();
        return -1;
    }
    int rc = -1;
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_RSA) {
        *type = DKIM_KEY_RSA;
        int b = EVP_PKEY_get_bits(pkey);
        *bits = b > 0 ? (unsigned)b : 0;
        if (*bits < DKIM_RSA_MIN_BITS) {
            set_err(err, errlen, "an RSA key of %u bits; DKIM needs at least %d (RFC 8301)", *bits,
                    DKIM_RSA_MIN_BITS);
            goto out;
        }
        if (*bits > DKIM_RSA_MAX_BITS) {
            set_err(err, errlen, "an RSA key of %u bits; at most %d are supported", *bits,
                    DKIM_RSA_MAX_BITS);
            goto out;
        }
    } else if (id == EVP_PKEY_ED25519) {
        *type = DKIM_KEY_ED25519;
        *bits = 256;
    } else {
        set_err(err, errlen, "neither an RSA nor an Ed25519 key");
        goto out;
    }
    *record = public_record(pkey, *type, err, errlen);
    if (*record)
        rc = 0;
out:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* Read one key file into k. 0, or -1 with err. */
static int load_key(const char *path, struct dkim_key *k, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set_err(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        set_err(err, errlen, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "not a regular file");
        close(fd);
        return -1;
    }
    if ((st.st_mode & 077) != 0) {
        set_err(err, errlen,
                "permissions %04o are too open: a private key must not be readable by its "
                "group or others (chmod 600 it)",
                (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    if (st.st_size > DKIM_KEY_FILE_MAX) {
        set_err(err, errlen, "larger than %d octets", DKIM_KEY_FILE_MAX);
        close(fd);
        return -1;
    }
    char *text = xmalloc(DKIM_KEY_FILE_MAX + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, text + n, DKIM_KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, errlen, "cannot read: %s", strerror(errno));
            explicit_bzero(text, DKIM_KEY_FILE_MAX + 1);
            free(text);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > DKIM_KEY_FILE_MAX) {
            set_err(err, errlen, "larger than %d octets", DKIM_KEY_FILE_MAX);
            explicit_bzero(text, DKIM_KEY_FILE_MAX + 1);
            free(text);
            close(fd);
            return -1;
        }
    }
    close(fd);
    text[n] = '\0';
    if (dkim_key_describe(text, n, &k->type, &k->bits, &k->record, err, errlen) < 0) {
        explicit_bzero(text, DKIM_KEY_FILE_MAX + 1);
        free(text);
        return -1;
    }
    k->pem = xstrndup(text, n);
    k->pem_len = n;
    explicit_bzero(text, DKIM_KEY_FILE_MAX + 1);
    free(text);
    return 0;
}

static void key_clear(struct dkim_key *k)
{
    if (k->pem) {
        explicit_bzero(k->pem, k->pem_len);
        free(k->pem);
    }
    free(k->record);
    free(k->path);
    memset(k, 0, sizeof *k);
}

static int key_cmp(const void *a, const void *b)
{
    const struct dkim_key *x = a, *y = b;
    int c = strcmp(x->domain, y->domain);
    return c ? c : strcmp(x->selector, y->selector);
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Load the keys of one domain directory. Returns false after an error. */
static bool load_domain(struct dkim_keystore *ks, const char *dir, const char *domain,
                        struct config_diags *diags)
{
    char *ddir = join(dir, domain);
    DIR *dp = opendir(ddir);
    if (!dp) {
        cfg_diag_add(diags, ddir, 0, "cannot open the directory: %s", strerror(errno));
        free(ddir);
        return false;
    }
    bool ok = true;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (name[0] == '.' || len <= 4 || strcmp(name + len - 4, ".key") != 0)
            continue;
        char *path = join(ddir, name);
        char selector[DKIM_SELECTOR_MAX + 2];
        if (len - 4 > DKIM_SELECTOR_MAX) {
            cfg_diag_add(diags, path, 0, "the selector is longer than %d octets",
                         DKIM_SELECTOR_MAX);
            free(path);
            ok = false;
            continue;
        }
        memcpy(selector, name, len - 4);
        selector[len - 4] = '\0';
        ascii_lower(selector);
        if (!dkim_selector_valid(selector)) {
            cfg_diag_add(diags, path, 0, "\"%s\" is not a valid selector", selector);
            free(path);
            ok = false;
            continue;
        }
        if (ks->n == DKIM_KEYS_MAX) {
            cfg_diag_add(diags, path, 0, "more than %d keys in %s", DKIM_KEYS_MAX, dir);
            free(path);
            ok = false;
            break;
        }
        struct dkim_key *k = &ks->v[ks->n];
        memset(k, 0, sizeof *k);
        char err[300];
        if (load_key(path, k, err, sizeof err) < 0) {
            cfg_diag_add(diags, path, 0, "%s", err);
            free(path);
            ok = false;
            continue;
        }
        memcpy(k->domain, domain, strlen(domain) + 1); /* checked: <= DKIM_NAME_MAX */
        ascii_lower(k->domain);
        memcpy(k->selector, selector, strlen(selector) + 1); /* checked: <= DKIM_SELECTOR_MAX */
        k->path = path;
        ks->n++;
    }
    closedir(dp);
    free(ddir);
    return ok;
}

struct dkim_keystore *dkim_keystore_load(const char *dir, struct config_diags *diags)
{
    struct dkim_keystore *ks = xcalloc(1, sizeof *ks);
    ks->v = xcalloc(DKIM_KEYS_MAX, sizeof *ks->v);
    DIR *dp = opendir(dir);
    if (!dp) {
        if (errno == ENOENT)
            return ks;
        cfg_diag_add(diags, dir, 0, "cannot open the DKIM key directory: %s", strerror(errno));
        dkim_keystore_free(ks);
        return NULL;
    }
    bool ok = true;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.')
            continue;
        char *sub = join(dir, name);
        struct stat st;
        bool isdir = stat(sub, &st) == 0 && S_ISDIR(st.st_mode);
        if (isdir && !dkim_domain_valid(name)) {
            cfg_diag_add(diags, sub, 0, "\"%s\" is not a domain name", name);
            ok = false;
        }
        free(sub);
        if (!isdir || !dkim_domain_valid(name))
            continue;
        if (!load_domain(ks, dir, name, diags))
            ok = false;
    }
    closedir(dp);
    if (!ok) {
        dkim_keystore_free(ks);
        return NULL;
    }
    qsort(ks->v, ks->n, sizeof *ks->v, key_cmp);
    for (size_t i = 1; i < ks->n; i++) {
        if (key_cmp(&ks->v[i - 1], &ks->v[i]) == 0) { /* Example.org and example.org */
            cfg_diag_add(diags, ks->v[i].path, 0, "selector %s of %s is given twice",
                         ks->v[i].selector, ks->v[i].domain);
            dkim_keystore_free(ks);
            return NULL;
        }
    }
    /* parsed once here rather than for every message (keycache.c) */
    for (size_t i = 0; i < ks->n; i++)
        dkim_keycache_add(ks->v[i].pem, ks->v[i].pem_len);
    return ks;
}

void dkim_keystore_free(struct dkim_keystore *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        key_clear(&ks->v[i]);
    free(ks->v);
    free(ks);
}

size_t dkim_keystore_count(const struct dkim_keystore *ks)
{
    return ks ? ks->n : 0;
}

const struct dkim_key *dkim_keystore_key(const struct dkim_keystore *ks, size_t i)
{
    return ks && i < ks->n ? &ks->v[i] : NULL;
}

size_t dkim_keystore_domain(const struct dkim_keystore *ks, const char *domain,
                            const struct dkim_key **first)
{
    *first = NULL;
    if (!ks)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < ks->n; i++) {
        if (!ascii_ieq(ks->v[i].domain, domain))
            continue;
        if (n == 0)
            *first = &ks->v[i];
        n++;
    }
    return n;
}

char *dkim_key_generate(enum dkim_key_type type, unsigned bits, char *err, size_t errlen)
{
    ERR_clear_error();
    EVP_PKEY *pkey = NULL;
    if (type == DKIM_KEY_RSA) {
        if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS) {
            set_err(err, errlen, "RSA keys have %d to %d bits", DKIM_RSA_MIN_BITS,
                    DKIM_RSA_MAX_BITS);
            return NULL;
        }
        pkey = EVP_RSA_gen(bits);
    } else {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    if (!pkey) {
        set_err(err, errlen, "cannot generate the key: %s", ssl_reason());
        ERR_clear_error();
        return NULL;
    }
    char *out = NULL;
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio && PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0)
            out = xstrndup(data, (size_t)n);
    }
    if (!out)
        set_err(err, errlen, "cannot encode the key: %s", ssl_reason());
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return out;
}

/* mkdir with mode when missing; an existing directory is left as it is. */
static int ensure_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir_p(path, 0700) < 0) {
        set_err(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int dkim_key_write(const char *dir, const char *domain, const char *selector, const char *pem,
                   bool force, char *path, size_t pathlen, char *err, size_t errlen)
{
    char ldomain[DKIM_NAME_MAX + 1], lsel[DKIM_SELECTOR_MAX + 1];
    if (!dkim_domain_valid(domain)) {
        set_err(err, errlen, "\"%s\" is not a domain name", domain);
        return -1;
    }
    if (!dkim_selector_valid(selector)) {
        set_err(err, errlen, "\"%s\" is not a valid selector", selector);
        return -1;
    }
    snprintf(ldomain, sizeof ldomain, "%s", domain);
    snprintf(lsel, sizeof lsel, "%s", selector);
    ascii_lower(ldomain);
    ascii_lower(lsel);
    if (ensure_dir(dir, err, errlen) < 0)
        return -1;
    char *ddir = join(dir, ldomain);
    int rc = -1;
    char *tmp = NULL;
    int fd = -1;
    if (ensure_dir(ddir, err, errlen) < 0)
        goto out;
    int pn = snprintf(path, pathlen, "%s/%s.key", ddir, lsel);
    if (pn < 0 || (size_t)pn >= pathlen) {
        set_err(err, errlen, "the key's path is too long");
        goto out;
    }
    size_t tn = strlen(ddir) + strlen(lsel) + 32;
    tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s/.%s.key.XXXXXX", ddir, lsel);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "cannot create a temporary file in %s: %s", ddir, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    size_t len = strlen(pem), off = 0;
    if (fchmod(fd, 0600) < 0) {
        set_err(err, errlen, "%s: cannot set mode 0600: %s", tmp, strerror(errno));
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, pem + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            set_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        set_err(err, errlen, "cannot fsync %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (force) {
        if (rename(tmp, path) < 0) {
            set_err(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
            goto out;
        }
    } else {
        /* link() fails on an existing name: no check-then-write race */
        if (link(tmp, path) < 0) {
            if (errno == EEXIST) {
                set_err(err, errlen, "%s exists", path);
                rc = 1;
            } else {
                set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
            }
            goto out;
        }
        unlink(tmp);
    }
    free(tmp);
    tmp = NULL;
    int dfd = open(ddir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        set_err(err, errlen, "cannot fsync directory %s: %s", ddir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(ddir);
    return rc;
}
