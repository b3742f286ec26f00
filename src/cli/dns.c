/*
 * dns - `tern dns [-c FILE] DOMAIN [--check]`: the DNS records to publish so
 * that mail for DOMAIN reaches Tern and mail from it is trusted: MX (the
 * configured hostname), SPF, DKIM (one record per key of DOMAIN in
 * dkim_key_dir), DMARC, MTA-STS and TLS-RPT (mailauth/publish.h says what
 * each holds and why), in zone-file form, then the MTA-STS policy file:
 *
 *     example.org. IN MX 10 mail.example.org.
 *     example.org. IN TXT "v=spf1 mx -all"
 *     rsa-202501._domainkey.example.org. IN TXT "v=DKIM1; k=rsa; p=MIIB..." "..."
 *     _dmarc.example.org. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.org"
 *     _mta-sts.example.org. IN TXT "v=STSv1; id=3f9a0c..."
 *     _smtp._tls.example.org. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.org"
 *     ; https://mta-sts.example.org/.well-known/mta-sts.txt:
 *     ;   version: STSv1
 *     ;   ...
 *
 * With --check, each record is looked up with the configured resolver
 * (dns_forwarders, dns_timeout ...) and reported on its own line:
 *
 *     ok example.org MX
 *     missing _dmarc.example.org TXT
 *     different example.org TXT dns="v=spf1 -all"
 *     tempfail _smtp._tls.example.org TXT reason="SERVFAIL looking up ..."
 *
 * An MX is ok when one MX record names the hostname; a TXT record when one
 * TXT record of its kind (the same v= version, or any at a DKIM name) says
 * the same (publish_matches); "different" shows every record of its kind.
 *
 * Exit status: 0 printed (with --check: every record matches), 1 a record
 * is missing or different, or bad configuration, 2 bad usage, 75 a lookup
 * failed temporarily (and nothing was missing or different).
 */
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "dns/mx.h"
#include "event/event.h"
#include "mailauth/dkimkey.h"
#include "mailauth/publish.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_USAGE "usage: tern dns [-c FILE] DOMAIN [--check]\n"
#define EXIT_TEMPFAIL 75

/* The check of one record. */
struct check {
    struct check_run *run;
    const struct publish_record *want;
    struct buf *line; /* its report line */
    struct dns_query *q;
};

struct check_run {
    struct ev_loop *loop;
    size_t pending; /* queries in flight */
    bool mismatch;  /* a record is missing or different */
    bool tempfail;  /* a lookup failed temporarily */
};

static const char *type_name(int type)
{
    return type == DNS_TYPE_MX ? "MX" : "TXT";
}

/* Append a printable, quoted copy of text (control octets as '?'). */
static void quoted(struct buf *b, const char *text, size_t len)
{
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"' || c == '\\')
            buf_append(b, "\\", 1);
        if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e)
            c = '?';
        buf_append(b, &c, 1);
    }
    buf_append(b, "\"", 1);
}

static void on_answer(void *arg, const struct dns_answer *a)
{
    struct check *c = arg;
    struct check_run *run = c->run;
    const struct publish_record *w = c->want;
    struct buf *line = c->line;
    c->q = NULL;
    run->pending--;
    if (a->status == DNS_ANSWER_TEMPFAIL) {
        run->tempfail = true;
        buf_printf(line, "tempfail %s %s reason=", w->name, type_name(w->type));
        quoted(line, a->reason, strlen(a->reason));
    } else {
        bool found = false, ok = false;
        struct buf seen;
        buf_init(&seen, 16384);
        for (size_t i = 0; a->status == DNS_ANSWER_DATA && i < a->n; i++) {
            char text[4096];
            long n;
            if (w->type == DNS_TYPE_MX) {
                uint16_t pref;
                char host[DNS_NAME_MAX + 1];
                if (!mx_rdata_parse(a->rdata[i], a->len[i], &pref, host))
                    continue;
                n = snprintf(text, sizeof text, "%s", host);
                buf_printf(&seen, " dns=\"%u %s\"", (unsigned)pref, host[0] ? host : ".");
            } else {
                n = dns_txt_join(a->rdata[i], a->len[i], text, sizeof text);
                if (n < 0 || !publish_txt_is_kind(w, text, (size_t)n))
                    continue;
                buf_append(&seen, " dns=", 5);
                quoted(&seen, text, (size_t)n);
            }
            found = true;
            if (publish_matches(w, text, (size_t)n))
                ok = true;
        }
        if (ok) {
            buf_printf(line, "ok %s %s", w->name, type_name(w->type));
        } else if (!found) {
            run->mismatch = true;
            buf_printf(line, "missing %s %s", w->name, type_name(w->type));
        } else {
            run->mismatch = true;
            buf_printf(line, "different %s %s%s", w->name, type_name(w->type), seen.data);
        }
        buf_free(&seen);
    }
    if (run->pending == 0)
        ev_loop_stop(run->loop);
}

/* Look every record up; returns the exit status. */
static int check_all(const struct config *cfg, const struct publish_list *list)
{
    struct check_run run = {.loop = ev_loop_new()};
    char err[512] = "";
    struct dns_resolver *r = run.loop ? dns_resolver_new(run.loop, cfg, err, sizeof err) : NULL;
    if (!r) {
        fprintf(stderr, "tern dns: %s\n", run.loop ? err : "cannot create the event loop");
        if (run.loop)
            ev_loop_free(run.loop);
        return 1;
    }
    struct check *checks = xcalloc(list->n, sizeof *checks);
    struct buf *out = xcalloc(list->n, sizeof *out);
    for (size_t i = 0; i < list->n; i++) {
        buf_init(&out[i], 65536);
        checks[i].run = &run;
        checks[i].want = &list->v[i];
        checks[i].line = &out[i];
        run.pending++;
    }
    for (size_t i = 0; i < list->n; i++)
        checks[i].q = dns_query(r, list->v[i].name, list->v[i].type, on_answer, &checks[i]);
    int status = 1;
    if (ev_loop_run(run.loop) != 0) {
        fprintf(stderr, "tern dns: the event loop failed\n");
    } else {
        for (size_t i = 0; i < list->n; i++)
            printf("%s\n", out[i].data ? out[i].data : "");
        status = run.mismatch ? 1 : run.tempfail ? EXIT_TEMPFAIL : 0;
    }
    for (size_t i = 0; i < list->n; i++) {
        dns_query_cancel(checks[i].q);
        buf_free(&out[i]);
    }
    free(checks);
    free(out);
    dns_resolver_free(r);
    ev_loop_free(run.loop);
    return status;
}

int cli_dns(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG;
    bool check = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'h':
            printf(DNS_USAGE);
            return 0;
        case ':':
            fprintf(stderr, "tern dns: %s needs a value\n" DNS_USAGE, argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "tern dns: unknown option %s\n" DNS_USAGE, argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "tern dns: %s\n" DNS_USAGE,
                optind >= argc ? "a DOMAIN is needed" : "one DOMAIN only");
        return 2;
    }
    const char *domain = argv[optind];
    if (!dkim_domain_valid(domain)) {
        fprintf(stderr, "tern dns: \"%s\" is not a domain name\n" DNS_USAGE, domain);
        return 2;
    }
    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    struct config_diags diags = {0, NULL};
    struct dkim_keystore *ks = dkim_keystore_load(cfg->dkim_key_dir, &diags);
    cli_print_diags(&diags);
    config_diags_free(&diags);
    if (!ks) {
        config_free(cfg);
        return 1;
    }
    const struct dkim_key *first;
    size_t nkeys = dkim_keystore_domain(ks, domain, &first);
    struct publish_dkim *dk = xcalloc(nkeys + 1, sizeof *dk);
    for (size_t i = 0; i < nkeys; i++) {
        dk[i].selector = first[i].selector;
        dk[i].record = first[i].record;
    }
    struct publish_list *list = xcalloc(1, sizeof *list);
    int rc = 1;
    if (publish_records(domain, cfg->hostname, dk, nkeys, list) < 0) {
        fprintf(stderr, "tern dns: a record name for %s would be too long\n", domain);
        goto out;
    }
    if (check) {
        rc = check_all(cfg, list);
        goto out;
    }
    struct buf text;
    buf_init(&text, 1024 * 1024);
    buf_printf(&text, "; DNS records for %s (mail server %s)\n", list->v[0].name, cfg->hostname);
    for (size_t i = 0; i < list->n; i++)
        publish_zone_line(&list->v[i], &text);
    if (nkeys == 0)
        buf_printf(&text, "; no DKIM key for %s in %s: make one with `tern dkim keygen %s`\n",
                   list->v[0].name, cfg->dkim_key_dir, list->v[0].name);
    if (cfg->relayhost)
        buf_printf(&text, "; mail leaves through relayhost %s: SPF must authorize it too\n",
                   cfg->relayhost);
    buf_printf(&text,
               "; MTA-STS also needs mta-sts.%s (A/AAAA) serving over HTTPS, as\n"
               "; https://mta-sts.%s/.well-known/mta-sts.txt, this policy:\n",
               list->v[0].name, list->v[0].name);
    struct buf policy;
    buf_init(&policy, 4096);
    publish_mtasts_policy(cfg->hostname, &policy);
    for (char *line = strtok(policy.data, "\n"); line; line = strtok(NULL, "\n"))
        buf_printf(&text, ";   %s\n", line);
    buf_free(&policy);
    fwrite(text.data, 1, text.len, stdout);
    buf_free(&text);
    rc = 0;
out:
    publish_list_free(list);
    free(list);
    free(dk);
    dkim_keystore_free(ks);
    config_free(cfg);
    return rc;
}
