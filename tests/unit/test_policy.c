/*
 * test_policy - RCPT decisions (local mailboxes, aliases, catch-all, relay
 * only for trusted networks) and the retry backoff arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/aliases.h"
#include "config/config.h"
#include "sched/sched.h"
#include "server/policy.h"
#include "smtp/smtp.h"

static const char conf_text[] = "mx_listen = 127.0.0.1:2525\n"
                                "local_domains = example.test, other.test\n"
                                "mailboxes = postmaster@example.test, demo@example.test,\n"
                                "  info@other.test\n";
static const char alias_text[] = "team@example.test: demo@example.test, postmaster@example.test\n"
                                 "far@example.test: someone@remote.example, demo@example.test\n"
                                 "@other.test: info@other.test\n";

struct fixture {
    struct config *cfg;
    struct aliases *aliases;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct config_diags d = {0};
    f->cfg = config_parse(conf_text, sizeof conf_text - 1, "t.conf", &d);
    config_diags_free(&d);
    f->aliases = aliases_parse(alias_text, sizeof alias_text - 1, "t.aliases", &d);
    config_diags_free(&d);
    if (!f->cfg || !f->aliases)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    config_free(f->cfg);
    aliases_free(f->aliases);
    free(f);
    return 0;
}

static const struct {
    const char *path;   /* RCPT TO argument */
    bool trusted;       /* client in trusted_networks */
    int code;           /* 0 = accepted */
    const char *leaves; /* accepted: the delivery addresses, comma-separated, in order */
} cases[] = {
    {"<demo@example.test>", false, 0, "demo@example.test"},
    {"<DEMO@Example.TEST>", false, 0, "demo@example.test"},
    {"<\"demo\"@example.test>", false, 0, "demo@example.test"},
    {"<postmaster>", false, 0, "postmaster@example.test"},
    {"<Postmaster>", false, 0, "postmaster@example.test"},
    {"<team@example.test>", false, 0, "demo@example.test,postmaster@example.test"},
    {"<far@example.test>", false, 0, "someone@remote.example,demo@example.test"},
    {"<anything@other.test>", false, 0, "info@other.test"},
    {"<nobody@example.test>", false, 550, NULL},
    {"<nobody@example.test>", true, 550, NULL},
    {"<victim@remote.example>", false, 554, NULL},
    {"<victim@remote.example>", true, 0, "victim@remote.example"},
    {"<victim@[192.0.2.1]>", false, 554, NULL},
    {"<@example.test:victim@remote.example>", false, 554, NULL},
    {"<\"victim@remote.example\"@example.test>", false, 550, NULL},
    {"<victim%remote.example@example.test>", false, 550, NULL},
    {"<remote.example!victim@example.test>", false, 550, NULL},
};

static void test_rcpt_table(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp_path path;
        const char *end;
        const struct smtp_status *st = smtp_path_parse(cases[i].path, strlen(cases[i].path),
                                                       SMTP_PATH_FORWARD, false, &path, &end);
        assert_null(st);
        char *leaves[POLICY_MAX_LEAVES];
        size_t n = 99;
        st = policy_rcpt(f->cfg, f->aliases, &path, cases[i].trusted, leaves, &n);
        if (cases[i].code) {
            if (!st || st->code != cases[i].code)
                fail_msg("case %zu %s: expected %d, got %d", i, cases[i].path, cases[i].code,
                         st ? st->code : 0);
            assert_int_equal(n, 0);
            continue;
        }
        if (st)
            fail_msg("case %zu %s: refused with %d %s", i, cases[i].path, st->code, st->text);
        char joined[512] = "";
        for (size_t k = 0; k < n; k++) {
            if (k)
                strcat(joined, ",");
            strcat(joined, leaves[k]);
            free(leaves[k]);
        }
        assert_string_equal(joined, cases[i].leaves);
    }
}

static void test_is_local(void **state)
{
    struct fixture *f = *state;
    assert_true(policy_is_local(f->cfg, "demo@example.test"));
    assert_true(policy_is_local(f->cfg, "x@OTHER.test"));
    assert_false(policy_is_local(f->cfg, "x@remote.example"));
    assert_false(policy_is_local(f->cfg, "no-at-sign"));
}

static void test_backoff(void **state)
{
    assert_int_equal(sched_backoff(0, 60, 14400), 60);
    assert_int_equal(sched_backoff(1, 60, 14400), 60);
    assert_int_equal(sched_backoff(2, 60, 14400), 120);
    assert_int_equal(sched_backoff(3, 60, 14400), 240);
    assert_int_equal(sched_backoff(8, 60, 14400), 7680);
    assert_int_equal(sched_backoff(9, 60, 14400), 14400);
    assert_int_equal(sched_backoff(4000000000u, 60, 14400), 14400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rcpt_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_is_local, setup, teardown),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
