/*
 * fuzz_config - libFuzzer target for the configuration and aliases parsers.
 *
 * The input is a configuration file and an aliases file separated by a line
 * "%%" (without one, the whole input is given to both parsers). A
 * configuration that parses is queried (local domains, mailboxes, trusted
 * networks); the aliases are resolved against it, or against a fixed
 * configuration when it did not parse, for a few fixed addresses and for the
 * key of every entry line. A configuration that parses is also copied
 * (config_dup) and compared with its copy and with the fixed one, and the
 * fixed one takes its values of the keys that need a restart (the reload
 * helpers). Everything allocated is freed, so LeakSanitizer sees any leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config/aliases.h"
#include "config/config.h"

#define MAX_OUT 16

static const char fixed_text[] = "mx_listen = 127.0.0.1:2525\n"
                                 "local_domains = example.test, other.test\n"
                                 "mailboxes = postmaster@example.test, demo@example.test,\n"
                                 "  a@example.test, b@other.test\n";

static void resolve(const struct aliases *a, const struct config *cfg, const char *addr)
{
    char *out[MAX_OUT];
    int n = aliases_resolve(a, cfg, addr, out, MAX_OUT);
    if (n > MAX_OUT)
        abort();
    for (int i = 0; i < n; i++) {
        if (!out[i] || !strchr(out[i], '@'))
            abort();
        free(out[i]);
    }
}

static void query(const struct config *cfg)
{
    if (cfg->nlisten == 0 || !cfg->maildir_root || !cfg->spool_dir)
        abort();
    for (size_t i = 0; i < cfg->local_domains.n; i++)
        if (!config_is_local_domain(cfg, cfg->local_domains.v[i]))
            abort();
    for (size_t i = 0; i < cfg->mailboxes.n; i++)
        if (!config_is_mailbox(cfg, cfg->mailboxes.v[i]))
            abort();
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    s4.sin_addr.s_addr = htonl(0x7f000001);
    (void)config_is_trusted(cfg, (struct sockaddr *)&s4);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    s6.sin6_addr.s6_addr[15] = 1;
    (void)config_is_trusted(cfg, (struct sockaddr *)&s6);
    for (size_t i = 0; i < cfg->ntrusted; i++) {
        /* Every network contains its own (zeroed) address. */
        const struct config_cidr *c = &cfg->trusted[i];
        if (c->family == AF_INET) {
            memcpy(&s4.sin_addr, c->addr, 4);
            if (!config_is_trusted(cfg, (struct sockaddr *)&s4))
                abort();
        } else {
            memcpy(&s6.sin6_addr, c->addr, 16);
            if (!config_is_trusted(cfg, (struct sockaddr *)&s6))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t clen = size, aoff = 0;
    for (size_t i = 0; i + 3 <= size; i++) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "%%", 2) == 0 &&
            text[i + 2] == '\n') {
            clen = i;
            aoff = i + 3;
            break;
        }
    }

    struct config_diags diags = {0, NULL};
    struct config *cfg = config_parse(text, clen, "fuzz.conf", &diags);
    if (!cfg && diags.n == 0)
        abort(); /* a failure always says why */
    for (size_t i = 0; i < diags.n; i++)
        if (!diags.v[i].msg || !diags.v[i].file)
            abort();
    if (cfg)
        query(cfg);
    struct config *fixed = NULL;
    if (!cfg)
        fixed = config_parse(fixed_text, sizeof fixed_text - 1, "fixed.conf", NULL);
    if (cfg) {
        struct config *copy = config_dup(cfg);
        if (config_diff(cfg, copy, NULL, NULL) != 0)
            abort();
        query(copy);
        struct config *other = config_parse(fixed_text, sizeof fixed_text - 1, "fixed.conf", NULL);
        config_keep_restart_keys(other, cfg);
        config_keep_restart_keys(copy, other);
        if (config_diff(cfg, copy, NULL, NULL) != 0)
            abort(); /* keeping restart keys of a copy of cfg's restart keys changes nothing */
        config_free(other);
        config_free(copy);
    }
    const struct config *use = cfg ? cfg : fixed;

    struct aliases *a = aliases_parse(text + aoff, size - aoff, "fuzz.aliases", &diags);
    static const char *const addrs[] = {"postmaster@example.test",
                                        "demo@example.test",
                                        "nobody@example.test",
                                        "x@other.test",
                                        "X@Remote.Example",
                                        "noat",
                                        "@example.test"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        resolve(a, use, addrs[i]);
    /* The key of each line that looks like an entry. */
    size_t pos = aoff, lines = 0;
    while (pos < size && lines < 64) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - text) : size;
        const char *colon = memchr(text + pos, ':', end - pos);
        if (colon && colon > text + pos && (size_t)(colon - text - pos) < 300) {
            char key[301];
            size_t n = (size_t)(colon - text - pos);
            memcpy(key, text + pos, n);
            key[n] = '\0';
            resolve(a, use, key);
            lines++;
        }
        pos = end + 1;
    }
    aliases_free(a);
    config_free(fixed);
    config_free(cfg);
    config_diags_free(&diags);
    return 0;
}
