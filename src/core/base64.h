/*
 * base64 - RFC 4648 §4 base64 with its standard alphabet and padding, strict
 * on input: no white space, no characters outside the alphabet, padding only
 * at the end, and the bits a padded quantum does not use must be zero (so
 * every text decodes from exactly one encoding). Pure, no allocation.
 */
#ifndef TERN_CORE_BASE64_H
#define TERN_CORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Decode in[0..len) into out (at most outmax octets); the length in *outlen
   (when not NULL). 0, or -1 when the text is not canonical base64 or does not
   fit. */
int base64_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen);
/* Encode in[0..len) into out, NUL-terminated; returns the length, or 0 when
   out (outmax octets) is too small (an empty input also gives 0). */
size_t base64_encode(const uint8_t *in, size_t len, char *out, size_t outmax);

#endif
