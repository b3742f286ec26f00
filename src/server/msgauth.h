/*
 * msgauth - mail authentication in the SMTP session: what one transaction
 * checks or signs, and the header fields it adds.
 *
 * RFC 7208 (SPF), RFC 6376 and 8463 (DKIM), RFC 7489 (DMARC), RFC 8601
 * (Authentication-Results), RFC 7372 (5.7.23 for an SPF fail).
 *
 * A transaction is in one of three modes, chosen by the session:
 *  - verify (mail from other servers on an mx listener): SPF of MAIL FROM
 *    starts at MAIL; DKIM signatures are checked as the content arrives;
 *    at the end of data DMARC is evaluated from both, and an
 *    Authentication-Results field records the three; forged
 *    Authentication-Results fields carrying our authserv-id are removed from
 *    the header section (RFC 8601 §5). DMARC's policy may refuse the message
 *    (550 5.7.1) or mark it (dmarc_quarantine_header).
 *  - sign (authenticated users, trusted networks): once the header section
 *    has ended, a DKIM signer for the From domain (or the nearest parent
 *    domain in the key store, up to the organisational domain) is fed the
 *    content as it is stored; at the end of data the signatures are made in
 *    a worker thread (RSA is slow, DESIGN contract 3).
 *  - none.
 *
 * Everything asynchronous reports through the wake callback given at
 * creation, always from the event loop and never from inside a msgauth_*
 * call; the session then asks msgauth_spf_pending() or msgauth_done(). The
 * fields to add come back as one text (msgauth_prefix) that the spool puts
 * before the data (spool_envelope.prefix).
 *
 * Ownership: the session owns its msgauth; msgauth_free cancels DNS work at
 * once and leaves a signing job in a worker to free what it holds.
 */
#ifndef TERN_SERVER_MSGAUTH_H
#define TERN_SERVER_MSGAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/smtp.h"

struct config;
struct dkim_ctx;
struct dkim_keystore;
struct dmarc_checker;
struct dns_resolver;
struct ev_loop;
struct ev_workers;
struct orgdomain;
struct smtp_hdr_scan;

/* What every transaction shares; built once by main. Members may be NULL:
   no resolver (no SPF, DKIM verification, DMARC), no dkim context or key
   store (no DKIM), no dmarc checker (no DMARC), no workers (sign on the
   loop thread). */
struct msgauth_ctx {
    struct ev_loop *loop;
    struct dns_resolver *dns;
    struct dkim_ctx *dkim;
    const struct dkim_keystore *keys;
    struct dmarc_checker *dmarc;
    const struct orgdomain *org;
    struct ev_workers *workers;
};

enum msgauth_mode {
    MSGAUTH_NONE = 0, /* nothing checked or signed */
    MSGAUTH_VERIFY,   /* SPF, DKIM, DMARC, Authentication-Results */
    MSGAUTH_SIGN,     /* DKIM signatures */
};

/* The transaction's facts (copied). */
struct msgauth_params {
    const char *sid;    /* session id, for logs */
    const char *client; /* the client's address as text */
    const char *helo;   /* its HELO/EHLO name */
    const char *sender; /* MAIL FROM without <>, "" for the null sender */
};

struct msgauth;

/* A transaction's checks, started at MAIL (SPF starts now in verify mode).
   Never NULL. */
struct msgauth *msgauth_new(const struct msgauth_ctx *ctx, const struct config *cfg,
                            enum msgauth_mode mode, const struct msgauth_params *p,
                            void (*wake)(void *arg), void *arg);
/* Cancel what runs and free. NULL does nothing. */
void msgauth_free(struct msgauth *m);

/* SPF of MAIL FROM has not finished. */
bool msgauth_spf_pending(const struct msgauth *m);
/* Once SPF has finished: the refusal of MAIL FROM that spf_fail_action =
   reject asks for (550 5.7.23, with the domain's explanation in text), or
   NULL. */
const struct smtp_status *msgauth_spf_refusal(const struct msgauth *m, char *text, size_t textlen);

/* The content starts; qid names the message in logs. */
void msgauth_content_begin(struct msgauth *m, uint64_t qid);
/* Content as the client sent it (after dot-unstuffing): DKIM verification. */
void msgauth_received(struct msgauth *m, const void *p, size_t n);
/* The header section has ended (h scanned it), and the held content p[0..len)
   is about to be stored: in verify mode forged Authentication-Results fields
   are cut out of it (returns the new length); in sign mode the signer is
   made for the From domain. Content stored before this call (a header
   section too long to hold) means no signature. */
size_t msgauth_header_done(struct msgauth *m, const struct smtp_hdr_scan *h, uint8_t *p,
                           size_t len);
/* Content as it is stored (Received, MSA fields included): DKIM signing. */
void msgauth_stored(struct msgauth *m, const void *p, size_t n);
/* The content is complete (h has scanned its header section): start the
   end-of-data work. msgauth_done() tells when it is over. */
void msgauth_finish(struct msgauth *m, const struct smtp_hdr_scan *h);
bool msgauth_done(const struct msgauth *m);
/* Once done: the header fields to put before the message (CRLF lines), or
   NULL for none. */
const char *msgauth_prefix(const struct msgauth *m);
/* Once done: the refusal DMARC's policy asks for (550 5.7.1, text naming the
   domain), or NULL. */
const struct smtp_status *msgauth_refusal(const struct msgauth *m, char *text, size_t textlen);

#endif
