/*
 * test_dns - unit tests of the resolver's lifetime rules (src/dns/dns.c) on a
 * real event loop, without a DNS server: the forwarder is a UDP socket of
 * the test's own that never answers. Callbacks come later from the loop and
 * never from inside the request; cancelled lookups and lookups still in
 * flight when the resolver is freed are never called back (and leak
 * nothing under ASan); a silent server gives a temporary failure after
 * dns_timeout; address literals and invalid names need no query.
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
#include "event/event.h"

/* A forwarder that never answers, and a configuration that uses it. */
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
    struct dns_nexthop last;
    struct ev_loop *loop;
    bool inside_request; /* set while a request call runs */
};

static void on_nexthop(void *arg, const struct dns_nexthop *res)
{
    struct seen *s = arg;
    if (s->inside_request)
        fail_msg("callback called from inside the request");
    s->calls++;
    s->last = *res;
    ev_loop_stop(s->loop);
}

static void on_never(void *arg, const struct dns_nexthop *res)
{
    (void)arg;
    (void)res;
    fail_msg("a cancelled lookup was called back");
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
    f->cfg.dns_prefer = CONFIG_DNS_PREFER_IPV6;
    f->cfg.outbound_port = 25;
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

static void test_silent_server_times_out(void **state)
{
    struct fixture *f = *state;
    struct seen s = {.loop = f->loop};
    int64_t t0 = now_mono_ms();
    s.inside_request = true;
    assert_non_null(dns_resolve_nexthop(f->r, "example.test", on_nexthop, &s));
    s.inside_request = false;
    ev_loop_run(f->loop);
    int64_t took = now_mono_ms() - t0;
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.status, DNS_TEMPFAIL);
    assert_string_equal(s.last.domain, "example.test");
    assert_non_null(strstr(s.last.reason, "timeout"));
    assert_true(took >= 900 && took < 5000);
}

static void test_cancel_and_free_in_flight(void **state)
{
    struct fixture *f = *state;
    struct dns_lookup *a = dns_resolve_nexthop(f->r, "a.example.test", on_never, NULL);
    struct dns_lookup *b = dns_resolve_host(f->r, "b.example.test", on_never, NULL);
    dns_resolve_nexthop(f->r, "c.example.test", on_never, NULL); /* left in flight */
    dns_cancel(b);
    dns_cancel(a);
    /* an immediate result that is cancelled before the loop runs */
    dns_cancel(dns_resolve_host(f->r, "192.0.2.1", on_never, NULL));
    dns_cancel(NULL);
    /* free with c in flight: teardown frees the resolver, no callback */
}

static void test_no_query_needed(void **state)
{
    struct fixture *f = *state;
    struct seen s = {.loop = f->loop};
    s.inside_request = true;
    dns_resolve_host(f->r, "[IPv6:2001:db8::25]", on_nexthop, &s);
    s.inside_request = false;
    ev_loop_run(f->loop);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.status, DNS_OK);
    assert_int_equal(s.last.nhosts, 1);
    assert_int_equal(s.last.hosts[0].naddrs, 1);
    assert_int_equal(s.last.hosts[0].addrs[0].family, AF_INET6);

    s.inside_request = true;
    dns_resolve_nexthop(f->r, "not a domain", on_nexthop, &s);
    s.inside_request = false;
    ev_loop_run(f->loop);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.last.status, DNS_NXDOMAIN);
    assert_false(dns_status_temporary(s.last.status));
}

/* A callback that frees the resolver it was called from. */
struct freeing {
    struct fixture *f;
    int calls;
};

static void on_free_resolver(void *arg, const struct dns_nexthop *res)
{
    struct freeing *fr = arg;
    (void)res;
    fr->calls++;
    dns_resolver_free(fr->f->r);
    fr->f->r = NULL;
    ev_loop_stop(fr->f->loop);
}

static void test_free_from_callback(void **state)
{
    struct fixture *f = *state;
    struct freeing fr = {f, 0};
    dns_resolve_host(f->r, "192.0.2.1", on_free_resolver, &fr);
    dns_resolve_nexthop(f->r, "other.example.test", on_never, NULL);
    ev_loop_run(f->loop);
    assert_int_equal(fr.calls, 1);
    assert_null(f->r);
}

static void test_bad_configuration(void **state)
{
    struct fixture *f = *state;
    struct config cfg = f->cfg;
    cfg.dns_trust_anchor = "/nonexistent/root.key";
    char err[256] = "";
    assert_null(dns_resolver_new(f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "dns_trust_anchor"));
    char *bad[] = {"not-an-address"};
    cfg = f->cfg;
    cfg.dns_forwarders.v = bad;
    err[0] = '\0';
    assert_null(dns_resolver_new(f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "dns_forwarders"));
    dns_resolver_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_silent_server_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_query_needed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_configuration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
