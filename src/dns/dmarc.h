/*
 * dmarc - the pure half of DMARC (RFC 7489, with RFC 9091's np tag): the
 * policy record, the choice of one record among a TXT answer, policy
 * discovery as a state machine that is fed DNS answers, identifier
 * alignment, the evaluation of a message's SPF and DKIM results against the
 * policy, pct sampling and the disposition, and the author domain of a
 * message's From field. No I/O, logging or allocation: everything lives in
 * the caller's structs, bounded by the constants below, so unit tests and
 * fuzz_dmarc reach it directly. src/mailauth/dmarc_check.c sends the queries
 * this code asks for and feeds it the answers.
 *
 * RFC 7489 §3.1 (identifier alignment: relaxed = same organisational
 * domain, strict = the same name), §3.2 (organisational domain: a function
 * the caller gives, see src/mailauth/orgdomain.h), §6.3 and §6.4 (the
 * record: tags, values, defaults, syntax), §6.6.1 (the author domain),
 * §6.6.2 (evaluation: pass when SPF or DKIM passes with an aligned
 * identifier), §6.6.3 (policy discovery: _dmarc.<From domain>, then
 * _dmarc.<organisational domain>; only records that start with v=DMARC1;
 * more than one is no policy; an invalid p with a valid rua is p=none),
 * §6.6.4 (pct: a message left out of the sample gets the next lower
 * policy, reject -> quarantine -> none), §11.2 (the results pass, fail,
 * none, temperror, permerror). RFC 9091 §4 (np: the policy for subdomains
 * that do not exist, i.e. have no A, AAAA or MX records).
 *
 * Tolerance: tag names and keyword values (p=Reject) are matched without
 * regard to case, as RFC 5234 strings are; "DMARC1" must be written as is.
 * After the v tag, tags may come in any order; a malformed tag-spec, a
 * repeated tag (after its first occurrence) and an invalid value are
 * ignored and counted, and the tag keeps its default (§6.4: "syntax errors
 * in the remainder of the record SHOULD be discarded in favor of default
 * values"); unknown tags are ignored and counted. p, sp (and the rua rule
 * of §6.6.3) are the exceptions the RFC names. An invalid np is ignored.
 *
 * Domains here are in ASCII (A-labels for internationalised names, which
 * the I/O half converts), compared without regard to case, one trailing
 * dot ignored.
 */
#ifndef TERN_DNS_DMARC_H
#define TERN_DNS_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

/* Octets of a record (its TXT strings joined) that are parsed; a longer
   record that starts with v=DMARC1 is unusable. */
#define DMARC_RECORD_MAX 2048
/* Octets of one reporting URI kept; a longer one is dropped. */
#define DMARC_URI_MAX 320
/* URIs kept per rua or ruf list (RFC 7489 §6.2 asks for at least two). */
#define DMARC_URIS_MAX 8
/* DKIM results an evaluation looks at; later ones are not considered. */
#define DMARC_MAX_DKIM 16

/* A policy (p, sp, np). */
enum dmarc_policy {
    DMARC_POLICY_UNSET = 0,  /* not given (or invalid) */
    DMARC_POLICY_NONE,       /* "none": monitor only */
    DMARC_POLICY_QUARANTINE, /* "quarantine": treat as suspicious */
    DMARC_POLICY_REJECT,     /* "reject": refuse the message */
};

/* An alignment mode (adkim, aspf). */
enum dmarc_align {
    DMARC_ALIGN_RELAXED = 0, /* "r": the same organisational domain (default) */
    DMARC_ALIGN_STRICT,      /* "s": the same name */
};

/* fo: when failure reports are asked for (bits). */
#define DMARC_FO_0 1u /* "0": all mechanisms failed to produce an aligned pass (default) */
#define DMARC_FO_1 2u /* "1": any mechanism failed */
#define DMARC_FO_D 4u /* "d": a DKIM signature failed */
#define DMARC_FO_S 8u /* "s": SPF failed */

/* rf: failure report formats (bits). */
#define DMARC_RF_AFRF 1u  /* "afrf" (RFC 6591; the default) */
#define DMARC_RF_OTHER 2u /* a format name this code does not know */

/* One reporting URI of rua or ruf. */
struct dmarc_uri {
    char uri[DMARC_URI_MAX + 1]; /* as published: "mailto:dmarc@example.org" */
    uint64_t max_size;           /* "!10m": the largest report in octets; 0 when not given */
};

/* A parsed policy record (§6.3). Every field has its default when the tag
   is absent or invalid. */
struct dmarc_record {
    enum dmarc_policy p;                  /* p; NONE when implied (p_implied) */
    bool p_implied;                       /* p (or sp) was missing or invalid and rua had a
                                             valid URI: treated as p=none (§6.6.3) */
    enum dmarc_policy sp;                 /* sp; UNSET: p applies to subdomains */
    enum dmarc_policy np;                 /* np (RFC 9091); UNSET: sp, else p, applies */
    unsigned pct;                         /* 0..100; default 100 */
    enum dmarc_align adkim;               /* default relaxed */
    enum dmarc_align aspf;                /* default relaxed */
    size_t nrua;                          /* URIs in rua */
    struct dmarc_uri rua[DMARC_URIS_MAX]; /* aggregate report URIs, in order */
    size_t nruf;                          /* URIs in ruf */
    struct dmarc_uri ruf[DMARC_URIS_MAX]; /* failure report URIs, in order */
    size_t uris_dropped;                  /* invalid URIs, and valid ones past the bound */
    unsigned fo;                          /* DMARC_FO_* bits; default DMARC_FO_0 */
    unsigned rf;                          /* DMARC_RF_* bits; default DMARC_RF_AFRF */
    uint32_t ri;                          /* aggregate report interval, seconds; 86400 */
    unsigned unknown;                     /* unknown tags (ignored) */
    unsigned invalid;                     /* malformed tag-specs, repeated tags and invalid
                                             values (ignored) */
};

/* What a TXT string is, as a DMARC record. */
enum dmarc_parse {
    DMARC_PARSE_OK = 0,    /* a usable record (p given, or implied by rua) */
    DMARC_PARSE_NOT_DMARC, /* does not start with "v=DMARC1": not a DMARC record */
    DMARC_PARSE_UNUSABLE,  /* starts with v=DMARC1 but has no valid p (or has an invalid
                              sp) and no valid rua URI, or is longer than
                              DMARC_RECORD_MAX: no DMARC processing (§6.6.3) */
};

/* Does s[0..len) start with the v tag of a DMARC record ("v" *WSP "=" *WSP
   "DMARC1" followed by *WSP and ";" or the end)? */
bool dmarc_record_is_dmarc(const char *s, size_t len);
/* Parse s[0..len) into rec (always filled with defaults first). */
enum dmarc_parse dmarc_record_parse(const char *s, size_t len, struct dmarc_record *rec);

/* "none", "quarantine", "reject", or "" for UNSET. */
const char *dmarc_policy_name(enum dmarc_policy p);

/* ---- Alignment (§3.1) ---- */

/* The organisational domain of domain (lowercase ASCII, no trailing dot)
   into out; false when it has none (domain is a public suffix, or not a
   domain name). src/mailauth/orgdomain.h gives one on the public suffix list. */
typedef bool (*dmarc_orgdomain_fn)(void *arg, const char *domain, char out[DNS_NAME_MAX + 1]);

/* Is the authenticated domain `auth` aligned with the From domain `from`?
   Strict: the same name. Relaxed: the same name, or both have an
   organisational domain and it is the same (a public suffix, which has
   none, aligns with nothing but itself). Case-insensitive; one trailing
   dot ignored; NULL or "" is never aligned. */
bool dmarc_aligned(const char *auth, const char *from, enum dmarc_align mode,
                   dmarc_orgdomain_fn org, void *org_arg);

/* ---- The author domain (§6.6.1) ---- */

enum dmarc_from {
    DMARC_FROM_OK = 0,       /* one author domain */
    DMARC_FROM_NONE,         /* the message has no From field */
    DMARC_FROM_MANY_FIELDS,  /* more than one From field */
    DMARC_FROM_NO_ADDRESS,   /* the field holds no address, does not parse, or was cut */
    DMARC_FROM_MANY_DOMAINS, /* addresses in more than one domain */
    DMARC_FROM_BAD_DOMAIN,   /* a domain literal, or not a domain name */
};

/* The author domain of a message from its From fields: nfields is how many
   there were, value[0..len) the unfolded value of the first, truncated
   whether it was cut (struct smtp_hdr_scan gives all three). Several
   addresses in one domain give that domain. The domain is written to
   `domain` lowercase without a trailing dot; it may hold UTF-8 (RFC 6532),
   which the caller converts to A-labels. Every status but OK means
   dmarc=permerror: §6.6.1 lets a receiver reject such messages; Tern
   records the result and applies no policy. */
enum dmarc_from dmarc_from_domain(size_t nfields, const char *value, size_t len, bool truncated,
                                  char domain[DNS_NAME_MAX + 1]);
/* "ok", "no-from", "multiple-from-fields", "no-address", "multiple-domains",
   "bad-domain". */
const char *dmarc_from_name(enum dmarc_from f);

/* ---- Policy discovery (§6.6.3, RFC 9091 §4) ---- */

enum dmarc_disc {
    DMARC_DISC_PENDING = 0, /* a query is to be made (dmarc_discovery_next) */
    DMARC_DISC_FOUND,       /* rec is the policy record published at domain */
    DMARC_DISC_ABSENT,      /* no DMARC record at the From domain or its organisational
                               domain: dmarc=none */
    DMARC_DISC_MANY,        /* more than one DMARC record at one name: dmarc=none */
    DMARC_DISC_UNUSABLE,    /* the record found is unusable (DMARC_PARSE_UNUSABLE):
                               dmarc=permerror */
    DMARC_DISC_TEMPFAIL,    /* a lookup failed temporarily: dmarc=temperror */
    DMARC_DISC_BAD_FROM,    /* the From domain is not a domain name: dmarc=permerror */
};

/* Does the From domain exist (RFC 9091 §2.7: it has A, AAAA or MX records)?
   Only asked when np would change the policy. */
enum dmarc_exists {
    DMARC_EXISTS_UNKNOWN = 0, /* not checked, or a lookup failed: treated as existing */
    DMARC_EXISTS_YES,
    DMARC_EXISTS_NO,
};

/* Discovery state: zeroed and set up by dmarc_discovery_init; read the
   results once dmarc_discovery_next returns false. */
struct dmarc_discovery {
    enum dmarc_disc status;        /* PENDING until done */
    char from[DNS_NAME_MAX + 1];   /* the From domain, lowercase */
    char org[DNS_NAME_MAX + 1];    /* its organisational domain; "" when it has none */
    char domain[DNS_NAME_MAX + 1]; /* the policy domain: where rec was found; "" */
    bool at_org;                   /* rec is the organisational domain's, the From
                                      domain being a subdomain of it */
    enum dmarc_exists from_exists; /* RFC 9091: checked when np matters */
    struct dmarc_record rec;       /* when FOUND (and what was parsed when UNUSABLE) */
    char reason[600];              /* for logs when not FOUND: what was missing or failed */
    int step;                      /* private: which query is next */
    const struct dmarc_input *in;  /* private: the message's input, or NULL */
};

struct dmarc_input;

/* Begin discovery for the From domain `from` (ASCII). in, when not NULL,
   is the message's input (kept until discovery ends): when it passes
   alignment anyway, the existence check for np is skipped. */
void dmarc_discovery_init(struct dmarc_discovery *d, const char *from, dmarc_orgdomain_fn org,
                          void *org_arg, const struct dmarc_input *in);
/* The next query to make: its name and type (DNS_TYPE_TXT, _A, _AAAA,
   _MX); false when discovery is over. */
bool dmarc_discovery_next(const struct dmarc_discovery *d, char name[DNS_NAME_MAX + 1], int *type);
/* The answer to that query (TXT records as rdata, joined here). */
void dmarc_discovery_answer(struct dmarc_discovery *d, const struct dns_answer *a,
                            dmarc_orgdomain_fn org, void *org_arg);

/* ---- Evaluation (§6.6.2, §6.6.4) ---- */

/* An SPF or DKIM result (RFC 8601 §2.7.1, §2.7.2). */
enum dmarc_auth {
    DMARC_AUTH_NONE = 0,
    DMARC_AUTH_PASS,
    DMARC_AUTH_FAIL,
    DMARC_AUTH_SOFTFAIL,
    DMARC_AUTH_NEUTRAL,
    DMARC_AUTH_POLICY,
    DMARC_AUTH_TEMPERROR,
    DMARC_AUTH_PERMERROR,
};

/* One DKIM signature's result. */
struct dmarc_dkim {
    enum dmarc_auth result; /* pass, fail, ... */
    const char *domain;     /* its d= */
    const char *selector;   /* its s= (for reports; may be NULL) */
};

/* What the message's other checks found. */
struct dmarc_input {
    enum dmarc_auth spf;           /* the SPF result */
    const char *spf_domain;        /* the domain SPF checked: MAIL FROM's, or the HELO
                                      name with a null sender; NULL when none */
    size_t ndkim;                  /* entries in dkim (the first DMARC_MAX_DKIM count) */
    const struct dmarc_dkim *dkim; /* every signature's result */
};

/* "none", "pass", ... as RFC 8601 writes them. */
const char *dmarc_auth_name(enum dmarc_auth a);
/* The result named s[0..len) (any case); false when none is. */
bool dmarc_auth_parse(const char *s, size_t len, enum dmarc_auth *out);

/* The DMARC result (RFC 7489 §11.2). */
enum dmarc_status {
    DMARC_STATUS_NONE = 0,  /* no policy published (or no usable one) */
    DMARC_STATUS_PASS,      /* SPF or DKIM passed with an aligned identifier */
    DMARC_STATUS_FAIL,      /* neither did: the policy applies */
    DMARC_STATUS_TEMPERROR, /* a lookup failed temporarily */
    DMARC_STATUS_PERMERROR, /* the From field or the record is unusable */
};

/* What the policy asks a receiver to do with this message. */
enum dmarc_disposition {
    DMARC_DISP_NONE = 0,   /* deliver as usual */
    DMARC_DISP_QUARANTINE, /* deliver as suspicious */
    DMARC_DISP_REJECT,     /* refuse */
};

/* Which tag of the record gave the policy. */
enum dmarc_policy_tag { DMARC_TAG_NONE = 0, DMARC_TAG_P, DMARC_TAG_SP, DMARC_TAG_NP };

/* The outcome of dmarc_evaluate. */
struct dmarc_result {
    enum dmarc_status status;
    bool spf_aligned;                   /* SPF passed for a domain aligned with From */
    bool dkim_aligned;                  /* a DKIM signature passed with an aligned d= */
    size_t dkim_index;                  /* the first such signature, when dkim_aligned */
    enum dmarc_policy policy;           /* what the domain asks for this message (p, sp or
                                           np); UNSET without a usable record */
    enum dmarc_policy_tag policy_tag;   /* where policy came from */
    bool sampled_out;                   /* it failed, and pct left it out of the sample:
                                           the next lower policy applies */
    enum dmarc_disposition disposition; /* what to do: NONE unless status is FAIL */
};

/* Evaluate the input against what discovery found. pct_roll is a number
   from 0 to 99 drawn at random for this message (values past 99 are taken
   modulo 100): the policy applies when pct_roll < pct (§6.3). */
void dmarc_evaluate(const struct dmarc_discovery *d, const struct dmarc_input *in,
                    unsigned pct_roll, dmarc_orgdomain_fn org, void *org_arg,
                    struct dmarc_result *out);

/* "none", "pass", "fail", "temperror", "permerror". */
const char *dmarc_status_name(enum dmarc_status s);
/* "none", "quarantine", "reject". */
const char *dmarc_disposition_name(enum dmarc_disposition d);
/* "p", "sp", "np", "". */
const char *dmarc_policy_tag_name(enum dmarc_policy_tag t);

#endif
