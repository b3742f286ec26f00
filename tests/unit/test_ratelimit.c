/* Unit tests of the fixed-window counters (src/server/ratelimit.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "server/ratelimit.h"

static void test_window(void **state)
{
    (void)state;
    struct rate_table *t = rate_table_new(100, 60);
    assert_int_equal(rate_get(t, "1.2.3.4", 1000).a, 0);
    assert_int_equal(rate_table_size(t), 0); /* get creates nothing */
    assert_int_equal(rate_add(t, "1.2.3.4", 1000, 1, 0).a, 1);
    assert_int_equal(rate_add(t, "1.2.3.4", 1059, 1, 5).a, 2);
    assert_int_equal(rate_get(t, "1.2.3.4", 1059).b, 5);
    assert_int_equal(rate_get(t, "5.6.7.8", 1059).a, 0);
    /* the window started at 1000: at 1060 it is over */
    assert_int_equal(rate_get(t, "1.2.3.4", 1060).a, 0);
    assert_int_equal(rate_add(t, "1.2.3.4", 1061, 1, 0).a, 1);
    /* a clock that went back restarts the window rather than trusting it */
    assert_int_equal(rate_add(t, "1.2.3.4", 10, 1, 0).a, 1);
    rate_table_free(t);
}

static void test_bounded(void **state)
{
    (void)state;
    struct rate_table *t = rate_table_new(8, 60);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "10.0.%d.%d", i / 256, i % 256);
        rate_add(t, key, 1000 + i / 100, 1, 0);
        assert_true(rate_table_size(t) <= 8);
    }
    /* the newest keys survive, the oldest went first */
    assert_int_equal(rate_get(t, "10.0.3.231", 1009).a, 1);
    assert_int_equal(rate_get(t, "10.0.0.0", 1009).a, 0);
    rate_table_free(t);
}

static void test_saturates(void **state)
{
    (void)state;
    struct rate_table *t = rate_table_new(4, 3600);
    rate_add(t, "u@x", 0, UINT64_MAX - 1, 0);
    assert_true(rate_add(t, "u@x", 1, 5, 0).a == UINT64_MAX);
    rate_table_free(t);
    rate_table_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_saturates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
