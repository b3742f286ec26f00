/*
 * config - the configuration file, parsed once into a validated read-only
 * struct. Postfix style: "key = value" lines, '#' comments, a line starting
 * with white space continues the previous one, lists separated by commas or
 * white space, and a key given twice takes its last value. Every key is
 * documented in docs/configuration.md. Sizes take K/M/G suffixes (powers of
 * 1024); times take s/m/h/d suffixes (plain numbers are seconds).
 *
 * config_parse() is pure (no I/O): it takes the file's text and its name (for
 * messages), so unit tests and the fuzzer reach it directly; config_load()
 * reads the file and then parses it. Ownership: the struct owns all its
 * strings; config_free() releases them.
 */
#ifndef TERN_CONFIG_CONFIG_H
#define TERN_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* A list of strings (values of a list key). */
struct config_list {
    size_t n;
    char **v;
};

/* An IPv4 or IPv6 network for trusted_networks and mailauth_skip_networks. */
struct config_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, host bits zeroed */
    unsigned prefix;        /* prefix length */
};

/* dns_prefer: which address family of an MX host is tried first */
enum config_dns_prefer { CONFIG_DNS_PREFER_IPV6 = 0, CONFIG_DNS_PREFER_IPV4 };

/* outbound_tls: the TLS policy of outbound SMTP (Postfix's smtp_tls_security_level) */
enum config_outbound_tls {
    CONFIG_OTLS_MAY = 0, /* STARTTLS when offered, certificate not checked (RFC 7435) */
    CONFIG_OTLS_NONE,    /* never STARTTLS */
    CONFIG_OTLS_ENCRYPT, /* STARTTLS required, certificate not checked */
    CONFIG_OTLS_VERIFY,  /* STARTTLS required, certificate chain and host name verified */
};

/* spf_fail_action: what the mx session does with an SPF fail of MAIL FROM */
enum config_spf_fail_action {
    CONFIG_SPF_FAIL_RECORD = 0, /* accept; the result goes into Received-SPF and
                                   Authentication-Results */
    CONFIG_SPF_FAIL_REJECT,     /* 550 5.7.23 at MAIL FROM (RFC 7372 §3.2) */
};

/* dmarc_reject_action: what Tern does with a message whose DMARC policy asks
   for reject (docs/dmarc.md) */
enum config_dmarc_action {
    CONFIG_DMARC_REJECT = 0, /* 550 5.7.1 at the end of data */
    CONFIG_DMARC_QUARANTINE, /* accept and add dmarc_quarantine_header */
    CONFIG_DMARC_RECORD,     /* accept; the result is only recorded */
};

/* sandbox_seccomp_action: what the seccomp filter does with a system call
   outside its allow-list (docs/sandbox.md) */
enum config_seccomp_action {
    CONFIG_SECCOMP_KILL = 0, /* kill the process (SIGSYS), logged by the kernel's audit */
    CONFIG_SECCOMP_ERRNO,    /* the call fails with EPERM, logged by the audit */
    CONFIG_SECCOMP_LOG,      /* the call is allowed and logged: for finding what is missing */
};

/* tls_min_version */
enum config_tls_version { CONFIG_TLS_1_2 = 0, CONFIG_TLS_1_3 };

enum config_role { ROLE_MX = 0, ROLE_SUBMISSION, ROLE_SUBMISSIONS };

struct config_listen {
    enum config_role role;
    char *host; /* numeric address ("127.0.0.1", "::1", "0.0.0.0") */
    char *port; /* numeric port as text */
};

struct config {
    /* identity */
    char *hostname; /* hostname: our name in greeting, Received; default gethostname() */
    /* listeners: from mx_listen, submission_listen, submissions_listen (host:port lists,
       IPv6 as [addr]:port) */
    size_t nlisten;
    struct config_listen *listen;
    /* domains and mailboxes */
    struct config_list local_domains; /* lowercased */
    struct config_list mailboxes;     /* "local@domain", lowercased; domain must be local */
    char *aliases_file;               /* NULL if none */
    char *maildir_root;               /* Maildir of user@dom is <root>/<dom>/<user>/ */
    char *spool_dir;
    /* policy */
    size_t ntrusted;
    struct config_cidr *trusted; /* trusted_networks: relay allowed from these */
    size_t nmailauth_skip;
    struct config_cidr *mailauth_skip; /* mailauth_skip_networks: no SPF, DKIM or DMARC
                                          checks for these; default loopback */
    int bare_newline;                  /* enum smtp_newline: reject (default) or normalize */
    /* limits (DESIGN contract 4) */
    uint64_t message_size_limit;       /* SIZE, octets; default 50 MiB */
    size_t max_recipients;             /* per message; default 1000 (>= 100) */
    size_t max_command_line;           /* octets incl. CRLF; default 512 (>= 512) */
    size_t max_text_line;              /* octets incl. CRLF; default 1000 */
    size_t max_header_count;           /* header fields per message; default 1000 */
    size_t max_errors;                 /* errors before 421 4.7.0; default 20 */
    size_t max_junk_commands;          /* NOOP/VRFY/HELP/RSET... without a message; default 100 */
    size_t max_connections;            /* total; default 1000 */
    size_t max_connections_per_client; /* per client address; default 50 */
    uint32_t idle_timeout;             /* seconds without a command/data; default 300 */
    uint32_t session_timeout;          /* seconds per session in total; default 3600 */
    size_t min_data_rate;              /* octets/s the content of a message must average;
                                          0: no minimum; default 500 */
    uint32_t min_data_rate_grace;      /* seconds of content allowed on top; default 120 */
    /* spool and delivery */
    uint64_t spool_segment_size; /* default 64 MiB */
    size_t delivery_workers;     /* worker threads for Maildir writes; 0 (default) = CPUs + 1 */
    size_t delivery_concurrency; /* deliveries in flight at once; default 64 */
    /* logs */
    int log_level;    /* enum log_level; log_level = error|warn|info|debug; default info */
    int log_format;   /* enum log_format; log_format = text|json; default text */
    char *log_target; /* "stderr" (default), "syslog", or a file path (holds a '/') */
    /* TLS (STARTTLS on mx and submission, implicit on submissions) */
    char *tls_cert_file;    /* PEM certificate chain, leaf first; NULL: no TLS */
    char *tls_key_file;     /* PEM private key; NULL: no TLS */
    bool tls_selfsigned;    /* generate a self-signed pair at start if the files are missing */
    int tls_min_version;    /* enum config_tls_version; default TLSv1.2 */
    char *tls_ciphers;      /* OpenSSL cipher list for TLS 1.2 */
    char *tls_ciphersuites; /* OpenSSL TLS 1.3 suites; NULL: OpenSSL's default */
    /* SMTP AUTH and submission */
    char *users_file;                /* user store; NULL: nobody can authenticate */
    char *sender_login_maps;         /* which logins may use which sender addresses; NULL: own */
    bool mx_auth;                    /* offer AUTH on mx listeners too (after TLS); default no */
    bool auth_plaintext_loopback;    /* allow AUTH without TLS from loopback clients; default no */
    size_t auth_workers;             /* password-check threads; default 2 */
    size_t auth_delay_after;         /* failures on a connection before replies slow down; 2 */
    size_t auth_max_failures;        /* failures on a connection before 421 4.7.0; default 5 */
    size_t auth_client_max_failures; /* failures per client address in the window; 20 */
    uint32_t auth_failure_window;    /* seconds over which client failures count; 1h */
    size_t user_message_rate;        /* messages per user per hour; 0 = no limit; 1000 */
    size_t user_recipient_rate;      /* recipients per user per hour; 0 = no limit; 5000 */
    /* relay: DNS and outbound connections */
    struct config_list dns_forwarders; /* "addr[@port]" resolvers to ask; empty: recursion */
    char *dns_trust_anchor;            /* root trust anchor file for DNSSEC; NULL: none */
    uint32_t outbound_port;            /* port of remote MX hosts; default 25 */
    int dns_prefer;                    /* enum config_dns_prefer; default ipv6 */
    uint32_t dns_timeout;              /* seconds for one lookup; default 30 */
    int outbound_tls;                  /* enum config_outbound_tls; default may */
    char *outbound_tls_ca_file; /* CA certificates for outbound_tls = verify; NULL: the system's */
    /* seconds to wait, per stage of an outbound session (RFC 5321 §4.5.3.2) */
    uint32_t outbound_connect_timeout;   /* TCP connect; 30 */
    uint32_t outbound_helo_timeout;      /* greeting, EHLO/HELO/LHLO, STARTTLS, AUTH, RSET; 300 */
    uint32_t outbound_mail_timeout;      /* the reply to MAIL; 300 */
    uint32_t outbound_rcpt_timeout;      /* each reply to RCPT; 300 */
    uint32_t outbound_data_init_timeout; /* the reply to DATA (354); 120 */
    uint32_t outbound_data_xfer_timeout; /* the body making no progress; 180 */
    uint32_t outbound_data_done_timeout; /* the reply to the final dot or BDAT LAST; 600 */
    bool outbound_chunking;              /* BDAT (RFC 3030) to peers offering CHUNKING; yes */
    size_t relay_concurrency;            /* outbound SMTP sessions at once; default 100 */
    size_t destination_concurrency;      /* most at once to one domain; default 20 */
    uint32_t retry_min;                  /* first wait before a retry; default 5 min */
    uint32_t retry_max;                  /* longest wait between attempts; default 4 h */
    uint32_t queue_lifetime;             /* how long a message is retried; default 5 days */
    uint32_t delay_warning_time;         /* report still-deferred mail after this; 0 = never */
    /* relay: routes (config/transport.h) */
    char *relayhost;           /* smarthost for all non-local mail ("[host]:port"); NULL: MX */
    char *relayhost_auth_file; /* "user password" for AUTH to the relayhost; NULL: no AUTH */
    char *transport_file;      /* per-domain routes; NULL: none */
    /* SPF (RFC 7208) on mx listeners: docs/spf.md */
    bool spf_verify;      /* check the HELO and MAIL FROM identities; default yes */
    int spf_fail_action;  /* enum config_spf_fail_action; default record */
    uint32_t spf_timeout; /* seconds for one whole check; default 20 (§4.6.4) */
    /* DKIM (mailauth/dkimkey.h) */
    char *dkim_key_dir; /* <dir>/<domain>/<selector>.key; default /etc/tern/dkim */
    bool dkim_sign;     /* sign mail of authenticated users and trusted networks; yes */
    bool dkim_verify;   /* verify signatures of mail received on mx listeners; yes */
    /* DMARC and Authentication-Results (docs/dmarc.md) */
    bool dmarc_verify;             /* evaluate DMARC on mx listeners; default yes */
    int dmarc_reject_action;       /* enum config_dmarc_action; default reject */
    char *dmarc_quarantine_header; /* field name added to quarantined mail: default
                                      X-Tern-Quarantine (value "yes") */
    char *dmarc_report_dir;        /* per-day aggregate report data; NULL: none */
    char *authserv_id;             /* Authentication-Results authserv-id; default hostname
                                      (NULL from config_parse only when hostname is unset) */
    /* the control socket and local submission (docs/control.md) */
    char *control_socket;           /* unix socket of `tern queue`, sendmail, mailq;
                                       default /run/tern/control */
    char *control_group;            /* group of the socket (NULL: the daemon's); its members
                                       may change the queue */
    uint32_t control_socket_mode;   /* permission bits of the socket; default 0660 */
    size_t control_max_connections; /* control connections at once; default 64 */
    size_t control_max_requests;    /* requests per control connection; default 100000 */
    uint32_t control_idle_timeout;  /* seconds a control connection may stay silent; 300 */
    char *sendmail_origin;          /* domain of a local user's default sender and of a
                                       recipient given without one; default hostname */
    /* the metrics endpoint (docs/metrics.md) */
    char *metrics_listen; /* "host:port" ("[v6]:port") of GET /metrics; NULL: none */
    /* process */
    char *run_user; /* the user `tern serve` switches to once its listeners are bound and its
                       files open, when started as root; default "tern"; "root" stays root */
    /* the sandbox of `tern serve` (docs/sandbox.md) */
    bool sandbox;               /* Landlock and seccomp once started; default yes */
    int sandbox_seccomp_action; /* enum config_seccomp_action; default kill */
    bool sandbox_selftest;      /* tests only: try a refused file and system call after
                                   applying the sandbox, and log the results; default no */
};

/* One parse error or warning, with where it was found. */
struct config_diag {
    char *file;
    unsigned line; /* 0 when not tied to a line */
    char *msg;
};

struct config_diags {
    size_t n;
    struct config_diag *v;
};

/*
 * Parse text (NUL not required; len given) named `file`. Returns a config when
 * there were no errors (diags may still hold warnings, e.g. unknown keys are
 * errors, not warnings). Returns NULL when any error was found; every error is
 * in diags ("file:line: message"). Fills defaults for keys not given, and
 * validates cross-key rules (mailbox domains must be local domains, at least
 * one listener, max_recipients >= 100, max_command_line >= 512 ...).
 */
struct config *config_parse(const char *text, size_t len, const char *file,
                            struct config_diags *diags);
/* Read FILE and parse it; a read error is one diag with line 0. */
struct config *config_load(const char *file, struct config_diags *diags);
void config_free(struct config *cfg);
void config_diags_free(struct config_diags *d);

/* Helpers for policy: is domain (any case) one of local_domains? */
bool config_is_local_domain(const struct config *cfg, const char *domain);
/* Is mailbox "local@domain" (any case) listed in mailboxes? */
bool config_is_mailbox(const struct config *cfg, const char *addr);
/* Is the client address (sockaddr) in trusted_networks? */
struct sockaddr;
bool config_is_trusted(const struct config *cfg, const struct sockaddr *sa);
/* Is it in mailauth_skip_networks? */
bool config_is_mailauth_skipped(const struct config *cfg, const struct sockaddr *sa);
const char *config_role_name(enum config_role role);

/*
 * Reloading (SIGHUP). Each key says how a change of its value takes effect in
 * a running server; docs/configuration.md ("What SIGHUP applies") lists them.
 * These helpers are pure: they compare and copy parsed structs.
 */
enum config_reload {
    CONFIG_RELOAD_RESTART = 0, /* read by a module that keeps it from start: needs a restart */
    CONFIG_RELOAD_SESSIONS,    /* new connections and sessions use the new value; those in
                                  flight keep the configuration they started with */
    CONFIG_RELOAD_AT_ONCE,     /* applies to the whole process at once (log_level) */
};

/* The number of keys, and the name of key i (0 <= i < count), in the order of
   docs/configuration.md's tables. */
size_t config_key_count(void);
const char *config_key_name(size_t i);
/* How a change of `key` takes effect (enum config_reload), or -1 for no such key. */
int config_key_reload(const char *key);
/* Call fn for every key whose value differs between a and b, in key order;
   returns how many differ. A listener list is compared as a set. */
size_t config_diff(const struct config *a, const struct config *b,
                   void (*fn)(void *arg, const char *key, enum config_reload how), void *arg);
/* Copy the value of `key` from src into dst (a deep copy; dst's old value is
   freed). False for no such key. */
bool config_copy_key(struct config *dst, const struct config *src, const char *key);
/* Give next running's value of every key that needs a restart, so that next
   describes what the process runs with (an authserv_id that follows hostname
   by default follows the hostname kept). */
void config_keep_restart_keys(struct config *next, const struct config *running);
/* A deep copy of cfg; config_free() releases it. */
struct config *config_dup(const struct config *cfg);

#endif
