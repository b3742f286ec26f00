/*
 * transport - where mail for a domain goes when it is not DNS's MX: the
 * transport file (Postfix's transport_maps, one static table), the relayhost
 * (smarthost) value, and the relayhost credentials file.
 *
 * Transport file format, one entry per line ('#' comments, blank lines
 * ignored, a line that starts with white space continues the previous one):
 *
 *     example.com        smtp:[mail.example.com]:587   # that host, no MX lookup
 *     example.net        smtp:relay.example.net        # MX lookup of that name
 *     .example.net       smtp:[10.0.0.5]               # every subdomain of example.net
 *     *.example.org      lmtp:unix:/run/dovecot/lmtp   # same as ".example.org"
 *     dovecot.test       lmtp:[127.0.0.1]:24           # LMTP over TCP
 *     archive.test       maildir                       # local Maildir delivery
 *     *                  smtp:[smarthost.example]:25   # everything else
 *     bank.example       smtp:bank.example  tls=verify # MX as usual, verified TLS
 *
 * After the next hop an entry may say tls=none|may|encrypt|verify: the TLS
 * policy for SMTP to it, instead of the outbound_tls setting.
 * Next hops (RFC 5321 §5.1 for the MX rule, RFC 2033 for LMTP):
 *   smtp:[host]:port   host (a name or an IP literal) without MX lookup;
 *   smtp:host:port     MX lookup of host (as if mail were for domain `host`);
 *   lmtp:unix:/path    LMTP on a unix-domain socket (absolute path);
 *   lmtp:[host]:port   LMTP over TCP (lmtp:host:port is the same: LMTP never
 *                      looks up MX); port defaults to 24;
 *   maildir            deliver into the local Maildir tree.
 * An smtp port defaults to 0, which stands for the outbound_port setting.
 * The relayhost value is an smtp next hop without the "smtp:" prefix.
 *
 * Lookup (transport_lookup): the exact domain first, then ".parent" / "*.parent"
 * entries from the closest parent up, then "*". Domains are compared without
 * regard to case.
 *
 * The credentials file holds one line, "user password" (the password is the
 * rest of the line, so it may contain spaces); transport_auth_load refuses a
 * file any group or other user may access, and never puts the password in a
 * message.
 *
 * transport_parse, transport_parse_nexthop and transport_auth_parse are pure
 * (no I/O); the _load functions read a file and call them. Ownership: a table
 * owns its entries; transport_free releases it.
 */
#ifndef TERN_CONFIG_TRANSPORT_H
#define TERN_CONFIG_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define TRANSPORT_HOST_MAX 253 /* a host name in text (RFC 1035 §2.3.4) */
#define TRANSPORT_PATH_MAX 107 /* a unix socket path (sun_path less its NUL) */
#define TRANSPORT_USER_MAX 255 /* octets of a relayhost user name */
#define TRANSPORT_PASS_MAX 255 /* octets of a relayhost password */
#define TRANSPORT_LMTP_PORT 24 /* RFC 2033 §5 */

enum route_kind {
    ROUTE_SMTP = 0, /* SMTP to an MX or a fixed host */
    ROUTE_LMTP,     /* LMTP (RFC 2033) on a unix socket or over TCP */
    ROUTE_MAILDIR,  /* local Maildir delivery */
};

/* One next hop. */
/* A route's TLS policy for SMTP (the transport file's "tls=" attribute). */
enum route_tls {
    ROUTE_TLS_DEFAULT = 0, /* outbound_tls */
    ROUTE_TLS_NONE,        /* no STARTTLS */
    ROUTE_TLS_MAY,         /* STARTTLS when offered, nothing verified */
    ROUTE_TLS_ENCRYPT,     /* STARTTLS required */
    ROUTE_TLS_VERIFY,      /* STARTTLS required, certificate verified */
};

struct route {
    enum route_kind kind;
    enum route_tls tls;                /* SMTP: TLS policy of this route */
    bool mx;                           /* SMTP: look up MX of host (no brackets) */
    bool unix_socket;                  /* LMTP: path is a unix socket */
    uint16_t port;                     /* 0: the default (outbound_port for SMTP) */
    char host[TRANSPORT_HOST_MAX + 1]; /* SMTP, LMTP over TCP: lowercase, no brackets */
    char path[TRANSPORT_PATH_MAX + 1]; /* LMTP on a unix socket */
};

/* Relayhost credentials (relayhost_auth_file). */
struct transport_auth {
    char user[TRANSPORT_USER_MAX + 1];
    char pass[TRANSPORT_PASS_MAX + 1]; /* secret: never logged */
};

struct transport_table;

/*
 * Parse one next hop s[0..len): "smtp:...", "lmtp:..." or "maildir" when
 * with_kind, else a relayhost value ("[host]:port", "host:port", "[host]",
 * "host"). Returns 0, or -1 with a message (which quotes s) in err.
 */
int transport_parse_nexthop(const char *s, size_t len, bool with_kind, struct route *out, char *err,
                            size_t errlen);

/* Parse a transport file; NULL with diags ("file:line: message") on error. A
   domain given twice is an error. */
struct transport_table *transport_parse(const char *text, size_t len, const char *file,
                                        struct config_diags *diags);
struct transport_table *transport_load(const char *file, struct config_diags *diags);
void transport_free(struct transport_table *t);
size_t transport_count(const struct transport_table *t);

/* The route for domain (any case), or NULL when no entry matches (t may be
   NULL). The result lives as long as t. */
const struct route *transport_lookup(const struct transport_table *t, const char *domain);
/* The same without the "*" entry: only an entry that names the domain or a
   parent of it (the scheduler routes local domains so). */
const struct route *transport_lookup_named(const struct transport_table *t, const char *domain);

/* "smtp:[host]:port", "lmtp:unix:/path"... into out (for logs and pool keys). */
void transport_route_format(const struct route *r, char *out, size_t outlen);

/* Parse the credentials file's text. Returns 0, or -1 with a message in err
   (never holding the password). */
int transport_auth_parse(const char *text, size_t len, struct transport_auth *out, char *err,
                         size_t errlen);
/* Read and parse the credentials file; -1 with err when it cannot be read,
   is not a regular file, or grants any permission to group or others. */
int transport_auth_load(const char *file, struct transport_auth *out, char *err, size_t errlen);

#endif
