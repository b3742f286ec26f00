/*
 * reply - format the replies Tern sends, and parse the replies the client
 * side reads (smtp_reply_*, declared in client.h).
 *
 * RFCs: 5321 §4.2 (Reply-line: Reply-code [SP / "-" textstring] CRLF;
 * multi-line replies use "-" on every line but the last), §4.2.1 (reply
 * code classes; 1yz is unused by SMTP), §4.5.3.1.5 (a reply line is at most
 * 512 octets including CRLF), 2034 / 3463 (enhanced status code after the
 * reply code on every line, its syntax).
 *
 * Pure: writes into the caller's buffer or struct only. Control characters in
 * the text (a CR, say, from an echoed client string) are written as spaces,
 * so a reply can never be split or smuggled by its text, and the parsed text
 * of a peer's reply can go into a log line or a DSN header without a break.
 */
#include "smtp/smtp.h"
#include "smtp/client.h"

#include <string.h>

#define REPLY_LINE_MAX 510 /* octets of a reply line without its CRLF */
#define ENH_MAX 15         /* longest enhanced status code written ("5.123.123" is 9) */

/* Write one reply line (without CRLF) to out when out is not NULL; returns its
   length, at most min(max, REPLY_LINE_MAX). */
static size_t line(char *out, size_t max, int code, char sep, const char *enh, size_t enhlen,
                   const char *t, size_t tlen)
{
    char head[3 + 1 + ENH_MAX + 1];
    size_t h = 0, n = 0;
    unsigned c = (unsigned)(code < 0 ? -code : code) % 1000;
    head[h++] = (char)('0' + c / 100);
    head[h++] = (char)('0' + c / 10 % 10);
    head[h++] = (char)('0' + c % 10);
    head[h++] = sep;
    if (enhlen > 0) {
        memcpy(head + h, enh, enhlen);
        h += enhlen;
        if (tlen > 0)
            head[h++] = ' ';
    }
    if (max > REPLY_LINE_MAX)
        max = REPLY_LINE_MAX;
    for (size_t i = 0; i < h && n < max; i++, n++)
        if (out != NULL)
            out[n] = head[i];
    for (size_t i = 0; i < tlen && n < max; i++, n++) {
        unsigned char ch = (unsigned char)t[i];
        if (out != NULL)
            out[n] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    return n;
}

size_t smtp_reply_format(char *out, size_t outlen, int code, const char *enh, const char *text)
{
    if (outlen == 0)
        return 0;
    out[0] = '\0';
    if (text == NULL)
        text = "";
    size_t enhlen = 0;
    if (enh != NULL) {
        while (enh[enhlen] != '\0' && enhlen < ENH_MAX &&
               ((enh[enhlen] >= '0' && enh[enhlen] <= '9') || enh[enhlen] == '.'))
            enhlen++;
        if (enh[enhlen] != '\0')
            enhlen = 0; /* not a status code: leave it out rather than send junk */
    }
    size_t tlen = strlen(text);
    if (tlen > 0 && text[tlen - 1] == '\n')
        tlen--;

    /* How many whole lines fit in outlen - 1 (a NUL always follows)? */
    size_t cap = outlen - 1, total = 0, nfit = 0, nlines = 0;
    for (size_t i = 0;;) {
        const char *nl = memchr(text + i, '\n', tlen - i);
        size_t j = nl != NULL ? (size_t)(nl - text) : tlen;
        size_t l = line(NULL, REPLY_LINE_MAX, code, ' ', enh, enhlen, text + i, j - i) + 2;
        nlines++;
        if (total + l <= cap && nfit + 1 == nlines) {
            total += l;
            nfit++;
        }
        if (nl == NULL)
            break;
        i = j + 1;
    }
    if (nfit == 0 && cap < 3 + 2)
        return 0;

    size_t o = 0;
    for (size_t i = 0, k = 0;; k++) {
        const char *nl = memchr(text + i, '\n', tlen - i);
        size_t j = nl != NULL ? (size_t)(nl - text) : tlen;
        bool last = k + 1 >= nfit;
        /* when nothing fits whole, the first line is cut to the space left */
        o += line(out + o, cap - o - 2, code, last ? ' ' : '-', enh, enhlen, text + i, j - i);
        out[o++] = '\r';
        out[o++] = '\n';
        if (last || nl == NULL)
            break;
        i = j + 1;
    }
    out[o] = '\0';
    return o;
}

bool smtp_reply_line_parse(const char *line_, size_t len, int *code, bool *last, const char **text)
{
    const char *s = line_;
    if (len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n')
        len -= 2;
    if (len < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        return false;
    for (size_t i = 3; i < len; i++)
        if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
            return false;
    if (len > 3 && s[3] != ' ' && s[3] != '-')
        return false;
    *code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    *last = len == 3 || s[3] == ' ';
    *text = len > 3 ? s + 4 : s + 3;
    return true;
}

/* ---------------------------------------------------------------------
 * The client side: multi-line replies with explicit bounds
 */
void smtp_reply_init(struct smtp_reply *r)
{
    r->code = 0;
    r->enh[0] = '\0';
    r->text[0] = '\0';
    r->text_len = 0;
    r->lines = 0;
    r->truncated = false;
    r->done = false;
    r->malformed = false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool smtp_enh_valid(const char *s, size_t len)
{
    if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < len && is_digit(s[i]))
            i++;
        size_t nd = i - start;
        if (nd < 1 || nd > 3 || (nd > 1 && s[start] == '0'))
            return false;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == len;
}

/* Append to r->text, control characters as spaces, cutting at the limit
   (never inside a UTF-8 sequence). */
static void text_append(struct smtp_reply *r, const char *t, size_t n)
{
    if (r->truncated)
        return;
    for (size_t i = 0; i < n; i++) {
        if (r->text_len == SMTP_REPLY_TEXT_MAX) {
            r->truncated = true;
            /* Drop a UTF-8 sequence cut short at the end. */
            size_t k = r->text_len, back = 0;
            while (k > 0 && back < 4 && ((unsigned char)r->text[k - 1] & 0xC0) == 0x80) {
                k--;
                back++;
            }
            if (k > 0 && (unsigned char)r->text[k - 1] >= 0xC0) {
                unsigned char lead = (unsigned char)r->text[k - 1];
                size_t want = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : 1;
                if (back < want)
                    r->text_len = k - 1;
            }
            break;
        }
        unsigned char ch = (unsigned char)t[i];
        r->text[r->text_len++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    r->text[r->text_len] = '\0';
}

static enum smtp_reply_step reply_bad(struct smtp_reply *r)
{
    r->malformed = true;
    return SMTP_REPLY_MALFORMED;
}

enum smtp_reply_step smtp_reply_feed(struct smtp_reply *r, const char *s, size_t len)
{
    if (r->malformed || r->done)
        return reply_bad(r);
    if (len > SMTP_REPLY_LINE_MAX || len < 3 || s[0] < '2' || s[0] > '5' || !is_digit(s[1]) ||
        !is_digit(s[2]))
        return reply_bad(r);
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (r->lines > 0 && code != r->code)
        return reply_bad(r);
    if (len > 3 && s[3] != ' ' && s[3] != '-')
        return reply_bad(r);
    if (r->lines >= SMTP_REPLY_LINES_MAX)
        return reply_bad(r);
    bool last = len == 3 || s[3] == ' ';
    const char *t = len > 3 ? s + 4 : s + 3;
    size_t tlen = len > 3 ? len - 4 : 0;

    /* The enhanced status code: the first word of the text. */
    size_t w = 0;
    while (w < tlen && t[w] != ' ')
        w++;
    if (r->lines == 0) {
        r->code = code;
        if (w < SMTP_ENH_MAX && smtp_enh_valid(t, w) && t[0] == s[0]) {
            memcpy(r->enh, t, w);
            r->enh[w] = '\0';
        }
    }
    if (r->enh[0] != '\0' && w == strlen(r->enh) && memcmp(t, r->enh, w) == 0) {
        t += w;
        tlen -= w;
        if (tlen > 0) {
            t++;
            tlen--;
        }
    }
    if (r->lines > 0 && !r->truncated) {
        if (r->text_len == SMTP_REPLY_TEXT_MAX) {
            r->truncated = true;
        } else {
            r->text[r->text_len++] = '\n'; /* the join, not sanitized */
            r->text[r->text_len] = '\0';
        }
    }
    text_append(r, t, tlen);
    r->lines++;
    if (last) {
        r->done = true;
        return SMTP_REPLY_DONE;
    }
    return SMTP_REPLY_MORE;
}

enum smtp_outcome smtp_reply_outcome(int code)
{
    if (code >= 200 && code <= 299)
        return SMTP_OUTCOME_OK;
    if (code >= 300 && code <= 399)
        return SMTP_OUTCOME_CONTINUE;
    if (code >= 500 && code <= 599)
        return SMTP_OUTCOME_BOUNCE;
    return SMTP_OUTCOME_DEFER;
}

void smtp_reply_status(const struct smtp_reply *r, char *out)
{
    const char *s = "4.5.0";
    if (r->done && !r->malformed) {
        if (r->enh[0] != '\0')
            s = r->enh;
        else if (r->code / 100 == 2)
            s = "2.0.0";
        else if (r->code / 100 == 4)
            s = "4.0.0";
        else if (r->code / 100 == 5)
            s = "5.0.0";
    }
    size_t n = strlen(s);
    if (n >= SMTP_ENH_MAX)
        n = SMTP_ENH_MAX - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

size_t smtp_reply_describe(const struct smtp_reply *r, char *out, size_t outlen)
{
    if (outlen == 0)
        return 0;
    char head[3 + 1 + SMTP_ENH_MAX + 1];
    size_t h = 0, o = 0;
    if (r->code >= 100 && r->code <= 999) {
        head[h++] = (char)('0' + r->code / 100);
        head[h++] = (char)('0' + r->code / 10 % 10);
        head[h++] = (char)('0' + r->code % 10);
        size_t el = strlen(r->enh);
        if (el > 0) {
            head[h++] = ' ';
            memcpy(head + h, r->enh, el);
            h += el;
        }
        if (r->text_len > 0)
            head[h++] = ' ';
    }
    for (size_t i = 0; i < h && o + 1 < outlen; i++)
        out[o++] = head[i];
    for (size_t i = 0; i < r->text_len && o + 1 < outlen; i++)
        out[o++] = r->text[i];
    out[o] = '\0';
    return o;
}
