/*
 * base64 - RFC 4648 §4 base64, strict: the one codec of SASL exchanges
 * (RFC 4954), the control protocol's message data and the relay's AUTH.
 * Pure; see base64.h.
 */
#include "core/base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen)
{
    if (len % 4 != 0 || (len > 0 && !in))
        return -1;
    size_t pad = 0;
    if (len > 0 && in[len - 1] == '=')
        pad = len > 1 && in[len - 2] == '=' ? 2 : 1;
    size_t need = len / 4 * 3 - pad;
    if (need > outmax)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (size_t k = 0; k < 4; k++) {
            if (last && k >= 4 - pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_value((unsigned char)in[i + k]);
            if (v[k] < 0)
                return -1;
        }
        uint32_t q =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* the bits a padded quantum does not use must be zero */
        if (last && pad == 1 && (v[2] & 0x3))
            return -1;
        if (last && pad == 2 && (v[1] & 0xf))
            return -1;
        out[o++] = (uint8_t)(q >> 16);
        if (!(last && pad == 2))
            out[o++] = (uint8_t)(q >> 8);
        if (!(last && pad >= 1))
            out[o++] = (uint8_t)q;
    }
    if (outlen)
        *outlen = o;
    return 0;
}

size_t base64_encode(const uint8_t *in, size_t len, char *out, size_t outmax)
{
    if (!out || len > (SIZE_MAX - 1) / 4 * 3 - 3 || (len + 2) / 3 * 4 + 1 > outmax)
        return 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t q = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            q |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            q |= in[i + 2];
        out[o++] = b64_alphabet[(q >> 18) & 63];
        out[o++] = b64_alphabet[(q >> 12) & 63];
        out[o++] = i + 1 < len ? b64_alphabet[(q >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[q & 63] : '=';
    }
    out[o] = '\0';
    return o;
}
