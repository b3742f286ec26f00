/*
 * dkimtag - the text formats of DKIM, parsed and written without I/O.
 *
 * RFC 6376 §3.2 (tag=value lists), §3.5 (the DKIM-Signature header field's
 * tags), §3.6.1 (the key record in DNS), RFC 8463 §3-4 (ed25519-sha256 and
 * k=ed25519), RFC 8301 §3.1 (rsa-sha1 is not to be trusted). Also the
 * DKIM-Signature header field as it is prepended to a message: libopendkim
 * folds the value with bare LF, and a message stored by Tern has CRLF line
 * ends (RFC 5322 §2.2.3).
 *
 * Everything here is pure: no allocation (parsed values point into the
 * caller's input or are copied into fixed fields), no logging, every input
 * bounded, so unit tests and the fuzzer reach it directly. The verifier in
 * dkim.c uses these parsers to learn each signature's d= and s= at the end of
 * the header section (to fetch its key) and to check a key record before
 * handing it to libopendkim.
 */
#ifndef TERN_MAILAUTH_DKIMTAG_H
#define TERN_MAILAUTH_DKIMTAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* At most this many tags in one list; more is an error. */
#define DKIM_TAGS_MAX 64
/* A domain name in text without the trailing dot (RFC 1035 §2.3.4). */
#define DKIM_NAME_MAX 253
/* Octets of b= kept (white space removed) to tell signatures apart and to
   report header.b (RFC 6008 §4 wants at least 8). */
#define DKIM_B_PREFIX 64
/* Octets of header.b in Authentication-Results (RFC 6008 §4). */
#define DKIM_HEADER_B_LEN 16

/* One tag of a tag list. name and value point into the parsed text; the value
   has no leading or trailing white space but keeps inner folding white space
   (b=, bh=, p= and h= may be folded). */
struct dkim_tag {
    const char *name;  /* tag-name: ALPHA *(ALPHA / DIGIT / "_") */
    size_t name_len;   /* 1.. */
    const char *value; /* tag-value, possibly empty */
    size_t value_len;
};

/* A parsed tag list, in the order the tags appear. */
struct dkim_taglist {
    size_t n;                         /* tags in v[] */
    struct dkim_tag v[DKIM_TAGS_MAX]; /* each name appears once */
};

/* Parse a tag list (RFC 6376 §3.2): "tag = value" specs separated by ';',
   with optional white space (SP, HTAB, CR, LF) around names, '=' and values,
   an optional final ';', and empty specs tolerated. A tag-name must be ALPHA
   then ALPHA / DIGIT / '_'; a value holds only VALCHAR (%x21-3A / %x3C-7E) and
   white space between them. Duplicate names make the whole list invalid
   (§3.2). Returns 0, or -1 with the reason in err (NUL-terminated, may be
   truncated); out is then partly filled. */
int dkim_taglist_parse(const char *text, size_t len, struct dkim_taglist *out, char *err,
                       size_t errlen);
/* The tag named name (case-sensitive, §3.2), or NULL. */
const struct dkim_tag *dkim_taglist_get(const struct dkim_taglist *l, const char *name);

/* Signing algorithms (a=). */
enum dkim_alg {
    DKIM_ALG_UNKNOWN = 0, /* absent or not one of the below */
    DKIM_ALG_RSA_SHA256,  /* "rsa-sha256" (RFC 6376 §3.3) */
    DKIM_ALG_ED25519,     /* "ed25519-sha256" (RFC 8463 §3) */
    DKIM_ALG_RSA_SHA1,    /* "rsa-sha1": known, never trusted (RFC 8301 §3.1) */
};

/* What a DKIM-Signature header field says, as far as the verifier needs it
   before libopendkim sees the message. Filled as far as the tags allow even
   when dkim_sig_parse() fails, so that a result line can name d= and s=. */
struct dkim_sig_tags {
    enum dkim_alg alg;                 /* a= */
    char alg_text[32];                 /* a= as written (truncated), "" if absent */
    char domain[DKIM_NAME_MAX + 1];    /* d=, lowercase; "" if absent or invalid */
    char selector[DKIM_NAME_MAX + 1];  /* s=, lowercase; "" if absent or invalid */
    char identity[DKIM_NAME_MAX + 66]; /* i= as written (truncated), "" if absent */
    char b[DKIM_B_PREFIX + 1];         /* the first DKIM_B_PREFIX octets of b=,
                                          white space removed */
    bool has_length;                   /* l= is present (only part of the body is signed) */
    bool has_timestamp;                /* t= is present */
    uint64_t timestamp;                /* t=, seconds since the epoch */
    bool has_expiry;                   /* x= is present */
    uint64_t expiry;                   /* x= */
};

/* Parse the value of a DKIM-Signature header field (the text after the
   colon, folding included) and check what RFC 6376 §3.5 and §6.1.1 require
   of it: the tags v=1, a=, b=, bh=, d=, h= (naming From), s= are present; a=
   is a known algorithm; c= is simple or relaxed for both parts; d= and s= are
   valid domain names and s._domainkey.d fits in 253 octets; i=, if present,
   is in d= or a subdomain of it; q=, if present, includes dns/txt; l=, t=, x=
   are decimal numbers and x= is not before t=; b= and bh= are base64.
   rsa-sha1 parses (alg tells); rejecting it is policy, not syntax. Returns 0,
   or -1 with the reason in err. */
int dkim_sig_parse(const char *value, size_t len, struct dkim_sig_tags *out, char *err,
                   size_t errlen);

/* Key types of a key record (k=). */
enum dkim_key_kind {
    DKIM_KEYKIND_RSA = 0, /* "rsa", the default */
    DKIM_KEYKIND_ED25519, /* "ed25519" (RFC 8463 §4) */
};

/* What a key record (a TXT record at s._domainkey.d) says. */
struct dkim_key_tags {
    enum dkim_key_kind kind; /* k= */
    bool revoked;            /* p= is empty: the key was revoked (§3.6.1) */
    bool sha256;             /* h= is absent or lists sha256 */
    bool testing;            /* t= has the flag y */
    bool strict;             /* t= has the flag s: i= must be exactly d= */
    size_t key_len;          /* octets of p= once decoded (0 when revoked) */
};

/* Parse a key record (RFC 6376 §3.6.1, RFC 8463 §4): a tag list whose v=, if
   present, is DKIM1; k= rsa (default) or ed25519; s= lists * or email; p=
   present and base64 (empty: revoked), 32 octets for ed25519. Unknown tags
   and unknown flags in t= are ignored. Returns 0, or -1 with the reason in
   err ("no p= tag", "unknown key type k=dsa", ...). */
int dkim_key_parse(const char *text, size_t len, struct dkim_key_tags *out, char *err,
                   size_t errlen);

/* Octets that base64 text decodes to, ignoring white space (SP, HTAB, CR,
   LF) anywhere; -1 when it holds another character, padding in the wrong
   place, or a length that is not a multiple of 4. Empty text is 0. */
long dkim_base64_len(const char *text, size_t len);

/* Append the header field "DKIM-Signature: VALUE\r\n" to out, where value is
   what libopendkim's dkim_getsighdr_d() returns (folded with bare "\n" plus
   white space): each bare LF becomes CRLF, a CR already before an LF is kept
   once, and a lone CR is dropped. Returns 0, or -1 when out's maximum would be
   passed (out is then unchanged). */
int dkim_sighdr_crlf(const char *value, size_t len, struct buf *out);

/* Append text as the rdata of a TXT record in a zone file: character-strings
   of at most 255 octets each (RFC 1035 §3.3.14), quoted, '"' and '\' escaped,
   separated by one space: "v=DKIM1; k=rsa; p=MIIB..." "...". A split never
   falls inside an escape. Returns 0, or -1 when out's maximum would be passed
   (out is then unchanged). */
int dkim_zone_txt(const char *text, size_t len, struct buf *out);

#endif
