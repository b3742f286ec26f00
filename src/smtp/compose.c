/*
 * compose - an Internet message from a sender, recipients, a subject, a text
 * and attachments (see compose.h for the structure and the RFCs).
 *
 * Every writer appends to a struct buf and returns 0, or -1 when the buffer's
 * max is reached (or the input is refused); compose_message turns the first
 * -1 into an error message. Header lines are folded to COMPOSE_LINE octets
 * where there is a place to fold; encoded-words and RFC 2231 continuations
 * are cut so that a folded line stays within it.
 */
#include "smtp/compose.h"
#include "core/util.h"
#include "smtp/smtp.h"

#include <stdio.h>
#include <string.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char hexchars[] = "0123456789ABCDEF";

static int put(struct buf *b, const char *s, size_t n)
{
    return buf_append(b, s, n);
}

static int puts_(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Is s[0..n) UTF-8 (ASCII included)? */
static bool is_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

/* Length of the character at s[i] (1 for ASCII and for octets that are not UTF-8). */
static size_t char_len(const char *s, size_t n, size_t i)
{
    if ((unsigned char)s[i] < 0x80)
        return 1;
    size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
    return l ? l : 1;
}

/* ---------------------------------------------------------------------
 * base64 (RFC 2045 §6.8)
 */

static void b64_quad(const uint8_t *p, size_t n, char q[4])
{
    uint32_t v = (uint32_t)p[0] << 16;
    if (n > 1)
        v |= (uint32_t)p[1] << 8;
    if (n > 2)
        v |= p[2];
    q[0] = b64chars[(v >> 18) & 63];
    q[1] = b64chars[(v >> 12) & 63];
    q[2] = n > 1 ? b64chars[(v >> 6) & 63] : '=';
    q[3] = n > 2 ? b64chars[v & 63] : '=';
}

int compose_base64(struct buf *out, const uint8_t *p, size_t n)
{
    char line[4 * 256];
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        b64_quad(p + i, n - i < 3 ? n - i : 3, line + k);
        k += 4;
        if (k == sizeof line) {
            if (put(out, line, k) < 0)
                return -1;
            k = 0;
        }
    }
    return put(out, line, k);
}

int compose_base64_lines(struct buf *out, const uint8_t *p, size_t n)
{
    char line[COMPOSE_B64_LINE + 2];
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        b64_quad(p + i, n - i < 3 ? n - i : 3, line + k);
        k += 4;
        if (k == COMPOSE_B64_LINE) {
            line[k++] = '\r';
            line[k++] = '\n';
            if (put(out, line, k) < 0)
                return -1;
            k = 0;
        }
    }
    if (k > 0) {
        line[k++] = '\r';
        line[k++] = '\n';
        return put(out, line, k);
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Quoted-printable (RFC 2045 §6.7)
 */

struct qp {
    struct buf *out;
    char line[COMPOSE_QP_LINE + 8]; /* the output line being built */
    size_t k;                       /* octets in line */
};

static int qp_flush(struct qp *q, bool hard)
{
    if (hard) {
        q->line[q->k++] = '\r';
        q->line[q->k++] = '\n';
    } else {
        q->line[q->k++] = '=';
        q->line[q->k++] = '\r';
        q->line[q->k++] = '\n';
    }
    int r = put(q->out, q->line, q->k);
    q->k = 0;
    return r;
}

/* Add one encoded unit (a literal octet or "=XX"), breaking the line softly
   first when it would pass COMPOSE_QP_LINE - 1 (room for the soft break's '='). */
static int qp_unit(struct qp *q, const char *u, size_t n)
{
    if (q->k + n > COMPOSE_QP_LINE - 1 && qp_flush(q, false) < 0)
        return -1;
    memcpy(q->line + q->k, u, n);
    q->k += n;
    return 0;
}

static int qp_octet(struct qp *q, unsigned char c, bool literal)
{
    if (literal) {
        char u = (char)c;
        return qp_unit(q, &u, 1);
    }
    char u[3] = {'=', hexchars[c >> 4], hexchars[c & 15]};
    return qp_unit(q, u, 3);
}

int compose_qp(struct buf *out, const uint8_t *p, size_t n)
{
    struct qp q = {.out = out, .k = 0};
    size_t i = 0;
    while (i < n) {
        /* one line: up to LF (a CR before it belongs to the line end) */
        size_t e = i;
        while (e < n && p[e] != '\n')
            e++;
        size_t end = e;
        if (end > i && end < n && p[end - 1] == '\r')
            end--;
        for (size_t j = i; j < end; j++) {
            unsigned char c = p[j];
            bool last = j + 1 == end;
            bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
            /* a '.' alone at the start of a line is fine (dot-stuffing), but
               "From " at the start is left as it is too: both are 7-bit safe */
            if (qp_octet(&q, c, literal) < 0)
                return -1;
        }
        if (e < n || end > i || q.k > 0) {
            if (qp_flush(&q, true) < 0)
                return -1;
        }
        i = e < n ? e + 1 : n;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Header fields
 */

/* Longest run without white space written as plain text (RFC 5322 §2.1.1
   allows 998 octets on a line; a longer run is encoded, and so cut). */
#define PLAIN_RUN_MAX 900

static bool needs_encoding(const char *v, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x80 || (c < 0x20 && c != '\t') || c == 0x7f)
            return true;
        if (c == '=' && i + 1 < n && v[i + 1] == '?')
            return true;
        run = (c == ' ' || c == '\t') ? 0 : run + 1;
        if (run > PLAIN_RUN_MAX)
            return true;
    }
    return false;
}

/* RFC 2047 "B" encoded-words for s[0..n) at column *col, the first after a
   space when lead, the others each on a folded line of its own. */
static int encoded_words(struct buf *out, size_t *col, const char *s, size_t n, bool lead)
{
    static const char pre[] = "=?UTF-8?B?";
    const size_t overhead = sizeof pre - 1 + 2; /* "=?UTF-8?B?" and "?=" */
    size_t i = 0;
    bool first = true;
    while (i < n) {
        /* the word starts at column `start`; it ends by COMPOSE_LINE when it can */
        size_t start = first ? *col + (lead ? 1 : 0) : 1;
        size_t wmax = COMPOSE_WORD_MAX;
        if (start < COMPOSE_LINE && COMPOSE_LINE - start < wmax)
            wmax = COMPOSE_LINE - start;
        size_t max = wmax > overhead ? (wmax - overhead) / 4 * 3 : 0;
        if (max < 6)
            max = 6; /* room for any character */
        size_t take = 0;
        while (i + take < n) {
            size_t l = char_len(s, n, i + take);
            if (take + l > max)
                break;
            take += l;
        }
        const char *sep = first ? (lead ? " " : "") : "\r\n ";
        if (!first)
            *col = 0;
        size_t before = out->len;
        if (puts_(out, sep) < 0 || puts_(out, pre) < 0 ||
            compose_base64(out, (const uint8_t *)s + i, take) < 0 || puts_(out, "?=") < 0)
            return -1;
        *col += out->len - before - (first ? 0 : 2);
        i += take;
        first = false;
    }
    return 0;
}

/* Plain text folded at spaces: s[0..n) from column *col, after a space. */
static int folded_text(struct buf *out, size_t *col, const char *s, size_t n)
{
    if (puts_(out, " ") < 0)
        return -1;
    (*col)++;
    size_t i = 0;
    while (i < n) {
        /* the next word and the white space before it */
        size_t ws = i;
        while (ws < n && (s[ws] == ' ' || s[ws] == '\t'))
            ws++;
        size_t we = ws;
        while (we < n && s[we] != ' ' && s[we] != '\t')
            we++;
        size_t len = we - i;
        if (i > 0 && ws > i && we > ws && *col + len > COMPOSE_LINE) {
            /* fold: the white space moves to the start of the next line */
            if (puts_(out, "\r\n") < 0)
                return -1;
            *col = 0;
        }
        if (put(out, s + i, len) < 0)
            return -1;
        *col += len;
        i = we;
    }
    return 0;
}

int compose_header_text(struct buf *out, const char *name, const char *value)
{
    size_t n = strlen(value);
    if (!is_utf8(value, n) || memchr(value, '\r', n) || memchr(value, '\n', n))
        return -1;
    size_t col = strlen(name) + 1;
    if (puts_(out, name) < 0 || puts_(out, ":") < 0)
        return -1;
    int r = needs_encoding(value, n) ? encoded_words(out, &col, value, n, true)
                                     : folded_text(out, &col, value, n);
    if (r < 0)
        return -1;
    return puts_(out, "\r\n");
}

/* ---------------------------------------------------------------------
 * Mailboxes
 */

bool compose_parse_mailbox(const char *s, struct compose_mailbox *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    const char *addr = s + i;
    size_t alen = n - i;
    if (n > i && s[n - 1] == '>') {
        const char *lt = NULL;
        for (size_t j = n - 1; j-- > i;) {
            if (s[j] == '<') {
                lt = s + j;
                break;
            }
        }
        if (!lt)
            return false;
        addr = lt + 1;
        alen = (size_t)(s + n - 1 - addr);
        size_t de = (size_t)(lt - s);
        while (de > i && (s[de - 1] == ' ' || s[de - 1] == '\t'))
            de--;
        if (de > i) {
            const char *d = s + i;
            size_t dl = de - i;
            if (dl >= 2 && d[0] == '"' && d[dl - 1] == '"') {
                d++;
                dl -= 2;
            }
            if (!is_utf8(d, dl))
                return false;
            for (size_t j = 0; j < dl; j++)
                if ((unsigned char)d[j] < 0x20 || d[j] == 0x7f)
                    return false;
            if (dl > 0) {
                out->display = d;
                out->display_len = dl;
            }
        }
    }
    char path[SMTP_PATH_MAX + 3];
    if (alen == 0 || alen > SMTP_PATH_MAX)
        return false;
    path[0] = '<';
    memcpy(path + 1, addr, alen);
    path[alen + 1] = '>';
    struct smtp_path p;
    const char *end;
    if (smtp_path_parse(path, alen + 2, SMTP_PATH_FORWARD, true, &p, &end) != NULL ||
        end != path + alen + 2 || p.postmaster || p.null)
        return false;
    out->addr = addr;
    out->addr_len = alen;
    return true;
}

/* RFC 5322 atext and the white space between words. */
static bool phrase_plain(const char *s, size_t n)
{
    static const char atext[] = "!#$%&'*+-/=?^_`{|}~ ";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (c == '\0' || !strchr(atext, c)))
            return false;
    }
    return n > 0 && s[0] != ' ' && s[n - 1] != ' ';
}

/* One mailbox at *col after a space, folding before it when it does not fit. */
static int mailbox(struct buf *out, size_t *col, const char *s, bool first)
{
    struct compose_mailbox mb;
    if (!compose_parse_mailbox(s, &mb))
        return -2;
    const char *d = mb.display;
    size_t dl = mb.display_len;
    bool enc = d && needs_encoding(d, dl);
    /* its length on the line (of an encoded name, its first word's), and a
       ',' after it */
    size_t words = (dl + 2) / 3 * 4 + 12;
    size_t est =
        mb.addr_len + 1 +
        (d ? (enc ? 3 + (words < COMPOSE_WORD_MAX ? words : COMPOSE_WORD_MAX) : dl + 3) : 0);
    for (size_t j = 0; d && !enc && !phrase_plain(d, dl) && j < dl; j++)
        est += (d[j] == '"' || d[j] == '\\') ? 2 : 0;
    if (d && !enc && !phrase_plain(d, dl))
        est += 2;
    if (!first) {
        if (puts_(out, ",") < 0)
            return -1;
        (*col)++;
        if (*col + 1 + est > COMPOSE_LINE) {
            if (puts_(out, "\r\n") < 0)
                return -1;
            *col = 0;
        }
    }
    if (enc) {
        if (encoded_words(out, col, d, dl, true) < 0)
            return -1;
    } else if (d && phrase_plain(d, dl)) {
        if (puts_(out, " ") < 0 || put(out, d, dl) < 0)
            return -1;
        *col += 1 + dl;
    } else if (d) {
        size_t before = out->len;
        if (puts_(out, " \"") < 0)
            return -1;
        for (size_t j = 0; j < dl; j++) {
            if ((d[j] == '"' || d[j] == '\\') && puts_(out, "\\") < 0)
                return -1;
            if (put(out, d + j, 1) < 0)
                return -1;
        }
        if (puts_(out, "\"") < 0)
            return -1;
        *col += out->len - before;
    }
    size_t before = out->len;
    if (d ? puts_(out, " <") < 0 || put(out, mb.addr, mb.addr_len) < 0 || puts_(out, ">") < 0
          : puts_(out, " ") < 0 || put(out, mb.addr, mb.addr_len) < 0)
        return -1;
    *col += out->len - before;
    return 0;
}

/* "Name: mailbox, mailbox" CRLF; -2 for a bad mailbox. */
static int address_field(struct buf *out, const char *name, const char *const *list, size_t n,
                         const char **bad)
{
    size_t col = strlen(name) + 1;
    if (puts_(out, name) < 0 || puts_(out, ":") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int r = mailbox(out, &col, list[i], i == 0);
        if (r == -2)
            *bad = list[i];
        if (r < 0)
            return r;
    }
    return puts_(out, "\r\n");
}

/* ---------------------------------------------------------------------
 * Parameters (RFC 2045 §5.1, RFC 2231)
 */

static bool is_attr_char(unsigned char c)
{
    /* RFC 2231 attribute-char: token characters but '*', '\'' and '%' */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c));
}

int compose_param(struct buf *out, size_t *col, const char *name, const char *value)
{
    size_t n = strlen(value), nl = strlen(name);
    if (!is_utf8(value, n))
        return -1;
    bool ascii = true;
    size_t quoted = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c >= 0x7f)
            ascii = false;
        quoted += (c == '"' || c == '\\') ? 2 : 1;
    }
    /* "; " + name=quoted, folded onto its own line when it does not fit */
    if (ascii && 1 + nl + 1 + quoted <= COMPOSE_LINE - 1) {
        if (puts_(out, ";") < 0)
            return -1;
        (*col)++;
        if (*col + 1 + nl + 1 + quoted > COMPOSE_LINE) {
            if (puts_(out, "\r\n") < 0)
                return -1;
            *col = 0;
        }
        size_t before = out->len;
        if (puts_(out, " ") < 0 || puts_(out, name) < 0 || puts_(out, "=\"") < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if ((value[i] == '"' || value[i] == '\\') && puts_(out, "\\") < 0)
                return -1;
            if (put(out, value + i, 1) < 0)
                return -1;
        }
        if (puts_(out, "\"") < 0)
            return -1;
        *col += out->len - before;
        return 0;
    }
    /* RFC 2231 extended value: utf-8''%XX..., in continuations on lines of their own. */
    char seg[COMPOSE_LINE + 32];
    size_t i = 0;
    size_t idx = 0; /* continuation number: one per output line */
    bool single = false;
    {
        size_t enc = 7; /* "utf-8''" */
        for (size_t j = 0; j < n; j++)
            enc += is_attr_char((unsigned char)value[j]) ? 1 : 3;
        single = 1 + nl + 2 + enc <= COMPOSE_LINE - 1;
    }
    do {
        /* " name*N*=" then as much as fits */
        size_t k = (size_t)(single ? snprintf(seg, sizeof seg, " %s*=", name)
                                   : snprintf(seg, sizeof seg, " %s*%zu*=", name, idx));
        if (idx == 0) {
            memcpy(seg + k, "utf-8''", 7);
            k += 7;
        }
        size_t limit = COMPOSE_LINE - 1; /* the ';' after it */
        bool any = false;
        while (i < n) {
            /* a whole character per step, so that a segment never cuts one */
            size_t l = char_len(value, n, i), need = 0;
            for (size_t j = 0; j < l; j++)
                need += is_attr_char((unsigned char)value[i + j]) ? 1 : 3;
            if (k + need > limit && any)
                break;
            for (size_t j = 0; j < l; j++) {
                unsigned char c = (unsigned char)value[i + j];
                if (is_attr_char(c)) {
                    seg[k++] = (char)c;
                } else {
                    seg[k++] = '%';
                    seg[k++] = hexchars[c >> 4];
                    seg[k++] = hexchars[c & 15];
                }
            }
            i += l;
            any = true;
        }
        if (puts_(out, ";\r\n") < 0 || put(out, seg, k) < 0)
            return -1;
        *col = k;
        idx++;
    } while (i < n);
    return 0;
}

/* ---------------------------------------------------------------------
 * Media types
 */

const char *compose_content_type(const char *filename)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"txt", "text/plain"},
        {"text", "text/plain"},
        {"log", "text/plain"},
        {"md", "text/markdown"},
        {"csv", "text/csv"},
        {"html", "text/html"},
        {"htm", "text/html"},
        {"css", "text/css"},
        {"ics", "text/calendar"},
        {"vcf", "text/vcard"},
        {"xml", "application/xml"},
        {"json", "application/json"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"tgz", "application/gzip"},
        {"bz2", "application/x-bzip2"},
        {"xz", "application/x-xz"},
        {"zst", "application/zstd"},
        {"tar", "application/x-tar"},
        {"7z", "application/x-7z-compressed"},
        {"doc", "application/msword"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"xls", "application/vnd.ms-excel"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"ppt", "application/vnd.ms-powerpoint"},
        {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
        {"odt", "application/vnd.oasis.opendocument.text"},
        {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
        {"rtf", "application/rtf"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"svg", "image/svg+xml"},
        {"bmp", "image/bmp"},
        {"tif", "image/tiff"},
        {"tiff", "image/tiff"},
        {"ico", "image/vnd.microsoft.icon"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},
        {"flac", "audio/flac"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"pem", "application/x-pem-file"},
        {"asc", "application/pgp-signature"},
        {"sig", "application/pgp-signature"},
    };
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base || dot[1] == '\0')
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (ascii_ieq(dot + 1, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

bool compose_boundary_valid(const char *b)
{
    static const char bchars[] = "'()+_,-./:=? ";
    size_t n = strlen(b);
    if (n == 0 || n > COMPOSE_BOUNDARY_MAX || b[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !strchr(bchars, c))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------------
 * Dot-stuffing (RFC 5321 §4.5.2)
 */

int compose_dot_stuff(struct buf *out, const uint8_t *p, size_t n, bool *at_line_start)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (*at_line_start && p[i] == '.') {
            if (put(out, (const char *)p + run, i - run) < 0 || puts_(out, ".") < 0)
                return -1;
            run = i;
        }
        *at_line_start = p[i] == '\n';
    }
    return put(out, (const char *)p + run, n - run);
}

/* ---------------------------------------------------------------------
 * The message
 */

/* How the text goes: 7bit as it is, or quoted-printable. */
static bool text_is_7bit(const uint8_t *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n') {
            col = 0;
            continue;
        }
        if (c == '\r' && i + 1 < n && p[i + 1] == '\n')
            continue;
        if (c >= 0x80 || c == 0 || c == '\r' || ++col > 998)
            return false;
    }
    return true;
}

/* The text with LF line ends made CRLF (7bit). */
static int text_crlf(struct buf *out, const uint8_t *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            if (put(out, (const char *)p + run, i - run) < 0 || puts_(out, "\r\n") < 0)
                return -1;
            run = i + 1;
        }
    }
    if (put(out, (const char *)p + run, n - run) < 0)
        return -1;
    if (n > 0 && p[n - 1] != '\n')
        return puts_(out, "\r\n");
    return 0;
}

static bool contains(const uint8_t *p, size_t n, const char *s)
{
    size_t l = strlen(s);
    if (l == 0 || n < l)
        return false;
    for (size_t i = 0; i + l <= n; i++)
        if (p[i] == (uint8_t)s[0] && memcmp(p + i, s, l) == 0)
            return true;
    return false;
}

/* Content-Type, Content-Transfer-Encoding, blank line, the text. */
static int text_part(struct buf *out, const uint8_t *p, size_t n, const char *boundary)
{
    bool seven = text_is_7bit(p, n) && !(boundary && contains(p, n, boundary));
    bool utf8 = is_utf8((const char *)p, n);
    if (puts_(out, "Content-Type: text/plain; charset=") < 0 ||
        puts_(out, seven  ? "us-ascii"
                   : utf8 ? "utf-8"
                          : "unknown-8bit") < 0 ||
        puts_(out, "\r\nContent-Transfer-Encoding: ") < 0 ||
        puts_(out, seven ? "7bit\r\n\r\n" : "quoted-printable\r\n\r\n") < 0)
        return -1;
    return seven ? text_crlf(out, p, n) : compose_qp(out, p, n);
}

static int attachment(struct buf *out, const struct compose_part *a)
{
    size_t col = strlen("Content-Type: ") + strlen(a->content_type);
    if (puts_(out, "Content-Type: ") < 0 || puts_(out, a->content_type) < 0)
        return -1;
    if (compose_param(out, &col, "name", a->filename) < 0)
        return -1;
    col = strlen("Content-Disposition: attachment");
    if (puts_(out, "\r\nContent-Disposition: attachment") < 0 ||
        compose_param(out, &col, "filename", a->filename) < 0)
        return -1;
    if (puts_(out, "\r\nContent-Transfer-Encoding: base64\r\n\r\n") < 0)
        return -1;
    return compose_base64_lines(out, a->data, a->len);
}

static bool field_is(const char *name, const char *want)
{
    return ascii_ieq(name, want);
}

/* Does an extra field replace ours? */
static bool overridden(const struct compose_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nfields; i++)
        if (field_is(m->fields[i].name, name))
            return true;
    return false;
}

static bool valid_field_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > COMPOSE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127 || s[i] == ':')
            return false;
    return true;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -1;                                                                                 \
    } while (0)
#define FULL() FAIL("the message is larger than %zu octets", out->max)

int compose_message(const struct compose_msg *m, struct buf *out, char *err, size_t errlen)
{
    const char *bad = NULL;
    for (size_t i = 0; i < m->nfields; i++) {
        const char *name = m->fields[i].name;
        if (!valid_field_name(name))
            FAIL("\"%s\" is not a header field name", name);
        if (field_is(name, "MIME-Version") || ascii_nieq(name, "Content-", 8))
            FAIL("%s: Tern writes the MIME fields itself", name);
    }
    if (m->nparts > 0 && (!m->boundary || !compose_boundary_valid(m->boundary)))
        FAIL("bad MIME boundary");

    if (!overridden(m, "Date") && compose_header_text(out, "Date", m->date) < 0)
        FULL();
    if (!m->from)
        FAIL("no sender");
    if (!overridden(m, "From")) {
        int r = address_field(out, "From", &m->from, 1, &bad);
        if (r == -2)
            FAIL("\"%s\" is not an address (local@domain or Name <local@domain>)", bad);
        if (r < 0)
            FULL();
    }
    if (m->nto > 0 && !overridden(m, "To")) {
        int r = address_field(out, "To", m->to, m->nto, &bad);
        if (r == -2)
            FAIL("\"%s\" is not an address (local@domain or Name <local@domain>)", bad);
        if (r < 0)
            FULL();
    }
    if (m->ncc > 0 && !overridden(m, "Cc")) {
        int r = address_field(out, "Cc", m->cc, m->ncc, &bad);
        if (r == -2)
            FAIL("\"%s\" is not an address (local@domain or Name <local@domain>)", bad);
        if (r < 0)
            FULL();
    }
    if (m->subject && !overridden(m, "Subject")) {
        size_t n = strlen(m->subject);
        if (!is_utf8(m->subject, n) || memchr(m->subject, '\n', n) || memchr(m->subject, '\r', n))
            FAIL("the subject is not one line of UTF-8 text");
        if (compose_header_text(out, "Subject", m->subject) < 0)
            FULL();
    }
    if (!overridden(m, "Message-ID") && compose_header_text(out, "Message-ID", m->message_id) < 0)
        FULL();
    if (puts_(out, "MIME-Version: 1.0\r\n") < 0)
        FULL();
    for (size_t i = 0; i < m->nfields; i++) {
        const char *v = m->fields[i].value;
        size_t n = strlen(v);
        if (!is_utf8(v, n) || memchr(v, '\n', n) || memchr(v, '\r', n))
            FAIL("%s: the value is not one line of UTF-8 text", m->fields[i].name);
        if (compose_header_text(out, m->fields[i].name, v) < 0)
            FULL();
    }

    if (m->nparts == 0) {
        if (text_part(out, m->body, m->body_len, NULL) < 0)
            FULL();
        return 0;
    }
    if (puts_(out, "Content-Type: multipart/mixed; boundary=\"") < 0 ||
        puts_(out, m->boundary) < 0 ||
        puts_(out, "\"\r\n\r\nThis is a message with attachments in MIME format.\r\n") < 0)
        FULL();
    if (m->body_len > 0) {
        if (puts_(out, "\r\n--") < 0 || puts_(out, m->boundary) < 0 || puts_(out, "\r\n") < 0 ||
            text_part(out, m->body, m->body_len, m->boundary) < 0)
            FULL();
    }
    for (size_t i = 0; i < m->nparts; i++) {
        if (puts_(out, "\r\n--") < 0 || puts_(out, m->boundary) < 0 || puts_(out, "\r\n") < 0)
            FULL();
        int r = attachment(out, &m->parts[i]);
        if (r < 0) {
            if (!is_utf8(m->parts[i].filename, strlen(m->parts[i].filename)))
                FAIL("the file name \"%s\" is not UTF-8", m->parts[i].filename);
            FULL();
        }
    }
    if (puts_(out, "\r\n--") < 0 || puts_(out, m->boundary) < 0 || puts_(out, "--\r\n") < 0)
        FULL();
    return 0;
}
