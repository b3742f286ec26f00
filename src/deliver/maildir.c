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
#include <dirent.h>
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

static void fail(struct maildir_delivery *d, int err, bool permanent, const char *what)
{
    d->error = err ? err : EIO;
    d->permanent = permanent;
    snprintf(d->text, sizeof d->text, "%s: %s", what, strerror(d->error));
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    if (d->tmp[0])
        unlink(d->tmp);
}

/* Phase 1: create the file in tmp/ and write the message (no fsync yet). */
static void maildir_write(struct maildir_delivery *d)
{
    d->error = 0;
    d->permanent = false;
    d->text[0] = d->tmp[0] = d->path[0] = '\0';
    d->fd = -1;
    const char *at = strrchr(d->mailbox, '@');
    if (!at || !safe_name(d->mailbox, (size_t)(at - d->mailbox)) ||
        !safe_name(at + 1, strlen(at + 1))) {
        fail(d, EINVAL, true, "mailbox name not usable as a Maildir");
        return;
    }
    snprintf(d->dir, sizeof d->dir, "%s/%s/%.*s", d->root, at + 1, (int)(at - d->mailbox),
             d->mailbox);

    int pid = atomic_load(&delivery_pid);
    if (pid == 0) {
        pid = (int)getpid();
        atomic_store(&delivery_pid, pid);
    }
    int64_t us = now_real_us();
    uint64_t seq = atomic_fetch_add(&delivery_seq, 1);
    char base[256];
    snprintf(base, sizeof base, "%" PRId64 ".M%06" PRId64 "P%dQ%" PRIu64 ".%s", us / 1000000,
             us % 1000000, pid, seq, d->hostname);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", d->dir, base);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        if (maildir_create(d->dir) < 0) {
            fail(d, errno, false, "cannot create Maildir");
            return;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        fail(d, errno, false, "cannot create file in tmp/");
        return;
    }
    d->fd = fd;
    memcpy(d->tmp, tmp, sizeof tmp);

    char head[1200];
    int hn = snprintf(head, sizeof head, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", d->sender,
                      d->mailbox);
    if (hn < 0 || (size_t)hn >= sizeof head)
        hn = 0;
    uint64_t total = (uint64_t)hn;
    if (write_all(fd, head, (size_t)hn) < 0) {
        fail(d, errno, false, "cannot write the message file");
        return;
    }
    static _Thread_local char chunk[65536];
    uint64_t off = 0, size = spool_body_size(d->body);
    while (off < size) {
        ssize_t r = spool_body_read(d->body, off, chunk, sizeof chunk);
        if (r <= 0) {
            fail(d, r < 0 ? (int)-r : EIO, false, "cannot read the queued message");
            return;
        }
        if (write_all(fd, chunk, (size_t)r) < 0) {
            fail(d, errno, false, "cannot write the message file");
            return;
        }
        off += (uint64_t)r;
        total += (uint64_t)r;
    }
    snprintf(d->path, sizeof d->path, "%s/new/%s,S=%" PRIu64, d->dir, base, total);
}

/* Phase 2: make the file durable and move it into new/. */
static void maildir_finish(struct maildir_delivery *d)
{
    if (d->error)
        return;
    if (fsync(d->fd) < 0) {
        fail(d, errno, false, "cannot fsync the message file");
        return;
    }
    int fd = d->fd;
    d->fd = -1;
    if (close(fd) < 0) {
        fail(d, errno, false, "cannot close the message file");
        return;
    }
    if (rename(d->tmp, d->path) < 0) {
        fail(d, errno, false, "cannot move the file into new/");
        return;
    }
    d->tmp[0] = '\0';
}

void maildir_deliver_batch(struct maildir_delivery **d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        maildir_write(d[i]);
        /* Start writeback now: blocks are allocated while the batch is still being
           written, so the first fsync below commits the journal for all of them and
           the others find little left to do. */
        if (!d[i]->error)
            sync_file_range(d[i]->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    for (size_t i = 0; i < n; i++)
        maildir_finish(d[i]);
    /* Phase 3: fsync each new/ directory once, so every rename is durable before
       any delivery is reported done. On failure the files are in new/ but may not
       survive a crash: report a temporary failure, so the delivery is retried (at
       least once, DESIGN contract 2). */
    for (size_t i = 0; i < n; i++) {
        if (d[i]->error)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !d[j]->error && strcmp(d[j]->dir, d[i]->dir) == 0;
        if (seen)
            continue;
        char newdir[600];
        snprintf(newdir, sizeof newdir, "%s/new", d[i]->dir);
        int dfd = open(newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int err = 0;
        if (dfd < 0 || fsync(dfd) < 0)
            err = errno;
        if (dfd >= 0)
            close(dfd);
        if (!err)
            continue;
        for (size_t j = i; j < n; j++)
            if (!d[j]->error && strcmp(d[j]->dir, d[i]->dir) == 0)
                fail(d[j], err, false, "cannot fsync new/");
    }
}

/* Maildir's own rule for readers: tmp/ files untouched this long are dead. */
#define TMP_STALE_SECONDS (36 * 3600)

/* Is name one Tern makes ("SECS.MUSECSPpidQseq.hostname")? */
static bool tern_tmp_name(const char *name, const char *hostname)
{
    const char *m = strchr(name, '.');
    if (!m || m == name || m[1] != 'M')
        return false;
    const char *p = strchr(m, 'P'), *q = p ? strchr(p, 'Q') : NULL;
    const char *dot = q ? strchr(q, '.') : NULL;
    return dot && strcmp(dot + 1, hostname) == 0;
}

/* Sweep one <dir>/tmp. */
static size_t sweep_one(const char *dir, const char *hostname, int64_t started_us, int64_t now_us)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return 0;
    DIR *dp = fdopendir(dfd);
    if (!dp) {
        close(dfd);
        return 0;
    }
    size_t removed = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
        int64_t c = (int64_t)st.st_ctim.tv_sec * 1000000 + st.st_ctim.tv_nsec / 1000;
        int64_t changed = m > c ? m : c;
        bool ours = tern_tmp_name(e->d_name, hostname) && changed < started_us;
        /* the specification's "not accessed": neither read nor written */
        int64_t a = (int64_t)st.st_atim.tv_sec * 1000000 + st.st_atim.tv_nsec / 1000;
        int64_t used = m > a ? m : a;
        bool stale = used + (int64_t)TMP_STALE_SECONDS * 1000000 < now_us;
        if ((ours || stale) && unlinkat(dfd, e->d_name, 0) == 0)
            removed++;
    }
    closedir(dp);
    return removed;
}

size_t maildir_sweep_tmp(const char *root, const char *hostname, int64_t started_us)
{
    int64_t now = now_real_us();
    size_t removed = 0;
    DIR *domains = opendir(root);
    if (!domains)
        return 0;
    struct dirent *d;
    while ((d = readdir(domains)) != NULL) {
        if (d->d_name[0] == '.')
            continue;
        char ddir[600];
        snprintf(ddir, sizeof ddir, "%s/%s", root, d->d_name);
        DIR *users = opendir(ddir);
        if (!users)
            continue;
        struct dirent *u;
        while ((u = readdir(users)) != NULL) {
            if (u->d_name[0] == '.')
                continue;
            char udir[900];
            snprintf(udir, sizeof udir, "%s/%s", ddir, u->d_name);
            removed += sweep_one(udir, hostname, started_us, now);
        }
        closedir(users);
    }
    closedir(domains);
    return removed;
}
