/*
 * metrics - the registry of counters, gauges and histograms, and the
 * Prometheus text exposition format 0.0.4 (see metrics.h, docs/metrics.md).
 *
 * Format: "# HELP name text" (text with '\' as "\\" and a newline as "\n"),
 * "# TYPE name counter|gauge|histogram", then "name{l="v",...} value" per
 * series (label values with '\', '"' and a newline escaped). A histogram
 * series has cumulative "name_bucket{...,le="B"}" lines ending with
 * le="+Inf", then "name_sum" and "name_count" (equal to the +Inf bucket).
 */
#include "core/metrics.h"
#include "core/buf.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- rendering (pure) ---- */

static size_t family_series(const struct metrics_family *f)
{
    size_t n = 1;
    for (size_t i = 0; i < f->nlabels; i++)
        n *= f->labels[i].nvalues;
    return n;
}

size_t metrics_family_slots(const struct metrics_family *f)
{
    size_t per = f->type == METRICS_HISTOGRAM ? f->nbounds + 2 : 1;
    return family_series(f) * per;
}

/* Escape s for # HELP (quote false) or a label value (quote true). */
static int put_escaped(struct buf *out, const char *s, bool quote)
{
    int r = 0;
    for (; *s && r == 0; s++) {
        if (*s == '\\')
            r = buf_puts(out, "\\\\");
        else if (*s == '\n')
            r = buf_puts(out, "\\n");
        else if (*s == '"' && quote)
            r = buf_puts(out, "\\\"");
        else
            r = buf_append(out, s, 1);
    }
    return r;
}

/* A value in base units divided by scale, as a decimal without trailing
   zeros ("0.25", "3"). */
static int put_scaled(struct buf *out, uint64_t v, uint64_t scale)
{
    if (scale <= 1)
        return buf_printf(out, "%" PRIu64, v);
    uint64_t ip = v / scale, fp = v % scale;
    if (fp == 0)
        return buf_printf(out, "%" PRIu64, ip);
    int digits = 0;
    for (uint64_t s = scale; s > 1; s /= 10)
        digits++;
    char frac[24];
    int n = snprintf(frac, sizeof frac, "%0*" PRIu64, digits, fp);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    return buf_printf(out, "%" PRIu64 ".%s", ip, frac);
}

/* "{a="x",b="y"" for series k (without the closing brace). */
static int put_labels(struct buf *out, const struct metrics_family *f, size_t k)
{
    size_t idx[METRICS_MAX_LABELS] = {0};
    for (size_t i = f->nlabels; i-- > 0;) {
        idx[i] = k % f->labels[i].nvalues;
        k /= f->labels[i].nvalues;
    }
    int r = 0;
    for (size_t i = 0; i < f->nlabels && r == 0; i++) {
        r = buf_printf(out, "%s%s=\"", i ? "," : "{", f->labels[i].name);
        if (r == 0)
            r = put_escaped(out, f->labels[i].values[idx[i]], true);
        if (r == 0)
            r = buf_puts(out, "\"");
    }
    return r;
}

static int render_histogram_series(struct buf *out, const struct metrics_family *f, size_t k,
                                   const uint64_t *v)
{
    uint64_t cum = 0;
    int r = 0;
    for (size_t b = 0; b <= f->nbounds && r == 0; b++) {
        cum += v[b];
        r = buf_printf(out, "%s_bucket", f->name);
        if (r == 0 && f->nlabels) {
            r = put_labels(out, f, k);
            if (r == 0)
                r = buf_puts(out, ",le=\"");
        } else if (r == 0) {
            r = buf_puts(out, "{le=\"");
        }
        if (r == 0)
            r = b < f->nbounds ? put_scaled(out, f->bounds[b], f->scale) : buf_puts(out, "+Inf");
        if (r == 0)
            r = buf_printf(out, "\"} %" PRIu64 "\n", cum);
    }
    for (int part = 0; part < 2 && r == 0; part++) {
        r = buf_printf(out, "%s%s", f->name, part == 0 ? "_sum" : "_count");
        if (r == 0 && f->nlabels) {
            r = put_labels(out, f, k);
            if (r == 0)
                r = buf_puts(out, "}");
        }
        if (r == 0)
            r = buf_puts(out, " ");
        if (r == 0)
            r = part == 0 ? put_scaled(out, v[f->nbounds + 1], f->scale)
                          : buf_printf(out, "%" PRIu64, cum);
        if (r == 0)
            r = buf_puts(out, "\n");
    }
    return r;
}

int metrics_render_family(struct buf *out, const struct metrics_family *f, const uint64_t *v)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int r = buf_printf(out, "# HELP %s ", f->name);
    if (r == 0)
        r = put_escaped(out, f->help, false);
    if (r == 0)
        r = buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
    size_t nseries = family_series(f);
    for (size_t k = 0; k < nseries && r == 0; k++) {
        if (f->type == METRICS_HISTOGRAM) {
            r = render_histogram_series(out, f, k, v + k * (f->nbounds + 2));
            continue;
        }
        r = buf_puts(out, f->name);
        if (r == 0 && f->nlabels) {
            r = put_labels(out, f, k);
            if (r == 0)
                r = buf_puts(out, "}");
        }
        if (r == 0)
            r = buf_puts(out, " ");
        if (r == 0)
            r = put_scaled(out, v[k], f->scale);
        if (r == 0)
            r = buf_puts(out, "\n");
    }
    return r;
}

/* ---- the table ---- */

#define NV(a) (sizeof(a) / sizeof(a)[0])
#define LABEL(n, vals)                                                                             \
    {                                                                                              \
        n, vals, NV(vals)                                                                          \
    }

static const char *const v_listener[] = {"mx", "submission", "submissions"};
static const char *const v_conn[] = {"accepted", "refused_limit", "refused_shutdown", "tls_failed"};
static const char *const v_reason[] = {"recipient", "relay",    "policy", "auth",
                                       "spf",       "dmarc",    "rate",   "size",
                                       "resource",  "protocol", "other"};
static const char *const v_status[] = {"sent", "deferred", "bounced", "expired"};
static const char *const v_dest[] = {"local", "relay", "lmtp"};
static const char *const v_dns[] = {"data", "nodata", "nxdomain", "tempfail", "invalid", "null_mx"};
static const char *const v_dns_kind[] = {"record", "nexthop"};
static const char *const v_direction[] = {"inbound", "outbound"};
static const char *const v_ok[] = {"ok", "failed"};
static const char *const v_spf[] = {"none",     "neutral",   "pass",     "fail",
                                    "softfail", "temperror", "permerror"};
static const char *const v_dkim[] = {"none",   "pass",      "fail",     "neutral",
                                     "policy", "temperror", "permerror"};
static const char *const v_dmarc[] = {"none", "pass", "fail", "temperror", "permerror"};

static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const uint64_t sync_bounds[] = {100,   250,   500,    1000,   2500,   5000,   10000,
                                       25000, 50000, 100000, 250000, 500000, 1000000};

static const struct metrics_family families[M_COUNT] = {
    [M_CONNECTIONS] = {"tern_connections_total",
                       "SMTP connections by listener and what became of them.",
                       METRICS_COUNTER,
                       2,
                       {LABEL("listener", v_listener), LABEL("result", v_conn)},
                       NULL,
                       0,
                       0},
    [M_MESSAGES_ACCEPTED] = {"tern_messages_accepted_total",
                             "Messages queued (answered 250 after end of data), by listener.",
                             METRICS_COUNTER,
                             1,
                             {LABEL("listener", v_listener)},
                             NULL,
                             0,
                             0},
    [M_REJECTIONS] = {"tern_smtp_rejections_total",
                      "4xx and 5xx replies to SMTP clients (except 421), by listener and reason.",
                      METRICS_COUNTER,
                      2,
                      {LABEL("listener", v_listener), LABEL("reason", v_reason)},
                      NULL,
                      0,
                      0},
    [M_AUTH_FAILURES] = {"tern_auth_failures_total",
                         "Failed SMTP AUTH attempts (wrong credentials), by listener.",
                         METRICS_COUNTER,
                         1,
                         {LABEL("listener", v_listener)},
                         NULL,
                         0,
                         0},
    [M_DELIVERIES] = {"tern_deliveries_total",
                      "Delivery attempt outcomes per recipient, by status and destination class.",
                      METRICS_COUNTER,
                      2,
                      {LABEL("status", v_status), LABEL("class", v_dest)},
                      NULL,
                      0,
                      0},
    [M_DNS_LOOKUPS] = {"tern_dns_lookups_total",
                       "DNS lookups answered, by kind and outcome.",
                       METRICS_COUNTER,
                       2,
                       {LABEL("kind", v_dns_kind), LABEL("outcome", v_dns)},
                       NULL,
                       0,
                       0},
    [M_TLS_HANDSHAKES] = {"tern_tls_handshakes_total",
                          "TLS handshakes, by direction and outcome.",
                          METRICS_COUNTER,
                          2,
                          {LABEL("direction", v_direction), LABEL("outcome", v_ok)},
                          NULL,
                          0,
                          0},
    [M_SPF_RESULTS] = {"tern_spf_results_total",
                       "SPF checks of inbound mail, by result (RFC 7208).",
                       METRICS_COUNTER,
                       1,
                       {LABEL("result", v_spf)},
                       NULL,
                       0,
                       0},
    [M_DKIM_RESULTS] = {"tern_dkim_results_total",
                        "DKIM verifications of inbound mail, by summary result (RFC 6376).",
                        METRICS_COUNTER,
                        1,
                        {LABEL("result", v_dkim)},
                        NULL,
                        0,
                        0},
    [M_DMARC_RESULTS] = {"tern_dmarc_results_total",
                         "DMARC evaluations of inbound mail, by result (RFC 7489).",
                         METRICS_COUNTER,
                         1,
                         {LABEL("result", v_dmarc)},
                         NULL,
                         0,
                         0},
    [M_SESSIONS] =
        {"tern_smtp_sessions", "SMTP sessions open now.", METRICS_GAUGE, 0, {{0}}, NULL, 0, 0},
    [M_QUEUE_MESSAGES] = {"tern_queue_messages",
                          "Messages in the queue (committed, not yet finished).",
                          METRICS_GAUGE,
                          0,
                          {{0}},
                          NULL,
                          0,
                          0},
    [M_QUEUE_OLDEST_AGE] = {"tern_queue_oldest_message_age_seconds",
                            "Age of the oldest message in the queue (0 when it is empty).",
                            METRICS_GAUGE,
                            0,
                            {{0}},
                            NULL,
                            0,
                            0},
    [M_SPOOL_BYTES] = {"tern_spool_bytes",
                       "Octets of spool journal segments on disk.",
                       METRICS_GAUGE,
                       0,
                       {{0}},
                       NULL,
                       0,
                       0},
    [M_SPOOL_SEGMENTS] = {"tern_spool_segments",
                          "Spool journal segment files.",
                          METRICS_GAUGE,
                          0,
                          {{0}},
                          NULL,
                          0,
                          0},
    [M_SPOOL_COMMIT_BATCH] = {"tern_spool_commit_batch_size",
                              "Waiting commits and syncs made durable by one group commit.",
                              METRICS_HISTOGRAM,
                              0,
                              {{0}},
                              batch_bounds,
                              NV(batch_bounds),
                              0},
    [M_SPOOL_SYNC_SECONDS] = {"tern_spool_commit_seconds",
                              "Time of one group commit's fdatasync calls.",
                              METRICS_HISTOGRAM,
                              0,
                              {{0}},
                              sync_bounds,
                              NV(sync_bounds),
                              1000000},
};

const struct metrics_family *metrics_families(void)
{
    return families;
}

/* ---- the registry ---- */

/* Slots of every family, counted by hand is error-prone: a generous fixed
   array, checked at first use (metrics_layout). */
#define MAX_SLOTS 512
static _Atomic uint64_t slots[MAX_SLOTS];
static size_t offsets[M_COUNT];

__attribute__((constructor)) static void metrics_layout(void)
{
    size_t off = 0;
    for (size_t i = 0; i < M_COUNT; i++) {
        offsets[i] = off;
        off += metrics_family_slots(&families[i]);
    }
    if (off > MAX_SLOTS)
        __builtin_trap(); /* a broken invariant: MAX_SLOTS is too small */
}

void metrics_add(enum metric m, unsigned a, unsigned b, uint64_t n)
{
    if ((unsigned)m >= M_COUNT)
        return;
    const struct metrics_family *f = &families[m];
    size_t k = 0;
    unsigned idx[METRICS_MAX_LABELS] = {a, b};
    for (size_t i = 0; i < f->nlabels; i++) {
        if (idx[i] >= f->labels[i].nvalues)
            return;
        k = k * f->labels[i].nvalues + idx[i];
    }
    atomic_fetch_add_explicit(&slots[offsets[m] + k], n, memory_order_relaxed);
}

void metrics_inc(enum metric m, unsigned a, unsigned b)
{
    metrics_add(m, a, b, 1);
}

void metrics_inc_named(enum metric m, const char *name)
{
    if ((unsigned)m >= M_COUNT || families[m].nlabels != 1 || !name)
        return;
    const struct metrics_label *l = &families[m].labels[0];
    for (size_t i = 0; i < l->nvalues; i++)
        if (strcmp(l->values[i], name) == 0)
            metrics_inc(m, (unsigned)i, 0);
}

void metrics_set(enum metric m, uint64_t v)
{
    if ((unsigned)m < M_COUNT && families[m].type == METRICS_GAUGE)
        atomic_store_explicit(&slots[offsets[m]], v, memory_order_relaxed);
}

void metrics_observe(enum metric m, uint64_t v)
{
    if ((unsigned)m >= M_COUNT || families[m].type != METRICS_HISTOGRAM)
        return;
    const struct metrics_family *f = &families[m];
    size_t b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    atomic_fetch_add_explicit(&slots[offsets[m] + b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&slots[offsets[m] + f->nbounds + 1], v, memory_order_relaxed);
}

uint64_t metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

enum metrics_reject_reason metrics_reject_reason(int code, const char *enh)
{
    if (!enh || strlen(enh) < 5 || enh[1] != '.')
        return METRICS_REJECT_OTHER;
    const char *subject = enh + 2; /* "7.1" */
    if (strcmp(subject, "7.23") == 0)
        return METRICS_REJECT_SPF;
    if (strcmp(subject, "7.1") == 0) {
        if (code == 554)
            return METRICS_REJECT_RELAY;
        if (code == 550)
            return METRICS_REJECT_DMARC;
        if (code == 450)
            return METRICS_REJECT_RATE;
        return METRICS_REJECT_POLICY;
    }
    if (strcmp(subject, "7.0") == 0 || strcmp(subject, "7.8") == 0 ||
        strcmp(subject, "7.11") == 0 || strcmp(subject, "7.9") == 0)
        return METRICS_REJECT_AUTH;
    if (subject[0] == '7')
        return METRICS_REJECT_POLICY;
    if (subject[0] == '1')
        return METRICS_REJECT_RECIPIENT;
    if (strcmp(subject, "3.4") == 0 || strcmp(subject, "5.3") == 0 || strcmp(subject, "2.3") == 0)
        return METRICS_REJECT_SIZE;
    if (subject[0] == '3')
        return METRICS_REJECT_RESOURCE;
    if (subject[0] == '5' || subject[0] == '6')
        return METRICS_REJECT_PROTOCOL;
    return METRICS_REJECT_OTHER;
}

enum metrics_delivery_status metrics_delivery_status(const char *word)
{
    if (strcmp(word, "sent") == 0)
        return METRICS_DELIVERY_SENT;
    if (strcmp(word, "bounced") == 0)
        return METRICS_DELIVERY_BOUNCED;
    if (strcmp(word, "expired") == 0)
        return METRICS_DELIVERY_EXPIRED;
    return METRICS_DELIVERY_DEFERRED;
}

void metrics_dns_nexthop(unsigned status)
{
    static const unsigned outcome[] = {METRICS_DNS_DATA, METRICS_DNS_NXDOMAIN, METRICS_DNS_NULL_MX,
                                       METRICS_DNS_NODATA, METRICS_DNS_TEMPFAIL};
    if (status < sizeof outcome / sizeof outcome[0])
        metrics_inc(M_DNS_LOOKUPS, METRICS_DNS_NEXTHOP, outcome[status]);
}

void metrics_reply(unsigned listener, int code, const char *enh)
{
    if (code >= 400 && code != 421)
        metrics_inc(M_REJECTIONS, listener, metrics_reject_reason(code, enh));
}

int metrics_render(struct buf *out)
{
    uint64_t v[MAX_SLOTS];
    for (size_t i = 0; i < MAX_SLOTS; i++)
        v[i] = atomic_load_explicit(&slots[i], memory_order_relaxed);
    for (size_t i = 0; i < M_COUNT; i++)
        if (metrics_render_family(out, &families[i], v + offsets[i]) < 0)
            return -1;
    return 0;
}

void metrics_reset(void)
{
    for (size_t i = 0; i < MAX_SLOTS; i++)
        atomic_store_explicit(&slots[i], 0, memory_order_relaxed);
}
