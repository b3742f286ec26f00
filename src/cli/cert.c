/*
 * cert - `tern cert selfsigned [-c FILE] [--force]`: load the configuration
 * (default /etc/tern/tern.conf) and write a self-signed certificate and key
 * for its `hostname` to tls_cert_file (mode 0644) and tls_key_file (0600),
 * creating missing directories (tls_selfsigned_create in tls/). Existing
 * files are replaced only with --force. On success it prints what it wrote:
 *
 *     wrote certificate /etc/tern/cert.pem (mode 0644)
 *     wrote private key /etc/tern/key.pem (mode 0600)
 *     subject CN: mail.example.org
 *     not after: 2029-02-25T12:00:00Z
 *     SHA-256 fingerprint: AB:CD:...
 *
 * Exit status: 0 written, 1 any error, 2 bad usage.
 */
#include "cli/cli.h"
#include "config/config.h"
#include "tls/tls.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERT_USAGE "usage: tern cert selfsigned [-c FILE] [--force]\n"

/* Does path name anything (a dangling symlink counts)? */
static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

static int cert_selfsigned(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = CLI_DEFAULT_CONFIG;
    bool force = false;
    int c;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, "+:c:fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'f':
            force = true;
            break;
        case 'h':
            printf(CERT_USAGE);
            return 0;
        case ':':
            fprintf(stderr, "tern cert selfsigned: %s needs a FILE\n" CERT_USAGE, argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "tern cert selfsigned: unknown option %s\n" CERT_USAGE,
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tern cert selfsigned: unexpected argument \"%s\"\n" CERT_USAGE,
                argv[optind]);
        return 2;
    }

    struct config *cfg = cli_load_config(file);
    if (!cfg)
        return 1;
    int rc = 1;
    if (!cfg->tls_cert_file || !cfg->tls_key_file) {
        fprintf(stderr, "%s: tls_cert_file and tls_key_file must say where to write the pair\n",
                file);
        goto out;
    }
    if (!force) {
        bool refuse = false;
        const char *paths[] = {cfg->tls_cert_file, cfg->tls_key_file};
        for (size_t i = 0; i < 2; i++) {
            if (exists(paths[i])) {
                fprintf(stderr, "tern cert selfsigned: %s exists; use --force to replace it\n",
                        paths[i]);
                refuse = true;
            }
        }
        if (refuse)
            goto out;
    }
    char err[1024];
    if (tls_selfsigned_create(cfg->hostname, cfg->tls_cert_file, cfg->tls_key_file, err,
                              sizeof err) < 0) {
        fprintf(stderr, "tern cert selfsigned: %s\n", err);
        goto out;
    }
    struct tls_cert_info info;
    if (tls_cert_info_read(cfg->tls_cert_file, &info, err, sizeof err) < 0) {
        fprintf(stderr, "tern cert selfsigned: written, but cannot be read back: %s\n", err);
        goto out;
    }
    printf("wrote certificate %s (mode 0644)\n"
           "wrote private key %s (mode 0600)\n"
           "subject CN: %s\n"
           "not after: %s\n"
           "SHA-256 fingerprint: %s\n",
           cfg->tls_cert_file, cfg->tls_key_file, info.subject_cn, info.not_after, info.sha256);
    rc = 0;
out:
    config_free(cfg);
    return rc;
}

int cli_cert(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "selfsigned") == 0)
        return cert_selfsigned(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf(CERT_USAGE);
        return 0;
    }
    if (argc >= 2)
        fprintf(stderr, "tern cert: unknown subcommand \"%s\"\n", argv[1]);
    fprintf(stderr, CERT_USAGE);
    return 2;
}
