/*
 * fuzz_sendmail - libFuzzer target for the sendmail command line and the
 * -t recipient extraction (src/cli/sendmail_args.c).
 *
 * Input: a command line, its words separated by NUL octets, up to a first
 * line "%%\n"; what follows is a header section for -t.
 *
 * Invariants (abort() when one breaks): the parser returns 0 or -1, with a
 * usage message only on -1; the recipients it returns are the last words of
 * argv; warnings are counted; the extraction never grows the header section
 * by more than the LF it may add, returns at most max addresses, each a
 * NUL-terminated string, and leaves no Bcc: field that a second pass would
 * find (a second pass returns no more addresses than the first).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/sendmail_args.h"

#define WORDS_MAX 64
#define ADDRS_MAX 64

static void check_args(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[WORDS_MAX + 1];
    int argc = 0;
    argv[argc++] = "sendmail";
    if (size > 0 && data[0] == 'm')
        argv[0] = "/usr/bin/mailq";
    size_t start = 0;
    for (size_t i = 0; i <= size && argc < WORDS_MAX; i++) {
        if (i == size || copy[i] == '\0') {
            argv[argc++] = copy + start;
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    struct sendmail_opts o;
    int r = sendmail_parse_args(argc, argv, &o);
    if (r != 0 && r != -1)
        abort();
    if (r == 0) {
        if (o.error[0] != '\0' || o.nrcpt > (size_t)argc - 1)
            abort();
        if (o.nrcpt && o.rcpts != argv + argc - o.nrcpt)
            abort();
    } else if (o.error[0] == '\0') {
        abort();
    }
    free(copy);
}

static void check_header(const uint8_t *data, size_t size)
{
    char *hdr = malloc(size + 3);
    char *scratch = malloc(size + 3);
    memcpy(hdr, data, size);
    size_t len = size;
    static char out[ADDRS_MAX][SMTP_PATH_MAX + 1];
    long n = sendmail_header_rcpts(hdr, &len, out, ADDRS_MAX, scratch);
    if (n < -1 || n > ADDRS_MAX || len > size + 1)
        abort();
    for (long k = 0; k < n; k++)
        if (memchr(out[k], '\0', sizeof out[k]) == NULL)
            abort();
    if (n >= 0) {
        size_t len2 = len;
        long n2 = sendmail_header_rcpts(hdr, &len2, out, ADDRS_MAX, scratch);
        if (n2 > n || len2 > len + 1)
            abort();
    }
    free(hdr);
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + 3 <= size; i++) {
        if (memcmp(data + i, "%%\n", 3) == 0) {
            sep = data + i;
            break;
        }
    }
    size_t alen = sep ? (size_t)(sep - data) : size;
    check_args(data, alen);
    if (sep)
        check_header(sep + 3, size - alen - 3);
    else
        check_header(data, size);
    return 0;
}
