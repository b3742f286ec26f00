/*
 * priv - giving up root: looking up the user to run as, handing it the
 * directories it will write to, and becoming it for good.
 *
 * `tern serve` started as root binds its listeners and opens the files only
 * root may read (TLS and DKIM keys, the relayhost password, the spool), then
 * gives the directories it writes to run_user and switches to it. No logging
 * here: results and errors go back to the caller, which logs and decides.
 */
#ifndef TERN_CORE_PRIV_H
#define TERN_CORE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* How deep priv_chown_tree() goes below its top directory. */
#define PRIV_MAX_DEPTH 16

/* A user to run as. */
struct priv_user {
    uid_t uid;
    gid_t gid;     /* primary group */
    char name[64]; /* login name, for initgroups() */
};

/* Look user `name` up: 1 found (u filled), 0 no such user, -1 error (err). */
int priv_user_lookup(const char *name, struct priv_user *u, char *err, size_t errlen);

/* May this process change its user and group ids (root, or CAP_SETUID and
   CAP_SETGID in its effective set)? */
bool priv_can_switch(void);

/* What priv_chown_tree() did. */
struct priv_chown_stats {
    size_t changed;       /* directories and files given to the user */
    size_t skipped_links; /* root's regular files with other hard links, left alone */
};

/*
 * Give directory `path` to uid:gid if it belongs to root; then, when it did
 * belong to root or with `walk_always`, every directory and regular file below
 * it that belongs to root. Symbolic links are neither followed nor changed; a
 * regular file with more than one hard link is left alone (it could be a link
 * to a file elsewhere); what belongs to another user is left alone. At most
 * PRIV_MAX_DEPTH levels. Returns 0, or -1 with err ("path: reason").
 */
int priv_chown_tree(const char *path, uid_t uid, gid_t gid, bool walk_always,
                    struct priv_chown_stats *st, char *err, size_t errlen);

/*
 * Become u for good: u's supplementary groups (initgroups), then its group
 * and user ids (real, effective and saved). Then check that no id is root's
 * any more and that setuid(0) and setgid(0) fail. Returns 0, or -1 with err:
 * the process may be half-switched and must exit.
 */
int priv_drop(const struct priv_user *u, char *err, size_t errlen);

#endif
