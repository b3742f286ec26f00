/*
 * sandbox - confine `tern serve` once everything it needs is open: Landlock
 * (the files and directories Tern may read or write, and no TCP bind) and a
 * seccomp filter that allows only the system calls Tern, glibc and its
 * libraries make while serving (libseccomp). docs/sandbox.md says what is
 * allowed and why, and how to debug a refusal.
 *
 * sandbox_plan_build() is pure (no I/O): from the configuration it lists
 * the paths and the access each needs, so the unit tests read the list
 * directly. sandbox_apply() opens those paths, restricts every thread of
 * the process (Landlock restricts only the thread that asks: the others are
 * made to ask too, see sandbox.c), installs the seccomp filter on every
 * thread (TSYNC) and logs one line, event=sandbox. It is called once, after
 * the listeners and the control socket are bound, the spool is open and
 * root privileges are dropped, just before the event loop runs.
 *
 * Ownership: a plan owns its path strings; sandbox_plan_free() releases them.
 */
#ifndef TERN_SANDBOX_SANDBOX_H
#define TERN_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* What a path of the plan is opened for. */
enum sandbox_access {
    SANDBOX_READ = 0, /* read files, list directories (configuration, certificates, system files) */
    SANDBOX_WRITE,    /* read, write, create, remove and rename files, make directories
                         (spool, Maildirs, DMARC reports) */
    SANDBOX_DEVICE,   /* a device read and written: /dev/null */
    SANDBOX_LOG,      /* write files and create them (the log file and its rotation) */
    SANDBOX_SOCKET,   /* remove and create unix sockets (the control socket's directory) */
};

/* One path of the plan. A directory covers everything beneath it; a path
   that does not exist when the sandbox is applied is left out. */
struct sandbox_path {
    char *path;                 /* as configured (relative paths are the working directory's) */
    char *file;                 /* when path is the directory of a configured file: that
                                   file, covered alone instead when the directory is /
                                   (the working directory may be); else NULL */
    enum sandbox_access access; /* what Tern does there */
    const char *why;            /* the configuration key or library that needs it */
};

struct sandbox_plan {
    size_t n;               /* paths in v */
    struct sandbox_path *v; /* in the order they were added; duplicates kept */
};

/* Flags of sandbox_plan_build. */
#define SANDBOX_PLAN_SANITIZER 1u /* built with ASan/UBSan: their runtime's paths too */

/*
 * The paths the configuration needs (config_file is the file it was read
 * from, read-only like the other configuration files). Files Tern may read
 * again while it runs (users_file, sender_login_maps, the TLS pair, ...) are
 * covered by their directory, so that a file replaced by a rename is still
 * readable; sandbox_apply() covers a file alone instead when its directory
 * is / (replace such a file and Tern must be restarted to read it).
 * Returns 0 (memory exhaustion panics, as everywhere in Tern).
 */
int sandbox_plan_build(const struct config *cfg, const char *config_file, unsigned flags,
                       struct sandbox_plan *plan);
void sandbox_plan_free(struct sandbox_plan *plan);

/* The directory part of path: "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/".
   Writes at most outlen octets with the NUL; returns false when it does not fit. */
bool sandbox_dirname(const char *path, char *out, size_t outlen);

/* The names of the system calls the seccomp filter allows whatever their
   arguments (a NULL-terminated list); those allowed for some arguments only
   are in sandbox.c. */
extern const char *const sandbox_syscalls_allowed[];

/*
 * Apply the sandbox the configuration asks for (sandbox, sandbox_seccomp_action,
 * sandbox_selftest). Returns 0 when it is in force (or sandbox = no), -1 with
 * err filled when it could not be applied as asked: the caller treats that
 * as fatal, since a server that meant to be confined must not run unconfined.
 * A kernel without Landlock, or whose Landlock lacks what Tern needs, is not
 * an error: the line says landlock=unsupported and seccomp still applies.
 */
int sandbox_apply(const struct config *cfg, const char *config_file, char *err, size_t errlen);

#endif
