/*
 * sched - the queue manager; see sched.h.
 *
 * Every recipient of a live message is in one of these places: final in the
 * journal (delivered, bounced, expired), waiting in the ready queue, being
 * delivered by a worker (in flight), waiting in the retry list until its next
 * attempt time. Recipients in other domains are grouped per message and
 * domain into relay items, which go the same way through their own ready
 * queue and retry list to the SMTP delivery agent (deliver/relay.c), at most
 * relay_concurrency at once. Which way a recipient goes is decided when its
 * message is queued (rcpt_to_maildir): Maildir for a local domain without a
 * route of its own and for a maildir route, the relay for every other route
 * and every other domain. A recipient still deferred queue_lifetime after
 * its message arrived expires. A message is removed from the spool when all
 * its recipients are final.
 *
 * Operator control (sched_control). A held message has no item anywhere: its
 * items are purged when it is held, a delivery in flight records its outcome
 * and is not retried, and release queues it afresh. A message with a
 * delivery in flight is "busy" (struct mctl counts them); deleting or
 * bouncing it waits for the count to reach zero (nothing new starts
 * meanwhile), and so does the fresh queueing of a release, so that no
 * recipient is ever delivered twice at once. Paused domains: a ready local
 * item for one is parked, a relay destination keeps its items; resume puts
 * them back.
 */
#include "sched/sched.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "deliver/dsn.h"
#include "deliver/maildir.h"
#include "config/transport.h"
#include "deliver/relay.h"
#include "event/event.h"
#include "core/buf.h"
#include "smtp/smtp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds before the first retry of a local delivery at most: a Maildir that
   could not be written (a full disk, a quota) is usually soon writable again,
   so retry_min applies only when it is shorter. retry_max is the ceiling. */
#define LOCAL_RETRY_MIN 60
#define BATCH_MAX 16       /* deliveries handed to one worker at once */
#define RELAY_RCPT_MAX 100 /* recipients of one message sent in one transaction */

/* One delivery of one recipient of one message. */
struct item {
    struct item *next;
    struct sched *s;
    spool_id id;
    size_t idx;                 /* recipient index in the envelope */
    int64_t due;                /* unix seconds of the next attempt (retry list) */
    char *mailbox;              /* delivery address */
    char *sender;               /* envelope sender */
    struct spool_body *body;    /* pinned message data while in flight */
    struct maildir_delivery md; /* the delivery and its result */
};

/* Deliveries handed to one worker together (see maildir.h). */
struct batch {
    struct sched *s;
    size_t n;
    struct item *items[BATCH_MAX];
};

/* Recipients of one message at one domain, relayed together. */
struct relay_item {
    struct relay_item *next;
    struct sched *s;
    spool_id id;
    char *domain;
    size_t n;
    size_t *idx; /* recipient indexes in the envelope, RELAY_RCPT_MAX at most */
    int64_t due; /* unix seconds of the next attempt */
    /* while in flight (copies: the envelope may change meanwhile) */
    struct relay_job job;
    struct relay_rcpt *rc; /* n entries */
    char *sender, *envid;
    char **addr, **orcpt; /* n entries each */
    struct spool_body *body;
};

/* A destination (the recipients' domain, the next hop): its queue of relay
   items and its concurrency window (slow start, back-off on errors). */
struct dest {
    struct dest *hnext; /* hash chain */
    struct dest *anext; /* ring of destinations with items ready */
    bool active;        /* on the ring */
    char *domain;
    struct relay_item *head, **tail; /* ready items, FIFO */
    size_t nready;
    size_t in_flight;
    double window; /* transactions allowed at once: starts at DEST_WINDOW_START,
                      +1 per transaction that reached a host, halved (at least 1)
                      by one that reached none; at most destination_concurrency */
};

#define DEST_BUCKETS 1024
#define DEST_WINDOW_START 5.0
#define MCTL_BUCKETS 1024

/* What waits for a busy message's deliveries to end. */
enum mctl_pending {
    MCTL_NONE = 0, /* nothing: the entry only counts deliveries */
    MCTL_REQUEUE,  /* released while busy: queue it afresh */
    MCTL_DELETE,   /* remove without a report */
    MCTL_BOUNCE,   /* report to the sender and remove */
};

/* A message with deliveries in flight or an action waiting for them. */
struct mctl {
    struct mctl *next; /* hash chain */
    spool_id id;
    unsigned busy;            /* local items and relay items in flight */
    enum mctl_pending action; /* carried out when busy reaches 0 */
};

struct sched {
    struct ev_loop *loop;
    struct ev_workers *workers;
    struct spool *sp;
    const struct config *cfg;
    struct item *ready, **ready_tail; /* FIFO of deliveries to start */
    size_t nready;
    struct item *retry; /* waiting for their next attempt time */
    struct ev_timer *retry_timer;
    size_t in_flight;
    bool stopped;
    struct relay *relay;                      /* NULL: no relay transport */
    const struct transport_table *transports; /* transport_file routes, or NULL */
    struct dest *dests[DEST_BUCKETS];         /* destinations, by domain */
    struct dest *ring;                        /* destinations with items ready */
    size_t rready_n;                          /* relay items ready in all */
    struct relay_item *rretry;                /* relay items waiting for their next attempt */
    size_t relay_in_flight;
    struct item *parked;             /* ready local items of paused domains */
    char **paused;                   /* paused domains, lowercase */
    size_t npaused;                  /* entries in paused */
    struct mctl *mctl[MCTL_BUCKETS]; /* busy messages, by id */
};

uint32_t sched_backoff(uint32_t attempts, uint32_t min_s, uint32_t max_s)
{
    uint64_t d = min_s;
    for (uint32_t i = 1; i < attempts && d < max_s; i++)
        d *= 2;
    return d > max_s ? max_s : (uint32_t)d;
}

static void item_free(struct item *it)
{
    if (!it)
        return;
    spool_body_close(it->body);
    free(it->mailbox);
    free(it->sender);
    free(it);
}

static void sched_dispatch(struct sched *s);
static void busy_start(struct sched *s, spool_id id);
static void busy_end(struct sched *s, spool_id id);
static bool msg_blocked(const struct sched *s, spool_id id, const struct spool_envelope *env);
static bool domain_paused(const struct sched *s, const char *domain);

/* The domain of "local@domain" ("" without one). */
static const char *addr_domain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

static bool rcpt_final(uint8_t state)
{
    return state == SPOOL_RCPT_DELIVERED || state == SPOOL_RCPT_BOUNCED ||
           state == SPOOL_RCPT_EXPIRED;
}

/* Remove the message when every recipient is final. */
static void sched_maybe_remove(struct sched *s, spool_id id)
{
    const struct spool_envelope *env = spool_get(s->sp, id);
    if (!env)
        return;
    for (size_t i = 0; i < env->nrcpt; i++)
        if (!rcpt_final(env->rcpt[i].state))
            return;
    if (spool_remove(s->sp, id) < 0)
        log_error("qid=%016" PRIX64 " event=remove_failed", id);
    else
        log_info("qid=%016" PRIX64 " event=removed", id);
}

static void ready_push(struct sched *s, struct item *it)
{
    it->next = NULL;
    *s->ready_tail = it;
    s->ready_tail = &it->next;
    s->nready++;
}

static void relay_item_free(struct relay_item *ri)
{
    if (!ri)
        return;
    spool_body_close(ri->body);
    free(ri->domain);
    free(ri->sender);
    free(ri->envid);
    for (size_t i = 0; ri->addr && i < ri->n; i++) {
        free(ri->addr[i]);
        free(ri->orcpt[i]);
    }
    free(ri->addr);
    free(ri->orcpt);
    free(ri->rc);
    free(ri->idx);
    free(ri);
}

static size_t dest_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % DEST_BUCKETS;
}

static struct dest *dest_get(struct sched *s, const char *domain)
{
    struct dest **pp = &s->dests[dest_hash(domain)];
    for (; *pp; pp = &(*pp)->hnext)
        if (strcmp((*pp)->domain, domain) == 0)
            return *pp;
    struct dest *d = xcalloc(1, sizeof *d);
    d->domain = xstrdup(domain);
    d->tail = &d->head;
    d->window = DEST_WINDOW_START;
    *pp = d;
    return d;
}

/* Forget a destination with nothing queued or in flight (its window starts
   again next time, as Postfix's does after its idle time). */
static void dest_maybe_free(struct sched *s, struct dest *d)
{
    if (d->nready || d->in_flight || d->active)
        return;
    struct dest **pp = &s->dests[dest_hash(d->domain)];
    while (*pp && *pp != d)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = d->hnext;
    free(d->domain);
    free(d);
}

static void rready_push(struct sched *s, struct relay_item *ri)
{
    struct dest *d = dest_get(s, ri->domain);
    ri->next = NULL;
    *d->tail = ri;
    d->tail = &ri->next;
    d->nready++;
    s->rready_n++;
    if (!d->active) {
        d->active = true;
        d->anext = s->ring;
        s->ring = d;
    }
}

/* The next ready item of a destination with room in its window, round robin. */
static struct relay_item *rready_pop(struct sched *s)
{
    struct dest **pp = &s->ring;
    while (*pp) {
        struct dest *d = *pp;
        if (!d->head) {
            *pp = d->anext;
            d->active = false;
            dest_maybe_free(s, d);
            continue;
        }
        if (s->npaused && domain_paused(s, d->domain)) {
            pp = &d->anext; /* paused: its items wait */
            continue;
        }
        size_t limit = (size_t)d->window;
        if (limit > s->cfg->destination_concurrency)
            limit = s->cfg->destination_concurrency;
        if (d->in_flight >= (limit ? limit : 1)) {
            pp = &d->anext;
            continue;
        }
        struct relay_item *ri = d->head;
        d->head = ri->next;
        if (!d->head)
            d->tail = &d->head;
        d->nready--;
        s->rready_n--;
        d->in_flight++;
        /* Rotate: the next pop starts with the next destination. */
        *pp = d->anext;
        d->anext = NULL;
        struct dest **end = pp;
        while (*end)
            end = &(*end)->anext;
        *end = d;
        ri->next = NULL;
        return ri;
    }
    return NULL;
}

/* A transaction to d ended; reached: it got an answer from some host. */
static void dest_done(struct sched *s, const char *domain, bool reached)
{
    struct dest *d = dest_get(s, domain);
    if (d->in_flight)
        d->in_flight--;
    if (reached) {
        if (d->window < (double)s->cfg->destination_concurrency)
            d->window += 1.0;
    } else {
        d->window = d->window / 2 < 1.0 ? 1.0 : d->window / 2;
    }
    dest_maybe_free(s, d);
}

static void retry_arm(struct sched *s)
{
    if (!s->retry && !s->rretry)
        return;
    int64_t first = s->retry ? s->retry->due : s->rretry->due;
    for (struct item *it = s->retry; it; it = it->next)
        if (it->due < first)
            first = it->due;
    for (struct relay_item *ri = s->rretry; ri; ri = ri->next)
        if (ri->due < first)
            first = ri->due;
    int64_t now = now_real_us() / 1000000;
    ev_timer_start(s->retry_timer, first > now ? (uint64_t)(first - now) * 1000 : 0);
}

static void on_retry_timer(void *arg)
{
    struct sched *s = arg;
    int64_t now = now_real_us() / 1000000;
    struct item **pp = &s->retry;
    while (*pp) {
        struct item *it = *pp;
        if (it->due <= now) {
            *pp = it->next;
            ready_push(s, it);
        } else {
            pp = &it->next;
        }
    }
    struct relay_item **rp = &s->rretry;
    while (*rp) {
        struct relay_item *ri = *rp;
        if (ri->due <= now) {
            *rp = ri->next;
            rready_push(s, ri);
        } else {
            rp = &ri->next;
        }
    }
    retry_arm(s);
    sched_dispatch(s);
}

static void deliver_work(void *arg)
{
    struct batch *b = arg;
    struct maildir_delivery *d[BATCH_MAX];
    for (size_t i = 0; i < b->n; i++)
        d[i] = &b->items[i]->md;
    maildir_deliver_batch(d, b->n);
}

/* ---- bounces ---- */

/* One recipient that failed, for a report. */
struct bounce_rcpt {
    const char *addr, *orcpt, *status, *remote_mta, *diagnostic;
    unsigned notify;
    enum dsn_action action;
    int64_t retry_until; /* delayed: Will-Retry-Until */
};

static ssize_t body_read(void *arg, uint64_t off, void *buf, size_t n)
{
    return spool_body_read(arg, off, buf, n);
}

static void bounce_committed(void *arg, spool_id id, int error)
{
    struct sched *s = arg;
    if (error) {
        log_error("qid=%016" PRIX64 " event=bounce_commit_failed error=\"%s\"", id,
                  strerror(error));
        return;
    }
    sched_message_queued(s, id);
}

/*
 * Report failed recipients of message id to its sender (RFC 3464 / 3461):
 * compose the report and queue it as a new message from <>. It is committed
 * before the caller records the recipients as final, so the journal never
 * holds a finished original without its report. Returns the report's queue id
 * (0 when none was due or it could not be made, which is logged).
 */
static spool_id sched_bounce(struct sched *s, spool_id id, const struct spool_envelope *env,
                             struct spool_body *body, const struct bounce_rcpt *br, size_t n)
{
    struct dsn_rcpt *dr = xcalloc(n ? n : 1, sizeof *dr);
    size_t k = 0;
    int64_t now = now_real_us() / 1000000;
    for (size_t i = 0; i < n && k < DSN_RCPT_MAX; i++) {
        if (!dsn_should_report(br[i].notify, br[i].action))
            continue;
        dr[k].addr = br[i].addr;
        dr[k].orcpt = br[i].orcpt;
        dr[k].action = br[i].action;
        dr[k].status = br[i].status;
        dr[k].remote_mta = br[i].remote_mta;
        dr[k].diagnostic = br[i].diagnostic;
        dr[k].last_attempt = now;
        dr[k].retry_until = br[i].retry_until;
        k++;
    }
    size_t omitted = 0; /* one report names DSN_RCPT_MAX recipients at most */
    for (size_t i = 0; i < n; i++)
        if (dsn_should_report(br[i].notify, br[i].action))
            omitted++;
    omitted -= k;
    if (omitted)
        log_warn("qid=%016" PRIX64 " event=bounce_truncated reported=%zu omitted=%zu "
                 "note=\"the report names the first %d recipients; the log has every one\"",
                 id, k, omitted, DSN_RCPT_MAX);
    spool_id rid = 0;
    enum dsn_route route = dsn_route(env->sender, s->cfg->hostname);
    if (k == 0 || route == DSN_ROUTE_DROP) {
        if (k && route == DSN_ROUTE_DROP)
            log_warn("qid=%016" PRIX64 " event=bounce_dropped reason=\"a report to the "
                     "postmaster failed\"",
                     id);
        free(dr);
        return 0;
    }
    char to[SMTP_PATH_MAX + 8], from[SMTP_PATH_MAX + 8] = "";
    if (route == DSN_ROUTE_POSTMASTER) {
        snprintf(to, sizeof to, "postmaster@%s",
                 s->cfg->local_domains.n ? s->cfg->local_domains.v[0] : s->cfg->hostname);
        snprintf(from, sizeof from, "%s@%s", DSN_DOUBLE_BOUNCE, s->cfg->hostname);
    } else {
        snprintf(to, sizeof to, "%s", env->sender);
    }
    rid = spool_new_id(s->sp);
    char unique[40], qid[20];
    snprintf(unique, sizeof unique, "%016" PRIX64 ".%" PRId64, rid, now);
    snprintf(qid, sizeof qid, "%016" PRIX64, id);
    struct dsn_report rep = {.hostname = s->cfg->hostname,
                             .to = to,
                             .unique = unique,
                             .queue_id = qid,
                             .envid = env->envid,
                             .ret = (enum smtp_ret)env->ret,
                             .smtputf8 = env->smtputf8,
                             .arrival = env->arrival,
                             .now = now,
                             .nrcpt = k,
                             .rcpt = dr,
                             .orig_size = body ? spool_body_size(body) : 0,
                             .read = body_read,
                             .read_arg = body,
                             .return_max = DSN_RETURN_MAX};
    struct buf out;
    buf_init(&out, DSN_RETURN_MAX + DSN_HEADERS_MAX + 1024 * 1024);
    unsigned flags = 0;
    int r = body ? dsn_compose(&rep, &out, &flags) : -1;
    free(dr);
    if (r == 0)
        r = spool_append(s->sp, rid, out.data, out.len);
    if (r == 0) {
        struct spool_rcpt rc = {.addr = to, .notify = SMTP_NOTIFY_NEVER};
        struct spool_envelope benv = {.sender = from,
                                      .body = (flags & DSN_OUT_8BIT) ? SMTP_BODY_8BITMIME
                                                                     : SMTP_BODY_NONE,
                                      .smtputf8 = (flags & DSN_OUT_8BIT) && env->smtputf8,
                                      .helo = s->cfg->hostname,
                                      .client_addr = "local",
                                      .listener = "bounce",
                                      .arrival = now,
                                      .size = out.len,
                                      .nrcpt = 1,
                                      .rcpt = &rc};
        r = spool_commit(s->sp, rid, &benv, bounce_committed, s);
    }
    buf_free(&out);
    if (r != 0) {
        spool_abort(s->sp, rid);
        log_error("qid=%016" PRIX64 " event=bounce_failed reason=\"cannot compose or queue the "
                  "report\"",
                  id);
        return 0;
    }
    log_info("qid=%016" PRIX64 " event=%s bounce_qid=%016" PRIX64 " to=<%s> nrcpt=%zu", id,
             br[0].action == DSN_ACTION_DELAYED ? "delay_warning" : "bounce", rid, to, k);
    return rid;
}

/* Record the outcome of one delivery. */
static void deliver_outcome(struct sched *s, struct item *it)
{
    spool_id id = it->id;
    const struct spool_envelope *env = spool_get(s->sp, it->id);
    if (!env || it->idx >= env->nrcpt) {
        item_free(it);
        return;
    }
    if (it->md.error != 0 && it->md.permanent) {
        char diag[400];
        snprintf(diag, sizeof diag, "local delivery failed: %s", it->md.text);
        struct bounce_rcpt br = {.addr = it->mailbox,
                                 .orcpt = env->rcpt[it->idx].orcpt,
                                 .status = "5.3.0",
                                 .diagnostic = diag,
                                 .notify = env->rcpt[it->idx].notify,
                                 .action = DSN_ACTION_FAILED};
        sched_bounce(s, id, env, it->body, &br, 1);
        env = spool_get(s->sp, it->id);
    }
    spool_body_close(it->body);
    it->body = NULL;
    const struct spool_rcpt *r = &env->rcpt[it->idx];
    uint32_t attempts = r->attempts + 1;
    int64_t now = now_real_us() / 1000000;
    double delay = (double)(now - env->arrival);
    char status[400];
    if (it->md.error == 0) {
        metrics_inc(M_DELIVERIES, METRICS_DELIVERY_SENT, METRICS_DEST_LOCAL);
        snprintf(status, sizeof status, "dsn=2.0.0 delivered to maildir");
        spool_set_rcpt(s->sp, it->id, it->idx, SPOOL_RCPT_DELIVERED, attempts, 0, status);
        log_info("qid=%016" PRIX64 " to=<%s> relay=maildir delay=%.0f dsn=2.0.0 status=sent "
                 "(delivered to maildir)",
                 it->id, it->mailbox, delay);
        item_free(it);
    } else if (it->md.permanent) {
        metrics_inc(M_DELIVERIES, METRICS_DELIVERY_BOUNCED, METRICS_DEST_LOCAL);
        snprintf(status, sizeof status, "dsn=5.3.0 %s", it->md.text);
        spool_set_rcpt(s->sp, it->id, it->idx, SPOOL_RCPT_BOUNCED, attempts, 0, status);
        log_info("qid=%016" PRIX64 " to=<%s> relay=maildir delay=%.0f dsn=5.3.0 status=bounced "
                 "(%s)",
                 it->id, it->mailbox, delay, it->md.text);
        item_free(it);
    } else {
        uint32_t first = s->cfg->retry_min < LOCAL_RETRY_MIN ? s->cfg->retry_min : LOCAL_RETRY_MIN;
        uint32_t wait = sched_backoff(attempts, first, s->cfg->retry_max);
        metrics_inc(M_DELIVERIES, METRICS_DELIVERY_DEFERRED, METRICS_DEST_LOCAL);
        snprintf(status, sizeof status, "dsn=4.3.0 %s", it->md.text);
        spool_set_rcpt(s->sp, it->id, it->idx, SPOOL_RCPT_DEFERRED, attempts, now + wait, status);
        log_info("qid=%016" PRIX64 " to=<%s> relay=maildir delay=%.0f dsn=4.3.0 status=deferred "
                 "(%s) retry_in=%us",
                 it->id, it->mailbox, delay, it->md.text, wait);
        if (msg_blocked(s, id, spool_get(s->sp, id))) {
            item_free(it); /* held, or deleted or bounced once its deliveries end */
        } else {
            it->due = now + wait;
            it->next = s->retry;
            s->retry = it;
            retry_arm(s);
        }
    }
    sched_maybe_remove(s, id);
}

static void deliver_done(void *arg)
{
    struct batch *b = arg;
    struct sched *s = b->s;
    s->in_flight -= b->n;
    for (size_t i = 0; i < b->n; i++) {
        spool_id id = b->items[i]->id;
        deliver_outcome(s, b->items[i]);
        busy_end(s, id);
    }
    free(b);
    sched_dispatch(s);
}

/* ---- relay ---- */

/* "host[addr]:port" -> "host" for Remote-MTA. */
static void relay_host(const char *desc, char *out, size_t outlen)
{
    size_t n = strcspn(desc, "[");
    if (strcmp(desc, "none") == 0 || n == 0 || n >= outlen) {
        out[0] = '\0';
        return;
    }
    memcpy(out, desc, n);
    out[n] = '\0';
}

static void relay_done(void *arg, struct relay_job *job)
{
    struct relay_item *ri = arg;
    struct sched *s = ri->s;
    s->relay_in_flight--;
    /* Did any host answer? (Not when every recipient is deferred for want of a
       connection or an answer: the destination is in trouble, slow down.) */
    bool reached = false;
    for (size_t k = 0; k < ri->n; k++)
        if (ri->rc[k].result != RELAY_DEFERRED || strncmp(ri->rc[k].dsn, "4.4.", 4) != 0)
            reached = true;
    dest_done(s, ri->domain, reached);
    spool_id id = ri->id;
    int64_t now = now_real_us() / 1000000;
    const struct spool_envelope *env = spool_get(s->sp, id);
    char remote[300];
    relay_host(job->relay_desc, remote, sizeof remote);
    /* First the report for the recipients that failed for good, so that it is
       in the journal before their final states. */
    struct bounce_rcpt *br = xcalloc(ri->n ? ri->n : 1, sizeof *br);
    char(*status)[32] = xcalloc(ri->n ? ri->n : 1, sizeof *status);
    size_t nb = 0;
    for (size_t k = 0; env && k < ri->n; k++) {
        const struct relay_rcpt *rc = &ri->rc[k];
        bool expired =
            rc->result == RELAY_DEFERRED && now - env->arrival >= (int64_t)s->cfg->queue_lifetime;
        if (rc->result != RELAY_BOUNCED && !expired)
            continue;
        snprintf(status[nb], sizeof status[nb], "%s", expired ? "4.4.7" : rc->dsn);
        br[nb].addr = rc->addr;
        br[nb].orcpt = rc->orcpt;
        br[nb].notify = rc->notify;
        br[nb].status = expired && rc->dsn[0] == '4' ? rc->dsn : status[nb];
        br[nb].remote_mta = remote[0] ? remote : NULL;
        br[nb].diagnostic = rc->text;
        br[nb].action = DSN_ACTION_FAILED;
        nb++;
    }
    if (nb)
        sched_bounce(s, id, env, ri->body, br, nb);
    /* Then the optional delay warning (delay_warning_time, off by default):
       once, at the attempt that first finds a recipient deferred for that
       long (the previous attempt was due before the threshold). */
    env = spool_get(s->sp, id);
    uint32_t dwt = s->cfg->delay_warning_time;
    nb = 0;
    for (size_t k = 0; dwt && env && k < ri->n; k++) {
        const struct relay_rcpt *rc = &ri->rc[k];
        size_t idx = ri->idx[k];
        if (rc->result != RELAY_DEFERRED || idx >= env->nrcpt ||
            now - env->arrival >= (int64_t)s->cfg->queue_lifetime)
            continue;
        /* When was the previous attempt? This one was due at next_attempt, which
           the previous one set to its own time plus backoff(attempts). */
        uint32_t done_attempts = env->rcpt[idx].attempts;
        int64_t due = env->rcpt[idx].next_attempt ? env->rcpt[idx].next_attempt : env->arrival;
        int64_t prev =
            done_attempts == 0
                ? INT64_MIN / 2
                : due - (int64_t)sched_backoff(done_attempts, s->cfg->retry_min, s->cfg->retry_max);
        if (now - env->arrival < (int64_t)dwt || prev - env->arrival >= (int64_t)dwt)
            continue;
        br[nb] = (struct bounce_rcpt){.addr = rc->addr,
                                      .orcpt = rc->orcpt,
                                      .notify = rc->notify,
                                      .status = rc->dsn,
                                      .remote_mta = remote[0] ? remote : NULL,
                                      .diagnostic = rc->text,
                                      .action = DSN_ACTION_DELAYED,
                                      .retry_until = env->arrival + s->cfg->queue_lifetime};
        nb++;
    }
    if (nb)
        sched_bounce(s, id, env, ri->body, br, nb);
    free(br);
    free(status);
    spool_body_close(ri->body);
    ri->body = NULL;
    env = spool_get(s->sp, id);
    struct relay_item *again = NULL;
    for (size_t k = 0; env && k < ri->n; k++) {
        size_t idx = ri->idx[k];
        if (idx >= env->nrcpt)
            continue;
        const struct relay_rcpt *rc = &ri->rc[k];
        uint32_t attempts = env->rcpt[idx].attempts + 1;
        double delay = (double)(now - env->arrival);
        char st[700];
        snprintf(st, sizeof st, "dsn=%s %s", rc->dsn, rc->text);
        const char *word;
        if (rc->result == RELAY_SENT) {
            spool_set_rcpt(s->sp, id, idx, SPOOL_RCPT_DELIVERED, attempts, 0, st);
            word = "sent";
        } else if (rc->result == RELAY_BOUNCED) {
            spool_set_rcpt(s->sp, id, idx, SPOOL_RCPT_BOUNCED, attempts, 0, st);
            word = "bounced";
        } else if (now - env->arrival >= (int64_t)s->cfg->queue_lifetime) {
            spool_set_rcpt(s->sp, id, idx, SPOOL_RCPT_EXPIRED, attempts, 0, st);
            word = "expired";
        } else {
            uint32_t wait = sched_backoff(attempts, s->cfg->retry_min, s->cfg->retry_max);
            spool_set_rcpt(s->sp, id, idx, SPOOL_RCPT_DEFERRED, attempts, now + wait, st);
            word = "deferred";
            if (!again) {
                again = xcalloc(1, sizeof *again);
                again->s = s;
                again->id = id;
                again->domain = xstrdup(ri->domain);
                again->due = now + wait;
                again->idx = xcalloc(ri->n, sizeof *again->idx);
            }
            again->idx[again->n++] = idx;
        }
        log_info("qid=%016" PRIX64 " to=<%s> relay=%s delay=%.0f dsn=%s status=%s (%s)", id,
                 ri->addr[k], job->relay_desc, delay, rc->dsn, word, rc->text);
        metrics_inc(M_DELIVERIES, metrics_delivery_status(word),
                    job->lmtp ? METRICS_DEST_LMTP : METRICS_DEST_RELAY);
        env = spool_get(s->sp, id);
    }
    relay_item_free(ri);
    if (again && msg_blocked(s, id, spool_get(s->sp, id))) {
        relay_item_free(again); /* held, or deleted or bounced once its deliveries end */
        again = NULL;
    }
    if (again) {
        again->next = s->rretry;
        s->rretry = again;
        retry_arm(s);
    }
    sched_maybe_remove(s, id);
    busy_end(s, id);
    sched_dispatch(s);
}

static void relay_dispatch(struct sched *s)
{
    while (!s->stopped && s->relay && s->rready_n &&
           s->relay_in_flight < s->cfg->relay_concurrency) {
        struct relay_item *ri = rready_pop(s);
        if (!ri)
            break; /* every destination with mail ready is at its window */
        const struct spool_envelope *env = spool_get(s->sp, ri->id);
        if (env && msg_blocked(s, ri->id, env))
            env = NULL; /* held meanwhile: dropped, queued again at release */
        ri->body = env ? spool_body_open(s->sp, ri->id) : NULL;
        if (!ri->body) {
            dest_done(s, ri->domain, true);
            relay_item_free(ri);
            continue;
        }
        ri->sender = xstrdup(env->sender);
        ri->envid = env->envid ? xstrdup(env->envid) : NULL;
        ri->rc = xcalloc(ri->n, sizeof *ri->rc);
        ri->addr = xcalloc(ri->n, sizeof *ri->addr);
        ri->orcpt = xcalloc(ri->n, sizeof *ri->orcpt);
        size_t n = 0;
        for (size_t k = 0; k < ri->n; k++) {
            size_t idx = ri->idx[k];
            if (idx >= env->nrcpt || rcpt_final(env->rcpt[idx].state))
                continue;
            ri->idx[n] = idx;
            ri->addr[n] = xstrdup(env->rcpt[idx].addr);
            ri->orcpt[n] = env->rcpt[idx].orcpt ? xstrdup(env->rcpt[idx].orcpt) : NULL;
            ri->rc[n].addr = ri->addr[n];
            ri->rc[n].orcpt = ri->orcpt[n];
            ri->rc[n].notify = env->rcpt[idx].notify;
            n++;
        }
        ri->n = n;
        if (n == 0) {
            dest_done(s, ri->domain, true);
            relay_item_free(ri);
            continue;
        }
        struct relay_job *j = &ri->job;
        j->id = ri->id;
        j->sender = ri->sender;
        j->domain = ri->domain;
        j->ret = env->ret;
        j->envid = ri->envid;
        j->body_8bit = env->body == SMTP_BODY_8BITMIME;
        j->smtputf8 = env->smtputf8;
        j->body = ri->body;
        j->nrcpt = n;
        j->rcpt = ri->rc;
        j->done = relay_done;
        j->arg = ri;
        s->relay_in_flight++;
        busy_start(s, ri->id);
        relay_start(s->relay, j);
    }
}

/*
 * Whether recipient addr is delivered to Maildir (else it is relayed): a
 * local domain goes to Maildir unless the transport file names it (or a
 * parent domain: the "*" entry stands for other domains only, as the
 * relayhost does), and any domain routed "maildir" goes there.
 */
static bool rcpt_to_maildir(const struct sched *s, const char *addr)
{
    const char *at = strrchr(addr, '@');
    const char *dom = at ? at + 1 : "";
    bool local = config_is_local_domain(s->cfg, dom);
    const struct route *rt =
        local ? transport_lookup_named(s->transports, dom) : transport_lookup(s->transports, dom);
    return rt ? rt->kind == ROUTE_MAILDIR : local;
}

/* Queue the recipients of message id that go to the relay, per domain. */
static void relay_queue_message(struct sched *s, spool_id id, const struct spool_envelope *env,
                                int64_t now)
{
    bool *taken = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof *taken);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct spool_rcpt *r = &env->rcpt[i];
        if (taken[i] || rcpt_final(r->state) || rcpt_to_maildir(s, r->addr))
            continue;
        const char *dom = strrchr(r->addr, '@');
        dom = dom ? dom + 1 : "";
        struct relay_item *ri = xcalloc(1, sizeof *ri);
        ri->s = s;
        ri->id = id;
        ri->domain = xstrdup(dom);
        ascii_lower(ri->domain);
        ri->idx = xcalloc(RELAY_RCPT_MAX, sizeof *ri->idx);
        int64_t due = 0;
        for (size_t j = i; j < env->nrcpt && ri->n < RELAY_RCPT_MAX; j++) {
            const struct spool_rcpt *q = &env->rcpt[j];
            const char *d = strrchr(q->addr, '@');
            if (taken[j] || rcpt_final(q->state) || !d || !ascii_ieq(d + 1, ri->domain) ||
                rcpt_to_maildir(s, q->addr))
                continue;
            taken[j] = true;
            ri->idx[ri->n++] = j;
            if (q->next_attempt > due)
                due = q->next_attempt;
        }
        ri->idx = xrealloc(ri->idx, ri->n * sizeof *ri->idx);
        if (due > now) {
            ri->due = due;
            ri->next = s->rretry;
            s->rretry = ri;
        } else {
            rready_push(s, ri);
        }
    }
    free(taken);
}

static void sched_dispatch(struct sched *s)
{
    /* Stopped: nothing starts, and the workers may be gone (a report committed
       by the spool's last flush at exit comes back here). */
    if (s->stopped)
        return;
    relay_dispatch(s);
    /* Spread what is ready over the workers, at most BATCH_MAX a batch. */
    size_t nworkers = ev_workers_threads(s->workers);
    while (!s->stopped && s->ready && s->in_flight < s->cfg->delivery_concurrency) {
        size_t want = (s->nready + nworkers - 1) / nworkers;
        if (want > BATCH_MAX)
            want = BATCH_MAX;
        if (want > s->cfg->delivery_concurrency - s->in_flight)
            want = s->cfg->delivery_concurrency - s->in_flight;
        struct batch *b = xcalloc(1, sizeof *b);
        b->s = s;
        while (b->n < want && s->ready) {
            struct item *it = s->ready;
            s->ready = it->next;
            s->nready--;
            if (!s->ready)
                s->ready_tail = &s->ready;
            it->next = NULL;
            const struct spool_envelope *env = spool_get(s->sp, it->id);
            if (!env || msg_blocked(s, it->id, env)) {
                item_free(it);
                continue;
            }
            if (s->npaused && domain_paused(s, addr_domain(it->mailbox))) {
                it->next = s->parked; /* until the domain is resumed */
                s->parked = it;
                continue;
            }
            it->body = spool_body_open(s->sp, it->id);
            if (!it->body) {
                item_free(it);
                continue;
            }
            it->md.root = s->cfg->maildir_root;
            it->md.mailbox = it->mailbox;
            it->md.sender = it->sender;
            it->md.hostname = s->cfg->hostname;
            it->md.body = it->body;
            b->items[b->n++] = it;
            busy_start(s, it->id);
        }
        if (b->n == 0) {
            free(b);
            continue;
        }
        s->in_flight += b->n;
        ev_workers_submit(s->workers, deliver_work, deliver_done, b);
    }
}

/* Make items for every recipient of message id that is not final (none for
   a held message). The caller dispatches. */
static void enqueue_message(struct sched *s, spool_id id)
{
    const struct spool_envelope *env = spool_get(s->sp, id);
    if (!env || msg_blocked(s, id, env))
        return;
    int64_t now = now_real_us() / 1000000;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct spool_rcpt *r = &env->rcpt[i];
        if (rcpt_final(r->state))
            continue;
        if (!rcpt_to_maildir(s, r->addr)) {
            if (!s->relay && r->state == SPOOL_RCPT_PENDING) {
                spool_set_rcpt(s->sp, id, i, SPOOL_RCPT_DEFERRED, r->attempts, 0,
                               "dsn=4.4.1 no transport for other domains");
                log_info("qid=%016" PRIX64 " to=<%s> relay=none delay=0 dsn=4.4.1 "
                         "status=deferred (no transport for other domains; kept in queue)",
                         id, r->addr);
                env = spool_get(s->sp, id);
            }
            continue;
        }
        struct item *it = xcalloc(1, sizeof *it);
        it->s = s;
        it->id = id;
        it->idx = i;
        it->mailbox = xstrdup(r->addr);
        it->sender = xstrdup(env->sender);
        if (r->next_attempt > now) {
            it->due = r->next_attempt;
            it->next = s->retry;
            s->retry = it;
        } else {
            ready_push(s, it);
        }
    }
    env = spool_get(s->sp, id);
    if (s->relay && env)
        relay_queue_message(s, id, env, now);
    retry_arm(s);
    sched_maybe_remove(s, id);
}

void sched_message_queued(struct sched *s, spool_id id)
{
    enqueue_message(s, id);
    sched_dispatch(s);
}

struct sched *sched_new(struct ev_loop *loop, struct ev_workers *workers, struct spool *sp,
                        const struct config *cfg)
{
    struct sched *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->workers = workers;
    s->sp = sp;
    s->cfg = cfg;
    s->ready_tail = &s->ready;
    s->retry_timer = ev_timer_new(loop, on_retry_timer, s);
    return s;
}

void sched_set_relay(struct sched *s, struct relay *relay)
{
    s->relay = relay;
}

void sched_set_transports(struct sched *s, const struct transport_table *transports)
{
    s->transports = transports;
}

size_t sched_in_flight(const struct sched *s)
{
    return s->in_flight + s->relay_in_flight;
}

void sched_stop(struct sched *s)
{
    s->stopped = true;
    ev_timer_stop(s->retry_timer);
    /* Relay sessions can last minutes: end them now, their recipients deferred
       (they are retried after the restart). */
    if (s->relay)
        relay_cancel_all(s->relay);
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    while (s->ready) {
        struct item *it = s->ready;
        s->ready = it->next;
        item_free(it);
    }
    s->nready = 0;
    while (s->retry) {
        struct item *it = s->retry;
        s->retry = it->next;
        item_free(it);
    }
    for (size_t i = 0; i < DEST_BUCKETS; i++) {
        while (s->dests[i]) {
            struct dest *d = s->dests[i];
            s->dests[i] = d->hnext;
            while (d->head) {
                struct relay_item *ri = d->head;
                d->head = ri->next;
                relay_item_free(ri);
            }
            free(d->domain);
            free(d);
        }
    }
    while (s->rretry) {
        struct relay_item *ri = s->rretry;
        s->rretry = ri->next;
        relay_item_free(ri);
    }
    while (s->parked) {
        struct item *it = s->parked;
        s->parked = it->next;
        item_free(it);
    }
    for (size_t i = 0; i < s->npaused; i++)
        free(s->paused[i]);
    free(s->paused);
    for (size_t i = 0; i < MCTL_BUCKETS; i++) {
        while (s->mctl[i]) {
            struct mctl *m = s->mctl[i];
            s->mctl[i] = m->next;
            free(m);
        }
    }
    ev_timer_free(s->retry_timer);
    free(s);
}

/* ---- operator control ------------------------------------------------------ */

static size_t mctl_hash(spool_id id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 40) % MCTL_BUCKETS;
}

static struct mctl *mctl_find(const struct sched *s, spool_id id)
{
    for (struct mctl *m = s->mctl[mctl_hash(id)]; m; m = m->next)
        if (m->id == id)
            return m;
    return NULL;
}

static struct mctl *mctl_get(struct sched *s, spool_id id)
{
    struct mctl *m = mctl_find(s, id);
    if (m)
        return m;
    m = xcalloc(1, sizeof *m);
    m->id = id;
    m->next = s->mctl[mctl_hash(id)];
    s->mctl[mctl_hash(id)] = m;
    return m;
}

static void mctl_drop(struct sched *s, struct mctl *m)
{
    struct mctl **pp = &s->mctl[mctl_hash(m->id)];
    while (*pp != m)
        pp = &(*pp)->next;
    *pp = m->next;
    free(m);
}

static void busy_start(struct sched *s, spool_id id)
{
    mctl_get(s, id)->busy++;
}

/* Held, or to be deleted or bounced once its deliveries end: nothing starts
   and nothing is retried. */
static bool msg_blocked(const struct sched *s, spool_id id, const struct spool_envelope *env)
{
    if (env && env->held)
        return true;
    const struct mctl *m = mctl_find(s, id);
    return m && (m->action == MCTL_DELETE || m->action == MCTL_BOUNCE);
}

static bool domain_paused(const struct sched *s, const char *domain)
{
    for (size_t i = 0; i < s->npaused; i++)
        if (ascii_ieq(s->paused[i], domain))
            return true;
    return false;
}

bool sched_message_busy(const struct sched *s, spool_id id)
{
    const struct mctl *m = mctl_find(s, id);
    return m && m->busy > 0;
}

static int cmp_qid(const void *a, const void *b)
{
    spool_id x = *(const spool_id *)a, y = *(const spool_id *)b;
    return x < y ? -1 : x > y;
}

static bool id_in(const spool_id *set, size_t n, spool_id id)
{
    return n && bsearch(&id, set, n, sizeof *set, cmp_qid) != NULL;
}

static void purge_list(struct item **head, const spool_id *set, size_t n)
{
    struct item **pp = head;
    while (*pp) {
        struct item *it = *pp;
        if (id_in(set, n, it->id)) {
            *pp = it->next;
            item_free(it);
        } else {
            pp = &it->next;
        }
    }
}

/* Drop every queued (not in flight) item of the messages in set (sorted):
   the ready queue, the retry list, parked items, the destinations' queues
   and the relay retry list. */
static void purge_items(struct sched *s, const spool_id *set, size_t n)
{
    if (n == 0)
        return;
    struct item **pp = &s->ready;
    s->ready_tail = &s->ready;
    while (*pp) {
        struct item *it = *pp;
        if (id_in(set, n, it->id)) {
            *pp = it->next;
            s->nready--;
            item_free(it);
        } else {
            s->ready_tail = &it->next;
            pp = &it->next;
        }
    }
    purge_list(&s->retry, set, n);
    purge_list(&s->parked, set, n);
    struct relay_item **rp = &s->rretry;
    while (*rp) {
        struct relay_item *ri = *rp;
        if (id_in(set, n, ri->id)) {
            *rp = ri->next;
            relay_item_free(ri);
        } else {
            rp = &ri->next;
        }
    }
    for (size_t b = 0; b < DEST_BUCKETS; b++) {
        for (struct dest *d = s->dests[b]; d; d = d->hnext) {
            struct relay_item **qp = &d->head;
            d->tail = &d->head;
            while (*qp) {
                struct relay_item *ri = *qp;
                if (id_in(set, n, ri->id)) {
                    *qp = ri->next;
                    d->nready--;
                    s->rready_n--;
                    relay_item_free(ri);
                } else {
                    d->tail = &ri->next;
                    qp = &ri->next;
                }
            }
        }
    }
}

/* Make the waiting items of the messages in set (sorted) due now. */
static void flush_items(struct sched *s, const spool_id *set, size_t n)
{
    if (n == 0)
        return;
    struct item **pp = &s->retry;
    while (*pp) {
        struct item *it = *pp;
        if (id_in(set, n, it->id)) {
            *pp = it->next;
            ready_push(s, it);
        } else {
            pp = &it->next;
        }
    }
    struct relay_item **rp = &s->rretry;
    while (*rp) {
        struct relay_item *ri = *rp;
        if (id_in(set, n, ri->id)) {
            *rp = ri->next;
            rready_push(s, ri);
        } else {
            rp = &ri->next;
        }
    }
}

static void delete_now(struct sched *s, spool_id id)
{
    if (!spool_get(s->sp, id))
        return;
    if (spool_remove(s->sp, id) < 0)
        log_error("qid=%016" PRIX64 " event=remove_failed", id);
    else
        log_info("qid=%016" PRIX64 " event=deleted by=operator", id);
}

/* "dsn=4.4.1 text" -> code "4.4.1" and text; false when status has no code. */
static bool status_split(const char *status, char *code, size_t codelen, const char **text)
{
    *text = NULL;
    if (!status || strncmp(status, "dsn=", 4) != 0)
        return false;
    const char *c = status + 4;
    size_t n = strcspn(c, " ");
    if (n == 0 || n >= codelen || (c[0] != '2' && c[0] != '4' && c[0] != '5'))
        return false;
    memcpy(code, c, n);
    code[n] = '\0';
    *text = c[n] ? c + n + 1 : NULL;
    return true;
}

/* Return every recipient not yet final to the sender now, as failed (a DSN
   as at expiry: the last status code when there is one, else 5.0.0), then
   record them bounced and remove the message. */
static void bounce_now(struct sched *s, spool_id id)
{
    const struct spool_envelope *env = spool_get(s->sp, id);
    if (!env)
        return;
    size_t cap = env->nrcpt ? env->nrcpt : 1;
    struct bounce_rcpt *br = xcalloc(cap, sizeof *br);
    size_t *idx = xcalloc(cap, sizeof *idx);
    char(*code)[16] = xcalloc(cap, sizeof *code);
    char(*diag)[600] = xcalloc(cap, sizeof *diag);
    size_t n = 0;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct spool_rcpt *r = &env->rcpt[i];
        if (rcpt_final(r->state))
            continue;
        const char *text;
        if (!status_split(r->status, code[n], sizeof code[n], &text) || code[n][0] == '2')
            snprintf(code[n], sizeof code[n], "5.0.0");
        snprintf(diag[n], sizeof diag[n],
                 "message returned to the sender by the mail system administrator%s%s",
                 text ? "; last attempt: " : "", text ? text : "");
        br[n] = (struct bounce_rcpt){.addr = r->addr,
                                     .orcpt = r->orcpt,
                                     .notify = r->notify,
                                     .status = code[n],
                                     .diagnostic = diag[n],
                                     .action = DSN_ACTION_FAILED};
        idx[n++] = i;
    }
    if (n) {
        struct spool_body *body = spool_body_open(s->sp, id);
        sched_bounce(s, id, env, body, br, n);
        spool_body_close(body);
    }
    int64_t now = now_real_us() / 1000000;
    for (size_t k = 0; k < n; k++) {
        env = spool_get(s->sp, id);
        if (!env)
            break;
        const struct spool_rcpt *r = &env->rcpt[idx[k]];
        char st[64];
        snprintf(st, sizeof st, "dsn=%s returned to the sender by the operator", code[k]);
        log_info("qid=%016" PRIX64 " to=<%s> relay=none delay=%.0f dsn=%s status=bounced "
                 "(returned to the sender by the operator)",
                 id, r->addr, (double)(now - env->arrival), code[k]);
        spool_set_rcpt(s->sp, id, idx[k], SPOOL_RCPT_BOUNCED, r->attempts, 0, st);
    }
    free(br);
    free(idx);
    free(code);
    free(diag);
    sched_maybe_remove(s, id);
}

/* A delivery of message id ended (its outcome is recorded): when it was the
   last one, carry out what waited for it. */
static void busy_end(struct sched *s, spool_id id)
{
    struct mctl *m = mctl_find(s, id);
    if (!m)
        return;
    if (m->busy)
        m->busy--;
    if (m->busy)
        return;
    enum mctl_pending action = m->action;
    mctl_drop(s, m);
    switch (action) {
    case MCTL_REQUEUE:
        purge_items(s, &id, 1);
        enqueue_message(s, id);
        break;
    case MCTL_DELETE:
        delete_now(s, id);
        break;
    case MCTL_BOUNCE:
        bounce_now(s, id);
        break;
    case MCTL_NONE:
        break;
    }
}

void sched_control(struct sched *s, enum sched_op op, const spool_id *ids, size_t n,
                   struct sched_op_result *res)
{
    static const char *const names[] = {"flushed", "held", "released", "deleted", "bounced"};
    memset(res, 0, sizeof *res);
    spool_id *set = xmalloc((n ? n : 1) * sizeof *set);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        spool_id id = ids[i];
        const struct spool_envelope *env = spool_get(s->sp, id);
        if (!env) {
            res->missing++;
            continue;
        }
        struct mctl *m = mctl_find(s, id);
        bool busy = m && m->busy > 0;
        if (m && (m->action == MCTL_DELETE || m->action == MCTL_BOUNCE)) {
            res->busy++; /* already on its way out */
            continue;
        }
        int r = 0;
        switch (op) {
        case SCHED_OP_FLUSH:
            if (env->held) {
                res->unchanged++;
                continue;
            }
            break;
        case SCHED_OP_HOLD:
            if (env->held) {
                res->unchanged++;
                continue;
            }
            r = spool_set_held(s->sp, id, true);
            if (r == 0 && m && m->action == MCTL_REQUEUE)
                m->action = MCTL_NONE;
            break;
        case SCHED_OP_RELEASE:
            if (!env->held) {
                res->unchanged++;
                continue;
            }
            r = spool_set_held(s->sp, id, false);
            if (r == 0 && busy) {
                m->action = MCTL_REQUEUE; /* queued afresh when its deliveries end */
                res->done++;
                log_info("qid=%016" PRIX64 " event=released by=operator", id);
                continue;
            }
            break;
        case SCHED_OP_DELETE:
        case SCHED_OP_BOUNCE:
            if (busy) {
                m->action = op == SCHED_OP_DELETE ? MCTL_DELETE : MCTL_BOUNCE;
                res->busy++;
                set[k++] = id; /* its queued items go now */
                log_info("qid=%016" PRIX64 " event=%s_pending by=operator reason=in_flight", id,
                         op == SCHED_OP_DELETE ? "delete" : "bounce");
                continue;
            }
            break;
        }
        if (r < 0) {
            log_error("qid=%016" PRIX64 " event=control_failed op=%s error=\"%s\"", id, names[op],
                      strerror(-r));
            res->failed++;
            continue;
        }
        set[k++] = id;
        res->done++;
        if (op == SCHED_OP_FLUSH || op == SCHED_OP_HOLD || op == SCHED_OP_RELEASE)
            log_info("qid=%016" PRIX64 " event=%s by=operator", id, names[op]);
    }
    qsort(set, k, sizeof *set, cmp_qid);
    switch (op) {
    case SCHED_OP_FLUSH:
        flush_items(s, set, k);
        break;
    case SCHED_OP_HOLD:
        purge_items(s, set, k);
        break;
    case SCHED_OP_RELEASE:
        purge_items(s, set, k);
        for (size_t i = 0; i < k; i++)
            enqueue_message(s, set[i]);
        break;
    case SCHED_OP_DELETE:
    case SCHED_OP_BOUNCE:
        purge_items(s, set, k);
        for (size_t i = 0; i < k; i++) {
            if (sched_message_busy(s, set[i]))
                continue;
            if (op == SCHED_OP_DELETE)
                delete_now(s, set[i]);
            else
                bounce_now(s, set[i]);
        }
        break;
    }
    free(set);
    retry_arm(s);
    sched_dispatch(s);
}

int sched_pause(struct sched *s, const char *domain)
{
    if (domain_paused(s, domain))
        return 1;
    if (s->npaused >= SCHED_PAUSE_MAX)
        return -ENOSPC;
    char *d = xstrdup(domain);
    ascii_lower(d);
    s->paused = xrealloc(s->paused, (s->npaused + 1) * sizeof *s->paused);
    s->paused[s->npaused++] = d;
    log_info("event=domain_paused domain=%s by=operator", d);
    return 0;
}

int sched_resume(struct sched *s, const char *domain)
{
    size_t i = 0;
    while (i < s->npaused && !ascii_ieq(s->paused[i], domain))
        i++;
    if (i == s->npaused)
        return 1;
    log_info("event=domain_resumed domain=%s by=operator", s->paused[i]);
    free(s->paused[i]);
    memmove(s->paused + i, s->paused + i + 1, (s->npaused - i - 1) * sizeof *s->paused);
    s->npaused--;
    /* parked local items of the domain go back to the ready queue, in order */
    struct item *back = NULL, **bt = &back;
    struct item **pp = &s->parked;
    while (*pp) {
        struct item *it = *pp;
        if (ascii_ieq(addr_domain(it->mailbox), domain)) {
            *pp = it->next;
            it->next = NULL;
            *bt = it;
            bt = &it->next;
        } else {
            pp = &it->next;
        }
    }
    while (back) {
        struct item *it = back;
        back = it->next;
        ready_push(s, it);
    }
    sched_dispatch(s);
    return 0;
}

size_t sched_paused(const struct sched *s, const char *const **domains)
{
    *domains = (const char *const *)s->paused;
    return s->npaused;
}
