/*
 * metrics/listener - the HTTP endpoint that serves the metrics registry
 * (src/core/metrics.h) to a Prometheus scraper: GET /metrics on
 * metrics_listen, on the event loop (docs/metrics.md).
 *
 * One request per connection, answered with "Connection: close": 200 with
 * the text exposition format 0.0.4, 404 for another path, 405 for another
 * method, 400 for a malformed request, 431 for a head past 8 KiB, 408 when
 * the request does not arrive in time. At most METRICS_MAX_CONNS connections
 * at once; more are closed at accept.
 */
#ifndef TERN_METRICS_LISTENER_H
#define TERN_METRICS_LISTENER_H

#include <stddef.h>

struct ev_loop;
struct metrics_listener;

#define METRICS_MAX_CONNS 16
/* Seconds a client has to send its request, and to take the answer. */
#define METRICS_TIMEOUT 10

/* Listen on host:port (numeric). Before each scrape, refresh(arg) runs on
   the loop to set the gauges computed at scrape time (may be NULL). NULL
   with err filled when the address cannot be bound. */
struct metrics_listener *metrics_listener_new(struct ev_loop *loop, const char *host,
                                              const char *port, void (*refresh)(void *arg),
                                              void *arg, char *err, size_t errlen);
/* Stop listening and close every connection. */
void metrics_listener_free(struct metrics_listener *ml);

#endif
