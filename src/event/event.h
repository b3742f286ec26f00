/*
 * event - the only module that includes libevent: the loop, listeners,
 * buffered connections, timers, signals, cross-thread wake-ups and the worker
 * thread pool (DESIGN contract 3: the loop never blocks; fsync and other slow
 * work run in workers and report back to the loop).
 *
 * Every callback runs on the loop thread, except a worker job's `work`
 * function, which runs in a worker thread. Objects are owned by whoever
 * created them and freed with their _free function; _free(NULL) does nothing.
 */
#ifndef TERN_EVENT_EVENT_H
#define TERN_EVENT_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct ev_listener;
struct ev_conn;
struct ev_timer;
struct ev_async;
struct ev_workers;
struct ev_fd;
struct ssl_st;

/* ---- loop ---- */
struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop *loop);
/* Run until ev_loop_stop; returns 0 or -1. */
int ev_loop_run(struct ev_loop *loop);
void ev_loop_stop(struct ev_loop *loop);
/* Call cb on the loop thread when signal signo arrives. */
int ev_on_signal(struct ev_loop *loop, int signo, void (*cb)(void *arg, int signo), void *arg);

/* ---- timers (one-shot; re-arm from the callback for periodic work) ---- */
struct ev_timer *ev_timer_new(struct ev_loop *loop, void (*cb)(void *arg), void *arg);
void ev_timer_start(struct ev_timer *t, uint64_t ms);
void ev_timer_stop(struct ev_timer *t);
void ev_timer_free(struct ev_timer *t);

/* ---- a descriptor another library owns (libunbound's) ---- */
/* Call cb on the loop thread whenever fd is readable, until ev_fd_free. The
   caller keeps owning fd. */
struct ev_fd *ev_fd_new(struct ev_loop *loop, int fd, void (*cb)(void *arg), void *arg);
void ev_fd_free(struct ev_fd *f);

/* ---- wake the loop from another thread ---- */
struct ev_async *ev_async_new(struct ev_loop *loop, void (*cb)(void *arg), void *arg);
/* Thread-safe; several signals before the callback runs coalesce into one call. */
void ev_async_signal(struct ev_async *a);
void ev_async_free(struct ev_async *a);

/* ---- listeners ---- */
/* A new connection: the callee owns fd. */
typedef void (*ev_accept_cb)(void *arg, int fd, const struct sockaddr *sa, socklen_t salen);
/* Bind and listen on host:port (numeric). NULL with err filled on failure. */
struct ev_listener *ev_listener_new(struct ev_loop *loop, const char *host, const char *port,
                                    ev_accept_cb cb, void *arg, char *err, size_t errlen);
/* Bind and listen on a unix-domain stream socket at path (which must not
   exist; the caller removes a stale one, sets its owner and mode, and
   unlinks it after ev_listener_free). NULL with err filled on failure. */
struct ev_listener *ev_listener_new_unix(struct ev_loop *loop, const char *path, ev_accept_cb cb,
                                         void *arg, char *err, size_t errlen);
void ev_listener_free(struct ev_listener *l);

/* ---- buffered connections ---- */
struct ev_conn_ops {
    void (*on_read)(void *arg);      /* more input is buffered */
    void (*on_close)(void *arg);     /* peer closed, error, or close_after_flush done:
                                        the owner must free the conn (not from inside
                                        another ev_conn call) */
    void (*on_timeout)(void *arg);   /* no input for the read timeout, or queued
                                        output not taken for the write timeout */
    void (*on_tls_ready)(void *arg); /* TLS handshake done (may be NULL) */
    void (*on_connect)(void *arg);   /* ev_conn_connect: connected (may be NULL) */
    void (*on_drain)(void *arg);     /* queued output has been sent (may be NULL) */
};

/* The protocol and cipher of an established TLS connection. */
struct ev_tls_info {
    char version[16]; /* "TLSv1.3" */
    char cipher[64];  /* OpenSSL's name, "TLS_AES_256_GCM_SHA384" */
    int bits;         /* secret bits of the cipher */
};

/* Wrap an accepted socket; input is limited to max_input buffered octets
   (reading pauses past it). */
struct ev_conn *ev_conn_new(struct ev_loop *loop, int fd, const struct ev_conn_ops *ops, void *arg,
                            size_t max_input);
/* An outbound connection to a numeric address: on_connect reports it up,
   on_close a failure (refused, unreachable, connect_timeout seconds passed). */
struct ev_conn *ev_conn_connect(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                                const struct ev_conn_ops *ops, void *arg, size_t max_input,
                                uint32_t connect_timeout);
/* The same to a unix-domain socket (LMTP to a local Dovecot). */
struct ev_conn *ev_conn_connect_unix(struct ev_loop *loop, const char *path,
                                     const struct ev_conn_ops *ops, void *arg, size_t max_input,
                                     uint32_t connect_timeout);
/* Hand the connection to another owner: later callbacks go to ops with arg
   (a connection pool keeps an idle connection this way). */
void ev_conn_set_owner(struct ev_conn *c, const struct ev_conn_ops *ops, void *arg);
/* The same over implicit TLS (RFC 8314): the server handshake runs first, and
   output written before it completes is sent after it. The conn owns ssl. */
struct ev_conn *ev_conn_new_tls(struct ev_loop *loop, int fd, const struct ev_conn_ops *ops,
                                void *arg, size_t max_input, struct ssl_st *ssl);
/* STARTTLS (RFC 3207): discard every buffered input octet (returns how many),
   send what is queued (the 220, or the client's STARTTLS) in plaintext, then
   run the handshake on the socket, as a server or a client as ssl was made;
   on_tls_ready reports its end, on_close a failure. Owns ssl. */
size_t ev_conn_start_tls(struct ev_conn *c, struct ssl_st *ssl);
bool ev_conn_is_tls(const struct ev_conn *c);
/* False until the handshake is done. */
bool ev_conn_tls_info(struct ev_conn *c, struct ev_tls_info *info);
/* Why a TLS connection failed (OpenSSL's reason), for logs. */
void ev_conn_tls_error(struct ev_conn *c, char *out, size_t outlen);
void ev_conn_free(struct ev_conn *c);
/* The read timeout: on_timeout when no input arrives for this long while
   reading (0: none). */
void ev_conn_set_timeout(struct ev_conn *c, uint32_t seconds);
/* The write timeout: on_timeout when queued output makes no progress for
   this long (0: none, the default). Independent of the read timeout. */
void ev_conn_set_write_timeout(struct ev_conn *c, uint32_t seconds);

size_t ev_conn_input_len(struct ev_conn *c);
/* Offset of the first octet ch among the first max buffered octets, or -1. */
long ev_conn_input_find(struct ev_conn *c, char ch, size_t max);
/* Copy n buffered octets to dst without removing them; returns octets copied. */
size_t ev_conn_input_peek(struct ev_conn *c, void *dst, size_t n);
/* A pointer to the first contiguous run of buffered input and its length. */
const uint8_t *ev_conn_input_first(struct ev_conn *c, size_t *len);
void ev_conn_input_drain(struct ev_conn *c, size_t n);

void ev_conn_write(struct ev_conn *c, const void *data, size_t len);
size_t ev_conn_output_len(struct ev_conn *c);
/* Stop or resume reading (input stays buffered). */
void ev_conn_pause(struct ev_conn *c, bool paused);
/* Stop reading, send what is buffered, then call on_close. */
void ev_conn_close_after_flush(struct ev_conn *c);

/* ---- worker threads ---- */
/* nthreads threads at priority `nice` (0 = as the loop; higher = yield to it). */
struct ev_workers *ev_workers_new(struct ev_loop *loop, size_t nthreads, int nice);
/* Run work(arg) in a worker thread, then done(arg) on the loop thread. */
void ev_workers_submit(struct ev_workers *w, void (*work)(void *arg), void (*done)(void *arg),
                       void *arg);
/* Number of worker threads. */
size_t ev_workers_threads(const struct ev_workers *w);
/* Jobs submitted and not yet done. */
size_t ev_workers_pending(struct ev_workers *w);
/* Wait for queued jobs, join the threads (their done callbacks still run). */
void ev_workers_free(struct ev_workers *w);

#endif
