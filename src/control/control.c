/*
 * control - the control socket server; see control.h and docs/control.md.
 *
 * A connection goes through these states: LOOKUP (its peer's login is being
 * looked up in a worker; input waits), READ (requests are read one line at
 * a time and answered at once, in order), WAIT (an answer waits for the
 * journal: a commit or a sync; input waits), CLOSING (the last answer is
 * being sent). A connection whose peer goes away while a lookup or the
 * journal is pending stays (dead) until the callback.
 *
 * Local submission (submit.begin, submit.rcpt, submit.data, submit.end)
 * follows the SMTP session's rules where they apply: recipients through the
 * same policy as a trusted client (local mailboxes and aliases; any other
 * domain is relayed), RFC 5321 §4.4 trace information (a Received field
 * naming the local user), the content checked by the DATA/BDAT decoder
 * (line length, NUL, header count; bare CR and LF become CRLF, as local
 * programs write LF), message_size_limit, and the fields RFC 5322 §3.6
 * requires added when missing (Date, From, and Message-ID), as an MSA does
 * (RFC 6409 §8).
 */
#include "control/control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/aliases.h"
#include "config/config.h"
#include "control/proto.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"
#include "sched/sched.h"
#include "server/policy.h"
#include "smtp/client.h"
#include "smtp/header.h"
#include "smtp/smtp.h"
#include "spool/spool.h"

#define SUB_APPEND 65536              /* content appended to the spool in pieces of this size */
#define SUB_HOLD_MAX (2 * SUB_APPEND) /* header section held back for the added fields */
#define SUB_PENDING_MAX (SUB_HOLD_MAX + 4 * PROTO_DATA_MAX + 8192)
#define DEC_MAX (2 * PROTO_DATA_MAX + 2) /* decoder output for one submit.data */
#define SHOW_HEADERS_MAX 65536           /* octets of header section queue.show returns */
#define REPLY_IDS_MAX 1000               /* queue ids listed in an action's answer */
#define OUTPUT_MAX (1024 * 1024)         /* answers queued unread: requests wait past it */
#define LOGIN_MAX 64
#define GECOS_MAX 128

enum cc_state {
    CC_LOOKUP,  /* the peer's login is looked up; input waits */
    CC_READ,    /* reading and answering requests */
    CC_WAIT,    /* an answer waits for the journal; input waits */
    CC_CLOSING, /* last answer sent; closing */
};

/* One accepted recipient of a submission (after alias expansion). */
struct sub_rcpt {
    char *addr;      /* delivery address */
    char *orig;      /* the address given, when expansion changed it */
    char *orcpt;     /* ORCPT ("rfc822;xtext") or NULL */
    unsigned notify; /* SMTP_NOTIFY_* */
};

/* A local submission in progress. */
struct submit {
    spool_id qid;
    char *sender;      /* envelope sender ("" for <>) */
    char *from_addr;   /* address for a From: field added: the sender or login@origin */
    char *fullname;    /* display name for that From: field, or NULL */
    char *envid;       /* ENVID, xtext, or NULL */
    uint8_t ret, body; /* enum smtp_ret, enum smtp_body */
    bool smtputf8;     /* addresses may be UTF-8 */
    struct sub_rcpt *rcpt;
    size_t nrcpt, rcpt_cap;
    size_t rcpt_given;   /* submit.rcpt requests accepted (max_recipients) */
    char *first_given;   /* first recipient as given, for Received's "for" */
    bool started;        /* the Received field is in pending: content may be on disk */
    size_t received_len; /* its octets at the start of pending */
    bool fields_added;   /* Date/From/Message-ID added (or none were missing) */
    bool spilled;        /* the header section outgrew SUB_HOLD_MAX: written as it came */
    struct smtp_data_dec dec;
    struct smtp_hdr_scan hdr;
    struct buf pending; /* content not yet appended */
    uint64_t content;   /* octets the peer sent (after newline normalisation) */
    uint64_t stored;    /* octets appended to the spool */
    bool too_big;       /* content passed message_size_limit */
    bool eight;         /* an octet >= 0x80 was seen */
    uint8_t last_octet; /* last content octet stored */
    int spool_error;    /* errno of a failed append, or 0 */
};

/* One control connection. */
struct cconn {
    struct cconn *next, *prev;
    struct control *ctl;
    struct ev_conn *conn; /* NULL once the peer has gone */
    char id[24];          /* "c12", for log lines */
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char login[LOGIN_MAX]; /* login of uid, or "" when the password database has none */
    char gecos[GECOS_MAX]; /* its full name (the GECOS field up to a comma), or "" */
    bool admin;            /* may change the queue */
    enum cc_state state;
    bool lookup_pending; /* a worker is looking up the login */
    bool dead;           /* the peer went away during LOOKUP or WAIT */
    size_t requests;
    bool output_full;   /* OUTPUT_MAX of answers queued: requests wait for on_drain */
    json_t *wait_reply; /* WAIT for a sync: the answer to send once it is done */
    char wait_cmd[PROTO_CMD_MAX + 1];
    struct submit *sub;
};

struct control {
    struct control_deps deps;
    const struct config *cfg;
    struct ev_listener *listener;
    char *path;      /* the socket */
    ino_t ino;       /* the socket's inode, so that only ours is removed */
    gid_t admin_gid; /* control_group's gid, or ours */
    struct cconn *conns;
    size_t nconns;
    size_t nwaiting;
    unsigned long seq; /* connection numbers */
    bool shutting_down;
    char *linebuf;   /* PROTO_LINE_MAX octets: the request being read */
    uint8_t *datbuf; /* PROTO_DATA_MAX: decoded submit.data */
    uint8_t *decbuf; /* DEC_MAX: the content decoder's output */
};

static void cc_process(struct cconn *cc);
static void cc_free(struct cconn *cc);

/* ---- answers ------------------------------------------------------------- */

static json_t *ok_obj(void)
{
    json_t *v = json_object();
    json_object_set_new(v, "ok", json_true());
    return v;
}

static void cc_send(struct cconn *cc, json_t *v)
{
    size_t n;
    char *s = proto_dump(v, &n);
    if (cc->conn)
        ev_conn_write(cc->conn, s, n);
    free(s);
}

static void cc_error(struct cconn *cc, const char *text)
{
    cc_send(cc, proto_error(text, 0, NULL));
}

static void cc_smtp_error(struct cconn *cc, const struct smtp_status *st)
{
    cc_send(cc, proto_error(st->text, st->code, st->enh));
}

/* Send a last error and close. */
static void cc_close_with(struct cconn *cc, const char *text)
{
    if (text)
        cc_error(cc, text);
    cc->state = CC_CLOSING;
    if (cc->conn)
        ev_conn_close_after_flush(cc->conn);
}

static void cc_wait(struct cconn *cc)
{
    cc->state = CC_WAIT;
    cc->ctl->nwaiting++;
}

/* The journal answered: send what waited, or drop a dead connection. */
static void cc_wait_done(struct cconn *cc)
{
    cc->ctl->nwaiting--;
    if (cc->dead) {
        cc_free(cc);
        return;
    }
    cc->state = cc->ctl->shutting_down ? CC_CLOSING : CC_READ;
    if (cc->state == CC_CLOSING) {
        cc_close_with(cc, NULL);
        return;
    }
    cc_process(cc);
}

static void on_synced(void *arg, spool_id id, int error)
{
    struct cconn *cc = arg;
    (void)id;
    json_t *reply = cc->wait_reply;
    cc->wait_reply = NULL;
    if (error) {
        log_error("cid=%s event=control_sync_failed cmd=%s error=\"%s\"", cc->id, cc->wait_cmd,
                  strerror(error));
        json_decref(reply);
        reply = proto_error("the change could not be made durable (journal write error)", 0, NULL);
    }
    cc_send(cc, reply);
    cc_wait_done(cc);
}

/* Answer once everything appended is durable. */
static void cc_answer_after_sync(struct cconn *cc, const char *cmd, json_t *reply)
{
    cc->wait_reply = reply;
    snprintf(cc->wait_cmd, sizeof cc->wait_cmd, "%s", cmd);
    cc_wait(cc);
    spool_sync(cc->ctl->deps.spool, on_synced, cc);
}

/* ---- ping ------------------------------------------------------------------ */

static void cmd_ping(struct cconn *cc, const json_t *args)
{
    (void)args;
    json_t *r = ok_obj();
    json_object_set_new(r, "version", json_string("0.1.0"));
    json_object_set_new(r, "hostname", proto_str(cc->ctl->cfg->hostname));
    json_object_set_new(r, "uid", json_integer(cc->uid));
    json_object_set_new(r, "gid", json_integer(cc->gid));
    json_object_set_new(r, "pid", json_integer(cc->pid));
    json_object_set_new(r, "login", proto_str(cc->login[0] ? cc->login : NULL));
    json_object_set_new(r, "admin", json_boolean(cc->admin));
    cc_send(cc, r);
}

/* ---- queue commands -------------------------------------------------------- */

static const char *const selector_keys[] = {"all",        "ids",    "sender",      "rcpt", "domain",
                                            "older_than", "status", "error_class", NULL};

/* Parse args as a selector, allowing selector_keys and extra (may be NULL).
   Returns 0, or -1 after answering. */
static int parse_selector(struct cconn *cc, const json_t *args, const char *const *extra,
                          struct proto_selector *sel)
{
    const char *allowed[16];
    size_t n = 0;
    for (size_t i = 0; selector_keys[i]; i++)
        allowed[n++] = selector_keys[i];
    for (size_t i = 0; extra && extra[i]; i++)
        allowed[n++] = extra[i];
    allowed[n] = NULL;
    char err[200] = "";
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0 ||
        proto_selector_parse(args, sel, err, sizeof err) < 0) {
        cc_error(cc, err);
        return -1;
    }
    return 0;
}

struct list_ctx {
    struct control *ctl;
    const struct proto_selector *sel;
    spool_id after;
    size_t limit;
    json_t *arr;
    size_t total;
    bool more;
    spool_id last;
    int64_t now;
};

static void list_one(void *arg, spool_id id, const struct spool_envelope *env)
{
    struct list_ctx *lc = arg;
    if (id <= lc->after)
        return;
    bool busy = sched_message_busy(lc->ctl->deps.sched, id);
    if (!proto_selector_match(lc->sel, id, env, busy, lc->now))
        return;
    lc->total++;
    if (json_array_size(lc->arr) >= lc->limit) {
        lc->more = true;
        return;
    }
    json_array_append_new(lc->arr, proto_message_json(id, env, busy, false));
    lc->last = id;
}

static void cmd_list(struct cconn *cc, const json_t *args)
{
    static const char *const extra[] = {"after", "limit", NULL};
    struct proto_selector sel;
    if (parse_selector(cc, args, extra, &sel) < 0)
        return;
    struct list_ctx lc = {
        .ctl = cc->ctl, .sel = &sel, .limit = PROTO_LIST_DEFAULT, .now = now_real_us() / 1000000};
    char err[200] = "";
    bool bad = false;
    const char *after = proto_arg_str(args, "after", 16, &bad, err, sizeof err);
    if (bad || (after && !proto_qid_parse(after, &lc.after))) {
        cc_error(cc, bad ? err : "\"after\" is not a queue id");
        goto done;
    }
    json_t *lim = json_object_get(args, "limit");
    if (lim) {
        if (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
            json_integer_value(lim) > PROTO_LIST_MAX) {
            snprintf(err, sizeof err, "\"limit\" must be 1 to %d", PROTO_LIST_MAX);
            cc_error(cc, err);
            goto done;
        }
        lc.limit = (size_t)json_integer_value(lim);
    }
    lc.arr = json_array();
    spool_foreach(cc->ctl->deps.spool, list_one, &lc);
    json_t *r = ok_obj();
    json_object_set_new(r, "messages", lc.arr);
    json_object_set_new(r, "total", json_integer((json_int_t)lc.total));
    if (lc.more) {
        char q[17];
        proto_qid_format(lc.last, q);
        json_object_set_new(r, "next", json_string(q));
    } else {
        json_object_set_new(r, "next", json_null());
    }
    cc_send(cc, r);
done:
    proto_selector_free(&sel);
}

/* The header section of a live message (prefix included), at most
   SHOW_HEADERS_MAX octets. Reads the spool on the loop thread: a page or
   two, usually from the cache. */
static json_t *message_headers(struct control *ctl, spool_id id, bool *truncated)
{
    struct spool_body *b = spool_body_open(ctl->deps.spool, id);
    *truncated = false;
    if (!b)
        return json_null();
    char *buf = xmalloc(SHOW_HEADERS_MAX);
    size_t got = 0;
    while (got < SHOW_HEADERS_MAX) {
        ssize_t n = spool_body_read(b, got, buf + got, SHOW_HEADERS_MAX - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    uint64_t size = spool_body_size(b);
    spool_body_close(b);
    size_t end = got;
    for (size_t i = 0; i + 1 < got; i++) {
        if (buf[i] == '\n' &&
            (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < got && buf[i + 2] == '\n'))) {
            end = i + 1;
            break;
        }
        if (i == 0 && (buf[0] == '\n' || buf[0] == '\r')) {
            end = 0;
            break;
        }
    }
    if (end == got && got < size)
        *truncated = true;
    json_t *v = proto_text(buf, end);
    free(buf);
    return v;
}

static void cmd_show(struct cconn *cc, const json_t *args)
{
    static const char *const allowed[] = {"id", NULL};
    char err[200] = "";
    bool bad = false;
    spool_id id = 0;
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const char *s = proto_arg_str(args, "id", 16, &bad, err, sizeof err);
    if (bad || !s || !proto_qid_parse(s, &id)) {
        cc_error(cc, bad ? err : "\"id\": a queue id is needed");
        return;
    }
    const struct spool_envelope *env = spool_get(cc->ctl->deps.spool, id);
    if (!env) {
        cc_error(cc, "no such message in the queue");
        return;
    }
    json_t *m = proto_message_json(id, env, sched_message_busy(cc->ctl->deps.sched, id), true);
    bool trunc;
    json_object_set_new(m, "headers", message_headers(cc->ctl, id, &trunc));
    json_object_set_new(m, "headers_truncated", json_boolean(trunc));
    json_t *r = ok_obj();
    json_object_set_new(r, "message", m);
    cc_send(cc, r);
}

struct collect_ctx {
    struct control *ctl;
    const struct proto_selector *sel;
    spool_id *ids;
    size_t n, cap;
    int64_t now;
};

static void collect_one(void *arg, spool_id id, const struct spool_envelope *env)
{
    struct collect_ctx *cx = arg;
    if (!proto_selector_match(cx->sel, id, env, sched_message_busy(cx->ctl->deps.sched, id),
                              cx->now))
        return;
    if (cx->n == cx->cap) {
        cx->cap = cx->cap ? 2 * cx->cap : 64;
        cx->ids = xreallocarray(cx->ids, cx->cap, sizeof *cx->ids);
    }
    cx->ids[cx->n++] = id;
}

/* queue.flush, queue.hold, queue.release, queue.delete, queue.bounce: select
   and act in one step. */
static void cmd_action(struct cconn *cc, const json_t *args, enum sched_op op, const char *cmd)
{
    struct proto_selector sel;
    if (parse_selector(cc, args, NULL, &sel) < 0)
        return;
    if (op != SCHED_OP_FLUSH && proto_selector_empty(&sel)) {
        cc_error(cc, "name the messages: \"ids\", a selector, or \"all\": true");
        proto_selector_free(&sel);
        return;
    }
    struct control *ctl = cc->ctl;
    size_t missing = 0;
    for (size_t i = 0; i < sel.nids; i++)
        if (!spool_get(ctl->deps.spool, sel.ids[i]))
            missing++;
    struct collect_ctx cx = {.ctl = ctl, .sel = &sel, .now = now_real_us() / 1000000};
    spool_foreach(ctl->deps.spool, collect_one, &cx);
    struct sched_op_result res;
    sched_control(ctl->deps.sched, op, cx.ids, cx.n, &res);
    json_t *r = ok_obj();
    json_object_set_new(r, "matched", json_integer((json_int_t)cx.n));
    json_object_set_new(r, "done", json_integer((json_int_t)res.done));
    json_object_set_new(r, "unchanged", json_integer((json_int_t)res.unchanged));
    json_object_set_new(r, "busy", json_integer((json_int_t)res.busy));
    json_object_set_new(r, "missing", json_integer((json_int_t)(missing + res.missing)));
    json_object_set_new(r, "failed", json_integer((json_int_t)res.failed));
    json_t *ids = json_array();
    for (size_t i = 0; i < cx.n && i < REPLY_IDS_MAX; i++) {
        char q[17];
        proto_qid_format(cx.ids[i], q);
        json_array_append_new(ids, json_string(q));
    }
    json_object_set_new(r, "ids", ids);
    log_info("cid=%s event=control cmd=%s uid=%u login=%s matched=%zu done=%zu unchanged=%zu "
             "busy=%zu missing=%zu failed=%zu",
             cc->id, cmd, (unsigned)cc->uid, cc->login[0] ? cc->login : "-", cx.n, res.done,
             res.unchanged, res.busy, missing + res.missing, res.failed);
    free(cx.ids);
    proto_selector_free(&sel);
    if (op == SCHED_OP_FLUSH || (res.done == 0 && res.busy == 0))
        cc_send(cc, r);
    else
        cc_answer_after_sync(cc, cmd, r); /* HOLD, REMOVE, RCPT records were written */
}

static void cmd_flush(struct cconn *cc, const json_t *args)
{
    cmd_action(cc, args, SCHED_OP_FLUSH, "queue.flush");
}
static void cmd_hold(struct cconn *cc, const json_t *args)
{
    cmd_action(cc, args, SCHED_OP_HOLD, "queue.hold");
}
static void cmd_release(struct cconn *cc, const json_t *args)
{
    cmd_action(cc, args, SCHED_OP_RELEASE, "queue.release");
}
static void cmd_delete(struct cconn *cc, const json_t *args)
{
    cmd_action(cc, args, SCHED_OP_DELETE, "queue.delete");
}
static void cmd_bounce(struct cconn *cc, const json_t *args)
{
    cmd_action(cc, args, SCHED_OP_BOUNCE, "queue.bounce");
}

static json_t *paused_json(struct control *ctl)
{
    const char *const *doms;
    size_t n = sched_paused(ctl->deps.sched, &doms);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, proto_str(doms[i]));
    return a;
}

static void cmd_paused(struct cconn *cc, const json_t *args)
{
    (void)args;
    json_t *r = ok_obj();
    json_object_set_new(r, "paused", paused_json(cc->ctl));
    cc_send(cc, r);
}

/* A domain name as an operator types it: labels of letters, digits, '-',
   '_' or UTF-8, dot-separated, at most 255 octets. */
static bool domain_ok(const char *d)
{
    size_t n = strlen(d), label = 0;
    if (n == 0 || n > SMTP_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

static void cmd_pause_resume(struct cconn *cc, const json_t *args, bool pause)
{
    static const char *const allowed[] = {"domain", NULL};
    char err[200] = "";
    bool bad = false;
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const char *d = proto_arg_str(args, "domain", SMTP_DOMAIN_MAX, &bad, err, sizeof err);
    if (bad || !d || !domain_ok(d)) {
        cc_error(cc, bad ? err : "\"domain\": a domain name is needed");
        return;
    }
    int r = pause ? sched_pause(cc->ctl->deps.sched, d) : sched_resume(cc->ctl->deps.sched, d);
    if (r < 0) {
        snprintf(err, sizeof err, "too many paused domains (at most %d)", SCHED_PAUSE_MAX);
        cc_error(cc, err);
        return;
    }
    log_info("cid=%s event=control cmd=%s uid=%u login=%s domain=%s changed=%s", cc->id,
             pause ? "queue.pause" : "queue.resume", (unsigned)cc->uid,
             cc->login[0] ? cc->login : "-", d, r == 0 ? "yes" : "no");
    json_t *v = ok_obj();
    json_object_set_new(v, "changed", json_boolean(r == 0));
    json_object_set_new(v, "paused", paused_json(cc->ctl));
    cc_send(cc, v);
}

static void cmd_pause(struct cconn *cc, const json_t *args)
{
    cmd_pause_resume(cc, args, true);
}
static void cmd_resume(struct cconn *cc, const json_t *args)
{
    cmd_pause_resume(cc, args, false);
}

/* ---- local submission ------------------------------------------------------ */

static void submit_free(struct control *ctl, struct submit *s, bool abort_spool)
{
    if (!s)
        return;
    if (abort_spool && s->started)
        spool_abort(ctl->deps.spool, s->qid);
    for (size_t i = 0; i < s->nrcpt; i++) {
        free(s->rcpt[i].addr);
        free(s->rcpt[i].orig);
        free(s->rcpt[i].orcpt);
    }
    free(s->rcpt);
    free(s->sender);
    free(s->from_addr);
    free(s->fullname);
    free(s->envid);
    free(s->first_given);
    buf_free(&s->pending);
    free(s);
}

/* "name" -> "name@origin" when it has no domain. */
static char *qualify(const struct config *cfg, const char *addr)
{
    if (!addr[0] || strchr(addr, '@'))
        return xstrdup(addr);
    size_t n = strlen(addr) + strlen(cfg->sendmail_origin) + 2;
    char *q = xmalloc(n);
    snprintf(q, n, "%s@%s", addr, cfg->sendmail_origin);
    return q;
}

/* Parse "<addr>" as a reverse or forward path. NULL when it is valid. */
static const struct smtp_status *parse_path(const char *addr, enum smtp_path_kind kind, bool utf8,
                                            struct smtp_path *p)
{
    static const struct smtp_status too_long = {501, "5.1.3", "Address too long"};
    char buf[SMTP_PATH_MAX + 8];
    int n = snprintf(buf, sizeof buf, "<%s>", addr);
    if (n < 0 || (size_t)n >= sizeof buf)
        return &too_long;
    const char *end;
    const struct smtp_status *st = smtp_path_parse(buf, (size_t)n, kind, utf8, p, &end);
    if (!st && *end)
        return &too_long;
    return st;
}

static void cmd_submit_begin(struct cconn *cc, const json_t *args)
{
    static const char *const allowed[] = {"sender", "fullname", "ret", "body",
                                          "envid",  "smtputf8", NULL};
    static const struct smtp_status st_nested = {503, "5.5.1", "a submission is already open"};
    struct control *ctl = cc->ctl;
    char err[200] = "";
    bool bad = false;
    if (cc->sub) {
        cc_smtp_error(cc, &st_nested);
        return;
    }
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const char *sender = proto_arg_str(args, "sender", SMTP_PATH_MAX, &bad, err, sizeof err);
    const char *fullname = bad ? NULL : proto_arg_str(args, "fullname", 200, &bad, err, sizeof err);
    const char *ret = bad ? NULL : proto_arg_str(args, "ret", 8, &bad, err, sizeof err);
    const char *body = bad ? NULL : proto_arg_str(args, "body", 16, &bad, err, sizeof err);
    const char *envid =
        bad ? NULL : proto_arg_str(args, "envid", SMTP_ENVID_MAX, &bad, err, sizeof err);
    json_t *u8 = json_object_get(args, "smtputf8");
    if (!bad && u8 && !json_is_boolean(u8)) {
        snprintf(err, sizeof err, "\"smtputf8\" must be true or false");
        bad = true;
    }
    if (!bad && ret && strcmp(ret, "full") != 0 && strcmp(ret, "hdrs") != 0) {
        snprintf(err, sizeof err, "\"ret\" must be \"full\" or \"hdrs\"");
        bad = true;
    }
    if (!bad && body && strcmp(body, "7bit") != 0 && strcmp(body, "8bitmime") != 0) {
        snprintf(err, sizeof err, "\"body\" must be \"7bit\" or \"8bitmime\"");
        bad = true;
    }
    if (bad) {
        cc_error(cc, err);
        return;
    }
    bool utf8 = json_is_true(u8);
    struct submit *s = xcalloc(1, sizeof *s);
    const char *login = cc->login[0] ? cc->login : NULL;
    char uidname[32];
    snprintf(uidname, sizeof uidname, "uid%u", (unsigned)cc->uid);
    char *own = qualify(ctl->cfg, login ? login : uidname);
    s->sender = sender ? qualify(ctl->cfg, sender) : xstrdup(own);
    s->from_addr = xstrdup(s->sender[0] ? s->sender : own);
    free(own);
    struct smtp_path p;
    const struct smtp_status *st =
        s->sender[0] ? parse_path(s->sender, SMTP_PATH_REVERSE, utf8, &p) : NULL;
    if (st) {
        cc_smtp_error(cc, st);
        submit_free(ctl, s, false);
        return;
    }
    if (envid) {
        char x[3 * SMTP_ENVID_MAX + 1];
        long n = smtp_xtext_encode(envid, strlen(envid), x, sizeof x);
        if (n < 0) {
            cc_error(cc, "\"envid\" cannot be encoded");
            submit_free(ctl, s, false);
            return;
        }
        s->envid = xstrdup(x);
    }
    /* without one given, the full name of the login from the password
       database, as Postfix's sendmail takes it */
    if (fullname)
        s->fullname = xstrdup(fullname);
    else if (cc->gecos[0])
        s->fullname = xstrdup(cc->gecos);
    s->ret = !ret ? SMTP_RET_NONE : strcmp(ret, "full") == 0 ? SMTP_RET_FULL : SMTP_RET_HDRS;
    s->body = !body                       ? SMTP_BODY_NONE
              : strcmp(body, "7bit") == 0 ? SMTP_BODY_7BIT
                                          : SMTP_BODY_8BITMIME;
    s->smtputf8 = utf8;
    s->qid = spool_new_id(ctl->deps.spool);
    smtp_data_init(&s->dec, true, SMTP_NEWLINE_NORMALIZE, ctl->cfg->max_text_line,
                   ctl->cfg->max_header_count);
    smtp_hdr_init(&s->hdr);
    buf_init(&s->pending, SUB_PENDING_MAX);
    cc->sub = s;
    char q[17];
    proto_qid_format(s->qid, q);
    json_t *r = ok_obj();
    json_object_set_new(r, "id", json_string(q));
    json_object_set_new(r, "sender", proto_str(s->sender));
    cc_send(cc, r);
}

static unsigned notify_arg(const json_t *v, bool *bad)
{
    if (!v)
        return 0;
    if (json_is_string(v) && strcmp(json_string_value(v), "never") == 0)
        return SMTP_NOTIFY_NEVER;
    unsigned bits = 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 3) {
        *bad = true;
        return 0;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (s && strcmp(s, "success") == 0)
            bits |= SMTP_NOTIFY_SUCCESS;
        else if (s && strcmp(s, "failure") == 0)
            bits |= SMTP_NOTIFY_FAILURE;
        else if (s && strcmp(s, "delay") == 0)
            bits |= SMTP_NOTIFY_DELAY;
        else
            *bad = true;
    }
    return bits;
}

static void cmd_submit_rcpt(struct cconn *cc, const json_t *args)
{
    static const char *const allowed[] = {"addr", "notify", "orcpt", NULL};
    static const struct smtp_status st_nosub = {503, "5.5.1", "no submission is open"};
    static const struct smtp_status st_late = {503, "5.5.1", "recipients come before the data"};
    static const struct smtp_status st_many = {452, "4.5.3", "Too many recipients"};
    static const struct smtp_status st_utf8 = {553, "5.6.7",
                                               "UTF-8 address without \"smtputf8\": true"};
    struct control *ctl = cc->ctl;
    struct submit *s = cc->sub;
    char err[200] = "";
    bool bad = false;
    if (!s) {
        cc_smtp_error(cc, &st_nosub);
        return;
    }
    if (s->started) {
        cc_smtp_error(cc, &st_late);
        return;
    }
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const char *addr = proto_arg_str(args, "addr", SMTP_PATH_MAX, &bad, err, sizeof err);
    const char *orcpt =
        bad ? NULL : proto_arg_str(args, "orcpt", SMTP_ORCPT_MAX, &bad, err, sizeof err);
    unsigned notify = bad ? 0 : notify_arg(json_object_get(args, "notify"), &bad);
    if (bad || !addr || !addr[0]) {
        cc_error(cc, bad ? (err[0] ? err
                                   : "\"notify\" must be \"never\" or a list of "
                                     "\"success\", \"failure\", \"delay\"")
                         : "\"addr\": a recipient address is needed");
        return;
    }
    if (orcpt) {
        /* validated as SMTP's ORCPT= parameter would be */
        struct smtp_rcpt_params rp;
        struct smtp_ext ext = {.dsn = true};
        char pbuf[SMTP_ORCPT_MAX + 8];
        int n = snprintf(pbuf, sizeof pbuf, "ORCPT=%s", orcpt);
        if (smtp_rcpt_params_parse(pbuf, (size_t)n, &ext, &rp) != NULL) {
            cc_error(cc, "\"orcpt\" must be \"type;xtext\"");
            return;
        }
    }
    if (s->rcpt_given >= ctl->cfg->max_recipients) {
        cc_smtp_error(cc, &st_many);
        return;
    }
    char *q = qualify(ctl->cfg, addr);
    struct smtp_path p;
    const struct smtp_status *st = parse_path(q, SMTP_PATH_FORWARD, s->smtputf8, &p);
    if (st && st->enh && strcmp(st->enh, "5.6.7") == 0)
        st = &st_utf8;
    char *leaves[POLICY_MAX_LEAVES];
    size_t nleaves = 0;
    if (!st)
        st = policy_rcpt(ctl->cfg, ctl->deps.aliases, &p, true, leaves, &nleaves);
    if (st) {
        log_info("cid=%s event=submit_reject uid=%u login=%s rcpt=<%s> reply=\"%d %s %s\"", cc->id,
                 (unsigned)cc->uid, cc->login[0] ? cc->login : "-", q, st->code, st->enh, st->text);
        cc_smtp_error(cc, st);
        free(q);
        return;
    }
    s->rcpt_given++;
    if (!s->first_given)
        s->first_given = xstrdup(q);
    for (size_t i = 0; i < nleaves; i++) {
        bool dup = false;
        for (size_t k = 0; k < s->nrcpt && !dup; k++)
            dup = strcmp(s->rcpt[k].addr, leaves[i]) == 0;
        if (dup) {
            free(leaves[i]);
            continue;
        }
        if (s->nrcpt == s->rcpt_cap) {
            s->rcpt_cap = s->rcpt_cap ? 2 * s->rcpt_cap : 8;
            s->rcpt = xreallocarray(s->rcpt, s->rcpt_cap, sizeof *s->rcpt);
        }
        struct sub_rcpt *r = &s->rcpt[s->nrcpt++];
        r->addr = leaves[i];
        r->orig = ascii_ieq(leaves[i], q) ? NULL : xstrdup(q);
        r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
        r->notify = notify;
    }
    free(q);
    cc_send(cc, ok_obj());
}

/* The fields RFC 5322 §3.6 requires that the message lacks, CRLF lines. */
static size_t missing_fields(struct cconn *cc, char *out, size_t outlen)
{
    struct submit *s = cc->sub;
    const struct config *cfg = cc->ctl->cfg;
    size_t n = 0;
    int64_t now = now_real_us() / 1000000;
    if (s->hdr.from_fields == 0) {
        if (s->fullname && s->fullname[0]) {
            /* the display name as a quoted-string (RFC 5322 §3.2.4) */
            n += (size_t)snprintf(out + n, outlen - n, "From: \"");
            for (const char *p = s->fullname; *p && n + 4 < outlen; p++) {
                unsigned char c = (unsigned char)*p;
                if (c < 0x20 || c == 0x7f)
                    continue;
                if (c == '"' || c == '\\')
                    out[n++] = '\\';
                out[n++] = (char)c;
            }
            n += (size_t)snprintf(out + n, outlen - n, "\" <%s>\r\n", s->from_addr);
        } else {
            n += (size_t)snprintf(out + n, outlen - n, "From: %s\r\n", s->from_addr);
        }
    }
    if (!s->hdr.has_date && n < outlen) {
        char date[64];
        rfc5322_date(now, date, sizeof date);
        n += (size_t)snprintf(out + n, outlen - n, "Date: %s\r\n", date);
    }
    if (!s->hdr.has_message_id && n < outlen)
        n +=
            (size_t)snprintf(out + n, outlen - n, "Message-ID: <%" PRId64 ".%016" PRIX64 "@%s>\r\n",
                             now, s->qid, cfg->hostname);
    if (n >= outlen)
        panic("control: added header fields too long");
    return n;
}

/* Insert the missing fields at offset `at` of the pending content. */
static void insert_fields(struct cconn *cc, size_t at)
{
    struct submit *s = cc->sub;
    char f[1024 + SMTP_PATH_MAX];
    size_t n = missing_fields(cc, f, sizeof f);
    s->fields_added = true;
    if (n == 0)
        return;
    size_t tail = s->pending.len - at;
    char *rest = xmalloc(tail + 1);
    memcpy(rest, s->pending.data + at, tail);
    s->pending.len = at;
    if (buf_append(&s->pending, f, n) < 0 || buf_append(&s->pending, rest, tail) < 0)
        panic("control: submission buffer overflow");
    free(rest);
}

static void sub_flush(struct control *ctl, struct submit *s)
{
    if (s->pending.len == 0 || s->spool_error)
        return;
    int r = spool_append(ctl->deps.spool, s->qid, s->pending.data, s->pending.len);
    if (r < 0)
        s->spool_error = -r;
    else
        s->stored += s->pending.len;
    buf_reset(&s->pending);
}

/* The Received field (RFC 5321 §4.4), first in the message. */
static void sub_start(struct cconn *cc)
{
    struct submit *s = cc->sub;
    const struct config *cfg = cc->ctl->cfg;
    char date[64];
    rfc5322_date(now_real_us() / 1000000, date, sizeof date);
    char h[512 + 2 * SMTP_PATH_MAX];
    int n = snprintf(h, sizeof h,
                     "Received: by %s (Tern, from local user uid=%u%s%s)\r\n\tid %016" PRIX64
                     "%s%s%s; %s\r\n",
                     cfg->hostname, (unsigned)cc->uid, cc->login[0] ? " login=" : "", cc->login,
                     s->qid, s->rcpt_given == 1 ? "\r\n\tfor <" : "",
                     s->rcpt_given == 1 ? s->first_given : "", s->rcpt_given == 1 ? ">" : "", date);
    if (n < 0 || (size_t)n >= sizeof h)
        panic("control: Received field too long");
    if (buf_append(&s->pending, h, (size_t)n) < 0)
        panic("control: submission buffer overflow");
    s->received_len = (size_t)n;
    s->started = true;
}

/* Decoded content: size limit, header scan, hold the header section for the
   added fields, append full pieces. */
static void sub_content(struct cconn *cc, const uint8_t *p, size_t n)
{
    struct control *ctl = cc->ctl;
    struct submit *s = cc->sub;
    if (n == 0)
        return;
    s->content += n;
    if (s->content > ctl->cfg->message_size_limit)
        s->too_big = true;
    if (s->too_big || s->spool_error)
        return;
    for (size_t i = 0; i < n && !s->eight; i++)
        s->eight = p[i] >= 0x80;
    if (!s->hdr.done)
        smtp_hdr_feed(&s->hdr, p, n);
    if (buf_append(&s->pending, p, n) < 0)
        panic("control: submission buffer overflow");
    s->last_octet = p[n - 1];
    if (!s->hdr.done) {
        if (s->pending.len < SUB_HOLD_MAX || s->spilled)
            goto flush;
        s->spilled = true; /* too long a header section: written as it came */
        log_warn("cid=%s qid=%016" PRIX64 " event=header_spilled note=\"header section longer "
                 "than %u octets: no fields added\"",
                 cc->id, s->qid, (unsigned)SUB_HOLD_MAX);
    } else if (!s->fields_added && !s->spilled) {
        insert_fields(cc, s->received_len + (size_t)s->hdr.end);
    }
flush:
    if ((s->hdr.done || s->spilled) && s->pending.len >= SUB_APPEND)
        sub_flush(ctl, s);
}

static void cmd_submit_data(struct cconn *cc, const json_t *args)
{
    static const char *const allowed[] = {"data", NULL};
    static const struct smtp_status st_nosub = {503, "5.5.1", "no submission is open"};
    static const struct smtp_status st_norcpt = {554, "5.5.1", "No valid recipients"};
    struct control *ctl = cc->ctl;
    struct submit *s = cc->sub;
    char err[200] = "";
    bool bad = false;
    if (!s) {
        cc_smtp_error(cc, &st_nosub);
        return;
    }
    if (s->nrcpt == 0) {
        cc_smtp_error(cc, &st_norcpt);
        return;
    }
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const char *d = proto_arg_str(args, "data", PROTO_LINE_MAX, &bad, err, sizeof err);
    long n = d ? proto_base64_decode(d, strlen(d), ctl->datbuf, PROTO_DATA_MAX) : -1;
    if (bad || n < 0) {
        snprintf(err, sizeof err, "\"data\" must be base64 of at most %d octets", PROTO_DATA_MAX);
        cc_error(cc, err);
        return;
    }
    if (!s->started)
        sub_start(cc);
    size_t consumed = 0, outlen = 0;
    smtp_data_feed(&s->dec, ctl->datbuf, (size_t)n, &consumed, ctl->decbuf, &outlen);
    sub_content(cc, ctl->decbuf, outlen);
    cc_send(cc, ok_obj());
}

static void on_submit_committed(void *arg, spool_id id, int error)
{
    struct cconn *cc = arg;
    struct control *ctl = cc->ctl;
    struct submit *s = cc->sub;
    cc->sub = NULL;
    if (error) {
        static const struct smtp_status st = {451, "4.3.0",
                                              "Local error in processing: queue write error"};
        log_error("cid=%s qid=%016" PRIX64 " event=commit_failed error=\"%s\"", cc->id, id,
                  strerror(error));
        cc_smtp_error(cc, &st);
    } else {
        log_info("cid=%s qid=%016" PRIX64 " event=queued from=<%s> nrcpt=%zu size=%" PRIu64
                 " listener=local uid=%u login=%s pid=%d%s",
                 cc->id, id, s->sender, s->nrcpt, s->stored, (unsigned)cc->uid,
                 cc->login[0] ? cc->login : "-", (int)cc->pid,
                 cc->dead ? " note=client_gone_before_reply" : "");
        char q[17];
        proto_qid_format(id, q);
        json_t *r = ok_obj();
        json_object_set_new(r, "id", json_string(q));
        cc_send(cc, r);
        sched_message_queued(ctl->deps.sched, id);
    }
    submit_free(ctl, s, false);
    cc_wait_done(cc);
}

static void cmd_submit_end(struct cconn *cc, const json_t *args)
{
    static const char *const allowed[] = {NULL};
    static const struct smtp_status st_nosub = {503, "5.5.1", "no submission is open"};
    static const struct smtp_status st_norcpt = {554, "5.5.1", "No valid recipients"};
    static const struct smtp_status st_too_big = {552, "5.3.4",
                                                  "Message size exceeds fixed maximum message "
                                                  "size"};
    static const struct smtp_status st_no_space = {452, "4.3.1", "Insufficient system storage"};
    static const struct smtp_status st_io = {451, "4.3.0",
                                             "Local error in processing: queue write error"};
    struct control *ctl = cc->ctl;
    struct submit *s = cc->sub;
    char err[200] = "";
    if (!s) {
        cc_smtp_error(cc, &st_nosub);
        return;
    }
    if (proto_args_allowed(args, allowed, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    if (s->nrcpt == 0) {
        cc_smtp_error(cc, &st_norcpt);
        return;
    }
    if (!s->started)
        sub_start(cc);
    size_t tail = 0;
    smtp_data_finish(&s->dec, ctl->decbuf, &tail);
    sub_content(cc, ctl->decbuf, tail);
    const struct smtp_status *st = smtp_data_status(&s->dec);
    if (!st && s->too_big)
        st = &st_too_big;
    if (!st && !s->fields_added && !s->spilled) {
        /* no end of the header section: the fields go after the last line */
        if (s->content > 0 && s->last_octet != '\n' && buf_append(&s->pending, "\r\n", 2) < 0)
            panic("control: submission buffer overflow");
        insert_fields(cc, s->pending.len);
    }
    if (!st)
        sub_flush(ctl, s);
    if (!st && s->spool_error)
        st = s->spool_error == ENOSPC ? &st_no_space : &st_io;
    if (st) {
        log_info("cid=%s qid=%016" PRIX64 " event=submit_reject uid=%u login=%s reply=\"%d %s %s\"",
                 cc->id, s->qid, (unsigned)cc->uid, cc->login[0] ? cc->login : "-", st->code,
                 st->enh, st->text);
        cc_smtp_error(cc, st);
        submit_free(ctl, s, true);
        cc->sub = NULL;
        return;
    }
    struct spool_envelope env = {0};
    env.sender = s->sender;
    env.envid = s->envid;
    env.ret = s->ret;
    env.body = s->body != SMTP_BODY_NONE ? s->body : s->eight ? SMTP_BODY_8BITMIME : SMTP_BODY_NONE;
    env.smtputf8 = s->smtputf8;
    env.helo = ctl->cfg->hostname;
    env.client_addr = "local";
    env.listener = "local";
    env.arrival = now_real_us() / 1000000;
    env.size = s->stored;
    env.nrcpt = s->nrcpt;
    env.rcpt = xcalloc(s->nrcpt, sizeof *env.rcpt);
    for (size_t i = 0; i < s->nrcpt; i++) {
        env.rcpt[i].addr = s->rcpt[i].addr;
        env.rcpt[i].orcpt = s->rcpt[i].orcpt;
        env.rcpt[i].dsn_orig = s->rcpt[i].orig;
        env.rcpt[i].notify = s->rcpt[i].notify;
        env.rcpt[i].state = SPOOL_RCPT_PENDING;
    }
    int r = spool_commit(ctl->deps.spool, s->qid, &env, on_submit_committed, cc);
    free(env.rcpt);
    if (r < 0) {
        cc_smtp_error(cc, -r == ENOSPC ? &st_no_space : &st_io);
        submit_free(ctl, s, true);
        cc->sub = NULL;
        return;
    }
    cc_wait(cc); /* answered by on_submit_committed once durable */
}

static void cmd_submit_abort(struct cconn *cc, const json_t *args)
{
    (void)args;
    submit_free(cc->ctl, cc->sub, true);
    cc->sub = NULL;
    cc_send(cc, ok_obj());
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct command {
    const char *name;
    bool admin; /* root, Tern's user and the socket's group only */
    void (*run)(struct cconn *cc, const json_t *args);
} commands[] = {
    {"ping", false, cmd_ping},
    {"queue.list", false, cmd_list},
    {"queue.show", true, cmd_show},
    {"queue.flush", false, cmd_flush},
    {"queue.hold", true, cmd_hold},
    {"queue.release", true, cmd_release},
    {"queue.delete", true, cmd_delete},
    {"queue.bounce", true, cmd_bounce},
    {"queue.pause", true, cmd_pause},
    {"queue.resume", true, cmd_resume},
    {"queue.paused", false, cmd_paused},
    {"submit.begin", false, cmd_submit_begin},
    {"submit.rcpt", false, cmd_submit_rcpt},
    {"submit.data", false, cmd_submit_data},
    {"submit.end", false, cmd_submit_end},
    {"submit.abort", false, cmd_submit_abort},
};

static void handle_line(struct cconn *cc, const char *line, size_t len)
{
    struct control *ctl = cc->ctl;
    if (++cc->requests > ctl->cfg->control_max_requests) {
        log_warn("cid=%s event=control_limit limit=control_max_requests uid=%u", cc->id,
                 (unsigned)cc->uid);
        cc_close_with(cc, "too many requests on one connection");
        return;
    }
    struct proto_request req;
    char err[300];
    if (proto_request_parse(line, len, &req, err, sizeof err) < 0) {
        cc_error(cc, err);
        return;
    }
    const struct command *c = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0] && !c; i++)
        if (strcmp(commands[i].name, req.cmd) == 0)
            c = &commands[i];
    if (!c) {
        snprintf(err, sizeof err, "unknown command \"%s\"", req.cmd);
        cc_error(cc, err);
    } else if (c->admin && !cc->admin) {
        log_warn("cid=%s event=control_denied cmd=%s uid=%u login=%s", cc->id, c->name,
                 (unsigned)cc->uid, cc->login[0] ? cc->login : "-");
        snprintf(err, sizeof err,
                 "permission denied: %s is for root, the mail system's user and the members "
                 "of the control group",
                 c->name);
        cc_error(cc, err);
    } else {
        log_debug("cid=%s event=control_request cmd=%s", cc->id, c->name);
        c->run(cc, req.args);
    }
    proto_request_free(&req);
}

/* Read and answer every complete request line, in order. */
static void cc_process(struct cconn *cc)
{
    struct control *ctl = cc->ctl;
    while (cc->state == CC_READ && cc->conn) {
        size_t avail = ev_conn_input_len(cc->conn);
        if (avail == 0)
            return;
        if (ev_conn_output_len(cc->conn) >= OUTPUT_MAX) {
            /* a peer that does not read its answers: on_drain goes on, and
               one that takes nothing meets control_idle_timeout */
            if (!cc->output_full) {
                log_info("cid=%s event=control_output_full uid=%u octets=%zu", cc->id,
                         (unsigned)cc->uid, ev_conn_output_len(cc->conn));
                cc->output_full = true;
                ev_conn_set_write_timeout(cc->conn, ctl->cfg->control_idle_timeout);
            }
            return;
        }
        long pos = ev_conn_input_find(cc->conn, '\n', PROTO_LINE_MAX);
        if (pos < 0) {
            if (avail >= PROTO_LINE_MAX) {
                log_warn("cid=%s event=control_limit limit=line uid=%u", cc->id, (unsigned)cc->uid);
                cc_close_with(cc, "request line too long");
            }
            return;
        }
        size_t n = ev_conn_input_peek(cc->conn, ctl->linebuf, (size_t)pos + 1);
        size_t linelen = 0, consumed = 0;
        if (proto_frame((const uint8_t *)ctl->linebuf, n, PROTO_LINE_MAX, &linelen, &consumed) !=
            PROTO_FRAME_LINE)
            panic("control: a line was found and then not");
        ev_conn_input_drain(cc->conn, consumed);
        handle_line(cc, ctl->linebuf, linelen);
    }
}

/* ---- connections ----------------------------------------------------------- */

static void on_read(void *arg)
{
    cc_process(arg);
}

static void cc_free(struct cconn *cc)
{
    struct control *ctl = cc->ctl;
    if (cc->prev)
        cc->prev->next = cc->next;
    else
        ctl->conns = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    ctl->nconns--;
    submit_free(ctl, cc->sub, true);
    json_decref(cc->wait_reply);
    ev_conn_free(cc->conn);
    log_debug("cid=%s event=control_close requests=%zu", cc->id, cc->requests);
    free(cc);
}

static void on_close(void *arg)
{
    struct cconn *cc = arg;
    ev_conn_free(cc->conn);
    cc->conn = NULL;
    if (cc->lookup_pending || cc->state == CC_WAIT) {
        cc->dead = true; /* freed by the callback */
        return;
    }
    cc_free(cc);
}

static void on_timeout(void *arg)
{
    struct cconn *cc = arg;
    if (cc->state != CC_READ) {
        ev_conn_pause(cc->conn, false); /* a timeout stops reading: read on */
        return;
    }
    log_info("cid=%s event=control_idle_timeout uid=%u", cc->id, (unsigned)cc->uid);
    cc_close_with(cc, "idle timeout");
}

/* The queued answers are sent: requests left unread for OUTPUT_MAX go on. */
static void on_drain(void *arg)
{
    struct cconn *cc = arg;
    if (!cc->output_full)
        return;
    cc->output_full = false;
    ev_conn_set_write_timeout(cc->conn, 0);
    cc_process(cc);
}

static const struct ev_conn_ops cc_ops = {
    .on_read = on_read, .on_close = on_close, .on_timeout = on_timeout, .on_drain = on_drain};

/* The peer's login, looked up in a worker (the password database may be
   on the network). */
struct lookup {
    struct cconn *cc;
    uid_t uid;
    char login[LOGIN_MAX];
    char gecos[GECOS_MAX];
};

static void lookup_work(void *arg)
{
    struct lookup *lk = arg;
    struct passwd pw, *res = NULL;
    char buf[16384];
    if (getpwuid_r(lk->uid, &pw, buf, sizeof buf, &res) != 0 || !res)
        return;
    /* a login that fits a local part as it is, or none */
    size_t n = strlen(pw.pw_name);
    if (n == 0 || n >= sizeof lk->login)
        return;
    for (size_t i = 0; i < n; i++) {
        char c = pw.pw_name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return;
    }
    memcpy(lk->login, pw.pw_name, n + 1);
    if (pw.pw_gecos) {
        size_t g = strcspn(pw.pw_gecos, ",");
        if (g >= sizeof lk->gecos)
            g = sizeof lk->gecos - 1;
        memcpy(lk->gecos, pw.pw_gecos, g);
        lk->gecos[g] = '\0';
    }
}

static void lookup_done(void *arg)
{
    struct lookup *lk = arg;
    struct cconn *cc = lk->cc;
    cc->lookup_pending = false;
    memcpy(cc->login, lk->login, sizeof cc->login);
    memcpy(cc->gecos, lk->gecos, sizeof cc->gecos);
    free(lk);
    if (cc->dead) {
        cc_free(cc);
        return;
    }
    if (cc->ctl->shutting_down) {
        cc_close_with(cc, "the server is shutting down");
        return;
    }
    log_info("cid=%s event=control_connect uid=%u gid=%u pid=%d login=%s admin=%s", cc->id,
             (unsigned)cc->uid, (unsigned)cc->gid, (int)cc->pid, cc->login[0] ? cc->login : "-",
             cc->admin ? "yes" : "no");
    if (cc->state == CC_LOOKUP) {
        cc->state = CC_READ;
        cc_process(cc);
    }
}

/* May this peer change the queue? Root, our own user, and members of the
   control group (its process's groups, from SO_PEERGROUPS). */
static bool peer_admin(struct control *ctl, int fd, const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == geteuid() || cred->gid == ctl->admin_gid)
        return true;
    gid_t groups[256];
    socklen_t len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0)
        return false;
    for (size_t i = 0; i < len / sizeof groups[0]; i++)
        if (groups[i] == ctl->admin_gid)
            return true;
    return false;
}

static void on_accept(void *arg, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct control *ctl = arg;
    (void)sa;
    (void)salen;
    if (ctl->shutting_down) {
        close(fd);
        return;
    }
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        log_warn("event=control_refused reason=\"no peer credentials\" error=\"%s\"",
                 strerror(errno));
        close(fd);
        return;
    }
    if (ctl->nconns >= ctl->cfg->control_max_connections) {
        static const char busy[] =
            "{\"ok\":false,\"error\":\"too many control connections; try again later\"}\n";
        ssize_t w = write(fd, busy, sizeof busy - 1);
        (void)w;
        close(fd);
        log_warn("event=control_limit limit=control_max_connections uid=%u pid=%d",
                 (unsigned)cred.uid, (int)cred.pid);
        return;
    }
    struct cconn *cc = xcalloc(1, sizeof *cc);
    cc->ctl = ctl;
    snprintf(cc->id, sizeof cc->id, "c%lu", ++ctl->seq);
    cc->uid = cred.uid;
    cc->gid = cred.gid;
    cc->pid = cred.pid;
    cc->admin = peer_admin(ctl, fd, &cred);
    cc->state = CC_LOOKUP;
    cc->conn = ev_conn_new(ctl->deps.loop, fd, &cc_ops, cc, 2 * PROTO_LINE_MAX);
    ev_conn_set_timeout(cc->conn, ctl->cfg->control_idle_timeout);
    cc->next = ctl->conns;
    if (ctl->conns)
        ctl->conns->prev = cc;
    ctl->conns = cc;
    ctl->nconns++;
    struct lookup *lk = xcalloc(1, sizeof *lk);
    lk->cc = cc;
    lk->uid = cred.uid;
    cc->lookup_pending = true;
    ev_workers_submit(ctl->deps.workers, lookup_work, lookup_done, lk);
}

/* ---- the socket ------------------------------------------------------------- */

/* Remove a stale socket at path; refuse a live one or another kind of file. */
static int clear_path(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
        close(fd);
        snprintf(err, errlen, "%s: another server answers on this socket", path);
        return -1;
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0) {
        snprintf(err, errlen, "%s: cannot remove the stale socket: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

struct control *control_new(const struct control_deps *deps, char *err, size_t errlen)
{
    proto_init();
    const struct config *cfg = deps->cfg;
    gid_t gid = getegid();
    if (cfg->control_group) {
        struct group gr, *res = NULL;
        char buf[16384];
        if (getgrnam_r(cfg->control_group, &gr, buf, sizeof buf, &res) != 0 || !res) {
            snprintf(err, errlen, "control_group %s: no such group", cfg->control_group);
            return NULL;
        }
        gid = gr.gr_gid;
    }
    char *dir = xstrdup(cfg->control_socket);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir_p(dir, 0755) < 0) {
            snprintf(err, errlen, "%s: %s", dir, strerror(errno));
            free(dir);
            return NULL;
        }
    }
    free(dir);
    if (clear_path(cfg->control_socket, err, errlen) < 0)
        return NULL;
    struct control *c = xcalloc(1, sizeof *c);
    c->deps = *deps;
    c->cfg = cfg;
    c->admin_gid = gid;
    c->path = xstrdup(cfg->control_socket);
    c->listener = ev_listener_new_unix(deps->loop, c->path, on_accept, c, err, errlen);
    if (!c->listener) {
        free(c->path);
        free(c);
        return NULL;
    }
    struct stat st;
    if ((cfg->control_group && chown(c->path, (uid_t)-1, gid) != 0) ||
        chmod(c->path, (mode_t)cfg->control_socket_mode) != 0 || stat(c->path, &st) != 0) {
        snprintf(err, errlen, "%s: cannot set its group or mode: %s", c->path, strerror(errno));
        ev_listener_free(c->listener);
        unlink(c->path);
        free(c->path);
        free(c);
        return NULL;
    }
    c->ino = st.st_ino;
    c->linebuf = xmalloc(PROTO_LINE_MAX);
    c->datbuf = xmalloc(PROTO_DATA_MAX);
    c->decbuf = xmalloc(DEC_MAX);
    log_info("event=control_listening path=%s mode=%04o group=%s", c->path,
             (unsigned)cfg->control_socket_mode, cfg->control_group ? cfg->control_group : "-");
    return c;
}

static void remove_socket(struct control *c)
{
    struct stat st;
    if (c->path && stat(c->path, &st) == 0 && st.st_ino == c->ino)
        unlink(c->path);
}

void control_shutdown(struct control *c)
{
    if (!c || c->shutting_down)
        return;
    c->shutting_down = true;
    ev_listener_free(c->listener);
    c->listener = NULL;
    remove_socket(c);
    struct cconn *cc = c->conns;
    while (cc) {
        struct cconn *next = cc->next;
        if (cc->state != CC_WAIT && !cc->lookup_pending && cc->state != CC_CLOSING)
            cc_close_with(cc, "the server is shutting down");
        cc = next;
    }
}

size_t control_waiting(const struct control *c)
{
    return c ? c->nwaiting : 0;
}

int control_set_owner(struct control *c, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    gid_t g = c->cfg->control_group ? (gid_t)-1 : gid;
    if (fchownat(AT_FDCWD, c->path, uid, g, AT_SYMLINK_NOFOLLOW) != 0) {
        snprintf(err, errlen, "%s: chown: %s", c->path, strerror(errno));
        return -1;
    }
    if (!c->cfg->control_group)
        c->admin_gid = gid;
    return 0;
}

void control_set_conf(struct control *c, const struct config *cfg, const struct aliases *aliases)
{
    c->cfg = cfg;
    c->deps.cfg = cfg;
    c->deps.aliases = aliases;
}

void control_free(struct control *c)
{
    if (!c)
        return;
    ev_listener_free(c->listener);
    if (!c->shutting_down)
        remove_socket(c);
    while (c->conns)
        cc_free(c->conns);
    free(c->path);
    free(c->linebuf);
    free(c->datbuf);
    free(c->decbuf);
    free(c);
}
