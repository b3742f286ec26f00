/*
 * test_aliases - unit tests of the aliases file: parsing (comments,
 * continuation lines, errors with their lines, duplicates) and resolution
 * (mailboxes, recursive aliases, catch-alls, deduplication, dropped local
 * targets, loops, the depth limit, a full output array) and examples/aliases.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/aliases.h"
#include "config/config.h"

#ifndef TERN_SOURCE_ROOT
#define TERN_SOURCE_ROOT "."
#endif

static struct config *cfg;

static int setup(void **state)
{
    (void)state;
    static const char text[] = "mx_listen = 127.0.0.1:25\n"
                               "local_domains = example.test, other.test\n"
                               "mailboxes = postmaster@example.test, demo@example.test,\n"
                               "  alice@example.test, bob@example.test, carol@other.test\n";
    struct config_diags d = {0};
    cfg = config_parse(text, sizeof text - 1, "t.conf", &d);
    config_diags_free(&d);
    return cfg ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    config_free(cfg);
    return 0;
}

static struct aliases *parse(const char *text, struct config_diags *d)
{
    return aliases_parse(text, strlen(text), "t.aliases", d);
}

static bool has_diag(const struct config_diags *d, unsigned line, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && strstr(d->v[i].msg, text) &&
            strcmp(d->v[i].file, "t.aliases") == 0)
            return true;
    return false;
}

static void dump_diags(const struct config_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("# diag %s:%u: %s\n", d->v[i].file, d->v[i].line, d->v[i].msg);
}

/*
 * Resolve addr and compare with the expected result: want_n (0 unknown, -1
 * failure) and, when positive, the leaves as one string "a b c" in order.
 */
static void check_resolve(const struct aliases *a, const char *addr, int want_n, const char *want)
{
    char *out[16];
    memset(out, 0, sizeof out);
    int n = aliases_resolve(a, cfg, addr, out, 16);
    char got[1024] = "";
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(got, " ");
        strcat(got, out[i]);
        free(out[i]);
    }
    for (size_t i = 0; i < 16; i++)
        if (n <= 0 && out[i])
            fail_msg("%s: out[%zu] left set after a result of %d", addr, i, n);
    if (n != want_n || (want && strcmp(got, want) != 0))
        fail_msg("%s: got %d \"%s\", want %d \"%s\"", addr, n, got, want_n, want ? want : "");
}

static void test_example_aliases(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/examples/aliases", TERN_SOURCE_ROOT);
    struct config_diags d = {0};
    struct aliases *a = aliases_load(path, &d);
    if (!a)
        dump_diags(&d);
    assert_non_null(a);
    assert_int_equal(d.n, 0);
    assert_int_equal(aliases_count(a), 3);
    check_resolve(a, "abuse@example.test", 1, "postmaster@example.test");
    check_resolve(a, "Root@Example.Test", 1, "postmaster@example.test");
    check_resolve(a, "demo@example.test", 1, "demo@example.test");
    check_resolve(a, "nobody@example.test", 0, NULL);
    aliases_free(a);

    a = aliases_load("/nonexistent/aliases", &d);
    assert_null(a);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    assert_non_null(strstr(d.v[0].msg, "cannot open"));
    config_diags_free(&d);
}

static void test_parse_format(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct aliases *a = parse("# comment\n"
                              "\n"
                              "Sales@Example.TEST: alice@example.test, Bob@EXAMPLE.test\n"
                              "team@example.test: alice@example.test\n"
                              "    bob@example.test,carol@other.test   # trailing comment\n"
                              "  # indented comment\n"
                              "    dave@Remote.Example\n"
                              "odd#name@example.test : a#b@remote.example\r\n"
                              "@other.test: carol@other.test # catch-all\n"
                              "dup@example.test: alice@example.test alice@example.test\n"
                              "j\xc3\xb6rg@example.test: demo@example.test, "
                              "Ren\xc3\xa9@R\xc3\xa9seau.Example\n",
                              &d);
    if (!a)
        dump_diags(&d);
    assert_non_null(a);
    assert_int_equal(d.n, 0);
    assert_int_equal(aliases_count(a), 6);
    check_resolve(a, "J\xc3\xb6rg@example.test", 2,
                  "demo@example.test Ren\xc3\xa9@r\xc3\xa9seau.example");
    check_resolve(a, "sales@example.test", 2, "alice@example.test bob@example.test");
    check_resolve(a, "team@example.test", 4,
                  "alice@example.test bob@example.test carol@other.test dave@remote.example");
    check_resolve(a, "odd#name@example.test", 1, "a#b@remote.example");
    check_resolve(a, "dup@example.test", 1, "alice@example.test");
    aliases_free(a);

    /* Empty and comment-only files are valid and empty. */
    a = parse("", &d);
    assert_non_null(a);
    assert_int_equal(aliases_count(a), 0);
    aliases_free(a);
    a = aliases_parse(NULL, 0, "t.aliases", &d);
    assert_non_null(a);
    aliases_free(a);
    a = parse("# nothing\n   \n", &d);
    assert_non_null(a);
    assert_int_equal(d.n, 0);
    aliases_free(a);
    assert_int_equal(aliases_count(NULL), 0);
    aliases_free(NULL);
}

static const struct bad_case {
    const char *text;
    unsigned line;
    const char *msg;
} bad_cases[] = {
    {"a@example.test alice@example.test\n", 1, "syntax error: expected \"address: target"},
    {"ok@example.test: alice@example.test\nbad: alice@example.test\n", 2,
     "\"bad\" is not an address (local@domain) or a catch-all (@domain)"},
    {"@bad_domain: alice@example.test\n", 1, "is not an address"},
    {": alice@example.test\n", 1, "is not an address"},
    {"a@example.test:\n", 1, "a@example.test: no targets"},
    {"a@example.test: |/usr/bin/procmail\n", 1, "only addresses are supported"},
    {"a@example.test: /var/mail/a\n", 1, "only addresses are supported"},
    {"a@example.test: :include:/etc/list\n", 1, "only addresses are supported"},
    {"a@example.test: alice\n", 1, "a@example.test: \"alice\" is not an address local@domain"},
    {"a@example.test: alice@example.test\n  @other.test\n", 2, "\"@other.test\" is not an address"},
    {"a@example.test: alice@example.test\nA@Example.Test: bob@example.test\n", 2,
     "a@example.test: given twice (first at line 1)"},
    {"  alice@example.test\n", 1, "continues the previous line, but there is none"},
    {"a@example.test: alice@exa\x7fmple.test\n", 1, "control character 0x7f"},
    {"a@example.test: \xff@example.test\n", 1, "is not an address"},
    {"\xc3\xa9\xc3@example.test: alice@example.test\n", 1, "is not an address"},
};

static void test_parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *t = &bad_cases[i];
        struct config_diags d = {0};
        struct aliases *a = parse(t->text, &d);
        if (a || !has_diag(&d, t->line, t->msg)) {
            dump_diags(&d);
            fail_msg("case %zu: want an error at line %u containing '%s'", i, t->line, t->msg);
        }
        config_diags_free(&d);
    }

    /* Every error is reported. */
    struct config_diags d = {0};
    struct aliases *a = parse("x@example.test: y\n"
                              "ok@example.test: alice@example.test\n"
                              "nocolon\n"
                              "z@example.test: |cmd, w\n",
                              &d);
    assert_null(a);
    assert_int_equal(d.n, 4);
    assert_true(has_diag(&d, 1, "\"y\""));
    assert_true(has_diag(&d, 3, "syntax error"));
    assert_true(has_diag(&d, 4, "\"|cmd\""));
    assert_true(has_diag(&d, 4, "\"w\""));
    config_diags_free(&d);
}

static void test_resolve(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct aliases *a = parse("staff@example.test: team@example.test, boss@remote.example\n"
                              "team@example.test: alice@example.test, bob@example.test\n"
                              "all@example.test: staff@example.test, team@example.test,\n"
                              "  alice@example.test\n"
                              "gone@example.test: nobody@example.test\n"
                              "partly@example.test: nobody@example.test, bob@example.test\n"
                              "ext@example.test: Mixed.Case@Remote.EXAMPLE\n"
                              "demo@example.test: alice@example.test\n"
                              "@example.test: postmaster@example.test\n"
                              "exact@other.test: alice@example.test\n"
                              "fwd@remote.example: alice@example.test\n"
                              "via@example.test: fwd@remote.example\n",
                              &d);
    if (!a)
        dump_diags(&d);
    assert_non_null(a);

    /* A mailbox is itself, whatever aliases say. */
    check_resolve(a, "demo@example.test", 1, "demo@example.test");
    check_resolve(a, "DEMO@EXAMPLE.TEST", 1, "demo@example.test");
    /* Recursion, order kept, remote leaves kept. */
    check_resolve(a, "staff@example.test", 3,
                  "alice@example.test bob@example.test boss@remote.example");
    /* Deduplicated across branches (a diamond is not a loop). */
    check_resolve(a, "all@example.test", 3,
                  "alice@example.test bob@example.test boss@remote.example");
    /* A local target that is neither mailbox nor alias is dropped... */
    check_resolve(a, "partly@example.test", 1, "bob@example.test");
    /* ...and when nothing remains, the address is unknown. */
    check_resolve(a, "gone@example.test", 0, NULL);
    /* Remote local parts keep their case; domains are lowercased. */
    check_resolve(a, "ext@example.test", 1, "Mixed.Case@remote.example");
    /* Catch-all for unknown addresses of its domain only. */
    check_resolve(a, "whoever@example.test", 1, "postmaster@example.test");
    check_resolve(a, "whoever@other.test", 0, NULL);
    check_resolve(a, "exact@other.test", 1, "alice@example.test");
    /* An alias key may name a remote address; a target reaching it expands it. */
    check_resolve(a, "via@example.test", 1, "alice@example.test");
    /* Not addresses. */
    check_resolve(a, "postmaster", 0, NULL);
    check_resolve(a, "@example.test", 0, NULL);
    check_resolve(a, "x@", 0, NULL);
    check_resolve(a, NULL, 0, NULL);
    /* No aliases at all: mailboxes only. */
    check_resolve(NULL, "alice@example.test", 1, "alice@example.test");
    check_resolve(NULL, "staff@example.test", 0, NULL);
    aliases_free(a);
}

static void test_loops(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct aliases *a = parse("self@example.test: self@example.test\n"
                              "ping@example.test: pong@example.test\n"
                              "pong@example.test: alice@example.test, ping@example.test\n"
                              "entry@example.test: bob@example.test, ping@example.test\n"
                              "mbox@example.test: demo@example.test, mbox2@example.test\n"
                              "mbox2@example.test: demo@example.test\n"
                              "@other.test: loop@other.test\n"
                              "loop@other.test: nobody@other.test, x@other.test\n"
                              "x@other.test: loop@other.test\n",
                              &d);
    assert_non_null(a);
    check_resolve(a, "self@example.test", -1, NULL);
    check_resolve(a, "ping@example.test", -1, NULL);
    check_resolve(a, "Pong@example.test", -1, NULL);
    check_resolve(a, "entry@example.test", -1, NULL);
    check_resolve(a, "mbox@example.test", 1, "demo@example.test");
    check_resolve(a, "anyone@other.test", -1, NULL);
    aliases_free(a);
}

/* Chain a0 -> a1 -> ... -> a{n-1} -> alice. */
static char *chain(const char *prefix, int n)
{
    char *s = malloc((size_t)n * 80 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (i + 1 < n)
            len += (size_t)sprintf(s + len, "%s%d@example.test: %s%d@example.test\n", prefix, i,
                                   prefix, i + 1);
        else
            len += (size_t)sprintf(s + len, "%s%d@example.test: alice@example.test\n", prefix, i);
    }
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    struct config_diags d = {0};
    /* Ten levels of aliases are allowed; eleven are not. */
    char *ten = chain("t", 10), *eleven = chain("e", 11);
    char *both = malloc(strlen(ten) + strlen(eleven) + 1);
    strcpy(both, ten);
    strcat(both, eleven);
    struct aliases *a = parse(both, &d);
    assert_non_null(a);
    check_resolve(a, "t0@example.test", 1, "alice@example.test");
    check_resolve(a, "e1@example.test", 1, "alice@example.test");
    check_resolve(a, "e0@example.test", -1, NULL);
    aliases_free(a);
    free(ten);
    free(eleven);
    free(both);

    /*
     * A sub-alias reached twice: first near the top (x at level 2, y at 3),
     * then at the end of a chain. p1..p8 put x at level 10 (y at 11: too
     * deep); p1..p7 put it at level 9 (y at 10: fine). Its memo must not hide
     * the deeper path.
     */
    a = parse("r@example.test: x@example.test, p1@example.test\n"
              "x@example.test: y@example.test\n"
              "y@example.test: bob@example.test\n"
              "p1@example.test: p2@example.test\n"
              "p2@example.test: p3@example.test\n"
              "p3@example.test: p4@example.test\n"
              "p4@example.test: p5@example.test\n"
              "p5@example.test: p6@example.test\n"
              "p6@example.test: p7@example.test\n"
              "p7@example.test: p8@example.test, alice@example.test\n"
              "p8@example.test: x@example.test\n"
              "s@example.test: x@example.test, p2@example.test\n",
              &d);
    assert_non_null(a);
    check_resolve(a, "r@example.test", -1, NULL);
    check_resolve(a, "s@example.test", 2, "bob@example.test alice@example.test");
    aliases_free(a);
    config_diags_free(&d);
}

static void test_max_out(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct aliases *a = parse("many@example.test: a@r.example b@r.example c@r.example\n"
                              "  d@r.example e@r.example\n",
                              &d);
    assert_non_null(a);
    char *out[5] = {0};
    assert_int_equal(aliases_resolve(a, cfg, "many@example.test", out, 5), 5);
    for (int i = 0; i < 5; i++)
        free(out[i]);
    memset(out, 0, sizeof out);
    /* More leaves than room: a failure, nothing left allocated. */
    assert_int_equal(aliases_resolve(a, cfg, "many@example.test", out, 4), -1);
    for (int i = 0; i < 5; i++)
        assert_null(out[i]);
    assert_int_equal(aliases_resolve(a, cfg, "alice@example.test", out, 0), -1);
    assert_int_equal(aliases_resolve(a, cfg, "alice@example.test", out, 1), 1);
    assert_string_equal(out[0], "alice@example.test");
    free(out[0]);
    aliases_free(a);
}

/* A wide diamond lattice: each level's aliases all point at all aliases of the
   next level. Expanding every path would take 8^10 steps; once per alias is quick. */
static void test_wide_graph(void **state)
{
    (void)state;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    len += (size_t)sprintf(s + len, "top@example.test: l1x0@example.test\n");
    for (int level = 1; level <= 9; level++) {
        for (int i = 0; i < 8; i++) {
            len += (size_t)sprintf(s + len, "l%dx%d@example.test:", level, i);
            for (int j = 0; j < 8; j++) {
                if (level < 9)
                    len += (size_t)sprintf(s + len, " l%dx%d@example.test", level + 1, j);
                else
                    len += (size_t)sprintf(s + len, " u%d@r.example", j);
            }
            len += (size_t)sprintf(s + len, "\n");
        }
    }
    struct config_diags d = {0};
    struct aliases *a = aliases_parse(s, len, "t.aliases", &d);
    assert_non_null(a);
    char *out[16] = {0};
    int n = aliases_resolve(a, cfg, "top@example.test", out, 16);
    assert_int_equal(n, 8);
    for (int i = 0; i < n; i++)
        free(out[i]);
    aliases_free(a);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_aliases), cmocka_unit_test(test_parse_format),
        cmocka_unit_test(test_parse_errors),    cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_loops),           cmocka_unit_test(test_depth),
        cmocka_unit_test(test_max_out),         cmocka_unit_test(test_wide_graph),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
