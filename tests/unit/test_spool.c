/*
 * test_spool - unit tests of the journal store (src/spool/spool.c) on a real
 * directory under /tmp with 64 KiB segments: group commit and callbacks,
 * recovery after reopen (envelope, body, recipient states, removals), torn
 * tails and garbage, interleaved messages, rotation, freeing of segments,
 * compaction, queue ids, and readers on other threads.
 *
 * The wake hook writes to a pipe; a test waits on it, then runs the
 * completions as the event loop would.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "spool/record.h"
#include "spool/spool.h"

#define SEG_SIZE (64 * 1024)
#define MAX_COMMITS 256

struct ctx {
    char dir[64];
    int pipe[2];
    struct spool *sp;
    size_t ncb; /* commit callbacks run */
    int errs;   /* callbacks with an error */
    spool_id ids[MAX_COMMITS];
};

static void wake(void *arg)
{
    struct ctx *c = arg;
    char b = 1;
    ssize_t r = write(c->pipe[1], &b, 1);
    (void)r; /* a full pipe already means "wake up" */
}

static void on_commit(void *arg, spool_id id, int error)
{
    struct ctx *c = arg;
    if (c->ncb < MAX_COMMITS)
        c->ids[c->ncb] = id;
    c->ncb++;
    if (error)
        c->errs++;
}

static void open_spool(struct ctx *c)
{
    struct spool_config cfg = {
        .dir = c->dir, .segment_size = SEG_SIZE, .wake = wake, .wake_arg = c};
    char err[256] = "";
    c->sp = spool_open(&cfg, err, sizeof err);
    if (!c->sp)
        fail_msg("spool_open: %s", err);
}

static void reopen(struct ctx *c)
{
    spool_close(c->sp);
    open_spool(c);
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    strcpy(c->dir, "/tmp/tern-spool-XXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
    strcat(c->dir, "/q"); /* spool_open creates it */
    if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    open_spool(c);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    spool_close(c->sp);
    DIR *d = opendir(c->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char path[600];
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(c->dir);
    *strrchr(c->dir, '/') = '\0';
    rmdir(c->dir);
    close(c->pipe[0]);
    close(c->pipe[1]);
    free(c);
    return 0;
}

/* Wait for a wake (up to ms), then run the completions like the loop would. */
static void pump(struct ctx *c, int ms)
{
    struct pollfd p = {.fd = c->pipe[0], .events = POLLIN};
    if (poll(&p, 1, ms) > 0) {
        char buf[256];
        while (read(c->pipe[0], buf, sizeof buf) > 0)
            ;
    }
    spool_run_completions(c->sp);
}

static void wait_commits(struct ctx *c, size_t n)
{
    int64_t deadline = now_mono_ms() + 10000;
    while (c->ncb < n) {
        if (now_mono_ms() > deadline)
            fail_msg("only %zu of %zu commits reported", c->ncb, n);
        pump(c, 100);
    }
    assert_int_equal(c->errs, 0);
}

/* Deterministic message content. */
static uint8_t *content(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    return p;
}

static struct spool_envelope *make_env(size_t nrcpt, uint64_t size)
{
    struct spool_envelope *e = calloc(1, sizeof *e);
    e->sender = xstrdup("alice@example.test");
    e->envid = NULL;
    e->ret = 1;
    e->body = 2;
    e->smtputf8 = true;
    e->helo = xstrdup("client.example.test");
    e->client_addr = xstrdup("192.0.2.1");
    e->listener = xstrdup("submission");
    e->auth_user = NULL;
    e->arrival = 1700000000;
    e->size = size;
    e->nrcpt = nrcpt;
    e->rcpt = calloc(nrcpt ? nrcpt : 1, sizeof *e->rcpt);
    for (size_t i = 0; i < nrcpt; i++) {
        char a[64];
        snprintf(a, sizeof a, "rcpt%zu@example.test", i);
        e->rcpt[i].addr = xstrdup(a);
        e->rcpt[i].orcpt = i == 0 ? xstrdup("rfc822;orig@example.test") : NULL;
        e->rcpt[i].dsn_orig = NULL;
        e->rcpt[i].notify = 3;
    }
    return e;
}

static void free_env(struct spool_envelope *e)
{
    record_envelope_free(e);
    free(e);
}

static void assert_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_env_eq(const struct spool_envelope *a, const struct spool_envelope *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_str_eq(a->sender, b->sender);
    assert_str_eq(a->envid, b->envid);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_int_equal(a->held, b->held);
    assert_str_eq(a->helo, b->helo);
    assert_str_eq(a->client_addr, b->client_addr);
    assert_str_eq(a->listener, b->listener);
    assert_str_eq(a->auth_user, b->auth_user);
    assert_str_eq(a->prefix, b->prefix);
    assert_true(a->arrival == b->arrival);
    assert_true(a->size == b->size);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        assert_str_eq(a->rcpt[i].addr, b->rcpt[i].addr);
        assert_str_eq(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
        assert_str_eq(a->rcpt[i].dsn_orig, b->rcpt[i].dsn_orig);
        assert_int_equal(a->rcpt[i].notify, b->rcpt[i].notify);
        assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
        assert_int_equal(a->rcpt[i].attempts, b->rcpt[i].attempts);
        assert_true(a->rcpt[i].next_attempt == b->rcpt[i].next_attempt);
        assert_str_eq(a->rcpt[i].status, b->rcpt[i].status);
    }
}

/* Check a live message's body, reading in odd-sized pieces. */
static void assert_body(struct spool *sp, spool_id id, const uint8_t *want, size_t len)
{
    struct spool_body *b = spool_body_open(sp, id);
    assert_non_null(b);
    assert_int_equal(spool_body_size(b), len);
    uint8_t *got = malloc(len + 1);
    size_t off = 0;
    while (off < len) {
        ssize_t n = spool_body_read(b, off, got + off, 777 < len - off ? 777 : len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    assert_int_equal(spool_body_read(b, len, got, 1), 0);
    if (len)
        assert_memory_equal(got, want, len);
    /* one read across all extents */
    if (len) {
        memset(got, 0, len);
        assert_int_equal(spool_body_read(b, 0, got, len + 1), (ssize_t)len);
        assert_memory_equal(got, want, len);
    }
    free(got);
    spool_body_close(b);
}

/* Append in pieces of `piece` octets, then commit. */
static spool_id store(struct ctx *c, const uint8_t *data, size_t len, size_t piece,
                      const struct spool_envelope *env)
{
    spool_id id = spool_new_id(c->sp);
    for (size_t off = 0; off < len; off += piece)
        assert_int_equal(spool_append(c->sp, id, data + off, len - off < piece ? len - off : piece),
                         0);
    assert_int_equal(spool_commit(c->sp, id, env, on_commit, c), 0);
    return id;
}

static size_t count_segment_files(const char *dir, uint64_t *first)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    if (first)
        *first = UINT64_MAX;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "seg-", 4) != 0)
            continue;
        n++;
        uint64_t seq = strtoull(de->d_name + 4, NULL, 16);
        if (first && seq < *first)
            *first = seq;
    }
    closedir(d);
    return n;
}

static uint64_t last_segment(const char *dir)
{
    uint64_t last = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "seg-", 4) != 0)
            continue;
        uint64_t seq = strtoull(de->d_name + 4, NULL, 16);
        if (seq > last)
            last = seq;
    }
    closedir(d);
    return last;
}

static void seg_path(char *out, size_t n, const char *dir, uint64_t seq)
{
    snprintf(out, n, "%s/seg-%016" PRIx64, dir, seq);
}

/* The whole file at path (malloc'd), its size in *size. */
static uint8_t *read_whole(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *size = (size_t)st.st_size;
    return buf;
}

/* The offset where the last valid record of a segment file begins and where
   the records end. */
static void last_record(const char *path, uint64_t *start, uint64_t *end)
{
    size_t size;
    uint8_t *buf = read_whole(path, &size);
    uint64_t off = 0, prev = 0;
    struct record_header h;
    const uint8_t *p;
    uint64_t last_end = 0;
    while (record_parse(buf + off, size - off, &h, &p) == RECORD_OK) {
        if (h.type != RECORD_SYNCED) { /* the last message record, not a sync mark */
            prev = off;
            last_end = off + RECORD_HEADER_SIZE + h.len;
        }
        off += RECORD_HEADER_SIZE + h.len;
    }
    free(buf);
    *start = prev;
    *end = last_end;
}

/* Offset of the first record of message id in the segment file at path. */
static uint64_t first_record_of(const char *path, spool_id id)
{
    size_t size;
    uint8_t *buf = read_whole(path, &size);
    uint64_t off = 0;
    struct record_header h;
    const uint8_t *p;
    while (record_parse(buf + off, size - off, &h, &p) == RECORD_OK) {
        if (h.type != RECORD_SYNCED && h.id == id) {
            free(buf);
            return off;
        }
        off += RECORD_HEADER_SIZE + h.len;
    }
    free(buf);
    fail_msg("no record of %016" PRIx64 " in %s", id, path);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_commit_callback(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(1000, 1);
    struct spool_envelope *env = make_env(2, 1000);
    spool_id id = store(c, data, 1000, 1000, env);
    /* live at once, acknowledged only after the flush */
    assert_non_null(spool_get(c->sp, id));
    wait_commits(c, 1);
    assert_true(c->ids[0] == id);
    assert_env_eq(spool_get(c->sp, id), env);
    assert_body(c->sp, id, data, 1000);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 1);
    assert_true(st.flushes >= 1);
    assert_int_equal(st.commits_flushed, 1);
    assert_int_equal(st.segments, 1);
    /* committing twice, or with a wrong size, is refused */
    assert_int_equal(spool_commit(c->sp, id, env, on_commit, c), -EEXIST);
    spool_id other = spool_new_id(c->sp);
    assert_int_equal(spool_append(c->sp, other, data, 10), 0);
    assert_int_equal(spool_commit(c->sp, other, env, on_commit, c), -EINVAL);
    spool_abort(c->sp, other);
    assert_null(spool_get(c->sp, other));
    assert_null(spool_body_open(c->sp, other));
    free_env(env);
    free(data);
}

static void test_reopen_recovers(void **state)
{
    struct ctx *c = *state;
    size_t len = 200 * 1000; /* several 64 KiB segments */
    uint8_t *data = content(len, 2);
    struct spool_envelope *env = make_env(3, len);
    free(env->helo);
    env->helo = NULL; /* NULL fields survive */
    env->envid = xstrdup("QQ123");
    spool_id id = store(c, data, len, 4096, env);
    uint8_t *empty = content(0, 0);
    struct spool_envelope *env0 = make_env(0, 0);
    spool_id id0 = store(c, empty, 0, 1, env0);
    wait_commits(c, 2);
    reopen(c);
    assert_env_eq(spool_get(c->sp, id), env);
    assert_body(c->sp, id, data, len);
    assert_env_eq(spool_get(c->sp, id0), env0);
    assert_body(c->sp, id0, empty, 0);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 2);
    assert_true(st.segments >= 4);
    free_env(env);
    free_env(env0);
    free(data);
    free(empty);
}

/* Header fields given at commit come before the data when it is read, and
   after a restart. */
static void test_prefix_read(void **state)
{
    struct ctx *c = *state;
    static const char prefix[] = "DKIM-Signature: v=1; a=ed25519-sha256;\r\n"
                                 "Authentication-Results: mx.example.test; none\r\n";
    size_t plen = sizeof prefix - 1, len = 100 * 1000;
    uint8_t *data = content(len, 5);
    uint8_t *want = malloc(plen + len);
    memcpy(want, prefix, plen);
    memcpy(want + plen, data, len);
    struct spool_envelope *env = make_env(1, len);
    env->prefix = xstrdup(prefix);
    spool_id id = store(c, data, len, 3000, env);
    struct spool_envelope *env0 = make_env(1, 0);
    env0->prefix = xstrdup(prefix);
    uint8_t *empty = content(0, 0);
    spool_id id0 = store(c, empty, 0, 1, env0);
    wait_commits(c, 2);
    assert_body(c->sp, id, want, plen + len);
    assert_body(c->sp, id0, want, plen);
    /* a read that starts inside the prefix and ends in the data */
    struct spool_body *b = spool_body_open(c->sp, id);
    uint8_t got[100];
    assert_int_equal(spool_body_read(b, plen - 10, got, sizeof got), (ssize_t)sizeof got);
    assert_memory_equal(got, want + plen - 10, sizeof got);
    spool_body_close(b);
    reopen(c);
    assert_env_eq(spool_get(c->sp, id), env);
    assert_body(c->sp, id, want, plen + len);
    assert_body(c->sp, id0, want, plen);
    free_env(env);
    free_env(env0);
    free(data);
    free(empty);
    free(want);
}

static void test_uncommitted_ignored(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(30000, 3);
    spool_id lost = spool_new_id(c->sp);
    assert_int_equal(spool_append(c->sp, lost, data, 30000), 0);
    spool_id aborted = spool_new_id(c->sp);
    assert_int_equal(spool_append(c->sp, aborted, data, 5000), 0);
    spool_abort(c->sp, aborted);
    struct spool_envelope *env = make_env(1, 20000);
    spool_id kept = store(c, data, 20000, 3000, env);
    wait_commits(c, 1);
    assert_null(spool_get(c->sp, lost));
    reopen(c);
    assert_null(spool_get(c->sp, lost));
    assert_null(spool_get(c->sp, aborted));
    assert_env_eq(spool_get(c->sp, kept), env);
    assert_body(c->sp, kept, data, 20000);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 1);
    free_env(env);
    free(data);
}

/* Damage the end of the last segment in three ways; what precedes survives. */
static void test_torn_tail(void **state)
{
    struct ctx *c = *state;
    for (int mode = 0; mode < 3; mode++) {
        uint8_t *d1 = content(5000, 10 + (unsigned)mode);
        uint8_t *d2 = content(3000, 20 + (unsigned)mode);
        struct spool_envelope *e1 = make_env(1, 5000);
        struct spool_envelope *e2 = make_env(2, 3000);
        size_t base = c->ncb;
        spool_id id1 = store(c, d1, 5000, 5000, e1);
        spool_id id2 = store(c, d2, 3000, 1000, e2);
        wait_commits(c, base + 2);
        spool_close(c->sp);
        c->sp = NULL;

        char path[600];
        seg_path(path, sizeof path, c->dir, last_segment(c->dir));
        uint64_t start, end;
        last_record(path, &start, &end);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        bool second_lost = true;
        if (mode == 0) {
            /* torn write: the last record (id2's envelope) cut in the middle */
            assert_int_equal(ftruncate(fd, (off_t)(start + (end - start) / 2)), 0);
        } else if (mode == 1) {
            /* half of the record never reached the disk: zeros, then more */
            static const uint8_t zeros[40];
            assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)start + 10),
                             (ssize_t)sizeof zeros);
        } else {
            /* garbage after the last valid record */
            static const uint8_t junk[] = "\xA5\x02\x00\x00garbage that is not a record";
            assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)end), (ssize_t)sizeof junk);
            second_lost = false;
        }
        close(fd);

        open_spool(c);
        assert_env_eq(spool_get(c->sp, id1), e1);
        assert_body(c->sp, id1, d1, 5000);
        if (second_lost) {
            assert_null(spool_get(c->sp, id2));
        } else {
            assert_env_eq(spool_get(c->sp, id2), e2);
            assert_body(c->sp, id2, d2, 3000);
        }
        /* appends resume over the damaged tail and survive the next start */
        uint8_t *d3 = content(700, 30 + (unsigned)mode);
        struct spool_envelope *e3 = make_env(1, 700);
        base = c->ncb;
        spool_id id3 = store(c, d3, 700, 700, e3);
        wait_commits(c, base + 1);
        reopen(c);
        assert_env_eq(spool_get(c->sp, id1), e1);
        assert_env_eq(spool_get(c->sp, id3), e3);
        assert_body(c->sp, id3, d3, 700);
        assert_true(second_lost == (spool_get(c->sp, id2) == NULL));
        free_env(e1);
        free_env(e2);
        free_env(e3);
        free(d1);
        free(d2);
        free(d3);
    }
}

static void test_rcpt_and_remove_survive(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(2000, 4);
    struct spool_envelope *env = make_env(3, 2000);
    spool_id id = store(c, data, 2000, 2000, env);
    spool_id gone = store(c, data, 2000, 500, env);
    wait_commits(c, 2);
    assert_int_equal(spool_set_rcpt(c->sp, id, 1, SPOOL_RCPT_DELIVERED, 1, 0, "dsn=2.0.0 ok"), 0);
    assert_int_equal(spool_set_rcpt(c->sp, id, 2, SPOOL_RCPT_DEFERRED, 2, 1700003600, NULL), 0);
    assert_int_equal(
        spool_set_rcpt(c->sp, id, 2, SPOOL_RCPT_DEFERRED, 3, 1700007200, "dsn=4.4.1 refused"), 0);
    assert_int_equal(spool_set_rcpt(c->sp, id, 3, SPOOL_RCPT_DELIVERED, 1, 0, NULL), -EINVAL);
    assert_int_equal(spool_set_rcpt(c->sp, 12345, 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL), -ENOENT);
    assert_int_equal(spool_remove(c->sp, gone), 0);
    assert_null(spool_get(c->sp, gone));
    assert_int_equal(spool_remove(c->sp, gone), -ENOENT);
    const struct spool_envelope *now = spool_get(c->sp, id);
    assert_int_equal(now->rcpt[1].state, SPOOL_RCPT_DELIVERED);
    assert_string_equal(now->rcpt[1].status, "dsn=2.0.0 ok");
    assert_int_equal(now->rcpt[2].attempts, 3);

    env->rcpt[1].state = SPOOL_RCPT_DELIVERED;
    env->rcpt[1].attempts = 1;
    env->rcpt[1].status = xstrdup("dsn=2.0.0 ok");
    env->rcpt[2].state = SPOOL_RCPT_DEFERRED;
    env->rcpt[2].attempts = 3;
    env->rcpt[2].next_attempt = 1700007200;
    env->rcpt[2].status = xstrdup("dsn=4.4.1 refused");
    assert_env_eq(spool_get(c->sp, id), env);
    reopen(c); /* close flushes what was appended */
    assert_env_eq(spool_get(c->sp, id), env);
    assert_null(spool_get(c->sp, gone));
    assert_body(c->sp, id, data, 2000);
    free_env(env);
    free(data);
}

static void on_sync(void *arg, spool_id id, int error)
{
    int *n = arg;
    assert_true(id == 0);
    assert_int_equal(error, 0);
    (*n)++;
}

/* Hold and release are HOLD records: durable (spool_sync reports it), kept
   across a reopen, the last one wins, and they leave other messages alone. */
static void test_hold_survives(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(3000, 21);
    struct spool_envelope *env = make_env(2, 3000);
    spool_id a = store(c, data, 3000, 1000, env);
    spool_id b = store(c, data, 3000, 3000, env);
    wait_commits(c, 2);
    assert_false(spool_get(c->sp, a)->held);
    assert_int_equal(spool_set_held(c->sp, a, true), 0);
    assert_int_equal(spool_set_held(c->sp, b, true), 0);
    assert_int_equal(spool_set_held(c->sp, b, false), 0);
    assert_int_equal(spool_set_held(c->sp, 12345, true), -ENOENT);
    assert_true(spool_get(c->sp, a)->held);
    assert_false(spool_get(c->sp, b)->held);
    int synced = 0;
    spool_sync(c->sp, on_sync, &synced);
    int64_t deadline = now_mono_ms() + 10000;
    while (synced == 0 && now_mono_ms() < deadline)
        pump(c, 100);
    assert_int_equal(synced, 1);
    /* a sync with nothing new to write completes too */
    spool_sync(c->sp, on_sync, &synced);
    while (synced == 1 && now_mono_ms() < deadline)
        pump(c, 100);
    assert_int_equal(synced, 2);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.commits_flushed, 2); /* syncs are not commits */

    reopen(c);
    env->held = true;
    assert_env_eq(spool_get(c->sp, a), env);
    env->held = false;
    assert_env_eq(spool_get(c->sp, b), env);
    assert_body(c->sp, a, data, 3000);
    assert_int_equal(spool_set_held(c->sp, a, false), 0);
    assert_int_equal(spool_set_rcpt(c->sp, a, 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL), 0);
    reopen(c);
    assert_false(spool_get(c->sp, a)->held);
    assert_int_equal(spool_get(c->sp, a)->rcpt[0].state, SPOOL_RCPT_DELIVERED);
    free_env(env);
    free(data);
}

static void test_interleaved(void **state)
{
    struct ctx *c = *state;
    size_t len = 50000;
    uint8_t *a = content(len, 5), *b = content(len, 6);
    spool_id ia = spool_new_id(c->sp), ib = spool_new_id(c->sp);
    assert_true(ib > ia);
    for (size_t off = 0; off < len; off += 1000) {
        assert_int_equal(spool_append(c->sp, ia, a + off, 1000), 0);
        assert_int_equal(spool_append(c->sp, ib, b + off, 1000), 0);
    }
    struct spool_envelope *env = make_env(1, len);
    assert_int_equal(spool_commit(c->sp, ib, env, on_commit, c), 0);
    assert_int_equal(spool_commit(c->sp, ia, env, on_commit, c), 0);
    wait_commits(c, 2);
    assert_body(c->sp, ia, a, len);
    assert_body(c->sp, ib, b, len);
    reopen(c);
    assert_body(c->sp, ia, a, len);
    assert_body(c->sp, ib, b, len);
    free_env(env);
    free(a);
    free(b);
}

static void test_rotation(void **state)
{
    struct ctx *c = *state;
    enum { N = 60 };
    uint8_t *data[N];
    spool_id ids[N];
    struct spool_envelope *env[N];
    for (int i = 0; i < N; i++) {
        size_t len = 1000 + (size_t)i * 331;
        data[i] = content(len, 100 + (unsigned)i);
        env[i] = make_env(1 + (size_t)i % 4, len);
        ids[i] = store(c, data[i], len, 2048, env[i]);
    }
    wait_commits(c, N);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_true(st.segments > 5);
    assert_true(st.flushes >= 1 && st.flushes <= N);
    assert_int_equal(st.commits_flushed, N);
    reopen(c);
    for (int i = 0; i < N; i++) {
        assert_env_eq(spool_get(c->sp, ids[i]), env[i]);
        assert_body(c->sp, ids[i], data[i], 1000 + (size_t)i * 331);
        free_env(env[i]);
        free(data[i]);
    }
    /* a record larger than a segment gets a segment of its own */
    struct spool_envelope *big = make_env(3000, 0); /* a ~100 KiB envelope */
    uint8_t *none = content(0, 0);
    spool_id idb = store(c, none, 0, 1, big);
    wait_commits(c, N + 1);
    reopen(c);
    assert_env_eq(spool_get(c->sp, idb), big);
    free_env(big);
    free(none);
}

static void foreach_count(void *arg, spool_id id, const struct spool_envelope *env)
{
    spool_id *prev = arg;
    assert_non_null(env);
    assert_true(id > prev[0]);
    prev[0] = id;
    prev[1]++;
}

static void foreach_remove(void *arg, spool_id id, const struct spool_envelope *env)
{
    struct ctx *c = arg;
    (void)env;
    assert_int_equal(spool_remove(c->sp, id), 0);
}

/* Wait until the spool is down to `segs` segments and the directory to `files`. */
static void wait_segments(struct ctx *c, size_t segs, size_t files)
{
    int64_t deadline = now_mono_ms() + 10000;
    for (;;) {
        struct spool_stats st;
        spool_get_stats(c->sp, &st);
        size_t nfiles = count_segment_files(c->dir, NULL);
        if (st.segments <= segs && nfiles <= files)
            return;
        if (now_mono_ms() > deadline)
            fail_msg("still %zu segments, %zu files", st.segments, nfiles);
        pump(c, 50);
    }
}

static void test_segments_freed(void **state)
{
    struct ctx *c = *state;
    enum { N = 40 };
    uint8_t *data = content(8000, 7);
    struct spool_envelope *env = make_env(1, 8000);
    for (int i = 0; i < N; i++)
        store(c, data, 8000, 8000, env);
    wait_commits(c, N);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_true(st.segments >= 5);
    spool_id prev[2] = {0, 0};
    spool_foreach(c->sp, foreach_count, prev);
    assert_int_equal(prev[1], N);
    spool_foreach(c->sp, foreach_remove, c); /* removing while iterating is allowed */
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 0);
    /* the current segment stays, plus the spare prepared for the next */
    wait_segments(c, 1, 2);
    reopen(c);
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 0);
    assert_int_equal(st.segments, 1);
    free_env(env);
    free(data);
}

static void test_body_pins_segment(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(30000, 8);
    struct spool_envelope *env = make_env(1, 30000);
    spool_id id = store(c, data, 30000, 30000, env);
    for (int i = 0; i < 8; i++)
        store(c, data, 30000, 10000, env);
    wait_commits(c, 9);
    uint64_t first;
    count_segment_files(c->dir, &first);
    struct spool_body *b = spool_body_open(c->sp, id);
    assert_non_null(b);
    spool_foreach(c->sp, foreach_remove, c);
    /* the message is gone from the queue, but its data stays readable */
    for (int i = 0; i < 20; i++)
        pump(c, 20);
    uint64_t now_first;
    count_segment_files(c->dir, &now_first);
    assert_true(now_first == first);
    uint8_t *got = malloc(30000);
    assert_int_equal(spool_body_read(b, 0, got, 30000), 30000);
    assert_memory_equal(got, data, 30000);
    spool_body_close(b);
    wait_segments(c, 1, 2);
    free(got);
    free_env(env);
    free(data);
}

/* A message whose first chunks were in a segment freed after its removal,
   while a later segment with its last chunks and envelope stays for another
   message: recovery finds the rest of an old copy, not damage. */
static void test_remnant_of_freed_segment(void **state)
{
    struct ctx *c = *state;
    uint8_t *xd = content(70000, 21), *yd = content(50000, 22);
    struct spool_envelope *xe = make_env(1, 70000), *ye = make_env(2, 50000);
    spool_id x = store(c, xd, 70000, 8000, xe);
    spool_id y = store(c, yd, 50000, 8000, ye);
    wait_commits(c, 2);
    uint64_t first;
    assert_true(count_segment_files(c->dir, &first) >= 2); /* 1, 2 (and the spare) */
    assert_int_equal(first, 1);
    assert_int_equal(spool_remove(c->sp, x), 0);
    int64_t deadline = now_mono_ms() + 10000;
    while (count_segment_files(c->dir, &first), first == 1) {
        if (now_mono_ms() > deadline)
            fail_msg("segment 1 was not freed");
        pump(c, 50);
    }
    assert_int_equal(first, 2); /* Y keeps segment 2, with X's last chunks in it */
    reopen(c);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.recovery_old_copies, 1);
    assert_int_equal(st.recovery_skipped, 0);
    assert_int_equal(st.live_messages, 1);
    assert_null(spool_get(c->sp, x));
    assert_env_eq(spool_get(c->sp, y), ye);
    assert_body(c->sp, y, yd, 50000);
    free_env(xe);
    free_env(ye);
    free(xd);
    free(yd);
}

static void test_compaction(void **state)
{
    struct ctx *c = *state;
    uint8_t *small = content(6000, 9);
    struct spool_envelope *env = make_env(2, 6000);
    spool_id keep = store(c, small, 6000, 6000, env);
    wait_commits(c, 1);
    assert_int_equal(
        spool_set_rcpt(c->sp, keep, 0, SPOOL_RCPT_DEFERRED, 1, 1700001000, "dsn=4.4.1 try later"),
        0);
    /* held: the copy forward carries the hold in its envelope */
    assert_int_equal(spool_set_held(c->sp, keep, true), 0);
    uint64_t first;
    count_segment_files(c->dir, &first);
    /* fill that segment and a few more with messages that then finish */
    uint8_t *filler = content(9000, 10);
    struct spool_envelope *fenv = make_env(1, 9000);
    for (int i = 0; i < 25; i++)
        store(c, filler, 9000, 9000, fenv);
    wait_commits(c, 26);
    for (size_t i = 1; i < 26; i++)
        assert_int_equal(spool_remove(c->sp, c->ids[i]), 0);
    /* the message left alone in the first segment is copied forward, and the
       segment goes (compaction runs at most every 2 seconds) */
    int64_t deadline = now_mono_ms() + 10000;
    for (;;) {
        uint64_t f;
        count_segment_files(c->dir, &f);
        if (f > first)
            break;
        if (now_mono_ms() > deadline)
            fail_msg("segment %" PRIx64 " still present", first);
        /* completions only on a wake, as the event loop runs them: the spool
           must ask for one when compaction is due, with nothing else going on
           (the file itself goes a moment after, in the flusher) */
        struct pollfd p = {.fd = c->pipe[0], .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            pump(c, 0);
    }
    env->rcpt[0].state = SPOOL_RCPT_DEFERRED;
    env->rcpt[0].attempts = 1;
    env->rcpt[0].next_attempt = 1700001000;
    env->rcpt[0].status = xstrdup("dsn=4.4.1 try later");
    env->held = true;
    assert_env_eq(spool_get(c->sp, keep), env);
    assert_body(c->sp, keep, small, 6000);
    wait_segments(c, 2, 3);
    /* a state change after the copy applies to the copy */
    assert_int_equal(spool_set_rcpt(c->sp, keep, 1, SPOOL_RCPT_DELIVERED, 1, 0, "dsn=2.0.0"), 0);
    env->rcpt[1].state = SPOOL_RCPT_DELIVERED;
    env->rcpt[1].attempts = 1;
    env->rcpt[1].status = xstrdup("dsn=2.0.0");
    reopen(c);
    assert_env_eq(spool_get(c->sp, keep), env);
    assert_body(c->sp, keep, small, 6000);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.live_messages, 1);
    assert_true(st.segments <= 2);
    free_env(env);
    free_env(fenv);
    free(small);
    free(filler);
}

static void test_ids_grow(void **state)
{
    struct ctx *c = *state;
    spool_id a = spool_new_id(c->sp);
    spool_id b = spool_new_id(c->sp);
    assert_true(b > a);
    /* a message whose id lies far ahead of the clock */
    spool_id future = (spool_id)now_real_us() + ((spool_id)1 << 40);
    uint8_t x = 'x';
    struct spool_envelope *env = make_env(1, 1);
    assert_int_equal(spool_append(c->sp, future, &x, 1), 0);
    assert_int_equal(spool_commit(c->sp, future, env, on_commit, c), 0);
    wait_commits(c, 1);
    reopen(c);
    spool_id next = spool_new_id(c->sp);
    assert_true(next > future);
    /* even ids of uncommitted data count */
    spool_id later = next + ((spool_id)1 << 30);
    assert_int_equal(spool_append(c->sp, later, &x, 1), 0);
    reopen(c);
    assert_true(spool_new_id(c->sp) > later);
    free_env(env);
}

static void test_damaged_middle_segment(void **state)
{
    struct ctx *c = *state;
    enum { N = 30 };
    uint8_t *data = content(6000, 11);
    struct spool_envelope *env = make_env(1, 6000);
    spool_id ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = store(c, data, 6000, 6000, env);
    wait_commits(c, N);
    spool_close(c->sp);
    c->sp = NULL;
    uint64_t first;
    count_segment_files(c->dir, &first);
    char path[600];
    seg_path(path, sizeof path, c->dir, first);
    int fd = open(path, O_RDWR);
    uint8_t junk = 0x55;
    assert_int_equal(pwrite(fd, &junk, 1, 40), 1); /* inside the first record's data */
    close(fd);
    open_spool(c);
    /* the first segment's messages are lost (logged), the others recovered */
    assert_null(spool_get(c->sp, ids[0]));
    assert_non_null(spool_get(c->sp, ids[N - 1]));
    assert_body(c->sp, ids[N - 1], data, 6000);
    /* nothing live is left in it: it is set aside for the operator, not deleted */
    char aside[600];
    snprintf(aside, sizeof aside, "%s/corrupt-seg-%016" PRIx64, c->dir, first);
    assert_int_equal(access(aside, F_OK), 0);
    assert_int_equal(access(path, F_OK), -1);
    unlink(aside);
    free_env(env);
    free(data);
}

/* A power failure tore a write in a segment before the last one, past the
   last sync mark: the writes after it were not synced either (a rotation does
   not sync), and nobody was told they were stored. Not damage: the segment is
   not set aside, the committed message before the mark is whole. */
static void test_unsynced_tear_before_last_segment(void **state)
{
    struct ctx *c = *state;
    uint8_t *xd = content(30000, 31), *ud = content(100000, 32);
    struct spool_envelope *xe = make_env(1, 30000);
    spool_id x = store(c, xd, 30000, 8000, xe);
    wait_commits(c, 1); /* the sync mark after x is written with its completion */
    uint64_t first;
    count_segment_files(c->dir, &first);
    spool_id u = spool_new_id(c->sp); /* appended, never committed: spans a rotation */
    for (size_t off = 0; off < 100000; off += 8000)
        assert_int_equal(
            spool_append(c->sp, u, ud + off, 100000 - off < 8000 ? 100000 - off : 8000), 0);
    spool_close(c->sp);
    c->sp = NULL;
    assert_true(last_segment(c->dir) > first + 1 || count_segment_files(c->dir, NULL) >= 2);
    char path[600];
    seg_path(path, sizeof path, c->dir, first);
    uint64_t at = first_record_of(path, u);
    int fd = open(path, O_RDWR);
    static const uint8_t zeros[100];
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)at + 40), (ssize_t)sizeof zeros);
    close(fd);

    open_spool(c);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.recovery_unsynced_tears, 1);
    assert_int_equal(st.recovery_damaged, 0);
    assert_env_eq(spool_get(c->sp, x), xe);
    assert_body(c->sp, x, xd, 30000);
    assert_null(spool_get(c->sp, u));
    /* the torn octets were zeroed: once marks are past that segment, the
       next start finds a clean end there, not synced data lost */
    struct spool_envelope *ye = make_env(1, 500);
    size_t base = c->ncb;
    store(c, xd, 500, 500, ye);
    wait_commits(c, base + 1);
    reopen(c);
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.recovery_unsynced_tears, 0);
    assert_int_equal(st.recovery_damaged, 0);
    assert_body(c->sp, x, xd, 30000);
    free_env(ye);
    spool_foreach(c->sp, foreach_remove, c);
    wait_segments(c, 1, 2);
    char aside[600];
    snprintf(aside, sizeof aside, "%s/corrupt-seg-%016" PRIx64, c->dir, first);
    assert_int_equal(access(aside, F_OK), -1); /* freed like any other, not set aside */
    free_env(xe);
    free(xd);
    free(ud);
}

/* A crash just after a rotation: the torn write is in the second-to-last
   segment and the last is empty. That is a torn tail, not damage. */
static void test_torn_before_rotation(void **state)
{
    struct ctx *c = *state;
    enum { N = 12 };
    uint8_t *data = content(9000, 14);
    struct spool_envelope *env = make_env(1, 9000);
    spool_id ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = store(c, data, 9000, 9000, env);
    wait_commits(c, N);
    spool_close(c->sp);
    c->sp = NULL;
    uint64_t last = last_segment(c->dir);
    char path[600];
    seg_path(path, sizeof path, c->dir, last);
    uint64_t start, end;
    last_record(path, &start, &end);
    int fd = open(path, O_RDWR);
    static const uint8_t zeros[100];
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)start + 30), (ssize_t)sizeof zeros);
    close(fd);
    char next[600];
    seg_path(next, sizeof next, c->dir, last + 1);
    fd = open(next, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_int_equal(ftruncate(fd, SEG_SIZE), 0);
    close(fd);

    open_spool(c);
    assert_null(spool_get(c->sp, ids[N - 1]));
    for (int i = 0; i < N - 1; i++)
        assert_body(c->sp, ids[i], data, 9000);
    reopen(c); /* the torn record was zeroed: a clean scan now */
    for (int i = 0; i < N - 1; i++)
        assert_non_null(spool_get(c->sp, ids[i]));
    spool_foreach(c->sp, foreach_remove, c);
    wait_segments(c, 1, 2);
    glob_t g;
    char pat[600];
    snprintf(pat, sizeof pat, "%s/corrupt-*", c->dir);
    assert_int_equal(glob(pat, 0, NULL, &g), GLOB_NOMATCH);
    free_env(env);
    free(data);
}

/* Writes that fail (here: past the file size limit) return the errno; what
   was committed before stays, and the spool goes on in a fresh segment. */
static void test_write_failure(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(20000, 15);
    struct spool_envelope *env = make_env(1, 20000);
    spool_id before = store(c, data, 20000, 20000, env);
    wait_commits(c, 1);
    /* let the flusher prepare the next segment while it still may */
    for (int i = 0; i < 20 && count_segment_files(c->dir, NULL) < 2; i++)
        pump(c, 20);
    assert_int_equal(count_segment_files(c->dir, NULL), 2);

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 30000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    spool_id failed = spool_new_id(c->sp);
    int r = spool_append(c->sp, failed, data, 20000);
    assert_int_equal(r, -EFBIG);
    spool_abort(c->sp, failed);
    /* the next message goes to the prepared segment, within the limit */
    spool_id after = store(c, data, 5000, 5000, (env->size = 5000, env));
    wait_commits(c, 2);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    assert_body(c->sp, after, data, 5000);
    reopen(c);
    assert_body(c->sp, before, data, 20000);
    assert_body(c->sp, after, data, 5000);
    assert_null(spool_get(c->sp, failed));
    /* the failed write left a clean end behind: nothing is set aside */
    spool_foreach(c->sp, foreach_remove, c);
    wait_segments(c, 1, 2);
    glob_t g;
    char pat[600];
    snprintf(pat, sizeof pat, "%s/corrupt-*", c->dir);
    assert_int_equal(glob(pat, 0, NULL, &g), GLOB_NOMATCH);
    free_env(env);
    free(data);
}

/* Commits issued together share flushes. */
static void test_group_commit(void **state)
{
    struct ctx *c = *state;
    enum { N = 200 };
    uint8_t *data = content(300, 16);
    struct spool_envelope *env = make_env(2, 300);
    for (int i = 0; i < N; i++)
        store(c, data, 300, 300, env);
    wait_commits(c, N);
    struct spool_stats st;
    spool_get_stats(c->sp, &st);
    assert_int_equal(st.commits_flushed, N);
    assert_true(st.flushes < N / 4);
    free_env(env);
    free(data);
}

struct reader_arg {
    struct spool_body *b;
    const uint8_t *want;
    size_t len;
    int ok;
};

static void *reader_main(void *p)
{
    struct reader_arg *ra = p;
    uint8_t *buf = malloc(ra->len);
    ra->ok = 1;
    for (int round = 0; round < 20; round++) {
        size_t off = 0;
        while (off < ra->len) {
            ssize_t n = spool_body_read(ra->b, off, buf + off, 4000);
            if (n <= 0) {
                ra->ok = 0;
                break;
            }
            off += (size_t)n;
        }
        if (memcmp(buf, ra->want, ra->len) != 0)
            ra->ok = 0;
    }
    free(buf);
    spool_body_close(ra->b); /* dropped on the worker thread */
    return NULL;
}

static void test_readers_on_threads(void **state)
{
    struct ctx *c = *state;
    size_t len = 100000;
    uint8_t *data = content(len, 12);
    struct spool_envelope *env = make_env(1, len);
    spool_id id = store(c, data, len, 7000, env);
    wait_commits(c, 1);
    struct reader_arg ra[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ra[i] = (struct reader_arg){spool_body_open(c->sp, id), data, len, 0};
        pthread_create(&th[i], NULL, reader_main, &ra[i]);
    }
    /* meanwhile the loop keeps committing */
    struct spool_envelope *e2 = make_env(0, 9000);
    for (int i = 0; i < 20; i++)
        store(c, data, 9000, 9000, e2);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(ra[i].ok);
    }
    wait_commits(c, 21);
    free_env(e2);
    free_env(env);
    free(data);
}

static void test_body_outlives_close(void **state)
{
    struct ctx *c = *state;
    uint8_t *data = content(9000, 13);
    struct spool_envelope *env = make_env(1, 9000);
    spool_id id = store(c, data, 9000, 9000, env);
    wait_commits(c, 1);
    struct spool_body *b = spool_body_open(c->sp, id);
    spool_close(c->sp);
    uint8_t got[9000];
    assert_int_equal(spool_body_read(b, 0, got, sizeof got), 9000);
    assert_memory_equal(got, data, 9000);
    spool_body_close(b); /* frees the spool */
    open_spool(c);
    assert_non_null(spool_get(c->sp, id));
    spool_body_close(NULL);
    spool_close(NULL);
    free_env(env);
    free(data);
}

int main(void)
{
    log_set_level(getenv("TERN_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncommitted_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rcpt_and_remove_survive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_survives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_freed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_pins_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remnant_of_freed_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_middle_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_before_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_tear_before_last_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_on_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_outlives_close, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
