/*
 * sandbox - Landlock and seccomp for `tern serve`; see sandbox.h and
 * docs/sandbox.md.
 *
 * Landlock (Linux 5.13 and later) is used through its three system calls
 * and <linux/landlock.h>; the ABI version the kernel reports decides which
 * rights are handled: 2 adds REFER (a file renamed into another directory,
 * which every Maildir delivery does: without it Landlock is left off), 3
 * TRUNCATE, 4 the TCP rights (Tern handles BIND_TCP and allows none: the
 * listeners are bound already; CONNECT_TCP is not handled, the relay and
 * the resolver connect anywhere), 5 IOCTL_DEV (no device ioctl), 6 the
 * scopes (no abstract unix socket or signal outside the process), 7 audit
 * logging of denials (left at the kernel's default: logged). Constants newer
 * than the build host's header are defined below with the kernel's values.
 *
 * Landlock restricts only the calling thread and the threads it creates
 * later. Tern's spool flusher and worker threads exist already, so the
 * main thread sends each of them (found in /proc/self/task) a real-time
 * signal whose handler sets no_new_privs and calls landlock_restrict_self
 * with the same ruleset, waits until every thread has reported, and then
 * restricts itself. seccomp has a flag for that (TSYNC): the filter is
 * loaded once for every thread, after Landlock.
 *
 * The seccomp filter is an allow-list built with libseccomp: the system
 * calls below whatever their arguments, a few only for some arguments
 * (socket families, ioctl requests, prctl options, clone of a thread),
 * clone3 answered ENOSYS (glibc then uses clone, whose flags a filter can
 * see), and everything else gets sandbox_seccomp_action: kill the process
 * (default), fail with EPERM, or log and allow.
 */
#include "sandbox/sandbox.h"

#include "core/log.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Built with a sanitizer: meson defines TERN_SANITIZE (b_sanitize), and gcc
   and clang say so for ASan themselves. */
#if defined(TERN_SANITIZE) || defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZER 1
#else
#define SANDBOX_SANITIZER 0
#endif

/* ---------------------------------------------------------------------
 * The plan (pure)
 */

bool sandbox_dirname(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    const char *d = ".";
    size_t n = 1;
    if (slash) {
        /* "a//b" -> "a"; "/b" -> "/" */
        const char *end = slash;
        while (end > path && end[-1] == '/')
            end--;
        if (end == path) {
            d = "/";
            n = 1;
        } else {
            d = path;
            n = (size_t)(end - path);
        }
    }
    if (n + 1 > outlen)
        return false;
    memcpy(out, d, n);
    out[n] = '\0';
    return true;
}

static void plan_add(struct sandbox_plan *p, const char *path, const char *file,
                     enum sandbox_access a, const char *why)
{
    p->v = xreallocarray(p->v, p->n + 1, sizeof *p->v);
    p->v[p->n++] = (struct sandbox_path){
        .path = xstrdup(path), .file = file ? xstrdup(file) : NULL, .access = a, .why = why};
}

/* A configured file read while Tern runs: its directory, read-only. */
static void plan_add_file_dir(struct sandbox_plan *p, const char *file, const char *why)
{
    if (!file || !*file)
        return;
    char dir[4096];
    if (!sandbox_dirname(file, dir, sizeof dir))
        return;
    plan_add(p, dir, file, SANDBOX_READ, why);
}

/* What glibc, OpenSSL, libunbound and the other libraries read while Tern
   serves. A missing one is skipped. */
static const struct {
    const char *path;
    enum sandbox_access access;
    const char *why;
} system_paths[] = {
    /* /etc as a whole, read-only: passwd and group (the control socket's
       peers), nsswitch.conf, localtime, ssl/certs (OpenSSL looks CA
       certificates up while verifying). useradd, vipw and
       update-ca-certificates replace these files by a rename, which a rule
       on each file would not follow (Landlock binds a rule to an inode).
       /etc/shadow stays protected by its permissions once root is dropped. */
    {"/etc", SANDBOX_READ, "libc and OpenSSL: passwd, group, nsswitch.conf, localtime, ssl"},
    {"/usr/share/zoneinfo", SANDBOX_READ, "libc: the time zone /etc/localtime links to"},
    {"/usr/lib/ssl", SANDBOX_READ, "OpenSSL: its default CA directory (links to /etc/ssl)"},
    {"/usr/share/ca-certificates", SANDBOX_READ, "CA certificates /etc/ssl/certs links to"},
    {"/usr/local/share/ca-certificates", SANDBOX_READ, "local CA certificates"},
    {"/usr/share/publicsuffix", SANDBOX_READ, "libpsl: the public suffix list"},
    {"/dev/null", SANDBOX_DEVICE, "libc"},
    {"/dev/urandom", SANDBOX_READ, "OpenSSL, libjansson: random seeds"},
    {"/dev/random", SANDBOX_READ, "OpenSSL: random seeds"},
};

/* What the sanitizer runtime reads: its reports list the mappings and
   symbolize from the executable and the libraries. */
static const struct {
    const char *path;
    const char *why;
} sanitizer_paths[] = {
    /* /proc, not /proc/self: LeakSanitizer's tracer, a clone of the process,
       reads /proc/PID/task of its parent */
    {"/proc", "sanitizer: /proc/self/maps, /proc/PID/task"},
    {"/proc/self/exe", "sanitizer: symbols of the executable"},
    {"/usr/lib", "sanitizer: symbols of the libraries"},
    {"/lib", "sanitizer: symbols of the libraries"},
    {"/lib64", "sanitizer: the dynamic linker"},
};

int sandbox_plan_build(const struct config *cfg, const char *config_file, unsigned flags,
                       struct sandbox_plan *plan)
{
    plan->n = 0;
    plan->v = NULL;
    /* written while serving */
    plan_add(plan, cfg->spool_dir, NULL, SANDBOX_WRITE, "spool_dir");
    plan_add(plan, cfg->maildir_root, NULL, SANDBOX_WRITE, "maildir_root");
    if (cfg->dmarc_report_dir)
        plan_add(plan, cfg->dmarc_report_dir, NULL, SANDBOX_WRITE, "dmarc_report_dir");
    char dir[4096];
    if (cfg->control_socket && sandbox_dirname(cfg->control_socket, dir, sizeof dir))
        plan_add(plan, dir, NULL, SANDBOX_SOCKET, "control_socket");
    if (cfg->log_target && strchr(cfg->log_target, '/') &&
        sandbox_dirname(cfg->log_target, dir, sizeof dir))
        plan_add(plan, dir, NULL, SANDBOX_LOG, "log_target");
    /* read while serving (SIGHUP, changed files, lookups) */
    plan_add_file_dir(plan, config_file, "the configuration file");
    plan_add_file_dir(plan, cfg->users_file, "users_file");
    plan_add_file_dir(plan, cfg->sender_login_maps, "sender_login_maps");
    plan_add_file_dir(plan, cfg->tls_cert_file, "tls_cert_file");
    plan_add_file_dir(plan, cfg->tls_key_file, "tls_key_file");
    plan_add_file_dir(plan, cfg->aliases_file, "aliases_file");
    plan_add_file_dir(plan, cfg->transport_file, "transport_file");
    plan_add_file_dir(plan, cfg->relayhost_auth_file, "relayhost_auth_file");
    plan_add_file_dir(plan, cfg->outbound_tls_ca_file, "outbound_tls_ca_file");
    plan_add_file_dir(plan, cfg->dns_trust_anchor, "dns_trust_anchor");
    if (cfg->dkim_key_dir)
        plan_add(plan, cfg->dkim_key_dir, NULL, SANDBOX_READ, "dkim_key_dir");
    for (size_t i = 0; i < sizeof system_paths / sizeof system_paths[0]; i++)
        plan_add(plan, system_paths[i].path, NULL, system_paths[i].access, system_paths[i].why);
    if (flags & SANDBOX_PLAN_SANITIZER)
        for (size_t i = 0; i < sizeof sanitizer_paths / sizeof sanitizer_paths[0]; i++)
            plan_add(plan, sanitizer_paths[i].path, NULL, SANDBOX_READ, sanitizer_paths[i].why);
    return 0;
}

void sandbox_plan_free(struct sandbox_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->v[i].path);
        free(plan->v[i].file);
    }
    free(plan->v);
    plan->v = NULL;
    plan->n = 0;
}

/* ---------------------------------------------------------------------
 * Landlock
 */

/* Rights and flags of ABI versions newer than Debian 12's header (the
   kernel's UAPI values). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* struct landlock_ruleset_attr as of ABI 6; older kernels are given the
   prefix they know (its size decides which fields they read). */
struct ll_ruleset_attr {
    uint64_t handled_access_fs;  /* ABI 1 */
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

#define LL_FS_V1                                                                                   \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR |                                 \
     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |   \
     LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)
/* Rights that apply to a file (not only to a directory). */
#define LL_FS_FILE                                                                                 \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)

static uint64_t access_rights(enum sandbox_access a)
{
    switch (a) {
    case SANDBOX_WRITE:
        return LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
               LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
               LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR |
               LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE;
    case SANDBOX_DEVICE:
        return LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE;
    case SANDBOX_LOG:
        return LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG;
    case SANDBOX_SOCKET:
        return LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_SOCK;
    case SANDBOX_READ:
    default:
        return LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    }
}

static int ll_create_ruleset(const struct ll_ruleset_attr *attr, size_t size, uint32_t flags)
{
    return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

static int ll_add_rule(int fd, int type, const void *attr)
{
    return (int)syscall(SYS_landlock_add_rule, fd, type, attr, 0);
}

/* Are a and b the same file? */
static bool same_inode(const struct stat *a, const char *b)
{
    struct stat st;
    return stat(b, &st) == 0 && st.st_dev == a->st_dev && st.st_ino == a->st_ino;
}

/* Add one path's rule; returns 1 when added, 0 when the path is absent or
   needs no right this ABI handles, -1 with err on failure. */
static int ll_add_path(int ruleset, const struct sandbox_path *sp, uint64_t handled, char *err,
                       size_t errlen)
{
    const char *path = sp->path;
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "cannot open %s (%s): %s", path, sp->why, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* A configured file directly in /: the file alone, not all of it. */
    if (sp->file && S_ISDIR(st.st_mode) && same_inode(&st, "/")) {
        close(fd);
        path = sp->file;
        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
            return 0;
        if (fstat(fd, &st) != 0) {
            close(fd);
            return 0;
        }
    }
    uint64_t rights = access_rights(sp->access) & handled;
    if (!S_ISDIR(st.st_mode))
        rights &= LL_FS_FILE;
    int added = 0;
    if (rights) {
        struct landlock_path_beneath_attr pb = {.allowed_access = rights, .parent_fd = fd};
        if (ll_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb) != 0) {
            snprintf(err, errlen, "cannot add a Landlock rule for %s (%s): %s", path, sp->why,
                     strerror(errno));
            close(fd);
            return -1;
        }
        added = 1;
        log_debug("event=sandbox_path path=%s access=%#llx why=\"%s\"", path,
                  (unsigned long long)rights, sp->why);
    }
    close(fd);
    return added;
}

/* The other threads of the process, each restricted by its own handler. */
#define TASKS_MAX 4096
#define TASKS_WAIT_MS 5000

enum task_state {
    TASK_SIGNALLED = 0, /* the signal is on its way */
    TASK_RESTRICTED,    /* the handler restricted the thread */
    TASK_FAILED,        /* the handler's landlock_restrict_self failed (err) */
    TASK_GONE,          /* the thread ended before its handler ran */
};

struct task {
    pid_t tid;        /* the thread */
    atomic_int state; /* enum task_state */
    atomic_int err;   /* errno of a failure */
};

static struct {
    int ruleset;              /* the ruleset every thread restricts itself with */
    atomic_size_t n;          /* tasks in v */
    struct task v[TASKS_MAX]; /* written by the main thread before it signals each */
} tasks;

static void on_restrict_signal(int signo)
{
    (void)signo;
    int saved = errno;
    pid_t self = (pid_t)syscall(SYS_gettid);
    int ok = syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
             syscall(SYS_landlock_restrict_self, tasks.ruleset, 0) == 0;
    int e = ok ? 0 : errno;
    size_t n = atomic_load(&tasks.n);
    for (size_t i = 0; i < n; i++) {
        if (tasks.v[i].tid == self) {
            atomic_store(&tasks.v[i].err, e);
            atomic_store(&tasks.v[i].state, ok ? TASK_RESTRICTED : TASK_FAILED);
            break;
        }
    }
    errno = saved;
}

static bool task_known(pid_t tid)
{
    size_t n = atomic_load(&tasks.n);
    for (size_t i = 0; i < n; i++)
        if (tasks.v[i].tid == tid)
            return true;
    return false;
}

static bool task_exists(pid_t tid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/task/%d", (int)tid);
    return access(p, F_OK) == 0;
}

/* Signal every thread not signalled yet; returns how many were, or -1. */
static int signal_new_tasks(int signo, pid_t self, char *err, size_t errlen)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        snprintf(err, errlen, "cannot list the threads in /proc/self/task: %s", strerror(errno));
        return -1;
    }
    int count = 0;
    struct dirent *de;
    pid_t pid = getpid();
    while ((de = readdir(d)) != NULL) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end || tid <= 0)
            continue;
        if ((pid_t)tid == self || task_known((pid_t)tid))
            continue;
        size_t i = atomic_load(&tasks.n);
        if (i >= TASKS_MAX) {
            snprintf(err, errlen, "more than %d threads", TASKS_MAX);
            closedir(d);
            return -1;
        }
        tasks.v[i].tid = (pid_t)tid;
        atomic_store(&tasks.v[i].state, TASK_SIGNALLED);
        atomic_store(&tasks.v[i].err, 0);
        atomic_store(&tasks.n, i + 1);
        if (syscall(SYS_tgkill, pid, (pid_t)tid, signo) != 0)
            atomic_store(&tasks.v[i].state, TASK_GONE);
        count++;
    }
    closedir(d);
    return count;
}

/* Restrict every other thread with ruleset; the caller then restricts itself. */
static int restrict_other_threads(int ruleset, char *err, size_t errlen)
{
    int signo = SIGRTMIN + 4;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_restrict_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(signo, NULL, &old) != 0 || old.sa_handler != SIG_DFL) {
        snprintf(err, errlen, "signal %d is in use: cannot restrict the other threads", signo);
        return -1;
    }
    tasks.ruleset = ruleset;
    atomic_store(&tasks.n, 0);
    if (sigaction(signo, &sa, NULL) != 0) {
        snprintf(err, errlen, "sigaction: %s", strerror(errno));
        return -1;
    }
    pid_t self = (pid_t)syscall(SYS_gettid);
    int rc = 0;
    /* A thread may start a thread while we look: look again until nothing is new. */
    for (;;) {
        int n = signal_new_tasks(signo, self, err, errlen);
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
    }
    int64_t deadline = now_mono_ms() + TASKS_WAIT_MS;
    size_t n = atomic_load(&tasks.n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct task *t = &tasks.v[i];
        while (atomic_load(&t->state) == TASK_SIGNALLED) {
            if (!task_exists(t->tid)) {
                atomic_store(&t->state, TASK_GONE);
                break;
            }
            if (now_mono_ms() > deadline) {
                snprintf(err, errlen, "thread %d did not restrict itself within %d ms", (int)t->tid,
                         TASKS_WAIT_MS);
                rc = -1;
                break;
            }
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (rc == 0 && atomic_load(&t->state) == TASK_FAILED) {
            snprintf(err, errlen, "thread %d: landlock_restrict_self: %s", (int)t->tid,
                     strerror(atomic_load(&t->err)));
            rc = -1;
        }
    }
    /* The handler stays: a signal still on its way to a thread must not kill
       the process (SIGRTMIN+4's default action); set it to ignored. */
    sa.sa_handler = rc == 0 ? SIG_IGN : on_restrict_signal;
    sigaction(signo, &sa, NULL);
    return rc;
}

/* Apply Landlock; *abi_out gets the ABI used (0: unsupported), *paths the
   rules added. Returns -1 with err when it failed half way. */
static int landlock_apply(const struct sandbox_plan *plan, int *abi_out, size_t *paths,
                          const char **why_not, char *err, size_t errlen)
{
    *abi_out = 0;
    *paths = 0;
    int abi = ll_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 0) {
        *why_not = errno == EOPNOTSUPP ? "disabled at boot" : "not in this kernel";
        return 0;
    }
    if (abi < 2) {
        /* ABI 1 refuses every rename into another directory (Maildir tmp/ to new/). */
        *why_not = "ABI 1 cannot allow Maildir renames";
        return 0;
    }
    struct ll_ruleset_attr attr = {0};
    size_t size = sizeof attr.handled_access_fs;
    attr.handled_access_fs = LL_FS_V1 | LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 4) {
        attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP;
        size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 5)
        attr.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    if (abi >= 6) {
        attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
        size = sizeof attr;
    }
    int rs = ll_create_ruleset(&attr, size, 0);
    if (rs < 0) {
        snprintf(err, errlen, "landlock_create_ruleset (ABI %d): %s", abi, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < plan->n; i++) {
        int r = ll_add_path(rs, &plan->v[i], attr.handled_access_fs, err, errlen);
        if (r < 0) {
            close(rs);
            return -1;
        }
        *paths += (size_t)r;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
        close(rs);
        return -1;
    }
    if (restrict_other_threads(rs, err, errlen) < 0) {
        close(rs);
        return -1;
    }
    if (syscall(SYS_landlock_restrict_self, rs, 0) != 0) {
        snprintf(err, errlen, "landlock_restrict_self: %s", strerror(errno));
        close(rs);
        return -1;
    }
    close(rs);
    *abi_out = abi;
    return 0;
}

/* ---------------------------------------------------------------------
 * seccomp
 */

/* Allowed whatever their arguments. Names unknown on this architecture
   (open, stat, ... exist on x86_64 only) are skipped. */
// clang-format off
const char *const sandbox_syscalls_allowed[] = {
    /* memory */
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise",
    /* threads, their synchronisation and end */
    "futex", "set_robust_list", "get_robust_list", "rseq", "gettid", "getpid", "sched_yield",
    "sched_getaffinity", "getcpu", "exit", "exit_group", "restart_syscall", "set_tid_address",
    /* signals (libevent's signal handling, glibc) */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    /* time */
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
    /* the event loop, libunbound's loop, wake-ups between threads */
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "poll", "ppoll", "select", "pselect6", "eventfd2", "pipe", "pipe2", "timerfd_create",
    "timerfd_settime", "timerfd_gettime",
    /* reading and writing descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "dup", "dup2", "dup3", "fcntl",
    /* files (which ones: Landlock's rules) */
    "open", "openat", "stat", "fstat", "lstat", "newfstatat", "statx", "fstatfs", "statfs",
    "getdents64", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd",
    "fsync", "fdatasync", "sync_file_range", "fallocate", "ftruncate", "fadvise64", "rename",
    "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "flock",
    /* sockets (socket and socketpair: below, for some families only) */
    "connect", "accept", "accept4", "bind", "getsockname", "getpeername", "setsockopt",
    "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    /* who and where we are */
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "getppid",
    "uname", "getrandom", "sysinfo", "getrusage", "getpriority", "getrlimit",
    NULL,
};

/* Added in sanitizer builds: LeakSanitizer stops the threads at exit with a
   ptrace-ing clone of the process, which lists /proc/PID/task with the old
   getdents; reports read /proc and may kill on error. */
static const char *const sanitizer_syscalls[] = {
    "clone", "ptrace", "wait4", "waitid", "kill", "tgkill", "prctl", "getdents",
    "sched_getparam", "sched_getscheduler", "getpgid", "capget", "setrlimit", "prlimit64",
    NULL,
};
// clang-format on

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned nargs,
                    const struct scmp_arg_cmp *args, char *err, size_t errlen)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not a system call of this architecture */
    int r = seccomp_rule_add_array(ctx, action, nr, nargs, args);
    if (r < 0) {
        snprintf(err, errlen, "seccomp rule for %s: %s", name, strerror(-r));
        return -1;
    }
    return 0;
}

static int add_allow(scmp_filter_ctx ctx, const char *name, char *err, size_t errlen)
{
    return add_rule(ctx, SCMP_ACT_ALLOW, name, 0, NULL, err, errlen);
}

/* One rule per value: the call is allowed when argument `arg` (masked)
   equals one of them. */
static int add_allow_values(scmp_filter_ctx ctx, const char *name, unsigned arg, uint64_t mask,
                            const uint64_t *values, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct scmp_arg_cmp c = {
            .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = values[i]};
        if (add_rule(ctx, SCMP_ACT_ALLOW, name, 1, &c, err, errlen) < 0)
            return -1;
    }
    return 0;
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif

static uint32_t seccomp_default_action(int action)
{
    switch (action) {
    case CONFIG_SECCOMP_ERRNO:
        return SCMP_ACT_ERRNO(EPERM);
    case CONFIG_SECCOMP_LOG:
        return SCMP_ACT_LOG;
    case CONFIG_SECCOMP_KILL:
    default:
        return SCMP_ACT_KILL_PROCESS;
    }
}

static int seccomp_apply(int action, char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(seccomp_default_action(action));
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init failed");
        return -1;
    }
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (r == 0 && action == CONFIG_SECCOMP_ERRNO)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1); /* refusals reach the audit log */
    if (r < 0) {
        snprintf(err, errlen, "seccomp_attr_set: %s", strerror(-r));
        seccomp_release(ctx);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && sandbox_syscalls_allowed[i]; i++)
        rc = add_allow(ctx, sandbox_syscalls_allowed[i], err, errlen);
    if (SANDBOX_SANITIZER)
        for (size_t i = 0; rc == 0 && sanitizer_syscalls[i]; i++)
            rc = add_allow(ctx, sanitizer_syscalls[i], err, errlen);
    /* sockets: unix (control, LMTP, syslog, nscd), IPv4 and IPv6; no netlink,
       no packet sockets */
    static const uint64_t families[] = {AF_UNIX, AF_INET, AF_INET6};
    if (rc == 0)
        rc = add_allow_values(ctx, "socket", 0, 0xffffffffu, families, 3, err, errlen);
    static const uint64_t unix_only[] = {AF_UNIX};
    if (rc == 0)
        rc = add_allow_values(ctx, "socketpair", 0, 0xffffffffu, unix_only, 1, err, errlen);
    /* ioctl: bytes waiting on a socket (libevent), non-blocking and
       close-on-exec flags, is-a-terminal (stdio), an interface's index
       (IPv6 scope names) */
    static const uint64_t ioctls[] = {FIONREAD, FIONBIO,    FIOCLEX, FIONCLEX,
                                      TCGETS,   TIOCGWINSZ, 0x8933 /* SIOCGIFINDEX */};
    if (rc == 0)
        rc = add_allow_values(ctx, "ioctl", 1, 0xffffffffu, ioctls, sizeof ioctls / sizeof *ioctls,
                              err, errlen);
    if (!SANDBOX_SANITIZER) {
        /* prctl: thread names and glibc's naming of its mappings only */
        static const uint64_t prctls[] = {PR_SET_NAME, PR_GET_NAME, PR_SET_VMA};
        if (rc == 0)
            rc = add_allow_values(ctx, "prctl", 0, 0xffffffffu, prctls, 3, err, errlen);
        /* clone: a thread (glibc's pthread_create), never a new process */
        static const uint64_t thread[] = {CLONE_THREAD};
        if (rc == 0) {
            struct scmp_arg_cmp c = {
                .arg = 0, .op = SCMP_CMP_MASKED_EQ, .datum_a = CLONE_THREAD, .datum_b = thread[0]};
            rc = add_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &c, err, errlen);
        }
        /* tgkill: a signal to a thread of this process only (raise, abort) */
        if (rc == 0) {
            struct scmp_arg_cmp c = {.arg = 0, .op = SCMP_CMP_EQ, .datum_a = (uint64_t)getpid()};
            rc = add_rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, &c, err, errlen);
        }
        /* prlimit64: read a limit, never set one */
        if (rc == 0) {
            struct scmp_arg_cmp c = {.arg = 2, .op = SCMP_CMP_EQ, .datum_a = 0};
            rc = add_rule(ctx, SCMP_ACT_ALLOW, "prlimit64", 1, &c, err, errlen);
        }
    }
    /* clone3: its flags are out of a filter's sight; ENOSYS makes glibc use clone */
    if (rc == 0)
        rc = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err, errlen);
    if (rc == 0) {
        r = seccomp_load(ctx);
        if (r < 0) {
            snprintf(err, errlen, "seccomp_load: %s", strerror(-r));
            rc = -1;
        }
    }
    seccomp_release(ctx);
    return rc;
}

/* ---------------------------------------------------------------------
 * Applying it
 */

static const char *action_name(int action)
{
    switch (action) {
    case CONFIG_SECCOMP_ERRNO:
        return "errno";
    case CONFIG_SECCOMP_LOG:
        return "log";
    default:
        return "kill";
    }
}

/* What glibc loads on first use, loaded while nothing is refused yet: the
   time zone, and the name service modules of nsswitch.conf (passwd and
   group: the control socket looks its peers up). */
static void warm_up(void)
{
    tzset();
    char buf[4096];
    struct passwd pw, *pwr = NULL;
    getpwuid_r(geteuid(), &pw, buf, sizeof buf, &pwr);
    struct group gr, *grr = NULL;
    getgrgid_r(getegid(), &gr, buf, sizeof buf, &grr);
}

/* The directory of each sanitizer log_path (ASAN_OPTIONS=log_path=DIR/NAME):
   its reports are files created there. */
static void plan_sanitizer_logs(struct sandbox_plan *plan)
{
    static const char *const vars[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        const char *p = v ? strstr(v, "log_path=") : NULL;
        if (!p)
            continue;
        p += strlen("log_path=");
        char path[4096], dir[4096];
        size_t n = strcspn(p, ": ");
        if (n == 0 || n >= sizeof path)
            continue;
        memcpy(path, p, n);
        path[n] = '\0';
        if (strcmp(path, "stderr") == 0 || strcmp(path, "stdout") == 0)
            continue;
        if (sandbox_dirname(path, dir, sizeof dir))
            plan_add(plan, dir, NULL, SANDBOX_LOG, vars[i]);
    }
}

/* sandbox_selftest: one file outside the rules, one system call outside the
   filter, each result logged. With sandbox_seccomp_action = kill the second
   ends the process (SIGSYS), which is what a test of it looks for. */
static void selftest(int action)
{
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        log_info("event=sandbox_selftest check=file path=/ result=allowed");
    } else {
        log_info("event=sandbox_selftest check=file path=/ result=denied error=\"%s\"",
                 strerror(e));
    }
    log_info("event=sandbox_selftest check=syscall syscall=personality action=%s",
             action_name(action));
    log_flush();
    /* personality(0xffffffff) only reads the process's execution domain */
    long r = syscall(SYS_personality, 0xffffffffUL);
    e = errno;
    if (r == -1)
        log_info("event=sandbox_selftest check=syscall syscall=personality result=denied "
                 "error=\"%s\"",
                 strerror(e));
    else
        log_info("event=sandbox_selftest check=syscall syscall=personality result=allowed");
}

int sandbox_apply(const struct config *cfg, const char *config_file, char *err, size_t errlen)
{
    if (!cfg->sandbox) {
        log_info("event=sandbox landlock=off seccomp=off reason=\"sandbox = no\"");
        return 0;
    }
    if (cfg->dmarc_report_dir && mkdir_p(cfg->dmarc_report_dir, 0750) < 0)
        log_warn("event=sandbox_mkdir dir=%s error=\"%s\"", cfg->dmarc_report_dir, strerror(errno));
    warm_up();
    struct sandbox_plan plan;
    sandbox_plan_build(cfg, config_file, SANDBOX_SANITIZER ? SANDBOX_PLAN_SANITIZER : 0, &plan);
    if (SANDBOX_SANITIZER)
        plan_sanitizer_logs(&plan);
    int abi = 0;
    size_t paths = 0;
    const char *why_not = NULL;
    int r = landlock_apply(&plan, &abi, &paths, &why_not, err, errlen);
    sandbox_plan_free(&plan);
    if (r < 0)
        return -1;
    if (seccomp_apply(cfg->sandbox_seccomp_action, err, errlen) < 0)
        return -1;
    if (abi > 0)
        log_info("event=sandbox landlock=abi%d seccomp=on seccomp_action=%s paths=%zu%s%s", abi,
                 action_name(cfg->sandbox_seccomp_action), paths,
                 abi >= 4 ? " tcp_bind=denied" : "", SANDBOX_SANITIZER ? " sanitizer=yes" : "");
    else
        log_info("event=sandbox landlock=unsupported reason=\"%s\" seccomp=on seccomp_action=%s%s",
                 why_not, action_name(cfg->sandbox_seccomp_action),
                 SANDBOX_SANITIZER ? " sanitizer=yes" : "");
    if (cfg->sandbox_selftest)
        selftest(cfg->sandbox_seccomp_action);
    return 0;
}
