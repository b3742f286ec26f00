/*
 * record - encoding and validation of spool records and of the envelope and
 * recipient-state payloads; see record.h for the layout. Pure: no I/O.
 *
 * Envelope payload (version 2), in order:
 *   u8 version, u8 ret, u8 body, u8 flags (bit 0: SMTPUTF8; bit 1: held by the
 *   operator; others 0),
 *   i64 arrival, u64 size,
 *   str sender, str envid, str helo, str client_addr, str listener, str auth_user,
 *   str prefix (version 2 only; version 1 envelopes decode with prefix NULL),
 *   u32 nrcpt, then per recipient:
 *   str addr, str orcpt, str dsn_orig, u32 notify, u8 state, u32 attempts,
 *   i64 next_attempt, str status.
 * RCPT payload: u32 idx, u8 state, u32 attempts, i64 next_attempt, str status.
 * HOLD payload: u8, 1 (held) or 0 (released).
 * A str is a u32 length (0xFFFFFFFF for NULL) and that many octets, no NUL.
 */
#include "spool/record.h"

#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/util.h"

#define STR_NULL 0xFFFFFFFFu
#define ENV_FLAG_SMTPUTF8 0x1u /* envelope flags: SMTPUTF8 was given */
#define ENV_FLAG_HELD 0x2u     /* envelope flags: held by the operator */
/* The fewest octets one encoded recipient can take: four strings, the
   integers. Bounds the recipient count before anything is allocated. */
#define RCPT_MIN_SIZE (4 * 4 + 4 + 1 + 4 + 8)
#define RCPT_PAYLOAD_MAX (4 + 1 + 4 + 8 + 4 + RECORD_STRING_MAX)

/* ---- little-endian helpers ---------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- record header ------------------------------------------------------ */

size_t record_payload_max(uint8_t type)
{
    switch (type) {
    case RECORD_CHUNK:
        return RECORD_CHUNK_MAX;
    case RECORD_ENVELOPE:
        return RECORD_ENVELOPE_MAX;
    case RECORD_RCPT:
        return RCPT_PAYLOAD_MAX;
    case RECORD_HOLD:
        return 1;
    default:
        return 0;
    }
}

const char *record_result_name(enum record_result r)
{
    switch (r) {
    case RECORD_OK:
        return "ok";
    case RECORD_END:
        return "end";
    case RECORD_SHORT:
        return "short";
    case RECORD_BAD_HEADER:
        return "bad_header";
    case RECORD_BAD_CRC:
        return "bad_crc";
    }
    return "unknown";
}

void record_header_encode(uint8_t out[RECORD_HEADER_SIZE], const struct record_header *h,
                          const void *payload)
{
    out[0] = (uint8_t)RECORD_MAGIC;
    out[1] = h->type;
    put_u16(out + 2, 0);
    put_u32(out + 4, h->len);
    put_u64(out + 8, h->id);
    put_u64(out + 16, h->offset);
    uint32_t crc = crc32c(0, out, 24);
    crc = crc32c(crc, payload, h->len);
    put_u32(out + 24, crc);
}

enum record_result record_header_decode(const uint8_t *buf, size_t avail, struct record_header *h)
{
    if (avail < 1)
        return RECORD_SHORT;
    if (buf[0] == 0)
        return RECORD_END;
    if (avail < RECORD_HEADER_SIZE)
        return RECORD_SHORT;
    if (buf[0] != RECORD_MAGIC || get_u16(buf + 2) != 0)
        return RECORD_BAD_HEADER;
    h->type = buf[1];
    h->len = get_u32(buf + 4);
    h->id = get_u64(buf + 8);
    h->offset = get_u64(buf + 16);
    h->crc = get_u32(buf + 24);
    switch (h->type) {
    case RECORD_CHUNK:
        if (h->len == 0 || h->len > RECORD_CHUNK_MAX || h->offset > UINT64_MAX - h->len)
            return RECORD_BAD_HEADER;
        break;
    case RECORD_ENVELOPE:
    case RECORD_RCPT:
        if (h->len > record_payload_max(h->type) || h->offset != 0)
            return RECORD_BAD_HEADER;
        break;
    case RECORD_REMOVE:
        if (h->len != 0 || h->offset != 0)
            return RECORD_BAD_HEADER;
        break;
    case RECORD_SYNCED:
        if (h->len != 0 || h->id == 0)
            return RECORD_BAD_HEADER;
        break;
    case RECORD_HOLD:
        if (h->len != 1 || h->offset != 0)
            return RECORD_BAD_HEADER;
        break;
    default:
        return RECORD_BAD_HEADER;
    }
    return RECORD_OK;
}

bool record_crc_ok(const uint8_t *hdr, const struct record_header *h, const void *payload)
{
    uint32_t crc = crc32c(0, hdr, 24);
    crc = crc32c(crc, payload, h->len);
    return crc == h->crc;
}

enum record_result record_parse(const uint8_t *buf, size_t avail, struct record_header *h,
                                const uint8_t **payload)
{
    enum record_result r = record_header_decode(buf, avail, h);
    if (r != RECORD_OK)
        return r;
    if (avail - RECORD_HEADER_SIZE < h->len)
        return RECORD_SHORT;
    if (!record_crc_ok(buf, h, buf + RECORD_HEADER_SIZE))
        return RECORD_BAD_CRC;
    *payload = buf + RECORD_HEADER_SIZE;
    return RECORD_OK;
}

/* ---- payload writer and reader ------------------------------------------ */

/* Writes while there is room, always counts: len is the size needed. */
struct writer {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool bad; /* not encodable */
};

static void w_bytes(struct writer *w, const void *data, size_t n)
{
    if (n > RECORD_ENVELOPE_MAX || w->len > RECORD_ENVELOPE_MAX) {
        w->bad = true;
        return;
    }
    if (w->len + n <= w->cap && n > 0)
        memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void w_u8(struct writer *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void w_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    w_bytes(w, b, 4);
}

static void w_u64(struct writer *w, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    w_bytes(w, b, 8);
}

static void w_str(struct writer *w, const char *s)
{
    if (!s) {
        w_u32(w, STR_NULL);
        return;
    }
    size_t n = strlen(s);
    if (n > RECORD_STRING_MAX) {
        w->bad = true;
        return;
    }
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

struct reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool bad;
};

static const uint8_t *r_take(struct reader *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

static uint8_t r_u8(struct reader *r)
{
    const uint8_t *q = r_take(r, 1);
    return q ? q[0] : 0;
}

static uint32_t r_u32(struct reader *r)
{
    const uint8_t *q = r_take(r, 4);
    return q ? get_u32(q) : 0;
}

static uint64_t r_u64(struct reader *r)
{
    const uint8_t *q = r_take(r, 8);
    return q ? get_u64(q) : 0;
}

/* A string in place: *s NULL for the NULL marker. Rejects embedded NUL. */
static void r_str_ref(struct reader *r, const char **s, size_t *n)
{
    *s = NULL;
    *n = 0;
    uint32_t len = r_u32(r);
    if (r->bad || len == STR_NULL)
        return;
    if (len > RECORD_STRING_MAX) {
        r->bad = true;
        return;
    }
    const uint8_t *q = r_take(r, len);
    if (!q)
        return;
    if (len > 0 && memchr(q, 0, len)) {
        r->bad = true;
        return;
    }
    *s = (const char *)q;
    *n = len;
}

static char *r_str(struct reader *r)
{
    const char *s;
    size_t n;
    r_str_ref(r, &s, &n);
    if (r->bad || !s)
        return NULL;
    return xstrndup(s, n);
}

/* ---- envelope ------------------------------------------------------------ */

long record_envelope_encode(const struct spool_envelope *env, uint8_t *out, size_t cap)
{
    struct writer w = {.p = out, .cap = out ? cap : 0};
    if (env->nrcpt > RECORD_RCPT_COUNT_MAX || (env->nrcpt > 0 && !env->rcpt))
        return -1;
    w_u8(&w, RECORD_ENVELOPE_VERSION);
    w_u8(&w, env->ret);
    w_u8(&w, env->body);
    w_u8(&w, (uint8_t)((env->smtputf8 ? ENV_FLAG_SMTPUTF8 : 0) | (env->held ? ENV_FLAG_HELD : 0)));
    w_u64(&w, (uint64_t)env->arrival);
    w_u64(&w, env->size);
    w_str(&w, env->sender);
    w_str(&w, env->envid);
    w_str(&w, env->helo);
    w_str(&w, env->client_addr);
    w_str(&w, env->listener);
    w_str(&w, env->auth_user);
    w_str(&w, env->prefix);
    w_u32(&w, (uint32_t)env->nrcpt);
    for (size_t i = 0; i < env->nrcpt && !w.bad; i++) {
        const struct spool_rcpt *rc = &env->rcpt[i];
        if (rc->state > SPOOL_RCPT_EXPIRED)
            return -1;
        w_str(&w, rc->addr);
        w_str(&w, rc->orcpt);
        w_str(&w, rc->dsn_orig);
        w_u32(&w, (uint32_t)rc->notify);
        w_u8(&w, rc->state);
        w_u32(&w, rc->attempts);
        w_u64(&w, (uint64_t)rc->next_attempt);
        w_str(&w, rc->status);
    }
    if (w.bad || w.len > RECORD_ENVELOPE_MAX)
        return -1;
    return (long)w.len;
}

static void rcpt_free(struct spool_rcpt *rc)
{
    free(rc->addr);
    free(rc->orcpt);
    free(rc->dsn_orig);
    free(rc->status);
}

void record_envelope_free(struct spool_envelope *env)
{
    if (!env)
        return;
    free(env->sender);
    free(env->envid);
    free(env->helo);
    free(env->client_addr);
    free(env->listener);
    free(env->auth_user);
    free(env->prefix);
    for (size_t i = 0; i < env->nrcpt; i++)
        rcpt_free(&env->rcpt[i]);
    free(env->rcpt);
    memset(env, 0, sizeof *env);
}

bool record_envelope_decode(const uint8_t *p, size_t len, struct spool_envelope *env)
{
    struct reader r = {.p = p, .len = len};
    memset(env, 0, sizeof *env);
    if (len > RECORD_ENVELOPE_MAX)
        return false;
    uint8_t version = r_u8(&r);
    env->ret = r_u8(&r);
    env->body = r_u8(&r);
    uint8_t flags = r_u8(&r);
    if (r.bad || version < 1 || version > RECORD_ENVELOPE_VERSION ||
        (flags & ~(ENV_FLAG_SMTPUTF8 | ENV_FLAG_HELD)) != 0)
        return false;
    env->smtputf8 = (flags & ENV_FLAG_SMTPUTF8) != 0;
    env->held = (flags & ENV_FLAG_HELD) != 0;
    env->arrival = (int64_t)r_u64(&r);
    env->size = r_u64(&r);
    env->sender = r_str(&r);
    env->envid = r_str(&r);
    env->helo = r_str(&r);
    env->client_addr = r_str(&r);
    env->listener = r_str(&r);
    env->auth_user = r_str(&r);
    if (version >= 2)
        env->prefix = r_str(&r);
    uint32_t n = r_u32(&r);
    if (r.bad || n > RECORD_RCPT_COUNT_MAX || n > (r.len - r.pos) / RCPT_MIN_SIZE)
        goto fail;
    if (n > 0)
        env->rcpt = xcalloc(n, sizeof *env->rcpt);
    for (uint32_t i = 0; i < n; i++) {
        struct spool_rcpt *rc = &env->rcpt[i];
        env->nrcpt = i + 1; /* so that a failure frees what was decoded */
        rc->addr = r_str(&r);
        rc->orcpt = r_str(&r);
        rc->dsn_orig = r_str(&r);
        rc->notify = r_u32(&r);
        rc->state = r_u8(&r);
        rc->attempts = r_u32(&r);
        rc->next_attempt = (int64_t)r_u64(&r);
        rc->status = r_str(&r);
        if (r.bad || rc->state > SPOOL_RCPT_EXPIRED)
            goto fail;
    }
    env->nrcpt = n;
    if (r.bad || r.pos != r.len)
        goto fail;
    return true;
fail:
    record_envelope_free(env);
    return false;
}

/* ---- recipient state ------------------------------------------------------ */

long record_rcpt_encode(const struct record_rcpt *rc, uint8_t *out, size_t cap)
{
    struct writer w = {.p = out, .cap = out ? cap : 0};
    if (rc->status && (rc->status_len > RECORD_STRING_MAX || memchr(rc->status, 0, rc->status_len)))
        return -1;
    w_u32(&w, rc->idx);
    w_u8(&w, rc->state);
    w_u32(&w, rc->attempts);
    w_u64(&w, (uint64_t)rc->next_attempt);
    if (rc->status) {
        w_u32(&w, (uint32_t)rc->status_len);
        w_bytes(&w, rc->status, rc->status_len);
    } else {
        w_u32(&w, STR_NULL);
    }
    if (w.bad)
        return -1;
    return (long)w.len;
}

bool record_rcpt_decode(const uint8_t *p, size_t len, struct record_rcpt *rc)
{
    struct reader r = {.p = p, .len = len};
    memset(rc, 0, sizeof *rc);
    rc->idx = r_u32(&r);
    rc->state = r_u8(&r);
    rc->attempts = r_u32(&r);
    rc->next_attempt = (int64_t)r_u64(&r);
    r_str_ref(&r, &rc->status, &rc->status_len);
    if (r.bad || r.pos != r.len || rc->state > SPOOL_RCPT_EXPIRED) {
        memset(rc, 0, sizeof *rc);
        return false;
    }
    return true;
}

/* ---- hold ------------------------------------------------------------------ */

bool record_hold_decode(const uint8_t *p, size_t len, bool *held)
{
    if (len != 1 || p[0] > 1)
        return false;
    *held = p[0] == 1;
    return true;
}
