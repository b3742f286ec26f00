/*
 * buf - a byte buffer created with a maximum size.
 *
 * Every buffer that holds input from the network is a struct buf whose `max`
 * is fixed when it is created; an append that would pass it fails and leaves
 * the buffer unchanged, so the caller turns the overflow into an SMTP reply.
 * The data is always NUL-terminated (not counted in len) for convenience.
 * Allocation failure panics.
 */
#ifndef TERN_CORE_BUF_H
#define TERN_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* the bytes, NUL-terminated; NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated (excluding the terminator) */
    size_t max; /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
/* Append n bytes; returns 0, or -1 (unchanged) if len would pass max. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
