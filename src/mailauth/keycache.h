/*
 * keycache - DKIM keys parsed once instead of once per message: Tern's own
 * PEM_read_bio_PrivateKey and d2i_PUBKEY_bio answer from a table of keys
 * already parsed, by content, and call OpenSSL's otherwise (see keycache.c
 * for why and how).
 */
#ifndef TERN_MAILAUTH_KEYCACHE_H
#define TERN_MAILAUTH_KEYCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse a signing key (PEM text) now and keep it for the signers. False when
   it does not parse, is already there, or the table is full. */
bool dkim_keycache_add(const char *pem, size_t len);
/* Parses answered from the table, and parses passed to OpenSSL, since start. */
void dkim_keycache_stats(uint64_t *hits, uint64_t *misses);
/* Forget every key (at exit). */
void dkim_keycache_clear(void);

#endif
