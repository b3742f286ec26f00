/*
 * dkim - `tern dkim keygen|sign|verify`: the operator's DKIM tools.
 *
 *   tern dkim keygen [-c FILE] DOMAIN [--selector S] [--type rsa|ed25519]
 *                    [--bits N] [--force]
 *       Generate a key (RSA 2048 bits by default; at least 1024, at most
 *       8192; or Ed25519, RFC 8463) into dkim_key_dir as
 *       DOMAIN/SELECTOR.key (mode 0600, directories 0700), refusing to
 *       replace an existing key without --force, and print the TXT record to
 *       publish, in zone-file form, each character-string at most 255 octets:
 *
 *           wrote private key var/dkim/example.org/rsa-202501.key (rsa 2048 bits, mode 0600)
 *           publish this record in DNS:
 *           rsa-202501._domainkey.example.org. IN TXT "v=DKIM1; k=rsa; p=MIIB..." "...AQAB"
 *
 *       The default selector is the type and the month, UTC: rsa-YYYYMM or
 *       ed25519-YYYYMM, so that a new key each rotation gets a new name and
 *       the two types of one month do not collide.
 *
 *   tern dkim sign [-c FILE] [-d DOMAIN] < MESSAGE
 *       Sign MESSAGE with every key of DOMAIN (default: the domain of its
 *       From: address) and print the DKIM-Signature fields followed by the
 *       message. Lines may end in LF or CRLF; the output keeps the ending of
 *       the message's first line.
 *
 *   tern dkim verify [-c FILE] < MESSAGE
 *       Verify every DKIM signature (at most DKIM_VERIFY_MAX), fetching keys
 *       with the configured resolver (dns_forwarders, dns_timeout ...), and
 *       print one line per signature:
 *
 *           dkim=pass d=example.org s=rsa-202501 a=rsa-sha256 header.b=Xy3K...
 *           dkim=fail d=example.org s=sel a=ed25519-sha256 header.b=... reason="body hash did not
 * verify"
 *
 *       or "dkim=none" for a message without signatures.
 *
 * Exit status: keygen and sign 0 done, 1 error (bad configuration, key
 * exists, no key for the domain, message unusable); verify 0 when a
 * signature passed, 1 otherwise; 2 bad usage everywhere.
 */
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "event/event.h"
#include "mailauth/dkim.h"
#include "mailauth/dkimkey.h"
#include "smtp/header.h"
#include "smtp/smtp.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DKIM_USAGE                                                                                 \
    "usage: tern dkim keygen [-c FILE] DOMAIN [--selector S] [--type rsa|ed25519] [--bits N] "     \
    "[--force]\n"                                                                                  \
    "       tern dkim sign [-c FILE] [-d DOMAIN] < MESSAGE\n"                                      \
    "       tern dkim verify [-c FILE] < MESSAGE\n"

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tern dkim: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n" DKIM_USAGE);
    va_end(ap);
    return 2;
}

/* ---- keygen ---- */

static int dkim_keygen(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"selector", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        {"bits", required_argument, NULL, 'b'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG, *selector = NULL;
    enum dkim_key_type type = DKIM_KEY_RSA;
    unsigned bits = DKIM_RSA_DEFAULT_BITS;
    bool bits_given = false, force = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":c:s:t:b:fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 't':
            if (strcmp(optarg, "rsa") == 0)
                type = DKIM_KEY_RSA;
            else if (strcmp(optarg, "ed25519") == 0)
                type = DKIM_KEY_ED25519;
            else
                return usage_error("--type is rsa or ed25519, not \"%s\"", optarg);
            break;
        case 'b': {
            uint64_t v;
            if (!parse_u64(optarg, strlen(optarg), &v) || v > 65536)
                return usage_error("--bits takes a number, not \"%s\"", optarg);
            bits = (unsigned)v;
            bits_given = true;
            break;
        }
        case 'f':
            force = true;
            break;
        case 'h':
            printf(DKIM_USAGE);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return usage_error("%s", optind >= argc ? "keygen needs a DOMAIN" : "one DOMAIN only");
    const char *domain = argv[optind];
    if (!dkim_domain_valid(domain))
        return usage_error("\"%s\" is not a domain name", domain);
    if (type == DKIM_KEY_ED25519 && bits_given)
        return usage_error("%s", "--bits is for RSA keys only");
    if (type == DKIM_KEY_RSA && (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS)) {
        fprintf(stderr,
                "tern dkim keygen: RSA keys for DKIM have %d to %d bits (RFC 8301: at least "
                "1024; 2048 is the default)\n",
                DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
        return 2;
    }
    char defsel[32];
    if (!selector) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(defsel, sizeof defsel, "%s-%04d%02d", type == DKIM_KEY_RSA ? "rsa" : "ed25519",
                 tm.tm_year + 1900, tm.tm_mon + 1);
        selector = defsel;
    }
    if (!dkim_selector_valid(selector))
        return usage_error("\"%s\" is not a valid selector", selector);

    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    int rc = 1;
    char err[512], path[4096];
    char *pem = dkim_key_generate(type, bits, err, sizeof err);
    if (!pem) {
        fprintf(stderr, "tern dkim keygen: %s\n", err);
        goto out;
    }
    enum dkim_key_type t;
    unsigned b;
    char *record = NULL;
    if (dkim_key_describe(pem, strlen(pem), &t, &b, &record, err, sizeof err) < 0) {
        fprintf(stderr, "tern dkim keygen: %s\n", err);
        goto out;
    }
    int w = dkim_key_write(cfg->dkim_key_dir, domain, selector, pem, force, path, sizeof path, err,
                           sizeof err);
    if (w != 0) {
        fprintf(stderr, "tern dkim keygen: %s%s\n", err,
                w == 1 ? "; use --force to replace it (and publish the new record)" : "");
        free(record);
        goto out;
    }
    char lname[DKIM_NAME_MAX + 1], lsel[DKIM_SELECTOR_MAX + 1];
    snprintf(lname, sizeof lname, "%s", domain);
    snprintf(lsel, sizeof lsel, "%s", selector);
    ascii_lower(lname);
    ascii_lower(lsel);
    struct buf txt;
    buf_init(&txt, 16384);
    dkim_zone_txt(record, strlen(record), &txt);
    printf("wrote private key %s (%s %u bits, mode 0600)\n"
           "publish this record in DNS:\n"
           "%s._domainkey.%s. IN TXT %s\n",
           path, t == DKIM_KEY_RSA ? "rsa" : "ed25519", b, lsel, lname, txt.data);
    buf_free(&txt);
    free(record);
    rc = 0;
out:
    if (pem) {
        explicit_bzero(pem, strlen(pem));
        free(pem);
    }
    config_free(cfg);
    return rc;
}

/* ---- reading a message ---- */

/* Read stdin (at most max octets) into out with CRLF line ends; *crlf tells
   whether the first line ended in CRLF. 0, or -1 with a message printed. */
static int read_message(const char *cmd, uint64_t max, struct buf *out, bool *crlf)
{
    char chunk[65536];
    bool first_line = true, prev_cr = false;
    *crlf = true;
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "tern dkim %s: cannot read the message: %s\n", cmd, strerror(errno));
            return -1;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            char ch = chunk[i];
            int rc = 0;
            if (ch == '\n' && !prev_cr) {
                rc = buf_append(out, "\r\n", 2);
                if (first_line)
                    *crlf = false;
            } else {
                rc = buf_append(out, &ch, 1);
            }
            if (ch == '\n')
                first_line = false;
            prev_cr = ch == '\r';
            if (rc < 0 || out->len > max) {
                fprintf(stderr, "tern dkim %s: the message is larger than %llu octets\n", cmd,
                        (unsigned long long)max);
                return -1;
            }
        }
    }
    return 0;
}

/* Write text to stdout, CRLF turned into LF unless crlf. */
static void write_text(const char *p, size_t n, bool crlf)
{
    if (crlf) {
        fwrite(p, 1, n, stdout);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
            putchar(p[i]);
}

/* ---- sign ---- */

static int dkim_sign_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"domain", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG, *domain = NULL;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":c:d:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'd':
            domain = optarg;
            break;
        case 'h':
            printf(DKIM_USAGE);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    int rc = 1;
    struct buf msg, sig;
    buf_init(&msg, cfg->message_size_limit + 1);
    buf_init(&sig, 65536);
    struct dkim_keystore *ks = NULL;
    struct dkim_ctx *ctx = NULL;
    struct dkim_signer *s = NULL;
    bool crlf;
    char err[512];
    char from_domain[SMTP_PATH_MAX + 1];
    if (read_message("sign", cfg->message_size_limit, &msg, &crlf) < 0)
        goto out;
    if (!domain) {
        struct smtp_hdr_scan hs;
        smtp_hdr_init(&hs);
        smtp_hdr_feed(&hs, (const uint8_t *)msg.data, msg.len);
        char addrs[1][SMTP_PATH_MAX + 1];
        if (hs.from_fields != 1 || smtp_addr_list_parse(hs.from, hs.from_len, addrs, 1) != 1 ||
            !strchr(addrs[0], '@')) {
            fprintf(stderr, "tern dkim sign: the message needs one From: field with one address "
                            "(or give -d DOMAIN)\n");
            goto out;
        }
        snprintf(from_domain, sizeof from_domain, "%s", strrchr(addrs[0], '@') + 1);
        domain = from_domain;
    }
    struct config_diags diags = {0, NULL};
    ks = dkim_keystore_load(cfg->dkim_key_dir, &diags);
    cli_print_diags(&diags);
    config_diags_free(&diags);
    if (!ks)
        goto out;
    ctx = dkim_ctx_new(err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "tern dkim sign: %s\n", err);
        goto out;
    }
    s = dkim_signer_new(ctx, ks, domain, "cli", err, sizeof err);
    if (!s) {
        fprintf(stderr, "tern dkim sign: %s (keys are read from %s)\n", err, cfg->dkim_key_dir);
        goto out;
    }
    dkim_signer_feed(s, msg.data ? msg.data : "", msg.len);
    if (dkim_signer_finish(s, &sig, err, sizeof err) < 0) {
        fprintf(stderr, "tern dkim sign: %s\n", err);
        goto out;
    }
    write_text(sig.data, sig.len, crlf);
    write_text(msg.data ? msg.data : "", msg.len, crlf);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tern dkim sign: cannot write: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    dkim_signer_free(s);
    dkim_ctx_free(ctx);
    dkim_keystore_free(ks);
    buf_free(&msg);
    buf_free(&sig);
    config_free(cfg);
    return rc;
}

/* ---- verify ---- */

struct verify_run {
    struct ev_loop *loop;
    int status; /* exit status */
};

static void on_verified(void *arg, const struct dkim_results *res)
{
    struct verify_run *run = arg;
    if (res->n == 0)
        printf("dkim=none\n");
    for (size_t i = 0; i < res->n; i++) {
        const struct dkim_sig_result *r = &res->sigs[i];
        printf("dkim=%s d=%s s=%s a=%s header.b=%s", dkim_result_name(r->result),
               r->domain[0] ? r->domain : "-", r->selector[0] ? r->selector : "-",
               r->alg[0] ? r->alg : "-", r->header_b[0] ? r->header_b : "-");
        if (r->identity[0])
            printf(" header.i=%s", r->identity);
        if (r->testing)
            printf(" testing=yes");
        if (r->reason[0])
            printf(" reason=\"%s\"", r->reason);
        printf("\n");
    }
    if (res->unexamined > 0)
        printf("# %zu more signatures not examined\n", res->unexamined);
    fflush(stdout);
    run->status = res->summary == DKIM_RESULT_PASS ? 0 : 1;
    ev_loop_stop(run->loop);
}

static int dkim_verify_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'h':
            printf(DKIM_USAGE);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    struct verify_run run = {ev_loop_new(), 1};
    struct buf msg;
    buf_init(&msg, cfg->message_size_limit + 1);
    struct dns_resolver *dns = NULL;
    struct dkim_ctx *ctx = NULL;
    struct dkim_verifier *v = NULL;
    char err[512] = "";
    bool crlf;
    if (read_message("verify", cfg->message_size_limit, &msg, &crlf) < 0)
        goto out;
    dns = run.loop ? dns_resolver_new(run.loop, cfg, err, sizeof err) : NULL;
    if (!dns) {
        fprintf(stderr, "tern dkim verify: %s\n", run.loop ? err : "cannot create the event loop");
        goto out;
    }
    ctx = dkim_ctx_new(err, sizeof err);
    if (ctx)
        v = dkim_verifier_new(ctx, run.loop, dns, "cli", on_verified, &run, err, sizeof err);
    if (!v) {
        fprintf(stderr, "tern dkim verify: %s\n", err);
        goto out;
    }
    dkim_verifier_feed(v, msg.data ? msg.data : "", msg.len);
    dkim_verifier_finish(v);
    if (ev_loop_run(run.loop) != 0) {
        fprintf(stderr, "tern dkim verify: the event loop failed\n");
        run.status = 1;
    }
out:
    dkim_verifier_free(v);
    dkim_ctx_free(ctx);
    dns_resolver_free(dns);
    if (run.loop)
        ev_loop_free(run.loop);
    buf_free(&msg);
    config_free(cfg);
    return run.status;
}

int cli_dkim(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, DKIM_USAGE);
        return 2;
    }
    if (strcmp(argv[1], "keygen") == 0)
        return dkim_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "sign") == 0)
        return dkim_sign_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return dkim_verify_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        printf(DKIM_USAGE);
        return 0;
    }
    return usage_error("unknown subcommand \"%s\"", argv[1]);
}
