/*
 * fuzz_spf - libFuzzer target for the pure SPF code of src/dns/spf.c (RFC
 * 7208): record syntax, every term's parser, macro syntax and expansion,
 * and check_host() driven by answers the input chooses.
 *
 * Input: octet 0 holds flags (bit 0: the client is IPv6; bit 1: check the
 * HELO identity; bit 2: abort the evaluation when the answers run out,
 * else answer NXDOMAIN from there on; bit 3: the client is IPv4-mapped
 * IPv6). Then three fields ended by NUL: the sender, the HELO name, and a
 * text that is checked as a record, as each of its terms, and as a
 * macro-string (expanded as a domain-spec and as explain text when its
 * syntax is right). The rest answers the evaluator's queries in turn:
 *
 *   status octet: low 2 bits 0 DATA, 1 NODATA, 2 NXDOMAIN, 3 TEMPFAIL;
 *                 bit 2 INVALID; bit 7 records are raw rdata
 *   count octet:  records, modulo 16
 *   per record:   length octet L and L octets; unless raw, TXT text is cut
 *                 into character-strings, A and AAAA take the octets as they
 *                 are, MX is a 2-octet preference and a name in text, PTR a
 *                 name in text (names are encoded to the wire)
 *
 * Invariants checked (abort on failure): the evaluation ends within 130
 * queries (the bound §4.6.4 implies: 10 terms of at most 11 queries each,
 * the record lookups, %{p} and exp=); every query name is a valid,
 * normalised query name; the counters stay within the limits plus the one
 * that broke them; the result is one of the seven; reason, mechanism and
 * explanation are NUL-terminated printable text within their bounds, and
 * only fail has an explanation; an expanded domain is at most 253 octets; a
 * parsed term has CIDR lengths in range and its spec inside the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/mx.h"
#include "dns/spf.h"

#define MAX_QUERIES 130

/* The input as fields and an answer script. */
struct input {
    const uint8_t *p;
    size_t len, pos;
};

static const char *field(struct input *in, char *out, size_t outlen)
{
    size_t n = 0;
    while (in->pos < in->len && in->p[in->pos] != 0) {
        if (n + 1 < outlen)
            out[n++] = (char)in->p[in->pos];
        in->pos++;
    }
    if (in->pos < in->len)
        in->pos++; /* the NUL */
    out[n] = '\0';
    return out;
}

static int next_octet(struct input *in)
{
    return in->pos < in->len ? in->p[in->pos++] : -1;
}

static size_t encode_name(const uint8_t *s, size_t len, uint8_t *out)
{
    size_t n = 0, i = 0;
    while (i < len && n < 250) {
        size_t st = i;
        while (i < len && s[i] != '.')
            i++;
        size_t l = i - st;
        if (l > 63)
            l = 63;
        if (l > 0) {
            out[n++] = (uint8_t)l;
            memcpy(out + n, s + st, l);
            n += l;
        }
        i++;
    }
    out[n++] = 0;
    return n;
}

static uint8_t rdata_store[16][520];

/* Build the answer to q from the script; false when the script is over. */
static bool script_answer(struct input *in, const struct spf_query *q, struct dns_answer *a)
{
    memset(a, 0, sizeof *a);
    a->type = q->type;
    memcpy(a->name, q->name, sizeof a->name);
    int st = next_octet(in);
    if (st < 0)
        return false;
    int cnt = next_octet(in);
    if (cnt < 0)
        cnt = 0;
    a->status = (st & 4) ? DNS_ANSWER_INVALID : (enum dns_answer_status)(st & 3);
    if (a->status == DNS_ANSWER_TEMPFAIL)
        memcpy(a->reason, "SERVFAIL", 9);
    bool raw = st & 0x80;
    for (int k = 0; k < (cnt & 15); k++) {
        int l = next_octet(in);
        if (l < 0)
            break;
        size_t len = (size_t)l;
        if (len > in->len - in->pos)
            len = in->len - in->pos;
        const uint8_t *d = in->p + in->pos;
        in->pos += len;
        uint8_t *out = rdata_store[k];
        size_t n = 0;
        if (raw) {
            memcpy(out, d, len);
            n = len;
        } else if (q->type == DNS_TYPE_TXT) {
            size_t i = 0;
            do {
                size_t c = len - i > 100 ? 100 : len - i;
                out[n++] = (uint8_t)c;
                memcpy(out + n, d + i, c);
                n += c;
                i += c;
            } while (i < len);
        } else if (q->type == DNS_TYPE_A || q->type == DNS_TYPE_AAAA) {
            memcpy(out, d, len);
            n = len;
        } else if (q->type == DNS_TYPE_MX) {
            out[0] = len > 0 ? d[0] : 0;
            out[1] = len > 1 ? d[1] : 0;
            n = 2 + encode_name(d + (len > 2 ? 2 : len), len > 2 ? len - 2 : 0, out + 2);
        } else {
            n = encode_name(d, len, out);
        }
        a->rdata[a->n] = out;
        a->len[a->n] = n;
        a->n++;
    }
    if (a->status != DNS_ANSWER_DATA)
        a->n = 0;
    return true;
}

static void check_text(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

static void check_term(const char *s, size_t len)
{
    struct spf_term t;
    if (!spf_term_parse(s, len, &t, NULL, 0))
        return;
    if (t.cidr4 > 32 || t.cidr6 > 128)
        abort();
    if (t.spec && (t.spec < s || t.spec + t.spec_len > s + len))
        abort();
}

static void check_syntax(const char *text, const struct spf_request *req)
{
    size_t len = strlen(text);
    struct spf_record_info info;
    char err[256];
    if (spf_record_check(text, len, &info, err, sizeof err) == 0) {
        if (info.directives > info.terms)
            abort();
        if (info.has_redirect && info.redirect_at + info.redirect_len > len)
            abort();
    } else {
        check_text(err, sizeof err - 1);
    }
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != ' ')
            j++;
        if (j > i)
            check_term(text + i, j - i);
        i = j + 1;
    }
    struct spf_macro_ctx c = {
        .sender = req->sender,
        .local = "strong-bad",
        .sender_domain = "email.example.com",
        .domain = "example.org",
        .helo = req->helo,
        .validated = "mx.example.org",
        .receiver = "mx.example.net",
        .ip = req->client,
        .now = 1234567890,
    };
    char out[DNS_NAME_MAX + 1];
    if (spf_macro_check(text, len, false, NULL, 0)) {
        spf_expand_domain(&c, text, len, out);
        if (strlen(out) > DNS_NAME_MAX)
            abort();
    }
    char exp[SPF_EXPLANATION_MAX + 1];
    if (spf_macro_check(text, len, true, NULL, 0)) {
        spf_expand_text(&c, text, len, exp, sizeof exp);
        if (strlen(exp) > SPF_EXPLANATION_MAX)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct input in = {data, size, 1};
    uint8_t flags = data[0];
    char sender[600], helo[300], text[4200];
    field(&in, sender, sizeof sender);
    field(&in, helo, sizeof helo);
    field(&in, text, sizeof text);

    struct spf_request req = {0};
    req.identity = (flags & 2) ? SPF_IDENTITY_HELO : SPF_IDENTITY_MAILFROM;
    req.sender = sender;
    req.helo = helo;
    req.receiver = "mx.example.net";
    req.now = 1700000000;
    if (flags & 1) {
        static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,    0,
                                       0,    0,    0,    0,    0, 0, 0xcb, 0x01};
        req.client.family = AF_INET6;
        memcpy(req.client.bytes, v6, 16);
    } else if (flags & 8) {
        static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 3};
        req.client.family = AF_INET6;
        memcpy(req.client.bytes, mapped, 16);
    } else {
        static const uint8_t v4[4] = {192, 0, 2, 3};
        req.client.family = AF_INET;
        memcpy(req.client.bytes, v4, 4);
    }
    check_syntax(text, &req);

    struct spf_eval *e = spf_eval_new(&req);
    struct spf_query q;
    size_t queries = 0;
    while (spf_eval_next(e, &q) == SPF_STEP_QUERY) {
        if (++queries > MAX_QUERIES)
            abort();
        char norm[DNS_NAME_MAX + 1];
        if (!dns_query_name_normalize(q.name, norm) || strcmp(norm, q.name) != 0)
            abort();
        if (q.type != DNS_TYPE_TXT && q.type != DNS_TYPE_A && q.type != DNS_TYPE_AAAA &&
            q.type != DNS_TYPE_MX && q.type != DNS_TYPE_PTR)
            abort();
        static struct dns_answer a;
        if (!script_answer(&in, &q, &a)) {
            if (flags & 4) {
                spf_eval_abort(e, "out of answers");
                continue;
            }
            memset(&a, 0, sizeof a);
            a.status = DNS_ANSWER_NXDOMAIN;
        }
        spf_eval_answer(e, &a);
    }
    const struct spf_result *r = spf_eval_result(e);
    if (r->result > SPF_PERMERROR)
        abort();
    if (r->lookups > SPF_MAX_LOOKUPS + 1 || r->void_lookups > SPF_MAX_VOID_LOOKUPS + 1 ||
        r->queries != queries)
        abort();
    check_text(r->reason, sizeof r->reason - 1);
    check_text(r->mechanism, SPF_MECHANISM_MAX);
    check_text(r->explanation, SPF_EXPLANATION_MAX);
    if (r->reason[0] == '\0')
        abort();
    if (r->result != SPF_FAIL && r->explanation[0])
        abort();
    if (strlen(r->domain) > DNS_NAME_MAX)
        abort();
    spf_eval_free(e);
    return 0;
}
