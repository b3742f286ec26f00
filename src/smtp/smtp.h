/*
 * smtp - pure SMTP protocol code: command lines, paths, ESMTP parameters,
 * xtext, the DATA/BDAT content decoder and reply formatting.
 *
 * RFCs: 5321 (commands, §4.1.2 address grammar, §4.5.2 transparency,
 * §4.5.3 limits), 1870 (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8),
 * 3461 (DSN: RET, ENVID, NOTIFY, ORCPT, xtext), 3030 (CHUNKING/BDAT),
 * 2920 (PIPELINING), 3463 / 5248 (enhanced status codes).
 *
 * Nothing here does I/O, logging or allocation: every function takes bytes
 * and fills caller-owned structures with fixed-size fields, so unit tests and
 * fuzzers call it directly. A parse failure returns a pointer to a static
 * `struct smtp_status` that is the exact reply the server sends.
 */
#ifndef TERN_SMTP_SMTP_H
#define TERN_SMTP_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1 limits. */
#define SMTP_LOCAL_MAX 64   /* octets of a local-part */
#define SMTP_DOMAIN_MAX 255 /* octets of a domain */
#define SMTP_PATH_MAX 256   /* octets of a path including the angle brackets */
#define SMTP_ENVID_MAX 100  /* RFC 3461 §4.4, decoded */
#define SMTP_ORCPT_MAX 500  /* RFC 3461 §4.2, encoded */

/* A reply that a parser selects: code, enhanced code, text (no CRLF). */
struct smtp_status {
    int code;         /* e.g. 501 */
    const char *enh;  /* e.g. "5.5.4" */
    const char *text; /* e.g. "Syntax error in parameters" */
};

/* ---------------------------------------------------------------------
 * Commands
 */
enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0, /* not a verb we know: 500 5.5.1 */
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL, /* arg starts after "MAIL" + space: "FROM:<...> params" */
    SMTP_VERB_RCPT, /* arg: "TO:<...> params" */
    SMTP_VERB_DATA,
    SMTP_VERB_BDAT,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
};

struct smtp_cmd {
    enum smtp_verb verb;
    const char *arg; /* points into the line: the text after the verb and its single
                        separating space (leading spaces skipped), "" if none */
    size_t arg_len;  /* trailing spaces removed */
};

/*
 * Split one command line (CRLF already removed) into verb and argument.
 * Verbs are case-insensitive and must be followed by a space or the end of
 * the line ("MAILX" is unknown). Returns NULL on success, or the reply for a
 * line that contains NUL, CR or other control characters except TAB
 * (500 5.5.2) or is not a command (500 5.5.1, with verb UNKNOWN).
 */
const struct smtp_status *smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* ---------------------------------------------------------------------
 * Paths (RFC 5321 §4.1.2)
 */
struct smtp_path {
    bool null;       /* "<>" (only valid for MAIL) */
    bool postmaster; /* "<postmaster>" without a domain (RCPT only, §4.5.1) */
    bool utf8;       /* contains octets >= 0x80 */
    bool quoted;     /* the local-part was a quoted-string */
    /* local-part as the sender wrote it (quotes and escapes kept), NUL-terminated */
    char local[SMTP_LOCAL_MAX + 1];
    /* domain as written; address literals keep their brackets: "[192.0.2.1]" */
    char domain[SMTP_DOMAIN_MAX + 1];
    /* local-part with quoting removed when it holds a plain dot-atom, else as written;
       used for mailbox lookup (case kept: callers lowercase if they wish) */
    char local_canon[SMTP_LOCAL_MAX + 1];
    /* "local@domain" as written, "" for null, "postmaster" for bare postmaster */
    char addr[SMTP_PATH_MAX + 1];
};

enum smtp_path_kind { SMTP_PATH_REVERSE /* MAIL FROM */, SMTP_PATH_FORWARD /* RCPT TO */ };

/*
 * Parse "<path>" at the start of s[0..len). A source route ("@a,@b:") is
 * accepted and ignored. Without `utf8_ok`, any octet >= 0x80 is refused
 * (553 5.6.7, RFC 6531 §3.4 says 553 with 5.6.7 for non-ASCII without SMTPUTF8).
 * Control characters and NUL anywhere are refused. Domains: dot-separated
 * LDH labels of 1..63 octets (U-labels when utf8_ok), or address literals
 * [IPv4], [IPv6:...] (checked with the real grammar), [tag:text].
 * On success returns NULL and sets *end to the first octet after '>'.
 * Errors: 501 5.5.4 for missing brackets/unterminated, 553 5.1.3 (RCPT) or
 * 553 5.1.7 (MAIL) for a bad address, 501 5.1.3 for a path too long.
 * Missing angle brackets are tolerated only when the whole argument is one
 * word that forms a valid mailbox (as Postfix does for broken clients).
 * s is the text after "FROM:" / "TO:" (the session strips those, any case):
 * leading spaces are skipped ("MAIL FROM: <x@y>"); after '>' comes the end or
 * a space before the parameters, else 501 5.5.4. "<>" for RCPT is 553 5.1.3.
 */
const struct smtp_status *smtp_path_parse(const char *s, size_t len, enum smtp_path_kind kind,
                                          bool utf8_ok, struct smtp_path *out, const char **end);

/* ---------------------------------------------------------------------
 * ESMTP parameters of MAIL and RCPT
 */
enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

/* What the server advertised, so a parameter of an extension not offered is refused. */
struct smtp_ext {
    bool size, eightbit, smtputf8, dsn;
    bool auth; /* AUTH was advertised: MAIL takes AUTH= (RFC 4954 §5) */
};

/* Longest AUTH= value kept (xtext-encoded mailbox or "<>"). */
#define SMTP_AUTH_PARAM_MAX 500

struct smtp_mail_params {
    bool has_size;
    uint64_t size;       /* SIZE=, overflow-checked */
    enum smtp_body body; /* BODY= */
    bool smtputf8;       /* SMTPUTF8 */
    enum smtp_ret ret;   /* RET= */
    bool has_envid;
    char envid[SMTP_ENVID_MAX + 1]; /* ENVID= as sent (still xtext-encoded, validated) */
    bool has_auth;
    char auth[SMTP_AUTH_PARAM_MAX + 1]; /* AUTH= as sent (xtext, validated) */
};

/* NOTIFY bits; NEVER is exclusive with the others. */
#define SMTP_NOTIFY_NEVER 0x1u
#define SMTP_NOTIFY_SUCCESS 0x2u
#define SMTP_NOTIFY_FAILURE 0x4u
#define SMTP_NOTIFY_DELAY 0x8u

struct smtp_rcpt_params {
    unsigned notify; /* 0 when absent */
    bool has_orcpt;
    char orcpt[SMTP_ORCPT_MAX + 1]; /* "addr-type;xtext" as sent, validated */
};

/*
 * Parse the text after the path: space-separated keyword[=value] items.
 * Keywords are case-insensitive; a repeated keyword is 501 5.5.4; an unknown
 * keyword, or one of an extension not in `ext`, is 555 5.5.4; a bad value is
 * 501 5.5.4 (SIZE=abc, SIZE past UINT64, BODY=FOO, RET=FOO, NOTIFY mixing NEVER,
 * bad xtext). SMTPUTF8 takes no value. Returns NULL on success.
 */
const struct smtp_status *smtp_mail_params_parse(const char *s, size_t len,
                                                 const struct smtp_ext *ext,
                                                 struct smtp_mail_params *out);
const struct smtp_status *smtp_rcpt_params_parse(const char *s, size_t len,
                                                 const struct smtp_ext *ext,
                                                 struct smtp_rcpt_params *out);

/* xtext (RFC 3461 §4): true when s[0..len) is valid xtext ("+XX" uppercase hex,
   other chars "!".."~" except "+" and "="). */
bool smtp_xtext_valid(const char *s, size_t len);
/* Decode xtext into out (NUL-terminated); returns decoded length or -1 if invalid
   or it does not fit in outlen-1. */
long smtp_xtext_decode(const char *s, size_t len, char *out, size_t outlen);

/* ---------------------------------------------------------------------
 * Message content: the DATA and BDAT decoder (resumable, no I/O)
 */
enum smtp_newline { SMTP_NEWLINE_REJECT = 0, SMTP_NEWLINE_NORMALIZE };

/* Problems seen in the content; the message is refused at its end if any is set. */
#define SMTP_DATA_BARE_LF 0x01u       /* a LF not preceded by CR (reject mode) */
#define SMTP_DATA_BARE_CR 0x02u       /* a CR not followed by LF (reject mode) */
#define SMTP_DATA_LONG_LINE 0x04u     /* a line longer than max_line (incl. CRLF) */
#define SMTP_DATA_TOO_MANY_HDRS 0x08u /* more header fields than max_headers */
#define SMTP_DATA_NUL 0x10u           /* a NUL octet */

struct smtp_data_dec {
    /* configuration, set by smtp_data_init */
    bool bdat;                 /* BDAT: raw octets, no dot handling, no end marker */
    enum smtp_newline newline; /* bare CR / LF policy */
    size_t max_line;           /* longest allowed line including CRLF (e.g. 1000) */
    size_t max_headers;        /* most header fields allowed */
    /* state */
    int state;       /* decoder state (private) */
    size_t line_len; /* octets in the current line so far */
    bool in_headers; /* still in the header section */
    size_t headers;  /* header fields seen */
    uint64_t octets; /* octets produced so far (after unstuffing/normalizing) */
    unsigned flags;  /* SMTP_DATA_* problems seen */
    bool ended;      /* CRLF.CRLF seen (DATA only) */
};

void smtp_data_init(struct smtp_data_dec *d, bool bdat, enum smtp_newline nl, size_t max_line,
                    size_t max_headers);

/*
 * Feed input octets. Consumes from in[0..in_len) and writes message content
 * to out, which must hold at least 2 * in_len + 2 octets (normalizing can
 * turn a bare LF into CRLF). Sets *consumed and *out_len. Returns true when
 * the end of DATA (CRLF "." CRLF, the first CRLF being the end of the DATA
 * command line itself when the content is empty) was consumed; the octets
 * after it in `in` are not consumed (they are the next pipelined command).
 * Only CR LF "." CR LF ends DATA: a "." line after a bare LF or bare CR, or
 * followed by a bare LF, never does. Dot-unstuffing: a line starting with "."
 * has it removed (DATA only). The content written ends with the CRLF that
 * preceded the final ".". BDAT mode never returns true.
 */
bool smtp_data_feed(struct smtp_data_dec *d, const uint8_t *in, size_t in_len, size_t *consumed,
                    uint8_t *out, size_t *out_len);

/* The reply for the first problem in d->flags (550 5.5.2 bare newline,
   500 5.5.2 line too long, 552 5.3.4 too many header fields, 550 5.6.0 NUL),
   or NULL when the content is acceptable. */
const struct smtp_status *smtp_data_status(const struct smtp_data_dec *d);

/* ---------------------------------------------------------------------
 * BDAT argument: "size [LAST]". Size overflow-checked; returns NULL or
 * 501 5.5.4 (bad syntax, negative, non-digits, overflow).
 */
const struct smtp_status *smtp_bdat_parse(const char *s, size_t len, uint64_t *size, bool *last);

/* ---------------------------------------------------------------------
 * Replies (reply.c)
 */
/*
 * Format a reply into out: "CODE ENH TEXT\r\n"; text may contain '\n' to make
 * a multi-line reply ("CODE-ENH line1\r\nCODE ENH line2\r\n"). Returns the
 * length written, truncating each line to 510 octets; out must hold outlen.
 */
size_t smtp_reply_format(char *out, size_t outlen, int code, const char *enh, const char *text);

/* Parse one reply line from a server: "250-text" or "250 text"; for the client
   side later. Returns false on malformed lines. */
bool smtp_reply_line_parse(const char *line, size_t len, int *code, bool *last, const char **text);

/* ---------------------------------------------------------------------
 * Additions
 */
/*
 * End of BDAT content (after the LAST chunk): a CR that ended the last chunk
 * had no LF after it, so it is a bare CR (flagged, or completed to CRLF when
 * normalizing). Writes at most 2 octets to out and sets *out_len; call it
 * before smtp_data_status(). Harmless in DATA mode.
 */
void smtp_data_finish(struct smtp_data_dec *d, uint8_t *out, size_t *out_len);

#endif
