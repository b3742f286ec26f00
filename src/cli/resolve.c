/*
 * resolve - `tern resolve [-c FILE] [-H] NAME`: where the relay would send
 * mail for the domain NAME (RFC 5321 §5.1 with RFC 7505 null MX), resolved
 * with the configuration's DNS settings (dns_forwarders, dns_trust_anchor,
 * dns_prefer, dns_timeout) exactly as the relay does. With -H, NAME is a
 * smarthost: its addresses only, no MX. With -t TYPE (a, aaaa, mx, ptr,
 * txt), NAME is queried for that one record type as SPF, DKIM and DMARC
 * query it, and each record is printed on its own line (TXT joined, names
 * and addresses as text):
 *
 *     _dmarc.example.org type=TXT status=data secure=no records=1
 *     v=DMARC1; p=none
 *
 * Output: one status line, then one line per host in the order the relay
 * tries them, with its preference, name and addresses (dns_prefer family
 * first):
 *
 *     example.org status=ok implicit=no secure=no
 *     10 mx1.example.org 2001:db8::25 192.0.2.25
 *     20 mx2.example.org 192.0.2.26
 *
 *     example.net status=tempfail dsn=4.4.3 reason="SERVFAIL looking up MX for example.net"
 *
 * Exit status: 0 ok, 1 permanent failure (no such domain, null MX, no
 * address) or a bad configuration, 2 bad usage, 75 (EX_TEMPFAIL) temporary
 * failure.
 */
#include "cli/cli.h"
#include "config/config.h"
#include "dns/dns.h"
#include "dns/mx.h"
#include "event/event.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define RESOLVE_USAGE "usage: tern resolve [-c FILE] [-H | -t a|aaaa|mx|ptr|txt] NAME\n"
#define EXIT_TEMPFAIL 75

/* What the one lookup of the command came to. */
struct resolve_run {
    struct ev_loop *loop;
    int status; /* exit status */
};

static void resolve_on_nexthop(void *arg, const struct dns_nexthop *res)
{
    struct resolve_run *run = arg;
    if (res->status == DNS_OK) {
        printf("%s status=ok implicit=%s secure=%s\n", res->domain, res->implicit ? "yes" : "no",
               res->secure ? "yes" : "no");
        for (size_t i = 0; i < res->nhosts; i++) {
            const struct dns_host *h = &res->hosts[i];
            printf("%u %s", (unsigned)h->preference, h->name);
            for (size_t k = 0; k < h->naddrs; k++) {
                char addr[64];
                dns_addr_format(&h->addrs[k], addr, sizeof addr);
                printf(" %s", addr);
            }
            printf("\n");
        }
        run->status = 0;
    } else {
        printf("%s status=%s dsn=%s reason=\"%s\"\n", res->domain, dns_status_name(res->status),
               dns_status_dsn(res->status), res->reason);
        run->status = dns_status_temporary(res->status) ? EXIT_TEMPFAIL : 1;
    }
    fflush(stdout);
    ev_loop_stop(run->loop);
}

static const char *answer_status_name(enum dns_answer_status s)
{
    switch (s) {
    case DNS_ANSWER_DATA:
        return "data";
    case DNS_ANSWER_NODATA:
        return "nodata";
    case DNS_ANSWER_NXDOMAIN:
        return "nxdomain";
    case DNS_ANSWER_TEMPFAIL:
        return "tempfail";
    case DNS_ANSWER_INVALID:
        return "invalid";
    }
    return "?";
}

/* One record of a raw answer as text, or "malformed". */
static void print_record(int type, const uint8_t *rdata, size_t len)
{
    char text[4096];
    struct dns_addr addr;
    uint16_t pref;
    if (type == DNS_TYPE_TXT && dns_txt_join(rdata, len, text, sizeof text) >= 0) {
        printf("%s\n", text);
    } else if ((type == DNS_TYPE_A || type == DNS_TYPE_AAAA) &&
               dns_rdata_addr(type == DNS_TYPE_A ? AF_INET : AF_INET6, rdata, len, &addr)) {
        dns_addr_format(&addr, text, sizeof text);
        printf("%s\n", text);
    } else if (type == DNS_TYPE_MX && mx_rdata_parse(rdata, len, &pref, text)) {
        printf("%u %s\n", (unsigned)pref, text[0] ? text : ".");
    } else if (type == DNS_TYPE_PTR && dns_name_from_wire(rdata, len, text)) {
        printf("%s\n", text);
    } else {
        printf("malformed\n");
    }
}

static void resolve_on_answer(void *arg, const struct dns_answer *a)
{
    struct resolve_run *run = arg;
    static const char *const types[] = {[DNS_TYPE_A] = "A",
                                        [DNS_TYPE_PTR] = "PTR",
                                        [DNS_TYPE_MX] = "MX",
                                        [DNS_TYPE_TXT] = "TXT",
                                        [DNS_TYPE_AAAA] = "AAAA"};
    printf("%s type=%s status=%s secure=%s records=%zu", a->name, types[a->type],
           answer_status_name(a->status), a->secure ? "yes" : "no", a->n);
    if (a->reason[0])
        printf(" reason=\"%s\"", a->reason);
    printf("\n");
    for (size_t i = 0; i < a->n; i++)
        print_record(a->type, a->rdata[i], a->len[i]);
    /* no record of the type is a permanent answer, like NXDOMAIN */
    run->status = a->status == DNS_ANSWER_TEMPFAIL ? EXIT_TEMPFAIL
                  : a->status == DNS_ANSWER_DATA   ? 0
                                                   : 1;
    fflush(stdout);
    ev_loop_stop(run->loop);
}

/* The record type named by a -t argument, or 0. */
static int parse_type(const char *s)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"a", DNS_TYPE_A},
                 {"aaaa", DNS_TYPE_AAAA},
                 {"mx", DNS_TYPE_MX},
                 {"ptr", DNS_TYPE_PTR},
                 {"txt", DNS_TYPE_TXT}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(s, types[i].name) == 0)
            return types[i].type;
    return 0;
}

int cli_resolve(int argc, char **argv)
{
    int type = 0;
    const char *file = CLI_DEFAULT_CONFIG;
    bool host = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "+:c:Ht:h")) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'H':
            host = true;
            break;
        case 't':
            type = parse_type(optarg);
            if (!type) {
                fprintf(stderr, "tern resolve: unknown record type %s\n" RESOLVE_USAGE, optarg);
                return 2;
            }
            break;
        case 'h':
            printf(RESOLVE_USAGE);
            return 0;
        case ':':
            fprintf(stderr, "tern resolve: option -%c needs an argument\n" RESOLVE_USAGE, optopt);
            return 2;
        default:
            fprintf(stderr, "tern resolve: unknown option -%c\n" RESOLVE_USAGE, optopt);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "tern resolve: give one NAME\n" RESOLVE_USAGE);
        return 2;
    }
    const char *name = argv[optind];

    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;

    struct resolve_run run = {ev_loop_new(), 1};
    char err[256] = "";
    struct dns_resolver *r = run.loop ? dns_resolver_new(run.loop, cfg, err, sizeof err) : NULL;
    if (!r) {
        fprintf(stderr, "tern resolve: %s\n", run.loop ? err : "cannot create the event loop");
    } else {
        if (type)
            dns_query(r, name, type, resolve_on_answer, &run);
        else if (host)
            dns_resolve_host(r, name, resolve_on_nexthop, &run);
        else
            dns_resolve_nexthop(r, name, resolve_on_nexthop, &run);
        if (ev_loop_run(run.loop) != 0) {
            fprintf(stderr, "tern resolve: the event loop failed\n");
            run.status = EXIT_TEMPFAIL;
        }
    }
    dns_resolver_free(r);
    ev_loop_free(run.loop);
    config_free(cfg);
    return run.status;
}
