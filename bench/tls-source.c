/*
 * tls-source - a load client for the submission path: SMTP over TLS with AUTH PLAIN.
 *
 *   tls-source [-d] [-s sessions] [-m messages] [-l size] [-S starttls|implicit]
 *              [-u user] [-p password] [-f sender] [-t recipient] [-M helo] host:port
 *   tls-source -i [-s sessions] [-P openers] [-w seconds] [-S ...] [-u ...] [-p ...] host:port
 *
 * What smtp-source (Postfix) is for the mx path, this is for submission (RFC 6409): -s
 * threads share -m messages of -l body octets. By default each message is one connection:
 * greeting, EHLO, STARTTLS (RFC 3207), TLS handshake, EHLO, AUTH PLAIN (RFC 4954, RFC 4616),
 * MAIL, RCPT, DATA, the message, QUIT. With -S implicit the handshake comes first (RFC 8314).
 * With -d each thread opens one connection, authenticates once and sends all its messages
 * over it. Every reply code is checked; a message whose session fails anywhere counts as
 * failed (it is not retried), and the thread carries on with a new connection.
 *
 * -i opens -s sessions (handshake, EHLO, AUTH) from -P threads, prints "idle N sessions
 * open" on stdout, keeps them idle for -w seconds and closes them with QUIT: the caller
 * measures the server's memory in between.
 *
 * The certificate is not verified (the bench uses a self-signed one); TLS 1.2 or newer.
 * Output: one human line and one "result key=value ..." line for bench.py. Exit status 0
 * when nothing failed, 1 when something did, 2 on a usage error.
 *
 * Build: cc -std=c17 -O2 -pthread -o tls-source tls-source.c -lssl -lcrypto
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

enum { REPLY_MAX = 8192, HEAD_MAX = 1200, IO_TIMEOUT_S = 120, ERRORS_SHOWN = 10 };

/* The command line, read-only once the threads start. */
struct options {
    int sessions;          /* -s: threads (or idle sessions with -i) */
    long messages;         /* -m: messages in all */
    long size;             /* -l: body octets per message */
    bool persistent;       /* -d: one connection per thread */
    bool idle;             /* -i: open sessions and hold them */
    bool implicit;         /* -S implicit: TLS from the first octet */
    int openers;           /* -P: threads that open the idle sessions */
    int wait_s;            /* -w: how long idle sessions are held */
    const char *user;      /* -u */
    const char *password;  /* -p */
    const char *sender;    /* -f: envelope sender and From: */
    const char *recipient; /* -t */
    const char *helo;      /* -M */
    const char *host;
    const char *port;
};

/* One SMTP connection, plain until tls_start() and TLS after. */
struct conn {
    int fd;
    SSL *ssl;              /* NULL before the handshake */
    char in[REPLY_MAX];    /* received octets not yet consumed */
    size_t len;            /* octets in in[] */
    char reply[REPLY_MAX]; /* the last reply, for error messages */
    char *out;             /* HEAD_MAX + body + end of data: one message (senders only) */
};

static struct options opt;
static SSL_CTX *tls_ctx;
static struct addrinfo *server_addr;
static char *body; /* the dot-safe body shared by every message */
static size_t body_len;
static char auth_plain[1024]; /* "AUTH PLAIN <base64>\r\n" */

static atomic_long next_message;
static atomic_long sent, failed, connections, handshakes, auths;
static atomic_int errors_shown;
static pthread_mutex_t tls_info_lock = PTHREAD_MUTEX_INITIALIZER;
static char tls_info[128]; /* protocol and cipher of the first handshake */

static void error_note(const char *fmt, ...)
{
    if (atomic_fetch_add(&errors_shown, 1) >= ERRORS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("tls-source: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    c->len = 0;
}

static bool conn_write(struct conn *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            size_t done = 0;
            if (SSL_write_ex(c->ssl, data, n, &done) != 1)
                return false;
            w = (ssize_t)done;
        } else {
            w = send(c->fd, data, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return false;
        }
        data += w;
        n -= (size_t)w;
    }
    return true;
}

static bool conn_fill(struct conn *c)
{
    if (c->len >= sizeof c->in)
        return false;
    if (c->ssl) {
        size_t got = 0;
        if (SSL_read_ex(c->ssl, c->in + c->len, sizeof c->in - c->len, &got) != 1)
            return false;
        c->len += got;
        return true;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->len, sizeof c->in - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c->len += (size_t)r;
        return true;
    }
}

/* Reads one (possibly multi-line) reply; returns its code, or -1 when the connection
 * failed or the reply is malformed. The reply text is kept in c->reply. */
static int conn_reply(struct conn *c)
{
    size_t start = 0;
    c->reply[0] = '\0';
    for (;;) {
        char *nl = memchr(c->in + start, '\n', c->len - start);
        if (!nl) {
            if (!conn_fill(c))
                return -1;
            continue;
        }
        size_t line_len = (size_t)(nl - (c->in + start)) + 1;
        char *line = c->in + start;
        if (line_len < 4)
            return -1;
        bool last = line_len == 4 || line[3] == ' ' || line[3] == '\r';
        start += line_len;
        if (last) {
            int code = atoi(line);
            size_t n = start < sizeof c->reply ? start : sizeof c->reply - 1;
            memcpy(c->reply, c->in, n);
            c->reply[n] = '\0';
            while (n > 0 && (c->reply[n - 1] == '\n' || c->reply[n - 1] == '\r'))
                c->reply[--n] = '\0';
            memmove(c->in, c->in + start, c->len - start);
            c->len -= start;
            return code;
        }
    }
}

/* Sends a command (NULL: none, just read) and expects a reply with the given code. */
static bool conn_expect(struct conn *c, const char *cmd, int want, const char *what)
{
    if (cmd && !conn_write(c, cmd, strlen(cmd))) {
        error_note("%s: write failed", what);
        return false;
    }
    int code = conn_reply(c);
    if (code != want) {
        if (code < 0)
            error_note("%s: connection lost (wanted %d)", what, want);
        else
            error_note("%s: wanted %d, got: %s", what, want, c->reply);
        return false;
    }
    return true;
}

static bool conn_connect(struct conn *c)
{
    c->fd = -1;
    c->ssl = NULL;
    c->len = 0;
    int fd = socket(server_addr->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        error_note("socket: %s", strerror(errno));
        return false;
    }
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1; /* each command is waited for: never hold one back for Nagle */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, server_addr->ai_addr, server_addr->ai_addrlen) != 0) {
        error_note("connect: %s", strerror(errno));
        close(fd);
        return false;
    }
    c->fd = fd;
    atomic_fetch_add(&connections, 1);
    return true;
}

static bool tls_start(struct conn *c)
{
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        error_note("SSL_new failed");
        return false;
    }
    if (SSL_connect(c->ssl) != 1) {
        unsigned long e = ERR_get_error();
        error_note("TLS handshake failed: %s", e ? ERR_error_string(e, NULL) : "closed");
        ERR_clear_error();
        return false;
    }
    atomic_fetch_add(&handshakes, 1);
    pthread_mutex_lock(&tls_info_lock);
    if (!tls_info[0])
        snprintf(tls_info, sizeof tls_info, "%s %s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl));
    pthread_mutex_unlock(&tls_info_lock);
    return true;
}

/* Connects and gets to an authenticated session inside TLS. */
static bool session_open(struct conn *c)
{
    char ehlo[300];
    snprintf(ehlo, sizeof ehlo, "EHLO %s\r\n", opt.helo);
    if (!conn_connect(c))
        return false;
    if (opt.implicit) {
        if (!tls_start(c) || !conn_expect(c, NULL, 220, "greeting"))
            return false;
    } else {
        if (!conn_expect(c, NULL, 220, "greeting") || !conn_expect(c, ehlo, 250, "EHLO") ||
            !conn_expect(c, "STARTTLS\r\n", 220, "STARTTLS"))
            return false;
        if (c->len != 0) {
            error_note("octets after the STARTTLS reply");
            return false;
        }
        if (!tls_start(c))
            return false;
    }
    if (!conn_expect(c, ehlo, 250, "EHLO in TLS") || !conn_expect(c, auth_plain, 235, "AUTH PLAIN"))
        return false;
    atomic_fetch_add(&auths, 1);
    return true;
}

static void session_quit(struct conn *c)
{
    /* The messages are in: a QUIT without its 221 is only noted. */
    conn_expect(c, "QUIT\r\n", 221, "QUIT");
    conn_close(c);
}

/* One transaction: MAIL, RCPT, DATA, headers and body, end of data. */
static bool message_send(struct conn *c, long n)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "MAIL FROM:<%s>\r\n", opt.sender);
    if (!conn_expect(c, cmd, 250, "MAIL"))
        return false;
    snprintf(cmd, sizeof cmd, "RCPT TO:<%s>\r\n", opt.recipient);
    if (!conn_expect(c, cmd, 250, "RCPT") || !conn_expect(c, "DATA\r\n", 354, "DATA"))
        return false;
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    /* Headers, body and end of data in one write, as one burst of TLS records. */
    char *head = c->out;
    int hl = snprintf(head, HEAD_MAX,
                      "From: <%s>\r\nTo: <%s>\r\nSubject: tls-source message %ld\r\n"
                      "Date: %s\r\nMessage-ID: <tls-source.%ld.%ld.%ld@%s>\r\n\r\n",
                      opt.sender, opt.recipient, n, date, (long)getpid(), (long)t, n, opt.helo);
    if (hl < 0 || hl >= HEAD_MAX)
        return false;
    memmove(c->out + hl, body, body_len);
    memcpy(c->out + hl + body_len, ".\r\n", 3);
    if (!conn_write(c, c->out, (size_t)hl + body_len + 3) ||
        !conn_expect(c, NULL, 250, "end of data"))
        return false;
    return true;
}

static void *sender_thread(void *arg)
{
    (void)arg;
    struct conn c = {.fd = -1, .out = malloc(HEAD_MAX + body_len + 3)};
    bool open = false;
    if (!c.out) {
        perror("tls-source: malloc");
        exit(1);
    }
    for (;;) {
        long n = atomic_fetch_add(&next_message, 1);
        if (n >= opt.messages)
            break;
        if (!open) {
            if (!session_open(&c)) {
                conn_close(&c);
                atomic_fetch_add(&failed, 1);
                continue;
            }
            open = true;
        }
        if (!message_send(&c, n)) {
            conn_close(&c);
            open = false;
            atomic_fetch_add(&failed, 1);
            continue;
        }
        atomic_fetch_add(&sent, 1);
        if (!opt.persistent) {
            session_quit(&c);
            open = false;
        }
    }
    if (open)
        session_quit(&c);
    free(c.out);
    return NULL;
}

/* -i: the idle sessions, opened by several threads into one array. */
static struct conn *idle_conns;
static atomic_int next_idle;

static void *opener_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int i = atomic_fetch_add(&next_idle, 1);
        if (i >= opt.sessions)
            break;
        if (!session_open(&idle_conns[i])) {
            conn_close(&idle_conns[i]);
            atomic_fetch_add(&failed, 1);
        }
    }
    return NULL;
}

static int run_threads(int n, void *(*fn)(void *))
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return -1;
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&t[started], NULL, fn, NULL) != 0)
            break;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    return started == n ? 0 : -1;
}

static void build_body(void)
{
    /* Lines of at most 78 characters and CRLF, none starting with a dot: -l octets in all
     * (at least one empty line). */
    const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = opt.size < 2 ? 2 : (size_t)opt.size;
    body = malloc(n);
    if (!body) {
        perror("tls-source: malloc");
        exit(1);
    }
    size_t i = 0;
    while (i < n) {
        size_t rest = n - i, line = rest - 2 < 78 ? rest - 2 : 78;
        if (rest - line - 2 == 1)
            line--; /* never leave a single octet for the last line */
        for (size_t k = 0; k < line; k++)
            body[i + k] = alphabet[(i + k) % (sizeof alphabet - 1)];
        i += line;
        body[i++] = '\r';
        body[i++] = '\n';
    }
    body_len = n;
}

static void build_auth(void)
{
    unsigned char raw[600];
    size_t ul = strlen(opt.user), pl = strlen(opt.password);
    if (ul + pl + 2 > sizeof raw) {
        fputs("tls-source: user or password too long\n", stderr);
        exit(2);
    }
    raw[0] = '\0';
    memcpy(raw + 1, opt.user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, opt.password, pl);
    char b64[820];
    int bl = EVP_EncodeBlock((unsigned char *)b64, raw, (int)(ul + pl + 2));
    snprintf(auth_plain, sizeof auth_plain, "AUTH PLAIN %.*s\r\n", bl, b64);
}

static void usage(void)
{
    fputs("usage: tls-source [-d] [-i] [-s sessions] [-m messages] [-l size]\n"
          "                  [-S starttls|implicit] [-u user] [-p password] [-f sender]\n"
          "                  [-t recipient] [-M helo] [-P openers] [-w seconds] host:port\n",
          stderr);
    exit(2);
}

static long number(const char *s, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    opt = (struct options){.sessions = 1,
                           .messages = 1,
                           .size = 4096,
                           .openers = 8,
                           .wait_s = 5,
                           .user = "demo@example.test",
                           .password = "tern-demo",
                           .sender = "demo@example.test",
                           .recipient = "demo@example.test",
                           .helo = "bench.example.net"};
    int ch;
    while ((ch = getopt(argc, argv, "dis:m:l:S:u:p:f:t:M:P:w:")) != -1) {
        switch (ch) {
        case 'd':
            opt.persistent = true;
            break;
        case 'i':
            opt.idle = true;
            break;
        case 's':
            opt.sessions = (int)number(optarg, 1);
            break;
        case 'm':
            opt.messages = number(optarg, 1);
            break;
        case 'l':
            opt.size = number(optarg, 0);
            break;
        case 'S':
            if (strcmp(optarg, "implicit") == 0)
                opt.implicit = true;
            else if (strcmp(optarg, "starttls") != 0)
                usage();
            break;
        case 'u':
            opt.user = optarg;
            break;
        case 'p':
            opt.password = optarg;
            break;
        case 'f':
            opt.sender = optarg;
            break;
        case 't':
            opt.recipient = optarg;
            break;
        case 'M':
            opt.helo = optarg;
            break;
        case 'P':
            opt.openers = (int)number(optarg, 1);
            break;
        case 'w':
            opt.wait_s = (int)number(optarg, 0);
            break;
        default:
            usage();
        }
    }
    if (optind + 1 != argc)
        usage();
    char *hostport = strdup(argv[optind]);
    char *colon = hostport ? strrchr(hostport, ':') : NULL;
    if (!colon)
        usage();
    *colon = '\0';
    opt.host = hostport;
    opt.port = colon + 1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gai = getaddrinfo(opt.host, opt.port, &hints, &server_addr);
    if (gai != 0) {
        fprintf(stderr, "tls-source: %s: %s\n", argv[optind], gai_strerror(gai));
        return 2;
    }

    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx || SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION) != 1) {
        fputs("tls-source: cannot make a TLS context\n", stderr);
        return 1;
    }
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    /* Every connection is a full handshake, as from distinct clients: no resumption. */
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
    build_auth();

    double t0 = now_s();
    if (opt.idle) {
        idle_conns = calloc((size_t)opt.sessions, sizeof *idle_conns);
        if (!idle_conns)
            return 1;
        for (int i = 0; i < opt.sessions; i++)
            idle_conns[i].fd = -1;
        int openers = opt.openers < opt.sessions ? opt.openers : opt.sessions;
        if (run_threads(openers, opener_thread) != 0) {
            fputs("tls-source: cannot start threads\n", stderr);
            return 1;
        }
        double opened = now_s() - t0;
        long ok = opt.sessions - atomic_load(&failed);
        printf("idle %ld sessions open in %.2f s (%s)\n", ok, opened, tls_info);
        fflush(stdout);
        sleep((unsigned)opt.wait_s);
        for (int i = 0; i < opt.sessions; i++)
            if (idle_conns[i].fd >= 0)
                session_quit(&idle_conns[i]);
        printf("result mode=idle sessions=%d open=%ld failed=%ld open_s=%.3f\n", opt.sessions, ok,
               atomic_load(&failed), opened);
        return atomic_load(&failed) ? 1 : 0;
    }

    build_body();
    if (run_threads(opt.sessions, sender_thread) != 0) {
        fputs("tls-source: cannot start threads\n", stderr);
        return 1;
    }
    double elapsed = now_s() - t0;
    long ok = atomic_load(&sent), bad = atomic_load(&failed);
    long nc = atomic_load(&connections), nh = atomic_load(&handshakes);
    printf("%ld messages sent, %ld failed, in %.3f s: %.1f msg/s, %ld connections "
           "(%.1f/s), %ld TLS handshakes (%.1f/s), %ld AUTHs; %s\n",
           ok, bad, elapsed, ok / elapsed, nc, nc / elapsed, nh, nh / elapsed, atomic_load(&auths),
           tls_info);
    printf("result mode=%s sent=%ld failed=%ld elapsed=%.4f connections=%ld handshakes=%ld "
           "auths=%ld\n",
           opt.persistent ? "persistent" : "per-message", ok, bad, elapsed, nc, nh,
           atomic_load(&auths));
    return bad ? 1 : 0;
}
