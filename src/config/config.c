/*
 * config - the configuration file parsed into a validated, read-only struct
 * config (see config.h; every key is documented in docs/configuration.md).
 *
 * config_parse() is pure: it reads Postfix-style logical lines ("key = value",
 * '#' comment lines, continuation lines starting with white space; see
 * internal.h), checks each value as it comes (so an error in a line that a
 * later one overrides is still reported), lets the last value of a repeated
 * key win, and at the end checks the rules that span keys: at least one
 * listener, no listener given twice, every mailbox in a local domain. Each
 * problem is a config_diag (file, line, message); warnings have messages that
 * start with "warning: " and do not make the parse fail. config_load() adds
 * the I/O: reading the file and asking the system for its host name when
 * `hostname` is not set.
 *
 * The helpers of internal.h (diagnostics, the logical-line reader, address
 * syntax) live here too; aliases.c uses them.
 */
#include "config/config.h"
#include "config/internal.h"
#include "config/transport.h"
#include "core/log.h"
#include "core/util.h"
#include "smtp/smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The largest configuration file config_load() reads. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* ---------------------------------------------------------------------
 * Diagnostics
 */

static void diag_vadd(struct config_diags *d, const char *file, unsigned line, const char *prefix,
                      const char *fmt, va_list ap)
{
    char small[256];
    if (!fmt) /* never; tells GCC's UBSan build that the format is not NULL */
        fmt = "";
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    size_t plen = strlen(prefix);
    char *msg = xmalloc(plen + (size_t)n + 1);
    memcpy(msg, prefix, plen);
    if ((size_t)n < sizeof small)
        memcpy(msg + plen, small, (size_t)n + 1);
    else
        vsnprintf(msg + plen, (size_t)n + 1, fmt, ap);
    d->v = xreallocarray(d->v, d->n + 1, sizeof *d->v);
    d->v[d->n].file = xstrdup(file ? file : "");
    d->v[d->n].line = line;
    d->v[d->n].msg = msg;
    d->n++;
}

void cfg_diag_add(struct config_diags *d, const char *file, unsigned line, const char *fmt, ...)
{
    if (!d)
        return;
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(d, file, line, "", fmt, ap);
    va_end(ap);
}

void cfg_error(struct cfg_diag_ctx *dc, unsigned line, const char *fmt, ...)
{
    dc->errors++;
    if (!dc->diags || dc->errors > CFG_MAX_ERRORS + 1)
        return;
    if (dc->errors == CFG_MAX_ERRORS + 1) {
        cfg_diag_add(dc->diags, dc->file, 0, "too many errors; the rest are not reported");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(dc->diags, dc->file, line, "", fmt, ap);
    va_end(ap);
}

void cfg_warn(struct cfg_diag_ctx *dc, unsigned line, const char *fmt, ...)
{
    dc->warnings++;
    if (!dc->diags || dc->warnings > CFG_MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    diag_vadd(dc->diags, dc->file, line, "warning: ", fmt, ap);
    va_end(ap);
}

void config_diags_free(struct config_diags *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    d->v = NULL;
    d->n = 0;
}

/* ---------------------------------------------------------------------
 * Logical lines and tokens
 */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void lline_append(struct cfg_lline *l, const char *s, size_t n, unsigned line)
{
    bool sep = l->len > 0;
    size_t need = l->len + (sep ? 1 : 0) + n + 1;
    if (need > l->cap) {
        l->cap = need * 2;
        l->s = xrealloc(l->s, l->cap);
    }
    if (sep)
        l->s[l->len++] = ' ';
    if (l->nseg == l->segcap) {
        l->segcap = l->segcap ? l->segcap * 2 : 8;
        l->seg = xreallocarray(l->seg, l->segcap, sizeof *l->seg);
    }
    l->seg[l->nseg].off = l->len;
    l->seg[l->nseg].line = line;
    l->nseg++;
    memcpy(l->s + l->len, s, n);
    l->len += n;
    l->s[l->len] = '\0';
}

unsigned cfg_lline_line(const struct cfg_lline *l, size_t off)
{
    size_t lo = 0, hi = l->nseg; /* find the last segment with seg.off <= off */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->seg[mid].off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return l->nseg ? l->seg[lo].line : 0;
}

void cfg_read_lines(const char *text, size_t len, bool inline_comments, struct cfg_diag_ctx *dc,
                    void (*fn)(void *arg, const struct cfg_lline *l), void *arg)
{
    struct cfg_lline l = {0};
    bool have = false;   /* a logical line is being collected */
    bool bad = false;    /* ... and it holds a control character: drop it */
    bool orphan = false; /* continuation lines with nothing to continue */
    unsigned lineno = 0;
    size_t pos = 0;

    while (pos < len) {
        size_t start = pos;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        pos = nl ? end + 1 : len;
        if (lineno < UINT_MAX)
            lineno++;
        if (end > start && text[end - 1] == '\r')
            end--;

        size_t i = start;
        while (i < end && is_space(text[i]))
            i++;
        if (i == end || text[i] == '#')
            continue; /* blank or comment: ignored, does not end a logical line */
        if (inline_comments) {
            for (size_t j = i + 1; j < end; j++) {
                if (text[j] == '#' && is_space(text[j - 1])) {
                    end = j;
                    break;
                }
            }
        }
        while (end > i && is_space(text[end - 1]))
            end--;

        int ctl = -1;
        for (size_t j = i; j < end; j++) {
            unsigned char c = (unsigned char)text[j];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                ctl = c;
                break;
            }
        }

        if (i > start) { /* continuation */
            if (!have) {
                if (!orphan)
                    cfg_error(dc, lineno,
                              "a line that starts with white space continues the previous "
                              "line, but there is none");
                orphan = true;
                continue;
            }
            if (ctl >= 0) {
                cfg_error(dc, lineno, "control character 0x%02x in line", (unsigned)ctl);
                bad = true;
            }
            lline_append(&l, text + i, end - i, lineno);
            continue;
        }

        if (have && !bad)
            fn(arg, &l);
        l.len = 0;
        l.nseg = 0;
        have = true;
        orphan = false;
        bad = ctl >= 0;
        if (bad)
            cfg_error(dc, lineno, "control character 0x%02x in line", (unsigned)ctl);
        lline_append(&l, text + i, end - i, lineno);
    }
    if (have && !bad)
        fn(arg, &l);
    free(l.s);
    free(l.seg);
}

bool cfg_next_token(const struct cfg_lline *l, size_t *pos, size_t *off, size_t *toklen)
{
    size_t i = *pos;
    while (i < l->len && (is_space(l->s[i]) || l->s[i] == ','))
        i++;
    if (i >= l->len) {
        *pos = i;
        return false;
    }
    size_t j = i;
    while (j < l->len && !is_space(l->s[j]) && l->s[j] != ',')
        j++;
    *off = i;
    *toklen = j - i;
    *pos = j;
    return true;
}

/* ---------------------------------------------------------------------
 * Address syntax
 */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool cfg_valid_domain(const char *s, size_t len, bool utf8)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        size_t n = 1;
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if ((unsigned char)c >= 0x80) {
            n = utf8 ? utf8_seq_len((const unsigned char *)s + i, len - i) : 0;
            if (n == 0)
                return false;
        } else if (c == '-') {
            if (label == 0)
                return false;
        } else if (!is_alnum(c)) {
            return false;
        }
        label += n;
        i += n - 1;
        if (label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

bool cfg_valid_local(const char *s, size_t len)
{
    static const char atext[] = "!#$%&'*+-/=?^_`{|}~";
    if (len == 0 || len > SMTP_LOCAL_MAX || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (s[i - 1] == '.')
                return false;
        } else if ((unsigned char)c >= 0x80) {
            size_t n = utf8_seq_len((const unsigned char *)s + i, len - i);
            if (n == 0)
                return false;
            i += n - 1;
        } else if (!is_alnum(c) && (c == '\0' || !strchr(atext, c))) {
            return false;
        }
    }
    return true;
}

bool cfg_valid_address(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at)
        return false;
    size_t llen = (size_t)(at - s);
    return cfg_valid_local(s, llen) && cfg_valid_domain(at + 1, len - llen - 1, true);
}

/* ---------------------------------------------------------------------
 * Keys
 */

enum key_type {
    KT_HOSTNAME,   /* a domain name; empty: unset (config_load asks the system) */
    KT_LISTEN,     /* host:port list of one role */
    KT_DOMAINS,    /* local_domains */
    KT_MAILBOXES,  /* mailboxes */
    KT_PATH,       /* a path; empty: the default */
    KT_PATH_OPT,   /* a path; empty: none (NULL) */
    KT_TRUSTED,    /* CIDR list */
    KT_NEWLINE,    /* reject | normalize */
    KT_LOGLEVEL,   /* error | warn | info | debug */
    KT_LOGFORMAT,  /* text | json */
    KT_LOGTARGET,  /* stderr | syslog | a path holding a '/'; empty: stderr */
    KT_TLSVER,     /* TLSv1.2 | TLSv1.3 */
    KT_BOOL,       /* yes | no */
    KT_STRING,     /* one word; empty: the default (sdef, may be NULL) */
    KT_PORT,       /* uint32_t 1 to 65535 */
    KT_DNSPREFER,  /* ipv6 | ipv4 */
    KT_OTLS,       /* may | none | encrypt | verify */
    KT_SPFACTION,  /* record | reject */
    KT_FORWARDERS, /* list of address[@port] */
    KT_SIZE64,     /* uint64_t octets, K/M/G suffixes */
    KT_SIZE,       /* size_t octets, K/M/G suffixes */
    KT_COUNT,      /* size_t, plain digits */
    KT_TIME,       /* uint32_t seconds, s/m/h/d suffixes */
    KT_DMARCACT,   /* reject | quarantine | record */
    KT_FIELDNAME,  /* a header field name (RFC 5322 ftext); empty: the default */
    KT_USERNAME,   /* a system user name; empty: the default (sdef) */
    KT_MODE,       /* uint32_t file permission bits, octal, at most 0777 */
    KT_HOSTPORT,   /* one numeric host:port ([v6]:port); empty: none (NULL) */
    KT_SECCOMPACT, /* kill | errno | log */
};

struct key_def {
    const char *name;
    enum key_type type;
    size_t off;       /* offset of the field in struct config */
    uint64_t def;     /* default of numeric and enumerated keys */
    uint64_t min;     /* range of numeric keys */
    uint64_t max;     /* ... */
    const char *sdef; /* default of KT_PATH keys */
    enum config_role role;
    enum config_reload reload; /* how SIGHUP applies a change (a key that does not
                                  say needs a restart) */
};

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)
#define F(field) offsetof(struct config, field)
/* config_reload, short, for the table */
#define RESTART CONFIG_RELOAD_RESTART
#define NEW CONFIG_RELOAD_SESSIONS
#define NOW CONFIG_RELOAD_AT_ONCE

static const struct key_def keys[] = {
    {"hostname", KT_HOSTNAME, F(hostname), 0, 0, 0, NULL, 0, RESTART},
    {"mx_listen", KT_LISTEN, 0, 0, 0, 0, NULL, ROLE_MX, RESTART},
    {"submission_listen", KT_LISTEN, 0, 0, 0, 0, NULL, ROLE_SUBMISSION, RESTART},
    {"submissions_listen", KT_LISTEN, 0, 0, 0, 0, NULL, ROLE_SUBMISSIONS, RESTART},
    {"local_domains", KT_DOMAINS, F(local_domains), 0, 0, 0, NULL, 0, NEW},
    {"mailboxes", KT_MAILBOXES, F(mailboxes), 0, 0, 0, NULL, 0, NEW},
    {"aliases_file", KT_PATH_OPT, F(aliases_file), 0, 0, 0, NULL, 0, NEW},
    {"maildir_root", KT_PATH, F(maildir_root), 0, 0, 0, "var/mail", 0, RESTART},
    {"spool_dir", KT_PATH, F(spool_dir), 0, 0, 0, "var/spool", 0, RESTART},
    {"trusted_networks", KT_TRUSTED, 0, 0, 0, 0, NULL, 0, NEW},
    {"mailauth_skip_networks", KT_TRUSTED, 0, 0, 0, 0, NULL, 0, NEW},
    {"bare_newline", KT_NEWLINE, F(bare_newline), SMTP_NEWLINE_REJECT, 0, 0, NULL, 0, NEW},
    {"message_size_limit", KT_SIZE64, F(message_size_limit), 50 * MIB, KIB, 2 * GIB, NULL, 0, NEW},
    {"max_recipients", KT_COUNT, F(max_recipients), 1000, 100, 100000, NULL, 0, NEW},
    {"max_command_line", KT_SIZE, F(max_command_line), 512, 512, 65536, NULL, 0, NEW},
    {"max_text_line", KT_SIZE, F(max_text_line), 1000, 1000, 1000000, NULL, 0, NEW},
    {"max_header_count", KT_COUNT, F(max_header_count), 1000, 50, 100000, NULL, 0, NEW},
    {"max_errors", KT_COUNT, F(max_errors), 20, 1, 10000, NULL, 0, NEW},
    {"max_junk_commands", KT_COUNT, F(max_junk_commands), 100, 1, 100000, NULL, 0, NEW},
    {"max_connections", KT_COUNT, F(max_connections), 1000, 1, 100000, NULL, 0, NEW},
    {"max_connections_per_client", KT_COUNT, F(max_connections_per_client), 50, 1, 100000, NULL, 0,
     NEW},
    {"idle_timeout", KT_TIME, F(idle_timeout), 300, 1, 3600, NULL, 0, NEW},
    {"session_timeout", KT_TIME, F(session_timeout), 3600, 1, 86400, NULL, 0, NEW},
    {"min_data_rate", KT_COUNT, F(min_data_rate), 500, 0, 1000000000, NULL, 0, NEW},
    {"min_data_rate_grace", KT_TIME, F(min_data_rate_grace), 120, 1, 3600, NULL, 0, NEW},
    {"spool_segment_size", KT_SIZE64, F(spool_segment_size), 64 * MIB, 64 * KIB, 16 * GIB, NULL, 0,
     RESTART},
    {"delivery_workers", KT_COUNT, F(delivery_workers), 0, 0, 256, NULL, 0, RESTART},
    {"delivery_concurrency", KT_COUNT, F(delivery_concurrency), 64, 1, 10000, NULL, 0, RESTART},
    {"log_level", KT_LOGLEVEL, F(log_level), LOG_LEVEL_INFO, 0, 0, NULL, 0, NOW},
    {"log_format", KT_LOGFORMAT, F(log_format), LOG_FORMAT_TEXT, 0, 0, NULL, 0, RESTART},
    {"log_target", KT_LOGTARGET, F(log_target), 0, 0, 0, "stderr", 0, RESTART},
    {"tls_cert_file", KT_PATH_OPT, F(tls_cert_file), 0, 0, 0, NULL, 0, NEW},
    {"tls_key_file", KT_PATH_OPT, F(tls_key_file), 0, 0, 0, NULL, 0, NEW},
    {"tls_selfsigned", KT_BOOL, F(tls_selfsigned), 0, 0, 0, NULL, 0, RESTART},
    {"tls_min_version", KT_TLSVER, F(tls_min_version), CONFIG_TLS_1_2, 0, 0, NULL, 0, NEW},
    {"tls_ciphers", KT_STRING, F(tls_ciphers), 0, 0, 0, "HIGH:!aNULL:!MD5:!RC4:!3DES", 0, NEW},
    {"tls_ciphersuites", KT_STRING, F(tls_ciphersuites), 0, 0, 0, NULL, 0, NEW},
    {"users_file", KT_PATH_OPT, F(users_file), 0, 0, 0, NULL, 0, NEW},
    {"sender_login_maps", KT_PATH_OPT, F(sender_login_maps), 0, 0, 0, NULL, 0, NEW},
    {"mx_auth", KT_BOOL, F(mx_auth), 0, 0, 0, NULL, 0, NEW},
    {"auth_plaintext_loopback", KT_BOOL, F(auth_plaintext_loopback), 0, 0, 0, NULL, 0, NEW},
    {"auth_workers", KT_COUNT, F(auth_workers), 2, 1, 64, NULL, 0, RESTART},
    {"auth_delay_after", KT_COUNT, F(auth_delay_after), 2, 0, 1000, NULL, 0, NEW},
    {"auth_max_failures", KT_COUNT, F(auth_max_failures), 5, 1, 1000, NULL, 0, NEW},
    {"auth_client_max_failures", KT_COUNT, F(auth_client_max_failures), 20, 1, 100000, NULL, 0,
     NEW},
    {"auth_failure_window", KT_TIME, F(auth_failure_window), 3600, 1, 86400, NULL, 0, RESTART},
    {"user_message_rate", KT_COUNT, F(user_message_rate), 1000, 0, 10000000, NULL, 0, NEW},
    {"user_recipient_rate", KT_COUNT, F(user_recipient_rate), 5000, 0, 10000000, NULL, 0, NEW},
    {"dns_forwarders", KT_FORWARDERS, F(dns_forwarders), 0, 0, 0, NULL, 0, RESTART},
    {"dns_trust_anchor", KT_PATH_OPT, F(dns_trust_anchor), 0, 0, 0, NULL, 0, RESTART},
    {"dns_prefer", KT_DNSPREFER, F(dns_prefer), CONFIG_DNS_PREFER_IPV6, 0, 0, NULL, 0, RESTART},
    {"dns_timeout", KT_TIME, F(dns_timeout), 30, 1, 600, NULL, 0, RESTART},
    {"outbound_port", KT_PORT, F(outbound_port), 25, 1, 65535, NULL, 0, RESTART},
    {"outbound_tls", KT_OTLS, F(outbound_tls), CONFIG_OTLS_MAY, 0, 0, NULL, 0, RESTART},
    {"outbound_tls_ca_file", KT_PATH_OPT, F(outbound_tls_ca_file), 0, 0, 0, NULL, 0, RESTART},
    {"outbound_connect_timeout", KT_TIME, F(outbound_connect_timeout), 30, 1, 600, NULL, 0,
     RESTART},
    {"outbound_helo_timeout", KT_TIME, F(outbound_helo_timeout), 300, 1, 3600, NULL, 0, RESTART},
    {"outbound_mail_timeout", KT_TIME, F(outbound_mail_timeout), 300, 1, 3600, NULL, 0, RESTART},
    {"outbound_rcpt_timeout", KT_TIME, F(outbound_rcpt_timeout), 300, 1, 3600, NULL, 0, RESTART},
    {"outbound_data_init_timeout", KT_TIME, F(outbound_data_init_timeout), 120, 1, 3600, NULL, 0,
     RESTART},
    {"outbound_data_xfer_timeout", KT_TIME, F(outbound_data_xfer_timeout), 180, 1, 3600, NULL, 0,
     RESTART},
    {"outbound_data_done_timeout", KT_TIME, F(outbound_data_done_timeout), 600, 1, 3600, NULL, 0,
     RESTART},
    {"outbound_chunking", KT_BOOL, F(outbound_chunking), 1, 0, 0, NULL, 0, RESTART},
    {"relay_concurrency", KT_COUNT, F(relay_concurrency), 100, 1, 10000, NULL, 0, RESTART},
    {"destination_concurrency", KT_COUNT, F(destination_concurrency), 20, 1, 1000, NULL, 0,
     RESTART},
    {"retry_min", KT_TIME, F(retry_min), 300, 1, 86400, NULL, 0, RESTART},
    {"retry_max", KT_TIME, F(retry_max), 4 * 3600, 1, 7 * 86400, NULL, 0, RESTART},
    {"delay_warning_time", KT_TIME, F(delay_warning_time), 0, 0, 7 * 86400, NULL, 0, RESTART},
    {"queue_lifetime", KT_TIME, F(queue_lifetime), 5 * 86400, 1, 100 * 86400, NULL, 0, RESTART},
    {"relayhost", KT_STRING, F(relayhost), 0, 0, 0, NULL, 0, RESTART},
    {"relayhost_auth_file", KT_PATH_OPT, F(relayhost_auth_file), 0, 0, 0, NULL, 0, RESTART},
    {"transport_file", KT_PATH_OPT, F(transport_file), 0, 0, 0, NULL, 0, RESTART},
    {"spf_verify", KT_BOOL, F(spf_verify), 1, 0, 0, NULL, 0, NEW},
    {"spf_fail_action", KT_SPFACTION, F(spf_fail_action), CONFIG_SPF_FAIL_RECORD, 0, 0, NULL, 0,
     NEW},
    {"spf_timeout", KT_TIME, F(spf_timeout), 20, 1, 600, NULL, 0, NEW},
    {"dkim_sign", KT_BOOL, F(dkim_sign), 1, 0, 0, NULL, 0, NEW},
    {"dkim_verify", KT_BOOL, F(dkim_verify), 1, 0, 0, NULL, 0, NEW},
    {"dkim_key_dir", KT_PATH, F(dkim_key_dir), 0, 0, 0, "/etc/tern/dkim", 0, RESTART},
    /* DMARC and Authentication-Results */
    {"dmarc_verify", KT_BOOL, F(dmarc_verify), 1, 0, 0, NULL, 0, NEW},
    {"dmarc_reject_action", KT_DMARCACT, F(dmarc_reject_action), CONFIG_DMARC_REJECT, 0, 0, NULL, 0,
     NEW},
    {"dmarc_quarantine_header", KT_FIELDNAME, F(dmarc_quarantine_header), 0, 0, 0,
     "X-Tern-Quarantine", 0, NEW},
    {"dmarc_report_dir", KT_PATH_OPT, F(dmarc_report_dir), 0, 0, 0, NULL, 0, NEW},
    {"authserv_id", KT_HOSTNAME, F(authserv_id), 0, 0, 0, NULL, 0, NEW},
    /* process */
    {"run_user", KT_USERNAME, F(run_user), 0, 0, 0, "tern", 0, RESTART},
    /* the control socket and local submission (docs/control.md) */
    {"control_socket", KT_PATH, F(control_socket), 0, 0, 0, "/run/tern/control", 0, RESTART},
    {"control_group", KT_STRING, F(control_group), 0, 0, 0, NULL, 0, RESTART},
    {"control_socket_mode", KT_MODE, F(control_socket_mode), 0660, 0, 0777, NULL, 0, RESTART},
    {"control_max_connections", KT_COUNT, F(control_max_connections), 64, 1, 10000, NULL, 0,
     RESTART},
    {"control_max_requests", KT_COUNT, F(control_max_requests), 100000, 10, 100000000, NULL, 0,
     RESTART},
    {"control_idle_timeout", KT_TIME, F(control_idle_timeout), 300, 1, 86400, NULL, 0, RESTART},
    {"sendmail_origin", KT_HOSTNAME, F(sendmail_origin), 0, 0, 0, NULL, 0, RESTART},
    /* the metrics endpoint (docs/metrics.md) */
    {"metrics_listen", KT_HOSTPORT, F(metrics_listen), 0, 0, 0, NULL, 0, RESTART},
    /* the sandbox (docs/sandbox.md): applied once at start */
    {"sandbox", KT_BOOL, F(sandbox), 1, 0, 0, NULL, 0, RESTART},
    {"sandbox_seccomp_action", KT_SECCOMPACT, F(sandbox_seccomp_action), CONFIG_SECCOMP_KILL, 0, 0,
     NULL, 0, RESTART},
    {"sandbox_selftest", KT_BOOL, F(sandbox_selftest), 0, 0, 0, NULL, 0, RESTART},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const struct key_def *key_find(const char *s, size_t n)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == n && memcmp(keys[i].name, s, n) == 0)
            return &keys[i];
    return NULL;
}

static const char *const newline_names[] = {"reject", "normalize"};
static const char *const loglevel_names[] = {"error", "warn", "info", "debug"};
static const char *const tlsver_names[] = {"TLSv1.2", "TLSv1.3"};
static const char *const bool_names[] = {"no", "yes"};
static const char *const prefer_names[] = {"ipv6", "ipv4"};
static const char *const otls_names[] = {"may", "none", "encrypt", "verify"};
static const char *const logformat_names[] = {"text", "json"};
static const char *const spfaction_names[] = {"record", "reject"};
static const char *const dmarcact_names[] = {"reject", "quarantine", "record"};
static const char *const seccompact_names[] = {"kill", "errno", "log"};

/* The names of an enumerated key's values, their count, and how an error lists them. */
static const char *const *enum_names(enum key_type t, size_t *n, const char **list)
{
    switch (t) {
    case KT_NEWLINE:
        *n = 2;
        *list = "reject, normalize";
        return newline_names;
    case KT_TLSVER:
        *n = 2;
        *list = "TLSv1.2, TLSv1.3";
        return tlsver_names;
    case KT_BOOL:
        *n = 2;
        *list = "yes, no";
        return bool_names;
    case KT_DNSPREFER:
        *n = 2;
        *list = "ipv6, ipv4";
        return prefer_names;
    case KT_OTLS:
        *n = 4;
        *list = "may, none, encrypt, verify";
        return otls_names;
    case KT_LOGFORMAT:
        *n = 2;
        *list = "text, json";
        return logformat_names;
    case KT_SPFACTION:
        *n = 2;
        *list = "record, reject";
        return spfaction_names;
    case KT_DMARCACT:
        *n = 3;
        *list = "reject, quarantine, record";
        return dmarcact_names;
    case KT_SECCOMPACT:
        *n = 3;
        *list = "kill, errno, log";
        return seccompact_names;
    default:
        *n = 4;
        *list = "error, warn, info, debug";
        return loglevel_names;
    }
}

/* ---------------------------------------------------------------------
 * The parser
 */

struct listen_item {
    char *host;    /* as written, without brackets */
    char *port;    /* normalized decimal */
    unsigned line; /* where it was given */
    int family;    /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned portnum;
};

struct listen_set {
    size_t n;
    struct listen_item *v;
};

struct parser {
    struct cfg_diag_ctx dc;
    struct config *cfg;
    struct listen_set listen[3]; /* per role, last value given */
    bool listen_errors;          /* a listener value was refused */
    unsigned *mailbox_line;      /* line of each of cfg->mailboxes */
};

static void list_free(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void listen_set_free(struct listen_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].host);
        free(s->v[i].port);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* Order of indexes into a string array (qsort_r): by string, then index. */
static int cmp_index(const void *a, const void *b, void *arg)
{
    char **base = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(base[x], base[y]);
    return c ? c : (x < y ? -1 : x > y);
}

void cfg_dedup(char **v, unsigned *lines, size_t *n)
{
    if (*n < 2)
        return;
    size_t *idx = xmallocarray(*n, sizeof *idx);
    bool *drop = xcalloc(*n, sizeof *drop);
    for (size_t i = 0; i < *n; i++)
        idx[i] = i;
    qsort_r(idx, *n, sizeof *idx, cmp_index, v);
    for (size_t i = 1; i < *n; i++)
        if (strcmp(v[idx[i]], v[idx[i - 1]]) == 0)
            drop[idx[i]] = true;
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (drop[i]) {
            free(v[i]);
            continue;
        }
        if (lines)
            lines[k] = lines[i];
        v[k++] = v[i];
    }
    *n = k;
    free(idx);
    free(drop);
}

/* The value of a scalar key: one word, or empty. False (reported) if more. */
static bool scalar_value(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                         size_t voff, unsigned line)
{
    for (size_t i = voff; i < l->len; i++) {
        if (is_space(l->s[i])) {
            cfg_error(&p->dc, line, "%s takes one value, not \"%.*s%s\"", k->name,
                      CFG_EX(l->s + voff, l->len - voff));
            return false;
        }
    }
    return true;
}

static void fmt_quantity(uint64_t v, enum key_type t, char *out, size_t outlen)
{
    static const struct {
        char suffix;
        uint64_t mult;
    } sizes[] = {{'G', GIB}, {'M', MIB}, {'K', KIB}},
      times[] = {{'d', 86400}, {'h', 3600}, {'m', 60}};
    const bool time = t == KT_TIME;
    for (size_t i = 0; (t == KT_SIZE || t == KT_SIZE64 || time) && i < 3; i++) {
        uint64_t m = time ? times[i].mult : sizes[i].mult;
        if (v >= m && v % m == 0) {
            snprintf(out, outlen, "%llu%c", (unsigned long long)(v / m),
                     time ? times[i].suffix : sizes[i].suffix);
            return;
        }
    }
    snprintf(out, outlen, "%llu%s", (unsigned long long)v, time ? "s" : "");
}

/* Parse digits with an optional one-letter suffix (case-insensitive) from
   `suffixes`, scaled by mult[]. Returns 0, 1 (syntax) or 2 (overflow). */
static int parse_scaled(const char *s, size_t n, const char *suffixes, const uint64_t *mult,
                        uint64_t *out)
{
    size_t d = 0;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    if (d == 0 || n - d > 1)
        return 1;
    uint64_t m = 1;
    if (n - d == 1) {
        char c = s[d];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        const char *f = c ? strchr(suffixes, c) : NULL;
        if (!f)
            return 1;
        m = mult[f - suffixes];
    }
    uint64_t v;
    if (!parse_u64(s, d, &v))
        return 2;
    if (v > UINT64_MAX / m)
        return 2;
    *out = v * m;
    return 0;
}

static void set_number(struct config *cfg, const struct key_def *k, uint64_t v)
{
    char *f = (char *)cfg + k->off;
    switch (k->type) {
    case KT_SIZE64:
        *(uint64_t *)(void *)f = v;
        break;
    case KT_SIZE:
    case KT_COUNT:
        *(size_t *)(void *)f = (size_t)v;
        break;
    case KT_TIME:
    case KT_PORT:
    case KT_MODE:
        *(uint32_t *)(void *)f = (uint32_t)v;
        break;
    case KT_NEWLINE:
    case KT_LOGLEVEL:
    case KT_LOGFORMAT:
    case KT_TLSVER:
    case KT_DNSPREFER:
    case KT_OTLS:
    case KT_SPFACTION:
    case KT_SECCOMPACT:
    case KT_DMARCACT:
        *(int *)(void *)f = (int)v;
        break;
    case KT_BOOL:
        *(bool *)(void *)f = v != 0;
        break;
    default:
        break;
    }
}

static void set_string(struct config *cfg, const struct key_def *k, char *v)
{
    char **f = (char **)(void *)((char *)cfg + k->off);
    free(*f);
    *f = v;
}

static void do_number(struct parser *p, const struct key_def *k, const char *s, size_t n,
                      unsigned line)
{
    static const uint64_t size_mult[] = {KIB, MIB, GIB};
    static const uint64_t time_mult[] = {1, 60, 3600, 86400};
    if (n == 0) {
        set_number(p->cfg, k, k->def);
        return;
    }
    uint64_t v = 0;
    int r;
    const char *what;
    if (k->type == KT_TIME) {
        r = parse_scaled(s, n, "smhd", time_mult, &v);
        what = "a time (digits with an optional s, m, h or d suffix)";
    } else if (k->type == KT_COUNT || k->type == KT_PORT) {
        r = parse_scaled(s, n, "", NULL, &v);
        what = k->type == KT_PORT ? "a port number" : "a number";
    } else {
        r = parse_scaled(s, n, "kmg", size_mult, &v);
        what = "a size (digits with an optional K, M or G suffix)";
    }
    if (r == 1) {
        cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not %s", k->name, CFG_EX(s, n), what);
        return;
    }
    char lo[32], hi[32];
    fmt_quantity(k->min, k->type, lo, sizeof lo);
    fmt_quantity(k->max, k->type, hi, sizeof hi);
    if (r == 2 || v < k->min || v > k->max) {
        cfg_error(&p->dc, line, "%s: %.*s%s is out of range (%s to %s)", k->name, CFG_EX(s, n), lo,
                  hi);
        return;
    }
    set_number(p->cfg, k, v);
}

static void do_enum(struct parser *p, const struct key_def *k, const char *s, size_t n,
                    unsigned line)
{
    size_t nnames;
    const char *list;
    const char *const *names = enum_names(k->type, &nnames, &list);
    if (n == 0) {
        set_number(p->cfg, k, k->def);
        return;
    }
    for (size_t i = 0; i < nnames; i++) {
        if (strlen(names[i]) == n && ascii_nieq(names[i], s, n)) {
            set_number(p->cfg, k, i);
            return;
        }
    }
    cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not one of %s", k->name, CFG_EX(s, n), list);
}

int cfg_parse_ip(const char *s, size_t n, unsigned char addr[16])
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, buf, addr) == 1)
        return AF_INET6;
    return 0;
}

static bool parse_listen(struct parser *p, const struct key_def *k, const char *s, size_t n,
                         unsigned line, struct listen_item *out)
{
    const char *host, *port;
    size_t hlen, plen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || (size_t)(close - s) + 1 >= n || close[1] != ':')
            goto syntax;
        host = s + 1;
        hlen = (size_t)(close - s) - 1;
        port = close + 2;
        plen = n - (size_t)(port - s);
    } else {
        const char *colon = memchr(s, ':', n);
        if (!colon)
            goto syntax;
        if (memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
            cfg_error(&p->dc, line,
                      "%s: \"%.*s%s\": write an IPv6 address in brackets, "
                      "as [address]:port",
                      k->name, CFG_EX(s, n));
            return false;
        }
        host = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        plen = n - hlen - 1;
    }
    int fam = cfg_parse_ip(host, hlen, out->addr);
    if (fam == 0 || (s[0] == '[') != (fam == AF_INET6)) {
        cfg_error(&p->dc, line, "%s: \"%.*s%s\": the host must be a numeric %s address", k->name,
                  CFG_EX(s, n), s[0] == '[' ? "IPv6" : "IPv4");
        return false;
    }
    uint64_t pn;
    if (!parse_u64(port, plen, &pn) || pn < 1 || pn > 65535) {
        cfg_error(&p->dc, line, "%s: \"%.*s%s\": the port must be a number from 1 to 65535",
                  k->name, CFG_EX(s, n));
        return false;
    }
    char pbuf[8];
    snprintf(pbuf, sizeof pbuf, "%u", (unsigned)pn);
    out->host = xstrndup(host, hlen);
    out->port = xstrdup(pbuf);
    out->line = line;
    out->family = fam;
    out->portnum = (unsigned)pn;
    return true;
syntax:
    cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not host:port (IPv6 as [address]:port)", k->name,
              CFG_EX(s, n));
    return false;
}

static void do_listen(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                      size_t voff)
{
    struct listen_set set = {0, NULL};
    size_t pos = voff, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        struct listen_item it = {0};
        if (!parse_listen(p, k, l->s + off, n, cfg_lline_line(l, off), &it)) {
            p->listen_errors = true;
            continue;
        }
        set.v = xreallocarray(set.v, set.n + 1, sizeof *set.v);
        set.v[set.n++] = it;
    }
    listen_set_free(&p->listen[k->role]);
    p->listen[k->role] = set;
}

static bool parse_cidr(struct parser *p, const struct key_def *k, const char *s, size_t n,
                       unsigned line, struct config_cidr *out)
{
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    const char *a = s;
    if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
        a++;
        alen -= 2;
    }
    int fam = cfg_parse_ip(a, alen, out->addr);
    if (fam == 0 || (a != s && fam != AF_INET6)) {
        cfg_error(&p->dc, line,
                  "%s: \"%.*s%s\" is not a numeric address or address/prefix (as 10.0.0.0/8 "
                  "or ::1/128)",
                  k->name, CFG_EX(s, n));
        return false;
    }
    unsigned max = fam == AF_INET ? 32 : 128;
    uint64_t prefix = max;
    if (slash) {
        size_t plen = n - alen - 1 - (a != s ? 2 : 0);
        if (!parse_u64(slash + 1, plen, &prefix) || prefix > max) {
            cfg_error(&p->dc, line, "%s: \"%.*s%s\": the prefix length must be 0 to %u", k->name,
                      CFG_EX(s, n), max);
            return false;
        }
    }
    out->family = fam;
    out->prefix = (unsigned)prefix;
    bool host_bits = false;
    for (unsigned bit = out->prefix; bit < max; bit++) {
        unsigned char mask = (unsigned char)(0x80u >> (bit % 8));
        if (out->addr[bit / 8] & mask) {
            host_bits = true;
            out->addr[bit / 8] &= (unsigned char)~mask;
        }
    }
    char txt[INET6_ADDRSTRLEN];
    inet_ntop(fam, out->addr, txt, sizeof txt);
    if (host_bits)
        cfg_warn(&p->dc, line, "%s: \"%.*s%s\" has host bits set; using %s/%u", k->name,
                 CFG_EX(s, n), txt, out->prefix);
    /* An IPv4-mapped IPv6 network is the IPv4 network it maps. */
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && out->prefix >= 96 && memcmp(out->addr, mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
    }
    if (out->prefix == 0 && strcmp(k->name, "trusted_networks") == 0)
        cfg_warn(&p->dc, line,
                 "%s: \"%.*s%s\" trusts every %s client to relay: this is an open relay", k->name,
                 CFG_EX(s, n), out->family == AF_INET ? "IPv4" : "IPv6");
    return true;
}

static void do_trusted(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                       size_t voff)
{
    struct config_cidr *v = NULL;
    size_t nv = 0;
    size_t pos = voff, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        struct config_cidr c;
        memset(&c, 0, sizeof c);
        if (!parse_cidr(p, k, l->s + off, n, cfg_lline_line(l, off), &c))
            continue;
        v = xreallocarray(v, nv + 1, sizeof *v);
        v[nv++] = c;
    }
    if (strcmp(k->name, "trusted_networks") == 0) {
        free(p->cfg->trusted);
        p->cfg->trusted = v;
        p->cfg->ntrusted = nv;
    } else {
        free(p->cfg->mailauth_skip);
        p->cfg->mailauth_skip = v;
        p->cfg->nmailauth_skip = nv;
    }
}

static void do_domains(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                       size_t voff)
{
    struct config_list list = {0, NULL};
    size_t pos = voff, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        const char *s = l->s + off;
        if (!cfg_valid_domain(s, n, true)) {
            cfg_error(&p->dc, cfg_lline_line(l, off), "%s: \"%.*s%s\" is not a domain name",
                      k->name, CFG_EX(s, n));
            continue;
        }
        list.v = xreallocarray(list.v, list.n + 1, sizeof *list.v);
        list.v[list.n] = xstrndup(s, n);
        ascii_lower(list.v[list.n++]);
    }
    cfg_dedup(list.v, NULL, &list.n);
    list_free(&p->cfg->local_domains);
    p->cfg->local_domains = list;
}

/* dns_forwarders: numeric addresses, each with an optional "@port" (libunbound's
   syntax, kept as written). */
static void do_forwarders(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                          size_t voff)
{
    struct config_list list = {0, NULL};
    size_t pos = voff, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        const char *s = l->s + off;
        const char *at = memchr(s, '@', n);
        size_t alen = at ? (size_t)(at - s) : n;
        unsigned char addr[16];
        uint64_t port = 53;
        bool ok = cfg_parse_ip(s, alen, addr) != 0;
        if (ok && at)
            ok = parse_u64(at + 1, n - alen - 1, &port) && port >= 1 && port <= 65535;
        if (!ok) {
            cfg_error(&p->dc, cfg_lline_line(l, off),
                      "%s: \"%.*s%s\" is not a numeric address with an optional @port", k->name,
                      CFG_EX(s, n));
            continue;
        }
        list.v = xreallocarray(list.v, list.n + 1, sizeof *list.v);
        list.v[list.n++] = xstrndup(s, n);
    }
    list_free(&p->cfg->dns_forwarders);
    p->cfg->dns_forwarders = list;
}

static void do_mailboxes(struct parser *p, const struct key_def *k, const struct cfg_lline *l,
                         size_t voff)
{
    struct config_list list = {0, NULL};
    unsigned *lines = NULL;
    size_t pos = voff, off, n;
    while (cfg_next_token(l, &pos, &off, &n)) {
        const char *s = l->s + off;
        unsigned line = cfg_lline_line(l, off);
        if (!cfg_valid_address(s, n)) {
            cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not an address local@domain", k->name,
                      CFG_EX(s, n));
            continue;
        }
        list.v = xreallocarray(list.v, list.n + 1, sizeof *list.v);
        lines = xreallocarray(lines, list.n + 1, sizeof *lines);
        list.v[list.n] = xstrndup(s, n);
        ascii_lower(list.v[list.n]);
        lines[list.n++] = line;
    }
    cfg_dedup(list.v, lines, &list.n);
    list_free(&p->cfg->mailboxes);
    free(p->mailbox_line);
    p->cfg->mailboxes = list;
    p->mailbox_line = lines;
}

/* A header field name: ftext (RFC 5322 §3.6.8), short enough to leave room
   for its value on a line. */
static bool valid_field_name(const char *s, size_t n)
{
    if (n == 0 || n > 76)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
            return false;
    return true;
}

/* A user name as useradd(8) takes it by default (the portable set). */
static bool valid_user_name(const char *s, size_t n)
{
    if (n == 0 || n > 32 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static void config_line(void *arg, const struct cfg_lline *l)
{
    struct parser *p = arg;
    unsigned line = l->nseg ? l->seg[0].line : 0;
    size_t i = 0;
    while (i < l->len && !is_space(l->s[i]) && l->s[i] != '=')
        i++;
    size_t klen = i;
    while (i < l->len && is_space(l->s[i]))
        i++;
    if (i >= l->len || l->s[i] != '=' || klen == 0) {
        cfg_error(&p->dc, line, "syntax error: expected \"key = value\", not \"%.*s%s\"",
                  CFG_EX(l->s, l->len));
        return;
    }
    const struct key_def *k = key_find(l->s, klen);
    if (!k) {
        cfg_error(&p->dc, line, "unknown key \"%.*s%s\"", CFG_EX(l->s, klen));
        return;
    }
    size_t voff = i + 1;
    while (voff < l->len && is_space(l->s[voff]))
        voff++;
    const char *v = l->s + voff;
    size_t vlen = l->len - voff;
    /* As in Postfix, '#' starts a comment only at the start of a line; a word
       of a value that starts with '#' is most likely a comment gone wrong. */
    size_t tpos = voff, toff, tlen;
    while (cfg_next_token(l, &tpos, &toff, &tlen)) {
        if (l->s[toff] == '#') {
            cfg_error(&p->dc, cfg_lline_line(l, toff),
                      "%s: \"%.*s%s\" in the value: a comment must be on a line of its own",
                      k->name, CFG_EX(l->s + toff, l->len - toff));
            return;
        }
    }

    switch (k->type) {
    case KT_LISTEN:
        do_listen(p, k, l, voff);
        return;
    case KT_DOMAINS:
        do_domains(p, k, l, voff);
        return;
    case KT_MAILBOXES:
        do_mailboxes(p, k, l, voff);
        return;
    case KT_TRUSTED:
        do_trusted(p, k, l, voff);
        return;
    case KT_FORWARDERS:
        do_forwarders(p, k, l, voff);
        return;
    default:
        break;
    }

    if (!scalar_value(p, k, l, voff, line))
        return;
    switch (k->type) {
    case KT_HOSTNAME:
        if (vlen == 0) {
            set_string(p->cfg, k, NULL);
        } else if (!cfg_valid_domain(v, vlen, false)) {
            cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not a domain name", k->name,
                      CFG_EX(v, vlen));
        } else {
            set_string(p->cfg, k, xstrndup(v, vlen));
        }
        break;
    case KT_PATH:
        set_string(p->cfg, k, vlen ? xstrndup(v, vlen) : xstrdup(k->sdef));
        break;
    case KT_PATH_OPT:
        set_string(p->cfg, k, vlen ? xstrndup(v, vlen) : NULL);
        break;
    case KT_HOSTPORT: {
        struct listen_item it = {0};
        if (vlen == 0) {
            set_string(p->cfg, k, NULL);
        } else if (parse_listen(p, k, v, vlen, line, &it)) {
            size_t nlen = strlen(it.host) + strlen(it.port) + 4;
            char *norm = xmalloc(nlen);
            snprintf(norm, nlen, it.family == AF_INET6 ? "[%s]:%s" : "%s:%s", it.host, it.port);
            set_string(p->cfg, k, norm);
            free(it.host);
            free(it.port);
        }
        break;
    }
    case KT_STRING:
        set_string(p->cfg, k, vlen ? xstrndup(v, vlen) : k->sdef ? xstrdup(k->sdef) : NULL);
        break;
    case KT_NEWLINE:
    case KT_LOGLEVEL:
    case KT_LOGFORMAT:
    case KT_TLSVER:
    case KT_BOOL:
    case KT_DNSPREFER:
    case KT_OTLS:
    case KT_SPFACTION:
    case KT_SECCOMPACT:
    case KT_DMARCACT:
        do_enum(p, k, v, vlen, line);
        break;
    case KT_USERNAME:
        if (vlen == 0) {
            set_string(p->cfg, k, xstrdup(k->sdef));
        } else if (!valid_user_name(v, vlen)) {
            cfg_error(&p->dc, line,
                      "%s: \"%.*s%s\" is not a user name (letters, digits, '.', '_' and '-', "
                      "not starting with '-', at most 32)",
                      k->name, CFG_EX(v, vlen));
        } else {
            set_string(p->cfg, k, xstrndup(v, vlen));
        }
        break;
    case KT_LOGTARGET:
        if (vlen == 0)
            set_string(p->cfg, k, xstrdup(k->sdef));
        else if ((vlen == 6 && memcmp(v, "stderr", 6) == 0) ||
                 (vlen == 6 && memcmp(v, "syslog", 6) == 0) || memchr(v, '/', vlen))
            set_string(p->cfg, k, xstrndup(v, vlen));
        else
            cfg_error(&p->dc, line,
                      "%s: \"%.*s%s\" is not stderr, syslog or the path of a file (a path holds "
                      "a '/': write ./%.*s%s for a file in the working directory)",
                      k->name, CFG_EX(v, vlen), CFG_EX(v, vlen));
        break;
    case KT_FIELDNAME:
        if (vlen == 0) {
            set_string(p->cfg, k, xstrdup(k->sdef));
        } else if (!valid_field_name(v, vlen)) {
            cfg_error(&p->dc, line,
                      "%s: \"%.*s%s\" is not a header field name (printable characters "
                      "without a colon, at most 76)",
                      k->name, CFG_EX(v, vlen));
        } else {
            set_string(p->cfg, k, xstrndup(v, vlen));
        }
        break;
    case KT_MODE: {
        uint64_t m = 0;
        size_t d = 0;
        while (d < vlen && v[d] >= '0' && v[d] <= '7' && d < 4)
            m = m * 8 + (uint64_t)(v[d++] - '0');
        if (vlen == 0 || d != vlen || m > k->max)
            cfg_error(&p->dc, line, "%s: \"%.*s%s\" is not a file mode (octal, 0 to 0777)", k->name,
                      CFG_EX(v, vlen));
        else
            set_number(p->cfg, k, m);
        break;
    }
    default:
        do_number(p, k, v, vlen, line);
        break;
    }
}

static void set_defaults(struct config *cfg)
{
    /* mailauth_skip_networks: loopback, as policyd-spf's Skip_Addresses and
       OpenDMARC's IgnoreHosts leave it out by default */
    static const struct config_cidr loopback[2] = {
        {AF_INET, {127}, 8},
        {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
    };
    cfg->mailauth_skip = xmalloc(sizeof loopback);
    memcpy(cfg->mailauth_skip, loopback, sizeof loopback);
    cfg->nmailauth_skip = 2;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_def *k = &keys[i];
        switch (k->type) {
        case KT_PATH:
            set_string(cfg, k, xstrdup(k->sdef));
            break;
        case KT_STRING:
        case KT_LOGTARGET:
        case KT_FIELDNAME:
        case KT_USERNAME:
            set_string(cfg, k, k->sdef ? xstrdup(k->sdef) : NULL);
            break;
        case KT_DMARCACT:
        case KT_NEWLINE:
        case KT_LOGLEVEL:
        case KT_LOGFORMAT:
        case KT_TLSVER:
        case KT_BOOL:
        case KT_DNSPREFER:
        case KT_OTLS:
        case KT_SPFACTION:
        case KT_SECCOMPACT:
        case KT_PORT:
        case KT_SIZE64:
        case KT_SIZE:
        case KT_COUNT:
        case KT_TIME:
        case KT_MODE:
            set_number(cfg, k, k->def);
            break;
        default:
            break;
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The rules that span keys, checked once every line has been read. */
static void check_all(struct parser *p)
{
    struct config *cfg = p->cfg;

    size_t total = 0;
    for (int r = 0; r < 3; r++)
        total += p->listen[r].n;
    cfg->listen = xcalloc(total, sizeof *cfg->listen);
    for (int r = 0; r < 3; r++) {
        struct listen_set *s = &p->listen[r];
        for (size_t i = 0; i < s->n; i++) {
            struct listen_item *it = &s->v[i];
            bool dup = false;
            for (size_t r2 = 0; r2 <= (size_t)r && !dup; r2++) {
                struct listen_set *s2 = &p->listen[r2];
                size_t end = r2 == (size_t)r ? i : s2->n;
                for (size_t j = 0; j < end && !dup; j++) {
                    struct listen_item *o = &s2->v[j];
                    if (o->family == it->family && memcmp(o->addr, it->addr, 16) == 0 &&
                        o->portnum == it->portnum) {
                        cfg_error(&p->dc, it->line,
                                  "%s_listen: %s%s%s:%s is already a listener (line %u)",
                                  config_role_name((enum config_role)r),
                                  it->family == AF_INET6 ? "[" : "", it->host,
                                  it->family == AF_INET6 ? "]" : "", it->port, o->line);
                        dup = true;
                    }
                }
            }
            if (dup)
                continue;
            struct config_listen *cl = &cfg->listen[cfg->nlisten++];
            cl->role = (enum config_role)r;
            cl->host = it->host;
            cl->port = it->port;
            it->host = it->port = NULL;
        }
    }
    if (total == 0 && !p->listen_errors)
        cfg_error(&p->dc, 0,
                  "no listener: set at least one of mx_listen, submission_listen, "
                  "submissions_listen");

    if (!cfg->tls_cert_file != !cfg->tls_key_file)
        cfg_error(&p->dc, 0, "tls_cert_file and tls_key_file must be given together");
    else if (!cfg->tls_cert_file && p->listen[ROLE_SUBMISSIONS].n > 0)
        cfg_error(&p->dc, 0,
                  "submissions_listen needs tls_cert_file and tls_key_file (implicit TLS)");

    /* relayhost: "[host]:port" or "host:port" (transport.h). */
    if (cfg->relayhost) {
        struct route r;
        char err[300];
        if (transport_parse_nexthop(cfg->relayhost, strlen(cfg->relayhost), false, &r, err,
                                    sizeof err) < 0)
            cfg_error(&p->dc, 0, "relayhost: %s", err);
    }
    if (!cfg->authserv_id && cfg->hostname)
        cfg->authserv_id = xstrdup(cfg->hostname);
    if (!cfg->sendmail_origin && cfg->hostname)
        cfg->sendmail_origin = xstrdup(cfg->hostname);

    if (cfg->relayhost_auth_file && !cfg->relayhost)
        cfg_error(&p->dc, 0, "relayhost_auth_file is given without relayhost");

    /* Every mailbox in a local domain. */
    size_t nd = cfg->local_domains.n;
    char **doms = xmalloc((nd ? nd : 1) * sizeof *doms);
    if (nd) {
        memcpy(doms, cfg->local_domains.v, nd * sizeof *doms);
        qsort(doms, nd, sizeof *doms, cmp_str);
    }
    for (size_t i = 0; i < cfg->mailboxes.n; i++) {
        const char *m = cfg->mailboxes.v[i];
        const char *dom = strchr(m, '@') + 1;
        if (!nd || !bsearch(&dom, doms, nd, sizeof *doms, cmp_str))
            cfg_error(&p->dc, p->mailbox_line[i],
                      "mailboxes: the domain of \"%s\" is not listed in local_domains", m);
    }
    free(doms);
}

struct config *config_parse(const char *text, size_t len, const char *file,
                            struct config_diags *diags)
{
    struct parser p;
    memset(&p, 0, sizeof p);
    p.dc.diags = diags;
    p.dc.file = file;
    p.cfg = xcalloc(1, sizeof *p.cfg);
    set_defaults(p.cfg);

    cfg_read_lines(text ? text : "", text ? len : 0, false, &p.dc, config_line, &p);
    check_all(&p);

    for (int r = 0; r < 3; r++)
        listen_set_free(&p.listen[r]);
    free(p.mailbox_line);
    if (p.dc.errors > 0) {
        config_free(p.cfg);
        return NULL;
    }
    return p.cfg;
}

/* ---------------------------------------------------------------------
 * Loading (I/O)
 */

char *cfg_read_file(const char *file, size_t max, size_t *len, struct config_diags *diags)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        cfg_diag_add(diags, file, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                cfg_diag_add(diags, file, 0, "file is larger than %zu octets", max);
                free(buf);
                fclose(f);
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        cfg_diag_add(diags, file, 0, "cannot read: %s", strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    if (n > max) {
        cfg_diag_add(diags, file, 0, "file is larger than %zu octets", max);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

struct config *config_load(const char *file, struct config_diags *diags)
{
    size_t len;
    char *text = cfg_read_file(file, CONFIG_FILE_MAX, &len, diags);
    if (!text)
        return NULL;
    struct config *cfg = config_parse(text, len, file, diags);
    free(text);
    if (cfg && !cfg->hostname) {
        char name[HOST_NAME_MAX + 1];
        if (gethostname(name, sizeof name) != 0) {
            cfg_diag_add(diags, file, 0,
                         "hostname is not set and the system host name is unknown (%s)",
                         strerror(errno));
            config_free(cfg);
            return NULL;
        }
        name[sizeof name - 1] = '\0';
        if (!cfg_valid_domain(name, strlen(name), false)) {
            cfg_diag_add(diags, file, 0,
                         "hostname is not set and the system host name \"%.*s%s\" is not a "
                         "domain name",
                         CFG_EX(name, strlen(name)));
            config_free(cfg);
            return NULL;
        }
        cfg->hostname = xstrdup(name);
    }
    if (cfg && !cfg->authserv_id)
        cfg->authserv_id = xstrdup(cfg->hostname);
    if (cfg && !cfg->sendmail_origin)
        cfg->sendmail_origin = xstrdup(cfg->hostname);
    return cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->hostname);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        free(cfg->listen[i].host);
        free(cfg->listen[i].port);
    }
    free(cfg->listen);
    list_free(&cfg->local_domains);
    list_free(&cfg->mailboxes);
    free(cfg->aliases_file);
    free(cfg->maildir_root);
    free(cfg->spool_dir);
    free(cfg->trusted);
    free(cfg->mailauth_skip);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    free(cfg->tls_ciphers);
    free(cfg->tls_ciphersuites);
    free(cfg->users_file);
    free(cfg->sender_login_maps);
    list_free(&cfg->dns_forwarders);
    free(cfg->dkim_key_dir);
    free(cfg->outbound_tls_ca_file);
    free(cfg->dns_trust_anchor);
    free(cfg->relayhost);
    free(cfg->relayhost_auth_file);
    free(cfg->transport_file);
    free(cfg->log_target);
    free(cfg->dmarc_quarantine_header);
    free(cfg->dmarc_report_dir);
    free(cfg->authserv_id);
    free(cfg->run_user);
    free(cfg->control_socket);
    free(cfg->control_group);
    free(cfg->sendmail_origin);
    free(cfg->metrics_listen);
    free(cfg);
}

/* ---------------------------------------------------------------------
 * Queries
 */

bool config_is_local_domain(const struct config *cfg, const char *domain)
{
    if (!cfg || !domain)
        return false;
    for (size_t i = 0; i < cfg->local_domains.n; i++)
        if (ascii_ieq(cfg->local_domains.v[i], domain))
            return true;
    return false;
}

bool config_is_mailbox(const struct config *cfg, const char *addr)
{
    if (!cfg || !addr)
        return false;
    for (size_t i = 0; i < cfg->mailboxes.n; i++)
        if (ascii_ieq(cfg->mailboxes.v[i], addr))
            return true;
    return false;
}

static bool cidr_match(const struct config_cidr *c, const unsigned char *addr, unsigned max)
{
    unsigned prefix = c->prefix > max ? max : c->prefix;
    size_t bytes = prefix / 8;
    if (memcmp(c->addr, addr, bytes) != 0)
        return false;
    unsigned rest = prefix % 8;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (c->addr[bytes] & mask) == (addr[bytes] & mask);
}

static bool in_networks(const struct config_cidr *v, size_t n, const struct sockaddr *sa);

bool config_is_trusted(const struct config *cfg, const struct sockaddr *sa)
{
    return cfg && sa && in_networks(cfg->trusted, cfg->ntrusted, sa);
}

bool config_is_mailauth_skipped(const struct config *cfg, const struct sockaddr *sa)
{
    return cfg && sa && in_networks(cfg->mailauth_skip, cfg->nmailauth_skip, sa);
}

static bool in_networks(const struct config_cidr *v, size_t n, const struct sockaddr *sa)
{
    unsigned char addr[16];
    int family;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        memcpy(addr, &sin->sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
            family = AF_INET;
        } else {
            memcpy(addr, sin6->sin6_addr.s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_cidr *c = &v[i];
        if (c->family == family && cidr_match(c, addr, family == AF_INET ? 32 : 128))
            return true;
    }
    return false;
}

const char *config_role_name(enum config_role role)
{
    switch (role) {
    case ROLE_MX:
        return "mx";
    case ROLE_SUBMISSION:
        return "submission";
    case ROLE_SUBMISSIONS:
        return "submissions";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------
 * Reloading: comparing and copying keys
 */

size_t config_key_count(void)
{
    return NKEYS;
}

const char *config_key_name(size_t i)
{
    return i < NKEYS ? keys[i].name : NULL;
}

int config_key_reload(const char *key)
{
    const struct key_def *k = key ? key_find(key, strlen(key)) : NULL;
    return k ? (int)k->reload : -1;
}

static bool is_string_key(enum key_type t)
{
    return t == KT_HOSTNAME || t == KT_PATH || t == KT_PATH_OPT || t == KT_STRING ||
           t == KT_FIELDNAME || t == KT_USERNAME || t == KT_LOGTARGET || t == KT_HOSTPORT;
}

static bool is_list_key(enum key_type t)
{
    return t == KT_DOMAINS || t == KT_MAILBOXES || t == KT_FORWARDERS;
}

static uint64_t get_number(const struct config *cfg, const struct key_def *k)
{
    const char *f = (const char *)cfg + k->off;
    switch (k->type) {
    case KT_SIZE64:
        return *(const uint64_t *)(const void *)f;
    case KT_SIZE:
    case KT_COUNT:
        return *(const size_t *)(const void *)f;
    case KT_TIME:
    case KT_PORT:
    case KT_MODE:
        return *(const uint32_t *)(const void *)f;
    case KT_NEWLINE:
    case KT_LOGLEVEL:
    case KT_TLSVER:
    case KT_DNSPREFER:
    case KT_OTLS:
    case KT_SPFACTION:
    case KT_DMARCACT:
    case KT_SECCOMPACT:
    case KT_LOGFORMAT:
        return (uint64_t)(unsigned)*(const int *)(const void *)f;
    case KT_BOOL:
        return *(const bool *)(const void *)f;
    default:
        return 0;
    }
}

/* The field of a string key (NULL when unset). */
static char **str_field(const struct config *cfg, const struct key_def *k)
{
    return (char **)(void *)((char *)(uintptr_t)cfg + k->off);
}

static struct config_list *list_field(const struct config *cfg, const struct key_def *k)
{
    return (struct config_list *)(void *)((char *)(uintptr_t)cfg + k->off);
}

/* The networks of a KT_TRUSTED key and their count. */
static struct config_cidr **cidr_field(const struct config *cfg, const struct key_def *k,
                                       size_t **n)
{
    struct config *c = (struct config *)(uintptr_t)cfg;
    if (strcmp(k->name, "trusted_networks") == 0) {
        *n = &c->ntrusted;
        return &c->trusted;
    }
    *n = &c->nmailauth_skip;
    return &c->mailauth_skip;
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Is every role-r listener of a also one of b (same address and port)? */
static bool listen_subset(const struct config *a, const struct config *b, enum config_role r)
{
    for (size_t i = 0; i < a->nlisten; i++) {
        const struct config_listen *x = &a->listen[i];
        if (x->role != r)
            continue;
        unsigned char xa[16], ya[16];
        int xf = cfg_parse_ip(x->host, strlen(x->host), xa);
        bool found = false;
        for (size_t j = 0; j < b->nlisten && !found; j++) {
            const struct config_listen *y = &b->listen[j];
            if (y->role != r || strcmp(x->port, y->port) != 0)
                continue;
            int yf = cfg_parse_ip(y->host, strlen(y->host), ya);
            found = xf == yf && (xf ? memcmp(xa, ya, 16) == 0 : strcmp(x->host, y->host) == 0);
        }
        if (!found)
            return false;
    }
    return true;
}

static bool key_same(const struct config *a, const struct config *b, const struct key_def *k)
{
    if (is_string_key(k->type))
        return str_same(*str_field(a, k), *str_field(b, k));
    if (is_list_key(k->type)) {
        const struct config_list *x = list_field(a, k), *y = list_field(b, k);
        if (x->n != y->n)
            return false;
        for (size_t i = 0; i < x->n; i++)
            if (strcmp(x->v[i], y->v[i]) != 0)
                return false;
        return true;
    }
    if (k->type == KT_TRUSTED) {
        size_t *nx, *ny;
        struct config_cidr **x = cidr_field(a, k, &nx), **y = cidr_field(b, k, &ny);
        if (*nx != *ny)
            return false;
        for (size_t i = 0; i < *nx; i++) {
            const struct config_cidr *p = &(*x)[i], *q = &(*y)[i];
            if (p->family != q->family || p->prefix != q->prefix ||
                memcmp(p->addr, q->addr, sizeof p->addr) != 0)
                return false;
        }
        return true;
    }
    if (k->type == KT_LISTEN)
        return listen_subset(a, b, k->role) && listen_subset(b, a, k->role);
    return get_number(a, k) == get_number(b, k);
}

/* Replace dst's role-r listeners by copies of src's, keeping the order of
   roles that config_parse() gives. */
static void listen_copy(struct config *dst, const struct config *src, enum config_role r)
{
    size_t n = 0;
    for (size_t i = 0; i < dst->nlisten; i++)
        n += dst->listen[i].role != r;
    for (size_t i = 0; i < src->nlisten; i++)
        n += src->listen[i].role == r;
    struct config_listen *v = xcalloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (int role = ROLE_MX; role <= ROLE_SUBMISSIONS; role++) {
        const struct config *from = role == (int)r ? src : dst;
        for (size_t i = 0; i < from->nlisten; i++) {
            if ((int)from->listen[i].role != role)
                continue;
            v[k].role = (enum config_role)role;
            v[k].host = xstrdup(from->listen[i].host);
            v[k].port = xstrdup(from->listen[i].port);
            k++;
        }
    }
    for (size_t i = 0; i < dst->nlisten; i++) {
        free(dst->listen[i].host);
        free(dst->listen[i].port);
    }
    free(dst->listen);
    dst->listen = v;
    dst->nlisten = k;
}

static void key_copy(struct config *dst, const struct config *src, const struct key_def *k)
{
    if (is_string_key(k->type)) {
        const char *v = *str_field(src, k);
        set_string(dst, k, v ? xstrdup(v) : NULL);
    } else if (is_list_key(k->type)) {
        const struct config_list *from = list_field(src, k);
        struct config_list *to = list_field(dst, k);
        list_free(to);
        to->v = xcalloc(from->n ? from->n : 1, sizeof *to->v);
        for (size_t i = 0; i < from->n; i++)
            to->v[i] = xstrdup(from->v[i]);
        to->n = from->n;
    } else if (k->type == KT_TRUSTED) {
        size_t *nfrom, *nto;
        struct config_cidr **from = cidr_field(src, k, &nfrom), **to = cidr_field(dst, k, &nto);
        free(*to);
        *to = xcalloc(*nfrom ? *nfrom : 1, sizeof **to);
        if (*nfrom)
            memcpy(*to, *from, *nfrom * sizeof **to);
        *nto = *nfrom;
    } else if (k->type == KT_LISTEN) {
        listen_copy(dst, src, k->role);
    } else {
        set_number(dst, k, get_number(src, k));
    }
}

size_t config_diff(const struct config *a, const struct config *b,
                   void (*fn)(void *arg, const char *key, enum config_reload how), void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (key_same(a, b, &keys[i]))
            continue;
        n++;
        if (fn)
            fn(arg, keys[i].name, keys[i].reload);
    }
    return n;
}

bool config_copy_key(struct config *dst, const struct config *src, const char *key)
{
    const struct key_def *k = key ? key_find(key, strlen(key)) : NULL;
    if (!k)
        return false;
    key_copy(dst, src, k);
    return true;
}

void config_keep_restart_keys(struct config *next, const struct config *running)
{
    bool follows = next->authserv_id && str_same(next->authserv_id, next->hostname);
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].reload == CONFIG_RELOAD_RESTART)
            key_copy(next, running, &keys[i]);
    if (follows && next->hostname && !str_same(next->authserv_id, next->hostname)) {
        free(next->authserv_id);
        next->authserv_id = xstrdup(next->hostname);
    }
}

struct config *config_dup(const struct config *cfg)
{
    struct config *c = xcalloc(1, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++)
        key_copy(c, cfg, &keys[i]);
    return c;
}
