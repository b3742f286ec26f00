/*
 * policy - recipient acceptance: local mailboxes and aliases, relay only for
 * trusted networks. See policy.h.
 */
#include "server/policy.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>

static const struct smtp_status st_unknown = {550, "5.1.1",
                                              "Recipient address rejected: user unknown"};
static const struct smtp_status st_relay = {554, "5.7.1", "Relay access denied"};
static const struct smtp_status st_alias = {451, "4.3.0",
                                            "Recipient address rejected: alias expansion error"};

bool policy_is_local(const struct config *cfg, const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && config_is_local_domain(cfg, at + 1);
}

const struct smtp_status *policy_rcpt(const struct config *cfg, const struct aliases *aliases,
                                      const struct smtp_path *rcpt, bool trusted, char **leaves,
                                      size_t *nleaves)
{
    char addr[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 16];
    *nleaves = 0;
    if (rcpt->postmaster) {
        if (cfg->local_domains.n == 0)
            return &st_unknown;
        snprintf(addr, sizeof addr, "postmaster@%s", cfg->local_domains.v[0]);
    } else {
        snprintf(addr, sizeof addr, "%s@%s", rcpt->local_canon, rcpt->domain);
        char *at = strrchr(addr, '@');
        ascii_lower(at + 1);
    }
    if (!policy_is_local(cfg, addr)) {
        if (!trusted)
            return &st_relay;
        leaves[0] = xstrdup(addr);
        *nleaves = 1;
        return NULL;
    }
    /* Local parts are matched without regard to case, as Postfix does. */
    ascii_lower(addr);
    int n = aliases_resolve(aliases, cfg, addr, leaves, POLICY_MAX_LEAVES);
    if (n < 0)
        return &st_alias;
    if (n == 0)
        return &st_unknown;
    *nleaves = (size_t)n;
    return NULL;
}
