/*
 * reply - format the replies Tern sends and parse the reply lines it reads.
 *
 * RFCs: 5321 §4.2 (Reply-line: Reply-code [SP / "-" textstring] CRLF;
 * multi-line replies use "-" on every line but the last), §4.5.3.1.5 (a
 * reply line is at most 512 octets including CRLF), 2034 / 3463 (enhanced
 * status code after the reply code on every line).
 *
 * Pure: writes into the caller's buffer only. Control characters in the
 * text (a CR, say, from an echoed client string) are written as spaces, so
 * a reply can never be split or smuggled by its text.
 */
#include "smtp/smtp.h"

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
