/*
 * ehlo - the client's view of a peer's extensions and the commands it sends
 * with them: EHLO keyword parsing, MAIL FROM and RCPT TO with the ESMTP
 * parameters the peer advertised, and xtext encoding.
 *
 * RFCs: 5321 §4.1.1.1 (EHLO reply: a greeting line, then one ehlo-line per
 * extension, "keyword *(SP param)"); 2920 (PIPELINING); 1870 §4 (SIZE with
 * an optional limit, 0 meaning none); 6152 (8BITMIME, BODY=); 6531 (SMTPUTF8);
 * 3207 (STARTTLS); 3030 (CHUNKING); 2034 (ENHANCEDSTATUSCODES); 4954 (AUTH,
 * and the old "AUTH=" form some servers still send); 3461 §4.1-§4.4 (NOTIFY,
 * ORCPT, RET, ENVID) and §5 (xtext), with its relay rules: parameters of DSN
 * go to a peer only when it advertised DSN.
 *
 * Pure: fills caller-owned structs and buffers, no I/O, no allocation.
 */
#include "smtp/client.h"

#include <string.h>

#include "core/util.h"

/* ---------------------------------------------------------------------
 * EHLO
 */
static bool word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && ascii_nieq(w, kw, n);
}

/* SIZE's parameter: digits, clamped at UINT64_MAX; anything else is 0. */
static uint64_t size_param(const char *p, size_t n)
{
    uint64_t v = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            v = UINT64_MAX;
        else
            v = v * 10 + d;
    }
    return v;
}

static void auth_mechs(const char *p, size_t n, struct smtp_peer_ext *ext)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && p[i] == ' ')
            i++;
        size_t s = i;
        while (i < n && p[i] != ' ')
            i++;
        if (word_is(p + s, i - s, "PLAIN"))
            ext->auth |= SMTP_AUTH_MECH_PLAIN;
        else if (word_is(p + s, i - s, "LOGIN"))
            ext->auth |= SMTP_AUTH_MECH_LOGIN;
    }
}

static void ehlo_line(const char *l, size_t n, struct smtp_peer_ext *ext)
{
    size_t i = 0;
    while (i < n && l[i] == ' ')
        i++;
    size_t ks = i;
    while (i < n && l[i] != ' ' && l[i] != '=')
        i++;
    const char *kw = l + ks;
    size_t kn = i - ks;
    if (word_is(kw, kn, "AUTH")) {
        if (i < n)
            auth_mechs(l + i + 1, n - i - 1, ext);
        return;
    }
    if (i < n && l[i] == '=')
        return; /* "KEYWORD=..." is only known for AUTH */
    while (i < n && l[i] == ' ')
        i++;
    const char *param = l + i;
    size_t pn = 0;
    while (i + pn < n && param[pn] != ' ')
        pn++;
    if (word_is(kw, kn, "PIPELINING")) {
        ext->pipelining = true;
    } else if (word_is(kw, kn, "SIZE")) {
        ext->size = true;
        ext->size_max = size_param(param, pn);
    } else if (word_is(kw, kn, "8BITMIME")) {
        ext->eightbitmime = true;
    } else if (word_is(kw, kn, "SMTPUTF8")) {
        ext->smtputf8 = true;
    } else if (word_is(kw, kn, "STARTTLS")) {
        ext->starttls = true;
    } else if (word_is(kw, kn, "CHUNKING")) {
        ext->chunking = true;
    } else if (word_is(kw, kn, "DSN")) {
        ext->dsn = true;
    } else if (word_is(kw, kn, "ENHANCEDSTATUSCODES")) {
        ext->enhancedstatuscodes = true;
    }
}

void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_peer_ext *ext)
{
    memset(ext, 0, sizeof *ext);
    if (!r->done || r->malformed || r->code != 250)
        return;
    const char *t = r->text;
    size_t n = r->text_len;
    const char *nl = memchr(t, '\n', n);
    while (nl != NULL) {
        size_t pos = (size_t)(nl - t) + 1;
        nl = memchr(t + pos, '\n', n - pos);
        size_t end = nl != NULL ? (size_t)(nl - t) : n;
        ehlo_line(t + pos, end - pos, ext);
    }
}

/* ---------------------------------------------------------------------
 * xtext
 */
long smtp_xtext_encode(const char *s, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= '!' && c <= '~' && c != '+' && c != '=') {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= outlen)
                return -1;
            out[o++] = '+';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return (long)o;
}

/* ---------------------------------------------------------------------
 * MAIL and RCPT
 */
struct cmdw {
    char *out;
    size_t len, cap; /* cap: outlen - 1, room for the NUL */
    bool over;
};

static void put(struct cmdw *w, const char *s, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->out + w->len, s, n);
    w->len += n;
}

static void puts_(struct cmdw *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_u64(struct cmdw *w, uint64_t v)
{
    char d[24];
    size_t n = sizeof d;
    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    put(w, d + n, sizeof d - n);
}

static long finish(struct cmdw *w)
{
    put(w, "\r\n", 2);
    if (w->over)
        return -1;
    w->out[w->len] = '\0';
    return (long)w->len;
}

static bool has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool has_8bit(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

long smtp_format_mail(char *out, size_t outlen, const char *sender, const struct smtp_peer_ext *ext,
                      uint64_t size, bool body_8bit, bool smtputf8, enum smtp_ret ret,
                      const char *envid)
{
    static const struct smtp_peer_ext none;
    if (outlen == 0 || has_ctl(sender))
        return -1;
    if (ext == NULL)
        ext = &none;
    if (envid != NULL && ext->dsn && !smtp_xtext_valid(envid, strlen(envid)))
        return -1;
    struct cmdw w = {out, 0, outlen - 1, false};
    puts_(&w, "MAIL FROM:<");
    puts_(&w, sender);
    puts_(&w, ">");
    if (ext->size) {
        puts_(&w, " SIZE=");
        put_u64(&w, size);
    }
    if (body_8bit && ext->eightbitmime)
        puts_(&w, " BODY=8BITMIME");
    if (smtputf8 && ext->smtputf8)
        puts_(&w, " SMTPUTF8");
    if (ext->dsn) {
        if (ret == SMTP_RET_FULL)
            puts_(&w, " RET=FULL");
        else if (ret == SMTP_RET_HDRS)
            puts_(&w, " RET=HDRS");
        if (envid != NULL) {
            puts_(&w, " ENVID=");
            puts_(&w, envid);
        }
    }
    return finish(&w);
}

/* "addr-type;xtext": addr-type an RFC 5322 atom, then valid xtext. */
static bool orcpt_valid(const char *s)
{
    const char *semi = strchr(s, ';');
    if (semi == NULL || semi == s || strlen(s) > SMTP_ORCPT_MAX)
        return false;
    for (const char *p = s; p < semi; p++) {
        unsigned char c = (unsigned char)*p;
        bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
        if (!atext)
            return false;
    }
    return smtp_xtext_valid(semi + 1, strlen(semi + 1));
}

long smtp_format_rcpt(char *out, size_t outlen, const char *rcpt, unsigned notify,
                      const char *orcpt, const struct smtp_peer_ext *ext)
{
    if (outlen == 0 || has_ctl(rcpt))
        return -1;
    bool dsn = ext != NULL && ext->dsn;
    if (dsn && orcpt != NULL && !orcpt_valid(orcpt))
        return -1;
    struct cmdw w = {out, 0, outlen - 1, false};
    puts_(&w, "RCPT TO:<");
    puts_(&w, rcpt);
    puts_(&w, ">");
    if (!dsn)
        return finish(&w);
    if (notify & SMTP_NOTIFY_NEVER) {
        puts_(&w, " NOTIFY=NEVER");
    } else if (notify != 0) {
        const char *sep = " NOTIFY=";
        if (notify & SMTP_NOTIFY_SUCCESS) {
            puts_(&w, sep);
            puts_(&w, "SUCCESS");
            sep = ",";
        }
        if (notify & SMTP_NOTIFY_FAILURE) {
            puts_(&w, sep);
            puts_(&w, "FAILURE");
            sep = ",";
        }
        if (notify & SMTP_NOTIFY_DELAY) {
            puts_(&w, sep);
            puts_(&w, "DELAY");
        }
    }
    if (orcpt != NULL) {
        puts_(&w, " ORCPT=");
        puts_(&w, orcpt);
    } else if (!has_8bit(rcpt)) {
        char x[SMTP_ORCPT_MAX + 1];
        long n = smtp_xtext_encode(rcpt, strlen(rcpt), x, sizeof x - 7);
        if (n >= 0) { /* too long to fit ORCPT's 500 octets: leave it out */
            puts_(&w, " ORCPT=rfc822;");
            put(&w, x, (size_t)n);
        }
    }
    return finish(&w);
}

bool smtp_rcpt_needs_relayed_dsn(const struct smtp_peer_ext *ext, unsigned notify)
{
    return (ext == NULL || !ext->dsn) && (notify & SMTP_NOTIFY_SUCCESS) &&
           !(notify & SMTP_NOTIFY_NEVER);
}
