/*
 * fuzz_control - libFuzzer target for the control protocol's pure code
 * (src/control/proto.c).
 *
 * Input: a stream of request lines, cut as the server cuts them
 * (proto_frame with PROTO_LINE_MAX, then again with a small maximum of
 * 64 octets, as a second framing). Each line goes through
 * proto_request_parse; a request that parses has its args read as a
 * selector, which is matched against three fixed envelopes, and its
 * string arguments read; every "data" argument is base64-decoded. Each
 * line is also read as a duration, a queue id and base64.
 *
 * Invariants (abort() when one breaks): framing consumes what it reports
 * and never more than it was given; a parsed request re-encodes to JSON that
 * parses to the same command; what base64 decodes encodes back to the same
 * text (the decoder accepts only the canonical form); a queue id formats
 * back to itself; text that is not UTF-8 comes out as valid JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/proto.h"

static struct spool_rcpt rcpts[3] = {
    {.addr = "bob@remote.test", .state = SPOOL_RCPT_DEFERRED, .status = "dsn=4.4.1 refused"},
    {.addr = "demo@example.test", .state = SPOOL_RCPT_DELIVERED, .status = "dsn=2.0.0 ok"},
    {.addr = "x@Other.Test", .state = SPOOL_RCPT_PENDING},
};
static struct spool_envelope envs[3] = {
    {.sender = "alice@example.org", .arrival = 1700000000, .nrcpt = 3, .rcpt = rcpts},
    {.sender = "", .arrival = 1700005000, .held = true, .nrcpt = 1, .rcpt = rcpts},
    {.sender = "Carol@Example.ORG", .arrival = 1, .nrcpt = 2, .rcpt = rcpts + 1},
};

static void check_line(const char *line, size_t len)
{
    struct proto_request req;
    char err[256];
    if (proto_request_parse(line, len, &req, err, sizeof err) == 0) {
        json_t *again = json_pack("{s:s,s:O}", "cmd", req.cmd, "args", req.args);
        size_t n;
        char *text = proto_dump(again, &n);
        struct proto_request req2;
        if (proto_request_parse(text, n - 1, &req2, err, sizeof err) != 0 ||
            strcmp(req.cmd, req2.cmd) != 0)
            abort();
        proto_request_free(&req2);
        free(text);
        struct proto_selector sel;
        if (proto_selector_parse(req.args, &sel, err, sizeof err) == 0) {
            for (int i = 0; i < 3; i++)
                proto_selector_match(&sel, (spool_id)(0xA1 + i), &envs[i], i == 2, 1700010000);
            (void)proto_selector_empty(&sel);
            proto_selector_free(&sel);
        }
        bool bad = false;
        const char *s = proto_arg_str(req.args, "data", PROTO_LINE_MAX, &bad, err, sizeof err);
        if (s) {
            uint8_t *out = malloc(PROTO_DATA_MAX);
            long k = proto_base64_decode(s, strlen(s), out, PROTO_DATA_MAX);
            if (k >= 0) {
                char *enc = malloc(4 * ((size_t)k + 2) / 3 + 8);
                size_t e = proto_base64_encode(out, (size_t)k, enc);
                if (e != strlen(s) || memcmp(enc, s, e) != 0)
                    abort();
                free(enc);
            }
            free(out);
        }
        static const char *const allowed[] = {"all", "ids", "sender", NULL};
        (void)proto_args_allowed(req.args, allowed, err, sizeof err);
        proto_request_free(&req);
    }
    /* the same octets as other things the protocol reads */
    char *z = malloc(len + 1);
    memcpy(z, line, len);
    z[len] = '\0';
    int64_t d;
    (void)proto_duration_parse(z, &d);
    spool_id id;
    if (proto_qid_parse(z, &id)) {
        char out[17];
        proto_qid_format(id, out);
        spool_id back;
        if (!proto_qid_parse(out, &back) || back != id)
            abort();
    }
    uint8_t b[256];
    (void)proto_base64_decode(line, len, b, sizeof b);
    json_t *t = proto_text(line, len);
    size_t n;
    char *dumped = proto_dump(t, &n);
    json_error_t je;
    json_t *v = json_loadb(dumped, n, JSON_DECODE_ANY, &je);
    if (!v || !json_is_string(v))
        abort();
    json_decref(v);
    free(dumped);
    free(z);
}

static void frames(const uint8_t *data, size_t size, size_t max)
{
    size_t off = 0;
    while (off < size) {
        size_t linelen = 0, consumed = 0;
        enum proto_frame f = proto_frame(data + off, size - off, max, &linelen, &consumed);
        if (f == PROTO_FRAME_TOO_LONG || f == PROTO_FRAME_MORE)
            break;
        if (consumed == 0 || consumed > size - off || linelen >= consumed || consumed > max)
            abort();
        if (max == PROTO_LINE_MAX)
            check_line((const char *)data + off, linelen);
        off += consumed;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        proto_init();
        ready = 1;
    }
    frames(data, size, PROTO_LINE_MAX);
    frames(data, size, 64);
    return 0;
}
