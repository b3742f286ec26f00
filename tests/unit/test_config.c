/*
 * test_config - unit tests of config_parse() and its helpers: every key with
 * its default, sizes and times with suffixes and overflow, lists, comments,
 * continuation lines, repeated keys, errors with their lines, trusted
 * networks, and the embedded default configuration (examples/tern.conf).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "smtp/smtp.h"

#ifndef TERN_SOURCE_ROOT
#define TERN_SOURCE_ROOT "."
#endif

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

/* The smallest valid file: one listener and one local domain. */
static const char base[] = "mx_listen = 127.0.0.1:2525\n"
                           "local_domains = example.test\n";
#define BASE_LINES 2

static struct config *parse(const char *text, struct config_diags *d)
{
    return config_parse(text, strlen(text), "t.conf", d);
}

static char *cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    s[la + lb] = '\n';
    s[la + lb + 1] = '\0';
    return s;
}

static char *read_source(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", TERN_SOURCE_ROOT, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Does d hold a diagnostic at `line` whose message contains `text`? */
static bool has_diag(const struct config_diags *d, unsigned line, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && strstr(d->v[i].msg, text) &&
            strcmp(d->v[i].file, "t.conf") == 0)
            return true;
    return false;
}

static void dump_diags(const struct config_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("# diag %s:%u: %s\n", d->v[i].file, d->v[i].line, d->v[i].msg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse(base, &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_null(c->hostname);
    assert_int_equal(c->nlisten, 1);
    assert_int_equal(c->listen[0].role, ROLE_MX);
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_string_equal(c->listen[0].port, "2525");
    assert_int_equal(c->local_domains.n, 1);
    assert_int_equal(c->mailboxes.n, 0);
    assert_null(c->aliases_file);
    assert_string_equal(c->maildir_root, "var/mail");
    assert_string_equal(c->spool_dir, "var/spool");
    assert_string_equal(c->dkim_key_dir, "/etc/tern/dkim");
    assert_int_equal(c->ntrusted, 0);
    /* loopback is not checked by SPF, DKIM and DMARC unless told */
    assert_int_equal(c->nmailauth_skip, 2);
    assert_int_equal(c->mailauth_skip[0].family, AF_INET);
    assert_int_equal(c->mailauth_skip[0].prefix, 8);
    assert_int_equal(c->mailauth_skip[1].family, AF_INET6);
    assert_int_equal(c->mailauth_skip[1].prefix, 128);
    assert_int_equal(c->bare_newline, SMTP_NEWLINE_REJECT);
    assert_true(c->message_size_limit == 50 * MIB);
    assert_int_equal(c->max_recipients, 1000);
    assert_int_equal(c->max_command_line, 512);
    assert_int_equal(c->max_text_line, 1000);
    assert_int_equal(c->max_header_count, 1000);
    assert_int_equal(c->max_errors, 20);
    assert_int_equal(c->max_junk_commands, 100);
    assert_int_equal(c->max_connections, 1000);
    assert_int_equal(c->max_connections_per_client, 50);
    assert_int_equal(c->idle_timeout, 300);
    assert_int_equal(c->session_timeout, 3600);
    assert_int_equal(c->min_data_rate, 500);
    assert_int_equal(c->min_data_rate_grace, 120);
    assert_true(c->spool_segment_size == 64 * MIB);
    assert_int_equal(c->delivery_workers, 0);
    assert_int_equal(c->delivery_concurrency, 64);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->log_format, LOG_FORMAT_TEXT);
    assert_string_equal(c->log_target, "stderr");
    assert_true(c->spf_verify);
    assert_int_equal(c->spf_fail_action, CONFIG_SPF_FAIL_RECORD);
    assert_int_equal(c->spf_timeout, 20);
    config_free(c);
    config_diags_free(&d);
}

enum width { W64, WSIZE, W32, WINT };

static const struct num_case {
    const char *line;
    size_t off;
    enum width w;
    uint64_t want;
} num_cases[] = {
#define N(line, field, w, want)                                                                    \
    {                                                                                              \
        line, offsetof(struct config, field), w, want                                              \
    }
    N("message_size_limit = 10M", message_size_limit, W64, 10 * MIB),
    N("message_size_limit = 10m", message_size_limit, W64, 10 * MIB),
    N("message_size_limit = 1G", message_size_limit, W64, GIB),
    N("message_size_limit = 2g", message_size_limit, W64, 2 * GIB),
    N("message_size_limit = 4K", message_size_limit, W64, 4 * KIB),
    N("message_size_limit = 1024", message_size_limit, W64, 1024),
    N("message_size_limit = 123456789", message_size_limit, W64, 123456789),
    N("message_size_limit =", message_size_limit, W64, 50 * MIB),
    N("max_recipients = 100", max_recipients, WSIZE, 100),
    N("max_recipients = 100000", max_recipients, WSIZE, 100000),
    N("max_recipients = 0250", max_recipients, WSIZE, 250),
    N("max_recipients =", max_recipients, WSIZE, 1000),
    N("max_command_line = 512", max_command_line, WSIZE, 512),
    N("max_command_line = 1k", max_command_line, WSIZE, 1024),
    N("max_command_line = 64K", max_command_line, WSIZE, 65536),
    N("max_text_line = 1000", max_text_line, WSIZE, 1000),
    N("max_text_line = 900K", max_text_line, WSIZE, 900 * 1024),
    N("max_text_line = 1000000", max_text_line, WSIZE, 1000000),
    N("max_header_count = 50", max_header_count, WSIZE, 50),
    N("max_header_count = 100000", max_header_count, WSIZE, 100000),
    N("max_errors = 1", max_errors, WSIZE, 1),
    N("max_errors = 10000", max_errors, WSIZE, 10000),
    N("max_junk_commands = 7", max_junk_commands, WSIZE, 7),
    N("max_connections = 100000", max_connections, WSIZE, 100000),
    N("max_connections_per_client = 3", max_connections_per_client, WSIZE, 3),
    N("idle_timeout = 45", idle_timeout, W32, 45),
    N("idle_timeout = 30s", idle_timeout, W32, 30),
    N("idle_timeout = 5m", idle_timeout, W32, 300),
    N("idle_timeout = 5M", idle_timeout, W32, 300),
    N("idle_timeout = 1h", idle_timeout, W32, 3600),
    N("idle_timeout =", idle_timeout, W32, 300),
    N("session_timeout = 1d", session_timeout, W32, 86400),
    N("session_timeout = 90m", session_timeout, W32, 5400),
    N("session_timeout = 1", session_timeout, W32, 1),
    N("min_data_rate = 0", min_data_rate, WSIZE, 0),
    N("min_data_rate = 1000000000", min_data_rate, WSIZE, 1000000000),
    N("min_data_rate =", min_data_rate, WSIZE, 500),
    N("min_data_rate_grace = 3s", min_data_rate_grace, W32, 3),
    N("min_data_rate_grace = 1h", min_data_rate_grace, W32, 3600),
    N("min_data_rate_grace =", min_data_rate_grace, W32, 120),
    N("spool_segment_size = 64K", spool_segment_size, W64, 64 * KIB),
    N("spool_segment_size = 16G", spool_segment_size, W64, 16 * GIB),
    N("spool_segment_size = 1M", spool_segment_size, W64, MIB),
    N("delivery_workers = 0", delivery_workers, WSIZE, 0),
    N("delivery_workers = 1", delivery_workers, WSIZE, 1),
    N("delivery_workers = 256", delivery_workers, WSIZE, 256),
    N("delivery_concurrency = 10000", delivery_concurrency, WSIZE, 10000),
    N("bare_newline = normalize", bare_newline, WINT, SMTP_NEWLINE_NORMALIZE),
    N("bare_newline = REJECT", bare_newline, WINT, SMTP_NEWLINE_REJECT),
    N("bare_newline =", bare_newline, WINT, SMTP_NEWLINE_REJECT),
    N("log_level = error", log_level, WINT, LOG_LEVEL_ERROR),
    N("log_level = warn", log_level, WINT, LOG_LEVEL_WARN),
    N("log_level = Info", log_level, WINT, LOG_LEVEL_INFO),
    N("log_level = debug", log_level, WINT, LOG_LEVEL_DEBUG),
    N("log_level =", log_level, WINT, LOG_LEVEL_INFO),
    N("log_format = json", log_format, WINT, LOG_FORMAT_JSON),
    N("log_format = JSON", log_format, WINT, LOG_FORMAT_JSON),
    N("log_format = text", log_format, WINT, LOG_FORMAT_TEXT),
    N("log_format =", log_format, WINT, LOG_FORMAT_TEXT),
    N("spf_fail_action = reject", spf_fail_action, WINT, CONFIG_SPF_FAIL_REJECT),
    N("spf_fail_action = Record", spf_fail_action, WINT, CONFIG_SPF_FAIL_RECORD),
    N("spf_fail_action =", spf_fail_action, WINT, CONFIG_SPF_FAIL_RECORD),
    N("spf_timeout = 5", spf_timeout, W32, 5),
    N("spf_timeout = 2m", spf_timeout, W32, 120),
    N("spf_timeout = 10m", spf_timeout, W32, 600),
    N("spf_timeout =", spf_timeout, W32, 20),
#undef N
};

static void test_numeric_keys(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof num_cases / sizeof num_cases[0]; i++) {
        const struct num_case *t = &num_cases[i];
        char *text = cat(base, t->line);
        struct config_diags d = {0};
        struct config *c = parse(text, &d);
        if (!c || d.n) {
            dump_diags(&d);
            fail_msg("\"%s\" did not parse cleanly", t->line);
        }
        const char *f = (const char *)c + t->off;
        uint64_t got = 0;
        switch (t->w) {
        case W64:
            got = *(const uint64_t *)(const void *)f;
            break;
        case WSIZE:
            got = *(const size_t *)(const void *)f;
            break;
        case W32:
            got = *(const uint32_t *)(const void *)f;
            break;
        case WINT:
            got = (uint64_t) * (const int *)(const void *)f;
            break;
        }
        if (got != t->want)
            fail_msg("\"%s\": got %llu, want %llu", t->line, (unsigned long long)got,
                     (unsigned long long)t->want);
        config_free(c);
        config_diags_free(&d);
        free(text);
    }
}

/* Lines that are errors: appended to base, so they are line BASE_LINES + 1. */
static const struct bad_case {
    const char *line;
    const char *msg;
} bad_cases[] = {
    {"message_size_limit = 10X", "message_size_limit: \"10X\" is not a size"},
    {"message_size_limit = 10MB", "is not a size"},
    {"message_size_limit = -1", "is not a size"},
    {"message_size_limit = M", "is not a size"},
    {"message_size_limit = 1.5M", "is not a size"},
    {"message_size_limit = 0", "out of range (1K to 2G)"},
    {"message_size_limit = 3G", "out of range"},
    {"message_size_limit = 18446744073709551616", "out of range"},
    {"message_size_limit = 18446744073709551615", "out of range"},
    {"message_size_limit = 17179869184G", "out of range"},
    {"max_recipients = 99", "max_recipients: 99 is out of range (100 to 100000)"},
    {"max_recipients = 100001", "out of range"},
    {"max_recipients = 1K", "max_recipients: \"1K\" is not a number"},
    {"max_recipients = 99999999999999999999999", "out of range"},
    {"max_command_line = 511", "out of range (512 to 64K)"},
    {"max_command_line = 65537", "out of range"},
    {"max_text_line = 999", "out of range"},
    {"max_text_line = 1G", "out of range"},
    {"max_header_count = 49", "out of range"},
    {"max_errors = 0", "out of range"},
    {"max_junk_commands = 0", "out of range"},
    {"max_connections = 0", "out of range"},
    {"max_connections_per_client = 100001", "out of range"},
    {"idle_timeout = 0", "out of range (1s to 1h)"},
    {"idle_timeout = 2h", "out of range"},
    {"idle_timeout = 10x", "is not a time"},
    {"idle_timeout = 10 s", "takes one value"},
    {"idle_timeout = 99999999999999999999", "out of range"},
    {"idle_timeout = 9999999999999999999d", "out of range"},
    {"session_timeout = 2d", "out of range (1s to 1d)"},
    {"min_data_rate = 1000000001", "out of range"},
    {"min_data_rate = 500K", "is not a number"},
    {"min_data_rate_grace = 0", "out of range (1s to 1h)"},
    {"min_data_rate_grace = 2h", "out of range"},
    {"spool_segment_size = 1K", "out of range (64K to 16G)"},
    {"delivery_workers = 257", "out of range"},
    {"delivery_concurrency = 0", "out of range"},
    {"bare_newline = maybe", "bare_newline: \"maybe\" is not one of reject, normalize"},
    {"log_level = verbose", "is not one of error, warn, info, debug"},
    {"log_format = xml", "log_format: \"xml\" is not one of text, json"},
    {"log_target = sterr", "log_target: \"sterr\" is not stderr, syslog or the path of a file"},
    {"log_target = tern.log", "write ./tern.log for a file in the working directory"},
    {"log_target = /var/log/a b", "log_target takes one value"},
    {"spf_verify = maybe", "spf_verify: \"maybe\" is not one of yes, no"},
    {"spf_fail_action = bounce", "spf_fail_action: \"bounce\" is not one of record, reject"},
    {"spf_fail_action = 550", "is not one of record, reject"},
    {"spf_timeout = 0", "spf_timeout: 0 is out of range (1s to 10m)"},
    {"spf_timeout = 601", "out of range"},
    {"spf_timeout = 1x", "is not a time"},
    {"hostname = bad_name.test", "hostname: \"bad_name.test\" is not a domain name"},
    {"hostname = a..b", "is not a domain name"},
    {"hostname = -a.test", "is not a domain name"},
    {"hostname = a-.test", "is not a domain name"},
    {"hostname = mail.test.", "is not a domain name"},
    {"hostname = two words", "hostname takes one value"},
    {"spool_dir = var/my spool", "spool_dir takes one value"},
    {"mx_listen = localhost:25", "the host must be a numeric IPv4 address"},
    {"mx_listen = 127.0.0.1", "is not host:port"},
    {"mx_listen = 127.0.0.1:0", "the port must be a number from 1 to 65535"},
    {"mx_listen = 127.0.0.1:65536", "the port must be"},
    {"mx_listen = 127.0.0.1:", "the port must be"},
    {"mx_listen = 127.0.0.1:smtp", "the port must be"},
    {"mx_listen = :25", "numeric IPv4 address"},
    {"mx_listen = ::1:25", "write an IPv6 address in brackets"},
    {"mx_listen = [::1]25", "is not host:port"},
    {"mx_listen = [::1", "is not host:port"},
    {"mx_listen = [127.0.0.1]:25", "numeric IPv6 address"},
    {"mx_listen = [mail.test]:25", "numeric IPv6 address"},
    {"submission_listen = 127.0.0.1:2525", "submission_listen: 127.0.0.1:2525 is already a "
                                           "listener (line 1)"},
    {"local_domains = exa_mple.test", "local_domains: \"exa_mple.test\" is not a domain name"},
    {"mailboxes = nobody", "mailboxes: \"nobody\" is not an address local@domain"},
    {"mailboxes = a..b@example.test", "is not an address"},
    {"mailboxes = .a@example.test", "is not an address"},
    {"mailboxes = \"a b\"@example.test", "is not an address"},
    {"mailboxes = a@b@example.test", "is not an address"},
    {"mailboxes = j\xc3@example.test", "is not an address"},            /* truncated UTF-8 */
    {"mailboxes = \xc0\xaf@example.test", "is not an address"},         /* overlong */
    {"mailboxes = \xed\xa0\x80@example.test", "is not an address"},     /* surrogate */
    {"mailboxes = \xf4\x90\x80\x80@example.test", "is not an address"}, /* past U+10FFFF */
    {"hostname = m\xc3\xa4il.test", "is not a domain name"},            /* ASCII only */
    {"mailboxes = a@other.test", "the domain of \"a@other.test\" is not listed in local_domains"},
    {"mailboxes = demo@example.test # the demo",
     "\"# the demo\" in the value: a comment must be on a line of its own"},
    {"trusted_networks = 10.0.0.0/33", "the prefix length must be 0 to 32"},
    {"trusted_networks = ::1/129", "the prefix length must be 0 to 128"},
    {"trusted_networks = 10.0.0.0/", "the prefix length"},
    {"trusted_networks = 10.0.0.0/x", "the prefix length"},
    {"trusted_networks = host.example", "is not a numeric address or address/prefix"},
    {"trusted_networks = [10.0.0.1]", "is not a numeric address"},
    {"trusted_networks = 10.0.0", "is not a numeric address"},
    {"foo = bar", "unknown key \"foo\""},
    {"Hostname = mail.test", "unknown key \"Hostname\""},
    {"hostname: mail.test", "syntax error: expected \"key = value\""},
    {"just words", "syntax error"},
    {"= value", "syntax error"},
    {"hostname", "syntax error"},
};

static void test_bad_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *t = &bad_cases[i];
        char *text = cat(base, t->line);
        struct config_diags d = {0};
        struct config *c = parse(text, &d);
        if (c || !has_diag(&d, BASE_LINES + 1, t->msg)) {
            dump_diags(&d);
            fail_msg("\"%s\": want an error at line %d containing '%s'", t->line, BASE_LINES + 1,
                     t->msg);
        }
        config_diags_free(&d);
        free(text);
    }
}

/* The SPF keys (docs/spf.md). */
static void test_spf_keys(void **state)
{
    (void)state;
    struct config_diags d = {0};
    char *text = cat(base, "spf_verify = no\nspf_fail_action = reject\nspf_timeout = 45s");
    struct config *c = parse(text, &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_false(c->spf_verify);
    assert_int_equal(c->spf_fail_action, CONFIG_SPF_FAIL_REJECT);
    assert_int_equal(c->spf_timeout, 45);
    config_free(c);
    free(text);
    text = cat(base, "spf_verify = no\nspf_verify = YES");
    c = parse(text, &d);
    assert_non_null(c);
    assert_true(c->spf_verify);
    config_free(c);
    free(text);
    config_diags_free(&d);
}

static void test_listeners(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("submissions_listen = [::1]:4650\n"
                             "tls_cert_file = c.pem\ntls_key_file = k.pem\n"
                             "mx_listen = 127.0.0.1:2525, [::1]:02525\n"
                             "submission_listen = 0.0.0.0:587 [::]:587\n",
                             &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_int_equal(c->nlisten, 5);
    static const struct {
        enum config_role role;
        const char *host, *port;
    } want[] = {
        {ROLE_MX, "127.0.0.1", "2525"},      {ROLE_MX, "::1", "2525"},
        {ROLE_SUBMISSION, "0.0.0.0", "587"}, {ROLE_SUBMISSION, "::", "587"},
        {ROLE_SUBMISSIONS, "::1", "4650"},
    };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(c->listen[i].role, want[i].role);
        assert_string_equal(c->listen[i].host, want[i].host);
        assert_string_equal(c->listen[i].port, want[i].port);
    }
    config_free(c);

    /* No listener at all is an error not tied to a line. */
    c = parse("hostname = mail.test\nmx_listen =\n", &d);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    assert_non_null(strstr(d.v[0].msg, "no listener"));
    config_diags_free(&d);

    /* ...but one role is enough. */
    c = parse("submissions_listen = 127.0.0.1:465\ntls_cert_file = c.pem\ntls_key_file = k.pem\n",
              &d);
    assert_non_null(c);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(config_role_name(c->listen[0].role), "submissions");
    config_free(c);

    /* Relay keys. */
    c = parse("mx_listen = 127.0.0.1:25\ndns_forwarders = 127.0.0.1@5353 [::1]\n", &d);
    assert_null(c); /* brackets are not libunbound's syntax */
    config_diags_free(&d);
    c = parse("mx_listen = 127.0.0.1:25\ndns_forwarders = 127.0.0.1@5353, ::1\n"
              "outbound_port = 2526\ndns_prefer = ipv4\n",
              &d);
    assert_non_null(c);
    assert_int_equal(c->dns_forwarders.n, 2);
    assert_string_equal(c->dns_forwarders.v[0], "127.0.0.1@5353");
    assert_int_equal(c->outbound_port, 2526);
    assert_int_equal(c->dns_prefer, CONFIG_DNS_PREFER_IPV4);
    assert_int_equal(c->dns_timeout, 30);
    config_free(c);
    c = parse("mx_listen = 127.0.0.1:25\noutbound_port = 0\n", &d);
    assert_null(c);
    config_diags_free(&d);
    c = parse("mx_listen = 127.0.0.1:25\ndns_forwarders = 127.0.0.1@0\n", &d);
    assert_null(c);
    config_diags_free(&d);

    /* Implicit TLS needs a certificate; the two files go together. */
    c = parse("submissions_listen = 127.0.0.1:465\n", &d);
    assert_null(c);
    assert_non_null(strstr(d.v[0].msg, "submissions_listen needs"));
    config_diags_free(&d);
    c = parse("mx_listen = 127.0.0.1:25\ntls_cert_file = c.pem\n", &d);
    assert_null(c);
    assert_non_null(strstr(d.v[0].msg, "together"));
    config_diags_free(&d);

    /* The same address twice, also written differently. */
    c = parse("mx_listen = [::1]:25\nsubmission_listen = [0:0::1]:25\n", &d);
    assert_null(c);
    assert_true(has_diag(&d, 2, "submission_listen: [0:0::1]:25 is already a listener (line 1)"));
    config_diags_free(&d);

    assert_string_equal(config_role_name(ROLE_MX), "mx");
    assert_string_equal(config_role_name(ROLE_SUBMISSION), "submission");
    assert_string_equal(config_role_name(ROLE_SUBMISSIONS), "submissions");
}

static void test_strings_and_lists(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("hostname = Mail.Example.TEST\n"
                             "mx_listen = 127.0.0.1:25\n"
                             "local_domains = Example.TEST,other.test  third.test,,\n"
                             "  example.test\n"
                             "mailboxes = Demo@EXAMPLE.test,demo@example.test, a.b+c@other.test\n"
                             "aliases_file = /etc/tern/aliases\n"
                             "maildir_root = /srv/mail\n"
                             "spool_dir = /srv/sp#ool\n"
                             "dkim_key_dir = /srv/dkim-keys\n",
                             &d);
    if (!c)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->hostname, "Mail.Example.TEST");
    assert_int_equal(c->local_domains.n, 3);
    assert_string_equal(c->local_domains.v[0], "example.test");
    assert_string_equal(c->local_domains.v[1], "other.test");
    assert_string_equal(c->local_domains.v[2], "third.test");
    assert_int_equal(c->mailboxes.n, 2);
    assert_string_equal(c->mailboxes.v[0], "demo@example.test");
    assert_string_equal(c->mailboxes.v[1], "a.b+c@other.test");
    assert_string_equal(c->aliases_file, "/etc/tern/aliases");
    assert_string_equal(c->maildir_root, "/srv/mail");
    assert_string_equal(c->spool_dir, "/srv/sp#ool");
    assert_string_equal(c->dkim_key_dir, "/srv/dkim-keys");
    config_free(c);

    /* log_target: stderr, syslog, or a path with a '/'; empty is stderr. */
    static const struct {
        const char *line, *want;
    } targets[] = {
        {"log_target = syslog\n", "syslog"},
        {"log_target = stderr\n", "stderr"},
        {"log_target = /var/log/tern.log\n", "/var/log/tern.log"},
        {"log_target = ./tern.log\n", "./tern.log"},
        {"log_target = var/log/tern.log\n", "var/log/tern.log"},
        {"log_target =\n", "stderr"},
    };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char *text = cat("mx_listen = 127.0.0.1:25\n", targets[i].line);
        c = parse(text, &d);
        assert_non_null(c);
        assert_int_equal(d.n, 0);
        assert_string_equal(c->log_target, targets[i].want);
        config_free(c);
        free(text);
    }

    /* Empty values: lists empty, scalars default. */
    c = parse("mx_listen = 127.0.0.1:25\nhostname =\naliases_file =\nmaildir_root =\n"
              "spool_dir=\nlocal_domains =\nmailboxes =\ntrusted_networks =\n",
              &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_null(c->hostname);
    assert_null(c->aliases_file);
    assert_string_equal(c->maildir_root, "var/mail");
    assert_string_equal(c->spool_dir, "var/spool");
    assert_int_equal(c->local_domains.n, 0);
    assert_int_equal(c->mailboxes.n, 0);
    assert_int_equal(c->ntrusted, 0);
    config_free(c);
}

/* RFC 6531: UTF-8 local parts and domains in mailboxes and local_domains. */
static void test_utf8(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("mx_listen = 127.0.0.1:25\n"
                             "local_domains = example.test, bücher.test\n"
                             "mailboxes = jörg@example.test, 王@bücher.test\n"
                             "  📮@example.test\n",
                             &d);
    if (!c)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(c->mailboxes.n, 3);
    assert_string_equal(c->mailboxes.v[0], "jörg@example.test");
    assert_true(config_is_mailbox(c, "Jörg@Example.test"));
    assert_true(config_is_local_domain(c, "Bücher.TEST"));
    config_free(c);
}

static void test_comments_and_continuation(void **state)
{
    (void)state;
    struct config_diags d = {0};
    const char text[] = "# a comment\n"
                        "   # an indented comment\n"
                        "\n"
                        "mx_listen =\n"
                        "    127.0.0.1:25\n"
                        "# a comment inside does not end the value\n"
                        "\n"
                        "  \t\n"
                        "\t[::1]:25\n"
                        "local_domains=example.test\n"
                        "mailboxes = a@example.test,\n"
                        "    b@example.test\n"
                        "    c@example.test\n"
                        "hostname = mail.example.test\r\n"
                        "spool_dir = x#y\n"
                        "max_errors = 5"; /* no final newline */
    struct config *c = config_parse(text, strlen(text), "t.conf", &d);
    if (!c)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[1].host, "::1");
    assert_int_equal(c->mailboxes.n, 3);
    assert_string_equal(c->mailboxes.v[2], "c@example.test");
    assert_string_equal(c->hostname, "mail.example.test");
    assert_string_equal(c->spool_dir, "x#y");
    assert_int_equal(c->max_errors, 5);
    config_free(c);

    /* A scalar continued over two lines holds two words. */
    c = parse("mx_listen = 127.0.0.1:25\nhostname =\n  mail.test\n", &d);
    assert_non_null(c);
    assert_string_equal(c->hostname, "mail.test");
    config_free(c);

    /* Errors in continuation lines point at their own line. */
    c = parse("mx_listen = 127.0.0.1:25\nlocal_domains = example.test\nmailboxes =\n"
              "  a@example.test\n"
              "  # comment\n"
              "  bad\n"
              "  c@elsewhere.test\n",
              &d);
    assert_null(c);
    assert_int_equal(d.n, 2);
    assert_true(has_diag(&d, 6, "\"bad\" is not an address"));
    assert_true(has_diag(&d, 7, "the domain of \"c@elsewhere.test\""));
    config_diags_free(&d);

    /* A file that starts with a continuation line. */
    c = parse("  mx_listen = 127.0.0.1:25\n  more\nmx_listen = 127.0.0.1:25\n", &d);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_true(has_diag(&d, 1, "continues the previous line, but there is none"));
    config_diags_free(&d);

    /* Whitespace-only and empty files have no listener. */
    c = config_parse("", 0, "t.conf", &d);
    assert_null(c);
    assert_int_equal(d.n, 1);
    config_diags_free(&d);
    c = config_parse(NULL, 0, "t.conf", &d);
    assert_null(c);
    config_diags_free(&d);
}

static void test_repeated_keys(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("mx_listen = 127.0.0.1:25, 127.0.0.1:26\n"
                             "local_domains = a.test\n"
                             "max_recipients = 200\n"
                             "hostname = one.test\n"
                             "local_domains = b.test c.test\n"
                             "mx_listen = 127.0.0.1:27\n"
                             "max_recipients = 300\n"
                             "hostname = two.test\n"
                             "mailboxes = x@a.test\n"
                             "mailboxes = y@b.test\n",
                             &d);
    if (!c)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].port, "27");
    assert_int_equal(c->local_domains.n, 2);
    assert_string_equal(c->local_domains.v[0], "b.test");
    assert_int_equal(c->max_recipients, 300);
    assert_string_equal(c->hostname, "two.test");
    assert_int_equal(c->mailboxes.n, 1);
    assert_string_equal(c->mailboxes.v[0], "y@b.test");
    config_free(c);

    /* A bad value is an error even when a later line replaces it. */
    c = parse("mx_listen = 127.0.0.1:25\nmax_recipients = 5\nmax_recipients = 500\n", &d);
    assert_null(c);
    assert_true(has_diag(&d, 2, "max_recipients"));
    config_diags_free(&d);

    /* An empty value resets a list and a scalar. */
    c = parse("mx_listen = 127.0.0.1:25\nmax_errors = 3\nmax_errors =\n"
              "trusted_networks = 10.0.0.0/8\ntrusted_networks =\n"
              "mailauth_skip_networks =\n",
              &d);
    assert_non_null(c);
    assert_int_equal(c->max_errors, 20);
    assert_int_equal(c->ntrusted, 0);
    assert_int_equal(c->nmailauth_skip, 0);
    config_free(c);
}

static void test_all_errors_reported(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("mx_listen = 127.0.0.1:25\n"
                             "max_recipients = lots\n"
                             "colour = blue\n"
                             "\n"
                             "idle_timeout = 1w\n"
                             "max_errors = 3\n"
                             "hostname = a b\n",
                             &d);
    assert_null(c);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.v[0].line, 2);
    assert_int_equal(d.v[1].line, 3);
    assert_int_equal(d.v[2].line, 5);
    assert_int_equal(d.v[3].line, 7);
    for (size_t i = 0; i < d.n; i++)
        assert_string_equal(d.v[i].file, "t.conf");
    config_diags_free(&d);

    /* Diagnostics accumulate: a second parse appends. */
    c = parse("foo = 1\n", &d);
    c = parse("bar = 1\n", &d);
    assert_null(c);
    assert_true(d.n >= 4);
    config_diags_free(&d);

    /* Past 100 errors, one line says the rest are not reported. */
    size_t n = 150;
    char *text = malloc(n * 16 + 64);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "bad%zu = 1\n", i);
    c = config_parse(text, len, "t.conf", &d);
    assert_null(c);
    assert_int_equal(d.n, 101);
    assert_non_null(strstr(d.v[100].msg, "too many errors"));
    config_diags_free(&d);
    free(text);

    /* Parsing without a diagnostics list still fails. */
    assert_null(parse("foo = 1\n", NULL));
}

static void test_control_characters(void **state)
{
    (void)state;
    struct config_diags d = {0};
    static const char text[] = "mx_listen = 127.0.0.1:25\n"
                               "hostname = mail\0.test\n"
                               "local_domains = a.test\n"
                               "  b\x01.test\n"
                               "max_errors = 3\rmax_errors = 4\n";
    struct config *c = config_parse(text, sizeof text - 1, "t.conf", &d);
    assert_null(c);
    assert_int_equal(d.n, 3);
    assert_true(has_diag(&d, 2, "control character 0x00"));
    assert_true(has_diag(&d, 4, "control character 0x01"));
    assert_true(has_diag(&d, 5, "control character 0x0d"));
    config_diags_free(&d);
}

static void test_trusted_networks(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("mx_listen = 127.0.0.1:25\n"
                             "trusted_networks = 127.0.0.0/8, ::1/128 192.0.2.7\n"
                             "  10.1.2.3/8 [2001:db8::]/32 ::ffff:198.51.100.0/120 [fe80::1]\n",
                             &d);
    if (!c)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(d.n, 1); /* host bits of 10.1.2.3/8 */
    assert_true(has_diag(&d, 3,
                         "warning: trusted_networks: \"10.1.2.3/8\" has host bits set; "
                         "using 10.0.0.0/8"));
    assert_int_equal(c->ntrusted, 7);
    assert_int_equal(c->trusted[0].family, AF_INET);
    assert_int_equal(c->trusted[0].prefix, 8);
    assert_int_equal(c->trusted[1].family, AF_INET6);
    assert_int_equal(c->trusted[1].prefix, 128);
    assert_int_equal(c->trusted[2].prefix, 32);
    unsigned char ten[4] = {10, 0, 0, 0};
    assert_memory_equal(c->trusted[3].addr, ten, 4);
    assert_int_equal(c->trusted[5].family, AF_INET); /* mapped network became IPv4 */
    assert_int_equal(c->trusted[5].prefix, 24);
    assert_int_equal(c->trusted[6].prefix, 128);

    static const struct {
        const char *addr;
        bool v6, want;
    } probes[] = {
        {"127.0.0.1", false, true},
        {"127.255.255.254", false, true},
        {"128.0.0.1", false, false},
        {"192.0.2.7", false, true},
        {"192.0.2.8", false, false},
        {"10.200.0.1", false, true},
        {"11.0.0.1", false, false},
        {"198.51.100.99", false, true},
        {"::1", true, true},
        {"::2", true, false},
        {"2001:db8:1::5", true, true},
        {"2001:db9::", true, false},
        {"::ffff:127.0.0.1", true, true},
        {"::ffff:10.9.9.9", true, true},
        {"::ffff:8.8.8.8", true, false},
        {"fe80::1", true, true},
        {"fe80::2", true, false},
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (probes[i].v6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            assert_int_equal(inet_pton(AF_INET6, probes[i].addr, &s6->sin6_addr), 1);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            assert_int_equal(inet_pton(AF_INET, probes[i].addr, &s4->sin_addr), 1);
        }
        if (config_is_trusted(c, (struct sockaddr *)&ss) != probes[i].want)
            fail_msg("%s: want %s", probes[i].addr, probes[i].want ? "trusted" : "untrusted");
    }
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    assert_false(config_is_trusted(c, &unix_sa));
    assert_false(config_is_trusted(c, NULL));
    config_free(c);
    config_diags_free(&d);

    /* /0 trusts everyone: allowed, with a warning. */
    c = parse("mx_listen = 127.0.0.1:25\ntrusted_networks = 0.0.0.0/0\n", &d);
    assert_non_null(c);
    assert_true(has_diag(&d, 2, "open relay"));
    struct sockaddr_in any = {.sin_family = AF_INET};
    any.sin_addr.s_addr = htonl(0x08080808);
    assert_true(config_is_trusted(c, (struct sockaddr *)&any));
    config_free(c);
    config_diags_free(&d);

    /* A struct built by hand (as other modules' tests do), host bits not zeroed. */
    struct config_cidr cidr = {.family = AF_INET, .addr = {192, 168, 1, 77}, .prefix = 24};
    struct config hand;
    memset(&hand, 0, sizeof hand);
    hand.trusted = &cidr;
    hand.ntrusted = 1;
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    s4.sin_addr.s_addr = htonl(0xc0a80105); /* 192.168.1.5 */
    assert_true(config_is_trusted(&hand, (struct sockaddr *)&s4));
    s4.sin_addr.s_addr = htonl(0xc0a80205);
    assert_false(config_is_trusted(&hand, (struct sockaddr *)&s4));
}

static void test_lookups(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse("mx_listen = 127.0.0.1:25\nlocal_domains = example.test b.test\n"
                             "mailboxes = demo@example.test, x@b.test\n",
                             &d);
    assert_non_null(c);
    assert_true(config_is_local_domain(c, "example.test"));
    assert_true(config_is_local_domain(c, "EXAMPLE.Test"));
    assert_true(config_is_local_domain(c, "b.test"));
    assert_false(config_is_local_domain(c, "c.test"));
    assert_false(config_is_local_domain(c, "example.test.evil"));
    assert_false(config_is_local_domain(c, ""));
    assert_false(config_is_local_domain(c, NULL));
    assert_true(config_is_mailbox(c, "demo@example.test"));
    assert_true(config_is_mailbox(c, "DEMO@Example.Test"));
    assert_true(config_is_mailbox(c, "x@b.test"));
    assert_false(config_is_mailbox(c, "x@example.test"));
    assert_false(config_is_mailbox(c, "demo"));
    assert_false(config_is_mailbox(c, NULL));
    assert_false(config_is_mailbox(NULL, "x@b.test"));
    config_free(c);
    config_free(NULL);
    config_diags_free(NULL);
}

static void test_example_config(void **state)
{
    (void)state;
    size_t len;
    char *text = read_source("examples/tern.conf", &len);
    struct config_diags d = {0};
    struct config *c = config_parse(text, len, "examples/tern.conf", &d);
    if (!c || d.n)
        dump_diags(&d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->hostname, "mail.example.test");
    assert_int_equal(c->nlisten, 3);
    assert_int_equal(c->listen[0].role, ROLE_MX);
    assert_string_equal(c->listen[0].port, "2525");
    assert_int_equal(c->listen[1].role, ROLE_SUBMISSION);
    assert_string_equal(c->listen[1].port, "5870");
    assert_int_equal(c->listen[2].role, ROLE_SUBMISSIONS);
    assert_string_equal(c->listen[2].port, "4650");
    assert_int_equal(c->local_domains.n, 1);
    assert_int_equal(c->mailboxes.n, 2);
    assert_string_equal(c->aliases_file, "examples/aliases");
    assert_string_equal(c->spool_dir, "var/spool");
    assert_string_equal(c->maildir_root, "var/mail");
    assert_string_equal(c->dkim_key_dir, "var/dkim");
    assert_int_equal(c->ntrusted, 0);
    assert_true(c->message_size_limit == 50 * MIB);
    assert_int_equal(c->max_recipients, 1000);
    assert_int_equal(c->idle_timeout, 300);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    config_free(c);

    /* Tests append overrides to the embedded default: the last value wins. */
    char *more = cat(text, "mx_listen = 127.0.0.1:12525\nspool_dir = /tmp/x/spool\n"
                           "trusted_networks = 127.0.0.0/8\nmax_recipients = 100\n"
                           "mailboxes = demo@example.test\n");
    c = config_parse(more, strlen(more), "t.conf", &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->listen[0].port, "12525");
    assert_string_equal(c->spool_dir, "/tmp/x/spool");
    assert_int_equal(c->ntrusted, 1);
    assert_int_equal(c->max_recipients, 100);
    assert_int_equal(c->mailboxes.n, 1);
    config_free(c);
    free(more);
    free(text);
}

/* DMARC and Authentication-Results keys: defaults, values, errors. */
static void test_dmarc_keys(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse(base, &d);
    assert_non_null(c);
    assert_true(c->dmarc_verify);
    assert_int_equal(c->dmarc_reject_action, CONFIG_DMARC_REJECT);
    assert_string_equal(c->dmarc_quarantine_header, "X-Tern-Quarantine");
    assert_null(c->dmarc_report_dir);
    assert_null(c->authserv_id); /* no hostname either: config_load fills both */
    config_free(c);

    char *text = cat(base, "hostname = mx.example.test\n"
                           "dmarc_verify = no\n"
                           "dmarc_reject_action = Quarantine\n"
                           "dmarc_quarantine_header = X-Spam-Flag\n"
                           "dmarc_report_dir = /var/lib/tern/dmarc");
    c = parse(text, &d);
    free(text);
    assert_non_null(c);
    assert_false(c->dmarc_verify);
    assert_int_equal(c->dmarc_reject_action, CONFIG_DMARC_QUARANTINE);
    assert_string_equal(c->dmarc_quarantine_header, "X-Spam-Flag");
    assert_string_equal(c->dmarc_report_dir, "/var/lib/tern/dmarc");
    assert_string_equal(c->authserv_id, "mx.example.test"); /* the hostname */
    config_free(c);

    text = cat(base, "hostname = mx.example.test\n"
                     "authserv_id = example.test\n"
                     "dmarc_reject_action = record\n"
                     "dmarc_quarantine_header =\n"
                     "dmarc_report_dir =");
    c = parse(text, &d);
    free(text);
    assert_non_null(c);
    assert_string_equal(c->authserv_id, "example.test");
    assert_int_equal(c->dmarc_reject_action, CONFIG_DMARC_RECORD);
    assert_string_equal(c->dmarc_quarantine_header, "X-Tern-Quarantine");
    assert_null(c->dmarc_report_dir);
    config_free(c);

    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"dmarc_verify = maybe", "dmarc_verify: \"maybe\" is not one of yes, no"},
        {"dmarc_reject_action = drop", "is not one of reject, quarantine, record"},
        {"dmarc_quarantine_header = X-Tern:Quarantine", "is not a header field name"},
        {"dmarc_quarantine_header = X-Tern-Quarantine yes", "takes one value"},
        {"dmarc_quarantine_header = "
         "X-An-Extremely-Long-Header-Field-Name-That-Is-Much-Too-Long-To-Be-Reasonable-Here",
         "is not a header field name"},
        {"authserv_id = not_a_domain!", "is not a domain name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        text = cat(base, bad[i].line);
        c = parse(text, &d);
        if (c || !has_diag(&d, BASE_LINES + 1, bad[i].msg)) {
            dump_diags(&d);
            fail_msg("\"%s\": want an error containing '%s'", bad[i].line, bad[i].msg);
        }
        config_diags_free(&d);
        free(text);
    }
}

/* metrics_listen: off by default, one numeric host:port, IPv6 in brackets. */
static void test_metrics_listen(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *want; /* NULL: off; "!": refused */
    } rows[] = {
        {"", NULL},
        {"metrics_listen =", NULL},
        {"metrics_listen = 127.0.0.1:9425", "127.0.0.1:9425"},
        {"metrics_listen = 127.0.0.1:09425", "127.0.0.1:9425"},
        {"metrics_listen = [::1]:9425", "[::1]:9425"},
        {"metrics_listen = localhost:9425", "!"},
        {"metrics_listen = 127.0.0.1", "!"},
        {"metrics_listen = 127.0.0.1:0", "!"},
        {"metrics_listen = 127.0.0.1:65536", "!"},
        {"metrics_listen = ::1:9425", "!"},
        {"metrics_listen = 127.0.0.1:1 127.0.0.1:2", "!"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct config_diags d = {0};
        char *text = cat(base, rows[i].line);
        struct config *c = parse(text, &d);
        free(text);
        if (rows[i].want && strcmp(rows[i].want, "!") == 0) {
            assert_null(c);
            assert_true(d.n >= 1);
        } else {
            assert_non_null(c);
            if (rows[i].want)
                assert_string_equal(c->metrics_listen, rows[i].want);
            else
                assert_null(c->metrics_listen);
            struct config *dup = config_dup(c);
            assert_int_equal(config_diff(c, dup, NULL, NULL), 0);
            config_free(dup);
        }
        config_free(c);
        config_diags_free(&d);
    }
}

/* The control socket and sendmail keys: defaults, values, errors. */
static void test_control_keys(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse(base, &d);
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/run/tern/control");
    assert_null(c->control_group);
    assert_int_equal(c->control_socket_mode, 0660);
    assert_int_equal(c->control_max_connections, 64);
    assert_int_equal(c->control_max_requests, 100000);
    assert_int_equal(c->control_idle_timeout, 300);
    assert_null(c->sendmail_origin); /* no hostname either: config_load fills both */
    config_free(c);

    char *text = cat(base, "hostname = mx.example.test\n"
                           "control_socket = /tmp/x/ctl\n"
                           "control_group = mailadm\n"
                           "control_socket_mode = 666\n"
                           "control_max_connections = 5\n"
                           "control_max_requests = 20\n"
                           "control_idle_timeout = 2m");
    c = parse(text, &d);
    free(text);
    assert_non_null(c);
    assert_string_equal(c->control_socket, "/tmp/x/ctl");
    assert_string_equal(c->control_group, "mailadm");
    assert_int_equal(c->control_socket_mode, 0666);
    assert_int_equal(c->control_max_connections, 5);
    assert_int_equal(c->control_max_requests, 20);
    assert_int_equal(c->control_idle_timeout, 120);
    assert_string_equal(c->sendmail_origin, "mx.example.test"); /* the hostname */
    config_free(c);

    text = cat(base, "sendmail_origin = example.test\ncontrol_socket_mode = 0600");
    c = parse(text, &d);
    free(text);
    assert_non_null(c);
    assert_string_equal(c->sendmail_origin, "example.test");
    assert_int_equal(c->control_socket_mode, 0600);
    config_free(c);

    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"control_socket_mode = 0668", "is not a file mode"},
        {"control_socket_mode = 01777", "is not a file mode"},
        {"control_socket_mode = rw", "is not a file mode"},
        {"control_socket_mode = 00777", "is not a file mode"},
        {"control_max_connections = 0", "control_max_connections"},
        {"control_max_requests = 5", "control_max_requests"},
        {"control_group = a b", "takes one value"},
        {"sendmail_origin = bad_domain!", "is not a domain name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        text = cat(base, bad[i].line);
        c = parse(text, &d);
        if (c || !has_diag(&d, BASE_LINES + 1, bad[i].msg)) {
            dump_diags(&d);
            fail_msg("\"%s\": want an error containing '%s'", bad[i].line, bad[i].msg);
        }
        config_diags_free(&d);
        free(text);
    }
}

/* The sandbox keys: defaults, values, errors. */
static void test_sandbox_keys(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse(base, &d);
    assert_non_null(c);
    assert_true(c->sandbox);
    assert_int_equal(c->sandbox_seccomp_action, CONFIG_SECCOMP_KILL);
    assert_false(c->sandbox_selftest);
    config_free(c);

    static const struct {
        const char *lines;
        bool sandbox;
        int action;
        bool selftest;
    } good[] = {
        {"sandbox = no", false, CONFIG_SECCOMP_KILL, false},
        {"sandbox_seccomp_action = errno", true, CONFIG_SECCOMP_ERRNO, false},
        {"sandbox_seccomp_action = LOG\nsandbox_selftest = yes", true, CONFIG_SECCOMP_LOG, true},
        {"sandbox_seccomp_action = log\nsandbox_seccomp_action = kill", true, CONFIG_SECCOMP_KILL,
         false},
        {"sandbox = yes\nsandbox_seccomp_action =", true, CONFIG_SECCOMP_KILL, false},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *text = cat(base, good[i].lines);
        c = parse(text, &d);
        free(text);
        if (!c) {
            dump_diags(&d);
            fail_msg("\"%s\" refused", good[i].lines);
        }
        assert_int_equal(c->sandbox, good[i].sandbox);
        assert_int_equal(c->sandbox_seccomp_action, good[i].action);
        assert_int_equal(c->sandbox_selftest, good[i].selftest);
        config_free(c);
    }

    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"sandbox = maybe", "sandbox: \"maybe\" is not one of yes, no"},
        {"sandbox_seccomp_action = trap", "is not one of kill, errno, log"},
        {"sandbox_seccomp_action = kill errno", "takes one value"},
        {"sandbox_selftest = 1", "is not one of yes, no"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = cat(base, bad[i].line);
        c = parse(text, &d);
        if (c || !has_diag(&d, BASE_LINES + 1, bad[i].msg)) {
            dump_diags(&d);
            fail_msg("\"%s\": want an error containing '%s'", bad[i].line, bad[i].msg);
        }
        config_diags_free(&d);
        free(text);
    }
}

static void test_load(void **state)
{
    (void)state;
    struct config_diags d = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/examples/tern.conf", TERN_SOURCE_ROOT);
    struct config *c = config_load(path, &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->hostname, "mail.example.test");
    assert_string_equal(c->authserv_id, "mail.example.test");
    config_free(c);

    /* Without hostname, config_load asks the system. */
    char tmp[] = "/tmp/tern-test-config-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    const char body[] = "mx_listen = 127.0.0.1:2525\n";
    assert_int_equal(write(fd, body, sizeof body - 1), (ssize_t)(sizeof body - 1));
    close(fd);
    c = config_load(tmp, &d);
    char name[256];
    assert_int_equal(gethostname(name, sizeof name), 0);
    name[sizeof name - 1] = '\0';
    if (c) {
        assert_string_equal(c->hostname, name);
        assert_string_equal(c->authserv_id, name);
    } else {
        /* a system name that is not a domain name is reported */
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.v[0].msg, "hostname is not set"));
    }
    config_free(c);
    config_diags_free(&d);
    unlink(tmp);

    /* A missing file is one diagnostic at line 0. */
    c = config_load("/nonexistent/tern.conf", &d);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    assert_string_equal(d.v[0].file, "/nonexistent/tern.conf");
    assert_non_null(strstr(d.v[0].msg, "cannot open"));
    config_diags_free(&d);
}

/* ---- run_user and reloading ------------------------------------------------- */

static void test_run_user(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct config *c = parse(base, &d);
    assert_non_null(c);
    assert_string_equal(c->run_user, "tern");
    config_free(c);
    const char *good[] = {"root", "_tern", "mail.daemon", "a-b_c", "u1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char line[128];
        snprintf(line, sizeof line, "run_user = %s", good[i]);
        char *t = cat(base, line);
        c = parse(t, &d);
        assert_non_null(c);
        assert_string_equal(c->run_user, good[i]);
        config_free(c);
        config_diags_free(&d);
        free(t);
    }
    const char *bad[] = {"-x", "a/b", "a:b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char line[128];
        snprintf(line, sizeof line, "run_user = %s", bad[i]);
        char *t = cat(base, line);
        c = parse(t, &d);
        assert_null(c);
        assert_true(has_diag(&d, BASE_LINES + 1, "is not a user name"));
        config_diags_free(&d);
        free(t);
    }
    /* empty: the default */
    char *t = cat(base, "run_user =");
    c = parse(t, &d);
    assert_non_null(c);
    assert_string_equal(c->run_user, "tern");
    config_free(c);
    free(t);
}

/* One key changed: what the two files have in common (context) and the line
   that changes it. Every key has one, so that comparing and copying cover the
   whole struct. */
static const struct {
    const char *key;
    const char *context;
    const char *line;
} key_changes[] = {
    {"hostname", "authserv_id = ar.example.test\nsendmail_origin = so.example.test",
     "hostname = mx.example.test"},
    {"mx_listen", "", "mx_listen = 127.0.0.1:2526"},
    {"submission_listen", "", "submission_listen = 127.0.0.1:587"},
    {"submissions_listen", "tls_cert_file = c.pem\ntls_key_file = k.pem",
     "submissions_listen = 127.0.0.1:465"},
    {"local_domains", "", "local_domains = example.test, example.net"},
    {"mailboxes", "", "mailboxes = a@example.test"},
    {"aliases_file", "", "aliases_file = aliases"},
    {"maildir_root", "", "maildir_root = /var/mail/tern"},
    {"spool_dir", "", "spool_dir = /var/spool/tern"},
    {"trusted_networks", "", "trusted_networks = 10.0.0.0/8"},
    {"mailauth_skip_networks", "", "mailauth_skip_networks = 127.0.0.0/8"},
    {"bare_newline", "", "bare_newline = normalize"},
    {"message_size_limit", "", "message_size_limit = 10M"},
    {"max_recipients", "", "max_recipients = 100"},
    {"max_command_line", "", "max_command_line = 1K"},
    {"max_text_line", "", "max_text_line = 2000"},
    {"max_header_count", "", "max_header_count = 50"},
    {"max_errors", "", "max_errors = 3"},
    {"max_junk_commands", "", "max_junk_commands = 3"},
    {"max_connections", "", "max_connections = 3"},
    {"max_connections_per_client", "", "max_connections_per_client = 3"},
    {"idle_timeout", "", "idle_timeout = 1m"},
    {"session_timeout", "", "session_timeout = 2m"},
    {"min_data_rate", "", "min_data_rate = 0"},
    {"min_data_rate_grace", "", "min_data_rate_grace = 5s"},
    {"spool_segment_size", "", "spool_segment_size = 1M"},
    {"delivery_workers", "", "delivery_workers = 3"},
    {"delivery_concurrency", "", "delivery_concurrency = 3"},
    {"log_level", "", "log_level = debug"},
    {"log_format", "", "log_format = json"},
    {"log_target", "", "log_target = /var/log/tern.log"},
    {"tls_cert_file", "tls_key_file = k.pem\ntls_cert_file = c.pem", "tls_cert_file = c2.pem"},
    {"tls_key_file", "tls_key_file = k.pem\ntls_cert_file = c.pem", "tls_key_file = k2.pem"},
    {"tls_selfsigned", "", "tls_selfsigned = yes"},
    {"tls_min_version", "", "tls_min_version = TLSv1.3"},
    {"tls_ciphers", "", "tls_ciphers = HIGH"},
    {"tls_ciphersuites", "", "tls_ciphersuites = TLS_AES_256_GCM_SHA384"},
    {"users_file", "", "users_file = users"},
    {"sender_login_maps", "", "sender_login_maps = senders"},
    {"mx_auth", "", "mx_auth = yes"},
    {"auth_plaintext_loopback", "", "auth_plaintext_loopback = yes"},
    {"auth_workers", "", "auth_workers = 3"},
    {"auth_delay_after", "", "auth_delay_after = 3"},
    {"auth_max_failures", "", "auth_max_failures = 3"},
    {"auth_client_max_failures", "", "auth_client_max_failures = 3"},
    {"auth_failure_window", "", "auth_failure_window = 3m"},
    {"user_message_rate", "", "user_message_rate = 3"},
    {"user_recipient_rate", "", "user_recipient_rate = 3"},
    {"dns_forwarders", "", "dns_forwarders = 127.0.0.1@5353"},
    {"dns_trust_anchor", "", "dns_trust_anchor = root.key"},
    {"dns_prefer", "", "dns_prefer = ipv4"},
    {"dns_timeout", "", "dns_timeout = 3"},
    {"outbound_port", "", "outbound_port = 2525"},
    {"outbound_tls", "", "outbound_tls = verify"},
    {"outbound_tls_ca_file", "", "outbound_tls_ca_file = ca.pem"},
    {"outbound_connect_timeout", "", "outbound_connect_timeout = 3"},
    {"outbound_helo_timeout", "", "outbound_helo_timeout = 3"},
    {"outbound_mail_timeout", "", "outbound_mail_timeout = 3"},
    {"outbound_rcpt_timeout", "", "outbound_rcpt_timeout = 3"},
    {"outbound_data_init_timeout", "", "outbound_data_init_timeout = 3"},
    {"outbound_data_xfer_timeout", "", "outbound_data_xfer_timeout = 3"},
    {"outbound_data_done_timeout", "", "outbound_data_done_timeout = 3"},
    {"outbound_chunking", "", "outbound_chunking = no"},
    {"relay_concurrency", "", "relay_concurrency = 3"},
    {"destination_concurrency", "", "destination_concurrency = 3"},
    {"retry_min", "", "retry_min = 3"},
    {"retry_max", "", "retry_max = 3"},
    {"delay_warning_time", "", "delay_warning_time = 3h"},
    {"queue_lifetime", "", "queue_lifetime = 3d"},
    {"relayhost", "", "relayhost = [smart.example.net]:587"},
    {"relayhost_auth_file", "relayhost = [smart.example.net]", "relayhost_auth_file = auth"},
    {"transport_file", "", "transport_file = transport"},
    {"spf_verify", "", "spf_verify = no"},
    {"spf_fail_action", "", "spf_fail_action = reject"},
    {"spf_timeout", "", "spf_timeout = 3"},
    {"dkim_sign", "", "dkim_sign = no"},
    {"dkim_verify", "", "dkim_verify = no"},
    {"dkim_key_dir", "", "dkim_key_dir = keys"},
    {"dmarc_verify", "", "dmarc_verify = no"},
    {"dmarc_reject_action", "", "dmarc_reject_action = record"},
    {"dmarc_quarantine_header", "", "dmarc_quarantine_header = X-Junk"},
    {"dmarc_report_dir", "", "dmarc_report_dir = reports"},
    {"authserv_id", "", "authserv_id = ar.example.test"},
    {"run_user", "", "run_user = root"},
    {"control_socket", "", "control_socket = /tmp/tern.control"},
    {"control_group", "", "control_group = adm"},
    {"control_socket_mode", "", "control_socket_mode = 0600"},
    {"control_max_connections", "", "control_max_connections = 3"},
    {"control_max_requests", "", "control_max_requests = 30"},
    {"control_idle_timeout", "", "control_idle_timeout = 3"},
    {"sendmail_origin", "", "sendmail_origin = example.test"},
    {"metrics_listen", "", "metrics_listen = 127.0.0.1:9425"},
    {"sandbox", "", "sandbox = no"},
    {"sandbox_seccomp_action", "", "sandbox_seccomp_action = errno"},
    {"sandbox_selftest", "", "sandbox_selftest = yes"},
};

struct seen_keys {
    size_t n;
    const char *key[8];
    int how[8];
};

static void seen(void *arg, const char *key, enum config_reload how)
{
    struct seen_keys *s = arg;
    if (s->n < 8) {
        s->key[s->n] = key;
        s->how[s->n] = (int)how;
    }
    s->n++;
}

static struct config *parse2(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *t = malloc(n);
    snprintf(t, n, "%s%s\n%s\n", a, b, c);
    struct config_diags d = {0};
    struct config *cfg = parse(t, &d);
    if (!cfg)
        dump_diags(&d);
    config_diags_free(&d);
    free(t);
    return cfg;
}

static void test_diff_every_key(void **state)
{
    (void)state;
    size_t nchanges = sizeof key_changes / sizeof *key_changes;
    /* every key has a line here */
    for (size_t i = 0; i < config_key_count(); i++) {
        const char *name = config_key_name(i);
        bool found = false;
        for (size_t j = 0; j < nchanges && !found; j++)
            found = strcmp(key_changes[j].key, name) == 0;
        if (!found)
            print_message("# key %s has no line in key_changes\n", name);
        assert_true(found);
        assert_true(config_key_reload(name) >= 0);
    }
    assert_null(config_key_name(config_key_count()));
    assert_int_equal(nchanges, config_key_count());

    for (size_t j = 0; j < nchanges; j++) {
        struct config *a = parse2(base, key_changes[j].context, "");
        struct config *b = parse2(base, key_changes[j].context, key_changes[j].line);
        assert_non_null(a);
        assert_non_null(b);
        struct seen_keys s = {0};
        size_t n = config_diff(a, b, seen, &s);
        if (n != 1 || strcmp(s.key[0], key_changes[j].key) != 0)
            print_message("# %s: %zu keys differ, first %s\n", key_changes[j].key, n,
                          n ? s.key[0] : "-");
        assert_int_equal(n, 1);
        assert_string_equal(s.key[0], key_changes[j].key);
        assert_int_equal(s.how[0], config_key_reload(key_changes[j].key));
        assert_int_equal(config_diff(b, a, NULL, NULL), 1);
        /* a deep copy is the same */
        struct config *c = config_dup(b);
        assert_int_equal(config_diff(b, c, NULL, NULL), 0);
        /* copying the key makes them the same */
        assert_true(config_copy_key(a, b, key_changes[j].key));
        assert_int_equal(config_diff(a, b, NULL, NULL), 0);
        config_free(a);
        config_free(b);
        /* the copy outlives its original */
        assert_int_equal(config_diff(c, c, NULL, NULL), 0);
        config_free(c);
    }
    struct config *a = parse(base, NULL);
    assert_false(config_copy_key(a, a, "no_such_key"));
    assert_int_equal(config_key_reload("no_such_key"), -1);
    assert_int_equal(config_key_reload(NULL), -1);
    config_free(a);
}

static void test_reload_classes(void **state)
{
    (void)state;
    /* what the modules that keep them from start hold */
    const char *restart[] = {"hostname",           "mx_listen",           "submission_listen",
                             "submissions_listen", "maildir_root",        "spool_dir",
                             "spool_segment_size", "delivery_workers",    "delivery_concurrency",
                             "auth_workers",       "auth_failure_window", "dns_forwarders",
                             "dns_timeout",        "outbound_port",       "relay_concurrency",
                             "queue_lifetime",     "relayhost",           "transport_file",
                             "dkim_key_dir",       "tls_selfsigned",      "run_user",
                             "metrics_listen"};
    for (size_t i = 0; i < sizeof restart / sizeof *restart; i++)
        assert_int_equal(config_key_reload(restart[i]), CONFIG_RELOAD_RESTART);
    const char *sessions[] = {"local_domains",    "mailboxes",           "aliases_file",
                              "trusted_networks", "message_size_limit",  "max_connections",
                              "users_file",       "tls_cert_file",       "spf_verify",
                              "dkim_sign",        "dmarc_reject_action", "authserv_id"};
    for (size_t i = 0; i < sizeof sessions / sizeof *sessions; i++)
        assert_int_equal(config_key_reload(sessions[i]), CONFIG_RELOAD_SESSIONS);
    assert_int_equal(config_key_reload("log_level"), CONFIG_RELOAD_AT_ONCE);
}

static void test_keep_restart_keys(void **state)
{
    (void)state;
    struct config *running = parse("hostname = one.example.test\n"
                                   "mx_listen = 127.0.0.1:2525, [::1]:2525\n"
                                   "submission_listen = 127.0.0.1:5870\n"
                                   "local_domains = example.test\n"
                                   "spool_dir = /var/spool/tern\n",
                                   NULL);
    assert_non_null(running);
    /* the same listeners in another order, written differently: no change */
    struct config *next = parse("hostname = one.example.test\n"
                                "mx_listen = [0::1]:2525 127.0.0.1:2525\n"
                                "submission_listen = 127.0.0.1:5870\n"
                                "local_domains = example.test\n"
                                "spool_dir = /var/spool/tern\n",
                                NULL);
    assert_non_null(next);
    assert_int_equal(config_diff(running, next, NULL, NULL), 0);
    config_free(next);

    next = parse("hostname = two.example.test\n"
                 "mx_listen = 127.0.0.1:2626\n"
                 "submissions_listen = 127.0.0.1:4650\n"
                 "tls_cert_file = c.pem\ntls_key_file = k.pem\n"
                 "local_domains = example.test, example.net\n"
                 "mailboxes = bob@example.net\n"
                 "spool_dir = /tmp/spool\n"
                 "log_level = debug\n",
                 NULL);
    assert_non_null(next);
    struct seen_keys s = {0};
    config_diff(running, next, seen, &s);
    /* hostname, mx, submission, submissions, local_domains, mailboxes, spool_dir,
       log_level, tls_cert_file, tls_key_file, authserv_id, sendmail_origin */
    assert_int_equal(s.n, 12);
    config_keep_restart_keys(next, running);
    memset(&s, 0, sizeof s);
    config_diff(running, next, seen, &s);
    assert_int_equal(s.n, 5);
    const char *left[] = {"local_domains", "mailboxes", "log_level", "tls_cert_file",
                          "tls_key_file"};
    for (size_t i = 0; i < 5; i++) {
        bool found = false;
        for (size_t j = 0; j < 5 && !found; j++)
            found = strcmp(s.key[j], left[i]) == 0;
        assert_true(found);
    }
    /* the listeners are the running ones, in role order */
    assert_string_equal(next->hostname, "one.example.test");
    assert_int_equal(next->nlisten, 3);
    assert_int_equal(next->listen[0].role, ROLE_MX);
    assert_string_equal(next->listen[0].host, "127.0.0.1");
    assert_int_equal(next->listen[1].role, ROLE_MX);
    assert_string_equal(next->listen[1].host, "::1");
    assert_int_equal(next->listen[2].role, ROLE_SUBMISSION);
    assert_string_equal(next->spool_dir, "/var/spool/tern");
    /* authserv_id followed the new hostname by default: it follows the one kept */
    assert_string_equal(next->authserv_id, "one.example.test");
    assert_int_equal(next->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(next->local_domains.n, 2);
    config_free(next);

    /* an authserv_id of its own is kept */
    next = parse("hostname = two.example.test\nauthserv_id = ar.example.test\n"
                 "mx_listen = 127.0.0.1:2525, [::1]:2525\n"
                 "submission_listen = 127.0.0.1:5870\n",
                 NULL);
    config_keep_restart_keys(next, running);
    assert_string_equal(next->authserv_id, "ar.example.test");
    assert_string_equal(next->hostname, "one.example.test");
    config_free(next);
    config_free(running);
}

/* docs/configuration.md's "What SIGHUP applies" lists every key in the row of
   its class, and nothing else. */
static void test_reload_docs(void **state)
{
    (void)state;
    size_t len;
    char *doc = read_source("docs/configuration.md", &len);
    char *sec = strstr(doc, "\n## What SIGHUP applies\n");
    assert_non_null(sec);
    static const struct {
        const char *row;
        int how;
    } rows[] = {{"\n| at once |", CONFIG_RELOAD_AT_ONCE},
                {"\n| to new connections and sessions |", CONFIG_RELOAD_SESSIONS},
                {"\n| after a restart only |", CONFIG_RELOAD_RESTART}};
    size_t listed = 0;
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
        char *p = strstr(sec, rows[r].row);
        assert_non_null(p);
        p += strlen(rows[r].row);
        char *end = strchr(p, '\n');
        assert_non_null(end);
        while ((p = memchr(p, '`', (size_t)(end - p))) != NULL) {
            char *q = memchr(p + 1, '`', (size_t)(end - p - 1));
            assert_non_null(q);
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(q - p - 1), p + 1);
            if (config_key_reload(key) != rows[r].how)
                print_message("# %s is listed under %s\n", key, rows[r].row + 1);
            assert_int_equal(config_key_reload(key), rows[r].how);
            listed++;
            p = q + 1;
        }
    }
    assert_int_equal(listed, config_key_count());
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_numeric_keys),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_spf_keys),
        cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_strings_and_lists),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_comments_and_continuation),
        cmocka_unit_test(test_repeated_keys),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_trusted_networks),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_dmarc_keys),
        cmocka_unit_test(test_control_keys),
        cmocka_unit_test(test_sandbox_keys),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_run_user),
        cmocka_unit_test(test_diff_every_key),
        cmocka_unit_test(test_metrics_listen),
        cmocka_unit_test(test_reload_classes),
        cmocka_unit_test(test_keep_restart_keys),
        cmocka_unit_test(test_reload_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
