/*
 * dmarc_check - DMARC policy discovery and evaluation on the event loop
 * (RFC 7489 §6.6.2-§6.6.4, RFC 9091 §4). See dmarc_check.h.
 *
 * Each check copies its request, then walks the pure discovery state
 * machine of dns/dmarc.c: it asks dns_query() the question the machine
 * names, feeds the answer back, and repeats until the machine is done; then
 * it evaluates and calls back. A check that needs no query (an unusable
 * From field) reports through a zero timer, so the callback never runs
 * inside dmarc_check_start(). The checker keeps its checks in a list so
 * that freeing it cancels them all.
 */
#include "mailauth/dmarc_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/log.h"
#include "core/util.h"
#include "dns/dns.h"
#include "event/event.h"
#include "mailauth/orgdomain.h"

/* Octets of a DKIM selector kept. */
#define SELECTOR_MAX 63

struct dmarc_checker {
    struct ev_loop *loop;
    struct dns_resolver *dns;
    const struct orgdomain *od;
    struct dmarc_check *checks; /* in flight, a doubly linked list */
};

struct dmarc_check {
    struct dmarc_checker *owner;
    struct dmarc_check *prev, *next; /* in owner->checks */
    dmarc_check_cb cb;
    void *arg;
    struct dns_query *query; /* the query in flight, or NULL */
    struct ev_timer *timer;  /* reports a result that needed no query */
    enum dmarc_from from_status;
    char from[DNS_NAME_MAX + 1]; /* A-labels; "" when unusable */
    unsigned pct_roll;
    struct dmarc_input in;                  /* points into the arrays below */
    char spf_domain[DNS_NAME_MAX + 1];      /* normalized; "" when none */
    struct dmarc_dkim dkim[DMARC_MAX_DKIM]; /* the signatures kept */
    char dkim_domain[DMARC_MAX_DKIM][DNS_NAME_MAX + 1];
    char dkim_selector[DMARC_MAX_DKIM][SELECTOR_MAX + 1];
    struct dmarc_discovery disc;
    struct dmarc_result res;
};

struct dmarc_checker *dmarc_checker_new(struct ev_loop *loop, struct dns_resolver *dns,
                                        const struct orgdomain *od)
{
    struct dmarc_checker *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->dns = dns;
    c->od = od;
    return c;
}

/* Take q out of its checker's list and stop what it has in flight. */
static void check_unlink(struct dmarc_check *q)
{
    struct dmarc_checker *c = q->owner;
    if (q->prev)
        q->prev->next = q->next;
    else
        c->checks = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    dns_query_cancel(q->query);
    q->query = NULL;
}

static void check_free(struct dmarc_check *q)
{
    check_unlink(q);
    ev_timer_free(q->timer);
    free(q);
}

void dmarc_checker_free(struct dmarc_checker *c)
{
    if (!c)
        return;
    while (c->checks)
        check_free(c->checks);
    free(c);
}

void dmarc_check_cancel(struct dmarc_check *q)
{
    if (q)
        check_free(q);
}

/* Evaluate, report, free. */
static void finish(struct dmarc_check *q)
{
    struct dmarc_checker *c = q->owner;
    dmarc_evaluate(&q->disc, &q->in, q->pct_roll, orgdomain_fn, (void *)c->od, &q->res);
    struct dmarc_check_result r = {
        .from_domain = q->from,
        .from_status = q->from_status,
        .disc = &q->disc,
        .res = &q->res,
        .in = &q->in,
    };
    log_debug("event=dmarc from=%s result=%s policy_domain=%s disposition=%s reason=\"%s\"",
              q->from[0] ? q->from : "-", dmarc_status_name(q->res.status),
              q->disc.domain[0] ? q->disc.domain : "-", dmarc_disposition_name(q->res.disposition),
              q->disc.reason);
    /* out of the list first: the callback may free the checker */
    check_unlink(q);
    q->cb(q->arg, &r);
    ev_timer_free(q->timer);
    free(q);
}

static void on_timer(void *arg)
{
    finish(arg);
}

/* Report from the loop without a query. */
static void finish_later(struct dmarc_check *q)
{
    if (!q->timer)
        q->timer = ev_timer_new(q->owner->loop, on_timer, q);
    ev_timer_start(q->timer, 0);
}

static void on_answer(void *arg, const struct dns_answer *a);

/* Ask the next question discovery has, or finish. in_start: called from
   dmarc_check_start (the callback must wait for the loop). */
static void step(struct dmarc_check *q, bool in_start)
{
    char name[DNS_NAME_MAX + 1];
    int type;
    if (dmarc_discovery_next(&q->disc, name, &type)) {
        q->query = dns_query(q->owner->dns, name, type, on_answer, q);
        if (q->query)
            return;
        /* no query could be sent: a temporary failure */
        q->disc.status = DMARC_DISC_TEMPFAIL;
        snprintf(q->disc.reason, sizeof q->disc.reason, "cannot send a query for %s", name);
        in_start = true;
    }
    if (in_start)
        finish_later(q);
    else
        finish(q);
}

static void on_answer(void *arg, const struct dns_answer *a)
{
    struct dmarc_check *q = arg;
    q->query = NULL;
    dmarc_discovery_answer(&q->disc, a, orgdomain_fn, (void *)q->owner->od);
    step(q, false);
}

/* Copy at most max - 1 octets of s (NULL: "") into out. */
static void copy_str(char *out, size_t max, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= max)
        n = max - 1;
    if (n)
        memcpy(out, s, n);
    out[n] = '\0';
}

struct dmarc_check *dmarc_check_start(struct dmarc_checker *c,
                                      const struct dmarc_check_request *req, dmarc_check_cb cb,
                                      void *arg)
{
    struct dmarc_check *q = xcalloc(1, sizeof *q);
    q->owner = c;
    q->cb = cb;
    q->arg = arg;
    q->next = c->checks;
    if (c->checks)
        c->checks->prev = q;
    c->checks = q;
    q->from_status = req->from_status;
    q->pct_roll = req->pct_roll;

    /* the input, with its domains as A-labels (one that is not a domain
       name becomes "", which aligns with nothing) */
    q->in.spf = req->in.spf;
    if (!req->in.spf_domain || !orgdomain_normalize(req->in.spf_domain, q->spf_domain))
        q->spf_domain[0] = '\0';
    q->in.spf_domain = q->spf_domain[0] ? q->spf_domain : NULL;
    size_t n = req->in.ndkim < DMARC_MAX_DKIM ? req->in.ndkim : DMARC_MAX_DKIM;
    for (size_t i = 0; i < n; i++) {
        const struct dmarc_dkim *d = &req->in.dkim[i];
        if (!d->domain || !orgdomain_normalize(d->domain, q->dkim_domain[i]))
            q->dkim_domain[i][0] = '\0';
        copy_str(q->dkim_selector[i], sizeof q->dkim_selector[i], d->selector);
        q->dkim[i].result = d->result;
        q->dkim[i].domain = q->dkim_domain[i];
        q->dkim[i].selector = q->dkim_selector[i];
    }
    q->in.ndkim = n;
    q->in.dkim = q->dkim;

    if (req->from_status != DMARC_FROM_OK || !req->from_domain ||
        !orgdomain_normalize(req->from_domain, q->from))
        q->from[0] = '\0';
    dmarc_discovery_init(&q->disc, q->from, orgdomain_fn, (void *)c->od, &q->in);
    if (req->from_status != DMARC_FROM_OK)
        snprintf(q->disc.reason, sizeof q->disc.reason, "From: %s",
                 dmarc_from_name(req->from_status));
    step(q, true);
    return q;
}

unsigned dmarc_pct_roll(void)
{
    return arc4random_uniform(100);
}

enum dmarc_action dmarc_local_action(enum dmarc_disposition d, int reject_action)
{
    switch (d) {
    case DMARC_DISP_NONE:
        return DMARC_ACTION_ACCEPT;
    case DMARC_DISP_QUARANTINE:
        return DMARC_ACTION_QUARANTINE;
    case DMARC_DISP_REJECT:
        switch ((enum config_dmarc_action)reject_action) {
        case CONFIG_DMARC_REJECT:
            return DMARC_ACTION_REJECT;
        case CONFIG_DMARC_QUARANTINE:
            return DMARC_ACTION_QUARANTINE;
        case CONFIG_DMARC_RECORD:
            return DMARC_ACTION_ACCEPT;
        }
        return DMARC_ACTION_REJECT;
    }
    return DMARC_ACTION_ACCEPT;
}

const char *dmarc_action_name(enum dmarc_action a)
{
    switch (a) {
    case DMARC_ACTION_ACCEPT:
        return "accept";
    case DMARC_ACTION_QUARANTINE:
        return "quarantine";
    case DMARC_ACTION_REJECT:
        return "reject";
    }
    return "accept";
}

void dmarc_check_authres(const struct dmarc_check_result *r, enum dmarc_action done, char *comment,
                         size_t commentlen, struct authres_result *out)
{
    memset(out, 0, sizeof *out);
    out->method = "dmarc";
    out->result = dmarc_status_name(r->res->status);
    if (r->from_domain && r->from_domain[0]) {
        out->props[0] = (struct authres_prop){"header", "from", r->from_domain};
        out->nprops = 1;
    }
    if (r->res->policy != DMARC_POLICY_UNSET && commentlen > 0) {
        static const char *const dis[] = {[DMARC_ACTION_ACCEPT] = "none",
                                          [DMARC_ACTION_QUARANTINE] = "quarantine",
                                          [DMARC_ACTION_REJECT] = "reject"};
        snprintf(comment, commentlen, "p=%s dis=%s", dmarc_policy_name(r->res->policy), dis[done]);
        out->comment = comment;
    }
}
