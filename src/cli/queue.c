/*
 * queue - `tern queue`, the operator's view of the queue and the hand on it,
 * through the running server's control socket (src/control, docs/control.md):
 *
 *   tern queue [-c FILE] [list] [--json] [SELECTORS]      Postfix mailq style
 *   tern queue [-c FILE] show ID [--json]                  envelope, states, headers
 *   tern queue [-c FILE] flush [ID...|SELECTORS]           retry now (all by default)
 *   tern queue [-c FILE] hold|release|delete|bounce ID...|ALL|SELECTORS
 *   tern queue [-c FILE] pause|resume DOMAIN, paused
 *
 * SELECTORS: --sender PATTERN, --rcpt PATTERN, --domain PATTERN (shell
 * patterns, any case), --older-than TIME (90s, 15m, 2h, 3d), --status
 * deferred|active|hold, --error-class 4xx|5xx. A command that changes the
 * queue acts on exactly the messages `list` would show with the same
 * selectors, in one step in the server.
 *
 * The mailq listing (also `mailq` and `sendmail -bp`, see sendmail.c)
 * follows Postfix's: queue id with '*' when active and '!' when held, size,
 * arrival time, sender; then each recipient not yet final, after the
 * reason of its last deferral in parentheses; a last line with the total.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "control/client.h"
#include "control/proto.h"
#include "core/util.h"

#define EX_TEMPFAIL 75
#define PAGE 1000

static void usage(FILE *f)
{
    fputs("usage: tern queue [-c FILE] [list] [--json] [SELECTORS]\n"
          "       tern queue [-c FILE] show ID [--json]\n"
          "       tern queue [-c FILE] flush [ID...|SELECTORS]\n"
          "       tern queue [-c FILE] hold|release|delete|bounce ID...|ALL|SELECTORS\n"
          "       tern queue [-c FILE] pause|resume DOMAIN\n"
          "       tern queue [-c FILE] paused\n"
          "SELECTORS: --sender PATTERN --rcpt PATTERN --domain PATTERN --older-than TIME\n"
          "           --status deferred|active|hold --error-class 4xx|5xx\n",
          f);
}

/* Connect to the server named by the configuration; NULL after a message
   (*status: the exit status to use). */
static struct control_client *connect_server(const char *config, const char *prog, int *status)
{
    char *path = control_client_socket_path(config);
    if (!path) {
        *status = 1;
        return NULL;
    }
    char err[600];
    int e = 0;
    struct control_client *c = control_client_connect(path, err, sizeof err, &e);
    free(path);
    if (!c) {
        fprintf(stderr, "%s: %s%s\n", prog, err,
                e == ENOENT || e == ECONNREFUSED ? " (is tern serve running?)" : "");
        *status = e == EACCES ? 77 : EX_TEMPFAIL;
    }
    return c;
}

/* Call and check: NULL after printing the error (*status set). */
static json_t *call(struct control_client *c, const char *prog, const char *cmd, json_t *args,
                    int *status)
{
    char err[300];
    json_t *r = control_client_call(c, cmd, args, err, sizeof err);
    if (!r) {
        fprintf(stderr, "%s: %s\n", prog, err);
        *status = EX_TEMPFAIL;
        return NULL;
    }
    if (!json_is_true(json_object_get(r, "ok"))) {
        const char *e = json_string_value(json_object_get(r, "error"));
        fprintf(stderr, "%s: %s\n", prog, e ? e : "the server refused");
        json_decref(r);
        *status = 1;
        return NULL;
    }
    return r;
}

/* ---- the mailq listing ---------------------------------------------------- */

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The reason in a recorded status: "dsn=4.4.1 connection refused" -> the text. */
static const char *reason_of(const char *status)
{
    if (strncmp(status, "dsn=", 4) != 0)
        return status;
    const char *sp = strchr(status, ' ');
    return sp ? sp + 1 : "";
}

static void print_mailq_message(const json_t *m, uint64_t *bytes)
{
    const char *st = jstr(m, "status");
    char id[24];
    snprintf(id, sizeof id, "%s%s", jstr(m, "id"),
             strcmp(st, "hold") == 0     ? "!"
             : strcmp(st, "active") == 0 ? "*"
                                         : "");
    time_t t = (time_t)json_integer_value(json_object_get(m, "arrival"));
    struct tm tm;
    char when[32] = "";
    if (localtime_r(&t, &tm))
        strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
    json_int_t size = json_integer_value(json_object_get(m, "size"));
    *bytes += (uint64_t)size;
    const char *sender = jstr(m, "sender");
    printf("%-17s %8" JSON_INTEGER_FORMAT " %-20s  %s\n", id, size, when,
           sender[0] ? sender : "MAILER-DAEMON");
    const char *last_reason = NULL;
    const json_t *rcpts = json_object_get(m, "rcpts");
    for (size_t i = 0; i < json_array_size(rcpts); i++) {
        const json_t *r = json_array_get(rcpts, i);
        const char *state = jstr(r, "state");
        if (strcmp(state, "pending") != 0 && strcmp(state, "deferred") != 0)
            continue;
        const char *reason =
            json_is_string(json_object_get(r, "status")) ? reason_of(jstr(r, "status")) : NULL;
        if (reason && reason[0] && (!last_reason || strcmp(reason, last_reason) != 0))
            printf("(%s)\n", reason);
        last_reason = reason;
        printf("%49s%s\n", "", jstr(r, "addr"));
    }
    printf("\n");
}

/* Page through queue.list; print mailq style, or gather for --json. */
static int list(struct control_client *c, const char *prog, json_t *selector, bool as_json)
{
    int status = 0;
    json_t *all = as_json ? json_array() : NULL;
    char after[17] = "";
    size_t count = 0;
    uint64_t bytes = 0;
    for (;;) {
        json_t *args = json_deep_copy(selector);
        json_object_set_new(args, "limit", json_integer(PAGE));
        if (after[0])
            json_object_set_new(args, "after", json_string(after));
        json_t *r = call(c, prog, "queue.list", args, &status);
        if (!r)
            break;
        const json_t *msgs = json_object_get(r, "messages");
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            const json_t *m = json_array_get(msgs, i);
            if (all) {
                json_array_append(all, (json_t *)m);
            } else {
                if (count == 0)
                    printf("-Queue ID-------- --Size-- ----Arrival Time---- "
                           "-Sender/Recipient-------\n");
                print_mailq_message(m, &bytes);
            }
            count++;
        }
        const char *next = json_string_value(json_object_get(r, "next"));
        if (next)
            snprintf(after, sizeof after, "%s", next);
        json_decref(r);
        if (!next)
            break;
    }
    if (status == 0) {
        if (all) {
            char *s = json_dumps(all, JSON_INDENT(2));
            printf("%s\n", s ? s : "[]");
            free(s);
        } else if (count == 0) {
            printf("Mail queue is empty\n");
        } else {
            printf("-- %" PRIu64 " Kbytes in %zu Request%s.\n", (bytes + 1023) / 1024, count,
                   count == 1 ? "" : "s");
        }
    }
    json_decref(all);
    return status;
}

int cli_mailq(const char *config_file)
{
    int status = 0;
    struct control_client *c = connect_server(config_file, "mailq", &status);
    if (!c)
        return status;
    json_t *sel = json_object();
    status = list(c, "mailq", sel, false);
    json_decref(sel);
    control_client_close(c);
    return status;
}

/* ---- show -------------------------------------------------------------- */

static void print_time(const char *label, json_int_t t)
{
    char when[64] = "now";
    if (t > 0)
        rfc5322_date((int64_t)t, when, sizeof when);
    printf("%-12s%s\n", label, when);
}

static void print_show(const json_t *m)
{
    printf("%-12s%s\n", "Queue ID:", jstr(m, "id"));
    printf("%-12s%s\n", "Status:", jstr(m, "status"));
    print_time("Arrival:", json_integer_value(json_object_get(m, "arrival")));
    printf("%-12s%" JSON_INTEGER_FORMAT " octets\n",
           "Size:", json_integer_value(json_object_get(m, "size")));
    printf("%-12s<%s>\n", "Sender:", jstr(m, "sender"));
    printf("%-12s%s (client %s, helo %s%s%s)\n", "Received:", jstr(m, "listener"),
           jstr(m, "client"), jstr(m, "helo"),
           json_is_string(json_object_get(m, "auth_user")) ? ", user " : "", jstr(m, "auth_user"));
    if (json_is_string(json_object_get(m, "envid")))
        printf("%-12s%s\n", "ENVID:", jstr(m, "envid"));
    if (json_is_string(json_object_get(m, "ret")))
        printf("%-12s%s\n", "RET:", jstr(m, "ret"));
    printf("Recipients:\n");
    const json_t *rcpts = json_object_get(m, "rcpts");
    for (size_t i = 0; i < json_array_size(rcpts); i++) {
        const json_t *r = json_array_get(rcpts, i);
        printf("  <%s> %s, %" JSON_INTEGER_FORMAT " attempt%s", jstr(r, "addr"), jstr(r, "state"),
               json_integer_value(json_object_get(r, "attempts")),
               json_integer_value(json_object_get(r, "attempts")) == 1 ? "" : "s");
        json_int_t next = json_integer_value(json_object_get(r, "next_attempt"));
        if (strcmp(jstr(r, "state"), "deferred") == 0 && next > 0) {
            char when[64];
            rfc5322_date((int64_t)next, when, sizeof when);
            printf(", next %s", when);
        }
        printf("\n");
        if (json_is_string(json_object_get(r, "original")))
            printf("    given as <%s>\n", jstr(r, "original"));
        if (json_is_string(json_object_get(r, "status")))
            printf("    last: %s\n", jstr(r, "status"));
    }
    printf("Headers:\n%s", jstr(m, "headers"));
    if (json_is_true(json_object_get(m, "headers_truncated")))
        printf("[... header section longer than shown]\n");
}

/* ---- the command line ------------------------------------------------------ */

int cli_queue(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"sender", required_argument, NULL, 's'},
        {"rcpt", required_argument, NULL, 'r'},
        {"domain", required_argument, NULL, 'd'},
        {"older-than", required_argument, NULL, 'o'},
        {"status", required_argument, NULL, 't'},
        {"error-class", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = CLI_DEFAULT_CONFIG;
    bool as_json = false;
    json_t *sel = json_object();
    int ch;
    int status = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        int64_t secs;
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 's':
            json_object_set_new(sel, "sender", json_string(optarg));
            break;
        case 'r':
            json_object_set_new(sel, "rcpt", json_string(optarg));
            break;
        case 'd':
            json_object_set_new(sel, "domain", json_string(optarg));
            break;
        case 'o':
            if (!proto_duration_parse(optarg, &secs)) {
                fprintf(stderr, "tern queue: --older-than %s: a time such as 90s, 15m, 2h, 3d\n",
                        optarg);
                json_decref(sel);
                return 2;
            }
            json_object_set_new(sel, "older_than", json_integer(secs));
            break;
        case 't':
            json_object_set_new(sel, "status", json_string(optarg));
            break;
        case 'e':
            json_object_set_new(sel, "error_class", json_string(optarg));
            break;
        case 'h':
            usage(stdout);
            json_decref(sel);
            return 0;
        default:
            usage(stderr);
            json_decref(sel);
            return 2;
        }
    }
    const char *cmd = optind < argc ? argv[optind++] : "list";
    char **ops = argv + optind;
    int nops = argc - optind;
    static const struct {
        const char *name, *wire, *verb;
    } actions[] = {
        {"flush", "queue.flush", "flushed"},      {"hold", "queue.hold", "held"},
        {"release", "queue.release", "released"}, {"delete", "queue.delete", "deleted"},
        {"bounce", "queue.bounce", "bounced"},
    };
    int action = -1;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(cmd, actions[i].name) == 0)
            action = (int)i;
    bool known = action >= 0 || strcmp(cmd, "list") == 0 || strcmp(cmd, "show") == 0 ||
                 strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
                 strcmp(cmd, "paused") == 0;
    if (!known) {
        fprintf(stderr, "tern queue: unknown command '%s'\n", cmd);
        usage(stderr);
        json_decref(sel);
        return 2;
    }
    /* operands: IDs (or ALL) for the actions, one ID for show, a domain */
    if ((strcmp(cmd, "show") == 0 || strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) &&
        nops != 1) {
        fprintf(stderr, "tern queue %s: one %s\n", cmd,
                strcmp(cmd, "show") == 0 ? "queue id" : "domain");
        json_decref(sel);
        return 2;
    }
    if ((strcmp(cmd, "list") == 0 || strcmp(cmd, "paused") == 0) && nops != 0) {
        usage(stderr);
        json_decref(sel);
        return 2;
    }
    if (action >= 0 && nops > 0) {
        if (nops == 1 && strcmp(ops[0], "ALL") == 0) {
            json_object_set_new(sel, "all", json_true());
        } else {
            json_t *ids = json_array();
            for (int i = 0; i < nops; i++) {
                spool_id id;
                if (!proto_qid_parse(ops[i], &id)) {
                    fprintf(stderr, "tern queue %s: '%s' is not a queue id\n", cmd, ops[i]);
                    json_decref(ids);
                    json_decref(sel);
                    return 2;
                }
                json_array_append_new(ids, json_string(ops[i]));
            }
            json_object_set_new(sel, "ids", ids);
        }
    }
    if (action > 0 && json_object_size(sel) == 0) {
        fprintf(stderr, "tern queue %s: name the messages: IDs, ALL, or selectors\n", cmd);
        json_decref(sel);
        return 2;
    }
    struct control_client *c = connect_server(config, "tern queue", &status);
    if (!c) {
        json_decref(sel);
        return status;
    }
    if (strcmp(cmd, "list") == 0) {
        status = list(c, "tern queue", sel, as_json);
    } else if (strcmp(cmd, "show") == 0) {
        json_t *args = json_object();
        json_object_set_new(args, "id", json_string(ops[0]));
        json_t *r = call(c, "tern queue", "queue.show", args, &status);
        if (r) {
            const json_t *m = json_object_get(r, "message");
            if (as_json) {
                char *s = json_dumps(m, JSON_INDENT(2));
                printf("%s\n", s ? s : "{}");
                free(s);
            } else {
                print_show(m);
            }
            json_decref(r);
        }
    } else if (strcmp(cmd, "paused") == 0 || strcmp(cmd, "pause") == 0 ||
               strcmp(cmd, "resume") == 0) {
        json_t *args = NULL;
        const char *wire = "queue.paused";
        if (strcmp(cmd, "paused") != 0) {
            args = json_object();
            json_object_set_new(args, "domain", json_string(ops[0]));
            wire = strcmp(cmd, "pause") == 0 ? "queue.pause" : "queue.resume";
        }
        json_t *r = call(c, "tern queue", wire, args, &status);
        if (r) {
            if (args)
                printf("%s: %s%s\n", ops[0], strcmp(cmd, "pause") == 0 ? "paused" : "resumed",
                       json_is_true(json_object_get(r, "changed")) ? "" : " (already)");
            const json_t *p = json_object_get(r, "paused");
            if (!args && json_array_size(p) == 0)
                printf("no domain is paused\n");
            for (size_t i = 0; !args && i < json_array_size(p); i++)
                printf("%s\n", json_string_value(json_array_get(p, i)));
            json_decref(r);
        }
    } else {
        json_t *r = call(c, "tern queue", actions[action].wire, json_incref(sel), &status);
        if (r) {
            json_int_t done = json_integer_value(json_object_get(r, "done"));
            json_int_t unchanged = json_integer_value(json_object_get(r, "unchanged"));
            json_int_t busy = json_integer_value(json_object_get(r, "busy"));
            json_int_t missing = json_integer_value(json_object_get(r, "missing"));
            json_int_t failed = json_integer_value(json_object_get(r, "failed"));
            if (as_json) {
                char *s = json_dumps(r, JSON_INDENT(2));
                printf("%s\n", s ? s : "{}");
                free(s);
            } else {
                printf("%s %" JSON_INTEGER_FORMAT " message%s", actions[action].verb, done,
                       done == 1 ? "" : "s");
                if (unchanged)
                    printf(", %" JSON_INTEGER_FORMAT " unchanged", unchanged);
                if (busy)
                    printf(", %" JSON_INTEGER_FORMAT " once the deliveries in flight end", busy);
                if (missing)
                    printf(", %" JSON_INTEGER_FORMAT " not in the queue", missing);
                if (failed)
                    printf(", %" JSON_INTEGER_FORMAT " failed (see the server's log)", failed);
                printf("\n");
            }
            if (missing || failed)
                status = 1;
            json_decref(r);
        }
    }
    control_client_close(c);
    json_decref(sel);
    return status;
}
