/*
 * metrics - the server's counters, gauges and histograms, and their text in
 * the Prometheus exposition format 0.0.4 (docs/metrics.md).
 *
 * Every metric is declared up front in one table (metrics.c) with a fixed set
 * of labels, each label with a fixed list of values, so the number of series
 * is known at compile time and no input can add one. Metrics live in one
 * process-wide registry of relaxed atomic 64-bit slots: an increment is one
 * atomic add, safe from the loop thread and from worker threads alike (the
 * spool flusher, the signing and delivery workers), and needs no pointer
 * handed down to the code that counts. A label index out of range is ignored.
 *
 * Histogram observations and gauge values are unsigned integers in a base unit
 * (microseconds, octets, records); each metric has a scale by which its values
 * are divided when rendered (1000000 turns microseconds into seconds).
 *
 * metrics_render_family() is pure (no I/O, no logging; it appends to the
 * caller's buf) so unit tests reach the format directly; metrics_render()
 * renders the registry.
 */
#ifndef TERN_CORE_METRICS_H
#define TERN_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

enum metrics_type { METRICS_COUNTER = 0, METRICS_GAUGE, METRICS_HISTOGRAM };

#define METRICS_MAX_LABELS 2

/* One label and every value it may take. */
struct metrics_label {
    const char *name;          /* label name ([a-zA-Z_][a-zA-Z0-9_]*) */
    const char *const *values; /* its values, any UTF-8 (escaped when rendered) */
    size_t nvalues;            /* how many */
};

/* One metric family: its series are every combination of its label values. */
struct metrics_family {
    const char *name;                                /* metric name, "tern_..." */
    const char *help;                                /* # HELP text (escaped when rendered) */
    enum metrics_type type;                          /* counter, gauge or histogram */
    size_t nlabels;                                  /* 0 to METRICS_MAX_LABELS */
    struct metrics_label labels[METRICS_MAX_LABELS]; /* the first nlabels are used */
    const uint64_t *bounds; /* histogram: bucket upper bounds in base units, ascending */
    size_t nbounds;         /* histogram: how many (the +Inf bucket is implicit) */
    uint64_t scale;         /* rendered value = stored value / scale (0 or 1: as is);
                               a power of ten */
};

/* Slots a family occupies in a value array: one per series for counters and
   gauges; per series, one per bucket, one for +Inf and one for the sum for
   histograms. Bucket slots hold per-bucket (not cumulative) counts. */
size_t metrics_family_slots(const struct metrics_family *f);

/* Append family f with the values v[0 .. metrics_family_slots(f)) to out, in
   the text exposition format 0.0.4: # HELP, # TYPE, then one line per series
   (histograms: cumulative _bucket{le=...} lines ending with le="+Inf", _sum
   and _count). Series are in label order, the last label varying fastest.
   Returns 0, or -1 when out's limit was reached (out then holds a prefix). */
int metrics_render_family(struct buf *out, const struct metrics_family *f, const uint64_t *v);

/* ---- the registry ---- */

/* The metrics. The comment gives the labels, in order. */
enum metric {
    M_CONNECTIONS = 0,    /* listener, result (enum metrics_conn_result) */
    M_MESSAGES_ACCEPTED,  /* listener */
    M_REJECTIONS,         /* listener, reason (enum metrics_reject_reason) */
    M_AUTH_FAILURES,      /* listener */
    M_DELIVERIES,         /* status (enum metrics_delivery_status), class (enum metrics_dest) */
    M_DNS_LOOKUPS,        /* kind (enum metrics_dns_kind), outcome (enum metrics_dns_outcome) */
    M_TLS_HANDSHAKES,     /* direction (enum metrics_direction), outcome (enum metrics_ok) */
    M_SPF_RESULTS,        /* result (enum metrics_spf) */
    M_DKIM_RESULTS,       /* result (enum metrics_dkim) */
    M_DMARC_RESULTS,      /* result (enum metrics_dmarc) */
    M_SESSIONS,           /* gauge: SMTP sessions open now */
    M_QUEUE_MESSAGES,     /* gauge: live messages in the queue */
    M_QUEUE_OLDEST_AGE,   /* gauge: age of the oldest live message, seconds */
    M_SPOOL_BYTES,        /* gauge: octets of spool segments on disk */
    M_SPOOL_SEGMENTS,     /* gauge: spool segment files */
    M_SPOOL_COMMIT_BATCH, /* histogram: commits made durable by one flush */
    M_SPOOL_SYNC_SECONDS, /* histogram: time of one flush's fdatasync calls, microseconds */
    M_COUNT
};

/* Label values. The listener label takes enum config_role's order. */
enum metrics_role { METRICS_MX = 0, METRICS_SUBMISSION, METRICS_SUBMISSIONS };
enum metrics_conn_result {
    METRICS_CONN_ACCEPTED = 0,     /* a session started */
    METRICS_CONN_REFUSED_LIMIT,    /* max_connections or max_connections_per_client */
    METRICS_CONN_REFUSED_SHUTDOWN, /* the server is stopping */
    METRICS_CONN_TLS_FAILED,       /* the TLS handshake (STARTTLS or implicit) failed */
};
enum metrics_reject_reason {
    METRICS_REJECT_RECIPIENT = 0, /* X.1.X: unknown or invalid address */
    METRICS_REJECT_RELAY,         /* 554 5.7.1: relay access denied */
    METRICS_REJECT_POLICY,        /* other X.7.X: sender not owned, DMARC, TLS needed */
    METRICS_REJECT_AUTH,          /* 530 5.7.0, 535 5.7.8, 538 5.7.11, 454 4.7.0 */
    METRICS_REJECT_SPF,           /* 550 5.7.23 */
    METRICS_REJECT_DMARC,         /* 550 5.7.1 from mail authentication */
    METRICS_REJECT_RATE,          /* 450 4.7.1: per-user rate limits */
    METRICS_REJECT_SIZE,          /* X.3.4 message too big, X.5.3 too many recipients */
    METRICS_REJECT_RESOURCE,      /* other X.3.X: storage, local errors */
    METRICS_REJECT_PROTOCOL,      /* X.5.X and X.6.X: syntax, sequence, parameters */
    METRICS_REJECT_OTHER,         /* anything else */
};
enum metrics_delivery_status {
    METRICS_DELIVERY_SENT = 0,
    METRICS_DELIVERY_DEFERRED,
    METRICS_DELIVERY_BOUNCED,
    METRICS_DELIVERY_EXPIRED,
};
enum metrics_dest { METRICS_DEST_LOCAL = 0, METRICS_DEST_RELAY, METRICS_DEST_LMTP };
/* The outcomes take enum dns_answer_status's order, then null_mx. */
enum metrics_dns_outcome {
    METRICS_DNS_DATA = 0,
    METRICS_DNS_NODATA,
    METRICS_DNS_NXDOMAIN,
    METRICS_DNS_TEMPFAIL,
    METRICS_DNS_INVALID,
    METRICS_DNS_NULL_MX,
};
enum metrics_dns_kind {
    METRICS_DNS_RECORD = 0, /* dns_query: one record type of one name */
    METRICS_DNS_NEXTHOP,    /* dns_lookup_mx and friends: where to relay a domain's mail */
};
enum metrics_direction { METRICS_INBOUND = 0, METRICS_OUTBOUND };
enum metrics_ok { METRICS_OK = 0, METRICS_FAILED };
enum metrics_spf {
    METRICS_SPF_NONE = 0,
    METRICS_SPF_NEUTRAL,
    METRICS_SPF_PASS,
    METRICS_SPF_FAIL,
    METRICS_SPF_SOFTFAIL,
    METRICS_SPF_TEMPERROR,
    METRICS_SPF_PERMERROR,
};
enum metrics_dkim {
    METRICS_DKIM_NONE = 0,
    METRICS_DKIM_PASS,
    METRICS_DKIM_FAIL,
    METRICS_DKIM_NEUTRAL,
    METRICS_DKIM_POLICY,
    METRICS_DKIM_TEMPERROR,
    METRICS_DKIM_PERMERROR,
};
enum metrics_dmarc {
    METRICS_DMARC_NONE = 0,
    METRICS_DMARC_PASS,
    METRICS_DMARC_FAIL,
    METRICS_DMARC_TEMPERROR,
    METRICS_DMARC_PERMERROR,
};

/* The table of metrics, in enum metric order (M_COUNT entries). */
const struct metrics_family *metrics_families(void);

/* Counters: add 1 (or n) to the series of labels (a, b); unused labels are 0. */
void metrics_inc(enum metric m, unsigned a, unsigned b);
void metrics_add(enum metric m, unsigned a, unsigned b, uint64_t n);
/* Counters of one label: add 1 to the series whose label value is name
   (ignored when no value is). */
void metrics_inc_named(enum metric m, const char *name);
/* Gauges: set the (unlabelled) value. */
void metrics_set(enum metric m, uint64_t v);
/* Histograms: count one (unlabelled) observation of v base units. */
void metrics_observe(enum metric m, uint64_t v);

/* A monotonic clock in microseconds, for latency histograms. */
uint64_t metrics_now_us(void);

/* The reason a 4xx or 5xx SMTP reply counts under, from its code and
   enhanced status code (RFC 3463). Pure. */
enum metrics_reject_reason metrics_reject_reason(int code, const char *enh);

/* The status label of a delivery logged as status=word ("sent", "deferred",
   "bounced", "expired"); unknown words count as deferred. Pure. */
enum metrics_delivery_status metrics_delivery_status(const char *word);

/* Count one next-hop lookup by its enum dns_status (ok, nxdomain, null_mx,
   no_address, tempfail in that order). */
void metrics_dns_nexthop(unsigned status);

/* Count one 4xx or 5xx reply of a session on listener (not 421, which closes). */
void metrics_reply(unsigned listener, int code, const char *enh);

/* Append every metric of the registry to out. Returns 0 or -1 (out full). */
int metrics_render(struct buf *out);

/* Zero every value (tests). */
void metrics_reset(void);

#endif
