/*
 * fuzz_address - libFuzzer target for smtp_path_parse (src/smtp/address.c,
 * RFC 5321 §4.1.2, RFC 6531). The first input octet selects the path kind
 * and whether SMTPUTF8 was given; the rest is the text after "FROM:"/"TO:".
 * Invariants: results fit their fields, hold no control characters, no
 * 8-bit octets without SMTPUTF8, and "<addr>" parses back to the same addr.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

static void check_str(const char *s, size_t max, bool utf8_ok)
{
    size_t n = strnlen(s, max + 1);
    if (n > max)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8_ok))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum smtp_path_kind kind = (data[0] & 1) ? SMTP_PATH_FORWARD : SMTP_PATH_REVERSE;
    bool utf8_ok = (data[0] & 2) != 0;
    size_t len = size - 1;
    char *s = malloc(len ? len : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, len);

    struct smtp_path p;
    const char *end = NULL;
    const struct smtp_status *st = smtp_path_parse(s, len, kind, utf8_ok, &p, &end);
    if (st != NULL) {
        if (st->code != 501 && st->code != 553)
            abort();
        free(s);
        return 0;
    }
    if (end < s || end > s + len)
        abort();
    if (end < s + len && *end != ' ')
        abort();
    check_str(p.local, SMTP_LOCAL_MAX, utf8_ok);
    check_str(p.local_canon, SMTP_LOCAL_MAX, utf8_ok);
    check_str(p.domain, SMTP_DOMAIN_MAX, utf8_ok);
    check_str(p.addr, SMTP_PATH_MAX - 2, utf8_ok);
    if (p.null && (kind != SMTP_PATH_REVERSE || p.addr[0] != '\0'))
        abort();
    if (p.postmaster && kind != SMTP_PATH_FORWARD)
        abort();

    if (!p.null) {
        /* round trip */
        char buf[SMTP_PATH_MAX + 3];
        size_t al = strlen(p.addr);
        buf[0] = '<';
        memcpy(buf + 1, p.addr, al);
        buf[al + 1] = '>';
        struct smtp_path q;
        const char *e2;
        if (smtp_path_parse(buf, al + 2, kind, utf8_ok, &q, &e2) != NULL)
            abort();
        if (strcmp(q.addr, p.addr) != 0 ||
            (!p.postmaster && strcmp(q.local_canon, p.local_canon) != 0) || q.utf8 != p.utf8 ||
            q.postmaster != p.postmaster || e2 != buf + al + 2)
            abort();
    }
    free(s);
    return 0;
}
