/*
 * maildir - Maildir delivery (https://cr.yp.to/proto/maildir.html and
 * Dovecot's conventions: "S=<size>" in the file name is the file's size).
 * See maildir.h.
 */
#include "deliver/maildir.h"
#include "core/util.h"
#include "spool/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint_fast64_t delivery_seq;
static atomic_int delivery_pid;

/* A local part or domain used as a directory name must be a plain name. */
static bool safe_name(const char *s, size_t n)
{
    if (n == 0 || n > 255 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '\0' || (unsigned char)s[i] < 32)
            return false;
    return true;
}

/* Create <dir>/{tmp,new,cur}. */
static int maildir_create(const char *dir)
{
    char p[600];
    const char *subs[] = {"tmp", "new", "cur"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
        if (mkdir_p(p, 0700) < 0)
            return -1;
    }
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fail(struct maildir_result *res, int err, bool permanent, const char *what)
{
    res->error = err ? err : EIO;
    res->permanent = permanent;
    snprintf(res->text, sizeof res->text, "%s: %s", what, strerror(res->error));
}

void maildir_deliver(const char *root, const char *mailbox, const char *sender,
                     const char *hostname, struct spool_body *body, struct maildir_result *res)
{
    memset(res, 0, sizeof *res);
    const char *at = strrchr(mailbox, '@');
    if (!at || !safe_name(mailbox, (size_t)(at - mailbox)) || !safe_name(at + 1, strlen(at + 1))) {
        fail(res, EINVAL, true, "mailbox name not usable as a Maildir");
        return;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s/%.*s", root, at + 1, (int)(at - mailbox), mailbox);

    int pid = atomic_load(&delivery_pid);
    if (pid == 0) {
        pid = (int)getpid();
        atomic_store(&delivery_pid, pid);
    }
    int64_t us = now_real_us();
    uint64_t seq = atomic_fetch_add(&delivery_seq, 1);
    char base[256];
    snprintf(base, sizeof base, "%" PRId64 ".M%06" PRId64 "P%dQ%" PRIu64 ".%s", us / 1000000,
             us % 1000000, pid, seq, hostname);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", dir, base);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        if (maildir_create(dir) < 0) {
            fail(res, errno, false, "cannot create Maildir");
            return;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        fail(res, errno, false, "cannot create file in tmp/");
        return;
    }

    char head[1200];
    int hn = snprintf(head, sizeof head, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", sender,
                      mailbox);
    if (hn < 0 || (size_t)hn >= sizeof head)
        hn = 0;
    uint64_t total = (uint64_t)hn;
    if (write_all(fd, head, (size_t)hn) < 0)
        goto write_error;
    static _Thread_local char chunk[65536];
    uint64_t off = 0, size = spool_body_size(body);
    while (off < size) {
        ssize_t r = spool_body_read(body, off, chunk, sizeof chunk);
        if (r <= 0) {
            close(fd);
            unlink(tmp);
            fail(res, r < 0 ? (int)-r : EIO, false, "cannot read the queued message");
            return;
        }
        if (write_all(fd, chunk, (size_t)r) < 0)
            goto write_error;
        off += (uint64_t)r;
        total += (uint64_t)r;
    }
    if (fsync(fd) < 0)
        goto write_error;
    if (close(fd) < 0) {
        fd = -1;
        goto write_error;
    }
    fd = -1;

    snprintf(res->path, sizeof res->path, "%s/new/%s,S=%" PRIu64, dir, base, total);
    if (rename(tmp, res->path) < 0) {
        fail(res, errno, false, "cannot move the file into new/");
        unlink(tmp);
        return;
    }
    char newdir[600];
    snprintf(newdir, sizeof newdir, "%s/new", dir);
    int dfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        /* The file is in new/ but may not survive a crash: report a temporary failure
           so the delivery is retried (at least once, DESIGN contract 2). */
        fail(res, errno, false, "cannot fsync new/");
        if (dfd >= 0)
            close(dfd);
        return;
    }
    close(dfd);
    return;

write_error: {
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    fail(res, e, false, "cannot write the message file");
}
}
