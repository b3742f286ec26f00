/*
 * dsn - delivery status notifications (see dsn.h): whether a recipient's
 * outcome is reported, where the report goes, and the report itself.
 *
 * RFCs: 3461 §4.1 (NOTIFY and its default), §4.3 (RET: the full message only
 * in a report of failure); 3464 §2.2 (per-message fields: Reporting-MTA,
 * Original-Envelope-Id, Arrival-Date), §2.3 (per-recipient fields:
 * Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
 * Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until); 6522 §3
 * (multipart/report, three parts: explanation, report, returned content);
 * 6533 §6 (message/global-delivery-status, message/global,
 * message/global-headers, utf-8 address type); 2046 §5.1.1 (a boundary must
 * not occur in the encapsulated content); 5322 §2.2.3 (folding, 78-octet
 * lines), §3.3 (dates); 3834 §5 (Auto-Submitted).
 *
 * The report is assembled in four steps: the explanation and the
 * delivery-status fields are written into two scratch buffers; the part of
 * the original to return is measured (its header section, or all of it) and
 * scanned for 8-bit octets and for the candidate boundary; a boundary that
 * occurs nowhere is chosen; the whole message is written to the caller's
 * buffer, copying the original through the read callback a second time.
 * Pure: no I/O besides the callback, no logging; the scratch buffers are
 * freed before returning.
 */
#include "deliver/dsn.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/crc32c.h"
#include "core/util.h"
#include "smtp/client.h"

#define FOLD_AT 78             /* fold header lines past this many octets (RFC 5322 §2.1.1) */
#define SCRATCH_MAX (8u << 20) /* bound on each of the two scratch parts */
#define UNIQUE_MAX 40          /* longest `unique` accepted: the boundary stays under 70 */
#define READ_CHUNK 8192        /* octets read from the original at a time */
#define BOUNDARY_TRIES 8       /* candidates tried before giving up */

/* ---------------------------------------------------------------------
 * Policy
 */
bool dsn_should_report(unsigned notify, enum dsn_action action)
{
    if (notify & SMTP_NOTIFY_NEVER)
        return false;
    if (notify == 0)
        notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    switch (action) {
    case DSN_ACTION_FAILED:
        return (notify & SMTP_NOTIFY_FAILURE) != 0;
    case DSN_ACTION_DELAYED:
        return (notify & SMTP_NOTIFY_DELAY) != 0;
    case DSN_ACTION_DELIVERED:
    case DSN_ACTION_RELAYED:
    case DSN_ACTION_EXPANDED:
        return (notify & SMTP_NOTIFY_SUCCESS) != 0;
    }
    return false;
}

enum dsn_route dsn_route(const char *sender, const char *hostname)
{
    if (sender == NULL || sender[0] == '\0')
        return DSN_ROUTE_POSTMASTER;
    const char *at = strrchr(sender, '@');
    size_t ll = sizeof DSN_DOUBLE_BOUNCE - 1;
    if (at != NULL && (size_t)(at - sender) == ll && ascii_nieq(sender, DSN_DOUBLE_BOUNCE, ll) &&
        hostname != NULL && ascii_ieq(at + 1, hostname))
        return DSN_ROUTE_DROP;
    return DSN_ROUTE_SENDER;
}

/* ---------------------------------------------------------------------
 * Writing
 */
struct w {
    struct buf *b;
    bool err; /* an append failed: the report does not fit */
};

static void put(struct w *w, const void *p, size_t n)
{
    if (!w->err && buf_append(w->b, p, n) != 0)
        w->err = true;
}

static void puts_(struct w *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Text from outside (addresses, replies): control characters become spaces,
   and octets >= 0x80 become '?' unless the report is UTF-8. */
static void put_clean(struct w *w, const char *s, size_t n, bool utf8)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char o = (char)c;
        if (c < 0x20 || c == 0x7f)
            o = ' ';
        else if (c >= 0x80 && !utf8)
            o = '?';
        put(w, &o, 1);
    }
}

static void puts_clean(struct w *w, const char *s, bool utf8)
{
    put_clean(w, s, strlen(s), utf8);
}

/* RFC 5322 §3.3 date-time in UTC: "Tue, 01 Jul 2025 12:00:00 +0000". */
static void put_date(struct w *w, int64_t t)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t tt = (time_t)t;
    if (t < 0 || t > 253402300799 || gmtime_r(&tt, &tm) == NULL) { /* past 9999 */
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    char d[40];
    int n = snprintf(d, sizeof d, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
                     tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
    if (n > 0)
        put(w, d, (size_t)n < sizeof d ? (size_t)n : sizeof d - 1);
}

static bool has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool has_8bit(const char *s)
{
    return smtp_needs_8bit((const uint8_t *)s, strlen(s));
}

/* A host name: ASCII, no control characters or spaces. */
static bool name_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || has_ctl(s) || has_8bit(s))
        return false;
    return strchr(s, ' ') == NULL;
}

/* ---------------------------------------------------------------------
 * Recipients
 */
static const char *action_name(enum dsn_action a)
{
    switch (a) {
    case DSN_ACTION_FAILED:
        return "failed";
    case DSN_ACTION_DELAYED:
        return "delayed";
    case DSN_ACTION_DELIVERED:
        return "delivered";
    case DSN_ACTION_RELAYED:
        return "relayed";
    case DSN_ACTION_EXPANDED:
        return "expanded";
    }
    return "failed";
}

/* The Status: the given code when valid and of a class that fits the action
   (failed: 5, or 4 for a temporary failure given up on; delayed: 4; the
   others: 2), else the action's generic code. */
static const char *status_of(const struct dsn_rcpt *rc)
{
    const char *s = rc->status;
    bool ok = s != NULL && smtp_enh_valid(s, strlen(s));
    switch (rc->action) {
    case DSN_ACTION_FAILED:
        return ok && (s[0] == '5' || s[0] == '4') ? s : "5.0.0";
    case DSN_ACTION_DELAYED:
        return ok && s[0] == '4' ? s : "4.0.0";
    default:
        return ok && s[0] == '2' ? s : "2.0.0";
    }
}

/* "addr-type;" and the decoded address of an ORCPT, or NULL when it is not
   "atom;xtext". The decoded form is used when printable, else the xtext. */
static bool put_orcpt(struct w *w, const char *orcpt, bool utf8)
{
    const char *semi = strchr(orcpt, ';');
    if (semi == NULL || semi == orcpt || has_ctl(orcpt) || has_8bit(orcpt))
        return false;
    char dec[SMTP_ORCPT_MAX + 1];
    long n = smtp_xtext_decode(semi + 1, strlen(semi + 1), dec, sizeof dec);
    bool printable = n > 0;
    for (long i = 0; printable && i < n; i++) {
        unsigned char c = (unsigned char)dec[i];
        if (c <= 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            printable = false;
    }
    put(w, orcpt, (size_t)(semi - orcpt) + 1);
    if (printable)
        put(w, dec, (size_t)n);
    else
        puts_(w, semi + 1);
    return true;
}

/* "Diagnostic-Code: smtp; " and the reply, its words folded at FOLD_AT; the
   reply's own line breaks become folds. */
static void put_diagnostic(struct w *w, const char *d, bool utf8)
{
    static const char head[] = "Diagnostic-Code: smtp;";
    puts_(w, head);
    size_t col = sizeof head - 1;
    size_t i = 0, n = strlen(d);
    bool newline = false; /* the reply's next line starts here */
    while (i < n) {
        unsigned char c = (unsigned char)d[i];
        if (c <= 0x20 || c == 0x7f) {
            if (c == '\n')
                newline = true;
            i++;
            continue;
        }
        size_t s = i;
        while (i < n && (unsigned char)d[i] > 0x20 && d[i] != 0x7f)
            i++;
        size_t wl = i - s;
        if ((newline && col > sizeof head) || col + 1 + wl > FOLD_AT) {
            puts_(w, "\r\n ");
            col = 1;
        } else {
            puts_(w, " ");
            col++;
        }
        newline = false;
        put_clean(w, d + s, wl, utf8);
        col += wl;
    }
    puts_(w, "\r\n");
}

/* ---------------------------------------------------------------------
 * The three parts
 */
struct plan {
    bool failed, delayed, success; /* which actions the report holds */
    bool full;                     /* return the whole message */
    bool too_big;                  /* RET=FULL asked, but over the cap: headers only */
    uint64_t ret_len;              /* octets of the original returned */
};

static void text_part(const struct dsn_report *r, const struct plan *pl, struct w *w)
{
    bool u = r->smtputf8;
    puts_(w, "This is the mail system at host ");
    puts_clean(w, r->hostname, u);
    puts_(w, ".\r\n\r\n");
    if (pl->failed)
        puts_(w, "Your message could not be delivered to one or more of its recipients.\r\n"
                 "The mail system has given up on them; the details follow.\r\n\r\n");
    if (pl->delayed)
        puts_(w, "Your message has not yet been delivered to one or more of its\r\n"
                 "recipients. The mail system keeps trying; you do not need to send it\r\n"
                 "again. The details follow.\r\n\r\n");
    if (pl->success)
        puts_(w, "As you asked, this reports where your message was delivered, or\r\n"
                 "passed on to a system that does not send such reports.\r\n\r\n");
    if (pl->too_big) {
        char n[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)r->orig_size);
        puts_(w, "The message is too large to return in full (");
        puts_(w, n);
        puts_(w, " octets);\r\nonly its header section is attached.\r\n\r\n");
    } else if (pl->full) {
        puts_(w, "Your message is attached.\r\n\r\n");
    } else {
        puts_(w, "The header section of your message is attached.\r\n\r\n");
    }
    puts_(w, "For help, write to the postmaster of ");
    puts_clean(w, r->hostname, u);
    puts_(w, " and include this report.\r\n");
    if (r->queue_id != NULL) {
        puts_(w, "Queue ID: ");
        puts_clean(w, r->queue_id, u);
        puts_(w, "\r\n");
    }
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpt[i];
        puts_(w, "\r\n<");
        puts_clean(w, rc->addr, u);
        puts_(w, ">: ");
        puts_(w, action_name(rc->action));
        puts_(w, " (");
        puts_(w, status_of(rc));
        puts_(w, ")\r\n");
        if (rc->remote_mta != NULL) {
            puts_(w, "    host ");
            puts_clean(w, rc->remote_mta, u);
            puts_(w, rc->diagnostic != NULL ? " said:\r\n" : "\r\n");
        }
        if (rc->diagnostic != NULL) {
            const char *d = rc->diagnostic;
            for (;;) {
                const char *nl = strchr(d, '\n');
                size_t l = nl != NULL ? (size_t)(nl - d) : strlen(d);
                puts_(w, "    ");
                put_clean(w, d, l, u);
                puts_(w, "\r\n");
                if (nl == NULL)
                    break;
                d = nl + 1;
            }
        }
        if (rc->action == DSN_ACTION_DELAYED && rc->retry_until > 0) {
            puts_(w, "    will be retried until ");
            put_date(w, rc->retry_until);
            puts_(w, "\r\n");
        }
    }
}

static void status_part(const struct dsn_report *r, struct w *w)
{
    bool u = r->smtputf8;
    puts_(w, "Reporting-MTA: dns; ");
    puts_clean(w, r->hostname, u);
    puts_(w, "\r\n");
    if (r->queue_id != NULL) {
        puts_(w, "X-Tern-Queue-ID: ");
        puts_clean(w, r->queue_id, u);
        puts_(w, "\r\n");
    }
    if (r->envid != NULL) {
        puts_(w, "Original-Envelope-Id: ");
        puts_(w, r->envid); /* xtext, as received (RFC 3464 §2.2.1) */
        puts_(w, "\r\n");
    }
    if (r->arrival > 0) {
        puts_(w, "Arrival-Date: ");
        put_date(w, r->arrival);
        puts_(w, "\r\n");
    }
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpt[i];
        puts_(w, "\r\n");
        if (rc->orcpt != NULL) {
            size_t mark = w->b->len;
            puts_(w, "Original-Recipient: ");
            if (put_orcpt(w, rc->orcpt, u)) {
                puts_(w, "\r\n");
            } else if (!w->err) {
                w->b->len = mark; /* not "type;xtext": left out */
                w->b->data[mark] = '\0';
            }
        }
        puts_(w,
              u && has_8bit(rc->addr) ? "Final-Recipient: utf-8; " : "Final-Recipient: rfc822; ");
        puts_clean(w, rc->addr, u);
        puts_(w, "\r\nAction: ");
        puts_(w, action_name(rc->action));
        puts_(w, "\r\nStatus: ");
        puts_(w, status_of(rc));
        puts_(w, "\r\n");
        if (rc->remote_mta != NULL) {
            puts_(w, "Remote-MTA: dns; ");
            puts_clean(w, rc->remote_mta, u);
            puts_(w, "\r\n");
        }
        if (rc->diagnostic != NULL && rc->diagnostic[0] != '\0')
            put_diagnostic(w, rc->diagnostic, u);
        if (rc->last_attempt > 0) {
            puts_(w, "Last-Attempt-Date: ");
            put_date(w, rc->last_attempt);
            puts_(w, "\r\n");
        }
        if (rc->action == DSN_ACTION_DELAYED && rc->retry_until > 0) {
            puts_(w, "Will-Retry-Until: ");
            put_date(w, rc->retry_until);
            puts_(w, "\r\n");
        }
    }
}

/* ---------------------------------------------------------------------
 * The original
 */

/* Read exactly n octets at off; false on an error or a short original. */
static bool read_full(const struct dsn_report *r, uint64_t off, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = r->read(r->read_arg, off + got, (char *)p + got, n - got);
        if (k <= 0 || (size_t)k > n - got)
            return false;
        got += (size_t)k;
    }
    return true;
}

/* Octets of the header section to return: up to and including the CRLF of
   the last field line, bounded by DSN_HEADERS_MAX (cut after a whole line). */
static bool header_len(const struct dsn_report *r, uint64_t *len)
{
    size_t n = r->orig_size < DSN_HEADERS_MAX ? (size_t)r->orig_size : DSN_HEADERS_MAX;
    struct buf h;
    buf_init(&h, n + 1);
    bool ok = true;
    uint8_t chunk[READ_CHUNK];
    for (size_t off = 0; ok && off < n;) {
        size_t k = n - off < sizeof chunk ? n - off : sizeof chunk;
        ok = read_full(r, off, chunk, k) && buf_append(&h, chunk, k) == 0;
        off += k;
        /* Stop reading once the end is in. */
        if (ok && memmem(h.data, h.len, "\r\n\r\n", 4) != NULL)
            break;
    }
    if (ok) {
        const char *e = h.data != NULL && h.len > 0 ? memmem(h.data, h.len, "\r\n\r\n", 4) : NULL;
        if (h.len >= 2 && memcmp(h.data, "\r\n", 2) == 0) {
            *len = 0; /* no header section */
        } else if (e != NULL) {
            *len = (uint64_t)(e - h.data) + 2;
        } else if (h.len == r->orig_size) {
            *len = h.len; /* no body: all of it */
        } else {
            /* cut after the last whole line */
            size_t k = h.len;
            while (k >= 2 && !(h.data[k - 2] == '\r' && h.data[k - 1] == '\n'))
                k--;
            *len = k >= 2 ? k : 0;
        }
    }
    buf_free(&h);
    return ok;
}

/* Scan original[0..len): 8-bit octets, a CRC of it, and whether needle occurs. */
static bool scan(const struct dsn_report *r, uint64_t len, const char *needle, bool *eightbit,
                 bool *found, uint32_t *crc)
{
    size_t nl = strlen(needle);
    uint8_t chunk[READ_CHUNK + 128];
    size_t carry = 0; /* octets kept from the previous chunk: nl - 1 at most */
    *eightbit = *found = false;
    *crc = 0;
    for (uint64_t off = 0; off < len;) {
        size_t k = len - off < READ_CHUNK ? (size_t)(len - off) : READ_CHUNK;
        if (!read_full(r, off, chunk + carry, k))
            return false;
        if (smtp_needs_8bit(chunk + carry, k))
            *eightbit = true;
        *crc = crc32c(*crc, chunk + carry, k);
        size_t have = carry + k;
        if (memmem(chunk, have, needle, nl) != NULL)
            *found = true;
        carry = nl - 1 < have ? nl - 1 : have;
        memmove(chunk, chunk + have - carry, carry);
        off += k;
    }
    return true;
}

static bool copy(const struct dsn_report *r, uint64_t len, struct w *w)
{
    uint8_t chunk[READ_CHUNK];
    for (uint64_t off = 0; off < len && !w->err;) {
        size_t k = len - off < sizeof chunk ? (size_t)(len - off) : sizeof chunk;
        if (!read_full(r, off, chunk, k))
            return false;
        put(w, chunk, k);
        off += k;
    }
    return true;
}

/* ---------------------------------------------------------------------
 * The report
 */
static bool unique_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > UNIQUE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool report_ok(const struct dsn_report *r)
{
    if (!name_ok(r->hostname) || r->to == NULL || r->to[0] == '\0' || has_ctl(r->to) ||
        r->unique == NULL || !unique_ok(r->unique) || r->nrcpt == 0 || r->nrcpt > DSN_RCPT_MAX ||
        r->rcpt == NULL || (r->queue_id != NULL && has_ctl(r->queue_id)) ||
        (r->envid != NULL && !smtp_xtext_valid(r->envid, strlen(r->envid))) ||
        (r->orig_size > 0 && r->read == NULL))
        return false;
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *rc = &r->rcpt[i];
        if (rc->addr == NULL || rc->addr[0] == '\0' || has_ctl(rc->addr) ||
            (rc->remote_mta != NULL && !name_ok(rc->remote_mta)) ||
            (unsigned)rc->action > DSN_ACTION_EXPANDED)
            return false;
    }
    return true;
}

static void part_head(struct w *w, const char *boundary, const char *desc, const char *type,
                      bool eightbit)
{
    puts_(w, "\r\n--");
    puts_(w, boundary);
    puts_(w, "\r\nContent-Description: ");
    puts_(w, desc);
    puts_(w, "\r\nContent-Type: ");
    puts_(w, type);
    puts_(w, eightbit ? "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                      : "\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
}

int dsn_compose(const struct dsn_report *r, struct buf *out, unsigned *flags)
{
    *flags = 0;
    if (!report_ok(r))
        return -1;
    struct plan pl = {0};
    for (size_t i = 0; i < r->nrcpt; i++) {
        enum dsn_action a = r->rcpt[i].action;
        pl.failed |= a == DSN_ACTION_FAILED;
        pl.delayed |= a == DSN_ACTION_DELAYED;
        pl.success |= a != DSN_ACTION_FAILED && a != DSN_ACTION_DELAYED;
    }
    uint64_t cap = r->return_max != 0 ? r->return_max : DSN_RETURN_MAX;
    pl.full = r->ret == SMTP_RET_FULL && pl.failed && r->orig_size <= cap;
    pl.too_big = r->ret == SMTP_RET_FULL && pl.failed && !pl.full;
    if (pl.full)
        pl.ret_len = r->orig_size;
    else if (!header_len(r, &pl.ret_len))
        return -1;

    int rc = -1;
    struct buf text, status;
    buf_init(&text, SCRATCH_MAX);
    buf_init(&status, SCRATCH_MAX);
    struct w wt = {&text, false}, ws = {&status, false};
    text_part(r, &pl, &wt);
    status_part(r, &ws);
    if (wt.err || ws.err)
        goto done;

    /* A boundary found nowhere in the content (RFC 2046 §5.1.1). */
    char boundary[80], needle[84];
    bool orig8 = false, found = true;
    uint32_t crc = 0;
    for (int k = 0; k < BOUNDARY_TRIES && found; k++) {
        if (k == 0)
            snprintf(boundary, sizeof boundary, "=_tern-%s", r->unique);
        else /* depends on the content: it cannot have been planted there */
            snprintf(boundary, sizeof boundary, "=_tern-%s-%08x-%d", r->unique, (unsigned)crc, k);
        snprintf(needle, sizeof needle, "--%s", boundary);
        if (!scan(r, pl.ret_len, needle, &orig8, &found, &crc))
            goto done;
        found = found || (text.len > 0 && memmem(text.data, text.len, needle, strlen(needle))) ||
                (status.len > 0 && memmem(status.data, status.len, needle, strlen(needle)));
    }
    if (found)
        goto done;

    bool text8 = smtp_needs_8bit((const uint8_t *)text.data, text.len);
    bool status8 = smtp_needs_8bit((const uint8_t *)status.data, status.len);
    bool head8 = has_8bit(r->to);
    bool any8 = text8 || status8 || orig8 || head8;
    bool u = r->smtputf8;

    size_t start = out->len;
    struct w w = {out, false};
    puts_(&w, "From: \"Mail Delivery System\" <MAILER-DAEMON@");
    puts_(&w, r->hostname);
    puts_(&w, ">\r\nTo: <");
    puts_clean(&w, r->to, true);
    puts_(&w, ">\r\nSubject: ");
    puts_(&w, pl.failed    ? "Undelivered Mail Returned to Sender"
              : pl.delayed ? "Delayed Mail (still being retried)"
                           : "Successful Mail Delivery Report");
    puts_(&w, "\r\nDate: ");
    put_date(&w, r->now);
    puts_(&w, "\r\nMessage-ID: <");
    puts_(&w, r->unique);
    puts_(&w, ".dsn@");
    puts_(&w, r->hostname);
    puts_(&w, ">\r\nAuto-Submitted: auto-replied\r\n"
              "MIME-Version: 1.0\r\n"
              "Content-Type: multipart/report; report-type=delivery-status;\r\n"
              "\tboundary=\"");
    puts_(&w, boundary);
    puts_(&w, any8 ? "\"\r\nContent-Transfer-Encoding: 8bit\r\n"
                   : "\"\r\nContent-Transfer-Encoding: 7bit\r\n");
    puts_(&w, "\r\nThis is a MIME-encapsulated message.\r\n");

    part_head(&w, boundary, "Notification",
              text8 ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii", text8);
    put(&w, text.data, text.len);
    part_head(&w, boundary, "Delivery report",
              u ? "message/global-delivery-status" : "message/delivery-status", status8);
    put(&w, status.data, status.len);
    const char *desc = pl.full     ? "Undelivered Message"
                       : pl.failed ? "Undelivered Message Headers"
                                   : "Message Headers";
    const char *type = pl.full ? (u ? "message/global" : "message/rfc822")
                               : (u ? "message/global-headers" : "text/rfc822-headers");
    part_head(&w, boundary, desc, type, orig8);
    bool read_ok = copy(r, pl.ret_len, &w);
    puts_(&w, "\r\n--");
    puts_(&w, boundary);
    puts_(&w, "--\r\n");
    if (w.err || !read_ok) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
        goto done;
    }
    *flags = (any8 ? DSN_OUT_8BIT : 0) | (pl.too_big ? DSN_OUT_HDRS_ONLY : 0);
    rc = 0;
done:
    buf_free(&text);
    buf_free(&status);
    return rc;
}
