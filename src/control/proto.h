/*
 * proto - the control socket's protocol, pure: framing, request parsing and
 * validation, queue selectors, and the JSON shapes of messages. No I/O, no
 * logging; what it allocates it returns, with a _free to match. See
 * docs/control.md for the protocol an operator's tools speak.
 *
 * Framing: one request per line, a JSON object {"cmd":"NAME","args":{...}}
 * ("args" may be left out), and one response per line, {"ok":true,...} or
 * {"ok":false,"error":"text"} (submission errors add "code" and "enh", the
 * SMTP reply code and enhanced status code, RFC 3463). A line is at most
 * PROTO_LINE_MAX octets with its LF; a CR before the LF is ignored. The
 * JSON must be UTF-8 (RFC 8259 §8.1) without NUL escapes, hold no duplicate
 * member names and nest at most PROTO_DEPTH_MAX deep; anything else is
 * refused before a command sees it. Text from the queue that is not UTF-8
 * (a remote server's reply, an 8-bit header) is sent with each invalid
 * octet replaced by U+FFFD.
 *
 * JSON is parsed and written with libjansson (Debian's libjansson-dev): it
 * checks UTF-8 and escapes, refuses duplicate names on request, seeds its
 * hash tables against collision floods, and writes compact output; see
 * docs/control.md for why it was chosen.
 */
#ifndef TERN_CONTROL_PROTO_H
#define TERN_CONTROL_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/spool.h"

#define PROTO_LINE_MAX 65536    /* octets of a request or response line, LF included */
#define PROTO_DEPTH_MAX 8       /* nesting of arrays and objects in a request */
#define PROTO_CMD_MAX 31        /* octets of a command name */
#define PROTO_IDS_MAX 10000     /* queue ids named in one request */
#define PROTO_PATTERN_MAX 512   /* octets of a sender, recipient or domain pattern */
#define PROTO_DATA_MAX 32768    /* message octets in one submit.data (base64: 43,692) */
#define PROTO_LIST_DEFAULT 1000 /* messages in one queue.list answer unless "limit" says */
#define PROTO_LIST_MAX 10000    /* most messages in one queue.list answer */

/* Make jansson allocate with xmalloc (panic on exhaustion, as all of Tern
   does), once per process before any other call here. */
void proto_init(void);

/* ---- framing ----------------------------------------------------------- */

enum proto_frame {
    PROTO_FRAME_LINE = 0,      /* a complete line */
    PROTO_FRAME_MORE = 1,      /* no LF yet, and fewer than max octets: read more */
    PROTO_FRAME_TOO_LONG = -1, /* max octets without an LF: the peer breaks the protocol */
};

/*
 * Find the first line in buf[0..len): on PROTO_FRAME_LINE, *linelen is its
 * length without the LF (and without a CR just before it) and *consumed
 * the octets to drop, LF included. max is the longest line, LF included.
 */
enum proto_frame proto_frame(const uint8_t *buf, size_t len, size_t max, size_t *linelen,
                             size_t *consumed);

/* ---- requests ---------------------------------------------------------- */

struct proto_request {
    char cmd[PROTO_CMD_MAX + 1]; /* "queue.list": lower-case letters, digits, '.', '_' */
    json_t *args;                /* an object (empty when the request had none); owned */
};

/*
 * Parse one request line (without its LF). Returns 0 with *req filled, or -1
 * with a message for the peer in err: not UTF-8 JSON, trailing octets, too
 * deep, duplicate names, not an object, members other than cmd and args, a
 * command name that is not a string of the allowed characters, args not an
 * object. On -1 nothing is left allocated.
 */
int proto_request_parse(const char *line, size_t len, struct proto_request *req, char *err,
                        size_t errlen);
/* Release what proto_request_parse allocated. NULL does nothing. */
void proto_request_free(struct proto_request *req);

/*
 * Check that args holds no member outside allowed (a NULL-terminated list).
 * Returns 0, or -1 with "unknown argument \"x\"" in err.
 */
int proto_args_allowed(const json_t *args, const char *const *allowed, char *err, size_t errlen);

/*
 * A string argument of at most max octets without control characters, or
 * NULL when absent. *bad is set (and err filled) when the member is there but
 * is not such a string. The pointer is valid while args lives.
 */
const char *proto_arg_str(const json_t *args, const char *key, size_t max, bool *bad, char *err,
                          size_t errlen);

/* ---- queue ids ---------------------------------------------------------- */

/* "0000018F3A2B4C5D" (1 to 16 hex digits, any case) -> id; false otherwise. */
bool proto_qid_parse(const char *s, spool_id *id);
/* The 16 upper-case hex digits of id and a NUL. */
void proto_qid_format(spool_id id, char out[17]);

/* ---- selectors ---------------------------------------------------------- */

/* What the queue commands act on (docs/control.md, "Selectors"). */
enum proto_status {
    PROTO_STATUS_ANY = 0,
    PROTO_STATUS_ACTIVE,   /* a delivery in flight, or a recipient not yet tried */
    PROTO_STATUS_DEFERRED, /* every open recipient tried and waiting for a retry */
    PROTO_STATUS_HOLD,     /* held by the operator */
};

struct proto_selector {
    bool all;           /* "all": true: every message (the others may narrow it) */
    spool_id *ids;      /* "ids": these messages only (sorted, no duplicates), or NULL */
    size_t nids;        /* entries in ids */
    const char *sender; /* shell pattern for the envelope sender ("<>" for the null
                           sender), case-insensitive; NULL: any */
    const char *rcpt;   /* shell pattern: some recipient not yet final matches it */
    const char *domain; /* shell pattern: some recipient not yet final is in a
                           matching domain */
    int64_t older_than; /* seconds: arrived at least this long ago; -1: any age */
    enum proto_status status;
    int error_class; /* 4 or 5: some recipient's last status is 4.x.x / 5.x.x; 0 any */
};

/*
 * Parse the selector members of args ("all", "ids", "sender", "rcpt",
 * "domain", "older_than", "status", "error_class"; other members are the
 * caller's to check). Returns 0, or -1 with err. Allocates sel->ids;
 * proto_selector_free releases it. The strings point into args.
 */
int proto_selector_parse(const json_t *args, struct proto_selector *sel, char *err, size_t errlen);
void proto_selector_free(struct proto_selector *sel);
/* True when the selector names nothing (no ids, no criteria, not "all"):
   the commands that change the queue refuse it. */
bool proto_selector_empty(const struct proto_selector *sel);

/* The status of a live message: held, active (busy: a delivery in flight,
   or a recipient still pending) or deferred. */
enum proto_status proto_message_status(const struct spool_envelope *env, bool busy);
const char *proto_status_name(enum proto_status st);

/* Does the message match? now: unix seconds; busy: a delivery in flight. */
bool proto_selector_match(const struct proto_selector *sel, spool_id id,
                          const struct spool_envelope *env, bool busy, int64_t now);

/* ---- output ------------------------------------------------------------ */

/* A JSON string of s (len octets; NULL gives JSON null) with every octet that
   is not part of valid UTF-8, and every NUL, replaced by U+FFFD. */
json_t *proto_text(const char *s, size_t len);
/* proto_text for a NUL-terminated string or NULL. */
json_t *proto_str(const char *s);

/* The name of a recipient state ("pending", "deferred", "delivered", "bounced",
   "expired"). */
const char *proto_rcpt_state_name(uint8_t state);

/*
 * A message as queue.list (full = false) or queue.show (full = true) shows
 * it: id, arrival, size, sender, status, held, listener, recipients with
 * state, attempts, next attempt and last status; full adds the client facts,
 * DSN parameters and each recipient's ORCPT, original address and NOTIFY.
 */
json_t *proto_message_json(spool_id id, const struct spool_envelope *env, bool busy, bool full);

/* The response line for a JSON value: compact, LF-terminated, malloc'd
   (*len octets). Takes the reference to v. */
char *proto_dump(json_t *v, size_t *len);
/* {"ok":false,"error":text} (with "code" and "enh" when code > 0). */
json_t *proto_error(const char *text, int code, const char *enh);

/* ---- submission data ---------------------------------------------------- */

/*
 * Decode standard base64 (RFC 4648 §4, padding required, no white space)
 * into out (cap octets). Returns the decoded length, or -1 when the text is
 * not valid base64 or the result would not fit.
 */
long proto_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
/* Encode n octets as base64 into out, which holds 4 * ((n + 2) / 3) + 1
   octets; returns the length written (without the NUL it adds). */
size_t proto_base64_encode(const uint8_t *in, size_t n, char *out);

/* "90", "90s", "15m", "2h", "3d", "1w" -> seconds; false on anything else. */
bool proto_duration_parse(const char *s, int64_t *out);

#endif
