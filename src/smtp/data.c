/*
 * data - the DATA and BDAT content decoder: end-of-data detection,
 * dot-unstuffing, bare CR / LF policy, line length and header field count.
 *
 * RFCs: 5321 §4.1.1.4 (DATA ends with CRLF "." CRLF), §4.5.2 (transparency:
 * a leading "." is removed), §2.3.8 (CR and LF only as CRLF), §4.5.3.1.6
 * (text line of at most 1000 octets including CRLF), 3030 §2 (BDAT content
 * is raw octets without an end marker), 5322 §2.2.3 (folded header lines).
 *
 * The decoder is a byte-at-a-time state machine whose whole state lives in
 * struct smtp_data_dec, so input may be split anywhere and the output is the
 * same. Only the exact octets CR LF "." CR LF end DATA (the first CRLF may be
 * the one that ended the DATA command): a "." line reached through a bare LF
 * or bare CR, or followed by a bare LF or bare CR, is content. That closes
 * the "SMTP smuggling" family of attacks against relays that disagree on
 * where a message ends.
 *
 * A CR is written as soon as it is read; the only octets held back between
 * calls are a "." at the start of a line and a CR after it (they might be the
 * end). Bare CR and bare LF end a line (for dot handling, line length and
 * header counting); in NORMALIZE mode each becomes CRLF, in REJECT mode it is
 * kept and flagged. A leading "." is removed at the start of every line.
 * Line length counts the octets written for the line, its line ending
 * included, and not a removed dot.
 */
#include "smtp/smtp.h"

#include <string.h>

static const struct smtp_status st_nul = {550, "5.6.0", "Message refused: it contains NUL octets"};
static const struct smtp_status st_bare = {
    550, "5.5.2", "Message refused: bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)"};
static const struct smtp_status st_long = {500, "5.5.2",
                                           "Message refused: line too long (RFC 5321 4.5.3.1.6)"};
static const struct smtp_status st_headers = {552, "5.3.4",
                                              "Message refused: too many header fields"};

/* Decoder states (struct smtp_data_dec.state). */
enum {
    ST_BOL = 0,  /* start of a line that followed CRLF: a "." here may begin the end */
    ST_BOL_BARE, /* start of a line that followed a bare CR or LF */
    ST_MID,      /* inside a line (or at its start after a removed dot) */
    ST_CR,       /* a CR was written; is it followed by LF? */
    ST_DOT,      /* DATA: "." held at the start of a line after CRLF */
    ST_DOT_CR,   /* DATA: "." CR held */
    ST_END,      /* CRLF "." CRLF consumed */
};

void smtp_data_init(struct smtp_data_dec *d, bool bdat, enum smtp_newline nl, size_t max_line,
                    size_t max_headers)
{
    memset(d, 0, sizeof *d);
    d->bdat = bdat;
    d->newline = nl;
    d->max_line = max_line;
    d->max_headers = max_headers;
    d->state = ST_BOL;
    d->in_headers = true;
}

/* Write one octet of the current line. */
static void put(struct smtp_data_dec *d, uint8_t *out, size_t *o, uint8_t c)
{
    out[(*o)++] = c;
    d->octets++;
    if (++d->line_len > d->max_line)
        d->flags |= SMTP_DATA_LONG_LINE;
}

static void newline(struct smtp_data_dec *d, bool bare)
{
    d->line_len = 0;
    d->state = bare ? ST_BOL_BARE : ST_BOL;
}

/* An octet inside a line, or the first one after the start-of-line checks. */
static void in_line(struct smtp_data_dec *d, uint8_t c, uint8_t *out, size_t *o)
{
    if (d->line_len == 0 && d->in_headers) {
        if (c == '\r' || c == '\n')
            d->in_headers = false; /* the empty line after the header section */
        else if (c != ' ' && c != '\t' && ++d->headers > d->max_headers)
            d->flags |= SMTP_DATA_TOO_MANY_HDRS;
    }
    if (c == '\r') {
        put(d, out, o, '\r');
        d->state = ST_CR;
    } else if (c == '\n') {
        if (d->newline == SMTP_NEWLINE_NORMALIZE) {
            put(d, out, o, '\r');
        } else {
            d->flags |= SMTP_DATA_BARE_LF;
        }
        put(d, out, o, '\n');
        newline(d, true);
    } else {
        if (c == '\0')
            d->flags |= SMTP_DATA_NUL;
        put(d, out, o, c);
        d->state = ST_MID;
    }
}

/* The octet after a written CR is not LF: the CR was bare. */
static void bare_cr(struct smtp_data_dec *d, uint8_t *out, size_t *o)
{
    if (d->newline == SMTP_NEWLINE_NORMALIZE)
        put(d, out, o, '\n');
    else
        d->flags |= SMTP_DATA_BARE_CR;
    newline(d, true);
}

bool smtp_data_feed(struct smtp_data_dec *d, const uint8_t *in, size_t in_len, size_t *consumed,
                    uint8_t *out, size_t *out_len)
{
    size_t i = 0, o = 0;
    bool end = d->state == ST_END;

    while (!end && i < in_len) {
        uint8_t c = in[i];
        switch (d->state) {
        case ST_BOL:
            if (!d->bdat && c == '.') {
                d->state = ST_DOT;
                i++;
            } else {
                in_line(d, c, out, &o);
                i++;
            }
            break;
        case ST_BOL_BARE:
            if (!d->bdat && c == '.')
                d->state = ST_MID; /* dot removed; can never be the end */
            else
                in_line(d, c, out, &o);
            i++;
            break;
        case ST_MID:
            if (d->line_len > 0 || !d->in_headers) {
                /* Fast path: a run of ordinary octets inside a line is copied
                   as it is; only CR, LF and NUL need the state machine. */
                size_t j = i;
                while (j < in_len && in[j] != '\r' && in[j] != '\n' && in[j] != '\0')
                    j++;
                if (j > i) {
                    size_t run = j - i;
                    memcpy(out + o, in + i, run);
                    o += run;
                    d->octets += run;
                    d->line_len += run;
                    if (d->line_len > d->max_line)
                        d->flags |= SMTP_DATA_LONG_LINE;
                    i = j;
                    break;
                }
            }
            in_line(d, c, out, &o);
            i++;
            break;
        case ST_CR:
            if (c == '\n') {
                put(d, out, &o, '\n');
                newline(d, false);
                i++;
            } else {
                bare_cr(d, out, &o); /* c is looked at again at the new line */
            }
            break;
        case ST_DOT:
            if (c == '\r') {
                d->state = ST_DOT_CR;
                i++;
            } else {
                d->state = ST_MID; /* dot removed; c starts the line's content */
            }
            break;
        case ST_DOT_CR:
            if (c == '\n') {
                d->ended = true;
                d->state = ST_END;
                end = true;
                i++;
            } else {
                /* "." CR x: not the end; the dot is removed, the CR is bare. */
                in_line(d, '\r', out, &o);
            }
            break;
        default:
            end = true;
            break;
        }
    }
    *consumed = i;
    *out_len = o;
    return end;
}

void smtp_data_finish(struct smtp_data_dec *d, uint8_t *out, size_t *out_len)
{
    size_t o = 0;
    if (d->state == ST_DOT_CR)
        in_line(d, '\r', out, &o);
    if (d->state == ST_CR)
        bare_cr(d, out, &o);
    else if (d->state == ST_DOT)
        d->state = ST_MID;
    *out_len = o;
}

const struct smtp_status *smtp_data_status(const struct smtp_data_dec *d)
{
    if (d->flags & SMTP_DATA_NUL)
        return &st_nul;
    if (d->flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR))
        return &st_bare;
    if (d->flags & SMTP_DATA_LONG_LINE)
        return &st_long;
    if (d->flags & SMTP_DATA_TOO_MANY_HDRS)
        return &st_headers;
    return NULL;
}
