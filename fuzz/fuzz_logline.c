/*
 * fuzz_logline - libFuzzer target for the JSON form of log lines
 * (src/core/logline.c). The input is one log message (any octets, NUL
 * included, at most 16 KiB).
 * Invariants:
 *  - with LOGLINE_JSON_MAX room the conversion never fails, stays within the
 *    room, and NUL-terminates at the length it returns;
 *  - the output is one JSON object (RFC 8259), checked by the small
 *    validator below: members whose names and values are strings, valid
 *    escapes only, no raw control character, well-formed UTF-8, no \u
 *    escape of a surrogate, nothing after the closing brace;
 *  - the first members are "ts" and "level" with the values given; "trace",
 *    when present, is the third and equals the first "qid" member, and it is
 *    present whenever that member is not empty;
 *  - one octet less room gives 0 and an empty string.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/logline.h"
#include "core/util.h"

#define MSG_MAX (16 * 1024)

struct parser {
    const char *s; /* the JSON text */
    size_t len;
    size_t pos;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A JSON string at p->pos; its raw inside (escapes kept) is s[*start..*end). */
static void string(struct parser *p, size_t *start, size_t *end)
{
    if (p->pos >= p->len || p->s[p->pos] != '"')
        abort();
    p->pos++;
    *start = p->pos;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            *end = p->pos++;
            return;
        }
        if (c < 0x20)
            abort();
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                abort();
            char e = p->s[p->pos + 1];
            if (e == 'u') {
                if (p->pos + 6 > p->len)
                    abort();
                int v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(p->s[p->pos + 2 + (size_t)i]);
                    if (h < 0)
                        abort();
                    v = v * 16 + h;
                }
                if (v >= 0xd800 && v <= 0xdfff)
                    abort();
                p->pos += 6;
            } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
                p->pos += 2;
            } else {
                abort();
            }
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (l == 0)
                abort();
            p->pos += l;
            continue;
        }
        p->pos++;
    }
    abort(); /* no closing quote */
}

static bool raw_eq(const struct parser *p, size_t a, size_t b, const char *want)
{
    return b - a == strlen(want) && memcmp(p->s + a, want, b - a) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MSG_MAX)
        return 0;
    const char *msg = (const char *)data;
    size_t cap = LOGLINE_JSON_MAX(size, 24, 5);
    char *out = malloc(cap);
    if (!out)
        abort();
    size_t n = logline_json("2026-11-22T11:57:09.431Z", "debug", msg, size, out, cap);
    if (n == 0 || n >= cap || out[n] != '\0' || strlen(out) != n)
        abort();

    struct parser p = {out, n, 0};
    if (p.len == 0 || p.s[0] != '{')
        abort();
    p.pos = 1;
    size_t member = 0;
    size_t trace_a = 0, trace_b = 0, qid_a = 0, qid_b = 0;
    bool trace = false, qid = false;
    while (p.pos < p.len && p.s[p.pos] != '}') {
        if (member > 0) {
            if (p.s[p.pos] != ',')
                abort();
            p.pos++;
        }
        size_t na, nb, va, vb;
        string(&p, &na, &nb);
        if (p.pos >= p.len || p.s[p.pos] != ':')
            abort();
        p.pos++;
        string(&p, &va, &vb);
        if (member == 0 &&
            (!raw_eq(&p, na, nb, "ts") || !raw_eq(&p, va, vb, "2026-11-22T11:57:09.431Z")))
            abort();
        if (member == 1 && (!raw_eq(&p, na, nb, "level") || !raw_eq(&p, va, vb, "debug")))
            abort();
        if (raw_eq(&p, na, nb, "trace")) {
            if (member != 2)
                abort();
            trace = true;
            trace_a = va;
            trace_b = vb;
        }
        if (raw_eq(&p, na, nb, "qid") && !qid) {
            qid = true;
            qid_a = va;
            qid_b = vb;
        }
        member++;
    }
    if (member < 2 || p.pos + 1 != p.len || p.s[p.pos] != '}')
        abort();
    if (trace && (!qid || trace_b - trace_a != qid_b - qid_a ||
                  memcmp(out + trace_a, out + qid_a, qid_b - qid_a) != 0))
        abort();
    if (qid && qid_b > qid_a && !trace)
        abort();

    /* One octet too few: refused. */
    size_t m = logline_json("2026-11-22T11:57:09.431Z", "debug", msg, size, out, n);
    if (m != 0 || out[0] != '\0')
        abort();
    free(out);
    return 0;
}
