/*
 * main - the tern program: subcommand dispatch and the wiring of `tern serve`,
 * the only file that sees every module.
 *
 *   tern serve [-c FILE]   run the server in the foreground (logs to log_target)
 *   tern check [-c FILE]   validate the configuration
 *   tern queue ...         the queue, through the control socket (cli/queue.c)
 *   tern sendmail ...      sendmail compatibility, also as sendmail, mailq or
 *                          newaliases (argv[0]) (cli/sendmail.c)
 *   tern version
 *
 * serve: load and validate the configuration and aliases (fatal on error),
 * load the TLS certificate (creating a self-signed one first when
 * tls_selfsigned asks for it), the user store and the sender login map, open
 * the spool (recovering its index), start the delivery and password-check
 * workers and the queue manager, schedule every recovered message, bind the
 * listeners, give the directories it writes to run_user and switch to it when
 * started as root, and run the event loop.
 *
 * SIGHUP reloads the configuration file and the aliases file together: when
 * either has an error, everything stays as it was; otherwise new sessions use
 * the new pair while sessions in flight keep theirs (server_conf), and keys
 * that need a restart keep their running values, each change logged as
 * reload_ignored. Then it reloads the certificate, the user store and the
 * sender login map (a file that fails to load keeps the old one); the user
 * store and the map are also reloaded when their files change. SIGUSR1
 * reopens the log file (log_target), for logrotate. SIGTERM/SIGINT stop
 * accepting, let transactions in flight finish (up to 10 seconds), wait for
 * deliveries in flight, flush the journal and exit 0.
 */
#include "auth/senderlogin.h"
#include "auth/userdb.h"
#include "cli/cli.h"
#include "deliver/maildir.h"
#include "deliver/relay.h"
#include "config/transport.h"
#include "control/control.h"
#include "core/metrics.h"
#include "metrics/listener.h"
#include "dns/dns.h"
#include "config/aliases.h"
#include "config/config.h"
#include "core/log.h"
#include "core/priv.h"
#include "core/util.h"
#include "event/event.h"
#include "mailauth/dkim.h"
#include "mailauth/dkimkey.h"
#include "mailauth/dmarc_check.h"
#include "mailauth/keycache.h"
#include "mailauth/orgdomain.h"
#include "sched/sched.h"
#include "server/msgauth.h"
#include "sandbox/sandbox.h"
#include "server/server.h"
#include "spool/spool.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHUTDOWN_DEADLINE_MS 10000
/* Deliveries are background work: their threads yield to the loop, so that a
   client waiting for its 250 is served first when the CPUs are saturated; the
   mail is durable, and deliveries catch up as soon as there is CPU to spare
   (measured in bench/ at 50 clients on 2 CPUs: nice 3 gave 3,300-3,700
   accepted msg/s, nice 10 gave 3,650-4,950, end to end 2,070-2,460 either way). */
#define DELIVERY_NICE 10
/* How often the user store and sender login map are checked for changes. */
#define RELOAD_CHECK_MS 2000

/* Everything `tern serve` runs, owned here. */
struct daemon {
    const char *config_file; /* -c FILE, read again on SIGHUP */
    /* The configuration as loaded at start, for the modules that keep it for
       their lifetime (spool, scheduler, relay, resolver, workers); its
       local_domains follow reloads, because the scheduler routes by them. */
    struct config *cfg;
    struct server_conf *conf; /* the current configuration and aliases (a reference):
                                 what new sessions start with and what reloads read */
    struct ev_loop *loop;
    struct ev_async *spool_wake;
    struct spool *spool;
    struct ev_workers *workers;
    struct sched *sched;
    struct server *server;
    struct ev_timer *stop_timer; /* polls for the end of shutdown */
    int64_t stop_deadline;       /* monotonic ms */
    bool stopping;
    bool failed;                  /* the spool cannot sync: stopping with status 1 */
    struct ev_timer *fail_timer;  /* then ends the process */
    struct tls_server *tls;       /* NULL without tls_cert_file */
    struct userdb *users;         /* NULL without users_file */
    struct sender_login *senders; /* NULL without sender_login_maps */
    struct ev_workers *auth_workers;
    struct dns_resolver *dns;      /* for the relay */
    struct tls_client *tls_client; /* outbound STARTTLS */
    struct relay *relay;
    struct transport_table *transports; /* transport_file; NULL without it */
    struct route relayhost;             /* relayhost, when cfg->relayhost */
    struct transport_auth relay_auth;   /* relayhost_auth_file (secret) */
    struct ev_timer *reload_timer;      /* watches the user store and the map */
    struct stat users_st, senders_st;   /* what was loaded */
    /* mail authentication (server/msgauth.h) */
    struct dkim_ctx *dkim;
    struct dkim_keystore *dkim_keys;
    struct orgdomain *org;
    struct dmarc_checker *dmarc;
    struct ev_workers *sign_workers; /* DKIM signatures */
    struct msgauth_ctx mailauth;
    struct control *control;          /* the control socket */
    struct metrics_listener *metrics; /* GET /metrics; NULL without metrics_listen */
    /* privileges (run_user) */
    bool drop;               /* switch to run_as once the listeners are bound */
    struct priv_user run_as; /* run_user, looked up at start */
    bool made_selfsigned;    /* the self-signed pair was created by this start */
};

/* The configuration in use now (new sessions, reloads). */
static const struct config *cur_cfg(const struct daemon *d)
{
    return server_conf_config(d->conf);
}

/* What mail authentication needs: libopendkim, the DKIM key store, the public
   suffix list and the DMARC checker on the resolver. Fatal when one cannot be
   had. */
static void load_mailauth(struct daemon *d, size_t nthreads)
{
    char err[512];
    d->dkim = dkim_ctx_new(err, sizeof err);
    if (!d->dkim)
        fatal("event=fatal reason=\"cannot start DKIM\" error=\"%s\"", err);
    struct config_diags diags = {0};
    d->dkim_keys = dkim_keystore_load(d->cfg->dkim_key_dir, &diags);
    for (size_t i = 0; i < diags.n; i++)
        log_error("event=dkim_key_error file=%s error=\"%s\"", diags.v[i].file, diags.v[i].msg);
    config_diags_free(&diags);
    if (!d->dkim_keys)
        fatal("event=fatal reason=\"invalid DKIM key store\" dir=%s", d->cfg->dkim_key_dir);
    log_info("event=dkim_keys_loaded dir=%s keys=%zu", d->cfg->dkim_key_dir,
             dkim_keystore_count(d->dkim_keys));
    d->org = orgdomain_new(NULL, err, sizeof err);
    if (!d->org)
        fatal("event=fatal reason=\"cannot load the public suffix list\" error=\"%s\"", err);
    d->dmarc = dmarc_checker_new(d->loop, d->dns, d->org);
    d->sign_workers = ev_workers_new(d->loop, nthreads, 0);
    d->mailauth = (struct msgauth_ctx){.loop = d->loop,
                                       .dns = d->dns,
                                       .dkim = d->dkim,
                                       .keys = d->dkim_keys,
                                       .dmarc = d->dmarc,
                                       .org = d->org,
                                       .workers = d->sign_workers};
}

/* The control socket (src/control): tern queue, mailq and sendmail talk to
   the server through it. Its password-database lookups use the auth workers. */
static void start_control(struct daemon *d)
{
    char err[512];
    struct control_deps deps = {.loop = d->loop,
                                .spool = d->spool,
                                .sched = d->sched,
                                .cfg = cur_cfg(d), /* follows reloads */
                                .aliases = server_conf_aliases(d->conf),
                                .workers = d->auth_workers};
    d->control = control_new(&deps, err, sizeof err);
    if (!d->control)
        fatal("event=fatal reason=\"cannot create the control socket\" error=\"%s\"", err);
}

/* The gauges computed when scraped: the queue from the spool's index. */
static void oldest_arrival(void *arg, spool_id id, const struct spool_envelope *env)
{
    int64_t *oldest = arg;
    (void)id;
    if (*oldest == 0 || env->arrival < *oldest)
        *oldest = env->arrival;
}

static void metrics_refresh(void *arg)
{
    struct daemon *d = arg;
    struct spool_stats st;
    spool_get_stats(d->spool, &st);
    int64_t oldest = 0, now = now_real_us() / 1000000;
    spool_foreach(d->spool, oldest_arrival, &oldest);
    metrics_set(M_QUEUE_MESSAGES, st.live_messages);
    metrics_set(M_QUEUE_OLDEST_AGE, oldest && now > oldest ? (uint64_t)(now - oldest) : 0);
    metrics_set(M_SPOOL_BYTES, st.bytes_on_disk);
    metrics_set(M_SPOOL_SEGMENTS, st.segments);
    metrics_set(M_SESSIONS, server_session_count(d->server));
}

/* The metrics endpoint (src/metrics), when metrics_listen is set: bound
   as root, like the SMTP listeners. */
static void start_metrics(struct daemon *d)
{
    const char *addr = d->cfg->metrics_listen;
    if (!addr)
        return;
    char host[64], err[512];
    const char *colon = strrchr(addr, ':');
    bool v6 = addr[0] == '[';
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr) - (v6 ? 2 : 0), addr + v6);
    d->metrics =
        metrics_listener_new(d->loop, host, colon + 1, metrics_refresh, d, err, sizeof err);
    if (!d->metrics)
        fatal("event=fatal reason=\"cannot listen for metrics\" address=%s error=\"%s\"", addr,
              err);
}

static void free_mailauth(struct daemon *d)
{
    ev_workers_free(d->sign_workers); /* joins; done callbacks free their jobs */
    dmarc_checker_free(d->dmarc);
    orgdomain_free(d->org);
    dkim_keystore_free(d->dkim_keys);
    uint64_t hits, misses;
    dkim_keycache_stats(&hits, &misses);
    log_info("event=dkim_keycache hits=%" PRIu64 " parsed=%" PRIu64, hits, misses);
    dkim_keycache_clear();
    dkim_ctx_free(d->dkim);
}

static void usage(FILE *f)
{
    fputs("usage: tern serve [-c FILE]   run the mail server in the foreground\n"
          "       tern check [-c FILE]   validate the configuration\n"
          "       tern cert selfsigned [-c FILE] [--force]   write a self-signed TLS pair\n"
          "       tern user add|passwd|del|list ...   edit or list the user store\n"
          "       tern resolve [-c FILE] [-H] NAME   where mail for a domain would be relayed\n"
          "       tern send [--server HOST] ... --to ADDR   send a message (tern send --help)\n"
          "       tern spf [-c FILE] [--helo NAME] IP SENDER   the SPF result for a sender\n"
          "       tern dkim keygen|sign|verify ...   DKIM keys, signing and verifying\n"
          "       tern dns [-c FILE] DOMAIN [--check]   the DNS records to publish for DOMAIN\n"
          "       tern dmarc [-c FILE] --from DOMAIN [--spf R:D] [--dkim R:D]...   check DMARC\n"
          "       tern queue [-c FILE] list|show|flush|hold|release|delete|bounce ...\n"
          "       tern sendmail [OPTIONS] [RCPT...]   also as sendmail, mailq, newaliases\n"
          "       tern version\n",
          f);
}

/* The spool cannot sync: stop now (as PostgreSQL does after a failed fsync),
   once the refusals already queued have gone out; the supervisor restarts
   Tern, which recovers what was acknowledged from the journal. */
static void on_fail_timer(void *arg)
{
    (void)arg;
    fatal("event=fatal reason=\"the spool cannot sync\" note=\"stopping; what was "
          "acknowledged before is in the journal\"");
}

static void on_spool_wake(void *arg)
{
    struct daemon *d = arg;
    spool_run_completions(d->spool);
    if (!d->failed && spool_broken(d->spool)) {
        d->failed = true;
        server_shutdown(d->server, NULL, NULL); /* no new connection */
        d->fail_timer = ev_timer_new(d->loop, on_fail_timer, d);
        ev_timer_start(d->fail_timer, 200);
    }
}

/* Called from the spool's flusher thread. */
static void spool_wake(void *arg)
{
    struct daemon *d = arg;
    ev_async_signal(d->spool_wake);
}

/* The start-up sweep of Maildir tmp/ directories, run on a delivery worker. */
struct tmp_sweep {
    const char *root;     /* maildir_root (the daemon's cfg outlives the workers) */
    const char *hostname; /* the name in Tern's file names */
    int64_t started_us;   /* files of this run are not older */
    size_t removed;       /* result */
};

static void tmp_sweep_work(void *arg)
{
    struct tmp_sweep *w = arg;
    w->removed = maildir_sweep_tmp(w->root, w->hostname, w->started_us);
}

static void tmp_sweep_done(void *arg)
{
    struct tmp_sweep *w = arg;
    if (w->removed)
        log_info("event=maildir_tmp_swept removed=%zu note=\"files of deliveries cut short "
                 "by a stop\"",
                 w->removed);
    free(w);
}

static void queue_message(void *arg, spool_id id, const struct spool_envelope *env)
{
    struct daemon *d = arg;
    (void)env;
    sched_message_queued(d->sched, id);
}

/* Has the file changed since st was taken? (A file that vanished has not:
   nothing to load.) */
static bool file_changed(const char *file, const struct stat *st)
{
    struct stat now;
    if (!file || stat(file, &now) < 0)
        return false;
    return now.st_ino != st->st_ino || now.st_dev != st->st_dev || now.st_size != st->st_size ||
           now.st_mtim.tv_sec != st->st_mtim.tv_sec || now.st_mtim.tv_nsec != st->st_mtim.tv_nsec;
}

static void print_diags(struct config_diags *diags)
{
    for (size_t i = 0; i < diags->n; i++) {
        if (diags->v[i].line)
            log_error("event=config_error file=%s line=%u error=\"%s\"", diags->v[i].file,
                      diags->v[i].line, diags->v[i].msg);
        else
            log_error("event=config_error file=%s error=\"%s\"", diags->v[i].file, diags->v[i].msg);
    }
    config_diags_free(diags);
}

/* (Re)load the user store; at start a failure is fatal, later it keeps the old one. */
static bool load_users(struct daemon *d, bool initial)
{
    const char *file = cur_cfg(d)->users_file;
    if (!file) { /* none (any more): nobody can authenticate */
        if (d->users && d->server)
            server_set_users(d->server, NULL, d->senders);
        userdb_free(d->users);
        d->users = NULL;
        return true;
    }
    struct stat st;
    memset(&st, 0, sizeof st);
    stat(file, &st);
    struct config_diags diags = {0};
    struct userdb *db = userdb_load(file, &diags);
    print_diags(&diags);
    if (!db) {
        if (initial)
            fatal("event=fatal reason=\"invalid user store\" file=%s", file);
        log_error("event=reload_failed file=%s note=\"keeping the users loaded before\"", file);
        d->users_st = st; /* tried: wait for the next change */
        return false;
    }
    d->users_st = st;
    if (d->server)
        server_set_users(d->server, db, d->senders);
    userdb_free(d->users);
    d->users = db;
    log_info("event=users_loaded file=%s users=%zu", file, userdb_count(db));
    return true;
}

static bool load_senders(struct daemon *d, bool initial)
{
    const char *file = cur_cfg(d)->sender_login_maps;
    if (!file) { /* none (any more): a login owns itself */
        if (d->senders && d->server)
            server_set_users(d->server, d->users, NULL);
        sender_login_free(d->senders);
        d->senders = NULL;
        return true;
    }
    struct stat st;
    memset(&st, 0, sizeof st);
    stat(file, &st);
    struct config_diags diags = {0};
    struct sender_login *m = sender_login_load(file, &diags);
    print_diags(&diags);
    if (!m) {
        if (initial)
            fatal("event=fatal reason=\"invalid sender login map\" file=%s", file);
        log_error("event=reload_failed file=%s note=\"keeping the map loaded before\"", file);
        d->senders_st = st; /* tried: wait for the next change */
        return false;
    }
    d->senders_st = st;
    if (d->server)
        server_set_users(d->server, d->users, m);
    sender_login_free(d->senders);
    d->senders = m;
    log_info("event=sender_logins_loaded file=%s entries=%zu", file, sender_login_count(m));
    return true;
}

/* (Re)load the certificate and key. */
/* The relay's routes: transport_file, relayhost and its credentials (at start
   only; an error is fatal). The password is never logged. */
static void load_routes(struct daemon *d)
{
    char err[600];
    if (d->cfg->transport_file) {
        struct config_diags diags = {0};
        d->transports = transport_load(d->cfg->transport_file, &diags);
        for (size_t i = 0; i < diags.n; i++)
            fprintf(stderr, "%s:%u: %s\n", diags.v[i].file, diags.v[i].line, diags.v[i].msg);
        config_diags_free(&diags);
        if (!d->transports)
            fatal("event=fatal reason=\"invalid transport file\" file=%s", d->cfg->transport_file);
        log_info("event=transport_loaded file=%s entries=%zu", d->cfg->transport_file,
                 transport_count(d->transports));
    }
    if (d->cfg->relayhost) {
        if (transport_parse_nexthop(d->cfg->relayhost, strlen(d->cfg->relayhost), false,
                                    &d->relayhost, err, sizeof err) < 0)
            fatal("event=fatal reason=\"invalid relayhost\" error=\"%s\"", err);
        log_info("event=relayhost host=%s", d->cfg->relayhost);
    }
    if (d->cfg->relayhost_auth_file) {
        if (transport_auth_load(d->cfg->relayhost_auth_file, &d->relay_auth, err, sizeof err) < 0)
            fatal("event=fatal reason=\"cannot use the relayhost credentials\" error=\"%s\"", err);
        log_info("event=relayhost_auth file=%s user=%s", d->cfg->relayhost_auth_file,
                 d->relay_auth.user);
    }
}

static bool load_tls(struct daemon *d, bool initial)
{
    const struct config *cfg = cur_cfg(d);
    if (!cfg->tls_cert_file)
        return true;
    char err[512];
    if (initial && cfg->tls_selfsigned &&
        (access(cfg->tls_cert_file, F_OK) < 0 || access(cfg->tls_key_file, F_OK) < 0)) {
        if (tls_selfsigned_create(cfg->hostname, cfg->tls_cert_file, cfg->tls_key_file, err,
                                  sizeof err) < 0)
            fatal("event=fatal reason=\"cannot create a self-signed certificate\" error=\"%s\"",
                  err);
        log_info("event=tls_selfsigned hostname=%s cert=%s key=%s", cfg->hostname,
                 cfg->tls_cert_file, cfg->tls_key_file);
        d->made_selfsigned = true;
    }
    struct tls_server *t = tls_server_new(cfg, err, sizeof err);
    if (!t) {
        if (initial)
            fatal("event=fatal reason=\"cannot load the TLS certificate\" error=\"%s\"", err);
        log_error("event=reload_failed what=tls error=\"%s\" note=\"keeping the certificate "
                  "loaded before\"",
                  err);
        return false;
    }
    if (d->server)
        server_set_tls(d->server, t);
    tls_server_free(d->tls);
    d->tls = t;
    char desc[256];
    tls_server_describe(t, desc, sizeof desc);
    log_info("event=tls_loaded cert=%s %s", cfg->tls_cert_file, desc);
    return true;
}

static void on_reload_timer(void *arg)
{
    struct daemon *d = arg;
    if (file_changed(cur_cfg(d)->users_file, &d->users_st))
        load_users(d, false);
    if (file_changed(cur_cfg(d)->sender_login_maps, &d->senders_st))
        load_senders(d, false);
    ev_timer_start(d->reload_timer, RELOAD_CHECK_MS);
}

/* ---- reloading the configuration (SIGHUP) ------------------------------------ */

/* The errors of a file that failed to load on reload (warnings too). */
static void log_reload_failure(struct config_diags *diags, const char *file)
{
    bool any = false;
    for (size_t i = 0; i < diags->n; i++) {
        const struct config_diag *g = &diags->v[i];
        if (strncmp(g->msg, "warning: ", 9) == 0) {
            log_warn("event=config_warning file=%s line=%u warning=\"%s\"", g->file, g->line,
                     g->msg + 9);
            continue;
        }
        log_error("event=reload_failed file=%s line=%u error=\"%s\" note=\"keeping the "
                  "configuration loaded before\"",
                  g->file, g->line, g->msg);
        any = true;
    }
    if (!any)
        log_error("event=reload_failed file=%s line=0 error=\"cannot be loaded\" note=\"keeping "
                  "the configuration loaded before\"",
                  file);
    config_diags_free(diags);
}

static void log_warnings(struct config_diags *diags)
{
    for (size_t i = 0; i < diags->n; i++) {
        const struct config_diag *g = &diags->v[i];
        const char *m = strncmp(g->msg, "warning: ", 9) == 0 ? g->msg + 9 : g->msg;
        log_warn("event=config_warning file=%s line=%u warning=\"%s\"", g->file, g->line, m);
    }
    config_diags_free(diags);
}

static void note_ignored(void *arg, const char *key, enum config_reload how)
{
    (void)arg;
    if (how == CONFIG_RELOAD_RESTART)
        log_warn("event=reload_ignored key=%s note=\"needs a restart\"", key);
}

/* The keys a reload changes, as "a,b,c" (cut short when very long). */
struct key_list {
    char s[1024];
    size_t len;
};

static void note_applied(void *arg, const char *key, enum config_reload how)
{
    struct key_list *l = arg;
    (void)how;
    size_t klen = strlen(key);
    if (l->len + klen + 5 >= sizeof l->s) {
        if (l->len + 4 < sizeof l->s && (l->len < 3 || strcmp(l->s + l->len - 3, "...") != 0))
            l->len += (size_t)snprintf(l->s + l->len, sizeof l->s - l->len, ",...");
        return;
    }
    l->len += (size_t)snprintf(l->s + l->len, sizeof l->s - l->len, "%s%s", l->len ? "," : "", key);
}

/* Load the configuration file and its aliases file again. Either failing
   keeps everything as it was; otherwise new sessions get the new pair and the
   keys that need a restart keep their running values (logged). */
static void reload_config(struct daemon *d)
{
    struct config_diags diags = {0};
    struct config *next = config_load(d->config_file, &diags);
    if (!next) {
        log_reload_failure(&diags, d->config_file);
        return;
    }
    log_warnings(&diags);
    struct aliases *aliases = NULL;
    if (next->aliases_file) {
        aliases = aliases_load(next->aliases_file, &diags);
        if (!aliases) {
            log_reload_failure(&diags, next->aliases_file);
            config_free(next);
            return;
        }
        log_warnings(&diags);
    }
    const struct config *running = cur_cfg(d);
    config_diff(running, next, note_ignored, NULL);
    config_keep_restart_keys(next, running);
    struct key_list changed = {.len = 0};
    changed.s[0] = '\0';
    config_diff(running, next, note_applied, &changed);

    struct server_conf *conf = server_conf_new(next, aliases);
    server_set_conf(d->server, conf);
    control_set_conf(d->control, next, aliases);
    server_conf_free(d->conf); /* freed with the last session that started under it */
    d->conf = conf;
    config_copy_key(d->cfg, next, "local_domains"); /* the scheduler routes by them */
    log_set_level((enum log_level)next->log_level);
    log_info("event=config_reloaded file=%s changed=%s aliases=%zu", d->config_file,
             changed.len ? changed.s : "none", aliases_count(aliases));
}

static void on_sighup(void *arg, int signo)
{
    struct daemon *d = arg;
    (void)signo;
    log_info("event=reload signal=SIGHUP");
    reload_config(d);
    load_tls(d, false);
    load_users(d, false);
    load_senders(d, false);
}

/* SIGUSR1: open the log file again (logrotate renamed it). */
static void on_sigusr1(void *arg, int signo)
{
    struct daemon *d = arg;
    (void)signo;
    char err[512];
    int r = log_reopen(err, sizeof err);
    if (r < 0)
        log_error("event=log_reopen_failed error=\"%s\" note=\"still writing to the old file\"",
                  err);
    else if (r == 0)
        log_info("event=log_reopened target=%s", d->cfg->log_target);
}

static void on_stop_timer(void *arg)
{
    struct daemon *d = arg;
    bool sessions_left = server_session_count(d->server) > 0;
    if (sessions_left && now_mono_ms() >= d->stop_deadline) {
        log_warn("event=shutdown_deadline sessions=%zu", server_session_count(d->server));
        server_close_all(d->server);
        sessions_left = server_session_count(d->server) > 0;
    }
    if (!sessions_left && sched_in_flight(d->sched) == 0 && control_waiting(d->control) == 0) {
        ev_loop_stop(d->loop);
        return;
    }
    ev_timer_start(d->stop_timer, 50);
}

static void on_signal(void *arg, int signo)
{
    struct daemon *d = arg;
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("event=shutdown signal=%d", signo);
    d->stop_deadline = now_mono_ms() + SHUTDOWN_DEADLINE_MS;
    server_shutdown(d->server, NULL, NULL);
    control_shutdown(d->control);
    sched_stop(d->sched);
    ev_timer_start(d->stop_timer, 0);
}

/* ---- privileges: run_user --------------------------------------------------- */

/* Decide at start, before anything is created, whom the server runs as. As
   root: run_user (fatal when it does not exist), or root itself when run_user
   is root, with a warning. As another user: no switch, unless run_user names
   a different existing user, which it must then be able to become. */
static void privileges_plan(struct daemon *d)
{
    const char *name = d->cfg->run_user;
    char err[256];
    struct priv_user u = {0};
    int r = priv_user_lookup(name, &u, err, sizeof err);
    if (r < 0)
        fatal("event=fatal reason=\"cannot look up run_user\" run_user=%s error=\"%s\"", name, err);
    uid_t me = geteuid();
    if (me == 0) {
        if (r == 0)
            fatal("event=fatal reason=\"run_user does not exist\" run_user=%s note=\"create it "
                  "(useradd --system --no-create-home --shell /usr/sbin/nologin %s), or set "
                  "run_user = root to keep every privilege\"",
                  name, name);
        if (u.uid == 0) {
            log_warn("event=running_as_root run_user=%s note=\"the server keeps every privilege; "
                     "meant for containers and tests\"",
                     name);
            return;
        }
        d->run_as = u;
        d->drop = true;
        return;
    }
    if (r == 1 && u.uid == me)
        return; /* already run_user */
    if (r == 0 || u.uid == 0) {
        log_info("event=no_privilege_drop uid=%u run_user=%s note=\"not started as root: "
                 "running as this user\"",
                 (unsigned)me, name);
        return;
    }
    if (!priv_can_switch())
        fatal("event=fatal reason=\"cannot switch to run_user\" run_user=%s uid=%u "
              "note=\"start as root, or set run_user to the user that starts the server\"",
              name, (unsigned)me);
    d->run_as = u;
    d->drop = true;
}

static void chown_dir(struct daemon *d, const char *key, const char *dir, bool walk_always)
{
    struct priv_chown_stats st;
    char err[512];
    if (priv_chown_tree(dir, d->run_as.uid, d->run_as.gid, walk_always, &st, err, sizeof err) < 0)
        fatal("event=fatal reason=\"cannot give %s to run_user\" run_user=%s error=\"%s\"", key,
              d->run_as.name, err);
    if (st.changed || st.skipped_links)
        log_info("event=chown key=%s path=%s user=%s changed=%zu skipped_links=%zu", key, dir,
                 d->run_as.name, st.changed, st.skipped_links);
}

static void chown_file(struct daemon *d, const char *file)
{
    int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchown(fd, d->run_as.uid, d->run_as.gid) != 0)
        fatal("event=fatal reason=\"cannot give a file to run_user\" file=%s error=\"%s\"", file,
              strerror(errno));
    close(fd);
}

/* The log file, opened as root, is opened again on SIGUSR1 as run_user: give
   it to run_user when it is root's (a regular file with no other link). */
static void chown_log_file(struct daemon *d, const char *file)
{
    int fd = open(file, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && st.st_nlink == 1 &&
        fchownat(fd, "", d->run_as.uid, d->run_as.gid, AT_EMPTY_PATH) != 0)
        log_warn("event=chown_failed key=log_target file=%s error=\"%s\"", file, strerror(errno));
    close(fd);
}

/* Before the switch: give run_user what it writes to. The spool (opened
   already, but segments come and go) and the DMARC report directory are
   walked every time; the Maildir tree when its top still belonged to root
   (afterwards new mail is written by run_user itself). */
static void privileges_prepare(struct daemon *d)
{
    if (!d->drop)
        return;
    const struct config *cfg = d->cfg;
    chown_dir(d, "spool_dir", cfg->spool_dir, true);
    chown_dir(d, "maildir_root", cfg->maildir_root, false);
    if (cfg->dmarc_report_dir) {
        if (mkdir_p(cfg->dmarc_report_dir, 0750) < 0)
            fatal("event=fatal reason=\"cannot create dmarc_report_dir\" dir=%s error=\"%s\"",
                  cfg->dmarc_report_dir, strerror(errno));
        chown_dir(d, "dmarc_report_dir", cfg->dmarc_report_dir, true);
    }
    if (d->made_selfsigned) { /* ours: reloads must read it */
        chown_file(d, cfg->tls_cert_file);
        chown_file(d, cfg->tls_key_file);
    }
    if (cfg->log_target && strchr(cfg->log_target, '/'))
        chown_log_file(d, cfg->log_target);
    char err[512];
    if (d->control &&
        control_set_owner(d->control, d->run_as.uid, d->run_as.gid, err, sizeof err) < 0)
        fatal("event=fatal reason=\"cannot give the control socket to run_user\" error=\"%s\"",
              err);
}

/* A file SIGHUP reads again that run_user cannot read: say so now. */
static void check_reloadable(const struct daemon *d, const char *key, const char *file)
{
    if (file && access(file, R_OK) != 0)
        log_warn("event=reload_unreadable key=%s file=%s user=%s error=\"%s\" note=\"SIGHUP "
                 "cannot reload it\"",
                 key, file, d->run_as.name, strerror(errno));
}

/* Become run_user for good (the listeners are bound, the keys read), then
   check what it must reach. */
static void privileges_drop(struct daemon *d)
{
    if (!d->drop)
        return;
    char err[256];
    if (priv_drop(&d->run_as, err, sizeof err) < 0)
        fatal("event=fatal reason=\"cannot switch to run_user\" run_user=%s error=\"%s\"",
              d->run_as.name, err);
    log_info("event=privileges_dropped user=%s uid=%u gid=%u", d->run_as.name,
             (unsigned)d->run_as.uid, (unsigned)d->run_as.gid);
    const struct config *cfg = d->cfg;
    const char *dirs[][2] = {{"spool_dir", cfg->spool_dir}, {"maildir_root", cfg->maildir_root}};
    for (size_t i = 0; i < 2; i++)
        if (access(dirs[i][1], R_OK | W_OK | X_OK) != 0)
            fatal("event=fatal reason=\"run_user cannot write to %s\" run_user=%s dir=%s "
                  "error=\"%s\" note=\"each parent directory must be searchable by it\"",
                  dirs[i][0], d->run_as.name, dirs[i][1], strerror(errno));
    const struct config *cur = cur_cfg(d);
    check_reloadable(d, "configuration", d->config_file);
    check_reloadable(d, "aliases_file", cur->aliases_file);
    check_reloadable(d, "users_file", cur->users_file);
    check_reloadable(d, "sender_login_maps", cur->sender_login_maps);
    check_reloadable(d, "tls_cert_file", cur->tls_cert_file);
    check_reloadable(d, "tls_key_file", cur->tls_key_file);
    if (cfg->log_target && strchr(cfg->log_target, '/') && access(cfg->log_target, W_OK) != 0)
        log_warn("event=reopen_unwritable key=log_target file=%s user=%s error=\"%s\" "
                 "note=\"SIGUSR1 cannot reopen it\"",
                 cfg->log_target, d->run_as.name, strerror(errno));
}

static const char *config_path(int argc, char **argv)
{
    const char *file = CLI_DEFAULT_CONFIG;
    int c;
    optind = 1;
    while ((c = getopt(argc, argv, "c:")) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        default:
            usage(stderr);
            exit(2);
        }
    }
    return file;
}

static int cmd_serve(int argc, char **argv)
{
    const char *file = config_path(argc, argv);
    struct daemon d = {0};
    d.config_file = file;
    struct config_diags diags = {0};
    d.cfg = config_load(file, &diags);
    for (size_t i = 0; i < diags.n; i++)
        fprintf(stderr, "%s:%u: %s\n", diags.v[i].file, diags.v[i].line, diags.v[i].msg);
    config_diags_free(&diags);
    if (!d.cfg)
        fatal("event=fatal reason=\"invalid configuration\" file=%s", file);
    log_set_level((enum log_level)d.cfg->log_level);
    char logerr[512];
    if (log_open(d.cfg->log_target, (enum log_format)d.cfg->log_format, logerr, sizeof logerr) < 0)
        fatal("event=fatal reason=\"cannot open the log\" error=\"%s\"", logerr);
    struct aliases *aliases = NULL;
    if (d.cfg->aliases_file) {
        aliases = aliases_load(d.cfg->aliases_file, &diags);
        for (size_t i = 0; i < diags.n; i++)
            fprintf(stderr, "%s:%u: %s\n", diags.v[i].file, diags.v[i].line, diags.v[i].msg);
        config_diags_free(&diags);
        if (!aliases)
            fatal("event=fatal reason=\"invalid aliases file\" file=%s", d.cfg->aliases_file);
    }
    /* sessions get their own copy: reloads replace it, while d.cfg stays with
       the modules that keep it */
    d.conf = server_conf_new(config_dup(d.cfg), aliases);
    privileges_plan(&d);
    signal(SIGPIPE, SIG_IGN);
    load_tls(&d, true);
    load_users(&d, true);
    load_senders(&d, true);

    /* before any delivery: what is older in a tmp/ is a leftover */
    int64_t started_us = now_real_us();
    d.loop = ev_loop_new();
    d.spool_wake = ev_async_new(d.loop, on_spool_wake, &d);
    struct spool_config scfg = {.dir = d.cfg->spool_dir,
                                .segment_size = d.cfg->spool_segment_size,
                                .wake = spool_wake,
                                .wake_arg = &d};
    char err[512];
    if (mkdir_p(d.cfg->spool_dir, 0700) < 0 || mkdir_p(d.cfg->maildir_root, 0700) < 0)
        fatal("event=fatal reason=\"cannot create the spool or Maildir root\" error=\"%s\"",
              strerror(errno));
    d.spool = spool_open(&scfg, err, sizeof err);
    if (!d.spool)
        fatal("event=fatal reason=\"cannot open the spool\" error=\"%s\"", err);
    size_t nworkers = d.cfg->delivery_workers;
    if (nworkers == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = (ncpu > 0 ? (size_t)ncpu : 1) + 1;
    }
    d.workers = ev_workers_new(d.loop, nworkers, DELIVERY_NICE);
    d.auth_workers = ev_workers_new(d.loop, d.cfg->auth_workers, 0);
    d.sched = sched_new(d.loop, d.workers, d.spool, d.cfg);
    d.dns = dns_resolver_new(d.loop, d.cfg, err, sizeof err);
    if (!d.dns)
        fatal("event=fatal reason=\"cannot start the DNS resolver\" error=\"%s\"", err);
    d.tls_client = tls_client_new(d.cfg->outbound_tls_ca_file, err, sizeof err);
    if (!d.tls_client)
        fatal("event=fatal reason=\"cannot create the TLS client context\" error=\"%s\"", err);
    load_routes(&d);
    struct relay_routes routes = {
        .transports = d.transports,
        .relayhost = d.cfg->relayhost ? &d.relayhost : NULL,
        .auth = d.cfg->relayhost_auth_file ? &d.relay_auth : NULL,
    };
    d.relay = relay_new(d.loop, d.dns, d.tls_client, d.cfg, &routes);
    sched_set_relay(d.sched, d.relay);
    sched_set_transports(d.sched, d.transports);
    {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        load_mailauth(&d, ncpu > 0 ? (size_t)ncpu : 1);
    }

    struct server_deps deps = {.loop = d.loop,
                               .spool = d.spool,
                               .sched = d.sched,
                               .conf = d.conf,
                               .tls = d.tls,
                               .users = d.users,
                               .senders = d.senders,
                               .auth_workers = d.auth_workers,
                               .mailauth = &d.mailauth};
    d.server = server_new(&deps, err, sizeof err);
    if (!d.server)
        fatal("event=fatal reason=\"cannot listen\" error=\"%s\"", err);
    start_control(&d); /* bound as root too: /run/tern is root's */
    start_metrics(&d);
    /* listeners bound, keys read: switch to run_user before the first
       delivery writes a file */
    privileges_prepare(&d);
    privileges_drop(&d);
    spool_foreach(d.spool, queue_message, &d);
    struct tmp_sweep *sweep = xcalloc(1, sizeof *sweep);
    *sweep = (struct tmp_sweep){
        .root = d.cfg->maildir_root, .hostname = d.cfg->hostname, .started_us = started_us};
    ev_workers_submit(d.workers, tmp_sweep_work, tmp_sweep_done, sweep);
    d.stop_timer = ev_timer_new(d.loop, on_stop_timer, &d);
    ev_on_signal(d.loop, SIGTERM, on_signal, &d);
    ev_on_signal(d.loop, SIGINT, on_signal, &d);
    ev_on_signal(d.loop, SIGHUP, on_sighup, &d);
    ev_on_signal(d.loop, SIGUSR1, on_sigusr1, &d);
    d.reload_timer = ev_timer_new(d.loop, on_reload_timer, &d);
    ev_timer_start(d.reload_timer, RELOAD_CHECK_MS);
    log_info("event=started hostname=%s listeners=%zu", d.cfg->hostname, d.cfg->nlisten);
    /* Last, once everything is open and bound: Landlock and seccomp. */
    if (sandbox_apply(d.cfg, file, err, sizeof err) < 0)
        fatal("event=fatal reason=\"cannot apply the sandbox\" error=\"%s\"", err);

    int rc = ev_loop_run(d.loop);

    metrics_listener_free(d.metrics);
    server_free(d.server);
    free_mailauth(&d);
    ev_workers_free(d.auth_workers);
    control_free(d.control);    /* after its lookups, before the spool */
    ev_workers_free(d.workers); /* joins; done callbacks record outcomes */
    relay_free(d.relay);        /* jobs left end deferred, recorded by the scheduler */
    sched_set_relay(d.sched, NULL);
    explicit_bzero(&d.relay_auth, sizeof d.relay_auth);
    /* The last flush may complete commits (reports queued at the end): their
       callbacks reach the scheduler, which is stopped but still there. */
    spool_close(d.spool);
    sched_free(d.sched);
    transport_free(d.transports); /* after the scheduler, which looks routes up */
    dns_resolver_free(d.dns);
    tls_client_free(d.tls_client);
    ev_timer_free(d.stop_timer);
    ev_timer_free(d.fail_timer);
    ev_timer_free(d.reload_timer);
    ev_async_free(d.spool_wake);
    ev_loop_free(d.loop);
    server_conf_free(d.conf);
    tls_server_free(d.tls);
    userdb_free(d.users);
    sender_login_free(d.senders);
    config_free(d.cfg);
    log_info("event=stopped");
    log_close();
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (cli_invoked_as_sendmail(argc > 0 ? argv[0] : NULL))
        return cli_sendmail(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cli_check(argc - 1, argv + 1);
    if (strcmp(cmd, "cert") == 0)
        return cli_cert(argc - 1, argv + 1);
    if (strcmp(cmd, "user") == 0)
        return cli_user(argc - 1, argv + 1);
    if (strcmp(cmd, "resolve") == 0)
        return cli_resolve(argc - 1, argv + 1);
    if (strcmp(cmd, "send") == 0)
        return cli_send(argc - 1, argv + 1);
    if (strcmp(cmd, "spf") == 0)
        return cli_spf(argc - 1, argv + 1);
    if (strcmp(cmd, "dkim") == 0)
        return cli_dkim(argc - 1, argv + 1);
    if (strcmp(cmd, "dns") == 0)
        return cli_dns(argc - 1, argv + 1);
    if (strcmp(cmd, "dmarc") == 0)
        return cli_dmarc(argc - 1, argv + 1);
    if (strcmp(cmd, "queue") == 0)
        return cli_queue(argc - 1, argv + 1);
    if (strcmp(cmd, "sendmail") == 0 || strcmp(cmd, "mailq") == 0 || strcmp(cmd, "newaliases") == 0)
        return cli_sendmail(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        puts("tern 0.1.0");
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tern: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
