/*
 * publish - the DNS records a mail domain served by Tern publishes, and how
 * a record found in DNS compares with the one expected (`tern dns`).
 *
 *   DOMAIN.                  MX   10 <hostname>.                      RFC 5321 §5.1
 *   DOMAIN.                  TXT  "v=spf1 mx -all"                    RFC 7208
 *   SEL._domainkey.DOMAIN.   TXT  "v=DKIM1; k=...; p=..."             RFC 6376 §3.6.2
 *   _dmarc.DOMAIN.           TXT  "v=DMARC1; p=none; rua=mailto:postmaster@DOMAIN"  RFC 7489
 *   _mta-sts.DOMAIN.         TXT  "v=STSv1; id=<hash of the policy>" RFC 8461 §3.1
 *   _smtp._tls.DOMAIN.       TXT  "v=TLSRPTv1; rua=mailto:postmaster@DOMAIN"  RFC 8460 §3
 *
 * and the MTA-STS policy served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * (RFC 8461 §3.2): mode testing, mx the hostname, max_age one week. Its id is
 * the first 20 hex digits of the SHA-256 of the policy text, so it changes
 * exactly when the policy does.
 *
 * SPF: "mx" authorizes the hosts the MX record names, which is where Tern
 * sends from when it is its own MX (the hostname); "-all" says nothing else
 * sends for the domain. DMARC starts at p=none, which only collects reports.
 *
 * Pure apart from the SHA-256 of OpenSSL: no I/O. Records are malloc'd and
 * owned by the list.
 */
#ifndef TERN_MAILAUTH_PUBLISH_H
#define TERN_MAILAUTH_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include "mailauth/dkimtag.h"

struct buf;

/* What a record is for. */
enum publish_kind {
    PUBLISH_MX = 0,
    PUBLISH_SPF,
    PUBLISH_DKIM,
    PUBLISH_DMARC,
    PUBLISH_MTASTS,
    PUBLISH_TLSRPT,
};

/* One record to publish. */
struct publish_record {
    enum publish_kind kind;
    char name[DKIM_NAME_MAX + 1]; /* owner name, lowercase, without the trailing dot */
    int type;                     /* DNS_TYPE_MX or DNS_TYPE_TXT (dns.h's numbers) */
    char *value;                  /* MX: the host name (preference 10); TXT: the text */
};

/* At most this many records (5 plus one per DKIM key, bounded by the key store). */
#define PUBLISH_MAX 300

struct publish_list {
    size_t n;
    struct publish_record v[PUBLISH_MAX];
};

/* A DKIM key to publish: its selector and record text. */
struct publish_dkim {
    const char *selector;
    const char *record;
};

/* The MTA-STS policy text for hostname (LF line ends) into out. */
int publish_mtasts_policy(const char *hostname, struct buf *out);
/* Fill list with the records of domain (lowercased) served by hostname, with
   ndkim DKIM keys. Returns 0, or -1 when a name would be longer than 253
   octets or there are too many keys. */
int publish_records(const char *domain, const char *hostname, const struct publish_dkim *dkim,
                    size_t ndkim, struct publish_list *list);
void publish_list_free(struct publish_list *list);

/* One record as a zone-file line ("NAME. IN TXT \"...\"" / "NAME. IN MX 10 HOST.")
   appended to out. */
int publish_zone_line(const struct publish_record *r, struct buf *out);

/* Is a TXT record found in DNS (joined) one of the kind of r at all (SPF:
   starts with v=spf1; DMARC: v=DMARC1; ...; DKIM: every TXT at its name)? */
bool publish_txt_is_kind(const struct publish_record *r, const char *text, size_t len);
/* Does the record found in DNS say what r says? TXT: for tag lists (DKIM,
   DMARC, MTA-STS, TLS-RPT) the same tags with the same values, whatever the
   order and white space (DKIM: k= defaults to rsa, and v= may be absent); for
   SPF the same terms, case-insensitively. MX: text is the exchange's name. */
bool publish_matches(const struct publish_record *r, const char *text, size_t len);

#endif
