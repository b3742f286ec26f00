/*
 * orgdomain - organisational domains on the public suffix list (RFC 7489
 * §3.2) with libpsl, and names normalized to lowercase A-labels with
 * libidn2. See orgdomain.h.
 *
 * psl_latest(NULL) compares the list libpsl was built with and the
 * distribution's file (the publicsuffix package) and loads the newer one;
 * psl_builtin() is the fallback when that fails. The context is read-only
 * after loading, which libpsl allows from any thread.
 */
#include "mailauth/orgdomain.h"

#include <idn2.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/mx.h"

struct orgdomain {
    psl_ctx_t *psl;       /* loaded by us: freed with psl_free */
    const psl_ctx_t *use; /* the list in use: psl, or libpsl's built-in one */
    char source[256];     /* where it came from */
};

struct orgdomain *orgdomain_new(const char *file, char *err, size_t errlen)
{
    struct orgdomain *od = calloc(1, sizeof *od);
    if (!od) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (file) {
        od->psl = psl_load_file(file);
        if (!od->psl) {
            snprintf(err, errlen, "cannot load the public suffix list %s", file);
            free(od);
            return NULL;
        }
        snprintf(od->source, sizeof od->source, "%s", file);
        od->use = od->psl;
        return od;
    }
    od->psl = psl_latest(NULL);
    if (od->psl) {
        const char *dist = psl_dist_filename();
        snprintf(od->source, sizeof od->source, "%s", dist && dist[0] ? dist : "latest");
        od->use = od->psl;
    } else {
        od->use = psl_builtin();
        snprintf(od->source, sizeof od->source, "built-in");
    }
    if (!od->use) {
        snprintf(err, errlen,
                 "no public suffix list: neither the publicsuffix package's nor "
                 "libpsl's built-in one");
        free(od);
        return NULL;
    }
    return od;
}

void orgdomain_free(struct orgdomain *od)
{
    if (!od)
        return;
    psl_free(od->psl);
    free(od);
}

const char *orgdomain_source(const struct orgdomain *od)
{
    return od->source;
}

bool orgdomain_normalize(const char *in, char out[DNS_NAME_MAX + 1])
{
    if (!in || !in[0])
        return false;
    bool ascii = true;
    for (const char *p = in; *p; p++)
        if ((unsigned char)*p >= 0x80)
            ascii = false;
    char *converted = NULL;
    if (!ascii) {
        if (strlen(in) > 1024 ||
            idn2_to_ascii_8z(in, &converted, IDN2_NONTRANSITIONAL) != IDN2_OK || !converted)
            return false;
        in = converted;
    }
    char tmp[DNS_NAME_MAX + 1];
    bool ok = dns_query_name_normalize(in, tmp);
    idn2_free(converted);
    size_t n = ok ? strlen(tmp) : 0;
    if (!ok || n == 0 || tmp[n - 1] == '.')
        return false; /* an empty last label ("example.org..") */
    /* letters, digits, hyphens and underscores only */
    for (const char *p = tmp; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    memcpy(out, tmp, strlen(tmp) + 1);
    return true;
}

bool orgdomain_get(const struct orgdomain *od, const char *domain, char out[DNS_NAME_MAX + 1])
{
    char name[DNS_NAME_MAX + 1];
    if (!od || !orgdomain_normalize(domain, name))
        return false;
    const char *reg = psl_registrable_domain(od->use, name);
    if (!reg)
        return false;
    size_t n = strlen(reg);
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    memcpy(out, reg, n + 1);
    return true;
}

bool orgdomain_is_public_suffix(const struct orgdomain *od, const char *domain)
{
    char name[DNS_NAME_MAX + 1];
    if (!od || !orgdomain_normalize(domain, name))
        return false;
    return psl_is_public_suffix(od->use, name) != 0;
}

bool orgdomain_fn(void *arg, const char *domain, char out[DNS_NAME_MAX + 1])
{
    return orgdomain_get(arg, domain, out);
}
