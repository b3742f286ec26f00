/*
 * session - the inbound SMTP session state machine.
 *
 * Implements the server side of RFC 5321 (§3 procedures, §4.1 commands, §4.4
 * trace information, §4.5.3 limits) with RFC 2920 PIPELINING, RFC 1870 SIZE,
 * RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2034 ENHANCEDSTATUSCODES, RFC 3030
 * CHUNKING and RFC 3461 DSN parameters. Parsing is done by src/smtp (pure);
 * this file decides, replies and talks to the spool.
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
 * Ownership: a session owns its connection, transaction and timers; the
 * server owns the session list. A session whose connection closes while a
 * commit is in flight stays alive (dead = true) until the commit callback.
 */
#include "server/session.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"
#include "sched/sched.h"
#include "server/policy.h"
#include "smtp/smtp.h"
#include "spool/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Content is appended to the spool in pieces of this size. */
#define APPEND_SIZE 65536
/* Octets of input decoded per step. */
#define FEED_SIZE 32768
/* Input buffered per connection before reading pauses. */
#define MAX_INPUT (256 * 1024)

enum session_state {
    SESSION_CMD,     /* reading command lines */
    SESSION_SKIP,    /* discarding the rest of an over-long command line */
    SESSION_DATA,    /* reading DATA content up to CRLF.CRLF */
    SESSION_BDAT,    /* reading the octets of a BDAT chunk */
    SESSION_COMMIT,  /* reading paused: the spool is making the message durable */
    SESSION_CLOSING, /* last reply sent; output flushing, then close */
};

static const char *const state_names[] = {"cmd", "skip", "data", "bdat", "commit", "closing"};

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
    char *first_rcpt; /* first recipient as given, for the Received "for" clause */
    bool has_qid;     /* content started: qid allocated, chunks may be on disk */
    spool_id qid;
    bool bdat;                /* content arrives by BDAT */
    struct smtp_data_dec dec; /* content decoder */
    struct buf pending;       /* decoded content not yet appended */
    uint64_t content;         /* octets the client sent (after unstuffing) */
    uint64_t stored;          /* octets appended to the spool (with Received) */
    bool too_big;             /* content passed message_size_limit */
    int spool_error;          /* errno of a failed append, or 0 */
};

struct session {
    struct session_link link; /* must be first: the server's list */
    const struct session_env *env;
    const struct config *cfg;
    struct ev_conn *conn;
    struct ev_timer *lifetime; /* session_timeout */
    enum config_role role;
    enum session_state state;
    char id[20];     /* session id for logs */
    char client[64]; /* client IP address as text */
    bool trusted;    /* client in trusted_networks */
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
    int64_t started_ms;
    char *line; /* command line buffer, max_command_line + 1 */
};

static uint64_t session_counter;
static uint8_t feed_out[2 * FEED_SIZE + 2];

static void session_process(struct session *s);
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
    int r = spool_append(s->env->deps->spool, t->qid, t->pending.data, t->pending.len);
    if (r < 0)
        t->spool_error = -r;
    else
        t->stored += t->pending.len;
    buf_reset(&t->pending);
}

/* Append decoded content: enforce the size limit and write full pieces. */
static void tx_content(struct session *s, const uint8_t *p, size_t n, bool from_client)
{
    struct tx *t = &s->tx;
    if (from_client) {
        t->content += n;
        if (t->content > s->cfg->message_size_limit)
            t->too_big = true;
    }
    if (t->too_big || t->spool_error || n == 0)
        return;
    if (buf_append(&t->pending, p, n) < 0)
        panic("content buffer overflow");
    if (t->pending.len >= APPEND_SIZE)
        tx_flush_pending(s);
}

/* Start the content of a message: queue id, decoder and the Received header
   (RFC 5321 §4.4). */
static void tx_begin_content(struct session *s, bool bdat)
{
    struct tx *t = &s->tx;
    t->qid = spool_new_id(s->env->deps->spool);
    t->has_qid = true;
    t->bdat = bdat;
    smtp_data_init(&t->dec, bdat, (enum smtp_newline)s->cfg->bare_newline, s->cfg->max_text_line,
                   s->cfg->max_header_count);
    buf_init(&t->pending, 2 * APPEND_SIZE + 2 * FEED_SIZE + 4096);

    char date[64];
    rfc5322_date(now_real_us() / 1000000, date, sizeof date);
    const char *proto = t->mp.smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";
    char h[1024 + 2 * SMTP_PATH_MAX];
    int n = snprintf(
        h, sizeof h,
        "Received: from %s ([%s])\r\n\tby %s (Tern) with %s id %016" PRIX64 "\r\n\t%s%s%s; %s\r\n",
        s->helo, s->client, s->cfg->hostname, proto, t->qid, t->nrcpt == 1 ? "for <" : "",
        t->nrcpt == 1 ? t->first_rcpt : "", t->nrcpt == 1 ? ">" : "", date);
    if (n < 0 || (size_t)n >= sizeof h)
        panic("Received header too long");
    tx_content(s, (const uint8_t *)h, (size_t)n, false);
}

static void session_committed(void *arg, spool_id id, int error);

/* End of the message content (CRLF.CRLF or BDAT LAST): check it, commit it. */
static void tx_end_content(struct session *s)
{
    struct tx *t = &s->tx;
    const struct smtp_status *st = smtp_data_status(&t->dec);
    if (!st && t->too_big)
        st = &st_too_big;
    if (!st && !t->spool_error && t->pending.len > 0)
        tx_flush_pending(s);
    if (!st && t->spool_error)
        st = t->spool_error == ENOSPC ? &st_no_space : &st_io_error;
    if (st) {
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
    env.auth_user = NULL;
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
    if (s->read_stopped) {
        s->read_stopped = false;
        ev_conn_pause(s->conn, false);
    }
    if (s->expired) {
        log_info("sid=%s event=session_time_limit client=%s", s->id, s->client);
        session_close_with(s, 421, "4.4.2", "Error: session time limit exceeded");
        return;
    }
    if (s->shutting_down) {
        session_close_with(s, 421, "4.3.2", "Service shutting down, closing transmission channel");
        return;
    }
    session_process(s);
}

/* ---- commands ---------------------------------------------------------------- */

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
    reply(s, 250, NULL,
          "%s\nPIPELINING\nSIZE %" PRIu64 "\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\n"
          "CHUNKING\nDSN",
          s->cfg->hostname, s->cfg->message_size_limit);
}

static struct smtp_ext session_ext(const struct session *s)
{
    struct smtp_ext e = {s->esmtp, s->esmtp, s->esmtp, s->esmtp};
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
    const struct smtp_status *st = NULL;
    struct smtp_path path;
    struct smtp_mail_params mp;
    const char *end = NULL;

    if (!s->greeted)
        st = &need_helo;
    else if (s->tx.active)
        st = &nested;
    else if (s->role != ROLE_MX)
        st = &need_auth;
    else if (!strip_prefix(&arg, &len, "FROM:"))
        st = &syntax;
    if (!st)
        st = smtp_path_parse(arg, len, SMTP_PATH_REVERSE, true, &path, &end);
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
    if (st) {
        log_reject(s, "MAIL", st);
        reply_status(s, st);
        return;
    }
    s->tx.active = true;
    s->tx.sender = xstrdup(path.addr);
    s->tx.mp = mp;
    reply(s, 250, "2.1.0", "Ok");
}

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
        t->rcpt = xrealloc(t->rcpt, t->rcpt_cap * sizeof *t->rcpt);
    }
    struct tx_rcpt *r = &t->rcpt[t->nrcpt++];
    r->addr = addr;
    r->orig = strcmp(addr, given) != 0 ? xstrdup(given) : NULL;
    r->notify = notify;
    r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
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
    char *leaves[POLICY_MAX_LEAVES];
    size_t nleaves = 0;
    if (!st)
        st = policy_rcpt(s->cfg, s->env->deps->aliases, &path, s->trusted, leaves, &nleaves);
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

static void cmd_not_offered(struct session *s, const char *arg, size_t len)
{
    reply(s, 502, "5.5.1", "Command not implemented");
}

static void cmd_ehlo(struct session *s, const char *arg, size_t len)
{
    cmd_helo(s, arg, len, true);
}

static void cmd_helo_only(struct session *s, const char *arg, size_t len)
{
    cmd_helo(s, arg, len, false);
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
    {SMTP_VERB_STARTTLS, "STARTTLS", cmd_not_offered, true},
    {SMTP_VERB_AUTH, "AUTH", cmd_not_offered, true},
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
        case SESSION_CMD: {
            size_t max = s->cfg->max_command_line;
            long i = ev_conn_input_find(s->conn, '\n', max);
            if (i < 0) {
                if (ev_conn_input_len(s->conn) >= max) {
                    log_info("sid=%s event=reject client=%s reason=line_too_long", s->id,
                             s->client);
                    reply(s, 500, "5.5.2", "Line too long");
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
            } else if (s->cfg->bare_newline == SMTP_NEWLINE_REJECT) {
                /* RFC 5321 §2.3.8: lines end in CRLF; a bare LF is how smuggling
                   starts, so it is refused in commands as in content. */
                s->commands++;
                log_info("sid=%s event=reject client=%s reason=bare_lf_in_command", s->id,
                         s->client);
                reply(s, 500, "5.5.2", "Syntax error: command line ended in a bare <LF>");
                if (s->errors >= s->cfg->max_errors)
                    session_close_with(s, 421, "4.7.0", "Too many errors, closing connection");
                break;
            }
            s->line[n] = '\0';
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
            return;
        }
    }
}

/* ---- connection events ---------------------------------------------------------- */

static void on_read(void *arg)
{
    session_process(arg);
}

static void on_close(void *arg)
{
    struct session *s = arg;
    if (s->state == SESSION_COMMIT) {
        /* The commit callback frees us; the connection goes now. */
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
    if (s->state == SESSION_COMMIT) {
        /* The client is waiting for us, not idle: reading resumes after the commit. */
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
    if (s->state == SESSION_COMMIT) {
        s->expired = true; /* closed once the commit has its reply */
        return;
    }
    log_info("sid=%s event=session_time_limit client=%s", s->id, s->client);
    tx_reset(s);
    session_close_with(s, 421, "4.4.2", "Error: session time limit exceeded");
}

static const struct ev_conn_ops conn_ops = {on_read, on_close, on_timeout};

struct session *session_new(const struct session_env *env, int fd, const struct sockaddr *sa,
                            socklen_t salen, enum config_role role, const char *client)
{
    const struct config *cfg = env->deps->cfg;
    struct session *s = xcalloc(1, sizeof *s);
    s->env = env;
    s->cfg = cfg;
    s->role = role;
    s->state = SESSION_CMD;
    s->started_ms = now_mono_ms();
    snprintf(s->id, sizeof s->id, "%08" PRIX64, ++session_counter);
    snprintf(s->client, sizeof s->client, "%s", client);
    s->trusted = config_is_trusted(cfg, sa);
    s->line = xmalloc(cfg->max_command_line + 1);
    s->conn = ev_conn_new(env->deps->loop, fd, &conn_ops, s, MAX_INPUT);
    ev_conn_set_timeout(s->conn, cfg->idle_timeout);
    s->lifetime = ev_timer_new(env->deps->loop, on_lifetime, s);
    ev_timer_start(s->lifetime, (uint64_t)cfg->session_timeout * 1000);
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
    free(s->line);
    s->env->gone(s->env->srv, s, s->client);
    free(s);
}

void session_shutdown(struct session *s)
{
    s->shutting_down = true;
    if (s->state == SESSION_CMD && !s->tx.active && !s->dead)
        session_close_with(s, 421, "4.3.2", "Service shutting down, closing transmission channel");
}

void session_abort(struct session *s)
{
    if (s->state == SESSION_COMMIT) {
        s->shutting_down = true;
        return;
    }
    session_free(s);
}
