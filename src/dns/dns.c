/*
 * dns - the resolver adapter on libunbound (see dns.h for the interface).
 *
 * RFC 5321 §5.1 (MX, implicit MX), RFC 7505 (null MX), RFC 3596 (AAAA),
 * RFC 4035 (DNSSEC validation, done by libunbound).
 *
 * libunbound runs in its threaded asynchronous mode: ub_resolve_async()
 * hands a query to libunbound's own thread, which answers through a pipe;
 * the event loop watches that pipe (ub_fd) and calls ub_process(), which
 * runs our libunbound callbacks on the loop thread. Those callbacks only
 * record answers and start follow-up queries; a lookup that is complete arms
 * its timer at zero, and the timer delivers the result. So user callbacks
 * never run inside ub_process() or inside a request call, and may cancel
 * lookups or free the resolver freely. The same timer enforces dns_timeout.
 *
 * A next-hop lookup has two phases: the MX query, then A and AAAA for every
 * MX host (or for the domain itself, implicit MX) all at once. A host
 * smarthost lookup starts at the second phase.
 *
 * Ownership: the resolver owns its lookups (a list), each lookup owns its
 * libunbound queries (cancelled when it ends early) and its result.
 */
#include "dns/dns.h"

#include "config/config.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dns/mx.h"
#include "event/event.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#define RR_TYPE_A 1
#define RR_TYPE_MX 15
#define RR_TYPE_AAAA 28
#define RR_CLASS_IN 1
#define RCODE_NXDOMAIN 3

/* How one query for one name and type ended. */
enum answer {
    ANSWER_PENDING = 0, /* not answered yet */
    ANSWER_DATA,        /* records of the type */
    ANSWER_NODATA,      /* the name exists without records of the type */
    ANSWER_NXDOMAIN,    /* the name does not exist */
    ANSWER_TEMPFAIL,    /* SERVFAIL, error, bogus, malformed, timeout */
};

struct dns_lookup;

/* One libunbound query in flight. */
struct query {
    struct dns_lookup *lookup; /* owner */
    int async_id;              /* libunbound's id, for ub_cancel */
    bool active;               /* sent and not answered */
    size_t target;             /* index in lookup->targets (address queries) */
    int family;                /* AF_INET or AF_INET6; 0 for the MX query */
};

/* One host whose addresses are looked up. */
struct target {
    char name[DNS_NAME_MAX + 1];
    uint16_t preference;
    struct query q4, q6;         /* the A and AAAA queries */
    enum answer a4, a6;          /* how each ended */
    struct dns_addr_list v4, v6; /* their addresses */
    bool secure;                 /* every answer so far was validated */
    char reason[512];            /* why a query failed temporarily */
};

/* Where the lookup is. */
enum phase {
    PHASE_MX,    /* the MX query is in flight */
    PHASE_ADDRS, /* address queries are in flight */
    PHASE_DONE,  /* res is final; the timer is armed to deliver it */
};

struct dns_lookup {
    struct dns_resolver *r;
    struct dns_lookup *prev, *next; /* in r->lookups */
    dns_nexthop_cb cb;
    void *arg;
    struct ev_timer *timer; /* dns_timeout, then zero to deliver */
    enum phase phase;
    bool host_only;   /* dns_resolve_host: no MX */
    bool cached;      /* res came from the next-hop cache */
    struct query mxq; /* the MX query */
    size_t ntargets;
    struct target targets[DNS_MAX_HOSTS];
    size_t pending;         /* queries in flight */
    struct dns_nexthop res; /* what the callback gets */
};

/* A recent next-hop result, reused for NEXTHOP_CACHE_MS: libunbound caches
   answers too, but each lookup still costs three queries through its thread;
   a busy relay asks for the same few domains again and again. */
#define NEXTHOP_CACHE_SIZE 256
#define NEXTHOP_CACHE_MS 30000

struct nexthop_cached {
    int64_t expires_ms;      /* monotonic; 0: empty slot */
    struct dns_nexthop *res; /* malloc'd copy */
};

/* A raw query (dns_query): one libunbound query, its answer kept until the
   timer delivers it. */
struct dns_query {
    struct dns_resolver *r;
    struct dns_query *prev, *next; /* in r->queries */
    dns_answer_cb cb;
    void *arg;
    struct ev_timer *timer; /* dns_timeout, then zero to deliver */
    int async_id;
    bool active;              /* sent to libunbound and not answered */
    struct ub_result *result; /* the answer, freed after the callback */
    struct dns_answer ans;
};

struct dns_resolver {
    struct nexthop_cached cache[NEXTHOP_CACHE_SIZE];
    struct dns_query *queries; /* raw queries in flight or waiting for delivery */
    struct ev_loop *loop;
    struct ub_ctx *ctx;
    struct ev_fd *watch;        /* ub_fd(ctx) */
    int prefer;                 /* enum config_dns_prefer */
    uint64_t timeout_ms;        /* dns_timeout */
    struct dns_lookup *lookups; /* in flight or waiting for delivery */
};

static uint32_t random_u32(void *arg)
{
    (void)arg;
    return arc4random();
}

static void on_ub_readable(void *arg)
{
    struct dns_resolver *r = arg;
    ub_process(r->ctx);
}

struct dns_resolver *dns_resolver_new(struct ev_loop *loop, const struct config *cfg, char *err,
                                      size_t errlen)
{
    struct ub_ctx *ctx = ub_ctx_create();
    if (!ctx) {
        snprintf(err, errlen, "cannot create the libunbound context");
        return NULL;
    }
    int rc = ub_ctx_async(ctx, 1);
    for (size_t i = 0; rc == 0 && i < cfg->dns_forwarders.n; i++) {
        rc = ub_ctx_set_fwd(ctx, cfg->dns_forwarders.v[i]);
        if (rc != 0)
            snprintf(err, errlen, "dns_forwarders: %s: %s", cfg->dns_forwarders.v[i],
                     ub_strerror(rc));
    }
    if (rc == 0 && cfg->dns_forwarders.n > 0) {
        /* forwarders are where the operator says, loopback included; and a
           lab's resolver may serve the special-use zone test. (RFC 6761),
           which libunbound otherwise answers NXDOMAIN itself. ("nodefault"
           is not honoured through ub_ctx_set_option; "transparent" replaces
           the built-in zone with one that has no data of its own.) The same
           holds for the reverse zones of loopback, private and documentation
           addresses. */
        static const char *const lab_zones[] = {
            "test. transparent",
            /* reverse zones libunbound answers itself (RFC 6303, RFC 5737,
               RFC 3849): SPF's ptr mechanism and PTR lookups in a lab */
            "127.in-addr.arpa. transparent",
            "2.0.192.in-addr.arpa. transparent",
            "100.51.198.in-addr.arpa. transparent",
            "113.0.203.in-addr.arpa. transparent",
            "8.b.d.0.1.0.0.2.ip6.arpa. transparent",
        };
        rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
        if (rc == 0)
            rc = ub_ctx_set_option(ctx, "unblock-lan-zones:", "yes");
        for (size_t i = 0; rc == 0 && i < sizeof lab_zones / sizeof lab_zones[0]; i++)
            rc = ub_ctx_set_option(ctx, "local-zone:", lab_zones[i]);
        if (rc != 0)
            snprintf(err, errlen, "libunbound: %s", ub_strerror(rc));
    }
    if (rc == 0 && cfg->dns_trust_anchor) {
        FILE *f = fopen(cfg->dns_trust_anchor, "r");
        if (!f) {
            snprintf(err, errlen, "dns_trust_anchor: %s: %s", cfg->dns_trust_anchor,
                     strerror(errno));
            rc = -1;
        } else {
            fclose(f);
            rc = ub_ctx_add_ta_file(ctx, cfg->dns_trust_anchor);
            if (rc != 0)
                snprintf(err, errlen, "dns_trust_anchor: %s: %s", cfg->dns_trust_anchor,
                         ub_strerror(rc));
        }
    } else if (rc != 0 && err[0] == '\0') {
        snprintf(err, errlen, "libunbound: %s", ub_strerror(rc));
    }
    if (rc != 0) {
        ub_ctx_delete(ctx);
        return NULL;
    }
    struct dns_resolver *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->ctx = ctx;
    r->prefer = cfg->dns_prefer;
    r->timeout_ms = (uint64_t)cfg->dns_timeout * 1000;
    r->watch = ev_fd_new(loop, ub_fd(ctx), on_ub_readable, r);
    if (!r->watch) {
        snprintf(err, errlen, "cannot watch libunbound's descriptor");
        ub_ctx_delete(ctx);
        free(r);
        return NULL;
    }
    return r;
}

struct ev_loop *dns_resolver_loop(const struct dns_resolver *r)
{
    return r->loop;
}

/* Cancel q if it is in flight. */
static void query_cancel(struct dns_resolver *r, struct query *q)
{
    if (q->active) {
        ub_cancel(r->ctx, q->async_id);
        q->active = false;
        q->lookup->pending--;
    }
}

static void lookup_cancel_queries(struct dns_lookup *l)
{
    query_cancel(l->r, &l->mxq);
    for (size_t i = 0; i < l->ntargets; i++) {
        query_cancel(l->r, &l->targets[i].q4);
        query_cancel(l->r, &l->targets[i].q6);
    }
}

static void lookup_unlink(struct dns_lookup *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else if (l->r && l->r->lookups == l)
        l->r->lookups = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static void lookup_free(struct dns_lookup *l)
{
    ev_timer_free(l->timer);
    free(l);
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (!r)
        return;
    while (r->lookups) {
        struct dns_lookup *l = r->lookups;
        lookup_cancel_queries(l);
        lookup_unlink(l);
        lookup_free(l);
    }
    while (r->queries)
        dns_query_cancel(r->queries);
    ev_fd_free(r->watch);
    ub_ctx_delete(r->ctx);
    for (size_t i = 0; i < NEXTHOP_CACHE_SIZE; i++)
        free(r->cache[i].res);
    free(r);
}

void dns_cancel(struct dns_lookup *l)
{
    if (!l)
        return;
    lookup_cancel_queries(l);
    lookup_unlink(l);
    lookup_free(l);
}

/* The result is final: deliver it from the timer, on the next loop pass. */
static void lookup_done(struct dns_lookup *l, enum dns_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void lookup_done(struct dns_lookup *l, enum dns_status status, const char *fmt, ...)
{
    lookup_cancel_queries(l);
    l->phase = PHASE_DONE;
    l->res.status = status;
    l->res.reason[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->res.reason, sizeof l->res.reason, fmt, ap);
        va_end(ap);
    }
    if (status != DNS_OK)
        l->res.nhosts = 0;
    ev_timer_start(l->timer, 0);
}

static const char *rcode_name(int rcode)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                        "NXRRSET", "NOTAUTH", "NOTZONE"};
    if (rcode >= 0 && (size_t)rcode < sizeof names / sizeof names[0])
        return names[rcode];
    return "error";
}

static const char *type_name(int family)
{
    return family == AF_INET ? "A" : family == AF_INET6 ? "AAAA" : "MX";
}

static const char *rrtype_name(int type)
{
    switch (type) {
    case DNS_TYPE_A:
        return "A";
    case DNS_TYPE_PTR:
        return "PTR";
    case DNS_TYPE_MX:
        return "MX";
    case DNS_TYPE_TXT:
        return "TXT";
    case DNS_TYPE_AAAA:
        return "AAAA";
    default:
        return "record";
    }
}

/* Classify a libunbound answer; on ANSWER_TEMPFAIL, why goes into reason. */
static enum answer classify(int err, const struct ub_result *res, const char *name, int family,
                            char *reason, size_t reasonlen)
{
    if (err != 0) {
        snprintf(reason, reasonlen, "%s looking up %s for %s", ub_strerror(err), type_name(family),
                 name);
        return ANSWER_TEMPFAIL;
    }
    if (res->bogus) {
        snprintf(reason, reasonlen, "DNSSEC validation failed looking up %s for %s%s%s",
                 type_name(family), name, res->why_bogus ? ": " : "",
                 res->why_bogus ? res->why_bogus : "");
        return ANSWER_TEMPFAIL;
    }
    if (res->rcode == RCODE_NXDOMAIN)
        return ANSWER_NXDOMAIN;
    if (res->rcode != 0) {
        snprintf(reason, reasonlen, "%s looking up %s for %s", rcode_name(res->rcode),
                 type_name(family), name);
        return ANSWER_TEMPFAIL;
    }
    return res->havedata ? ANSWER_DATA : ANSWER_NODATA;
}

/* Every address query has ended (or the time is up): the hosts in MX order,
   those without an address left out. */
static void finish_addrs(struct dns_lookup *l, bool timed_out)
{
    struct dns_nexthop *res = &l->res;
    const char *temp = NULL;
    bool all_nxdomain = l->ntargets > 0;
    res->nhosts = 0;
    for (size_t i = 0; i < l->ntargets; i++) {
        struct target *t = &l->targets[i];
        if (timed_out) {
            if (t->a4 == ANSWER_PENDING || t->a6 == ANSWER_PENDING)
                if (!t->reason[0])
                    snprintf(t->reason, sizeof t->reason, "timeout looking up the addresses of %s",
                             t->name);
            if (t->a4 == ANSWER_PENDING)
                t->a4 = ANSWER_TEMPFAIL;
            if (t->a6 == ANSWER_PENDING)
                t->a6 = ANSWER_TEMPFAIL;
        }
        if (t->a4 != ANSWER_NXDOMAIN || t->a6 != ANSWER_NXDOMAIN)
            all_nxdomain = false;
        struct dns_host *h = &res->hosts[res->nhosts];
        const struct dns_addr_list *first = &t->v6, *second = &t->v4;
        if (l->r->prefer == CONFIG_DNS_PREFER_IPV4) {
            first = &t->v4;
            second = &t->v6;
        }
        if (dns_host_set_addrs(h, first, second) > 0) {
            memcpy(h->name, t->name, sizeof h->name);
            h->preference = t->preference;
            h->secure = t->secure;
            res->nhosts++;
        } else if ((t->a4 == ANSWER_TEMPFAIL || t->a6 == ANSWER_TEMPFAIL) && !temp) {
            temp = t->reason;
        }
    }
    if (res->nhosts > 0) {
        lookup_done(l, DNS_OK, NULL);
    } else if (temp) {
        lookup_done(l, DNS_TEMPFAIL, "%s", temp);
    } else if (l->host_only && all_nxdomain) {
        lookup_done(l, DNS_NXDOMAIN, "%s does not exist", res->domain);
    } else if (l->host_only || res->implicit) {
        lookup_done(l, DNS_NO_ADDRESS, "%s has %sno A or AAAA record", res->domain,
                    l->host_only ? "" : "no MX and ");
    } else {
        lookup_done(l, DNS_NO_ADDRESS, "no MX host of %s has an A or AAAA record", res->domain);
    }
}

static void on_addr_answer(void *arg, int err, struct ub_result *result)
{
    struct query *q = arg;
    struct dns_lookup *l = q->lookup;
    struct target *t = &l->targets[q->target];
    q->active = false;
    l->pending--;
    char reason[sizeof t->reason];
    enum answer a = classify(err, result, t->name, q->family, reason, sizeof reason);
    if (a == ANSWER_DATA) {
        struct dns_addr_list *list = q->family == AF_INET ? &t->v4 : &t->v6;
        for (size_t i = 0; result->data[i]; i++)
            dns_addr_list_add(list, q->family, (const uint8_t *)result->data[i],
                              (size_t)result->len[i]);
        if (list->n == 0) {
            snprintf(reason, sizeof reason, "malformed %s records for %s", type_name(q->family),
                     t->name);
            a = ANSWER_TEMPFAIL;
        }
    }
    if (a == ANSWER_TEMPFAIL && !t->reason[0])
        memcpy(t->reason, reason, sizeof reason);
    if (!result || !result->secure)
        t->secure = false;
    if (q->family == AF_INET)
        t->a4 = a;
    else
        t->a6 = a;
    ub_resolve_free(result);
    if (l->pending == 0)
        finish_addrs(l, false);
}

/* Send one address query for target t; false with t->reason on failure. */
static bool query_send(struct dns_lookup *l, struct target *t, struct query *q, int type)
{
    int rc =
        ub_resolve_async(l->r->ctx, t->name, type, RR_CLASS_IN, q, on_addr_answer, &q->async_id);
    if (rc != 0) {
        snprintf(t->reason, sizeof t->reason, "%s looking up %s for %s", ub_strerror(rc),
                 type_name(q->family), t->name);
        return false;
    }
    q->active = true;
    l->pending++;
    return true;
}

/* Start A and AAAA for every target. */
static void start_addrs(struct dns_lookup *l)
{
    l->phase = PHASE_ADDRS;
    for (size_t i = 0; i < l->ntargets; i++) {
        struct target *t = &l->targets[i];
        t->secure = true;
        dns_addr_list_init(&t->v4);
        dns_addr_list_init(&t->v6);
        t->q4 = (struct query){.lookup = l, .target = i, .family = AF_INET};
        t->q6 = (struct query){.lookup = l, .target = i, .family = AF_INET6};
        if (!query_send(l, t, &t->q6, RR_TYPE_AAAA) || !query_send(l, t, &t->q4, RR_TYPE_A)) {
            lookup_done(l, DNS_TEMPFAIL, "%s", t->reason);
            return;
        }
    }
}

static void on_mx_answer(void *arg, int err, struct ub_result *result)
{
    struct query *q = arg;
    struct dns_lookup *l = q->lookup;
    struct dns_nexthop *res = &l->res;
    q->active = false;
    l->pending--;
    char reason[sizeof res->reason];
    enum answer a = classify(err, result, res->domain, 0, reason, sizeof reason);
    res->secure = result && result->secure && !result->bogus;
    if (a == ANSWER_TEMPFAIL) {
        lookup_done(l, DNS_TEMPFAIL, "%s", reason);
    } else if (a == ANSWER_NXDOMAIN) {
        lookup_done(l, DNS_NXDOMAIN, "%s does not exist", res->domain);
    } else if (a == ANSWER_NODATA) {
        /* RFC 5321 §5.1: no MX, the domain itself is the host */
        res->implicit = true;
        l->ntargets = 1;
        memcpy(l->targets[0].name, res->domain, sizeof res->domain);
        l->targets[0].preference = 0;
        start_addrs(l);
    } else {
        struct mx_list mx;
        mx_list_init(&mx);
        for (size_t i = 0; result->data[i]; i++)
            mx_list_add(&mx, (const uint8_t *)result->data[i], (size_t)result->len[i]);
        switch (mx_list_finish(&mx, random_u32, NULL)) {
        case MX_HOSTS:
            l->ntargets = mx.n;
            for (size_t i = 0; i < mx.n; i++) {
                memcpy(l->targets[i].name, mx.v[i].name, sizeof mx.v[i].name);
                l->targets[i].preference = mx.v[i].preference;
            }
            start_addrs(l);
            break;
        case MX_NULL:
            lookup_done(l, DNS_NULL_MX, "%s publishes a null MX: it accepts no mail", res->domain);
            break;
        case MX_UNUSABLE:
            lookup_done(l, DNS_NO_ADDRESS, "no MX record of %s names a valid host", res->domain);
            break;
        case MX_MALFORMED:
        case MX_EMPTY:
            lookup_done(l, DNS_TEMPFAIL, "malformed MX answer for %s", res->domain);
            break;
        }
    }
    ub_resolve_free(result);
}

/* Keep a final next-hop result (not a temporary failure) for a while. */
static void cache_put(struct dns_resolver *r, const struct dns_nexthop *res)
{
    if (res->status == DNS_TEMPFAIL)
        return;
    int64_t now = now_mono_ms();
    struct nexthop_cached *slot = NULL;
    for (size_t i = 0; i < NEXTHOP_CACHE_SIZE; i++) {
        struct nexthop_cached *c = &r->cache[i];
        if (c->res && strcmp(c->res->domain, res->domain) == 0) {
            slot = c;
            break;
        }
        if (!slot || c->expires_ms < slot->expires_ms)
            slot = c; /* an empty or expired slot, else the oldest */
    }
    if (!slot->res)
        slot->res = xmalloc(sizeof *slot->res);
    memcpy(slot->res, res, sizeof *res);
    slot->expires_ms = now + NEXTHOP_CACHE_MS;
}

static const struct dns_nexthop *cache_get(struct dns_resolver *r, const char *domain)
{
    int64_t now = now_mono_ms();
    for (size_t i = 0; i < NEXTHOP_CACHE_SIZE; i++) {
        struct nexthop_cached *c = &r->cache[i];
        if (c->res && c->expires_ms > now && strcmp(c->res->domain, domain) == 0)
            return c->res;
    }
    return NULL;
}

static void on_timer(void *arg)
{
    struct dns_lookup *l = arg;
    if (l->phase == PHASE_MX) {
        lookup_done(l, DNS_TEMPFAIL, "timeout looking up MX for %s", l->res.domain);
    } else if (l->phase == PHASE_ADDRS) {
        lookup_cancel_queries(l);
        finish_addrs(l, true);
    }
    /* deliver now rather than one more pass later: the timer is ours */
    ev_timer_stop(l->timer);
    if (!l->host_only && !l->cached)
        cache_put(l->r, &l->res);
    lookup_unlink(l);
    metrics_dns_nexthop(l->res.status);
    l->cb(l->arg, &l->res);
    lookup_free(l);
}

static struct dns_lookup *lookup_new(struct dns_resolver *r, const char *name, dns_nexthop_cb cb,
                                     void *arg, bool host_only)
{
    struct dns_lookup *l = xcalloc(1, sizeof *l);
    l->r = r;
    l->cb = cb;
    l->arg = arg;
    l->host_only = host_only;
    l->timer = ev_timer_new(r->loop, on_timer, l);
    l->mxq.lookup = l;
    snprintf(l->res.domain, sizeof l->res.domain, "%s", name);
    l->next = r->lookups;
    if (r->lookups)
        r->lookups->prev = l;
    r->lookups = l;
    ev_timer_start(l->timer, r->timeout_ms);
    return l;
}

struct dns_lookup *dns_resolve_nexthop(struct dns_resolver *r, const char *domain,
                                       dns_nexthop_cb cb, void *arg)
{
    char name[DNS_NAME_MAX + 1];
    bool valid = dns_name_normalize(domain, name);
    struct dns_lookup *l = lookup_new(r, valid ? name : domain, cb, arg, false);
    if (!valid) {
        lookup_done(l, DNS_NXDOMAIN, "%.200s is not a valid domain name", domain);
        return l;
    }
    const struct dns_nexthop *hit = cache_get(r, name);
    if (hit) {
        lookup_done(l, hit->status, NULL);
        memcpy(&l->res, hit, sizeof l->res);
        l->cached = true;
        return l;
    }
    l->phase = PHASE_MX;
    int rc = ub_resolve_async(r->ctx, name, RR_TYPE_MX, RR_CLASS_IN, &l->mxq, on_mx_answer,
                              &l->mxq.async_id);
    if (rc != 0) {
        lookup_done(l, DNS_TEMPFAIL, "%s looking up MX for %s", ub_strerror(rc), name);
        return l;
    }
    l->mxq.active = true;
    l->pending++;
    return l;
}

struct dns_lookup *dns_resolve_host(struct dns_resolver *r, const char *host, dns_nexthop_cb cb,
                                    void *arg)
{
    struct dns_addr literal;
    if (dns_addr_parse(host, &literal)) {
        struct dns_lookup *l = lookup_new(r, host, cb, arg, true);
        struct dns_host *h = &l->res.hosts[0];
        dns_addr_format(&literal, h->name, sizeof h->name);
        h->addrs[0] = literal;
        h->naddrs = 1;
        l->res.nhosts = 1;
        lookup_done(l, DNS_OK, NULL);
        return l;
    }
    char name[DNS_NAME_MAX + 1];
    bool valid = dns_name_normalize(host, name);
    struct dns_lookup *l = lookup_new(r, valid ? name : host, cb, arg, true);
    if (!valid) {
        lookup_done(l, DNS_NXDOMAIN, "%.200s is not a valid host name", host);
        return l;
    }
    l->ntargets = 1;
    memcpy(l->targets[0].name, name, sizeof name);
    start_addrs(l);
    return l;
}

/* ---- Raw queries ---- */

static void query_unlink(struct dns_query *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else if (q->r->queries == q)
        q->r->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

void dns_query_cancel(struct dns_query *q)
{
    if (!q)
        return;
    if (q->active)
        ub_cancel(q->r->ctx, q->async_id);
    query_unlink(q);
    ev_timer_free(q->timer);
    ub_resolve_free(q->result);
    free(q);
}

/* The answer is final: deliver it from the timer, on the next loop pass. */
static void query_done(struct dns_query *q, enum dns_answer_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void query_done(struct dns_query *q, enum dns_answer_status status, const char *fmt, ...)
{
    if (q->active) {
        ub_cancel(q->r->ctx, q->async_id);
        q->active = false;
    }
    q->ans.status = status;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->ans.reason, sizeof q->ans.reason, fmt, ap);
        va_end(ap);
    }
    if (status != DNS_ANSWER_DATA)
        q->ans.n = 0;
    ev_timer_start(q->timer, 0);
}

static void on_query_answer(void *arg, int err, struct ub_result *result)
{
    struct dns_query *q = arg;
    struct dns_answer *a = &q->ans;
    q->active = false;
    q->result = result;
    const char *type = rrtype_name(a->type);
    if (err != 0) {
        query_done(q, DNS_ANSWER_TEMPFAIL, "%s looking up %s for %s", ub_strerror(err), type,
                   a->name);
    } else if (result->bogus) {
        query_done(q, DNS_ANSWER_TEMPFAIL, "DNSSEC validation failed looking up %s for %s%s%s",
                   type, a->name, result->why_bogus ? ": " : "",
                   result->why_bogus ? result->why_bogus : "");
    } else if (result->rcode == RCODE_NXDOMAIN) {
        a->secure = result->secure;
        query_done(q, DNS_ANSWER_NXDOMAIN, NULL);
    } else if (result->rcode != 0) {
        query_done(q, DNS_ANSWER_TEMPFAIL, "%s looking up %s for %s", rcode_name(result->rcode),
                   type, a->name);
    } else {
        a->secure = result->secure;
        for (size_t i = 0; result->havedata && result->data[i]; i++) {
            if (a->n == DNS_MAX_RECORDS) {
                a->dropped++;
                continue;
            }
            a->rdata[a->n] = (const uint8_t *)result->data[i];
            a->len[a->n] = (size_t)result->len[i];
            a->n++;
        }
        query_done(q, a->n > 0 ? DNS_ANSWER_DATA : DNS_ANSWER_NODATA, NULL);
    }
}

static void on_query_timer(void *arg)
{
    struct dns_query *q = arg;
    if (q->active)
        query_done(q, DNS_ANSWER_TEMPFAIL, "timeout looking up %s for %s", rrtype_name(q->ans.type),
                   q->ans.name);
    ev_timer_stop(q->timer);
    query_unlink(q);
    metrics_inc(M_DNS_LOOKUPS, METRICS_DNS_RECORD, q->ans.status);
    q->cb(q->arg, &q->ans);
    ev_timer_free(q->timer);
    ub_resolve_free(q->result);
    free(q);
}

struct dns_query *dns_query(struct dns_resolver *r, const char *name, int type, dns_answer_cb cb,
                            void *arg)
{
    struct dns_query *q = xcalloc(1, sizeof *q);
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->ans.type = type;
    q->timer = ev_timer_new(r->loop, on_query_timer, q);
    q->next = r->queries;
    if (r->queries)
        r->queries->prev = q;
    r->queries = q;
    if (!dns_query_name_normalize(name, q->ans.name)) {
        snprintf(q->ans.name, sizeof q->ans.name, "%.200s", name);
        query_done(q, DNS_ANSWER_INVALID, "%.200s is not a valid domain name", name);
        return q;
    }
    ev_timer_start(q->timer, r->timeout_ms);
    int rc =
        ub_resolve_async(r->ctx, q->ans.name, type, RR_CLASS_IN, q, on_query_answer, &q->async_id);
    if (rc != 0) {
        query_done(q, DNS_ANSWER_TEMPFAIL, "%s looking up %s for %s", ub_strerror(rc),
                   rrtype_name(type), q->ans.name);
        return q;
    }
    q->active = true;
    return q;
}
