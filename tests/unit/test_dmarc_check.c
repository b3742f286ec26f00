/*
 * test_dmarc_check - unit tests of the completion rules of
 * src/mailauth/dmarc_check.c on a real event loop and resolver: the callback
 * runs exactly once, from the loop and never inside dmarc_check_start();
 * a cancelled check never calls back; freeing the checker cancels the
 * checks in flight. The resolver forwards to a loopback port where nothing
 * answers, so every lookup ends in a temporary failure after dns_timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "dns/dns.h"
#include "event/event.h"
#include "mailauth/dmarc_check.h"
#include "mailauth/orgdomain.h"

struct fixture {
    struct config *cfg;
    struct ev_loop *loop;
    struct dns_resolver *dns;
    struct orgdomain *od;
    struct dmarc_checker *checker;
};

/* What the callbacks saw. */
struct seen {
    int calls;
    bool in_start;            /* a callback ran inside dmarc_check_start */
    enum dmarc_status status; /* the last result */
    char reason[600];         /* the last discovery reason */
    struct ev_loop *stop;     /* stop this loop after stop_after calls */
    int stop_after;
};

static bool starting;

static void on_result(void *arg, const struct dmarc_check_result *r)
{
    struct seen *s = arg;
    s->calls++;
    s->in_start |= starting;
    s->status = r->res->status;
    snprintf(s->reason, sizeof s->reason, "%s", r->disc->reason);
    if (s->stop && s->calls >= s->stop_after)
        ev_loop_stop(s->stop);
}

static int setup(void **state)
{
    static struct fixture f;
    static const char text[] = "mx_listen = 127.0.0.1:2525\n"
                               "hostname = mx.example.test\n"
                               "dns_forwarders = 127.0.0.1@9\n"
                               "dns_timeout = 1\n";
    struct config_diags d = {0};
    char err[256];
    f.cfg = config_parse(text, sizeof text - 1, "t.conf", &d);
    config_diags_free(&d);
    f.loop = ev_loop_new();
    f.dns = f.cfg && f.loop ? dns_resolver_new(f.loop, f.cfg, err, sizeof err) : NULL;
    f.od = orgdomain_new(NULL, err, sizeof err);
    if (!f.dns || !f.od)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dns_resolver_free(f->dns);
    ev_loop_free(f->loop);
    orgdomain_free(f->od);
    config_free(f->cfg);
    return 0;
}

static struct dmarc_check *start(struct dmarc_checker *c, enum dmarc_from fs, const char *from,
                                 struct seen *s)
{
    struct dmarc_dkim sig = {DMARC_AUTH_PASS, "example.org", "s"};
    struct dmarc_check_request req = {
        .from_status = fs,
        .from_domain = from,
        .in = {DMARC_AUTH_FAIL, "example.net", 1, &sig},
        .pct_roll = 0,
    };
    starting = true;
    struct dmarc_check *q = dmarc_check_start(c, &req, on_result, s);
    starting = false;
    assert_non_null(q);
    return q;
}

static void test_once_from_the_loop(void **state)
{
    struct fixture *f = *state;
    struct dmarc_checker *c = dmarc_checker_new(f->loop, f->dns, f->od);
    struct seen bad = {0}, lookup = {0};
    /* no lookup needed: reported from the loop all the same */
    start(c, DMARC_FROM_MANY_FIELDS, NULL, &bad);
    /* a lookup that fails temporarily */
    start(c, DMARC_FROM_OK, "Example.ORG", &lookup);
    assert_int_equal(bad.calls + lookup.calls, 0);
    lookup.stop = f->loop;
    lookup.stop_after = 1;
    assert_int_equal(ev_loop_run(f->loop), 0);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(lookup.calls, 1);
    assert_false(bad.in_start || lookup.in_start);
    assert_int_equal(bad.status, DMARC_STATUS_PERMERROR);
    assert_non_null(strstr(bad.reason, "multiple-from-fields"));
    assert_int_equal(lookup.status, DMARC_STATUS_TEMPERROR);
    assert_non_null(strstr(lookup.reason, "_dmarc.example.org"));
    dmarc_checker_free(c);
}

static void stop_loop(void *arg)
{
    ev_loop_stop(arg);
}

static void test_cancel_and_free(void **state)
{
    struct fixture *f = *state;
    struct dmarc_checker *c = dmarc_checker_new(f->loop, f->dns, f->od);
    struct seen a = {0}, b = {0}, d = {0};
    struct dmarc_check *qa = start(c, DMARC_FROM_OK, "example.org", &a);
    struct dmarc_check *qb = start(c, DMARC_FROM_NONE, NULL, &b);
    start(c, DMARC_FROM_OK, "mail.example.net", &d);
    dmarc_check_cancel(qa);
    dmarc_check_cancel(qb);
    dmarc_check_cancel(NULL);
    /* run the loop past dns_timeout: only d reports */
    struct ev_timer *t = ev_timer_new(f->loop, stop_loop, f->loop);
    ev_timer_start(t, 2500);
    assert_int_equal(ev_loop_run(f->loop), 0);
    assert_int_equal(a.calls + b.calls, 0);
    assert_int_equal(d.calls, 1);
    /* freeing the checker cancels what is in flight */
    struct seen e = {0};
    start(c, DMARC_FROM_OK, "example.com", &e);
    start(c, DMARC_FROM_NONE, NULL, &e);
    dmarc_checker_free(c);
    ev_timer_start(t, 1500);
    assert_int_equal(ev_loop_run(f->loop), 0);
    assert_int_equal(e.calls, 0);
    ev_timer_free(t);
    dmarc_checker_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once_from_the_loop),
        cmocka_unit_test(test_cancel_and_free),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
