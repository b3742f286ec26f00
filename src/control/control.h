/*
 * control - the control socket: a unix stream socket (control_socket, mode
 * control_socket_mode, group control_group) on which `tern queue`, mailq
 * and sendmail talk to the running server in line-delimited JSON (proto.h,
 * docs/control.md).
 *
 * Every request runs on the loop thread, so a command selects its messages
 * and acts on them in one step. The peer's credentials (SO_PEERCRED: uid,
 * gid, pid; SO_PEERGROUPS) are taken at accept; its login comes from the
 * password database in a worker thread before its first request is read.
 * Root, Tern's own user and members of the socket's group may change the
 * queue; anyone who can connect may list it, flush it and submit mail
 * (local submission, attributed to the peer's login in a Received field).
 * Answers that follow a change of the journal go out only once spool_sync
 * reports it durable, and a submission is answered only once its commit is
 * (DESIGN contract 1).
 *
 * Limits: PROTO_LINE_MAX per request line, control_max_requests per
 * connection, control_idle_timeout of silence, control_max_connections at
 * once, message_size_limit and max_recipients per submission.
 */
#ifndef TERN_CONTROL_CONTROL_H
#define TERN_CONTROL_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

struct aliases;
struct config;
struct ev_loop;
struct ev_workers;
struct sched;
struct spool;

struct control_deps {
    struct ev_loop *loop;
    struct spool *spool;
    struct sched *sched;
    const struct config *cfg;
    const struct aliases *aliases; /* may be NULL */
    struct ev_workers *workers;    /* password-database lookups */
};

struct control;

/* Create the socket (replacing a stale one; refusing one a live server
   answers on) and listen. NULL with err filled on failure. */
struct control *control_new(const struct control_deps *deps, char *err, size_t errlen);
/* The server is about to switch to uid:gid (run_user): the socket becomes
   uid's, and gid's unless control_group is set; without control_group, gid's
   members are the admins from now on. Called as root, before the switch. 0,
   or -1 with err filled. */
int control_set_owner(struct control *c, uid_t uid, gid_t gid, char *err, size_t errlen);
/* Reload (SIGHUP): requests read from now on use cfg and aliases (the
   caller's, valid until the next call or control_free); the socket, its mode,
   group and limits stay as they were created. */
void control_set_conf(struct control *c, const struct config *cfg, const struct aliases *aliases);
/* Stop listening and remove the socket; close connections that are not
   waiting for the journal. */
void control_shutdown(struct control *c);
/* Connections waiting for the journal (a commit or a sync): the loop must
   run until there are none. */
size_t control_waiting(const struct control *c);
/* Close everything (after control_shutdown and control_waiting() == 0).
   NULL does nothing. */
void control_free(struct control *c);

#endif
