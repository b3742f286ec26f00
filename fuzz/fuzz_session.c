/*
 * fuzz_session - a whole inbound SMTP session, server side, driven by the
 * input through a socketpair: the real session state machine (src/server/
 * session.c) with its parsers, policy, limits and the real spool, on the real
 * event loop, with no network.
 *
 * Input: octet 0 chooses the setting, the rest is what the client sends.
 *   bit 0-1  listener role: mx, submission, submissions (no TLS here, so the
 *            third is mx again)
 *   bit 2    client address 127.0.0.1 (a trusted network: may relay) or
 *            192.0.2.7 (may not)
 *   bit 3    configuration: small limits (size 4000, 100 recipients, 50 header
 *            fields, 5 errors...) or the defaults
 *   bit 4-6  how the client writes: everything at once, or pieces of 1, 3, 16,
 *            64, 512 or 4096 octets or one line (to an LF), one per pass of
 *            the event loop (the server answers a line in the pass that reads
 *            it, so line by line gets past DATA's 354 as a real client does)
 * The client shuts its side down after the last octet; the session must then
 * end by itself.
 *
 * Invariants checked (abort() when one breaks):
 *   - every reply line is three digits 2xx-5xx, '-' or ' ', text, CRLF, at most
 *     512 octets; a multi-line reply keeps one code;
 *   - every 4xx and 5xx reply carries an enhanced status code of its class
 *     (RFC 3463), so bad input always gets a clear answer;
 *   - nothing follows a 221 or a 421 (the session closes after them);
 *   - each "250 ... queued as" answers a message that is in the spool once
 *     the session is over (acknowledged means stored, DESIGN contract 1), and
 *     at most one more message is stored (its commit was in flight when the
 *     client went away);
 *   - the session ends and the event loop stops within the libFuzzer timeout
 *     (no hang), with no leak (LeakSanitizer).
 *
 * Not reached: STARTTLS and implicit TLS (no certificate), AUTH (no user
 * store: password hashing would dominate every run; fuzz_sasl covers the
 * mechanisms), SPF/DKIM/DMARC (no resolver), deliveries (the scheduler is
 * stopped: messages stay queued).
 */
#include "config/config.h"
#include "core/log.h"
#include "event/event.h"
#include "sched/sched.h"
#include "server/server.h"
#include "spool/spool.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPLY_LINE_MAX 512

/* Octets per write; LINE: up to and including the next LF. */
#define LINE SIZE_MAX
static const size_t piece_sizes[8] = {0, 1, 3, 16, 64, 512, 4096, LINE};

static char root[128];
static char spool_dir[192];
static struct server_conf *confs[2]; /* defaults, small limits */
static bool verbose;                 /* FUZZ_SESSION_VERBOSE set: print the replies */

struct client {
    struct ev_loop *loop;
    struct server *srv;
    struct ev_conn *conn;
    struct ev_timer *poll;
    struct ev_timer *next; /* sends the next piece */
    int fd;
    const uint8_t *data; /* what is left to send */
    size_t len;
    size_t piece;  /* 0: all at once */
    bool shut;     /* our side is shut down */
    bool closed;   /* the server closed */
    bool ended;    /* a 221 or 421 came: nothing may follow */
    int multi;     /* code of the multi-line reply in progress, 0: none */
    size_t queued; /* "queued as" replies */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct server_conf *make_conf(bool small)
{
    char text[2048];
    int n = snprintf(text, sizeof text,
                     "hostname = mx.example.org\n"
                     "mx_listen = 127.0.0.1:2525\n"
                     "local_domains = example.org, example.net\n"
                     "mailboxes = postmaster@example.org, user@example.org, u@example.net\n"
                     "spool_dir = %s\n"
                     "maildir_root = %s/mail\n"
                     "spool_segment_size = 256K\n"
                     "trusted_networks = 127.0.0.0/8\n"
                     "sandbox = no\n"
                     "log_level = error\n"
                     "%s",
                     spool_dir, root,
                     small ? "message_size_limit = 4000\n"
                             "max_recipients = 100\n"
                             "max_header_count = 50\n"
                             "max_errors = 5\n"
                             "max_junk_commands = 10\n"
                             "max_text_line = 1000\n"
                           : "");
    struct config_diags diags = {0};
    struct config *cfg = config_parse(text, (size_t)n, "fuzz_session.conf", &diags);
    if (!cfg) {
        for (size_t i = 0; i < diags.n; i++)
            fprintf(stderr, "%s:%u: %s\n", diags.v[i].file, diags.v[i].line, diags.v[i].msg);
        abort();
    }
    config_diags_free(&diags);
    /* no listener: the session's socket comes from server_accept */
    for (size_t i = 0; i < cfg->nlisten; i++) {
        free(cfg->listen[i].host);
        free(cfg->listen[i].port);
    }
    cfg->nlisten = 0;
    return server_conf_new(cfg, NULL);
}

static void cleanup(void)
{
    rm_tree(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(root, sizeof root, "/dev/shm/tern-fuzz-session-%ld", (long)getpid());
    if (access("/dev/shm", W_OK) != 0)
        snprintf(root, sizeof root, "/tmp/tern-fuzz-session-%ld", (long)getpid());
    snprintf(spool_dir, sizeof spool_dir, "%s/spool", root);
    rm_tree(root);
    if (mkdir(root, 0700) != 0)
        abort();
    atexit(cleanup);
    verbose = getenv("FUZZ_SESSION_VERBOSE") != NULL;
    log_set_level(verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    confs[0] = make_conf(false);
    confs[1] = make_conf(true);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* One reply line, CRLF included. */
static void check_line(struct client *c, const char *p, size_t n)
{
    if (verbose)
        fprintf(stderr, "S: %.*s", (int)n, p);
    if (c->ended || n < 6 || n > REPLY_LINE_MAX || p[n - 2] != '\r' || p[n - 1] != '\n')
        abort();
    if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        abort();
    if (p[3] != ' ' && p[3] != '-')
        abort();
    int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (c->multi && c->multi != code)
        abort();
    for (size_t i = 4; i < n - 2; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            abort();
    if (code >= 400) {
        /* "X.Y.Z " with X the class digit, Y and Z of 1-3 digits */
        size_t i = 4;
        if (n - 2 - i < 6 || p[i] != p[0] || p[i + 1] != '.')
            abort();
        i += 2;
        size_t d = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4)
            i++, d++;
        if (d == 0 || d > 3 || p[i] != '.')
            abort();
        i++;
        d = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4)
            i++, d++;
        if (d == 0 || d > 3 || (p[i] != ' ' && p[i] != '\r'))
            abort();
    }
    if (p[3] == '-') {
        c->multi = code;
        return;
    }
    c->multi = 0;
    if (code == 221 || code == 421)
        c->ended = true;
    if (code == 250 && memmem(p, n, "queued as", 9))
        c->queued++;
}

/* Send the next piece; the loop runs a pass (the server reads) before the
   one after. Once everything has left our buffer, shut our side down. */
static void client_send(void *arg)
{
    struct client *c = arg;
    if (c->len == 0) {
        if (c->shut || c->closed)
            return;
        if (ev_conn_output_len(c->conn) != 0) {
            ev_timer_start(c->next, 1);
            return;
        }
        shutdown(c->fd, SHUT_WR);
        c->shut = true;
        return;
    }
    size_t n = c->piece && c->piece < c->len ? c->piece : c->len;
    if (c->piece == LINE) {
        const uint8_t *lf = memchr(c->data, '\n', c->len);
        n = lf ? (size_t)(lf - c->data) + 1 : c->len;
    }
    if (verbose)
        fprintf(stderr, "C: %.*s\n", (int)n, (const char *)c->data);
    ev_conn_write(c->conn, c->data, n);
    c->data += n;
    c->len -= n;
    ev_timer_start(c->next, 0);
}

static void on_read(void *arg)
{
    struct client *c = arg;
    for (;;) {
        long nl = ev_conn_input_find(c->conn, '\n', REPLY_LINE_MAX + 1);
        if (nl < 0) {
            if (ev_conn_input_len(c->conn) > REPLY_LINE_MAX)
                abort();
            return;
        }
        char line[REPLY_LINE_MAX + 2];
        size_t n = (size_t)nl + 1;
        if (n > REPLY_LINE_MAX)
            abort();
        ev_conn_input_peek(c->conn, line, n);
        ev_conn_input_drain(c->conn, n);
        check_line(c, line, n);
    }
}

static void on_close(void *arg)
{
    struct client *c = arg;
    if (ev_conn_input_len(c->conn) != 0) /* a reply without its CRLF */
        abort();
    c->closed = true;
    ev_timer_start(c->poll, 0);
}

static void on_timeout(void *arg)
{
    (void)arg;
}

/* The server closed: wait for the session to be gone (a commit in flight). */
static void on_poll(void *arg)
{
    struct client *c = arg;
    if (server_session_count(c->srv) == 0)
        ev_loop_stop(c->loop);
    else
        ev_timer_start(c->poll, 1);
}

static void count_message(void *arg, spool_id id, const struct spool_envelope *env)
{
    (void)id;
    (void)env;
    (*(size_t *)arg)++;
}

static void spool_wake(void *arg)
{
    ev_async_signal(arg);
}

static struct spool *wake_spool;

static void on_spool_wake(void *arg)
{
    (void)arg;
    spool_run_completions(wake_spool);
}

static const struct ev_conn_ops client_ops = {
    .on_read = on_read, .on_close = on_close, .on_timeout = on_timeout};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    struct server_conf *conf = confs[(flags >> 3) & 1];
    const struct config *cfg = server_conf_config(conf);
    enum config_role role = (flags & 3) == 1 ? ROLE_SUBMISSION : ROLE_MX;

    rm_tree(spool_dir);
    struct ev_loop *loop = ev_loop_new();
    struct ev_async *wake = ev_async_new(loop, on_spool_wake, NULL);
    struct spool_config scfg = {.dir = spool_dir,
                                .segment_size = cfg->spool_segment_size,
                                .wake = spool_wake,
                                .wake_arg = wake};
    char err[256];
    struct spool *sp = spool_open(&scfg, err, sizeof err);
    if (!sp) {
        fprintf(stderr, "spool_open: %s\n", err);
        abort();
    }
    wake_spool = sp;
    struct ev_workers *workers = ev_workers_new(loop, 1, 0);
    struct sched *sched = sched_new(loop, workers, sp, cfg);
    sched_stop(sched); /* messages stay queued */
    struct server_deps deps = {
        .loop = loop, .spool = sp, .sched = sched, .conf = conf, .auth_workers = workers};
    struct server *srv = server_new(&deps, err, sizeof err);
    if (!srv)
        abort();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(40000)};
    inet_pton(AF_INET, flags & 4 ? "127.0.0.1" : "192.0.2.7", &sin.sin_addr);
    server_accept(srv, sv[0], (const struct sockaddr *)&sin, sizeof sin, role);

    struct client c = {.loop = loop,
                       .srv = srv,
                       .fd = sv[1],
                       .data = data + 1,
                       .len = size - 1,
                       .piece = piece_sizes[(flags >> 4) & 7]};
    c.conn = ev_conn_new(loop, sv[1], &client_ops, &c, 64 * 1024);
    c.poll = ev_timer_new(loop, on_poll, &c);
    c.next = ev_timer_new(loop, client_send, &c);
    client_send(&c);
    ev_loop_run(loop);
    if (!c.closed || c.multi)
        abort();

    ev_conn_free(c.conn);
    ev_timer_free(c.poll);
    ev_timer_free(c.next);
    server_free(srv);
    size_t stored = 0;
    spool_foreach(sp, count_message, &stored);
    /* acknowledged means stored; only the message whose commit was in flight
       when the client went away may be stored without its 250 */
    if (stored < c.queued || stored > c.queued + 1) {
        fprintf(stderr, "%zu messages acknowledged, %zu in the spool\n", c.queued, stored);
        abort();
    }
    ev_workers_free(workers);
    spool_close(sp);
    sched_free(sched);
    ev_async_free(wake);
    ev_loop_free(loop);
    return 0;
}
