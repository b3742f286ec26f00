/*
 * header - pure scanning of a message's header section (RFC 5322 §2.2, §3.6)
 * as it streams by, and extraction of the addresses of an address field
 * (RFC 5322 §3.4: mailbox and group lists, display names, quoted strings,
 * comments, obsolete route syntax; RFC 6532 UTF-8 allowed).
 *
 * The submission server (RFC 6409) feeds the decoded content through
 * smtp_hdr_feed to learn where the header section ends (to add Date: and
 * Message-ID: there when missing) and what the From: field says (the
 * authenticated user must own every From address). No I/O, no allocation:
 * everything lives in the caller's struct, bounded by the constants below.
 */
#ifndef TERN_SMTP_HEADER_H
#define TERN_SMTP_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/smtp.h"

/* Octets of an unfolded From: value kept; a longer one is marked truncated. */
#define SMTP_HDR_FROM_MAX 4096
/* Addresses smtp_addr_list_parse returns at most. */
#define SMTP_ADDR_LIST_MAX 32

/* Scanner state; zero it with smtp_hdr_init. */
struct smtp_hdr_scan {
    int state;                        /* private: where in a line the scanner is */
    bool done;                        /* the header section has ended */
    bool has_date;                    /* a Date: field was seen */
    bool has_message_id;              /* a Message-ID: field was seen */
    size_t from_fields;               /* number of From: fields seen */
    char from[SMTP_HDR_FROM_MAX + 1]; /* value of the first From: field, unfolded
                                         (CRLF before folding white space removed),
                                         NUL-terminated */
    size_t from_len;                  /* octets in from */
    bool from_truncated;              /* the value was longer than SMTP_HDR_FROM_MAX */
    char name[80];                    /* private: the field name being read */
    size_t name_len;                  /* private */
    int field;                        /* private: which field the current line belongs to */
    uint64_t line;                    /* private: offset of the first octet of the current line */
    uint64_t offset;                  /* octets fed so far */
    uint64_t end;                     /* once done: offset from the start of the content of the
                                         line that ends the header section (where fields can be
                                         inserted); meaningful even when that line began in an
                                         earlier chunk */
};

void smtp_hdr_init(struct smtp_hdr_scan *h);

/*
 * Feed the next n octets of content (lines end in CRLF; the content is what
 * the client sent after dot-unstuffing). Returns the offset within p of the
 * first octet of the empty line that ends the header section when that line
 * starts within p (so new fields can be inserted before it), else -1. A line
 * that is not a field (no colon, or a name with characters outside %d33-126)
 * also ends the header section, at the start of that line, as a body that
 * lacks the empty separator line. White space between a name and its colon
 * (obsolete syntax, RFC 5322 §4.5.3) is accepted: "From : x" is a field.
 * A line that is not a field is recognised only when its first octet that is
 * not a name octet arrives, perhaps in a later chunk than the line's start:
 * then this returns -1 although done becomes true, and h->end tells where
 * the line began (a caller that writes content out as it feeds it holds back
 * the incomplete last line, or compares h->end with the offset of p).
 * After the end, feeding only counts octets and returns -1.
 */
long smtp_hdr_feed(struct smtp_hdr_scan *h, const uint8_t *p, size_t n);

/*
 * The addr-specs ("local@domain") of an address-list value such as From:'s:
 * "Name <a@b>, \"Q, R\" <c@d> (comment), e@f, Group: g@h;". Writes up to max
 * addresses (NUL-terminated, at most SMTP_PATH_MAX octets each, domain as
 * written) to out and returns how many, or -1 when the value is not a valid
 * address list or holds more than max addresses. An empty group counts for
 * nothing; an empty value returns 0.
 */
int smtp_addr_list_parse(const char *v, size_t len, char (*out)[SMTP_PATH_MAX + 1], size_t max);

/* Asked for every complete field of a header section: true to remove it.
   name is the field name as written (without the colon and any white space
   before it); value is everything after the colon up to the field's final
   CRLF, folding included. Neither is NUL-terminated. */
typedef bool (*smtp_hdr_drop_fn)(void *arg, const char *name, size_t namelen, const char *value,
                                 size_t valuelen);

/*
 * Remove header fields from the header section that starts p[0..len): the
 * fields for which drop() returns true, each with its folded continuation
 * lines, are cut out in place. The section ends at an empty line or at a
 * line that is not a field (as smtp_hdr_feed decides); only fields followed
 * by the start of another line within p are complete, so a field cut off by
 * the end of p is kept whatever drop() would say. Returns the new length
 * (len minus the octets removed); the octets after it are unspecified.
 * Counts the fields removed in *removed when not NULL. Lines end in CRLF or
 * LF. Used to delete forged Authentication-Results fields (RFC 8601 §5).
 */
size_t smtp_hdr_remove(uint8_t *p, size_t len, smtp_hdr_drop_fn drop, void *arg, size_t *removed);

#endif
