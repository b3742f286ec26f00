/*
 * mx - the pure half of dns/: DNS answer rdata, MX ordering and address
 * lists, with no I/O, logging or allocation, so unit tests and fuzz_dns reach
 * it directly. dns.c feeds it the rdata libunbound returns.
 *
 * RFC 1035 §3.1 (names on the wire), §3.3.9 (MX rdata), §3.4.1 (A rdata);
 * RFC 3596 §2.2 (AAAA rdata); RFC 1123 §2.1 and RFC 3696 §2 (host name
 * syntax); RFC 5321 §5.1 (MX preference order, equal preferences in random
 * order); RFC 7505 §3 (null MX).
 *
 * Rdata from libunbound is uncompressed (it expands compression when it
 * builds ub_result), so a compression pointer in rdata is malformed here.
 * Names come out lowercase, without the trailing dot; the root is "".
 *
 * Null MX: RFC 7505 §3 defines it as the only MX record, with preference 0
 * and host ".", and says a domain with one MUST NOT publish other MX records.
 * Tern is tolerant where it helps: a "." next to real MX hosts is ignored and
 * the real hosts are used; a set whose only hosts are "." (any preference)
 * is a null MX, since there is nothing else to deliver to.
 */
#ifndef TERN_DNS_MX_H
#define TERN_DNS_MX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

/* A source of uniformly distributed 32-bit values, for shuffling MX hosts
   of equal preference (tests pass a fixed one). */
typedef uint32_t (*mx_random_fn)(void *arg);

/* A domain name in wire format that fills all of p[0..len) (RFC 1035 §3.1):
   labels of 1..63 octets ending with the root label, no compression, at
   most 255 octets. Writes it as text into out: lowercase, no trailing dot,
   "" for the root. False when malformed, or when a label holds a '.' or an
   octet outside printable ASCII. */
bool dns_name_from_wire(const uint8_t *p, size_t len, char out[DNS_NAME_MAX + 1]);

/* Is name a host name (RFC 1123 §2.1): labels of letters, digits and
   hyphens, 1..63 octets, not starting or ending with a hyphen, at most 253
   octets in all, at least two labels, the last not all digits? No trailing
   dot. */
bool dns_host_name_valid(const char *name);

/* A domain as a caller gives it ("Example.ORG."): lowercase, drop one
   trailing dot, and check it is a host name. False when it is not. */
bool dns_name_normalize(const char *in, char out[DNS_NAME_MAX + 1]);

/* MX rdata (RFC 1035 §3.3.9): 16-bit preference, then the exchange name,
   filling the rdata exactly. The name "" is the root (null MX). */
bool mx_rdata_parse(const uint8_t *rdata, size_t len, uint16_t *preference,
                    char name[DNS_NAME_MAX + 1]);

/* A rdata (4 octets, family AF_INET) or AAAA rdata (16 octets, AF_INET6). */
bool dns_rdata_addr(int family, const uint8_t *rdata, size_t len, struct dns_addr *out);

/* One MX host while a set is built. */
struct mx_entry {
    uint16_t preference;
    char name[DNS_NAME_MAX + 1]; /* a valid host name, lowercase */
};

/* The MX records of one answer, as they are added. */
struct mx_list {
    size_t n;                         /* hosts kept in v */
    struct mx_entry v[DNS_MAX_HOSTS]; /* distinct hosts: the lowest preferences */
    size_t records;                   /* records added */
    size_t malformed;                 /* records whose rdata did not parse */
    size_t invalid;                   /* records naming something that is not a
                                         host name (skipped) */
    size_t root;                      /* records naming "." (null MX) */
    size_t dropped;                   /* valid hosts left out past DNS_MAX_HOSTS */
};

/* What an MX answer says, once every record is added. */
enum mx_verdict {
    MX_HOSTS,     /* v[0..n) are the hosts to try, in order */
    MX_NULL,      /* null MX: the domain accepts no mail */
    MX_UNUSABLE,  /* only records that name no valid host (permanent) */
    MX_MALFORMED, /* nothing usable, and some rdata was malformed (temporary:
                     a broken answer is not a statement about the domain) */
    MX_EMPTY,     /* no record was added */
};

void mx_list_init(struct mx_list *l);
/* Add one MX record's rdata: parsed, checked, merged with an earlier record
   of the same host (the lower preference wins), and kept if it is among the
   DNS_MAX_HOSTS lowest preferences. */
void mx_list_add(struct mx_list *l, const uint8_t *rdata, size_t len);
/* Order v by preference, shuffling hosts of equal preference with rnd (no
   shuffle when rnd is NULL), and say what the answer means. */
enum mx_verdict mx_list_finish(struct mx_list *l, mx_random_fn rnd, void *rnd_arg);

/* The addresses of one family of one host, as they are added. */
struct dns_addr_list {
    size_t n;                                    /* addresses in v */
    struct dns_addr v[DNS_MAX_ADDRS_PER_FAMILY]; /* distinct, in answer order */
    size_t malformed;                            /* rdata that did not parse */
    size_t dropped;                              /* left out past the bound */
};

void dns_addr_list_init(struct dns_addr_list *l);
/* Add one A (AF_INET) or AAAA (AF_INET6) rdata; duplicates are dropped. */
void dns_addr_list_add(struct dns_addr_list *l, int family, const uint8_t *rdata, size_t len);
/* Fill h->addrs: first's addresses, then second's, at most DNS_MAX_ADDRS.
   Returns h->naddrs. */
size_t dns_host_set_addrs(struct dns_host *h, const struct dns_addr_list *first,
                          const struct dns_addr_list *second);

/* A numeric IPv4 or IPv6 address, bare or in brackets (with "IPv6:" inside
   the brackets as RFC 5321 §4.1.3 writes it). */
bool dns_addr_parse(const char *s, struct dns_addr *out);

/* A name for a raw query (dns_query): lowercase, one trailing dot dropped,
   labels of 1..63 octets without controls, spaces or DEL, 253 octets in all.
   Unlike dns_name_normalize(), underscores and other printable octets are
   allowed (_domainkey, _dmarc, SPF macros). False when it is not valid. */
bool dns_query_name_normalize(const char *in, char out[DNS_NAME_MAX + 1]);

#endif
