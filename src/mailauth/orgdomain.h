/*
 * orgdomain - the organisational domain of a DNS name (RFC 7489 §3.2) on
 * the public suffix list, with libpsl.
 *
 * The list is loaded once (orgdomain_new at start) and then only read, so
 * one struct orgdomain serves every session and thread. By default it is
 * the newest of the publicsuffix package's list
 * (/usr/share/publicsuffix/public_suffix_list.dafsa or .dat) and the copy
 * built into libpsl; a file may be named instead. The organisational domain
 * is libpsl's registrable domain: the longest public suffix of the name
 * (wildcards such as *.ck and their exceptions such as !www.ck honoured,
 * ICANN and private sections alike) plus one label. A public suffix itself
 * (co.uk, foo.ck) has none, so it is never an organisational domain and
 * aligns with nothing but itself (dmarc_aligned).
 *
 * Names are compared as lowercase A-labels: orgdomain_normalize converts
 * what a message carries (U-labels under RFC 6532 too, with libidn2's
 * IDNA2008 rules) before anything is looked up.
 */
#ifndef TERN_MAILAUTH_ORGDOMAIN_H
#define TERN_MAILAUTH_ORGDOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "dns/dns.h"

struct orgdomain;

/* Load the list: from file when not NULL (a list in the .dat format or a
   libpsl .dafsa), else the newest of the publicsuffix package's and
   libpsl's built-in one. NULL with a message in err when file does not
   load. */
struct orgdomain *orgdomain_new(const char *file, char *err, size_t errlen);
void orgdomain_free(struct orgdomain *od);
/* Where the list came from, for logs: a file name or "built-in". */
const char *orgdomain_source(const struct orgdomain *od);

/* A domain as a message or a DNS answer gives it: lowercase A-labels,
   without one trailing dot, checked as a DNS name (labels of 1..63 octets,
   253 in all). U-labels are converted (IDNA2008, UTS #46
   non-transitional). False when it is not a domain name. */
bool orgdomain_normalize(const char *in, char out[DNS_NAME_MAX + 1]);

/* The organisational domain of domain (normalized first) into out; false
   when the name is a public suffix or not a domain name. */
bool orgdomain_get(const struct orgdomain *od, const char *domain, char out[DNS_NAME_MAX + 1]);
/* Is domain (normalized first) a public suffix ("co.uk", "foo.ck")? */
bool orgdomain_is_public_suffix(const struct orgdomain *od, const char *domain);

/* orgdomain_get as a dmarc_orgdomain_fn (dns/dmarc.h): arg is the
   struct orgdomain. */
bool orgdomain_fn(void *arg, const char *domain, char out[DNS_NAME_MAX + 1]);

#endif
