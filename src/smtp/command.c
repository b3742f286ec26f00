/*
 * command - split an SMTP command line into verb and argument, and parse the
 * BDAT argument.
 *
 * RFCs: 5321 §4.1.1 (command syntax: verb, one SP, argument; verbs are
 * case-insensitive), §2.3.8 and §4.1.4 (a command line holds no bare CR or
 * other control characters), 3030 §2 (BDAT chunk-size [SP "LAST"]).
 *
 * Pure: the caller hands over one line without its CRLF; the result points
 * into that line and the returned status, if any, is static.
 */
#include "smtp/smtp.h"

#include <string.h>

#include "core/util.h"

static const struct smtp_status st_bad_cr = {500, "5.5.2", "Syntax error: bare CR in command line"};
static const struct smtp_status st_bad_nul = {500, "5.5.2",
                                              "Syntax error: NUL octet in command line"};
static const struct smtp_status st_bad_ctl = {500, "5.5.2",
                                              "Syntax error: control character in command line"};
static const struct smtp_status st_unknown = {500, "5.5.1", "Command unrecognized"};
static const struct smtp_status st_bdat = {501, "5.5.4",
                                           "Syntax error: expected BDAT chunk-size [LAST]"};

/* The command table: every verb Tern knows, longest first is not needed
   because a verb must be followed by SP or the end of the line. */
static const struct {
    const char *name;
    size_t len;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", 4, SMTP_VERB_HELO},         {"EHLO", 4, SMTP_VERB_EHLO}, {"MAIL", 4, SMTP_VERB_MAIL},
    {"RCPT", 4, SMTP_VERB_RCPT},         {"DATA", 4, SMTP_VERB_DATA}, {"BDAT", 4, SMTP_VERB_BDAT},
    {"RSET", 4, SMTP_VERB_RSET},         {"NOOP", 4, SMTP_VERB_NOOP}, {"QUIT", 4, SMTP_VERB_QUIT},
    {"VRFY", 4, SMTP_VERB_VRFY},         {"EXPN", 4, SMTP_VERB_EXPN}, {"HELP", 4, SMTP_VERB_HELP},
    {"STARTTLS", 8, SMTP_VERB_STARTTLS}, {"AUTH", 4, SMTP_VERB_AUTH},
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

const struct smtp_status *smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
    out->verb = SMTP_VERB_UNKNOWN;
    out->arg = "";
    out->arg_len = 0;

    /* Refuse the whole line first: a CR here is a smuggling or a broken client. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\r')
            return &st_bad_cr;
        if (c == '\0')
            return &st_bad_nul;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return &st_bad_ctl;
    }

    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++) {
        if (verbs[k].len == vlen && ascii_nieq(line, verbs[k].name, vlen)) {
            out->verb = verbs[k].verb;
            break;
        }
    }
    if (out->verb == SMTP_VERB_UNKNOWN)
        return &st_unknown;

    size_t a = vlen;
    while (a < len && is_blank(line[a]))
        a++;
    size_t e = len;
    while (e > a && is_blank(line[e - 1]))
        e--;
    if (e > a) {
        out->arg = line + a;
        out->arg_len = e - a;
    }
    return NULL;
}

const struct smtp_status *smtp_bdat_parse(const char *s, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0, e = len;
    *size = 0;
    *last = false;
    while (i < e && s[i] == ' ')
        i++;
    while (e > i && s[e - 1] == ' ')
        e--;
    size_t d = i;
    while (d < e && s[d] != ' ')
        d++;
    uint64_t v;
    if (!parse_u64(s + i, d - i, &v))
        return &st_bdat; /* empty, sign, non-digit or past UINT64_MAX */
    bool l = false;
    if (d < e) {
        while (d < e && s[d] == ' ')
            d++;
        if (e - d != 4 || !ascii_nieq(s + d, "LAST", 4))
            return &st_bdat;
        l = true;
    }
    *size = v;
    *last = l;
    return NULL;
}
