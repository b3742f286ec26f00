/*
 * sasl - the server side of the SASL mechanisms SMTP AUTH offers (RFC 4954):
 * PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195)
 * and SCRAM-SHA-256 (RFC 5802, RFC 7677; no channel binding, so no -PLUS).
 *
 * A sasl_session runs one exchange. The SMTP session feeds it the initial
 * response from the AUTH line and then each client line; the session sends
 * "334 <out>" while the result is SASL_CONTINUE. The mechanism decodes base64
 * itself (strictly: bad base64 is SASL_MALFORMED). PLAIN and LOGIN end in
 * SASL_CHECK_PASSWORD: the slow crypt(3) check then runs in a worker thread
 * (sasl_check_password) and sasl_finish gives the outcome on the loop thread.
 * An unknown user, a user not allowed from the client's address, or an
 * authorization identity other than the login still go through a (dummy)
 * password check, so timing does not tell them apart, and end in SASL_FAILED.
 *
 * A session copies what it needs from the userdb and keeps no pointer into
 * it, so the store may be swapped between calls. Secrets are wiped on free
 * and never logged. Pure apart from crypt and OpenSSL's hashes and random
 * bytes (nonces, CRAM-MD5 challenges).
 */
#ifndef TERN_AUTH_SASL_H
#define TERN_AUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/userdb.h"

struct sockaddr;
struct sasl_session;

enum sasl_mech { SASL_PLAIN = 0, SASL_LOGIN, SASL_CRAM_MD5, SASL_SCRAM_SHA_256 };
#define SASL_NMECH 4

/* Longest client line (RFC 4954 §4: 12288 octets) and longest server challenge text. */
#define SASL_MAX_LINE 12288
#define SASL_MAX_CHALLENGE 1024

/* "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256". */
const char *sasl_mech_name(enum sasl_mech m);
/* Case-insensitive; false for an unknown name. */
bool sasl_mech_parse(const char *name, size_t len, enum sasl_mech *out);

enum sasl_status {
    SASL_CONTINUE,       /* send "334 " + out (base64, may be empty); feed the next line */
    SASL_CHECK_PASSWORD, /* run sasl_check_password() in a worker, then sasl_finish() */
    SASL_SUCCESS,        /* authenticated as sasl_login(): 235 2.7.0 */
    SASL_FAILED,         /* wrong credentials or not allowed: 535 5.7.8 */
    SASL_MALFORMED,      /* bad base64 or mechanism syntax: 501 5.5.2 */
    SASL_CANCELLED,      /* the client sent "*": 501 5.7.0 */
};

/* hostname: ours, for CRAM-MD5 challenges. client: the peer's address (copied). */
struct sasl_session *sasl_new(enum sasl_mech mech, const char *hostname,
                              const struct sockaddr *client);
/* Wipes every secret it holds. NULL does nothing. */
void sasl_free(struct sasl_session *s);

/*
 * Begin the exchange. initial is the initial response from the AUTH line
 * (base64; "=" is an empty response), or NULL when the line had none.
 * out receives the challenge (NUL-terminated base64) for SASL_CONTINUE;
 * outmax >= SASL_MAX_CHALLENGE.
 */
enum sasl_status sasl_start(struct sasl_session *s, const struct userdb *db, const char *initial,
                            size_t len, char *out, size_t outmax);
/* One client line, without its CRLF; "*" cancels. */
enum sasl_status sasl_step(struct sasl_session *s, const struct userdb *db, const char *line,
                           size_t len, char *out, size_t outmax);
/* Worker thread, after SASL_CHECK_PASSWORD: the crypt(3) check. */
void sasl_check_password(struct sasl_session *s);
/* Loop thread, after sasl_check_password: SASL_SUCCESS or SASL_FAILED. */
enum sasl_status sasl_finish(struct sasl_session *s);

/* The login the client claimed (lowercased), or NULL before it is known. */
const char *sasl_login(const struct sasl_session *s);
enum sasl_mech sasl_session_mech(const struct sasl_session *s);

/* Strict RFC 4648 base64 (padding required, no white space). Returns 0 and the
   decoded length, or -1 on bad input or when out is too small. */
int sasl_b64_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen);
/* Encode; returns the length written (NUL-terminated), or 0 if outmax is too small. */
size_t sasl_b64_encode(const uint8_t *in, size_t len, char *out, size_t outmax);

#endif
