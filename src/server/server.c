/*
 * server - listeners by role, connection limits and the session list.
 *
 * A connection past max_connections gets "421 4.3.2" and one past
 * max_connections_per_client (counted per client IP address) gets
 * "421 4.7.0", written straight to the socket before it is closed, so a flood
 * costs no session state (DESIGN contract 4). Each connection holds a file
 * descriptor: at start the soft limit on open files is raised to the hard
 * one, and a limit too low for max_connections is logged.
 *
 * Reload: the server keeps a reference to its current server_conf and gives
 * each session one to the conf it starts with (in the session's list link),
 * dropped when the session is gone; a superseded conf is freed with the last
 * session that used it.
 */
#include "server/server.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "event/event.h"
#include "server/ratelimit.h"
#include "server/session.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CLIENT_BUCKETS 1024
/* Client addresses and logins whose counters are kept (bounded memory). */
#define RATE_KEYS 65536
#define USER_RATE_WINDOW 3600
/* Descriptors for what is not an inbound connection: listeners, spool
   segments, the resolver, Maildir files, logs. */
#define FD_RESERVE 256

/* Connections per client address. */
struct client_count {
    struct client_count *next;
    size_t n;
    char addr[64];
};

struct listener {
    struct server *srv;
    struct ev_listener *l;
    enum config_role role;
};

struct server_conf {
    unsigned refs;           /* see server.h: creator, server, sessions */
    struct config *cfg;      /* owned */
    struct aliases *aliases; /* owned; NULL without aliases_file */
};

struct server {
    struct server_conf *conf; /* current; one reference (deps.cfg and deps.aliases are its) */
    struct server_deps deps;
    struct session_env env;
    struct listener *listeners;
    size_t nlisteners;
    struct session *sessions; /* list head */
    size_t nsessions;
    struct client_count *clients[CLIENT_BUCKETS];
    bool shutting_down;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
};

struct server_conf *server_conf_new(struct config *cfg, struct aliases *aliases)
{
    struct server_conf *c = xcalloc(1, sizeof *c);
    c->refs = 1;
    c->cfg = cfg;
    c->aliases = aliases;
    return c;
}

struct server_conf *server_conf_hold(struct server_conf *c)
{
    c->refs++;
    return c;
}

void server_conf_free(struct server_conf *c)
{
    if (!c || --c->refs > 0)
        return;
    config_free(c->cfg);
    aliases_free(c->aliases);
    free(c);
}

const struct config *server_conf_config(const struct server_conf *c)
{
    return c->cfg;
}

const struct aliases *server_conf_aliases(const struct server_conf *c)
{
    return c->aliases;
}

static size_t client_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % CLIENT_BUCKETS;
}

static struct client_count **client_find(struct server *srv, const char *addr)
{
    struct client_count **pp = &srv->clients[client_hash(addr)];
    while (*pp && strcmp((*pp)->addr, addr) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void client_addr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t)outlen);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)outlen);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)outlen);
    } else {
        snprintf(out, outlen, "unknown");
    }
}

/* Refuse a connection without a session: best-effort write, then close. */
static void refuse(int fd, const char *line)
{
    ssize_t r = write(fd, line, strlen(line));
    (void)r;
    close(fd);
}

static void session_gone(struct server *srv, struct session *s, const char *client)
{
    struct session_link *l = session_link_of(s);
    if (l->prev)
        session_link_of(l->prev)->next = l->next;
    else
        srv->sessions = l->next;
    if (l->next)
        session_link_of(l->next)->prev = l->prev;
    srv->nsessions--;
    struct client_count **pp = client_find(srv, client);
    if (*pp && --(*pp)->n == 0) {
        struct client_count *c = *pp;
        *pp = c->next;
        free(c);
    }
    server_conf_free(l->conf); /* the session is done with it */
    l->conf = NULL;
    if (srv->shutting_down && srv->nsessions == 0 && srv->shutdown_done)
        srv->shutdown_done(srv->shutdown_arg);
}

static void on_accept(void *arg, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct listener *l = arg;
    server_accept(l->srv, fd, sa, salen, l->role);
}

void server_accept(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen,
                   enum config_role role)
{
    const struct config *cfg = srv->deps.cfg;
    char client[64];
    client_addr_text(sa, client, sizeof client);
    if (srv->shutting_down) {
        metrics_inc(M_CONNECTIONS, role, METRICS_CONN_REFUSED_SHUTDOWN);
        refuse(fd, "421 4.3.2 Service shutting down\r\n");
        return;
    }
    if (srv->nsessions >= cfg->max_connections) {
        log_warn("event=connection_refused client=%s reason=max_connections limit=%zu", client,
                 cfg->max_connections);
        metrics_inc(M_CONNECTIONS, role, METRICS_CONN_REFUSED_LIMIT);
        refuse(fd, "421 4.3.2 Too many connections, try again later\r\n");
        return;
    }
    struct client_count **pp = client_find(srv, client);
    if (*pp && (*pp)->n >= cfg->max_connections_per_client) {
        log_warn("event=connection_refused client=%s reason=max_connections_per_client limit=%zu",
                 client, cfg->max_connections_per_client);
        metrics_inc(M_CONNECTIONS, role, METRICS_CONN_REFUSED_LIMIT);
        refuse(fd, "421 4.7.0 Too many connections from your address, try again later\r\n");
        return;
    }
    if (!*pp) {
        *pp = xcalloc(1, sizeof **pp);
        snprintf((*pp)->addr, sizeof(*pp)->addr, "%s", client);
    }
    (*pp)->n++;
    metrics_inc(M_CONNECTIONS, role, METRICS_CONN_ACCEPTED);
    struct session *s = session_new(&srv->env, fd, sa, salen, role, client);
    struct session_link *link = session_link_of(s);
    link->conf = server_conf_hold(srv->conf); /* session_new took srv->deps.cfg: its config */
    link->prev = NULL;
    link->next = srv->sessions;
    if (srv->sessions)
        session_link_of(srv->sessions)->prev = s;
    srv->sessions = s;
    srv->nsessions++;
}

/* Raise the soft limit on open files to the hard one (a shell or a service
   manager often starts at 1024), so that max_connections, not the default
   limit, decides how many clients are served; warn when even that is short. */
static void raise_open_files(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    if (rl.rlim_cur != was)
        log_info("event=open_files_limit soft=%ju raised_from=%ju", (uintmax_t)rl.rlim_cur,
                 (uintmax_t)was);
    uintmax_t need = (uintmax_t)cfg->max_connections + cfg->relay_concurrency + FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && (uintmax_t)rl.rlim_cur < need)
        log_warn("event=open_files_limit soft=%ju hard=%ju need=%ju note=\"raise the hard "
                 "limit (LimitNOFILE=) or lower max_connections\"",
                 (uintmax_t)rl.rlim_cur, (uintmax_t)rl.rlim_max, need);
}

struct server *server_new(const struct server_deps *deps, char *err, size_t errlen)
{
    struct server *srv = xcalloc(1, sizeof *srv);
    srv->deps = *deps;
    srv->conf = server_conf_hold(deps->conf);
    srv->deps.cfg = srv->conf->cfg;
    srv->deps.aliases = srv->conf->aliases;
    srv->env.srv = srv;
    srv->env.deps = &srv->deps;
    srv->env.gone = session_gone;
    const struct config *cfg = srv->deps.cfg;
    raise_open_files(cfg);
    srv->env.auth_failures = rate_table_new(RATE_KEYS, cfg->auth_failure_window);
    srv->env.user_rates = rate_table_new(RATE_KEYS, USER_RATE_WINDOW);
    srv->listeners = xcalloc(cfg->nlisten, sizeof *srv->listeners);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listener *l = &srv->listeners[i];
        l->srv = srv;
        l->role = cfg->listen[i].role;
        l->l = ev_listener_new(deps->loop, cfg->listen[i].host, cfg->listen[i].port, on_accept, l,
                               err, errlen);
        if (!l->l) {
            server_free(srv);
            return NULL;
        }
        srv->nlisteners = i + 1;
        log_info("event=listening listener=%s address=%s port=%s", config_role_name(l->role),
                 cfg->listen[i].host, cfg->listen[i].port);
    }
    return srv;
}

void server_shutdown(struct server *srv, void (*done)(void *arg), void *arg)
{
    srv->shutting_down = true;
    srv->shutdown_done = done;
    srv->shutdown_arg = arg;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        ev_listener_free(srv->listeners[i].l);
        srv->listeners[i].l = NULL;
    }
    if (srv->nsessions == 0) {
        if (done)
            done(arg);
        return;
    }
    struct session *s = srv->sessions;
    while (s) {
        struct session *next = session_link_of(s)->next;
        session_shutdown(s);
        s = next;
    }
}

void server_close_all(struct server *srv)
{
    struct session *s = srv->sessions;
    while (s) {
        struct session *next = session_link_of(s)->next;
        session_abort(s);
        s = next;
    }
}

size_t server_session_count(const struct server *srv)
{
    return srv->nsessions;
}

void server_set_tls(struct server *srv, struct tls_server *tls)
{
    srv->deps.tls = tls;
}

void server_set_users(struct server *srv, const struct userdb *users,
                      const struct sender_login *senders)
{
    srv->deps.users = users;
    srv->deps.senders = senders;
}

void server_set_conf(struct server *srv, struct server_conf *conf)
{
    struct server_conf *old = srv->conf;
    srv->conf = server_conf_hold(conf);
    srv->deps.cfg = conf->cfg;
    srv->deps.aliases = conf->aliases;
    server_conf_free(old);
    raise_open_files(conf->cfg); /* max_connections may have grown */
}

void server_free(struct server *srv)
{
    if (!srv)
        return;
    for (size_t i = 0; i < srv->nlisteners; i++)
        ev_listener_free(srv->listeners[i].l);
    free(srv->listeners);
    for (size_t i = 0; i < CLIENT_BUCKETS; i++) {
        while (srv->clients[i]) {
            struct client_count *c = srv->clients[i];
            srv->clients[i] = c->next;
            free(c);
        }
    }
    rate_table_free(srv->env.auth_failures);
    rate_table_free(srv->env.user_rates);
    server_conf_free(srv->conf);
    free(srv);
}
