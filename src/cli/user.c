/*
 * user - `tern user add|passwd|del|list`: edit and list the user store
 * (format in src/auth/userdb.h and docs/auth.md).
 *
 *     tern user add    [-c CONFIG] [-f USERS_FILE] [--password-stdin] [--scram] [--cram] LOGIN
 *     tern user passwd [-c CONFIG] [-f USERS_FILE] [--password-stdin] [--scram] [--cram] LOGIN
 *     tern user del    [-c CONFIG] [-f USERS_FILE] LOGIN
 *     tern user list   [-c CONFIG] [-f USERS_FILE]
 *
 * The file is -f, else users_file of the configuration (-c, default
 * /etc/tern/tern.conf). An edit takes an exclusive flock on USERS_FILE.lock,
 * reads and validates the whole store (a store with errors is not edited),
 * changes only the entry of LOGIN in memory, so comments and every other line
 * stay byte for byte, checks the result parses, writes it to a temporary file
 * in the same directory with the original's mode (0600 for a new store) and
 * owner, fsyncs it, renames it over the store and fsyncs the directory.
 *
 * The password is read twice from the terminal without echo, or once from
 * standard input with --password-stdin (one line). add writes a yescrypt
 * hash; --scram adds a SCRAM-SHA-256 verifier (random 16-octet salt,
 * USER_SCRAM_ITER iterations), --cram the CRAM-MD5 secret (clear text, with a
 * warning). passwd keeps the entry's other options and recomputes the SCRAM
 * and CRAM-MD5 ones it had. list prints each login with the mechanisms it
 * enables and its networks, never a hash or secret.
 *
 * Exit status: 0 done, 1 error, 2 bad usage.
 */
#include "auth/userdb.h"
#include "cli/cli.h"
#include "config/config.h"
#include "config/internal.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

/* The largest store edited (as userdb_load reads). */
#define USER_FILE_MAX (16 * 1024 * 1024)
/* Longest password accepted (as userdb_verify_password checks). */
#define USER_MAX_PASSWORD 1024
/* SCRAM-SHA-256 iterations written (RFC 7677 §4 asks for at least 4096). */
#define USER_SCRAM_ITER 10000
#define USER_SCRAM_SALT 16

static const char usage_text[] =
    "usage: tern user add    [-c CONFIG] [-f USERS_FILE] [--password-stdin] [--scram] [--cram] "
    "LOGIN\n"
    "       tern user passwd [-c CONFIG] [-f USERS_FILE] [--password-stdin] [--scram] [--cram] "
    "LOGIN\n"
    "       tern user del    [-c CONFIG] [-f USERS_FILE] LOGIN\n"
    "       tern user list   [-c CONFIG] [-f USERS_FILE]\n";

enum user_cmd { CMD_ADD, CMD_PASSWD, CMD_DEL, CMD_LIST };

/* What the command line asked for. */
struct user_opts {
    enum user_cmd cmd;
    const char *config;  /* -c */
    const char *file;    /* -f, else users_file of the configuration */
    bool password_stdin; /* --password-stdin */
    bool scram;          /* --scram */
    bool cram;           /* --cram */
    char *login;         /* lowercased; NULL for list */
};

static void free_secret(char *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

/* ---------------------------------------------------------------------
 * Passwords
 */

/* One line from fd into buf (at most max octets, without its newline). Returns
   the length, or -1 on EOF before any newline with nothing read, read error or
   an overlong line. */
static long read_line_fd(int fd, char *buf, size_t max)
{
    size_t n = 0;
    bool any = false, over = false;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        any = true;
        if (c == '\n')
            break;
        if (n < max)
            buf[n++] = c;
        else
            over = true;
    }
    if (!any || over)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    return (long)n;
}

/* Ask on the terminal without echo. */
static long ask_tty(int fd, const char *prompt, char *buf, size_t max)
{
    struct termios old, quiet;
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        /* nothing to do: the read below still works or fails */
    }
    long n = read_line_fd(fd, buf, max);
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* as above */
    }
    return n;
}

/* The new password (malloc'd, NUL-terminated; free with free_secret), or NULL
   after a message. */
static char *get_password(const struct user_opts *o, size_t *len)
{
    char *pw = xmalloc(USER_MAX_PASSWORD + 1);
    long n;
    if (o->password_stdin) {
        n = read_line_fd(STDIN_FILENO, pw, USER_MAX_PASSWORD);
        if (n < 0) {
            fprintf(stderr, "tern user: no password (at most %d octets) on standard input\n",
                    USER_MAX_PASSWORD);
            goto fail;
        }
    } else {
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr,
                    "tern user: no terminal to ask for the password (%s); use "
                    "--password-stdin\n",
                    strerror(errno));
            goto fail;
        }
        char prompt[400];
        snprintf(prompt, sizeof prompt, "New password for %s: ", o->login);
        char *again = xmalloc(USER_MAX_PASSWORD + 1);
        n = ask_tty(fd, prompt, pw, USER_MAX_PASSWORD);
        long m = n < 0 ? -1 : ask_tty(fd, "Again: ", again, USER_MAX_PASSWORD);
        close(fd);
        bool same = n >= 0 && m == n && memcmp(pw, again, (size_t)n) == 0;
        free_secret(again, USER_MAX_PASSWORD + 1);
        if (!same) {
            fprintf(stderr, "tern user: %s\n",
                    n < 0 || m < 0 ? "no password read" : "the passwords differ");
            goto fail;
        }
    }
    pw[n] = '\0';
    if (n == 0 || memchr(pw, '\0', (size_t)n)) {
        fprintf(stderr, "tern user: the password must not be empty or hold a NUL octet\n");
        goto fail;
    }
    *len = (size_t)n;
    return pw;
fail:
    free_secret(pw, USER_MAX_PASSWORD + 1);
    return NULL;
}

/* ---------------------------------------------------------------------
 * The store as text
 */

/* Where the entry of a login lies: its physical lines (the first and its
   continuations), as byte ranges [start, end) including their newlines. */
struct entry_span {
    size_t nparts;
    struct {
        size_t start, end;
    } part[64];
    bool found;
    bool crlf; /* the first line ends in CRLF */
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Find login's entry in text, reading logical lines as userdb_parse does
 * (comment and blank lines are skipped and belong to no entry). The store has
 * been validated, so the login is what precedes the first ':'.
 */
static void find_entry(const char *text, size_t len, const char *login, struct entry_span *sp)
{
    memset(sp, 0, sizeof sp[0]);
    bool in = false; /* the logical line being read is login's */
    size_t pos = 0;
    while (pos < len) {
        size_t start = pos;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        pos = end;
        size_t i = start;
        while (i < end && is_space(text[i]))
            i++;
        if (i == end || text[i] == '\n' || text[i] == '\r' || text[i] == '#')
            continue;
        if (i == start) { /* a new logical line */
            if (sp->found)
                return;
            const char *colon = memchr(text + start, ':', end - start);
            size_t llen = colon ? (size_t)(colon - text) - start : 0;
            in = llen == strlen(login) && ascii_nieq(text + start, login, llen);
            if (!in)
                continue;
            sp->found = true;
            sp->crlf = end - start >= 2 && text[end - 1] == '\n' && text[end - 2] == '\r';
        } else if (!in) {
            continue;
        }
        if (sp->nparts < sizeof sp->part / sizeof sp->part[0]) {
            sp->part[sp->nparts].start = start;
            sp->part[sp->nparts].end = end;
            sp->nparts++;
        }
    }
}

/* The entry's logical line as userdb_parse sees it (joined with spaces). */
static char *entry_text(const char *text, const struct entry_span *sp)
{
    size_t cap = 1;
    for (size_t k = 0; k < sp->nparts; k++)
        cap += sp->part[k].end - sp->part[k].start + 1;
    char *s = xmalloc(cap);
    size_t n = 0;
    for (size_t k = 0; k < sp->nparts; k++) {
        size_t a = sp->part[k].start, b = sp->part[k].end;
        while (a < b && is_space(text[a]))
            a++;
        while (b > a && (text[b - 1] == '\n' || text[b - 1] == '\r' || is_space(text[b - 1])))
            b--;
        if (n)
            s[n++] = ' ';
        memcpy(s + n, text + a, b - a);
        n += b - a;
    }
    s[n] = '\0';
    return s;
}

/* text with the entry's lines replaced by repl (NULL: removed). */
static char *splice_entry(const char *text, size_t len, const struct entry_span *sp,
                          const char *repl, size_t *outlen)
{
    size_t rlen = repl ? strlen(repl) : 0;
    char *out = xmalloc(len + rlen + 1);
    size_t n = 0, pos = 0;
    for (size_t k = 0; k < sp->nparts; k++) {
        memcpy(out + n, text + pos, sp->part[k].start - pos);
        n += sp->part[k].start - pos;
        if (k == 0 && repl) {
            memcpy(out + n, repl, rlen);
            n += rlen;
        }
        pos = sp->part[k].end;
    }
    memcpy(out + n, text + pos, len - pos);
    n += len - pos;
    out[n] = '\0';
    *outlen = n;
    return out;
}

/* ---------------------------------------------------------------------
 * Files
 */

/* Write text to path atomically: temporary file, fsync, rename, fsync of the
   directory. mode and owner from st when the file existed. */
static int write_store(const char *path, const char *text, size_t len, const struct stat *st)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    const char *base = slash ? slash + 1 : path;
    size_t tlen = strlen(dir) + strlen(base) + 16;
    char *tmp = xmalloc(tlen);
    snprintf(tmp, tlen, "%s/.%s.XXXXXX", dir, base);
    int rc = -1;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tern user: cannot create a file in %s: %s\n", dir, strerror(errno));
        goto out;
    }
    if (fchmod(fd, st ? st->st_mode & 07777 : 0600) != 0) {
        fprintf(stderr, "tern user: %s: chmod: %s\n", tmp, strerror(errno));
        goto fail;
    }
    if (st && (st->st_uid != geteuid() || st->st_gid != getegid()) &&
        fchown(fd, st->st_uid, st->st_gid) != 0 && errno != EPERM) {
        fprintf(stderr, "tern user: %s: chown: %s\n", tmp, strerror(errno));
        goto fail;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "tern user: %s: write: %s\n", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        fprintf(stderr, "tern user: %s: fsync: %s\n", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        fprintf(stderr, "tern user: %s: close: %s\n", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "tern user: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        goto fail;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        fprintf(stderr, "tern user: %s: fsync of the directory: %s\n", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    free(tmp);
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------------
 * Commands
 */

static void format_networks(const struct userdb_entry *e, char *out, size_t outmax)
{
    size_t n = 0;
    out[0] = '\0';
    if (e->nnetworks == 0) {
        snprintf(out, outmax, "any");
        return;
    }
    for (size_t i = 0; i < e->nnetworks && n < outmax; i++) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(e->networks[i].family, e->networks[i].addr, a, sizeof a);
        int w = snprintf(out + n, outmax - n, "%s%s/%u", i ? "," : "", a, e->networks[i].prefix);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static int do_list(const char *file)
{
    struct config_diags d = {0, NULL};
    struct userdb *db = userdb_load(file, &d);
    cli_print_diags(&d);
    config_diags_free(&d);
    if (!db)
        return 1;
    for (size_t i = 0; i < userdb_count(db); i++) {
        const struct userdb_entry *e = userdb_entry_at(db, i);
        char nets[1024];
        format_networks(e, nets, sizeof nets);
        printf("%s\tPLAIN LOGIN%s%s\tnetworks=%s\n", e->login, e->cram_secret ? " CRAM-MD5" : "",
               e->has_scram ? " SCRAM-SHA-256" : "", nets);
    }
    userdb_free(db);
    return 0;
}

/* The new "login:hash[:options]" line (with its line ending). old: the old
   entry's logical line for passwd, NULL for add. NULL after a message. */
static char *new_entry(const struct user_opts *o, const char *old, bool crlf)
{
    bool scram = o->scram, cram = o->cram;
    /* options of the old entry that stay as they are */
    char *keep = xstrdup("");
    if (old) {
        const char *c1 = strchr(old, ':');
        const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        const char *p = c2 ? c2 + 1 : NULL;
        while (p && *p) {
            const char *semi = strchr(p, ';');
            const char *end = semi ? semi : p + strlen(p);
            const char *a = p, *b = end;
            while (a < b && is_space(*a))
                a++;
            while (b > a && is_space(b[-1]))
                b--;
            if (b - a >= 14 && ascii_nieq(a, "scram-sha-256", 13) &&
                (is_space(a[13]) || a[13] == '=')) {
                scram = true;
            } else if (b - a >= 9 && ascii_nieq(a, "cram-md5", 8) &&
                       (is_space(a[8]) || a[8] == '=')) {
                cram = true;
            } else if (b > a) {
                size_t kl = strlen(keep);
                keep = xrealloc(keep, kl + (size_t)(b - a) + 2);
                if (kl)
                    keep[kl++] = ';';
                memcpy(keep + kl, a, (size_t)(b - a));
                keep[kl + (size_t)(b - a)] = '\0';
            }
            p = semi ? semi + 1 : NULL;
        }
    }

    size_t pwlen;
    char *pw = get_password(o, &pwlen);
    char *hash = NULL, *sc = NULL, *line = NULL;
    if (!pw)
        goto out;
    if (cram) {
        bool ok = !is_space(pw[0]) && !is_space(pw[pwlen - 1]);
        for (size_t i = 0; i < pwlen; i++)
            if ((unsigned char)pw[i] < 0x20 || pw[i] == 0x7f || pw[i] == ';')
                ok = false;
        if (!ok) {
            fprintf(stderr, "tern user: a CRAM-MD5 secret cannot hold ';', control characters "
                            "or white space at either end; choose another password\n");
            goto out;
        }
        fprintf(stderr,
                "tern user: warning: the CRAM-MD5 secret of %s is stored in clear text "
                "in the user store (it is plaintext-equivalent)\n",
                o->login);
    }
    hash = userdb_hash_password(pw);
    if (!hash) {
        fprintf(stderr, "tern user: cannot hash the password\n");
        goto out;
    }
    if (scram) {
        uint8_t salt[USER_SCRAM_SALT];
        struct userdb_scram v;
        if (RAND_bytes(salt, sizeof salt) != 1 ||
            !userdb_scram_make(pw, pwlen, USER_SCRAM_ITER, salt, sizeof salt, &v) ||
            !(sc = userdb_scram_format(&v))) {
            fprintf(stderr, "tern user: cannot compute the SCRAM-SHA-256 verifier\n");
            OPENSSL_cleanse(&v, sizeof v);
            goto out;
        }
        OPENSSL_cleanse(&v, sizeof v);
    }
    size_t n = strlen(o->login) + strlen(hash) + strlen(keep) + (sc ? strlen(sc) : 0) +
               (cram ? pwlen : 0) + 64;
    line = xmalloc(n);
    int w = snprintf(line, n, "%s:%s", o->login, hash);
    const char *sep = ":";
    if (sc) {
        w += snprintf(line + w, n - (size_t)w, "%sscram-sha-256=%s", sep, sc);
        sep = ";";
    }
    if (cram) {
        w += snprintf(line + w, n - (size_t)w, "%scram-md5=%s", sep, pw);
        sep = ";";
    }
    if (*keep)
        w += snprintf(line + w, n - (size_t)w, "%s%s", sep, keep);
    snprintf(line + w, n - (size_t)w, "%s", crlf ? "\r\n" : "\n");
out:
    free_secret(pw, USER_MAX_PASSWORD + 1);
    free(hash);
    free(sc);
    free(keep);
    return line;
}

static int do_edit(const struct user_opts *o, const char *file)
{
    size_t flen = strlen(file);
    char *lockname = xmalloc(flen + 6);
    memcpy(lockname, file, flen);
    memcpy(lockname + flen, ".lock", 6);
    int rc = 1;
    char *text = NULL, *newtext = NULL, *line = NULL, *old = NULL;
    size_t len = 0, newlen = 0;
    int lfd = open(lockname, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        fprintf(stderr, "tern user: cannot lock %s: %s\n", lockname, strerror(errno));
        goto out;
    }

    struct stat st;
    bool exists = stat(file, &st) == 0;
    if (!exists && (errno != ENOENT || o->cmd != CMD_ADD)) {
        fprintf(stderr, "tern user: %s: %s\n", file, strerror(errno));
        goto out;
    }
    struct config_diags d = {0, NULL};
    if (exists) {
        text = cfg_read_file(file, USER_FILE_MAX, &len, &d);
        struct userdb *db = text ? userdb_parse(text, len, file, &d) : NULL;
        cli_print_diags(&d);
        config_diags_free(&d);
        if (!db) {
            fprintf(stderr, "tern user: %s has errors: fix them first\n", file);
            goto out;
        }
        userdb_free(db);
    } else {
        text = xstrdup("");
    }

    struct entry_span sp;
    find_entry(text, len, o->login, &sp);
    if (o->cmd == CMD_ADD && sp.found) {
        fprintf(stderr, "tern user: %s is already in %s (use tern user passwd)\n", o->login, file);
        goto out;
    }
    if (o->cmd != CMD_ADD && !sp.found) {
        fprintf(stderr, "tern user: %s is not in %s\n", o->login, file);
        goto out;
    }
    if (sp.found && sp.nparts == sizeof sp.part / sizeof sp.part[0]) {
        fprintf(stderr, "tern user: the entry of %s has too many continuation lines\n", o->login);
        goto out;
    }

    switch (o->cmd) {
    case CMD_ADD: {
        if (!(line = new_entry(o, NULL, false)))
            goto out;
        bool nl = len == 0 || text[len - 1] == '\n';
        newlen = len + (nl ? 0 : 1) + strlen(line);
        newtext = xmalloc(newlen + 1);
        memcpy(newtext, text, len);
        if (!nl)
            newtext[len] = '\n';
        memcpy(newtext + len + (nl ? 0 : 1), line, strlen(line) + 1);
        break;
    }
    case CMD_PASSWD:
        old = entry_text(text, &sp);
        if (!(line = new_entry(o, old, sp.crlf)))
            goto out;
        newtext = splice_entry(text, len, &sp, line, &newlen);
        break;
    default:
        newtext = splice_entry(text, len, &sp, NULL, &newlen);
        break;
    }

    /* What is written must read back. */
    struct userdb *check = userdb_parse(newtext, newlen, file, &d);
    if (!check || (o->cmd != CMD_DEL) != (userdb_find(check, o->login) != NULL)) {
        cli_print_diags(&d);
        fprintf(stderr, "tern user: the edited store would not read back; %s is unchanged\n", file);
        config_diags_free(&d);
        userdb_free(check);
        goto out;
    }
    config_diags_free(&d);
    userdb_free(check);
    if (write_store(file, newtext, newlen, exists ? &st : NULL) != 0)
        goto out;
    printf("%s: %s %s\n", file,
           o->cmd == CMD_ADD      ? "added"
           : o->cmd == CMD_PASSWD ? "changed the password of"
                                  : "deleted",
           o->login);
    rc = 0;
out:
    if (lfd >= 0)
        close(lfd); /* releases the lock */
    free(lockname);
    if (text)
        free_secret(text, len);
    if (newtext)
        free_secret(newtext, newlen);
    if (line)
        free_secret(line, strlen(line));
    if (old)
        free_secret(old, strlen(old));
    return rc;
}

int cli_user(int argc, char **argv)
{
    struct user_opts o = {CMD_LIST, CLI_DEFAULT_CONFIG, NULL, false, false, false, NULL};
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    static const char *const names[] = {"add", "passwd", "del", "list"};
    size_t k = 0;
    while (k < 4 && strcmp(argv[1], names[k]) != 0)
        k++;
    if (k == 4) {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        fprintf(stderr, "tern user: unknown command \"%s\"\n%s", argv[1], usage_text);
        return 2;
    }
    o.cmd = (enum user_cmd)k;

    static const struct option longopts[] = {
        {"password-stdin", no_argument, NULL, 'p'},
        {"scram", no_argument, NULL, 's'},
        {"cram", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_getopt_reset();
    int c;
    bool password_opts = false;
    while ((c = getopt_long(argc - 1, argv + 1, ":c:f:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config = optarg;
            break;
        case 'f':
            o.file = optarg;
            break;
        case 'p':
            o.password_stdin = password_opts = true;
            break;
        case 's':
            o.scram = password_opts = true;
            break;
        case 'm':
            o.cram = password_opts = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            fprintf(stderr, "tern user: option -%c needs a value\n%s", optopt, usage_text);
            return 2;
        default:
            if (optopt)
                fprintf(stderr, "tern user: unknown option -%c\n%s", optopt, usage_text);
            else
                fprintf(stderr, "tern user: unknown option \"%s\"\n%s", argv[optind], usage_text);
            return 2;
        }
    }
    int nargs = argc - 1 - optind;
    if (o.cmd == CMD_LIST ? nargs != 0 : nargs != 1) {
        fprintf(stderr, "tern user %s: %s\n%s", names[k],
                o.cmd == CMD_LIST ? "takes no LOGIN" : "needs one LOGIN", usage_text);
        return 2;
    }
    if (password_opts && o.cmd != CMD_ADD && o.cmd != CMD_PASSWD) {
        fprintf(stderr,
                "tern user %s: --password-stdin, --scram and --cram are for add and "
                "passwd\n",
                names[k]);
        return 2;
    }
    if (nargs == 1) {
        const char *login = argv[1 + optind];
        if (strlen(login) >= 320 || !cfg_valid_address(login, strlen(login))) {
            fprintf(stderr, "tern user: \"%s\" is not a login (user@domain)\n", login);
            return 1;
        }
        o.login = xstrdup(login);
        ascii_lower(o.login);
    }

    struct config *cfg = NULL;
    const char *file = o.file;
    if (!file) {
        cfg = cli_load_config(o.config);
        if (!cfg) {
            free(o.login);
            return 1;
        }
        if (!cfg->users_file) {
            fprintf(stderr, "tern user: %s sets no users_file; name the store with -f\n", o.config);
            config_free(cfg);
            free(o.login);
            return 1;
        }
        file = cfg->users_file;
    }
    int rc = o.cmd == CMD_LIST ? do_list(file) : do_edit(&o, file);
    config_free(cfg);
    free(o.login);
    return rc;
}
