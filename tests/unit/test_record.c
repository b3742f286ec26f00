/*
 * test_record - unit tests of the spool record format (src/spool/record.c):
 * record round trips, every kind of corruption, and the envelope and
 * recipient-state payload codecs with malformed inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "spool/record.h"

/* Build a record with a payload of `len` octets into a fresh buffer. */
static uint8_t *make_record(uint8_t type, uint64_t id, uint64_t offset, const void *payload,
                            uint32_t len)
{
    uint8_t *buf = calloc(1, RECORD_HEADER_SIZE + (size_t)len + 1);
    struct record_header h = {.type = type, .len = len, .id = id, .offset = offset};
    record_header_encode(buf, &h, payload);
    if (len)
        memcpy(buf + RECORD_HEADER_SIZE, payload, len);
    return buf;
}

/* Re-seal a header whose octets 0..23 were edited, so that only the edit is wrong. */
static void reseal(uint8_t *buf, uint32_t len)
{
    uint32_t crc = crc32c(0, buf, 24);
    crc = crc32c(crc, buf + RECORD_HEADER_SIZE, len);
    for (int i = 0; i < 4; i++)
        buf[24 + i] = (uint8_t)(crc >> (8 * i));
}

static void test_round_trip(void **state)
{
    (void)state;
    static uint8_t big[RECORD_CHUNK_MAX];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    const struct {
        uint8_t type;
        uint64_t id;
        uint64_t offset;
        uint32_t len;
    } cases[] = {
        {RECORD_CHUNK, 1, 0, 1},
        {RECORD_CHUNK, 0x0123456789ABCDEFull, 65536, 100},
        {RECORD_CHUNK, UINT64_MAX, (uint64_t)1 << 40, RECORD_CHUNK_MAX},
        {RECORD_ENVELOPE, 42, 0, 0},
        {RECORD_ENVELOPE, 42, 0, 5000},
        {RECORD_RCPT, 7, 0, 21},
        {RECORD_REMOVE, 9, 0, 0},
        {RECORD_HOLD, 11, 0, 1},
        {RECORD_SYNCED, 3, 123456, 0}, /* a sync mark: segment 3, offset 123456 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *buf = make_record(cases[i].type, cases[i].id, cases[i].offset, big, cases[i].len);
        size_t total = RECORD_HEADER_SIZE + cases[i].len;
        struct record_header h;
        const uint8_t *payload = NULL;
        assert_int_equal(record_parse(buf, total, &h, &payload), RECORD_OK);
        assert_int_equal(h.type, cases[i].type);
        assert_int_equal(h.len, cases[i].len);
        assert_true(h.id == cases[i].id);
        assert_true(h.offset == cases[i].offset);
        assert_ptr_equal(payload, buf + RECORD_HEADER_SIZE);
        if (cases[i].len)
            assert_memory_equal(payload, big, cases[i].len);
        /* little-endian on disk, whatever the host */
        assert_int_equal(buf[0], RECORD_MAGIC);
        assert_int_equal(buf[8], (uint8_t)cases[i].id);
        assert_int_equal(buf[4], (uint8_t)cases[i].len);
        /* more octets after the record do not matter */
        assert_int_equal(record_parse(buf, total + 1, &h, &payload), RECORD_OK);
        free(buf);
    }
}

static void test_end_marker(void **state)
{
    (void)state;
    uint8_t zero[RECORD_HEADER_SIZE] = {0};
    struct record_header h;
    const uint8_t *p;
    assert_int_equal(record_parse(zero, sizeof zero, &h, &p), RECORD_END);
    assert_int_equal(record_parse(zero, 1, &h, &p), RECORD_END);
    assert_int_equal(record_parse(zero, 0, &h, &p), RECORD_SHORT);
    assert_string_equal(record_result_name(RECORD_END), "end");
}

enum edit {
    FLIP_PAYLOAD,
    FLIP_CRC,
    FLIP_ID,
    FLIP_OFFSET,
    BAD_MAGIC,
    RESERVED_SET,
    TYPE_ZERO,
    TYPE_SIX,
    LEN_HOLD_TWO,
    LEN_HOLD_ZERO,
    OFFSET_ON_HOLD,
    TYPE_FF,
    LEN_CHUNK_TOO_LARGE,
    LEN_ENVELOPE_TOO_LARGE,
    LEN_REMOVE_NONZERO,
    LEN_CHUNK_ZERO,
    OFFSET_ON_RCPT,
    CUT_HEADER,
    CUT_PAYLOAD,
    LEN_PAST_BUFFER,
};

static void test_corruption(void **state)
{
    (void)state;
    const struct {
        enum edit edit;
        uint8_t type;
        enum record_result want;
    } cases[] = {
        {FLIP_PAYLOAD, RECORD_CHUNK, RECORD_BAD_CRC},
        {FLIP_CRC, RECORD_CHUNK, RECORD_BAD_CRC},
        {FLIP_ID, RECORD_ENVELOPE, RECORD_BAD_CRC},
        {FLIP_OFFSET, RECORD_CHUNK, RECORD_BAD_CRC},
        {BAD_MAGIC, RECORD_CHUNK, RECORD_BAD_HEADER},
        {RESERVED_SET, RECORD_CHUNK, RECORD_BAD_HEADER},
        {TYPE_ZERO, RECORD_CHUNK, RECORD_BAD_HEADER},
        {TYPE_SIX, RECORD_CHUNK, RECORD_BAD_HEADER},
        {LEN_HOLD_TWO, RECORD_HOLD, RECORD_BAD_HEADER},
        {LEN_HOLD_ZERO, RECORD_HOLD, RECORD_BAD_HEADER},
        {OFFSET_ON_HOLD, RECORD_HOLD, RECORD_BAD_HEADER},
        {TYPE_FF, RECORD_CHUNK, RECORD_BAD_HEADER},
        {LEN_CHUNK_TOO_LARGE, RECORD_CHUNK, RECORD_BAD_HEADER},
        {LEN_ENVELOPE_TOO_LARGE, RECORD_ENVELOPE, RECORD_BAD_HEADER},
        {LEN_REMOVE_NONZERO, RECORD_REMOVE, RECORD_BAD_HEADER},
        {LEN_CHUNK_ZERO, RECORD_CHUNK, RECORD_BAD_HEADER},
        {OFFSET_ON_RCPT, RECORD_RCPT, RECORD_BAD_HEADER},
        {CUT_HEADER, RECORD_CHUNK, RECORD_SHORT},
        {CUT_PAYLOAD, RECORD_CHUNK, RECORD_SHORT},
        {LEN_PAST_BUFFER, RECORD_ENVELOPE, RECORD_SHORT},
    };
    uint8_t payload[64];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t len = cases[i].type == RECORD_REMOVE ? 0
                       : cases[i].type == RECORD_HOLD ? 1
                                                      : sizeof payload;
        uint8_t *buf = make_record(cases[i].type, 77, 0, payload, len);
        size_t avail = RECORD_HEADER_SIZE + len;
        switch (cases[i].edit) {
        case FLIP_PAYLOAD:
            buf[RECORD_HEADER_SIZE + 10] ^= 0x40;
            break;
        case FLIP_CRC:
            buf[25] ^= 1;
            break;
        case FLIP_ID:
            buf[9] ^= 1;
            break;
        case FLIP_OFFSET:
            buf[16] ^= 1;
            break;
        case BAD_MAGIC:
            buf[0] = 0x5A;
            reseal(buf, len);
            break;
        case RESERVED_SET:
            buf[3] = 1;
            reseal(buf, len);
            break;
        case TYPE_ZERO:
            buf[1] = 0;
            reseal(buf, len);
            break;
        case TYPE_SIX:
            buf[1] = 6;
            reseal(buf, len);
            break;
        case LEN_HOLD_TWO:
            buf[4] = 2;
            reseal(buf, 1);
            avail++;
            break;
        case LEN_HOLD_ZERO:
            buf[4] = 0;
            reseal(buf, 0);
            break;
        case OFFSET_ON_HOLD:
            buf[16] = 1;
            reseal(buf, len);
            break;
        case TYPE_FF:
            buf[1] = 0xFF;
            reseal(buf, len);
            break;
        case LEN_CHUNK_TOO_LARGE:
            buf[4] = 0x01, buf[5] = 0x00, buf[6] = 0x01, buf[7] = 0; /* 65537 */
            break;
        case LEN_ENVELOPE_TOO_LARGE:
            buf[4] = 0x01, buf[5] = 0, buf[6] = 0, buf[7] = 0x01; /* 16 MiB + 1 */
            break;
        case LEN_REMOVE_NONZERO:
            buf[4] = 1;
            break;
        case LEN_CHUNK_ZERO:
            memset(buf + 4, 0, 4);
            reseal(buf, 0);
            break;
        case OFFSET_ON_RCPT:
            buf[20] = 1;
            reseal(buf, len);
            break;
        case CUT_HEADER:
            avail = RECORD_HEADER_SIZE - 1;
            break;
        case CUT_PAYLOAD:
            avail = RECORD_HEADER_SIZE + len - 1;
            break;
        case LEN_PAST_BUFFER:
            buf[6] = 0x10; /* 1 MiB + 64: valid for an envelope, beyond the buffer */
            break;
        }
        struct record_header h;
        const uint8_t *p = NULL;
        enum record_result r = record_parse(buf, avail, &h, &p);
        if (r != cases[i].want)
            fail_msg("case %zu: got %s, want %s", i, record_result_name(r),
                     record_result_name(cases[i].want));
        free(buf);
    }
}

static void test_every_truncation_short(void **state)
{
    (void)state;
    uint8_t payload[300];
    memset(payload, 'x', sizeof payload);
    uint8_t *buf = make_record(RECORD_CHUNK, 5, 0, payload, sizeof payload);
    struct record_header h;
    const uint8_t *p;
    for (size_t n = 1; n < RECORD_HEADER_SIZE + sizeof payload; n++)
        assert_int_equal(record_parse(buf, n, &h, &p), RECORD_SHORT);
    free(buf);
}

/* ---- envelopes ---------------------------------------------------------- */

static char *fmt(const char *prefix, size_t i)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s%zu@example.test", prefix, i);
    return strdup(tmp);
}

static struct spool_envelope *make_env(size_t nrcpt, bool nulls)
{
    struct spool_envelope *e = calloc(1, sizeof *e);
    e->sender = strdup(nulls ? "" : "alice@example.test");
    e->envid = nulls ? NULL : strdup("ENV-123");
    e->ret = 2;
    e->body = 1;
    e->smtputf8 = !nulls;
    e->helo = nulls ? NULL : strdup("client.example.test");
    e->client_addr = nulls ? NULL : strdup("192.0.2.7");
    e->listener = strdup("mx");
    e->auth_user = nulls ? NULL : strdup("alice");
    e->prefix = nulls ? NULL : strdup("Authentication-Results: mx.example.test; spf=pass\r\n");
    e->arrival = 1700000000;
    e->size = 123456789;
    e->nrcpt = nrcpt;
    e->rcpt = nrcpt ? calloc(nrcpt, sizeof *e->rcpt) : NULL;
    for (size_t i = 0; i < nrcpt; i++) {
        struct spool_rcpt *r = &e->rcpt[i];
        r->addr = fmt("user", i);
        r->orcpt = (nulls || i % 2) ? NULL : fmt("rfc822;orig", i);
        r->dsn_orig = (nulls || i % 3) ? NULL : fmt("alias", i);
        r->notify = (unsigned)(i % 16);
        r->state = (uint8_t)(i % 5);
        r->attempts = (uint32_t)i;
        r->next_attempt = (int64_t)i * 1000 - 5;
        r->status = (nulls || i % 2 == 0) ? NULL : strdup("dsn=4.4.1 connection refused");
    }
    return e;
}

static void free_env(struct spool_envelope *e)
{
    record_envelope_free(e);
    free(e);
}

static void assert_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_env_eq(const struct spool_envelope *a, const struct spool_envelope *b)
{
    assert_str_eq(a->sender, b->sender);
    assert_str_eq(a->envid, b->envid);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_str_eq(a->helo, b->helo);
    assert_str_eq(a->client_addr, b->client_addr);
    assert_str_eq(a->listener, b->listener);
    assert_str_eq(a->auth_user, b->auth_user);
    assert_str_eq(a->prefix, b->prefix);
    assert_true(a->arrival == b->arrival);
    assert_true(a->size == b->size);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        assert_str_eq(a->rcpt[i].addr, b->rcpt[i].addr);
        assert_str_eq(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
        assert_str_eq(a->rcpt[i].dsn_orig, b->rcpt[i].dsn_orig);
        assert_int_equal(a->rcpt[i].notify, b->rcpt[i].notify);
        assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
        assert_int_equal(a->rcpt[i].attempts, b->rcpt[i].attempts);
        assert_true(a->rcpt[i].next_attempt == b->rcpt[i].next_attempt);
        assert_str_eq(a->rcpt[i].status, b->rcpt[i].status);
    }
}

/* Encode into a malloc'd buffer of exactly the right size. */
static uint8_t *encode(const struct spool_envelope *e, size_t *len)
{
    long n = record_envelope_encode(e, NULL, 0);
    assert_true(n > 0);
    uint8_t *buf = malloc((size_t)n);
    assert_int_equal(record_envelope_encode(e, buf, (size_t)n), n);
    *len = (size_t)n;
    return buf;
}

static void test_envelope_round_trip(void **state)
{
    (void)state;
    const struct {
        size_t nrcpt;
        bool nulls;
    } cases[] = {{0, false}, {0, true}, {1, false}, {1, true}, {1000, false}, {1000, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spool_envelope *e = make_env(cases[i].nrcpt, cases[i].nulls);
        size_t len;
        uint8_t *buf = encode(e, &len);
        struct spool_envelope d;
        assert_true(record_envelope_decode(buf, len, &d));
        assert_env_eq(e, &d);
        /* the encoding is canonical */
        size_t len2;
        uint8_t *buf2 = encode(&d, &len2);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        /* a short buffer reports the size needed and writes nothing past cap */
        uint8_t small[16];
        memset(small, 0xEE, sizeof small);
        assert_int_equal(record_envelope_encode(e, small, 8), (long)len);
        for (size_t k = 8; k < sizeof small; k++)
            assert_int_equal(small[k], 0xEE);
        record_envelope_free(&d);
        free(buf);
        free(buf2);
        free_env(e);
    }
    record_envelope_free(NULL);
}

/* Version 1 envelopes (written before the prefix existed) still decode. */
static void test_envelope_version1(void **state)
{
    (void)state;
    struct spool_envelope *e = make_env(0, true);
    long n = record_envelope_encode(e, NULL, 0);
    assert_true(n > 8);
    uint8_t *buf = malloc((size_t)n);
    assert_int_equal(record_envelope_encode(e, buf, (size_t)n), n);
    /* with no recipient the payload ends: str prefix (NULL), u32 nrcpt 0 */
    static const uint8_t tail[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_memory_equal(buf + n - 8, tail, 8);
    assert_int_equal(buf[0], 2);
    buf[0] = 1;
    memset(buf + n - 8, 0, 4); /* drop the prefix: nrcpt moves up */
    struct spool_envelope d;
    assert_true(record_envelope_decode(buf, (size_t)n - 4, &d));
    assert_null(d.prefix);
    assert_env_eq(e, &d);
    record_envelope_free(&d);
    /* a version 1 payload with the prefix left in has trailing octets */
    assert_false(record_envelope_decode(buf, (size_t)n, &d));
    buf[0] = 3; /* a future version is refused */
    assert_false(record_envelope_decode(buf, (size_t)n - 4, &d));
    free(buf);
    free_env(e);
}

static void test_envelope_all_null_strings(void **state)
{
    (void)state;
    struct spool_envelope e = {0};
    struct spool_rcpt r = {0};
    e.nrcpt = 1;
    e.rcpt = &r;
    size_t len;
    uint8_t *buf = encode(&e, &len);
    struct spool_envelope d;
    assert_true(record_envelope_decode(buf, len, &d));
    assert_null(d.sender);
    assert_null(d.rcpt[0].addr);
    assert_env_eq(&e, &d);
    record_envelope_free(&d);
    free(buf);
}

static void test_envelope_not_encodable(void **state)
{
    (void)state;
    struct spool_envelope *e = make_env(2, false);
    char *long_str = malloc(RECORD_STRING_MAX + 2);
    memset(long_str, 'a', RECORD_STRING_MAX + 1);
    long_str[RECORD_STRING_MAX + 1] = '\0';

    char *saved = e->helo;
    e->helo = long_str;
    assert_int_equal(record_envelope_encode(e, NULL, 0), -1);
    long_str[RECORD_STRING_MAX] = '\0'; /* exactly the limit is fine */
    assert_true(record_envelope_encode(e, NULL, 0) > 0);
    e->helo = saved;

    e->rcpt[1].state = SPOOL_RCPT_EXPIRED + 1;
    assert_int_equal(record_envelope_encode(e, NULL, 0), -1);
    e->rcpt[1].state = SPOOL_RCPT_EXPIRED;

    size_t n = e->nrcpt;
    e->nrcpt = RECORD_RCPT_COUNT_MAX + 1;
    assert_int_equal(record_envelope_encode(e, NULL, 0), -1);
    e->nrcpt = n;

    free(long_str);
    free_env(e);
}

/* Offsets in the encoding of make_env(1, false), for targeted edits. */
#define OFF_VERSION 0
#define OFF_FLAGS 3
#define OFF_SENDER_LEN 20

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_envelope_malformed(void **state)
{
    (void)state;
    struct spool_envelope *e = make_env(1, false);
    size_t len;
    uint8_t *good = encode(e, &len);
    struct spool_envelope d;

    /* every proper prefix fails */
    for (size_t n = 0; n < len; n++) {
        if (record_envelope_decode(good, n, &d))
            fail_msg("prefix of %zu octets accepted", n);
        assert_null(d.sender);
        assert_null(d.rcpt);
    }
    /* a trailing octet fails */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, good, len);
    longer[len] = 0;
    assert_false(record_envelope_decode(longer, len + 1, &d));
    free(longer);

    size_t sender_len = strlen(e->sender);
    size_t nrcpt_off = OFF_SENDER_LEN;
    {
        /* walk the seven strings to the recipient count */
        const uint8_t *p = good + OFF_SENDER_LEN;
        for (int i = 0; i < 7; i++) {
            uint32_t l =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            size_t step = 4 + (l == 0xFFFFFFFFu ? 0 : l);
            p += step;
            nrcpt_off += step;
        }
    }
    size_t state_off = nrcpt_off + 4; /* addr, orcpt, dsn_orig, then notify, state */
    {
        const uint8_t *p = good + state_off;
        for (int i = 0; i < 3; i++) {
            uint32_t l =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            size_t step = 4 + (l == 0xFFFFFFFFu ? 0 : l);
            p += step;
            state_off += step;
        }
        state_off += 4;
    }

    enum { VERSION, FLAGS, STRLEN_HUGE, STRLEN_OVER, STR_NUL, NRCPT_HUGE, NRCPT_MORE, STATE };
    for (int edit = VERSION; edit <= STATE; edit++) {
        uint8_t *b = malloc(len);
        memcpy(b, good, len);
        switch (edit) {
        case VERSION:
            b[OFF_VERSION] = RECORD_ENVELOPE_VERSION + 1;
            break;
        case FLAGS:
            b[OFF_FLAGS] = 4; /* bits 0 and 1 are SMTPUTF8 and held */
            break;
        case STRLEN_HUGE:
            put32(b + OFF_SENDER_LEN, 0xFFFFFFFEu);
            break;
        case STRLEN_OVER:
            put32(b + OFF_SENDER_LEN, (uint32_t)(sender_len + 1));
            break;
        case STR_NUL:
            b[OFF_SENDER_LEN + 4 + 2] = '\0';
            break;
        case NRCPT_HUGE:
            put32(b + nrcpt_off, 0xFFFFFFFFu);
            break;
        case NRCPT_MORE:
            put32(b + nrcpt_off, 2);
            break;
        case STATE:
            assert_int_equal(b[state_off], e->rcpt[0].state);
            b[state_off] = 9;
            break;
        }
        if (record_envelope_decode(b, len, &d))
            fail_msg("edit %d accepted", edit);
        free(b);
    }
    free(good);
    free_env(e);
}

/* ---- recipient state ---------------------------------------------------- */

static void test_rcpt_round_trip(void **state)
{
    (void)state;
    const char *st = "dsn=4.2.2 mailbox full";
    const struct record_rcpt cases[] = {
        {0, SPOOL_RCPT_DELIVERED, 1, 0, st, strlen(st)},
        {999, SPOOL_RCPT_DEFERRED, 7, -1, NULL, 0},
        {UINT32_MAX, SPOOL_RCPT_EXPIRED, UINT32_MAX, INT64_MAX, "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[128];
        long n = record_rcpt_encode(&cases[i], buf, sizeof buf);
        assert_true(n > 0 && (size_t)n <= sizeof buf);
        struct record_rcpt d;
        assert_true(record_rcpt_decode(buf, (size_t)n, &d));
        assert_int_equal(d.idx, cases[i].idx);
        assert_int_equal(d.state, cases[i].state);
        assert_int_equal(d.attempts, cases[i].attempts);
        assert_true(d.next_attempt == cases[i].next_attempt);
        assert_int_equal(d.status_len, cases[i].status_len);
        if (cases[i].status)
            assert_memory_equal(d.status, cases[i].status, d.status_len);
        else
            assert_null(d.status);
        for (long k = 0; k < n; k++)
            assert_false(record_rcpt_decode(buf, (size_t)k, &d));
        /* a record that carries it parses */
        uint8_t *rec = make_record(RECORD_RCPT, 1, 0, buf, (uint32_t)n);
        struct record_header h;
        const uint8_t *p;
        assert_int_equal(record_parse(rec, RECORD_HEADER_SIZE + (size_t)n, &h, &p), RECORD_OK);
        free(rec);
    }
}

static void test_rcpt_malformed(void **state)
{
    (void)state;
    struct record_rcpt r = {3, SPOOL_RCPT_BOUNCED, 2, 100, "x", 1};
    uint8_t buf[64];
    long n = record_rcpt_encode(&r, buf, sizeof buf);
    struct record_rcpt d;
    buf[4] = 5; /* state */
    assert_false(record_rcpt_decode(buf, (size_t)n, &d));
    buf[4] = SPOOL_RCPT_BOUNCED;
    buf[(size_t)n - 1] = '\0'; /* NUL in status */
    assert_false(record_rcpt_decode(buf, (size_t)n, &d));
    buf[(size_t)n - 1] = 'x';
    assert_true(record_rcpt_decode(buf, (size_t)n, &d));
    /* status with an embedded NUL cannot be encoded */
    struct record_rcpt bad = {0, 0, 0, 0, "a\0b", 3};
    assert_int_equal(record_rcpt_encode(&bad, buf, sizeof buf), -1);
}

/* HOLD payloads: one octet, 0 or 1; the held flag travels in the envelope's
   flags octet (bit 1), and other flag bits are refused. */
static void test_hold(void **state)
{
    (void)state;
    const struct {
        const char *p;
        size_t len;
        bool ok, held;
    } cases[] = {
        {"\x01", 1, true, true},   {"\x00", 1, true, false}, {"\x02", 1, false, false},
        {"\xff", 1, false, false}, {"", 0, false, false},    {"\x01\x00", 2, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool held = !cases[i].held;
        bool ok = record_hold_decode((const uint8_t *)cases[i].p, cases[i].len, &held);
        if (ok != cases[i].ok)
            fail_msg("case %zu: decode gave %d", i, ok);
        if (ok)
            assert_int_equal(held, cases[i].held);
    }
    struct spool_envelope *e = make_env(2, false);
    for (int h = 0; h < 2; h++) {
        e->held = h == 1;
        size_t len;
        uint8_t *buf = encode(e, &len);
        assert_int_equal(buf[3], (e->smtputf8 ? 1 : 0) | (h ? 2 : 0));
        struct spool_envelope d;
        assert_true(record_envelope_decode(buf, len, &d));
        assert_int_equal(d.held, e->held);
        assert_int_equal(d.smtputf8, e->smtputf8);
        record_envelope_free(&d);
        buf[3] |= 4; /* an unknown flag */
        assert_false(record_envelope_decode(buf, len, &d));
        free(buf);
    }
    free_env(e);
}

static void test_payload_max(void **state)
{
    (void)state;
    assert_int_equal(record_payload_max(RECORD_CHUNK), RECORD_CHUNK_MAX);
    assert_int_equal(record_payload_max(RECORD_ENVELOPE), RECORD_ENVELOPE_MAX);
    assert_true(record_payload_max(RECORD_RCPT) > RECORD_STRING_MAX);
    assert_int_equal(record_payload_max(RECORD_REMOVE), 0);
    assert_int_equal(record_payload_max(RECORD_SYNCED), 0);
    {
        /* a sync mark names a segment (numbered from 1) and carries nothing */
        uint8_t none[4] = {0};
        struct record_header h;
        const uint8_t *p;
        uint8_t *b = make_record(RECORD_SYNCED, 0, 10, none, 0);
        assert_int_equal(record_parse(b, RECORD_HEADER_SIZE, &h, &p), RECORD_BAD_HEADER);
        free(b);
        b = make_record(RECORD_SYNCED, 2, 10, none, 4);
        assert_int_equal(record_parse(b, RECORD_HEADER_SIZE + 4, &h, &p), RECORD_BAD_HEADER);
        free(b);
    }
    assert_int_equal(record_payload_max(RECORD_HOLD), 1);
    assert_int_equal(record_payload_max(0), 0);
    assert_int_equal(record_payload_max(200), 0);
}

/* CRC-32C check values (RFC 3720 appendix B.4 and the "123456789" check
   value), and the fast path against the portable one at every length and
   alignment, chained. */
static void test_crc32c_vectors(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_portable(0, "123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(crc32c(0, inc, 32), 0x46DD794Eu);
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; off + len <= sizeof buf; len += 7) {
            uint32_t a = crc32c(0x1234567u, buf + off, len);
            uint32_t b = crc32c_portable(0x1234567u, buf + off, len);
            assert_int_equal(a, b);
            /* chaining: two halves give the same as the whole */
            uint32_t h = crc32c(crc32c(0, buf + off, len / 2), buf + off + len / 2, len - len / 2);
            assert_int_equal(h, crc32c(0, buf + off, len));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_end_marker),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_every_truncation_short),
        cmocka_unit_test(test_envelope_round_trip),
        cmocka_unit_test(test_envelope_version1),
        cmocka_unit_test(test_envelope_all_null_strings),
        cmocka_unit_test(test_envelope_not_encodable),
        cmocka_unit_test(test_envelope_malformed),
        cmocka_unit_test(test_rcpt_round_trip),
        cmocka_unit_test(test_rcpt_malformed),
        cmocka_unit_test(test_payload_max),
        cmocka_unit_test(test_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
