/*
 * check - `tern check [-c FILE]`: load the configuration (default
 * /etc/tern/tern.conf) and the aliases, transport and relayhost credentials
 * files it names, print every diagnostic
 * on stderr as "FILE:LINE: message" ("FILE: message" when it concerns the
 * whole file), and on success print a one-line summary on stdout:
 *
 *     FILE: configuration ok (3 listeners, 1 local domains, 2 mailboxes, 3 aliases)
 *
 * Exit status: 0 valid (warnings allowed), 1 any error, 2 bad usage.
 */
#include "cli/cli.h"
#include "config/aliases.h"
#include "config/config.h"
#include "config/transport.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cli_print_diags(const struct config_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->v[i].line)
            fprintf(stderr, "%s:%u: %s\n", d->v[i].file, d->v[i].line, d->v[i].msg);
        else
            fprintf(stderr, "%s: %s\n", d->v[i].file, d->v[i].msg);
    }
}

void cli_getopt_reset(void)
{
#ifdef __GLIBC__
    optind = 0; /* full reset, in case getopt ran before */
#else
    optind = 1;
#endif
    opterr = 0;
}

struct config *cli_load_config(const char *file)
{
    struct config_diags diags = {0, NULL};
    struct config *cfg = config_load(file, &diags);
    cli_print_diags(&diags);
    config_diags_free(&diags);
    if (!cfg)
        fprintf(stderr, "%s: configuration has errors\n", file);
    return cfg;
}

int cli_check(int argc, char **argv)
{
    const char *file = CLI_DEFAULT_CONFIG;
    int c;
    cli_getopt_reset();
    while ((c = getopt(argc, argv, "+:c:h")) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'h':
            printf("usage: tern check [-c FILE]\n");
            return 0;
        case ':':
            fprintf(stderr, "tern check: option -%c needs a FILE\nusage: tern check [-c FILE]\n",
                    optopt);
            return 2;
        default:
            fprintf(stderr, "tern check: unknown option -%c\nusage: tern check [-c FILE]\n",
                    optopt);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tern check: unexpected argument \"%s\"\nusage: tern check [-c FILE]\n",
                argv[optind]);
        return 2;
    }

    struct config_diags diags = {0, NULL};
    struct config *cfg = config_load(file, &diags);
    struct aliases *aliases = NULL;
    bool ok = cfg != NULL;
    if (cfg && cfg->aliases_file) {
        aliases = aliases_load(cfg->aliases_file, &diags);
        ok = aliases != NULL;
    }
    if (cfg && cfg->transport_file) {
        struct transport_table *t = transport_load(cfg->transport_file, &diags);
        ok = ok && t != NULL;
        transport_free(t);
    }
    if (cfg && cfg->relayhost_auth_file) {
        struct transport_auth cred;
        char err[600];
        if (transport_auth_load(cfg->relayhost_auth_file, &cred, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            ok = false;
        }
        explicit_bzero(&cred, sizeof cred);
    }
    cli_print_diags(&diags);
    if (ok)
        printf("%s: configuration ok (%zu listeners, %zu local domains, %zu mailboxes, %zu "
               "aliases)\n",
               file, cfg->nlisten, cfg->local_domains.n, cfg->mailboxes.n, aliases_count(aliases));
    else
        fprintf(stderr, "%s: configuration has errors\n", file);
    aliases_free(aliases);
    config_free(cfg);
    config_diags_free(&diags);
    return ok ? 0 : 1;
}
