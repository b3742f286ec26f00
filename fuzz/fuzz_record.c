/*
 * fuzz_record - libFuzzer target for the spool record format (src/spool/record.c).
 *
 * Every input is used three ways: as a segment's contents (records parsed in
 * a row until one does not validate, as recovery does, decoding the payload
 * of each valid ENVELOPE, RCPT and HOLD record), as one envelope payload, and
 * as one recipient-state payload. Whatever decodes must encode back to exactly the
 * same octets (the encoding is canonical), and decode again.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/record.h"

static void check_envelope(const uint8_t *p, size_t len)
{
    struct spool_envelope env;
    if (!record_envelope_decode(p, len, &env))
        return;
    /* the current version re-encodes to the same octets; an older one (no
       prefix string) re-encodes as the current one, 4 octets longer */
    size_t want = p[0] == RECORD_ENVELOPE_VERSION ? len : len + 4;
    long n = record_envelope_encode(&env, NULL, 0);
    if (n < 0 || (size_t)n != want)
        abort();
    uint8_t *out = malloc(want);
    if (record_envelope_encode(&env, out, want) != n || (want == len && memcmp(out, p, len) != 0))
        abort();
    struct spool_envelope again;
    if (!record_envelope_decode(out, want, &again))
        abort();
    if ((again.prefix == NULL) != (env.prefix == NULL) || again.nrcpt != env.nrcpt)
        abort();
    record_envelope_free(&again);
    record_envelope_free(&env);
    free(out);
}

static void check_rcpt(const uint8_t *p, size_t len)
{
    struct record_rcpt r;
    if (!record_rcpt_decode(p, len, &r))
        return;
    uint8_t out[128 + RECORD_STRING_MAX];
    long n = record_rcpt_encode(&r, out, sizeof out);
    if (n < 0 || (size_t)n != len || memcmp(out, p, len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (;;) {
        struct record_header h;
        const uint8_t *payload;
        enum record_result r = record_parse(data + off, size - off, &h, &payload);
        if (r != RECORD_OK)
            break;
        if (h.len > record_payload_max(h.type) && h.type != RECORD_REMOVE)
            abort();
        if (h.type == RECORD_ENVELOPE)
            check_envelope(payload, h.len);
        else if (h.type == RECORD_RCPT)
            check_rcpt(payload, h.len);
        else if (h.type == RECORD_HOLD) {
            bool held;
            if (h.len != 1 || record_hold_decode(payload, h.len, &held) != (payload[0] <= 1))
                abort();
        }
        off += RECORD_HEADER_SIZE + h.len;
        if (off > size)
            abort();
    }
    check_envelope(data, size);
    check_rcpt(data, size);
    return 0;
}
