/*
 * test_senderlogin - unit tests of the sender login map: parsing (comments,
 * continuation lines, case), errors with their lines (bad keys and logins, no
 * logins, a key given twice), and the rules of sender_login_allows (exact
 * address, then @domain, else a login owns its own address; the null sender).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/senderlogin.h"

static struct sender_login *parse(const char *text, struct config_diags *d)
{
    return sender_login_parse(text, strlen(text), "t.map", d);
}

static bool has_diag(const struct config_diags *d, unsigned line, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && strstr(d->v[i].msg, text) && strcmp(d->v[i].file, "t.map") == 0)
            return true;
    return false;
}

static void dump_diags(const struct config_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("# diag %s:%u: %s\n", d->v[i].file, d->v[i].line, d->v[i].msg);
}

static void test_allows(void **state)
{
    (void)state;
    static const char text[] = "# who may send as whom\n"
                               "Info@Example.TEST   alice@example.test, Bob@Example.test\n"
                               "@example.test       admin@example.test   # the whole domain\n"
                               "sales@other.test    carol@example.test,\n"
                               "                    dave@example.test\n"
                               "@Other.Test         erin@example.test erin@example.test\n";
    struct config_diags d = {0};
    struct sender_login *m = parse(text, &d);
    dump_diags(&d);
    assert_non_null(m);
    assert_int_equal(d.n, 0);
    assert_int_equal(sender_login_count(m), 4);

    static const struct {
        const char *login, *addr;
        bool want;
    } cases[] = {
        /* exact entry */
        {"alice@example.test", "info@example.test", true},
        {"ALICE@example.test", "INFO@EXAMPLE.test", true},
        {"bob@example.test", "info@example.test", true},
        {"admin@example.test", "info@example.test", false}, /* exact beats @domain */
        {"carol@example.test", "sales@other.test", true},
        {"dave@example.test", "sales@other.test", true},
        {"erin@example.test", "sales@other.test", false},
        /* @domain entry */
        {"admin@example.test", "anyone@example.test", true},
        {"alice@example.test", "alice@example.test", false}, /* the domain entry applies */
        {"erin@example.test", "x@other.test", true},
        {"erin@example.test", "x@OTHER.test", true},
        /* no entry: a login owns its own address */
        {"zed@third.test", "zed@third.test", true},
        {"zed@third.test", "ZED@Third.Test", true},
        {"zed@third.test", "zee@third.test", false},
        {"alice@example.test", "alice@third.test", false},
        /* null sender */
        {"zed@third.test", "", true},
        {"alice@example.test", "", true},
        /* odd input */
        {"", "x@third.test", false},
        {"x", "x", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = sender_login_allows(m, cases[i].login, cases[i].addr);
        if (got != cases[i].want)
            print_message("# case %zu: %s as %s\n", i, cases[i].login, cases[i].addr);
        assert_int_equal(got, cases[i].want);
    }
    assert_false(sender_login_allows(m, NULL, "x@example.test"));
    assert_false(sender_login_allows(m, "x@example.test", NULL));
    char big[400];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(sender_login_allows(m, big, big));

    /* without a map, each login owns its own address */
    assert_true(sender_login_allows(NULL, "a@example.test", "A@example.test"));
    assert_false(sender_login_allows(NULL, "a@example.test", "b@example.test"));
    assert_true(sender_login_allows(NULL, "a@example.test", ""));
    assert_int_equal(sender_login_count(NULL), 0);
    sender_login_free(m);
    sender_login_free(NULL);
    config_diags_free(&d);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *msg;
    } cases[] = {
        {"info@example.test\n", 1, "no logins"},
        {"info\talice@example.test\n", 1, "is not an address"},
        {"@\talice@example.test\n", 1, "is not an address"},
        {"@-bad-.test alice@example.test\n", 1, "is not an address"},
        {"info@example.test alice\n", 1, "is not a login"},
        {"info@example.test alice@example.test,\n  @example.test\n", 2, "is not a login"},
        {"# x\ninfo@example.test a@example.test\nINFO@example.test b@example.test\n", 3,
         "given twice (first at line 2)"},
        {" info@example.test a@example.test\n", 1, "continues the previous line"},
        {"info@example.test a@example.test\x7f\n", 1, "control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config_diags d = {0};
        struct sender_login *m = parse(cases[i].text, &d);
        if (m || !has_diag(&d, cases[i].line, cases[i].msg)) {
            print_message("# case %zu: %s", i, cases[i].text);
            dump_diags(&d);
        }
        assert_null(m);
        assert_true(has_diag(&d, cases[i].line, cases[i].msg));
        config_diags_free(&d);
    }
    struct config_diags d = {0};
    struct sender_login *m = sender_login_load("/no/such/map", &d);
    assert_null(m);
    assert_int_equal(d.n, 1);
    config_diags_free(&d);
    m = parse("", &d);
    assert_non_null(m);
    assert_int_equal(sender_login_count(m), 0);
    sender_login_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
