/*
 * record - the spool's on-disk record format: pure encoding and validation,
 * no I/O, no logging. See docs/spool.md.
 *
 * A record is a fixed 28-octet header followed by its payload; every integer
 * is little-endian and encoded byte by byte:
 *
 *   0  u8  magic (RECORD_MAGIC; 0 means "end of data": preallocated space)
 *   1  u8  type (enum record_type)
 *   2  u16 reserved, 0
 *   4  u32 payload length (bounded per type, record_payload_max())
 *   8  u64 message id
 *  16  u64 CHUNK: octet offset of this chunk's data in the message; else 0
 *  24  u32 CRC-32C over octets 0..23 and the payload
 *
 * Payloads: CHUNK holds message data; ENVELOPE an encoded struct
 * spool_envelope (record_envelope_encode) and commits the message; RCPT one
 * recipient's new state (record_rcpt_encode); REMOVE is empty; HOLD one octet,
 * 1 when the operator holds the message and 0 when he releases it. SYNCED
 * (empty) uses the id and offset fields for a journal position, segment
 * number and offset: the journal was durable up to there when the mark was
 * written, so recovery can tell a torn write nobody was told about from lost
 * data that was synced.
 *
 * Decoders accept any bytes: every length and count is checked against the
 * bytes present and against fixed limits before anything is allocated.
 * record_envelope_decode() allocates the strings and the recipient array of
 * the envelope it fills (xmalloc); the caller frees them with
 * record_envelope_free(). Nothing else here allocates.
 */
#ifndef TERN_SPOOL_RECORD_H
#define TERN_SPOOL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/spool.h"

#define RECORD_MAGIC 0xA5u
#define RECORD_HEADER_SIZE 28
#define RECORD_CHUNK_MAX (64u * 1024u)            /* message data per CHUNK record */
#define RECORD_ENVELOPE_MAX (16u * 1024u * 1024u) /* encoded envelope */
#define RECORD_STRING_MAX 65535u                  /* any string in a payload */
#define RECORD_RCPT_COUNT_MAX 1000000u            /* recipients in one envelope */
#define RECORD_ENVELOPE_VERSION 2                 /* written; 1 is still read */

enum record_type {
    RECORD_CHUNK = 1,    /* message data; payload 1..RECORD_CHUNK_MAX octets */
    RECORD_ENVELOPE = 2, /* commit: the envelope with every recipient's state */
    RECORD_RCPT = 3,     /* one recipient's new state */
    RECORD_REMOVE = 4,   /* the message is finished; payload empty */
    RECORD_HOLD = 5,     /* held (payload 1) or released (0) by the operator */
    RECORD_SYNCED = 6,   /* a sync mark: everything before segment `id`, offset
                            `offset` was on disk when it was written; payload empty */
};

/* Result of parsing a record header or a whole record. */
enum record_result {
    RECORD_OK = 0,          /* a valid record */
    RECORD_END = 1,         /* magic 0: preallocated space, the clean end of a segment */
    RECORD_SHORT = -1,      /* fewer octets than the header or its payload needs */
    RECORD_BAD_HEADER = -2, /* wrong magic, unknown type, reserved bits, bad length or offset */
    RECORD_BAD_CRC = -3,    /* checksum mismatch */
};

struct record_header {
    uint8_t type;    /* enum record_type */
    uint32_t len;    /* payload octets */
    uint64_t id;     /* message (queue) id */
    uint64_t offset; /* CHUNK: data offset within the message; otherwise 0 */
    uint32_t crc;    /* as stored (decode) */
};

/* One recipient's state change: the payload of a RCPT record. */
struct record_rcpt {
    uint32_t idx;         /* recipient index in the envelope */
    uint8_t state;        /* enum spool_rcpt_state */
    uint32_t attempts;    /* delivery attempts so far */
    int64_t next_attempt; /* unix seconds; 0 = as soon as possible */
    const char *status;   /* not NUL-terminated after decode; NULL if none */
    size_t status_len;    /* octets of status */
};

/* Largest payload a record of this type may carry; 0 for an unknown type
   (and for REMOVE, whose payload is empty); 1 for HOLD. */
size_t record_payload_max(uint8_t type);

/* A short name for a result, for log lines ("ok", "end", "short", ...). */
const char *record_result_name(enum record_result r);

/*
 * Encode the header of a record with this payload into out, computing the CRC.
 * h->crc is ignored. The caller guarantees h->len == payload length and that
 * it is within record_payload_max(h->type).
 */
void record_header_encode(uint8_t out[RECORD_HEADER_SIZE], const struct record_header *h,
                          const void *payload);

/* Decode and check a header (not the CRC). Returns RECORD_OK, RECORD_END,
   RECORD_SHORT (avail < RECORD_HEADER_SIZE) or RECORD_BAD_HEADER. */
enum record_result record_header_decode(const uint8_t *buf, size_t avail, struct record_header *h);

/* Check the CRC of a decoded header (hdr: its RECORD_HEADER_SIZE octets)
   against the payload of h->len octets. */
bool record_crc_ok(const uint8_t *hdr, const struct record_header *h, const void *payload);

/*
 * Parse one whole record at buf. On RECORD_OK, *h is filled and *payload
 * points at its h->len payload octets in buf; the record occupies
 * RECORD_HEADER_SIZE + h->len octets. Other results as above.
 */
enum record_result record_parse(const uint8_t *buf, size_t avail, struct record_header *h,
                                const uint8_t **payload);

/*
 * Encode an envelope. Returns the encoded size (which may exceed cap: then out
 * holds nothing useful and the caller retries with a buffer that large), or -1
 * when the envelope cannot be recorded (a string over RECORD_STRING_MAX, too
 * many recipients, a recipient state out of range, or more than
 * RECORD_ENVELOPE_MAX octets in all). out may be NULL when cap is 0.
 */
long record_envelope_encode(const struct spool_envelope *env, uint8_t *out, size_t cap);

/*
 * Decode an envelope payload into *env (every pointer owned by env afterwards).
 * Returns false, with *env zeroed and nothing allocated, when the bytes are
 * not exactly one valid encoded envelope.
 */
bool record_envelope_decode(const uint8_t *p, size_t len, struct spool_envelope *env);

/* Free what record_envelope_decode() allocated and zero *env. NULL does nothing. */
void record_envelope_free(struct spool_envelope *env);

/* Encode a RCPT payload (r->status may be NULL). Returns the size, which may
   exceed cap as above, or -1 if status is over RECORD_STRING_MAX. */
long record_rcpt_encode(const struct record_rcpt *r, uint8_t *out, size_t cap);

/* Decode a RCPT payload; r->status points into p. Returns false if invalid. */
bool record_rcpt_decode(const uint8_t *p, size_t len, struct record_rcpt *r);

/* Decode a HOLD payload: exactly one octet, 0 or 1. Returns false if invalid. */
bool record_hold_decode(const uint8_t *p, size_t len, bool *held);

#endif
