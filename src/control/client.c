/*
 * client - the control socket's blocking client; see client.h.
 */
#include "control/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "control/proto.h"
#include "core/util.h"

struct control_client {
    int fd;
    char *buf; /* what was read past the last answer */
    size_t len, cap;
};

char *control_client_socket_path(const char *config_file)
{
    struct config_diags diags = {0};
    struct config *cfg = config_load(config_file, &diags);
    cli_print_diags(&diags);
    config_diags_free(&diags);
    if (!cfg)
        return NULL;
    char *path = xstrdup(cfg->control_socket);
    config_free(cfg);
    return path;
}

struct control_client *control_client_connect(const char *path, char *err, size_t errlen,
                                              int *errnum)
{
    proto_init();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "%s: socket path too long", path);
        *errnum = ENAMETOOLONG;
        return NULL;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        *errnum = errno;
        snprintf(err, errlen, "cannot connect to the mail server's control socket %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct control_client *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    return c;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

json_t *control_client_call(struct control_client *c, const char *cmd, json_t *args, char *err,
                            size_t errlen)
{
    json_t *req = json_object();
    json_object_set_new(req, "cmd", json_string(cmd));
    if (args)
        json_object_set_new(req, "args", args);
    size_t n;
    char *line = proto_dump(req, &n);
    if (n > PROTO_LINE_MAX) {
        snprintf(err, errlen, "request too long (%zu octets)", n);
        free(line);
        return NULL;
    }
    int r = send_all(c->fd, line, n);
    free(line);
    if (r < 0) {
        snprintf(err, errlen, "lost the connection to the mail server: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        char *lf = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (lf) {
            size_t linelen = (size_t)(lf - c->buf);
            json_error_t je;
            json_t *v = json_loadb(c->buf, linelen, 0, &je);
            memmove(c->buf, lf + 1, c->len - linelen - 1);
            c->len -= linelen + 1;
            if (!v || !json_is_object(v)) {
                json_decref(v);
                snprintf(err, errlen, "the mail server's answer is not a JSON object");
                return NULL;
            }
            return v;
        }
        if (c->len >= CONTROL_ANSWER_MAX) {
            snprintf(err, errlen, "the mail server's answer is too long");
            return NULL;
        }
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? 2 * c->cap : 131072;
            c->buf = xrealloc(c->buf, c->cap);
        }
        ssize_t k = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(err, errlen, "the mail server closed the connection%s%s", k < 0 ? ": " : "",
                     k < 0 ? strerror(errno) : "");
            return NULL;
        }
        c->len += (size_t)k;
    }
}

void control_client_close(struct control_client *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}
