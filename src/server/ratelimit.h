/*
 * ratelimit - counters per key (a client address, a login) over a fixed time
 * window: authentication failures per client address, messages and
 * recipients per authenticated user and hour.
 *
 * A key's window starts with its first event and lasts `window` seconds;
 * past it, the counters start again from zero. The table holds at most
 * max_keys keys: when full, expired entries are dropped first, then the one
 * whose window started longest ago, so memory stays bounded whatever the
 * clients do (DESIGN contract 4). Pure: time is an argument.
 */
#ifndef TERN_SERVER_RATELIMIT_H
#define TERN_SERVER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct rate_table;

/* Counters of one key in its current window. */
struct rate_count {
    uint64_t a; /* first counter (failures, messages) */
    uint64_t b; /* second counter (recipients) */
};

struct rate_table *rate_table_new(size_t max_keys, uint32_t window);
void rate_table_free(struct rate_table *t);

/* The counters of key at time now (seconds), without changing them. */
struct rate_count rate_get(struct rate_table *t, const char *key, int64_t now);
/* Add da and db to key's counters at time now; returns them after the addition. */
struct rate_count rate_add(struct rate_table *t, const char *key, int64_t now, uint64_t da,
                           uint64_t db);
size_t rate_table_size(const struct rate_table *t);

#endif
