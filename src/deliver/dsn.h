/*
 * dsn - delivery status notifications: whether to send one, to whom, and the
 * complete report message.
 *
 * RFCs: 3461 §4.1 (NOTIFY), §4.3 (RET), §4.4 (ENVID), §6 (when and what to
 * report); 3464 §2.1-§2.3 (message/delivery-status fields); 6522 (the
 * multipart/report type, report-type=delivery-status); 3463 (status codes);
 * 3834 §5 (Auto-Submitted: auto-replied); 5322 (header fields, folding,
 * CRLF lines); 2046 §5.1.1 (boundaries); 6533 (message/global-delivery-status,
 * message/global, message/global-headers for SMTPUTF8 messages).
 *
 * Who gets a report, and no bounce loops (the rule the scheduler implements
 * with dsn_route()):
 *  - A report about a message goes to its envelope sender, sent with the
 *    null reverse path MAIL FROM:<> (RFC 5321 §4.5.5), only for the
 *    recipients for which dsn_should_report() is true.
 *  - A message with the null sender (a report, ours or anyone's) never
 *    causes a report to its sender. When it fails, a report goes instead to
 *    the postmaster address, sent with the reverse path
 *    "double-bounce@<hostname>" (DSN_DOUBLE_BOUNCE).
 *  - When a message from "double-bounce@<hostname>" fails, nothing is sent:
 *    the scheduler logs it and drops it. So at most two reports follow one
 *    message, and none follows a failed report to the postmaster.
 *
 * dsn_compose is pure: the original message comes through the caller's read
 * callback (in the spool) and the report goes into a struct buf; times,
 * names and the unique token are given by the caller. No I/O, no logging.
 */
#ifndef TERN_DELIVER_DSN_H
#define TERN_DELIVER_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "smtp/smtp.h"

/* Local part of the reverse path of reports sent to the postmaster. */
#define DSN_DOUBLE_BOUNCE "double-bounce"
/* Default cap on a returned original message (RET=FULL); past it, headers only. */
#define DSN_RETURN_MAX (10u * 1024 * 1024)
/* Most octets of the original header section returned. */
#define DSN_HEADERS_MAX (256u * 1024)
/* Most recipients in one report. */
#define DSN_RCPT_MAX 1000

/* RFC 3464 §2.3.3 Action values. */
enum dsn_action {
    DSN_ACTION_FAILED = 0, /* permanent failure, or gave up: NOTIFY=FAILURE */
    DSN_ACTION_DELAYED,    /* still being retried: NOTIFY=DELAY */
    DSN_ACTION_DELIVERED,  /* delivered to the mailbox: NOTIFY=SUCCESS */
    DSN_ACTION_RELAYED,    /* handed to a peer without DSN: NOTIFY=SUCCESS */
    DSN_ACTION_EXPANDED,   /* delivered to an alias with several members: NOTIFY=SUCCESS */
};

/*
 * RFC 3461 §4.1: NOTIFY=NEVER, never; FAILURE for failed, DELAY for delayed,
 * SUCCESS for delivered, relayed and expanded. Without a NOTIFY parameter
 * (notify == 0) Tern takes FAILURE,DELAY, one of the two defaults the RFC
 * allows (when delay reports go out is the scheduler's choice).
 */
bool dsn_should_report(unsigned notify, enum dsn_action action);

enum dsn_route {
    DSN_ROUTE_SENDER = 0, /* report to the envelope sender, from <> */
    DSN_ROUTE_POSTMASTER, /* null sender: report to the postmaster, from DSN_DOUBLE_BOUNCE@host */
    DSN_ROUTE_DROP,       /* a report to the postmaster failed: send nothing */
};
/* Where a report about a message from `sender` ("" for <>) goes; hostname is
   ours, compared case-insensitively with the sender's domain. */
enum dsn_route dsn_route(const char *sender, const char *hostname);

/* One recipient of a report. Strings are the caller's. */
struct dsn_rcpt {
    const char *addr;       /* Final-Recipient: the address we tried ("user@domain") */
    const char *orcpt;      /* ORCPT as received ("rfc822;xtext") or NULL */
    enum dsn_action action; /* Action: */
    const char *status;     /* Status: "5.1.1" (RFC 3463 syntax; else X.0.0 from action) */
    const char *remote_mta; /* Remote-MTA host name, or NULL */
    const char *diagnostic; /* the remote reply as smtp_reply_describe() writes it
                               ("550 5.1.1 text\nmore"), or NULL; folded, control
                               characters become spaces */
    int64_t last_attempt;   /* Last-Attempt-Date (unix seconds), 0 for none */
    int64_t retry_until;    /* Will-Retry-Until, delayed only, 0 for none */
};

/*
 * Read up to n octets of the original message at offset off into buf.
 * Returns the number read, 0 at the end, or < 0 on an error (dsn_compose then
 * fails). spool_body_read() has this shape.
 */
typedef ssize_t (*dsn_read_fn)(void *arg, uint64_t off, void *buf, size_t n);

struct dsn_report {
    const char *hostname; /* ours: Reporting-MTA, From: MAILER-DAEMON@hostname */
    const char *to;       /* report recipient: the envelope sender, or the postmaster
                             address for DSN_ROUTE_POSTMASTER; never "" */
    const char *unique;   /* unique token for Message-ID and boundary: e.g. the
                             report's own queue id in hex; [A-Za-z0-9.-] only */
    const char *queue_id; /* the original's queue id, for the text, or NULL */
    const char *envid;    /* ENVID as received (xtext), or NULL */
    enum smtp_ret ret;    /* RET: FULL returns the message in a report with a failed
                             recipient; otherwise, and in other reports, headers only */
    bool smtputf8;        /* the original used SMTPUTF8: RFC 6533 types, UTF-8 text */
    int64_t arrival;      /* Arrival-Date (unix seconds) */
    int64_t now;          /* Date: */
    size_t nrcpt;         /* 1..DSN_RCPT_MAX */
    const struct dsn_rcpt *rcpt;
    uint64_t orig_size; /* octets of the original message */
    dsn_read_fn read;   /* reads the original (CRLF lines, as spooled) */
    void *read_arg;
    uint64_t return_max; /* cap on a returned message, 0 = DSN_RETURN_MAX */
};

/* Flags dsn_compose reports. */
#define DSN_OUT_8BIT                                                                               \
    0x1u                       /* the report holds 8-bit octets: send with BODY=8BITMIME           \
                                  (and SMTPUTF8 when the original used it) */
#define DSN_OUT_HDRS_ONLY 0x2u /* RET=FULL asked, but past return_max: headers returned */

/*
 * Write the report, a complete RFC 5322 message with CRLF lines, to out
 * (appended; out's max bounds it: allow return_max plus 64 KiB). It is a
 * multipart/report; report-type=delivery-status with three parts: a
 * text/plain explanation listing each recipient and the remote reply, the
 * message/delivery-status (message/global-delivery-status) fields, and the
 * original as message/rfc822 (message/global) or its header section as
 * text/rfc822-headers (message/global-headers). The boundary holds `unique`
 * and is checked against everything written; a clash picks another.
 * Returns 0 with *flags set, or -1: invalid report (no recipients, empty
 * `to`, a control character in an address or name), a read error or short
 * original, out too small, or no boundary found. On -1 out is left as it was.
 */
int dsn_compose(const struct dsn_report *r, struct buf *out, unsigned *flags);

#endif
