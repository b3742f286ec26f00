/*
 * sendmail - the sendmail compatibility interface: `tern sendmail`, or the
 * tern program invoked as sendmail, mailq or newaliases (links that
 * scripts/install.sh makes). Options in sendmail_args.c; what each does in
 * docs/sendmail.md.
 *
 *   sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID] [RCPT...]
 *   sendmail -bs          an SMTP session on standard input and output
 *   sendmail -bp, mailq   the queue, as Postfix's mailq shows it
 *   sendmail -q[Rsite]    retry deferred mail now
 *
 * A message goes to the running server over the control socket as a local
 * submission (submit.begin, submit.rcpt, submit.data, submit.end: proto.h),
 * with the server's rules for local users: the server knows the caller from
 * the socket's peer credentials, adds a Received field naming the user, and
 * answers submit.end only once the message is durable in the journal, so an
 * exit status of 0 means the mail is safe (DESIGN contract 1). Exit statuses
 * are sendmail's (sysexits.h): 75 when the server cannot be reached or
 * answers 4xx, 67 for an unknown user, 65 for a message it refuses, 64 for
 * bad usage.
 *
 * -bs speaks RFC 5321 to its caller (EHLO with PIPELINING, SIZE, 8BITMIME,
 * SMTPUTF8, DSN, ENHANCEDSTATUSCODES; MAIL, RCPT with NOTIFY and ORCPT, DATA,
 * RSET, NOOP, VRFY, HELP, QUIT) and passes each transaction on as a local
 * submission; DATA lines may end in LF or CRLF (it is a local pipe), a line
 * "." ends the data and a leading dot is removed (§4.5.2).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/sendmail_args.h"
#include "config/config.h"
#include "control/client.h"
#include "control/proto.h"
#include "core/util.h"
#include "smtp/smtp.h"

/* sysexits.h */
#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_NOUSER 67
#define EX_UNAVAILABLE 69
#define EX_SOFTWARE 70
#define EX_TEMPFAIL 75
#define EX_NOPERM 77

#define HEAD_MAX (1024 * 1024) /* header section read before -t looks at it */
#define IN_BUF 65536

static const char *prog = "sendmail";

/* ---- standard input, a line at a time ------------------------------------ */

struct in_reader {
    int fd;
    char buf[IN_BUF];
    size_t start, end;
    bool eof;
};

/* The next line through its LF, or a piece of a longer line (IN_BUF octets),
   or what is left at the end; 0 at the end of input. */
static size_t next_line(struct in_reader *r, const char **line)
{
    for (;;) {
        char *lf = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (lf) {
            size_t n = (size_t)(lf - (r->buf + r->start)) + 1;
            *line = r->buf + r->start;
            r->start += n;
            return n;
        }
        if (r->eof || (r->start == 0 && r->end == sizeof r->buf)) {
            size_t n = r->end - r->start;
            *line = r->buf + r->start;
            r->start = r->end;
            return n;
        }
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
        ssize_t k = read(r->fd, r->buf + r->end, sizeof r->buf - r->end);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            r->eof = true;
        else
            r->end += (size_t)k;
    }
}

static bool buffered(const struct in_reader *r)
{
    return r->end > r->start;
}

/* ---- the submission ------------------------------------------------------ */

struct submission {
    struct control_client *c;
    char chunk[PROTO_DATA_MAX]; /* content not yet sent */
    size_t len;
    char qid[17];
    /* the last refusal */
    int code;
    char enh[16];
    char text[400];
};

/* Call the server; false with s->code/enh/text set (code 0: no answer). */
static bool sub_call(struct submission *s, const char *cmd, json_t *args)
{
    char err[400];
    json_t *r = control_client_call(s->c, cmd, args, err, sizeof err);
    s->code = 0;
    s->enh[0] = '\0';
    if (!r) {
        snprintf(s->text, sizeof s->text, "%s", err);
        return false;
    }
    if (json_is_true(json_object_get(r, "ok"))) {
        const char *id = json_string_value(json_object_get(r, "id"));
        if (id)
            snprintf(s->qid, sizeof s->qid, "%s", id);
        json_decref(r);
        return true;
    }
    const char *e = json_string_value(json_object_get(r, "error"));
    snprintf(s->text, sizeof s->text, "%s", e ? e : "refused");
    s->code = (int)json_integer_value(json_object_get(r, "code"));
    const char *enh = json_string_value(json_object_get(r, "enh"));
    snprintf(s->enh, sizeof s->enh, "%s", enh ? enh : "");
    if (s->code == 0)
        s->code = 554; /* a protocol error: the request was refused */
    json_decref(r);
    return false;
}

static bool sub_send_chunk(struct submission *s)
{
    if (s->len == 0)
        return true;
    char *b64 = xmalloc(4 * ((s->len + 2) / 3) + 1);
    proto_base64_encode((const uint8_t *)s->chunk, s->len, b64);
    json_t *args = json_object();
    json_object_set_new(args, "data", json_string(b64));
    free(b64);
    s->len = 0;
    return sub_call(s, "submit.data", args);
}

static bool sub_data(struct submission *s, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = sizeof s->chunk - s->len;
        if (k > n)
            k = n;
        memcpy(s->chunk + s->len, p, k);
        s->len += k;
        p += k;
        n -= k;
        if (s->len == sizeof s->chunk && !sub_send_chunk(s))
            return false;
    }
    return true;
}

static bool has_8bit(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

static json_t *notify_json(unsigned notify)
{
    if (notify == 0)
        return NULL;
    if (notify & SMTP_NOTIFY_NEVER)
        return json_string("never");
    json_t *a = json_array();
    if (notify & SMTP_NOTIFY_SUCCESS)
        json_array_append_new(a, json_string("success"));
    if (notify & SMTP_NOTIFY_FAILURE)
        json_array_append_new(a, json_string("failure"));
    if (notify & SMTP_NOTIFY_DELAY)
        json_array_append_new(a, json_string("delay"));
    return a;
}

/* The exit status for a refusal at a stage ("rcpt", "data", other). */
static int exit_for(const struct submission *s, const char *stage)
{
    if (s->code == 0 || (s->code >= 400 && s->code < 500))
        return EX_TEMPFAIL;
    if (strcmp(stage, "rcpt") == 0)
        return strncmp(s->enh, "5.1.", 4) == 0 ? EX_NOUSER : EX_UNAVAILABLE;
    if (strcmp(stage, "data") == 0)
        return EX_DATAERR;
    return EX_UNAVAILABLE;
}

static void print_refusal(const struct submission *s, const char *what)
{
    if (s->code)
        fprintf(stderr, "%s: %s%s%d %s %s\n", prog, what ? what : "", what ? ": " : "", s->code,
                s->enh, s->text);
    else
        fprintf(stderr, "%s: %s%s%s\n", prog, what ? what : "", what ? ": " : "", s->text);
}

/* The configuration file: -C, else $TERN_CONFIG, else the default. */
static const char *config_file(const struct sendmail_opts *o)
{
    if (o->config)
        return o->config;
    const char *env = getenv("TERN_CONFIG");
    return env && env[0] ? env : CLI_DEFAULT_CONFIG;
}

static struct control_client *connect_server(const char *config, int *status)
{
    char *path = control_client_socket_path(config);
    if (!path) {
        *status = EX_TEMPFAIL; /* a configuration that does not load: try again later */
        return NULL;
    }
    char err[600];
    int e = 0;
    struct control_client *c = control_client_connect(path, err, sizeof err, &e);
    free(path);
    if (!c) {
        fprintf(stderr, "%s: %s\n", prog, err);
        *status = e == EACCES ? EX_NOPERM : EX_TEMPFAIL;
    }
    return c;
}

/* ---- -bm: a message on standard input ------------------------------------ */

static bool is_dot_line(const char *line, size_t n)
{
    return (n == 2 && line[0] == '.' && line[1] == '\n') ||
           (n == 3 && line[0] == '.' && line[1] == '\r' && line[2] == '\n') ||
           (n == 1 && line[0] == '.');
}

static bool is_empty_line(const char *line, size_t n)
{
    return (n == 1 && line[0] == '\n') || (n == 2 && line[0] == '\r' && line[1] == '\n');
}

static int deliver(const struct sendmail_opts *o)
{
    struct in_reader *in = xcalloc(1, sizeof *in);
    in->fd = 0;
    /* the header section (for -t, and so that it goes out in one piece) */
    char *head = xmalloc(HEAD_MAX + IN_BUF + 3);
    size_t hlen = 0;
    bool at_bol = true, ended = false, in_head = true;
    while (in_head && hlen < HEAD_MAX) {
        const char *line;
        size_t n = next_line(in, &line);
        if (n == 0) {
            ended = true;
            break;
        }
        if (o->dot_ends && at_bol && is_dot_line(line, n)) {
            ended = true;
            break;
        }
        memcpy(head + hlen, line, n);
        hlen += n;
        if (at_bol && is_empty_line(line, n))
            in_head = false;
        at_bol = line[n - 1] == '\n';
    }
    int status = 0;
    size_t nx = 0;
    char(*extracted)[SMTP_PATH_MAX + 1] = NULL;
    if (o->extract && !ended && hlen > 0 && head[hlen - 1] != '\n') {
        fprintf(stderr, "%s: the header section is longer than %d octets\n", prog, HEAD_MAX);
        status = EX_DATAERR;
        goto out;
    }
    if (o->extract) {
        extracted = xmallocarray(SENDMAIL_HDR_RCPT_MAX, sizeof *extracted);
        char *scratch = xmalloc(hlen + 1);
        long k = sendmail_header_rcpts(head, &hlen, extracted, SENDMAIL_HDR_RCPT_MAX, scratch);
        free(scratch);
        if (k < 0) {
            fprintf(stderr, "%s: cannot read the recipients of the To:, Cc: or Bcc: fields\n",
                    prog);
            status = EX_DATAERR;
            goto out;
        }
        nx = (size_t)k;
    }
    if (o->nrcpt + nx == 0) {
        fprintf(stderr, "%s: %s\n", prog,
                o->extract ? "no recipient addresses found in the message header"
                           : "no recipients specified");
        status = o->extract ? EX_DATAERR : EX_USAGE;
        goto out;
    }
    struct submission *s = xcalloc(1, sizeof *s);
    s->c = connect_server(config_file(o), &status);
    if (!s->c) {
        free(s);
        goto out;
    }
    bool utf8 = has_8bit(o->sender);
    for (size_t i = 0; i < o->nrcpt; i++)
        utf8 = utf8 || has_8bit(o->rcpts[i]);
    for (size_t i = 0; i < nx; i++)
        utf8 = utf8 || has_8bit(extracted[i]);
    json_t *args = json_object();
    if (o->sender)
        json_object_set_new(args, "sender", json_string(o->sender));
    if (o->fullname)
        json_object_set_new(args, "fullname", proto_str(o->fullname));
    if (o->ret)
        json_object_set_new(args, "ret", json_string(o->ret == SMTP_RET_FULL ? "full" : "hdrs"));
    if (o->body)
        json_object_set_new(args, "body",
                            json_string(o->body == SMTP_BODY_7BIT ? "7bit" : "8bitmime"));
    if (o->envid)
        json_object_set_new(args, "envid", proto_str(o->envid));
    if (utf8)
        json_object_set_new(args, "smtputf8", json_true());
    if (!sub_call(s, "submit.begin", args)) {
        print_refusal(s, o->sender ? o->sender : NULL);
        status = exit_for(s, "mail");
        goto close;
    }
    for (size_t i = 0; i < o->nrcpt + nx; i++) {
        const char *addr = i < o->nrcpt ? o->rcpts[i] : extracted[i - o->nrcpt];
        json_t *ra = json_object();
        json_object_set_new(ra, "addr", proto_str(addr));
        json_t *nj = notify_json(o->notify);
        if (nj)
            json_object_set_new(ra, "notify", nj);
        if (!sub_call(s, "submit.rcpt", ra)) {
            print_refusal(s, addr);
            status = exit_for(s, "rcpt");
            goto close;
        }
    }
    bool ok = sub_data(s, head, hlen);
    while (ok && !ended) {
        const char *line;
        size_t n = next_line(in, &line);
        if (n == 0)
            break;
        if (o->dot_ends && at_bol && is_dot_line(line, n))
            break;
        at_bol = line[n - 1] == '\n';
        ok = sub_data(s, line, n);
    }
    if (ok)
        ok = sub_send_chunk(s);
    if (ok)
        ok = sub_call(s, "submit.end", NULL);
    if (!ok) {
        print_refusal(s, NULL);
        status = exit_for(s, "data");
        goto close;
    }
    if (o->verbose)
        fprintf(stderr, "%s: queued as %s\n", prog, s->qid);
close:
    control_client_close(s->c);
    free(s);
out:
    free(extracted);
    free(head);
    free(in);
    return status;
}

/* ---- -bs: an SMTP session on standard input and output -------------------- */

static void reply(int code, const char *enh, const char *text)
{
    char out[1200];
    size_t n = smtp_reply_format(out, sizeof out, code, enh, text);
    fwrite(out, 1, n, stdout);
}

static void reply_refusal(const struct submission *s)
{
    if (s->code)
        reply(s->code, s->enh[0] ? s->enh : (s->code < 500 ? "4.3.0" : "5.5.0"), s->text);
    else
        reply(451, "4.3.0", "Local error: the mail server cannot be reached");
}

static int smtp_session(const struct sendmail_opts *o)
{
    struct config_diags diags = {0};
    struct config *cfg = config_load(config_file(o), &diags);
    cli_print_diags(&diags);
    config_diags_free(&diags);
    if (!cfg) {
        printf("421 4.3.0 Local configuration error\r\n");
        return EX_TEMPFAIL;
    }
    struct in_reader *in = xcalloc(1, sizeof *in);
    in->fd = 0;
    struct submission *s = xcalloc(1, sizeof *s);
    bool in_tx = false, quit = false;
    size_t nrcpt = 0;
    int status = 0;
    char text[600];
    snprintf(text, sizeof text, "%s ESMTP Tern (local submission)", cfg->hostname);
    reply(220, NULL, text);
    fflush(stdout);
    while (!quit) {
        const char *line;
        size_t n = next_line(in, &line);
        if (n == 0)
            break;
        bool complete = line[n - 1] == '\n';
        size_t len = n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (!complete || n > cfg->max_command_line) {
            while (!complete) { /* the rest of a line too long */
                n = next_line(in, &line);
                complete = n == 0 || line[n - 1] == '\n';
            }
            reply(500, "5.5.2", "Error: line too long");
            fflush(stdout);
            continue;
        }
        struct smtp_cmd cmd;
        const struct smtp_status *st = smtp_cmd_parse(line, len, &cmd);
        if (st) {
            reply(st->code, st->enh, st->text);
        } else {
            switch (cmd.verb) {
            case SMTP_VERB_EHLO:
            case SMTP_VERB_HELO:
                if (in_tx)
                    sub_call(s, "submit.abort", NULL);
                in_tx = false;
                nrcpt = 0;
                if (cmd.verb == SMTP_VERB_HELO) {
                    reply(250, NULL, cfg->hostname);
                } else {
                    snprintf(text, sizeof text,
                             "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\nDSN\n"
                             "ENHANCEDSTATUSCODES",
                             cfg->hostname, (unsigned long long)cfg->message_size_limit);
                    reply(250, NULL, text);
                }
                break;
            case SMTP_VERB_MAIL: {
                if (in_tx) {
                    reply(503, "5.5.1", "Error: nested MAIL command");
                    break;
                }
                if (cmd.arg_len < 5 || strncasecmp(cmd.arg, "FROM:", 5) != 0) {
                    reply(501, "5.5.4", "Syntax: MAIL FROM:<address>");
                    break;
                }
                struct smtp_path path;
                const char *end;
                const char *a = cmd.arg + 5;
                size_t alen = cmd.arg_len - 5;
                st = smtp_path_parse(a, alen, SMTP_PATH_REVERSE, true, &path, &end);
                struct smtp_mail_params mp;
                struct smtp_ext ext = {
                    .size = true, .eightbit = true, .smtputf8 = true, .dsn = true};
                if (!st)
                    st = smtp_mail_params_parse(end, alen - (size_t)(end - a), &ext, &mp);
                if (!st && path.utf8 && !mp.smtputf8)
                    st =
                        &(const struct smtp_status){553, "5.6.7", "UTF-8 address without SMTPUTF8"};
                if (!st && mp.has_size && mp.size > cfg->message_size_limit)
                    st = &(const struct smtp_status){552, "5.3.4",
                                                     "Message size exceeds fixed limit"};
                if (st) {
                    reply(st->code, st->enh, st->text);
                    break;
                }
                if (!s->c) {
                    int e;
                    s->c = connect_server(config_file(o), &e);
                    if (!s->c) {
                        reply(451, "4.3.0", "Local error: the mail server cannot be reached");
                        break;
                    }
                }
                json_t *args = json_object();
                json_object_set_new(args, "sender", proto_str(path.null ? "" : path.addr));
                if (mp.ret)
                    json_object_set_new(args, "ret",
                                        json_string(mp.ret == SMTP_RET_FULL ? "full" : "hdrs"));
                if (mp.body)
                    json_object_set_new(
                        args, "body", json_string(mp.body == SMTP_BODY_7BIT ? "7bit" : "8bitmime"));
                if (mp.smtputf8)
                    json_object_set_new(args, "smtputf8", json_true());
                if (mp.has_envid) {
                    char envid[SMTP_ENVID_MAX + 1];
                    if (smtp_xtext_decode(mp.envid, strlen(mp.envid), envid, sizeof envid) >= 0)
                        json_object_set_new(args, "envid", proto_str(envid));
                }
                if (!sub_call(s, "submit.begin", args)) {
                    reply_refusal(s);
                    if (s->code == 0) { /* the connection is gone */
                        control_client_close(s->c);
                        s->c = NULL;
                    }
                    break;
                }
                in_tx = true;
                nrcpt = 0;
                reply(250, "2.1.0", "Ok");
                break;
            }
            case SMTP_VERB_RCPT: {
                if (!in_tx) {
                    reply(503, "5.5.1", "Error: need MAIL command");
                    break;
                }
                if (cmd.arg_len < 3 || strncasecmp(cmd.arg, "TO:", 3) != 0) {
                    reply(501, "5.5.4", "Syntax: RCPT TO:<address>");
                    break;
                }
                struct smtp_path path;
                const char *end;
                const char *a = cmd.arg + 3;
                size_t alen = cmd.arg_len - 3;
                st = smtp_path_parse(a, alen, SMTP_PATH_FORWARD, true, &path, &end);
                struct smtp_rcpt_params rp;
                struct smtp_ext ext = {.dsn = true};
                if (!st)
                    st = smtp_rcpt_params_parse(end, alen - (size_t)(end - a), &ext, &rp);
                if (st) {
                    reply(st->code, st->enh, st->text);
                    break;
                }
                json_t *args = json_object();
                json_object_set_new(args, "addr", proto_str(path.addr));
                json_t *nj = notify_json(rp.notify);
                if (nj)
                    json_object_set_new(args, "notify", nj);
                if (rp.has_orcpt)
                    json_object_set_new(args, "orcpt", proto_str(rp.orcpt));
                if (!sub_call(s, "submit.rcpt", args)) {
                    reply_refusal(s);
                    break;
                }
                nrcpt++;
                reply(250, "2.1.5", "Ok");
                break;
            }
            case SMTP_VERB_DATA: {
                if (!in_tx) {
                    reply(503, "5.5.1", "Error: need MAIL command");
                    break;
                }
                if (nrcpt == 0) {
                    reply(554, "5.5.1", "Error: no valid recipients");
                    break;
                }
                reply(354, NULL, "End data with <CR><LF>.<CR><LF>");
                fflush(stdout);
                bool ok = true, bol = true, got_end = false;
                for (;;) {
                    const char *l;
                    size_t k = next_line(in, &l);
                    if (k == 0)
                        break;
                    bool full = l[k - 1] == '\n';
                    size_t body = k;
                    while (body > 0 && (l[body - 1] == '\n' || l[body - 1] == '\r') && full)
                        body--;
                    if (bol && full && body == 1 && l[0] == '.') {
                        got_end = true;
                        break;
                    }
                    const char *p = l;
                    if (bol && body > 0 && l[0] == '.') { /* dot-unstuffing */
                        p++;
                        body--;
                    }
                    if (ok)
                        ok = sub_data(s, p, body) && (!full || sub_data(s, "\r\n", 2));
                    bol = full;
                }
                if (!got_end) { /* the input ended inside the data */
                    quit = true;
                    break;
                }
                if (ok)
                    ok = sub_send_chunk(s);
                if (ok)
                    ok = sub_call(s, "submit.end", NULL);
                if (ok) {
                    snprintf(text, sizeof text, "Ok: queued as %s", s->qid);
                    reply(250, "2.0.0", text);
                } else {
                    reply_refusal(s);
                    if (s->code != 0)
                        sub_call(s, "submit.abort", NULL);
                }
                in_tx = false;
                nrcpt = 0;
                break;
            }
            case SMTP_VERB_RSET:
                if (in_tx)
                    sub_call(s, "submit.abort", NULL);
                in_tx = false;
                nrcpt = 0;
                reply(250, "2.0.0", "Ok");
                break;
            case SMTP_VERB_NOOP:
                reply(250, "2.0.0", "Ok");
                break;
            case SMTP_VERB_VRFY:
                reply(252, "2.5.0",
                      "Cannot VRFY user, but will accept message and attempt "
                      "delivery");
                break;
            case SMTP_VERB_HELP:
                reply(214, "2.0.0", "Tern local submission: see RFC 5321");
                break;
            case SMTP_VERB_QUIT:
                reply(221, "2.0.0", "Bye");
                quit = true;
                break;
            case SMTP_VERB_BDAT:
            case SMTP_VERB_EXPN:
            case SMTP_VERB_STARTTLS:
            case SMTP_VERB_AUTH:
                reply(502, "5.5.1", "Error: command not implemented");
                break;
            default:
                reply(500, "5.5.2", "Error: command not recognized");
                break;
            }
        }
        if (!buffered(in))
            fflush(stdout);
    }
    fflush(stdout);
    if (in_tx && s->c)
        sub_call(s, "submit.abort", NULL);
    control_client_close(s->c);
    free(s);
    free(in);
    config_free(cfg);
    return status;
}

/* ---- -q: flush ------------------------------------------------------------ */

static int flush(const struct sendmail_opts *o)
{
    int status = 0;
    struct control_client *c = connect_server(config_file(o), &status);
    if (!c)
        return status;
    json_t *args = json_object();
    if (o->flush_domain)
        json_object_set_new(args, "domain", proto_str(o->flush_domain));
    char err[400];
    json_t *r = control_client_call(c, "queue.flush", args, err, sizeof err);
    if (!r) {
        fprintf(stderr, "%s: %s\n", prog, err);
        status = EX_TEMPFAIL;
    } else if (!json_is_true(json_object_get(r, "ok"))) {
        fprintf(stderr, "%s: %s\n", prog, json_string_value(json_object_get(r, "error")));
        status = EX_UNAVAILABLE;
    } else if (o->verbose) {
        fprintf(stderr, "%s: %" JSON_INTEGER_FORMAT " message(s) to be retried now\n", prog,
                json_integer_value(json_object_get(r, "done")));
    }
    json_decref(r);
    control_client_close(c);
    return status;
}

/* ---- entry ------------------------------------------------------------------ */

int cli_invoked_as_sendmail(const char *argv0)
{
    if (!argv0)
        return 0;
    const char *b = strrchr(argv0, '/');
    b = b ? b + 1 : argv0;
    return strcmp(b, "sendmail") == 0 || strcmp(b, "mailq") == 0 || strcmp(b, "newaliases") == 0;
}

int cli_sendmail(int argc, char **argv)
{
    struct sendmail_opts *o = xcalloc(1, sizeof *o);
    int status;
    if (argc > 0 && argv[0]) {
        const char *b = strrchr(argv[0], '/');
        b = b ? b + 1 : argv[0];
        prog = strcmp(b, "mailq") == 0        ? "mailq"
               : strcmp(b, "newaliases") == 0 ? "newaliases"
                                              : "sendmail";
    }
    if (sendmail_parse_args(argc, argv, o) < 0) {
        fprintf(stderr, "%s: %s\n", prog, o->error);
        free(o);
        return EX_USAGE;
    }
    for (size_t i = 0; i < o->nwarn && i < SENDMAIL_WARN_MAX; i++)
        fprintf(stderr, "%s: warning: %s\n", prog, o->warnings[i]);
    switch (o->mode) {
    case SENDMAIL_MAILQ:
        status = cli_mailq(config_file(o));
        break;
    case SENDMAIL_FLUSH:
        status = flush(o);
        break;
    case SENDMAIL_NEWALIASES:
        fprintf(stderr,
                "%s: nothing to do: tern serve reads the aliases file itself when it "
                "starts\n",
                prog);
        status = 0;
        break;
    case SENDMAIL_SMTP:
        status = smtp_session(o);
        break;
    case SENDMAIL_DELIVER:
    default:
        status = deliver(o);
        break;
    }
    free(o);
    return status;
}
