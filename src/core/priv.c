/*
 * priv - giving up root (see priv.h).
 *
 * priv_chown_tree() walks with file descriptors (openat with O_NOFOLLOW,
 * fstatat with AT_SYMLINK_NOFOLLOW) so that a symbolic link planted in a
 * directory the user owns never leads root's chown outside the tree, and it
 * leaves regular files with other hard links alone, so that a hard link to a
 * file elsewhere is not handed over either. priv_drop() is the classic order:
 * supplementary groups, then the group, then the user, each for the real,
 * effective and saved ids, and a check that root cannot be had back.
 */
#include "core/priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int priv_user_lookup(const char *name, struct priv_user *u, char *err, size_t errlen)
{
    if (!name || !*name || strlen(name) >= sizeof u->name)
        return 0;
    long bufsize = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t len = bufsize > 0 ? (size_t)bufsize : 16384;
    for (;;) {
        char *buf = malloc(len);
        if (!buf)
            return fail(err, errlen, "getpwnam_r: out of memory");
        struct passwd pw, *res = NULL;
        int r = getpwnam_r(name, &pw, buf, len, &res);
        if (r == ERANGE && len < (1u << 20)) {
            free(buf);
            len *= 2;
            continue;
        }
        if (r != 0 && r != ENOENT && r != ESRCH && r != EBADF && r != EPERM) {
            free(buf);
            return fail(err, errlen, "getpwnam_r(%s): %s", name, strerror(r));
        }
        if (!res) {
            free(buf);
            return 0;
        }
        u->uid = pw.pw_uid;
        u->gid = pw.pw_gid;
        snprintf(u->name, sizeof u->name, "%s", pw.pw_name);
        free(buf);
        return 1;
    }
}

bool priv_can_switch(void)
{
    if (geteuid() == 0)
        return true;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &h, data) != 0)
        return false;
    unsigned want = (1u << CAP_SETUID) | (1u << CAP_SETGID);
    return (data[0].effective & want) == want;
}

/* The walk below one directory (fd, which it does not close). */
struct walk {
    uid_t uid;
    gid_t gid;
    struct priv_chown_stats *st;
    char *err;
    size_t errlen;
};

static int walk_dir(struct walk *w, int dirfd, const char *path, unsigned depth)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(w->err, w->errlen, "%s: %s", path, strerror(e));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, name);
        struct stat sb;
        if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue;
            rc = fail(w->err, w->errlen, "%s: %s", sub, strerror(errno));
            break;
        }
        if (S_ISDIR(sb.st_mode)) {
            int cfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                if (errno == ENOENT)
                    continue;
                rc = fail(w->err, w->errlen, "%s: %s", sub, strerror(errno));
                break;
            }
            if (fstat(cfd, &sb) == 0 && sb.st_uid == 0) {
                if (fchown(cfd, w->uid, w->gid) != 0)
                    rc = fail(w->err, w->errlen, "%s: chown: %s", sub, strerror(errno));
                else
                    w->st->changed++;
            }
            if (rc == 0 && depth < PRIV_MAX_DEPTH)
                rc = walk_dir(w, cfd, sub, depth + 1);
            close(cfd);
        } else if (S_ISREG(sb.st_mode) && sb.st_uid == 0) {
            /* O_PATH: no open side effects; the checks and the chown are on
               the same inode */
            int ffd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (ffd < 0) {
                if (errno == ENOENT)
                    continue;
                rc = fail(w->err, w->errlen, "%s: %s", sub, strerror(errno));
                break;
            }
            if (fstat(ffd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == 0) {
                if (sb.st_nlink > 1)
                    w->st->skipped_links++;
                else if (fchownat(ffd, "", w->uid, w->gid, AT_EMPTY_PATH) != 0)
                    rc = fail(w->err, w->errlen, "%s: chown: %s", sub, strerror(errno));
                else
                    w->st->changed++;
            }
            close(ffd);
        }
    }
    if (rc == 0 && errno != 0)
        rc = fail(w->err, w->errlen, "%s: readdir: %s", path, strerror(errno));
    closedir(d);
    return rc;
}

int priv_chown_tree(const char *path, uid_t uid, gid_t gid, bool walk_always,
                    struct priv_chown_stats *st, char *err, size_t errlen)
{
    struct priv_chown_stats ignored;
    if (!st)
        st = &ignored;
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, "%s: %s", path, strerror(e));
    }
    bool was_root = sb.st_uid == 0;
    if (was_root) {
        if (fchown(fd, uid, gid) != 0) {
            int e = errno;
            close(fd);
            return fail(err, errlen, "%s: chown: %s", path, strerror(e));
        }
        st->changed++;
    }
    int rc = 0;
    if (was_root || walk_always) {
        struct walk w = {uid, gid, st, err, errlen};
        rc = walk_dir(&w, fd, path, 1);
    }
    close(fd);
    return rc;
}

int priv_drop(const struct priv_user *u, char *err, size_t errlen)
{
    if (initgroups(u->name, u->gid) != 0)
        return fail(err, errlen, "initgroups(%s): %s", u->name, strerror(errno));
    if (setresgid(u->gid, u->gid, u->gid) != 0)
        return fail(err, errlen, "setresgid(%u): %s", (unsigned)u->gid, strerror(errno));
    if (setresuid(u->uid, u->uid, u->uid) != 0)
        return fail(err, errlen, "setresuid(%u): %s", (unsigned)u->uid, strerror(errno));
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return fail(err, errlen, "getresuid: %s", strerror(errno));
    if (ru != u->uid || eu != u->uid || su != u->uid || rg != u->gid || eg != u->gid ||
        sg != u->gid)
        return fail(err, errlen, "ids are uid %u/%u/%u gid %u/%u/%u after the switch", (unsigned)ru,
                    (unsigned)eu, (unsigned)su, (unsigned)rg, (unsigned)eg, (unsigned)sg);
    if (u->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        return fail(err, errlen, "root could be had back after switching to uid %u",
                    (unsigned)u->uid);
    if (u->uid != 0 && u->gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
        return fail(err, errlen, "group root could be had back after switching to gid %u",
                    (unsigned)u->gid);
    return 0;
}
