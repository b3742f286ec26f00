/*
 * spool - the durable message store: a journal of segment files with group
 * commit (see ../shared DESIGN "The spool").
 *
 * The spool directory holds segment files "seg-NNNNNNNNNNNNNNNN" (16 hex digits,
 * increasing), preallocated and appended to in order. Every record is
 * self-validating (record.h). Message data is appended as it arrives in CHUNK
 * records; at end of data an ENVELOPE record (sender, recipients and their
 * state, client facts) commits the message. Recipient outcomes and removals
 * are records too. One flusher thread calls fdatasync for everything appended
 * since its last pass and then reports every commit now durable; the owner of
 * the event loop is woken through `wake` and calls spool_run_completions() on
 * its thread, which runs the callbacks. At open, the segments are scanned and
 * the index of live messages is rebuilt; a torn tail is truncated.
 *
 * Threading: every function except spool_body_* and the wake hook is called
 * on the loop thread only. spool_body_* are safe from worker threads.
 * Ownership: the spool owns every envelope it returns; callers copy what they
 * keep past the next call that changes that message.
 */
#ifndef TERN_SPOOL_SPOOL_H
#define TERN_SPOOL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef uint64_t spool_id; /* queue id; printed as %016" PRIX64 " */

/* Recipient state, as recorded in the journal. */
enum spool_rcpt_state {
    SPOOL_RCPT_PENDING = 0, /* not yet attempted */
    SPOOL_RCPT_DEFERRED,    /* tried or waiting for a transport; retry later */
    SPOOL_RCPT_DELIVERED,   /* final: delivered */
    SPOOL_RCPT_BOUNCED,     /* final: permanent failure (a DSN is owed) */
    SPOOL_RCPT_EXPIRED,     /* final: gave up after the queue lifetime */
};

struct spool_rcpt {
    char *addr;        /* envelope recipient after alias expansion ("user@domain") */
    char *orcpt;       /* RCPT ORCPT= as sent ("rfc822;..." xtext), or NULL */
    char *dsn_orig;    /* the address the client gave, when alias expansion changed it, or NULL */
    unsigned notify;   /* SMTP_NOTIFY_* bits */
    uint8_t state;     /* enum spool_rcpt_state */
    uint32_t attempts; /* delivery attempts so far */
    int64_t next_attempt; /* unix seconds; 0 = as soon as possible */
    char *status;         /* last outcome: "dsn=4.4.1 reply text" or NULL */
};

struct spool_envelope {
    char *sender;      /* envelope sender, "" for the null sender */
    char *envid;       /* ENVID= or NULL */
    uint8_t ret;       /* enum smtp_ret */
    uint8_t body;      /* enum smtp_body */
    bool smtputf8;     /* SMTPUTF8 was given */
    bool held;         /* held by the operator: not delivered until released
                          (spool_set_held; kept across restarts) */
    char *helo;        /* client's HELO/EHLO name */
    char *client_addr; /* client IP address as text */
    char *listener;    /* "mx", "submission" or "submissions" */
    char *auth_user;   /* authenticated user or NULL */
    char *prefix;      /* header fields that go before the data when it is read
                          (spool_body_*): fields known only at the end of data,
                          such as Authentication-Results and DKIM-Signature;
                          CRLF-terminated lines, at most 65535 octets, or NULL */
    int64_t arrival;   /* unix seconds */
    uint64_t size;     /* octets of message data (what the CHUNK records hold) */
    size_t nrcpt;
    struct spool_rcpt *rcpt; /* nrcpt entries */
};

struct spool_config {
    const char *dir;       /* spool directory (created if missing, mode 0700) */
    uint64_t segment_size; /* bytes preallocated per segment, e.g. 64 MiB */
    /* Called from the flusher thread when completions are ready; the loop
       owner must then call spool_run_completions() on the loop thread. */
    void (*wake)(void *arg);
    void *wake_arg;
};

struct spool;

/* Result of a commit, given to its callback on the loop thread. error is 0 or an errno. */
typedef void (*spool_commit_cb)(void *arg, spool_id id, int error);

/*
 * Open the spool and recover its index. Returns NULL with a message in err on
 * failure (bad directory, unreadable segment). Starts the flusher thread.
 */
struct spool *spool_open(const struct spool_config *cfg, char *err, size_t errlen);
/* Flush everything, stop the flusher, close files. NULL does nothing. */
void spool_close(struct spool *sp);

/* A new queue id, unique for the life of the spool directory. */
spool_id spool_new_id(struct spool *sp);

/* Append message data for a message not yet committed. Data is split into
   records of at most 64 KiB. Returns 0 or -errno (disk full, I/O error). */
int spool_append(struct spool *sp, spool_id id, const void *data, size_t len);

/*
 * Commit: append the envelope, then call cb(arg, id, 0) on the loop thread once
 * it and all the message's data are on stable storage (or cb(arg, id, errno)
 * on a write/sync failure, in which case the message is not live). The message
 * becomes live (spool_get) immediately, but nobody may act on it before cb.
 * Returns 0, or -errno if the envelope could not even be appended (cb not called).
 */
int spool_commit(struct spool *sp, spool_id id, const struct spool_envelope *env,
                 spool_commit_cb cb, void *arg);

/* Forget data appended for a message that will not be committed (the records
   stay on disk as garbage and are ignored by recovery). */
void spool_abort(struct spool *sp, spool_id id);

/* The envelope of a live message, or NULL. */
const struct spool_envelope *spool_get(struct spool *sp, spool_id id);

/*
 * Record a recipient's new state. The record is appended now and becomes durable
 * with the next flush; the in-memory envelope is updated at once. status may be
 * NULL. Returns 0 or -errno.
 */
int spool_set_rcpt(struct spool *sp, spool_id id, size_t idx, enum spool_rcpt_state state,
                   uint32_t attempts, int64_t next_attempt, const char *status);

/* Remove a finished message (every recipient final). Its segments are freed
   once nothing live refers to them and the removal is durable. */
int spool_remove(struct spool *sp, spool_id id);

/*
 * Hold (held = true) or release a live message: a HOLD record is appended
 * (durable with the next flush, as a RCPT record) and the in-memory envelope
 * updated at once. Returns 0 or -errno (-ENOENT: not live).
 */
int spool_set_held(struct spool *sp, spool_id id, bool held);

/*
 * Call cb(arg, 0, error) on the loop thread once everything appended so far
 * (RCPT, HOLD and REMOVE records included) is on stable storage: the operator
 * is answered only then. Asks the flusher for a pass at once.
 */
void spool_sync(struct spool *sp, spool_commit_cb cb, void *arg);

/* Call fn for every live message, in queue id order. */
void spool_foreach(struct spool *sp,
                   void (*fn)(void *arg, spool_id id, const struct spool_envelope *env), void *arg);

/* Run the callbacks of commits now durable, free dead segments, and copy live
   messages forward out of mostly-dead segments. Loop thread. */
void spool_run_completions(struct spool *sp);
/* A sync failed: nothing appended since the last good sync can be trusted to
   reach the disk, so the spool fails every commit from then on and the
   daemon must stop (a restart recovers from the journal). */
bool spool_broken(struct spool *sp);

/* ---- message data for readers (thread-safe) ----------------------------- */
struct spool_body;
/* Take a reference on a live message's data (loop thread). NULL if not live. */
struct spool_body *spool_body_open(struct spool *sp, spool_id id);
/* Read up to n octets at offset off of the message data. Any thread.
   Returns octets read (0 at end) or -errno. */
ssize_t spool_body_read(struct spool_body *b, uint64_t off, void *buf, size_t n);
uint64_t spool_body_size(const struct spool_body *b);
/* Drop the reference (any thread). NULL does nothing. */
void spool_body_close(struct spool_body *b);

/* ---- statistics for logs and tests ---- */
struct spool_stats {
    size_t live_messages;
    size_t segments;
    uint64_t bytes_on_disk;
    uint64_t flushes;         /* fdatasync calls */
    uint64_t commits_flushed; /* commits made durable */
    /* what recovery at open found: */
    size_t recovery_skipped;        /* envelopes not accepted (damage, or a copy left incomplete) */
    size_t recovery_old_copies;     /* rests of copies whose start was in a freed segment */
    size_t recovery_damaged;        /* segments with an invalid record before the last sync */
    size_t recovery_unsynced_tears; /* torn writes past the last sync in an earlier segment */
};
void spool_get_stats(struct spool *sp, struct spool_stats *st);

#endif
