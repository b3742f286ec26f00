/*
 * aliases - the aliases file and recipient resolution (see aliases.h; the
 * format is documented in docs/configuration.md).
 *
 * aliases_parse() is pure. Lines are read like the configuration file (see
 * internal.h: '#' comment lines, continuation lines starting with white
 * space), except that a '#' after white space also starts a comment, so an
 * entry may end with one. Each entry is "key: target, target ...": the key
 * is "local@domain" or "@domain" (a catch-all), lowercased; targets are
 * addresses "local@domain" whose domain is lowercased (the local part keeps
 * its case until resolution shows the domain is local). Commands, files and
 * ":include:" are not supported. A key given twice is an error.
 *
 * Entries are kept sorted by key for binary search. aliases_resolve() walks
 * the expansion depth first; each alias is expanded once per resolution and
 * remembers the height of its subtree, so that a shared sub-alias (a diamond)
 * costs nothing more, a loop is seen when an alias on the current path comes
 * back, and the depth limit holds along every path.
 */
#include "config/aliases.h"
#include "config/internal.h"
#include "core/util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The largest aliases file aliases_load() reads. */
#define ALIASES_FILE_MAX (16 * 1024 * 1024)
/* Levels of alias expansion allowed (the recipient's own alias is level 1). */
#define ALIASES_MAX_DEPTH 10

struct alias_entry {
    char *key;      /* "local@domain" or "@domain", lowercased */
    char **targets; /* "local@domain", domain lowercased */
    size_t ntargets;
    unsigned line; /* where the entry starts */
};

struct aliases {
    size_t n;
    struct alias_entry *v; /* sorted by key */
};

struct aparser {
    struct cfg_diag_ctx dc;
    struct aliases *a;
};

static void entry_free(struct alias_entry *e)
{
    for (size_t i = 0; i < e->ntargets; i++)
        free(e->targets[i]);
    free(e->targets);
    free(e->key);
}

static void lower_domain(char *addr)
{
    char *at = strrchr(addr, '@');
    if (at)
        ascii_lower(at + 1);
}

static void alias_line(void *arg, const struct cfg_lline *l)
{
    struct aparser *p = arg;
    unsigned line = l->nseg ? l->seg[0].line : 0;
    const char *colon = memchr(l->s, ':', l->len);
    if (!colon) {
        cfg_error(&p->dc, line, "syntax error: expected \"address: target, ...\", not \"%.*s%s\"",
                  CFG_EX(l->s, l->len));
        return;
    }
    size_t klen = (size_t)(colon - l->s);
    while (klen > 0 && (l->s[klen - 1] == ' ' || l->s[klen - 1] == '\t'))
        klen--;
    bool ok = klen > 0 && (l->s[0] == '@' ? cfg_valid_domain(l->s + 1, klen - 1, true)
                                          : cfg_valid_address(l->s, klen));
    if (!ok) {
        cfg_error(&p->dc, line,
                  "\"%.*s%s\" is not an address (local@domain) or a catch-all (@domain)",
                  CFG_EX(l->s, klen));
        return;
    }

    struct alias_entry e = {xstrndup(l->s, klen), NULL, 0, line};
    ascii_lower(e.key);
    unsigned *lines = NULL;
    bool bad = false;
    size_t pos = (size_t)(colon - l->s) + 1, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        const char *t = l->s + off;
        unsigned tline = cfg_lline_line(l, off);
        if (t[0] == '|' || t[0] == '/' || t[0] == ':') {
            cfg_error(&p->dc, tline,
                      "%s: \"%.*s%s\": only addresses are supported as targets (no commands, "
                      "files or includes)",
                      e.key, CFG_EX(t, n));
            bad = true;
        } else if (!cfg_valid_address(t, n)) {
            cfg_error(&p->dc, tline, "%s: \"%.*s%s\" is not an address local@domain", e.key,
                      CFG_EX(t, n));
            bad = true;
        } else {
            e.targets = xreallocarray(e.targets, e.ntargets + 1, sizeof *e.targets);
            lines = xreallocarray(lines, e.ntargets + 1, sizeof *lines);
            e.targets[e.ntargets] = xstrndup(t, n);
            lower_domain(e.targets[e.ntargets]);
            lines[e.ntargets++] = tline;
        }
    }
    if (!bad && e.ntargets == 0) {
        cfg_error(&p->dc, line, "%s: no targets", e.key);
        bad = true;
    }
    cfg_dedup(e.targets, lines, &e.ntargets);
    free(lines);
    if (bad) {
        entry_free(&e);
        return;
    }
    p->a->v = xreallocarray(p->a->v, p->a->n + 1, sizeof *p->a->v);
    p->a->v[p->a->n++] = e;
}

static int cmp_entry(const void *x, const void *y)
{
    const struct alias_entry *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c ? c : (a->line < b->line ? -1 : a->line > b->line);
}

struct aliases *aliases_parse(const char *text, size_t len, const char *file,
                              struct config_diags *diags)
{
    struct aparser p;
    memset(&p, 0, sizeof p);
    p.dc.diags = diags;
    p.dc.file = file;
    p.a = xcalloc(1, sizeof *p.a);
    cfg_read_lines(text ? text : "", text ? len : 0, true, &p.dc, alias_line, &p);

    struct aliases *a = p.a;
    if (a->n)
        qsort(a->v, a->n, sizeof *a->v, cmp_entry);
    for (size_t i = 1; i < a->n; i++)
        if (strcmp(a->v[i].key, a->v[i - 1].key) == 0)
            cfg_error(&p.dc, a->v[i].line, "%s: given twice (first at line %u)", a->v[i].key,
                      a->v[i - 1].line);
    if (p.dc.errors > 0) {
        aliases_free(a);
        return NULL;
    }
    return a;
}

struct aliases *aliases_load(const char *file, struct config_diags *diags)
{
    size_t len;
    char *text = cfg_read_file(file, ALIASES_FILE_MAX, &len, diags);
    if (!text)
        return NULL;
    struct aliases *a = aliases_parse(text, len, file, diags);
    free(text);
    return a;
}

void aliases_free(struct aliases *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        entry_free(&a->v[i]);
    free(a->v);
    free(a);
}

size_t aliases_count(const struct aliases *a)
{
    return a ? a->n : 0;
}

/* Index of the entry with key `key` (lowercase), or -1. */
static long alias_find(const struct aliases *a, const char *key)
{
    if (!a)
        return -1;
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, a->v[mid].key);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* ---------------------------------------------------------------------
 * Resolution
 */

enum { MEMO_ON_PATH = 1, MEMO_DONE = 2 };

struct memo_slot {
    size_t key;      /* entry index + 1; 0 = empty slot */
    unsigned state;  /* MEMO_* */
    unsigned height; /* levels of expansion below and including this alias */
};

struct resolution {
    const struct aliases *a;
    const struct config *cfg;
    char **out;
    size_t max_out, n;
    struct memo_slot *memo; /* open addressing, power-of-two capacity */
    size_t memo_cap, memo_n;
};

static struct memo_slot *memo_get(struct resolution *r, size_t idx)
{
    if (2 * (r->memo_n + 1) > r->memo_cap) {
        size_t cap = r->memo_cap ? r->memo_cap * 2 : 32;
        struct memo_slot *m = xcalloc(cap, sizeof *m);
        for (size_t i = 0; i < r->memo_cap; i++) {
            if (!r->memo[i].key)
                continue;
            size_t h = (r->memo[i].key * 0x9e3779b97f4a7c15ull) & (cap - 1);
            while (m[h].key)
                h = (h + 1) & (cap - 1);
            m[h] = r->memo[i];
        }
        free(r->memo);
        r->memo = m;
        r->memo_cap = cap;
    }
    size_t key = idx + 1;
    size_t h = (key * 0x9e3779b97f4a7c15ull) & (r->memo_cap - 1);
    while (r->memo[h].key && r->memo[h].key != key)
        h = (h + 1) & (r->memo_cap - 1);
    if (!r->memo[h].key) {
        r->memo[h].key = key;
        r->memo_n++;
    }
    return &r->memo[h];
}

/* Add a leaf address unless already there. False when out is full. */
static bool add_leaf(struct resolution *r, const char *addr)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->out[i], addr) == 0)
            return true;
    if (r->n >= r->max_out)
        return false;
    r->out[r->n++] = xstrdup(addr);
    return true;
}

/* Expand entry idx at `level`; returns the height of its expansion or -1 on a
   loop, a depth past the limit, or too many leaves. */
static int expand(struct resolution *r, size_t idx, unsigned level)
{
    if (level > ALIASES_MAX_DEPTH)
        return -1;
    struct memo_slot *m = memo_get(r, idx);
    if (m->state == MEMO_ON_PATH)
        return -1;
    if (m->state == MEMO_DONE)
        return level - 1 + m->height > ALIASES_MAX_DEPTH ? -1 : (int)m->height;
    m->state = MEMO_ON_PATH;

    const struct alias_entry *e = &r->a->v[idx];
    unsigned height = 1;
    for (size_t i = 0; i < e->ntargets; i++) {
        const char *t = e->targets[i];
        char *lower = xstrdup(t);
        ascii_lower(lower);
        const char *dom = strrchr(lower, '@') + 1;
        long j;
        int h = 0;
        if (config_is_mailbox(r->cfg, lower)) {
            if (!add_leaf(r, lower))
                h = -1;
        } else if ((j = alias_find(r->a, lower)) >= 0) {
            h = expand(r, (size_t)j, level + 1);
            if (h >= 0 && (unsigned)h + 1 > height)
                height = (unsigned)h + 1;
        } else if (!config_is_local_domain(r->cfg, dom)) {
            if (!add_leaf(r, t))
                h = -1;
        } /* else: a local address that is neither mailbox nor alias: dropped */
        free(lower);
        if (h < 0)
            return -1;
    }
    m = memo_get(r, idx); /* the table may have grown */
    m->state = MEMO_DONE;
    m->height = height;
    return (int)height;
}

int aliases_resolve(const struct aliases *a, const struct config *cfg, const char *addr, char **out,
                    size_t max_out)
{
    if (!addr)
        return 0;
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || at[1] == '\0')
        return 0;
    if (max_out > INT_MAX)
        max_out = INT_MAX;
    char *lower = xstrdup(addr);
    ascii_lower(lower);

    struct resolution r = {a, cfg, out, max_out, 0, NULL, 0, 0};
    int ret;
    long idx;
    if (config_is_mailbox(cfg, lower)) {
        ret = add_leaf(&r, lower) ? 1 : -1;
    } else if ((idx = alias_find(a, lower)) >= 0 ||
               (idx = alias_find(a, strrchr(lower, '@'))) >= 0) {
        ret = expand(&r, (size_t)idx, 1) < 0 ? -1 : (int)r.n;
    } else {
        ret = 0;
    }
    if (ret < 0) {
        for (size_t i = 0; i < r.n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    }
    free(r.memo);
    free(lower);
    return ret;
}
