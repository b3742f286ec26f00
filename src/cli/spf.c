/*
 * spf - `tern spf [-c FILE] [--helo NAME] [--identity mailfrom|helo] IP
 * SENDER`: the SPF result (RFC 7208) for mail from the client address IP
 * with MAIL FROM:<SENDER>, checked with the configuration's DNS settings
 * (dns_forwarders, dns_trust_anchor, dns_timeout), spf_timeout and hostname
 * (%{r}) exactly as the mx session checks it (src/mailauth/spf_check.c).
 *
 * SENDER may be written with or without angle brackets; "" or "<>" is the
 * null sender, whose identity is postmaster@HELO (RFC 7208 §2.4), so it
 * needs --helo. --identity helo checks the HELO name itself (§2.3); SENDER
 * is then only used by macros. Output, one line:
 *
 *     result=pass domain=example.org mechanism=ip4:192.0.2.0/24 reason="example.org designates
 * 192.0.2.1 as permitted sender" result=fail domain=example.org mechanism=-all reason="192.0.2.1 is
 * not a permitted sender of example.org" explanation="..."
 *
 * mechanism is the directive that decided, "default" when none matched, "-"
 * when no record was evaluated; domain is "-" when there was none to check.
 * Quoted values escape '"' and '\' with a backslash. explanation is printed
 * for fail only ("" when the domain gives none).
 *
 * Exit status: 0 a result (any result), 1 a bad configuration (or no event
 * loop or resolver), 2 bad usage.
 */
#include "cli/cli.h"
#include "config/config.h"
#include "dns/dns.h"
#include "dns/mx.h"
#include "dns/spf.h"
#include "event/event.h"
#include "mailauth/spf_check.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SPF_USAGE "usage: tern spf [-c FILE] [--helo NAME] [--identity mailfrom|helo] IP SENDER\n"

/* What the one check of the command came to. */
struct spf_run {
    struct ev_loop *loop;
    bool done;
};

/* A value in double quotes, '"' and '\' escaped. */
static void print_quoted(const char *key, const char *v)
{
    printf(" %s=\"", key);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            putchar('\\');
        putchar(*p);
    }
    putchar('"');
}

static void spf_on_result(void *arg, const struct spf_result *res)
{
    struct spf_run *run = arg;
    printf("result=%s domain=%s mechanism=%s", spf_result_name(res->result),
           res->domain[0] ? res->domain : "-", res->mechanism[0] ? res->mechanism : "-");
    print_quoted("reason", res->reason);
    if (res->result == SPF_FAIL)
        print_quoted("explanation", res->explanation);
    printf("\n");
    fflush(stdout);
    run->done = true;
    ev_loop_stop(run->loop);
}

int cli_spf(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"helo", required_argument, NULL, 'H'},
        {"identity", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG;
    const char *helo = NULL;
    enum spf_identity identity = SPF_IDENTITY_MAILFROM;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'H':
            helo = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "mailfrom") == 0) {
                identity = SPF_IDENTITY_MAILFROM;
            } else if (strcmp(optarg, "helo") == 0) {
                identity = SPF_IDENTITY_HELO;
            } else {
                fprintf(stderr, "tern spf: --identity takes mailfrom or helo\n" SPF_USAGE);
                return 2;
            }
            break;
        case 'h':
            printf(SPF_USAGE);
            return 0;
        case ':':
            fprintf(stderr, "tern spf: option %s needs an argument\n" SPF_USAGE, argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "tern spf: unknown option %s\n" SPF_USAGE, argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "tern spf: give IP and SENDER\n" SPF_USAGE);
        return 2;
    }
    struct spf_request req = {0};
    req.identity = identity;
    if (!dns_addr_parse(argv[optind], &req.client)) {
        fprintf(stderr, "tern spf: %s is not an IPv4 or IPv6 address\n" SPF_USAGE, argv[optind]);
        return 2;
    }
    char sender[SPF_SENDER_MAX + 1];
    const char *s = argv[optind + 1];
    size_t sl = strlen(s);
    if (sl >= 2 && s[0] == '<' && s[sl - 1] == '>') {
        s++;
        sl -= 2;
    }
    if (sl > SPF_SENDER_MAX) {
        fprintf(stderr, "tern spf: SENDER is longer than %d octets\n", SPF_SENDER_MAX);
        return 2;
    }
    memcpy(sender, s, sl);
    sender[sl] = '\0';
    if ((sl == 0 || identity == SPF_IDENTITY_HELO) && (!helo || !helo[0])) {
        fprintf(stderr, "tern spf: %s needs --helo NAME\n" SPF_USAGE,
                sl == 0 ? "the null sender" : "--identity helo");
        return 2;
    }
    req.sender = sender;
    req.helo = helo;

    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    req.receiver = cfg->hostname;
    req.now = (int64_t)time(NULL);
    req.timeout_ms = cfg->spf_timeout * 1000;

    int status = 1;
    struct spf_run run = {ev_loop_new(), false};
    char err[256] = "";
    struct dns_resolver *r = run.loop ? dns_resolver_new(run.loop, cfg, err, sizeof err) : NULL;
    if (!r) {
        fprintf(stderr, "tern spf: %s\n", run.loop ? err : "cannot create the event loop");
    } else {
        struct spf_check *check = spf_check_start(r, &req, spf_on_result, &run);
        if (ev_loop_run(run.loop) != 0 || !run.done) {
            fprintf(stderr, "tern spf: the event loop failed\n");
            if (!run.done)
                spf_check_cancel(check);
        } else {
            status = 0;
        }
    }
    dns_resolver_free(r);
    ev_loop_free(run.loop);
    config_free(cfg);
    return status;
}
