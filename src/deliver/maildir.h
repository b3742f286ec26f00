/*
 * maildir - local delivery to a Maildir (the format Dovecot and other IMAP
 * servers read): write to tmp/, fsync the file, rename into new/, fsync new/
 * (so the delivery is durable before it is recorded as done).
 *
 * The mailbox of "local@domain" is <root>/<domain>/<local>/. The message file
 * is "Return-Path: <sender>" and "Delivered-To: <mailbox>" followed by the
 * message data as spooled (CRLF line endings). Blocking: call from a worker
 * thread only.
 */
#ifndef TERN_DELIVER_MAILDIR_H
#define TERN_DELIVER_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>

struct spool_body;

struct maildir_result {
    int error;          /* 0 on success, else an errno */
    bool permanent;     /* the failure will not go away by retrying */
    char path[1024];    /* the delivered file (success) */
    char text[256];     /* what went wrong, for the log and the DSN */
};

/* Deliver one message to one mailbox. */
void maildir_deliver(const char *root, const char *mailbox, const char *sender,
                     const char *hostname, struct spool_body *body, struct maildir_result *res);

#endif
