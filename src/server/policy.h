/*
 * policy - who may send what to whom, decided at RCPT time (DESIGN "How mail
 * flows"): a recipient in a local domain must resolve to a mailbox through
 * the mailbox list and the aliases (550 5.1.1 otherwise); any other domain is
 * accepted only from trusted networks (554 5.7.1 otherwise: never an open
 * relay). Pure: takes the parsed path and returns a reply or the delivery
 * addresses.
 */
#ifndef TERN_SERVER_POLICY_H
#define TERN_SERVER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/aliases.h"
#include "config/config.h"
#include "smtp/smtp.h"

/* Most delivery addresses one recipient may expand to. */
#define POLICY_MAX_LEAVES 64

/*
 * Decide a RCPT. On acceptance returns NULL and writes the delivery
 * addresses (malloc'd, lowercased domain; the caller frees them) to leaves,
 * their count to *nleaves. Otherwise returns the reply to send.
 */
const struct smtp_status *policy_rcpt(const struct config *cfg, const struct aliases *aliases,
                                      const struct smtp_path *rcpt, bool trusted, char **leaves,
                                      size_t *nleaves);

/* True when addr ("local@domain") is in a local domain. */
bool policy_is_local(const struct config *cfg, const char *addr);

#endif
