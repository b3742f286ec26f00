/*
 * dmarc_report - the data of DMARC aggregate reports (RFC 7489 §7.2,
 * Appendix C): one line of JSON per evaluated message, appended to a file
 * per day (UTC) under dmarc_report_dir, from which reports can be built
 * later. Reports themselves are not composed or sent here.
 *
 *   <dmarc_report_dir>/dmarc-2024-05-01.jsonl
 *   {"time":1714521600,"source_ip":"192.0.2.1","header_from":"example.org",
 *    "envelope_from":"bounce.example.org","policy_domain":"example.org",
 *    "p":"reject","sp":"","np":"","pct":100,"adkim":"r","aspf":"r",
 *    "dmarc":"fail","disposition":"reject","sampled_out":false,
 *    "spf_aligned":false,"dkim_aligned":false,
 *    "spf":{"domain":"bounce.example.org","result":"fail"},
 *    "dkim":[{"domain":"example.net","selector":"s1","result":"pass"}]}
 *
 * (one line; "p", "sp", "np" are "" when not published, "policy_domain"
 * is "" when no record was found, "disposition" is what was done with the
 * message after dmarc_reject_action.) Strings are JSON-escaped; octets
 * that are not UTF-8 become U+FFFD. A line is at most
 * DMARC_REPORT_LINE_MAX octets, and one write(2) with O_APPEND, so lines
 * of concurrent writers do not interleave; there is no fsync (the data is
 * statistics, not mail).
 */
#ifndef TERN_MAILAUTH_DMARC_REPORT_H
#define TERN_MAILAUTH_DMARC_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dns/dmarc.h"

/* The longest line written. */
#define DMARC_REPORT_LINE_MAX 8192

/* One evaluated message. */
struct dmarc_report_entry {
    int64_t time;                       /* seconds since the epoch */
    const char *source_ip;              /* the client's address */
    const char *envelope_from;          /* the MAIL FROM domain ("" null sender) */
    const char *header_from;            /* the From domain */
    const struct dmarc_discovery *disc; /* the record and policy domain (NULL: none) */
    const struct dmarc_result *res;     /* the evaluation */
    const struct dmarc_input *in;       /* SPF and DKIM results */
    enum dmarc_disposition disposition; /* what was done with the message */
};

/* The JSON line (ending in "\n", NUL-terminated) into out. Returns its
   length, or -1 when it does not fit. Pure. */
long dmarc_report_format(const struct dmarc_report_entry *e, char *out, size_t outlen);

/* The file of the day of t (UTC) under dir: "<dir>/dmarc-YYYY-MM-DD.jsonl". */
int dmarc_report_path(const char *dir, int64_t t, char *out, size_t outlen);

/* Append e's line to the file of its day under dir (dir and the file are
   created, 0750 and 0640, when missing). 0, or -1 with a message in err. */
int dmarc_report_append(const char *dir, const struct dmarc_report_entry *e, char *err,
                        size_t errlen);

#endif
