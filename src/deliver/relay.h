/*
 * relay - the outbound SMTP delivery agent (RFC 5321 client side).
 *
 * One relay job carries one message to the recipients it has at one domain:
 * the destination's hosts come from DNS (MX in preference order, or the
 * domain itself), and each address is tried in turn until one takes the
 * transaction: EHLO (HELO when EHLO is refused), STARTTLS when offered
 * (opportunistic, RFC 7435; RFC 3207 §4.2: what the server sent after its 220
 * is discarded, and EHLO is sent again), MAIL with SIZE, BODY, SMTPUTF8 and
 * the DSN parameters the peer supports, one RCPT per recipient, DATA with the
 * body dot-stuffed from the spool.
 *
 * Connections are reused: after a transaction that ended cleanly the
 * connection is kept idle for the next job of the same destination (the
 * route, the relayhost, or the domain's MX hosts), which starts with RSET
 * and opens a new connection, without counting a failure, when that fails.
 * At most destination_concurrency idle connections per destination and 1000
 * in all; at most 100 jobs per connection; an idle SMTP connection gets QUIT
 * after 5 s (LMTP: 60 s), and one whose peer speaks or closes is dropped.
 *
 * With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
 * and the replies are read in order. A body with 8-bit octets for a peer
 * without 8BITMIME is converted to quoted-printable while it is sent (RFC
 * 6152 §3); whether it can be is decided before MAIL, by a dry run of the
 * converter over the spooled body.
 *
 * Routes (config/transport.h): the transport table given to relay_new is
 * looked up with the job's domain; without an entry, the relayhost (when
 * set) takes all the mail, else the domain's MX hosts. An smtp route or the
 * relayhost names a host (MX lookup without brackets); with the relayhost
 * and credentials, AUTH PLAIN (or LOGIN when only it is offered, RFC 4954)
 * follows EHLO, only over TLS unless the host is on loopback, and a refused
 * AUTH defers (a wrong password must not bounce mail). An lmtp route speaks
 * LMTP (RFC 2033: LHLO, one reply per accepted recipient after the final
 * dot) on a unix socket or over TCP. A maildir route never reaches the relay:
 * the scheduler delivers its recipients to Maildir.
 *
 * Every recipient's outcome is classified once, where it is learnt: a 2xx
 * to the end of data delivers, a 5xx bounces, a 4xx, a lost connection, a
 * timeout or a temporary DNS failure defers. Trouble before any recipient is
 * accepted (connection refused, greeting or EHLO refused, MAIL 4xx) moves on
 * to the next address and host; when none is left the recipients are
 * deferred with the last reason. A message that needs SMTPUTF8, exceeds the
 * peer's SIZE, or has 8-bit octets the converter cannot handle is bounced
 * when the peer lacks the extension (5.6.7, 5.3.4, 5.6.3).
 *
 * Loop thread only. The job and everything it points to belong to the
 * caller and must stay valid until its done callback, which is called
 * exactly once (also when the relay is freed at shutdown: outcomes deferred).
 */
#ifndef TERN_DELIVER_RELAY_H
#define TERN_DELIVER_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/transport.h"
#include "spool/spool.h"

struct ev_loop;
struct dns_resolver;
struct tls_client;
struct relay;

enum relay_result { RELAY_SENT = 0, RELAY_DEFERRED, RELAY_BOUNCED };

/* One recipient of a job: what to send, and what happened. */
struct relay_rcpt {
    const char *addr;         /* recipient address */
    unsigned notify;          /* NOTIFY bits (RFC 3461), passed on when the peer has DSN */
    const char *orcpt;        /* ORCPT as received, or NULL */
    enum relay_result result; /* out: the outcome */
    char dsn[16];             /* out: enhanced status code ("2.0.0", "4.4.1", "5.1.1") */
    char text[600];           /* out: the remote reply or our reason, one line */
};

struct relay_job {
    spool_id id;             /* queue id, for logs */
    const char *sender;      /* envelope sender ("" for <>) */
    const char *domain;      /* the recipients' domain (lowercase) */
    uint8_t ret;             /* enum smtp_ret */
    const char *envid;       /* ENVID or NULL */
    bool body_8bit;          /* BODY=8BITMIME was given */
    bool smtputf8;           /* SMTPUTF8 was given */
    struct spool_body *body; /* the message (the caller keeps the reference) */
    size_t nrcpt;
    struct relay_rcpt *rcpt;
    char relay_desc[320]; /* out: "host[address]:port" of the last peer, or "none" */
    bool lmtp;            /* out: the route spoke LMTP */
    void (*done)(void *arg, struct relay_job *job);
    void *arg;
};

/* Where mail goes besides DNS's MX (all optional). */
struct relay_routes {
    const struct transport_table *transports; /* transport_file entries (kept by the caller,
                                                 valid until relay_free), or NULL */
    const struct route *relayhost;            /* relayhost (copied), or NULL */
    const struct transport_auth *auth;        /* relayhost credentials (copied), or NULL */
};

/* routes may be NULL: every domain goes to its MX hosts. */
struct relay *relay_new(struct ev_loop *loop, struct dns_resolver *dns, struct tls_client *tls,
                        const struct config *cfg, const struct relay_routes *routes);
/* Ends every job in flight (recipients deferred, done called), closes the
   idle connections, then frees. */
void relay_free(struct relay *r);
void relay_start(struct relay *r, struct relay_job *job);
/* End every job in flight now (shutdown): recipients deferred, done called;
   idle connections get QUIT, and no connection is kept from now on. */
void relay_cancel_all(struct relay *r);
size_t relay_in_flight(const struct relay *r);

#endif
