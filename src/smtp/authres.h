/*
 * authres - the Authentication-Results header field (RFC 8601) and
 * Received-SPF (RFC 7208 §9.1): composing them, folded for a message, and
 * reading an existing Authentication-Results field far enough to tell
 * whether it claims to come from us, so that the session can drop forged
 * ones (RFC 8601 §5).
 *
 * Pure: no I/O, logging or allocation. Composed fields are written into
 * the caller's buffer, folded with CRLF followed by a TAB before a line
 * would pass 78 octets (RFC 5322 §2.1.1), each resinfo on a line of its
 * own, and end with CRLF; a word that cannot be folded (a long quoted
 * value) may make a line longer, never past 998 octets. Values are written
 * bare when RFC 8601 §2.2 allows it (an RFC 2045 token, or for property
 * values also a domain name or local-part@domain) and as a quoted-string
 * otherwise; comments are escaped. A control character (other than TAB) in
 * any input is refused.
 */
#ifndef TERN_SMTP_AUTHRES_H
#define TERN_SMTP_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

/* Properties of one result that authres_compose writes. */
#define AUTHRES_MAX_PROPS 8
/* Results the parser keeps (later ones are counted). */
#define AUTHRES_PARSE_MAX 16
/* Properties per result the parser keeps. */
#define AUTHRES_PARSE_PROPS 6
/* Octets of an authserv-id, method, result, ptype or property kept by the
   parser; longer ones make the field malformed. */
#define AUTHRES_WORD_MAX 64
/* Octets of a property value or the authserv-id kept by the parser. */
#define AUTHRES_VALUE_MAX 255

/* One property of a result: ptype.property=value ("smtp.mailfrom=a@b"). */
struct authres_prop {
    const char *ptype;    /* "smtp", "header", "body", "policy" */
    const char *property; /* "mailfrom", "d", "from" */
    const char *value;    /* as it is; quoted here when it must be */
};

/* One resinfo: method=result [reason=...] [props] [(comment)]. */
struct authres_result {
    const char *method; /* "spf", "dkim", "dmarc", "iprev", "auth" */
    const char *result; /* "pass", "fail", "none", ... */
    const char *reason; /* reason="..." (RFC 8601 §2.3); NULL for none */
    size_t nprops;      /* properties in props */
    struct authres_prop props[AUTHRES_MAX_PROPS];
    const char *comment; /* written after the properties in parentheses
                            ("p=reject dis=none"); NULL for none */
};

/*
 * "Authentication-Results: <authserv_id>;" followed by the n results, or
 * by "none" when n is 0 (RFC 8601 §2.2 no-result), folded, ending with
 * CRLF, NUL-terminated in out. Returns the field's length, or -1 when it
 * does not fit in outlen, or when an input is invalid (an empty
 * authserv-id, a method, result, ptype or property that is not a keyword,
 * a control character anywhere, more than AUTHRES_MAX_PROPS properties).
 */
long authres_compose(const char *authserv_id, const struct authres_result *r, size_t n, char *out,
                     size_t outlen);

/* Received-SPF (RFC 7208 §9.1). NULL members are left out. */
struct received_spf {
    const char *result;        /* "pass", "fail", ... (required) */
    const char *comment;       /* "mx.example.net: domain of a@example.org designates
                                  192.0.2.1 as permitted sender" */
    const char *client_ip;     /* the client's address */
    const char *envelope_from; /* the MAIL FROM address ("" for the null sender) */
    const char *helo;          /* the HELO/EHLO name */
    const char *receiver;      /* our host name */
    const char *identity;      /* "mailfrom" or "helo" */
    const char *mechanism;     /* the mechanism that matched ("ip4:192.0.2.0/24") */
    const char *problem;       /* what went wrong, for temperror and permerror */
};

/* "Received-SPF: result (comment) key=value; ..." folded as above, ending
   with CRLF. Values are written as dot-atoms when they are one and as
   quoted-strings otherwise. Returns the length or -1 as authres_compose. */
long received_spf_compose(const struct received_spf *r, char *out, size_t outlen);

/* ---- Reading a field ---- */

/* What authres_parse read. */
enum authres_parse {
    AUTHRES_PARSE_OK = 0,   /* the whole value follows RFC 8601 §2.2 */
    AUTHRES_PARSE_ID_ONLY,  /* the authserv-id (and version) read, the rest malformed */
    AUTHRES_PARSE_MALFORMED /* not even an authserv-id */
};

/* One resinfo as read. */
struct authres_parsed_result {
    char method[AUTHRES_WORD_MAX + 1];  /* lowercase */
    char result[AUTHRES_WORD_MAX + 1];  /* lowercase */
    char reason[AUTHRES_VALUE_MAX + 1]; /* unquoted; "" when none */
    size_t nprops;                      /* properties kept */
    struct {
        char ptype[AUTHRES_WORD_MAX + 1];    /* lowercase */
        char property[AUTHRES_WORD_MAX + 1]; /* lowercase */
        char value[AUTHRES_VALUE_MAX + 1];   /* unquoted */
    } props[AUTHRES_PARSE_PROPS];
    size_t props_dropped; /* properties past AUTHRES_PARSE_PROPS */
};

/* A field value as read. */
struct authres_parsed {
    char authserv_id[AUTHRES_VALUE_MAX + 1]; /* unquoted, as written */
    unsigned long version;                   /* authres-version; 1 when not given */
    bool none;                               /* "; none": nothing was checked */
    size_t nresults;                         /* results kept */
    struct authres_parsed_result results[AUTHRES_PARSE_MAX];
    size_t results_dropped; /* results past AUTHRES_PARSE_MAX */
};

/*
 * Read the value of an Authentication-Results field (what follows the
 * colon; folded or unfolded): authserv-id, optional version, then "none"
 * or the resinfos, with CFWS (comments nest up to 8 deep) wherever §2.2
 * allows it. Fills out as far as it read.
 */
enum authres_parse authres_parse(const char *v, size_t len, struct authres_parsed *out);

/*
 * Does the field value claim to come from authserv_id (its authserv-id is
 * the same, compared without regard to case, whatever its version and
 * whether the rest is well-formed)? Such a field arriving from outside is
 * forged: RFC 8601 §5 has a receiver remove it.
 */
bool authres_is_ours(const char *v, size_t len, const char *authserv_id);

#endif
