/*
 * aliases - the aliases file: which addresses deliver where.
 *
 * Format, one entry per line ('#' comments, blank lines ignored, a line that
 * starts with white space continues the previous one):
 *
 *     alias@example.test: demo@example.test, someone@elsewhere.example
 *     @example.test: demo@example.test          # catch-all for the domain
 *
 * Keys are lowercased; targets are full addresses (local mailboxes, other
 * aliases, or remote addresses). Expansion is recursive up to 10 levels, with
 * loops detected, and its result is deduplicated. aliases_parse is pure.
 */
#ifndef TERN_CONFIG_ALIASES_H
#define TERN_CONFIG_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

struct aliases;

/* Parse text; NULL with diags on error ("file:line: message"). */
struct aliases *aliases_parse(const char *text, size_t len, const char *file,
                              struct config_diags *diags);
struct aliases *aliases_load(const char *file, struct config_diags *diags);
void aliases_free(struct aliases *a);

/* Number of entries (for logs). */
size_t aliases_count(const struct aliases *a);

/*
 * Resolve a recipient address ("local@domain", any case) against the mailboxes
 * of cfg and the aliases a (may be NULL):
 *   - a listed mailbox resolves to itself;
 *   - an alias resolves to its targets, recursively (a target that is a mailbox or
 *     a non-local address is a leaf; a local target that is neither mailbox nor
 *     alias is dropped with no error unless nothing remains);
 *   - otherwise a catch-all "@domain" entry for its domain applies.
 * On success returns the number of leaf addresses written to out (lowercased
 * domain, malloc'd strings the caller frees), at most max_out. Returns 0 when the
 * address is unknown, -1 on a loop or a depth past 10.
 */
int aliases_resolve(const struct aliases *a, const struct config *cfg, const char *addr, char **out,
                    size_t max_out);

#endif
