/*
 * test_metrics - the Prometheus text format of src/core/metrics.c, the
 * registry's counting, and the request parser of the metrics endpoint
 * (src/metrics/http.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "metrics/http.h"

static const char *const colours[] = {"red", "a\"b\\c\nd"};
static const char *const sizes[] = {"s", "l"};

/* Render f with v and compare with want. */
static void check_render(const struct metrics_family *f, const uint64_t *v, const char *want)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(metrics_render_family(&b, f, v), 0);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_render_counter(void **state)
{
    (void)state;
    struct metrics_family f = {"t_total",
                               "Help with \\ and\nnewline \"quoted\".",
                               METRICS_COUNTER,
                               2,
                               {{"colour", colours, 2}, {"size", sizes, 2}},
                               NULL,
                               0,
                               0};
    assert_int_equal(metrics_family_slots(&f), 4);
    uint64_t v[] = {1, 2, 3, UINT64_MAX};
    check_render(&f, v,
                 "# HELP t_total Help with \\\\ and\\nnewline \"quoted\".\n"
                 "# TYPE t_total counter\n"
                 "t_total{colour=\"red\",size=\"s\"} 1\n"
                 "t_total{colour=\"red\",size=\"l\"} 2\n"
                 "t_total{colour=\"a\\\"b\\\\c\\nd\",size=\"s\"} 3\n"
                 "t_total{colour=\"a\\\"b\\\\c\\nd\",size=\"l\"} 18446744073709551615\n");
}

static void test_render_gauge(void **state)
{
    (void)state;
    struct metrics_family f = {"g", "A gauge.", METRICS_GAUGE, 0, {{0}}, NULL, 0, 0};
    uint64_t v[] = {42};
    check_render(&f, v, "# HELP g A gauge.\n# TYPE g gauge\ng 42\n");
    f.scale = 1000;
    uint64_t w[] = {1500};
    check_render(&f, w, "# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n");
    uint64_t x[] = {7};
    check_render(&f, x, "# HELP g A gauge.\n# TYPE g gauge\ng 0.007\n");
    uint64_t y[] = {3000};
    check_render(&f, y, "# HELP g A gauge.\n# TYPE g gauge\ng 3\n");
}

static void test_render_histogram(void **state)
{
    (void)state;
    static const uint64_t bounds[] = {250, 1000, 5000};
    struct metrics_family f = {"h_seconds", "Latency.", METRICS_HISTOGRAM, 0, {{0}}, bounds,
                               3,           1000000};
    assert_int_equal(metrics_family_slots(&f), 5);
    /* per bucket: 2 at <=250us, 0, 1 at <=5ms, 1 above; sum 1234567us */
    uint64_t v[] = {2, 0, 1, 1, 1234567};
    check_render(&f, v,
                 "# HELP h_seconds Latency.\n"
                 "# TYPE h_seconds histogram\n"
                 "h_seconds_bucket{le=\"0.00025\"} 2\n"
                 "h_seconds_bucket{le=\"0.001\"} 2\n"
                 "h_seconds_bucket{le=\"0.005\"} 3\n"
                 "h_seconds_bucket{le=\"+Inf\"} 4\n"
                 "h_seconds_sum 1.234567\n"
                 "h_seconds_count 4\n");
    /* with a label */
    f.nlabels = 1;
    f.labels[0] = (struct metrics_label){"size", sizes, 2};
    f.scale = 0;
    uint64_t w[10] = {1, 0, 0, 0, 10, 0, 0, 0, 2, 9000};
    check_render(&f, w,
                 "# HELP h_seconds Latency.\n"
                 "# TYPE h_seconds histogram\n"
                 "h_seconds_bucket{size=\"s\",le=\"250\"} 1\n"
                 "h_seconds_bucket{size=\"s\",le=\"1000\"} 1\n"
                 "h_seconds_bucket{size=\"s\",le=\"5000\"} 1\n"
                 "h_seconds_bucket{size=\"s\",le=\"+Inf\"} 1\n"
                 "h_seconds_sum{size=\"s\"} 10\n"
                 "h_seconds_count{size=\"s\"} 1\n"
                 "h_seconds_bucket{size=\"l\",le=\"250\"} 0\n"
                 "h_seconds_bucket{size=\"l\",le=\"1000\"} 0\n"
                 "h_seconds_bucket{size=\"l\",le=\"5000\"} 0\n"
                 "h_seconds_bucket{size=\"l\",le=\"+Inf\"} 2\n"
                 "h_seconds_sum{size=\"l\"} 9000\n"
                 "h_seconds_count{size=\"l\"} 2\n");
}

static void test_render_limit(void **state)
{
    (void)state;
    struct metrics_family f = {"g", "A gauge.", METRICS_GAUGE, 0, {{0}}, NULL, 0, 0};
    uint64_t v[] = {42};
    struct buf b;
    buf_init(&b, 20);
    assert_int_equal(metrics_render_family(&b, &f, v), -1);
    assert_true(b.len <= 20);
    buf_free(&b);
}

/* The registry: increments land in their series, out of range is ignored,
   and every family renders. */
static void test_registry(void **state)
{
    (void)state;
    metrics_reset();
    metrics_inc(M_MESSAGES_ACCEPTED, METRICS_SUBMISSION, 0);
    metrics_inc(M_MESSAGES_ACCEPTED, 7, 0); /* ignored */
    metrics_add(M_DELIVERIES, METRICS_DELIVERY_SENT, METRICS_DEST_LMTP, 3);
    metrics_inc(M_DELIVERIES, METRICS_DELIVERY_SENT, 9); /* ignored */
    metrics_inc_named(M_DMARC_RESULTS, "fail");
    metrics_inc_named(M_DMARC_RESULTS, "nonsense"); /* ignored */
    metrics_set(M_QUEUE_MESSAGES, 12);
    metrics_set(M_MESSAGES_ACCEPTED, 99); /* not a gauge: ignored */
    metrics_observe(M_SPOOL_COMMIT_BATCH, 3);
    metrics_observe(M_SPOOL_COMMIT_BATCH, 5000);
    metrics_observe(M_SPOOL_SYNC_SECONDS, 700);
    metrics_reply(METRICS_MX, 550, "5.1.1");
    metrics_reply(METRICS_MX, 421, "4.3.2"); /* not counted */
    metrics_reply(METRICS_MX, 250, "2.0.0"); /* not counted */
    metrics_dns_nexthop(4);                  /* DNS_TEMPFAIL */
    metrics_dns_nexthop(99);                 /* ignored */
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), 0);
    static const char *const want[] = {
        "\ntern_messages_accepted_total{listener=\"submission\"} 1\n",
        "\ntern_messages_accepted_total{listener=\"mx\"} 0\n",
        "\ntern_deliveries_total{status=\"sent\",class=\"lmtp\"} 3\n",
        "\ntern_dmarc_results_total{result=\"fail\"} 1\n",
        "\ntern_queue_messages 12\n",
        "\ntern_spool_commit_batch_size_bucket{le=\"2\"} 0\n",
        "\ntern_spool_commit_batch_size_bucket{le=\"4\"} 1\n",
        "\ntern_spool_commit_batch_size_bucket{le=\"1024\"} 1\n",
        "\ntern_spool_commit_batch_size_bucket{le=\"+Inf\"} 2\n",
        "\ntern_spool_commit_batch_size_sum 5003\n",
        "\ntern_spool_commit_batch_size_count 2\n",
        "\ntern_spool_commit_seconds_bucket{le=\"0.0005\"} 0\n",
        "\ntern_spool_commit_seconds_bucket{le=\"0.001\"} 1\n",
        "\ntern_spool_commit_seconds_sum 0.0007\n",
        "\ntern_smtp_rejections_total{listener=\"mx\",reason=\"recipient\"} 1\n",
        "\ntern_dns_lookups_total{kind=\"nexthop\",outcome=\"tempfail\"} 1\n",
        "\n# TYPE tern_connections_total counter\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(b.data, want[i]))
            fail_msg("missing %s in:\n%s", want[i], b.data);
    /* the sum of every rejection series is 1: 421 and 250 were not counted */
    size_t n = 0;
    for (const char *p = b.data; (p = strstr(p, "\ntern_smtp_rejections_total{")) != NULL; p++)
        n += strstr(p, "} 1\n") == strchr(p, '}') ? 1 : 0;
    assert_int_equal(n, 1);
    /* every family has HELP and TYPE, and its name starts with tern_ */
    const struct metrics_family *f = metrics_families();
    for (size_t i = 0; i < M_COUNT; i++) {
        assert_non_null(f[i].name);
        assert_memory_equal(f[i].name, "tern_", 5);
        char help[128];
        snprintf(help, sizeof help, "# HELP %s ", f[i].name);
        assert_non_null(strstr(b.data, help));
    }
    buf_free(&b);
    metrics_reset();
}

static void test_reject_reasons(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *enh;
        enum metrics_reject_reason want;
    } rows[] = {
        {550, "5.1.1", METRICS_REJECT_RECIPIENT}, {501, "5.1.3", METRICS_REJECT_RECIPIENT},
        {554, "5.7.1", METRICS_REJECT_RELAY},     {550, "5.7.1", METRICS_REJECT_DMARC},
        {553, "5.7.1", METRICS_REJECT_POLICY},    {450, "4.7.1", METRICS_REJECT_RATE},
        {530, "5.7.0", METRICS_REJECT_AUTH},      {535, "5.7.8", METRICS_REJECT_AUTH},
        {538, "5.7.11", METRICS_REJECT_AUTH},     {454, "4.7.0", METRICS_REJECT_AUTH},
        {550, "5.7.23", METRICS_REJECT_SPF},      {552, "5.3.4", METRICS_REJECT_SIZE},
        {452, "4.5.3", METRICS_REJECT_SIZE},      {452, "4.3.1", METRICS_REJECT_RESOURCE},
        {451, "4.3.0", METRICS_REJECT_RESOURCE},  {500, "5.5.2", METRICS_REJECT_PROTOCOL},
        {503, "5.5.1", METRICS_REJECT_PROTOCOL},  {553, "5.6.7", METRICS_REJECT_PROTOCOL},
        {554, "5.7.27", METRICS_REJECT_POLICY},   {550, NULL, METRICS_REJECT_OTHER},
        {550, "", METRICS_REJECT_OTHER},          {550, "5.4.4", METRICS_REJECT_OTHER},
        {550, "bogus", METRICS_REJECT_OTHER},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (metrics_reject_reason(rows[i].code, rows[i].enh) != rows[i].want)
            fail_msg("%d %s: got %d, want %d", rows[i].code, rows[i].enh ? rows[i].enh : "(null)",
                     metrics_reject_reason(rows[i].code, rows[i].enh), rows[i].want);
    assert_int_equal(metrics_delivery_status("sent"), METRICS_DELIVERY_SENT);
    assert_int_equal(metrics_delivery_status("expired"), METRICS_DELIVERY_EXPIRED);
    assert_int_equal(metrics_delivery_status("bounced"), METRICS_DELIVERY_BOUNCED);
    assert_int_equal(metrics_delivery_status("deferred"), METRICS_DELIVERY_DEFERRED);
}

static void test_http_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int want;
        bool head;
    } rows[] = {
        {"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 200, false},
        {"GET /metrics HTTP/1.0\r\n\r\n", 200, false},
        {"HEAD /metrics HTTP/1.1\r\n\r\n", 200, true},
        {"GET /metrics?name[]=x HTTP/1.1\n\n", 200, false},
        {"GET /metrics HTTP/1.1\r\nX:\r\n\r\n", 200, false},
        {"GET /metrics HTTP/1.1\r\nX: a\tb \xc3\xa9\r\n\r\n", 200, false},
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n", 0, false},
        {"GET /metrics HTTP/1.1\r\n", 0, false},
        {"GET /met", 0, false},
        {"", 0, false},
        {"GET / HTTP/1.1\r\n\r\n", 404, false},
        {"GET /metrics/ HTTP/1.1\r\n\r\n", 404, false},
        {"POST / HTTP/1.1\r\n\r\n", 404, false},
        {"POST /metrics HTTP/1.1\r\n\r\n", 405, false},
        {"get /metrics HTTP/1.1\r\n\r\n", 405, false},
        {"GET /metrics HTTP/2.0\r\n\r\n", 505, false},
        {"GET /metrics HTTP/1.2\r\n\r\n", 505, false},
        {"GET /metrics HTTP/1.1 \r\n\r\n", 400, false},
        {"GET /metrics http/1.1\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.10\r\n\r\n", 400, false},
        {"GET /metrics\r\n\r\n", 400, false},
        {"GET  /metrics HTTP/1.1\r\n\r\n", 400, false},
        {" GET /metrics HTTP/1.1\r\n\r\n", 400, false},
        {"GET metrics HTTP/1.1\r\n\r\n", 400, false},
        {"GET http://x/metrics HTTP/1.1\r\n\r\n", 400, false},
        {"G(T /metrics HTTP/1.1\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nBad name: x\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nA: b\rc\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nA: b\x01\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1\r\r\n\r\n", 400, false},
        {"\r\n\r\n", 400, false},
        {"\n\n", 400, false},
        {"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n", 400, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct metrics_http_request req = {.head = !rows[i].head};
        int got = (int)metrics_http_parse(rows[i].in, strlen(rows[i].in), &req);
        if (got != rows[i].want)
            fail_msg("row %zu \"%s\": got %d, want %d", i, rows[i].in, got, rows[i].want);
        if (got == 200 && req.head != rows[i].head)
            fail_msg("row %zu: head %d", i, req.head);
    }
    /* a NUL inside the head (strlen would stop at it) */
    static const char nul[] = "GET /metrics HTTP/1.1\r\nA: \0b\r\n\r\n";
    assert_int_equal(metrics_http_parse(nul, sizeof nul - 1, NULL), 400);
    /* the size limit: incomplete at the limit, or complete past it */
    size_t n = METRICS_HTTP_MAX_HEAD + 100;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    assert_int_equal(metrics_http_parse(big, METRICS_HTTP_MAX_HEAD - 1, NULL), 0);
    assert_int_equal(metrics_http_parse(big, METRICS_HTTP_MAX_HEAD, NULL), 431);
    memcpy(big + n - 4, "\r\n\r\n", 4);
    assert_int_equal(metrics_http_parse(big, n, NULL), 431);
    /* just inside the limit */
    memcpy(big + METRICS_HTTP_MAX_HEAD - 4, "\r\n\r\n", 4);
    assert_int_equal(metrics_http_parse(big, METRICS_HTTP_MAX_HEAD, NULL), 200);
    free(big);
    assert_string_equal(metrics_http_reason(404), "Not Found");
    assert_string_equal(metrics_http_reason(431), "Request Header Fields Too Large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_counter),   cmocka_unit_test(test_render_gauge),
        cmocka_unit_test(test_render_histogram), cmocka_unit_test(test_render_limit),
        cmocka_unit_test(test_registry),         cmocka_unit_test(test_reject_reasons),
        cmocka_unit_test(test_http_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
