/*
 * cli - the operator's subcommands of `tern`. Each takes the arguments after
 * the program name (argv[0] is the subcommand's name), prints to stdout and
 * stderr, and returns the process exit status.
 */
#ifndef TERN_CLI_CLI_H
#define TERN_CLI_CLI_H

struct config_diags;

/* The configuration file every subcommand reads unless -c names another. */
#define CLI_DEFAULT_CONFIG "/etc/tern/tern.conf"

/* Print diagnostics as "FILE:LINE: message" (or "FILE: message") on stderr. */
void cli_print_diags(const struct config_diags *d);

/* Make getopt start over (each subcommand parses its own options). */
void cli_getopt_reset(void);

/* Load file, print its diagnostics, and say "FILE: configuration has
   errors" when it cannot be used (NULL then). */
struct config;
struct config *cli_load_config(const char *file);

/* `tern check [-c FILE]`: validate the configuration and the aliases file it
   names. Exit status 0 when both are valid, 1 on any error, 2 on bad usage. */
int cli_check(int argc, char **argv);

/* `tern cert selfsigned [-c FILE] [--force]`: write a self-signed certificate
   and key for `hostname` to tls_cert_file and tls_key_file. Exit status 0
   written, 1 on any error (files exist without --force, bad configuration),
   2 on bad usage. */
int cli_cert(int argc, char **argv);

/* `tern user add|passwd|del|list [-c FILE] [-f USERS_FILE] [--password-stdin]
   [--scram] [--cram] [LOGIN]`: edit or list the user store (see user.c).
   Exit status 0 done, 1 error, 2 bad usage. */
int cli_user(int argc, char **argv);

/* `tern resolve [-c FILE] [-H] NAME`: where mail for the domain NAME would
   be relayed (MX hosts in order with their addresses), or the addresses of
   the smarthost NAME with -H. Exit status 0 ok, 1 permanent failure or bad
   configuration, 2 bad usage, 75 temporary failure. */
int cli_resolve(int argc, char **argv);

/* `tern send [--server HOST] [--port N] [--tls starttls|implicit|none] ... --to ADDR`:
   build a message and submit it over SMTP (see send.c and docs/send.md). Exit
   status 0 sent, 1 refused or failed, 2 bad usage, 75 temporary failure. */
int cli_send(int argc, char **argv);
/* `tern spf [-c FILE] [--helo NAME] [--identity mailfrom|helo] IP SENDER`:
   the SPF result (RFC 7208) for that client and sender, on one line. Exit
   status 0 for any result, 1 bad configuration, 2 bad usage. */
int cli_spf(int argc, char **argv);
/* `tern dkim keygen|sign|verify ...`: make DKIM keys, sign and verify
   messages (see dkim.c). Exit status 0 done (verify: a signature passed), 1
   error or no passing signature, 2 bad usage. */
int cli_dkim(int argc, char **argv);

/* `tern dns [-c FILE] DOMAIN [--check]`: the records to publish for DOMAIN,
   or with --check how DNS compares. Exit status 0 ok, 1 missing or
   different records or an error, 2 bad usage, 75 temporary DNS failure. */
int cli_dns(int argc, char **argv);
/* `tern dmarc [-c FILE] --from DOMAIN [--spf RESULT:DOMAIN] [--dkim
   RESULT:DOMAIN[:SELECTOR]]... [--pct-roll N] [--report [--ip ADDR]]`: DMARC
   discovery and evaluation for a From domain and SPF/DKIM results (see
   dmarc.c). Exit status 0 evaluated, 75 temperror, 1 bad configuration, 2
   bad usage. */
int cli_dmarc(int argc, char **argv);

/* `tern queue [-c FILE] COMMAND ...`: list, show, flush, hold, release,
   delete and bounce queued mail, pause and resume domains, through the
   running server's control socket (see queue.c). Exit status 0 done, 1 an
   error or a named message not in the queue, 2 bad usage, 75 the server
   cannot be reached. */
int cli_queue(int argc, char **argv);

/* The mailq listing of the server named by config_file (also sendmail -bp).
   Exit status as cli_queue's. */
int cli_mailq(const char *config_file);

/* True when argv0's base name is sendmail, mailq or newaliases. */
int cli_invoked_as_sendmail(const char *argv0);
/* sendmail compatibility (see sendmail.c): argv[0] is the name it was
   invoked as ("sendmail", "mailq", "newaliases"). Exit status as sendmail's
   (sysexits.h): 0 queued, 64 usage, 65 bad data, 67 unknown user, 69
   refused, 75 try again later (the server cannot be reached). */
int cli_sendmail(int argc, char **argv);

#endif
