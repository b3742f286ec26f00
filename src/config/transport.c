/*
 * transport - the transport file, the relayhost value and the relayhost
 * credentials file; see transport.h.
 *
 * The table is a sorted array of keys: "example.com" for an exact domain,
 * ".example.com" for its subdomains ("*.example.com" is stored so too), and
 * "*" for everything. A lookup is at most one binary search per label of the
 * domain plus one.
 */
#include "config/transport.h"
#include "config/internal.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRANSPORT_FILE_MAX (16 * 1024 * 1024) /* largest transport file read */
#define AUTH_FILE_MAX 4096                    /* largest credentials file read */

struct transport_entry {
    char *key;          /* "example.com", ".example.com" or "*", lowercase */
    struct route route; /* where its mail goes */
    unsigned line;      /* where the entry is, for duplicate errors */
};

struct transport_table {
    size_t n;
    struct transport_entry *v; /* sorted by key */
};

struct tparser {
    struct cfg_diag_ctx dc;
    struct transport_table *t;
};

/* ---- next hops ------------------------------------------------------------ */

static int hop_error(char *err, size_t errlen, const char *s, size_t len, const char *why)
{
    snprintf(err, errlen, "\"%.*s%s\": %s", CFG_EX(s, len), why);
    return -1;
}

static bool is_ip_literal(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* "[host]:port", "host:port", "[host]", "host" into r (host, mx, port). */
static int parse_host_port(const char *s, size_t len, struct route *r, const char *whole,
                           size_t wlen, char *err, size_t errlen)
{
    const char *host = s, *rest;
    size_t hlen;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return hop_error(err, errlen, whole, wlen, "missing ']'");
        host = s + 1;
        hlen = (size_t)(close - host);
        rest = close + 1;
        r->mx = false;
    } else {
        const char *colon = memchr(s, ':', len);
        hlen = colon ? (size_t)(colon - s) : len;
        rest = s + hlen;
        if (colon && memchr(colon + 1, ':', len - hlen - 1))
            return hop_error(err, errlen, whole, wlen, "an IPv6 address needs brackets");
        r->mx = true;
    }
    size_t rlen = len - (size_t)(rest - s);
    if (hlen == 0)
        return hop_error(err, errlen, whole, wlen, "no host name");
    if (hlen > TRANSPORT_HOST_MAX)
        return hop_error(err, errlen, whole, wlen, "host name too long");
    memcpy(r->host, host, hlen);
    r->host[hlen] = '\0';
    if (is_ip_literal(r->host)) {
        r->mx = false; /* an address has no MX */
    } else if (!cfg_valid_domain(host, hlen, false)) {
        return hop_error(err, errlen, whole, wlen, "not a host name or IP address");
    }
    ascii_lower(r->host);
    r->port = 0;
    if (rlen > 0) {
        uint64_t port;
        if (rest[0] != ':' || !parse_u64(rest + 1, rlen - 1, &port) || port < 1 || port > 65535)
            return hop_error(err, errlen, whole, wlen, "bad port (1 to 65535)");
        r->port = (uint16_t)port;
    }
    return 0;
}

int transport_parse_nexthop(const char *s, size_t len, bool with_kind, struct route *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!with_kind) {
        out->kind = ROUTE_SMTP;
        if (len > 5 && (ascii_nieq(s, "smtp:", 5) || ascii_nieq(s, "lmtp:", 5)))
            return hop_error(err, errlen, s, len,
                             "give [host]:port or host:port, without a prefix");
        return parse_host_port(s, len, out, s, len, err, errlen);
    }
    if (len == 7 && ascii_nieq(s, "maildir", 7)) {
        out->kind = ROUTE_MAILDIR;
        return 0;
    }
    if (len > 5 && ascii_nieq(s, "smtp:", 5)) {
        out->kind = ROUTE_SMTP;
        return parse_host_port(s + 5, len - 5, out, s, len, err, errlen);
    }
    if (len > 5 && ascii_nieq(s, "lmtp:", 5)) {
        out->kind = ROUTE_LMTP;
        if (len > 10 && ascii_nieq(s + 5, "unix:", 5)) {
            const char *p = s + 10;
            size_t plen = len - 10;
            if (p[0] != '/')
                return hop_error(err, errlen, s, len, "a unix socket path must be absolute");
            if (plen > TRANSPORT_PATH_MAX)
                return hop_error(err, errlen, s, len, "socket path too long");
            memcpy(out->path, p, plen);
            out->path[plen] = '\0';
            out->unix_socket = true;
            return 0;
        }
        if (parse_host_port(s + 5, len - 5, out, s, len, err, errlen) < 0)
            return -1;
        out->mx = false; /* LMTP never looks up MX */
        if (out->port == 0)
            out->port = TRANSPORT_LMTP_PORT;
        return 0;
    }
    return hop_error(err, errlen, s, len,
                     "expected smtp:[host]:port, smtp:host, lmtp:unix:/path, lmtp:[host]:port "
                     "or maildir");
}

void transport_route_format(const struct route *r, char *out, size_t outlen)
{
    switch (r->kind) {
    case ROUTE_MAILDIR:
        snprintf(out, outlen, "maildir");
        return;
    case ROUTE_LMTP:
        if (r->unix_socket)
            snprintf(out, outlen, "lmtp:unix:%s", r->path);
        else
            snprintf(out, outlen, "lmtp:[%s]:%u", r->host, r->port);
        return;
    case ROUTE_SMTP:
        if (r->port)
            snprintf(out, outlen, r->mx ? "smtp:%s:%u" : "smtp:[%s]:%u", r->host, r->port);
        else
            snprintf(out, outlen, r->mx ? "smtp:%s" : "smtp:[%s]", r->host);
        return;
    }
}

/* ---- the table ------------------------------------------------------------- */

static void transport_line(void *arg, const struct cfg_lline *l)
{
    struct tparser *p = arg;
    unsigned line = l->nseg ? l->seg[0].line : 0;
    size_t pos = 0, koff, klen, hoff, hlen, xoff, xlen;
    if (!cfg_next_token(l, &pos, &koff, &klen) || !cfg_next_token(l, &pos, &hoff, &hlen)) {
        cfg_error(&p->dc, line, "syntax error: expected \"domain nexthop\", not \"%.*s%s\"",
                  CFG_EX(l->s, l->len));
        return;
    }
    enum route_tls tls = ROUTE_TLS_DEFAULT;
    if (cfg_next_token(l, &pos, &xoff, &xlen)) {
        static const char *const names[] = {"tls=none", "tls=may", "tls=encrypt", "tls=verify"};
        const char *x = l->s + xoff;
        for (size_t i = 0; i < 4 && tls == ROUTE_TLS_DEFAULT; i++)
            if (strlen(names[i]) == xlen && ascii_nieq(x, names[i], xlen))
                tls = (enum route_tls)(i + 1);
        size_t yoff, ylen;
        if (tls == ROUTE_TLS_DEFAULT || cfg_next_token(l, &pos, &yoff, &ylen)) {
            cfg_error(&p->dc, cfg_lline_line(l, xoff),
                      "unexpected \"%.*s%s\" after the next hop (only tls=none, tls=may, "
                      "tls=encrypt or tls=verify may follow it)",
                      CFG_EX(x, l->len - xoff));
            return;
        }
    }
    const char *k = l->s + koff;
    char key[TRANSPORT_HOST_MAX + 2];
    if (klen == 1 && k[0] == '*') {
        snprintf(key, sizeof key, "*");
    } else {
        const char *d = k;
        size_t dlen = klen;
        bool sub = false;
        if (dlen > 2 && d[0] == '*' && d[1] == '.') {
            d += 2, dlen -= 2, sub = true;
        } else if (dlen > 1 && d[0] == '.') {
            d += 1, dlen -= 1, sub = true;
        }
        if (!cfg_valid_domain(d, dlen, false)) {
            cfg_error(&p->dc, line,
                      "\"%.*s%s\" is not a domain, \".domain\", \"*.domain\" or \"*\"",
                      CFG_EX(k, klen));
            return;
        }
        snprintf(key, sizeof key, "%s%.*s", sub ? "." : "", (int)dlen, d);
        ascii_lower(key);
    }
    struct transport_entry e = {NULL, {0}, line};
    char err[256];
    if (transport_parse_nexthop(l->s + hoff, hlen, true, &e.route, err, sizeof err) < 0) {
        cfg_error(&p->dc, cfg_lline_line(l, hoff), "%s: %s", key, err);
        return;
    }
    if (tls != ROUTE_TLS_DEFAULT && e.route.kind != ROUTE_SMTP) {
        cfg_error(&p->dc, cfg_lline_line(l, xoff), "%s: tls= applies to smtp: routes only", key);
        return;
    }
    e.route.tls = tls;
    e.key = xstrdup(key);
    p->t->v = xreallocarray(p->t->v, p->t->n + 1, sizeof *p->t->v);
    p->t->v[p->t->n++] = e;
}

static int cmp_entry(const void *x, const void *y)
{
    const struct transport_entry *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c ? c : (a->line < b->line ? -1 : a->line > b->line);
}

struct transport_table *transport_parse(const char *text, size_t len, const char *file,
                                        struct config_diags *diags)
{
    struct tparser p;
    memset(&p, 0, sizeof p);
    p.dc.diags = diags;
    p.dc.file = file;
    p.t = xcalloc(1, sizeof *p.t);
    cfg_read_lines(text ? text : "", text ? len : 0, true, &p.dc, transport_line, &p);
    struct transport_table *t = p.t;
    if (t->n)
        qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(t->v[i].key, t->v[i - 1].key) == 0)
            cfg_error(&p.dc, t->v[i].line, "%s: given twice (first at line %u)", t->v[i].key,
                      t->v[i - 1].line);
    if (p.dc.errors > 0) {
        transport_free(t);
        return NULL;
    }
    return t;
}

struct transport_table *transport_load(const char *file, struct config_diags *diags)
{
    size_t len;
    char *text = cfg_read_file(file, TRANSPORT_FILE_MAX, &len, diags);
    if (!text)
        return NULL;
    struct transport_table *t = transport_parse(text, len, file, diags);
    free(text);
    return t;
}

void transport_free(struct transport_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].key);
    free(t->v);
    free(t);
}

size_t transport_count(const struct transport_table *t)
{
    return t ? t->n : 0;
}

static const struct route *find(const struct transport_table *t, const char *key)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, t->v[mid].key);
        if (c == 0)
            return &t->v[mid].route;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct route *transport_lookup_named(const struct transport_table *t, const char *domain)
{
    if (!t || t->n == 0 || !domain)
        return NULL;
    size_t n = strlen(domain);
    if (n == 0 || n > TRANSPORT_HOST_MAX)
        return NULL;
    char d[TRANSPORT_HOST_MAX + 1];
    memcpy(d, domain, n + 1);
    ascii_lower(d);
    const struct route *r = find(t, d);
    for (const char *dot = strchr(d, '.'); !r && dot; dot = strchr(dot + 1, '.'))
        r = find(t, dot);
    return r;
}

const struct route *transport_lookup(const struct transport_table *t, const char *domain)
{
    if (!t || t->n == 0 || !domain)
        return NULL;
    const struct route *r = transport_lookup_named(t, domain);
    return r ? r : find(t, "*");
}

/* ---- relayhost credentials -------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int transport_auth_parse(const char *text, size_t len, struct transport_auth *out, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *line = NULL;
    size_t llen = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t a = pos, b = end;
        while (a < b && is_blank(text[a]))
            a++;
        while (b > a && is_blank(text[b - 1]))
            b--;
        if (b > a && text[a] != '#') {
            if (line) {
                snprintf(err, errlen, "more than one line (expected one line \"user password\")");
                return -1;
            }
            line = text + a;
            llen = b - a;
        }
        pos = end + 1;
    }
    if (!line) {
        snprintf(err, errlen, "empty (expected one line \"user password\")");
        return -1;
    }
    for (size_t i = 0; i < llen; i++)
        if ((unsigned char)line[i] < 0x20 && line[i] != '\t') {
            snprintf(err, errlen, "control character in the credentials line");
            return -1;
        }
    size_t ulen = 0;
    while (ulen < llen && !is_blank(line[ulen]))
        ulen++;
    size_t p = ulen;
    while (p < llen && is_blank(line[p]))
        p++;
    if (p >= llen) {
        snprintf(err, errlen, "no password after the user name (expected \"user password\")");
        return -1;
    }
    if (ulen > TRANSPORT_USER_MAX || llen - p > TRANSPORT_PASS_MAX) {
        snprintf(err, errlen, "user name or password longer than %d octets", TRANSPORT_PASS_MAX);
        return -1;
    }
    memcpy(out->user, line, ulen);
    memcpy(out->pass, line + p, llen - p);
    return 0;
}

int transport_auth_load(const char *file, struct transport_auth *out, char *err, size_t errlen)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", file);
        close(fd);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen,
                 "%s: mode %04o gives access to group or others; it holds a password: chmod 600",
                 file, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    char text[AUTH_FILE_MAX + 1];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, text + n, sizeof text - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", file, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == sizeof text)
            break;
    }
    close(fd);
    if (n > AUTH_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d octets", file, AUTH_FILE_MAX);
        return -1;
    }
    char why[200];
    int rc = transport_auth_parse(text, n, out, why, sizeof why);
    explicit_bzero(text, sizeof text);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", file, why);
    return rc;
}
