/*
 * dmarc - `tern dmarc [-c FILE] --from DOMAIN [--spf RESULT:DOMAIN]
 * [--dkim RESULT:DOMAIN[:SELECTOR]]... [--pct-roll N] [--report [--ip ADDR]]`:
 * DMARC policy discovery and evaluation (RFC 7489 §6.6) for a message
 * with the given From domain and SPF and DKIM results, on the resolver the
 * configuration describes (dns_forwarders, dns_timeout, ...), exactly as
 * the SMTP session runs it. An operator checks a domain's policy with it:
 *
 *     $ tern dmarc --from example.org --spf fail:example.net --pct-roll 0
 *     dmarc=fail from=example.org policy.domain=example.org p=reject sp=- np=- pct=100
 *     adkim=r aspf=r policy=reject policy.tag=p sampled_out=no disposition=reject
 *     action=reject spf_aligned=no dkim_aligned=no
 *     Authentication-Results: mx.example.net;
 *             dmarc=fail header.from=example.org (p=reject dis=reject)
 *
 * (the first line is one line). --from takes a domain, or a From field's
 * value ("Name <a@example.org>", "a@x.org, b@y.org"), read as the session
 * reads it (several domains are a permerror). RESULT is an RFC 8601 result
 * (pass, fail, softfail, neutral, none, policy, temperror, permerror). pct
 * is drawn at random unless --pct-roll gives the draw (0..99: the policy
 * applies when it is below pct). `action` is what Tern would do after
 * dmarc_reject_action. With --report, the message's line of aggregate
 * report data is appended under dmarc_report_dir (--ip gives the client
 * address it records; the SPF domain is its envelope_from).
 *
 * Exit status: 0 evaluated (pass, fail, none, permerror), 75 temperror, 1
 * a bad configuration or a report that could not be written, 2 bad usage.
 */
#include "cli/cli.h"
#include "config/config.h"
#include "core/util.h"
#include "dns/dmarc.h"
#include "dns/dns.h"
#include "event/event.h"
#include "mailauth/dmarc_check.h"
#include "mailauth/dmarc_report.h"
#include "mailauth/orgdomain.h"
#include "smtp/authres.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DMARC_USAGE                                                                                \
    "usage: tern dmarc [-c FILE] --from DOMAIN [--spf RESULT:DOMAIN]\n"                            \
    "                  [--dkim RESULT:DOMAIN[:SELECTOR]]... [--pct-roll N] [--report [--ip "       \
    "ADDR]]\n"
#define EXIT_TEMPFAIL 75

/* What the command was asked and found. */
struct dmarc_run {
    struct ev_loop *loop;
    const struct config *cfg;
    bool report;    /* --report */
    const char *ip; /* --ip */
    int status;     /* exit status */
};

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void on_result(void *arg, const struct dmarc_check_result *r)
{
    struct dmarc_run *run = arg;
    const struct dmarc_result *res = r->res;
    const struct dmarc_discovery *d = r->disc;
    bool found = d->status == DMARC_DISC_FOUND;
    const struct dmarc_record *rec = found ? &d->rec : NULL;
    enum dmarc_action action = dmarc_local_action(res->disposition, run->cfg->dmarc_reject_action);
    printf("dmarc=%s from=%s policy.domain=%s p=%s sp=%s np=%s pct=%u adkim=%s aspf=%s "
           "policy=%s policy.tag=%s sampled_out=%s disposition=%s action=%s spf_aligned=%s "
           "dkim_aligned=%s",
           dmarc_status_name(res->status), or_dash(r->from_domain), or_dash(found ? d->domain : ""),
           or_dash(rec ? dmarc_policy_name(rec->p) : ""),
           or_dash(rec ? dmarc_policy_name(rec->sp) : ""),
           or_dash(rec ? dmarc_policy_name(rec->np) : ""), rec ? rec->pct : 100,
           rec && rec->adkim == DMARC_ALIGN_STRICT ? "s" : "r",
           rec && rec->aspf == DMARC_ALIGN_STRICT ? "s" : "r",
           or_dash(dmarc_policy_name(res->policy)), or_dash(dmarc_policy_tag_name(res->policy_tag)),
           res->sampled_out ? "yes" : "no", dmarc_disposition_name(res->disposition),
           dmarc_action_name(action), res->spf_aligned ? "yes" : "no",
           res->dkim_aligned ? "yes" : "no");
    if (!found && d->reason[0])
        printf(" reason=\"%s\"", d->reason);
    printf("\n");

    char comment[64], field[2048];
    struct authres_result ar;
    dmarc_check_authres(r, action, comment, sizeof comment, &ar);
    if (authres_compose(run->cfg->authserv_id, &ar, 1, field, sizeof field) > 0)
        fputs(field, stdout);
    run->status = res->status == DMARC_STATUS_TEMPERROR ? EXIT_TEMPFAIL : 0;

    if (run->report) {
        struct dmarc_report_entry e = {
            .time = (int64_t)time(NULL),
            .source_ip = run->ip,
            .envelope_from = r->in->spf_domain ? r->in->spf_domain : "",
            .header_from = r->from_domain,
            .disc = d,
            .res = res,
            .in = r->in,
            .disposition = action == DMARC_ACTION_REJECT       ? DMARC_DISP_REJECT
                           : action == DMARC_ACTION_QUARANTINE ? DMARC_DISP_QUARANTINE
                                                               : DMARC_DISP_NONE,
        };
        char err[512];
        if (dmarc_report_append(run->cfg->dmarc_report_dir, &e, err, sizeof err) < 0) {
            fprintf(stderr, "tern dmarc: %s\n", err);
            run->status = 1;
        }
    }
    fflush(stdout);
    ev_loop_stop(run->loop);
}

/* "RESULT:DOMAIN[:SELECTOR]" (selector only when sel is not NULL). */
static bool parse_auth(const char *s, enum dmarc_auth *result, const char **domain,
                       const char **sel, char *buf, size_t buflen)
{
    if (strlen(s) >= buflen)
        return false;
    strcpy(buf, s);
    char *colon = strchr(buf, ':');
    if (!colon || !dmarc_auth_parse(buf, (size_t)(colon - buf), result))
        return false;
    *domain = colon + 1;
    char *second = strchr(colon + 1, ':');
    if (second) {
        if (!sel)
            return false;
        *second = '\0';
        *sel = second + 1;
    } else if (sel) {
        *sel = "";
    }
    return true;
}

int cli_dmarc(int argc, char **argv)
{
    enum { OPT_FROM = 256, OPT_SPF, OPT_DKIM, OPT_PCT, OPT_REPORT, OPT_IP };
    static const struct option opts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"spf", required_argument, NULL, OPT_SPF},
        {"dkim", required_argument, NULL, OPT_DKIM},
        {"pct-roll", required_argument, NULL, OPT_PCT},
        {"report", no_argument, NULL, OPT_REPORT},
        {"ip", required_argument, NULL, OPT_IP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG;
    const char *from = NULL;
    struct dmarc_check_request req;
    memset(&req, 0, sizeof req);
    static char spf_buf[DNS_NAME_MAX + 64];
    static char dkim_buf[DMARC_MAX_DKIM][DNS_NAME_MAX + 128];
    struct dmarc_dkim dkim[DMARC_MAX_DKIM];
    bool have_roll = false;
    struct dmarc_run run = {NULL, NULL, false, "", 1};
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case OPT_FROM:
            from = optarg;
            break;
        case OPT_SPF:
            if (!parse_auth(optarg, &req.in.spf, &req.in.spf_domain, NULL, spf_buf,
                            sizeof spf_buf)) {
                fprintf(stderr, "tern dmarc: --spf %s: expected RESULT:DOMAIN\n" DMARC_USAGE,
                        optarg);
                return 2;
            }
            break;
        case OPT_DKIM:
            if (req.in.ndkim >= DMARC_MAX_DKIM) {
                fprintf(stderr, "tern dmarc: at most %d --dkim\n", DMARC_MAX_DKIM);
                return 2;
            }
            if (!parse_auth(optarg, &dkim[req.in.ndkim].result, &dkim[req.in.ndkim].domain,
                            &dkim[req.in.ndkim].selector, dkim_buf[req.in.ndkim],
                            sizeof dkim_buf[req.in.ndkim])) {
                fprintf(stderr,
                        "tern dmarc: --dkim %s: expected RESULT:DOMAIN[:SELECTOR]\n" DMARC_USAGE,
                        optarg);
                return 2;
            }
            req.in.ndkim++;
            break;
        case OPT_PCT: {
            uint64_t v;
            if (!parse_u64(optarg, strlen(optarg), &v) || v > 99) {
                fprintf(stderr, "tern dmarc: --pct-roll %s: expected 0 to 99\n", optarg);
                return 2;
            }
            req.pct_roll = (unsigned)v;
            have_roll = true;
            break;
        }
        case OPT_REPORT:
            run.report = true;
            break;
        case OPT_IP:
            run.ip = optarg;
            break;
        case 'h':
            printf(DMARC_USAGE);
            return 0;
        case ':':
            fprintf(stderr, "tern dmarc: option %s needs an argument\n" DMARC_USAGE,
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "tern dmarc: unknown option %s\n" DMARC_USAGE, argv[optind - 1]);
            return 2;
        }
    }
    if (!from || optind != argc) {
        fprintf(stderr, "tern dmarc: give --from DOMAIN\n" DMARC_USAGE);
        return 2;
    }
    req.in.dkim = dkim;
    if (!have_roll)
        req.pct_roll = dmarc_pct_roll();
    static char from_domain[DNS_NAME_MAX + 1];
    if (strpbrk(from, "@<,;\"")) {
        req.from_status = dmarc_from_domain(1, from, strlen(from), false, from_domain);
        req.from_domain = from_domain;
    } else {
        req.from_status = DMARC_FROM_OK;
        req.from_domain = from;
    }

    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    if (run.report && !cfg->dmarc_report_dir) {
        fprintf(stderr, "tern dmarc: --report needs dmarc_report_dir in %s\n", file);
        config_free(cfg);
        return 1;
    }
    run.cfg = cfg;
    char err[512] = "";
    struct orgdomain *od = orgdomain_new(NULL, err, sizeof err);
    run.loop = od ? ev_loop_new() : NULL;
    struct dns_resolver *r = run.loop ? dns_resolver_new(run.loop, cfg, err, sizeof err) : NULL;
    struct dmarc_checker *checker = r ? dmarc_checker_new(run.loop, r, od) : NULL;
    if (!checker) {
        fprintf(stderr, "tern dmarc: %s\n", err[0] ? err : "cannot create the event loop");
        run.status = 1;
    } else {
        dmarc_check_start(checker, &req, on_result, &run);
        if (ev_loop_run(run.loop) != 0) {
            fprintf(stderr, "tern dmarc: the event loop failed\n");
            run.status = EXIT_TEMPFAIL;
        }
    }
    dmarc_checker_free(checker);
    dns_resolver_free(r);
    ev_loop_free(run.loop);
    orgdomain_free(od);
    config_free(cfg);
    return run.status;
}
