/*
 * test_priv - unit tests of src/core/priv.c: user lookup, handing a tree to
 * a user (root's entries only, no symbolic link followed, no file with other
 * hard links), and the switch to another user in a child process, which must
 * not get root back. The tests that change owners or ids need root and are
 * skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/priv.h"

#define NOBODY_UID 65534
#define NOBODY_GID 65534

static void touch(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    close(fd);
}

static uid_t owner(const char *path)
{
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);
    return sb.st_uid;
}

static void test_lookup(void **state)
{
    (void)state;
    struct priv_user u;
    char err[256];
    memset(&u, 0xff, sizeof u);
    assert_int_equal(priv_user_lookup("root", &u, err, sizeof err), 1);
    assert_int_equal(u.uid, 0);
    assert_int_equal(u.gid, 0);
    assert_string_equal(u.name, "root");
    assert_int_equal(priv_user_lookup("no-such-user-tern-test", &u, err, sizeof err), 0);
    assert_int_equal(priv_user_lookup("", &u, err, sizeof err), 0);
    assert_int_equal(priv_user_lookup(NULL, &u, err, sizeof err), 0);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(priv_user_lookup(longname, &u, err, sizeof err), 0);
}

static void test_chown_tree(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    char top[] = "/tmp/tern-test-priv-XXXXXX", outside[] = "/tmp/tern-test-priv-out-XXXXXX";
    assert_non_null(mkdtemp(top));
    assert_non_null(mkdtemp(outside));
    char p[512], q[512];
    /* a tree of root's */
    snprintf(p, sizeof p, "%s/a", top);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/a/b", top);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/a/b/file", top);
    touch(p, 0600);
    /* a file outside, reached by a symbolic link and by a hard link */
    char secret[512];
    snprintf(secret, sizeof secret, "%s/secret", outside);
    touch(secret, 0600);
    snprintf(p, sizeof p, "%s/link", top);
    assert_int_equal(symlink(secret, p), 0);
    snprintf(p, sizeof p, "%s/dirlink", top);
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/hard", top);
    assert_int_equal(link(secret, p), 0);
    /* someone else's file */
    snprintf(p, sizeof p, "%s/theirs", top);
    touch(p, 0644);
    assert_int_equal(chown(p, 1234, 1234), 0);

    struct priv_chown_stats st;
    char err[512];
    assert_int_equal(priv_chown_tree(top, NOBODY_UID, NOBODY_GID, false, &st, err, sizeof err), 0);
    assert_int_equal(owner(top), NOBODY_UID);
    snprintf(p, sizeof p, "%s/a", top);
    assert_int_equal(owner(p), NOBODY_UID);
    snprintf(p, sizeof p, "%s/a/b/file", top);
    assert_int_equal(owner(p), NOBODY_UID);
    assert_int_equal(owner(secret), 0); /* neither link led there */
    assert_int_equal(owner(outside), 0);
    snprintf(p, sizeof p, "%s/link", top);
    assert_int_equal(owner(p), 0); /* the link itself is left alone */
    snprintf(p, sizeof p, "%s/theirs", top);
    assert_int_equal(owner(p), 1234);
    assert_int_equal(st.changed, 4); /* top, a, a/b, a/b/file */
    assert_int_equal(st.skipped_links, 1);

    /* the top is the user's now: below it is walked only when asked */
    snprintf(q, sizeof q, "%s/a/new", top);
    touch(q, 0600);
    assert_int_equal(priv_chown_tree(top, NOBODY_UID, NOBODY_GID, false, &st, err, sizeof err), 0);
    assert_int_equal(owner(q), 0);
    assert_int_equal(st.changed, 0);
    assert_int_equal(priv_chown_tree(top, NOBODY_UID, NOBODY_GID, true, &st, err, sizeof err), 0);
    assert_int_equal(owner(q), NOBODY_UID);
    assert_int_equal(st.changed, 1);

    /* errors name the path */
    snprintf(p, sizeof p, "%s/missing", top);
    assert_int_equal(priv_chown_tree(p, NOBODY_UID, NOBODY_GID, true, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing"));
    /* a symbolic link as the top is refused */
    snprintf(p, sizeof p, "%s/dirlink", top);
    assert_int_equal(priv_chown_tree(p, NOBODY_UID, NOBODY_GID, true, &st, err, sizeof err), -1);
    assert_int_equal(owner(outside), 0);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", top, outside);
    assert_int_equal(system(cmd), 0);
}

/* In a child: switch to nobody, then check the ids, that root cannot be had
   back, and that a file only root may read cannot be read. Exit status 0 when
   all holds, else the number of the first check that failed. */
static int child_drop(const char *secret)
{
    struct priv_user u = {NOBODY_UID, NOBODY_GID, "nobody"};
    char err[256];
    if (priv_drop(&u, err, sizeof err) != 0) {
        fprintf(stderr, "priv_drop: %s\n", err);
        return 1;
    }
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || r != NOBODY_UID || e != NOBODY_UID || s != NOBODY_UID)
        return 2;
    if (getresgid(&rg, &eg, &sg) != 0 || rg != NOBODY_GID || eg != NOBODY_GID || sg != NOBODY_GID)
        return 3;
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0)
        return 4;
    gid_t groups[64];
    int n = getgroups(64, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == 0)
            return 5;
    if (open(secret, O_RDONLY) >= 0 || errno != EACCES)
        return 6;
    if (priv_can_switch())
        return 7;
    return 0;
}

static void test_drop(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    char secret[] = "/tmp/tern-test-priv-secret-XXXXXX";
    int fd = mkstemp(secret);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(secret, 0600), 0);
    assert_true(priv_can_switch());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_drop(secret));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    unlink(secret);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_chown_tree),
        cmocka_unit_test(test_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
