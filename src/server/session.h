/*
 * session - one inbound SMTP session (RFC 5321 server side with PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING and DSN). Private
 * to the server module.
 */
#ifndef TERN_SERVER_SESSION_H
#define TERN_SERVER_SESSION_H

#include <stdbool.h>
#include <sys/socket.h>

#include "config/config.h"
#include "server/server.h"

struct session;
struct rate_table;

/* What a session needs from its server (set up by server.c). */
struct session_env {
    struct server *srv;
    const struct server_deps *deps;
    /* Called when the session is freed, to release its connection slot. */
    void (*gone)(struct server *srv, struct session *s, const char *client);
    struct rate_table *auth_failures; /* per client address, over auth_failure_window */
    struct rate_table *user_rates;    /* per login and hour: a = messages, b = recipients */
};

/* Start a session on an accepted socket (the session owns fd). */
struct session *session_new(const struct session_env *env, int fd, const struct sockaddr *sa,
                            socklen_t salen, enum config_role role, const char *client);
/* Server shutdown: close now with 421 when idle (no transaction), otherwise after
   the transaction in flight. */
void session_shutdown(struct session *s);
/* Close at once, whatever the state (deadline passed). */
void session_abort(struct session *s);

/* The server's list of sessions: every struct session begins with this link,
   which only server.c touches. */
struct session_link {
    struct session *prev, *next;
    struct server_conf *conf; /* a reference to the configuration the session started
                                 with, dropped once the session is gone */
};

static inline struct session_link *session_link_of(struct session *s)
{
    return (struct session_link *)(void *)s;
}

#endif
