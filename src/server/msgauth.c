/*
 * msgauth - mail authentication in the SMTP session; see msgauth.h.
 *
 * The end-of-data work is a small dependency chain driven by advance(),
 * which every completion calls: in verify mode SPF and the DKIM verifier
 * must both be over before DMARC can start, and the prefix is composed once
 * DMARC is over; in sign mode the signatures come back from a worker.
 * Completions arrive from the event loop; in_call guards against one that a
 * library might report from inside our own call, so wake never runs there.
 */
#include "server/msgauth.h"

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dns/dmarc.h"
#include "dns/dns.h"
#include "dns/mx.h"
#include "dns/spf.h"
#include "event/event.h"
#include "mailauth/dkim.h"
#include "mailauth/dkimkey.h"
#include "mailauth/dmarc_check.h"
#include "mailauth/dmarc_report.h"
#include "mailauth/orgdomain.h"
#include "mailauth/spf_check.h"
#include "smtp/authres.h"
#include "smtp/header.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Header fields this module adds, in all. */
#define PREFIX_MAX (64 * 1024)
/* One Authentication-Results field. */
#define AUTHRES_FIELD_MAX 8192

/* A signing job in a worker thread. When its msgauth is freed first, m is
   NULL and the done callback frees the job alone. */
struct sign_job {
    struct msgauth *m;
    struct dkim_signer *signer;
    struct buf out; /* the DKIM-Signature fields */
    int n;          /* signatures made, or -1 */
    char err[256];
};

struct msgauth {
    const struct msgauth_ctx *ctx;
    const struct config *cfg;
    enum msgauth_mode mode;
    void (*wake)(void *arg);
    void *arg;
    char sid[24];
    char client[64];
    char helo[256];
    char *sender;
    char qid[20];
    bool in_call;   /* inside a msgauth_* call: completions do not wake */
    bool finishing; /* msgauth_finish was called */
    bool done;      /* everything is over; prefix is final */
    /* SPF of MAIL FROM */
    struct spf_check *spf;
    bool spf_ran;              /* a check was started */
    bool spf_over;             /* and it ended */
    struct spf_result spf_res; /* its result, once over */
    /* SPF of the HELO name (RFC 7208 §2.3), for a non-null sender (for the
       null sender the MAIL FROM check is the HELO check) */
    struct spf_check *spf_helo;
    bool helo_ran, helo_over;
    struct spf_result helo_res;
    /* DKIM verification */
    struct dkim_verifier *ver;
    bool ver_over;
    struct dkim_results dres;
    /* DMARC */
    enum dmarc_from from_status;
    char from_domain[DNS_NAME_MAX + 1];
    struct dmarc_check *dq;
    bool dmarc_ran, dmarc_over;
    const char *dmarc_status;          /* a static name */
    char dmarc_from[DNS_NAME_MAX + 1]; /* header.from as evaluated */
    char dmarc_comment[96];            /* "p=reject dis=none", or "" */
    enum dmarc_action dmarc_action;
    char dmarc_policy_domain[DNS_NAME_MAX + 1];
    /* DKIM signing */
    struct dkim_signer *signer;
    bool stored_early;    /* content was stored before the header section ended */
    bool header_seen;     /* msgauth_header_done was called */
    struct sign_job *job; /* in a worker */
    struct buf sigs;      /* the signatures made */
    /* the outcome */
    struct buf prefix;
};

/* ---- completion ---------------------------------------------------------- */

static enum dmarc_auth spf_to_dmarc(enum spf_result_code r)
{
    switch (r) {
    case SPF_PASS:
        return DMARC_AUTH_PASS;
    case SPF_FAIL:
        return DMARC_AUTH_FAIL;
    case SPF_SOFTFAIL:
        return DMARC_AUTH_SOFTFAIL;
    case SPF_NEUTRAL:
        return DMARC_AUTH_NEUTRAL;
    case SPF_TEMPERROR:
        return DMARC_AUTH_TEMPERROR;
    case SPF_PERMERROR:
        return DMARC_AUTH_PERMERROR;
    case SPF_NONE:
        break;
    }
    return DMARC_AUTH_NONE;
}

static enum dmarc_auth dkim_to_dmarc(enum dkim_result r)
{
    switch (r) {
    case DKIM_RESULT_PASS:
        return DMARC_AUTH_PASS;
    case DKIM_RESULT_FAIL:
        return DMARC_AUTH_FAIL;
    case DKIM_RESULT_NEUTRAL:
        return DMARC_AUTH_NEUTRAL;
    case DKIM_RESULT_POLICY:
        return DMARC_AUTH_POLICY;
    case DKIM_RESULT_TEMPERROR:
        return DMARC_AUTH_TEMPERROR;
    case DKIM_RESULT_PERMERROR:
        return DMARC_AUTH_PERMERROR;
    case DKIM_RESULT_NONE:
        break;
    }
    return DMARC_AUTH_NONE;
}

static void advance(struct msgauth *m);

static void notify(struct msgauth *m)
{
    if (!m->in_call && m->wake)
        m->wake(m->arg);
}

static void on_spf(void *arg, const struct spf_result *res)
{
    struct msgauth *m = arg;
    m->spf = NULL;
    m->spf_over = true;
    m->spf_res = *res;
    metrics_inc(M_SPF_RESULTS, res->result, 0);
    log_info("sid=%s event=spf identity=%s domain=%s result=%s mechanism=\"%s\" reason=\"%s\"",
             m->sid, spf_identity_name(res->identity), res->domain[0] ? res->domain : "-",
             spf_result_name(res->result), res->mechanism, res->reason);
    if (m->finishing)
        advance(m);
    else
        notify(m); /* a MAIL command may be waiting */
}

static void on_spf_helo(void *arg, const struct spf_result *res)
{
    struct msgauth *m = arg;
    m->spf_helo = NULL;
    m->helo_over = true;
    m->helo_res = *res;
    log_info("sid=%s event=spf identity=%s domain=%s result=%s mechanism=\"%s\" reason=\"%s\"",
             m->sid, spf_identity_name(res->identity), res->domain[0] ? res->domain : "-",
             spf_result_name(res->result), res->mechanism, res->reason);
    advance(m);
}

static void on_verified(void *arg, const struct dkim_results *res)
{
    struct msgauth *m = arg;
    m->dres = *res;
    m->ver_over = true;
    metrics_inc(M_DKIM_RESULTS, res->summary, 0);
    for (size_t i = 0; i < res->n; i++) {
        const struct dkim_sig_result *r = &res->sigs[i];
        log_info("sid=%s qid=%s event=dkim_verify d=%s s=%s a=%s result=%s%s%s%s", m->sid, m->qid,
                 r->domain[0] ? r->domain : "-", r->selector[0] ? r->selector : "-",
                 r->alg[0] ? r->alg : "-", dkim_result_name(r->result),
                 r->reason[0] ? " reason=\"" : "", r->reason, r->reason[0] ? "\"" : "");
    }
    advance(m);
}

static void on_dmarc(void *arg, const struct dmarc_check_result *r)
{
    struct msgauth *m = arg;
    m->dq = NULL;
    m->dmarc_over = true;
    m->dmarc_action = dmarc_local_action(r->res->disposition, m->cfg->dmarc_reject_action);
    struct authres_result ar;
    char comment[sizeof m->dmarc_comment];
    comment[0] = '\0';
    dmarc_check_authres(r, m->dmarc_action, comment, sizeof comment, &ar);
    m->dmarc_status = ar.result;
    metrics_inc_named(M_DMARC_RESULTS, ar.result);
    snprintf(m->dmarc_from, sizeof m->dmarc_from, "%s", r->from_domain ? r->from_domain : "");
    snprintf(m->dmarc_comment, sizeof m->dmarc_comment, "%s", ar.comment ? comment : "");
    snprintf(m->dmarc_policy_domain, sizeof m->dmarc_policy_domain, "%s",
             r->disc && r->disc->status == DMARC_DISC_FOUND ? r->disc->domain : m->dmarc_from);
    log_info("sid=%s qid=%s event=dmarc from=%s result=%s policy=%s action=%s", m->sid, m->qid,
             m->dmarc_from[0] ? m->dmarc_from : "-", m->dmarc_status,
             r->res->policy != DMARC_POLICY_UNSET ? dmarc_policy_name(r->res->policy) : "-",
             dmarc_action_name(m->dmarc_action));
    if (m->cfg->dmarc_report_dir && r->from_status == DMARC_FROM_OK) {
        static const enum dmarc_disposition done_as[] = {[DMARC_ACTION_ACCEPT] = DMARC_DISP_NONE,
                                                         [DMARC_ACTION_QUARANTINE] =
                                                             DMARC_DISP_QUARANTINE,
                                                         [DMARC_ACTION_REJECT] = DMARC_DISP_REJECT};
        const char *at = strrchr(m->sender, '@');
        struct dmarc_report_entry e = {
            .time = now_real_us() / 1000000,
            .source_ip = m->client,
            .envelope_from = at ? at + 1 : "",
            .header_from = m->dmarc_from,
            .disc = r->disc && r->disc->status == DMARC_DISC_FOUND ? r->disc : NULL,
            .res = r->res,
            .in = r->in,
            .disposition = done_as[m->dmarc_action],
        };
        char err[256];
        if (dmarc_report_append(m->cfg->dmarc_report_dir, &e, err, sizeof err) < 0)
            log_warn("sid=%s qid=%s event=dmarc_report_failed error=\"%s\"", m->sid, m->qid, err);
    }
    advance(m);
}

/* Make the signatures (any thread). */
static void sign_work(void *arg)
{
    struct sign_job *j = arg;
    j->n = dkim_signer_finish(j->signer, &j->out, j->err, sizeof j->err);
}

static void sign_take(struct msgauth *m, struct sign_job *j)
{
    if (j->n < 0)
        log_warn("sid=%s qid=%s event=dkim_sign_failed error=\"%s\"", m->sid, m->qid, j->err);
    else if (j->out.len > 0 && buf_append(&m->sigs, j->out.data, j->out.len) == 0)
        log_info("sid=%s qid=%s event=dkim_signed signatures=%d", m->sid, m->qid, j->n);
}

static void sign_job_free(struct sign_job *j)
{
    dkim_signer_free(j->signer);
    buf_free(&j->out);
    free(j);
}

/* The signatures are made (loop thread). */
static void sign_done(void *arg)
{
    struct sign_job *j = arg;
    struct msgauth *m = j->m;
    if (m) {
        m->job = NULL;
        sign_take(m, j);
    }
    sign_job_free(j);
    if (m)
        advance(m);
}

/* ---- the prefix ---------------------------------------------------------- */

static void add_authres(struct msgauth *m)
{
    struct authres_result r[3 + DKIM_VERIFY_MAX];
    size_t n = 0;
    memset(r, 0, sizeof r);
    if (m->spf_over) {
        struct authres_result *x = &r[n++];
        x->method = "spf";
        x->result = spf_result_name(m->spf_res.result);
        if (m->sender[0])
            x->props[x->nprops++] = (struct authres_prop){"smtp", "mailfrom", m->sender};
        else if (m->helo[0])
            x->props[x->nprops++] = (struct authres_prop){"smtp", "helo", m->helo};
    }
    if (m->helo_over && m->helo[0]) {
        struct authres_result *x = &r[n++];
        x->method = "spf";
        x->result = spf_result_name(m->helo_res.result);
        x->props[x->nprops++] = (struct authres_prop){"smtp", "helo", m->helo};
    }
    if (m->ver_over) {
        if (m->dres.n == 0) {
            r[n++] = (struct authres_result){.method = "dkim", .result = "none"};
        }
        for (size_t i = 0; i < m->dres.n; i++) {
            const struct dkim_sig_result *s = &m->dres.sigs[i];
            struct authres_result *x = &r[n++];
            x->method = "dkim";
            x->result = dkim_result_name(s->result);
            if (s->result != DKIM_RESULT_PASS && s->reason[0])
                x->reason = s->reason;
            if (s->domain[0])
                x->props[x->nprops++] = (struct authres_prop){"header", "d", s->domain};
            if (s->selector[0])
                x->props[x->nprops++] = (struct authres_prop){"header", "s", s->selector};
            if (s->alg[0])
                x->props[x->nprops++] = (struct authres_prop){"header", "a", s->alg};
            if (s->header_b[0])
                x->props[x->nprops++] = (struct authres_prop){"header", "b", s->header_b};
        }
    }
    if (m->dmarc_over) {
        struct authres_result *x = &r[n++];
        x->method = "dmarc";
        x->result = m->dmarc_status;
        if (m->dmarc_from[0])
            x->props[x->nprops++] = (struct authres_prop){"header", "from", m->dmarc_from};
        if (m->dmarc_comment[0])
            x->comment = m->dmarc_comment;
    }
    char *field = xmalloc(AUTHRES_FIELD_MAX);
    long len = authres_compose(m->cfg->authserv_id, r, n, field, AUTHRES_FIELD_MAX);
    if (len < 0) {
        /* a value we cannot write (a control octet in a reason, say): say
           less rather than nothing */
        for (size_t i = 0; i < n; i++)
            r[i].reason = NULL;
        len = authres_compose(m->cfg->authserv_id, r, n, field, AUTHRES_FIELD_MAX);
    }
    if (len < 0 || buf_append(&m->prefix, field, (size_t)len) < 0)
        log_warn("sid=%s qid=%s event=authres_failed", m->sid, m->qid);
    free(field);
    if (m->dmarc_over && m->dmarc_action == DMARC_ACTION_QUARANTINE)
        buf_printf(&m->prefix, "%s: yes\r\n", m->cfg->dmarc_quarantine_header);
}

static void compose(struct msgauth *m)
{
    const struct config *cfg = m->cfg;
    if (m->sigs.len > 0)
        buf_append(&m->prefix, m->sigs.data, m->sigs.len);
    /* with every check switched off there is nothing to record */
    if (m->mode == MSGAUTH_VERIFY && (cfg->spf_verify || cfg->dkim_verify || cfg->dmarc_verify))
        add_authres(m);
}

/* ---- the chain ------------------------------------------------------------- */

static void dmarc_start(struct msgauth *m)
{
    m->dmarc_ran = true;
    struct dmarc_dkim dk[DKIM_VERIFY_MAX];
    size_t ndk = 0;
    for (size_t i = 0; i < m->dres.n && ndk < DKIM_VERIFY_MAX; i++) {
        const struct dkim_sig_result *s = &m->dres.sigs[i];
        if (!s->domain[0])
            continue;
        dk[ndk++] = (struct dmarc_dkim){dkim_to_dmarc(s->result), s->domain, s->selector};
    }
    struct dmarc_check_request req = {
        .from_status = m->from_status,
        .from_domain = m->from_domain,
        .in = {.spf = m->spf_over ? spf_to_dmarc(m->spf_res.result) : DMARC_AUTH_NONE,
               .spf_domain = m->spf_over && m->spf_res.domain[0] ? m->spf_res.domain : NULL,
               .ndkim = ndk,
               .dkim = dk},
        .pct_roll = dmarc_pct_roll(),
    };
    m->dq = dmarc_check_start(m->ctx->dmarc, &req, on_dmarc, m);
}

static void advance(struct msgauth *m)
{
    if (!m->finishing || m->done)
        return;
    if (m->mode == MSGAUTH_VERIFY) {
        if ((m->spf_ran && !m->spf_over) || (m->helo_ran && !m->helo_over))
            return;
        if (m->ver && !m->ver_over)
            return;
        if (!m->dmarc_ran && m->cfg->dmarc_verify && m->ctx->dmarc) {
            dmarc_start(m);
            return;
        }
        if (m->dmarc_ran && !m->dmarc_over)
            return;
    }
    if (m->job)
        return;
    compose(m);
    m->done = true;
    notify(m);
}

/* ---- the interface --------------------------------------------------------- */

struct msgauth *msgauth_new(const struct msgauth_ctx *ctx, const struct config *cfg,
                            enum msgauth_mode mode, const struct msgauth_params *p,
                            void (*wake)(void *arg), void *arg)
{
    struct msgauth *m = xcalloc(1, sizeof *m);
    m->ctx = ctx;
    m->cfg = cfg;
    m->mode = mode;
    m->wake = wake;
    m->arg = arg;
    snprintf(m->sid, sizeof m->sid, "%s", p->sid);
    snprintf(m->client, sizeof m->client, "%s", p->client);
    snprintf(m->helo, sizeof m->helo, "%s", p->helo ? p->helo : "");
    m->sender = xstrdup(p->sender ? p->sender : "");
    snprintf(m->qid, sizeof m->qid, "-");
    buf_init(&m->prefix, PREFIX_MAX);
    buf_init(&m->sigs, PREFIX_MAX / 2);
    struct spf_request req = {
        .identity = SPF_IDENTITY_MAILFROM,
        .helo = m->helo,
        .sender = m->sender,
        .receiver = cfg->hostname,
        .now = now_real_us() / 1000000,
        .timeout_ms = cfg->spf_timeout * 1000,
    };
    if (mode == MSGAUTH_VERIFY && cfg->spf_verify && ctx->dns &&
        dns_addr_parse(m->client, &req.client)) {
        m->in_call = true;
        m->spf_ran = true;
        m->spf = spf_check_start(ctx->dns, &req, on_spf, m);
        if (m->sender[0] && m->helo[0]) {
            req.identity = SPF_IDENTITY_HELO;
            m->helo_ran = true;
            m->spf_helo = spf_check_start(ctx->dns, &req, on_spf_helo, m);
        }
        m->in_call = false;
    }
    return m;
}

void msgauth_free(struct msgauth *m)
{
    if (!m)
        return;
    spf_check_cancel(m->spf);
    spf_check_cancel(m->spf_helo);
    dkim_verifier_free(m->ver);
    dmarc_check_cancel(m->dq);
    dkim_signer_free(m->signer);
    if (m->job)
        m->job->m = NULL; /* the worker's done callback frees it */
    free(m->sender);
    buf_free(&m->prefix);
    buf_free(&m->sigs);
    free(m);
}

bool msgauth_spf_pending(const struct msgauth *m)
{
    return m->spf_ran && !m->spf_over;
}

const struct smtp_status *msgauth_spf_refusal(const struct msgauth *m, char *text, size_t textlen)
{
    static struct smtp_status refused = {550, "5.7.23", NULL};
    if (!m->spf_over || m->spf_res.result != SPF_FAIL ||
        m->cfg->spf_fail_action != CONFIG_SPF_FAIL_REJECT)
        return NULL;
    if (m->spf_res.explanation[0])
        snprintf(text, textlen, "SPF check failed: %s", m->spf_res.explanation);
    else
        snprintf(text, textlen, "SPF check failed: %s", m->spf_res.reason);
    for (char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = '?';
    refused.text = text;
    return &refused;
}

void msgauth_content_begin(struct msgauth *m, uint64_t qid)
{
    snprintf(m->qid, sizeof m->qid, "%016" PRIX64, qid);
    if (m->mode != MSGAUTH_VERIFY || !m->cfg->dkim_verify || !m->ctx->dkim || !m->ctx->dns)
        return;
    char err[256];
    m->in_call = true;
    m->ver = dkim_verifier_new(m->ctx->dkim, m->ctx->loop, m->ctx->dns, m->qid, on_verified, m, err,
                               sizeof err);
    m->in_call = false;
    if (!m->ver)
        log_warn("sid=%s qid=%s event=dkim_verify_unavailable error=\"%s\"", m->sid, m->qid, err);
}

void msgauth_received(struct msgauth *m, const void *p, size_t n)
{
    if (m->ver && !m->finishing) {
        m->in_call = true;
        dkim_verifier_feed(m->ver, p, n);
        m->in_call = false;
    }
}

/* In the header section of mail from outside: fields that claim to come from
   us (RFC 8601 §5): Authentication-Results with our authserv-id, and the
   quarantine mark. */
static bool drop_ours(void *arg, const char *name, size_t namelen, const char *value,
                      size_t valuelen)
{
    const struct msgauth *m = arg;
    static const char ar[] = "Authentication-Results";
    const char *q = m->cfg->dmarc_quarantine_header;
    if (q && namelen == strlen(q) && strncasecmp(name, q, namelen) == 0)
        return true;
    return namelen == sizeof ar - 1 && strncasecmp(name, ar, namelen) == 0 &&
           authres_is_ours(value, valuelen, m->cfg->authserv_id);
}

/* The domain to sign for: the From domain or its nearest parent with keys,
   not past the organisational domain. */
static bool sign_domain(const struct msgauth *m, const char *from, char out[DNS_NAME_MAX + 1])
{
    char org[DNS_NAME_MAX + 1] = "";
    if (m->ctx->org)
        orgdomain_get(m->ctx->org, from, org);
    for (const char *d = from; d && *d;) {
        const struct dkim_key *first;
        if (dkim_keystore_domain(m->ctx->keys, d, &first) > 0) {
            snprintf(out, DNS_NAME_MAX + 1, "%s", d);
            return true;
        }
        if (!org[0] || strcmp(d, org) == 0)
            break;
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return false;
}

size_t msgauth_header_done(struct msgauth *m, const struct smtp_hdr_scan *h, uint8_t *p, size_t len)
{
    m->header_seen = true;
    if (m->mode == MSGAUTH_VERIFY) {
        size_t removed = 0;
        len = smtp_hdr_remove(p, len, drop_ours, m, &removed);
        if (removed)
            log_warn("sid=%s qid=%s event=authres_removed fields=%zu note=\"forged "
                     "Authentication-Results with our authserv-id, or quarantine marks\"",
                     m->sid, m->qid, removed);
        return len;
    }
    if (m->mode != MSGAUTH_SIGN || !m->cfg->dkim_sign || !m->ctx->dkim || !m->ctx->keys)
        return len;
    char from[DNS_NAME_MAX + 1], domain[DNS_NAME_MAX + 1];
    enum dmarc_from fs =
        dmarc_from_domain(h->from_fields, h->from, h->from_len, h->from_truncated, from);
    if (fs != DMARC_FROM_OK || !sign_domain(m, from, domain)) {
        log_debug("sid=%s qid=%s event=dkim_sign_skipped reason=\"%s\"", m->sid, m->qid,
                  fs != DMARC_FROM_OK ? dmarc_from_name(fs) : "no key for the From domain");
        return len;
    }
    if (m->stored_early) {
        log_warn("sid=%s qid=%s event=dkim_sign_skipped reason=\"header section too long to "
                 "hold\"",
                 m->sid, m->qid);
        return len;
    }
    char err[256];
    m->signer = dkim_signer_new(m->ctx->dkim, m->ctx->keys, domain, m->qid, err, sizeof err);
    if (!m->signer)
        log_warn("sid=%s qid=%s event=dkim_sign_failed domain=%s error=\"%s\"", m->sid, m->qid,
                 domain, err);
    return len;
}

void msgauth_stored(struct msgauth *m, const void *p, size_t n)
{
    if (!m->header_seen) {
        m->stored_early = true;
        return;
    }
    if (m->signer && dkim_signer_feed(m->signer, p, n) < 0)
        log_debug("sid=%s qid=%s event=dkim_sign_feed_failed", m->sid, m->qid);
}

void msgauth_finish(struct msgauth *m, const struct smtp_hdr_scan *h)
{
    m->in_call = true;
    m->finishing = true;
    if (m->mode == MSGAUTH_VERIFY)
        m->from_status = dmarc_from_domain(h->from_fields, h->from, h->from_len, h->from_truncated,
                                           m->from_domain);
    if (m->ver)
        dkim_verifier_finish(m->ver);
    if (m->signer) {
        struct sign_job *j = xcalloc(1, sizeof *j);
        j->m = m;
        j->signer = m->signer;
        m->signer = NULL;
        buf_init(&j->out, PREFIX_MAX / 2);
        if (m->ctx->workers) {
            m->job = j;
            ev_workers_submit(m->ctx->workers, sign_work, sign_done, j);
        } else {
            sign_work(j);
            sign_take(m, j);
            sign_job_free(j);
        }
    }
    advance(m);
    m->in_call = false;
}

bool msgauth_done(const struct msgauth *m)
{
    return m->done;
}

const char *msgauth_prefix(const struct msgauth *m)
{
    return m->done && m->prefix.len > 0 ? m->prefix.data : NULL;
}

const struct smtp_status *msgauth_refusal(const struct msgauth *m, char *text, size_t textlen)
{
    static struct smtp_status refused = {550, "5.7.1", NULL};
    if (!m->done || !m->dmarc_over || m->dmarc_action != DMARC_ACTION_REJECT)
        return NULL;
    snprintf(text, textlen, "Message rejected: the DMARC policy of %s says reject",
             m->dmarc_policy_domain);
    refused.text = text;
    return &refused;
}
