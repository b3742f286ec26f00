/*
 * mx - DNS answer rdata, MX ordering and address lists (see mx.h), and the
 * pure helpers declared in dns.h (status names, address formatting).
 *
 * RFC 1035 §3.1, §3.3.9, §3.4.1; RFC 3596 §2.2; RFC 1123 §2.1; RFC 5321
 * §5.1; RFC 7505 §3; RFC 3463 (enhanced status codes).
 *
 * Everything here works on caller-owned memory with fixed bounds: no
 * allocation, no I/O.
 */
#include "dns/mx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A name on the wire is at most 255 octets (RFC 1035 §2.3.4). */
#define WIRE_NAME_MAX 255

bool dns_name_from_wire(const uint8_t *p, size_t len, char out[DNS_NAME_MAX + 1])
{
    size_t pos = 0, o = 0;
    out[0] = '\0';
    if (len == 0 || len > WIRE_NAME_MAX)
        return false;
    for (;;) {
        if (pos >= len)
            return false; /* no root label */
        uint8_t l = p[pos++];
        if (l == 0)
            break;
        if (l > 63)
            return false; /* compression pointer (0xC0) or reserved label type */
        if (l > len - pos)
            return false;
        if (o + (o ? 1 : 0) + l > DNS_NAME_MAX)
            return false;
        if (o)
            out[o++] = '.';
        for (size_t i = 0; i < l; i++) {
            uint8_t c = p[pos + i];
            if (c <= 0x20 || c >= 0x7f || c == '.')
                return false;
            if (c >= 'A' && c <= 'Z')
                c = (uint8_t)(c - 'A' + 'a');
            out[o++] = (char)c;
        }
        pos += l;
    }
    out[o] = '\0';
    return pos == len;
}

static bool is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

bool dns_host_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    size_t labels = 0;
    const char *s = name;
    bool all_digits = false;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l == 0 || l > 63 || s[0] == '-' || s[l - 1] == '-')
            return false;
        all_digits = true;
        for (size_t i = 0; i < l; i++) {
            if (!is_ldh(s[i]))
                return false;
            if (s[i] < '0' || s[i] > '9')
                all_digits = false;
        }
        labels++;
        if (!dot)
            break;
        s = dot + 1;
    }
    return labels >= 2 && !all_digits;
}

bool dns_name_normalize(const char *in, char out[DNS_NAME_MAX + 1])
{
    size_t len = strlen(in);
    if (len > 0 && in[len - 1] == '.')
        len--;
    out[0] = '\0';
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    if (!dns_host_name_valid(out)) {
        out[0] = '\0';
        return false;
    }
    return true;
}

bool mx_rdata_parse(const uint8_t *rdata, size_t len, uint16_t *preference,
                    char name[DNS_NAME_MAX + 1])
{
    name[0] = '\0';
    if (len < 3)
        return false;
    *preference = (uint16_t)(rdata[0] << 8 | rdata[1]);
    return dns_name_from_wire(rdata + 2, len - 2, name);
}

bool dns_rdata_addr(int family, const uint8_t *rdata, size_t len, struct dns_addr *out)
{
    size_t want = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (want == 0 || len != want)
        return false;
    memset(out, 0, sizeof *out);
    out->family = family;
    memcpy(out->bytes, rdata, want);
    return true;
}

void mx_list_init(struct mx_list *l)
{
    memset(l, 0, sizeof *l);
}

void mx_list_add(struct mx_list *l, const uint8_t *rdata, size_t len)
{
    uint16_t pref;
    char name[DNS_NAME_MAX + 1];
    l->records++;
    if (!mx_rdata_parse(rdata, len, &pref, name)) {
        l->malformed++;
        return;
    }
    if (name[0] == '\0') {
        l->root++;
        return;
    }
    if (!dns_host_name_valid(name)) {
        l->invalid++;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, name) == 0) {
            if (pref < l->v[i].preference)
                l->v[i].preference = pref;
            return;
        }
    }
    size_t slot = l->n;
    if (l->n == DNS_MAX_HOSTS) {
        /* full: replace the last of the highest preference, if this one is lower */
        size_t worst = 0;
        for (size_t i = 1; i < l->n; i++)
            if (l->v[i].preference >= l->v[worst].preference)
                worst = i;
        l->dropped++;
        if (pref >= l->v[worst].preference)
            return;
        slot = worst;
    } else {
        l->n++;
    }
    l->v[slot].preference = pref;
    memcpy(l->v[slot].name, name, strlen(name) + 1);
}

enum mx_verdict mx_list_finish(struct mx_list *l, mx_random_fn rnd, void *rnd_arg)
{
    /* stable insertion sort by preference (n is small) */
    for (size_t i = 1; i < l->n; i++) {
        struct mx_entry e = l->v[i];
        size_t j = i;
        while (j > 0 && l->v[j - 1].preference > e.preference) {
            l->v[j] = l->v[j - 1];
            j--;
        }
        l->v[j] = e;
    }
    /* Fisher-Yates within each run of equal preference */
    if (rnd) {
        for (size_t start = 0; start < l->n;) {
            size_t end = start + 1;
            while (end < l->n && l->v[end].preference == l->v[start].preference)
                end++;
            for (size_t i = end - start; i > 1; i--) {
                size_t k = (size_t)(rnd(rnd_arg) % i);
                struct mx_entry t = l->v[start + i - 1];
                l->v[start + i - 1] = l->v[start + k];
                l->v[start + k] = t;
            }
            start = end;
        }
    }
    if (l->n > 0)
        return MX_HOSTS;
    if (l->root > 0)
        return MX_NULL;
    if (l->malformed > 0)
        return MX_MALFORMED;
    if (l->invalid > 0)
        return MX_UNUSABLE;
    return MX_EMPTY;
}

void dns_addr_list_init(struct dns_addr_list *l)
{
    memset(l, 0, sizeof *l);
}

void dns_addr_list_add(struct dns_addr_list *l, int family, const uint8_t *rdata, size_t len)
{
    struct dns_addr a;
    if (!dns_rdata_addr(family, rdata, len, &a)) {
        l->malformed++;
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].family == a.family && memcmp(l->v[i].bytes, a.bytes, sizeof a.bytes) == 0)
            return;
    if (l->n == DNS_MAX_ADDRS_PER_FAMILY) {
        l->dropped++;
        return;
    }
    l->v[l->n++] = a;
}

size_t dns_host_set_addrs(struct dns_host *h, const struct dns_addr_list *first,
                          const struct dns_addr_list *second)
{
    h->naddrs = 0;
    const struct dns_addr_list *lists[2] = {first, second};
    for (size_t k = 0; k < 2; k++) {
        if (!lists[k])
            continue;
        for (size_t i = 0; i < lists[k]->n && h->naddrs < DNS_MAX_ADDRS; i++)
            h->addrs[h->naddrs++] = lists[k]->v[i];
    }
    return h->naddrs;
}

bool dns_addr_parse(const char *s, struct dns_addr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
            s += 5;
            len -= 5;
            if (len >= sizeof buf)
                return false;
            memcpy(buf, s, len);
            buf[len] = '\0';
            memset(out, 0, sizeof *out);
            out->family = AF_INET6;
            return inet_pton(AF_INET6, buf, out->bytes) == 1;
        }
    }
    if (len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->bytes) == 1) {
        out->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
        out->family = AF_INET6;
        return true;
    }
    return false;
}

void dns_addr_format(const struct dns_addr *a, char *out, size_t outlen)
{
    char buf[INET6_ADDRSTRLEN];
    if ((a->family != AF_INET && a->family != AF_INET6) ||
        !inet_ntop(a->family, a->bytes, buf, sizeof buf))
        snprintf(buf, sizeof buf, "?");
    snprintf(out, outlen, "%s", buf);
}

socklen_t dns_addr_sockaddr(const struct dns_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, a->bytes, 4);
        return sizeof *sin;
    }
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, a->bytes, 16);
        return sizeof *sin6;
    }
    return 0;
}

const char *dns_status_name(enum dns_status s)
{
    switch (s) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NULL_MX:
        return "null-mx";
    case DNS_NO_ADDRESS:
        return "no-address";
    case DNS_TEMPFAIL:
        return "tempfail";
    }
    return "tempfail";
}

const char *dns_status_dsn(enum dns_status s)
{
    switch (s) {
    case DNS_OK:
        return "2.0.0";
    case DNS_NXDOMAIN:
        return "5.1.2";
    case DNS_NULL_MX:
        return "5.1.10";
    case DNS_NO_ADDRESS:
        return "5.4.4";
    case DNS_TEMPFAIL:
        return "4.4.3";
    }
    return "4.4.3";
}

bool dns_status_temporary(enum dns_status s)
{
    return s == DNS_TEMPFAIL;
}

long dns_txt_join(const uint8_t *rdata, size_t len, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        size_t l = rdata[i++];
        if (l > len - i || l >= outlen - n)
            return -1;
        if (memchr(rdata + i, '\0', l))
            return -1;
        memcpy(out + n, rdata + i, l);
        n += l;
        i += l;
    }
    out[n] = '\0';
    return (long)n;
}

bool dns_query_name_normalize(const char *in, char out[DNS_NAME_MAX + 1])
{
    size_t len = strlen(in);
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (c <= 0x20 || c == 0x7f) {
            return false;
        } else if (++label > 63) {
            return false;
        }
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    if (label == 0)
        return false; /* "a.b..": an empty last label */
    out[len] = '\0';
    return true;
}
