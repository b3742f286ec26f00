/*
 * userdb - the user store: who may authenticate, with what secrets.
 *
 * File format, one user per line ('#' comments and blank lines ignored):
 *
 *     user@domain:HASH[:OPTIONS]
 *
 * user@domain is the login (lowercased when read). HASH is a crypt(3) hash
 * verified with libxcrypt: yescrypt "$y$" (what `tern user add` writes),
 * bcrypt "$2b$"/"$2y$" and sha512-crypt "$6$"; any other form is an error
 * naming the line. OPTIONS is a ';'-separated list of name=value pairs:
 *
 *     scram-sha-256=ITER:SALT:STOREDKEY:SERVERKEY
 *         RFC 5803-style SCRAM-SHA-256 verifier (SALT, STOREDKEY, SERVERKEY in
 *         base64); enables SCRAM-SHA-256 for this user.
 *     cram-md5=SECRET
 *         the clear-text secret CRAM-MD5 needs (plaintext-equivalent: only when
 *         an old client cannot do better); enables CRAM-MD5 for this user.
 *     networks=CIDR[,CIDR...]
 *         the client networks the user may authenticate from (default: any).
 *
 * PLAIN and LOGIN work for every user. docs/auth.md says which store formats
 * enable which mechanisms. userdb_parse is pure; a userdb is immutable once
 * built, so the server swaps whole stores on reload. Nothing here logs or
 * prints a secret.
 */
#ifndef TERN_AUTH_USERDB_H
#define TERN_AUTH_USERDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct sockaddr;
struct userdb;

/* What a SCRAM-SHA-256 exchange needs to verify a client (RFC 5802 / 5803). */
struct userdb_scram {
    uint32_t iterations;
    uint8_t salt[64];
    size_t salt_len;
    uint8_t stored_key[32]; /* H(ClientKey) */
    uint8_t server_key[32]; /* HMAC(SaltedPassword, "Server Key") */
};

struct userdb_entry {
    char *login;               /* "user@domain", lowercased */
    char *hash;                /* crypt(3) hash */
    char *cram_secret;         /* NULL unless cram-md5= is given */
    bool has_scram;            /* scram-sha-256= is given */
    struct userdb_scram scram; /* valid when has_scram */
    size_t nnetworks;          /* 0: any client address */
    struct config_cidr *networks;
};

/* Parse text; NULL with diags ("file:line: message") on any error. */
struct userdb *userdb_parse(const char *text, size_t len, const char *file,
                            struct config_diags *diags);
/* Read and parse FILE (at most 16 MiB). */
struct userdb *userdb_load(const char *file, struct config_diags *diags);
void userdb_free(struct userdb *db);

size_t userdb_count(const struct userdb *db);
/* Entry i (0 <= i < userdb_count), in login order, or NULL (for listing). */
const struct userdb_entry *userdb_entry_at(const struct userdb *db, size_t i);
/* The entry for login (any case), or NULL. */
const struct userdb_entry *userdb_find(const struct userdb *db, const char *login);
/* Does at least one user hold what CRAM-MD5 / SCRAM-SHA-256 need? */
bool userdb_any_cram(const struct userdb *db);
bool userdb_any_scram(const struct userdb *db);
/* May e authenticate from client address sa? (true when e has no networks) */
bool userdb_network_allows(const struct userdb_entry *e, const struct sockaddr *sa);

/*
 * Verify password against a crypt(3) hash with crypt_rn(); the comparison is
 * constant-time. Slow by design (yescrypt: tens of milliseconds): call it only
 * from a worker thread. A NULL hash verifies against a built-in dummy hash so
 * that an unknown user costs the same time, and returns false.
 */
bool userdb_verify_password(const char *hash, const char *password, size_t password_len);

/* A new yescrypt hash of password (for `tern user`); malloc'd, NULL on failure. */
char *userdb_hash_password(const char *password);

/* The SCRAM-SHA-256 verifier of password (RFC 5802 §3: PBKDF2-HMAC-SHA-256 with
   salt, at least 4096 iterations); false on bad arguments. */
bool userdb_scram_make(const char *password, size_t password_len, uint32_t iterations,
                       const uint8_t *salt, size_t salt_len, struct userdb_scram *out);
/* "ITER:SALT:STOREDKEY:SERVERKEY" as scram-sha-256= takes it; malloc'd. */
char *userdb_scram_format(const struct userdb_scram *sc);

#endif
