/*
 * dns - where mail for a domain goes: the resolver adapter on libunbound.
 *
 * RFC 5321 §5.1 (MX lookup, preference order, implicit MX when a domain has
 * no MX record), RFC 7505 (null MX: the domain accepts no mail), RFC 1035
 * §3.3.9 (MX rdata), RFC 3596 (AAAA). libunbound follows CNAME chains
 * itself, for the MX query and for the address queries of each MX host, and
 * validates DNSSEC when dns_trust_anchor is set.
 *
 * A lookup is a request and a completion: dns_resolve_nexthop() or
 * dns_resolve_host() returns a handle at once and later calls its callback,
 * exactly once and always from the event loop (never from inside the
 * request call), unless dns_cancel() or dns_resolver_free() came first, in
 * which case it is never called. The result handed to the callback belongs
 * to the resolver and is valid only during the call: copy what you keep. The
 * handle is invalid once the callback has started.
 *
 * Every failure is classified here, once: DNS_NXDOMAIN, DNS_NULL_MX and
 * DNS_NO_ADDRESS are permanent (bounce), DNS_TEMPFAIL is temporary (defer);
 * dns_status_dsn() gives the enhanced status code (RFC 3463) to report.
 *
 * The pure half (rdata parsing, MX ordering, address formatting) is in mx.c,
 * declared in mx.h; the address helpers below are pure too.
 */
#ifndef TERN_DNS_DNS_H
#define TERN_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct config;
struct dns_resolver;
struct dns_lookup;

/* At most this many MX hosts are kept (the lowest preferences). */
#define DNS_MAX_HOSTS 32
/* At most this many addresses per host, and per address family of a host. */
#define DNS_MAX_ADDRS 16
#define DNS_MAX_ADDRS_PER_FAMILY 8
/* A domain name in text, without the trailing dot (RFC 1035 §2.3.4: 253
   octets), and its terminating NUL. */
#define DNS_NAME_MAX 253

/* The outcome of a lookup. */
enum dns_status {
    DNS_OK = 0,     /* hosts[] holds at least one host with an address */
    DNS_NXDOMAIN,   /* permanent: the domain does not exist (or the name is not
                       a valid host name) */
    DNS_NULL_MX,    /* permanent: the domain publishes a null MX, it accepts no
                       mail (RFC 7505) */
    DNS_NO_ADDRESS, /* permanent: no MX host (nor, without MX, the domain itself)
                       has an A or AAAA record */
    DNS_TEMPFAIL,   /* temporary: SERVFAIL, timeout, network error, DNSSEC
                       validation failure; retry later */
};

/* One IPv4 or IPv6 address in network byte order. */
struct dns_addr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* the first 4 for AF_INET */
};

/* One candidate host to connect to. */
struct dns_host {
    char name[DNS_NAME_MAX + 1];          /* lowercase, no trailing dot: the MX name,
                                             the domain itself for an implicit MX, or
                                             the smarthost name */
    uint16_t preference;                  /* MX preference; 0 for implicit MX and hosts */
    bool secure;                          /* every address answer was DNSSEC-validated */
    size_t naddrs;                        /* 1..DNS_MAX_ADDRS in results with DNS_OK */
    struct dns_addr addrs[DNS_MAX_ADDRS]; /* dns_prefer family first, then the
                                             other, each in answer order */
};

/* The result of dns_resolve_nexthop() or dns_resolve_host(). */
struct dns_nexthop {
    enum dns_status status;
    char reason[256];                     /* for operators and DSNs when status != DNS_OK:
                                             "SERVFAIL looking up MX for example.org" */
    char domain[DNS_NAME_MAX + 1];        /* what was looked up, lowercase */
    bool implicit;                        /* no MX record: the domain itself is the only host */
    bool secure;                          /* the MX answer (or its absence) was DNSSEC-validated */
    size_t nhosts;                        /* hosts with at least one address (0 unless DNS_OK) */
    struct dns_host hosts[DNS_MAX_HOSTS]; /* in the order to try them: by
                                             preference, equal ones shuffled */
};

/* The completion of a lookup (see the file comment for its lifetime rules). */
typedef void (*dns_nexthop_cb)(void *arg, const struct dns_nexthop *res);

/* A resolver on loop, configured from cfg: dns_forwarders (forward every
   query there; empty: full recursion from the root hints, never
   /etc/resolv.conf), dns_trust_anchor (DNSSEC validation), dns_prefer,
   dns_timeout. NULL with a message in err on failure. */
struct dns_resolver *dns_resolver_new(struct ev_loop *loop, const struct config *cfg, char *err,
                                      size_t errlen);
/* Cancel every lookup in flight (their callbacks are not called) and free
   the resolver and libunbound's context. NULL does nothing. */
void dns_resolver_free(struct dns_resolver *r);
/* The loop the resolver runs on (for callers that need timers of their own
   next to their queries). */
struct ev_loop *dns_resolver_loop(const struct dns_resolver *r);

/* Where mail for `domain` goes (RFC 5321 §5.1): its MX hosts in order, each
   with its addresses, or the domain itself when it has no MX; see enum
   dns_status for the failures. A host whose address lookups all fail is
   left out: when no host is left, the result is DNS_TEMPFAIL if any of them
   failed temporarily, else DNS_NO_ADDRESS. The whole lookup is bounded by
   dns_timeout; past it, hosts already resolved are returned, and without
   any the result is DNS_TEMPFAIL. */
struct dns_lookup *dns_resolve_nexthop(struct dns_resolver *r, const char *domain,
                                       dns_nexthop_cb cb, void *arg);
/* The addresses of one host (a smarthost): A and AAAA only, no MX. A
   numeric IPv4 or IPv6 address, bare or in brackets ("[192.0.2.1]"), is
   returned as it is without a query. The result has one host. */
struct dns_lookup *dns_resolve_host(struct dns_resolver *r, const char *host, dns_nexthop_cb cb,
                                    void *arg);
/* Stop a lookup whose callback has not been called yet; it never will be. */
void dns_cancel(struct dns_lookup *q);

/* "ok", "nxdomain", "null-mx", "no-address", "tempfail" (for logs). */
const char *dns_status_name(enum dns_status s);
/* The enhanced status code of a result (RFC 3463; X.1.10 is RFC 7505's):
   "5.1.2" no such domain, "5.1.10" null MX, "5.4.4" no address (unable to
   route), "4.4.3" temporary DNS failure; "2.0.0" for DNS_OK. */
const char *dns_status_dsn(enum dns_status s);
/* True for the failures to retry later. */
bool dns_status_temporary(enum dns_status s);

/* The address as text ("192.0.2.1", "2001:db8::1") into out (46 octets
   are enough). */
void dns_addr_format(const struct dns_addr *a, char *out, size_t outlen);
/* The address with port as a socket address; returns its length, or 0 when
   the family is neither AF_INET nor AF_INET6. */
socklen_t dns_addr_sockaddr(const struct dns_addr *a, uint16_t port, struct sockaddr_storage *ss);

/* ---- Raw queries: one name, one record type (SPF, DKIM, DMARC) ---- */

/* Record types a caller may ask for. */
#define DNS_TYPE_A 1
#define DNS_TYPE_PTR 12
#define DNS_TYPE_MX 15
#define DNS_TYPE_TXT 16
#define DNS_TYPE_AAAA 28

/* At most this many records of one answer are handed over; the rest are
   counted in dropped. */
#define DNS_MAX_RECORDS 64

/* How a raw query ended. RFC 7208 §2.6.7 and RFC 6376 §6.1.2 both need the
   difference between a name that does not exist, a name without records of
   the type, and a failure to find out. */
enum dns_answer_status {
    DNS_ANSWER_DATA = 0, /* n >= 1 records of the type */
    DNS_ANSWER_NODATA,   /* the name exists, without records of the type */
    DNS_ANSWER_NXDOMAIN, /* the name does not exist */
    DNS_ANSWER_TEMPFAIL, /* SERVFAIL, timeout, network error, DNSSEC bogus */
    DNS_ANSWER_INVALID,  /* the name is not a valid DNS name (no query sent) */
};

/* The answer to a raw query. rdata is in wire format as libunbound gives it
   (names uncompressed); dns_txt_join() and dns_name_from_wire() read it.
   Valid only during the callback. */
struct dns_answer {
    enum dns_answer_status status;
    int type;                    /* what was asked */
    char name[DNS_NAME_MAX + 1]; /* what was asked, lowercase, no trailing dot */
    bool secure;                 /* DNSSEC-validated */
    char reason[256];            /* on TEMPFAIL and INVALID: why */
    size_t n;                    /* records in rdata[] */
    size_t dropped;              /* records past DNS_MAX_RECORDS */
    const uint8_t *rdata[DNS_MAX_RECORDS];
    size_t len[DNS_MAX_RECORDS];
};

struct dns_query;
typedef void (*dns_answer_cb)(void *arg, const struct dns_answer *a);

/* Ask for the records of one type at one name. The callback rules are those
   of the lookups above: exactly once, from the event loop, never inside this
   call, not after dns_query_cancel() or dns_resolver_free(); bounded by
   dns_timeout (a timeout is DNS_ANSWER_TEMPFAIL). name may hold any octets
   a DNS label can carry in text except '.', NUL and controls (underscores
   for _domainkey and _dmarc, macro-expanded SPF names), one trailing dot
   allowed; labels of 1..63 octets, 253 in all, else DNS_ANSWER_INVALID. */
struct dns_query *dns_query(struct dns_resolver *r, const char *name, int type, dns_answer_cb cb,
                            void *arg);
/* Stop a query whose callback has not been called; it never will be. NULL
   does nothing. */
void dns_query_cancel(struct dns_query *q);

/* TXT rdata (RFC 1035 §3.3.14): its character-strings joined without
   separators (RFC 7208 §3.3, RFC 6376 §3.6.2.2) into out, NUL-terminated.
   Returns the joined length, or -1 when the rdata is malformed, holds a NUL
   octet, or does not fit in outlen - 1 octets. */
long dns_txt_join(const uint8_t *rdata, size_t len, char *out, size_t outlen);

#endif
