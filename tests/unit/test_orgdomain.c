/*
 * test_orgdomain - unit tests of src/mailauth: the organisational domain on
 * the real public suffix list (libpsl with the publicsuffix package's data:
 * co.uk, the wildcard *.ck and its exception www.ck, private suffixes, IDN
 * labels as A-labels and U-labels), DMARC alignment on it (a d= that is a
 * public suffix never aligns), a list loaded from a file, the line of
 * aggregate report data (JSON, escaped, bounded) and its file, what Tern does
 * with each disposition, and the dmarc resinfo of Authentication-Results.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "dns/dmarc.h"
#include "mailauth/dmarc_check.h"
#include "mailauth/dmarc_report.h"
#include "mailauth/orgdomain.h"
#include "smtp/authres.h"

static struct orgdomain *od;

static int setup(void **state)
{
    (void)state;
    char err[256];
    od = orgdomain_new(NULL, err, sizeof err);
    if (!od)
        print_error("%s\n", err);
    return od ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    orgdomain_free(od);
    return 0;
}

static void test_org_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *org; /* NULL: none (a public suffix, or not a name) */
        bool suffix;
    } cases[] = {
        {"example.org", "example.org", false},
        {"Mail.Example.ORG.", "example.org", false},
        {"a.b.c.example.org", "example.org", false},
        {"org", NULL, true},
        /* two-label suffix */
        {"example.co.uk", "example.co.uk", false},
        {"a.b.example.co.uk", "example.co.uk", false},
        {"co.uk", NULL, true},
        {"CO.UK", NULL, true},
        {"uk", NULL, true},
        /* wildcard *.ck, exception !www.ck */
        {"foo.ck", NULL, true},
        {"a.foo.ck", "a.foo.ck", false},
        {"b.a.foo.ck", "a.foo.ck", false},
        {"www.ck", "www.ck", false},
        {"mail.www.ck", "www.ck", false},
        /* a private-section suffix */
        {"blogspot.com", NULL, true},
        {"me.blogspot.com", "me.blogspot.com", false},
        /* IDN: 公司.cn is a suffix, written as A-labels and as U-labels */
        {"xn--55qx5d.cn", NULL, true},
        {"example.xn--55qx5d.cn", "example.xn--55qx5d.cn", false},
        {"mail.example.\xe5\x85\xac\xe5\x8f\xb8.cn", "example.xn--55qx5d.cn", false},
        {"b\xc3\xbc"
         "cher.example",
         "xn--bcher-kva.example", false},
        {"www.xn--bcher-kva.example", "xn--bcher-kva.example", false},
        /* the list's default rule: the last label is a suffix */
        {"example.test", "example.test", false},
        {"x.y.example.test", "example.test", false},
        {"test", NULL, true},
        /* names under underscore labels */
        {"_dmarc.example.org", "example.org", false},
        /* not names */
        {"", NULL, false},
        {"a..example.org", NULL, false},
        {"exa mple.org", NULL, false},
        {"\xff.org", NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[DNS_NAME_MAX + 1] = "";
        bool ok = orgdomain_get(od, cases[i].name, out);
        bool ps = orgdomain_is_public_suffix(od, cases[i].name);
        if (ok != (cases[i].org != NULL) || (ok && strcmp(out, cases[i].org) != 0) ||
            ps != cases[i].suffix)
            fail_msg("case %zu %s: got %d \"%s\" suffix=%d", i, cases[i].name, ok, out, ps);
    }
}

static void test_normalize(void **state)
{
    (void)state;
    char out[DNS_NAME_MAX + 1];
    assert_true(orgdomain_normalize("Example.ORG.", out));
    assert_string_equal(out, "example.org");
    assert_true(orgdomain_normalize("B\xc3\xbc"
                                    "cher.Example",
                                    out));
    assert_string_equal(out, "xn--bcher-kva.example");
    assert_false(orgdomain_normalize("example.org..", out));
    assert_false(orgdomain_normalize("a@b", out));
    assert_false(orgdomain_normalize(NULL, out));
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(orgdomain_normalize(longname, out));
}

/* Alignment on the real list: a public suffix never aligns. */
static void test_alignment_on_psl(void **state)
{
    (void)state;
    static const struct {
        const char *d, *from;
        bool relaxed;
    } cases[] = {
        {"example.co.uk", "mail.example.co.uk", true},
        {"co.uk", "example.co.uk", false},
        {"uk", "example.co.uk", false},
        {"other.co.uk", "example.co.uk", false},
        {"foo.ck", "a.foo.ck", false},
        {"x.a.foo.ck", "y.a.foo.ck", true},
        {"b.foo.ck", "a.foo.ck", false},
        {"blogspot.com", "me.blogspot.com", false},
        {"you.blogspot.com", "me.blogspot.com", false},
        {"xn--bcher-kva.example", "mail.xn--bcher-kva.example", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool r = dmarc_aligned(cases[i].d, cases[i].from, DMARC_ALIGN_RELAXED, orgdomain_fn, od);
        if (r != cases[i].relaxed)
            fail_msg("case %zu d=%s from=%s: relaxed=%d", i, cases[i].d, cases[i].from, r);
        assert_false(
            dmarc_aligned(cases[i].d, cases[i].from, DMARC_ALIGN_STRICT, orgdomain_fn, od));
    }
}

/* A list of our own from a file: psl_load_file. */
static void test_list_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tern-psl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char list[] = "// a test list\nlab\n*.wild.lab\n!ok.wild.lab\n";
    assert_int_equal(write(fd, list, sizeof list - 1), (ssize_t)(sizeof list - 1));
    close(fd);
    char err[256];
    struct orgdomain *mine = orgdomain_new(path, err, sizeof err);
    assert_non_null(mine);
    assert_string_equal(orgdomain_source(mine), path);
    char out[DNS_NAME_MAX + 1];
    assert_true(orgdomain_get(mine, "a.b.lab", out));
    assert_string_equal(out, "b.lab");
    assert_false(orgdomain_get(mine, "x.wild.lab", out));
    assert_true(orgdomain_get(mine, "a.x.wild.lab", out));
    assert_string_equal(out, "a.x.wild.lab");
    assert_true(orgdomain_get(mine, "a.ok.wild.lab", out));
    assert_string_equal(out, "ok.wild.lab");
    orgdomain_free(mine);
    unlink(path);
    assert_null(orgdomain_new("/nonexistent/list.dat", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/list.dat"));
    orgdomain_free(NULL);
}

static void test_local_action(void **state)
{
    (void)state;
    assert_int_equal(dmarc_local_action(DMARC_DISP_NONE, CONFIG_DMARC_REJECT), DMARC_ACTION_ACCEPT);
    assert_int_equal(dmarc_local_action(DMARC_DISP_QUARANTINE, CONFIG_DMARC_REJECT),
                     DMARC_ACTION_QUARANTINE);
    assert_int_equal(dmarc_local_action(DMARC_DISP_QUARANTINE, CONFIG_DMARC_RECORD),
                     DMARC_ACTION_QUARANTINE);
    assert_int_equal(dmarc_local_action(DMARC_DISP_REJECT, CONFIG_DMARC_REJECT),
                     DMARC_ACTION_REJECT);
    assert_int_equal(dmarc_local_action(DMARC_DISP_REJECT, CONFIG_DMARC_QUARANTINE),
                     DMARC_ACTION_QUARANTINE);
    assert_int_equal(dmarc_local_action(DMARC_DISP_REJECT, CONFIG_DMARC_RECORD),
                     DMARC_ACTION_ACCEPT);
    assert_string_equal(dmarc_action_name(DMARC_ACTION_REJECT), "reject");
}

static void test_authres_part(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    memset(&d, 0, sizeof d);
    struct dmarc_result res = {.status = DMARC_STATUS_FAIL,
                               .policy = DMARC_POLICY_REJECT,
                               .disposition = DMARC_DISP_REJECT};
    struct dmarc_input in = {0};
    struct dmarc_check_result r = {"example.org", DMARC_FROM_OK, &d, &res, &in};
    char comment[64], field[256];
    struct authres_result ar;
    dmarc_check_authres(&r, DMARC_ACTION_QUARANTINE, comment, sizeof comment, &ar);
    assert_true(authres_compose("mx.example.net", &ar, 1, field, sizeof field) > 0);
    assert_string_equal(field,
                        "Authentication-Results: mx.example.net;\r\n"
                        "\tdmarc=fail header.from=example.org (p=reject dis=quarantine)\r\n");
    struct dmarc_result none = {.status = DMARC_STATUS_NONE};
    r.res = &none;
    dmarc_check_authres(&r, DMARC_ACTION_ACCEPT, comment, sizeof comment, &ar);
    assert_true(authres_compose("mx.example.net", &ar, 1, field, sizeof field) > 0);
    assert_string_equal(field, "Authentication-Results: mx.example.net;\r\n"
                               "\tdmarc=none header.from=example.org\r\n");
}

static void test_report_line(void **state)
{
    (void)state;
    struct dmarc_discovery d;
    memset(&d, 0, sizeof d);
    d.status = DMARC_DISC_FOUND;
    strcpy(d.domain, "example.org");
    const char *rec = "v=DMARC1; p=reject; sp=none; pct=50; adkim=s";
    assert_int_equal(dmarc_record_parse(rec, strlen(rec), &d.rec), DMARC_PARSE_OK);
    struct dmarc_result res = {.status = DMARC_STATUS_FAIL,
                               .policy = DMARC_POLICY_REJECT,
                               .sampled_out = true,
                               .disposition = DMARC_DISP_QUARANTINE};
    struct dmarc_dkim sigs[2] = {{DMARC_AUTH_PASS, "example.net", "s1"},
                                 {DMARC_AUTH_FAIL, "example.org", "q\"x\\y\n\xff"}};
    struct dmarc_input in = {DMARC_AUTH_SOFTFAIL, "bounce.example.org", 2, sigs};
    struct dmarc_report_entry e = {1714521600, "192.0.2.1", "bounce.example.org", "example.org", &d,
                                   &res,       &in,         DMARC_DISP_QUARANTINE};
    char line[DMARC_REPORT_LINE_MAX + 1];
    long n = dmarc_report_format(&e, line, sizeof line);
    const char *want =
        "{\"time\":1714521600,\"source_ip\":\"192.0.2.1\",\"header_from\":\"example.org\","
        "\"envelope_from\":\"bounce.example.org\",\"policy_domain\":\"example.org\","
        "\"p\":\"reject\",\"sp\":\"none\",\"np\":\"\",\"pct\":50,\"adkim\":\"s\",\"aspf\":\"r\","
        "\"dmarc\":\"fail\",\"disposition\":\"quarantine\",\"sampled_out\":true,"
        "\"spf_aligned\":false,\"dkim_aligned\":false,"
        "\"spf\":{\"domain\":\"bounce.example.org\",\"result\":\"softfail\"},"
        "\"dkim\":[{\"domain\":\"example.net\",\"selector\":\"s1\",\"result\":\"pass\"},"
        "{\"domain\":\"example.org\",\"selector\":\"q\\\"x\\\\y\\u000a\\ufffd\",\"result\":"
        "\"fail\"}]}\n";
    assert_string_equal(line, want);
    assert_int_equal(n, (long)strlen(want));
    /* too small a buffer: -1, empty */
    for (size_t cap = 0; cap < (size_t)n + 1; cap += 37) {
        char small[DMARC_REPORT_LINE_MAX + 1];
        assert_int_equal(dmarc_report_format(&e, small, cap), -1);
    }
    /* no record found: empty policy fields */
    d.status = DMARC_DISC_ABSENT;
    struct dmarc_result nres = {.status = DMARC_STATUS_NONE};
    e.res = &nres;
    e.in = NULL;
    assert_true(dmarc_report_format(&e, line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"policy_domain\":\"\",\"p\":\"\""));
    assert_non_null(strstr(line, "\"dkim\":[]"));

    /* the file of the day, created with its directory */
    char dir[] = "/tmp/tern-dmarc-report-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128], path[256], err[256];
    snprintf(sub, sizeof sub, "%s/reports", dir);
    e.time = 1714521600 + 86399; /* 2024-05-01 23:59:59 UTC */
    assert_int_equal(dmarc_report_append(sub, &e, err, sizeof err), 0);
    assert_int_equal(dmarc_report_append(sub, &e, err, sizeof err), 0);
    assert_int_equal(dmarc_report_path(sub, e.time, path, sizeof path), 0);
    assert_non_null(strstr(path, "/reports/dmarc-2024-05-01.jsonl"));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[2 * DMARC_REPORT_LINE_MAX];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    assert_int_equal(got, 2 * strlen(line));
    unlink(path);
    rmdir(sub);
    rmdir(dir);
    /* a directory that cannot be made */
    assert_int_equal(dmarc_report_append("/proc/no/such/dir", &e, err, sizeof err), -1);
    assert_true(err[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_org_table),        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_alignment_on_psl), cmocka_unit_test(test_list_file),
        cmocka_unit_test(test_local_action),     cmocka_unit_test(test_authres_part),
        cmocka_unit_test(test_report_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
