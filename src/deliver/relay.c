/*
 * relay - the outbound SMTP and LMTP client session; see relay.h.
 *
 * RFCs: 5321 §3.3 and §4 (the client side of the dialogue, §4.5.2
 * transparency, §4.5.3.2 timeouts, §5.1 MX), 2033 (LMTP: LHLO, a reply per
 * recipient after the final dot), 2920 (PIPELINING), 3207 (STARTTLS), 4954
 * (AUTH; PLAIN per 4616, and LOGIN), 1870 (SIZE), 6152 §3 (8BITMIME and the
 * downgrade of 8-bit bodies, with 2045 §6.7 quoted-printable), 6531
 * (SMTPUTF8), 3461 (DSN parameters passed on), 2034 / 3463 (enhanced status
 * codes in replies).
 *
 * One attempt per job: the route (transport table, relayhost, or MX), an
 * idle connection of that destination from the pool when there is one, else
 * a DNS lookup (unless the route is a unix socket) and a connection per
 * address until one takes the transaction.
 * Replies are read one line at a time (bounded by SMTP_REPLY_LINE_MAX) into
 * the pure reply parser; the state machine (enum attempt_state, changed only
 * by set_state) acts on each complete reply, in order, so pipelined replies
 * need nothing special. The body is read from the spool in pieces, converted
 * when needed, and written dot-stuffed as the connection drains. Credentials
 * go out only inside AUTH lines, whose buffers are wiped; they are never
 * logged.
 */
#include "deliver/relay.h"
#include "auth/sasl.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dns/dns.h"
#include "event/event.h"
#include "smtp/client.h"
#include "smtp/smtp.h"
#include "tls/tls.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Replies and reasons are cut to fit the fixed-size outcome texts on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define BODY_PIECE 65536         /* octets read from the spool at once */
#define OUTPUT_HIGH (256 * 1024) /* stop writing the body past this much queued */
#define MAX_INPUT (64 * 1024)    /* reply octets buffered */

enum attempt_state {
    A_BEGIN,    /* created; the route is chosen from the loop */
    A_DNS,      /* waiting for the next hop */
    A_CONNECT,  /* connection under way */
    A_GREETING, /* waiting for 220 */
    A_EHLO,     /* EHLO (LHLO for LMTP) sent */
    A_HELO,     /* HELO sent (EHLO refused) */
    A_STARTTLS, /* STARTTLS sent */
    A_TLS,      /* handshake under way */
    A_AUTH,     /* AUTH sent (auth_step: where in LOGIN) */
    A_RSET,     /* RSET sent on a pooled LMTP connection */
    A_MAIL,     /* MAIL sent (with PIPELINING: and every RCPT, and DATA) */
    A_RCPT,     /* the reply to RCPT number rcpt_i awaited */
    A_DATA,     /* the reply to DATA awaited */
    A_BODY,     /* writing the body after DATA */
    A_BDAT,     /* writing the body in BDAT chunks, reading their replies */
    A_DOT,      /* final dot (or BDAT LAST) sent: the reply (LMTP: for recipient
                   dot_i) awaited */
    A_QUIT,     /* QUIT sent; closing */
};

static const char *const state_names[] = {"begin",    "dns",  "connect", "greeting", "ehlo", "helo",
                                          "starttls", "tls",  "auth",    "rset",     "mail", "rcpt",
                                          "data",     "body", "bdat",    "dot",      "quit"};

#define SMTP_IDLE 5                /* seconds an idle pooled SMTP connection is kept */
#define LMTP_IDLE 60               /* seconds an idle pooled LMTP connection is kept */
#define CONN_USES_MAX 100          /* jobs (transactions) on one connection at most */
#define POOL_MAX 1000              /* idle connections kept in all */
#define PIPELINE_MAX (1024 * 1024) /* octets of MAIL, RCPTs and DATA written at once */
/* Room for one converter call on a BODY_PIECE (client.h). */
#define CONVERT_OUT_MAX (SMTP_8TO7_HEADER_MAX + 200 + 3 * BODY_PIECE + 3 * BODY_PIECE / 72 + 8)

/* What the spooled body holds, for a peer without 8BITMIME (decided once per job). */
enum body_class {
    BODY_UNKNOWN = 0, /* not scanned yet */
    BODY_7BIT,        /* no octet >= 0x80: sent as it is */
    BODY_CONVERT,     /* 8-bit, converted to quoted-printable while sent */
    BODY_CANNOT,      /* 8-bit and not convertible: bounce 5.6.3 */
};

/* A connection kept for the next job of its destination, or closing. */
struct pooled {
    struct pooled *next;
    struct relay *r;
    bool closing;                                           /* QUIT queued: freed at the close */
    char key[TRANSPORT_PATH_MAX + TRANSPORT_HOST_MAX + 32]; /* pool_key_make() */
    struct ev_conn *conn;
    struct smtp_peer_ext ext; /* what its EHLO/LHLO reply advertised */
    struct dns_addr addr;     /* the peer's address (inet) */
    bool tls;                 /* STARTTLS was done on it */
    unsigned uses;            /* jobs it has carried */
    char host[DNS_NAME_MAX + 1];
    char addr_text[TRANSPORT_PATH_MAX + 1];
    char desc[320]; /* relay_desc of its jobs */
};

struct relay {
    struct ev_loop *loop;
    struct dns_resolver *dns;
    struct tls_client *tls;
    const struct config *cfg;
    const struct transport_table *transports; /* per-domain routes, or NULL */
    bool has_relayhost;
    struct route relayhost; /* when has_relayhost */
    bool has_auth;
    struct transport_auth auth; /* relayhost credentials, when has_auth (secret) */
    struct attempt *attempts;   /* in flight */
    size_t in_flight;
    struct attempt *dead; /* finished, freed by the reaper outside their callbacks */
    struct ev_timer *reaper;
    struct pooled *pool; /* idle (most recent first) and closing connections */
    size_t nidle;        /* entries of pool that are idle (not closing) */
    bool stopping;       /* relay_cancel_all was called: keep no connection */
};

struct attempt {
    struct attempt *next, *prev;
    struct relay *r;
    struct relay_job *job;
    const struct route *route; /* NULL: the domain's MX hosts */
    bool smarthost;            /* route is the relayhost: AUTH when credentials are set */
    bool lmtp;                 /* route speaks LMTP */
    uint16_t port;             /* of the hosts to connect to */
    char pool_key[TRANSPORT_PATH_MAX + TRANSPORT_HOST_MAX + 32]; /* the destination */
    struct ev_timer *begin;                                      /* runs attempt_begin */
    struct dns_lookup *lookup;
    struct dns_nexthop *hop; /* the result, copied; NULL for a unix socket */
    size_t host_i, addr_i;   /* the address being tried */
    bool unix_tried;         /* the unix socket was tried */
    struct ev_conn *conn;
    enum attempt_state st;
    struct smtp_reply reply;
    struct smtp_peer_ext ext;
    struct dns_addr addr; /* the peer's address (inet) */
    bool reused;          /* conn came from the pool */
    unsigned uses;        /* jobs carried by conn, this one included */
    bool tls;             /* STARTTLS done on this connection */
    bool esmtp;           /* EHLO accepted */
    bool pipelined;       /* MAIL, RCPTs and DATA went out together */
    bool chunking;        /* this transaction sends BDAT instead of DATA (RFC 3030) */
    size_t bdat_pending;  /* BDAT chunks sent whose reply has not come */
    bool bdat_last;       /* BDAT LAST is sent */
    int auth_step;        /* AUTH LOGIN: 1 user awaited, 2 password awaited, 3 result */
    size_t rcpt_i;        /* RCPT being answered */
    size_t dot_i;         /* LMTP: the recipient whose final reply is awaited */
    size_t accepted;      /* recipients accepted by RCPT */
    bool *sent;           /* per recipient: RCPT sent on this connection */
    bool *ok;             /* per recipient: accepted by RCPT */
    enum body_class bclass;
    uint64_t converted_size; /* BODY_CONVERT: octets the converter produces */
    bool convert;            /* this transaction converts the body */
    struct smtp_8to7 conv;   /* the converter, while convert */
    struct buf conv_out;     /* its output, CONVERT_OUT_MAX at most */
    uint64_t body_off;       /* octets of the body read */
    uint64_t body_size;
    bool line_start;      /* the next octet sent starts a line */
    uint8_t last_octet;   /* last octet sent */
    char last_error[600]; /* why the last address failed */
    char host[DNS_NAME_MAX + 1];
    char addr_text[TRANSPORT_PATH_MAX + 1];
    bool finished; /* done was called: ignore everything until the reaper frees it */
};

static void attempt_next_address(struct attempt *a);
static void attempt_finish(struct attempt *a);
static void attempt_connect_fresh(struct attempt *a);
static void conn_reset(struct attempt *a);

/* How long a state may wait for the peer (RFC 5321 §4.5.3.2), in seconds;
   0 for none (while the body is written after DATA no reply is due; the
   write timeout watches it). */
static uint32_t state_timeout(const struct attempt *a, enum attempt_state st)
{
    const struct config *cfg = a->r->cfg;
    switch (st) {
    case A_MAIL:
        return cfg->outbound_mail_timeout;
    case A_RCPT:
        return cfg->outbound_rcpt_timeout;
    case A_DATA:
        return cfg->outbound_data_init_timeout;
    case A_BODY:
        return 0;
    case A_BDAT:
        return cfg->outbound_data_xfer_timeout;
    case A_DOT:
        return cfg->outbound_data_done_timeout;
    default:
        return cfg->outbound_helo_timeout;
    }
}

/* The one place the state changes (traced at debug level); it also sets how
   long the new state waits for the peer. */
static void set_state(struct attempt *a, enum attempt_state st)
{
    if (a->st != st)
        log_debug("qid=%016" PRIX64 " event=relay_state %s -> %s", a->job->id, state_names[a->st],
                  state_names[st]);
    a->st = st;
    if (a->conn && st >= A_GREETING && st <= A_DOT)
        ev_conn_set_timeout(a->conn, state_timeout(a, st));
}

/* ---- outcomes ------------------------------------------------------------ */

static void rcpt_set(struct relay_rcpt *rc, enum relay_result res, const char *dsn,
                     const char *text)
{
    rc->result = res;
    snprintf(rc->dsn, sizeof rc->dsn, "%s", dsn);
    snprintf(rc->text, sizeof rc->text, "%s", text);
}

/* Every recipient still undecided gets res. */
static void rcpt_set_open(struct attempt *a, enum relay_result res, const char *dsn,
                          const char *text)
{
    for (size_t i = 0; i < a->job->nrcpt; i++) {
        struct relay_rcpt *rc = &a->job->rcpt[i];
        if (rc->result == RELAY_DEFERRED && rc->dsn[0] == '\0')
            rcpt_set(rc, res, dsn, text);
    }
}

/* The outcome a reply gives, and its enhanced code. */
static enum relay_result reply_result(enum smtp_outcome o)
{
    return o == SMTP_OUTCOME_OK       ? RELAY_SENT
           : o == SMTP_OUTCOME_BOUNCE ? RELAY_BOUNCED
                                      : RELAY_DEFERRED;
}

/* "host X[addr] said: 550 5.1.1 text (in reply to STAGE)" into out. */
static void reply_text(struct attempt *a, const char *stage, char *out, size_t outlen)
{
    char desc[SMTP_REPLY_TEXT_MAX + 32];
    smtp_reply_describe(&a->reply, desc, sizeof desc);
    for (char *p = desc; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    snprintf(out, outlen, "host %s[%s] said: %s (in reply to %s)", a->host, a->addr_text, desc,
             stage);
}

/* ---- connection ---------------------------------------------------------- */

static void send_line(struct attempt *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void send_line(struct attempt *a, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        n = (int)sizeof line - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    ev_conn_write(a->conn, line, (size_t)n);
    explicit_bzero(line, sizeof line); /* it may have held credentials */
}

static void conn_close(struct attempt *a)
{
    ev_conn_free(a->conn);
    a->conn = NULL;
}

/* This address failed before the transaction got anywhere: try the next. A
   pooled connection that fails so (RSET refused, closed meanwhile) is no
   failure of the destination: open a new one. */
static void address_failed(struct attempt *a, const char *why)
{
    if (a->reused) {
        log_debug("qid=%016" PRIX64 " event=relay_reuse_failed route=%s reason=\"%s\"", a->job->id,
                  a->pool_key, why);
        conn_close(a);
        a->reused = false;
        attempt_connect_fresh(a);
        return;
    }
    snprintf(a->last_error, sizeof a->last_error, "%s", why);
    log_info("qid=%016" PRIX64 " event=relay_attempt_failed host=%s[%s] reason=\"%s\"", a->job->id,
             a->host, a->addr_text, why);
    conn_close(a);
    a->addr_i++;
    attempt_next_address(a);
}

/* The connection broke or timed out. */
static void conn_lost(struct attempt *a, const char *why)
{
    char text[600];
    snprintf(text, sizeof text, "%s with %s[%s]%s", why, a->host, a->addr_text,
             a->st == A_BODY || a->st == A_BDAT || a->st == A_DOT ? " while sending message content"
                                                                  : "");
    if (a->st <= A_MAIL) {
        address_failed(a, text);
        return;
    }
    /* Recipients accepted or pending: try again later. */
    rcpt_set_open(a, RELAY_DEFERRED, "4.4.2", text);
    conn_close(a);
    attempt_finish(a);
}

static struct pooled *pooled_new(struct attempt *a, bool closing);
static bool pool_put(struct attempt *a);

/* Every recipient is settled: say QUIT (its reply is not awaited; the
   connection closes once it is sent) and report. */
static void quit_finish(struct attempt *a)
{
    set_state(a, A_QUIT);
    if (a->conn && !a->r->stopping) {
        ev_conn_write(a->conn, "QUIT\r\n", 6);
        ev_conn_close_after_flush(pooled_new(a, true)->conn);
    }
    attempt_finish(a);
}

/* Every recipient is settled and no reply is pending: keep the connection
   for the next job of the destination, or QUIT. */
static void finish_clean(struct attempt *a)
{
    if (pool_put(a))
        attempt_finish(a);
    else
        quit_finish(a);
}

static bool addr_is_loopback(const struct attempt *a)
{
    if (!a->hop)
        return true; /* a unix socket */
    if (a->addr.family == AF_INET)
        return a->addr.bytes[0] == 127;
    static const uint8_t v6lo[16] = {[15] = 1};
    return a->addr.family == AF_INET6 && memcmp(a->addr.bytes, v6lo, 16) == 0;
}

/* ---- the connection pool ---------------------------------------------------- */

/*
 * After a transaction that ended cleanly (every reply read, nothing pending),
 * the connection is kept idle under its destination's key (pool_key_make)
 * for the next job there: at most destination_concurrency idle per key and
 * POOL_MAX in all (the oldest idle one makes room), until CONN_USES_MAX jobs
 * have used it, for SMTP_IDLE (LMTP_IDLE) seconds. The next job takes the
 * most recently used one and starts with RSET. An idle connection whose peer
 * speaks or closes is dropped; one idle too long gets QUIT and is closed.
 * Entries that are closing (QUIT queued, close_after_flush under way) stay on
 * the list until their connection reports the close, so relay_free frees
 * every one of them.
 */

static void pooled_free(struct pooled *p)
{
    struct relay *r = p->r;
    for (struct pooled **pp = &r->pool; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (!p->closing)
        r->nidle--;
    ev_conn_free(p->conn);
    free(p);
}

/* Say QUIT and close once it is sent (the close frees the entry). */
static void pooled_quit(struct pooled *p, const char *reason)
{
    if (p->closing)
        return;
    log_debug("event=relay_pool_close route=%s uses=%u reason=%s", p->key, p->uses, reason);
    p->closing = true;
    p->r->nidle--;
    ev_conn_write(p->conn, "QUIT\r\n", 6);
    ev_conn_close_after_flush(p->conn);
}

/* An idle connection must stay silent: a peer that speaks is giving up. */
static void pool_on_read(void *arg)
{
    struct pooled *p = arg;
    if (!p->closing)
        log_debug("event=relay_pool_close route=%s uses=%u reason=peer_spoke", p->key, p->uses);
    pooled_free(p);
}

static void pool_on_close(void *arg)
{
    struct pooled *p = arg;
    if (!p->closing)
        log_debug("event=relay_pool_close route=%s uses=%u reason=peer_closed", p->key, p->uses);
    pooled_free(p);
}

static void pool_on_timeout(void *arg)
{
    struct pooled *p = arg;
    if (p->closing)
        pooled_free(p); /* QUIT did not drain */
    else
        pooled_quit(p, "idle");
}

static const struct ev_conn_ops pool_ops = {pool_on_read, pool_on_close, pool_on_timeout,
                                            NULL,         NULL,          NULL};

/* Move the attempt's connection into a new pool entry (idle, or closing). */
static struct pooled *pooled_new(struct attempt *a, bool closing)
{
    struct relay *r = a->r;
    struct pooled *p = xcalloc(1, sizeof *p);
    p->r = r;
    p->closing = closing;
    snprintf(p->key, sizeof p->key, "%s", a->pool_key);
    p->conn = a->conn;
    p->ext = a->ext;
    p->addr = a->addr;
    p->tls = a->tls;
    p->uses = a->uses;
    snprintf(p->host, sizeof p->host, "%s", a->host);
    snprintf(p->addr_text, sizeof p->addr_text, "%s", a->addr_text);
    snprintf(p->desc, sizeof p->desc, "%s", a->job->relay_desc);
    a->conn = NULL;
    ev_conn_set_owner(p->conn, &pool_ops, p);
    p->next = r->pool;
    r->pool = p;
    if (!closing)
        r->nidle++;
    return p;
}

/* Keep the connection of a cleanly ended transaction for the next job of the
   destination; false when it is not to be kept (the caller says QUIT). */
static bool pool_put(struct attempt *a)
{
    struct relay *r = a->r;
    if (r->stopping || !a->conn || a->uses >= CONN_USES_MAX || ev_conn_input_len(a->conn) > 0 ||
        ev_conn_is_tls(a->conn) != a->tls)
        return false;
    size_t same = 0, cap = r->cfg->destination_concurrency ? r->cfg->destination_concurrency : 1;
    struct pooled *oldest = NULL;
    for (struct pooled *p = r->pool; p; p = p->next) {
        if (p->closing)
            continue;
        if (strcmp(p->key, a->pool_key) == 0)
            same++;
        oldest = p; /* new entries go first: the last idle one is the oldest */
    }
    if (same >= cap)
        return false;
    if (r->nidle >= POOL_MAX && oldest)
        pooled_quit(oldest, "pool_full");
    struct pooled *p = pooled_new(a, false);
    ev_conn_set_timeout(p->conn, a->lmtp ? LMTP_IDLE : SMTP_IDLE);
    log_debug("qid=%016" PRIX64 " event=relay_pool_put route=%s uses=%u idle=%zu", a->job->id,
              p->key, p->uses, r->nidle);
    return true;
}

static const struct ev_conn_ops conn_ops;

/* Take the most recently used idle connection of this destination, if there
   is one: RSET on it. */
static bool pool_take(struct attempt *a)
{
    struct relay *r = a->r;
    for (struct pooled *p = r->pool; p; p = p->next) {
        if (p->closing || strcmp(p->key, a->pool_key) != 0)
            continue;
        conn_reset(a);
        a->conn = p->conn;
        p->conn = NULL;
        a->ext = p->ext;
        a->addr = p->addr;
        a->tls = p->tls;
        a->esmtp = true;
        a->reused = true;
        a->uses = p->uses + 1;
        snprintf(a->host, sizeof a->host, "%s", p->host);
        snprintf(a->addr_text, sizeof a->addr_text, "%s", p->addr_text);
        snprintf(a->job->relay_desc, sizeof a->job->relay_desc, "%s", p->desc);
        pooled_free(p);
        ev_conn_set_owner(a->conn, &conn_ops, a);
        ev_conn_set_write_timeout(a->conn, r->cfg->outbound_data_xfer_timeout);
        log_debug("qid=%016" PRIX64 " event=relay_reuse route=%s host=%s[%s] uses=%u", a->job->id,
                  a->pool_key, a->host, a->addr_text, a->uses);
        send_line(a, "RSET");
        set_state(a, A_RSET);
        return true;
    }
    return false;
}

/* Close every pooled connection now (shutdown), from the loop: a connection
   must not outlive it (libevent frees a TLS one on a later pass). QUIT goes
   out at once on a plain connection; a TLS one gets close_notify. */
static void pool_close_all(struct relay *r)
{
    while (r->pool) {
        struct pooled *p = r->pool;
        if (!p->closing) {
            log_debug("event=relay_pool_close route=%s uses=%u reason=shutdown", p->key, p->uses);
            ev_conn_write(p->conn, "QUIT\r\n", 6);
        }
        pooled_free(p);
    }
}

/* ---- the body ------------------------------------------------------------ */

/*
 * Decide, once per job, what the body is for a peer without 8BITMIME: 7-bit
 * (sent as it is), convertible (its converted size counted by a dry run of
 * the converter), or not convertible. Returns false when the spool cannot be
 * read.
 */
static bool body_classify(struct attempt *a)
{
    static uint8_t in[BODY_PIECE];
    if (a->bclass != BODY_UNKNOWN)
        return true;
    bool eight = false;
    for (uint64_t off = 0; off < a->body_size && !eight;) {
        ssize_t got = spool_body_read(a->job->body, off, in, sizeof in);
        if (got <= 0)
            return false;
        eight = smtp_needs_8bit(in, (size_t)got);
        off += (uint64_t)got;
    }
    if (!eight) {
        a->bclass = BODY_7BIT;
        return true;
    }
    struct smtp_8to7 c;
    struct buf out;
    smtp_8to7_init(&c);
    buf_init(&out, CONVERT_OUT_MAX);
    enum smtp_8to7_result res = SMTP_8TO7_OK;
    for (uint64_t off = 0; off < a->body_size && res == SMTP_8TO7_OK;) {
        ssize_t got = spool_body_read(a->job->body, off, in, sizeof in);
        if (got <= 0) {
            smtp_8to7_free(&c);
            buf_free(&out);
            return false;
        }
        res = smtp_8to7_feed(&c, in, (size_t)got, &out);
        buf_reset(&out);
        off += (uint64_t)got;
    }
    if (res == SMTP_8TO7_OK)
        res = smtp_8to7_finish(&c, &out);
    if (res == SMTP_8TO7_FULL)
        panic("8-bit converter output past CONVERT_OUT_MAX");
    a->bclass = res == SMTP_8TO7_OK ? BODY_CONVERT : BODY_CANNOT;
    a->converted_size = c.out;
    smtp_8to7_free(&c);
    buf_free(&out);
    return true;
}

/* Write p[0..n) dot-stuffed (RFC 5321 §4.5.2: a line that starts with "."
   gets one more). */
static void write_stuffed(struct attempt *a, const uint8_t *p, size_t n)
{
    static uint8_t out[2 * BODY_PIECE];
    while (n > 0) {
        size_t take = n < BODY_PIECE ? n : BODY_PIECE, k = 0;
        for (size_t i = 0; i < take; i++) {
            if (a->line_start && p[i] == '.')
                out[k++] = '.';
            out[k++] = p[i];
            a->line_start = p[i] == '\n';
        }
        a->last_octet = p[take - 1];
        ev_conn_write(a->conn, out, k);
        p += take;
        n -= take;
    }
}

static void body_failed(struct attempt *a, const char *why)
{
    rcpt_set_open(a, RELAY_DEFERRED, "4.3.0", why);
    log_error("qid=%016" PRIX64 " event=relay_body_failed reason=\"%s\"", a->job->id, why);
    conn_close(a);
    attempt_finish(a);
}

static void body_pump(struct attempt *a)
{
    static uint8_t in[BODY_PIECE];
    while (a->st == A_BODY && ev_conn_output_len(a->conn) < OUTPUT_HIGH) {
        if (a->body_off >= a->body_size) {
            if (a->convert) {
                if (smtp_8to7_finish(&a->conv, &a->conv_out) != SMTP_8TO7_OK) {
                    body_failed(a, "the 8-bit body could not be converted");
                    return;
                }
                write_stuffed(a, (const uint8_t *)a->conv_out.data, a->conv_out.len);
                buf_reset(&a->conv_out);
            }
            if (a->last_octet != '\n' && (a->body_size > 0))
                ev_conn_write(a->conn, "\r\n", 2);
            ev_conn_write(a->conn, ".\r\n", 3);
            a->dot_i = 0;
            while (a->dot_i < a->job->nrcpt && !a->ok[a->dot_i])
                a->dot_i++;
            set_state(a, A_DOT);
            return;
        }
        ssize_t got = spool_body_read(a->job->body, a->body_off, in, sizeof in);
        if (got <= 0) {
            body_failed(a, "cannot read the message from the queue");
            return;
        }
        a->body_off += (uint64_t)got;
        if (!a->convert) {
            write_stuffed(a, in, (size_t)got);
            continue;
        }
        /* Decided convertible before MAIL, so anything else is a broken invariant
           (or the spool changed under us). */
        if (smtp_8to7_feed(&a->conv, in, (size_t)got, &a->conv_out) != SMTP_8TO7_OK) {
            body_failed(a, "the 8-bit body could not be converted");
            return;
        }
        if (a->conv_out.len)
            write_stuffed(a, (const uint8_t *)a->conv_out.data, a->conv_out.len);
        buf_reset(&a->conv_out);
    }
}

static void body_start(struct attempt *a)
{
    set_state(a, A_BODY);
    a->body_off = 0;
    a->line_start = true;
    a->last_octet = '\n';
    if (a->convert) {
        smtp_8to7_free(&a->conv);
        smtp_8to7_init(&a->conv);
        buf_free(&a->conv_out);
        buf_init(&a->conv_out, CONVERT_OUT_MAX);
    }
    body_pump(a);
}

/*
 * BDAT (RFC 3030): the body goes out as it is (no dot-stuffing), in chunks
 * of what one spool read (or the converter) gives, each announced with its
 * size; the last one says LAST. Every chunk has a reply, in order. With
 * PIPELINING chunks go out while earlier replies are awaited (as far as
 * OUTPUT_HIGH lets them); without it each waits for the reply to the one
 * before. The reply to BDAT LAST is the transaction's, as the reply to the
 * final dot is.
 */
static void bdat_pump(struct attempt *a)
{
    static uint8_t in[BODY_PIECE];
    while (a->st == A_BDAT && !a->bdat_last && ev_conn_output_len(a->conn) < OUTPUT_HIGH &&
           (a->pipelined || a->bdat_pending == 0)) {
        const uint8_t *data = in;
        size_t n = 0;
        if (a->body_off < a->body_size) {
            ssize_t got = spool_body_read(a->job->body, a->body_off, in, sizeof in);
            if (got <= 0) {
                body_failed(a, "cannot read the message from the queue");
                return;
            }
            a->body_off += (uint64_t)got;
            n = (size_t)got;
        }
        bool last = a->body_off >= a->body_size;
        if (a->convert) {
            buf_reset(&a->conv_out);
            if ((n > 0 && smtp_8to7_feed(&a->conv, in, n, &a->conv_out) != SMTP_8TO7_OK) ||
                (last && smtp_8to7_finish(&a->conv, &a->conv_out) != SMTP_8TO7_OK)) {
                body_failed(a, "the 8-bit body could not be converted");
                return;
            }
            data = (const uint8_t *)a->conv_out.data;
            n = a->conv_out.len;
        }
        if (n == 0 && !last)
            continue;
        char head[64];
        int hl = snprintf(head, sizeof head, "BDAT %zu%s\r\n", n, last ? " LAST" : "");
        ev_conn_write(a->conn, head, (size_t)hl);
        if (n > 0)
            ev_conn_write(a->conn, data, n);
        a->bdat_pending++;
        if (last) {
            a->bdat_last = true;
            ev_conn_set_timeout(a->conn, a->r->cfg->outbound_data_done_timeout);
        }
    }
}

static void bdat_start(struct attempt *a)
{
    set_state(a, A_BDAT);
    a->body_off = 0;
    a->bdat_pending = 0;
    a->bdat_last = false;
    if (a->convert) {
        smtp_8to7_free(&a->conv);
        smtp_8to7_init(&a->conv);
        buf_free(&a->conv_out);
        buf_init(&a->conv_out, CONVERT_OUT_MAX);
    }
    bdat_pump(a);
}

/* ---- the transaction -------------------------------------------------------- */

/* The next recipient at or after i whose RCPT is (or is to be) sent. */
static size_t next_rcpt(struct attempt *a, size_t i)
{
    while (i < a->job->nrcpt && (a->pipelined ? !a->sent[i] : a->job->rcpt[i].dsn[0] != '\0'))
        i++;
    return i;
}

/* Format the RCPT of recipient i into b; false (and the recipient bounced)
   when it cannot be formatted. */
static bool rcpt_append(struct attempt *a, size_t i, struct buf *b)
{
    char line[1024];
    struct relay_rcpt *rc = &a->job->rcpt[i];
    long n = smtp_format_rcpt(line, sizeof line, rc->addr, rc->notify, rc->orcpt, &a->ext);
    if (n < 0 || buf_append(b, line, (size_t)n) < 0) {
        rcpt_set(rc, RELAY_BOUNCED, "5.1.3", "cannot format the RCPT command");
        return false;
    }
    a->sent[i] = true;
    return true;
}

/* Without PIPELINING: the RCPT of the next recipient at or after i, or DATA
   (or QUIT when none was accepted). */
static void send_next_rcpt(struct attempt *a, size_t i)
{
    for (i = next_rcpt(a, i); i < a->job->nrcpt; i = next_rcpt(a, i + 1)) {
        struct buf b;
        buf_init(&b, 1024);
        bool ok = rcpt_append(a, i, &b);
        if (ok)
            ev_conn_write(a->conn, b.data, b.len);
        buf_free(&b);
        if (ok) {
            a->rcpt_i = i;
            set_state(a, A_RCPT);
            return;
        }
    }
    if (a->accepted == 0) {
        finish_clean(a);
        return;
    }
    if (a->chunking) {
        bdat_start(a);
        return;
    }
    send_line(a, "DATA");
    set_state(a, A_DATA);
}

/* With PIPELINING and BDAT: every RCPT has its reply; send the body, or end
   cleanly when no recipient was accepted (no DATA went out to answer). */
static void after_pipelined_rcpts(struct attempt *a)
{
    if (a->accepted == 0)
        finish_clean(a);
    else
        bdat_start(a);
}

/* MAIL (mail_len octets), every RCPT and DATA fit in PIPELINE_MAX. */
static bool envelope_fits(struct attempt *a, size_t mail_len)
{
    size_t total = mail_len + sizeof "DATA\r\n" - 1;
    char line[1024];
    for (size_t i = 0; i < a->job->nrcpt && total <= PIPELINE_MAX; i++) {
        const struct relay_rcpt *rc = &a->job->rcpt[i];
        if (rc->dsn[0] != '\0')
            continue;
        long n = smtp_format_rcpt(line, sizeof line, rc->addr, rc->notify, rc->orcpt, &a->ext);
        if (n > 0)
            total += (size_t)n; /* at most 1024 a line: cannot wrap */
    }
    return total <= PIPELINE_MAX;
}

/* MAIL; with PIPELINING also every RCPT and DATA, in one write (RFC 2920 §3.1),
   unless they pass PIPELINE_MAX: then one command at a time. */
static void send_envelope(struct attempt *a)
{
    char line[1024];
    struct relay_job *j = a->job;
    bool declare = j->body_8bit && a->ext.eightbitmime;
    uint64_t size = a->convert ? a->converted_size : a->body_size;
    long n = smtp_format_mail(line, sizeof line, j->sender, &a->ext, size, declare, j->smtputf8,
                              (enum smtp_ret)j->ret, j->envid);
    if (n < 0) {
        rcpt_set_open(a, RELAY_BOUNCED, "5.3.0", "cannot format the MAIL command");
        finish_clean(a);
        return;
    }
    a->pipelined = a->ext.pipelining && envelope_fits(a, (size_t)n);
    a->chunking = a->ext.chunking && !a->lmtp && a->r->cfg->outbound_chunking;
    if (!a->pipelined) {
        ev_conn_write(a->conn, line, (size_t)n);
        set_state(a, A_MAIL);
        return;
    }
    struct buf b;
    buf_init(&b, PIPELINE_MAX);
    buf_append(&b, line, (size_t)n);
    for (size_t i = 0; i < j->nrcpt; i++)
        if (j->rcpt[i].dsn[0] == '\0')
            rcpt_append(a, i, &b);
    if (!a->chunking && buf_puts(&b, "DATA\r\n") < 0)
        panic("pipelined envelope past PIPELINE_MAX");
    ev_conn_write(a->conn, b.data, b.len);
    buf_free(&b);
    set_state(a, A_MAIL);
}

/* After EHLO/HELO (TLS, AUTH): check what the peer can take, then MAIL. */
static void start_transaction(struct attempt *a)
{
    struct relay_job *j = a->job;
    char text[700];
    if (j->smtputf8 && !a->ext.smtputf8) {
        snprintf(text, sizeof text,
                 "host %s[%s] does not support SMTPUTF8, which this message needs", a->host,
                 a->addr_text);
        rcpt_set_open(a, RELAY_BOUNCED, "5.6.7", text);
        finish_clean(a);
        return;
    }
    a->convert = false;
    if (!a->ext.eightbitmime) {
        if (!body_classify(a)) {
            rcpt_set_open(a, RELAY_DEFERRED, "4.3.0", "cannot read the message from the queue");
            log_error("qid=%016" PRIX64 " event=relay_body_failed reason=\"spool read\"",
                      a->job->id);
            finish_clean(a);
            return;
        }
        if (a->bclass == BODY_CANNOT) {
            snprintf(text, sizeof text,
                     "host %s[%s] does not support 8BITMIME, and this 8-bit message cannot be "
                     "converted to 7 bit",
                     a->host, a->addr_text);
            rcpt_set_open(a, RELAY_BOUNCED, "5.6.3", text);
            finish_clean(a);
            return;
        }
        a->convert = a->bclass == BODY_CONVERT;
        if (a->convert)
            log_info("qid=%016" PRIX64 " event=relay_8bit_convert host=%s[%s] size=%" PRIu64
                     " converted=%" PRIu64,
                     a->job->id, a->host, a->addr_text, a->body_size, a->converted_size);
    }
    uint64_t size = a->convert ? a->converted_size : a->body_size;
    if (a->ext.size && a->ext.size_max && size > a->ext.size_max) {
        snprintf(text, sizeof text,
                 "message size %" PRIu64 " exceeds the limit %" PRIu64 " of host %s[%s]", size,
                 a->ext.size_max, a->host, a->addr_text);
        rcpt_set_open(a, RELAY_BOUNCED, "5.3.4", text);
        finish_clean(a);
        return;
    }
    send_envelope(a);
}

/* AUTH PLAIN with the initial response, or AUTH LOGIN (RFC 4954). */
static void send_auth(struct attempt *a)
{
    const struct transport_auth *cr = &a->r->auth;
    char b64[700];
    if (a->ext.auth & SMTP_AUTH_MECH_PLAIN) {
        uint8_t raw[TRANSPORT_USER_MAX + TRANSPORT_PASS_MAX + 3];
        size_t ul = strlen(cr->user), pl = strlen(cr->pass), n = 0;
        raw[n++] = '\0';
        memcpy(raw + n, cr->user, ul);
        n += ul;
        raw[n++] = '\0';
        memcpy(raw + n, cr->pass, pl);
        n += pl;
        sasl_b64_encode(raw, n, b64, sizeof b64);
        send_line(a, "AUTH PLAIN %s", b64);
        explicit_bzero(raw, sizeof raw);
        explicit_bzero(b64, sizeof b64);
        a->auth_step = 3;
    } else {
        send_line(a, "AUTH LOGIN");
        a->auth_step = 1;
    }
    set_state(a, A_AUTH);
}

/* EHLO (and STARTTLS) done: AUTH to the relayhost, then the transaction. */
static void after_hello(struct attempt *a)
{
    if (!a->smarthost || !a->r->has_auth) {
        start_transaction(a);
        return;
    }
    if (!a->tls && !addr_is_loopback(a)) {
        char text[600];
        snprintf(text, sizeof text,
                 "host %s[%s] offers no TLS, and the relayhost credentials are sent only over "
                 "TLS",
                 a->host, a->addr_text);
        address_failed(a, text);
        return;
    }
    if (!(a->ext.auth & (SMTP_AUTH_MECH_PLAIN | SMTP_AUTH_MECH_LOGIN))) {
        log_warn("qid=%016" PRIX64 " event=relay_auth_unavailable host=%s[%s] "
                 "reason=\"no AUTH PLAIN or LOGIN offered; sending without AUTH\"",
                 a->job->id, a->host, a->addr_text);
        start_transaction(a);
        return;
    }
    send_auth(a);
}

/* ---- replies --------------------------------------------------------------- */

static void on_auth_reply(struct attempt *a, enum smtp_outcome o)
{
    const struct transport_auth *cr = &a->r->auth;
    char text[900], dsn[SMTP_ENH_MAX], b64[700];
    const char *mech = a->ext.auth & SMTP_AUTH_MECH_PLAIN ? "PLAIN" : "LOGIN";
    if (a->reply.code == 334 && (a->auth_step == 1 || a->auth_step == 2)) {
        const char *v = a->auth_step == 1 ? cr->user : cr->pass;
        sasl_b64_encode((const uint8_t *)v, strlen(v), b64, sizeof b64);
        send_line(a, "%s", b64);
        explicit_bzero(b64, sizeof b64);
        a->auth_step++;
        return;
    }
    if (o == SMTP_OUTCOME_OK) {
        log_info("qid=%016" PRIX64 " event=relay_auth host=%s[%s] user=%s mech=%s result=ok",
                 a->job->id, a->host, a->addr_text, cr->user, mech);
        start_transaction(a);
        return;
    }
    /* Refused (535 and the like): a configuration problem on one side or the
       other, never the message's fault, so every recipient waits (4.x.x). */
    reply_text(a, "AUTH", text, sizeof text);
    smtp_reply_status(&a->reply, dsn);
    dsn[0] = '4';
    log_warn("qid=%016" PRIX64 " event=relay_auth host=%s[%s] user=%s mech=%s result=failed "
             "reply=%d",
             a->job->id, a->host, a->addr_text, cr->user, mech, a->reply.code);
    rcpt_set_open(a, RELAY_DEFERRED, dsn, text);
    if (a->reply.code == 334)
        send_line(a, "*"); /* cancel the exchange (RFC 4954 §4) */
    quit_finish(a);
}

/* One final reply after the dot: for the whole transaction (SMTP) or for
   recipient dot_i (LMTP, RFC 2033 §4.2). */
static void on_dot_reply(struct attempt *a, enum smtp_outcome o, const char *dsn)
{
    char text[900];
    reply_text(a, a->chunking ? "BDAT LAST" : "end of DATA", text, sizeof text);
    enum relay_result res = reply_result(o);
    const char *code = dsn[0] ? dsn : "2.0.0";
    if (!a->lmtp) {
        for (size_t i = 0; i < a->job->nrcpt; i++)
            if (a->ok[i])
                rcpt_set(&a->job->rcpt[i], res, code, text);
        finish_clean(a);
        return;
    }
    rcpt_set(&a->job->rcpt[a->dot_i], res, code, text);
    a->dot_i++;
    while (a->dot_i < a->job->nrcpt && !a->ok[a->dot_i])
        a->dot_i++;
    if (a->dot_i < a->job->nrcpt)
        return; /* the next recipient's reply */
    finish_clean(a);
}

/* The TLS policy of this attempt: the route's tls= when it has one, else
   outbound_tls. */
static enum config_outbound_tls tls_policy(const struct attempt *a)
{
    if (a->route) {
        switch (a->route->tls) {
        case ROUTE_TLS_NONE:
            return CONFIG_OTLS_NONE;
        case ROUTE_TLS_MAY:
            return CONFIG_OTLS_MAY;
        case ROUTE_TLS_ENCRYPT:
            return CONFIG_OTLS_ENCRYPT;
        case ROUTE_TLS_VERIFY:
            return CONFIG_OTLS_VERIFY;
        case ROUTE_TLS_DEFAULT:
            break;
        }
    }
    return (enum config_outbound_tls)a->r->cfg->outbound_tls;
}

static void on_reply(struct attempt *a)
{
    struct smtp_reply *rep = &a->reply;
    enum smtp_outcome o = smtp_reply_outcome(rep->code);
    char text[900], dsn[SMTP_ENH_MAX];
    smtp_reply_status(rep, dsn);
    switch (a->st) {
    case A_GREETING:
        if (o != SMTP_OUTCOME_OK) {
            reply_text(a, "the initial greeting", text, sizeof text);
            address_failed(a, text);
            return;
        }
        send_line(a, "%s %s", a->lmtp ? "LHLO" : "EHLO", a->r->cfg->hostname);
        set_state(a, A_EHLO);
        return;
    case A_EHLO:
        if (o == SMTP_OUTCOME_OK) {
            a->esmtp = true;
            smtp_ehlo_parse(rep, &a->ext);
            enum config_outbound_tls pol = tls_policy(a);
            if (!a->lmtp && !a->tls && pol != CONFIG_OTLS_NONE) {
                if (a->ext.starttls && a->r->tls) {
                    send_line(a, "STARTTLS");
                    set_state(a, A_STARTTLS);
                    return;
                }
                if (pol != CONFIG_OTLS_MAY) {
                    snprintf(text, sizeof text,
                             "TLS is required for %s, but host %s[%s] does not offer STARTTLS",
                             a->job->domain, a->host, a->addr_text);
                    address_failed(a, text);
                    return;
                }
            }
            after_hello(a);
            return;
        }
        if (a->tls || a->lmtp) { /* nothing to fall back to */
            reply_text(a, a->lmtp ? "LHLO" : "EHLO", text, sizeof text);
            address_failed(a, text);
            return;
        }
        send_line(a, "HELO %s", a->r->cfg->hostname);
        set_state(a, A_HELO);
        return;
    case A_HELO:
        if (o != SMTP_OUTCOME_OK) {
            reply_text(a, "HELO", text, sizeof text);
            address_failed(a, text);
            return;
        }
        memset(&a->ext, 0, sizeof a->ext);
        if (tls_policy(a) == CONFIG_OTLS_ENCRYPT || tls_policy(a) == CONFIG_OTLS_VERIFY) {
            snprintf(text, sizeof text, "TLS is required for %s, but host %s[%s] refused EHLO",
                     a->job->domain, a->host, a->addr_text);
            address_failed(a, text);
            return;
        }
        after_hello(a);
        return;
    case A_STARTTLS:
        if (rep->code != 220) {
            if (tls_policy(a) != CONFIG_OTLS_MAY) {
                reply_text(a, "STARTTLS", text, sizeof text);
                address_failed(a, text);
                return;
            }
            /* Opportunistic: go on in plaintext. */
            after_hello(a);
            return;
        }
        {
            bool verify = tls_policy(a) == CONFIG_OTLS_VERIFY;
            size_t stray =
                ev_conn_start_tls(a->conn, tls_client_ssl_new(a->r->tls, a->host, verify));
            if (stray)
                log_warn("qid=%016" PRIX64 " event=starttls_discard host=%s[%s] octets=%zu",
                         a->job->id, a->host, a->addr_text, stray);
        }
        set_state(a, A_TLS);
        return;
    case A_AUTH:
        on_auth_reply(a, o);
        return;
    case A_RSET:
        if (rep->code != 250) {
            reply_text(a, "RSET", text, sizeof text);
            address_failed(a, text);
            return;
        }
        start_transaction(a);
        return;
    case A_MAIL:
        if (o == SMTP_OUTCOME_OK) {
            if (a->pipelined) {
                a->rcpt_i = next_rcpt(a, 0);
                if (a->rcpt_i < a->job->nrcpt)
                    set_state(a, A_RCPT);
                else if (a->chunking)
                    after_pipelined_rcpts(a);
                else
                    set_state(a, A_DATA);
            } else {
                send_next_rcpt(a, 0);
            }
            return;
        }
        reply_text(a, "MAIL FROM", text, sizeof text);
        if (o == SMTP_OUTCOME_BOUNCE) {
            rcpt_set_open(a, RELAY_BOUNCED, dsn, text);
            if (a->pipelined)
                quit_finish(a); /* the replies to RCPT and DATA are still to come */
            else
                finish_clean(a);
            return;
        }
        address_failed(a, text);
        return;
    case A_RCPT: {
        struct relay_rcpt *rc = &a->job->rcpt[a->rcpt_i];
        if (o == SMTP_OUTCOME_OK) {
            a->ok[a->rcpt_i] = true;
            a->accepted++;
        } else {
            reply_text(a, "RCPT TO", text, sizeof text);
            rcpt_set(rc, reply_result(o), dsn, text);
        }
        if (!a->pipelined) {
            send_next_rcpt(a, a->rcpt_i + 1);
            return;
        }
        a->rcpt_i = next_rcpt(a, a->rcpt_i + 1);
        if (a->rcpt_i >= a->job->nrcpt) {
            if (a->chunking)
                after_pipelined_rcpts(a);
            else
                set_state(a, A_DATA); /* DATA is on its way already */
        }
        return;
    }
    case A_DATA:
        if (rep->code == 354) {
            if (a->accepted == 0) {
                /* RFC 2920 §3.1: no recipient, yet 354: send an empty message. */
                ev_conn_write(a->conn, ".\r\n", 3);
                quit_finish(a);
                return;
            }
            body_start(a);
            return;
        }
        reply_text(a, "DATA", text, sizeof text);
        rcpt_set_open(a, o == SMTP_OUTCOME_BOUNCE ? RELAY_BOUNCED : RELAY_DEFERRED, dsn, text);
        finish_clean(a);
        return;
    case A_BDAT:
        a->bdat_pending--;
        if (a->bdat_last && a->bdat_pending == 0) {
            on_dot_reply(a, o, dsn);
            return;
        }
        if (o != SMTP_OUTCOME_OK) {
            /* A chunk was refused: the transaction is over (RFC 3030 §2);
               the replies to chunks still in flight do not matter. */
            reply_text(a, "BDAT", text, sizeof text);
            for (size_t i = 0; i < a->job->nrcpt; i++)
                if (a->ok[i])
                    rcpt_set(&a->job->rcpt[i], reply_result(o), dsn, text);
            quit_finish(a);
            return;
        }
        bdat_pump(a);
        return;
    case A_DOT:
        on_dot_reply(a, o, dsn);
        return;
    default:
        return;
    }
}

/* ---- connection events ------------------------------------------------------ */

static void on_read(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    char line[SMTP_REPLY_LINE_MAX + 2];
    while (!a->finished && a->conn && a->st != A_QUIT && a->st != A_BODY && a->st != A_TLS) {
        long i = ev_conn_input_find(a->conn, '\n', sizeof line);
        if (i < 0) {
            if (ev_conn_input_len(a->conn) >= sizeof line)
                conn_lost(a, "reply line too long");
            return;
        }
        size_t n = (size_t)i + 1;
        ev_conn_input_peek(a->conn, line, n);
        ev_conn_input_drain(a->conn, n);
        n--;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        enum smtp_reply_step step = smtp_reply_feed(&a->reply, line, n);
        if (step == SMTP_REPLY_MALFORMED) {
            conn_lost(a, "malformed reply");
            return;
        }
        if (step == SMTP_REPLY_DONE) {
            on_reply(a);
            smtp_reply_init(&a->reply); /* replies may follow back to back (PIPELINING) */
        }
    }
    if (!a->finished && a->conn && a->st == A_BODY && ev_conn_input_len(a->conn) > 0) {
        /* The server spoke while we sent the body: it is giving up. */
        conn_lost(a, "unexpected reply during message content");
    }
}

static void on_close(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    if (a->st == A_QUIT) {
        conn_close(a);
        return;
    }
    if (a->st == A_CONNECT) {
        address_failed(a, "connection refused or unreachable");
        return;
    }
    if (a->st == A_TLS) {
        char why[256], text[400];
        ev_conn_tls_error(a->conn, why, sizeof why);
        snprintf(text, sizeof text, "TLS handshake failed: %s", why);
        metrics_inc(M_TLS_HANDSHAKES, METRICS_OUTBOUND, METRICS_FAILED);
        address_failed(a, text);
        return;
    }
    conn_lost(a, "lost connection");
}

static void on_timeout(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    if (a->st == A_QUIT) {
        conn_close(a);
        return;
    }
    conn_lost(a, "timeout");
}

static void on_connect(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    set_state(a, A_GREETING);
    smtp_reply_init(&a->reply);
}

static void on_tls_ready(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    a->tls = true;
    metrics_inc(M_TLS_HANDSHAKES, METRICS_OUTBOUND, METRICS_OK);
    struct ev_tls_info info;
    if (ev_conn_tls_info(a->conn, &info))
        log_info("qid=%016" PRIX64 " event=relay_tls host=%s[%s] version=%s cipher=%s", a->job->id,
                 a->host, a->addr_text, info.version, info.cipher);
    /* RFC 3207 §4.2: start again with EHLO. */
    memset(&a->ext, 0, sizeof a->ext);
    smtp_reply_init(&a->reply);
    send_line(a, "EHLO %s", a->r->cfg->hostname);
    set_state(a, A_EHLO);
}

static void on_drain(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    if (a->st == A_BODY)
        body_pump(a);
    else if (a->st == A_BDAT)
        bdat_pump(a);
}

static const struct ev_conn_ops conn_ops = {on_read,      on_close,   on_timeout,
                                            on_tls_ready, on_connect, on_drain};

/* ---- the attempt ------------------------------------------------------------- */

/* Forget everything about the previous connection. */
static void conn_reset(struct attempt *a)
{
    a->tls = false;
    a->esmtp = false;
    a->reused = false;
    a->uses = 1;
    a->pipelined = false;
    a->chunking = false;
    a->bdat_pending = 0;
    a->bdat_last = false;
    a->accepted = 0;
    a->auth_step = 0;
    a->convert = false;
    memset(&a->ext, 0, sizeof a->ext);
    for (size_t i = 0; i < a->job->nrcpt; i++)
        a->ok[i] = a->sent[i] = false;
    smtp_reply_init(&a->reply);
}

/* Connect to the next address of the next host (or the unix socket), or give up. */
static void attempt_next_address(struct attempt *a)
{
    struct relay *r = a->r;
    uint32_t timeout = r->cfg->outbound_connect_timeout;
    if (!a->hop) {
        if (a->unix_tried) {
            rcpt_set_open(a, RELAY_DEFERRED, "4.4.1",
                          a->last_error[0] ? a->last_error : "no connection");
            attempt_finish(a);
            return;
        }
        a->unix_tried = true;
        snprintf(a->host, sizeof a->host, "localhost");
        snprintf(a->addr_text, sizeof a->addr_text, "%s", a->route->path);
        snprintf(a->job->relay_desc, sizeof a->job->relay_desc, "localhost[%s]", a->route->path);
        conn_reset(a);
        set_state(a, A_CONNECT);
        a->conn = ev_conn_connect_unix(r->loop, a->route->path, &conn_ops, a, MAX_INPUT, timeout);
        ev_conn_set_write_timeout(a->conn, r->cfg->outbound_data_xfer_timeout);
        return;
    }
    struct dns_nexthop *h = a->hop;
    while (a->host_i < h->nhosts && a->addr_i >= h->hosts[a->host_i].naddrs) {
        a->host_i++;
        a->addr_i = 0;
    }
    if (a->host_i >= h->nhosts) {
        rcpt_set_open(a, RELAY_DEFERRED, "4.4.1",
                      a->last_error[0] ? a->last_error : "no host accepted the connection");
        attempt_finish(a);
        return;
    }
    const struct dns_host *host = &h->hosts[a->host_i];
    a->addr = host->addrs[a->addr_i];
    snprintf(a->host, sizeof a->host, "%s", host->name);
    dns_addr_format(&a->addr, a->addr_text, sizeof a->addr_text);
    snprintf(a->job->relay_desc, sizeof a->job->relay_desc, "%s[%s]:%u", a->host, a->addr_text,
             a->port);
    struct sockaddr_storage ss;
    socklen_t sl = dns_addr_sockaddr(&a->addr, a->port, &ss);
    if (sl == 0) {
        a->addr_i++;
        attempt_next_address(a);
        return;
    }
    conn_reset(a);
    set_state(a, A_CONNECT);
    a->conn = ev_conn_connect(r->loop, (const struct sockaddr *)&ss, sl, &conn_ops, a, MAX_INPUT,
                              timeout);
    ev_conn_set_write_timeout(a->conn, r->cfg->outbound_data_xfer_timeout);
}

static void on_nexthop(void *arg, const struct dns_nexthop *res)
{
    struct attempt *a = arg;
    a->lookup = NULL;
    if (res->status != DNS_OK) {
        char text[400];
        snprintf(text, sizeof text, "%s", res->reason);
        /* The recipient's own domain decides; a configured host that does not
           resolve is our problem, never the sender's: wait. */
        bool temporary = dns_status_temporary(res->status) || a->route;
        rcpt_set_open(a, temporary ? RELAY_DEFERRED : RELAY_BOUNCED,
                      temporary ? "4.4.3" : dns_status_dsn(res->status), text);
        if (!dns_status_temporary(res->status) && a->route)
            log_warn("qid=%016" PRIX64 " event=relay_route_unresolved host=%s reason=\"%s\"",
                     a->job->id, a->route->host, res->reason);
        attempt_finish(a);
        return;
    }
    a->hop = xmalloc(sizeof *a->hop);
    memcpy(a->hop, res, sizeof *a->hop);
    a->host_i = a->addr_i = 0;
    attempt_next_address(a);
}

/* Look up (or, for a unix socket, connect to) the route's hosts. */
static void attempt_connect_fresh(struct attempt *a)
{
    struct relay *r = a->r;
    const struct route *rt = a->route;
    if (rt && rt->kind == ROUTE_LMTP && rt->unix_socket) {
        attempt_next_address(a);
        return;
    }
    set_state(a, A_DNS);
    if (!rt)
        a->lookup = dns_resolve_nexthop(r->dns, a->job->domain, on_nexthop, a);
    else if (rt->mx)
        a->lookup = dns_resolve_nexthop(r->dns, rt->host, on_nexthop, a);
    else
        a->lookup = dns_resolve_host(r->dns, rt->host, on_nexthop, a);
}

/* The pool key of the attempt's destination: its route ("smtp:[host]:port",
   "lmtp:unix:/path"), "relayhost:" and the relayhost's, or "mx:" and the
   domain when it goes to the domain's MX hosts. */
static void pool_key_make(const struct attempt *a, char *out, size_t outlen)
{
    char route[TRANSPORT_PATH_MAX + TRANSPORT_HOST_MAX + 16];
    if (!a->route) {
        snprintf(out, outlen, "mx:%s", a->job->domain);
        return;
    }
    transport_route_format(a->route, route, sizeof route);
    snprintf(out, outlen, "%s%s", a->smarthost ? "relayhost:" : "", route);
}

/* Choose the route and go (from the loop, never inside relay_start). */
static void attempt_begin(void *arg)
{
    struct attempt *a = arg;
    struct relay *r = a->r;
    const struct route *rt = transport_lookup(r->transports, a->job->domain);
    if (!rt && r->has_relayhost) {
        rt = &r->relayhost;
        a->smarthost = true;
    }
    a->route = rt;
    a->port = (uint16_t)r->cfg->outbound_port;
    if (rt && rt->port)
        a->port = rt->port;
    if (rt && rt->kind == ROUTE_MAILDIR)
        panic("relay job for %s on a maildir route (the scheduler delivers those)", a->job->domain);
    a->lmtp = rt && rt->kind == ROUTE_LMTP;
    a->job->lmtp = a->lmtp;
    pool_key_make(a, a->pool_key, sizeof a->pool_key);
    if (pool_take(a))
        return;
    attempt_connect_fresh(a);
}

static void attempt_free(struct attempt *a)
{
    if (a->lookup)
        dns_cancel(a->lookup);
    ev_conn_free(a->conn);
    ev_timer_free(a->begin);
    smtp_8to7_free(&a->conv);
    buf_free(&a->conv_out);
    free(a->hop);
    free(a->ok);
    free(a->sent);
    free(a);
}

static void on_reap(void *arg)
{
    struct relay *r = arg;
    while (r->dead) {
        struct attempt *a = r->dead;
        r->dead = a->next;
        attempt_free(a);
    }
}

/* The job is decided: unlink it, close the connection (QUIT, when sent, is
   already on its way), report, and leave the memory to the reaper, since a
   callback of this attempt may still be on the stack. */
static void attempt_finish(struct attempt *a)
{
    struct relay *r = a->r;
    if (a->prev)
        a->prev->next = a->next;
    else
        r->attempts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    r->in_flight--;
    a->finished = true;
    /* Anything still open was not reached: try later. */
    rcpt_set_open(a, RELAY_DEFERRED, "4.4.1", a->last_error[0] ? a->last_error : "not attempted");
    if (a->lookup) {
        dns_cancel(a->lookup);
        a->lookup = NULL;
    }
    ev_timer_stop(a->begin);
    ev_conn_free(a->conn);
    a->conn = NULL;
    a->next = r->dead;
    a->prev = NULL;
    r->dead = a;
    ev_timer_start(r->reaper, 0);
    a->job->done(a->job->arg, a->job);
}

void relay_start(struct relay *r, struct relay_job *job)
{
    struct attempt *a = xcalloc(1, sizeof *a);
    a->r = r;
    a->job = job;
    a->ok = xcalloc(job->nrcpt ? job->nrcpt : 1, sizeof *a->ok);
    a->sent = xcalloc(job->nrcpt ? job->nrcpt : 1, sizeof *a->sent);
    a->body_size = spool_body_size(job->body);
    smtp_8to7_init(&a->conv);
    buf_init(&a->conv_out, CONVERT_OUT_MAX);
    snprintf(job->relay_desc, sizeof job->relay_desc, "none");
    for (size_t i = 0; i < job->nrcpt; i++) {
        job->rcpt[i].result = RELAY_DEFERRED;
        job->rcpt[i].dsn[0] = '\0';
        job->rcpt[i].text[0] = '\0';
    }
    a->next = r->attempts;
    if (r->attempts)
        r->attempts->prev = a;
    r->attempts = a;
    r->in_flight++;
    a->st = A_BEGIN;
    a->begin = ev_timer_new(r->loop, attempt_begin, a);
    ev_timer_start(a->begin, 0);
}

struct relay *relay_new(struct ev_loop *loop, struct dns_resolver *dns, struct tls_client *tls,
                        const struct config *cfg, const struct relay_routes *routes)
{
    struct relay *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->dns = dns;
    r->tls = tls;
    r->cfg = cfg;
    if (routes) {
        r->transports = routes->transports;
        if (routes->relayhost) {
            r->relayhost = *routes->relayhost;
            r->has_relayhost = true;
        }
        if (routes->auth) {
            r->auth = *routes->auth;
            r->has_auth = true;
        }
    }
    r->reaper = ev_timer_new(loop, on_reap, r);
    return r;
}

size_t relay_in_flight(const struct relay *r)
{
    return r->in_flight;
}

void relay_cancel_all(struct relay *r)
{
    r->stopping = true;
    pool_close_all(r);
    while (r->attempts) {
        struct attempt *a = r->attempts;
        rcpt_set_open(a, RELAY_DEFERRED, "4.3.2", "delivery interrupted by shutdown");
        attempt_finish(a);
    }
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    relay_cancel_all(r); /* also closes the pooled connections */
    on_reap(r);
    ev_timer_free(r->reaper);
    explicit_bzero(&r->auth, sizeof r->auth);
    free(r);
}
