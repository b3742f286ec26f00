/*
 * log - key=value event lines with a timestamp and level, to stderr, a file
 * or syslog, as text or JSON.
 *
 * Lines are formatted at once and gathered in a buffer, which is written out
 * with one write(2) per pass of the event loop (the loop calls log_flush),
 * when the buffer is nearly full, at exit, and before fatal() and panic():
 * under load a message's five lines cost one system call among many messages
 * instead of five. Any thread may log.
 *
 * Targets. stderr and a file take the buffer as it is; a file is opened with
 * O_APPEND (several writers, and logrotate's copytruncate, stay consistent)
 * and O_CLOEXEC, and log_reopen() opens its path again after a rename. For
 * syslog the buffer holds records (a level octet, the message, a NUL) that
 * log_flush passes to syslog(3) one by one, with the level mapped to
 * LOG_ERR, LOG_WARNING, LOG_INFO or LOG_DEBUG under the LOG_MAIL facility;
 * syslog adds its own timestamp and "tern[PID]:", so a text record is the
 * message alone, prefixed by "error: ", "warn: " or "debug: " below info.
 *
 * Formats. text: "2026-11-22T11:57:09.431Z tern[info]: key=value ...".
 * json: one object per line, from core/logline.h.
 */
#include "core/log.h"
#include "core/logline.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* The longest message kept (the rest is cut). */
#define LOG_MSG_MAX 4000
/* Lines waiting for log_flush; written out when more than LOG_FLUSH_AT wait. */
#define LOG_BUF_SIZE (64 * 1024)
#define LOG_FLUSH_AT (LOG_BUF_SIZE - 4096)
/* Room for the timestamp, the level and their decoration. */
#define LOG_HEAD_MAX 64
/* The most one line can take in the buffer (a JSON line with every octet escaped). */
#define LOG_LINE_ROOM (LOGLINE_JSON_MAX(LOG_MSG_MAX, LOG_HEAD_MAX, 8) + 2)

_Static_assert(LOG_LINE_ROOM < LOG_BUF_SIZE, "a line must fit in the log buffer");
_Static_assert(LOG_LINE_ROOM > 4 * LOG_MSG_MAX + LOG_HEAD_MAX + 16,
               "a text line with every octet escaped must fit too");

enum log_target { TARGET_STDERR = 0, TARGET_FILE, TARGET_SYSLOG };

/* Everything below is guarded by log_mu. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[LOG_BUF_SIZE];
static size_t log_len;
static int log_atexit_set;
static enum log_target target = TARGET_STDERR;
static enum log_format format = LOG_FORMAT_TEXT;
static int log_fd = STDERR_FILENO; /* stderr or the file */
static char *log_path;             /* the file's path (owned); NULL otherwise */

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

static int syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR:
        return LOG_ERR;
    case LOG_LEVEL_WARN:
        return LOG_WARNING;
    case LOG_LEVEL_INFO:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

static void write_all(int fd, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to log: drop rather than block or spin */
        off += (size_t)w;
    }
}

/* Write the buffer to the current target. Called with log_mu held. */
static void flush_locked(void)
{
    if (target == TARGET_SYSLOG) {
        size_t off = 0;
        while (off < log_len) {
            const char *rec = log_buf + off;
            size_t n = strnlen(rec, log_len - off);
            if (n > 0)
                syslog(syslog_priority((enum log_level)(rec[0] - '0')), "%s", rec + 1);
            off += n + 1;
        }
    } else {
        write_all(log_fd, log_buf, log_len);
    }
    log_len = 0;
}

/* "2026-11-22T11:57:09.431Z" */
static void timestamp(char *out, size_t outlen)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03ldZ", (long)tv.tv_usec / 1000);
}

/* Copy a text-format message, writing control octets as \n, \r, \t or \xHH so
   that one event stays one line whatever a value holds (a multi-line reply, a
   client's octets). Stops at a NUL. Returns the octets written (at most
   4 * len). */
static size_t text_escape(char *out, const char *msg, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len && msg[i]; i++) {
        unsigned char ch = (unsigned char)msg[i];
        if (ch >= 0x20 && ch != 0x7f) {
            out[n++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            out[n++] = '\\';
            out[n++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    return n;
}

/* Append the line for msg to the buffer. Called with log_mu held and at
   least LOG_LINE_ROOM octets free. */
static void append_locked(enum log_level level, const char *ts, const char *msg, size_t len)
{
    char *p = log_buf + log_len;
    size_t room = LOG_BUF_SIZE - log_len, n = 0;
    if (target == TARGET_SYSLOG) {
        p[n++] = (char)('0' + level);
        if (format == LOG_FORMAT_TEXT) {
            if (level != LOG_LEVEL_INFO)
                n += (size_t)snprintf(p + n, room - n, "%s: ", names[level]);
            /* a NUL in the message would end the record early: it ends there */
            n += text_escape(p + n, msg, len);
        } else {
            n += logline_json(ts, names[level], msg, len, p + n, room - n);
        }
        p[n++] = '\0';
    } else {
        if (format == LOG_FORMAT_TEXT) {
            n = (size_t)snprintf(p, room, "%s tern[%s]: ", ts, names[level]);
            n += text_escape(p + n, msg, len);
        } else {
            n = logline_json(ts, names[level], msg, len, p, room);
        }
        p[n++] = '\n';
    }
    log_len += n;
}

static void log_v(enum log_level level, const char *fmt, va_list ap)
{
    char ts[LOG_HEAD_MAX];
    char msg[LOG_MSG_MAX + 1];
    timestamp(ts, sizeof ts);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = m < 0 ? 0 : (size_t)m;
    if (len > LOG_MSG_MAX)
        len = LOG_MSG_MAX;
    pthread_mutex_lock(&log_mu);
    if (!log_atexit_set) {
        log_atexit_set = 1;
        atexit(log_flush);
    }
    if (LOG_BUF_SIZE - log_len < LOG_LINE_ROOM)
        flush_locked();
    append_locked(level, ts, msg, len);
    if (log_len > LOG_FLUSH_AT)
        flush_locked();
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

void log_flush(void)
{
    pthread_mutex_lock(&log_mu);
    flush_locked();
    pthread_mutex_unlock(&log_mu);
}

/* Open a log file for appending. */
static int open_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return fd;
}

int log_open(const char *to, enum log_format fmt, char *err, size_t errlen)
{
    enum log_target t = TARGET_FILE;
    int fd = STDERR_FILENO;
    char *path = NULL;
    if (strcmp(to, "stderr") == 0) {
        t = TARGET_STDERR;
    } else if (strcmp(to, "syslog") == 0) {
        t = TARGET_SYSLOG;
    } else {
        fd = open_file(to, err, errlen);
        if (fd < 0)
            return -1;
        path = strdup(to);
        if (!path) {
            snprintf(err, errlen, "out of memory");
            close(fd);
            return -1;
        }
    }
    if (t == TARGET_SYSLOG)
        openlog("tern", LOG_PID | LOG_NDELAY, LOG_MAIL);
    pthread_mutex_lock(&log_mu);
    flush_locked();
    enum log_target old = target;
    int oldfd = log_fd;
    char *oldpath = log_path;
    target = t;
    format = fmt;
    log_fd = fd;
    log_path = path;
    pthread_mutex_unlock(&log_mu);
    if (old == TARGET_FILE)
        close(oldfd);
    if (old == TARGET_SYSLOG && t != TARGET_SYSLOG)
        closelog();
    free(oldpath);
    return 0;
}

int log_reopen(char *err, size_t errlen)
{
    pthread_mutex_lock(&log_mu);
    if (target != TARGET_FILE) {
        pthread_mutex_unlock(&log_mu);
        return 1;
    }
    /* Only the loop thread opens, reopens or closes, so the path stays. */
    const char *path = log_path;
    pthread_mutex_unlock(&log_mu);
    int fd = open_file(path, err, errlen);
    if (fd < 0)
        return -1;
    pthread_mutex_lock(&log_mu);
    flush_locked(); /* to the old file (renamed, still ours) */
    int oldfd = log_fd;
    log_fd = fd;
    pthread_mutex_unlock(&log_mu);
    close(oldfd);
    return 0;
}

void log_close(void)
{
    char err[8];
    log_open("stderr", LOG_FORMAT_TEXT, err, sizeof err);
}

void fatal(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    log_v(LOG_LEVEL_ERROR, fmt, ap);
    va_end(ap);
    log_flush();
    pthread_mutex_lock(&log_mu);
    bool elsewhere = target != TARGET_STDERR;
    pthread_mutex_unlock(&log_mu);
    if (elsewhere) {
        /* Whoever started the process sees why it stopped, too. */
        fputs("tern: ", stderr);
        vfprintf(stderr, fmt, ap2);
        fputc('\n', stderr);
    }
    va_end(ap2);
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
