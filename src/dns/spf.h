/*
 * spf - the pure half of SPF (RFC 7208): record selection and syntax, macro
 * expansion, and check_host() as a resumable state machine that asks its
 * caller for DNS answers instead of querying DNS itself. No I/O, no logging;
 * the only allocation is spf_eval_new()'s one block. src/mailauth/spf_check.c
 * drives it on the resolver; tests/unit/test_spf.c and fuzz/fuzz_spf.c feed
 * it answers from tables and from fuzz input.
 *
 * RFC 7208 §2.3 (the HELO identity), §2.4 (the MAIL FROM identity; the null
 * sender becomes postmaster@HELO), §2.6 (results), §4.3 (initial
 * processing: a malformed or single-label domain is "none"), §4.4 and §4.5
 * (the TXT lookup and record selection: no "v=spf1" record is "none", more
 * than one is "permerror"), §4.6 (terms; a syntax error anywhere in a
 * record is "permerror" before anything is evaluated), §4.6.4 (at most 10
 * DNS-querying terms, at most 2 void lookups, at most 10 MX names, the first
 * 10 PTR names), §4.7 (default "neutral"), §4.8 (domain-spec), §5 (the
 * mechanisms all, include, a, mx, ptr, ip4, ip6, exists with dual CIDR
 * lengths), §6 (redirect= and exp=; unknown modifiers are ignored; a
 * repeated redirect= or exp= is "permerror"), §7 (macros, URL escaping of
 * upper-case macro letters, left truncation to 253 octets).
 *
 * Use: e = spf_eval_new(&req); then loop on spf_eval_next(e, &q): for
 * SPF_STEP_QUERY ask DNS for q.name / q.type and hand the answer to
 * spf_eval_answer(e, &answer); at SPF_STEP_DONE read spf_eval_result(e).
 * One query is outstanding at a time. spf_eval_abort() ends an evaluation
 * early with "temperror" (the caller's time limit). spf_eval_free(e).
 *
 * Choices where RFC 7208 leaves room (docs/spf.md lists them):
 *  - Every query made for a mechanism or redirect= that ends in NODATA or
 *    NXDOMAIN counts as a void lookup (the a, mx and ptr address lookups
 *    too, as pyspf counts them); the first TXT lookup of the identity's own
 *    domain, exp= and %{p} do not.
 *  - redirect= counts toward the 10 lookups when it is followed, not when
 *    the record is read.
 *  - More than 10 MX names is "permerror" before any address is looked up;
 *    PTR names past the first 10 are ignored.
 *  - The ptr mechanism and %{p} validate the first 10 PTR names once per
 *    evaluation and share the result; a DNS error on the PTR lookup means no
 *    match (§5.5) and %{p} "unknown".
 *  - A name that macro expansion makes invalid for DNS (an empty or too long
 *    label, a single label longer than 253 octets) is not queried: it is
 *    taken as a name that does not exist.
 */
#ifndef TERN_DNS_SPF_H
#define TERN_DNS_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

/* The longest SPF record kept (its TXT character-strings joined); a longer
   "v=spf1" record is a permerror. */
#define SPF_RECORD_MAX 4096
/* RFC 7208 §4.6.4. */
#define SPF_MAX_LOOKUPS 10
#define SPF_MAX_VOID_LOOKUPS 2
#define SPF_MAX_MX 10
#define SPF_MAX_PTR 10
/* Frames of include recursion: the identity's record and one per include
   (each include costs one of the 10 lookups, so 11 are enough). */
#define SPF_MAX_DEPTH (SPF_MAX_LOOKUPS + 1)
/* The longest sender (MAIL FROM path) and HELO name taken in. */
#define SPF_SENDER_MAX 512
#define SPF_HELO_MAX 255
/* Bounds of the texts of a result. */
#define SPF_MECHANISM_MAX 255
#define SPF_EXPLANATION_MAX 512
#define SPF_REASON_MAX 640
/* The driver's overall time limit when spf_request.timeout_ms is 0. */
#define SPF_DEFAULT_TIMEOUT_MS 20000

/* The results of check_host() (RFC 7208 §2.6). */
enum spf_result_code {
    SPF_NONE = 0,  /* no SPF record, or no valid domain to check */
    SPF_NEUTRAL,   /* the domain owner makes no assertion (also the default) */
    SPF_PASS,      /* the client is authorized */
    SPF_FAIL,      /* the client is not authorized */
    SPF_SOFTFAIL,  /* probably not authorized */
    SPF_TEMPERROR, /* a transient DNS error; a later check may succeed */
    SPF_PERMERROR, /* the published records cannot be interpreted */
};

/* Which identity is checked. */
enum spf_identity {
    SPF_IDENTITY_MAILFROM = 0, /* §2.4: the MAIL FROM domain (postmaster@HELO for <>) */
    SPF_IDENTITY_HELO,         /* §2.3: the HELO/EHLO name, sender postmaster@HELO */
};

/* What is checked. The strings are copied by spf_eval_new(). */
struct spf_request {
    enum spf_identity identity;
    struct dns_addr client; /* the SMTP client's address; IPv4-mapped IPv6 is
                               taken as IPv4 */
    const char *helo;       /* the HELO/EHLO argument as given; NULL or "" when
                               none (a HELO check is then "none") */
    const char *sender;     /* the MAIL FROM path without <>; NULL or "" for
                               the null sender */
    const char *receiver;   /* our host name, for %{r}; NULL: "unknown" */
    int64_t now;            /* seconds since the epoch, for %{t} */
    uint32_t timeout_ms;    /* the driver's limit for the whole check
                               (spf_check.h); 0: SPF_DEFAULT_TIMEOUT_MS */
};

/* The outcome of an evaluation (valid until spf_eval_free()). */
struct spf_result {
    enum spf_result_code result;
    enum spf_identity identity;
    char domain[DNS_NAME_MAX + 1];             /* the domain checked, lowercase: the
                                                  sender's domain or the HELO name ("" when
                                                  there was none to check) */
    char sender[SPF_SENDER_MAX + 16];          /* the <sender> of check_host(): the MAIL
                                                  FROM path, or postmaster@HELO */
    char client[64];                           /* the client address as text */
    char mechanism[SPF_MECHANISM_MAX + 1];     /* the directive of the identity's
                                                record (after redirects) that decided,
                                                as written ("-all",
                                                "include:_spf.example.org"); "default"
                                                when none matched; "" when no record was
                                                evaluated; for an error, the directive
                                                being evaluated when it happened */
    char explanation[SPF_EXPLANATION_MAX + 1]; /* fail only: the expanded exp=
                                            text (§6.2); "" without one */
    char reason[SPF_REASON_MAX];               /* one line for logs and headers:
                                                  "192.0.2.1 is not a permitted sender of
                                                  example.org" */
    unsigned lookups;                          /* DNS-querying terms evaluated */
    unsigned void_lookups;                     /* void lookups counted */
    unsigned queries;                          /* DNS queries asked in all */
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result_code r);
/* "mailfrom" or "helo" (RFC 8601 §2.7.2 property names). */
const char *spf_identity_name(enum spf_identity id);

/* ---- Record syntax (§4.5, §4.6, §5, §6, §12) ---- */

/* The kinds of terms. */
enum spf_term_kind {
    SPF_TERM_ALL = 0,
    SPF_TERM_INCLUDE,
    SPF_TERM_A,
    SPF_TERM_MX,
    SPF_TERM_PTR,
    SPF_TERM_IP4,
    SPF_TERM_IP6,
    SPF_TERM_EXISTS,
    SPF_TERM_REDIRECT,
    SPF_TERM_EXP,
    SPF_TERM_UNKNOWN_MODIFIER, /* name=macro-string: checked, then ignored */
};

/* One parsed term; spec points into the parsed text. */
struct spf_term {
    enum spf_term_kind kind;
    enum spf_result_code qualifier; /* mechanisms: SPF_PASS (+, the default),
                                       SPF_FAIL (-), SPF_SOFTFAIL (~),
                                       SPF_NEUTRAL (?) */
    const char *spec;               /* the domain-spec (include, a, mx, ptr,
                                       exists, redirect, exp) or macro-string
                                       (unknown modifier); NULL when absent */
    size_t spec_len;
    unsigned cidr4;  /* a, mx, ip4: prefix length; 32 when absent */
    unsigned cidr6;  /* a, mx, ip6: prefix length; 128 when absent */
    uint8_t net[16]; /* ip4 (first 4 octets) and ip6: the address
                        as written */
};

/* Is this TXT text an SPF version 1 record (§4.5): "v=spf1" (in any case)
   alone or followed by a space? */
bool spf_record_is_spf1(const char *s, size_t len);

/* Parse one term (a directive or a modifier, without spaces). False with a
   message in err on a syntax error. */
bool spf_term_parse(const char *s, size_t len, struct spf_term *t, char *err, size_t errlen);

/* What spf_record_check() found. */
struct spf_record_info {
    size_t terms;      /* terms after the version */
    size_t directives; /* mechanisms among them */
    bool has_redirect, has_exp;
    size_t redirect_at;     /* offset of the redirect= term in the record */
    size_t redirect_len;    /* its length */
    size_t exp_at, exp_len; /* the same for exp= */
};

/* Check a whole record (§4.6: version, terms separated by spaces, each
   term's syntax, redirect= and exp= at most once each). 0, or -1 with a
   message in err naming the offending term. */
int spf_record_check(const char *s, size_t len, struct spf_record_info *info, char *err,
                     size_t errlen);

/* ---- Macros (§7) ---- */

/* The values macros expand to. */
struct spf_macro_ctx {
    const char *sender;        /* %{s} */
    const char *local;         /* %{l} ("postmaster" when the sender has none) */
    const char *sender_domain; /* %{o} */
    const char *domain;        /* %{d}: the current domain */
    const char *helo;          /* %{h} */
    const char *validated;     /* %{p}: chosen by the caller; "unknown" when none */
    const char *receiver;      /* %{r} */
    struct dns_addr ip;        /* %{i}, %{c}, %{v} */
    int64_t now;               /* %{t} */
};

/* Check a macro-string's syntax: "%{" letter [digits] ["r"] *delimiter "}",
   "%%", "%_", "%-", and literal octets 0x21-0x7E. With explain set it is
   explain-string syntax: spaces allowed, and the letters c, r and t (which
   are errors elsewhere). A digit transformer of 0 is an error (§7.3). */
bool spf_macro_check(const char *s, size_t len, bool explain, char *err, size_t errlen);
/* Does the macro-string use %{p}? (It needs DNS before it can be expanded.) */
bool spf_macro_uses_p(const char *s, size_t len);

/* Expand a domain-spec (already checked) into a name to query: one
   trailing dot dropped, then, past 253 octets, labels removed from the left
   until it fits (§7.3). out is "" when no suffix of labels fits. */
void spf_expand_domain(const struct spf_macro_ctx *ctx, const char *s, size_t len,
                       char out[DNS_NAME_MAX + 1]);
/* Expand an explain-string (already checked) into out, cut at outlen - 1
   octets. */
void spf_expand_text(const struct spf_macro_ctx *ctx, const char *s, size_t len, char *out,
                     size_t outlen);

/* ---- Evaluation ---- */

struct spf_eval;

/* A DNS question the evaluator needs answered. */
struct spf_query {
    char name[DNS_NAME_MAX + 1]; /* lowercase, no trailing dot, a valid query name */
    int type;                    /* DNS_TYPE_TXT, _A, _AAAA, _MX or _PTR */
};

enum spf_step {
    SPF_STEP_QUERY, /* answer the query with spf_eval_answer() */
    SPF_STEP_DONE,  /* spf_eval_result() is final */
};

/* An evaluation of req (its strings are copied). Never NULL. */
struct spf_eval *spf_eval_new(const struct spf_request *req);
/* NULL does nothing. */
void spf_eval_free(struct spf_eval *e);
/* Run until a DNS answer is needed (q filled) or the result is final.
   Calling it again before answering repeats the same query. */
enum spf_step spf_eval_next(struct spf_eval *e, struct spf_query *q);
/* The answer to the query of the last SPF_STEP_QUERY, read during the call
   only. DNS_ANSWER_INVALID is taken as NXDOMAIN. Ignored when no query is
   outstanding. */
void spf_eval_answer(struct spf_eval *e, const struct dns_answer *a);
/* End the evaluation now with "temperror" and why as the reason (a time
   limit); does nothing once it is done. */
void spf_eval_abort(struct spf_eval *e, const char *why);
/* The result; final once spf_eval_next() returned SPF_STEP_DONE. */
const struct spf_result *spf_eval_result(const struct spf_eval *e);

#endif
