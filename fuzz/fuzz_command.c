/*
 * fuzz_command - libFuzzer target for command lines, BDAT arguments and
 * replies (src/smtp/command.c, reply.c; RFC 5321 §4.1.1, §4.2, RFC 3030).
 * Invariants: the argument lies inside the line and holds no control
 * character; a formatted reply is a sequence of CRLF-terminated lines of at
 * most 512 octets that never holds a bare CR or LF.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"

static void check_cmd(const char *line, size_t len)
{
    struct smtp_cmd cmd;
    const struct smtp_status *st = smtp_cmd_parse(line, len, &cmd);
    if (st != NULL) {
        if (st->code != 500 || cmd.verb != SMTP_VERB_UNKNOWN)
            abort();
        return;
    }
    if (cmd.verb == SMTP_VERB_UNKNOWN)
        abort();
    if (cmd.arg_len > 0) {
        if (cmd.arg < line || cmd.arg + cmd.arg_len > line + len)
            abort();
        if (cmd.arg[0] == ' ' || cmd.arg[cmd.arg_len - 1] == ' ')
            abort();
        for (size_t i = 0; i < cmd.arg_len; i++) {
            unsigned char c = (unsigned char)cmd.arg[i];
            if (c == '\r' || c == '\n' || c == '\0')
                abort();
        }
    }
}

static void check_bdat(const char *s, size_t len)
{
    uint64_t size;
    bool last;
    const struct smtp_status *st = smtp_bdat_parse(s, len, &size, &last);
    if (st != NULL && (st->code != 501 || size != 0 || last))
        abort();
}

static void check_reply(const char *data, size_t len)
{
    char *text = malloc(len + 1);
    if (text == NULL)
        return;
    memcpy(text, data, len);
    text[len] = '\0';
    size_t outlen = len % 7 == 0 ? 20 : 2 * len + 64;
    char *out = malloc(outlen);
    if (out == NULL) {
        free(text);
        return;
    }
    size_t n = smtp_reply_format(out, outlen, 250, len % 3 ? "2.0.0" : NULL, text);
    if (n >= outlen || out[n] != '\0')
        abort();
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '\r') {
            if (i + 1 >= n || out[i + 1] != '\n')
                abort();
            if (i - start > 510 || memcmp(out + start, "250", 3) != 0)
                abort();
            int code;
            bool lastline;
            const char *t;
            if (!smtp_reply_line_parse(out + start, i - start, &code, &lastline, &t) ||
                code != 250 || lastline != (i + 2 == n))
                abort();
            start = i + 2;
            i++;
        } else if (out[i] == '\n' || out[i] == '\0') {
            abort();
        }
    }
    if (start != n)
        abort();
    free(out);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* copy to an exact-size heap buffer so a read past the end is caught */
    char *line = malloc(size ? size : 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    check_cmd(line, size);
    check_bdat(line, size);
    int code;
    bool last;
    const char *text;
    if (smtp_reply_line_parse(line, size, &code, &last, &text) && (code < 200 || code > 599))
        abort();
    free(line);
    check_reply((const char *)data, size);
    return 0;
}
