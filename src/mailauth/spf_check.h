/*
 * spf_check - SPF checks (RFC 7208) on Tern's resolver: the I/O half that
 * drives the pure evaluator of dns/spf.h with dns_query(), one query at a
 * time, on the event loop.
 *
 * A check is a request and a completion, as DNS lookups are (dns.h):
 * spf_check_start() returns a handle at once and later calls its callback
 * exactly once, always from the event loop (never from inside
 * spf_check_start()), unless spf_check_cancel() came first, in which case it
 * is never called. The result handed to the callback is valid only during
 * the call: copy what you keep. The handle is invalid once the callback has
 * started, and the resolver must outlive every check started on it.
 *
 * The whole check is bounded by req->timeout_ms (the spf_timeout key;
 * SPF_DEFAULT_TIMEOUT_MS, 20 s, when 0, as RFC 7208 §4.6.4 suggests); past
 * it the query in flight is cancelled and the result is "temperror". Each
 * query is also bounded by dns_timeout.
 *
 * One call checks one identity (req->identity). To check both, as an MX
 * does (RFC 7208 §2.3, §2.4):
 *  1. at EHLO/HELO, or before MAIL FROM, start a check with
 *     SPF_IDENTITY_HELO and the HELO name (the result is "none" at once for
 *     an address literal or a name that is not a domain);
 *  2. at MAIL FROM, start a check with SPF_IDENTITY_MAILFROM, the path and
 *     the HELO name. For the null sender <> this identity is
 *     postmaster@HELO, the same check as step 1: a caller that has the HELO
 *     result may use it for MAIL FROM instead of asking again.
 * Both results go into Received-SPF / Authentication-Results (smtp.helo and
 * smtp.mailfrom); a policy (spf_fail_action) acts on the MAIL FROM result.
 */
#ifndef TERN_MAILAUTH_SPF_CHECK_H
#define TERN_MAILAUTH_SPF_CHECK_H

#include "dns/spf.h"

struct dns_resolver;
struct spf_check;

/* The completion of a check (see the file comment for its lifetime). */
typedef void (*spf_check_cb)(void *arg, const struct spf_result *res);

/* Check req (its strings are copied) with the resolver r. Never NULL. */
struct spf_check *spf_check_start(struct dns_resolver *r, const struct spf_request *req,
                                  spf_check_cb cb, void *arg);
/* Stop a check whose callback has not been called; it never will be. NULL
   does nothing. */
void spf_check_cancel(struct spf_check *c);

#endif
