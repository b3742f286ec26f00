/*
 * senderlogin - which authenticated logins may use which envelope sender and
 * From addresses (Postfix's smtpd_sender_login_maps with
 * reject_sender_login_mismatch).
 *
 * File format ('#' comments, blank lines ignored, a line starting with white
 * space continues the previous one):
 *
 *     address@example.test   login@example.test, other@example.test
 *     @example.test          admin@example.test      # the whole domain
 *
 * Keys and logins are lowercased. For a sender address, the entry for the
 * exact address applies, else the one for its @domain; when one applies, the
 * login must be among its logins. When none applies, a login owns exactly its
 * own address. The null sender <> is allowed to every login. Pure.
 */
#ifndef TERN_AUTH_SENDERLOGIN_H
#define TERN_AUTH_SENDERLOGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

struct sender_login;

/* Parse text; NULL with diags ("file:line: message") on any error. */
struct sender_login *sender_login_parse(const char *text, size_t len, const char *file,
                                        struct config_diags *diags);
struct sender_login *sender_login_load(const char *file, struct config_diags *diags);
void sender_login_free(struct sender_login *m);
size_t sender_login_count(const struct sender_login *m);

/* May login use address addr ("" = null sender) as sender? m may be NULL. Any case. */
bool sender_login_allows(const struct sender_login *m, const char *login, const char *addr);

#endif
