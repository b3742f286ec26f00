/*
 * spf_check - SPF checks on the resolver (see spf_check.h).
 *
 * RFC 7208 §4.6.4 (the overall time limit). The evaluation itself, and
 * every rule of RFC 7208 it follows, is in dns/spf.c; this file only
 * carries its questions to dns_query() and its answers back, one at a time.
 *
 * One timer does two jobs: it fires at 0 ms to start the evaluation on the
 * next loop pass (so the callback never runs inside spf_check_start(), even
 * for a result known without DNS), and it is then armed with the time limit.
 * The check owns its evaluator, its timer and the query in flight.
 */
#include "mailauth/spf_check.h"

#include "core/log.h"
#include "core/util.h"
#include "dns/dns.h"
#include "event/event.h"

#include <stdio.h>
#include <stdlib.h>

struct spf_check {
    struct dns_resolver *r;
    struct spf_eval *eval;
    struct dns_query *q;    /* the query in flight, or NULL */
    struct ev_timer *timer; /* start at 0 ms, then the time limit */
    bool started;           /* the timer has started the evaluation */
    uint32_t timeout_ms;
    spf_check_cb cb;
    void *arg;
};

static void check_free(struct spf_check *c)
{
    dns_query_cancel(c->q);
    ev_timer_free(c->timer);
    spf_eval_free(c->eval);
    free(c);
}

static void deliver(struct spf_check *c)
{
    const struct spf_result *res = spf_eval_result(c->eval);
    log_debug("event=spf_result identity=%s domain=%s client=%s result=%s queries=%u "
              "lookups=%u void=%u",
              spf_identity_name(res->identity), res->domain[0] ? res->domain : "-", res->client,
              spf_result_name(res->result), res->queries, res->lookups, res->void_lookups);
    ev_timer_stop(c->timer);
    c->cb(c->arg, res);
    check_free(c);
}

static void on_answer(void *arg, const struct dns_answer *a);

/* Evaluate until a query is needed (ask it) or the result is final. */
static void run(struct spf_check *c)
{
    struct spf_query q;
    if (spf_eval_next(c->eval, &q) == SPF_STEP_DONE) {
        deliver(c);
        return;
    }
    log_debug("event=spf_query name=%s type=%d", q.name, q.type);
    c->q = dns_query(c->r, q.name, q.type, on_answer, c);
}

static void on_answer(void *arg, const struct dns_answer *a)
{
    struct spf_check *c = arg;
    c->q = NULL;
    spf_eval_answer(c->eval, a);
    run(c);
}

static void on_timer(void *arg)
{
    struct spf_check *c = arg;
    if (!c->started) {
        c->started = true;
        ev_timer_start(c->timer, c->timeout_ms);
        run(c);
        return;
    }
    dns_query_cancel(c->q);
    c->q = NULL;
    char why[96];
    if (c->timeout_ms % 1000 == 0)
        snprintf(why, sizeof why, "the check took longer than %u s",
                 (unsigned)(c->timeout_ms / 1000));
    else
        snprintf(why, sizeof why, "the check took longer than %u ms", (unsigned)c->timeout_ms);
    spf_eval_abort(c->eval, why);
    deliver(c);
}

struct spf_check *spf_check_start(struct dns_resolver *r, const struct spf_request *req,
                                  spf_check_cb cb, void *arg)
{
    struct spf_check *c = xcalloc(1, sizeof *c);
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->timeout_ms = req->timeout_ms ? req->timeout_ms : SPF_DEFAULT_TIMEOUT_MS;
    c->eval = spf_eval_new(req);
    c->timer = ev_timer_new(dns_resolver_loop(r), on_timer, c);
    ev_timer_start(c->timer, 0);
    return c;
}

void spf_check_cancel(struct spf_check *c)
{
    if (c)
        check_free(c);
}
