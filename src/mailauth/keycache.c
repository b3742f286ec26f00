/*
 * keycache - DKIM keys parsed once, not once per message.
 *
 * libopendkim takes a signing key as PEM text and parses it again in every
 * dkim_eom() (PEM_read_bio_PrivateKey), and parses a verifier's public key
 * from its DER form for every signature it checks (d2i_PUBKEY_bio). With
 * OpenSSL 3 each parse sets up a decoder context, which costs about 350 µs
 * and takes locks the signing workers contend for: measured with perf under
 * the bench's 50-client load, 46 to 56 % of Tern's CPU time with Ed25519
 * signing, 32 to 35 % with RSA-2048, 16 to 18 % when verifying (bench/README.md,
 * "Mail authentication").
 *
 * So Tern provides those two functions itself. Each looks the text it is
 * asked to parse up in a table of keys already parsed, by content: for the
 * very same octets it hands out a new reference to the same EVP_PKEY (which
 * OpenSSL allows to be used by several threads at once), and drains the BIO
 * as the parse would have; anything else (other callers, other keys, a
 * non-memory BIO, a request to fill *x) goes to OpenSSL's own function,
 * found with dlsym(RTLD_NEXT), and a verifier's key parsed that way is
 * remembered. Being defined in the executable, these definitions are the
 * ones the dynamic linker binds libopendkim's calls to; when it does not
 * (another build), everything still works, only slower. The answer for given
 * octets is the key OpenSSL would have parsed from them, so the cache
 * changes no result.
 *
 * Bounds: the signing keys are the key store's (DKIM_KEYS_MAX), registered
 * at load; public keys are kept for the last KEYCACHE_PUBLIC_MAX distinct
 * records, the least recently used going first. Thread-safe (one mutex).
 */
#include "mailauth/keycache.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "mailauth/dkimkey.h"

#define KEYCACHE_PUBLIC_MAX 64
#define KEYCACHE_TEXT_MAX (16 * 1024) /* longer texts are not cached */

struct cached {
    unsigned char *text; /* the octets it was parsed from (private: wiped at free) */
    size_t len;
    EVP_PKEY *pkey;
    uint64_t used; /* public keys: last use, for eviction */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct cached private_keys[DKIM_KEYS_MAX];
static size_t nprivate;
static struct cached public_keys[KEYCACHE_PUBLIC_MAX];
static size_t npublic;
static uint64_t clock_ticks;
static uint64_t hits, misses; /* parses answered from the table, and not */

typedef EVP_PKEY *(*pem_read_fn)(BIO *, EVP_PKEY **, pem_password_cb *, void *);
typedef EVP_PKEY *(*d2i_pubkey_fn)(BIO *, EVP_PKEY **);

static pem_read_fn real_pem_read(void)
{
    static pem_read_fn fn;
    if (!fn)
        fn = (pem_read_fn)dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey");
    return fn;
}

static d2i_pubkey_fn real_d2i_pubkey(void)
{
    static d2i_pubkey_fn fn;
    if (!fn)
        fn = (d2i_pubkey_fn)dlsym(RTLD_NEXT, "d2i_PUBKEY_bio");
    return fn;
}

/* What a memory BIO has left to read, or NULL. */
static const unsigned char *mem_contents(BIO *bp, size_t *len)
{
    if (!bp || BIO_method_type(bp) != BIO_TYPE_MEM)
        return NULL;
    char *data = NULL;
    long n = BIO_get_mem_data(bp, &data);
    if (n <= 0 || !data || (size_t)n > KEYCACHE_TEXT_MAX)
        return NULL;
    *len = (size_t)n;
    return (const unsigned char *)data;
}

/* Consume n octets of a memory BIO, as a parse that used them all would. */
static void drain(BIO *bp, size_t n)
{
    unsigned char scratch[1024];
    while (n > 0) {
        int got = BIO_read(bp, scratch, (int)(n < sizeof scratch ? n : sizeof scratch));
        if (got <= 0)
            break;
        n -= (size_t)got;
    }
    OPENSSL_cleanse(scratch, sizeof scratch);
}

static struct cached *find(struct cached *v, size_t n, const unsigned char *text, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].len == len && memcmp(v[i].text, text, len) == 0)
            return &v[i];
    return NULL;
}

EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
    size_t len;
    const unsigned char *text = x ? NULL : mem_contents(bp, &len);
    if (text) {
        EVP_PKEY *hit = NULL;
        pthread_mutex_lock(&mu);
        struct cached *c = find(private_keys, nprivate, text, len);
        if (c && EVP_PKEY_up_ref(c->pkey) == 1) {
            hit = c->pkey;
            hits++;
        }
        pthread_mutex_unlock(&mu);
        if (hit) {
            drain(bp, len);
            return hit;
        }
    }
    pthread_mutex_lock(&mu);
    misses++;
    pthread_mutex_unlock(&mu);
    pem_read_fn real = real_pem_read();
    return real ? real(bp, x, cb, u) : NULL;
}

EVP_PKEY *d2i_PUBKEY_bio(BIO *bp, EVP_PKEY **x)
{
    size_t len = 0;
    const unsigned char *text = x ? NULL : mem_contents(bp, &len);
    if (text) {
        EVP_PKEY *hit = NULL;
        pthread_mutex_lock(&mu);
        struct cached *c = find(public_keys, npublic, text, len);
        if (c && EVP_PKEY_up_ref(c->pkey) == 1) {
            hit = c->pkey;
            c->used = ++clock_ticks;
            hits++;
        }
        pthread_mutex_unlock(&mu);
        if (hit) {
            drain(bp, len);
            return hit;
        }
    }
    unsigned char *copy = text ? xmalloc(len) : NULL;
    if (copy)
        memcpy(copy, text, len);
    d2i_pubkey_fn real = real_d2i_pubkey();
    EVP_PKEY *pkey = real ? real(bp, x) : NULL;
    if (copy && pkey && EVP_PKEY_up_ref(pkey) == 1) {
        /* the extra reference is the cache's */
        bool kept = false;
        pthread_mutex_lock(&mu);
        misses++;
        if (!find(public_keys, npublic, copy, len)) {
            struct cached *slot = &public_keys[npublic < KEYCACHE_PUBLIC_MAX ? npublic++ : 0];
            if (slot->pkey) { /* full: the least recently used goes */
                for (size_t i = 1; i < npublic; i++)
                    if (public_keys[i].used < slot->used)
                        slot = &public_keys[i];
                EVP_PKEY_free(slot->pkey);
                free(slot->text);
            }
            *slot = (struct cached){copy, len, pkey, ++clock_ticks};
            kept = true;
        }
        pthread_mutex_unlock(&mu);
        if (!kept) { /* another thread cached the same key meanwhile */
            free(copy);
            EVP_PKEY_free(pkey);
        }
        return pkey;
    }
    free(copy);
    return pkey;
}

bool dkim_keycache_add(const char *pem, size_t len)
{
    if (len == 0 || len > KEYCACHE_TEXT_MAX)
        return false;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    pem_read_fn real = real_pem_read();
    EVP_PKEY *pkey = bio && real ? real(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!pkey)
        return false;
    bool added = false;
    pthread_mutex_lock(&mu);
    if (!find(private_keys, nprivate, (const unsigned char *)pem, len) &&
        nprivate < DKIM_KEYS_MAX) {
        unsigned char *text = xmalloc(len);
        memcpy(text, pem, len);
        private_keys[nprivate++] = (struct cached){text, len, pkey, 0};
        pkey = NULL;
        added = true;
    }
    pthread_mutex_unlock(&mu);
    EVP_PKEY_free(pkey);
    return added;
}

void dkim_keycache_stats(uint64_t *hit, uint64_t *miss)
{
    pthread_mutex_lock(&mu);
    *hit = hits;
    *miss = misses;
    pthread_mutex_unlock(&mu);
}

void dkim_keycache_clear(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nprivate; i++) {
        OPENSSL_cleanse(private_keys[i].text, private_keys[i].len);
        free(private_keys[i].text);
        EVP_PKEY_free(private_keys[i].pkey);
    }
    nprivate = 0;
    for (size_t i = 0; i < npublic; i++) {
        free(public_keys[i].text);
        EVP_PKEY_free(public_keys[i].pkey);
    }
    npublic = 0;
    pthread_mutex_unlock(&mu);
}
