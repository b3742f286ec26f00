/*
 * dkimkey - the DKIM key store: private keys on disk, one file per domain and
 * selector, and the public key records to publish for them.
 *
 * Layout: <dkim_key_dir>/<domain>/<selector>.key, each a PEM private key
 * (PKCS#8 "PRIVATE KEY", or the traditional "RSA PRIVATE KEY"), RSA of at
 * least 1024 bits or Ed25519. A key file that its group or others may read is
 * refused, as OpenSSH refuses such an identity file. Directory and file names
 * are lowercased domain names and selectors; other entries (dot files, names
 * that do not end in .key) are skipped.
 *
 * The public record of a key is what RFC 6376 §3.6.1 and RFC 8463 §4 say to
 * publish at <selector>._domainkey.<domain>:
 *     v=DKIM1; k=rsa; p=<base64 of the SubjectPublicKeyInfo (DER)>
 *     v=DKIM1; k=ed25519; p=<base64 of the raw 32-octet public key>
 *
 * The store is loaded once, read-only afterwards (several threads may read
 * it), and owns every key and string it returns. Generation and writing serve
 * `tern dkim keygen`.
 */
#ifndef TERN_MAILAUTH_DKIMKEY_H
#define TERN_MAILAUTH_DKIMKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "mailauth/dkimtag.h"

struct config_diags;

/* At most this many keys are loaded, in all domains. */
#define DKIM_KEYS_MAX 256
/* The largest key file read (an RSA 8192 key in PEM is about 6.3 KB). */
#define DKIM_KEY_FILE_MAX 16384
/* A selector: a domain name (RFC 6376 §3.1), kept short enough that
   selector._domainkey.domain is a DNS name. */
#define DKIM_SELECTOR_MAX 63
/* RSA key sizes keygen accepts (RFC 8301 §3.2: at least 1024; signers
   SHOULD use 2048). */
#define DKIM_RSA_MIN_BITS 1024
#define DKIM_RSA_MAX_BITS 8192
#define DKIM_RSA_DEFAULT_BITS 2048

/* The kind of a private key. */
enum dkim_key_type {
    DKIM_KEY_RSA = 0, /* a=rsa-sha256 */
    DKIM_KEY_ED25519, /* a=ed25519-sha256 (RFC 8463) */
};

/* One private key of the store. */
struct dkim_key {
    char domain[DKIM_NAME_MAX + 1];       /* lowercase, from the directory name */
    char selector[DKIM_SELECTOR_MAX + 1]; /* lowercase, from the file name */
    enum dkim_key_type type;
    unsigned bits;  /* RSA modulus bits; 256 for Ed25519 */
    char *pem;      /* the private key as PEM text (secret; wiped at free) */
    size_t pem_len; /* octets of pem, without the NUL */
    char *record;   /* the public key record, "v=DKIM1; k=...; p=..." */
    char *path;     /* the file it was read from */
};

struct dkim_keystore;

/* Load every key under dir. A dir that does not exist is an empty store. Any
   problem with a key file (unreadable, too open, not a key, an RSA key under
   1024 bits, too many keys or too large a file) is an error in diags ("FILE:
   message") and the result is NULL: a server refuses to start with a key it
   cannot use rather than send unsigned mail. */
struct dkim_keystore *dkim_keystore_load(const char *dir, struct config_diags *diags);
/* Wipe and free the keys. NULL does nothing. */
void dkim_keystore_free(struct dkim_keystore *ks);
/* The number of keys, and key i (0 <= i < count), ordered by domain then
   selector. */
size_t dkim_keystore_count(const struct dkim_keystore *ks);
const struct dkim_key *dkim_keystore_key(const struct dkim_keystore *ks, size_t i);
/* The keys of domain (any case): their number, and in *first a pointer to
   the first of them (consecutive in selector order); 0 when it has none. */
size_t dkim_keystore_domain(const struct dkim_keystore *ks, const char *domain,
                            const struct dkim_key **first);

/* Is s a selector keygen accepts: a lowercase domain name (letters, digits,
   '-', '_' and dots) of at most DKIM_SELECTOR_MAX octets? */
bool dkim_selector_valid(const char *s);
/* Is d a domain name keys can be stored for (letters, digits, '-', '_',
   dots; at most 253 octets, so also case-insensitive)? */
bool dkim_domain_valid(const char *d);

/* Read a PEM private key from text and describe it: its type, bits and public
   record (malloc'd, into *record). 0, or -1 with err. */
int dkim_key_describe(const char *pem, size_t len, enum dkim_key_type *type, unsigned *bits,
                      char **record, char *err, size_t errlen);

/* Generate a key (bits is used for RSA only) and return it as a PKCS#8 PEM
   text (malloc'd; the caller wipes and frees it), or NULL with err. */
char *dkim_key_generate(enum dkim_key_type type, unsigned bits, char *err, size_t errlen);

/* Write pem as <dir>/<domain>/<selector>.key: the directories are created
   with mode 0700 when missing, the file is written under a temporary name
   with mode 0600, fsynced, then linked to its name, which fails when it
   exists unless force (then it is renamed over it), and the directory is
   fsynced. The path written goes to path (pathlen >= 4096 is enough).
   Returns 0; 1 when the key exists and force is false; -1 with err on any
   other failure. */
int dkim_key_write(const char *dir, const char *domain, const char *selector, const char *pem,
                   bool force, char *path, size_t pathlen, char *err, size_t errlen);

#endif
