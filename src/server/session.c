/*
 * session - the inbound SMTP session state machine.
 *
 * Implements the server side of RFC 5321 (§3 procedures, §4.1 commands, §4.4
 * trace information, §4.5.3 limits) with RFC 2920 PIPELINING, RFC 1870 SIZE,
 * RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2034 ENHANCEDSTATUSCODES, RFC 3030
 * CHUNKING and RFC 3461 DSN parameters; RFC 3207 STARTTLS and RFC 8314
 * implicit TLS; RFC 4954 AUTH (mechanisms in src/auth) with brute-force
 * defence; and the RFC 6409 message submission role: AUTH before MAIL,
 * senders and From: addresses owned by the login, Date: and Message-ID:
 * added when missing, per-user rate limits. Parsing is done by src/smtp
 * (pure); this file decides, replies and talks to the spool.
 *
 * Input is processed strictly in order: commands are read one line at a time
 * from the connection buffer and answered at once, so replies keep their order
 * whatever the TCP segmentation. The only asynchronous step is the commit at
 * the end of a message: reading pauses until the spool reports the message
 * durable, then the 250 goes out and the rest of the buffered input is read
 * (DESIGN contract 1). Only CRLF.CRLF ends DATA; content sent before the 354
 * is refused (554 5.5.0) and the connection closed; BDAT chunks are consumed
 * to their exact size even when refused.
 *
 * The content of a message must arrive at min_data_rate on average, after a
 * grace of min_data_rate_grace seconds (Postfix's smtpd_min_data_rate): a
 * client that drips it octet by octet is cut off with 421 4.4.2 instead of
 * holding its connection until session_timeout (THREATS #14).
 *
 * After STARTTLS every octet already buffered is discarded (RFC 3207 §4.2,
 * the CVE-2011-0411 injection) and the session forgets EHLO. Passwords are
 * checked in worker threads; while a check or a commit is in flight the
 * session reads nothing.
 *
 * Ownership: a session owns its connection, transaction, SASL exchange and
 * timers; the server owns the session list. A session whose connection
 * closes while a commit or a password check is in flight stays alive
 * (dead = true) until the callback.
 */
#include "server/session.h"
#include "auth/sasl.h"
#include "auth/senderlogin.h"
#include "auth/userdb.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "event/event.h"
#include "sched/sched.h"
#include "server/msgauth.h"
#include "server/policy.h"
#include "server/ratelimit.h"
#include "smtp/header.h"
#include "smtp/smtp.h"
#include "spool/record.h"
#include "spool/spool.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Content is appended to the spool in pieces of this size. */
#define APPEND_SIZE 65536
/* Pending content held back until the header section has ended, so that
   fields can still be inserted or removed in it (see tx_header_done). A
   longer header section is written out, and later fields stay as they are. */
#define HEADER_HOLD_MAX (2 * APPEND_SIZE)
/* Octets of input decoded per step. */
#define FEED_SIZE 32768
/* Input buffered per connection before reading pauses. */
#define MAX_INPUT (256 * 1024)
/* Replies queued for a client that does not read them (it pipelines without
   end): past this, commands are left unread until the replies drain, so that
   what a session holds stays bounded (then MAX_INPUT stops reading). */
#define MAX_OUTPUT (64 * 1024)
/* Longest delay before the reply to a failed AUTH, in seconds. */
#define AUTH_DELAY_MAX 5

enum session_state {
    SESSION_CMD,       /* reading command lines */
    SESSION_SKIP,      /* discarding the rest of an over-long command line */
    SESSION_DATA,      /* reading DATA content up to CRLF.CRLF */
    SESSION_BDAT,      /* reading the octets of a BDAT chunk */
    SESSION_COMMIT,    /* reading paused: the spool is making the message durable */
    SESSION_CLOSING,   /* last reply sent; output flushing, then close */
    SESSION_AUTH,      /* reading a SASL response line after a 334 */
    SESSION_AUTH_WAIT, /* a password check runs, or a failed AUTH's reply is delayed */
    SESSION_CHECK,     /* reading paused: mail authentication runs (SPF before the reply
                          to MAIL, or the end-of-data checks and signatures) */
};

static const char *const state_names[] = {"cmd",     "skip", "data",      "bdat", "commit",
                                          "closing", "auth", "auth_wait", "check"};

/* One accepted recipient of the transaction (after alias expansion). */
struct tx_rcpt {
    char *addr;      /* delivery address */
    char *orig;      /* address as the client gave it, when expansion changed it */
    unsigned notify; /* NOTIFY bits */
    char *orcpt;     /* ORCPT= as sent, or NULL */
};

/* The mail transaction (RFC 5321 §3.3), reset by RSET, EHLO and end of message. */
struct tx {
    bool active;                /* MAIL accepted */
    char *sender;               /* reverse-path ("" for <>) */
    struct smtp_mail_params mp; /* MAIL parameters */
    struct tx_rcpt *rcpt;       /* accepted recipients */
    size_t nrcpt, rcpt_cap;
    size_t rcpt_cmds; /* RCPT commands accepted (the recipient limit) */
    size_t env_bytes; /* what the recipients take in the spool envelope, about */
    char *first_rcpt; /* first recipient as given, for the Received "for" clause */
    bool has_qid;     /* content started: qid allocated, chunks may be on disk */
    spool_id qid;
    bool bdat;                 /* content arrives by BDAT */
    struct smtp_data_dec dec;  /* content decoder */
    struct buf pending;        /* decoded content not yet appended */
    uint64_t content;          /* octets the client sent (after unstuffing) */
    uint64_t stored;           /* octets appended to the spool (with Received) */
    bool too_big;              /* content passed message_size_limit */
    int spool_error;           /* errno of a failed append, or 0 */
    bool msa;                  /* submission by an authenticated user: headers checked and fixed */
    struct smtp_hdr_scan *hdr; /* header scanner (every message, while content arrives) */
    bool hdr_handled;          /* tx_header_done ran */
    bool hdr_spilled;          /* the header section outgrew HEADER_HOLD_MAX */
    struct msgauth *auth;      /* SPF, DKIM, DMARC checks or DKIM signing */
    bool mail_waits;           /* SESSION_CHECK: the reply to MAIL waits for SPF */
    uint8_t last_octet;        /* last content octet appended (msa: is a line open?) */
};

struct session {
    struct session_link link; /* must be first: the server's list */
    const struct session_env *env;
    const struct config *cfg;      /* the configuration this session started with */
    const struct aliases *aliases; /* ... and the aliases loaded with it (kept to the end) */
    struct ev_conn *conn;
    struct ev_timer *lifetime; /* session_timeout */
    struct ev_timer *rate;     /* min_data_rate: checks the content's pace */
    int64_t content_ms;        /* when the transaction's content started (DATA, first BDAT) */
    enum config_role role;
    enum session_state state;
    char id[20];     /* session id for logs */
    char client[64]; /* client IP address as text */
    bool trusted;    /* client in trusted_networks */
    bool unchecked;  /* client in mailauth_skip_networks: no SPF, DKIM, DMARC checks */
    char helo[256];  /* HELO/EHLO argument */
    bool greeted;    /* HELO or EHLO accepted */
    bool esmtp;      /* EHLO (extensions on) */
    struct tx tx;
    uint64_t bdat_left;                    /* octets of the current BDAT chunk still to read */
    bool bdat_last;                        /* the current chunk is the LAST one */
    const struct smtp_status *chunk_error; /* the current chunk is refused: read and dropped */
    size_t errors;                         /* error replies sent */
    size_t junk;                           /* commands without progress since the last message */
    size_t commands;                       /* commands received */
    size_t messages;                       /* messages accepted */
    bool dead;          /* connection gone; waiting for a commit callback to free us */
    bool shutting_down; /* server shutdown: close after the transaction in flight */
    bool read_stopped;  /* the read timeout fired during a commit (reading is off) */
    bool expired;       /* session_timeout passed during a commit */
    bool output_full;   /* MAX_OUTPUT of replies queued: commands wait for on_drain */
    int64_t started_ms;
    char *line;                 /* line buffer, line_cap octets */
    size_t line_cap;            /* max_command_line + 1, or more once AUTH needs SASL lines */
    struct sockaddr_storage sa; /* client address */
    bool loopback;              /* the client is on a loopback address */
    /* TLS */
    bool tls;       /* the connection is TLS (or its handshake has started) */
    bool tls_ready; /* the handshake is done; tlsinfo is valid */
    struct ev_tls_info tlsinfo;
    /* AUTH */
    char *auth_user;             /* the authenticated login, or NULL */
    struct sasl_session *sasl;   /* the exchange in progress, or NULL */
    bool auth_busy;              /* a password check runs in a worker (we must outlive it) */
    size_t auth_failures;        /* failed AUTHs on this connection */
    struct ev_timer *auth_delay; /* delays the reply to a failed AUTH */
    bool auth_close;             /* the delayed reply is 421: too many failures */
};

static uint64_t session_counter;
static uint8_t feed_out[2 * FEED_SIZE + 2];

static void session_process(struct session *s);
static void session_resume(struct session *s);
static void session_on_auth(void *arg);
static void mail_reply(struct session *s);
static void session_free(struct session *s);

/* ---- state, replies, closing ---------------------------------------------- */

static void session_set_state(struct session *s, enum session_state st)
{
    log_debug("sid=%s event=state from=%s to=%s", s->id, state_names[s->state], state_names[st]);
    s->state = st;
}

/* Send "CODE ENH TEXT"; text may hold '\n' for a multi-line reply. 4xx and 5xx
   count as errors. */
static void reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[1024], out[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t n = smtp_reply_format(out, sizeof out, code, enh, text);
    ev_conn_write(s->conn, out, n);
    if (code >= 400 && code != 421)
        s->errors++;
    metrics_reply(s->role, code, enh);
    log_debug("sid=%s event=reply reply=\"%d %s %s\"", s->id, code, enh ? enh : "", text);
}

static void reply_status(struct session *s, const struct smtp_status *st)
{
    reply(s, st->code, st->enh, "%s", st->text);
}

/* Send a last reply and close once it is written. */
static void session_close_with(struct session *s, int code, const char *enh, const char *text)
{
    if (s->state == SESSION_CLOSING || s->dead)
        return;
    reply(s, code, enh, "%s", text);
    session_set_state(s, SESSION_CLOSING);
    ev_conn_close_after_flush(s->conn);
}

static void log_reject(struct session *s, const char *cmd, const struct smtp_status *st)
{
    log_info("sid=%s event=reject client=%s cmd=%s reply=\"%d %s %s\"", s->id, s->client, cmd,
             st->code, st->enh, st->text);
}

/* ---- transaction ------------------------------------------------------------ */

static void tx_reset(struct session *s)
{
    struct tx *t = &s->tx;
    ev_timer_stop(s->rate);
    if (t->has_qid && s->state != SESSION_COMMIT)
        spool_abort(s->env->deps->spool, t->qid);
    for (size_t i = 0; i < t->nrcpt; i++) {
        free(t->rcpt[i].addr);
        free(t->rcpt[i].orig);
        free(t->rcpt[i].orcpt);
    }
    free(t->rcpt);
    free(t->sender);
    free(t->first_rcpt);
    free(t->hdr);
    msgauth_free(t->auth);
    buf_free(&t->pending);
    memset(t, 0, sizeof *t);
}

static const struct smtp_status st_too_big = {552, "5.3.4",
                                              "Message size exceeds fixed maximum message size"};
static const struct smtp_status st_no_space = {452, "4.3.1", "Insufficient system storage"};
static const struct smtp_status st_io_error = {451, "4.3.0",
                                               "Local error in processing: queue write error"};

/* Append the buffered content to the spool. */
static void tx_flush_pending(struct session *s)
{
    struct tx *t = &s->tx;
    if (t->auth)
        msgauth_stored(t->auth, t->pending.data, t->pending.len);
    int r = spool_append(s->env->deps->spool, t->qid, t->pending.data, t->pending.len);
    if (r < 0)
        t->spool_error = -r;
    else
        t->stored += t->pending.len;
    buf_reset(&t->pending);
}

/* Append octets to the pending content, writing full pieces to the spool. */
static void tx_store(struct session *s, const uint8_t *p, size_t n)
{
    struct tx *t = &s->tx;
    if (t->too_big || t->spool_error || n == 0)
        return;
    if (buf_append(&t->pending, p, n) < 0)
        panic("content buffer overflow");
    t->last_octet = p[n - 1];
    if (t->pending.len < APPEND_SIZE)
        return;
    if (!t->hdr->done && t->pending.len < HEADER_HOLD_MAX)
        return; /* the header section is still open: hold it */
    if (!t->hdr->done && !t->hdr_spilled) {
        t->hdr_spilled = true;
        log_warn("sid=%s qid=%016" PRIX64 " event=header_spilled octets=%zu note=\"header "
                 "section longer than %u octets: written as it came\"",
                 s->id, t->qid, t->pending.len, (unsigned)HEADER_HOLD_MAX);
    }
    tx_flush_pending(s);
}

/* The header section has ended (or the content did without one): every field
   of it is in the pending content unless it spilled. */
static void tx_header_done(struct session *s)
{
    struct tx *t = &s->tx;
    if (t->hdr_handled)
        return;
    t->hdr_handled = true;
    if (t->auth && !t->too_big && !t->spool_error) {
        /* a spilled section starts in written content: nothing to edit */
        size_t len = t->hdr_spilled ? 0 : t->pending.len;
        size_t n = msgauth_header_done(t->auth, t->hdr, (uint8_t *)t->pending.data, len);
        if (n < len) {
            t->pending.len = n;
            t->pending.data[n] = '\0';
        }
    }
    if (t->pending.len >= APPEND_SIZE && !t->too_big && !t->spool_error)
        tx_flush_pending(s);
}

/* The MSA adds what a submitted message lacks (RFC 6409 §8.2, §8.3): Date:
   and Message-ID:, at the end of the header section. */
static void msa_add_fields(struct session *s)
{
    struct tx *t = &s->tx;
    char h[512 + SMTP_DOMAIN_MAX];
    size_t n = 0;
    if (t->last_octet != '\n' && t->last_octet != 0)
        n += (size_t)snprintf(h + n, sizeof h - n, "\r\n");
    if (!t->hdr->has_date) {
        char date[64];
        rfc5322_date(now_real_us() / 1000000, date, sizeof date);
        n += (size_t)snprintf(h + n, sizeof h - n, "Date: %s\r\n", date);
    }
    if (!t->hdr->has_message_id)
        n +=
            (size_t)snprintf(h + n, sizeof h - n, "Message-ID: <%" PRId64 ".%016" PRIX64 "@%s>\r\n",
                             now_real_us() / 1000000, t->qid, s->cfg->hostname);
    if (n >= sizeof h)
        panic("MSA header fields too long");
    if (n > 0)
        log_info("sid=%s qid=%016" PRIX64 " event=msa_fixup added=%s%s", s->id, t->qid,
                 t->hdr->has_date ? "" : "date,", t->hdr->has_message_id ? "" : "message-id");
    tx_store(s, (const uint8_t *)h, n);
}

/* The header section ended `back` octets before the end of the pending
   content: insert the MSA fields there. */
static void msa_insert_fields(struct session *s, uint64_t back)
{
    struct tx *t = &s->tx;
    if (t->too_big || t->spool_error)
        return;
    if (back > t->pending.len) {
        log_warn("sid=%s qid=%016" PRIX64 " event=msa_fixup_skipped reason=\"header end "
                 "already written\"",
                 s->id, t->qid);
        return;
    }
    size_t pos = t->pending.len - (size_t)back;
    char *tail = xmalloc((size_t)back + 1);
    memcpy(tail, t->pending.data + pos, (size_t)back);
    t->pending.len = pos;
    t->last_octet = pos ? (uint8_t)t->pending.data[pos - 1] : t->last_octet;
    msa_add_fields(s);
    if (buf_append(&t->pending, tail, (size_t)back) < 0)
        panic("content buffer overflow");
    if (back)
        t->last_octet = (uint8_t)tail[back - 1];
    free(tail);
}

/* Append decoded content: enforce the size limit and write full pieces. For
   submitted mail, the header section is scanned on the way. */
static void tx_content(struct session *s, const uint8_t *p, size_t n, bool from_client)
{
    struct tx *t = &s->tx;
    if (from_client) {
        if (t->auth && !t->too_big)
            msgauth_received(t->auth, p, n);
        t->content += n;
        if (t->content > s->cfg->message_size_limit)
            t->too_big = true;
        if (!t->hdr->done && n > 0) {
            uint64_t base = t->hdr->offset;
            long end = smtp_hdr_feed(t->hdr, p, n);
            if (end >= 0) {
                tx_store(s, p, (size_t)end);
                if (t->msa)
                    msa_add_fields(s);
                p += end;
                n -= (size_t)end;
                tx_store(s, p, n);
                tx_header_done(s);
                return;
            }
            if (t->hdr->done) {
                /* A line that is not a field ended the header section, and it
                   started in an earlier piece: insert before it if it is still
                   pending (it nearly always is). */
                if (t->msa)
                    msa_insert_fields(s, base - t->hdr->end);
                tx_store(s, p, n);
                tx_header_done(s);
                return;
            }
        }
    }
    tx_store(s, p, n);
}

/* ---- minimum data rate ------------------------------------------------------ */

/* How long the content may have taken so far: the grace, plus one second
   per min_data_rate octets received (min_data_rate is not 0). */
static uint64_t rate_allowed_ms(const struct session *s)
{
    return (uint64_t)s->cfg->min_data_rate_grace * 1000 +
           s->tx.content * 1000 / s->cfg->min_data_rate;
}

/* The content of a transaction starts: its pace is checked from now. */
static void rate_start(struct session *s)
{
    if (s->cfg->min_data_rate == 0)
        return;
    s->content_ms = now_mono_ms();
    ev_timer_start(s->rate, rate_allowed_ms(s));
}

/* The content's deadline has come: cut the client off if it is behind,
   else look again at the new deadline the octets since have earned. */
static void on_rate(void *arg)
{
    struct session *s = arg;
    struct tx *t = &s->tx;
    if (!t->has_qid || s->dead || s->state == SESSION_COMMIT || s->state == SESSION_CHECK ||
        s->state == SESSION_CLOSING)
        return; /* the content is complete: its pace no longer matters */
    int64_t elapsed = now_mono_ms() - s->content_ms;
    uint64_t allowed = rate_allowed_ms(s);
    if (elapsed < 0 || (uint64_t)elapsed < allowed) {
        ev_timer_start(s->rate, allowed - (uint64_t)(elapsed < 0 ? 0 : elapsed));
        return;
    }
    log_info("sid=%s event=data_rate_limit client=%s octets=%" PRIu64 " duration_ms=%" PRId64
             " min_data_rate=%zu",
             s->id, s->client, t->content, elapsed, s->cfg->min_data_rate);
    tx_reset(s);
    session_close_with(s, 421, "4.4.2", "Error: data rate too low, closing connection");
}

/* RFC 3848 protocol names for the Received header's "with" clause. */
static const char *received_protocol(const struct session *s)
{
    static const char *const names[2][4] = {
        {"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"},
        {"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA"},
    };
    if (!s->esmtp)
        return "SMTP";
    return names[s->tx.mp.smtputf8 ? 1 : 0][(s->tls_ready ? 2 : 0) + (s->auth_user ? 1 : 0)];
}

/* Start the content of a message: queue id, decoder and the Received header
   (RFC 5321 §4.4). */
static void tx_begin_content(struct session *s, bool bdat)
{
    struct tx *t = &s->tx;
    t->qid = spool_new_id(s->env->deps->spool);
    t->has_qid = true;
    t->bdat = bdat;
    rate_start(s);
    smtp_data_init(&t->dec, bdat, (enum smtp_newline)s->cfg->bare_newline, s->cfg->max_text_line,
                   s->cfg->max_header_count);
    buf_init(&t->pending, 2 * APPEND_SIZE + 2 * FEED_SIZE + 4096);
    t->msa = s->auth_user != NULL;
    t->hdr = xmalloc(sizeof *t->hdr);
    smtp_hdr_init(t->hdr);
    if (t->auth)
        msgauth_content_begin(t->auth, t->qid);

    char date[64], tls[160] = "";
    rfc5322_date(now_real_us() / 1000000, date, sizeof date);
    if (s->tls_ready)
        snprintf(tls, sizeof tls, "\r\n\t(using %s with cipher %s (%d bits))", s->tlsinfo.version,
                 s->tlsinfo.cipher, s->tlsinfo.bits);
    char h[1024 + 2 * SMTP_PATH_MAX];
    int n = snprintf(h, sizeof h,
                     "Received: from %s ([%s])\r\n\tby %s (Tern) with %s id %016" PRIX64
                     "%s\r\n\t%s%s%s; %s\r\n",
                     s->helo, s->client, s->cfg->hostname, received_protocol(s), t->qid, tls,
                     t->nrcpt == 1 ? "for <" : "", t->nrcpt == 1 ? t->first_rcpt : "",
                     t->nrcpt == 1 ? ">" : "", date);
    if (n < 0 || (size_t)n >= sizeof h)
        panic("Received header too long");
    tx_content(s, (const uint8_t *)h, (size_t)n, false);
}

/* Submission: every From: address must belong to the login (RFC 6409 §6.1
   lets the MSA refuse what the user may not send). NULL when it does. */
static const struct smtp_status *msa_check_from(struct session *s, char *who, size_t wholen)
{
    static const struct smtp_status not_owned = {553, "5.7.1",
                                                 "From: header address not owned by the "
                                                 "authenticated user"};
    static const struct smtp_status bad_from = {553, "5.7.1",
                                                "From: header cannot be parsed to check "
                                                "its owner"};
    static const struct smtp_status two_from = {553, "5.7.1", "More than one From: header field"};
    struct tx *t = &s->tx;
    if (!t->msa || t->hdr->from_fields == 0)
        return NULL;
    if (t->hdr->from_fields > 1)
        return &two_from;
    if (t->hdr->from_truncated)
        return &bad_from;
    char(*addrs)[SMTP_PATH_MAX + 1] = xmallocarray(SMTP_ADDR_LIST_MAX, sizeof *addrs);
    int n = smtp_addr_list_parse(t->hdr->from, t->hdr->from_len, addrs, SMTP_ADDR_LIST_MAX);
    const struct smtp_status *st = n < 0 ? &bad_from : NULL;
    for (int i = 0; i < n && !st; i++) {
        if (!sender_login_allows(s->env->deps->senders, s->auth_user, addrs[i])) {
            snprintf(who, wholen, "%s", addrs[i]);
            st = &not_owned;
        }
    }
    free(addrs);
    return st;
}

static void session_committed(void *arg, spool_id id, int error);
static void tx_commit(struct session *s);

/* End of the message content (CRLF.CRLF or BDAT LAST): check it, commit it. */
static void tx_end_content(struct session *s)
{
    struct tx *t = &s->tx;
    ev_timer_stop(s->rate);
    const struct smtp_status *st = smtp_data_status(&t->dec);
    if (!st && t->too_big)
        st = &st_too_big;
    char from_addr[SMTP_PATH_MAX + 1] = "";
    if (!st && t->msa) {
        st = msa_check_from(s, from_addr, sizeof from_addr);
        if (!st && !t->hdr->done)
            msa_add_fields(s); /* no body: the fields go after the last header */
    }
    if (!st)
        tx_header_done(s);
    if (!st && !t->spool_error && t->pending.len > 0)
        tx_flush_pending(s);
    if (!st && t->spool_error)
        st = t->spool_error == ENOSPC ? &st_no_space : &st_io_error;
    if (!st && t->auth) {
        msgauth_finish(t->auth, t->hdr);
        if (!msgauth_done(t->auth)) {
            t->mail_waits = false;
            session_set_state(s, SESSION_CHECK);
            return; /* session_on_auth goes on */
        }
    }
    if (st) {
        if (from_addr[0])
            log_info("sid=%s event=reject client=%s cmd=%s user=%s header_from=<%s> "
                     "reply=\"%d %s %s\"",
                     s->id, s->client, t->bdat ? "BDAT" : "DATA", s->auth_user, from_addr, st->code,
                     st->enh, st->text);
        else
            log_reject(s, t->bdat ? "BDAT" : "DATA", st);
        reply_status(s, st);
        tx_reset(s);
        session_set_state(s, SESSION_CMD);
        return;
    }
    tx_commit(s);
}

/* The content is complete and checked: refuse it if mail authentication
   says so, else commit it with the header fields it adds. */
static void tx_commit(struct session *s)
{
    struct tx *t = &s->tx;
    const struct smtp_status *st = NULL;
    char text[400];
    if (t->auth && (st = msgauth_refusal(t->auth, text, sizeof text)) != NULL) {
        log_reject(s, t->bdat ? "BDAT" : "DATA", st);
        reply_status(s, st);
        tx_reset(s);
        session_set_state(s, SESSION_CMD);
        return;
    }
    struct spool_envelope env = {0};
    env.sender = t->sender;
    env.envid = t->mp.has_envid ? t->mp.envid : NULL;
    env.ret = (uint8_t)t->mp.ret;
    env.body = (uint8_t)t->mp.body;
    env.smtputf8 = t->mp.smtputf8;
    env.helo = s->helo;
    env.client_addr = s->client;
    env.listener = (char *)config_role_name(s->role);
    env.auth_user = s->auth_user;
    env.prefix = t->auth ? (char *)msgauth_prefix(t->auth) : NULL;
    env.arrival = now_real_us() / 1000000;
    env.size = t->stored;
    env.nrcpt = t->nrcpt;
    env.rcpt = xcalloc(t->nrcpt, sizeof *env.rcpt);
    for (size_t i = 0; i < t->nrcpt; i++) {
        env.rcpt[i].addr = t->rcpt[i].addr;
        env.rcpt[i].orcpt = t->rcpt[i].orcpt;
        env.rcpt[i].dsn_orig = t->rcpt[i].orig;
        env.rcpt[i].notify = t->rcpt[i].notify;
        env.rcpt[i].state = SPOOL_RCPT_PENDING;
    }
    int r = spool_commit(s->env->deps->spool, t->qid, &env, session_committed, s);
    free(env.rcpt);
    if (r < 0) {
        t->spool_error = -r;
        st = t->spool_error == ENOSPC ? &st_no_space : &st_io_error;
        log_reject(s, t->bdat ? "BDAT" : "DATA", st);
        reply_status(s, st);
        tx_reset(s);
        session_set_state(s, SESSION_CMD);
        return;
    }
    /* Reading goes on (bounded by the input limit) but nothing is processed until
       the commit completes; see session_process. */
    session_set_state(s, SESSION_COMMIT);
}

/* The spool reports the commit durable (or failed): now the client gets its reply. */
static void session_committed(void *arg, spool_id id, int error)
{
    struct session *s = arg;
    struct tx *t = &s->tx;
    if (error) {
        log_error("sid=%s qid=%016" PRIX64 " event=commit_failed error=\"%s\"", s->id, id,
                  strerror(error));
        if (!s->dead)
            reply_status(s, error == ENOSPC ? &st_no_space : &st_io_error);
    } else {
        log_info("sid=%s qid=%016" PRIX64 " event=queued from=<%s> nrcpt=%zu size=%" PRIu64
                 " client=%s%s",
                 s->id, id, t->sender, t->nrcpt, t->stored, s->client,
                 s->dead ? " note=client_gone_before_reply" : "");
        if (!s->dead)
            reply(s, 250, "2.0.0", "Ok: queued as %016" PRIX64, id);
        s->messages++;
        metrics_inc(M_MESSAGES_ACCEPTED, s->role, 0);
        s->junk = 0;
        sched_message_queued(s->env->deps->sched, id);
    }
    t->has_qid = false; /* committed or already discarded by the spool */
    tx_reset(s);
    if (s->dead) {
        session_free(s);
        return;
    }
    session_set_state(s, SESSION_CMD);
    session_resume(s);
}

/* An asynchronous step (commit, password check, delayed reply) is over and the
   session is in SESSION_CMD: apply what happened meanwhile, then read on. */
static void session_resume(struct session *s)
{
    if (s->read_stopped) {
        s->read_stopped = false;
        ev_conn_pause(s->conn, false);
    }
    if (s->expired) {
        log_info("sid=%s event=session_time_limit client=%s", s->id, s->client);
        tx_reset(s);
        session_close_with(s, 421, "4.4.2", "Error: session time limit exceeded");
        return;
    }
    if (s->shutting_down && !s->tx.active) {
        session_close_with(s, 421, "4.3.2", "Service shutting down, closing transmission channel");
        return;
    }
    session_process(s);
}

/* ---- commands ---------------------------------------------------------------- */

/* STARTTLS is offered on mx and submission once a certificate is loaded. */
static bool starttls_offered(const struct session *s)
{
    return s->env->deps->tls && !s->tls && s->role != ROLE_SUBMISSIONS;
}

/* AUTH is offered on the submission listeners (and on mx with mx_auth) inside
   TLS, or, when auth_plaintext_loopback allows it, to loopback clients; only
   with a user store. */
static bool auth_offered(const struct session *s)
{
    if ((s->role == ROLE_MX && !s->cfg->mx_auth) || !s->env->deps->users)
        return false;
    return s->tls_ready || (s->cfg->auth_plaintext_loopback && s->loopback);
}

static void cmd_helo(struct session *s, const char *arg, size_t len, bool esmtp)
{
    if (len == 0) {
        reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    if (len >= sizeof s->helo || memchr(arg, ' ', len)) {
        reply(s, 501, "5.5.4", "Invalid domain name");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c <= 32 || c == 127) {
            reply(s, 501, "5.5.4", "Invalid domain name");
            return;
        }
    }
    memcpy(s->helo, arg, len);
    s->helo[len] = '\0';
    tx_reset(s);
    s->greeted = true;
    s->esmtp = esmtp;
    if (!esmtp) {
        reply(s, 250, NULL, "%s", s->cfg->hostname);
        return;
    }
    char ext[512];
    size_t n = (size_t)snprintf(ext, sizeof ext,
                                "%s\nPIPELINING\nSIZE %" PRIu64 "\n8BITMIME\nSMTPUTF8\n"
                                "ENHANCEDSTATUSCODES\nCHUNKING\nDSN",
                                s->cfg->hostname, s->cfg->message_size_limit);
    if (starttls_offered(s))
        n += (size_t)snprintf(ext + n, sizeof ext - n, "\nSTARTTLS");
    if (auth_offered(s)) {
        const struct userdb *db = s->env->deps->users;
        n += (size_t)snprintf(ext + n, sizeof ext - n, "\nAUTH PLAIN LOGIN%s%s",
                              userdb_any_scram(db) ? " SCRAM-SHA-256" : "",
                              userdb_any_cram(db) ? " CRAM-MD5" : "");
    }
    reply(s, 250, NULL, "%s", ext);
}

static struct smtp_ext session_ext(const struct session *s)
{
    struct smtp_ext e = {s->esmtp, s->esmtp, s->esmtp, s->esmtp, s->esmtp && auth_offered(s)};
    return e;
}

/* Strip "FROM:" / "TO:" (any case). */
static bool strip_prefix(const char **arg, size_t *len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (*len < n || !ascii_nieq(*arg, prefix, n))
        return false;
    *arg += n;
    *len -= n;
    return true;
}

static void skip_spaces(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*len)--;
    }
}

static void cmd_mail(struct session *s, const char *arg, size_t len)
{
    static const struct smtp_status need_helo = {503, "5.5.1", "Send HELO/EHLO first"};
    static const struct smtp_status nested = {503, "5.5.1", "Nested MAIL command"};
    static const struct smtp_status need_auth = {530, "5.7.0", "Authentication required"};
    static const struct smtp_status syntax = {501, "5.5.4", "Syntax: MAIL FROM:<address>"};
    static const struct smtp_status need_utf8 = {
        553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter"};
    static const struct smtp_status not_owned = {
        553, "5.7.1", "Sender address rejected: not owned by the authenticated user"};
    static const struct smtp_status rate_messages = {
        450, "4.7.1", "Too many messages from this user in the last hour, try again later"};
    const struct smtp_status *st = NULL;
    struct smtp_path path;
    struct smtp_mail_params mp;
    path.addr[0] = '\0';
    const char *end = NULL;

    if (!s->greeted)
        st = &need_helo;
    else if (s->tx.active)
        st = &nested;
    else if (s->role != ROLE_MX && !s->auth_user)
        st = &need_auth;
    else if (!strip_prefix(&arg, &len, "FROM:"))
        st = &syntax;
    if (!st)
        st = smtp_path_parse(arg, len, SMTP_PATH_REVERSE, true, &path, &end);
    bool parsed = !st;
    if (!st) {
        size_t rest = len - (size_t)(end - arg);
        skip_spaces(&end, &rest);
        struct smtp_ext ext = session_ext(s);
        st = smtp_mail_params_parse(end, rest, &ext, &mp);
    }
    if (!st && path.utf8 && !mp.smtputf8)
        st = &need_utf8;
    if (!st && mp.has_size && mp.size > s->cfg->message_size_limit)
        st = &st_too_big;
    if (!st && s->auth_user && !sender_login_allows(s->env->deps->senders, s->auth_user, path.addr))
        st = &not_owned;
    if (!st && s->auth_user && s->cfg->user_message_rate &&
        rate_get(s->env->user_rates, s->auth_user, now_real_us() / 1000000).a >=
            s->cfg->user_message_rate)
        st = &rate_messages;
    if (st) {
        if (s->auth_user)
            log_info("sid=%s event=reject client=%s cmd=MAIL user=%s from=<%s> "
                     "reply=\"%d %s %s\"",
                     s->id, s->client, s->auth_user, parsed ? path.addr : "", st->code, st->enh,
                     st->text);
        else
            log_reject(s, "MAIL", st);
        reply_status(s, st);
        return;
    }
    /* AUTH= (RFC 4954 §5) names the original submitter for a relay; as the first
       hop we know who authenticated, and keep that, whatever the client says. */
    if (s->auth_user)
        rate_add(s->env->user_rates, s->auth_user, now_real_us() / 1000000, 1, 0);
    s->tx.active = true;
    s->tx.sender = xstrdup(path.addr);
    s->tx.mp = mp;
    enum msgauth_mode mode = s->auth_user || s->trusted            ? MSGAUTH_SIGN
                             : s->role == ROLE_MX && !s->unchecked ? MSGAUTH_VERIFY
                                                                   : MSGAUTH_NONE;
    const struct msgauth_ctx *mctx = s->env->deps->mailauth;
    if (mctx && mode != MSGAUTH_NONE) {
        struct msgauth_params mpar = {s->id, s->client, s->helo, path.addr};
        s->tx.auth = msgauth_new(mctx, s->cfg, mode, &mpar, session_on_auth, s);
        if (s->cfg->spf_fail_action == CONFIG_SPF_FAIL_REJECT && msgauth_spf_pending(s->tx.auth)) {
            /* the reply waits for SPF (session_on_auth) */
            s->tx.mail_waits = true;
            session_set_state(s, SESSION_CHECK);
            return;
        }
    }
    mail_reply(s);
}

/* The reply to an accepted MAIL: 250, or 550 5.7.23 when SPF failed and
   spf_fail_action = reject (RFC 7372 §3.2). */
static void mail_reply(struct session *s)
{
    char text[400];
    const struct smtp_status *st =
        s->tx.auth ? msgauth_spf_refusal(s->tx.auth, text, sizeof text) : NULL;
    if (st) {
        log_info("sid=%s event=reject client=%s cmd=MAIL from=<%s> reply=\"%d %s %s\"", s->id,
                 s->client, s->tx.sender, st->code, st->enh, st->text);
        reply_status(s, st);
        tx_reset(s);
        return;
    }
    reply(s, 250, "2.1.0", "Ok");
}

/* Mail authentication made progress (from the event loop): go on where the
   session waits for it. */
static void session_on_auth(void *arg)
{
    struct session *s = arg;
    struct tx *t = &s->tx;
    if (s->state != SESSION_CHECK || !t->auth)
        return;
    if (t->mail_waits) {
        if (msgauth_spf_pending(t->auth))
            return;
        t->mail_waits = false;
        session_set_state(s, SESSION_CMD);
        mail_reply(s);
        session_resume(s);
        return;
    }
    if (!msgauth_done(t->auth))
        return;
    session_set_state(s, SESSION_CMD);
    tx_commit(s);
    if (s->state == SESSION_CMD)
        session_resume(s);
}

/* The most the recipients of one transaction may take in its spool envelope
   (RECORD_ENVELOPE_MAX, 16 MiB, bounds the whole record): past it RCPT gets
   452 4.5.3, so a message is never accepted that the spool cannot store. The
   half kept back is room for the rest of the envelope and the estimate. */
#define ENVELOPE_RCPT_BUDGET (RECORD_ENVELOPE_MAX / 2)
/* Octets of one recipient in the envelope besides its strings (index, state,
   attempts, next attempt, notify, lengths of the strings and of the status). */
#define ENVELOPE_RCPT_FIXED 64

/* Record a delivery address unless the transaction already has it. */
static void tx_add_rcpt(struct tx *t, char *addr, const char *given, unsigned notify,
                        const char *orcpt)
{
    for (size_t i = 0; i < t->nrcpt; i++) {
        if (strcmp(t->rcpt[i].addr, addr) == 0) {
            free(addr);
            return;
        }
    }
    if (t->nrcpt == t->rcpt_cap) {
        t->rcpt_cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
        t->rcpt = xreallocarray(t->rcpt, t->rcpt_cap, sizeof *t->rcpt);
    }
    struct tx_rcpt *r = &t->rcpt[t->nrcpt++];
    r->addr = addr;
    r->orig = strcmp(addr, given) != 0 ? xstrdup(given) : NULL;
    r->notify = notify;
    r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
    t->env_bytes += ENVELOPE_RCPT_FIXED + strlen(addr) + (r->orig ? strlen(given) : 0) +
                    (orcpt ? strlen(orcpt) : 0);
}

static void cmd_rcpt(struct session *s, const char *arg, size_t len)
{
    static const struct smtp_status need_mail = {503, "5.5.1", "Need MAIL command"};
    static const struct smtp_status syntax = {501, "5.5.4", "Syntax: RCPT TO:<address>"};
    static const struct smtp_status too_many = {452, "4.5.3", "Too many recipients"};
    static const struct smtp_status need_utf8 = {
        553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter"};
    static const struct smtp_status null_rcpt = {501, "5.1.3", "Null recipient not allowed"};
    static const struct smtp_status after_bdat = {503, "5.5.1",
                                                  "RCPT not allowed after BDAT content"};
    static const struct smtp_status rate_rcpts = {
        450, "4.7.1", "Too many recipients from this user in the last hour, try again later"};
    const struct smtp_status *st = NULL;
    struct smtp_path path;
    struct smtp_rcpt_params rp;
    const char *end = NULL;
    path.addr[0] = '\0'; /* logged even when parsing did not get that far */

    if (!s->tx.active)
        st = &need_mail;
    else if (s->tx.has_qid)
        st = &after_bdat;
    else if (!strip_prefix(&arg, &len, "TO:"))
        st = &syntax;
    if (!st)
        st = smtp_path_parse(arg, len, SMTP_PATH_FORWARD, true, &path, &end);
    if (!st && path.null)
        st = &null_rcpt;
    if (!st) {
        size_t rest = len - (size_t)(end - arg);
        skip_spaces(&end, &rest);
        struct smtp_ext ext = session_ext(s);
        st = smtp_rcpt_params_parse(end, rest, &ext, &rp);
    }
    if (!st && path.utf8 && !s->tx.mp.smtputf8)
        st = &need_utf8;
    if (!st && s->tx.rcpt_cmds >= s->cfg->max_recipients)
        st = &too_many;
    if (!st && s->auth_user && s->cfg->user_recipient_rate &&
        rate_get(s->env->user_rates, s->auth_user, now_real_us() / 1000000).b >=
            s->cfg->user_recipient_rate)
        st = &rate_rcpts;
    char *leaves[POLICY_MAX_LEAVES];
    size_t nleaves = 0;
    if (!st)
        st = policy_rcpt(s->cfg, s->aliases, &path, s->trusted || s->auth_user, leaves, &nleaves);
    if (!st) {
        size_t add = 0;
        for (size_t i = 0; i < nleaves; i++)
            add += ENVELOPE_RCPT_FIXED + strlen(leaves[i]) + strlen(path.addr) +
                   (rp.has_orcpt ? strlen(rp.orcpt) : 0);
        if (s->tx.env_bytes + add > ENVELOPE_RCPT_BUDGET) {
            log_warn("sid=%s event=envelope_full client=%s recipients=%zu bytes=%zu", s->id,
                     s->client, s->tx.nrcpt, s->tx.env_bytes);
            st = &too_many;
            for (size_t i = 0; i < nleaves; i++)
                free(leaves[i]);
            nleaves = 0;
        }
    }
    if (st) {
        log_info("sid=%s event=reject client=%s cmd=RCPT from=<%s> to=<%s> reply=\"%d %s %s\"",
                 s->id, s->client, s->tx.sender ? s->tx.sender : "", path.addr, st->code, st->enh,
                 st->text);
        reply_status(s, st);
        return;
    }
    for (size_t i = 0; i < nleaves; i++)
        tx_add_rcpt(&s->tx, leaves[i], path.addr, rp.notify, rp.has_orcpt ? rp.orcpt : NULL);
    if (!s->tx.first_rcpt)
        s->tx.first_rcpt = xstrdup(path.addr);
    s->tx.rcpt_cmds++;
    if (s->auth_user)
        rate_add(s->env->user_rates, s->auth_user, now_real_us() / 1000000, 0, 1);
    reply(s, 250, "2.1.5", "Ok");
}

static void cmd_data(struct session *s, const char *arg, size_t len)
{
    if (len != 0) {
        reply(s, 501, "5.5.4", "Syntax: DATA (no parameters)");
        return;
    }
    if (!s->tx.active) {
        reply(s, 503, "5.5.1", "Need MAIL command");
        return;
    }
    if (s->tx.bdat || s->tx.has_qid) {
        reply(s, 503, "5.5.1", "DATA not allowed after BDAT in the same transaction");
        return;
    }
    if (s->tx.nrcpt == 0) {
        reply(s, 554, "5.5.1", "No valid recipients");
        return;
    }
    /* RFC 2920 §3.1: DATA ends a pipelined group; content before our 354 is an
       attack or a broken client (Postfix smtpd_forbid_unauth_pipelining). */
    if (ev_conn_input_len(s->conn) > 0) {
        log_info("sid=%s event=reject client=%s cmd=DATA reason=unauth_pipelining", s->id,
                 s->client);
        tx_reset(s);
        session_close_with(s, 554, "5.5.0",
                           "Error: SMTP protocol synchronization: data sent before the 354 reply");
        return;
    }
    tx_begin_content(s, false);
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    session_set_state(s, SESSION_DATA);
}

static void cmd_bdat(struct session *s, const char *arg, size_t len)
{
    static const struct smtp_status need_mail = {503, "5.5.1", "Need MAIL command"};
    static const struct smtp_status no_rcpt = {554, "5.5.1", "No valid recipients"};
    uint64_t size;
    bool last;
    const struct smtp_status *st = smtp_bdat_parse(arg, len, &size, &last);
    if (st) {
        reply_status(s, st);
        return;
    }
    /* RFC 3030 §2: the chunk is read in full, whether it is accepted or not. */
    s->chunk_error = NULL;
    if (!s->tx.active)
        s->chunk_error = &need_mail;
    else if (s->tx.nrcpt == 0)
        s->chunk_error = &no_rcpt;
    else if (!s->tx.has_qid)
        tx_begin_content(s, true);
    s->bdat_left = size;
    s->bdat_last = last;
    session_set_state(s, SESSION_BDAT);
}

/* The current BDAT chunk has been read in full. */
static void bdat_chunk_done(struct session *s)
{
    struct tx *t = &s->tx;
    session_set_state(s, SESSION_CMD);
    if (s->chunk_error) {
        log_reject(s, "BDAT", s->chunk_error);
        reply_status(s, s->chunk_error);
        s->chunk_error = NULL;
        if (s->bdat_last)
            tx_reset(s);
        return;
    }
    if (t->too_big) {
        log_reject(s, "BDAT", &st_too_big);
        reply_status(s, &st_too_big);
        tx_reset(s);
        return;
    }
    if (!s->bdat_last) {
        reply(s, 250, "2.0.0", "Ok: %" PRIu64 " octets received", t->content);
        return;
    }
    size_t n;
    smtp_data_finish(&t->dec, feed_out, &n);
    tx_content(s, feed_out, n, true);
    tx_end_content(s);
}

static void cmd_rset(struct session *s, const char *arg, size_t len)
{
    tx_reset(s);
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct session *s, const char *arg, size_t len)
{
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct session *s, const char *arg, size_t len)
{
    session_close_with(s, 221, "2.0.0", "Bye");
}

static void cmd_vrfy(struct session *s, const char *arg, size_t len)
{
    if (len == 0) {
        reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct session *s, const char *arg, size_t len)
{
    reply(s, 502, "5.5.1", "EXPN not available");
}

static void cmd_help(struct session *s, const char *arg, size_t len)
{
    reply(s, 214, "2.0.0",
          "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT\n"
          "See RFC 5321; send mail for %s",
          s->cfg->local_domains.n ? s->cfg->local_domains.v[0] : s->cfg->hostname);
}

static void cmd_ehlo(struct session *s, const char *arg, size_t len)
{
    cmd_helo(s, arg, len, true);
}

static void cmd_helo_only(struct session *s, const char *arg, size_t len)
{
    cmd_helo(s, arg, len, false);
}

/* RFC 3207. */
static void cmd_starttls(struct session *s, const char *arg, size_t len)
{
    struct tls_server *tls = s->env->deps->tls;
    if (s->tls) {
        reply(s, 554, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!tls || s->role == ROLE_SUBMISSIONS) {
        reply(s, 502, "5.5.1", "Command not implemented");
        return;
    }
    if (len != 0) {
        reply(s, 501, "5.5.4", "Syntax: STARTTLS (no parameters)");
        return;
    }
    if (s->tx.active) {
        reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
        return;
    }
    reply(s, 220, "2.0.0", "Ready to start TLS");
    /* Whatever the client sent after STARTTLS was sent in plaintext, before the
       handshake: it is dropped, never read as if it came through TLS. */
    size_t discarded = ev_conn_start_tls(s->conn, tls_server_ssl_new(tls));
    if (discarded)
        log_warn("sid=%s event=starttls client=%s discarded=%zu note=plaintext_after_starttls",
                 s->id, s->client, discarded);
    else
        log_info("sid=%s event=starttls client=%s discarded=0", s->id, s->client);
    s->tls = true;
    /* RFC 3207 §4.2: forget everything learnt before TLS. */
    tx_reset(s);
    s->greeted = false;
    s->esmtp = false;
    s->helo[0] = '\0';
}

/* A login or mechanism name as sent, made safe for one log field. */
static void log_safe(char *out, size_t outlen, const char *in)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen && i < 64; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c > 32 && c < 127 && c != '"' && c != '\\' ? (char)c : '?';
    }
    out[i] = '\0';
}

static void auth_work(void *arg)
{
    struct session *s = arg;
    sasl_check_password(s->sasl);
}

static void auth_result(struct session *s, enum sasl_status st, const char *challenge);

/* The password check is over (loop thread). */
static void auth_checked(void *arg)
{
    struct session *s = arg;
    s->auth_busy = false;
    if (s->dead) {
        session_free(s);
        return;
    }
    auth_result(s, sasl_finish(s->sasl), NULL);
    if (s->state == SESSION_CMD)
        session_resume(s);
}

/* The reply to a failed AUTH: 535, or 421 past the limits. */
static void auth_reply_failure(struct session *s)
{
    metrics_inc(M_AUTH_FAILURES, s->role, 0);
    if (s->auth_close) {
        session_close_with(s, 421, "4.7.0", "Too many authentication failures, closing connection");
        return;
    }
    reply(s, 535, "5.7.8", "Error: authentication failed");
    session_set_state(s, SESSION_CMD);
}

/* The delay before that reply is over. */
static void auth_delay_done(void *arg)
{
    struct session *s = arg;
    auth_reply_failure(s);
    if (s->state == SESSION_CMD)
        session_resume(s);
}

static void auth_failed(struct session *s)
{
    char user[80], mech[32];
    log_safe(user, sizeof user, sasl_login(s->sasl));
    log_safe(mech, sizeof mech, sasl_mech_name(sasl_session_mech(s->sasl)));
    s->auth_failures++;
    uint64_t client_failures =
        rate_add(s->env->auth_failures, s->client, now_real_us() / 1000000, 1, 0).a;
    /* One line per failure that fail2ban can match: "event=auth_failed client=<HOST>". */
    log_warn("sid=%s event=auth_failed client=%s mech=%s user=%s failures=%zu "
             "client_failures=%" PRIu64,
             s->id, s->client, mech, user[0] ? user : "-", s->auth_failures, client_failures);
    sasl_free(s->sasl);
    s->sasl = NULL;
    s->auth_close = s->auth_failures >= s->cfg->auth_max_failures ||
                    client_failures >= s->cfg->auth_client_max_failures;
    size_t delay = 0;
    if (s->auth_failures > s->cfg->auth_delay_after)
        delay = s->auth_failures - s->cfg->auth_delay_after;
    if (delay > AUTH_DELAY_MAX)
        delay = AUTH_DELAY_MAX;
    if (s->auth_close)
        log_warn("sid=%s event=auth_limit client=%s failures=%zu client_failures=%" PRIu64, s->id,
                 s->client, s->auth_failures, client_failures);
    if (delay == 0) {
        auth_reply_failure(s);
        return;
    }
    session_set_state(s, SESSION_AUTH_WAIT);
    ev_timer_start(s->auth_delay, (uint64_t)delay * 1000);
}

/* Act on what the SASL exchange says. challenge: for SASL_CONTINUE. */
static void auth_result(struct session *s, enum sasl_status st, const char *challenge)
{
    char user[80], mech[32];
    switch (st) {
    case SASL_CONTINUE:
        reply(s, 334, NULL, "%s", challenge);
        session_set_state(s, SESSION_AUTH);
        return;
    case SASL_CHECK_PASSWORD:
        session_set_state(s, SESSION_AUTH_WAIT);
        s->auth_busy = true;
        ev_workers_submit(s->env->deps->auth_workers, auth_work, auth_checked, s);
        return;
    case SASL_SUCCESS:
        s->auth_user = xstrdup(sasl_login(s->sasl));
        log_safe(user, sizeof user, s->auth_user);
        log_safe(mech, sizeof mech, sasl_mech_name(sasl_session_mech(s->sasl)));
        log_info("sid=%s event=auth_ok client=%s mech=%s user=%s", s->id, s->client, mech, user);
        sasl_free(s->sasl);
        s->sasl = NULL;
        reply(s, 235, "2.7.0", "Authentication successful");
        session_set_state(s, SESSION_CMD);
        return;
    case SASL_FAILED:
        auth_failed(s);
        return;
    case SASL_MALFORMED:
        sasl_free(s->sasl);
        s->sasl = NULL;
        log_info("sid=%s event=reject client=%s cmd=AUTH reason=malformed_response", s->id,
                 s->client);
        reply(s, 501, "5.5.2", "Error: malformed authentication response (bad base64 or syntax)");
        session_set_state(s, SESSION_CMD);
        return;
    case SASL_CANCELLED:
        sasl_free(s->sasl);
        s->sasl = NULL;
        reply(s, 501, "5.7.0", "Authentication cancelled");
        session_set_state(s, SESSION_CMD);
        return;
    }
}

/* RFC 4954 §4. */
static void cmd_auth(struct session *s, const char *arg, size_t len)
{
    const struct userdb *db = s->env->deps->users;
    if ((s->role == ROLE_MX && !s->cfg->mx_auth) || !db) {
        reply(s, 502, "5.5.1", "Command not implemented");
        return;
    }
    if (!s->tls_ready && !(s->cfg->auth_plaintext_loopback && s->loopback)) {
        reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return;
    }
    if (!s->esmtp) {
        reply(s, 503, "5.5.1", "Error: send EHLO first");
        return;
    }
    if (s->auth_user) {
        reply(s, 503, "5.5.1", "Error: already authenticated");
        return;
    }
    if (s->tx.active) {
        reply(s, 503, "5.5.1", "Error: AUTH not allowed during a mail transaction");
        return;
    }
    const char *sp = memchr(arg, ' ', len);
    size_t mlen = sp ? (size_t)(sp - arg) : len;
    const char *initial = sp ? sp + 1 : NULL;
    size_t ilen = sp ? len - mlen - 1 : 0;
    if (mlen == 0 || (initial && (ilen == 0 || memchr(initial, ' ', ilen)))) {
        reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    enum sasl_mech mech;
    if (!sasl_mech_parse(arg, mlen, &mech) || (mech == SASL_CRAM_MD5 && !userdb_any_cram(db)) ||
        (mech == SASL_SCRAM_SHA_256 && !userdb_any_scram(db))) {
        reply(s, 504, "5.5.4", "Unrecognized authentication type");
        return;
    }
    uint64_t client_failures =
        rate_get(s->env->auth_failures, s->client, now_real_us() / 1000000).a;
    if (client_failures >= s->cfg->auth_client_max_failures) {
        log_warn("sid=%s event=auth_blocked client=%s client_failures=%" PRIu64, s->id, s->client,
                 client_failures);
        session_close_with(s, 421, "4.7.0",
                           "Too many authentication failures from your address, try later");
        return;
    }
    char challenge[SASL_MAX_CHALLENGE];
    s->sasl = sasl_new(mech, s->cfg->hostname, (const struct sockaddr *)&s->sa);
    enum sasl_status st = sasl_start(s->sasl, db, initial, ilen, challenge, sizeof challenge);
    /* SASL responses may be longer than commands (RFC 4954 §4); arg points into
       the line buffer, so it grows only now that the initial response is read. */
    if (st == SASL_CONTINUE && s->line_cap < SASL_MAX_LINE + 3) {
        s->line_cap = SASL_MAX_LINE + 3;
        free(s->line);
        s->line = xmalloc(s->line_cap);
    }
    auth_result(s, st, challenge);
}

/* One SASL response line (SESSION_AUTH). */
static void session_auth_line(struct session *s, const char *line, size_t len)
{
    char challenge[SASL_MAX_CHALLENGE];
    const struct userdb *db = s->env->deps->users;
    if (!db) { /* the store went away on reload */
        sasl_free(s->sasl);
        s->sasl = NULL;
        reply(s, 454, "4.7.0", "Temporary authentication failure");
        session_set_state(s, SESSION_CMD);
        return;
    }
    enum sasl_status st = sasl_step(s->sasl, db, line, len, challenge, sizeof challenge);
    auth_result(s, st, challenge);
}

/* The command table: verb, name for logs, handler, and whether it is "junk"
   (does not move a transaction forward, counted against max_junk_commands). */
static const struct command {
    enum smtp_verb verb;
    const char *name;
    void (*proceed)(struct session *s, const char *arg, size_t len);
    bool junk;
} commands[] = {
    {SMTP_VERB_EHLO, "EHLO", cmd_ehlo, true},
    {SMTP_VERB_HELO, "HELO", cmd_helo_only, true},
    {SMTP_VERB_MAIL, "MAIL", cmd_mail, false},
    {SMTP_VERB_RCPT, "RCPT", cmd_rcpt, false},
    {SMTP_VERB_DATA, "DATA", cmd_data, false},
    {SMTP_VERB_BDAT, "BDAT", cmd_bdat, false},
    {SMTP_VERB_RSET, "RSET", cmd_rset, true},
    {SMTP_VERB_NOOP, "NOOP", cmd_noop, true},
    {SMTP_VERB_QUIT, "QUIT", cmd_quit, false},
    {SMTP_VERB_VRFY, "VRFY", cmd_vrfy, true},
    {SMTP_VERB_EXPN, "EXPN", cmd_expn, true},
    {SMTP_VERB_HELP, "HELP", cmd_help, true},
    {SMTP_VERB_STARTTLS, "STARTTLS", cmd_starttls, true},
    {SMTP_VERB_AUTH, "AUTH", cmd_auth, true},
};

static void session_command(struct session *s, const char *line, size_t len)
{
    struct smtp_cmd cmd;
    s->commands++;
    const struct smtp_status *st = smtp_cmd_parse(line, len, &cmd);
    if (st) {
        log_info("sid=%s event=reject client=%s cmd=unknown reply=\"%d %s %s\"", s->id, s->client,
                 st->code, st->enh, st->text);
        reply_status(s, st);
    } else {
        const struct command *c = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (commands[i].verb == cmd.verb)
                c = &commands[i];
        if (!c) {
            reply(s, 500, "5.5.1", "Command unrecognized");
        } else {
            log_debug("sid=%s event=command cmd=%s", s->id, c->name);
            if (c->junk)
                s->junk++;
            c->proceed(s, cmd.arg, cmd.arg_len);
        }
    }
    if (s->state == SESSION_CLOSING)
        return;
    if (s->errors >= s->cfg->max_errors) {
        log_info("sid=%s event=error_limit client=%s errors=%zu", s->id, s->client, s->errors);
        tx_reset(s);
        session_close_with(s, 421, "4.7.0", "Too many errors, closing connection");
    } else if (s->junk > s->cfg->max_junk_commands) {
        log_info("sid=%s event=junk_limit client=%s commands=%zu", s->id, s->client, s->junk);
        tx_reset(s);
        session_close_with(s, 421, "4.7.0", "Too many commands without progress");
    }
}

/* ---- input -------------------------------------------------------------------- */

/* Feed buffered DATA/BDAT content to the decoder; limit bounds BDAT chunks. */
static bool session_read_content(struct session *s)
{
    struct tx *t = &s->tx;
    for (;;) {
        size_t len;
        const uint8_t *p = ev_conn_input_first(s->conn, &len);
        if (!p)
            return false;
        if (len > FEED_SIZE)
            len = FEED_SIZE;
        if (s->state == SESSION_BDAT) {
            if (len > s->bdat_left)
                len = (size_t)s->bdat_left;
            if (len == 0)
                return true;
            if (!s->chunk_error) {
                size_t consumed, out_len;
                smtp_data_feed(&t->dec, p, len, &consumed, feed_out, &out_len);
                tx_content(s, feed_out, out_len, true);
                len = consumed;
            }
            ev_conn_input_drain(s->conn, len);
            s->bdat_left -= len;
            if (s->bdat_left == 0)
                return true;
        } else {
            size_t consumed, out_len;
            bool ended = smtp_data_feed(&t->dec, p, len, &consumed, feed_out, &out_len);
            tx_content(s, feed_out, out_len, true);
            ev_conn_input_drain(s->conn, consumed);
            if (ended)
                return true;
        }
    }
}

static void session_process(struct session *s)
{
    while (!s->dead) {
        switch (s->state) {
        case SESSION_CMD:
        case SESSION_AUTH: {
            if (ev_conn_output_len(s->conn) >= MAX_OUTPUT) {
                if (!s->output_full) {
                    log_info("sid=%s event=output_full client=%s octets=%zu", s->id, s->client,
                             ev_conn_output_len(s->conn));
                    /* on_drain goes on; a client that takes nothing meets idle_timeout */
                    s->output_full = true;
                    ev_conn_set_write_timeout(s->conn, s->cfg->idle_timeout);
                }
                return;
            }
            bool auth = s->state == SESSION_AUTH;
            size_t max = auth ? SASL_MAX_LINE + 2 : s->cfg->max_command_line;
            long i = ev_conn_input_find(s->conn, '\n', max);
            if (i < 0) {
                if (ev_conn_input_len(s->conn) >= max) {
                    log_info("sid=%s event=reject client=%s reason=line_too_long", s->id,
                             s->client);
                    if (auth) {
                        sasl_free(s->sasl);
                        s->sasl = NULL;
                        reply(s, 501, "5.5.2", "Error: authentication response too long");
                    } else {
                        reply(s, 500, "5.5.2", "Line too long");
                    }
                    session_set_state(s, SESSION_SKIP);
                    if (s->errors >= s->cfg->max_errors)
                        session_close_with(s, 421, "4.7.0", "Too many errors, closing connection");
                    continue;
                }
                return;
            }
            size_t n = (size_t)i + 1;
            ev_conn_input_peek(s->conn, s->line, n);
            ev_conn_input_drain(s->conn, n);
            n--; /* LF */
            if (n > 0 && s->line[n - 1] == '\r') {
                n--;
            } else if (s->cfg->bare_newline == SMTP_NEWLINE_REJECT || auth) {
                /* RFC 5321 §2.3.8: lines end in CRLF; a bare LF is how smuggling
                   starts, so it is refused in commands as in content. */
                s->commands++;
                log_info("sid=%s event=reject client=%s reason=bare_lf_in_command", s->id,
                         s->client);
                if (auth) {
                    sasl_free(s->sasl);
                    s->sasl = NULL;
                    session_set_state(s, SESSION_CMD);
                }
                reply(s, 500, "5.5.2", "Syntax error: command line ended in a bare <LF>");
                if (s->errors >= s->cfg->max_errors)
                    session_close_with(s, 421, "4.7.0", "Too many errors, closing connection");
                break;
            }
            s->line[n] = '\0';
            if (auth)
                session_auth_line(s, s->line, n);
            else
                session_command(s, s->line, n);
            break;
        }
        case SESSION_SKIP: {
            size_t avail = ev_conn_input_len(s->conn);
            long i = ev_conn_input_find(s->conn, '\n', avail);
            if (i < 0) {
                ev_conn_input_drain(s->conn, avail);
                return;
            }
            ev_conn_input_drain(s->conn, (size_t)i + 1);
            session_set_state(s, SESSION_CMD);
            break;
        }
        case SESSION_DATA:
            if (!session_read_content(s))
                return;
            session_set_state(s, SESSION_CMD);
            tx_end_content(s);
            break;
        case SESSION_BDAT:
            if (s->bdat_left > 0 && !session_read_content(s))
                return;
            bdat_chunk_done(s);
            break;
        case SESSION_COMMIT:
        case SESSION_CLOSING:
        case SESSION_AUTH_WAIT:
        case SESSION_CHECK:
            return;
        }
    }
}

/* ---- connection events ---------------------------------------------------------- */

static void on_read(void *arg)
{
    session_process(arg);
}

/* Something runs that will call back into this session: it must outlive it. */
static bool session_awaited(const struct session *s)
{
    return s->state == SESSION_COMMIT || s->auth_busy;
}

static void on_close(void *arg)
{
    struct session *s = arg;
    if (s->tls && !s->tls_ready) {
        char why[256];
        ev_conn_tls_error(s->conn, why, sizeof why);
        log_info("sid=%s event=tls_failed client=%s reason=\"%s\"", s->id, s->client, why);
        metrics_inc(M_TLS_HANDSHAKES, METRICS_INBOUND, METRICS_FAILED);
        metrics_inc(M_CONNECTIONS, s->role, METRICS_CONN_TLS_FAILED);
    }
    if (session_awaited(s)) {
        /* The callback frees us; the connection goes now. */
        s->dead = true;
        ev_conn_free(s->conn);
        s->conn = NULL;
        return;
    }
    session_free(s);
}

static void on_timeout(void *arg)
{
    struct session *s = arg;
    if (s->state == SESSION_COMMIT || s->state == SESSION_AUTH_WAIT || s->state == SESSION_CHECK) {
        /* The client is waiting for us, not idle: reading resumes after the step. */
        s->read_stopped = true;
        return;
    }
    log_info("sid=%s event=timeout client=%s state=%s", s->id, s->client, state_names[s->state]);
    tx_reset(s);
    session_close_with(s, 421, "4.4.2", "Error: timeout exceeded");
}

static void on_lifetime(void *arg)
{
    struct session *s = arg;
    if (s->state == SESSION_COMMIT || s->state == SESSION_AUTH_WAIT || s->state == SESSION_CHECK) {
        s->expired = true; /* closed once the step has its reply */
        return;
    }
    log_info("sid=%s event=session_time_limit client=%s", s->id, s->client);
    tx_reset(s);
    session_close_with(s, 421, "4.4.2", "Error: session time limit exceeded");
}

static void on_tls_ready(void *arg)
{
    struct session *s = arg;
    s->tls_ready = ev_conn_tls_info(s->conn, &s->tlsinfo);
    metrics_inc(M_TLS_HANDSHAKES, METRICS_INBOUND, METRICS_OK);
    log_info("sid=%s event=tls client=%s version=%s cipher=%s bits=%d", s->id, s->client,
             s->tlsinfo.version, s->tlsinfo.cipher, s->tlsinfo.bits);
}

/* The queued replies are sent: commands left unread for MAX_OUTPUT go on. */
static void on_drain(void *arg)
{
    struct session *s = arg;
    if (!s->output_full)
        return;
    s->output_full = false;
    ev_conn_set_write_timeout(s->conn, 0);
    if (s->state == SESSION_CMD || s->state == SESSION_AUTH)
        session_process(s);
}

static const struct ev_conn_ops conn_ops = {on_read,      on_close, on_timeout,
                                            on_tls_ready, NULL,     on_drain};

static bool sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

struct session *session_new(const struct session_env *env, int fd, const struct sockaddr *sa,
                            socklen_t salen, enum config_role role, const char *client)
{
    const struct config *cfg = env->deps->cfg;
    struct session *s = xcalloc(1, sizeof *s);
    s->env = env;
    s->cfg = cfg;
    s->aliases = env->deps->aliases;
    s->role = role;
    s->state = SESSION_CMD;
    s->started_ms = now_mono_ms();
    snprintf(s->id, sizeof s->id, "%08" PRIX64, ++session_counter);
    snprintf(s->client, sizeof s->client, "%s", client);
    if (salen <= sizeof s->sa)
        memcpy(&s->sa, sa, salen);
    s->loopback = sockaddr_is_loopback(sa);
    s->trusted = config_is_trusted(cfg, sa);
    s->unchecked = config_is_mailauth_skipped(cfg, sa);
    s->line_cap = cfg->max_command_line + 1;
    s->line = xmalloc(s->line_cap);
    if (role == ROLE_SUBMISSIONS && env->deps->tls) {
        s->tls = true;
        s->conn = ev_conn_new_tls(env->deps->loop, fd, &conn_ops, s, MAX_INPUT,
                                  tls_server_ssl_new(env->deps->tls));
    } else {
        s->conn = ev_conn_new(env->deps->loop, fd, &conn_ops, s, MAX_INPUT);
    }
    ev_conn_set_timeout(s->conn, cfg->idle_timeout);
    s->lifetime = ev_timer_new(env->deps->loop, on_lifetime, s);
    s->rate = ev_timer_new(env->deps->loop, on_rate, s);
    ev_timer_start(s->lifetime, (uint64_t)cfg->session_timeout * 1000);
    s->auth_delay = ev_timer_new(env->deps->loop, auth_delay_done, s);
    log_info("sid=%s event=connect client=%s listener=%s trusted=%s", s->id, s->client,
             config_role_name(role), s->trusted ? "yes" : "no");
    reply(s, 220, NULL, "%s ESMTP Tern", cfg->hostname);
    return s;
}

static void session_free(struct session *s)
{
    log_info("sid=%s event=disconnect client=%s commands=%zu messages=%zu errors=%zu "
             "duration_ms=%" PRId64,
             s->id, s->client, s->commands, s->messages, s->errors, now_mono_ms() - s->started_ms);
    tx_reset(s);
    ev_conn_free(s->conn);
    ev_timer_free(s->lifetime);
    ev_timer_free(s->rate);
    ev_timer_free(s->auth_delay);
    sasl_free(s->sasl);
    free(s->auth_user);
    free(s->line);
    s->env->gone(s->env->srv, s, s->client);
    free(s);
}

void session_shutdown(struct session *s)
{
    s->shutting_down = true;
    if ((s->state == SESSION_CMD || s->state == SESSION_AUTH) && !s->tx.active && !s->dead)
        session_close_with(s, 421, "4.3.2", "Service shutting down, closing transmission channel");
}

void session_abort(struct session *s)
{
    if (session_awaited(s)) {
        s->shutting_down = true;
        return;
    }
    session_free(s);
}
