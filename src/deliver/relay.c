/*
 * relay - the outbound SMTP client session; see relay.h.
 *
 * RFCs: 5321 §3.3 and §4 (the client side of the dialogue, §4.5.2
 * transparency, §4.5.3.2 timeouts, §5.1 MX), 3207 (STARTTLS), 1870 (SIZE),
 * 6152 (8BITMIME), 6531 (SMTPUTF8), 3461 (DSN parameters passed on), 2034 /
 * 3463 (enhanced status codes in replies).
 *
 * One attempt per job: a DNS lookup, then a connection per address until one
 * takes the transaction. Replies are read one line at a time (bounded by
 * SMTP_REPLY_LINE_MAX) into the pure reply parser; the state machine acts on
 * each complete reply. The body is read from the spool in pieces and written
 * dot-stuffed as the connection drains.
 */
#include "deliver/relay.h"
#include "core/log.h"
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

/* Replies and reasons are cut to fit the fixed-size outcome texts on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define BODY_PIECE 65536         /* octets read from the spool at once */
#define OUTPUT_HIGH (256 * 1024) /* stop writing the body past this much queued */
#define MAX_INPUT (64 * 1024)    /* reply octets buffered */
#define CONNECT_TIMEOUT 30       /* seconds */

enum attempt_state {
    A_DNS,      /* waiting for the next hop */
    A_CONNECT,  /* TCP connection under way */
    A_GREETING, /* waiting for 220 */
    A_EHLO,     /* EHLO sent */
    A_HELO,     /* HELO sent (EHLO refused) */
    A_STARTTLS, /* STARTTLS sent */
    A_TLS,      /* handshake under way */
    A_MAIL,     /* MAIL sent */
    A_RCPT,     /* RCPT number rcpt_i sent */
    A_DATA,     /* DATA sent */
    A_BODY,     /* writing the body */
    A_DOT,      /* final dot sent */
    A_QUIT,     /* QUIT sent; closing */
};

struct relay {
    struct ev_loop *loop;
    struct dns_resolver *dns;
    struct tls_client *tls;
    const struct config *cfg;
    struct attempt *attempts; /* in flight */
    size_t in_flight;
    struct attempt *dead; /* finished, freed by the reaper outside their callbacks */
    struct ev_timer *reaper;
};

struct attempt {
    struct attempt *next, *prev;
    struct relay *r;
    struct relay_job *job;
    struct dns_lookup *lookup;
    struct dns_nexthop *hop; /* the result, copied */
    size_t host_i, addr_i;   /* the address being tried */
    struct ev_conn *conn;
    enum attempt_state st;
    struct smtp_reply reply;
    struct smtp_peer_ext ext;
    bool tls;          /* STARTTLS done on this connection */
    bool esmtp;        /* EHLO accepted */
    size_t rcpt_i;     /* RCPT being answered */
    size_t accepted;   /* recipients accepted by RCPT */
    bool *ok;          /* per recipient: accepted by RCPT */
    uint64_t body_off; /* octets of the body sent */
    uint64_t body_size;
    bool line_start;      /* the next body octet starts a line */
    uint8_t last_octet;   /* last body octet sent */
    char last_error[600]; /* why the last address failed */
    char host[DNS_NAME_MAX + 1];
    char addr_text[64];
    bool finished; /* done was called: ignore everything until the reaper frees it */
};

static void attempt_next_address(struct attempt *a);
static void attempt_finish(struct attempt *a);

/* ---- outcomes ------------------------------------------------------------ */

/* Set the outcome of recipient i unless it has one already this attempt. */
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

/* The enhanced code of a reply, or a default for its class. */
static void reply_dsn(const struct smtp_reply *rep, char *out)
{
    smtp_reply_status(rep, out);
}

/* "host[addr] said: 550 5.1.1 text" into out. */
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
    smtp_reply_init(&a->reply);
}

static void conn_close(struct attempt *a)
{
    ev_conn_free(a->conn);
    a->conn = NULL;
}

/* This address failed before the transaction got anywhere: try the next. */
static void address_failed(struct attempt *a, const char *why)
{
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
             a->st == A_BODY || a->st == A_DOT ? " while sending message content" : "");
    if (a->st <= A_MAIL) {
        address_failed(a, text);
        return;
    }
    /* Recipients accepted or pending: try again later. */
    rcpt_set_open(a, RELAY_DEFERRED, "4.4.2", text);
    conn_close(a);
    attempt_finish(a);
}

/* Say goodbye; the caller finishes the attempt, which closes the connection
   (QUIT is a courtesy: its reply is not awaited). */
static void quit(struct attempt *a)
{
    send_line(a, "QUIT");
    a->st = A_QUIT;
}

/* ---- the body ------------------------------------------------------------ */

static void body_pump(struct attempt *a)
{
    static uint8_t in[BODY_PIECE], out[2 * BODY_PIECE + 8];
    while (a->st == A_BODY && ev_conn_output_len(a->conn) < OUTPUT_HIGH) {
        if (a->body_off >= a->body_size) {
            size_t n = 0;
            if (a->last_octet != '\n' && a->body_size > 0) {
                out[n++] = '\r';
                out[n++] = '\n';
            }
            memcpy(out + n, ".\r\n", 3);
            n += 3;
            ev_conn_write(a->conn, out, n);
            smtp_reply_init(&a->reply);
            a->st = A_DOT;
            return;
        }
        ssize_t got = spool_body_read(a->job->body, a->body_off, in, sizeof in);
        if (got <= 0) {
            rcpt_set_open(a, RELAY_DEFERRED, "4.3.0", "cannot read the message from the queue");
            log_error("qid=%016" PRIX64 " event=relay_body_read_failed", a->job->id);
            conn_close(a);
            attempt_finish(a);
            return;
        }
        /* RFC 5321 §4.5.2: a line that starts with "." gets one more. */
        size_t n = 0;
        for (ssize_t i = 0; i < got; i++) {
            if (a->line_start && in[i] == '.')
                out[n++] = '.';
            out[n++] = in[i];
            a->line_start = in[i] == '\n';
        }
        a->last_octet = in[got - 1];
        a->body_off += (uint64_t)got;
        ev_conn_write(a->conn, out, n);
    }
}

/* ---- replies --------------------------------------------------------------- */

static void send_mail(struct attempt *a)
{
    char line[1024];
    struct relay_job *j = a->job;
    long n = smtp_format_mail(line, sizeof line, j->sender, &a->ext, a->body_size, j->body_8bit,
                              j->smtputf8, (enum smtp_ret)j->ret, j->envid);
    if (n < 0) {
        rcpt_set_open(a, RELAY_BOUNCED, "5.3.0", "cannot format the MAIL command");
        quit(a);
        attempt_finish(a);
        return;
    }
    ev_conn_write(a->conn, line, (size_t)n);
    smtp_reply_init(&a->reply);
    a->st = A_MAIL;
}

static void send_rcpt(struct attempt *a)
{
    char line[1024];
    struct relay_rcpt *rc = &a->job->rcpt[a->rcpt_i];
    long n = smtp_format_rcpt(line, sizeof line, rc->addr, rc->notify, rc->orcpt, &a->ext);
    if (n < 0) {
        rcpt_set(rc, RELAY_BOUNCED, "5.1.3", "cannot format the RCPT command");
        a->rcpt_i++;
        if (a->rcpt_i < a->job->nrcpt)
            send_rcpt(a);
        return;
    }
    ev_conn_write(a->conn, line, (size_t)n);
    smtp_reply_init(&a->reply);
    a->st = A_RCPT;
}

/* After EHLO/HELO (and TLS): check what the peer can take, then MAIL. */
static void start_transaction(struct attempt *a)
{
    struct relay_job *j = a->job;
    char text[700];
    if (j->smtputf8 && !a->ext.smtputf8) {
        snprintf(text, sizeof text,
                 "host %s[%s] does not support SMTPUTF8, which this message needs", a->host,
                 a->addr_text);
        rcpt_set_open(a, RELAY_BOUNCED, "5.6.7", text);
        quit(a);
        attempt_finish(a);
        return;
    }
    if (j->body_8bit && !a->ext.eightbitmime && a->esmtp) {
        snprintf(text, sizeof text,
                 "host %s[%s] does not support 8BITMIME, and this 8-bit message is not "
                 "converted",
                 a->host, a->addr_text);
        rcpt_set_open(a, RELAY_BOUNCED, "5.6.3", text);
        quit(a);
        attempt_finish(a);
        return;
    }
    if (a->ext.size && a->ext.size_max && a->body_size > a->ext.size_max) {
        snprintf(text, sizeof text,
                 "message size %" PRIu64 " exceeds the limit %" PRIu64 " of host %s[%s]",
                 a->body_size, a->ext.size_max, a->host, a->addr_text);
        rcpt_set_open(a, RELAY_BOUNCED, "5.3.4", text);
        quit(a);
        attempt_finish(a);
        return;
    }
    send_mail(a);
}

static void on_reply(struct attempt *a)
{
    struct smtp_reply *rep = &a->reply;
    enum smtp_outcome o = smtp_reply_outcome(rep->code);
    char text[900], dsn[SMTP_ENH_MAX];
    reply_dsn(rep, dsn);
    switch (a->st) {
    case A_GREETING:
        if (o != SMTP_OUTCOME_OK) {
            reply_text(a, "the initial greeting", text, sizeof text);
            address_failed(a, text);
            return;
        }
        send_line(a, "EHLO %s", a->r->cfg->hostname);
        a->st = A_EHLO;
        return;
    case A_EHLO:
        if (o == SMTP_OUTCOME_OK) {
            a->esmtp = true;
            smtp_ehlo_parse(rep, &a->ext);
            if (a->ext.starttls && !a->tls && a->r->tls) {
                send_line(a, "STARTTLS");
                a->st = A_STARTTLS;
                return;
            }
            start_transaction(a);
            return;
        }
        if (a->tls) { /* EHLO refused inside TLS: nothing to fall back to */
            reply_text(a, "EHLO", text, sizeof text);
            address_failed(a, text);
            return;
        }
        send_line(a, "HELO %s", a->r->cfg->hostname);
        a->st = A_HELO;
        return;
    case A_HELO:
        if (o != SMTP_OUTCOME_OK) {
            reply_text(a, "HELO", text, sizeof text);
            address_failed(a, text);
            return;
        }
        memset(&a->ext, 0, sizeof a->ext);
        start_transaction(a);
        return;
    case A_STARTTLS:
        if (rep->code != 220) {
            /* Opportunistic: go on in plaintext. */
            start_transaction(a);
            return;
        }
        {
            size_t stray = ev_conn_start_tls(a->conn, tls_client_ssl_new(a->r->tls, a->host));
            if (stray)
                log_warn("qid=%016" PRIX64 " event=starttls_discard host=%s[%s] octets=%zu",
                         a->job->id, a->host, a->addr_text, stray);
        }
        a->st = A_TLS;
        return;
    case A_MAIL:
        if (o == SMTP_OUTCOME_OK) {
            a->rcpt_i = 0;
            send_rcpt(a);
            return;
        }
        reply_text(a, "MAIL FROM", text, sizeof text);
        if (o == SMTP_OUTCOME_BOUNCE) {
            rcpt_set_open(a, RELAY_BOUNCED, dsn, text);
            quit(a);
            attempt_finish(a);
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
            rcpt_set(rc, o == SMTP_OUTCOME_BOUNCE ? RELAY_BOUNCED : RELAY_DEFERRED, dsn, text);
        }
        a->rcpt_i++;
        while (a->rcpt_i < a->job->nrcpt && a->job->rcpt[a->rcpt_i].dsn[0])
            a->rcpt_i++;
        if (a->rcpt_i < a->job->nrcpt) {
            send_rcpt(a);
            return;
        }
        if (a->accepted == 0) {
            quit(a);
            attempt_finish(a);
            return;
        }
        send_line(a, "DATA");
        a->st = A_DATA;
        return;
    }
    case A_DATA:
        if (rep->code == 354) {
            a->st = A_BODY;
            a->body_off = 0;
            a->line_start = true;
            body_pump(a);
            return;
        }
        reply_text(a, "DATA", text, sizeof text);
        rcpt_set_open(a, o == SMTP_OUTCOME_BOUNCE ? RELAY_BOUNCED : RELAY_DEFERRED, dsn, text);
        quit(a);
        attempt_finish(a);
        return;
    case A_DOT:
        reply_text(a, "end of DATA", text, sizeof text);
        if (o == SMTP_OUTCOME_OK) {
            char ok[900];
            snprintf(ok, sizeof ok, "%s", text);
            for (size_t i = 0; i < a->job->nrcpt; i++)
                if (a->ok[i])
                    rcpt_set(&a->job->rcpt[i], RELAY_SENT, dsn[0] ? dsn : "2.0.0", ok);
        } else {
            rcpt_set_open(a, o == SMTP_OUTCOME_BOUNCE ? RELAY_BOUNCED : RELAY_DEFERRED, dsn, text);
        }
        quit(a);
        attempt_finish(a);
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
        if (step == SMTP_REPLY_DONE)
            on_reply(a);
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
    a->st = A_GREETING;
    smtp_reply_init(&a->reply);
}

static void on_tls_ready(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    a->tls = true;
    struct ev_tls_info info;
    if (ev_conn_tls_info(a->conn, &info))
        log_info("qid=%016" PRIX64 " event=relay_tls host=%s[%s] version=%s cipher=%s", a->job->id,
                 a->host, a->addr_text, info.version, info.cipher);
    /* RFC 3207 §4.2: start again with EHLO. */
    memset(&a->ext, 0, sizeof a->ext);
    send_line(a, "EHLO %s", a->r->cfg->hostname);
    a->st = A_EHLO;
}

static void on_drain(void *arg)
{
    struct attempt *a = arg;
    if (a->finished)
        return;
    if (a->st == A_BODY)
        body_pump(a);
}

static const struct ev_conn_ops conn_ops = {on_read,      on_close,   on_timeout,
                                            on_tls_ready, on_connect, on_drain};

/* ---- the attempt ------------------------------------------------------------- */

/* Connect to the next address of the next host, or give up. */
static void attempt_next_address(struct attempt *a)
{
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
    const struct dns_addr *addr = &host->addrs[a->addr_i];
    snprintf(a->host, sizeof a->host, "%s", host->name);
    dns_addr_format(addr, a->addr_text, sizeof a->addr_text);
    snprintf(a->job->relay_desc, sizeof a->job->relay_desc, "%s[%s]:%u", a->host, a->addr_text,
             a->r->cfg->outbound_port);
    struct sockaddr_storage ss;
    socklen_t sl = dns_addr_sockaddr(addr, (uint16_t)a->r->cfg->outbound_port, &ss);
    if (sl == 0) {
        a->addr_i++;
        attempt_next_address(a);
        return;
    }
    a->tls = false;
    a->esmtp = false;
    a->accepted = 0;
    memset(&a->ext, 0, sizeof a->ext);
    for (size_t i = 0; i < a->job->nrcpt; i++)
        a->ok[i] = false;
    a->st = A_CONNECT;
    a->conn = ev_conn_connect(a->r->loop, (const struct sockaddr *)&ss, sl, &conn_ops, a, MAX_INPUT,
                              CONNECT_TIMEOUT);
    ev_conn_set_timeout(a->conn, a->r->cfg->outbound_timeout);
}

static void on_nexthop(void *arg, const struct dns_nexthop *res)
{
    struct attempt *a = arg;
    a->lookup = NULL;
    if (res->status != DNS_OK) {
        char text[400];
        snprintf(text, sizeof text, "%s", res->reason);
        rcpt_set_open(a, dns_status_temporary(res->status) ? RELAY_DEFERRED : RELAY_BOUNCED,
                      dns_status_dsn(res->status), text);
        attempt_finish(a);
        return;
    }
    a->hop = xmalloc(sizeof *a->hop);
    memcpy(a->hop, res, sizeof *a->hop);
    a->host_i = a->addr_i = 0;
    attempt_next_address(a);
}

static void attempt_free(struct attempt *a)
{
    if (a->lookup)
        dns_cancel(a->lookup);
    ev_conn_free(a->conn);
    free(a->hop);
    free(a->ok);
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
    a->body_size = spool_body_size(job->body);
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
    a->st = A_DNS;
    a->lookup = dns_resolve_nexthop(r->dns, job->domain, on_nexthop, a);
}

struct relay *relay_new(struct ev_loop *loop, struct dns_resolver *dns, struct tls_client *tls,
                        const struct config *cfg)
{
    struct relay *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->dns = dns;
    r->tls = tls;
    r->cfg = cfg;
    r->reaper = ev_timer_new(loop, on_reap, r);
    return r;
}

size_t relay_in_flight(const struct relay *r)
{
    return r->in_flight;
}

void relay_cancel_all(struct relay *r)
{
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
    relay_cancel_all(r);
    on_reap(r);
    ev_timer_free(r->reaper);
    free(r);
}
