/*
 * metrics/listener - the metrics endpoint on the event loop (see listener.h).
 *
 * Each connection reads until the request head is complete (metrics/http.c
 * decides), writes one answer (RFC 9112 §9.6: "Connection: close") and
 * closes once it is sent. Input is bounded by the 8 KiB head limit, time by
 * METRICS_TIMEOUT in each direction, and concurrency by METRICS_MAX_CONNS.
 */
#include "metrics/listener.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "event/event.h"
#include "metrics/http.h"

#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* The exposition is a few tens of KiB; this is a safety limit. */
#define MAX_BODY (4u * 1024 * 1024)

struct mconn {
    struct metrics_listener *ml; /* the owner */
    struct ev_conn *conn;        /* the connection */
    struct mconn *prev, *next;   /* in ml->conns */
    bool answered;               /* the answer is queued: ignore further input */
};

struct metrics_listener {
    struct ev_loop *loop;
    struct ev_listener *l;
    void (*refresh)(void *arg); /* sets the scrape-time gauges */
    void *arg;
    struct mconn *conns; /* open connections */
    size_t nconns;       /* how many */
};

static void mconn_free(struct mconn *c)
{
    struct metrics_listener *ml = c->ml;
    if (c->prev)
        c->prev->next = c->next;
    else
        ml->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ml->nconns--;
    ev_conn_free(c->conn);
    free(c);
}

/* Queue the answer and close once it is sent. */
static void answer(struct mconn *c, int status, bool head)
{
    struct metrics_listener *ml = c->ml;
    struct buf body, out;
    buf_init(&body, MAX_BODY);
    buf_init(&out, 1024);
    const char *type = "text/plain; charset=utf-8";
    if (status == 200) {
        if (ml->refresh)
            ml->refresh(ml->arg);
        if (metrics_render(&body) < 0)
            log_warn("event=metrics_truncated limit=%u", MAX_BODY);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
        buf_printf(&body, "%d %s\n", status, metrics_http_reason(status));
    }
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "%sConnection: close\r\n\r\n",
               status, metrics_http_reason(status), type, body.len,
               status == 405 ? "Allow: GET, HEAD\r\n" : "");
    ev_conn_write(c->conn, out.data, out.len);
    if (!head && body.len)
        ev_conn_write(c->conn, body.data, body.len);
    buf_free(&body);
    buf_free(&out);
    c->answered = true;
    ev_conn_close_after_flush(c->conn);
}

static void on_read(void *arg)
{
    struct mconn *c = arg;
    if (c->answered) {
        ev_conn_input_drain(c->conn, ev_conn_input_len(c->conn));
        return;
    }
    size_t len = ev_conn_input_len(c->conn);
    if (len > METRICS_HTTP_MAX_HEAD)
        len = METRICS_HTTP_MAX_HEAD;
    char *p = xmalloc(len ? len : 1);
    len = ev_conn_input_peek(c->conn, p, len);
    struct metrics_http_request req = {0};
    enum metrics_http_verdict v = metrics_http_parse(p, len, &req);
    free(p);
    if (v == METRICS_HTTP_MORE)
        return;
    ev_conn_input_drain(c->conn, ev_conn_input_len(c->conn));
    answer(c, (int)v, v == METRICS_HTTP_OK && req.head);
}

static void on_close(void *arg)
{
    mconn_free(arg);
}

static void on_timeout(void *arg)
{
    struct mconn *c = arg;
    if (c->answered) {
        mconn_free(c); /* the client does not take its answer */
        return;
    }
    answer(c, 408, false);
}

static const struct ev_conn_ops conn_ops = {on_read, on_close, on_timeout, NULL, NULL, NULL};

static void on_accept(void *arg, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct metrics_listener *ml = arg;
    (void)sa;
    (void)salen;
    if (ml->nconns >= METRICS_MAX_CONNS) {
        log_warn("event=metrics_connection_refused reason=limit limit=%d", METRICS_MAX_CONNS);
        close(fd);
        return;
    }
    struct mconn *c = xcalloc(1, sizeof *c);
    c->ml = ml;
    /* room for one more octet than a head may hold, to see it pass the limit */
    c->conn = ev_conn_new(ml->loop, fd, &conn_ops, c, METRICS_HTTP_MAX_HEAD + 1);
    ev_conn_set_timeout(c->conn, METRICS_TIMEOUT);
    ev_conn_set_write_timeout(c->conn, METRICS_TIMEOUT);
    c->next = ml->conns;
    if (ml->conns)
        ml->conns->prev = c;
    ml->conns = c;
    ml->nconns++;
}

struct metrics_listener *metrics_listener_new(struct ev_loop *loop, const char *host,
                                              const char *port, void (*refresh)(void *arg),
                                              void *arg, char *err, size_t errlen)
{
    struct metrics_listener *ml = xcalloc(1, sizeof *ml);
    ml->loop = loop;
    ml->refresh = refresh;
    ml->arg = arg;
    ml->l = ev_listener_new(loop, host, port, on_accept, ml, err, errlen);
    if (!ml->l) {
        free(ml);
        return NULL;
    }
    log_info("event=listening listener=metrics address=%s port=%s", host, port);
    return ml;
}

void metrics_listener_free(struct metrics_listener *ml)
{
    if (!ml)
        return;
    ev_listener_free(ml->l);
    while (ml->conns)
        mconn_free(ml->conns);
    free(ml);
}
