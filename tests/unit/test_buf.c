/*
 * test_buf - bounded buffers, CRC-32C and the small helpers of src/core.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/crc32c.h"
#include "core/util.h"

static void test_buf_limit(void **state)
{
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345", 5), 0);
    assert_int_equal(buf_append(&b, "678", 3), 0);
    assert_int_equal(b.len, 8);
    assert_int_equal(buf_append(&b, "9", 1), -1);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    buf_consume(&b, 3);
    assert_string_equal(b.data, "45678");
    assert_int_equal(buf_printf(&b, "%d", 123), 0);
    assert_string_equal(b.data, "45678123");
    assert_int_equal(buf_printf(&b, "x"), -1);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append(&b, "", 0), 0);
    buf_free(&b);
    buf_free(&b);
}

static void test_buf_huge_append(void **state)
{
    struct buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, "a", 1), 0);
    assert_int_equal(buf_append(&b, "a", SIZE_MAX), -1);
    buf_free(&b);
    /* an unlimited buffer still leaves room for its terminator */
    buf_init(&b, SIZE_MAX);
    assert_true(b.max < SIZE_MAX);
    assert_int_equal(buf_append(&b, "a", 1), 0);
    assert_int_equal(buf_append(&b, "a", SIZE_MAX - 1), -1);
    assert_int_equal(b.len, 1);
    buf_free(&b);
}

static void test_size_arith(void **state)
{
    size_t r = 0;
    assert_true(size_add(1, 2, &r));
    assert_int_equal(r, 3);
    assert_false(size_add(SIZE_MAX, 1, &r));
    assert_true(size_mul(SIZE_MAX / 2, 2, &r));
    assert_false(size_mul(SIZE_MAX / 2 + 1, 2, &r));
    int *p = xmallocarray(4, sizeof *p);
    p[3] = 1;
    p = xreallocarray(p, 8, sizeof *p);
    assert_int_equal(p[3], 1);
    free(p);
}

static void test_crc32c(void **state)
{
    static const struct {
        const char *in;
        uint32_t crc;
    } cases[] = {
        {"", 0x00000000u},
        {"a", 0xC1D04330u},
        {"123456789", 0xE3069283u},
        {"The quick brown fox jumps over the lazy dog", 0x22620404u},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(crc32c(0, cases[i].in, strlen(cases[i].in)), cases[i].crc);
    /* incremental equals one pass */
    const char *s = "The quick brown fox jumps over the lazy dog";
    uint32_t c = crc32c(0, s, 10);
    c = crc32c(c, s + 10, strlen(s) - 10);
    assert_int_equal(c, 0x22620404u);
}

static void test_parse_u64(void **state)
{
    uint64_t v;
    assert_true(parse_u64("0", 1, &v) && v == 0);
    assert_true(parse_u64("18446744073709551615", 20, &v) && v == UINT64_MAX);
    assert_false(parse_u64("18446744073709551616", 20, &v));
    assert_false(parse_u64("99999999999999999999999", 23, &v));
    assert_false(parse_u64("", 0, &v));
    assert_false(parse_u64("-5", 2, &v));
    assert_false(parse_u64("12a", 3, &v));
}

static void test_ascii(void **state)
{
    assert_true(ascii_ieq("MAIL", "mail"));
    assert_false(ascii_ieq("MAIL", "mai"));
    assert_true(ascii_nieq("FROM:<x>", "from:", 5));
    char s[] = "Example.TEST";
    ascii_lower(s);
    assert_string_equal(s, "example.test");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_limit), cmocka_unit_test(test_buf_huge_append),
        cmocka_unit_test(test_crc32c),    cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_ascii),     cmocka_unit_test(test_size_arith),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
