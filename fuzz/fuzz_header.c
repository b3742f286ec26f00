/*
 * fuzz_header - libFuzzer target for the header scanner and the address-list
 * parser (src/smtp/header.c, RFC 5322 §2.2, §3.4, RFC 6532). The first input
 * octet chooses how the rest, the content, is cut into chunks. Invariants:
 *  - the content fed whole, cut in two at a point derived from the first
 *    octet, and cut into pieces whose sizes come from the content give the
 *    same findings (end, Date, Message-ID, From count and value);
 *  - a return value >= 0 is where h->end lies in that chunk; fed whole, the
 *    end is always reported; the end is at the start of a line;
 *  - the From value fits, is NUL-terminated and holds no line end;
 *  - smtp_addr_list_parse of the From value and of the raw content returns
 *    -1 or at most max addresses, each with an "@", NUL-terminated within
 *    SMTP_PATH_MAX; the addresses joined by "," parse back to themselves.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/header.h"

/* Feed in chunks: sizes[] cycled (1 + size % 64), or one cut at `cut`. */
static void feed(const uint8_t *in, size_t len, size_t cut, const uint8_t *sizes, size_t nsizes,
                 struct smtp_hdr_scan *h)
{
    smtp_hdr_init(h);
    size_t pos = 0, k = 0;
    while (pos < len) {
        size_t n;
        if (nsizes > 0)
            n = 1 + sizes[k++ % nsizes] % 64;
        else
            n = pos == 0 && cut > 0 ? cut : len - pos;
        if (n > len - pos)
            n = len - pos;
        bool was_done = h->done;
        long r = smtp_hdr_feed(h, in + pos, n);
        if (r < -1 || (r >= 0 && (size_t)r >= n))
            abort();
        if (r >= 0 && (was_done || !h->done || h->end != pos + (uint64_t)r))
            abort();
        if (r == -1 && h->done && !was_done && h->end >= pos)
            abort();
        pos += n;
        if (h->offset != pos)
            abort();
    }
    if (len == 0 && smtp_hdr_feed(h, in, 0) != -1)
        abort();
}

static void same(const struct smtp_hdr_scan *a, const struct smtp_hdr_scan *b)
{
    if (a->done != b->done || (a->done && a->end != b->end) || a->has_date != b->has_date ||
        a->has_message_id != b->has_message_id || a->from_fields != b->from_fields ||
        a->from_len != b->from_len || a->from_truncated != b->from_truncated ||
        memcmp(a->from, b->from, a->from_len + 1) != 0 || a->offset != b->offset)
        abort();
}

static char out[SMTP_ADDR_LIST_MAX][SMTP_PATH_MAX + 1];
static char again[SMTP_ADDR_LIST_MAX][SMTP_PATH_MAX + 1];

/* Parse v, check the addresses, and parse them joined by "," once more. */
static void parse(const char *v, size_t len)
{
    int n = smtp_addr_list_parse(v, len, out, SMTP_ADDR_LIST_MAX);
    if (n < -1 || n > SMTP_ADDR_LIST_MAX)
        abort();
    if (n <= 0)
        return;
    char *joined = malloc((size_t)n * (SMTP_PATH_MAX + 1));
    size_t jl = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strnlen(out[i], SMTP_PATH_MAX + 1);
        if (l > SMTP_PATH_MAX || l < 3 || memchr(out[i], '@', l) == NULL)
            abort();
        if (i > 0)
            joined[jl++] = ',';
        memcpy(joined + jl, out[i], l);
        jl += l;
    }
    if (smtp_addr_list_parse(joined, jl, again, SMTP_ADDR_LIST_MAX) != n)
        abort();
    for (int i = 0; i < n; i++)
        if (strcmp(out[i], again[i]) != 0)
            abort();
    free(joined);
}

/* Drop fields whose name starts with the selector octet (any case). */
static bool drop_by_first(void *arg, const char *name, size_t namelen, const char *value,
                          size_t valuelen)
{
    (void)value;
    (void)valuelen;
    unsigned char sel = *(const unsigned char *)arg;
    return namelen > 0 && ((unsigned char)name[0] | 0x20) == (sel | 0x20);
}

static bool drop_none(void *arg, const char *name, size_t namelen, const char *value,
                      size_t valuelen)
{
    (void)arg;
    (void)name;
    (void)namelen;
    (void)value;
    (void)valuelen;
    return false;
}

/* Removing fields keeps every other octet in order, and removing none
   changes nothing. */
static void check_remove(const uint8_t *in, size_t len, uint8_t sel)
{
    uint8_t *a = malloc(len ? len : 1), *b = malloc(len ? len : 1);
    memcpy(a, in, len);
    memcpy(b, in, len);
    size_t removed = 0;
    if (smtp_hdr_remove(b, len, drop_none, NULL, &removed) != len || removed != 0 ||
        memcmp(a, b, len) != 0)
        abort();
    size_t n = smtp_hdr_remove(a, len, drop_by_first, &sel, &removed);
    if (n > len || (removed == 0) != (n == len))
        abort();
    /* the result is a subsequence of the input with the same tail */
    size_t j = 0;
    for (size_t i = 0; i < len && j < n; i++)
        if (in[i] == a[j])
            j++;
    if (j != n)
        abort();
    /* nothing left to remove */
    if (smtp_hdr_remove(a, n, drop_by_first, &sel, &removed) != n || removed != 0)
        abort();
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    static struct smtp_hdr_scan whole, cut, pieces;

    feed(in, len, 0, NULL, 0, &whole);
    feed(in, len, len ? data[0] * len / 256 : 0, NULL, 0, &cut);
    feed(in, len, 0, in, len < 16 ? len : 16, &pieces);
    if (len > 0) {
        /* fed whole, a return value reports the end */
        struct smtp_hdr_scan h;
        smtp_hdr_init(&h);
        long r = smtp_hdr_feed(&h, in, len);
        if (h.done != (r >= 0) || (r >= 0 && h.end != (uint64_t)r))
            abort();
    }
    same(&whole, &cut);
    same(&whole, &pieces);
    if (whole.done && (whole.end > len || (whole.end > 0 && in[whole.end - 1] != '\n')))
        abort();
    if (whole.from_len > SMTP_HDR_FROM_MAX || whole.from[whole.from_len] != '\0' ||
        memchr(whole.from, '\n', whole.from_len) != NULL ||
        (whole.from_fields == 0 && whole.from_len != 0))
        abort();

    parse(whole.from, whole.from_len);
    parse((const char *)in, len);
    check_remove(in, len, data[0]);
    return 0;
}
