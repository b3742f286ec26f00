/*
 * util - allocation that panics on exhaustion, time, and small string helpers.
 * Pure: no I/O besides reading clocks.
 */
#ifndef TERN_CORE_UTIL_H
#define TERN_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* xmalloc / xrealloc of an array of n elements of `size` octets; n * size
   passing SIZE_MAX panics like exhaustion does. */
void *xmallocarray(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Checked size arithmetic: *out = a + b, a * b. False when the result does not
   fit a size_t (*out is then unspecified): the caller treats it as past a limit. */
static inline bool size_add(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool size_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Milliseconds of a monotonic clock. */
int64_t now_mono_ms(void);
/* Wall clock, seconds and microseconds since the epoch. */
int64_t now_real_us(void);

/* ASCII case-insensitive compare of n bytes / whole strings. */
bool ascii_ieq(const char *a, const char *b);
bool ascii_nieq(const char *a, const char *b, size_t n);
void ascii_lower(char *s);

/* Length (2 to 4) of the well-formed UTF-8 sequence of a non-ASCII character
   at s[0..len) (RFC 3629: no overlong forms, surrogates or code points past
   U+10FFFF), or 0 when there is none. */
size_t utf8_seq_len(const unsigned char *s, size_t len);

/* Parse an unsigned decimal with overflow check; whole string must be digits. */
bool parse_u64(const char *s, size_t len, uint64_t *out);

/* mkdir -p: create path and its missing parents with mode. Returns 0 or -1 (errno). */
int mkdir_p(const char *path, unsigned mode);

/* RFC 5322 date-time for `t` (seconds) in local time into out (>= 40 bytes). */
void rfc5322_date(int64_t t, char *out, size_t outlen);

#endif
