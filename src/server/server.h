/*
 * server - the inbound side: listeners by role (mx, submission, submissions),
 * connection limits in total and per client address, and the SMTP sessions
 * they start (session.c). Owns every session; sessions call back into the
 * server when they end.
 *
 * Reloading: the configuration and the aliases loaded with it form a
 * server_conf. New connections are checked against the current one and new
 * sessions start with it; each session keeps the one it started with until it
 * ends, so a reload never changes the rules in the middle of a session.
 */
#ifndef TERN_SERVER_SERVER_H
#define TERN_SERVER_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include "config/aliases.h"
#include "config/config.h"

struct ev_loop;
struct ev_workers;
struct msgauth_ctx;
struct spool;
struct sched;
struct server;
struct tls_server;
struct userdb;
struct sender_login;

/*
 * A configuration and the aliases file loaded with it (NULL: none), shared by
 * the sessions that started under them. Reference-counted, loop thread only:
 * whoever created it holds one reference; the server holds one to its current
 * conf, and each session one to the conf it started with.
 */
struct server_conf;
/* One reference (the caller's); the conf takes ownership of cfg and aliases. */
struct server_conf *server_conf_new(struct config *cfg, struct aliases *aliases);
/* Another reference to c. */
struct server_conf *server_conf_hold(struct server_conf *c);
/* Drop a reference; the last one frees the configuration and the aliases.
   NULL does nothing. */
void server_conf_free(struct server_conf *c);
const struct config *server_conf_config(const struct server_conf *c);
const struct aliases *server_conf_aliases(const struct server_conf *c);

/* What the server works with; all owned by the caller and outliving the
   server, except conf, of which the server takes a reference. */
struct server_deps {
    struct ev_loop *loop;
    struct spool *spool;
    struct sched *sched;
    struct server_conf *conf; /* the configuration sessions start with */
    /* set by the server from its current conf (the caller leaves them NULL): */
    const struct config *cfg;
    const struct aliases *aliases;
    struct tls_server *tls;             /* NULL: no TLS (no STARTTLS, no submissions) */
    const struct userdb *users;         /* NULL: nobody can authenticate */
    const struct sender_login *senders; /* sender_login_maps; NULL: a login owns itself */
    struct ev_workers *auth_workers;    /* password checks (DESIGN contract 3) */
    const struct msgauth_ctx *mailauth; /* SPF, DKIM, DMARC; NULL: none */
};

/* Bind every listener of cfg. NULL with err filled when one cannot be bound. */
struct server *server_new(const struct server_deps *deps, char *err, size_t errlen);
/* Take a connected socket as if a listener of role had accepted it (the same
   limits apply; the server owns fd from here): what the listeners call, and
   the way in for a socket made elsewhere (the session fuzzer's socketpair). */
void server_accept(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen,
                   enum config_role role);
/* Stop accepting, end idle sessions with 421, let transactions in flight finish;
   done(arg) runs once no session is left. */
void server_shutdown(struct server *srv, void (*done)(void *arg), void *arg);
/* Close every remaining session at once (the shutdown deadline passed). */
void server_close_all(struct server *srv);
size_t server_session_count(const struct server *srv);
/* Reload: new sessions and new handshakes use these from now on; sessions in
   flight keep what they hold (the caller frees the old objects after the
   call: sessions copy what they need and SSL objects hold their context). */
void server_set_tls(struct server *srv, struct tls_server *tls);
void server_set_users(struct server *srv, const struct userdb *users,
                      const struct sender_login *senders);
/* Reload: new connections and sessions use conf from now on (the server takes
   a reference and drops its one to the conf before); sessions in flight keep
   theirs. The listeners stay as they are. */
void server_set_conf(struct server *srv, struct server_conf *conf);
/* Free the server; sessions must be gone. NULL does nothing. */
void server_free(struct server *srv);

#endif
