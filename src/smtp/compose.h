/*
 * compose - build an Internet message for `tern send`: header fields, MIME
 * structure and encodings, and DATA's dot-stuffing.
 *
 * RFCs: 5322 §2.1.1 (lines of at most 78 octets, folded; 998 at most),
 * §2.2.3 (folding), §3.3 (Date), §3.4 (mailboxes: "Name <addr>"), §3.6.4
 * (Message-ID); 2045 §6.7 (quoted-printable), §6.8 (base64); 2046 §5.1.1
 * (multipart bodies, boundaries); 2047 §2, §5 (encoded-words in unstructured
 * fields and phrases); 2183 (Content-Disposition); 2231 §3, §4 (parameter
 * values: character set and continuations); 6532 (UTF-8 addresses in header
 * fields); 5321 §4.5.2 (transparency: dot-stuffing).
 *
 * The message: Date, From, To, Cc, Subject, Message-ID, MIME-Version, the
 * caller's extra fields, then the body. Without attachments the body is one
 * text/plain part; with them, multipart/mixed whose first part is the text
 * (when there is any) and each attachment a base64 part with
 * Content-Disposition: attachment and its file name. The text is sent as it
 * is (7bit) when it is ASCII with lines of at most 998 octets and no NUL or
 * bare CR, else as quoted-printable (charset utf-8, or unknown-8bit when it is
 * not UTF-8): the message is always 7-bit but for UTF-8 addresses, so it
 * needs no 8BITMIME. Line ends become CRLF.
 *
 * Pure: no I/O. Everything is written to a caller's struct buf, whose max
 * bounds the result (an overflow is an error, never a cut).
 */
#ifndef TERN_SMTP_COMPOSE_H
#define TERN_SMTP_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define COMPOSE_LINE 78         /* folded header lines are kept to this when possible */
#define COMPOSE_WORD_MAX 75     /* an encoded-word (RFC 2047 §2) */
#define COMPOSE_B64_LINE 76     /* base64 body lines (RFC 2045 §6.8) */
#define COMPOSE_QP_LINE 76      /* quoted-printable lines, '=' included (RFC 2045 §6.7) */
#define COMPOSE_BOUNDARY_MAX 70 /* RFC 2046 §5.1.1 */
#define COMPOSE_NAME_MAX 76     /* an extra header field's name */

/* A mailbox as given: "addr" or "Display Name <addr>". */
struct compose_mailbox {
    const char *display; /* the display name, or NULL */
    size_t display_len;
    const char *addr; /* "local@domain" */
    size_t addr_len;
};

/* Parse s as a mailbox; the address must be local@domain (UTF-8 allowed,
   RFC 6531). False when it is not. Pointers go into s. */
bool compose_parse_mailbox(const char *s, struct compose_mailbox *out);

/* One attachment. */
struct compose_part {
    const char *filename;     /* file name shown (UTF-8; no directory) */
    const char *content_type; /* "type/subtype" */
    const uint8_t *data;      /* its octets, sent in base64 */
    size_t len;
};

/* An extra header field given by the user ("Name: value"). */
struct compose_field {
    const char *name;  /* field name */
    const char *value; /* unstructured UTF-8 text */
};

/* What compose_message builds. Every string is NUL-terminated UTF-8. */
struct compose_msg {
    const char *from;                   /* mailbox for From: */
    const char *const *to;              /* mailboxes for To: */
    size_t nto;                         /* (0: no To:) */
    const char *const *cc;              /* mailboxes for Cc: */
    size_t ncc;                         /* (0: no Cc:) */
    const char *subject;                /* NULL: no Subject: */
    const char *date;                   /* RFC 5322 date-time */
    const char *message_id;             /* "<id@domain>" */
    const struct compose_field *fields; /* extra fields; one named Date, From, To, Cc, Subject
                                           or Message-ID replaces ours */
    size_t nfields;
    const uint8_t *body; /* text (LF or CRLF line ends) */
    size_t body_len;     /* 0 with parts: no text part */
    const struct compose_part *parts;
    size_t nparts;
    const char *boundary; /* for multipart: compose_boundary_valid, and starting "=_" so
                             that no base64 or quoted-printable line can hold it */
};

/*
 * Build the message into out (appended). Returns 0, or -1 with err filled:
 * a bad mailbox, a subject or field that is not UTF-8 or holds a line break,
 * a field name that is not printable ASCII without ':', a MIME-Version or
 * Content-* field among the extras, a bad boundary, or out's max reached.
 */
int compose_message(const struct compose_msg *m, struct buf *out, char *err, size_t errlen);

/*
 * "Name: value" CRLF, folded. value is unstructured text: written as it is
 * (folded at spaces) when it is printable ASCII without "=?", else as RFC 2047
 * "B" encoded-words in UTF-8, each at most COMPOSE_WORD_MAX octets, split on
 * character boundaries, one per line after the first. -1 when value is not
 * UTF-8 or holds CR or LF (or out is full).
 */
int compose_header_text(struct buf *out, const char *name, const char *value);

/*
 * A parameter '; name="value"' of a Content-* field, appended at column col
 * (updated). Printable ASCII values of a fitting length are quoted strings
 * (RFC 2045 §5.1, '"' and '\' escaped); others use RFC 2231's extended form
 * name*=utf-8''%XX..., cut into name*0*, name*1*... continuations on lines of
 * their own when long. -1 when value is not UTF-8 or out is full.
 */
int compose_param(struct buf *out, size_t *col, const char *name, const char *value);

/* base64 of p[0..n) in lines of COMPOSE_B64_LINE octets ending in CRLF. */
int compose_base64_lines(struct buf *out, const uint8_t *p, size_t n);
/* base64 of p[0..n) on one line, no CRLF (SASL). */
int compose_base64(struct buf *out, const uint8_t *p, size_t n);

/* Quoted-printable of text p[0..n): LF and CRLF are line ends (written CRLF),
   a bare CR is =0D; lines end with CRLF. */
int compose_qp(struct buf *out, const uint8_t *p, size_t n);

/* The media type for a file name's extension ("application/octet-stream" when unknown). */
const char *compose_content_type(const char *filename);

/* Boundary syntax (RFC 2046 §5.1.1): 1..70 of bchars, not ending in a space. */
bool compose_boundary_valid(const char *b);

/* Dot-stuffing (RFC 5321 §4.5.2) across calls: every line that starts with
   '.' gets one more. at_line_start is true before the first call. The
   caller ends DATA with ".\r\n" after a message that ends in CRLF. */
int compose_dot_stuff(struct buf *out, const uint8_t *p, size_t n, bool *at_line_start);

#endif
