/*
 * sendmail_args - the command line of the sendmail compatibility interface,
 * pure: argv in, a struct out, no I/O and no allocation (strings point into
 * argv). What each option does, and which are ignored, follows Postfix's
 * sendmail(1); docs/sendmail.md has the table.
 *
 * Options are parsed as getopt(3) would with Postfix's option string:
 * single-letter options may be clustered ("-ti"), an option's argument may
 * be attached ("-fuser@example") or the next word ("-f user@example");
 * parsing stops at "--" or at the first operand, and the operands are the
 * recipients. "-o" takes a sendmail option as its argument ("-oi",
 * "-oem"); only "-oi" means something. Unknown options are ignored with a
 * warning, as Postfix does.
 */
#ifndef TERN_CLI_SENDMAIL_ARGS_H
#define TERN_CLI_SENDMAIL_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp/smtp.h"

/* What the invocation asks for. */
enum sendmail_mode {
    SENDMAIL_DELIVER = 0, /* -bm (the default): a message on standard input */
    SENDMAIL_SMTP,        /* -bs: an SMTP session on standard input and output */
    SENDMAIL_MAILQ,       /* -bp, or invoked as "mailq": list the queue */
    SENDMAIL_FLUSH,       /* -q: retry the deferred mail now (-qRsite: of one domain) */
    SENDMAIL_NEWALIASES,  /* -bi, -I, or invoked as "newaliases": nothing to build */
};

#define SENDMAIL_WARN_MAX 8  /* warnings kept (others are counted) */
#define SENDMAIL_WARN_LEN 96 /* octets of one warning */

struct sendmail_opts {
    enum sendmail_mode mode;
    const char *config;       /* -C FILE: Tern's configuration file, or NULL */
    const char *sender;       /* -f / -r: envelope sender ("" for the null sender), or NULL */
    const char *fullname;     /* -F: the sender's full name for a From: field added, or NULL */
    bool extract;             /* -t: recipients from To:, Cc: and Bcc: too (Bcc: removed) */
    bool dot_ends;            /* a line with a single "." ends the message (false with -i, -oi) */
    unsigned verbose;         /* -v, once per -v */
    unsigned notify;          /* -N: SMTP_NOTIFY_* bits for every recipient; 0: the default */
    int ret;                  /* -R: enum smtp_ret (SMTP_RET_NONE when not given) */
    int body;                 /* -B: enum smtp_body (SMTP_BODY_NONE when not given) */
    const char *envid;        /* -V: the envelope id (plain text), or NULL */
    const char *flush_domain; /* -qRsite: the domain, or NULL */
    char *const *rcpts;       /* the operands: recipients (into argv) */
    size_t nrcpt;             /* how many */
    char warnings[SENDMAIL_WARN_MAX][SENDMAIL_WARN_LEN]; /* "option -x ignored" and such */
    size_t nwarn;                                        /* warnings given (may pass the max) */
    char error[160];                                     /* a usage error, when -1 */
};

/*
 * Parse argv[0..argc): argv[0]'s base name chooses the mode ("mailq",
 * "newaliases"; anything else is sendmail). Returns 0, or -1 with a message
 * in o->error on a usage error (an option without its argument, a bad -N,
 * -R or -B value, -bv or -bd that Tern does not do).
 */
int sendmail_parse_args(int argc, char *const *argv, struct sendmail_opts *o);

/* Most recipients -t takes from a message's header section. */
#define SENDMAIL_HDR_RCPT_MAX 1000

/*
 * -t: the addresses of the To:, Cc: and Bcc: fields (RFC 5322 §3.6.3) of
 * the header section hdr[0..*len) (lines end in LF or CRLF; it may end
 * with the empty line that ends it), written to out (at most max, each
 * "local@domain" as written). The Bcc: fields are then removed from hdr in
 * place and *len updated (a last line without its LF gets one); hdr must have
 * room for 3 octets more than *len.
 * scratch holds at least *len octets (to unfold a field). Returns the
 * number of addresses, or -1 when a field is not an address list or there
 * are more than max addresses.
 */
long sendmail_header_rcpts(char *hdr, size_t *len, char (*out)[SMTP_PATH_MAX + 1], size_t max,
                           char *scratch);

#endif
