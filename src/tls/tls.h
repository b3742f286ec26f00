/*
 * tls - OpenSSL 3 server contexts for STARTTLS (RFC 3207) and implicit TLS
 * (RFC 8314), and self-signed certificates for the embedded default.
 *
 * A tls_server is one SSL_CTX built from the configuration: certificate chain
 * and key from PEM files (checked to match), minimum protocol version
 * (tls_min_version, TLS 1.2 by default; older versions are never enabled),
 * tls_ciphers for TLS 1.2 and tls_ciphersuites for TLS 1.3, server cipher
 * preference, no compression, no renegotiation. Reload builds a new
 * tls_server and frees the old one: connections already using the old
 * context keep it alive through OpenSSL's own reference count, so nothing in
 * flight is dropped. Only the event module and main see OpenSSL types.
 */
#ifndef TERN_TLS_TLS_H
#define TERN_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

struct ssl_st;
struct tls_server;

/* NULL with a clear message in err (file names, OpenSSL's reason) on failure. */
struct tls_server *tls_server_new(const struct config *cfg, char *err, size_t errlen);
void tls_server_free(struct tls_server *t);
/* A new server-side SSL object for one connection (the caller owns it). */
struct ssl_st *tls_server_ssl_new(struct tls_server *t);
/* Subject CN, DNS subjectAltNames (count and first) and notAfter of the loaded
   leaf certificate as key=value text for the start-up log:
   "cn=mx.example.org sans=2 san=mx.example.org not_after=2029-02-25T12:00:00Z". */
void tls_server_describe(const struct tls_server *t, char *out, size_t outlen);

/* What an operator checks about a certificate file (`tern cert`). */
struct tls_cert_info {
    char subject_cn[256]; /* subject commonName; "" if none */
    char not_after[32];   /* "2029-02-25T12:00:00Z" (UTC) */
    char sha256[96];      /* SHA-256 of the DER certificate, "AB:CD:...", 95 characters */
};
/* Read the first certificate of a PEM file. Returns 0, or -1 with err filled. */
int tls_cert_info_read(const char *cert_file, struct tls_cert_info *info, char *err, size_t errlen);

/*
 * Create a self-signed certificate for hostname (CN and subjectAltName DNS,
 * RSA 2048, SHA-256, valid 825 days) and its key, written atomically to
 * cert_file (0644) and key_file (0600), creating missing directories.
 * Returns 0, or -1 with err filled.
 */
int tls_selfsigned_create(const char *hostname, const char *cert_file, const char *key_file,
                          char *err, size_t errlen);

/*
 * The client side of outbound SMTP: one context for every connection, TLS 1.2
 * or later. ca_file holds the CA certificates that verify peers (NULL: the
 * system's default locations).
 */
struct tls_client;
struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen);
void tls_client_free(struct tls_client *t);
/* A new client-side SSL object with SNI set to servername. verify: the peer's
   chain must lead to a trusted CA and its certificate name servername
   (RFC 6125), else the handshake fails; otherwise nothing is checked
   (opportunistic TLS, RFC 7435). */
struct ssl_st *tls_client_ssl_new(struct tls_client *t, const char *servername, bool verify);

#endif
