/*
 * fuzz_dns - libFuzzer target for the DNS answer handling of src/dns/mx.c:
 * names on the wire, MX, A and AAAA rdata, MX ordering with null MX
 * detection, duplicate removal and bounds, and address lists.
 *
 * Input: a sequence of records, each one octet of type (low two bits: 0 MX,
 * 1 A, 2 AAAA, 3 a bare name), one octet of length L, then L octets of rdata
 * (fewer at the end of the input). The random source for the shuffle is
 * the input's own octets, cycled.
 *
 * Invariants checked (abort on failure): a parsed name is lowercase,
 * printable, at most DNS_NAME_MAX octets, without empty labels; a kept MX
 * host is a valid host name; hosts are distinct and in non-decreasing
 * preference; counts add up (every record is kept, merged, dropped,
 * malformed, invalid or root); the verdict matches the counts; address
 * lists stay within their bounds and hold distinct addresses of the right
 * family; dns_host_set_addrs never exceeds DNS_MAX_ADDRS.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/mx.h"

/* The random source: the input's octets, cycled. */
struct rnd {
    const uint8_t *p;
    size_t len, i;
};

static uint32_t rnd_next(void *arg)
{
    struct rnd *r = arg;
    if (r->len == 0)
        return 0;
    uint32_t x = 0;
    for (int k = 0; k < 4; k++)
        x = x << 8 | r->p[r->i++ % r->len];
    return x;
}

static void check_name(const char *s, bool root_ok)
{
    size_t len = strlen(s);
    if (len > DNS_NAME_MAX)
        abort();
    if (len == 0) {
        if (!root_ok)
            abort();
        return;
    }
    if (s[0] == '.' || s[len - 1] == '.' || strstr(s, ".."))
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f ||
            (s[i] >= 'A' && s[i] <= 'Z'))
            abort();
}

static void check_list(const struct dns_addr_list *l, int family)
{
    if (l->n > DNS_MAX_ADDRS_PER_FAMILY)
        abort();
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].family != family)
            abort();
        for (size_t j = i + 1; j < l->n; j++)
            if (memcmp(&l->v[i], &l->v[j], sizeof l->v[i]) == 0)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mx_list mx;
    struct dns_addr_list v4, v6;
    mx_list_init(&mx);
    dns_addr_list_init(&v4);
    dns_addr_list_init(&v6);
    size_t pos = 0, nmx = 0;
    while (pos + 2 <= size) {
        uint8_t type = data[pos] & 3;
        size_t len = data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        const uint8_t *p = data + pos;
        pos += len;
        char name[DNS_NAME_MAX + 1];
        uint16_t pref;
        switch (type) {
        case 0:
            nmx++;
            if (mx_rdata_parse(p, len, &pref, name))
                check_name(name, true);
            mx_list_add(&mx, p, len);
            break;
        case 1:
            dns_addr_list_add(&v4, AF_INET, p, len);
            break;
        case 2:
            dns_addr_list_add(&v6, AF_INET6, p, len);
            break;
        case 3: {
            /* TXT rdata: the joined text has no NUL and fits */
            char txt[256];
            long n = dns_txt_join(p, len, txt, sizeof txt);
            if (n >= (long)sizeof txt || (n >= 0 && strlen(txt) != (size_t)n))
                abort();
        }
            if (dns_name_from_wire(p, len, name)) {
                check_name(name, true);
                char raw[DNS_NAME_MAX + 1];
                if (name[0] && !dns_query_name_normalize(name, raw))
                    abort();
                if (dns_host_name_valid(name)) {
                    char again[DNS_NAME_MAX + 1];
                    if (!dns_name_normalize(name, again) || strcmp(again, name) != 0)
                        abort();
                }
            }
            break;
        }
    }
    struct rnd r = {data, size, 0};
    enum mx_verdict v = mx_list_finish(&mx, rnd_next, &r);

    if (mx.records != nmx || mx.n > DNS_MAX_HOSTS)
        abort();
    if (mx.malformed + mx.invalid + mx.root + mx.n > mx.records)
        abort();
    for (size_t i = 0; i < mx.n; i++) {
        check_name(mx.v[i].name, false);
        if (!dns_host_name_valid(mx.v[i].name))
            abort();
        if (i > 0 && mx.v[i - 1].preference > mx.v[i].preference)
            abort();
        for (size_t j = i + 1; j < mx.n; j++)
            if (strcmp(mx.v[i].name, mx.v[j].name) == 0)
                abort();
    }
    enum mx_verdict want = mx.n           ? MX_HOSTS
                           : mx.root      ? MX_NULL
                           : mx.malformed ? MX_MALFORMED
                           : mx.invalid   ? MX_UNUSABLE
                                          : MX_EMPTY;
    if (v != want)
        abort();

    check_list(&v4, AF_INET);
    check_list(&v6, AF_INET6);
    struct dns_host h;
    if (dns_host_set_addrs(&h, &v6, &v4) !=
        (v4.n + v6.n < DNS_MAX_ADDRS ? v4.n + v6.n : DNS_MAX_ADDRS))
        abort();
    for (size_t i = 0; i < h.naddrs; i++) {
        char text[64];
        dns_addr_format(&h.addrs[i], text, sizeof text);
        struct dns_addr back;
        if (!dns_addr_parse(text, &back) || memcmp(&back, &h.addrs[i], sizeof back) != 0)
            abort();
    }
    return 0;
}
