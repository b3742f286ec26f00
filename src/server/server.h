/*
 * server - the inbound side: listeners by role (mx, submission, submissions),
 * connection limits in total and per client address, and the SMTP sessions
 * they start (session.c). Owns every session; sessions call back into the
 * server when they end.
 */
#ifndef TERN_SERVER_SERVER_H
#define TERN_SERVER_SERVER_H

#include <stddef.h>

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

/* What the server works with; all owned by the caller and outliving the server. */
struct server_deps {
    struct ev_loop *loop;
    struct spool *spool;
    struct sched *sched;
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
/* Free the server; sessions must be gone. NULL does nothing. */
void server_free(struct server *srv);

#endif
