/*
 * fuzz_authres - libFuzzer target for src/smtp/authres.c: the reader of
 * Authentication-Results field values (RFC 8601 §2.2) and, from what it
 * read, the composer.
 *
 * Input: an Authentication-Results field value (what follows the colon).
 *
 * Invariants (abort on failure): every string read is NUL-terminated within
 * its bound, methods, results, ptypes and properties lowercase; counts
 * within their arrays; unless the value is malformed, authres_is_ours()
 * with the authserv-id read is true; composing what was read either fails
 * (an input the composer refuses: a keyword with '_', a control character)
 * or gives a field whose lines end in CRLF, are at most 998 octets (78
 * unless one word is longer), and that reads back to the same authserv-id,
 * results, reasons and properties.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/authres.h"

static void check_str(const char *s, size_t cap, bool lower)
{
    size_t n = strnlen(s, cap);
    if (n >= cap)
        abort();
    for (size_t i = 0; lower && i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            abort();
}

static void check_lines(const char *f, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (f[i] == '\n') {
            if (i == 0 || f[i - 1] != '\r' || i - 1 - start > 998)
                abort();
            start = i + 1;
        } else if (f[i] == '\r' && (i + 1 >= len || f[i + 1] != '\n')) {
            abort();
        }
    }
    if (start != len)
        abort();
}

static struct authres_parsed p, back;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *v = (const char *)data;
    enum authres_parse r = authres_parse(v, size, &p);
    check_str(p.authserv_id, sizeof p.authserv_id, false);
    if (p.nresults > AUTHRES_PARSE_MAX)
        abort();
    for (size_t i = 0; i < p.nresults; i++) {
        const struct authres_parsed_result *x = &p.results[i];
        check_str(x->method, sizeof x->method, true);
        check_str(x->result, sizeof x->result, true);
        check_str(x->reason, sizeof x->reason, false);
        if (x->nprops > AUTHRES_PARSE_PROPS)
            abort();
        for (size_t k = 0; k < x->nprops; k++) {
            check_str(x->props[k].ptype, sizeof x->props[k].ptype, true);
            check_str(x->props[k].property, sizeof x->props[k].property, true);
            check_str(x->props[k].value, sizeof x->props[k].value, false);
        }
    }
    if (r == AUTHRES_PARSE_MALFORMED)
        return 0;
    if (!authres_is_ours(v, size, p.authserv_id))
        abort();
    if (r != AUTHRES_PARSE_OK)
        return 0;

    /* compose what was read, and read it back */
    static struct authres_result res[AUTHRES_PARSE_MAX];
    for (size_t i = 0; i < p.nresults; i++) {
        const struct authres_parsed_result *x = &p.results[i];
        memset(&res[i], 0, sizeof res[i]);
        res[i].method = x->method;
        res[i].result = x->result;
        res[i].reason = x->reason[0] ? x->reason : NULL;
        res[i].nprops = x->nprops;
        for (size_t k = 0; k < x->nprops; k++)
            res[i].props[k] =
                (struct authres_prop){x->props[k].ptype, x->props[k].property, x->props[k].value};
    }
    static char field[65536];
    long n = authres_compose(p.authserv_id, res, p.nresults, field, sizeof field);
    if (n < 0)
        return 0;
    if ((size_t)n != strlen(field))
        abort();
    check_lines(field, (size_t)n);
    const char *value = field + strlen("Authentication-Results:");
    if (authres_parse(value, strlen(value), &back) != AUTHRES_PARSE_OK)
        abort();
    if (strcmp(back.authserv_id, p.authserv_id) != 0 || back.nresults != p.nresults ||
        back.none != (p.nresults == 0))
        abort();
    for (size_t i = 0; i < p.nresults; i++) {
        const struct authres_parsed_result *a = &p.results[i], *b = &back.results[i];
        if (strcmp(a->method, b->method) || strcmp(a->result, b->result) ||
            strcmp(a->reason, b->reason) || a->nprops != b->nprops)
            abort();
        for (size_t k = 0; k < a->nprops; k++)
            if (strcmp(a->props[k].ptype, b->props[k].ptype) ||
                strcmp(a->props[k].property, b->props[k].property) ||
                strcmp(a->props[k].value, b->props[k].value))
                abort();
    }
    return 0;
}
