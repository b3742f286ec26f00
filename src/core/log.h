/*
 * log - operator logs: one event per line, key=value, buffered until
 * log_flush (which the event loop calls once per pass), then written to the
 * log target: stderr (the default), a file, or syslog; as text or as one
 * JSON object per line (core/logline.h). docs/logging.md describes both.
 *
 * log_info("sid=%s event=connect client=%s", ...). fatal() is for a bad
 * environment or configuration (message, exit 1); panic() for a broken
 * invariant (message, abort).
 */
#ifndef TERN_CORE_LOG_H
#define TERN_CORE_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* log_format: how a line is written. */
enum log_format {
    LOG_FORMAT_TEXT = 0, /* TIMESTAMP tern[level]: key=value ... */
    LOG_FORMAT_JSON,     /* {"ts":...,"level":...,"trace":...,key:value...} */
};

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write the buffered lines out (the event loop calls it once per pass). */
void log_flush(void);

/*
 * Send the log to target from now on: "stderr", "syslog" (openlog("tern",
 * LOG_PID | LOG_NDELAY, LOG_MAIL): connected at once; the level is the
 * priority) or the path of a file, opened
 * for appending (created 0640 when missing, close-on-exec). What was logged
 * before goes to the old target first. Returns 0, or -1 with err filled (the
 * old target stays).
 */
int log_open(const char *target, enum log_format format, char *err, size_t errlen);
/*
 * Reopen the file target by its path (after logrotate renamed it: SIGUSR1).
 * Lines logged before the call are written to the old file first, so none is
 * lost. 0, or -1 with err filled (the old file stays in use); 1 (nothing done)
 * for stderr and syslog.
 */
int log_reopen(char *err, size_t errlen);
/* Flush, then go back to stderr and text (closing a file, closelog). */
void log_close(void);

_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                          \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
