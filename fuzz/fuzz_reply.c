/*
 * fuzz_reply - libFuzzer target for the client's reply parser, the EHLO
 * keyword parser and the MAIL/RCPT formatters (src/smtp/reply.c, ehlo.c;
 * RFC 5321 §4.2, RFC 3463, RFC 3461 §4). The input is a peer's replies: it is
 * cut into lines at LF (a CR before the LF is removed) and fed to one parser
 * after another, a new one after each DONE or MALFORMED.
 * Invariants:
 *  - MALFORMED sets malformed, DONE sets done with a code in 200..599, MORE
 *    neither; at most SMTP_REPLY_LINES_MAX lines;
 *  - the text is NUL-terminated at text_len, holds no NUL, CR or other
 *    control character but the '\n' joins, and at most SMTP_REPLY_TEXT_MAX
 *    octets;
 *  - the enhanced code is "" or valid RFC 3463 of the reply's class; the
 *    status is the enhanced code, X.0.0 of the class or 4.5.0;
 *  - a line the old single-line parser accepts is never MALFORMED as the
 *    first line of a reply;
 *  - smtp_reply_describe stays within its buffer; EHLO parsing sets size_max
 *    only with size, and nothing at all for a reply that is not a DONE 250;
 *  - MAIL and RCPT commands built from the text are -1 or one CRLF-ended
 *    line; xtext encoding decodes back to its input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/client.h"

static struct smtp_reply reply;

static void check_done(const struct smtp_reply *r)
{
    char st[SMTP_ENH_MAX], d[128];
    smtp_reply_status(r, st);
    if (!smtp_enh_valid(st, strlen(st)))
        abort();
    if (r->malformed ? strcmp(st, "4.5.0") != 0
                     : (r->enh[0] != '\0' && strcmp(st, r->enh) != 0) ||
                           (r->enh[0] == '\0' && (st[0] != '0' + r->code / 100 || st[0] == '3') &&
                            strcmp(st, "4.5.0") != 0))
        abort();
    size_t n = smtp_reply_describe(r, d, sizeof d);
    if (n >= sizeof d || d[n] != '\0' || strlen(d) != n)
        abort();

    struct smtp_peer_ext e;
    smtp_ehlo_parse(r, &e);
    if (e.size_max != 0 && !e.size)
        abort();
    if (r->code != 250 || !r->done || r->malformed) {
        static const struct smtp_peer_ext zero;
        if (memcmp(&e, &zero, sizeof e) != 0)
            abort();
    }
    e.dsn = true;
    e.size = true;

    /* The text as addresses and parameters. */
    char addr[300], cmd[1200], x[1000], back[300];
    size_t al = r->text_len < sizeof addr - 1 ? r->text_len : sizeof addr - 1;
    memcpy(addr, r->text, al);
    addr[al] = '\0';
    for (size_t i = 0; i < al; i++)
        if (addr[i] == '\n')
            addr[i] = '\0'; /* the first line */
    long l = smtp_format_mail(cmd, sizeof cmd, addr, &e, (uint64_t)r->text_len, true, true,
                              SMTP_RET_FULL, r->enh[0] != '\0' ? r->enh : NULL);
    if (l >= 0 && ((size_t)l != strlen(cmd) || l < 2 || memchr(cmd, '\n', (size_t)l - 1) ||
                   memchr(cmd, '\r', (size_t)l - 2) || strcmp(cmd + l - 2, "\r\n") != 0))
        abort();
    l = smtp_format_rcpt(cmd, sizeof cmd, addr, (unsigned)r->lines & 0xf, NULL, &e);
    if (l >= 0 && ((size_t)l != strlen(cmd) || memchr(cmd, '\n', (size_t)l - 1) ||
                   strcmp(cmd + l - 2, "\r\n") != 0))
        abort();
    long xl = smtp_xtext_encode(addr, strlen(addr), x, sizeof x);
    if (xl >= 0) {
        if (!smtp_xtext_valid(x, (size_t)xl))
            abort();
        long bl = smtp_xtext_decode(x, (size_t)xl, back, sizeof back);
        if (bl != (long)strlen(addr) || strcmp(back, addr) != 0)
            abort();
        l = smtp_format_rcpt(cmd, sizeof cmd, "a@b", SMTP_NOTIFY_NEVER, NULL, &e);
        if (l < 0)
            abort();
    }
}

static void check(const struct smtp_reply *r, enum smtp_reply_step st)
{
    if ((st == SMTP_REPLY_MALFORMED) != r->malformed)
        abort();
    if (st == SMTP_REPLY_DONE && (!r->done || r->code < 200 || r->code > 599))
        abort();
    if (st == SMTP_REPLY_MORE && (r->done || r->malformed))
        abort();
    if (r->lines > SMTP_REPLY_LINES_MAX || r->text_len > SMTP_REPLY_TEXT_MAX ||
        r->text[r->text_len] != '\0' || strlen(r->text) != r->text_len)
        abort();
    for (size_t i = 0; i < r->text_len; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            abort();
    }
    if (r->enh[0] != '\0' &&
        (!smtp_enh_valid(r->enh, strlen(r->enh)) || r->enh[0] != '0' + r->code / 100))
        abort();
    if (st != SMTP_REPLY_MORE)
        check_done(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    smtp_reply_init(&reply);
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(in + pos, '\n', size - pos);
        size_t end = nl != NULL ? (size_t)(nl - in) : size;
        size_t len = end - pos;
        if (len > 0 && in[pos + len - 1] == '\r')
            len--;
        const char *line = in + pos;

        int code;
        bool last;
        const char *text;
        bool old_ok =
            len <= SMTP_REPLY_LINE_MAX && smtp_reply_line_parse(line, len, &code, &last, &text);
        bool first = reply.lines == 0 && !reply.malformed;
        enum smtp_reply_step st = smtp_reply_feed(&reply, line, len);
        if (first && old_ok &&
            (st == SMTP_REPLY_MALFORMED || reply.code != code || (st == SMTP_REPLY_DONE) != last))
            abort();
        check(&reply, st);
        if (st != SMTP_REPLY_MORE)
            smtp_reply_init(&reply);
        pos = end + 1;
    }
    if (reply.lines > 0)
        check(&reply, SMTP_REPLY_MORE);
    return 0;
}
