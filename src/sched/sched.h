/*
 * sched - the queue manager: decides, for every live message in the spool,
 * which recipients to deliver now, hands local deliveries to the Maildir
 * delivery agent in worker threads (bounded concurrency), hands recipients in
 * other domains, and those the transport file routes elsewhere than
 * "maildir", to the SMTP/LMTP relay, records each outcome in the journal,
 * retries temporary failures with backoff (retry_min doubling to retry_max,
 * until queue_lifetime), and removes a message from the spool once every
 * recipient is final.
 *
 * Loop thread only. Delivery log lines follow STYLE habit 10:
 * "qid=Q to=<..> relay=maildir delay=.. dsn=2.0.0 status=sent (...)".
 */
#ifndef TERN_SCHED_SCHED_H
#define TERN_SCHED_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "spool/spool.h"

struct ev_loop;
struct ev_workers;
struct sched;

struct sched *sched_new(struct ev_loop *loop, struct ev_workers *workers, struct spool *sp,
                        const struct config *cfg);
struct relay;
/* Deliver recipients in other domains through relay (NULL: keep them queued). */
void sched_set_relay(struct sched *s, struct relay *relay);
struct transport_table;
/* The transport_file routes (kept by the caller, valid until sched_free), or
   NULL: which recipients go to Maildir and which to the relay. */
void sched_set_transports(struct sched *s, const struct transport_table *transports);
/* A message became live (committed and durable, or recovered at start). */
void sched_message_queued(struct sched *s, spool_id id);
/* Deliveries in flight. */
size_t sched_in_flight(const struct sched *s);
/* Stop starting deliveries (shutdown); those in flight finish. */
void sched_stop(struct sched *s);
void sched_free(struct sched *s);

/* ---- operator control (src/control): loop thread ---------------------- */

/* What the operator asks of a set of messages (sched_control). */
enum sched_op {
    SCHED_OP_FLUSH,   /* retry every deferred recipient now (held messages stay held) */
    SCHED_OP_HOLD,    /* no delivery until released; recorded in the journal */
    SCHED_OP_RELEASE, /* back to the queue, with the retry times they had */
    SCHED_OP_DELETE,  /* remove from the queue without a report */
    SCHED_OP_BOUNCE,  /* report every recipient not yet final to the sender as failed
                         (a DSN, as when the queue lifetime ends), then remove */
};

/* How sched_control went, message by message. */
struct sched_op_result {
    size_t done;      /* acted upon */
    size_t unchanged; /* nothing to do: already held, not held, held (flush) */
    size_t busy;      /* a delivery was in flight: the delete or bounce is carried out
                         when it ends, and nothing new starts meanwhile */
    size_t missing;   /* not in the queue (any more) */
    size_t failed;    /* the journal could not record it (logged) */
};

/* Most domains paused at once. */
#define SCHED_PAUSE_MAX 1000

/*
 * Apply op to the live messages ids[0..n) at once (the caller selected them
 * on this same loop pass). Every journal record it writes is appended before
 * it returns; the caller answers after spool_sync. Deliveries in flight are
 * not interrupted: their outcome is recorded, and a held, deleted or bounced
 * message is not retried after it.
 */
void sched_control(struct sched *s, enum sched_op op, const spool_id *ids, size_t n,
                   struct sched_op_result *res);
/* True while a delivery of message id is in flight. */
bool sched_message_busy(const struct sched *s, spool_id id);
/* Stop (pause) or restart (resume) deliveries to a recipient domain (any
   case; local Maildir deliveries too). Not kept across restarts. pause:
   0, 1 when it already was, -ENOSPC past SCHED_PAUSE_MAX; resume: 0, or 1
   when it was not paused. */
int sched_pause(struct sched *s, const char *domain);
int sched_resume(struct sched *s, const char *domain);
/* The paused domains (lowercase), valid until the next pause or resume. */
size_t sched_paused(const struct sched *s, const char *const **domains);

/* Retry arithmetic (pure): delay in seconds before attempt number `attempts`+1,
   doubling from min_s up to max_s. */
uint32_t sched_backoff(uint32_t attempts, uint32_t min_s, uint32_t max_s);

#endif
