/*
 * proto - the control protocol's pure code; see proto.h and docs/control.md.
 *
 * RFC 8259 (JSON, through libjansson), RFC 3629 (UTF-8 validity, for the
 * text sent back), RFC 4648 §4 (base64 of submitted message data).
 */
#include "control/proto.h"
#include "core/base64.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "smtp/smtp.h"

void proto_init(void)
{
    json_set_alloc_funcs(xmalloc, free);
}

/* ---- framing ------------------------------------------------------------- */

enum proto_frame proto_frame(const uint8_t *buf, size_t len, size_t max, size_t *linelen,
                             size_t *consumed)
{
    size_t scan = len < max ? len : max;
    const uint8_t *lf = memchr(buf, '\n', scan);
    if (!lf)
        return len >= max ? PROTO_FRAME_TOO_LONG : PROTO_FRAME_MORE;
    size_t n = (size_t)(lf - buf);
    *consumed = n + 1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    *linelen = n;
    return PROTO_FRAME_LINE;
}

/* ---- requests ------------------------------------------------------------ */

/* Nesting depth of arrays and objects, strings skipped; false past max. */
static bool depth_ok(const char *s, size_t len, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

static bool cmd_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
}

int proto_request_parse(const char *line, size_t len, struct proto_request *req, char *err,
                        size_t errlen)
{
    memset(req, 0, sizeof *req);
    if (len == 0) {
        snprintf(err, errlen, "empty request");
        return -1;
    }
    if (!depth_ok(line, len, PROTO_DEPTH_MAX)) {
        snprintf(err, errlen, "request nested deeper than %d", PROTO_DEPTH_MAX);
        return -1;
    }
    json_error_t je;
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        snprintf(err, errlen, "invalid JSON at octet %d: %s", je.position, je.text);
        return -1;
    }
    if (!json_is_object(v)) {
        snprintf(err, errlen, "a request is a JSON object");
        goto fail;
    }
    const char *key;
    json_t *member;
    json_object_foreach(v, key, member)
    {
        if (strcmp(key, "cmd") != 0 && strcmp(key, "args") != 0) {
            snprintf(err, errlen, "unknown request member \"%.40s\"", key);
            goto fail;
        }
    }
    json_t *cmd = json_object_get(v, "cmd");
    if (!json_is_string(cmd)) {
        snprintf(err, errlen, "\"cmd\" must be a string");
        goto fail;
    }
    const char *c = json_string_value(cmd);
    size_t clen = json_string_length(cmd);
    if (clen == 0 || clen > PROTO_CMD_MAX) {
        snprintf(err, errlen, "\"cmd\" must be 1 to %d characters", PROTO_CMD_MAX);
        goto fail;
    }
    for (size_t i = 0; i < clen; i++) {
        if (!cmd_char(c[i])) {
            snprintf(err, errlen, "\"cmd\" holds a character other than a-z, 0-9, '.' or '_'");
            goto fail;
        }
    }
    memcpy(req->cmd, c, clen);
    req->cmd[clen] = '\0';
    json_t *args = json_object_get(v, "args");
    if (args && !json_is_object(args)) {
        snprintf(err, errlen, "\"args\" must be an object");
        goto fail;
    }
    req->args = args ? json_incref(args) : json_object();
    json_decref(v);
    return 0;
fail:
    json_decref(v);
    memset(req, 0, sizeof *req);
    return -1;
}

void proto_request_free(struct proto_request *req)
{
    if (!req)
        return;
    json_decref(req->args);
    req->args = NULL;
}

int proto_args_allowed(const json_t *args, const char *const *allowed, char *err, size_t errlen)
{
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)args, key, member)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            snprintf(err, errlen, "unknown argument \"%.40s\"", key);
            return -1;
        }
    }
    return 0;
}

const char *proto_arg_str(const json_t *args, const char *key, size_t max, bool *bad, char *err,
                          size_t errlen)
{
    json_t *v = json_object_get(args, key);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "\"%s\" must be a string", key);
        *bad = true;
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max) {
        snprintf(err, errlen, "\"%s\" is longer than %zu octets", key, max);
        *bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            snprintf(err, errlen, "\"%s\" holds a control character", key);
            *bad = true;
            return NULL;
        }
    }
    return s;
}

/* ---- queue ids ------------------------------------------------------------- */

bool proto_qid_parse(const char *s, spool_id *id)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    if (v == 0)
        return false;
    *id = v;
    return true;
}

void proto_qid_format(spool_id id, char out[17])
{
    snprintf(out, 17, "%016" PRIX64, id);
}

/* ---- selectors ---------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    spool_id x = *(const spool_id *)a, y = *(const spool_id *)b;
    return x < y ? -1 : x > y;
}

/* A pattern: a string of at most PROTO_PATTERN_MAX octets, printable. */
static int pattern_arg(const json_t *args, const char *key, const char **out, char *err,
                       size_t errlen)
{
    bool bad = false;
    *out = proto_arg_str(args, key, PROTO_PATTERN_MAX, &bad, err, errlen);
    if (bad)
        return -1;
    if (*out && (*out)[0] == '\0') {
        snprintf(err, errlen, "\"%s\" is empty", key);
        return -1;
    }
    return 0;
}

int proto_selector_parse(const json_t *args, struct proto_selector *sel, char *err, size_t errlen)
{
    memset(sel, 0, sizeof *sel);
    sel->older_than = -1;
    json_t *v = json_object_get(args, "all");
    if (v) {
        if (!json_is_boolean(v)) {
            snprintf(err, errlen, "\"all\" must be true or false");
            return -1;
        }
        sel->all = json_is_true(v);
    }
    v = json_object_get(args, "ids");
    if (v) {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > PROTO_IDS_MAX) {
            snprintf(err, errlen, "\"ids\" must be an array of 1 to %d queue ids", PROTO_IDS_MAX);
            return -1;
        }
        size_t n = json_array_size(v);
        sel->ids = xmallocarray(n, sizeof *sel->ids);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || !proto_qid_parse(json_string_value(e), &sel->ids[i])) {
                snprintf(err, errlen, "\"ids\"[%zu] is not a queue id", i);
                proto_selector_free(sel);
                return -1;
            }
        }
        qsort(sel->ids, n, sizeof *sel->ids, cmp_id);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || sel->ids[k - 1] != sel->ids[i])
                sel->ids[k++] = sel->ids[i];
        sel->nids = k;
    }
    if (pattern_arg(args, "sender", &sel->sender, err, errlen) < 0 ||
        pattern_arg(args, "rcpt", &sel->rcpt, err, errlen) < 0 ||
        pattern_arg(args, "domain", &sel->domain, err, errlen) < 0)
        goto fail;
    v = json_object_get(args, "older_than");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 100LL * 365 * 86400) {
            snprintf(err, errlen, "\"older_than\" must be a number of seconds");
            goto fail;
        }
        sel->older_than = (int64_t)json_integer_value(v);
    }
    v = json_object_get(args, "status");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "active") == 0)
            sel->status = PROTO_STATUS_ACTIVE;
        else if (strcmp(s, "deferred") == 0)
            sel->status = PROTO_STATUS_DEFERRED;
        else if (strcmp(s, "hold") == 0)
            sel->status = PROTO_STATUS_HOLD;
        else {
            snprintf(err, errlen, "\"status\" must be \"active\", \"deferred\" or \"hold\"");
            goto fail;
        }
    }
    v = json_object_get(args, "error_class");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "4xx") == 0)
            sel->error_class = 4;
        else if (strcmp(s, "5xx") == 0)
            sel->error_class = 5;
        else {
            snprintf(err, errlen, "\"error_class\" must be \"4xx\" or \"5xx\"");
            goto fail;
        }
    }
    return 0;
fail:
    proto_selector_free(sel);
    return -1;
}

void proto_selector_free(struct proto_selector *sel)
{
    if (!sel)
        return;
    free(sel->ids);
    sel->ids = NULL;
    sel->nids = 0;
}

bool proto_selector_empty(const struct proto_selector *sel)
{
    return !sel->all && !sel->ids && !sel->sender && !sel->rcpt && !sel->domain &&
           sel->older_than < 0 && sel->status == PROTO_STATUS_ANY && sel->error_class == 0;
}

static bool rcpt_open(uint8_t state)
{
    return state == SPOOL_RCPT_PENDING || state == SPOOL_RCPT_DEFERRED;
}

enum proto_status proto_message_status(const struct spool_envelope *env, bool busy)
{
    if (env->held)
        return PROTO_STATUS_HOLD;
    if (busy)
        return PROTO_STATUS_ACTIVE;
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpt[i].state == SPOOL_RCPT_PENDING)
            return PROTO_STATUS_ACTIVE;
    return PROTO_STATUS_DEFERRED;
}

const char *proto_status_name(enum proto_status st)
{
    switch (st) {
    case PROTO_STATUS_ACTIVE:
        return "active";
    case PROTO_STATUS_DEFERRED:
        return "deferred";
    case PROTO_STATUS_HOLD:
        return "hold";
    case PROTO_STATUS_ANY:
        break;
    }
    return "any";
}

static bool glob_match(const char *pattern, const char *s)
{
    return fnmatch(pattern, s, FNM_CASEFOLD) == 0;
}

/* The class (4 or 5) of a recorded status "dsn=4.4.1 text", or 0. */
static int status_class(const char *status)
{
    if (!status || strncmp(status, "dsn=", 4) != 0)
        return 0;
    return status[4] == '4' ? 4 : status[4] == '5' ? 5 : 0;
}

bool proto_selector_match(const struct proto_selector *sel, spool_id id,
                          const struct spool_envelope *env, bool busy, int64_t now)
{
    if (sel->ids && !bsearch(&id, sel->ids, sel->nids, sizeof *sel->ids, cmp_id))
        return false;
    if (sel->sender && !glob_match(sel->sender, env->sender[0] ? env->sender : "<>"))
        return false;
    if (sel->older_than >= 0 && now - env->arrival < sel->older_than)
        return false;
    if (sel->status != PROTO_STATUS_ANY && proto_message_status(env, busy) != sel->status)
        return false;
    if (sel->rcpt || sel->domain) {
        bool any = false;
        for (size_t i = 0; i < env->nrcpt && !any; i++) {
            const struct spool_rcpt *r = &env->rcpt[i];
            if (!rcpt_open(r->state))
                continue;
            const char *at = strrchr(r->addr, '@');
            any = (!sel->rcpt || glob_match(sel->rcpt, r->addr)) &&
                  (!sel->domain || glob_match(sel->domain, at ? at + 1 : ""));
        }
        if (!any)
            return false;
    }
    if (sel->error_class) {
        bool any = false;
        for (size_t i = 0; i < env->nrcpt && !any; i++)
            any = status_class(env->rcpt[i].status) == sel->error_class;
        if (!any)
            return false;
    }
    return true;
}

/* ---- output ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629 §4: no overlong
   forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

json_t *proto_text(const char *s, size_t len)
{
    if (!s)
        return json_null();
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0)
            break;
        i += k;
    }
    if (i == len)
        return json_stringn_nocheck(s, len);
    /* at most 3 octets (U+FFFD) for each octet */
    size_t cap;
    if (!size_mul(len, 3, &cap) || !size_add(cap, 1, &cap))
        return json_null();
    char *out = xmalloc(cap);
    size_t o = 0;
    for (i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    json_t *v = json_stringn_nocheck(out, o);
    free(out);
    return v;
}

json_t *proto_str(const char *s)
{
    return proto_text(s, s ? strlen(s) : 0);
}

const char *proto_rcpt_state_name(uint8_t state)
{
    static const char *const names[] = {"pending", "deferred", "delivered", "bounced", "expired"};
    return state < sizeof names / sizeof names[0] ? names[state] : "unknown";
}

static json_t *notify_json(unsigned notify)
{
    json_t *a = json_array();
    if (notify & SMTP_NOTIFY_NEVER)
        json_array_append_new(a, json_string("never"));
    if (notify & SMTP_NOTIFY_SUCCESS)
        json_array_append_new(a, json_string("success"));
    if (notify & SMTP_NOTIFY_FAILURE)
        json_array_append_new(a, json_string("failure"));
    if (notify & SMTP_NOTIFY_DELAY)
        json_array_append_new(a, json_string("delay"));
    return a;
}

json_t *proto_message_json(spool_id id, const struct spool_envelope *env, bool busy, bool full)
{
    char qid[17];
    proto_qid_format(id, qid);
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(qid));
    json_object_set_new(m, "arrival", json_integer(env->arrival));
    json_object_set_new(m, "size", json_integer((json_int_t)env->size));
    json_object_set_new(m, "sender", proto_str(env->sender));
    json_object_set_new(m, "status",
                        json_string(proto_status_name(proto_message_status(env, busy))));
    json_object_set_new(m, "held", json_boolean(env->held));
    json_object_set_new(m, "listener", proto_str(env->listener));
    if (full) {
        static const char *const rets[] = {NULL, "full", "hdrs"};
        static const char *const bodies[] = {NULL, "7bit", "8bitmime"};
        json_object_set_new(m, "envid", proto_str(env->envid));
        json_object_set_new(m, "ret", proto_str(env->ret < 3 ? rets[env->ret] : NULL));
        json_object_set_new(m, "body", proto_str(env->body < 3 ? bodies[env->body] : NULL));
        json_object_set_new(m, "smtputf8", json_boolean(env->smtputf8));
        json_object_set_new(m, "helo", proto_str(env->helo));
        json_object_set_new(m, "client", proto_str(env->client_addr));
        json_object_set_new(m, "auth_user", proto_str(env->auth_user));
    }
    json_t *rs = json_array();
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct spool_rcpt *r = &env->rcpt[i];
        json_t *o = json_object();
        json_object_set_new(o, "addr", proto_str(r->addr));
        json_object_set_new(o, "state", json_string(proto_rcpt_state_name(r->state)));
        json_object_set_new(o, "attempts", json_integer(r->attempts));
        json_object_set_new(o, "next_attempt", json_integer(r->next_attempt));
        json_object_set_new(o, "status", proto_str(r->status));
        if (full) {
            json_object_set_new(o, "orcpt", proto_str(r->orcpt));
            json_object_set_new(o, "original", proto_str(r->dsn_orig));
            json_object_set_new(o, "notify", notify_json(r->notify));
        }
        json_array_append_new(rs, o);
    }
    json_object_set_new(m, "rcpts", rs);
    return m;
}

char *proto_dump(json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!s)
        s = xstrdup("{\"ok\":false,\"error\":\"internal error: cannot encode the answer\"}");
    size_t n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = '\0';
    *len = n + 1;
    return s;
}

json_t *proto_error(const char *text, int code, const char *enh)
{
    json_t *v = json_object();
    json_object_set_new(v, "ok", json_false());
    json_object_set_new(v, "error", proto_str(text));
    if (code > 0) {
        json_object_set_new(v, "code", json_integer(code));
        json_object_set_new(v, "enh", proto_str(enh));
    }
    return v;
}

/* ---- submission data ---------------------------------------------------- */

long proto_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t n;
    return base64_decode(in, len, out, cap, &n) == 0 ? (long)n : -1;
}

size_t proto_base64_encode(const uint8_t *in, size_t n, char *out)
{
    /* the caller sized out for the whole encoding (proto.h) */
    size_t len = base64_encode(in, n, out, (n + 2) / 3 * 4 + 1);
    if (n == 0)
        out[0] = '\0';
    return len;
}

bool proto_duration_parse(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 12)
        return false;
    int64_t mult = 1;
    char last = s[n - 1];
    if (last < '0' || last > '9') {
        switch (last) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        case 'w':
            mult = 7 * 86400;
            break;
        default:
            return false;
        }
        n--;
    }
    uint64_t v;
    if (n == 0 || !parse_u64(s, n, &v) || v > (uint64_t)100 * 365 * 86400)
        return false;
    if ((int64_t)v * mult > (int64_t)100 * 365 * 86400)
        return false;
    *out = (int64_t)v * mult;
    return true;
}
