/*
 * ratelimit - fixed-window counters per key in a bounded hash table; see
 * ratelimit.h.
 */
#include "server/ratelimit.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define RATE_BUCKETS 1024

struct rate_entry {
    struct rate_entry *next;
    int64_t start;       /* when the window began (seconds) */
    struct rate_count c; /* counters in the window */
    char key[];          /* NUL-terminated */
};

struct rate_table {
    struct rate_entry *buckets[RATE_BUCKETS];
    size_t n;        /* entries */
    size_t max_keys; /* bound on n */
    uint32_t window; /* seconds */
};

struct rate_table *rate_table_new(size_t max_keys, uint32_t window)
{
    struct rate_table *t = xcalloc(1, sizeof *t);
    t->max_keys = max_keys ? max_keys : 1;
    t->window = window ? window : 1;
    return t;
}

void rate_table_free(struct rate_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < RATE_BUCKETS; i++) {
        while (t->buckets[i]) {
            struct rate_entry *e = t->buckets[i];
            t->buckets[i] = e->next;
            free(e);
        }
    }
    free(t);
}

static size_t key_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % RATE_BUCKETS;
}

static bool expired(const struct rate_table *t, const struct rate_entry *e, int64_t now)
{
    return now - e->start >= (int64_t)t->window || now < e->start;
}

/* Make room for one more key: drop expired entries, else the oldest one. */
static void make_room(struct rate_table *t, int64_t now)
{
    struct rate_entry **oldest = NULL;
    for (size_t i = 0; i < RATE_BUCKETS; i++) {
        struct rate_entry **pp = &t->buckets[i];
        while (*pp) {
            if (expired(t, *pp, now)) {
                struct rate_entry *e = *pp;
                *pp = e->next;
                free(e);
                t->n--;
                continue;
            }
            if (!oldest || (*pp)->start < (*oldest)->start)
                oldest = pp;
            pp = &(*pp)->next;
        }
    }
    if (t->n >= t->max_keys && oldest) {
        struct rate_entry *e = *oldest;
        *oldest = e->next;
        free(e);
        t->n--;
    }
}

static struct rate_entry *find(struct rate_table *t, const char *key, int64_t now, bool create)
{
    struct rate_entry **pp = &t->buckets[key_hash(key)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            if (expired(t, *pp, now)) {
                (*pp)->start = now;
                memset(&(*pp)->c, 0, sizeof(*pp)->c);
            }
            return *pp;
        }
    }
    if (!create)
        return NULL;
    if (t->n >= t->max_keys)
        make_room(t, now);
    size_t len = strlen(key);
    struct rate_entry *e = xcalloc(1, sizeof *e + len + 1);
    memcpy(e->key, key, len + 1);
    e->start = now;
    size_t h = key_hash(key);
    e->next = t->buckets[h];
    t->buckets[h] = e;
    t->n++;
    return e;
}

struct rate_count rate_get(struct rate_table *t, const char *key, int64_t now)
{
    struct rate_entry *e = find(t, key, now, false);
    struct rate_count zero = {0, 0};
    return e ? e->c : zero;
}

struct rate_count rate_add(struct rate_table *t, const char *key, int64_t now, uint64_t da,
                           uint64_t db)
{
    struct rate_entry *e = find(t, key, now, true);
    e->c.a = e->c.a + da < e->c.a ? UINT64_MAX : e->c.a + da;
    e->c.b = e->c.b + db < e->c.b ? UINT64_MAX : e->c.b + db;
    return e->c;
}

size_t rate_table_size(const struct rate_table *t)
{
    return t->n;
}
