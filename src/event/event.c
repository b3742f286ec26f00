/*
 * event - libevent adapter: loop, listeners, bufferevent-based connections,
 * timers, signals, cross-thread wake-ups and a pthread worker pool.
 *
 * This is the only file that includes libevent headers (see event.h for the
 * contract). libevent is told to use pthreads so that event_active() from a
 * worker or the spool flusher safely wakes the loop.
 */
#include "event/event.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

struct ev_loop {
    struct event_base *base;
    struct event *signals[8]; /* signal events owned by the loop */
    size_t nsignals;
    bool stop; /* ev_loop_stop was called */
};

struct ev_timer {
    struct event *ev;
    void (*cb)(void *arg);
    void *arg;
};

struct ev_async {
    struct event *ev;
    void (*cb)(void *arg);
    void *arg;
};

struct ev_listener {
    struct evconnlistener *l;
    ev_accept_cb cb;
    void *arg;
    struct event *resume;   /* re-enables the listener after a pause (out of descriptors) */
    int64_t logged_ms;      /* when the last accept_error line was written */
    unsigned long unlogged; /* accept errors since then */
};

/* How long a listener rests when accept() finds no descriptor (or memory)
   for a new connection: the connection waits in the backlog meanwhile. */
#define ACCEPT_PAUSE_MS 100
/* At most one accept_error line per this many milliseconds. */
#define ACCEPT_LOG_MS 1000

struct ev_conn {
    struct bufferevent *bev; /* a socket bufferevent, plain or OpenSSL */
    struct event_base *base;
    int fd; /* the socket; -1 once an OpenSSL bufferevent owns it */
    const struct ev_conn_ops *ops;
    void *arg;
    size_t max_input;       /* read high-water mark */
    uint32_t timeout;       /* read timeout, seconds (0: none) */
    uint32_t write_timeout; /* write timeout, seconds (0: none) */
    SSL *pending_ssl;       /* STARTTLS waiting for the plaintext output to drain */
    bool connecting;        /* ev_conn_connect: the TCP connection is not up yet */
    bool tls;               /* bev is an OpenSSL bufferevent */
    bool closing;           /* close_after_flush requested */
};

struct signal_ctx {
    void (*cb)(void *arg, int signo);
    void *arg;
};

/* ---- loop ---- */

struct ev_loop *ev_loop_new(void)
{
    static bool threads_ready;
    if (!threads_ready) {
        if (evthread_use_pthreads() != 0)
            fatal("event=fatal reason=\"libevent has no pthreads support\"");
        threads_ready = true;
    }
    struct ev_loop *loop = xcalloc(1, sizeof *loop);
    loop->base = event_base_new();
    if (!loop->base)
        fatal("event=fatal reason=\"cannot create the event loop\"");
    return loop;
}

void ev_loop_free(struct ev_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->nsignals; i++) {
        struct signal_ctx *ctx = event_get_callback_arg(loop->signals[i]);
        event_free(loop->signals[i]);
        free(ctx);
    }
    event_base_free(loop->base);
    free(loop);
}

int ev_loop_run(struct ev_loop *loop)
{
    /* One pass at a time, so that the log lines of a pass go out in one write. */
    loop->stop = false;
    while (!loop->stop) {
        int r = event_base_loop(loop->base, EVLOOP_ONCE);
        log_flush();
        if (r < 0)
            return -1;
        if (r == 1)
            break; /* no events left */
    }
    return 0;
}

void ev_loop_stop(struct ev_loop *loop)
{
    loop->stop = true;
    event_base_loopbreak(loop->base);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    struct signal_ctx *ctx = arg;
    ctx->cb(ctx->arg, (int)signo);
}

int ev_on_signal(struct ev_loop *loop, int signo, void (*cb)(void *arg, int signo), void *arg)
{
    if (loop->nsignals == sizeof loop->signals / sizeof loop->signals[0])
        return -1;
    struct signal_ctx *ctx = xmalloc(sizeof *ctx);
    ctx->cb = cb;
    ctx->arg = arg;
    struct event *ev = evsignal_new(loop->base, signo, on_signal, ctx);
    if (!ev || event_add(ev, NULL) < 0) {
        free(ctx);
        if (ev)
            event_free(ev);
        return -1;
    }
    loop->signals[loop->nsignals++] = ev;
    return 0;
}

/* ---- timers ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ev_timer *t = arg;
    t->cb(t->arg);
}

struct ev_timer *ev_timer_new(struct ev_loop *loop, void (*cb)(void *arg), void *arg)
{
    struct ev_timer *t = xcalloc(1, sizeof *t);
    t->cb = cb;
    t->arg = arg;
    t->ev = evtimer_new(loop->base, on_timer, t);
    if (!t->ev)
        panic("evtimer_new failed");
    return t;
}

void ev_timer_start(struct ev_timer *t, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(t->ev, &tv);
}

void ev_timer_stop(struct ev_timer *t)
{
    evtimer_del(t->ev);
}

void ev_timer_free(struct ev_timer *t)
{
    if (!t)
        return;
    event_free(t->ev);
    free(t);
}

/* ---- readable file descriptors ---- */

struct ev_fd {
    struct event *ev;
    void (*cb)(void *arg);
    void *arg;
};

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
    struct ev_fd *f = arg;
    f->cb(f->arg);
}

struct ev_fd *ev_fd_new(struct ev_loop *loop, int fd, void (*cb)(void *arg), void *arg)
{
    struct ev_fd *f = xcalloc(1, sizeof *f);
    f->cb = cb;
    f->arg = arg;
    f->ev = event_new(loop->base, fd, EV_READ | EV_PERSIST, on_fd, f);
    if (!f->ev || event_add(f->ev, NULL) != 0)
        panic("event_new failed for a watched descriptor");
    return f;
}

void ev_fd_free(struct ev_fd *f)
{
    if (!f)
        return;
    event_free(f->ev);
    free(f);
}

/* ---- async ---- */

static void on_async(evutil_socket_t fd, short what, void *arg)
{
    struct ev_async *a = arg;
    a->cb(a->arg);
}

struct ev_async *ev_async_new(struct ev_loop *loop, void (*cb)(void *arg), void *arg)
{
    struct ev_async *a = xcalloc(1, sizeof *a);
    a->cb = cb;
    a->arg = arg;
    a->ev = event_new(loop->base, -1, 0, on_async, a);
    if (!a->ev)
        panic("event_new failed");
    return a;
}

void ev_async_signal(struct ev_async *a)
{
    event_active(a->ev, 0, 0);
}

void ev_async_free(struct ev_async *a)
{
    if (!a)
        return;
    event_free(a->ev);
    free(a);
}

/* ---- listeners ---- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct ev_listener *el = arg;
    el->cb(el->arg, fd, sa, (socklen_t)salen);
}

/* accept() failed. Out of descriptors or memory, the pending connection
   stays in the backlog and the listener would fire again at once, spinning
   the loop and flooding the log: rest a while instead (connections that
   close free descriptors meanwhile). Logged at most once a second. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct ev_listener *el = arg;
    int err = EVUTIL_SOCKET_ERROR();
    bool starved = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    if (starved) {
        evconnlistener_disable(l);
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        evtimer_add(el->resume, &tv);
    }
    int64_t now = now_mono_ms();
    if (el->logged_ms && now - el->logged_ms < ACCEPT_LOG_MS) {
        el->unlogged++;
        return;
    }
    log_warn("event=accept_error error=\"%s\" repeated=%lu%s", evutil_socket_error_to_string(err),
             el->unlogged,
             starved ? " note=\"listener paused: raise the open files limit or "
                       "lower max_connections\""
                     : "");
    el->logged_ms = now;
    el->unlogged = 0;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct ev_listener *el = arg;
    evconnlistener_enable(el->l);
}

/* The error callback and the pause timer of a new listener. */
static void listener_setup(struct ev_loop *loop, struct ev_listener *el)
{
    evconnlistener_set_error_cb(el->l, on_accept_error);
    el->resume = evtimer_new(loop->base, on_accept_resume, el);
    if (!el->resume)
        panic("evtimer_new failed");
}

struct ev_listener *ev_listener_new(struct ev_loop *loop, const char *host, const char *port,
                                    ev_accept_cb cb, void *arg, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s:%s: %s", host, port, gai_strerror(rc));
        return NULL;
    }
    struct ev_listener *el = xcalloc(1, sizeof *el);
    el->cb = cb;
    el->arg = arg;
    el->l =
        evconnlistener_new_bind(loop->base, on_accept, el,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!el->l) {
        snprintf(err, errlen, "%s:%s: %s", host, port, strerror(errno));
        free(el);
        return NULL;
    }
    listener_setup(loop, el);
    return el;
}

struct ev_listener *ev_listener_new_unix(struct ev_loop *loop, const char *path, ev_accept_cb cb,
                                         void *arg, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sun.sun_path) {
        snprintf(err, errlen, "%s: socket path empty or longer than %zu octets", path,
                 sizeof sun.sun_path - 1);
        return NULL;
    }
    memcpy(sun.sun_path, path, n);
    struct ev_listener *el = xcalloc(1, sizeof *el);
    el->cb = cb;
    el->arg = arg;
    el->l = evconnlistener_new_bind(
        loop->base, on_accept, el, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (const struct sockaddr *)&sun, (int)(offsetof(struct sockaddr_un, sun_path) + n + 1));
    if (!el->l) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(el);
        return NULL;
    }
    listener_setup(loop, el);
    return el;
}

void ev_listener_free(struct ev_listener *l)
{
    if (!l)
        return;
    evconnlistener_free(l->l);
    event_free(l->resume);
    free(l);
}

/* ---- connections ---- */

static void conn_switch_tls(struct ev_conn *c);

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct ev_conn *c = arg;
    if (!c->closing && !c->pending_ssl)
        c->ops->on_read(c->arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct ev_conn *c = arg;
    if (c->pending_ssl && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        conn_switch_tls(c);
        return;
    }
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        c->ops->on_close(c->arg);
        return;
    }
    if (!c->closing && c->ops->on_drain)
        c->ops->on_drain(c->arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct ev_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->connecting) {
            /* The TCP connection of ev_conn_connect is up. */
            c->connecting = false;
            c->fd = bufferevent_getfd(c->bev);
            bufferevent_set_timeouts(c->bev, NULL, NULL);
            ev_conn_set_timeout(c, c->timeout);
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (c->ops->on_connect && !c->closing)
                c->ops->on_connect(c->arg);
        } else if (c->ops->on_tls_ready && !c->closing) {
            c->ops->on_tls_ready(c->arg);
        }
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & (BEV_EVENT_READING | BEV_EVENT_WRITING)) &&
        !c->closing) {
        c->ops->on_timeout(c->arg);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        c->ops->on_close(c->arg);
}

/* Callbacks, watermark, timeout and enabled events of a new bufferevent. */
static void conn_setup_bev(struct ev_conn *c)
{
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, c->max_input);
    ev_conn_set_timeout(c, c->timeout);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Replace the plain bufferevent by an OpenSSL one accepting a handshake on the
   same socket. Plaintext still buffered is discarded (RFC 3207 §4.2: nothing
   sent before the handshake may be acted on). */
static void conn_make_tls(struct ev_conn *c, SSL *ssl)
{
    if (c->bev) {
        size_t late = evbuffer_get_length(bufferevent_get_input(c->bev));
        if (late)
            log_info("event=starttls_discard octets=%zu", late);
        bufferevent_free(c->bev); /* created without BEV_OPT_CLOSE_ON_FREE */
    }
    c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl,
                                            SSL_is_server(ssl) ? BUFFEREVENT_SSL_ACCEPTING
                                                               : BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        panic("bufferevent_openssl_socket_new failed");
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->fd = -1; /* the OpenSSL bufferevent closes it */
    c->tls = true;
    conn_setup_bev(c);
}

static void conn_switch_tls(struct ev_conn *c)
{
    SSL *ssl = c->pending_ssl;
    c->pending_ssl = NULL;
    conn_make_tls(c, ssl);
}

static struct ev_conn *conn_alloc(struct ev_loop *loop, int fd, const struct ev_conn_ops *ops,
                                  void *arg, size_t max_input)
{
    /* Accepted sockets are already non-blocking (accept4 with SOCK_NONBLOCK). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct ev_conn *c = xcalloc(1, sizeof *c);
    c->ops = ops;
    c->arg = arg;
    c->base = loop->base;
    c->fd = fd;
    c->max_input = max_input;
    return c;
}

struct ev_conn *ev_conn_new(struct ev_loop *loop, int fd, const struct ev_conn_ops *ops, void *arg,
                            size_t max_input)
{
    struct ev_conn *c = conn_alloc(loop, fd, ops, arg, max_input);
    /* Not BEV_OPT_CLOSE_ON_FREE: STARTTLS replaces this bufferevent on the same socket. */
    c->bev = bufferevent_socket_new(loop->base, fd, 0);
    if (!c->bev)
        panic("bufferevent_socket_new failed");
    conn_setup_bev(c);
    return c;
}

struct ev_conn *ev_conn_connect(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                                const struct ev_conn_ops *ops, void *arg, size_t max_input,
                                uint32_t connect_timeout)
{
    struct ev_conn *c = xcalloc(1, sizeof *c);
    c->ops = ops;
    c->arg = arg;
    c->base = loop->base;
    c->fd = -1;
    c->max_input = max_input;
    c->connecting = true;
    /* Not BEV_OPT_CLOSE_ON_FREE, as for accepted sockets: STARTTLS replaces the
       bufferevent on the same socket, and ev_conn_free closes it. */
    c->bev = bufferevent_socket_new(loop->base, -1, 0);
    if (!c->bev)
        panic("bufferevent_socket_new failed");
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, max_input);
    struct timeval tv = {.tv_sec = connect_timeout, .tv_usec = 0};
    bufferevent_set_timeouts(c->bev, NULL, connect_timeout ? &tv : NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)(uintptr_t)sa, (int)salen) < 0) {
        /* Reported like any failure: through on_close, from the loop. */
        c->fd = bufferevent_getfd(c->bev);
        bufferevent_trigger_event(c->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
        return c;
    }
    c->fd = bufferevent_getfd(c->bev);
    return c;
}

struct ev_conn *ev_conn_connect_unix(struct ev_loop *loop, const char *path,
                                     const struct ev_conn_ops *ops, void *arg, size_t max_input,
                                     uint32_t connect_timeout)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof sun.sun_path)
        n = sizeof sun.sun_path - 1; /* cut: the connect fails, reported through on_close */
    memcpy(sun.sun_path, path, n);
    return ev_conn_connect(loop, (const struct sockaddr *)&sun,
                           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1), ops, arg,
                           max_input, connect_timeout);
}

void ev_conn_set_owner(struct ev_conn *c, const struct ev_conn_ops *ops, void *arg)
{
    c->ops = ops;
    c->arg = arg;
}

struct ev_conn *ev_conn_new_tls(struct ev_loop *loop, int fd, const struct ev_conn_ops *ops,
                                void *arg, size_t max_input, struct ssl_st *ssl)
{
    struct ev_conn *c = conn_alloc(loop, fd, ops, arg, max_input);
    conn_make_tls(c, ssl);
    return c;
}

size_t ev_conn_start_tls(struct ev_conn *c, struct ssl_st *ssl)
{
    if (c->tls || c->pending_ssl)
        panic("ev_conn_start_tls on a connection that is already TLS");
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t discarded = evbuffer_get_length(in);
    evbuffer_drain(in, discarded);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_make_tls(c, ssl);
    } else {
        /* The 220 is still queued: switch once it has been sent. */
        c->pending_ssl = ssl;
        bufferevent_disable(c->bev, EV_READ);
    }
    return discarded;
}

bool ev_conn_is_tls(const struct ev_conn *c)
{
    return c->tls || c->pending_ssl;
}

bool ev_conn_tls_info(struct ev_conn *c, struct ev_tls_info *info)
{
    memset(info, 0, sizeof *info);
    if (!c->tls)
        return false;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (!ssl || !SSL_is_init_finished(ssl))
        return false;
    snprintf(info->version, sizeof info->version, "%s", SSL_get_version(ssl));
    const SSL_CIPHER *ciph = SSL_get_current_cipher(ssl);
    snprintf(info->cipher, sizeof info->cipher, "%s", ciph ? SSL_CIPHER_get_name(ciph) : "none");
    info->bits = ciph ? SSL_CIPHER_get_bits(ciph, NULL) : 0;
    return true;
}

void ev_conn_tls_error(struct ev_conn *c, char *out, size_t outlen)
{
    unsigned long e = c->tls ? bufferevent_get_openssl_error(c->bev) : 0;
    if (e == 0) {
        snprintf(out, outlen, "%s", "connection closed");
        return;
    }
    ERR_error_string_n(e, out, outlen);
    while (bufferevent_get_openssl_error(c->bev) != 0)
        ;
}

void ev_conn_free(struct ev_conn *c)
{
    if (!c)
        return;
    if (c->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        /* Best effort close_notify; it never blocks (the socket is non-blocking). */
        if (ssl && SSL_is_init_finished(ssl))
            SSL_shutdown(ssl);
    }
    bufferevent_free(c->bev);
    if (c->pending_ssl)
        SSL_free(c->pending_ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

void ev_conn_set_timeout(struct ev_conn *c, uint32_t seconds)
{
    c->timeout = seconds;
    if (c->connecting)
        return; /* the connect timeout holds; these apply once connected */
    struct timeval rtv = {.tv_sec = c->timeout, .tv_usec = 0};
    struct timeval wtv = {.tv_sec = c->write_timeout, .tv_usec = 0};
    bufferevent_set_timeouts(c->bev, c->timeout ? &rtv : NULL, c->write_timeout ? &wtv : NULL);
}

void ev_conn_set_write_timeout(struct ev_conn *c, uint32_t seconds)
{
    c->write_timeout = seconds;
    ev_conn_set_timeout(c, c->timeout);
}

size_t ev_conn_input_len(struct ev_conn *c)
{
    return evbuffer_get_length(bufferevent_get_input(c->bev));
}

long ev_conn_input_find(struct ev_conn *c, char ch, size_t max)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return -1;
    struct evbuffer_ptr end;
    evbuffer_ptr_set(in, &end, max < len ? max : len, EVBUFFER_PTR_SET);
    struct evbuffer_ptr p = evbuffer_search_range(in, &ch, 1, NULL, &end);
    return p.pos < 0 ? -1 : (long)p.pos;
}

size_t ev_conn_input_peek(struct ev_conn *c, void *dst, size_t n)
{
    ev_ssize_t r = evbuffer_copyout(bufferevent_get_input(c->bev), dst, n);
    return r < 0 ? 0 : (size_t)r;
}

const uint8_t *ev_conn_input_first(struct ev_conn *c, size_t *len)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        *len = 0;
        return NULL;
    }
    *len = v.iov_len;
    return v.iov_base;
}

void ev_conn_input_drain(struct ev_conn *c, size_t n)
{
    evbuffer_drain(bufferevent_get_input(c->bev), n);
}

void ev_conn_write(struct ev_conn *c, const void *data, size_t len)
{
    if (c->closing)
        return;
    /* With nothing queued, send at once: most replies fit the socket buffer, and
       this saves arming and disarming write interest for every reply. What does
       not fit (or an error) goes through the bufferevent, which reports errors. */
    const char *p = data;
    if (!c->tls && !c->pending_ssl && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        ssize_t n = send(bufferevent_getfd(c->bev), p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len)
            return;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    bufferevent_write(c->bev, p, len);
}

size_t ev_conn_output_len(struct ev_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void ev_conn_pause(struct ev_conn *c, bool paused)
{
    if (paused)
        bufferevent_disable(c->bev, EV_READ);
    else if (!c->closing)
        bufferevent_enable(c->bev, EV_READ);
}

void ev_conn_close_after_flush(struct ev_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        /* Nothing to flush: report through the write callback path on the next pass
           so the owner never sees on_close re-entrantly. */
        struct timeval wt = {30, 0};
        bufferevent_set_timeouts(c->bev, NULL, &wt);
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
    } else {
        struct timeval wt = {30, 0};
        bufferevent_set_timeouts(c->bev, NULL, &wt);
    }
}

/* ---- workers ---- */

struct job {
    struct job *next;
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

struct ev_workers {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job *head, *tail; /* waiting to run */
    struct job *done_head;   /* finished, waiting for their done callback */
    struct job **done_tail;
    size_t pending; /* submitted and not done (loop thread only) */
    bool stop;
    int nice; /* scheduling priority of the threads (Linux per-thread nice) */
    size_t nthreads;
    pthread_t *threads;
    struct ev_async *async;
};

static void *worker_main(void *arg)
{
    struct ev_workers *w = arg;
    if (w->nice)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), w->nice);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cond, &w->mu);
        if (!w->head)
            break;
        struct job *j = w->head;
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        j->work(j->arg);
        pthread_mutex_lock(&w->mu);
        j->next = NULL;
        *w->done_tail = j;
        w->done_tail = &j->next;
        ev_async_signal(w->async);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void workers_run_done(void *arg)
{
    struct ev_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    struct job *j = w->done_head;
    w->done_head = NULL;
    w->done_tail = &w->done_head;
    pthread_mutex_unlock(&w->mu);
    while (j) {
        struct job *next = j->next;
        w->pending--;
        if (j->done)
            j->done(j->arg);
        free(j);
        j = next;
    }
}

struct ev_workers *ev_workers_new(struct ev_loop *loop, size_t nthreads, int nice)
{
    struct ev_workers *w = xcalloc(1, sizeof *w);
    w->nice = nice;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done_tail = &w->done_head;
    w->async = ev_async_new(loop, workers_run_done, w);
    w->nthreads = nthreads ? nthreads : 1;
    w->threads = xcalloc(w->nthreads, sizeof *w->threads);
    for (size_t i = 0; i < w->nthreads; i++)
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
            fatal("event=fatal reason=\"cannot start worker thread\"");
    return w;
}

void ev_workers_submit(struct ev_workers *w, void (*work)(void *arg), void (*done)(void *arg),
                       void *arg)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->work = work;
    j->done = done;
    j->arg = arg;
    w->pending++;
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

size_t ev_workers_threads(const struct ev_workers *w)
{
    return w->nthreads;
}

size_t ev_workers_pending(struct ev_workers *w)
{
    return w->pending;
}

void ev_workers_free(struct ev_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    workers_run_done(w);
    ev_async_free(w->async);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w->threads);
    free(w);
}
