/*
 * dmarc_check - DMARC for one message on Tern's resolver (RFC 7489 §6.6):
 * the I/O half of dns/dmarc.h. A check normalizes the From domain (and the
 * SPF and DKIM domains) to A-labels, asks the questions policy discovery
 * asks (_dmarc.<From domain> TXT, then _dmarc.<organisational domain> TXT,
 * then, only when np would decide, the From domain's A, AAAA and MX),
 * evaluates the message's SPF and DKIM results against the record found,
 * and reports once.
 *
 * A check is a request and a completion: dmarc_check_start() returns a
 * handle at once and later calls its callback exactly once, always from the
 * event loop (never from inside the start call), unless dmarc_check_cancel()
 * or dmarc_checker_free() came first, in which case it is never called. The
 * result is valid only during the callback; the handle is invalid once the
 * callback has started.
 *
 * Also here: what Tern does with a disposition (dmarc_reject_action), the
 * dmarc resinfo of Authentication-Results, and a draw for pct.
 */
#ifndef TERN_MAILAUTH_DMARC_CHECK_H
#define TERN_MAILAUTH_DMARC_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "dns/dmarc.h"
#include "smtp/authres.h"

struct ev_loop;
struct dns_resolver;
struct orgdomain;
struct dmarc_checker;
struct dmarc_check;

/* What the session knows of the message. */
struct dmarc_check_request {
    enum dmarc_from from_status; /* dmarc_from_domain()'s verdict: anything but
                                    DMARC_FROM_OK is dmarc=permerror, no lookup */
    const char *from_domain;     /* the author domain (may hold U-labels) */
    struct dmarc_input in;       /* SPF and DKIM results (copied by the start call) */
    unsigned pct_roll;           /* 0..99 (dmarc_pct_roll()) */
};

/* What a check found. */
struct dmarc_check_result {
    const char *from_domain;            /* the From domain as A-labels ("" when unusable) */
    enum dmarc_from from_status;        /* as requested */
    const struct dmarc_discovery *disc; /* the record, the policy domain, reason */
    const struct dmarc_result *res;     /* the evaluation */
    const struct dmarc_input *in;       /* the input as evaluated (domains normalized) */
};

typedef void (*dmarc_check_cb)(void *arg, const struct dmarc_check_result *r);

/* Checks on loop with the resolver dns and the public suffix list od
   (both outlive the checker). */
struct dmarc_checker *dmarc_checker_new(struct ev_loop *loop, struct dns_resolver *dns,
                                        const struct orgdomain *od);
/* Cancel every check in flight (no callbacks) and free. NULL does nothing. */
void dmarc_checker_free(struct dmarc_checker *c);

/* Start a check. The request is copied; at most DMARC_MAX_DKIM signatures
   are kept. Never NULL. */
struct dmarc_check *dmarc_check_start(struct dmarc_checker *c,
                                      const struct dmarc_check_request *req, dmarc_check_cb cb,
                                      void *arg);
/* Stop a check whose callback has not run; it never will. NULL does nothing. */
void dmarc_check_cancel(struct dmarc_check *q);

/* A number from 0 to 99, uniformly drawn (arc4random), for pct. */
unsigned dmarc_pct_roll(void);

/* What Tern does with a message (after the operator's dmarc_reject_action). */
enum dmarc_action {
    DMARC_ACTION_ACCEPT = 0, /* deliver as usual (the result is recorded) */
    DMARC_ACTION_QUARANTINE, /* deliver with the dmarc_quarantine_header field */
    DMARC_ACTION_REJECT,     /* 550 5.7.1 at the end of data */
};

/* The action for a disposition: quarantine -> quarantine; reject -> what
   reject_action (enum config_dmarc_action) says: reject, quarantine, or
   record (accept). */
enum dmarc_action dmarc_local_action(enum dmarc_disposition d, int reject_action);
/* "accept", "quarantine", "reject". */
const char *dmarc_action_name(enum dmarc_action a);

/* The dmarc resinfo of Authentication-Results for r:
   dmarc=<result> header.from=<domain> (p=<policy> dis=<what was done>),
   the comment only when a policy was found. Strings point into r and
   comment (at least 64 octets). */
void dmarc_check_authres(const struct dmarc_check_result *r, enum dmarc_action done, char *comment,
                         size_t commentlen, struct authres_result *out);

#endif
