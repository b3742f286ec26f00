/*
 * dkim - DKIM signing and verification of messages as they stream through,
 * on libopendkim (RFC 6376; RFC 8463 for ed25519-sha256; RFC 8301; RFC 8601
 * §2.7.1 for the result names; RFC 6008 for header.b).
 *
 * libopendkim does the canonicalization, hashing and cryptography. It never
 * queries DNS itself: its key lookup hook (dkim_set_key_lookup) is given the
 * key record that Tern's own resolver (dns_query) fetched beforehand, so a
 * verification never blocks the event loop.
 *
 * Messages are fed as stored: header fields and body with CRLF line ends, in
 * chunks of any size and cut anywhere. Both objects split the header section
 * into fields themselves (a field is at most DKIM_FIELD_MAX octets, at most
 * DKIM_FIELDS_MAX fields), hand each to libopendkim, then the body.
 *
 * Signer: the keys of one domain from the key store, every selector at once
 * (an RSA and an Ed25519 key give two signatures), relaxed/relaxed, SHA-256,
 * a fixed list of header fields with From signed once more than it occurs (so
 * that no From can be added), t= the time of signing. finish() returns the
 * DKIM-Signature fields with CRLF line ends, to prepend to the message. A
 * signer touches no event loop: any thread may drive it (one at a time).
 *
 * Verifier: at the end of the header section it knows every DKIM-Signature's
 * d= and s= (dkimtag.h's parser), and asks DNS for the key of each of the
 * first DKIM_VERIFY_MAX signatures while the body streams in. At the end of
 * the message, once every answer is in, libopendkim checks the signatures
 * with those keys, and the completion callback gets one result per signature
 * examined, always from the event loop and never inside a verifier call. The
 * verifier is driven from the loop thread (it starts DNS queries).
 *
 * A result is "pass" only when both the signature over the header and the
 * body hash verify. Ownership: each object owns what it allocates; results
 * handed to the callback are valid during the call only.
 */
#ifndef TERN_MAILAUTH_DKIM_H
#define TERN_MAILAUTH_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailauth/dkimtag.h"

struct buf;
struct ev_loop;
struct dns_resolver;
struct dkim_keystore;

/* The longest header field handed over (folded lines included). */
#define DKIM_FIELD_MAX (64 * 1024)
/* At most this many header fields in a message. */
#define DKIM_FIELDS_MAX 2000
/* Signatures examined per message; further ones are counted, not checked. */
#define DKIM_VERIFY_MAX 5
/* The longest key record accepted (libopendkim's own limit is 1024). */
#define DKIM_KEY_RECORD_MAX 1023

/* libopendkim's library state, configured for Tern (signed header fields,
   oversigning, key lookup through the verifier). Shared by every signer and
   verifier; thread-safe once created. */
struct dkim_ctx;

/* NULL with err when libopendkim cannot be set up. */
struct dkim_ctx *dkim_ctx_new(char *err, size_t errlen);
/* Sign with t= fixed at `when` (seconds since the epoch) instead of the
   clock, for tests; 0 returns to the clock. Call before any signer exists. */
void dkim_ctx_set_time(struct dkim_ctx *ctx, uint64_t when);
/* After every signer and verifier made with it is freed. NULL does nothing. */
void dkim_ctx_free(struct dkim_ctx *ctx);

/* ---- signing ---- */

struct dkim_signer;

/* A signer for one message with every key of domain in ks (copied: ks may be
   freed or reloaded while the signer lives). id names the message in
   libopendkim's errors (the queue id). NULL with err when domain has no key
   or libopendkim refuses. */
struct dkim_signer *dkim_signer_new(struct dkim_ctx *ctx, const struct dkim_keystore *ks,
                                    const char *domain, const char *id, char *err, size_t errlen);
/* Feed the next octets of the message. Returns 0, or -1 once the message is
   beyond the limits or libopendkim failed (finish() then says why). */
int dkim_signer_feed(struct dkim_signer *s, const void *data, size_t len);
/* End of the message: append one "DKIM-Signature: ...\r\n" field per key to
   out (folded with CRLF). Returns the number of signatures, or -1 with err
   (out unchanged) when the message cannot be signed (no From field, beyond
   the limits, a key libopendkim cannot use). Call once. */
int dkim_signer_finish(struct dkim_signer *s, struct buf *out, char *err, size_t errlen);
void dkim_signer_free(struct dkim_signer *s);

/* ---- verifying ---- */

/* RFC 8601 §2.7.1 results. */
enum dkim_result {
    DKIM_RESULT_NONE = 0,  /* the message has no signature */
    DKIM_RESULT_PASS,      /* header signature and body hash verify */
    DKIM_RESULT_FAIL,      /* the signature or the body hash does not verify */
    DKIM_RESULT_NEUTRAL,   /* the signature is malformed (syntax) */
    DKIM_RESULT_POLICY,    /* valid form, but not accepted: rsa-sha1, RSA key < 1024 bits */
    DKIM_RESULT_TEMPERROR, /* the key could not be fetched now (DNS failure) */
    DKIM_RESULT_PERMERROR, /* no key, a bad or revoked key, expired, message unusable */
};

/* The outcome of one signature. */
struct dkim_sig_result {
    enum dkim_result result;
    char domain[DKIM_NAME_MAX + 1];       /* d= (lowercase), "" when absent or invalid */
    char selector[DKIM_NAME_MAX + 1];     /* s= (lowercase), "" when absent or invalid */
    char alg[32];                         /* a= as written */
    char header_b[DKIM_HEADER_B_LEN + 1]; /* the first octets of b= (RFC 6008) */
    char identity[DKIM_NAME_MAX + 66];    /* i= as written, "" when absent */
    bool testing;                         /* the key says t=y (testing) */
    char reason[320];                     /* why, when not pass: "body hash did not verify",
                                             "signature did not verify", "no key", ... */
};

/* Every outcome of one message. */
struct dkim_results {
    enum dkim_result summary;                     /* pass if any passed, else the first result,
                                                     none without signatures */
    size_t n;                                     /* signatures examined */
    struct dkim_sig_result sigs[DKIM_VERIFY_MAX]; /* in header order */
    size_t unexamined;                            /* signatures past DKIM_VERIFY_MAX */
};

/* The completion of a verification (see the file comment). */
typedef void (*dkim_verify_cb)(void *arg, const struct dkim_results *res);

struct dkim_verifier;

/* A verifier for one message; keys are fetched with dns on loop. NULL with
   err when libopendkim refuses. */
struct dkim_verifier *dkim_verifier_new(struct dkim_ctx *ctx, struct ev_loop *loop,
                                        struct dns_resolver *dns, const char *id, dkim_verify_cb cb,
                                        void *arg, char *err, size_t errlen);
/* Feed the next octets of the message (loop thread). */
void dkim_verifier_feed(struct dkim_verifier *v, const void *data, size_t len);
/* End of the message: the callback follows once the keys are in. Call once. */
void dkim_verifier_finish(struct dkim_verifier *v);
/* Cancel what is in flight; the callback is not called after this. NULL does
   nothing. May be called from the callback. */
void dkim_verifier_free(struct dkim_verifier *v);

/* "none", "pass", "fail", "neutral", "policy", "temperror", "permerror". */
const char *dkim_result_name(enum dkim_result r);

#endif
