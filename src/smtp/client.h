/*
 * client - pure protocol code for Tern's outbound SMTP client: the reply
 * parser, the EHLO keyword parser, MAIL/RCPT formatting with the parameters
 * a peer advertised, xtext encoding, and the 8BITMIME downgrade.
 *
 * RFCs: 5321 §4.2 (reply lines, multi-line replies), §4.2.1 (reply codes),
 * §4.5.3.1.5 (512-octet reply lines); 3463 / 2034 (enhanced status codes);
 * 5321 §4.1.1.1 and 1869 (EHLO keywords); 1870 (SIZE); 6152 and 1652
 * (8BITMIME, downgrading 8-bit bodies, §3); 6531 (SMTPUTF8); 3030 (CHUNKING);
 * 2920 (PIPELINING); 3207 (STARTTLS); 4954 (AUTH); 3461 §4 and §5 (DSN
 * parameters, relay semantics, xtext); 2045 §6.7 (quoted-printable).
 *
 * Nothing here does I/O or logging. Everything is bounded by the constants
 * below and lives in caller-owned structs; the only allocation is the header
 * buffer of the 8-bit converter, released by smtp_8to7_free().
 */
#ifndef TERN_SMTP_CLIENT_H
#define TERN_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "smtp/smtp.h"

/* ---------------------------------------------------------------------
 * Replies (reply.c)
 */
#define SMTP_REPLY_LINE_MAX 512  /* octets of a reply line fed (CRLF removed); longer: malformed */
#define SMTP_REPLY_LINES_MAX 64  /* lines of one reply; more: malformed */
#define SMTP_REPLY_TEXT_MAX 4096 /* octets of joined text kept; more is cut (truncated) */
#define SMTP_ENH_MAX 16          /* room for "5.123.123" and its NUL */

enum smtp_reply_step {
    SMTP_REPLY_MORE = 0,  /* a "-" line: feed the next line */
    SMTP_REPLY_DONE,      /* the last line arrived: the reply is complete */
    SMTP_REPLY_MALFORMED, /* not a valid reply: treat as a protocol error (close, defer) */
};

/*
 * A reply being parsed or parsed. The text of each line is what follows the
 * code and its separator, with the enhanced status code and one space removed
 * when it equals the first line's; lines are joined with '\n'. Control
 * characters in the text (TAB, a stray CR, NUL) are stored as spaces, so the
 * text never holds a line break other than the '\n' joins; octets >= 0x80 are
 * kept as received.
 */
struct smtp_reply {
    int code;                           /* 200..599 once the first line parsed, else 0 */
    char enh[SMTP_ENH_MAX];             /* RFC 3463 code of the first line whose class equals
                                           the reply's first digit ("5.1.1"), or "" */
    char text[SMTP_REPLY_TEXT_MAX + 1]; /* lines' text joined with '\n', NUL-terminated */
    size_t text_len;                    /* octets in text */
    size_t lines;                       /* lines fed so far */
    bool truncated;                     /* text was cut at SMTP_REPLY_TEXT_MAX (on a UTF-8
                                           character boundary when the text is UTF-8) */
    bool done;                          /* the last line has been fed */
    bool malformed;                     /* a line was bad; every later feed returns MALFORMED */
};

void smtp_reply_init(struct smtp_reply *r);

/*
 * Feed one line of a reply, CR LF removed. Malformed: a line longer than
 * SMTP_REPLY_LINE_MAX; a code that is not three digits with the first in 2..5
 * (1yz is never used by SMTP, RFC 5321 §4.2.1); a code differing from the
 * first line's; a fourth octet other than ' ' or '-' (a bare "250" is a valid
 * last line); a line beyond SMTP_REPLY_LINES_MAX; a feed after DONE.
 */
enum smtp_reply_step smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len);

/* RFC 3463 syntax: class "2"/"4"/"5", subject and detail of 1..3 digits without
   leading zeros ("0" alone is fine). s[0..len) must be exactly the code. */
bool smtp_enh_valid(const char *s, size_t len);

/* How the client acts on a reply code; every outcome is classified once, here. */
enum smtp_outcome {
    SMTP_OUTCOME_OK = 0,   /* 2yz: accepted (after the final dot: delivered) */
    SMTP_OUTCOME_CONTINUE, /* 3yz: go on (354 after DATA, 334 during AUTH) */
    SMTP_OUTCOME_DEFER,    /* 4yz, and anything that is not a valid code: retry later */
    SMTP_OUTCOME_BOUNCE,   /* 5yz: permanent failure */
};
enum smtp_outcome smtp_reply_outcome(int code);

/*
 * The status code to record for a reply: r->enh when present, else "2.0.0",
 * "4.0.0" or "5.0.0" from the code (3yz gives "4.5.0": unexpected here), and
 * "4.5.0" (protocol error, defer) for a malformed or incomplete reply.
 * out must hold SMTP_ENH_MAX octets.
 */
void smtp_reply_status(const struct smtp_reply *r, char *out);

/*
 * "CODE[ ENH] first line\nsecond line..." into out (NUL-terminated, cut to
 * outlen - 1): the reply as the peer gave it, for logs ("status=... (...)")
 * and the Diagnostic-Code of a DSN. Returns the length written.
 */
size_t smtp_reply_describe(const struct smtp_reply *r, char *out, size_t outlen);

/* ---------------------------------------------------------------------
 * EHLO keywords (ehlo.c)
 */
#define SMTP_AUTH_MECH_PLAIN 0x1u /* AUTH PLAIN (RFC 4616) */
#define SMTP_AUTH_MECH_LOGIN 0x2u /* AUTH LOGIN (draft, widely deployed) */

/* What a peer advertised in its EHLO reply. All false / 0 after HELO. */
struct smtp_peer_ext {
    bool pipelining;          /* PIPELINING (RFC 2920) */
    bool size;                /* SIZE (RFC 1870) */
    uint64_t size_max;        /* SIZE's value: largest message accepted; 0 = no limit given
                                 (or an unparseable value); values past UINT64_MAX clamp */
    bool eightbitmime;        /* 8BITMIME (RFC 6152) */
    bool smtputf8;            /* SMTPUTF8 (RFC 6531) */
    bool starttls;            /* STARTTLS (RFC 3207) */
    bool chunking;            /* CHUNKING: BDAT (RFC 3030) */
    bool dsn;                 /* DSN (RFC 3461) */
    bool enhancedstatuscodes; /* ENHANCEDSTATUSCODES (RFC 2034) */
    unsigned auth;            /* SMTP_AUTH_MECH_* from "AUTH ..." or "AUTH=..." lines */
};

/*
 * Fill ext from a complete EHLO reply. Only a DONE 250 reply counts: for any
 * other (or a malformed one) ext is all zero, as after HELO. The first line
 * (the peer's name) is skipped; each later line is a keyword and parameters
 * separated by spaces, matched case-insensitively; unknown keywords and junk
 * lines are ignored. A truncated reply may have lost its last keywords.
 */
void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_peer_ext *ext);

/* ---------------------------------------------------------------------
 * Client commands (ehlo.c)
 *
 * RFC 3461 relay semantics: when the peer advertised DSN, RET, ENVID, NOTIFY
 * and ORCPT are passed on as received. When it did not, they are dropped, and
 * the obligation moves to us: for each recipient that asked for
 * NOTIFY=SUCCESS and was accepted by such a peer, the caller must itself send
 * a DSN with Action: relayed once the message is accepted (RFC 3461 §4.1,
 * RFC 3464 §2.3.3); smtp_rcpt_needs_relayed_dsn() says when.
 */

/* Write "MAIL FROM:<sender>[ SIZE=n][ BODY=8BITMIME][ SMTPUTF8][ RET=x][ ENVID=x]\r\n".
 *  - sender: "local@domain" as spooled, "" for the null sender;
 *  - SIZE= when the peer has SIZE (size is the octets to be sent);
 *  - BODY=8BITMIME when body_8bit and the peer has 8BITMIME (when it does not,
 *    the caller has already downgraded with smtp_8to7_* or bounced, 5.6.3);
 *  - SMTPUTF8 when smtputf8 and the peer has it (when it does not, the caller
 *    bounces with 5.6.7 before sending: RFC 6531 §3.5);
 *  - RET= (when not SMTP_RET_NONE) and ENVID= (envid: xtext as received, or
 *    NULL) when the peer has DSN.
 * ext NULL stands for a peer that advertised nothing (HELO).
 * Returns the length written (out NUL-terminated), or -1 when it does not fit
 * in outlen, or the sender holds a control character, or an envid to be
 * passed on is not xtext.
 */
long smtp_format_mail(char *out, size_t outlen, const char *sender, const struct smtp_peer_ext *ext,
                      uint64_t size, bool body_8bit, bool smtputf8, enum smtp_ret ret,
                      const char *envid);

/* Write "RCPT TO:<rcpt>[ NOTIFY=x][ ORCPT=x]\r\n". NOTIFY (SMTP_NOTIFY_* bits,
 * 0 = none given: left out) and ORCPT only when the peer has DSN. orcpt is the
 * ORCPT as received ("addr-type;xtext"), passed on unchanged; when NULL, ORCPT
 * is built as "rfc822;" + xtext(rcpt), unless rcpt holds octets >= 0x80 (an
 * RFC 6533 "utf-8" address type would be needed: then ORCPT is left out, which
 * RFC 3461 §4.2 allows). A caller whose alias expansion changed the address
 * builds "rfc822;" + xtext(address as given) itself with smtp_xtext_encode.
 * Returns the length written, or -1 when it does not fit, rcpt holds a
 * control character, or orcpt is not "atom;xtext".
 */
long smtp_format_rcpt(char *out, size_t outlen, const char *rcpt, unsigned notify,
                      const char *orcpt, const struct smtp_peer_ext *ext);

/* True when the caller owes a "relayed" DSN for a recipient accepted by this peer. */
bool smtp_rcpt_needs_relayed_dsn(const struct smtp_peer_ext *ext, unsigned notify);

/* xtext-encode s[0..len) (RFC 3461 §4: '+', '=', and octets outside "!".."~" become
   "+XX", uppercase hex) into out, NUL-terminated. Returns the length, or -1 if it
   does not fit in outlen - 1. */
long smtp_xtext_encode(const char *s, size_t len, char *out, size_t outlen);

/* ---------------------------------------------------------------------
 * 8BITMIME downgrade (eightbit.c), RFC 6152 §3, RFC 1652, RFC 2045 §6.7
 *
 * For a peer without 8BITMIME: first scan the whole message with
 * smtp_needs_8bit(); if it has no octet >= 0x80 send it unchanged (without
 * BODY=8BITMIME). Otherwise stream it through the converter, which accepts
 * a message whose header section is 7-bit and whose body is one part that is
 * not multipart/... or message/... and not already base64/quoted-printable/
 * binary: it re-encodes the body as quoted-printable (lines of at most 76
 * octets, soft breaks "=" CRLF), removes every Content-Transfer-Encoding
 * field and adds "Content-Transfer-Encoding: quoted-printable", plus
 * "MIME-Version: 1.0" and "Content-Type: text/plain; charset=unknown-8bit"
 * (RFC 1428) when they are missing, at the end of the header section. For
 * anything else it reports SMTP_8TO7_CANNOT: the caller bounces the
 * recipients of this peer with 5.6.3 ("conversion required but not
 * supported", RFC 3463).
 */
#define SMTP_8TO7_HEADER_MAX (256 * 1024) /* header section kept while deciding */
#define SMTP_QP_LINE_MAX 76               /* quoted-printable line, '=' included */

/* True when p[0..n) holds an octet >= 0x80. */
bool smtp_needs_8bit(const uint8_t *p, size_t n);

enum smtp_8to7_result {
    SMTP_8TO7_OK = 0, /* output appended; go on */
    SMTP_8TO7_CANNOT, /* this message cannot be converted: bounce with 5.6.3 */
    SMTP_8TO7_FULL,   /* out reached its max: the conversion is lost (a caller bug) */
};

/* Converter state; private fields are marked. */
struct smtp_8to7 {
    int state;      /* private: header, body or failed */
    struct buf hdr; /* private: the header section, held until its end */
    size_t col;     /* private: octets on the current output line */
    int pend_ws;    /* private: a SP or TAB held back (end of line?), or -1 */
    bool pend_cr;   /* private: a CR held back (CRLF?) */
    uint64_t in;    /* octets fed */
    uint64_t out;   /* octets produced */
};

void smtp_8to7_init(struct smtp_8to7 *c);
/*
 * Convert the next n octets of the message (CRLF lines) and append the result
 * to out. Until the header section ends, nothing is written; the call that
 * completes it appends the rewritten header section (up to SMTP_8TO7_HEADER_MAX
 * + 200 octets) besides the body: out needs room for that plus 3 * n + 3 * n / 72
 * + 8. Once CANNOT or FULL, every later call returns it again.
 */
enum smtp_8to7_result smtp_8to7_feed(struct smtp_8to7 *c, const uint8_t *p, size_t n,
                                     struct buf *out);
/* End of the message: flush what was held back (a header section without a
   body is written out as it is). Same results as feed. */
enum smtp_8to7_result smtp_8to7_finish(struct smtp_8to7 *c, struct buf *out);
/* Release the header buffer. Safe to call twice. */
void smtp_8to7_free(struct smtp_8to7 *c);

#endif
