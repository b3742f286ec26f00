/*
 * test_sendmail_args - unit tests of the sendmail command line parser
 * (src/cli/sendmail_args.c). Table-driven: each row is a command line as
 * programs write it (cron, PHP's mail(), git send-email, mutt, Postfix
 * habits) and what it must mean; usage errors have their message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Table rows leave trailing fields out (zero). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/sendmail_args.h"
#include "smtp/smtp.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define ARGS_MAX 16

struct args_case {
    const char *argv[ARGS_MAX]; /* NULL-terminated */
    int rc;                     /* 0 or -1 */
    const char *error;          /* substring of o.error when rc is -1 */
    enum sendmail_mode mode;
    bool extract, dot_ends;
    const char *sender, *fullname, *config, *envid, *flush_domain;
    unsigned notify;
    int ret, body;
    unsigned verbose;
    size_t nwarn;
    const char *rcpts[4]; /* expected operands, NULL-terminated */
};

static const struct args_case cases[] = {
    /* the default mode, recipients as operands */
    {{"sendmail", "user@example.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"user@example.test"}},
    {{"/usr/sbin/sendmail", "a@x.test", "b@y.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"a@x.test", "b@y.test"}},
    /* cron: sendmail -FCronDaemon -i -B8BITMIME -oem root (cronie and Debian's cron) */
    {{"sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     false,
     NULL,
     "CronDaemon",
     .body = SMTP_BODY_8BITMIME,
     .rcpts = {"root"}},
    /* PHP's mail(): sendmail_path = "sendmail -t -i" */
    {{"sendmail", "-t", "-i", NULL}, 0, NULL, SENDMAIL_DELIVER, true, false},
    /* clustered options */
    {{"sendmail", "-ti", NULL}, 0, NULL, SENDMAIL_DELIVER, true, false},
    {{"sendmail", "-oi", "-t", NULL}, 0, NULL, SENDMAIL_DELIVER, true, false},
    /* git send-email: sendmail -i RCPT... (and -f when it knows the sender) */
    {{"sendmail", "-i", "-f", "me@example.test", "demo@example.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     false,
     "me@example.test",
     .rcpts = {"demo@example.test"}},
    {{"sendmail", "-fme@example.test", "-F", "Me Myself", "x@y.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     "me@example.test",
     "Me Myself",
     .rcpts = {"x@y.test"}},
    {{"sendmail", "-r", "old@example.test", "x@y.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     "old@example.test",
     .rcpts = {"x@y.test"}},
    {{"sendmail", "-f", "<>", "x@y.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     "",
     .rcpts = {"x@y.test"}},
    /* modes */
    {{"sendmail", "-bs", NULL}, 0, NULL, SENDMAIL_SMTP, false, true},
    {{"sendmail", "-bm", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-bp", NULL}, 0, NULL, SENDMAIL_MAILQ, false, true},
    {{"mailq", NULL}, 0, NULL, SENDMAIL_MAILQ, false, true},
    {{"/usr/bin/mailq", "-v", NULL}, 0, NULL, SENDMAIL_MAILQ, false, true, .verbose = 1},
    {{"newaliases", NULL}, 0, NULL, SENDMAIL_NEWALIASES, false, true},
    {{"sendmail", "-bi", NULL}, 0, NULL, SENDMAIL_NEWALIASES, false, true},
    {{"sendmail", "-I", NULL}, 0, NULL, SENDMAIL_NEWALIASES, false, true},
    {{"sendmail", "-q", NULL}, 0, NULL, SENDMAIL_FLUSH, false, true},
    {{"sendmail", "-q30m", NULL}, 0, NULL, SENDMAIL_FLUSH, false, true},
    {{"sendmail", "-qRremote.test", NULL},
     0,
     NULL,
     SENDMAIL_FLUSH,
     false,
     true,
     .flush_domain = "remote.test"},
    {{"sendmail", "-q", "-v", NULL}, 0, NULL, SENDMAIL_FLUSH, false, true, .verbose = 1},
    /* DSN options */
    {{"sendmail", "-N", "success,delay", "-R", "hdrs", "-V", "env-1", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .envid = "env-1",
     .notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY,
     .ret = SMTP_RET_HDRS,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-Nnever", "-RFULL", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .notify = SMTP_NOTIFY_NEVER,
     .ret = SMTP_RET_FULL,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-N", "Failure", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .notify = SMTP_NOTIFY_FAILURE,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-B", "7BIT", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .body = SMTP_BODY_7BIT,
     .rcpts = {"a@b.test"}},
    /* -C FILE */
    {{"sendmail", "-C", "/etc/tern/other.conf", "-t", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     true,
     true,
     .config = "/etc/tern/other.conf"},
    /* ignored as Postfix ignores them: silently (with their argument), or warned */
    {{"sendmail", "-oem", "-oep", "-odb", "-om", "-L", "label", "-X", "/tmp/log", "-U", "-n",
      "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-h", "5", "-O", "x=y", "-A", "m", "-G", "-c", "-x", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-oQ/tmp", "-Z", "-k", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .nwarn = 3,
     .rcpts = {"a@b.test"}},
    {{"sendmail", "-vv", "a@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .verbose = 2,
     .rcpts = {"a@b.test"}},
    /* end of options */
    {{"sendmail", "--", "-weird@b.test", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"-weird@b.test"}},
    {{"sendmail", "a@b.test", "-t", NULL},
     0,
     NULL,
     SENDMAIL_DELIVER,
     false,
     true,
     .rcpts = {"a@b.test", "-t"}},
    {{"sendmail", "-", NULL}, 0, NULL, SENDMAIL_DELIVER, false, true, .rcpts = {"-"}},
    /* usage errors */
    {{"sendmail", "-f", NULL}, -1, "needs an argument"},
    {{"sendmail", "-N", "sometimes", "a@b.test", NULL}, -1, "-N sometimes"},
    {{"sendmail", "-N", "success,", "a@b.test", NULL}, -1, "-N success,"},
    {{"sendmail", "-R", "most", NULL}, -1, "full or hdrs"},
    {{"sendmail", "-B", "binarymime", NULL}, -1, "7BIT or 8BITMIME"},
    {{"sendmail", "-bd", NULL}, -1, "tern serve"},
    {{"sendmail", "-bv", "a@b.test", NULL}, -1, "not supported"},
    {{"sendmail", "-bz", NULL}, -1, "unknown mode"},
    {{"sendmail", "-V", "", NULL}, -1, "envelope id"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        const struct args_case *c = &cases[i];
        int argc = 0;
        while (c->argv[argc])
            argc++;
        struct sendmail_opts o;
        int rc = sendmail_parse_args(argc, (char *const *)c->argv, &o);
        if (rc != c->rc)
            fail_msg("case %zu (%s %s): rc %d, want %d (%s)", i, c->argv[0],
                     argc > 1 ? c->argv[1] : "", rc, c->rc, o.error);
        if (rc < 0) {
            if (!strstr(o.error, c->error))
                fail_msg("case %zu: error \"%s\", want \"%s\"", i, o.error, c->error);
            continue;
        }
#define STR_EQ(a, b)                                                                               \
    do {                                                                                           \
        if (((a) == NULL) != ((b) == NULL) || ((a) && strcmp((a), (b)) != 0))                      \
            fail_msg("case %zu: %s is \"%s\", want \"%s\"", i, #a, (a) ? (a) : "(null)",           \
                     (b) ? (b) : "(null)");                                                        \
    } while (0)
        if (o.mode != c->mode)
            fail_msg("case %zu: mode %d, want %d", i, o.mode, c->mode);
        assert_int_equal(o.extract, c->extract);
        if (o.dot_ends != c->dot_ends)
            fail_msg("case %zu: dot_ends %d", i, o.dot_ends);
        STR_EQ(o.sender, c->sender);
        STR_EQ(o.fullname, c->fullname);
        STR_EQ(o.config, c->config);
        STR_EQ(o.envid, c->envid);
        STR_EQ(o.flush_domain, c->flush_domain);
        assert_int_equal(o.notify, c->notify);
        assert_int_equal(o.ret, c->ret);
        assert_int_equal(o.body, c->body);
        assert_int_equal(o.verbose, c->verbose);
        if (o.nwarn != c->nwarn)
            fail_msg("case %zu: %zu warnings (first: %s), want %zu", i, o.nwarn,
                     o.nwarn ? o.warnings[0] : "", c->nwarn);
        size_t want = 0;
        while (want < 4 && c->rcpts[want])
            want++;
        if (o.nrcpt != want)
            fail_msg("case %zu: %zu recipients, want %zu", i, o.nrcpt, want);
        for (size_t k = 0; k < want; k++)
            STR_EQ(o.rcpts[k], c->rcpts[k]);
    }
}

/* Warnings name the option; more than SENDMAIL_WARN_MAX are counted. */
static void test_warnings(void **state)
{
    (void)state;
    const char *argv[] = {"sendmail", "-Z", "-oQ/var/spool", "-j", "-k", "-l", "-s", "-u", "-w",
                          "-y",       "-z", "a@b.test"};
    struct sendmail_opts o;
    assert_int_equal(sendmail_parse_args((int)N(argv), (char *const *)argv, &o), 0);
    assert_int_equal(o.nwarn, 10);
    assert_string_equal(o.warnings[0], "option -Z ignored");
    assert_string_equal(o.warnings[1], "option -oQ/var/spool ignored");
    assert_int_equal(o.nrcpt, 1);
}

/* -t: the addresses of To:, Cc: and Bcc:, and the header section without Bcc:. */
static void test_header_rcpts(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        long n;            /* -1: refused */
        const char *rcpts; /* the addresses, space-separated */
        const char *out;   /* the header section afterwards */
    } hcases[] = {
        {"To: a@x.test\nSubject: s\n\n", 1, "a@x.test", "To: a@x.test\nSubject: s\n\n"},
        {"To: A <a@x.test>, b@y.test\r\nCc: \"C, D\" <c@z.test>\r\nBcc: e@x.test\r\n"
         "Subject: s\r\n\r\n",
         4, "a@x.test b@y.test c@z.test e@x.test",
         "To: A <a@x.test>, b@y.test\r\nCc: \"C, D\" <c@z.test>\r\nSubject: s\r\n\r\n"},
        /* folded, bare LF, Bcc first and last, no empty line at the end */
        {"Bcc: h@x.test,\n i@x.test\nTO: j@x.test\nbcc: k@x.test", 4,
         "h@x.test i@x.test j@x.test k@x.test", "TO: j@x.test\n"},
        {"Subject: only\nBcc: z@x.test\n", 1, "z@x.test", "Subject: only\n"},
        /* groups, comments, an empty group; other fields are not looked at */
        {"To: team: a@x.test, b@x.test;, (c) d@x.test\nFrom: f@x.test\nReply-To: r@x.test\n\n", 3,
         "a@x.test b@x.test d@x.test",
         "To: team: a@x.test, b@x.test;, (c) d@x.test\nFrom: f@x.test\nReply-To: r@x.test\n\n"},
        {"To: undisclosed-recipients:;\n\n", 0, "", "To: undisclosed-recipients:;\n\n"},
        /* the body is not looked at */
        {"Subject: s\n\nTo: body@x.test\n", 0, "", "Subject: s\n\nTo: body@x.test\n"},
        {"", 0, "", ""},
        /* a To: that is not an address list */
        {"To: <unclosed@x.test\n\n", -1, NULL, NULL},
    };
    static char out[SENDMAIL_HDR_RCPT_MAX][SMTP_PATH_MAX + 1];
    for (size_t i = 0; i < N(hcases); i++) {
        char buf[512], scratch[512];
        size_t len = strlen(hcases[i].in);
        memcpy(buf, hcases[i].in, len);
        long n = sendmail_header_rcpts(buf, &len, out, SENDMAIL_HDR_RCPT_MAX, scratch);
        if (n != hcases[i].n)
            fail_msg("case %zu: %ld addresses, want %ld", i, n, hcases[i].n);
        if (n < 0)
            continue;
        char got[512] = "";
        for (long k = 0; k < n; k++) {
            if (k)
                strcat(got, " ");
            strcat(got, out[k]);
        }
        if (strcmp(got, hcases[i].rcpts) != 0)
            fail_msg("case %zu: \"%s\", want \"%s\"", i, got, hcases[i].rcpts);
        if (len != strlen(hcases[i].out) || memcmp(buf, hcases[i].out, len) != 0)
            fail_msg("case %zu: header \"%.*s\", want \"%s\"", i, (int)len, buf, hcases[i].out);
    }
    /* more than max */
    char many[4096] = "To: ";
    for (int k = 0; k < 40; k++)
        sprintf(many + strlen(many), "%su%d@x.test", k ? ", " : "", k);
    strcat(many, "\n\n");
    char scratch[4096];
    size_t len = strlen(many);
    assert_int_equal(sendmail_header_rcpts(many, &len, out, 39, scratch), -1);
    len = strlen(many);
    assert_int_equal(sendmail_header_rcpts(many, &len, out, 40, scratch), 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_header_rcpts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
