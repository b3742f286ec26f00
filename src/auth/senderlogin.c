/*
 * senderlogin - the sender login map: which authenticated logins may use which
 * envelope sender and From addresses (see senderlogin.h for the format and the
 * rules; docs/auth.md for operators).
 *
 * sender_login_parse() is pure. Lines are read like the aliases file (see
 * src/config/internal.h): '#' comment lines, a '#' after white space starts a
 * comment, a line starting with white space continues the previous one. Each
 * entry is a key ("local@domain" or "@domain") followed by white space and a
 * list of logins separated by commas or white space. Keys and logins are
 * lowercased; a key given twice is an error naming both lines. Entries are
 * sorted by key for binary search.
 */
#include "auth/senderlogin.h"
#include "config/internal.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

/* The largest map sender_login_load() reads. */
#define SENDER_LOGIN_FILE_MAX (16 * 1024 * 1024)
/* Longest address looked up (local part 64, '@', domain 253, NUL). */
#define SENDER_LOGIN_MAX_ADDR 320

struct sl_entry {
    char *key;     /* "local@domain" or "@domain", lowercased */
    char **logins; /* "local@domain", lowercased, without duplicates */
    size_t nlogins;
    unsigned line; /* where the entry starts */
};

struct sender_login {
    size_t n;
    struct sl_entry *v; /* sorted by key */
};

struct slparser {
    struct cfg_diag_ctx dc;
    struct sender_login *m;
};

static void entry_free(struct sl_entry *e)
{
    for (size_t i = 0; i < e->nlogins; i++)
        free(e->logins[i]);
    free(e->logins);
    free(e->key);
}

static void sl_line(void *arg, const struct cfg_lline *l)
{
    struct slparser *p = arg;
    unsigned line = l->nseg ? l->seg[0].line : 0;
    size_t klen = 0;
    while (klen < l->len && l->s[klen] != ' ' && l->s[klen] != '\t')
        klen++;
    bool ok =
        l->s[0] == '@' ? cfg_valid_domain(l->s + 1, klen - 1, true) : cfg_valid_address(l->s, klen);
    if (!ok) {
        cfg_error(&p->dc, line,
                  "\"%.*s%s\" is not an address (local@domain) or a whole domain (@domain)",
                  CFG_EX(l->s, klen));
        return;
    }
    struct sl_entry e = {xstrndup(l->s, klen), NULL, 0, line};
    ascii_lower(e.key);
    bool bad = false;
    size_t pos = klen, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        const char *t = l->s + off;
        if (!cfg_valid_address(t, n)) {
            cfg_error(&p->dc, cfg_lline_line(l, off), "%s: \"%.*s%s\" is not a login (user@domain)",
                      e.key, CFG_EX(t, n));
            bad = true;
            continue;
        }
        e.logins = xreallocarray(e.logins, e.nlogins + 1, sizeof *e.logins);
        e.logins[e.nlogins] = xstrndup(t, n);
        ascii_lower(e.logins[e.nlogins++]);
    }
    if (!bad && e.nlogins == 0) {
        cfg_error(&p->dc, line, "%s: no logins", e.key);
        bad = true;
    }
    cfg_dedup(e.logins, NULL, &e.nlogins);
    if (bad) {
        entry_free(&e);
        return;
    }
    p->m->v = xreallocarray(p->m->v, p->m->n + 1, sizeof *p->m->v);
    p->m->v[p->m->n++] = e;
}

static int cmp_entry(const void *x, const void *y)
{
    const struct sl_entry *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c ? c : (a->line < b->line ? -1 : a->line > b->line);
}

struct sender_login *sender_login_parse(const char *text, size_t len, const char *file,
                                        struct config_diags *diags)
{
    struct slparser p;
    memset(&p, 0, sizeof p);
    p.dc.diags = diags;
    p.dc.file = file;
    p.m = xcalloc(1, sizeof *p.m);
    cfg_read_lines(text ? text : "", text ? len : 0, true, &p.dc, sl_line, &p);

    struct sender_login *m = p.m;
    if (m->n)
        qsort(m->v, m->n, sizeof *m->v, cmp_entry);
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(m->v[i].key, m->v[i - 1].key) == 0)
            cfg_error(&p.dc, m->v[i].line, "%s: given twice (first at line %u)", m->v[i].key,
                      m->v[i - 1].line);
    if (p.dc.errors > 0) {
        sender_login_free(m);
        return NULL;
    }
    return m;
}

struct sender_login *sender_login_load(const char *file, struct config_diags *diags)
{
    size_t len;
    char *text = cfg_read_file(file, SENDER_LOGIN_FILE_MAX, &len, diags);
    if (!text)
        return NULL;
    struct sender_login *m = sender_login_parse(text, len, file, diags);
    free(text);
    return m;
}

void sender_login_free(struct sender_login *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        entry_free(&m->v[i]);
    free(m->v);
    free(m);
}

size_t sender_login_count(const struct sender_login *m)
{
    return m ? m->n : 0;
}

static const struct sl_entry *find(const struct sender_login *m, const char *key)
{
    if (!m)
        return NULL;
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, m->v[mid].key);
        if (c == 0)
            return &m->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

bool sender_login_allows(const struct sender_login *m, const char *login, const char *addr)
{
    if (!login || !addr)
        return false;
    if (addr[0] == '\0')
        return true; /* the null sender */
    char a[SENDER_LOGIN_MAX_ADDR], who[SENDER_LOGIN_MAX_ADDR];
    size_t alen = strlen(addr), wlen = strlen(login);
    if (alen >= sizeof a || wlen >= sizeof who || wlen == 0)
        return false;
    memcpy(a, addr, alen + 1);
    memcpy(who, login, wlen + 1);
    ascii_lower(a);
    ascii_lower(who);
    const struct sl_entry *e = find(m, a);
    const char *at = strrchr(a, '@');
    if (!e && at)
        e = find(m, at);
    if (!e)
        return strcmp(a, who) == 0;
    for (size_t i = 0; i < e->nlogins; i++)
        if (strcmp(e->logins[i], who) == 0)
            return true;
    return false;
}
