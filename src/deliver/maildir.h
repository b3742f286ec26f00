/*
 * maildir - local delivery to a Maildir (the format Dovecot and other IMAP
 * servers read): write to tmp/, fsync the file, rename into new/, fsync new/
 * (so the delivery is durable before it is recorded as done).
 *
 * The mailbox of "local@domain" is <root>/<domain>/<local>/. The message file
 * is "Return-Path: <sender>" and "Delivered-To: <mailbox>" followed by the
 * message data as spooled (CRLF line endings).
 *
 * Deliveries come in batches: every file of a batch is written first, then
 * each is fsynced (the first fsync commits the file system journal for all of
 * them, so the others are cheap), renamed into new/, and every new/ directory
 * of the batch is fsynced once. Blocking: call from a worker thread only.
 */
#ifndef TERN_DELIVER_MAILDIR_H
#define TERN_DELIVER_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool_body;

/* One delivery of one message to one mailbox. */
struct maildir_delivery {
    /* input, owned by the caller */
    const char *root;        /* maildir_root */
    const char *mailbox;     /* "local@domain" */
    const char *sender;      /* envelope sender, "" for <> */
    const char *hostname;    /* for the unique file name */
    struct spool_body *body; /* the message data */
    /* result */
    int error;      /* 0 on success, else an errno */
    bool permanent; /* the failure will not go away by retrying */
    char text[256]; /* what went wrong, for the log and the DSN */
    /* private to maildir.c */
    int fd;
    char dir[512];
    char tmp[1024];
    char path[1024]; /* the delivered file (success) */
};

/* Deliver every entry of d[0..n); each gets its own result. */
void maildir_deliver_batch(struct maildir_delivery **d, size_t n);

/*
 * Remove what killed deliveries left in tmp/ (a delivery interrupted between
 * creating its file and the rename into new/) from every Maildir under root
 * (<root>/<domain>/<local>/tmp): files named by Tern on this host
 * ("...P<pid>Q<seq>.<hostname>") last changed before `started_us` (the
 * start of this run in microseconds since the epoch: no delivery of this run
 * is older), and, as the Maildir specification asks of readers,
 * any file neither read nor written for 36 hours. Blocking: call from a worker thread.
 * Returns the number of files removed (errors are skipped).
 */
size_t maildir_sweep_tmp(const char *root, const char *hostname, int64_t started_us);

#endif
