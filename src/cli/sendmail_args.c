/*
 * sendmail_args - the sendmail command line; see sendmail_args.h and
 * docs/sendmail.md.
 */
#include "cli/sendmail_args.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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
