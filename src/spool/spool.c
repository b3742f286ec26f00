/*
 * spool - the durable message store: segment files appended in order, one
 * flusher thread doing group commit, recovery of the index at open, freeing
 * and compaction of old segments. Interface and threading in spool.h, record
 * format in record.h, on-disk rules in docs/spool.md.
 *
 * Threads. The loop thread owns the index (messages), the segment table and
 * every segment's append offset and accounting; it does all pwrites. The
 * flusher thread owns nothing: under `mu` it takes the list of segments
 * written since its last pass, calls fdatasync on each outside the lock, then
 * marks the position reached durable and moves the commits waiting for it to
 * the `done` queue, and calls cfg->wake. It also unlinks segments the loop
 * has handed over, prepares the next segment ahead of time (create,
 * preallocate, fsync file and directory) so that rotation rarely blocks the
 * loop, and wakes the loop when a compaction pass falls due. A commit asks for
 * a pass at once; RCPT and REMOVE records, which nobody waits for, within
 * LAZY_FLUSH_MS (usually sooner, with a commit). spool_body_* run on any thread: they only pread on
 * segment fds kept open by their references, and touch reference counts under `mu`.
 *
 * Positions. `wpos` counts every octet appended since open; a waiter holds
 * the wpos just after its record, and it is durable once `dpos` (the wpos a
 * flusher pass started from, after its fdatasyncs) reaches it.
 *
 * Segment accounting. Every pending or live message keeps the list of
 * segments holding its current records (data chunks, ENVELOPE, later RCPT
 * records) with their octets; a segment's `nmsgs` counts those messages and
 * `live_bytes` their octets. When a message dies (removed, aborted) or is
 * copied forward, it leaves its segments and raises their `kill_pos` to the
 * position of the record that made it so. A segment is deleted when it is the
 * oldest one, not the current one, nmsgs is 0, kill_pos is durable and no
 * reference (body reader, flusher) holds it. Deleting only the oldest keeps a
 * REMOVE record on disk as long as any older ENVELOPE of its message.
 */
#include "spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "spool/record.h"

#define SEG_PREFIX "seg-"
#define SEG_NAME_LEN 20           /* "seg-" + 16 hex digits */
#define SEG_MIN_SIZE 4096         /* smallest segment_size accepted */
#define WRITE_BATCH 32            /* CHUNK records per pwritev */
#define READ_BLOCK (1u << 20)     /* recovery read size */
#define COMPACT_INTERVAL_MS 2000  /* at most one compaction pass per interval */
#define COMPACT_BUDGET (8u << 20) /* octets copied forward per pass */
#define COMPACT_CANDIDATES 4      /* segments examined per pass */
#define LAZY_FLUSH_MS 20          /* longest wait of a record nobody waits for */

/* How soon a record must reach the disk. */
enum flush_want {
    FLUSH_NONE, /* rides along with the next flush (message data) */
    FLUSH_LAZY, /* within LAZY_FLUSH_MS, or sooner with a commit (RCPT, REMOVE) */
    FLUSH_NOW,  /* someone waits for it (commit) */
};

/* One segment file. */
struct segment {
    uint64_t seq;                /* number in the file name */
    int fd;                      /* open for the life of the segment */
    uint64_t size;               /* file size (preallocated) */
    uint64_t end;                /* next append offset; end of valid records (loop thread) */
    uint64_t live_bytes;         /* octets of current records of pending/live messages (loop) */
    size_t nmsgs;                /* pending/live messages with current records here (loop) */
    uint64_t kill_pos;           /* position that must be durable before deletion (loop) */
    unsigned refs;               /* body extents and the flusher's dirty list (under mu) */
    bool dirty;                  /* on the flusher's dirty list (under mu) */
    bool damaged;                /* recovery found an invalid record before its end */
    enum record_result scan_res; /* recovery: how the scan ended (END: cleanly) */
};

/* Message data in one CHUNK record. */
struct extent {
    struct segment *seg;
    uint64_t off; /* file offset of the data (after the record header) */
    uint32_t len;
};

/* A segment holding some of a message's records, and how many octets. */
struct segref {
    struct segment *seg;
    uint64_t bytes;
};

/* The records of one copy of a message: its data extents, and the segments
   they and the records that follow (ENVELOPE, RCPT) are in. */
struct copyset {
    struct extent *ext;
    size_t next, extcap;
    uint64_t len; /* sum of extent lengths */
    struct segref *refs;
    size_t nref, refcap;
    bool broken;  /* recovery: chunk offsets were not contiguous */
    bool remnant; /* recovery: the copy's start was in a segment freed since (so
                     it was dead then: removed, or replaced by a later copy) */
};

enum msg_state {
    MSG_PENDING, /* data being appended, not committed */
    MSG_LIVE,    /* committed: in the queue */
};

struct msg {
    spool_id id;
    enum msg_state state;
    struct spool_envelope env; /* LIVE: owned */
    struct copyset cur;        /* current copy */
    struct copyset *pend;      /* recovery only: chunks since the last ENVELOPE */
    struct msg *next;          /* hash chain */
};

/* A callback owed once a position is durable. */
struct waiter {
    spool_id id;
    spool_commit_cb cb;
    void *arg;
    uint64_t pos;
    int err;
};

struct waitq {
    struct waiter *w;
    size_t head, len, cap; /* entries [head, len) */
};

struct spool {
    struct spool_config cfg;
    char *dir;
    int dirfd;

    /* ---- loop thread ---- */
    struct segment **segs; /* by seq; the last is cur */
    size_t nsegs, segcap;
    struct segment *cur;
    bool need_rotate; /* after a write or sync error: never append to that tail again */
    struct msg **buckets;
    size_t nbuckets, nmsg, nlive;
    spool_id last_id;
    uint8_t *scratch; /* encoding buffer */
    size_t scratch_cap;
    uint8_t *copybuf; /* RECORD_CHUNK_MAX octets for compaction */
    int64_t last_compact_ms;

    /* ---- shared, under mu ---- */
    pthread_mutex_t mu;
    pthread_cond_t cond;       /* flusher: work to do */
    pthread_cond_t spare_cond; /* loop: spare segment ready */
    pthread_t flusher;
    bool flusher_running;
    bool stop;
    bool flush_req;
    atomic_bool sync_failed; /* a pass failed: the loop rotates (read without mu) */
    bool broken;             /* a sync failed once: nothing is durable any more (mu) */
    uint64_t wpos, dpos;
    /* The journal position (segment, offset) of wpos and of dpos, for sync
       marks: records before (d_seq, d_end) are durable. */
    uint64_t w_seq, w_end, d_seq, d_end;
    struct segment **dirty;
    size_t ndirty, dirtycap;
    struct waitq waiting, done;
    struct segment **unlinks; /* handed to the flusher for deletion */
    size_t nunlink, unlinkcap;
    struct segment *spare; /* next segment, created ahead by the flusher */
    bool spare_req, spare_busy;
    uint64_t cur_seq;
    uint64_t mark_wpos; /* loop: wpos just after the last sync mark written */
    size_t recovery_skipped, recovery_old_copies; /* spool_stats: what recovery found */
    size_t recovery_damaged, recovery_unsynced_tears;
    int64_t wake_at_ms; /* monotonic time to wake the loop for compaction; 0: none */
    int64_t lazy_at_ms; /* monotonic time by which to flush lazy records; 0: none */
    uint64_t flushes, commits_flushed;
    unsigned bodies; /* open spool_body */
    bool closed;     /* spool_close done; freed with the last body */
};

struct body_ext {
    struct segment *seg;
    uint64_t off;  /* file offset */
    uint64_t moff; /* offset in the message */
    uint32_t len;
};

struct spool_body {
    struct spool *sp;
    uint64_t size;    /* prefix and data */
    char *prefix;     /* a copy of the envelope's prefix, or NULL */
    size_t prefixlen; /* its octets, read before the data */
    size_t n;
    struct body_ext ext[];
};

static void spool_free(struct spool *sp);
static uint64_t note_written(struct spool *sp, struct segment *seg, uint64_t bytes,
                             struct waiter *w, enum flush_want want);

/* ---- small helpers ----------------------------------------------------- */

static void seg_name(char *out, size_t n, uint64_t seq)
{
    snprintf(out, n, SEG_PREFIX "%016" PRIx64, seq);
}

static void lock(struct spool *sp)
{
    pthread_mutex_lock(&sp->mu);
}

static void unlock(struct spool *sp)
{
    pthread_mutex_unlock(&sp->mu);
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    *cap = c;
    return xrealloc(p, c * elem);
}

static void scratch_reserve(struct spool *sp, size_t n)
{
    if (n > sp->scratch_cap) {
        free(sp->scratch);
        sp->scratch = xmalloc(n);
        sp->scratch_cap = n;
    }
}

static void waitq_push(struct waitq *q, const struct waiter *w)
{
    if (q->head > 0 && q->head == q->len)
        q->head = q->len = 0;
    if (q->len == q->cap && q->head > q->cap / 2) {
        memmove(q->w, q->w + q->head, (q->len - q->head) * sizeof *q->w);
        q->len -= q->head;
        q->head = 0;
    }
    q->w = grow(q->w, &q->cap, q->len + 1, sizeof *q->w);
    q->w[q->len++] = *w;
}

/* ---- segments ---------------------------------------------------------- */

/* Create, preallocate and make durable a new segment file. */
static struct segment *segment_create(struct spool *sp, uint64_t seq, uint64_t size, int *err)
{
    char name[32];
    seg_name(name, sizeof name, seq);
    int fd = openat(sp->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int r = posix_fallocate(fd, 0, (off_t)size);
    if (r == 0 && fsync(fd) != 0)
        r = errno;
    if (r == 0 && fsync(sp->dirfd) != 0)
        r = errno;
    if (r != 0) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        *err = r;
        return NULL;
    }
    struct segment *seg = xcalloc(1, sizeof *seg);
    seg->seq = seq;
    seg->fd = fd;
    seg->size = size;
    return seg;
}

static void segment_free(struct segment *seg)
{
    if (seg) {
        close(seg->fd);
        free(seg);
    }
}

static void table_push(struct spool *sp, struct segment *seg)
{
    sp->segs = grow(sp->segs, &sp->segcap, sp->nsegs + 1, sizeof *sp->segs);
    sp->segs[sp->nsegs++] = seg;
}

/*
 * Make the next segment current, large enough for a record of `need` octets.
 * Takes the spare the flusher prepared when there is one.
 */
static int rotate(struct spool *sp, uint64_t need)
{
    uint64_t size = sp->cfg.segment_size > need ? sp->cfg.segment_size : need;
    if (sp->need_rotate) {
        /* Leaving after a write or sync error: best effort, end the segment
           with a zero header over whatever part of a record may be there, so
           that recovery sees a clean end rather than damage. */
        static const uint8_t zeros[RECORD_HEADER_SIZE];
        struct segment *old = sp->cur;
        if (old->end + RECORD_HEADER_SIZE <= old->size &&
            pwrite(old->fd, zeros, sizeof zeros, (off_t)old->end) == (ssize_t)sizeof zeros)
            note_written(sp, old, 0, NULL, FLUSH_NONE);
    }
    lock(sp);
    while (sp->spare_busy)
        pthread_cond_wait(&sp->spare_cond, &sp->mu);
    struct segment *spare = sp->spare;
    sp->spare = NULL;
    sp->spare_req = false; /* ours until the new current is installed */
    unlock(sp);

    struct segment *seg = NULL;
    if (spare && spare->size >= need) {
        seg = spare;
    } else {
        if (spare) /* too small for this record: left behind empty, freed later */
            table_push(sp, spare);
        uint64_t seq = (spare ? spare->seq : sp->cur->seq) + 1;
        int err = 0;
        seg = segment_create(sp, seq, size, &err);
        if (!seg) {
            log_error("event=spool_segment_create_failed seg=%016" PRIx64 " error=\"%s\"", seq,
                      strerror(err));
            if (spare)
                sp->cur = spare;
            lock(sp);
            sp->cur_seq = sp->cur->seq;
            sp->spare_req = true;
            pthread_cond_signal(&sp->cond);
            unlock(sp);
            return -err;
        }
    }
    table_push(sp, seg);
    sp->cur = seg;
    sp->need_rotate = false;
    lock(sp);
    sp->cur_seq = seg->seq;
    sp->spare_req = true;
    pthread_cond_signal(&sp->cond);
    unlock(sp);
    log_debug("event=spool_rotate seg=%016" PRIx64, seg->seq);
    return 0;
}

static int ensure_room(struct spool *sp, uint64_t need)
{
    if (atomic_load_explicit(&sp->sync_failed, memory_order_relaxed) &&
        atomic_exchange(&sp->sync_failed, false))
        sp->need_rotate = true;
    while (sp->need_rotate || sp->cur->end + need > sp->cur->size) {
        int r = rotate(sp, need);
        if (r)
            return r;
    }
    return 0;
}

/* pwritev everything, resuming after short writes. Returns 0 or -errno. */
static int write_full(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0) {
        ssize_t n = pwritev(fd, iov, cnt, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static void write_failed(struct spool *sp, int err)
{
    sp->need_rotate = true;
    log_error("event=spool_write_failed seg=%016" PRIx64 " offset=%" PRIu64 " error=\"%s\"",
              sp->cur->seq, sp->cur->end, strerror(-err));
}

/*
 * Account octets just written to seg: advance wpos, put seg on the dirty
 * list, optionally register a waiter and ask for a flush, all in one critical
 * section so that no flusher pass can fall between them. Returns the new wpos.
 */
static uint64_t note_written(struct spool *sp, struct segment *seg, uint64_t bytes,
                             struct waiter *w, enum flush_want want)
{
    lock(sp);
    sp->wpos += bytes;
    sp->w_seq = seg->seq;
    sp->w_end = seg->end;
    if (!seg->dirty) {
        seg->dirty = true;
        seg->refs++;
        sp->dirty = grow(sp->dirty, &sp->dirtycap, sp->ndirty + 1, sizeof *sp->dirty);
        sp->dirty[sp->ndirty++] = seg;
    }
    if (w) {
        w->pos = sp->wpos;
        waitq_push(&sp->waiting, w);
    }
    if (want == FLUSH_NOW && !sp->flush_req) {
        sp->flush_req = true;
        pthread_cond_signal(&sp->cond);
    } else if (want == FLUSH_LAZY && !sp->flush_req && sp->lazy_at_ms == 0) {
        sp->lazy_at_ms = now_mono_ms() + LAZY_FLUSH_MS;
        pthread_cond_signal(&sp->cond);
    }
    uint64_t pos = sp->wpos;
    unlock(sp);
    return pos;
}

/* ---- copysets: a message's records and the segments holding them -------- */

static void cs_touch(struct copyset *cs, struct segment *seg, uint64_t bytes)
{
    for (size_t i = cs->nref; i-- > 0;) {
        if (cs->refs[i].seg == seg) {
            cs->refs[i].bytes += bytes;
            seg->live_bytes += bytes;
            return;
        }
    }
    cs->refs = grow(cs->refs, &cs->refcap, cs->nref + 1, sizeof *cs->refs);
    cs->refs[cs->nref++] = (struct segref){seg, bytes};
    seg->nmsgs++;
    seg->live_bytes += bytes;
}

static void cs_add_extent(struct copyset *cs, struct segment *seg, uint64_t off, uint32_t len)
{
    cs->ext = grow(cs->ext, &cs->extcap, cs->next + 1, sizeof *cs->ext);
    cs->ext[cs->next++] = (struct extent){seg, off, len};
    cs->len += len;
}

/* Leave every segment of the set; kill_pos is the position that must be
   durable before they may go (0: nothing to wait for). */
static void cs_release(struct copyset *cs, uint64_t kill_pos)
{
    for (size_t i = 0; i < cs->nref; i++) {
        struct segment *seg = cs->refs[i].seg;
        seg->nmsgs--;
        seg->live_bytes -= cs->refs[i].bytes;
        if (kill_pos > seg->kill_pos)
            seg->kill_pos = kill_pos;
    }
    free(cs->ext);
    free(cs->refs);
    memset(cs, 0, sizeof *cs);
}

static bool cs_holds(const struct copyset *cs, const struct segment *seg)
{
    for (size_t i = 0; i < cs->nref; i++)
        if (cs->refs[i].seg == seg)
            return true;
    return false;
}

/* ---- index ------------------------------------------------------------- */

static size_t id_hash(spool_id id)
{
    uint64_t x = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29));
}

static struct msg *msg_find(struct spool *sp, spool_id id)
{
    for (struct msg *m = sp->buckets[id_hash(id) & (sp->nbuckets - 1)]; m; m = m->next)
        if (m->id == id)
            return m;
    return NULL;
}

static struct msg *msg_add(struct spool *sp, spool_id id)
{
    if (sp->nmsg >= sp->nbuckets) {
        size_t nb = sp->nbuckets * 2;
        struct msg **b = xcalloc(nb, sizeof *b);
        for (size_t i = 0; i < sp->nbuckets; i++) {
            struct msg *m = sp->buckets[i];
            while (m) {
                struct msg *next = m->next;
                size_t h = id_hash(m->id) & (nb - 1);
                m->next = b[h];
                b[h] = m;
                m = next;
            }
        }
        free(sp->buckets);
        sp->buckets = b;
        sp->nbuckets = nb;
    }
    struct msg *m = xcalloc(1, sizeof *m);
    m->id = id;
    m->state = MSG_PENDING;
    size_t h = id_hash(id) & (sp->nbuckets - 1);
    m->next = sp->buckets[h];
    sp->buckets[h] = m;
    sp->nmsg++;
    return m;
}

/* Drop a message from the index, leaving its segments at kill_pos. */
static void msg_kill(struct spool *sp, struct msg *m, uint64_t kill_pos)
{
    struct msg **pp = &sp->buckets[id_hash(m->id) & (sp->nbuckets - 1)];
    while (*pp != m)
        pp = &(*pp)->next;
    *pp = m->next;
    sp->nmsg--;
    cs_release(&m->cur, kill_pos);
    if (m->pend) {
        cs_release(m->pend, 0);
        free(m->pend);
    }
    if (m->state == MSG_LIVE) {
        record_envelope_free(&m->env);
        sp->nlive--;
    }
    free(m);
}

/* ---- writing records --------------------------------------------------- */

/*
 * Append one record to the current segment (rotating if it does not fit).
 * cs (may be NULL) gets the record's octets and, for a CHUNK, its extent.
 * w (may be NULL) is registered to be completed once the record is durable.
 */
static int write_record(struct spool *sp, uint8_t type, spool_id id, uint64_t offset,
                        const void *payload, uint32_t len, struct copyset *cs, struct waiter *w,
                        enum flush_want want, uint64_t *pos)
{
    uint64_t total = RECORD_HEADER_SIZE + (uint64_t)len;
    int r = ensure_room(sp, total);
    if (r)
        return r;
    struct segment *seg = sp->cur;
    uint8_t hdr[RECORD_HEADER_SIZE];
    struct record_header h = {.type = type, .len = len, .id = id, .offset = offset};
    record_header_encode(hdr, &h, payload);
    struct iovec iov[2] = {{hdr, RECORD_HEADER_SIZE}, {(void *)payload, len}};
    r = write_full(seg->fd, iov, len ? 2 : 1, seg->end);
    if (r) {
        write_failed(sp, r);
        return r;
    }
    uint64_t off = seg->end;
    seg->end += total;
    if (cs) {
        cs_touch(cs, seg, total);
        if (type == RECORD_CHUNK)
            cs_add_extent(cs, seg, off + RECORD_HEADER_SIZE, len);
    }
    uint64_t p = note_written(sp, seg, total, w, want);
    if (pos)
        *pos = p;
    return 0;
}

/* Encode env into sp->scratch. Returns its size or -1. */
static long encode_envelope(struct spool *sp, const struct spool_envelope *env)
{
    long n = record_envelope_encode(env, sp->scratch, sp->scratch_cap);
    if (n > 0 && (size_t)n > sp->scratch_cap) {
        scratch_reserve(sp, (size_t)n);
        n = record_envelope_encode(env, sp->scratch, sp->scratch_cap);
    }
    return n;
}

/* ---- the flusher thread ------------------------------------------------- */

/* One group commit: sync every segment written since the last pass, then
   complete the waiters up to the position the pass started from. Called and
   returns with mu held. */
static void flush_pass(struct spool *sp)
{
    sp->flush_req = false;
    sp->lazy_at_ms = 0;
    uint64_t target = sp->wpos, t_seq = sp->w_seq, t_end = sp->w_end;
    size_t n = sp->ndirty;
    struct segment **list = NULL;
    if (n > 0) {
        list = xmalloc(n * sizeof *list);
        memcpy(list, sp->dirty, n * sizeof *list);
        for (size_t i = 0; i < n; i++)
            list[i]->dirty = false;
        sp->ndirty = 0;
    }
    unlock(sp);

    int err = 0;
    uint64_t t0 = metrics_now_us();
    for (size_t i = 0; i < n; i++) {
        if (fdatasync(list[i]->fd) != 0) {
            err = errno;
            log_error("event=spool_sync_failed seg=%016" PRIx64 " error=\"%s\"", list[i]->seq,
                      strerror(err));
        }
    }

    lock(sp);
    for (size_t i = 0; i < n; i++)
        list[i]->refs--;
    free(list);
    if (n > 0)
        sp->flushes++;
    if (n > 0)
        metrics_observe(M_SPOOL_SYNC_SECONDS, metrics_now_us() - t0);
    if (err) {
        atomic_store(&sp->sync_failed, true);
        if (!sp->broken)
            log_error("event=spool_broken note=\"a sync failed: what the journal holds since "
                      "the last good sync may never reach the disk (the kernel drops the "
                      "failed pages), so nothing more is acknowledged; restart Tern\"");
        sp->broken = true;
    }
    /* After a failed sync, a later successful one proves nothing about the
       pages that failed (Linux marks them clean): the durable position stays
       where the last good pass left it, and every waiter fails, so no 250 and
       no deletion of an old segment rests on data that may be lost. */
    if (sp->broken) {
        err = err ? err : EIO;
        target = UINT64_MAX;
    } else if (target > sp->dpos) {
        sp->dpos = target;
        sp->d_seq = t_seq;
        sp->d_end = t_end;
    }
    size_t moved = 0;
    struct waitq *q = &sp->waiting;
    while (q->head < q->len && q->w[q->head].pos <= target) {
        struct waiter w = q->w[q->head++];
        w.err = err;
        if (!err && w.id != 0)
            sp->commits_flushed++;
        waitq_push(&sp->done, &w);
        moved++;
    }
    if (moved > 0)
        metrics_observe(M_SPOOL_COMMIT_BATCH, moved);
    if ((moved > 0 || n > 0) && sp->cfg.wake) {
        unlock(sp);
        sp->cfg.wake(sp->cfg.wake_arg);
        lock(sp);
    }
}

/* Remove a free segment's file; a damaged one is renamed aside
   ("corrupt-seg-...") for the operator instead. Returns 0 or an errno. */
static int drop_file(struct spool *sp, const struct segment *seg)
{
    char name[32], aside[48];
    seg_name(name, sizeof name, seg->seq);
    if (!seg->damaged)
        return unlinkat(sp->dirfd, name, 0) == 0 ? 0 : errno;
    snprintf(aside, sizeof aside, "corrupt-%s", name);
    if (renameat(sp->dirfd, name, sp->dirfd, aside) != 0)
        return errno;
    log_warn("event=spool_segment_set_aside seg=%016" PRIx64 " file=%s", seg->seq, aside);
    return 0;
}

/* Unlink one segment handed over by the loop. mu held. */
static void unlink_one(struct spool *sp)
{
    struct segment *seg = sp->unlinks[0];
    memmove(sp->unlinks, sp->unlinks + 1, (sp->nunlink - 1) * sizeof *sp->unlinks);
    sp->nunlink--;
    unlock(sp);
    int e = drop_file(sp, seg);
    if (e != 0)
        log_error("event=spool_unlink_failed seg=%016" PRIx64 " error=\"%s\"", seg->seq,
                  strerror(e));
    else if (fsync(sp->dirfd) != 0)
        log_error("event=spool_dir_sync_failed error=\"%s\"", strerror(errno));
    else
        log_info("event=spool_segment_freed seg=%016" PRIx64, seg->seq);
    segment_free(seg);
    lock(sp);
}

/* Prepare the segment after the current one. mu held. */
static void make_spare(struct spool *sp)
{
    sp->spare_req = false;
    sp->spare_busy = true;
    uint64_t seq = sp->cur_seq + 1;
    unlock(sp);
    int err = 0;
    struct segment *seg = segment_create(sp, seq, sp->cfg.segment_size, &err);
    if (!seg)
        log_warn("event=spool_segment_create_failed seg=%016" PRIx64 " error=\"%s\"", seq,
                 strerror(err));
    lock(sp);
    sp->spare = seg;
    sp->spare_busy = false;
    pthread_cond_broadcast(&sp->spare_cond);
}

static void *flusher_main(void *arg)
{
    struct spool *sp = arg;
    lock(sp);
    for (;;) {
        /* One flush pass, then at most one piece of upkeep, so that neither
           starves the other under a steady stream of commits. */
        bool did = false;
        int64_t now = sp->lazy_at_ms || sp->wake_at_ms ? now_mono_ms() : 0;
        bool unflushed = sp->wpos > sp->dpos || sp->waiting.head < sp->waiting.len;
        if (sp->flush_req || (sp->lazy_at_ms && now >= sp->lazy_at_ms) || (sp->stop && unflushed)) {
            flush_pass(sp);
            did = true;
        }
        if (sp->spare_req && !sp->spare && !sp->stop) {
            make_spare(sp);
            did = true;
        } else if (sp->nunlink > 0) {
            unlink_one(sp);
            did = true;
        }
        if (sp->wake_at_ms && now >= sp->wake_at_ms) {
            sp->wake_at_ms = 0;
            if (sp->cfg.wake) {
                unlock(sp);
                sp->cfg.wake(sp->cfg.wake_arg);
                lock(sp);
            }
            did = true;
        }
        if (did)
            continue;
        if (sp->stop)
            break;
        int64_t until = sp->lazy_at_ms;
        if (sp->wake_at_ms && (!until || sp->wake_at_ms < until))
            until = sp->wake_at_ms;
        if (!until) {
            pthread_cond_wait(&sp->cond, &sp->mu);
        } else {
            struct timespec ts = {.tv_sec = until / 1000,
                                  .tv_nsec = (long)(until % 1000) * 1000000};
            pthread_cond_timedwait(&sp->cond, &sp->mu, &ts);
        }
    }
    unlock(sp);
    return NULL;
}

/* ---- recovery ---------------------------------------------------------- */

/* A window over one segment file for the recovery scan. */
struct scan_reader {
    int fd;
    uint64_t fsize;
    uint8_t *buf;
    size_t cap;
    uint64_t boff; /* file offset of buf[0] */
    size_t blen;
};

/* Octets [off, off+n) of the file, which the caller knows exist. NULL and
 *err set on a read error. */
static const uint8_t *reader_get(struct scan_reader *r, uint64_t off, size_t n, int *err)
{
    if (off >= r->boff && off + n <= r->boff + r->blen)
        return r->buf + (off - r->boff);
    size_t want = n > READ_BLOCK ? n : READ_BLOCK;
    if (want > r->fsize - off)
        want = (size_t)(r->fsize - off);
    if (want > r->cap) {
        free(r->buf);
        r->buf = xmalloc(want);
        r->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            *err = k < 0 ? errno : EIO;
            r->blen = 0;
            return NULL;
        }
        got += (size_t)k;
    }
    r->boff = off;
    r->blen = got;
    return r->buf;
}

struct recovery {
    size_t skipped;        /* ENVELOPEs not accepted */
    size_t remnants;       /* copies whose start was in a freed segment */
    bool freed_before;     /* the segment being scanned has freed ones before it */
    uint64_t mark_seq;     /* the furthest sync mark read: the journal was durable */
    uint64_t mark_end;     /* up to this segment and offset (0, 0: no mark) */
    uint64_t trunc_seq;    /* last segment: where its valid records end ... */
    uint64_t trunc_off;    /* ... when invalid octets followed */
    const char *trunc_why; /* NULL: clean end */
};

static void rec_drop_pending(struct msg *m)
{
    if (m->pend) {
        cs_release(m->pend, 0);
        free(m->pend);
        m->pend = NULL;
    }
}

/* Apply one valid record found at seg:off during recovery. */
static void rec_apply(struct spool *sp, struct segment *seg, uint64_t off,
                      const struct record_header *h, const uint8_t *payload, struct recovery *rs)
{
    uint64_t total = RECORD_HEADER_SIZE + (uint64_t)h->len;
    if (h->type == RECORD_SYNCED) {
        if (h->id > rs->mark_seq || (h->id == rs->mark_seq && h->offset > rs->mark_end)) {
            rs->mark_seq = h->id;
            rs->mark_end = h->offset;
        }
        return;
    }
    if (h->id > sp->last_id)
        sp->last_id = h->id;
    struct msg *m = msg_find(sp, h->id);
    switch (h->type) {
    case RECORD_CHUNK: {
        if (!m)
            m = msg_add(sp, h->id);
        if (!m->pend)
            m->pend = xcalloc(1, sizeof *m->pend);
        struct copyset *cs = m->pend;
        if (h->offset == 0) {
            cs_release(cs, 0); /* a new copy starts: an interrupted one is garbage */
            cs->broken = cs->remnant = false;
        } else if (cs->broken || h->offset != cs->len) {
            if (!cs->broken && cs->len == 0 && rs->freed_before) {
                /* The first record of this copy is the middle of it, and
                   segments before this one were freed: its start was in one
                   of them, and a segment is freed only when nothing live is
                   left in it. The rest of an old copy, not a loss. */
                cs->remnant = true;
                rs->remnants++;
                log_debug("event=spool_remnant id=%016" PRIX64 " seg=%016" PRIx64 " offset=%" PRIu64
                          " note=\"the start of this copy was in a freed "
                          "segment\"",
                          h->id, seg->seq, h->offset);
            } else if (!cs->broken) {
                log_warn("event=spool_chunk_gap id=%016" PRIX64 " seg=%016" PRIx64
                         " offset=%" PRIu64 " expected=%" PRIu64,
                         h->id, seg->seq, h->offset, cs->len);
            }
            bool remnant = cs->remnant;
            cs_release(cs, 0);
            cs->broken = true;
            cs->remnant = remnant;
            break;
        }
        cs_touch(cs, seg, total);
        cs_add_extent(cs, seg, off + RECORD_HEADER_SIZE, h->len);
        break;
    }
    case RECORD_ENVELOPE: {
        struct spool_envelope env;
        if (!record_envelope_decode(payload, h->len, &env)) {
            log_error("event=spool_message_skipped id=%016" PRIX64 " seg=%016" PRIx64
                      " offset=%" PRIu64 " reason=bad_envelope",
                      h->id, seg->seq, off);
            rs->skipped++;
            if (m)
                rec_drop_pending(m);
            break;
        }
        bool broken = m && m->pend && m->pend->broken;
        uint64_t have = m && m->pend ? m->pend->len : 0;
        if (broken && m->pend->remnant) {
            log_debug("event=spool_remnant_skipped id=%016" PRIX64 " seg=%016" PRIx64
                      " offset=%" PRIu64 "%s",
                      h->id, seg->seq, off, m->state == MSG_LIVE ? " kept=previous_copy" : "");
            record_envelope_free(&env);
            rec_drop_pending(m);
            break;
        }
        if (broken || env.size != have) {
            log_error("event=spool_message_skipped id=%016" PRIX64 " seg=%016" PRIx64
                      " offset=%" PRIu64 " reason=size_mismatch size=%" PRIu64 " data=%" PRIu64
                      "%s",
                      h->id, seg->seq, off, env.size, have,
                      m && m->state == MSG_LIVE ? " kept=previous_copy" : "");
            rs->skipped++;
            record_envelope_free(&env);
            if (m)
                rec_drop_pending(m);
            break;
        }
        if (!m)
            m = msg_add(sp, h->id);
        struct copyset cs = {0};
        if (m->pend) {
            cs = *m->pend;
            free(m->pend);
            m->pend = NULL;
        }
        cs_touch(&cs, seg, total);
        cs_release(&m->cur, 0);
        m->cur = cs;
        if (m->state == MSG_LIVE) {
            record_envelope_free(&m->env);
        } else {
            m->state = MSG_LIVE;
            sp->nlive++;
        }
        m->env = env;
        break;
    }
    case RECORD_RCPT: {
        if (!m || m->state != MSG_LIVE)
            break;
        struct record_rcpt rc;
        if (!record_rcpt_decode(payload, h->len, &rc) || rc.idx >= m->env.nrcpt) {
            log_warn("event=spool_rcpt_ignored id=%016" PRIX64 " seg=%016" PRIx64 " offset=%" PRIu64
                     " reason=invalid",
                     h->id, seg->seq, off);
            break;
        }
        struct spool_rcpt *r = &m->env.rcpt[rc.idx];
        r->state = rc.state;
        r->attempts = rc.attempts;
        r->next_attempt = rc.next_attempt;
        free(r->status);
        r->status = rc.status ? xstrndup(rc.status, rc.status_len) : NULL;
        cs_touch(&m->cur, seg, total);
        break;
    }
    case RECORD_REMOVE:
        if (m)
            msg_kill(sp, m, 0);
        break;
    case RECORD_HOLD: {
        bool held;
        if (!m || m->state != MSG_LIVE)
            break;
        if (!record_hold_decode(payload, h->len, &held)) {
            log_warn("event=spool_hold_ignored id=%016" PRIX64 " seg=%016" PRIx64 " offset=%" PRIu64
                     " reason=invalid",
                     h->id, seg->seq, off);
            break;
        }
        m->env.held = held;
        cs_touch(&m->cur, seg, total);
        break;
    }
    default:
        break;
    }
}

/* Scan one segment's records into the index. Returns 0 or an errno (read
   error: the segment cannot be trusted, open fails). */
static int rec_scan(struct spool *sp, struct segment *seg, struct scan_reader *r,
                    struct recovery *rs)
{
    r->fd = seg->fd;
    r->fsize = seg->size;
    r->boff = 0;
    r->blen = 0;
    uint64_t off = 0;
    enum record_result res = RECORD_END;
    int err = 0;
    while (off < seg->size) {
        size_t avail =
            seg->size - off < RECORD_HEADER_SIZE ? (size_t)(seg->size - off) : RECORD_HEADER_SIZE;
        const uint8_t *p = reader_get(r, off, avail, &err);
        if (!p)
            return err;
        struct record_header h;
        res = record_header_decode(p, avail, &h);
        if (res == RECORD_OK && seg->size - off - RECORD_HEADER_SIZE < h.len)
            res = RECORD_SHORT;
        if (res != RECORD_OK)
            break;
        p = reader_get(r, off, RECORD_HEADER_SIZE + (size_t)h.len, &err);
        if (!p)
            return err;
        if (!record_crc_ok(p, &h, p + RECORD_HEADER_SIZE)) {
            res = RECORD_BAD_CRC;
            break;
        }
        rec_apply(sp, seg, off, &h, p + RECORD_HEADER_SIZE, rs);
        off += RECORD_HEADER_SIZE + (uint64_t)h.len;
        res = RECORD_END;
    }
    seg->end = off;
    seg->scan_res = res;
    return 0;
}

/* After recovery, overwrite with zeros whatever follows the last valid record
   of a segment at the tail of the journal, so that no stale record there can
   ever be read as valid (after new, shorter ones). Returns 0 or an errno. */
static int zero_tail(struct segment *seg, struct scan_reader *r, bool *zeroed)
{
    uint64_t last_nz = 0;
    bool any = false;
    int err = 0;
    r->fd = seg->fd;
    r->fsize = seg->size;
    r->boff = 0;
    r->blen = 0;
    for (uint64_t off = seg->end; off < seg->size;) {
        size_t n = seg->size - off < READ_BLOCK ? (size_t)(seg->size - off) : READ_BLOCK;
        const uint8_t *p = reader_get(r, off, n, &err);
        if (!p)
            return err;
        for (size_t i = n; i-- > 0;) {
            if (p[i]) {
                last_nz = off + i;
                any = true;
                break;
            }
        }
        off += n;
    }
    *zeroed = any;
    if (!any)
        return 0;
    static const uint8_t zeros[65536];
    for (uint64_t off = seg->end; off <= last_nz;) {
        size_t n = last_nz + 1 - off < sizeof zeros ? (size_t)(last_nz + 1 - off) : sizeof zeros;
        ssize_t k = pwrite(seg->fd, zeros, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EIO;
        off += (uint64_t)k;
    }
    return 0;
}

/* Delete free segments, oldest first, now (open) or via the flusher. */
static void free_segments(struct spool *sp, bool now)
{
    size_t k = 0;
    lock(sp);
    uint64_t dpos = sp->dpos;
    while (k < sp->nsegs) {
        struct segment *seg = sp->segs[k];
        if (seg == sp->cur || seg->nmsgs > 0 || seg->kill_pos > dpos || seg->refs > 0 || seg->dirty)
            break;
        if (now) {
            int e = drop_file(sp, seg);
            if (e != 0)
                log_error("event=spool_unlink_failed seg=%016" PRIx64 " error=\"%s\"", seg->seq,
                          strerror(e));
            segment_free(seg);
        } else {
            sp->unlinks = grow(sp->unlinks, &sp->unlinkcap, sp->nunlink + 1, sizeof *sp->unlinks);
            sp->unlinks[sp->nunlink++] = seg;
        }
        k++;
    }
    if (k > 0 && !now)
        pthread_cond_signal(&sp->cond);
    unlock(sp);
    if (k > 0) {
        memmove(sp->segs, sp->segs + k, (sp->nsegs - k) * sizeof *sp->segs);
        sp->nsegs -= k;
        if (now)
            fsync(sp->dirfd);
    }
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = (*(struct segment *const *)a)->seq, y = (*(struct segment *const *)b)->seq;
    return x < y ? -1 : x > y;
}

static bool parse_seg_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != SEG_NAME_LEN || strncmp(name, SEG_PREFIX, 4) != 0)
        return false;
    uint64_t v = 0;
    for (const char *p = name + 4; *p; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return true;
}

/* Open every segment file of the directory into the table, in order. */
static int load_segments(struct spool *sp, char *err, size_t errlen)
{
    int fd = dup(sp->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        snprintf(err, errlen, "%s: %s", sp->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        if (!parse_seg_name(de->d_name, &seq))
            continue;
        int sfd = openat(sp->dirfd, de->d_name, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (sfd < 0 || fstat(sfd, &st) != 0) {
            snprintf(err, errlen, "%s/%s: %s", sp->dir, de->d_name, strerror(errno));
            if (sfd >= 0)
                close(sfd);
            closedir(d);
            return -1;
        }
        struct segment *seg = xcalloc(1, sizeof *seg);
        seg->seq = seq;
        seg->fd = sfd;
        seg->size = (uint64_t)st.st_size;
        table_push(sp, seg);
    }
    closedir(d);
    if (sp->nsegs > 1)
        qsort(sp->segs, sp->nsegs, sizeof *sp->segs, cmp_seq);
    return 0;
}

/* zero_tail() for recovery: *zeroed is set when it wrote zeros, err filled
   on failure. Returns 0 or an errno. */
static int recover_zero_tail(struct spool *sp, struct segment *seg, struct scan_reader *r,
                             bool *zeroed, char *err, size_t errlen)
{
    bool z = false;
    int e = zero_tail(seg, r, &z);
    *zeroed = *zeroed || z;
    if (e)
        snprintf(err, errlen, "%s/" SEG_PREFIX "%016" PRIx64 ": %s", sp->dir, seg->seq,
                 strerror(e));
    return e;
}

/* Scan everything, rebuild the index, prepare the current segment. */
static int recover(struct spool *sp, char *err, size_t errlen)
{
    struct recovery rs = {0};
    struct scan_reader r = {0};
    int e = 0;
    for (size_t i = 0; i < sp->nsegs && !e; i++) {
        /* segments are numbered from 1 without gaps: fewer before this one
           than its number says means some were freed (or set aside) */
        rs.freed_before = sp->segs[i]->seq > (uint64_t)i + 1;
        e = rec_scan(sp, sp->segs[i], &r, &rs);
        if (e)
            snprintf(err, errlen, "%s/" SEG_PREFIX "%016" PRIx64 ": read: %s", sp->dir,
                     sp->segs[i]->seq, strerror(e));
    }
    if (e) {
        free(r.buf);
        return -1;
    }
    /* Uncommitted data and interrupted copies are garbage. */
    for (size_t b = 0; b < sp->nbuckets; b++) {
        struct msg *m = sp->buckets[b];
        while (m) {
            struct msg *next = m->next;
            rec_drop_pending(m);
            if (m->state == MSG_PENDING)
                msg_kill(sp, m, 0);
            m = next;
        }
    }
    /* The tail of the journal is the last segment holding any valid record and
       the (empty) ones after it, prepared by a rotation just before a crash.
       An invalid record there is a torn write: zero from it to the end. One
       further back is damage: logged, the rest of that segment ignored. */
    size_t tail = sp->nsegs > 0 ? sp->nsegs - 1 : 0;
    while (tail > 0 && sp->segs[tail]->end == 0)
        tail--;
    bool zeroed = false;
    for (size_t i = 0; i < sp->nsegs && !e; i++) {
        struct segment *seg = sp->segs[i];
        bool torn = seg->scan_res != RECORD_END;
        /* Before the furthest sync mark, everything was on disk once: an
           invalid record there is data lost after it was synced. */
        bool synced =
            torn && (seg->seq < rs.mark_seq || (seg->seq == rs.mark_seq && seg->end < rs.mark_end));
        if (synced)
            log_error("event=spool_synced_data_lost seg=%016" PRIx64 " offset=%" PRIu64
                      " reason=%s synced_to=%016" PRIx64 ":%" PRIu64
                      " note=\"the disk lost data it had reported synced\"",
                      seg->seq, seg->end, record_result_name(seg->scan_res), rs.mark_seq,
                      rs.mark_end);
        if (torn && i < tail && !synced && rs.mark_seq != 0) {
            /* Past the last sync: a write torn by a power failure while the
               writes after it (in later segments, a rotation does not sync)
               were not synced either. Nobody was told any of it is stored. */
            log_warn("event=spool_unsynced_tear seg=%016" PRIx64 " offset=%" PRIu64
                     " reason=%s synced_to=%016" PRIx64 ":%" PRIu64
                     " note=\"writes not yet synced when Tern stopped; nothing acknowledged\"",
                     seg->seq, seg->end, record_result_name(seg->scan_res), rs.mark_seq,
                     rs.mark_end);
            sp->recovery_unsynced_tears++;
            /* Zeroed like a torn tail: the segment now ends cleanly there, so
               a later start, whose marks are further on, does not take the
               same octets for synced data lost. */
            e = recover_zero_tail(sp, seg, &r, &zeroed, err, errlen);
            continue;
        }
        if (torn && i < tail) {
            seg->damaged = true;
            sp->recovery_damaged++;
            log_error("event=spool_segment_damaged seg=%016" PRIx64 " offset=%" PRIu64
                      " reason=%s note=records_after_this_point_ignored",
                      seg->seq, seg->end, record_result_name(seg->scan_res));
            continue;
        }
        if (torn && !rs.trunc_why) {
            rs.trunc_seq = seg->seq;
            rs.trunc_off = seg->end;
            rs.trunc_why = record_result_name(seg->scan_res);
        }
        if (torn || i + 1 == sp->nsegs)
            e = recover_zero_tail(sp, seg, &r, &zeroed, err, errlen);
    }
    if (e) {
        free(r.buf);
        return -1;
    }
    if (sp->nsegs > 0)
        sp->cur = sp->segs[sp->nsegs - 1];
    free(r.buf);
    /* What was read may have come from the page cache of a crashed process:
       make it durable before anything is done because of it. */
    for (size_t i = 0; i < sp->nsegs; i++) {
        if (fdatasync(sp->segs[i]->fd) != 0) {
            snprintf(err, errlen, "%s/" SEG_PREFIX "%016" PRIx64 ": fdatasync: %s", sp->dir,
                     sp->segs[i]->seq, strerror(errno));
            return -1;
        }
    }
    if (!sp->cur) {
        int ce = 0;
        sp->cur = segment_create(sp, 1, sp->cfg.segment_size, &ce);
        if (!sp->cur) {
            snprintf(err, errlen, "%s/" SEG_PREFIX "%016x: create: %s", sp->dir, 1, strerror(ce));
            return -1;
        }
        table_push(sp, sp->cur);
    }
    size_t found = sp->nsegs;
    free_segments(sp, true);
    char trunc[64] = "none";
    if (rs.trunc_why)
        snprintf(trunc, sizeof trunc, "%016" PRIx64 ":%" PRIu64, rs.trunc_seq, rs.trunc_off);
    sp->recovery_skipped = rs.skipped;
    sp->recovery_old_copies = rs.remnants;
    log_info("event=spool_recovered dir=%s messages=%zu segments=%zu freed=%zu skipped=%zu "
             "old_copies=%zu truncated_at=%s%s%s%s",
             sp->dir, sp->nlive, sp->nsegs, found - sp->nsegs, rs.skipped, rs.remnants, trunc,
             rs.trunc_why ? " reason=" : "", rs.trunc_why ? rs.trunc_why : "",
             zeroed ? " tail=zeroed" : "");
    return 0;
}

/* ---- open and close ----------------------------------------------------- */

/* Create the spool directory (0700) if missing, making the new entry durable. */
static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0)
        return errno == EEXIST ? 0 : -1;
    char *parent = xstrdup(dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(parent, ".");
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(parent);
    return 0;
}

struct spool *spool_open(const struct spool_config *cfg, char *err, size_t errlen)
{
    if (!cfg->dir || !*cfg->dir) {
        snprintf(err, errlen, "spool directory not set");
        return NULL;
    }
    if (cfg->segment_size < SEG_MIN_SIZE || cfg->segment_size > ((uint64_t)1 << 40)) {
        snprintf(err, errlen, "spool segment size %" PRIu64 " out of range", cfg->segment_size);
        return NULL;
    }
    (void)crc32c(0, NULL, 0); /* build the table before any other thread runs */
    if (make_dir(cfg->dir) != 0) {
        snprintf(err, errlen, "%s: %s", cfg->dir, strerror(errno));
        return NULL;
    }
    int dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "%s: %s", cfg->dir, strerror(errno));
        return NULL;
    }
    struct spool *sp = xcalloc(1, sizeof *sp);
    sp->cfg = *cfg;
    sp->dir = xstrdup(cfg->dir);
    sp->cfg.dir = sp->dir;
    sp->dirfd = dirfd;
    atomic_init(&sp->sync_failed, false);
    sp->nbuckets = 1024;
    sp->buckets = xcalloc(sp->nbuckets, sizeof *sp->buckets);
    sp->copybuf = xmalloc(RECORD_CHUNK_MAX);
    pthread_mutex_init(&sp->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the clock of now_mono_ms() */
    pthread_cond_init(&sp->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&sp->spare_cond, NULL);
    if (load_segments(sp, err, errlen) != 0 || recover(sp, err, errlen) != 0) {
        spool_free(sp);
        return NULL;
    }
    sp->cur_seq = sp->cur->seq;
    sp->spare_req = true;
    sp->last_compact_ms = now_mono_ms() - COMPACT_INTERVAL_MS;
    int e = pthread_create(&sp->flusher, NULL, flusher_main, sp);
    if (e != 0) {
        snprintf(err, errlen, "spool flusher thread: %s", strerror(e));
        spool_free(sp);
        return NULL;
    }
    sp->flusher_running = true;
    return sp;
}

/* Free everything. No thread may use sp any more. */
static void spool_free(struct spool *sp)
{
    for (size_t b = 0; b < sp->nbuckets; b++) {
        struct msg *m = sp->buckets[b];
        while (m) {
            struct msg *next = m->next;
            msg_kill(sp, m, 0);
            m = next;
        }
    }
    for (size_t i = 0; i < sp->nsegs; i++)
        segment_free(sp->segs[i]);
    for (size_t i = 0; i < sp->nunlink; i++)
        segment_free(sp->unlinks[i]);
    segment_free(sp->spare);
    free(sp->segs);
    free(sp->unlinks);
    free(sp->dirty);
    free(sp->waiting.w);
    free(sp->done.w);
    free(sp->buckets);
    free(sp->scratch);
    free(sp->copybuf);
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    pthread_cond_destroy(&sp->spare_cond);
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->mu);
    free(sp->dir);
    free(sp);
}

void spool_close(struct spool *sp)
{
    if (!sp)
        return;
    if (sp->flusher_running) {
        lock(sp);
        sp->stop = true;
        pthread_cond_signal(&sp->cond);
        unlock(sp);
        pthread_join(sp->flusher, NULL);
        sp->flusher_running = false;
    }
    /* Everything appended is durable now: report the last commits. */
    struct waitq done = sp->done;
    memset(&sp->done, 0, sizeof sp->done);
    for (size_t i = done.head; i < done.len; i++)
        if (done.w[i].cb)
            done.w[i].cb(done.w[i].arg, done.w[i].id, done.w[i].err);
    free(done.w);
    if (sp->spare) { /* empty and never used */
        char name[32];
        seg_name(name, sizeof name, sp->spare->seq);
        unlinkat(sp->dirfd, name, 0);
        segment_free(sp->spare);
        sp->spare = NULL;
    }
    lock(sp);
    sp->closed = true;
    bool last = sp->bodies == 0;
    unlock(sp);
    if (last)
        spool_free(sp);
}

/* ---- the interface ------------------------------------------------------ */

spool_id spool_new_id(struct spool *sp)
{
    uint64_t now = (uint64_t)now_real_us();
    spool_id id = sp->last_id + 1;
    if (now > id)
        id = now;
    sp->last_id = id;
    return id;
}

int spool_append(struct spool *sp, spool_id id, const void *data, size_t len)
{
    struct msg *m = msg_find(sp, id);
    if (m && m->state != MSG_PENDING)
        return -EEXIST;
    if (!m)
        m = msg_add(sp, id);
    if (id > sp->last_id)
        sp->last_id = id;
    const uint8_t *p = data;
    while (len > 0) {
        size_t first = len < RECORD_CHUNK_MAX ? len : RECORD_CHUNK_MAX;
        int r = ensure_room(sp, RECORD_HEADER_SIZE + first);
        if (r)
            return r;
        struct segment *seg = sp->cur;
        uint8_t hdrs[WRITE_BATCH][RECORD_HEADER_SIZE];
        struct iovec iov[2 * WRITE_BATCH];
        uint32_t lens[WRITE_BATCH];
        size_t nrec = 0;
        uint64_t bytes = 0, moff = m->cur.len;
        const uint8_t *q = p;
        size_t left = len;
        while (nrec < WRITE_BATCH && left > 0) {
            size_t n = left < RECORD_CHUNK_MAX ? left : RECORD_CHUNK_MAX;
            if (seg->end + bytes + RECORD_HEADER_SIZE + n > seg->size)
                break;
            struct record_header h = {
                .type = RECORD_CHUNK, .len = (uint32_t)n, .id = id, .offset = moff};
            record_header_encode(hdrs[nrec], &h, q);
            iov[2 * nrec] = (struct iovec){hdrs[nrec], RECORD_HEADER_SIZE};
            iov[2 * nrec + 1] = (struct iovec){(void *)q, n};
            lens[nrec++] = (uint32_t)n;
            bytes += RECORD_HEADER_SIZE + n;
            moff += n;
            q += n;
            left -= n;
        }
        r = write_full(seg->fd, iov, (int)(2 * nrec), seg->end);
        if (r) {
            write_failed(sp, r);
            return r;
        }
        for (size_t i = 0; i < nrec; i++) {
            cs_touch(&m->cur, seg, RECORD_HEADER_SIZE + lens[i]);
            cs_add_extent(&m->cur, seg, seg->end + RECORD_HEADER_SIZE, lens[i]);
            seg->end += RECORD_HEADER_SIZE + lens[i];
        }
        note_written(sp, seg, bytes, NULL, FLUSH_NONE);
        p = q;
        len = left;
    }
    return 0;
}

int spool_commit(struct spool *sp, spool_id id, const struct spool_envelope *env,
                 spool_commit_cb cb, void *arg)
{
    struct msg *m = msg_find(sp, id);
    if (m && m->state != MSG_PENDING)
        return -EEXIST;
    if (env->size != (m ? m->cur.len : 0))
        return -EINVAL;
    long n = encode_envelope(sp, env);
    if (n < 0)
        return -EINVAL;
    bool created = !m;
    if (!m)
        m = msg_add(sp, id);
    if (id > sp->last_id)
        sp->last_id = id;
    struct waiter w = {.id = id, .cb = cb, .arg = arg};
    int r = write_record(sp, RECORD_ENVELOPE, id, 0, sp->scratch, (uint32_t)n, &m->cur, &w,
                         FLUSH_NOW, NULL);
    if (r) {
        if (created)
            msg_kill(sp, m, 0);
        return r;
    }
    if (!record_envelope_decode(sp->scratch, (size_t)n, &m->env))
        panic("spool: envelope %016" PRIX64 " does not decode after encoding", id);
    m->state = MSG_LIVE;
    sp->nlive++;
    return 0;
}

void spool_abort(struct spool *sp, spool_id id)
{
    struct msg *m = msg_find(sp, id);
    if (m && m->state == MSG_PENDING)
        msg_kill(sp, m, 0);
}

const struct spool_envelope *spool_get(struct spool *sp, spool_id id)
{
    struct msg *m = msg_find(sp, id);
    return m && m->state == MSG_LIVE ? &m->env : NULL;
}

int spool_set_rcpt(struct spool *sp, spool_id id, size_t idx, enum spool_rcpt_state state,
                   uint32_t attempts, int64_t next_attempt, const char *status)
{
    struct msg *m = msg_find(sp, id);
    if (!m || m->state != MSG_LIVE)
        return -ENOENT;
    if (idx >= m->env.nrcpt || (unsigned)state > SPOOL_RCPT_EXPIRED)
        return -EINVAL;
    struct record_rcpt rc = {.idx = (uint32_t)idx,
                             .state = (uint8_t)state,
                             .attempts = attempts,
                             .next_attempt = next_attempt,
                             .status = status,
                             .status_len = status ? strlen(status) : 0};
    long n = record_rcpt_encode(&rc, sp->scratch, sp->scratch_cap);
    if (n > 0 && (size_t)n > sp->scratch_cap) {
        scratch_reserve(sp, (size_t)n);
        n = record_rcpt_encode(&rc, sp->scratch, sp->scratch_cap);
    }
    if (n < 0)
        return -EINVAL;
    int r = write_record(sp, RECORD_RCPT, id, 0, sp->scratch, (uint32_t)n, &m->cur, NULL,
                         FLUSH_LAZY, NULL);
    if (r)
        return r;
    struct spool_rcpt *rcpt = &m->env.rcpt[idx];
    rcpt->state = (uint8_t)state;
    rcpt->attempts = attempts;
    rcpt->next_attempt = next_attempt;
    free(rcpt->status);
    rcpt->status = status ? xstrdup(status) : NULL;
    return 0;
}

int spool_remove(struct spool *sp, spool_id id)
{
    struct msg *m = msg_find(sp, id);
    if (!m || m->state != MSG_LIVE)
        return -ENOENT;
    uint64_t pos;
    int r = write_record(sp, RECORD_REMOVE, id, 0, NULL, 0, NULL, NULL, FLUSH_LAZY, &pos);
    if (r)
        return r;
    msg_kill(sp, m, pos);
    return 0;
}

int spool_set_held(struct spool *sp, spool_id id, bool held)
{
    struct msg *m = msg_find(sp, id);
    if (!m || m->state != MSG_LIVE)
        return -ENOENT;
    uint8_t b = held ? 1 : 0;
    int r = write_record(sp, RECORD_HOLD, id, 0, &b, 1, &m->cur, NULL, FLUSH_LAZY, NULL);
    if (r)
        return r;
    m->env.held = held;
    return 0;
}

void spool_sync(struct spool *sp, spool_commit_cb cb, void *arg)
{
    /* A waiter at the current position, with message id 0 (never a queue id:
       ids count up from the time in microseconds). */
    struct waiter w = {.id = 0, .cb = cb, .arg = arg};
    lock(sp);
    w.pos = sp->wpos;
    waitq_push(&sp->waiting, &w);
    if (!sp->flush_req) {
        sp->flush_req = true;
        pthread_cond_signal(&sp->cond);
    }
    unlock(sp);
}

static int cmp_id(const void *a, const void *b)
{
    spool_id x = *(const spool_id *)a, y = *(const spool_id *)b;
    return x < y ? -1 : x > y;
}

void spool_foreach(struct spool *sp,
                   void (*fn)(void *arg, spool_id id, const struct spool_envelope *env), void *arg)
{
    size_t n = 0;
    spool_id *ids = xmalloc((sp->nlive ? sp->nlive : 1) * sizeof *ids);
    for (size_t b = 0; b < sp->nbuckets; b++)
        for (struct msg *m = sp->buckets[b]; m; m = m->next)
            if (m->state == MSG_LIVE)
                ids[n++] = m->id;
    qsort(ids, n, sizeof *ids, cmp_id);
    for (size_t i = 0; i < n; i++) {
        /* fn may remove messages: look each one up again */
        const struct spool_envelope *env = spool_get(sp, ids[i]);
        if (env)
            fn(arg, ids[i], env);
    }
    free(ids);
}

/* ---- completions, freeing, compaction ----------------------------------- */

/* A commit that did not become durable: the message is not in the queue.
   Best effort, a REMOVE record keeps it from coming back at the next start. */
static void commit_failed(struct spool *sp, spool_id id, int err)
{
    log_error("event=spool_commit_failed id=%016" PRIX64 " error=\"%s\"", id, strerror(err));
    struct msg *m = msg_find(sp, id);
    if (!m || m->state != MSG_LIVE)
        return;
    uint64_t pos = 0;
    if (write_record(sp, RECORD_REMOVE, id, 0, NULL, 0, NULL, NULL, FLUSH_LAZY, &pos) != 0)
        pos = 0;
    msg_kill(sp, m, pos);
}

/* Copy a live message's data and current state into the current segment. */
static int copy_forward(struct spool *sp, struct msg *m, uint64_t *copied)
{
    struct copyset nc = {0};
    uint64_t moff = 0;
    int r = 0;
    for (size_t i = 0; i < m->cur.next && !r; i++) {
        const struct extent *e = &m->cur.ext[i];
        size_t got = 0;
        while (got < e->len) {
            ssize_t k = pread(e->seg->fd, sp->copybuf + got, e->len - got, (off_t)(e->off + got));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                r = k < 0 ? -errno : -EIO;
                log_error("event=spool_read_failed id=%016" PRIX64 " seg=%016" PRIx64
                          " error=\"%s\"",
                          m->id, e->seg->seq, strerror(-r));
                break;
            }
            got += (size_t)k;
        }
        if (!r)
            r = write_record(sp, RECORD_CHUNK, m->id, moff, sp->copybuf, e->len, &nc, NULL,
                             FLUSH_NONE, NULL);
        moff += e->len;
    }
    uint64_t pos = 0;
    if (!r) {
        long n = encode_envelope(sp, &m->env);
        r = n < 0 ? -EINVAL
                  : write_record(sp, RECORD_ENVELOPE, m->id, 0, sp->scratch, (uint32_t)n, &nc, NULL,
                                 FLUSH_LAZY, &pos);
    }
    if (r) {
        cs_release(&nc, 0);
        return r;
    }
    *copied += nc.len;
    cs_release(&m->cur, pos);
    m->cur = nc;
    return 0;
}

/* Whether segment i is worth copying out of: mostly dead, or the oldest one
   with live data when the spool holds too many segments for what is live.
   *first_live tracks the oldest segment with live data (start with true). */
static bool compact_worth(const struct spool *sp, size_t i, bool crowded, bool *first_live)
{
    const struct segment *seg = sp->segs[i];
    if (seg == sp->cur || seg->nmsgs == 0)
        return false;
    bool force = crowded && *first_live;
    *first_live = false;
    return force || seg->live_bytes * 4 < seg->size;
}

/* Keep the segment count within twice what the live data needs, plus two. */
static bool crowded(const struct spool *sp)
{
    uint64_t live = 0;
    for (size_t i = 0; i < sp->nsegs; i++)
        live += sp->segs[i]->live_bytes;
    return sp->nsegs > 2 * (live / sp->cfg.segment_size + 1) + 2;
}

/* If some segment is still worth compacting, have the flusher wake the loop
   when the next pass is allowed, even if nothing else happens by then. */
static void compact_schedule(struct spool *sp)
{
    bool c = crowded(sp), first_live = true, any = false;
    for (size_t i = 0; i < sp->nsegs && !any; i++)
        any = compact_worth(sp, i, c, &first_live);
    if (!any)
        return;
    lock(sp);
    int64_t at = sp->last_compact_ms + COMPACT_INTERVAL_MS;
    if (sp->wake_at_ms == 0 || at < sp->wake_at_ms) {
        sp->wake_at_ms = at;
        pthread_cond_signal(&sp->cond);
    }
    unlock(sp);
}

/* Copy live messages out of mostly dead segments so that they can be freed. */
static void compact(struct spool *sp)
{
    int64_t now = now_mono_ms();
    if (now - sp->last_compact_ms < COMPACT_INTERVAL_MS) {
        compact_schedule(sp);
        return;
    }
    sp->last_compact_ms = now;
    bool is_crowded = crowded(sp), first_live = true;
    uint64_t copied = 0;
    size_t examined = 0;
    struct msg **list = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < sp->nsegs && copied < COMPACT_BUDGET; i++) {
        struct segment *seg = sp->segs[i];
        if (seg == sp->cur || examined >= COMPACT_CANDIDATES)
            break;
        bool force = is_crowded && first_live && seg->nmsgs > 0;
        if (!compact_worth(sp, i, is_crowded, &first_live))
            continue;
        examined++;
        lock(sp);
        unsigned refs = seg->refs;
        unlock(sp);
        if (refs > 0)
            continue; /* a reader holds it, or the flusher: next time */
        size_t n = 0;
        bool pending = false;
        for (size_t b = 0; b < sp->nbuckets && !pending; b++) {
            for (struct msg *m = sp->buckets[b]; m; m = m->next) {
                if (!cs_holds(&m->cur, seg))
                    continue;
                if (m->state != MSG_LIVE) {
                    pending = true; /* still being received: next time */
                    break;
                }
                list = grow(list, &cap, n + 1, sizeof *list);
                list[n++] = m;
            }
        }
        if (pending)
            continue;
        size_t moved = 0;
        uint64_t before = copied;
        for (size_t k = 0; k < n && copied < COMPACT_BUDGET; k++) {
            if (copy_forward(sp, list[k], &copied) != 0)
                break;
            moved++;
        }
        log_info("event=spool_compact seg=%016" PRIx64 " messages=%zu/%zu bytes=%" PRIu64 "%s",
                 seg->seq, moved, n, copied - before, force ? " reason=crowded" : "");
        if (moved < n)
            break;
    }
    free(list);
    compact_schedule(sp);
}

bool spool_broken(struct spool *sp)
{
    lock(sp);
    bool b = sp->broken;
    unlock(sp);
    return b;
}

/* After a pass made records other than the last mark durable, append a mark
   saying how far the journal is synced (see record.h). It rides along with
   the next flush; a pass that synced only the mark writes no new one. The
   mark is advice for recovery: a failure to write it is the next record's
   failure too, and changes nothing here. */
static void write_sync_mark(struct spool *sp)
{
    lock(sp);
    uint64_t dpos = sp->dpos, seq = sp->d_seq, end = sp->d_end;
    bool broken = sp->broken;
    unlock(sp);
    if (broken || seq == 0 || dpos <= sp->mark_wpos)
        return;
    uint64_t pos = 0;
    if (write_record(sp, RECORD_SYNCED, seq, end, NULL, 0, NULL, NULL, FLUSH_NONE, &pos) == 0)
        sp->mark_wpos = pos;
}

void spool_run_completions(struct spool *sp)
{
    lock(sp);
    struct waitq done = sp->done;
    memset(&sp->done, 0, sizeof sp->done);
    unlock(sp);
    for (size_t i = done.head; i < done.len; i++) {
        struct waiter *w = &done.w[i];
        if (w->err && w->id != 0)
            commit_failed(sp, w->id, w->err);
        if (w->cb)
            w->cb(w->arg, w->id, w->err);
    }
    free(done.w);
    write_sync_mark(sp);
    free_segments(sp, false);
    compact(sp);
}

/* ---- message data for readers ------------------------------------------- */

struct spool_body *spool_body_open(struct spool *sp, spool_id id)
{
    struct msg *m = msg_find(sp, id);
    if (!m || m->state != MSG_LIVE)
        return NULL;
    size_t n = m->cur.next;
    struct spool_body *b = xmalloc(sizeof *b + n * sizeof b->ext[0]);
    b->sp = sp;
    b->n = n;
    b->prefix = m->env.prefix ? xstrdup(m->env.prefix) : NULL;
    b->prefixlen = b->prefix ? strlen(b->prefix) : 0;
    uint64_t moff = b->prefixlen;
    for (size_t i = 0; i < n; i++) {
        const struct extent *e = &m->cur.ext[i];
        b->ext[i] = (struct body_ext){e->seg, e->off, moff, e->len};
        moff += e->len;
    }
    b->size = moff;
    lock(sp);
    for (size_t i = 0; i < n; i++)
        b->ext[i].seg->refs++;
    sp->bodies++;
    unlock(sp);
    return b;
}

ssize_t spool_body_read(struct spool_body *b, uint64_t off, void *buf, size_t n)
{
    if (off >= b->size || n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    size_t done = 0;
    if (off < b->prefixlen) {
        done = b->prefixlen - (size_t)off < n ? b->prefixlen - (size_t)off : n;
        memcpy(buf, b->prefix + off, done);
        off += done;
        if (done == n || off >= b->size)
            return (ssize_t)done;
    }
    /* the last extent starting at or before off */
    size_t lo = 0, hi = b->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->ext[mid].moff <= off)
            lo = mid;
        else
            hi = mid;
    }
    size_t i = lo;
    while (done < n && i < b->n) {
        const struct body_ext *e = &b->ext[i];
        uint64_t within = off - e->moff;
        if (within >= e->len) {
            i++;
            continue;
        }
        size_t k = e->len - within < n - done ? (size_t)(e->len - within) : n - done;
        ssize_t r = pread(e->seg->fd, (char *)buf + done, k, (off_t)(e->off + within));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (done > 0)
                break;
            return r < 0 ? -errno : -EIO;
        }
        done += (size_t)r;
        off += (uint64_t)r;
    }
    return (ssize_t)done;
}

uint64_t spool_body_size(const struct spool_body *b)
{
    return b->size;
}

void spool_body_close(struct spool_body *b)
{
    if (!b)
        return;
    struct spool *sp = b->sp;
    lock(sp);
    for (size_t i = 0; i < b->n; i++)
        b->ext[i].seg->refs--;
    sp->bodies--;
    bool last = sp->closed && sp->bodies == 0;
    unlock(sp);
    free(b->prefix);
    free(b);
    if (last)
        spool_free(sp);
}

void spool_get_stats(struct spool *sp, struct spool_stats *st)
{
    memset(st, 0, sizeof *st);
    st->live_messages = sp->nlive;
    st->segments = sp->nsegs;
    for (size_t i = 0; i < sp->nsegs; i++)
        st->bytes_on_disk += sp->segs[i]->size;
    lock(sp);
    if (sp->spare)
        st->bytes_on_disk += sp->spare->size;
    st->flushes = sp->flushes;
    st->commits_flushed = sp->commits_flushed;
    unlock(sp);
    st->recovery_skipped = sp->recovery_skipped;
    st->recovery_old_copies = sp->recovery_old_copies;
    st->recovery_damaged = sp->recovery_damaged;
    st->recovery_unsynced_tears = sp->recovery_unsynced_tears;
}
