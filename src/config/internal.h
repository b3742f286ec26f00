/*
 * config/internal - helpers shared by config.c and aliases.c, private to
 * src/config/: diagnostics, the logical-line reader of both file formats,
 * list tokens, and address syntax checks. Pure: no I/O, no logging.
 *
 * Logical lines follow Postfix's readllines(): empty and white-space-only
 * lines are ignored, so are lines whose first non-white-space character is
 * '#'; a logical line starts with non-white-space text and a line starting
 * with white space continues it. Physical lines are joined with one space.
 */
#ifndef TERN_CONFIG_INTERNAL_H
#define TERN_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Errors reported per file before the rest are summarised in one line. */
#define CFG_MAX_ERRORS 100

/* Where diagnostics go while one file is parsed. */
struct cfg_diag_ctx {
    struct config_diags *diags; /* may be NULL: diagnostics are counted only */
    const char *file;
    size_t errors;   /* errors found so far (all of them, reported or not) */
    size_t warnings; /* warnings found so far */
};

void cfg_diag_add(struct config_diags *d, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cfg_error(struct cfg_diag_ctx *dc, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_warn(struct cfg_diag_ctx *dc, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One logical line: its text (NUL-terminated, trailing white space removed)
   and where each joined physical line starts, for line numbers of tokens. */
struct cfg_lline {
    char *s;
    size_t len, cap;
    struct cfg_seg {
        size_t off;    /* offset in s where this physical line's text starts */
        unsigned line; /* its line number */
    } * seg;
    size_t nseg, segcap;
};

/* Line number of the physical line holding offset off of l. */
unsigned cfg_lline_line(const struct cfg_lline *l, size_t off);

/*
 * Split text into logical lines and call fn for each. With inline_comments
 * (the aliases file), a '#' at the start of a line or after white space also
 * ends the line's text. Control characters (other than TAB, and CR before LF)
 * are errors and the logical line holding them is dropped; so is a
 * continuation line with no logical line to continue.
 */
void cfg_read_lines(const char *text, size_t len, bool inline_comments, struct cfg_diag_ctx *dc,
                    void (*fn)(void *arg, const struct cfg_lline *l), void *arg);

/* Next token of a list value in l->s starting at *pos (separators: commas and
   white space). Returns false at the end. */
bool cfg_next_token(const struct cfg_lline *l, size_t *pos, size_t *off, size_t *toklen);

/* Remove later duplicates from the strings v[0..*n) (freeing them), keeping the
   order of first appearance; lines, if not NULL, is a parallel array kept in step. */
void cfg_dedup(char **v, unsigned *lines, size_t *n);

/* Domain name syntax: dot-separated LDH labels of 1..63 octets, at most 253
   octets in all, no trailing dot; with utf8, labels may also hold well-formed
   UTF-8 characters (U-labels, RFC 6531). */
bool cfg_valid_domain(const char *s, size_t len, bool utf8);
/* Local-part syntax: an unquoted dot-atom (RFC 5322 atext and dots, plus
   well-formed UTF-8 characters as RFC 6531 allows) of 1..64 octets. */
bool cfg_valid_local(const char *s, size_t len);
/* "local@domain" with both parts valid. */
bool cfg_valid_address(const char *s, size_t len);

/* Read a whole file of at most max octets into a malloc'd buffer (not
   NUL-terminated). On failure returns NULL with one diag at line 0. */
char *cfg_read_file(const char *file, size_t max, size_t *len, struct config_diags *diags);

/* Arguments for "%.*s%s": a value quoted in a message, cut at 60 octets. */
#define CFG_EX(s, n) (int)((n) > 60 ? 60 : (n)), (s), ((n) > 60 ? "..." : "")

/* A numeric IPv4 or IPv6 address s[0..len) (not NUL-terminated) into addr[16]
   (network order, zero-padded); returns AF_INET, AF_INET6, or 0 if it is not one. */
int cfg_parse_ip(const char *s, size_t len, unsigned char addr[16]);

#endif
