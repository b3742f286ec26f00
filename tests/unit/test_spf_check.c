/*
 * test_spf_check - unit tests of the SPF driver's lifetime rules
 * (src/mailauth/spf_check.c) on a real event loop, without a DNS server:
 * the forwarder is a UDP socket of the test's own that never answers. The
 * callback comes exactly once, from the loop and never from inside
 * spf_check_start() (also for a result known without DNS); spf_timeout ends
 * a check with temperror; a cancelled check, or one still in flight when
 * it is cancelled before the resolver is freed, is never called back and
 * leaks nothing under ASan. The answers themselves are tested in
 * test_spf.c and tests/integration/test_spf.py.
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
#include "core/util.h"
#include "dns/dns.h"
#include "dns/mx.h"
#include "event/event.h"
#include "mailauth/spf_check.h"

/* A forwarder that never answers, and a resolver that uses it. */
struct fixture {
    int sock;
    char fwd[64];
    char *fwds[1];
    struct config cfg;
    struct ev_loop *loop;
    struct dns_resolver *r;
};

/* What callbacks saw. */
struct seen {
    int calls;
    struct spf_result last;
    struct ev_loop *loop;
    bool inside_request; /* set while spf_check_start() runs */
};

static void on_result(void *arg, const struct spf_result *res)
{
    struct seen *s = arg;
    if (s->inside_request)
        fail_msg("callback called from inside spf_check_start()");
    s->calls++;
    s->last = *res;
    ev_loop_stop(s->loop);
}

static void on_never(void *arg, const struct spf_result *res)
{
    (void)arg;
    (void)res;
    fail_msg("a cancelled check was called back");
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->sock, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    getsockname(f->sock, (struct sockaddr *)&sin, &len);
    snprintf(f->fwd, sizeof f->fwd, "127.0.0.1@%u", (unsigned)ntohs(sin.sin_port));
    f->fwds[0] = f->fwd;
    f->cfg.dns_forwarders.n = 1;
    f->cfg.dns_forwarders.v = f->fwds;
    f->cfg.dns_timeout = 1;
    f->loop = ev_loop_new();
    char err[256] = "";
    f->r = dns_resolver_new(f->loop, &f->cfg, err, sizeof err);
    if (!f->r)
        fail_msg("dns_resolver_new: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dns_resolver_free(f->r);
    ev_loop_free(f->loop);
    close(f->sock);
    free(f);
    return 0;
}

static struct spf_request request(const char *sender, uint32_t timeout_ms)
{
    struct spf_request req = {0};
    assert_true(dns_addr_parse("192.0.2.1", &req.client));
    req.sender = sender;
    req.helo = "client.example.test";
    req.receiver = "mx.example.test";
    req.timeout_ms = timeout_ms;
    return req;
}

/* A result known without DNS still comes from the loop. */
static void test_no_query_needed(void **state)
{
    struct fixture *f = *state;
    struct seen s = {.loop = f->loop};
    struct spf_request req = request("user@localhost", 0);
    s.inside_request = true;
    assert_non_null(spf_check_start(f->r, &req, on_result, &s));
    s.inside_request = false;
    ev_loop_run(f->loop);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.result, SPF_NONE);
    assert_non_null(strstr(s.last.reason, "not a valid domain"));
}

/* spf_timeout shorter than dns_timeout: the check ends at spf_timeout. */
static void test_overall_time_limit(void **state)
{
    struct fixture *f = *state;
    struct seen s = {.loop = f->loop};
    struct spf_request req = request("user@example.test", 300);
    int64_t t0 = now_mono_ms();
    spf_check_start(f->r, &req, on_result, &s);
    ev_loop_run(f->loop);
    int64_t took = now_mono_ms() - t0;
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.result, SPF_TEMPERROR);
    assert_non_null(strstr(s.last.reason, "took longer than 300 ms"));
    assert_string_equal(s.last.domain, "example.test");
    assert_true(took >= 250 && took < 900);
}

/* A query that times out (dns_timeout) is a temperror too. */
static void test_query_timeout(void **state)
{
    struct fixture *f = *state;
    struct seen s = {.loop = f->loop};
    struct spf_request req = request("user@example.test", 5000);
    int64_t t0 = now_mono_ms();
    spf_check_start(f->r, &req, on_result, &s);
    ev_loop_run(f->loop);
    int64_t took = now_mono_ms() - t0;
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.result, SPF_TEMPERROR);
    assert_non_null(strstr(s.last.reason, "timeout"));
    assert_int_equal(s.last.queries, 1);
    assert_true(took >= 900 && took < 4000);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    struct spf_request req = request("user@example.test", 0);
    /* before the loop ran */
    spf_check_cancel(spf_check_start(f->r, &req, on_never, NULL));
    /* with a query in flight */
    struct spf_check *c = spf_check_start(f->r, &req, on_never, NULL);
    struct seen s = {.loop = f->loop};
    struct spf_request quick = request("user@localhost", 0);
    spf_check_start(f->r, &quick, on_result, &s);
    ev_loop_run(f->loop); /* the quick one ends; c has asked its TXT query */
    assert_int_equal(s.calls, 1);
    spf_check_cancel(c);
    spf_check_cancel(NULL);
    /* the silent server's query of c is gone: nothing is called back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_query_needed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overall_time_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
