/*
 * fuzz_dmarc - libFuzzer target for the pure half of DMARC (src/dns/dmarc.c,
 * RFC 7489 §6.3-§6.6, RFC 9091): the record parser, record choice, policy
 * discovery fed scripted answers, alignment and evaluation, and the author
 * domain of a From value.
 *
 * Input: the whole input is parsed as one record and read as one From
 * value. It is also cut at NUL octets into up to 4 TXT records; octet 0
 * chooses the status of each answer discovery asks for (two bits per
 * query, DATA/NODATA/NXDOMAIN/TEMPFAIL), octet 1 the pct draw, octet 2 the
 * SPF and DKIM results. The organisational domain is a fixed function
 * (the last two labels).
 *
 * Invariants (abort on failure): parse says NOT_DMARC exactly when
 * dmarc_record_is_dmarc is false; a usable record has a p; pct <= 100;
 * URI counts within bounds, each URI NUL-terminated, non-empty, within
 * DMARC_URI_MAX and without ',' '!' or white space; p_implied only with a
 * valid rua; discovery ends within 5 queries; FOUND has a policy domain
 * that is the From domain or its organisational domain; the evaluation is
 * consistent (a disposition only on fail, sampled_out only on fail, pass
 * only with an aligned identifier, none/temperror/permerror as discovery
 * says); an author domain is lowercase, without '@', within DNS_NAME_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dmarc.h"

static bool org_last_two(void *arg, const char *domain, char out[DNS_NAME_MAX + 1])
{
    (void)arg;
    const char *last = strrchr(domain, '.');
    if (!last)
        return false;
    const char *p = domain, *start = domain;
    while ((p = strchr(p, '.')) && p != last)
        start = ++p;
    strcpy(out, start);
    return true;
}

static void check_uris(const struct dmarc_uri *v, size_t n)
{
    if (n > DMARC_URIS_MAX)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(v[i].uri, sizeof v[i].uri);
        if (len == 0 || len > DMARC_URI_MAX || strpbrk(v[i].uri, ",! \t"))
            abort();
    }
}

static void check_record(const struct dmarc_record *r)
{
    if (r->pct > 100 || r->p > DMARC_POLICY_REJECT || r->sp > DMARC_POLICY_REJECT ||
        r->np > DMARC_POLICY_REJECT)
        abort();
    check_uris(r->rua, r->nrua);
    check_uris(r->ruf, r->nruf);
    if (r->p_implied && (r->nrua == 0 || r->p != DMARC_POLICY_NONE))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct dmarc_record rec;
    enum dmarc_parse pr = dmarc_record_parse(s, size, &rec);
    if ((pr == DMARC_PARSE_NOT_DMARC) != !dmarc_record_is_dmarc(s, size))
        abort();
    if (pr == DMARC_PARSE_OK && rec.p == DMARC_POLICY_UNSET)
        abort();
    check_record(&rec);

    /* the author domain of the input as a From value */
    char dom[DNS_NAME_MAX + 1];
    enum dmarc_from fr = dmarc_from_domain(1, s, size, false, dom);
    if (fr == DMARC_FROM_OK) {
        size_t n = strnlen(dom, sizeof dom);
        if (n == 0 || n > DNS_NAME_MAX || strchr(dom, '@'))
            abort();
        for (size_t i = 0; i < n; i++)
            if (dom[i] >= 'A' && dom[i] <= 'Z')
                abort();
    } else if (dom[0]) {
        abort();
    }

    if (size < 3)
        return 0;
    /* TXT records: the input after the 3 control octets, cut at NULs */
    uint8_t rdata[4][2 * DMARC_RECORD_MAX + 16];
    size_t rlen[4] = {0}, nrec = 0;
    size_t pos = 3;
    while (pos < size && nrec < 4) {
        const uint8_t *nul = memchr(data + pos, 0, size - pos);
        size_t end = nul ? (size_t)(nul - data) : size;
        size_t len = end - pos, o = 0;
        const uint8_t *p = data + pos;
        while (len > 0 && o + 256 <= sizeof rdata[nrec]) {
            size_t l = len > 255 ? 255 : len;
            rdata[nrec][o++] = (uint8_t)l;
            memcpy(rdata[nrec] + o, p, l);
            o += l;
            p += l;
            len -= l;
        }
        rlen[nrec++] = o;
        pos = end + 1;
    }

    enum dmarc_auth spf = (enum dmarc_auth)(data[2] & 7);
    struct dmarc_dkim sig = {(enum dmarc_auth)((data[2] >> 3) & 7),
                             data[2] & 0x40 ? "mail.example.org" : "example.net", "s"};
    struct dmarc_input in = {spf, data[2] & 0x80 ? "example.org" : "x.example.org", 1, &sig};
    struct dmarc_discovery d;
    const char *from = data[1] & 1 ? "a.mail.example.org" : "example.org";
    dmarc_discovery_init(&d, from, org_last_two, NULL, data[1] & 2 ? &in : NULL);
    char name[DNS_NAME_MAX + 1];
    int type, queries = 0;
    while (dmarc_discovery_next(&d, name, &type)) {
        if (++queries > 5)
            abort();
        struct dns_answer a;
        memset(&a, 0, sizeof a);
        static const enum dns_answer_status st[] = {DNS_ANSWER_DATA, DNS_ANSWER_NODATA,
                                                    DNS_ANSWER_NXDOMAIN, DNS_ANSWER_TEMPFAIL};
        a.status = st[(data[0] >> (2 * ((queries - 1) & 3))) & 3];
        a.type = type;
        if (a.status == DNS_ANSWER_DATA)
            for (size_t i = 0; i < nrec; i++) {
                a.rdata[a.n] = rdata[i];
                a.len[a.n++] = rlen[i];
            }
        dmarc_discovery_answer(&d, &a, org_last_two, NULL);
    }
    if (d.status == DMARC_DISC_PENDING)
        abort();
    if (d.status == DMARC_DISC_FOUND) {
        check_record(&d.rec);
        if (strcmp(d.domain, d.from) != 0 && strcmp(d.domain, d.org) != 0)
            abort();
        if (d.at_org != (strcmp(d.domain, d.from) != 0))
            abort();
    }
    struct dmarc_result r;
    dmarc_evaluate(&d, &in, data[1], org_last_two, NULL, &r);
    switch (d.status) {
    case DMARC_DISC_FOUND:
        if (r.status != DMARC_STATUS_PASS && r.status != DMARC_STATUS_FAIL)
            abort();
        if ((r.status == DMARC_STATUS_PASS) != (r.spf_aligned || r.dkim_aligned))
            abort();
        if (r.policy == DMARC_POLICY_UNSET)
            abort();
        break;
    case DMARC_DISC_ABSENT:
    case DMARC_DISC_MANY:
        if (r.status != DMARC_STATUS_NONE)
            abort();
        break;
    case DMARC_DISC_TEMPFAIL:
        if (r.status != DMARC_STATUS_TEMPERROR)
            abort();
        break;
    default:
        if (r.status != DMARC_STATUS_PERMERROR)
            abort();
        break;
    }
    if (r.status != DMARC_STATUS_FAIL && (r.disposition != DMARC_DISP_NONE || r.sampled_out))
        abort();
    if (r.disposition == DMARC_DISP_REJECT && r.policy != DMARC_POLICY_REJECT)
        abort();
    return 0;
}
