/*
 * dmarc_report - aggregate report data, one JSON line per message (RFC
 * 7489 §7.2). See dmarc_report.h. dmarc_report_format() is pure;
 * dmarc_report_append() opens the day's file with O_APPEND and writes the
 * line in one call.
 */
#include "mailauth/dmarc_report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

/* A JSON writer into a bounded buffer. */
struct jw {
    char *out;
    size_t cap, len;
    bool err;
};

static void jraw(struct jw *w, const char *s, size_t n)
{
    if (w->err || w->len + n + 1 > w->cap) {
        w->err = true;
        return;
    }
    memcpy(w->out + w->len, s, n);
    w->len += n;
    w->out[w->len] = '\0';
}

static void jputs(struct jw *w, const char *s)
{
    jraw(w, s, strlen(s));
}

/* A JSON string; NULL is "". */
static void jstr(struct jw *w, const char *s)
{
    jraw(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jraw(w, e, 2);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            jraw(w, e, 6);
            p++;
        } else if (c < 0x80) {
            jraw(w, (const char *)p, 1);
            p++;
        } else {
            size_t n = utf8_seq_len(p, strnlen((const char *)p, 4));
            if (n) {
                jraw(w, (const char *)p, n);
                p += n;
            } else {
                jraw(w, "\\ufffd", 6);
                p++;
            }
        }
    }
    jraw(w, "\"", 1);
}

static void jkey(struct jw *w, const char *key, bool first)
{
    if (!first)
        jraw(w, ",", 1);
    jstr(w, key);
    jraw(w, ":", 1);
}

static void jkv(struct jw *w, const char *key, const char *value)
{
    jkey(w, key, false);
    jstr(w, value);
}

static void jnum(struct jw *w, const char *key, long long v)
{
    char n[32];
    snprintf(n, sizeof n, "%lld", v);
    jkey(w, key, false);
    jputs(w, n);
}

static void jbool(struct jw *w, const char *key, bool v)
{
    jkey(w, key, false);
    jputs(w, v ? "true" : "false");
}

long dmarc_report_format(const struct dmarc_report_entry *e, char *out, size_t outlen)
{
    struct jw w = {out, outlen > DMARC_REPORT_LINE_MAX + 1 ? DMARC_REPORT_LINE_MAX + 1 : outlen, 0,
                   false};
    if (outlen)
        out[0] = '\0';
    const struct dmarc_discovery *d = e->disc;
    bool found = d && d->status == DMARC_DISC_FOUND;
    const struct dmarc_record *rec = found ? &d->rec : NULL;
    jraw(&w, "{", 1);
    jkey(&w, "time", true);
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)e->time);
    jputs(&w, t);
    jkv(&w, "source_ip", e->source_ip);
    jkv(&w, "header_from", e->header_from);
    jkv(&w, "envelope_from", e->envelope_from);
    jkv(&w, "policy_domain", found ? d->domain : "");
    jkv(&w, "p", rec ? dmarc_policy_name(rec->p) : "");
    jkv(&w, "sp", rec ? dmarc_policy_name(rec->sp) : "");
    jkv(&w, "np", rec ? dmarc_policy_name(rec->np) : "");
    jnum(&w, "pct", rec ? (long long)rec->pct : 100);
    jkv(&w, "adkim", rec && rec->adkim == DMARC_ALIGN_STRICT ? "s" : "r");
    jkv(&w, "aspf", rec && rec->aspf == DMARC_ALIGN_STRICT ? "s" : "r");
    jkv(&w, "dmarc", dmarc_status_name(e->res ? e->res->status : DMARC_STATUS_NONE));
    jkv(&w, "disposition", dmarc_disposition_name(e->disposition));
    jbool(&w, "sampled_out", e->res && e->res->sampled_out);
    jbool(&w, "spf_aligned", e->res && e->res->spf_aligned);
    jbool(&w, "dkim_aligned", e->res && e->res->dkim_aligned);
    const struct dmarc_input *in = e->in;
    jkey(&w, "spf", false);
    jraw(&w, "{", 1);
    jkey(&w, "domain", true);
    jstr(&w, in ? in->spf_domain : "");
    jkv(&w, "result", dmarc_auth_name(in ? in->spf : DMARC_AUTH_NONE));
    jraw(&w, "}", 1);
    jkey(&w, "dkim", false);
    jraw(&w, "[", 1);
    for (size_t i = 0; in && i < in->ndkim && i < DMARC_MAX_DKIM; i++) {
        if (i)
            jraw(&w, ",", 1);
        jraw(&w, "{", 1);
        jkey(&w, "domain", true);
        jstr(&w, in->dkim[i].domain);
        jkv(&w, "selector", in->dkim[i].selector);
        jkv(&w, "result", dmarc_auth_name(in->dkim[i].result));
        jraw(&w, "}", 1);
    }
    jraw(&w, "]}\n", 3);
    if (w.err) {
        if (outlen)
            out[0] = '\0';
        return -1;
    }
    return (long)w.len;
}

int dmarc_report_path(const char *dir, int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return -1;
    int n = snprintf(out, outlen, "%s/dmarc-%04d-%02d-%02d.jsonl", dir, tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int dmarc_report_append(const char *dir, const struct dmarc_report_entry *e, char *err,
                        size_t errlen)
{
    char line[DMARC_REPORT_LINE_MAX + 1];
    long n = dmarc_report_format(e, line, sizeof line);
    if (n < 0) {
        snprintf(err, errlen, "the report line is longer than %d octets", DMARC_REPORT_LINE_MAX);
        return -1;
    }
    char path[4096];
    if (dmarc_report_path(dir, e->time, path, sizeof path) < 0) {
        snprintf(err, errlen, "dmarc_report_dir is too long");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 && errno == ENOENT) {
        if (mkdir_p(dir, 0750) < 0) {
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t w;
    do
        w = write(fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (w != (ssize_t)n) {
        snprintf(err, errlen, "cannot write %s: %s", path, w < 0 ? strerror(saved) : "short write");
        return -1;
    }
    return 0;
}
