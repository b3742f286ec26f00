/*
 * fuzz_params - libFuzzer target for MAIL / RCPT parameters and xtext
 * (src/smtp/params.c, RFC 5321 §4.1.2, RFC 1870, 6152, 6531, 3461). The
 * first input octet selects MAIL or RCPT and the advertised extensions.
 * Invariants: accepted values are within their limits and valid xtext; the
 * replies are 501 or 555; xtext decoding never writes past its buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct smtp_ext ext = {.size = data[0] & 1,
                           .eightbit = data[0] & 2,
                           .smtputf8 = data[0] & 4,
                           .dsn = data[0] & 8,
                           .auth = data[0] & 32};
    bool rcpt = data[0] & 16;
    size_t len = size - 1;
    char *s = malloc(len ? len : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, len);

    const struct smtp_status *st;
    if (rcpt) {
        struct smtp_rcpt_params rp;
        st = smtp_rcpt_params_parse(s, len, &ext, &rp);
        if (st == NULL) {
            if ((rp.notify & SMTP_NOTIFY_NEVER) && rp.notify != SMTP_NOTIFY_NEVER)
                abort();
            if (rp.notify > 0xf || (rp.notify && !ext.dsn))
                abort();
            if (rp.has_orcpt) {
                size_t n = strnlen(rp.orcpt, SMTP_ORCPT_MAX + 1);
                const char *semi = memchr(rp.orcpt, ';', n);
                if (!ext.dsn || n > SMTP_ORCPT_MAX || semi == NULL ||
                    !smtp_xtext_valid(semi + 1, n - (size_t)(semi + 1 - rp.orcpt)))
                    abort();
            }
        }
    } else {
        struct smtp_mail_params mp;
        st = smtp_mail_params_parse(s, len, &ext, &mp);
        if (st == NULL) {
            if ((mp.has_size && !ext.size) || (mp.smtputf8 && !ext.smtputf8) ||
                (mp.body != SMTP_BODY_NONE && !ext.eightbit) ||
                ((mp.ret != SMTP_RET_NONE || mp.has_envid) && !ext.dsn))
                abort();
            if (mp.has_envid) {
                size_t n = strnlen(mp.envid, SMTP_ENVID_MAX + 1);
                if (n == 0 || n > SMTP_ENVID_MAX || !smtp_xtext_valid(mp.envid, n))
                    abort();
            }
        }
    }
    if (st != NULL && st->code != 501 && st->code != 555)
        abort();

    /* xtext over the whole input, into a small exact-size buffer */
    size_t outlen = 1 + data[0] % 64;
    char *out = malloc(outlen);
    if (out != NULL) {
        long n = smtp_xtext_decode(s, len, out, outlen);
        if (n >= 0 && ((size_t)n >= outlen || out[n] != '\0' || !smtp_xtext_valid(s, len)))
            abort();
        free(out);
    }
    free(s);
    return 0;
}
