/*
 * publish - the records a domain publishes for Tern (see publish.h).
 *
 * RFC 5321 §5.1, RFC 7208 §4-5, RFC 6376 §3.6.2, RFC 7489 §6.3, RFC 8461
 * §3.1-3.2, RFC 8460 §3.
 */
#include "mailauth/publish.h"

#include "core/buf.h"
#include "core/util.h"
#include "dns/dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

/* RFC 8461 §3.2: max_age in seconds (one week while testing). */
#define MTASTS_MAX_AGE 604800

int publish_mtasts_policy(const char *hostname, struct buf *out)
{
    return buf_printf(out, "version: STSv1\nmode: testing\nmx: %s\nmax_age: %d\n", hostname,
                      MTASTS_MAX_AGE);
}

static int add(struct publish_list *l, enum publish_kind kind, int type, char *value,
               const char *fmt, const char *a, const char *b)
{
    if (l->n == PUBLISH_MAX) {
        free(value);
        return -1;
    }
    struct publish_record *r = &l->v[l->n];
    int n = snprintf(r->name, sizeof r->name, fmt, a, b);
    if (n < 0 || (size_t)n >= sizeof r->name) {
        free(value);
        return -1;
    }
    ascii_lower(r->name);
    r->kind = kind;
    r->type = type;
    r->value = value;
    l->n++;
    return 0;
}

static char *fmt_dup(const char *fmt, const char *a)
{
    size_t n = strlen(fmt) + strlen(a) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, fmt, a);
    return p;
}

int publish_records(const char *domain, const char *hostname, const struct publish_dkim *dkim,
                    size_t ndkim, struct publish_list *l)
{
    l->n = 0;
    char d[DKIM_NAME_MAX + 1];
    if (strlen(domain) > DKIM_NAME_MAX)
        return -1;
    snprintf(d, sizeof d, "%s", domain);
    ascii_lower(d);
    int rc = 0;
    rc |= add(l, PUBLISH_MX, DNS_TYPE_MX, xstrdup(hostname), "%s%s", d, "");
    rc |= add(l, PUBLISH_SPF, DNS_TYPE_TXT, xstrdup("v=spf1 mx -all"), "%s%s", d, "");
    for (size_t i = 0; i < ndkim; i++)
        rc |= add(l, PUBLISH_DKIM, DNS_TYPE_TXT, xstrdup(dkim[i].record), "%s._domainkey.%s",
                  dkim[i].selector, d);
    rc |= add(l, PUBLISH_DMARC, DNS_TYPE_TXT,
              fmt_dup("v=DMARC1; p=none; rua=mailto:postmaster@%s", d), "_dmarc.%s%s", d, "");
    struct buf policy;
    buf_init(&policy, 4096);
    publish_mtasts_policy(hostname, &policy);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)policy.data, policy.len, md);
    buf_free(&policy);
    char id[21];
    for (size_t i = 0; i < 10; i++)
        snprintf(id + 2 * i, 3, "%02x", md[i]);
    rc |=
        add(l, PUBLISH_MTASTS, DNS_TYPE_TXT, fmt_dup("v=STSv1; id=%s", id), "_mta-sts.%s%s", d, "");
    rc |= add(l, PUBLISH_TLSRPT, DNS_TYPE_TXT, fmt_dup("v=TLSRPTv1; rua=mailto:postmaster@%s", d),
              "_smtp._tls.%s%s", d, "");
    return rc ? -1 : 0;
}

void publish_list_free(struct publish_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].value);
    l->n = 0;
}

int publish_zone_line(const struct publish_record *r, struct buf *out)
{
    if (r->type == DNS_TYPE_MX)
        return buf_printf(out, "%s. IN MX 10 %s.\n", r->name, r->value);
    if (buf_printf(out, "%s. IN TXT ", r->name) < 0 ||
        dkim_zone_txt(r->value, strlen(r->value), out) < 0)
        return -1;
    return buf_append(out, "\n", 1);
}

static bool starts_nocase(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && ascii_nieq(text, prefix, n);
}

/* The version tag a record of r's kind starts with ("" for DKIM). */
static const char *version_of(enum publish_kind k)
{
    switch (k) {
    case PUBLISH_SPF:
        return "v=spf1";
    case PUBLISH_DMARC:
        return "v=DMARC1";
    case PUBLISH_MTASTS:
        return "v=STSv1";
    case PUBLISH_TLSRPT:
        return "v=TLSRPTv1";
    default:
        return "";
    }
}

bool publish_txt_is_kind(const struct publish_record *r, const char *text, size_t len)
{
    const char *v = version_of(r->kind);
    if (!v[0])
        return true;
    size_t n = strlen(v);
    /* the version term ends at white space, ';' or the end */
    return starts_nocase(text, len, v) &&
           (len == n || text[n] == ' ' || text[n] == '\t' || text[n] == ';');
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Do two values match, white space ignored? */
static bool same_compact(const struct dkim_tag *a, const struct dkim_tag *b)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->value_len && is_space(a->value[i]))
            i++;
        while (j < b->value_len && is_space(b->value[j]))
            j++;
        if (i == a->value_len || j == b->value_len)
            return i == a->value_len && j == b->value_len;
        if (a->value[i++] != b->value[j++])
            return false;
    }
}

static bool tags_match(const char *want, size_t wlen, const char *have, size_t hlen, bool dkim)
{
    struct dkim_taglist *a = xmalloc(sizeof *a), *b = xmalloc(sizeof *b);
    bool ok = dkim_taglist_parse(want, wlen, a, NULL, 0) == 0 &&
              dkim_taglist_parse(have, hlen, b, NULL, 0) == 0;
    for (size_t pass = 0; ok && pass < 2; pass++) {
        const struct dkim_taglist *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; ok && i < x->n; i++) {
            const struct dkim_tag *t = &x->v[i];
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(t->name_len < 63 ? t->name_len : 63),
                     t->name);
            const struct dkim_tag *u = dkim_taglist_get(y, name);
            if (u) {
                ok = same_compact(t, u);
            } else if (dkim) {
                /* DKIM: v= may be left out, k= defaults to rsa */
                ok = strcmp(name, "v") == 0 || (strcmp(name, "k") == 0 && t->value_len == 3 &&
                                                memcmp(t->value, "rsa", 3) == 0);
            } else {
                ok = false;
            }
        }
    }
    free(a);
    free(b);
    return ok;
}

/* SPF: the same terms in the same order, case-insensitively. */
static bool spf_match(const char *want, size_t wlen, const char *have, size_t hlen)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < wlen && is_space(want[i]))
            i++;
        while (j < hlen && is_space(have[j]))
            j++;
        if (i == wlen || j == hlen)
            return i == wlen && j == hlen;
        size_t ie = i, je = j;
        while (ie < wlen && !is_space(want[ie]))
            ie++;
        while (je < hlen && !is_space(have[je]))
            je++;
        if (ie - i != je - j || !ascii_nieq(want + i, have + j, ie - i))
            return false;
        i = ie;
        j = je;
    }
}

bool publish_matches(const struct publish_record *r, const char *text, size_t len)
{
    if (r->type == DNS_TYPE_MX) {
        size_t n = strlen(r->value);
        if (len > 0 && text[len - 1] == '.')
            len--;
        return len == n && ascii_nieq(text, r->value, n);
    }
    if (r->kind == PUBLISH_SPF)
        return spf_match(r->value, strlen(r->value), text, len);
    return tags_match(r->value, strlen(r->value), text, len, r->kind == PUBLISH_DKIM);
}
