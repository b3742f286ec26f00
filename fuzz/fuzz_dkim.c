/*
 * fuzz_dkim - libFuzzer target for the DKIM text formats
 * (src/mailauth/dkimtag.c): tag lists (RFC 6376 §3.2), DKIM-Signature tags
 * (§3.5), key records (§3.6.1, RFC 8463 §4), base64 lengths, the CRLF
 * conversion of a signature header and TXT records in zone-file form.
 *
 * Input: the whole input is parsed as a tag list, as a signature and as a
 * key record, and converted by the two formatters. Checked on every input:
 * tags point inside the input, names are non-empty and unique, values have
 * no white space at either end; a signature that parses has a known a=, a
 * non-empty lowercase d= and s=, and a non-empty b=; a key record that parses
 * is revoked exactly when its key is empty, and an Ed25519 key has 32 octets;
 * the CRLF conversion leaves no bare CR or LF; the zone form has no
 * character-string longer than 255 octets and unquotes to the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mailauth/dkimtag.h"

static bool ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void check_taglist(const char *text, size_t size)
{
    struct dkim_taglist tl;
    char err[128];
    if (dkim_taglist_parse(text, size, &tl, err, sizeof err) < 0) {
        if (err[0] == '\0')
            abort(); /* a failure says why */
        return;
    }
    for (size_t i = 0; i < tl.n; i++) {
        const struct dkim_tag *t = &tl.v[i];
        if (t->name < text || t->name + t->name_len > text + size || t->name_len == 0)
            abort();
        if (t->value < text || t->value + t->value_len > text + size)
            abort();
        if (t->value_len > 0 && (ws(t->value[0]) || ws(t->value[t->value_len - 1])))
            abort();
        for (size_t k = 0; k < i; k++)
            if (tl.v[k].name_len == t->name_len && memcmp(tl.v[k].name, t->name, t->name_len) == 0)
                abort();
    }
}

static void check_sig(const char *text, size_t size)
{
    struct dkim_sig_tags t;
    char err[300];
    if (dkim_sig_parse(text, size, &t, err, sizeof err) < 0)
        return;
    if (t.alg == DKIM_ALG_UNKNOWN || t.domain[0] == '\0' || t.selector[0] == '\0' || t.b[0] == '\0')
        abort();
    for (const char *p = t.domain; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            abort();
    if (strlen(t.selector) + strlen(t.domain) + 12 > DKIM_NAME_MAX)
        abort();
    if (t.has_expiry && t.has_timestamp && t.expiry < t.timestamp)
        abort();
}

static void check_key(const char *text, size_t size)
{
    struct dkim_key_tags k;
    char err[128];
    if (dkim_key_parse(text, size, &k, err, sizeof err) < 0)
        return;
    if (k.revoked != (k.key_len == 0))
        abort();
    if (!k.revoked && k.kind == DKIM_KEYKIND_ED25519 && k.key_len != 32)
        abort();
}

static void check_crlf(const char *text, size_t size)
{
    struct buf b;
    buf_init(&b, 2 * size + 64);
    if (dkim_sighdr_crlf(text, size, &b) < 0)
        abort(); /* twice the input always fits */
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] == '\n' && (i == 0 || b.data[i - 1] != '\r'))
            abort();
        if (b.data[i] == '\r' && (i + 1 == b.len || b.data[i + 1] != '\n'))
            abort();
    }
    buf_free(&b);
    /* too small a buffer leaves it unchanged */
    buf_init(&b, 8);
    buf_append(&b, "ab", 2);
    if (size > 0 && dkim_sighdr_crlf(text, size, &b) != -1)
        abort();
    if (b.len != 2)
        abort();
    buf_free(&b);
}

static void check_zone(const char *text, size_t size)
{
    struct buf b;
    buf_init(&b, 4 * size + 64);
    if (dkim_zone_txt(text, size, &b) < 0)
        abort();
    /* unquote and compare */
    char *back = malloc(size + 1);
    size_t n = 0, i = 0;
    while (i < b.len) {
        if (b.data[i++] != '"')
            abort();
        size_t octets = 0;
        while (i < b.len && b.data[i] != '"') {
            char c = b.data[i++];
            if (c == '\\') {
                if (i < b.len && b.data[i] >= '0' && b.data[i] <= '9') {
                    c = (char)((b.data[i] - '0') * 100 + (b.data[i + 1] - '0') * 10 +
                               (b.data[i + 2] - '0'));
                    i += 3;
                } else {
                    c = b.data[i++];
                }
            }
            if (n == size)
                abort();
            back[n++] = c;
            octets++;
        }
        if (octets > 255 || i == b.len)
            abort();
        i++;
        if (i < b.len && b.data[i++] != ' ')
            abort();
    }
    if (n != size || memcmp(back, text, size) != 0)
        abort();
    free(back);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    const char *text = (const char *)data;
    check_taglist(text, size);
    check_sig(text, size);
    check_key(text, size);
    long n = dkim_base64_len(text, size);
    if (n > (long)size)
        abort();
    check_crlf(text, size);
    check_zone(text, size);
    return 0;
}
