/*
 * test_sandbox - unit tests of the sandbox (src/sandbox/): the directory of
 * a path, the plan built from a configuration (which path, which access,
 * what an absent key leaves out), the names of the allowed system calls,
 * and the sandbox itself applied in a child process that already runs
 * threads: a thread started before sandbox_apply() is refused a file
 * outside the plan (the signal that restricts every thread reached it),
 * the spool and a Maildir rename across directories still work, a TCP
 * bind is refused, and a system call outside the filter fails with EPERM
 * (sandbox_seccomp_action = errno) or kills the process (kill).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "sandbox/sandbox.h"

static void test_dirname(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } t[] = {
        {"a/b/c", "a/b"}, {"c", "."},
        {"/c", "/"},      {"/etc/tern/users", "/etc/tern"},
        {"a//b", "a"},    {"//b", "/"},
        {"./users", "."}, {"/var/spool/tern/", "/var/spool/tern"},
        {"", "."},        {"../x/y", "../x"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_true(sandbox_dirname(t[i].in, out, sizeof out));
        if (strcmp(out, t[i].out) != 0)
            fail_msg("dirname(\"%s\") = \"%s\", want \"%s\"", t[i].in, out, t[i].out);
    }
    char small[4];
    assert_false(sandbox_dirname("/abcd/e", small, sizeof small));
    assert_true(sandbox_dirname("/ab/e", small, sizeof small));
    assert_string_equal(small, "/ab");
}

static struct config *parse(const char *text)
{
    struct config_diags d = {0};
    struct config *c = config_parse(text, strlen(text), "t.conf", &d);
    for (size_t i = 0; i < d.n; i++)
        print_message("%s:%u: %s\n", d.v[i].file, d.v[i].line, d.v[i].msg);
    config_diags_free(&d);
    assert_non_null(c);
    return c;
}

/* The entry of the plan for path with access a, or NULL. */
static const struct sandbox_path *find(const struct sandbox_plan *p, const char *path,
                                       enum sandbox_access a)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].path, path) == 0 && p->v[i].access == a)
            return &p->v[i];
    return NULL;
}

static bool has_path(const struct sandbox_plan *p, const char *path)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].path, path) == 0)
            return true;
    return false;
}

static void test_plan(void **state)
{
    (void)state;
    struct config *c = parse("mx_listen = 127.0.0.1:2525\n"
                             "local_domains = example.test\n"
                             "spool_dir = /var/spool/tern\n"
                             "maildir_root = /var/mail/vhosts\n"
                             "users_file = /etc/tern/users\n"
                             "sender_login_maps = /etc/tern/maps/senders\n"
                             "tls_cert_file = /etc/tern/tls/cert.pem\n"
                             "tls_key_file = /etc/tern/tls/key.pem\n"
                             "aliases_file = /etc/aliases\n"
                             "dns_trust_anchor = /usr/share/dns/root.key\n"
                             "dmarc_report_dir = /var/lib/tern/dmarc\n"
                             "control_socket = /run/tern/control\n"
                             "log_target = /var/log/tern/tern.log\n"
                             "dkim_key_dir = /etc/tern/dkim\n");
    struct sandbox_plan p;
    assert_int_equal(sandbox_plan_build(c, "/etc/tern/tern.conf", 0, &p), 0);
    assert_non_null(find(&p, "/var/spool/tern", SANDBOX_WRITE));
    assert_non_null(find(&p, "/var/mail/vhosts", SANDBOX_WRITE));
    assert_non_null(find(&p, "/var/lib/tern/dmarc", SANDBOX_WRITE));
    assert_non_null(find(&p, "/run/tern", SANDBOX_SOCKET));
    assert_non_null(find(&p, "/var/log/tern", SANDBOX_LOG));
    assert_non_null(find(&p, "/etc/tern/dkim", SANDBOX_READ));
    const struct sandbox_path *e = find(&p, "/etc/tern", SANDBOX_READ);
    assert_non_null(e);
    assert_non_null(e->file); /* the directory of a file */
    assert_non_null(find(&p, "/etc/tern/maps", SANDBOX_READ));
    assert_non_null(find(&p, "/etc/tern/tls", SANDBOX_READ));
    assert_non_null(find(&p, "/usr/share/dns", SANDBOX_READ));
    /* aliases in /etc: its directory, named with the file (sandbox_apply
       covers the file alone when the directory is /) */
    e = find(&p, "/etc", SANDBOX_READ);
    assert_non_null(e);
    assert_string_equal(e->file, "/etc/aliases");
    /* the system's files */
    assert_non_null(find(&p, "/etc", SANDBOX_READ));
    assert_non_null(find(&p, "/usr/share/publicsuffix", SANDBOX_READ));
    assert_non_null(find(&p, "/dev/null", SANDBOX_DEVICE));
    assert_non_null(find(&p, "/dev/urandom", SANDBOX_READ));
    /* nothing is writable but the spool, the Maildirs and the reports */
    for (size_t i = 0; i < p.n; i++)
        if (p.v[i].access == SANDBOX_WRITE && strcmp(p.v[i].path, "/var/spool/tern") != 0 &&
            strcmp(p.v[i].path, "/var/mail/vhosts") != 0 &&
            strcmp(p.v[i].path, "/var/lib/tern/dmarc") != 0)
            fail_msg("%s is writable (%s)", p.v[i].path, p.v[i].why);
    /* no sanitizer paths without the flag */
    assert_false(has_path(&p, "/proc"));
    sandbox_plan_free(&p);
    sandbox_plan_free(&p); /* twice: nothing left to free */
    sandbox_plan_free(NULL);

    assert_int_equal(sandbox_plan_build(c, "/etc/tern/tern.conf", SANDBOX_PLAN_SANITIZER, &p), 0);
    assert_non_null(find(&p, "/proc", SANDBOX_READ));
    sandbox_plan_free(&p);
    config_free(c);

    /* Absent keys leave their paths out; relative paths stay relative;
       log_target stderr and syslog have no directory. */
    c = parse("mx_listen = 127.0.0.1:2525\n"
              "local_domains = example.test\n"
              "spool_dir = var/spool\n"
              "control_socket = control\n"
              "log_target = syslog\n");
    assert_int_equal(sandbox_plan_build(c, "tern.conf", 0, &p), 0);
    assert_non_null(find(&p, "var/spool", SANDBOX_WRITE));
    assert_non_null(find(&p, ".", SANDBOX_SOCKET));
    e = find(&p, ".", SANDBOX_READ);
    assert_non_null(e);
    assert_string_equal(e->file, "tern.conf");
    for (size_t i = 0; i < p.n; i++) {
        assert_int_not_equal(p.v[i].access, SANDBOX_LOG);
        assert_true(strcmp(p.v[i].why, "users_file") != 0);
        assert_true(strcmp(p.v[i].why, "dmarc_report_dir") != 0);
        assert_true(strcmp(p.v[i].why, "tls_cert_file") != 0);
    }
    sandbox_plan_free(&p);
    config_free(c);
}

/* Every allowed name is a system call of this architecture, once. */
static void test_syscall_names(void **state)
{
    (void)state;
    size_t n = 0;
    for (size_t i = 0; sandbox_syscalls_allowed[i]; i++, n++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(sandbox_syscalls_allowed[i], sandbox_syscalls_allowed[j]) == 0)
                fail_msg("%s listed twice", sandbox_syscalls_allowed[i]);
#if defined(__x86_64__)
        if (seccomp_syscall_resolve_name(sandbox_syscalls_allowed[i]) == __NR_SCMP_ERROR)
            fail_msg("%s is not a system call of x86_64", sandbox_syscalls_allowed[i]);
#endif
    }
    assert_true(n > 50);
    /* what must never be there */
    static const char *const never[] = {
        "execve", "execveat",    "ptrace",      "mount",
        "setuid", "setgid",      "chroot",      "kexec_load",
        "bpf",    "init_module", "unshare",     "setns",
        "listen", "clone3",      "personality", "process_vm_writev"};
    for (size_t k = 0; k < sizeof never / sizeof never[0]; k++)
        for (size_t i = 0; sandbox_syscalls_allowed[i]; i++)
            if (strcmp(sandbox_syscalls_allowed[i], never[k]) == 0)
                fail_msg("%s is allowed", never[k]);
}

/* ---------------------------------------------------------------------
 * The sandbox applied, in a child process
 */

static char root[256];

static void mkfile(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static int setup_tree(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/tern-test-sandbox-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    char p[512];
    static const char *const dirs[] = {"etc", "spool", "mail", "mail/new", "mail/tmp", "outside"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        if (mkdir(p, 0700) != 0)
            return -1;
    }
    snprintf(p, sizeof p, "%s/etc/users", root);
    mkfile(p, "");
    snprintf(p, sizeof p, "%s/outside/secret", root);
    mkfile(p, "secret\n");
    return 0;
}

static int teardown_tree(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static long landlock_abi(void)
{
    return syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
}

static bool landlock_available(void)
{
    return landlock_abi() >= 2;
}

/* A thread started before the sandbox: it waits for the go, then tries the
   file outside the plan. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int go;
static int thread_errno;

static void *early_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go)
        pthread_cond_wait(&cond, &mu);
    pthread_mutex_unlock(&mu);
    char p[512];
    snprintf(p, sizeof p, "%s/outside/secret", root);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    thread_errno = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Exit statuses of the child, one per check that failed. */
enum {
    CHILD_OK = 0,
    CHILD_APPLY = 10,   /* sandbox_apply failed */
    CHILD_THREAD,       /* the early thread could read the outside file */
    CHILD_MAIN_OUTSIDE, /* the main thread could */
    CHILD_SPOOL,        /* could not write in the spool */
    CHILD_RENAME,       /* could not rename tmp/ -> new/ */
    CHILD_BIND,         /* a TCP bind was not refused */
    CHILD_SYSCALL,      /* a forbidden system call did not fail with EPERM */
    CHILD_CONFIG_DIR,   /* could not read a file next to users_file */
    CHILD_CONFIG_WRITE, /* could write next to users_file */
};

static int child(int action)
{
    char conf[2048];
    snprintf(conf, sizeof conf,
             "mx_listen = 127.0.0.1:2525\nlocal_domains = example.test\n"
             "spool_dir = %s/spool\nmaildir_root = %s/mail\nusers_file = %s/etc/users\n"
             "control_socket = %s/etc/control\ndkim_key_dir = %s/etc/dkim\n"
             "sandbox_seccomp_action = %s\n",
             root, root, root, root, root, action == CONFIG_SECCOMP_ERRNO ? "errno" : "kill");
    struct config_diags d = {0};
    struct config *cfg = config_parse(conf, strlen(conf), "t.conf", &d);
    config_diags_free(&d);
    if (!cfg)
        return CHILD_APPLY;
    long abi = landlock_abi(); /* asked before: the filter refuses landlock_* */
    pthread_t t;
    pthread_create(&t, NULL, early_thread, NULL);
    char cfile[512], err[512];
    snprintf(cfile, sizeof cfile, "%s/etc/tern.conf", root);
    if (sandbox_apply(cfg, cfile, err, sizeof err) < 0) {
        print_message("sandbox_apply: %s\n", err);
        return CHILD_APPLY;
    }
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    config_free(cfg);
    if (thread_errno != EACCES)
        return CHILD_THREAD;
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/outside/secret", root);
    if (open(p, O_RDONLY) >= 0 || errno != EACCES)
        return CHILD_MAIN_OUTSIDE;
    snprintf(p, sizeof p, "%s/etc/users", root);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return CHILD_CONFIG_DIR;
    close(fd);
    snprintf(p, sizeof p, "%s/etc/new", root);
    if (open(p, O_WRONLY | O_CREAT, 0600) >= 0)
        return CHILD_CONFIG_WRITE;
    snprintf(p, sizeof p, "%s/spool/seg", root);
    fd = open(p, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1 || fdatasync(fd) != 0)
        return CHILD_SPOOL;
    close(fd);
    snprintf(p, sizeof p, "%s/mail/tmp/m1", root);
    snprintf(q, sizeof q, "%s/mail/new/m1", root);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return CHILD_RENAME;
    close(fd);
    if (rename(p, q) != 0)
        return CHILD_RENAME;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (abi >= 4 && /* TCP rights came with ABI 4 */
        (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof sin) == 0 || errno != EACCES))
        return CHILD_BIND;
    close(s);
    /* every other check passed: say so, for the kill test */
    snprintf(p, sizeof p, "%s/spool/checked", root);
    fd = open(p, O_WRONLY | O_CREAT, 0600);
    if (fd < 0)
        return CHILD_SPOOL;
    close(fd);
    /* mount with no target: EFAULT when allowed, harmless either way */
    if (syscall(SYS_mount, NULL, NULL, NULL, 0, NULL) != -1 || errno != EPERM)
        return CHILD_SYSCALL;
    return CHILD_OK;
}

static int run_child(int action, int *status)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(child(action));
    if (waitpid(pid, status, 0) != pid)
        return -1;
    return 0;
}

static void test_apply_errno(void **state)
{
    (void)state;
    if (!landlock_available()) {
        print_message("Landlock ABI 2 or later is not available: skipped\n");
        skip();
    }
    int status;
    assert_int_equal(run_child(CONFIG_SECCOMP_ERRNO, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != CHILD_OK)
        fail_msg("child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* With kill, the forbidden system call (mount, the child's last check) ends
   the child with SIGSYS. */
static void test_apply_kill(void **state)
{
    (void)state;
    if (!landlock_available()) {
        print_message("Landlock ABI 2 or later is not available: skipped\n");
        skip();
    }
    int status;
    assert_int_equal(run_child(CONFIG_SECCOMP_KILL, &status), 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
        fail_msg("child: %s %d, want killed by SIGSYS", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    char p[512];
    snprintf(p, sizeof p, "%s/spool/checked", root);
    assert_int_equal(access(p, F_OK), 0); /* killed at the mount, not before */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirname),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_syscall_names),
        cmocka_unit_test_setup_teardown(test_apply_errno, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_apply_kill, setup_tree, teardown_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
