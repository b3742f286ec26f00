/*
 * log - key=value event lines on stderr with a timestamp and level.
 *
 * Lines are gathered in a buffer and written with one write(2) per pass of the
 * event loop (the loop calls log_flush), when the buffer is nearly full, at
 * exit, and before fatal() and panic(): under load a message's five lines cost
 * one system call among many messages instead of five. Any thread may log.
 */
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Lines waiting for log_flush; written out when more than LOG_FLUSH_AT wait. */
#define LOG_BUF_SIZE (64 * 1024)
#define LOG_FLUSH_AT (LOG_BUF_SIZE - 4096)

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[LOG_BUF_SIZE];
static size_t log_len;
static int log_atexit_set;

static enum log_level current = LOG_LEVEL_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    current = level;
}

int log_enabled(enum log_level level)
{
    return level <= current;
}

static void log_v(enum log_level level, const char *fmt, va_list ap)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ tern[%s]: ", (long)tv.tv_usec / 1000,
                  names[level]);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    pthread_mutex_lock(&log_mu);
    if (!log_atexit_set) {
        log_atexit_set = 1;
        atexit(log_flush);
    }
    memcpy(log_buf + log_len, line, len);
    log_len += len;
    int full = log_len > LOG_FLUSH_AT;
    pthread_mutex_unlock(&log_mu);
    if (full)
        log_flush();
}

/* Write everything buffered to stderr. */
void log_flush(void)
{
    pthread_mutex_lock(&log_mu);
    size_t off = 0;
    while (off < log_len) {
        ssize_t w = write(STDERR_FILENO, log_buf + off, log_len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to log: drop rather than block or spin */
        off += (size_t)w;
    }
    log_len = 0;
    pthread_mutex_unlock(&log_mu);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > current)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(LOG_LEVEL_ERROR, fmt, ap);
    va_end(ap);
    log_flush();
    exit(1);
}

void panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_flush();
    fputs("tern: panic: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
