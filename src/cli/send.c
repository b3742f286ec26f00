/*
 * send - `tern send`: a scripting SMTP client. It builds one message
 * (src/smtp/compose.h: Date, Message-ID, MIME-Version, a text part,
 * attachments in base64, RFC 2047 subjects, RFC 2231 file names) and submits
 * it to one server, synchronously, with blocking sockets and OpenSSL:
 *
 *     tern send [--server HOST] [--port N] [--tls starttls|implicit|none]
 *               [--insecure] [--ca-file FILE] [--user U (--password-file F |
 *               --password-stdin)] [--from ADDR] --to ADDR... [--cc ADDR...]
 *               [--bcc ADDR...] [--subject S] [--body-file F] [--attach F...]
 *               [--header "Name: value"...] [--helo NAME] [--timeout S] [--quiet]
 *
 * The dialogue (RFC 5321 §3, §4.1): greeting, EHLO (HELO when EHLO is
 * refused), STARTTLS (RFC 3207; EHLO again after it), AUTH PLAIN (RFC 4616)
 * or LOGIN (RFC 4954), MAIL FROM with SIZE (RFC 1870) and SMTPUTF8 (RFC
 * 6531) when they apply, one RCPT TO per recipient, DATA with dot-stuffing
 * (§4.5.2), QUIT. Replies are read with the client parser of
 * src/smtp/client.h. Certificates are verified (the system's CAs, or
 * --ca-file; the name given to --server, or its address) unless --insecure.
 * A password is never sent without TLS except to a loopback address.
 *
 * The text is --body-file, else standard input (after the password line
 * with --password-stdin). A progress bar goes to stderr while a message of
 * 256 KiB or more is sent, when stderr is a terminal and --quiet is not given.
 *
 * Exit status: 0 sent to every recipient; 1 a permanent failure (a 5xx
 * reply, a TLS or certificate failure, a file that cannot be read), also
 * when only some recipients were refused (the others got the message; each
 * refusal is reported); 75 (EX_TEMPFAIL) a temporary one (4xx replies only,
 * no connection, a timeout or a connection lost); 2 bad usage.
 */
#include "cli/cli.h"
#include "config/internal.h"
#include "core/buf.h"
#include "core/util.h"
#include "smtp/client.h"
#include "smtp/compose.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define EXIT_SENT 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_TEMPFAIL 75

/* The largest message built (attachments included, before base64). */
#define SEND_MESSAGE_MAX (1024ull * 1024 * 1024)
/* The longest password read. */
#define SEND_PASSWORD_MAX 1024
/* Messages from this size on get a progress bar (on a terminal). */
#define SEND_PROGRESS_MIN (256 * 1024)
/* Octets dot-stuffed and written at a time. */
#define SEND_CHUNK (64 * 1024)
#define SEND_TIMEOUT_DEFAULT 300

static const char usage_text[] =
    "usage: tern send [--server HOST] [--port N] [--tls starttls|implicit|none] [--insecure]\n"
    "                 [--ca-file FILE] [--user USER (--password-file FILE | --password-stdin)]\n"
    "                 [--from ADDR] --to ADDR [--to ADDR...] [--cc ADDR...] [--bcc ADDR...]\n"
    "                 [--subject TEXT] [--body-file FILE] [--attach FILE...]\n"
    "                 [--header \"Name: value\"...] [--helo NAME] [--timeout SECONDS] "
    "[--quiet]\n";

enum tls_mode { TLS_STARTTLS = 0, TLS_IMPLICIT, TLS_NONE };

/* A list of strings from repeated options (argv's, not owned). */
struct strlist {
    const char **v;
    size_t n;
};

/* What the command line asked for. */
struct send_opts {
    const char *server;        /* --server; default localhost */
    const char *port;          /* --port; default by --tls and --user */
    enum tls_mode tls;         /* --tls */
    bool insecure;             /* --insecure: no certificate check */
    const char *ca_file;       /* --ca-file */
    const char *user;          /* --user */
    const char *password_file; /* --password-file */
    bool password_stdin;       /* --password-stdin */
    const char *from;          /* --from */
    struct strlist to;         /* --to: recipients in To: */
    struct strlist cc;         /* --cc: recipients in Cc: */
    struct strlist bcc;        /* --bcc: recipients in no header field */
    struct strlist attach;     /* --attach: files */
    struct strlist headers;    /* --header: "Name: value" */
    const char *subject;       /* --subject */
    const char *body_file;     /* --body-file; NULL: standard input */
    const char *helo;          /* --helo */
    int timeout;               /* --timeout, seconds */
    bool quiet;                /* --quiet */
};

/* One connection to the server. */
struct conn {
    int fd;
    SSL *ssl;         /* after STARTTLS or with implicit TLS */
    char in[8192];    /* received, not yet read */
    size_t pos, len;  /* in[pos..len) */
    int timeout_ms;   /* for every read and write */
    const char *peer; /* server name for messages */
    bool loopback;    /* connected to a loopback address */
    char local[64];   /* our address as an EHLO literal: "[127.0.0.1]" */
    char error[512];  /* the last I/O error */
    bool error_temp;  /* ... and whether retrying later may help */
};

static void strlist_add(struct strlist *l, const char *s)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n++] = s;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tern send: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------------
 * Files
 */

/* The whole of fd (at most max octets). NULL with errno set (EFBIG past max). */
static uint8_t *read_all(int fd, size_t max, size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *p = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                free(p);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            p = xrealloc(p, cap);
        }
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(p);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        free(p);
        errno = EFBIG;
        return NULL;
    }
    *len = n;
    return p;
}

static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    uint8_t *p = read_all(fd, max, len);
    int e = errno;
    close(fd);
    errno = e;
    return p;
}

/* One line from fd (without its line end) into buf, read octet by octet so
   that what follows stays unread. -1 on EOF before anything, a read error or
   a line longer than max. */
static long read_line_fd(int fd, char *buf, size_t max)
{
    size_t n = 0;
    bool any = false;
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
        if (n == max)
            return -1;
        buf[n++] = c;
    }
    if (!any)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

/* ---------------------------------------------------------------------
 * The connection
 */

static void conn_fail(struct conn *c, bool temp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *c, bool temp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->error_temp = temp;
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) ==
               127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Connect to one address within the timeout. */
static int connect_one(const struct addrinfo *ai, int timeout_ms, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r;
        do
            r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r == 0)
            soerr = ETIMEDOUT;
        else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr != 0) {
            *err = soerr;
            close(fd);
            return -1;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int conn_open(struct conn *c, const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        conn_fail(c, r == EAI_AGAIN, "cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = connect_one(ai, c->timeout_ms, &err);
        if (fd < 0)
            continue;
        c->fd = fd;
        c->loopback = is_loopback(ai->ai_addr);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char a[INET6_ADDRSTRLEN] = "127.0.0.1";
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET6) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof a);
                snprintf(c->local, sizeof c->local, "[IPv6:%s]", a);
            } else {
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a);
                snprintf(c->local, sizeof c->local, "[%s]", a);
            }
        }
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    conn_fail(c, true, "cannot connect to %s port %s: %s", host, port, strerror(err));
    return -1;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "handshake failed";
}

/* The TLS handshake on the connection; verify the certificate unless insecure. */
static int conn_tls(struct conn *c, struct tls_client *t, const char *host, bool insecure)
{
    unsigned char ip[16];
    bool numeric = cfg_parse_ip(host, strlen(host), ip) != 0;
    c->ssl = tls_client_ssl_new(t, numeric ? NULL : host, !insecure);
    if (!insecure && numeric)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
    SSL_set_fd(c->ssl, c->fd);
    ERR_clear_error();
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        if (!insecure && v != X509_V_OK)
            conn_fail(c, false,
                      "TLS with %s: certificate verification failed: %s (--ca-file names other "
                      "CAs; --insecure skips the check)",
                      host, X509_verify_cert_error_string(v));
        else
            conn_fail(c, false, "TLS with %s failed: %s", host, ssl_reason());
        return -1;
    }
    return 0;
}

static int conn_write(struct conn *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, s, n > INT_MAX ? INT_MAX : (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = send(c->fd, s, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w <= 0) {
            conn_fail(c, true, "connection to %s lost while sending: %s", c->peer,
                      errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One line (CRLF or LF removed) into line (max SMTP_REPLY_LINE_MAX + 1 octets). */
static long conn_getline(struct conn *c, char *line)
{
    size_t n = 0;
    for (;;) {
        while (c->pos < c->len) {
            char ch = c->in[c->pos++];
            if (ch == '\n') {
                if (n > 0 && line[n - 1] == '\r')
                    n--;
                line[n] = '\0';
                return (long)n;
            }
            if (n == SMTP_REPLY_LINE_MAX + 1) {
                conn_fail(c, true, "%s sent a reply line longer than %d octets", c->peer,
                          SMTP_REPLY_LINE_MAX);
                return -1;
            }
            line[n++] = ch;
        }
        ssize_t r;
        errno = 0;
        if (c->ssl) {
            int k = SSL_read(c->ssl, c->in, sizeof c->in);
            r = k > 0 ? k : (SSL_get_error(c->ssl, k) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
        } else {
            r = recv(c->fd, c->in, sizeof c->in, 0);
            if (r < 0 && errno == EINTR)
                continue;
        }
        if (r == 0) {
            conn_fail(c, true, "%s closed the connection", c->peer);
            return -1;
        }
        if (r < 0) {
            conn_fail(c, true, "no reply from %s: %s", c->peer,
                      errno == EAGAIN || errno == EWOULDBLOCK || errno == 0 ? "timed out"
                                                                            : strerror(errno));
            return -1;
        }
        c->pos = 0;
        c->len = (size_t)r;
    }
}

/* Read one complete reply. */
static int read_reply(struct conn *c, struct smtp_reply *r)
{
    char line[SMTP_REPLY_LINE_MAX + 2];
    smtp_reply_init(r);
    for (;;) {
        long n = conn_getline(c, line);
        if (n < 0)
            return -1;
        enum smtp_reply_step st = smtp_reply_feed(r, line, (size_t)n);
        if (st == SMTP_REPLY_DONE)
            return 0;
        if (st == SMTP_REPLY_MALFORMED) {
            conn_fail(c, true, "%s sent a malformed reply: \"%.100s\"", c->peer, line);
            return -1;
        }
    }
}

/* Send a command line (CRLF added) and read its reply. */
static int command(struct conn *c, struct smtp_reply *r, const char *line)
{
    size_t n = strlen(line);
    char *buf = xmalloc(n + 2);
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 2);
    int rc = conn_write(c, buf, n + 2) < 0 ? -1 : read_reply(c, r);
    OPENSSL_cleanse(buf, n + 2); /* AUTH lines */
    free(buf);
    return rc;
}

/* The reply on one line: "550 5.1.1 text / more text". */
static void describe(const struct smtp_reply *r, char *out, size_t outlen)
{
    smtp_reply_describe(r, out, outlen);
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* Report a refusal; its exit status: 75 for 4xx, 1 otherwise. */
static int refused(const char *what, const struct smtp_reply *r)
{
    char d[SMTP_REPLY_TEXT_MAX + 64];
    describe(r, d, sizeof d);
    say("%s refused: %s", what, d);
    return r->code >= 400 && r->code < 500 ? EXIT_TEMPFAIL : EXIT_FAILED;
}

static int io_failed(const struct conn *c)
{
    say("%s", c->error);
    return c->error_temp ? EXIT_TEMPFAIL : EXIT_FAILED;
}

/* The worse of two exit statuses (1 over 75 over 0). */
static int worse(int a, int b)
{
    if (a == EXIT_FAILED || b == EXIT_FAILED)
        return EXIT_FAILED;
    return a ? a : b;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* ---------------------------------------------------------------------
 * The dialogue
 */

static int ehlo(struct conn *c, const char *name, struct smtp_peer_ext *ext)
{
    char line[600];
    struct smtp_reply r;
    snprintf(line, sizeof line, "EHLO %s", name);
    if (command(c, &r, line) < 0)
        return io_failed(c);
    if (r.code / 100 == 2) {
        smtp_ehlo_parse(&r, ext);
        return 0;
    }
    if (r.code / 100 == 4)
        return refused("EHLO", &r);
    snprintf(line, sizeof line, "HELO %s", name);
    memset(ext, 0, sizeof *ext);
    if (command(c, &r, line) < 0)
        return io_failed(c);
    return r.code / 100 == 2 ? 0 : refused("HELO", &r);
}

static int auth(struct conn *c, const struct smtp_peer_ext *ext, const char *user,
                const char *password)
{
    struct smtp_reply r;
    struct buf b;
    buf_init(&b, 4096);
    int rc = 0;
    if (ext->auth & SMTP_AUTH_MECH_PLAIN) {
        size_t ul = strlen(user), pl = strlen(password);
        uint8_t *raw = xmalloc(ul + pl + 2);
        raw[0] = '\0';
        memcpy(raw + 1, user, ul);
        raw[ul + 1] = '\0';
        memcpy(raw + ul + 2, password, pl);
        compose_base64(&b, raw, ul + pl + 2);
        OPENSSL_cleanse(raw, ul + pl + 2);
        free(raw);
        /* RFC 4954 §4: an initial response that would make the command line
           too long (512 octets) goes after an empty challenge instead */
        bool initial = b.len + 13 <= 510;
        char *line = xmalloc(b.len + 16);
        snprintf(line, b.len + 16, "AUTH PLAIN%s%s", initial ? " " : "", initial ? b.data : "");
        int k = command(c, &r, line);
        OPENSSL_cleanse(line, b.len + 16);
        free(line);
        if (k == 0 && !initial && r.code == 334)
            k = command(c, &r, b.data);
        if (k < 0)
            rc = io_failed(c);
        else if (r.code != 235)
            rc = refused("AUTH PLAIN", &r);
    } else if (ext->auth & SMTP_AUTH_MECH_LOGIN) {
        const char *steps[2] = {user, password};
        if (command(c, &r, "AUTH LOGIN") < 0) {
            rc = io_failed(c);
            goto out;
        }
        for (int i = 0; i < 2; i++) {
            if (r.code != 334) {
                rc = refused("AUTH LOGIN", &r);
                goto out;
            }
            buf_reset(&b);
            compose_base64(&b, (const uint8_t *)steps[i], strlen(steps[i]));
            if (command(c, &r, b.data ? b.data : "") < 0) {
                rc = io_failed(c);
                goto out;
            }
        }
        if (r.code != 235)
            rc = refused("AUTH LOGIN", &r);
    } else {
        say("%s offers neither AUTH PLAIN nor AUTH LOGIN%s", c->peer,
            ext->auth ? "" : " (no AUTH at all: it may want TLS first)");
        rc = EXIT_FAILED;
    }
out:
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    buf_free(&b);
    return rc;
}

/* "\r[#####.....]  42% 1.2 of 3.0 MiB" on stderr. */
static void progress(uint64_t done, uint64_t total, int *last)
{
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct == *last)
        return;
    *last = pct;
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\rtern send: [%s] %3d%% %.1f of %.1f MiB", bar, pct,
            (double)done / (1024 * 1024), (double)total / (1024 * 1024));
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* DATA: the message dot-stuffed, then the final dot; r gets its reply. */
static int send_data(struct conn *c, const struct buf *msg, bool bar, struct smtp_reply *r)
{
    if (command(c, r, "DATA") < 0)
        return io_failed(c);
    if (r->code != 354)
        return refused("DATA", r);
    struct buf out;
    buf_init(&out, 2 * SEND_CHUNK + 8);
    bool bol = true;
    int last = -1;
    uint64_t total = msg->len;
    for (size_t off = 0; off < msg->len; off += SEND_CHUNK) {
        size_t n = msg->len - off < SEND_CHUNK ? msg->len - off : SEND_CHUNK;
        buf_reset(&out);
        if (compose_dot_stuff(&out, (const uint8_t *)msg->data + off, n, &bol) < 0 ||
            conn_write(c, out.data, out.len) < 0) {
            buf_free(&out);
            if (bar)
                fputc('\n', stderr);
            return io_failed(c);
        }
        if (bar)
            progress(off + n, total, &last);
    }
    buf_free(&out);
    /* the message ends with CRLF (compose_message's); then the final dot */
    if (conn_write(c, ".\r\n", 3) < 0)
        return io_failed(c);
    int saved = c->timeout_ms;
    struct timeval tv = {.tv_sec = 2 * (saved / 1000)};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); /* RFC 5321 §4.5.3.2.6 */
    if (read_reply(c, r) < 0)
        return io_failed(c);
    if (r->code / 100 != 2)
        return refused("the message was", r);
    return 0;
}

/* ---------------------------------------------------------------------
 * The command line
 */

enum {
    OPT_SERVER = 's',
    OPT_PORT = 'p',
    OPT_QUIET = 'q',
    OPT_TO = 't',
    OPT_FROM = 'f',
    OPT_HELP = 'h',
    OPT_TLS = 256,
    OPT_INSECURE,
    OPT_CA,
    OPT_USER,
    OPT_PWFILE,
    OPT_PWSTDIN,
    OPT_CC,
    OPT_BCC,
    OPT_SUBJECT,
    OPT_BODY,
    OPT_ATTACH,
    OPT_HEADER,
    OPT_HELO,
    OPT_TIMEOUT,
};

static int parse_args(int argc, char **argv, struct send_opts *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"port", required_argument, NULL, OPT_PORT},
        {"tls", required_argument, NULL, OPT_TLS},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"ca-file", required_argument, NULL, OPT_CA},
        {"user", required_argument, NULL, OPT_USER},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"password-stdin", no_argument, NULL, OPT_PWSTDIN},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"cc", required_argument, NULL, OPT_CC},
        {"bcc", required_argument, NULL, OPT_BCC},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"body-file", required_argument, NULL, OPT_BODY},
        {"attach", required_argument, NULL, OPT_ATTACH},
        {"header", required_argument, NULL, OPT_HEADER},
        {"helo", required_argument, NULL, OPT_HELO},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    o->server = "localhost";
    o->timeout = SEND_TIMEOUT_DEFAULT;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":s:p:f:t:qh", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case OPT_SERVER:
            o->server = optarg;
            break;
        case OPT_PORT:
            if (!parse_u64(optarg, strlen(optarg), &v) || v < 1 || v > 65535) {
                say("--port: \"%s\" is not a port number", optarg);
                return -1;
            }
            o->port = optarg;
            break;
        case OPT_TLS:
            if (strcmp(optarg, "starttls") == 0)
                o->tls = TLS_STARTTLS;
            else if (strcmp(optarg, "implicit") == 0)
                o->tls = TLS_IMPLICIT;
            else if (strcmp(optarg, "none") == 0)
                o->tls = TLS_NONE;
            else {
                say("--tls: \"%s\" is not starttls, implicit or none", optarg);
                return -1;
            }
            break;
        case OPT_INSECURE:
            o->insecure = true;
            break;
        case OPT_CA:
            o->ca_file = optarg;
            break;
        case OPT_USER:
            o->user = optarg;
            break;
        case OPT_PWFILE:
            o->password_file = optarg;
            break;
        case OPT_PWSTDIN:
            o->password_stdin = true;
            break;
        case OPT_FROM:
            o->from = optarg;
            break;
        case OPT_TO:
            strlist_add(&o->to, optarg);
            break;
        case OPT_CC:
            strlist_add(&o->cc, optarg);
            break;
        case OPT_BCC:
            strlist_add(&o->bcc, optarg);
            break;
        case OPT_SUBJECT:
            o->subject = optarg;
            break;
        case OPT_BODY:
            o->body_file = optarg;
            break;
        case OPT_ATTACH:
            strlist_add(&o->attach, optarg);
            break;
        case OPT_HEADER:
            strlist_add(&o->headers, optarg);
            break;
        case OPT_HELO:
            o->helo = optarg;
            break;
        case OPT_TIMEOUT:
            if (!parse_u64(optarg, strlen(optarg), &v) || v < 1 || v > 3600) {
                say("--timeout: \"%s\" is not a number of seconds (1 to 3600)", optarg);
                return -1;
            }
            o->timeout = (int)v;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 1;
        case ':':
            say("%s needs a value", argv[optind - 1]);
            return -1;
        default:
            say("unknown option %s", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        say("unexpected argument \"%s\"", argv[optind]);
        return -1;
    }
    if (o->to.n + o->cc.n + o->bcc.n == 0) {
        say("no recipient: give --to (or --cc, --bcc)");
        return -1;
    }
    if (o->user && !o->password_file && !o->password_stdin) {
        say("--user needs --password-file or --password-stdin");
        return -1;
    }
    if ((o->password_file || o->password_stdin) && !o->user) {
        say("a password needs --user");
        return -1;
    }
    if (o->password_file && o->password_stdin) {
        say("give --password-file or --password-stdin, not both");
        return -1;
    }
    if (!o->port)
        o->port = o->tls == TLS_IMPLICIT ? "465" : o->user ? "587" : "25";
    return 0;
}

/* The envelope address of a mailbox argument, into out. False if it is not one. */
static bool envelope_addr(const char *arg, char *out, size_t outlen)
{
    struct compose_mailbox mb;
    if (!compose_parse_mailbox(arg, &mb) || mb.addr_len >= outlen)
        return false;
    memcpy(out, mb.addr, mb.addr_len);
    out[mb.addr_len] = '\0';
    return true;
}

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* Our name for EHLO: --helo, else the host name when it is a domain with a
   dot, else our address as a literal. */
static void helo_name(const struct send_opts *o, const struct conn *c, char *out, size_t outlen)
{
    if (o->helo) {
        snprintf(out, outlen, "%s", o->helo);
        return;
    }
    char h[256];
    if (gethostname(h, sizeof h) == 0) {
        h[sizeof h - 1] = '\0';
        if (strchr(h, '.') && cfg_valid_domain(h, strlen(h), false)) {
            snprintf(out, outlen, "%s", h);
            return;
        }
    }
    snprintf(out, outlen, "%s", c->local[0] ? c->local : "[127.0.0.1]");
}

/* The From address when --from is not given: the login when it is an
   address, else USER@HOSTNAME. */
static const char *default_from(const struct send_opts *o, char *buf, size_t buflen)
{
    if (o->user && strchr(o->user, '@'))
        return o->user;
    const struct passwd *pw = getpwuid(getuid());
    char h[256] = "localhost";
    if (gethostname(h, sizeof h) != 0 || !cfg_valid_domain(h, strnlen(h, sizeof h), false))
        snprintf(h, sizeof h, "localhost");
    h[sizeof h - 1] = '\0';
    snprintf(buf, buflen, "%s@%s", pw && pw->pw_name ? pw->pw_name : "root", h);
    return buf;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The file name shown for an attachment: the path's last part. */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

/* One run of the command: the options, what was read, the message built. */
struct job {
    struct send_opts o;
    char password[SEND_PASSWORD_MAX + 1]; /* wiped by job_free */
    uint8_t *body;                        /* the text read */
    size_t body_len;
    uint8_t **files;              /* the attachments' contents, one per --attach */
    struct compose_part *parts;   /* ... as parts of the message */
    struct compose_field *fields; /* the --header fields */
    char **field_names;           /* ... their names (owned) */
    struct buf msg;               /* the message, CRLF lines, not dot-stuffed */
    char message_id[300];         /* "<...>" as in the message */
    char **rcpts;                 /* envelope recipients (owned): to, cc, bcc */
    size_t nrcpts;
    char sender[SMTP_PATH_MAX + 1]; /* envelope sender */
};

static void job_free(struct job *j)
{
    OPENSSL_cleanse(j->password, sizeof j->password);
    free(j->body);
    for (size_t i = 0; i < j->o.attach.n; i++)
        free(j->files ? j->files[i] : NULL);
    free(j->files);
    free(j->parts);
    for (size_t i = 0; i < j->o.headers.n; i++)
        free(j->field_names ? j->field_names[i] : NULL);
    free(j->field_names);
    free(j->fields);
    for (size_t i = 0; i < j->nrcpts; i++)
        free(j->rcpts[i]);
    free(j->rcpts);
    buf_free(&j->msg);
    free(j->o.to.v);
    free(j->o.cc.v);
    free(j->o.bcc.v);
    free(j->o.attach.v);
    free(j->o.headers.v);
}

/* Read the inputs and build the message. 0, or an exit status. */
static int prepare(struct job *j)
{
    struct send_opts *o = &j->o;
    if (o->password_file) {
        int fd = open(o->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read_line_fd(fd, j->password, SEND_PASSWORD_MAX) < 0) {
            say("cannot read a password from %s: %s", o->password_file,
                fd < 0 ? strerror(errno) : "empty, unreadable or too long");
            if (fd >= 0)
                close(fd);
            return EXIT_FAILED;
        }
        close(fd);
    } else if (o->password_stdin) {
        if (read_line_fd(STDIN_FILENO, j->password, SEND_PASSWORD_MAX) < 0) {
            say("cannot read a password line from standard input");
            return EXIT_FAILED;
        }
    }

    if (o->body_file) {
        j->body = read_file(o->body_file, SEND_MESSAGE_MAX, &j->body_len);
        if (!j->body) {
            say("cannot read %s: %s", o->body_file, strerror(errno));
            return EXIT_FAILED;
        }
    } else {
        j->body = read_all(STDIN_FILENO, SEND_MESSAGE_MAX, &j->body_len);
        if (!j->body) {
            say("cannot read the text from standard input: %s", strerror(errno));
            return EXIT_FAILED;
        }
    }

    size_t na = o->attach.n;
    j->files = xcalloc(na ? na : 1, sizeof *j->files);
    j->parts = xcalloc(na ? na : 1, sizeof *j->parts);
    uint64_t total = j->body_len;
    for (size_t i = 0; i < na; i++) {
        const char *path = o->attach.v[i];
        size_t len;
        /* read no more than what is left of SEND_MESSAGE_MAX */
        j->files[i] = read_file(path, (size_t)(SEND_MESSAGE_MAX - total), &len);
        if (!j->files[i] && errno != EFBIG) {
            say("cannot read %s: %s", path, strerror(errno));
            return EXIT_FAILED;
        }
        total += j->files[i] ? len : SEND_MESSAGE_MAX + 1;
        if (total > SEND_MESSAGE_MAX) {
            say("the attachments pass %llu octets", (unsigned long long)SEND_MESSAGE_MAX);
            return EXIT_FAILED;
        }
        j->parts[i] =
            (struct compose_part){base_name(path), compose_content_type(path), j->files[i], len};
    }

    size_t nh = o->headers.n;
    j->fields = xcalloc(nh ? nh : 1, sizeof *j->fields);
    j->field_names = xcalloc(nh ? nh : 1, sizeof *j->field_names);
    for (size_t i = 0; i < nh; i++) {
        const char *h = o->headers.v[i];
        const char *colon = strchr(h, ':');
        if (!colon || colon == h) {
            say("--header \"%s\": write \"Name: value\"", h);
            return EXIT_USAGE;
        }
        j->field_names[i] = xstrndup(h, (size_t)(colon - h));
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        j->fields[i] = (struct compose_field){j->field_names[i], v};
    }

    /* envelope */
    char frombuf[600];
    const char *from = o->from ? o->from : default_from(o, frombuf, sizeof frombuf);
    if (!envelope_addr(from, j->sender, sizeof j->sender)) {
        say("--from \"%s\" is not an address (local@domain or \"Name <local@domain>\")", from);
        return EXIT_USAGE;
    }
    const struct strlist *lists[3] = {&o->to, &o->cc, &o->bcc};
    for (int l = 0; l < 3; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            char a[SMTP_PATH_MAX + 1];
            if (!envelope_addr(lists[l]->v[i], a, sizeof a)) {
                say("\"%s\" is not an address (local@domain or \"Name <local@domain>\")",
                    lists[l]->v[i]);
                return EXIT_USAGE;
            }
            j->rcpts = xreallocarray(j->rcpts, j->nrcpts + 1, sizeof *j->rcpts);
            j->rcpts[j->nrcpts++] = xstrdup(a);
        }
    }

    /* Date, Message-ID, boundary */
    char date[64];
    rfc5322_date((int64_t)time(NULL), date, sizeof date);
    unsigned char rnd[24];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        say("no random numbers from OpenSSL");
        return EXIT_FAILED;
    }
    char idhex[25], bhex[25];
    hex(rnd, 12, idhex);
    hex(rnd + 12, 12, bhex);
    const char *dom = strrchr(j->sender, '@');
    if (dom && has_8bit(dom))
        dom = NULL; /* a Message-ID is ASCII */
    snprintf(j->message_id, sizeof j->message_id, "<%" PRIx64 ".%s@%s>", (uint64_t)time(NULL),
             idhex, dom ? dom + 1 : "localhost");
    char boundary[64];
    snprintf(boundary, sizeof boundary, "=_tern_%s", bhex);

    struct compose_msg m = {
        .from = from,
        .to = o->to.v,
        .nto = o->to.n,
        .cc = o->cc.v,
        .ncc = o->cc.n,
        .subject = o->subject,
        .date = date,
        .message_id = j->message_id,
        .fields = j->fields,
        .nfields = nh,
        .body = j->body,
        .body_len = j->body_len,
        .parts = j->parts,
        .nparts = na,
        .boundary = boundary,
    };
    buf_init(&j->msg, (size_t)(SEND_MESSAGE_MAX / 3 * 4 + SEND_MESSAGE_MAX / 50 + 65536));
    char err[300];
    if (compose_message(&m, &j->msg, err, sizeof err) < 0) {
        say("%s", err);
        return EXIT_USAGE;
    }
    return 0;
}

/* Connect and submit. An exit status. */
static int submit(struct job *j, struct tls_client *tls)
{
    struct send_opts *o = &j->o;
    struct conn c = {.fd = -1, .timeout_ms = o->timeout * 1000, .peer = o->server};
    struct smtp_reply r;
    struct smtp_peer_ext ext;
    char line[SMTP_PATH_MAX * 2 + 200], name[300];
    int rc;

    if (conn_open(&c, o->server, o->port) < 0)
        return io_failed(&c);
    if (o->tls == TLS_IMPLICIT && conn_tls(&c, tls, o->server, o->insecure) < 0) {
        rc = io_failed(&c);
        goto out;
    }
    if (read_reply(&c, &r) < 0) {
        rc = io_failed(&c);
        goto out;
    }
    if (r.code != 220) {
        rc = refused("the connection was", &r);
        goto out;
    }
    helo_name(o, &c, name, sizeof name);
    if ((rc = ehlo(&c, name, &ext)) != 0)
        goto out;
    if (o->tls == TLS_STARTTLS) {
        if (!ext.starttls) {
            say("%s does not offer STARTTLS (--tls none sends without TLS)", o->server);
            rc = EXIT_FAILED;
            goto out;
        }
        if (command(&c, &r, "STARTTLS") < 0) {
            rc = io_failed(&c);
            goto out;
        }
        if (r.code != 220) {
            rc = refused("STARTTLS", &r);
            goto out;
        }
        if (c.pos < c.len) { /* RFC 3207 §5: nothing may come before the handshake */
            say("%s sent data after its STARTTLS reply: refusing to go on", o->server);
            rc = EXIT_FAILED;
            goto out;
        }
        if (conn_tls(&c, tls, o->server, o->insecure) < 0) {
            rc = io_failed(&c);
            goto out;
        }
        if ((rc = ehlo(&c, name, &ext)) != 0)
            goto out;
    }
    if (o->user) {
        if (!c.ssl && !c.loopback) {
            say("refusing to send a password to %s without TLS (use --tls starttls or implicit)",
                o->server);
            rc = EXIT_FAILED;
            goto out;
        }
        if ((rc = auth(&c, &ext, o->user, j->password)) != 0)
            goto out;
    }

    bool utf8 = has_8bit(j->sender);
    for (size_t i = 0; i < j->nrcpts; i++)
        utf8 = utf8 || has_8bit(j->rcpts[i]);
    if (utf8 && !ext.smtputf8) {
        say("%s does not offer SMTPUTF8, which addresses with non-ASCII characters need",
            o->server);
        rc = EXIT_FAILED;
        goto out;
    }
    if (ext.size && ext.size_max && j->msg.len > ext.size_max) {
        say("the message (%zu octets) is larger than %s accepts (SIZE %" PRIu64 ")", j->msg.len,
            o->server, ext.size_max);
        rc = EXIT_FAILED;
        goto out;
    }
    long l = smtp_format_mail(line, sizeof line, j->sender, &ext, j->msg.len, false, utf8,
                              SMTP_RET_NONE, NULL);
    if (l < 0) {
        say("cannot write MAIL FROM:<%s>", j->sender);
        rc = EXIT_USAGE;
        goto out;
    }
    line[l - 2] = '\0';
    if (command(&c, &r, line) < 0) {
        rc = io_failed(&c);
        goto out;
    }
    if (r.code / 100 != 2) {
        snprintf(name, sizeof name, "MAIL FROM:<%.250s>", j->sender);
        rc = refused(name, &r);
        goto out;
    }
    size_t accepted = 0;
    rc = 0;
    for (size_t i = 0; i < j->nrcpts; i++) {
        l = smtp_format_rcpt(line, sizeof line, j->rcpts[i], 0, NULL, &ext);
        if (l < 0) {
            say("cannot write RCPT TO:<%s>", j->rcpts[i]);
            rc = EXIT_FAILED;
            continue;
        }
        line[l - 2] = '\0';
        if (command(&c, &r, line) < 0) {
            rc = io_failed(&c);
            goto out;
        }
        if (r.code / 100 == 2) {
            accepted++;
        } else {
            snprintf(name, sizeof name, "RCPT TO:<%.250s>", j->rcpts[i]);
            rc = worse(rc, refused(name, &r));
        }
    }
    if (accepted == 0) {
        say("no recipient was accepted: nothing sent");
        goto quit;
    }
    bool bar = !o->quiet && isatty(STDERR_FILENO) && j->msg.len >= SEND_PROGRESS_MIN;
    int drc = send_data(&c, &j->msg, bar, &r);
    if (drc != 0) {
        rc = worse(rc, drc);
        goto out;
    }
    if (!o->quiet) {
        char d[SMTP_REPLY_TEXT_MAX + 64];
        describe(&r, d, sizeof d);
        printf("message_id=%s recipients=%zu reply=\"%s\"\n", j->message_id, accepted, d);
        fflush(stdout);
    }
quit:
    if (command(&c, &r, "QUIT") < 0) {
        /* the message is sent; a lost QUIT changes nothing */
    }
out:
    conn_close(&c);
    return rc;
}

int cli_send(int argc, char **argv)
{
    struct job j;
    memset(&j, 0, sizeof j);
    int r = parse_args(argc, argv, &j.o);
    if (r != 0) {
        if (r < 0)
            fputs(usage_text, stderr);
        job_free(&j);
        return r < 0 ? EXIT_USAGE : EXIT_SENT;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = prepare(&j);
    if (rc == 0) {
        char err[512];
        struct tls_client *tls =
            j.o.tls == TLS_NONE ? NULL : tls_client_new(j.o.ca_file, err, sizeof err);
        if (j.o.tls != TLS_NONE && !tls) {
            say("%s", err);
            rc = EXIT_FAILED;
        } else {
            rc = submit(&j, tls);
        }
        tls_client_free(tls);
    }
    job_free(&j);
    return rc;
}
