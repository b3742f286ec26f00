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

/* Retry arithmetic (pure): delay in seconds before attempt number `attempts`+1,
   doubling from min_s up to max_s. */
uint32_t sched_backoff(uint32_t attempts, uint32_t min_s, uint32_t max_s);

#endif
