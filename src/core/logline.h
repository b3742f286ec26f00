/*
 * logline - the JSON form of one log line (log_format = json).
 *
 * Tern's log messages are key=value text (docs/logging.md):
 *
 *   qid=Q to=<a@b> relay=maildir delay=0 dsn=2.0.0 status=sent (delivered to maildir)
 *
 * logline_json() turns one such message, with its timestamp and level, into
 * one JSON object (RFC 8259):
 *
 *   {"ts":"...","level":"info","trace":"Q","qid":"Q","to":"a@b",...,"text":"delivered to maildir"}
 *
 *  - key=value: a field named key. A key is letters, digits, '_', '.' and
 *    '-'. A value runs to the next space; a value that starts with '"' runs
 *    to its closing quote (the text form has no escapes, so the closing quote
 *    is the first '"' followed by the end, or by a space and the next key= or
 *    "(", else the first '"' followed by a space or the end); a value that
 *    starts with '<' runs to the first '>' followed by a space or the end,
 *    and its brackets are dropped (to=<a@b> gives "to":"a@b", from=<> gives
 *    "from":"").
 *  - "(text)": the trailing parenthesised text of a delivery line (the reply,
 *    Postfix style) is the field "text"; it ends at a ')' followed by a
 *    space or the end: the first that balances the '(' and is followed only by
 *    spaces, or by the next key= or "(", else the first so followed, else the
 *    first that balances, else the last; without one, at the end of the line.
 *  - Any other word (no key=) goes, space-separated in order, into "msg".
 *  - "trace" is the value of the line's first qid= (when not empty), so every
 *    line about one message shares it.
 *  - Every value is a JSON string, numbers included (a queue id such as
 *    000660DC2D4E21B9 stays as written; consumers convert what they count).
 *  - Names are unique: "ts", "level", "trace" and "msg" are taken, and a key
 *    met again gets "_2", "_3"... appended (so "ts=x" in a message is "ts_2").
 *  - Escaping: '"', '\' and the control characters U+0000..U+001F and U+007F
 *    are escaped (\" \\ \n \r \t, else \u00XX); well-formed UTF-8 is copied;
 *    every octet that does not start a well-formed UTF-8 sequence (overlong
 *    forms, surrogates and code points past U+10FFFF included) becomes
 *    U+FFFD, written \ufffd.
 *
 * Pure: no I/O, no allocation; the output goes to the caller's buffer.
 */
#ifndef TERN_CORE_LOGLINE_H
#define TERN_CORE_LOGLINE_H

#include <stddef.h>

/* Output room that always suffices for a message of len octets and ts and level of
   tslen + levellen octets (the terminating NUL included). */
#define LOGLINE_JSON_MAX(len, tslen, levellen)                                                     \
    (12 * (size_t)(len) + 6 * ((size_t)(tslen) + (size_t)(levellen)) + 64)

/*
 * Write the JSON object for msg[0..len) (no newline in or after it) into out,
 * NUL-terminated. ts and level are NUL-terminated strings (escaped like values).
 * Returns the length written, or 0 when cap is too small (out then holds "").
 */
size_t logline_json(const char *ts, const char *level, const char *msg, size_t len, char *out,
                    size_t cap);

#endif
