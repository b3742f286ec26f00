/*
 * faults - an LD_PRELOAD shim that makes file system calls fail on demand,
 * for the fault-injection tests (tests/integration/test_faults.py) and the
 * crash harness (tests/crash/crash.py). Not part of Tern: it is loaded into a
 * test's `tern serve` with
 *
 *     LD_PRELOAD=faults.so TERN_FAULTS=CONTROL-FILE TERN_FAULTS_LOG=LOG-FILE
 *
 * The control file is read again whenever it changes (inode, size or mtime),
 * so a test arms and disarms faults while Tern runs. One rule per line:
 *
 *     OP ERRNO [path=PREFIX] [skip=N] [count=M]
 *
 * OP is fsync, fdatasync, write, pwrite (also pwritev), rename (also renameat)
 * or fallocate (posix_fallocate); ERRNO is EIO, ENOSPC, EDQUOT, EROFS or a
 * number; OK, for fsync and fdatasync only, reports success without syncing
 * (a disk that lies: what the crash harness must catch). A call of OP on a
 * file whose path starts with PREFIX (any file without one) fails with ERRNO
 * once N matching calls have passed (default 0), M times (default 1; -1:
 * every call while the rule is in the file). A rule's counters start again
 * when the file is rewritten. Lines starting with '#' and blank lines are
 * ignored.
 *
 * The log file gets one line per injected failure:
 *
 *     fault op=fdatasync errno=EIO path=/x/spool/seg-0000000000000003
 *
 * and, after an injected fsync or fdatasync failure, one line per extent
 * written to that file by pwrite/pwritev since its previous fsync or
 * fdatasync:
 *
 *     lost path=/x/spool/seg-0000000000000003 offset=4096 length=65564
 *
 * Those are the pages a kernel that reports a writeback error marks clean
 * and never writes again (Linux since 4.13; "fsyncgate", 2018): they read
 * back fine from the page cache but are not on the disk, and a power failure
 * loses them. A test that zeroes them after SIGKILL sees what the disk
 * would hold. Writes are tracked for files under TERN_FAULTS_TRACK (a path
 * prefix) from the start, and for files a fsync or fdatasync rule's PREFIX
 * covers while the rule is there.
 *
 * TERN_FAULTS_JOURNAL=FILE records, for the files under TERN_FAULTS_TRACK, every
 * write and every sync in the order they happen, for a test that simulates a
 * power failure (tests/crash/crash.py):
 *
 *     w OFFSET LENGTH PATH     a pwrite/pwritev of LENGTH octets returned
 *     S SEQ PATH               fsync/fdatasync number SEQ is called ...
 *     s SEQ PATH               ... and succeeded
 *
 * A sync makes durable every write whose "w" line comes before its "S" line;
 * what no sync covered may be lost (or torn) by a power failure.
 *
 * The shim calls nothing it intercepts; its own log writes go through
 * syscall(SYS_write). Thread-safe (one mutex).
 */
/* pwrite and pwrite64 (and the others) are defined apart below. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_RULES 32
#define MAX_FDS 65536
#define PATH_LEN 512

enum op { OP_FSYNC, OP_FDATASYNC, OP_WRITE, OP_PWRITE, OP_RENAME, OP_FALLOCATE, OP_COUNT };

static const char *const op_names[OP_COUNT] = {"fsync",  "fdatasync", "write",
                                               "pwrite", "rename",    "fallocate"};

/* One line of the control file. */
struct rule {
    enum op op;
    int err;               /* errno to fail with */
    char prefix[PATH_LEN]; /* path prefix; empty: any file */
    long skip;             /* matching calls still to let through */
    long count;            /* failures still to inject; -1: no end */
};

/* An extent written since the file's last sync. */
struct extent {
    uint64_t off, len;
};

/* Writes tracked on one descriptor. */
struct fdtrack {
    char path[PATH_LEN]; /* the file they went to (a reused descriptor starts over) */
    struct extent *ext;
    size_t n, cap;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static size_t nrules;
static struct stat ctl_seen;        /* the control file as last read */
static bool ctl_read;               /* it was read at least once */
static struct fdtrack **track;      /* MAX_FDS entries, allocated on first use */
static int journal_fd = -2;         /* TERN_FAULTS_JOURNAL, opened on first use; -1: none */
static unsigned long long sync_seq; /* numbers the syncs in the journal */

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_posix_fallocate)(int, off_t, off_t);

static void *next_fn(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        static const char msg[] = "faults.so: a libc function is missing\n";
        syscall(SYS_write, 2, msg, sizeof msg - 1);
        abort();
    }
    return p;
}

static void load_real(void)
{
    if (real_fsync)
        return;
    real_fdatasync = next_fn("fdatasync");
    real_write = next_fn("write");
    real_pwrite = next_fn("pwrite64");
    real_pwritev = next_fn("pwritev64");
    real_rename = next_fn("rename");
    real_renameat = next_fn("renameat");
    real_posix_fallocate = next_fn("posix_fallocate64");
    real_fsync = next_fn("fsync");
}

/* Append a line to the log file (opened, written, closed each time: the
   test may read or remove it at any moment). */
static void log_line(const char *line)
{
    const char *path = getenv("TERN_FAULTS_LOG");
    if (!path || !*path)
        return;
    int fd =
        (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    size_t n = strlen(line);
    (void)syscall(SYS_write, fd, line, n);
    close(fd);
}

/* Append a line to the journal. mu held. */
static void journal(const char *line)
{
    if (journal_fd == -2) {
        const char *path = getenv("TERN_FAULTS_JOURNAL");
        journal_fd = path && *path ? (int)syscall(SYS_openat, AT_FDCWD, path,
                                                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)
                                   : -1;
    }
    if (journal_fd >= 0)
        (void)syscall(SYS_write, journal_fd, line, strlen(line));
}

static int parse_errno(const char *s)
{
    static const struct {
        const char *name;
        int err;
    } names[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}, {"OK", 0}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].err;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v > 0 && v < 4096 ? (int)v : EIO;
}

static const char *errno_name(int err)
{
    switch (err) {
    case EIO:
        return "EIO";
    case ENOSPC:
        return "ENOSPC";
    case EDQUOT:
        return "EDQUOT";
    case EROFS:
        return "EROFS";
    case 0:
        return "OK";
    default:
        return "other";
    }
}

/* Read the control file again if it changed. mu held. */
static void refresh(void)
{
    const char *path = getenv("TERN_FAULTS");
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) {
        if (ctl_read) { /* removed: every fault is off */
            nrules = 0;
            ctl_read = false;
        }
        return;
    }
    if (ctl_read && st.st_ino == ctl_seen.st_ino && st.st_size == ctl_seen.st_size &&
        st.st_mtim.tv_sec == ctl_seen.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == ctl_seen.st_mtim.tv_nsec)
        return;
    ctl_seen = st;
    ctl_read = true;
    nrules = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[1024];
    while (nrules < MAX_RULES && fgets(line, sizeof line, f)) {
        char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
        if (!w || w[0] == '#')
            continue;
        struct rule r = {.count = 1};
        size_t i = 0;
        while (i < OP_COUNT && strcmp(w, op_names[i]) != 0)
            i++;
        if (i == OP_COUNT)
            continue;
        r.op = (enum op)i;
        w = strtok_r(NULL, " \t\r\n", &save);
        r.err = w ? parse_errno(w) : EIO;
        while ((w = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
            if (strncmp(w, "path=", 5) == 0)
                snprintf(r.prefix, sizeof r.prefix, "%s", w + 5);
            else if (strncmp(w, "skip=", 5) == 0)
                r.skip = strtol(w + 5, NULL, 10);
            else if (strncmp(w, "count=", 6) == 0)
                r.count = strtol(w + 6, NULL, 10);
        }
        rules[nrules++] = r;
    }
    fclose(f);
}

static void fd_path(int fd, char *out, size_t n)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, out, n - 1);
    out[k > 0 ? (size_t)k : 0] = '\0';
}

static bool covers(const struct rule *r, const char *path)
{
    return r->prefix[0] == '\0' || strncmp(path, r->prefix, strlen(r->prefix)) == 0;
}

/* Whether this call of op on path must fail; the errno to use in *err.
   mu held. */
static bool should_fail(enum op op, const char *path, int *err)
{
    for (size_t i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->op != op || r->count == 0 || !covers(r, path))
            continue;
        if (r->skip > 0) {
            r->skip--;
            continue;
        }
        if (r->count > 0)
            r->count--;
        *err = r->err;
        char line[PATH_LEN + 128];
        snprintf(line, sizeof line, "fault op=%s errno=%s path=%s\n", op_names[op],
                 errno_name(r->err), path);
        log_line(line);
        return true;
    }
    return false;
}

/* Whether writes to path are tracked (TERN_FAULTS_TRACK or a sync rule
   covers it). mu held. */
static bool tracked(const char *path)
{
    const char *always = getenv("TERN_FAULTS_TRACK");
    if (always && *always && strncmp(path, always, strlen(always)) == 0)
        return true;
    for (size_t i = 0; i < nrules; i++)
        if ((rules[i].op == OP_FSYNC || rules[i].op == OP_FDATASYNC) && covers(&rules[i], path))
            return true;
    return false;
}

/* The record of fd's writes to path, (re)started if fd was another file's. */
static struct fdtrack *track_of(int fd, const char *path)
{
    if (fd < 0 || fd >= MAX_FDS)
        return NULL;
    if (!track)
        track = calloc(MAX_FDS, sizeof *track);
    if (!track)
        return NULL;
    if (!track[fd])
        track[fd] = calloc(1, sizeof *track[fd]);
    struct fdtrack *t = track[fd];
    if (t && strcmp(t->path, path) != 0) {
        snprintf(t->path, sizeof t->path, "%s", path);
        t->n = 0;
    }
    return t;
}

static void track_write(int fd, const char *path, uint64_t off, uint64_t len)
{
    struct fdtrack *t = track_of(fd, path);
    if (!t || len == 0)
        return;
    if (t->n > 0 && t->ext[t->n - 1].off + t->ext[t->n - 1].len == off) {
        t->ext[t->n - 1].len += len;
        return;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        struct extent *e = realloc(t->ext, cap * sizeof *e);
        if (!e)
            return;
        t->ext = e;
        t->cap = cap;
    }
    t->ext[t->n++] = (struct extent){off, len};
}

/* A sync of fd ended: the tracked extents are either on disk or lost. */
static void track_synced(int fd, const char *path, bool lost)
{
    if (!track || fd < 0 || fd >= MAX_FDS || !track[fd])
        return;
    struct fdtrack *t = track_of(fd, path);
    for (size_t i = 0; lost && t && i < t->n; i++) {
        char line[PATH_LEN + 128];
        snprintf(line, sizeof line, "lost path=%s offset=%llu length=%llu\n", path,
                 (unsigned long long)t->ext[i].off, (unsigned long long)t->ext[i].len);
        log_line(line);
    }
    if (t)
        t->n = 0;
}

/* ---- the intercepted calls ------------------------------------------------ */

static int do_sync(int fd, enum op op)
{
    load_real();
    char path[PATH_LEN];
    fd_path(fd, path, sizeof path);
    int err = 0;
    pthread_mutex_lock(&mu);
    refresh();
    bool fail = should_fail(op, path, &err);
    if (fail)
        track_synced(fd, path, true);
    pthread_mutex_unlock(&mu);
    if (fail && err == 0)
        return 0; /* OK: a lie, journaled as a sync that never completed */
    if (fail) {
        errno = err;
        return -1;
    }
    char line[PATH_LEN + 64];
    unsigned long long seq = 0;
    pthread_mutex_lock(&mu);
    bool journaled = tracked(path);
    if (journaled) {
        seq = ++sync_seq;
        snprintf(line, sizeof line, "S %llu %s\n", seq, path);
        journal(line);
    }
    pthread_mutex_unlock(&mu);
    int r = op == OP_FSYNC ? real_fsync(fd) : real_fdatasync(fd);
    int saved = errno;
    pthread_mutex_lock(&mu);
    track_synced(fd, path, r != 0);
    if (journaled && r == 0) {
        snprintf(line, sizeof line, "s %llu %s\n", seq, path);
        journal(line);
    }
    pthread_mutex_unlock(&mu);
    errno = saved;
    return r;
}

int fsync(int fd)
{
    return do_sync(fd, OP_FSYNC);
}

int fdatasync(int fd)
{
    return do_sync(fd, OP_FDATASYNC);
}

/* Check a write-like call; returns an errno to fail with, or 0. Sets *track_it
   and fills path (PATH_LEN octets). */
static int check_write(int fd, enum op op, bool *track_it, char *path)
{
    load_real();
    fd_path(fd, path, PATH_LEN);
    int err = 0;
    pthread_mutex_lock(&mu);
    refresh();
    bool fail = should_fail(op, path, &err);
    *track_it = !fail && tracked(path);
    pthread_mutex_unlock(&mu);
    return fail ? err : 0;
}

static void note_write(int fd, const char *path, off_t off, ssize_t n)
{
    if (n <= 0)
        return;
    char line[PATH_LEN + 64];
    snprintf(line, sizeof line, "w %llu %llu %s\n", (unsigned long long)off, (unsigned long long)n,
             path);
    pthread_mutex_lock(&mu);
    track_write(fd, path, (uint64_t)off, (uint64_t)n);
    journal(line);
    pthread_mutex_unlock(&mu);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    bool t;
    char path[PATH_LEN];
    /* Sockets and pipes are left alone: only files can fail here. */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        load_real();
        return real_write(fd, buf, n);
    }
    int err = check_write(fd, OP_WRITE, &t, path);
    if (err) {
        errno = err;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    char path[PATH_LEN];
    bool t;
    int err = check_write(fd, OP_PWRITE, &t, path);
    if (err) {
        errno = err;
        return -1;
    }
    ssize_t r = real_pwrite(fd, buf, n, off);
    if (t)
        note_write(fd, path, off, r);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    char path[PATH_LEN];
    bool t;
    int err = check_write(fd, OP_PWRITE, &t, path);
    if (err) {
        errno = err;
        return -1;
    }
    ssize_t r = real_pwritev(fd, iov, cnt, off);
    if (t)
        note_write(fd, path, off, r);
    return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev(fd, iov, cnt, off);
}

static int check_path(const char *path, enum op op)
{
    load_real();
    char abs[PATH_LEN];
    if (path[0] == '/' || !getcwd(abs, sizeof abs))
        snprintf(abs, sizeof abs, "%s", path);
    else
        snprintf(abs + strlen(abs), sizeof abs - strlen(abs), "/%s", path);
    int err = 0;
    pthread_mutex_lock(&mu);
    refresh();
    bool fail = should_fail(op, abs, &err);
    pthread_mutex_unlock(&mu);
    return fail ? err : 0;
}

int rename(const char *from, const char *to)
{
    int err = check_path(from, OP_RENAME);
    if (err) {
        errno = err;
        return -1;
    }
    return real_rename(from, to);
}

int renameat(int dfd, const char *from, int tdfd, const char *to)
{
    char dir[PATH_LEN] = "", path[2 * PATH_LEN];
    if (from[0] != '/' && dfd != AT_FDCWD)
        fd_path(dfd, dir, sizeof dir);
    snprintf(path, sizeof path, "%s%s%s", dir, dir[0] ? "/" : "", from);
    int err = check_path(path, OP_RENAME);
    if (err) {
        errno = err;
        return -1;
    }
    return real_renameat(dfd, from, tdfd, to);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
    char path[PATH_LEN];
    bool t;
    int err = check_write(fd, OP_FALLOCATE, &t, path);
    if (err)
        return err; /* posix_fallocate returns the error number */
    return real_posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}
