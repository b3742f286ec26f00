/*
 * sendmail_args - the sendmail command line; see sendmail_args.h and
 * docs/sendmail.md.
 */
#include "cli/sendmail_args.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp/header.h"
#include "smtp/smtp.h"

static void warn(struct sendmail_opts *o, const char *fmt, ...)
{
    if (o->nwarn < SENDMAIL_WARN_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->warnings[o->nwarn], SENDMAIL_WARN_LEN, fmt, ap);
        va_end(ap);
    }
    o->nwarn++;
}

static int usage_error(struct sendmail_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->error, sizeof o->error, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* -N: "never", or a comma-separated list of success, failure, delay. */
static bool parse_notify(const char *s, unsigned *out)
{
    if (strcasecmp(s, "never") == 0) {
        *out = SMTP_NOTIFY_NEVER;
        return true;
    }
    unsigned bits = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 7 && strncasecmp(s, "success", 7) == 0)
            bits |= SMTP_NOTIFY_SUCCESS;
        else if (n == 7 && strncasecmp(s, "failure", 7) == 0)
            bits |= SMTP_NOTIFY_FAILURE;
        else if (n == 5 && strncasecmp(s, "delay", 5) == 0)
            bits |= SMTP_NOTIFY_DELAY;
        else
            return false;
        s += n;
        if (*s == ',') {
            s++;
            if (!*s)
                return false;
        }
    }
    if (!bits)
        return false;
    *out = bits;
    return true;
}

/* Options that take an argument (Postfix's getopt string, with -C). */
static bool takes_arg(char c)
{
    return strchr("ABCFLNORVXbefhopqr", c) != NULL;
}

/* Options Postfix accepts and ignores (with their argument, if any): no warning. */
static bool silently_ignored(char c)
{
    return strchr("ALOUXchnmGx", c) != NULL;
}

static int apply(struct sendmail_opts *o, char c, const char *arg)
{
    switch (c) {
    case 'b':
        if (strcmp(arg, "m") == 0)
            o->mode = SENDMAIL_DELIVER;
        else if (strcmp(arg, "s") == 0)
            o->mode = SENDMAIL_SMTP;
        else if (strcmp(arg, "p") == 0)
            o->mode = SENDMAIL_MAILQ;
        else if (strcmp(arg, "i") == 0)
            o->mode = SENDMAIL_NEWALIASES;
        else if (strcmp(arg, "d") == 0 || strcmp(arg, "D") == 0)
            return usage_error(o, "-b%s: the server is \"tern serve\"", arg);
        else if (strcmp(arg, "v") == 0)
            return usage_error(o, "-bv: address verification is not supported");
        else
            return usage_error(o, "-b%s: unknown mode", arg);
        return 0;
    case 'B':
        if (strcasecmp(arg, "7bit") == 0)
            o->body = SMTP_BODY_7BIT;
        else if (strcasecmp(arg, "8bitmime") == 0)
            o->body = SMTP_BODY_8BITMIME;
        else
            return usage_error(o, "-B %s: must be 7BIT or 8BITMIME", arg);
        return 0;
    case 'C':
        o->config = arg;
        return 0;
    case 'F':
        o->fullname = arg;
        return 0;
    case 'f':
    case 'r':
        o->sender = strcmp(arg, "<>") == 0 ? "" : arg;
        return 0;
    case 'I':
        o->mode = SENDMAIL_NEWALIASES;
        return 0;
    case 'i':
        o->dot_ends = false;
        return 0;
    case 'N':
        if (!parse_notify(arg, &o->notify))
            return usage_error(o, "-N %s: must be never, or a list of success, failure, delay",
                               arg);
        return 0;
    case 'o':
        /* sendmail options: only -oi means something; -oem, -oep, -odb... are
           ignored as Postfix ignores them */
        if (strcmp(arg, "i") == 0)
            o->dot_ends = false;
        else if (arg[0] != 'e' && arg[0] != 'd' && arg[0] != 'm' && arg[0] != '7' &&
                 arg[0] != '8' && arg[0] != 'A')
            warn(o, "option -o%.40s ignored", arg);
        return 0;
    case 'p':
        warn(o, "option -p%.40s ignored", arg);
        return 0;
    case 'q':
        o->mode = SENDMAIL_FLUSH;
        if (arg[0] == 'R' && arg[1])
            o->flush_domain = arg + 1;
        return 0;
    case 'R':
        if (strcasecmp(arg, "full") == 0)
            o->ret = SMTP_RET_FULL;
        else if (strcasecmp(arg, "hdrs") == 0)
            o->ret = SMTP_RET_HDRS;
        else
            return usage_error(o, "-R %s: must be full or hdrs", arg);
        return 0;
    case 't':
        o->extract = true;
        return 0;
    case 'V':
        if (!arg[0] || strlen(arg) > SMTP_ENVID_MAX)
            return usage_error(o, "-V: the envelope id is 1 to %d characters", SMTP_ENVID_MAX);
        o->envid = arg;
        return 0;
    case 'v':
        o->verbose++;
        return 0;
    case 'e':
        return 0; /* -e: error reporting mode, ignored */
    default:
        if (!silently_ignored(c))
            warn(o, "option -%c ignored", c);
        return 0;
    }
}

int sendmail_parse_args(int argc, char *const *argv, struct sendmail_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dot_ends = true;
    const char *name = argc > 0 && argv[0] ? base_name(argv[0]) : "sendmail";
    if (strcmp(name, "mailq") == 0)
        o->mode = SENDMAIL_MAILQ;
    else if (strcmp(name, "newaliases") == 0)
        o->mode = SENDMAIL_NEWALIASES;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break; /* the first operand ("-" alone is one too) */
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        for (size_t k = 1; a[k]; k++) {
            char c = a[k];
            if (c == 'q' && !a[k + 1]) { /* -q alone takes no argument */
                o->mode = SENDMAIL_FLUSH;
                break;
            }
            if (!takes_arg(c)) {
                if (apply(o, c, "") < 0)
                    return -1;
                continue;
            }
            const char *arg;
            if (a[k + 1]) {
                arg = a + k + 1;
            } else if (i + 1 < argc) {
                arg = argv[++i];
            } else {
                return usage_error(o, "option -%c needs an argument", c);
            }
            if (apply(o, c, arg) < 0)
                return -1;
            break; /* the argument used the rest of the word */
        }
    }
    o->rcpts = argv + i;
    o->nrcpt = i < argc ? (size_t)(argc - i) : 0;
    return 0;
}

/* ---- -t: recipients from the header section ---------------------------- */

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static bool drop_bcc(void *arg, const char *name, size_t namelen, const char *value,
                     size_t valuelen)
{
    (void)arg;
    (void)value;
    (void)valuelen;
    return name_is(name, namelen, "Bcc");
}

long sendmail_header_rcpts(char *hdr, size_t *len, char (*out)[SMTP_PATH_MAX + 1], size_t max,
                           char *scratch)
{
    size_t n = *len, i = 0, k = 0;
    while (i < n) {
        if (hdr[i] == '\n' || hdr[i] == '\r')
            break; /* the empty line: the end of the header section */
        size_t eol = i;
        while (eol < n && hdr[eol] != '\n')
            eol++;
        if (is_wsp(hdr[i])) { /* a continuation line of a field not wanted */
            i = eol + 1;
            continue;
        }
        const char *colon = memchr(hdr + i, ':', eol - i);
        if (!colon)
            break; /* not a field: the header section is over */
        size_t namelen = (size_t)(colon - (hdr + i));
        while (namelen > 0 && is_wsp(hdr[i + namelen - 1]))
            namelen--;
        /* the field's value runs over its continuation lines */
        size_t vstart = (size_t)(colon - hdr) + 1, end = eol;
        while (end + 1 < n && is_wsp(hdr[end + 1])) {
            end++;
            while (end < n && hdr[end] != '\n')
                end++;
        }
        if (name_is(hdr + i, namelen, "To") || name_is(hdr + i, namelen, "Cc") ||
            name_is(hdr + i, namelen, "Bcc")) {
            size_t u = 0;
            for (size_t j = vstart; j < end && j < n; j++)
                if (hdr[j] != '\r' && hdr[j] != '\n')
                    scratch[u++] = hdr[j];
            int got = smtp_addr_list_parse(scratch, u, out + k, max - k);
            if (got < 0)
                return -1;
            k += (size_t)got;
        }
        i = end + 1;
    }
    /* every field must be followed by a line for smtp_hdr_remove to see it
       whole: end the section with an empty line while it works (a last
       line without its LF gets one, and keeps it) */
    bool blank_end =
        n >= 1 && hdr[n - 1] == '\n' &&
        (n == 1 || hdr[n - 2] == '\n' || (hdr[n - 2] == '\r' && (n == 2 || hdr[n - 3] == '\n')));
    if (!blank_end) {
        if (n > 0 && hdr[n - 1] != '\n')
            hdr[n++] = '\n';
        hdr[n++] = '\r';
        hdr[n++] = '\n';
    }
    n = smtp_hdr_remove((uint8_t *)hdr, n, drop_bcc, NULL, NULL);
    if (!blank_end)
        n -= 2;
    *len = n;
    return (long)k;
}
