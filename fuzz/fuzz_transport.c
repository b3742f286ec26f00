/*
 * fuzz_transport - libFuzzer target for the transport file, next-hop and
 * relayhost credentials parsers (config/transport.h).
 *
 * The whole input is parsed as a transport file, as one next hop (with and
 * without the kind prefix) and as a credentials file. A table that parses is
 * looked up with fixed domains and with the first token of every line; every
 * route found must format to a non-empty string. Everything allocated is
 * freed, so LeakSanitizer sees any leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/transport.h"

static void lookup(const struct transport_table *t, const char *domain)
{
    const struct route *r = transport_lookup(t, domain);
    if (r) {
        char fmt[400];
        transport_route_format(r, fmt, sizeof fmt);
        if (fmt[0] == '\0')
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct config_diags diags = {0, NULL};
    struct transport_table *t = transport_parse(text, size, "fuzz.transport", &diags);
    if (!t && diags.n == 0)
        abort(); /* a failure always says why */
    static const char *const domains[] = {"example.com", "a.example.com",      "EXAMPLE.COM", "",
                                          "x",           "a.b.c.d.e.f.example"};
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
        lookup(t, domains[i]);
    size_t pos = 0, lines = 0;
    while (pos < size && lines < 64) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - text) : size;
        size_t n = 0;
        while (pos + n < end && text[pos + n] != ' ' && text[pos + n] != '\t')
            n++;
        if (n > 0 && n < 300) {
            char key[301];
            memcpy(key, text + pos, n);
            key[n] = '\0';
            lookup(t, key[0] == '.' || key[0] == '*' ? key + 1 : key);
            lines++;
        }
        pos = end + 1;
    }
    transport_free(t);
    config_diags_free(&diags);

    struct route r;
    char err[400];
    for (int k = 0; k < 2; k++)
        if (transport_parse_nexthop(text, size, k == 0, &r, err, sizeof err) == 0) {
            if (r.kind == ROUTE_SMTP && r.host[0] == '\0')
                abort();
        } else if (err[0] == '\0') {
            abort();
        }
    struct transport_auth a;
    if (transport_auth_parse(text, size, &a, err, sizeof err) == 0 &&
        (a.user[0] == '\0' || a.pass[0] == '\0'))
        abort();
    return 0;
}
