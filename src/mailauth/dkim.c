/*
 * dkim - DKIM signer and verifier on libopendkim (see dkim.h).
 *
 * RFC 6376 §5 (signing), §6 (verifying), §3.6.2.2 (key records in DNS TXT),
 * RFC 8463 (ed25519-sha256), RFC 8301 (rsa-sha1 and small RSA keys are not
 * accepted), RFC 8601 §2.7.1 (result names).
 *
 * libopendkim is given one header field at a time (dkim_header), then the end
 * of the header section (dkim_eoh), body chunks (dkim_body) and the end
 * (dkim_eom). Its options: relaxed/relaxed and SHA-256 for signing, the
 * header fields of sign_headers[] with From oversigned; for verifying,
 * signature processing is delayed to dkim_eom (DKIM_LIBFLAGS_DELAYSIGPROC),
 * a prescreen callback ignores every signature Tern does not examine, and the
 * key lookup callback copies the record Tern's resolver fetched; it never
 * answers DKIM_CBSTAT_DEFAULT, which would make libopendkim query DNS itself
 * (blocking).
 *
 * Which libopendkim signature is which DKIM-Signature field is told by b=:
 * the prescreen callback matches each to the first unmatched field with the
 * same leading DKIM_B_PREFIX octets of b=.
 */
#include "mailauth/dkim.h"

#include "core/buf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "event/event.h"
#include "mailauth/dkimkey.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <opendkim/dkim.h>
#include <openssl/evp.h>

/* Keys one signer signs with (every selector of a domain). */
#define DKIM_SIGN_KEYS_MAX 8

/* Header fields signed when present (RFC 6376 §5.4.1's list, minus the
   Resent-* and Content-ID fields that mailing lists and forwarders change
   least predictably, plus List-Unsubscribe-Post of RFC 8058). */
static const char *const sign_headers[] = {
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    NULL,
};
/* Signed once more than they occur, so that none can be added. */
static const char *const oversign_headers[] = {"from", NULL};

struct dkim_ctx {
    DKIM_LIB *lib;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copy src into dst (n >= 1 octets), truncated. */
static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = strnlen(src, n - 1);
    memmove(dst, src, l);
    dst[l] = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------
 * Memory: libopendkim 2.11's dkim_free() releases the private key it loaded
 * for signing (an EVP_PKEY) and its signature buffer for RSA keys only; an
 * ed25519-sha256 signing handle leaks both, a few hundred octets per message.
 * So libopendkim allocates through mem_alloc/mem_free: each block carries a
 * header naming its owner, the signing key whose handle the calling thread is
 * driving (mem_current, set around every libopendkim call on a signing
 * handle; libopendkim 2.11 passes no per-handle closure to the allocator), or
 * none; a signing key keeps its live blocks in a list. When libopendkim frees its key structure
 * (struct dkim_crypto: the EVP_PKEY at offset 24, the output length at 16, the output buffer at 56
 * on LP64), mem_free notes both pointers; after dkim_free(), an output buffer still alive means
 * this version leaked, and the signer frees it and the EVP_PKEY. A libopendkim that frees them
 * itself leaves nothing to do.
 */

/* What libopendkim allocated for one signing handle. */
struct mem_owner {
    struct mem_block *blocks; /* live blocks */
    void *crypto_pkey;        /* the EVP_PKEY of the key structure freed last */
    void *crypto_out;         /* its output buffer */
};

/* The header of every block libopendkim gets (keeps 16-octet alignment). */
struct mem_block {
    struct mem_block *prev, *next; /* in owner->blocks */
    struct mem_owner *owner;       /* NULL: not tracked */
    size_t size;                   /* octets asked for */
};

#define DKIM_CRYPTO_SIZE 64 /* sizeof(struct dkim_crypto) of libopendkim 2.11, LP64 */

/* The signing key whose handle this thread is driving, or NULL. */
static _Thread_local struct mem_owner *mem_current;

static void *mem_alloc(void *closure, size_t n)
{
    (void)closure;
    size_t total;
    if (!size_add(sizeof(struct mem_block), n, &total))
        return NULL; /* libopendkim treats it as exhaustion */
    struct mem_block *b = malloc(total);
    if (!b)
        return NULL;
    b->owner = mem_current;
    b->size = n;
    b->prev = NULL;
    b->next = NULL;
    if (b->owner) {
        b->next = b->owner->blocks;
        if (b->next)
            b->next->prev = b;
        b->owner->blocks = b;
    }
    return b + 1;
}

static bool mem_live(const struct mem_owner *o, const void *p, size_t size)
{
    for (const struct mem_block *b = o->blocks; b; b = b->next)
        if ((const void *)(b + 1) == p && b->size == size)
            return true;
    return false;
}

static void mem_unlink(struct mem_block *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else if (b->owner)
        b->owner->blocks = b->next;
    if (b->next)
        b->next->prev = b->prev;
}

static void mem_free(void *closure, void *p)
{
    (void)closure;
    if (!p)
        return;
    struct mem_block *b = (struct mem_block *)p - 1;
    if (b->owner && sizeof(void *) == 8 && b->size == DKIM_CRYPTO_SIZE) {
        const unsigned char *c = p;
        size_t outlen;
        void *pkey, *out;
        memcpy(&outlen, c + 16, sizeof outlen);
        memcpy(&pkey, c + 24, sizeof pkey);
        memcpy(&out, c + 56, sizeof out);
        if (pkey && out && mem_live(b->owner, out, outlen)) {
            b->owner->crypto_pkey = pkey;
            b->owner->crypto_out = out;
        }
    }
    if (b->owner)
        mem_unlink(b);
    free(b);
}

/* After dkim_free(): release what libopendkim left behind. */
static void mem_owner_release(struct mem_owner *o)
{
    if (o->crypto_out && mem_live(o, o->crypto_out, ((struct mem_block *)o->crypto_out - 1)->size))
        EVP_PKEY_free(o->crypto_pkey);
    while (o->blocks) {
        struct mem_block *b = o->blocks;
        mem_unlink(b);
        free(b);
    }
    o->crypto_pkey = o->crypto_out = NULL;
}

/* ---------------------------------------------------------------------
 * The header splitter: header fields out of chunks cut anywhere.
 */

/* What the splitter is doing. */
enum hsplit_state {
    HS_LINE_START = 0, /* at the start of a header line */
    HS_IN_LINE,        /* inside a header line */
    HS_BLANK_CR,       /* a line that began with CR: the end of the header section */
    HS_BODY,           /* past the header section */
};

struct hsplit {
    enum hsplit_state state;
    struct buf field; /* the field being collected, its CRLFs included */
    size_t nfields;   /* fields handed over */
    bool overflow;    /* a field or the field count passed its limit */
    /* callbacks: one field (without its final line end), the end of the header section */
    void (*on_field)(void *arg, const char *field, size_t len);
    void (*on_eoh)(void *arg);
    void (*on_body)(void *arg, const char *data, size_t len);
    void *arg;
};

static void hsplit_init(struct hsplit *h, void (*on_field)(void *, const char *, size_t),
                        void (*on_eoh)(void *), void (*on_body)(void *, const char *, size_t),
                        void *arg)
{
    memset(h, 0, sizeof *h);
    buf_init(&h->field, DKIM_FIELD_MAX);
    h->on_field = on_field;
    h->on_eoh = on_eoh;
    h->on_body = on_body;
    h->arg = arg;
}

/* Hand over the collected field, if any. */
static void hsplit_emit(struct hsplit *h)
{
    size_t len = h->field.len;
    if (len == 0)
        return;
    if (h->field.data[len - 1] == '\n')
        len--;
    if (len > 0 && h->field.data[len - 1] == '\r')
        len--;
    if (!h->overflow) {
        if (++h->nfields > DKIM_FIELDS_MAX)
            h->overflow = true;
        else
            h->on_field(h->arg, h->field.data, len);
    }
    buf_reset(&h->field);
}

static void hsplit_append(struct hsplit *h, const char *p, size_t n)
{
    if (buf_append(&h->field, p, n) < 0)
        h->overflow = true;
}

static void hsplit_end_header(struct hsplit *h)
{
    hsplit_emit(h);
    h->state = HS_BODY;
    buf_free(&h->field);
    h->on_eoh(h->arg);
}

static void hsplit_feed(struct hsplit *h, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && h->state != HS_BODY) {
        char c = p[i];
        switch (h->state) {
        case HS_LINE_START:
            if (c == '\n') {
                i++;
                hsplit_end_header(h);
            } else if (c == '\r') {
                i++;
                h->state = HS_BLANK_CR;
            } else {
                if (c != ' ' && c != '\t') /* not a continuation: a new field */
                    hsplit_emit(h);
                h->state = HS_IN_LINE;
            }
            break;
        case HS_IN_LINE: {
            const char *nl = memchr(p + i, '\n', n - i);
            size_t end = nl ? (size_t)(nl - p) + 1 : n;
            hsplit_append(h, p + i, end - i);
            i = end;
            if (nl)
                h->state = HS_LINE_START;
            break;
        }
        case HS_BLANK_CR:
            if (c == '\n')
                i++;
            hsplit_end_header(h);
            break;
        case HS_BODY:
            break;
        }
    }
    if (i < n && h->state == HS_BODY)
        h->on_body(h->arg, p + i, n - i);
}

/* The end of the message: a message without a body ends its header here. */
static void hsplit_finish(struct hsplit *h)
{
    if (h->state != HS_BODY)
        hsplit_end_header(h);
}

static void hsplit_free(struct hsplit *h)
{
    buf_free(&h->field);
}

/* Is the field named name (case-insensitive)? */
static bool field_is(const char *field, size_t len, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (len <= n || !ascii_nieq(field, name, n))
        return false;
    size_t i = n;
    while (i < len && (field[i] == ' ' || field[i] == '\t'))
        i++;
    if (i == len || field[i] != ':')
        return false;
    *value = field + i + 1;
    return true;
}

/* ---------------------------------------------------------------------
 * The library
 */

static DKIM_CBSTAT on_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen);
static DKIM_CBSTAT on_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs);

struct dkim_ctx *dkim_ctx_new(char *err, size_t errlen)
{
    DKIM_LIB *lib = dkim_init(mem_alloc, mem_free);
    if (!lib) {
        set_err(err, errlen, "libopendkim: dkim_init failed");
        return NULL;
    }
    if (!dkim_libfeature(lib, DKIM_FEATURE_SHA256) || !dkim_libfeature(lib, DKIM_FEATURE_ED25519) ||
        !dkim_libfeature(lib, DKIM_FEATURE_OVERSIGN)) {
        set_err(err, errlen, "libopendkim lacks SHA-256, Ed25519 or oversigning");
        dkim_close(lib);
        return NULL;
    }
    unsigned flags = DKIM_LIBFLAGS_DELAYSIGPROC | DKIM_LIBFLAGS_BADSIGHANDLES;
    if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) != DKIM_STAT_OK ||
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)sign_headers,
                     sizeof(char **)) != DKIM_STAT_OK ||
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, (void *)oversign_headers,
                     sizeof(char **)) != DKIM_STAT_OK ||
        dkim_set_key_lookup(lib, on_key_lookup) != DKIM_STAT_OK ||
        dkim_set_prescreen(lib, on_prescreen) != DKIM_STAT_OK) {
        set_err(err, errlen, "libopendkim: cannot set its options");
        dkim_close(lib);
        return NULL;
    }
    struct dkim_ctx *ctx = xcalloc(1, sizeof *ctx);
    ctx->lib = lib;
    return ctx;
}

void dkim_ctx_set_time(struct dkim_ctx *ctx, uint64_t when)
{
    dkim_options(ctx->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &when, sizeof when);
}

void dkim_ctx_free(struct dkim_ctx *ctx)
{
    if (!ctx)
        return;
    dkim_close(ctx->lib);
    free(ctx);
}

const char *dkim_result_name(enum dkim_result r)
{
    switch (r) {
    case DKIM_RESULT_NONE:
        return "none";
    case DKIM_RESULT_PASS:
        return "pass";
    case DKIM_RESULT_FAIL:
        return "fail";
    case DKIM_RESULT_NEUTRAL:
        return "neutral";
    case DKIM_RESULT_POLICY:
        return "policy";
    case DKIM_RESULT_TEMPERROR:
        return "temperror";
    case DKIM_RESULT_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

/* ---------------------------------------------------------------------
 * Signing
 */

/* One signature being made. */
struct sign_key {
    DKIM *dkim;           /* libopendkim's signing handle */
    struct mem_owner mem; /* what libopendkim allocated for it */
    char *pem;            /* copy of the private key (wiped at free) */
    char selector[DKIM_SELECTOR_MAX + 1];
};

struct dkim_signer {
    struct dkim_ctx *ctx;
    char domain[DKIM_NAME_MAX + 1];
    size_t n; /* keys in k[] */
    struct sign_key k[DKIM_SIGN_KEYS_MAX];
    struct hsplit hs;
    bool failed; /* err says why */
    bool finished;
    char err[256];
};

static void signer_fail(struct dkim_signer *s, const char *what, DKIM *dkim, DKIM_STAT st)
{
    if (s->failed)
        return;
    s->failed = true;
    const char *why = dkim ? dkim_geterror(dkim) : NULL;
    set_err(s->err, sizeof s->err, "%s: %s%s%s", what, dkim_getresultstr(st),
            why && why[0] ? ": " : "", why && why[0] ? why : "");
}

static void signer_on_field(void *arg, const char *field, size_t len)
{
    struct dkim_signer *s = arg;
    for (size_t i = 0; i < s->n && !s->failed; i++) {
        mem_current = &s->k[i].mem;
        DKIM_STAT st = dkim_header(s->k[i].dkim, (u_char *)field, len);
        mem_current = NULL;
        if (st != DKIM_STAT_OK)
            signer_fail(s, "header field", s->k[i].dkim, st);
    }
}

static void signer_on_eoh(void *arg)
{
    struct dkim_signer *s = arg;
    if (s->hs.overflow && !s->failed) {
        s->failed = true;
        set_err(s->err, sizeof s->err,
                "the header section is beyond the limits (%d fields of %d octets)", DKIM_FIELDS_MAX,
                DKIM_FIELD_MAX);
    }
    for (size_t i = 0; i < s->n && !s->failed; i++) {
        mem_current = &s->k[i].mem;
        DKIM_STAT st = dkim_eoh(s->k[i].dkim);
        mem_current = NULL;
        if (st != DKIM_STAT_OK)
            signer_fail(s, "header section", s->k[i].dkim, st);
    }
}

static void signer_on_body(void *arg, const char *data, size_t len)
{
    struct dkim_signer *s = arg;
    for (size_t i = 0; i < s->n && !s->failed; i++) {
        mem_current = &s->k[i].mem;
        DKIM_STAT st = dkim_body(s->k[i].dkim, (u_char *)data, len);
        mem_current = NULL;
        if (st != DKIM_STAT_OK)
            signer_fail(s, "body", s->k[i].dkim, st);
    }
}

struct dkim_signer *dkim_signer_new(struct dkim_ctx *ctx, const struct dkim_keystore *ks,
                                    const char *domain, const char *id, char *err, size_t errlen)
{
    const struct dkim_key *first;
    size_t n = dkim_keystore_domain(ks, domain, &first);
    if (n == 0) {
        set_err(err, errlen, "no DKIM key for %s", domain);
        return NULL;
    }
    if (n > DKIM_SIGN_KEYS_MAX) {
        set_err(err, errlen, "%s has %zu DKIM keys; at most %d sign a message", domain, n,
                DKIM_SIGN_KEYS_MAX);
        return NULL;
    }
    struct dkim_signer *s = xcalloc(1, sizeof *s);
    s->ctx = ctx;
    snprintf(s->domain, sizeof s->domain, "%s", first->domain);
    hsplit_init(&s->hs, signer_on_field, signer_on_eoh, signer_on_body, s);
    for (size_t i = 0; i < n; i++) {
        const struct dkim_key *key = first + i;
        struct sign_key *k = &s->k[i];
        k->pem = xstrndup(key->pem, key->pem_len);
        snprintf(k->selector, sizeof k->selector, "%s", key->selector);
        DKIM_STAT st = DKIM_STAT_OK;
        k->dkim = dkim_sign(
            ctx->lib, (const u_char *)(id ? id : "-"), NULL, (dkim_sigkey_t)k->pem,
            (const u_char *)k->selector, (const u_char *)s->domain, DKIM_CANON_RELAXED,
            DKIM_CANON_RELAXED,
            key->type == DKIM_KEY_ED25519 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
        s->n = i + 1;
        if (!k->dkim) {
            set_err(err, errlen, "libopendkim cannot sign with %s: %s", key->path,
                    dkim_getresultstr(st));
            dkim_signer_free(s);
            return NULL;
        }
    }
    return s;
}

int dkim_signer_feed(struct dkim_signer *s, const void *data, size_t len)
{
    if (!s->failed && !s->finished)
        hsplit_feed(&s->hs, data, len);
    return s->failed ? -1 : 0;
}

int dkim_signer_finish(struct dkim_signer *s, struct buf *out, char *err, size_t errlen)
{
    if (s->finished) {
        set_err(err, errlen, "the signer has finished already");
        return -1;
    }
    s->finished = true;
    if (!s->failed)
        hsplit_finish(&s->hs);
    struct buf fields;
    buf_init(&fields, (size_t)DKIM_SIGN_KEYS_MAX * 8192);
    for (size_t i = 0; i < s->n && !s->failed; i++) {
        DKIM *d = s->k[i].dkim;
        mem_current = &s->k[i].mem;
        DKIM_STAT st = dkim_eom(d, NULL);
        u_char *value = NULL;
        size_t vlen = 0;
        if (st == DKIM_STAT_OK)
            st = dkim_getsighdr_d(d, strlen("DKIM-Signature: "), &value, &vlen);
        mem_current = NULL;
        if (st != DKIM_STAT_OK) {
            signer_fail(s, "signing", d, st);
            break;
        }
        if (dkim_sighdr_crlf((const char *)value, vlen, &fields) < 0) {
            s->failed = true;
            set_err(s->err, sizeof s->err, "the signature header is too long");
        }
    }
    int rc = -1;
    if (s->failed) {
        set_err(err, errlen, "%s", s->err);
    } else if (buf_append(out, fields.data, fields.len) < 0) {
        set_err(err, errlen, "no room for the signature header");
    } else {
        rc = (int)s->n;
    }
    buf_free(&fields);
    return rc;
}

void dkim_signer_free(struct dkim_signer *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        mem_current = &s->k[i].mem;
        if (s->k[i].dkim)
            dkim_free(s->k[i].dkim);
        mem_current = NULL;
        mem_owner_release(&s->k[i].mem);
        if (s->k[i].pem) {
            explicit_bzero(s->k[i].pem, strlen(s->k[i].pem));
            free(s->k[i].pem);
        }
    }
    hsplit_free(&s->hs);
    free(s);
}

/* ---------------------------------------------------------------------
 * Verifying
 */

/* How the fetch of one key ended. */
enum key_state {
    KEY_PENDING = 0, /* the query is in flight */
    KEY_FOUND,       /* record holds a key record that parses */
    KEY_NONE,        /* NXDOMAIN or no TXT record: no key */
    KEY_TEMPFAIL,    /* DNS failed; try later */
    KEY_BAD,         /* records there, none of them a usable key record */
};

/* One key name asked for. */
struct vkey {
    struct dkim_verifier *v;
    char name[DNS_NAME_MAX + 1]; /* selector._domainkey.domain */
    struct dns_query *q;         /* in flight; NULL once answered */
    enum key_state state;
    char record[DKIM_KEY_RECORD_MAX + 1]; /* KEY_FOUND: the joined TXT record */
    struct dkim_key_tags tags;            /* KEY_FOUND: what it says */
    char reason[320];                     /* KEY_TEMPFAIL, KEY_BAD: why */
};

/* One DKIM-Signature field examined. */
struct vsig {
    struct dkim_sig_tags tags;  /* what its tags say */
    bool checked;               /* parsed and accepted: its key is fetched and
                                   libopendkim verifies it */
    DKIM_SIGINFO *si;           /* libopendkim's signature, matched by b= */
    size_t key;                 /* index in keys[] when checked */
    struct dkim_sig_result res; /* the outcome (preset when not checked) */
};

struct dkim_verifier {
    struct dkim_ctx *ctx;
    struct ev_loop *loop;
    struct dns_resolver *dns;
    DKIM *dkim; /* libopendkim's verifying handle */
    dkim_verify_cb cb;
    void *arg;
    struct ev_timer *timer; /* delivers the results from the loop */
    struct hsplit hs;
    size_t nsigs; /* DKIM-Signature fields examined */
    struct vsig sigs[DKIM_VERIFY_MAX];
    size_t unexamined; /* DKIM-Signature fields past DKIM_VERIFY_MAX */
    size_t nkeys;      /* distinct key names */
    struct vkey keys[DKIM_VERIFY_MAX];
    size_t pending; /* DNS queries in flight */
    bool eoh;       /* the header section has ended */
    bool body;      /* libopendkim wants the body */
    bool broken;    /* libopendkim cannot go on: broken_reason */
    bool finished;  /* dkim_verifier_finish() was called */
    bool done;      /* res is final; the timer delivers it */
    char broken_reason[160];
    struct dkim_results res;
};

static void verifier_break(struct dkim_verifier *v, const char *what, DKIM_STAT st)
{
    if (v->broken)
        return;
    v->broken = true;
    const char *why = dkim_geterror(v->dkim);
    set_err(v->broken_reason, sizeof v->broken_reason, "%s: %s%s%s", what, dkim_getresultstr(st),
            why && why[0] ? ": " : "", why && why[0] ? why : "");
}

/* A DKIM-Signature field: decide whether it is checked. */
static void verifier_signature(struct dkim_verifier *v, const char *value, size_t len)
{
    if (v->nsigs == DKIM_VERIFY_MAX) {
        v->unexamined++;
        return;
    }
    struct vsig *s = &v->sigs[v->nsigs++];
    char err[128];
    int rc = dkim_sig_parse(value, len, &s->tags, err, sizeof err);
    struct dkim_sig_result *r = &s->res;
    copy_str(r->domain, sizeof r->domain, s->tags.domain);
    copy_str(r->selector, sizeof r->selector, s->tags.selector);
    copy_str(r->alg, sizeof r->alg, s->tags.alg_text);
    copy_str(r->header_b, sizeof r->header_b, s->tags.b);
    copy_str(r->identity, sizeof r->identity, s->tags.identity);
    if (rc < 0) {
        r->result = DKIM_RESULT_NEUTRAL;
        snprintf(r->reason, sizeof r->reason, "malformed signature: %s", err);
        return;
    }
    if (s->tags.alg == DKIM_ALG_RSA_SHA1) {
        r->result = DKIM_RESULT_POLICY;
        snprintf(r->reason, sizeof r->reason, "rsa-sha1 is not accepted (RFC 8301)");
        return;
    }
    char name[DNS_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s._domainkey.%s", s->tags.selector, s->tags.domain);
    size_t k = 0;
    while (k < v->nkeys && strcmp(v->keys[k].name, name) != 0)
        k++;
    if (k == v->nkeys) {
        v->nkeys++;
        v->keys[k].v = v;
        snprintf(v->keys[k].name, sizeof v->keys[k].name, "%s", name);
    }
    s->key = k;
    s->checked = true;
}

static void verifier_on_field(void *arg, const char *field, size_t len)
{
    struct dkim_verifier *v = arg;
    const char *value;
    if (field_is(field, len, "DKIM-Signature", &value))
        verifier_signature(v, value, len - (size_t)(value - field));
    if (v->broken)
        return;
    DKIM_STAT st = dkim_header(v->dkim, (u_char *)field, len);
    if (st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL || st == DKIM_STAT_INVALID)
        verifier_break(v, "header field", st);
}

static void verifier_on_answer(void *arg, const struct dns_answer *a);

static void verifier_on_eoh(void *arg)
{
    struct dkim_verifier *v = arg;
    v->eoh = true;
    if (v->hs.overflow && !v->broken) {
        v->broken = true;
        snprintf(v->broken_reason, sizeof v->broken_reason,
                 "the header section is beyond the limits (%d fields of %d octets)",
                 DKIM_FIELDS_MAX, DKIM_FIELD_MAX);
    }
    bool any = false;
    for (size_t i = 0; i < v->nsigs; i++)
        any = any || v->sigs[i].checked;
    if (!any || v->broken)
        return;
    DKIM_STAT st = dkim_eoh(v->dkim);
    if (st == DKIM_STAT_OK) {
        v->body = true;
    } else if (st != DKIM_STAT_NOSIG) {
        verifier_break(v, "header section", st);
        return;
    }
    for (size_t k = 0; k < v->nkeys; k++) {
        v->pending++;
        v->keys[k].q =
            dns_query(v->dns, v->keys[k].name, DNS_TYPE_TXT, verifier_on_answer, &v->keys[k]);
    }
}

static void verifier_on_body(void *arg, const char *data, size_t len)
{
    struct dkim_verifier *v = arg;
    if (!v->body || v->broken)
        return;
    DKIM_STAT st = dkim_body(v->dkim, (u_char *)data, len);
    if (st != DKIM_STAT_OK)
        verifier_break(v, "body", st);
}

/* Find the first usable key record of an answer. */
static void key_from_answer(struct vkey *k, const struct dns_answer *a)
{
    switch (a->status) {
    case DNS_ANSWER_NXDOMAIN:
    case DNS_ANSWER_NODATA:
        k->state = KEY_NONE;
        snprintf(k->reason, sizeof k->reason, "no key for signature (%s: %s)", k->name,
                 a->status == DNS_ANSWER_NXDOMAIN ? "NXDOMAIN" : "no TXT record");
        return;
    case DNS_ANSWER_TEMPFAIL:
        k->state = KEY_TEMPFAIL;
        snprintf(k->reason, sizeof k->reason, "key lookup failed: %s", a->reason);
        return;
    case DNS_ANSWER_INVALID:
        k->state = KEY_BAD;
        snprintf(k->reason, sizeof k->reason, "%s is not a valid DNS name", k->name);
        return;
    case DNS_ANSWER_DATA:
        break;
    }
    k->state = KEY_BAD;
    snprintf(k->reason, sizeof k->reason, "no TXT record at %s is a key record", k->name);
    bool first = true;
    for (size_t i = 0; i < a->n; i++) {
        char err[128];
        long n = dns_txt_join(a->rdata[i], a->len[i], k->record, sizeof k->record);
        if (n < 0) {
            if (first)
                snprintf(k->reason, sizeof k->reason,
                         "key record at %s is malformed or longer than %d octets", k->name,
                         DKIM_KEY_RECORD_MAX);
            first = false;
            continue;
        }
        if (dkim_key_parse(k->record, (size_t)n, &k->tags, err, sizeof err) == 0) {
            k->state = KEY_FOUND;
            return;
        }
        if (first)
            snprintf(k->reason, sizeof k->reason, "bad key record: %s", err);
        first = false;
    }
    k->record[0] = '\0';
}

/* The outcome of a checked signature after dkim_eom. */
static void classify(struct dkim_verifier *v, struct vsig *s)
{
    struct dkim_sig_result *r = &s->res;
    const struct vkey *k = &v->keys[s->key];
    r->result = DKIM_RESULT_PERMERROR;
    if (v->broken && k->state == KEY_PENDING) { /* no query was sent */
        copy_str(r->reason, sizeof r->reason, v->broken_reason);
        return;
    }
    if (k->state == KEY_TEMPFAIL) {
        r->result = DKIM_RESULT_TEMPERROR;
        copy_str(r->reason, sizeof r->reason, k->reason);
        return;
    }
    if (k->state != KEY_FOUND) {
        copy_str(r->reason, sizeof r->reason, k->reason);
        return;
    }
    r->testing = k->tags.testing;
    if (k->tags.revoked) {
        snprintf(r->reason, sizeof r->reason, "key revoked (empty p= at %s)", k->name);
        return;
    }
    bool ed = s->tags.alg == DKIM_ALG_ED25519;
    if (ed != (k->tags.kind == DKIM_KEYKIND_ED25519)) {
        snprintf(r->reason, sizeof r->reason, "the key at %s is k=%s, the signature a=%s", k->name,
                 k->tags.kind == DKIM_KEYKIND_ED25519 ? "ed25519" : "rsa", s->tags.alg_text);
        return;
    }
    if (!k->tags.sha256) {
        snprintf(r->reason, sizeof r->reason, "the key at %s does not allow sha256 (h=)", k->name);
        return;
    }
    if (v->broken) {
        copy_str(r->reason, sizeof r->reason, v->broken_reason);
        return;
    }
    if (!s->si) {
        r->result = DKIM_RESULT_NEUTRAL;
        snprintf(r->reason, sizeof r->reason, "malformed signature (refused by libopendkim)");
        return;
    }
    unsigned flags = dkim_sig_getflags(s->si);
    int bh = dkim_sig_getbh(s->si);
    int err = dkim_sig_geterror(s->si);
    bool sig_ok = (flags & DKIM_SIGFLAG_PASSED) != 0;
    if (sig_ok && bh == DKIM_SIGBH_MATCH) {
        r->result = DKIM_RESULT_PASS;
        r->reason[0] = '\0';
        return;
    }
    switch (err) {
    case DKIM_SIGERROR_KEYTOOSMALL: {
        unsigned bits = 0;
        dkim_sig_getkeysize(s->si, &bits);
        r->result = DKIM_RESULT_POLICY;
        snprintf(r->reason, sizeof r->reason, "an RSA key of %u bits is too small", bits);
        return;
    }
    case DKIM_SIGERROR_EXPIRED:
        snprintf(r->reason, sizeof r->reason, "signature expired (x=)");
        return;
    case DKIM_SIGERROR_FUTURE:
        snprintf(r->reason, sizeof r->reason, "signature made in the future (t=)");
        return;
    case DKIM_SIGERROR_TOOLARGE_L:
        r->result = DKIM_RESULT_FAIL;
        snprintf(r->reason, sizeof r->reason, "l= is longer than the body");
        return;
    default:
        break;
    }
    if ((flags & DKIM_SIGFLAG_PROCESSED) &&
        (err == DKIM_SIGERROR_OK || err == DKIM_SIGERROR_UNKNOWN || err == DKIM_SIGERROR_BADSIG)) {
        r->result = DKIM_RESULT_FAIL;
        if (!sig_ok && bh == DKIM_SIGBH_MISMATCH)
            snprintf(r->reason, sizeof r->reason, "signature and body hash did not verify");
        else if (!sig_ok)
            snprintf(r->reason, sizeof r->reason, "signature did not verify");
        else
            snprintf(r->reason, sizeof r->reason, "body hash did not verify");
        return;
    }
    const char *es = dkim_sig_geterrorstr(err);
    snprintf(r->reason, sizeof r->reason, "%s", es ? es : "signature not verified");
}

/* Every answer is in and the message has ended: verify, then deliver. */
static void verifier_complete(struct dkim_verifier *v)
{
    if (v->done || !v->finished || v->pending > 0)
        return;
    v->done = true;
    bool any = false;
    for (size_t i = 0; i < v->nsigs; i++)
        if (v->sigs[i].checked && v->keys[v->sigs[i].key].state == KEY_FOUND)
            any = true;
    if (any && v->body && !v->broken) {
        DKIM_STAT st = dkim_eom(v->dkim, NULL);
        /* per-signature outcomes are in the siginfo; only a failure of the
           whole handle matters here */
        if (st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL || st == DKIM_STAT_INVALID)
            verifier_break(v, "end of message", st);
    }
    struct dkim_results *res = &v->res;
    memset(res, 0, sizeof *res);
    res->n = v->nsigs;
    res->unexamined = v->unexamined;
    bool pass = false;
    for (size_t i = 0; i < v->nsigs; i++) {
        struct vsig *s = &v->sigs[i];
        if (s->checked)
            classify(v, s);
        res->sigs[i] = s->res;
        pass = pass || s->res.result == DKIM_RESULT_PASS;
    }
    res->summary = v->nsigs == 0 ? DKIM_RESULT_NONE : pass ? DKIM_RESULT_PASS : res->sigs[0].result;
    ev_timer_start(v->timer, 0);
}

static void verifier_on_answer(void *arg, const struct dns_answer *a)
{
    struct vkey *k = arg;
    struct dkim_verifier *v = k->v;
    k->q = NULL;
    key_from_answer(k, a);
    v->pending--;
    verifier_complete(v);
}

static void verifier_on_timer(void *arg)
{
    struct dkim_verifier *v = arg;
    v->cb(v->arg, &v->res); /* may free v */
}

/* libopendkim's key lookup: the record fetched beforehand, never DNS. */
static DKIM_CBSTAT on_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    struct dkim_verifier *v = dkim_get_user_context(dkim);
    if (!v)
        return DKIM_CBSTAT_NOTFOUND;
    for (size_t i = 0; i < v->nsigs; i++) {
        const struct vsig *s = &v->sigs[i];
        if (s->si != sig || !s->checked)
            continue;
        const struct vkey *k = &v->keys[s->key];
        size_t n = strlen(k->record);
        if (k->state != KEY_FOUND || n + 1 > buflen)
            return DKIM_CBSTAT_NOTFOUND;
        memcpy(buf, k->record, n + 1);
        return DKIM_CBSTAT_CONTINUE;
    }
    return DKIM_CBSTAT_NOTFOUND;
}

/* libopendkim's prescreen: match its signatures to ours by b=, ignore the
   ones Tern does not check. */
static DKIM_CBSTAT on_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    struct dkim_verifier *v = dkim_get_user_context(dkim);
    for (int i = 0; i < nsigs; i++) {
        struct vsig *match = NULL;
        const u_char *b = dkim_sig_gettagvalue(sigs[i], 0, (u_char *)"b");
        char compact[DKIM_B_PREFIX + 1];
        size_t n = 0;
        for (size_t k = 0; b && b[k] && n < DKIM_B_PREFIX; k++)
            if (b[k] != ' ' && b[k] != '\t' && b[k] != '\r' && b[k] != '\n')
                compact[n++] = (char)b[k];
        compact[n] = '\0';
        for (size_t k = 0; v && n > 0 && k < v->nsigs && !match; k++)
            if (v->sigs[k].checked && !v->sigs[k].si && strcmp(v->sigs[k].tags.b, compact) == 0)
                match = &v->sigs[k];
        if (match)
            match->si = sigs[i];
        else
            dkim_sig_ignore(sigs[i]);
    }
    return DKIM_CBSTAT_CONTINUE;
}

struct dkim_verifier *dkim_verifier_new(struct dkim_ctx *ctx, struct ev_loop *loop,
                                        struct dns_resolver *dns, const char *id, dkim_verify_cb cb,
                                        void *arg, char *err, size_t errlen)
{
    DKIM_STAT st = DKIM_STAT_OK;
    DKIM *d = dkim_verify(ctx->lib, (const u_char *)(id ? id : "-"), NULL, &st);
    if (!d) {
        set_err(err, errlen, "libopendkim: %s", dkim_getresultstr(st));
        return NULL;
    }
    struct dkim_verifier *v = xcalloc(1, sizeof *v);
    v->ctx = ctx;
    v->loop = loop;
    v->dns = dns;
    v->dkim = d;
    v->cb = cb;
    v->arg = arg;
    v->timer = ev_timer_new(loop, verifier_on_timer, v);
    dkim_set_user_context(d, v);
    hsplit_init(&v->hs, verifier_on_field, verifier_on_eoh, verifier_on_body, v);
    return v;
}

void dkim_verifier_feed(struct dkim_verifier *v, const void *data, size_t len)
{
    if (!v->finished)
        hsplit_feed(&v->hs, data, len);
}

void dkim_verifier_finish(struct dkim_verifier *v)
{
    if (v->finished)
        return;
    hsplit_finish(&v->hs);
    v->finished = true;
    verifier_complete(v);
}

void dkim_verifier_free(struct dkim_verifier *v)
{
    if (!v)
        return;
    for (size_t k = 0; k < v->nkeys; k++)
        dns_query_cancel(v->keys[k].q);
    ev_timer_free(v->timer);
    dkim_free(v->dkim);
    hsplit_free(&v->hs);
    free(v);
}
