/*
 * test_dsn - unit tests of src/deliver/dsn.c (when and where to report, the
 * RFC 3464 report itself, checked structurally: MIME boundaries and parts,
 * the required delivery-status fields, RET handling, folding, several
 * recipients, SMTPUTF8 types, boundary clashes) and of the 8BITMIME
 * downgrade of src/smtp/eightbit.c (quoted-printable decoded back and
 * compared with the original body).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dsn.h"
#include "smtp/client.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------
 * Policy
 */
static void test_should_report(void **state)
{
    (void)state;
    const unsigned S = SMTP_NOTIFY_SUCCESS, F = SMTP_NOTIFY_FAILURE, D = SMTP_NOTIFY_DELAY;
    struct {
        unsigned notify;
        enum dsn_action a;
        bool want;
    } c[] = {
        {0, DSN_ACTION_FAILED, true},
        {0, DSN_ACTION_DELAYED, true},
        {0, DSN_ACTION_DELIVERED, false},
        {0, DSN_ACTION_RELAYED, false},
        {SMTP_NOTIFY_NEVER, DSN_ACTION_FAILED, false},
        {SMTP_NOTIFY_NEVER, DSN_ACTION_DELAYED, false},
        {F, DSN_ACTION_FAILED, true},
        {F, DSN_ACTION_DELAYED, false},
        {D, DSN_ACTION_DELAYED, true},
        {D, DSN_ACTION_FAILED, false},
        {S, DSN_ACTION_DELIVERED, true},
        {S, DSN_ACTION_RELAYED, true},
        {S, DSN_ACTION_EXPANDED, true},
        {S, DSN_ACTION_FAILED, false},
        {S | F | D, DSN_ACTION_FAILED, true},
        {S | F | D, DSN_ACTION_DELIVERED, true},
    };
    for (size_t i = 0; i < N(c); i++)
        if (dsn_should_report(c[i].notify, c[i].a) != c[i].want)
            fail_msg("case %zu", i);
}

static void test_route(void **state)
{
    (void)state;
    assert_int_equal(dsn_route("a@b.example", "mx.example"), DSN_ROUTE_SENDER);
    assert_int_equal(dsn_route("", "mx.example"), DSN_ROUTE_POSTMASTER);
    assert_int_equal(dsn_route(NULL, "mx.example"), DSN_ROUTE_POSTMASTER);
    assert_int_equal(dsn_route("double-bounce@mx.example", "mx.example"), DSN_ROUTE_DROP);
    assert_int_equal(dsn_route("Double-Bounce@MX.example", "mx.example"), DSN_ROUTE_DROP);
    assert_int_equal(dsn_route("double-bounce@other.example", "mx.example"), DSN_ROUTE_SENDER);
    assert_int_equal(dsn_route("xdouble-bounce@mx.example", "mx.example"), DSN_ROUTE_SENDER);
}

/* ---------------------------------------------------------------------
 * A report, taken apart
 */
struct mem {
    const char *p;
    size_t n;
    int fail_at; /* read number that fails, or -1 */
    int reads;
};

static ssize_t mem_read(void *arg, uint64_t off, void *buf, size_t n)
{
    struct mem *m = arg;
    if (m->fail_at >= 0 && m->reads++ == m->fail_at)
        return -5;
    if (off >= m->n)
        return 0;
    size_t k = m->n - (size_t)off < n ? m->n - (size_t)off : n;
    if (k > 1000)
        k = 1000; /* short reads */
    memcpy(buf, m->p + off, k);
    return (ssize_t)k;
}

struct part {
    char hdr[1024]; /* header section of the part */
    const char *body;
    size_t body_len;
};

struct parsed {
    char top[4096]; /* top-level header section, unfolded */
    char boundary[100];
    struct part part[3];
    size_t nparts;
};

/* Every line ends in CRLF, none over 998 octets, no bare CR or LF. */
static void check_lines(const char *m, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\r') {
            assert_true(i + 1 < n && m[i + 1] == '\n');
            i++;
            col = 0;
            continue;
        }
        assert_true(m[i] != '\n');
        col++;
        assert_true(col <= 998);
    }
    assert_int_equal(col, 0);
}

static void take_apart(const char *m, size_t n, struct parsed *p)
{
    check_lines(m, n);
    const char *e = strstr(m, "\r\n\r\n");
    assert_non_null(e);
    size_t hl = (size_t)(e - m) + 2;
    assert_true(hl < sizeof p->top);
    /* unfold */
    size_t o = 0;
    for (size_t i = 0; i < hl; i++) {
        if (m[i] == '\r' && i + 2 < hl && (m[i + 2] == ' ' || m[i + 2] == '\t')) {
            i++;
            continue;
        }
        p->top[o++] = m[i];
    }
    p->top[o] = '\0';
    const char *b = strstr(p->top, "boundary=\"");
    assert_non_null(b);
    b += 10;
    const char *q = strchr(b, '"');
    assert_non_null(q);
    assert_true((size_t)(q - b) < 71 && q > b);
    memcpy(p->boundary, b, (size_t)(q - b));
    p->boundary[q - b] = '\0';

    char delim[110];
    snprintf(delim, sizeof delim, "\r\n--%s", p->boundary);
    size_t dl = strlen(delim);
    const char *pos = e + 2; /* the CRLF before the first delimiter may be the blank line's */
    p->nparts = 0;
    const char *d = strstr(pos, delim);
    assert_non_null(d);
    for (;;) {
        const char *after = d + dl;
        if (after[0] == '-' && after[1] == '-') {
            assert_string_equal(after + 2, "\r\n");
            break;
        }
        assert_true(after[0] == '\r' && after[1] == '\n');
        const char *start = after + 2;
        const char *next = strstr(start, delim);
        assert_non_null(next);
        assert_true(p->nparts < 3);
        struct part *pt = &p->part[p->nparts++];
        const char *he = strstr(start, "\r\n\r\n");
        assert_non_null(he);
        assert_true(he < next + 2);
        size_t phl = (size_t)(he - start) + 2;
        assert_true(phl < sizeof pt->hdr);
        memcpy(pt->hdr, start, phl);
        pt->hdr[phl] = '\0';
        pt->body = he + 4;
        pt->body_len = next >= pt->body ? (size_t)(next - pt->body) : 0;
        d = next;
    }
    /* the boundary nowhere else */
    char needle[110];
    snprintf(needle, sizeof needle, "--%s", p->boundary);
    size_t count = 0;
    for (const char *s = m; (s = strstr(s, needle)) != NULL; s++)
        count++;
    assert_int_equal(count, p->nparts + 1);
}

/* The value of field `name` in a block of fields (unfolded), or NULL. */
static const char *field(const char *block, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *l = block; l != NULL && *l != '\0';) {
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            size_t o = 0;
            for (; *v != '\0' && o + 1 < outlen; v++) {
                if (v[0] == '\r' && v[1] == '\n') {
                    if (v[2] != ' ' && v[2] != '\t')
                        break;
                    v++;
                    continue;
                }
                out[o++] = *v;
            }
            out[o] = '\0';
            return out;
        }
        const char *nx = strstr(l, "\r\n");
        l = nx != NULL ? nx + 2 : NULL;
    }
    return NULL;
}

static const char orig[] = "From: Alice <alice@example.org>\r\n"
                           "To: bob@example.net\r\n"
                           "Subject: hello\r\n"
                           "Message-ID: <1@example.org>\r\n"
                           "\r\n"
                           "Body line one.\r\n"
                           "Body line two.\r\n";
static const char orig_headers[] = "From: Alice <alice@example.org>\r\n"
                                   "To: bob@example.net\r\n"
                                   "Subject: hello\r\n"
                                   "Message-ID: <1@example.org>\r\n";

static void base_report(struct dsn_report *r, struct mem *m, const struct dsn_rcpt *rc, size_t n)
{
    memset(r, 0, sizeof *r);
    m->p = orig;
    m->n = sizeof orig - 1;
    m->fail_at = -1;
    m->reads = 0;
    r->hostname = "mx.example";
    r->to = "alice@example.org";
    r->unique = "00000000000000AB";
    r->queue_id = "0000000000000012";
    r->ret = SMTP_RET_NONE;
    r->arrival = 1700000000;
    r->now = 1700003600;
    r->nrcpt = n;
    r->rcpt = rc;
    r->orig_size = m->n;
    r->read = mem_read;
    r->read_arg = m;
}

static void test_compose_failed(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {
        .addr = "bob@example.net",
        .orcpt = "rfc822;Bob+2Bx@example.net",
        .action = DSN_ACTION_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.example.net",
        .diagnostic = "550 5.1.1 <bob@example.net>: Recipient address rejected",
        .last_attempt = 1700003500,
    };
    struct dsn_report r;
    struct mem m;
    base_report(&r, &m, &rc, 1);
    r.envid = "QQ+2B1";
    struct buf out;
    buf_init(&out, 1 << 20);
    unsigned flags = 99;
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    assert_int_equal(flags, 0);
    static struct parsed p;
    take_apart(out.data, out.len, &p);
    char v[512];

    /* top level */
    assert_string_equal(field(p.top, "From", v, sizeof v),
                        "\"Mail Delivery System\" <MAILER-DAEMON@mx.example>");
    assert_string_equal(field(p.top, "To", v, sizeof v), "<alice@example.org>");
    assert_string_equal(field(p.top, "Subject", v, sizeof v),
                        "Undelivered Mail Returned to Sender");
    assert_string_equal(field(p.top, "Date", v, sizeof v), "Tue, 14 Nov 2023 23:13:20 +0000");
    assert_string_equal(field(p.top, "Message-ID", v, sizeof v),
                        "<00000000000000AB.dsn@mx.example>");
    assert_string_equal(field(p.top, "Auto-Submitted", v, sizeof v), "auto-replied");
    assert_string_equal(field(p.top, "MIME-Version", v, sizeof v), "1.0");
    assert_non_null(strstr(field(p.top, "Content-Type", v, sizeof v),
                           "multipart/report; report-type=delivery-status;"));
    assert_int_equal(p.nparts, 3);

    /* part 1: explanation */
    assert_non_null(strstr(p.part[0].hdr, "Content-Type: text/plain; charset=us-ascii"));
    assert_non_null(strstr(p.part[0].body, "<bob@example.net>: failed (5.1.1)"));
    assert_non_null(strstr(p.part[0].body, "host mx.example.net said:"));
    assert_non_null(strstr(p.part[0].body, "550 5.1.1 <bob@example.net>: Recipient"));
    assert_non_null(strstr(p.part[0].body, "The header section of your message is attached"));

    /* part 2: delivery-status */
    assert_non_null(strstr(p.part[1].hdr, "Content-Type: message/delivery-status\r\n"));
    char ds[4096];
    assert_true(p.part[1].body_len < sizeof ds);
    memcpy(ds, p.part[1].body, p.part[1].body_len);
    ds[p.part[1].body_len] = '\0';
    const char *rcpt_block = strstr(ds, "\r\n\r\n");
    assert_non_null(rcpt_block);
    rcpt_block += 4;
    assert_string_equal(field(ds, "Reporting-MTA", v, sizeof v), "dns; mx.example");
    assert_string_equal(field(ds, "Original-Envelope-Id", v, sizeof v), "QQ+2B1");
    assert_string_equal(field(ds, "Arrival-Date", v, sizeof v), "Tue, 14 Nov 2023 22:13:20 +0000");
    char permsg[1024]; /* the per-message block alone */
    assert_true((size_t)(rcpt_block - ds) < sizeof permsg);
    memcpy(permsg, ds, (size_t)(rcpt_block - ds));
    permsg[rcpt_block - ds] = '\0';
    assert_null(field(permsg, "Final-Recipient", v, sizeof v));
    assert_non_null(field(permsg, "Reporting-MTA", v, sizeof v));
    assert_string_equal(field(rcpt_block, "Original-Recipient", v, sizeof v),
                        "rfc822;Bob+x@example.net");
    assert_string_equal(field(rcpt_block, "Final-Recipient", v, sizeof v),
                        "rfc822; bob@example.net");
    assert_string_equal(field(rcpt_block, "Action", v, sizeof v), "failed");
    assert_string_equal(field(rcpt_block, "Status", v, sizeof v), "5.1.1");
    assert_string_equal(field(rcpt_block, "Remote-MTA", v, sizeof v), "dns; mx.example.net");
    assert_string_equal(field(rcpt_block, "Diagnostic-Code", v, sizeof v),
                        "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected");
    assert_non_null(field(rcpt_block, "Last-Attempt-Date", v, sizeof v));
    assert_null(field(rcpt_block, "Will-Retry-Until", v, sizeof v));

    /* part 3: headers only (RET not given) */
    assert_non_null(strstr(p.part[2].hdr, "Content-Type: text/rfc822-headers\r\n"));
    assert_int_equal(p.part[2].body_len, sizeof orig_headers - 1);
    assert_memory_equal(p.part[2].body, orig_headers, sizeof orig_headers - 1);
    buf_free(&out);
}

static void test_compose_ret(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {.addr = "bob@example.net", .action = DSN_ACTION_FAILED};
    struct dsn_report r;
    struct mem m;
    struct buf out;
    unsigned flags;
    static struct parsed p;
    char v[256];

    /* RET=FULL and a failure: the whole message */
    base_report(&r, &m, &rc, 1);
    r.ret = SMTP_RET_FULL;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    assert_int_equal(flags, 0);
    take_apart(out.data, out.len, &p);
    assert_non_null(strstr(p.part[2].hdr, "Content-Type: message/rfc822\r\n"));
    assert_int_equal(p.part[2].body_len, sizeof orig - 1);
    assert_memory_equal(p.part[2].body, orig, sizeof orig - 1);
    assert_non_null(strstr(p.part[0].body, "Your message is attached"));
    /* no Status given: the action's generic code */
    assert_non_null(strstr(p.part[1].body, "Status: 5.0.0\r\n"));
    buf_free(&out);

    /* RET=HDRS: headers */
    base_report(&r, &m, &rc, 1);
    r.ret = SMTP_RET_HDRS;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    take_apart(out.data, out.len, &p);
    assert_non_null(strstr(p.part[2].hdr, "text/rfc822-headers"));
    assert_int_equal(p.part[2].body_len, sizeof orig_headers - 1);
    buf_free(&out);

    /* RET=FULL but over the cap: headers, flagged and said */
    base_report(&r, &m, &rc, 1);
    r.ret = SMTP_RET_FULL;
    r.return_max = 50;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    assert_int_equal(flags, DSN_OUT_HDRS_ONLY);
    take_apart(out.data, out.len, &p);
    assert_non_null(strstr(p.part[2].hdr, "text/rfc822-headers"));
    assert_int_equal(p.part[2].body_len, sizeof orig_headers - 1);
    assert_non_null(strstr(p.part[0].body, "too large to return in full"));
    buf_free(&out);

    /* RET=FULL in a delay report: headers only (RFC 3461 §4.3) */
    struct dsn_rcpt dl = {.addr = "bob@example.net",
                          .action = DSN_ACTION_DELAYED,
                          .status = "4.4.1",
                          .retry_until = 1700400000};
    base_report(&r, &m, &dl, 1);
    r.ret = SMTP_RET_FULL;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    take_apart(out.data, out.len, &p);
    assert_string_equal(field(p.top, "Subject", v, sizeof v), "Delayed Mail (still being retried)");
    assert_non_null(strstr(p.part[2].hdr, "text/rfc822-headers"));
    assert_non_null(strstr(p.part[1].body, "Action: delayed\r\nStatus: 4.4.1\r\n"));
    assert_non_null(strstr(p.part[1].body, "Will-Retry-Until: "));
    buf_free(&out);

    /* a message without a header section; one without a body */
    static const char nohdr[] = "\r\nbody only\r\n";
    base_report(&r, &m, &rc, 1);
    m.p = nohdr;
    m.n = r.orig_size = sizeof nohdr - 1;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    take_apart(out.data, out.len, &p);
    assert_int_equal(p.part[2].body_len, 0);
    buf_free(&out);
    static const char nobody[] = "Subject: x\r\n";
    base_report(&r, &m, &rc, 1);
    m.p = nobody;
    m.n = r.orig_size = sizeof nobody - 1;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    take_apart(out.data, out.len, &p);
    assert_int_equal(p.part[2].body_len, sizeof nobody - 1);
    buf_free(&out);
}

static void test_compose_multi_fold(void **state)
{
    (void)state;
    char longdiag[1400];
    /* two reply lines, the first long enough to fold several times */
    strcpy(longdiag, "550-5.7.1 ");
    for (int i = 0; i < 40; i++)
        strcat(longdiag, "word ");
    strcat(longdiag, "\n");
    for (int i = 0; i < 100; i++)
        strcat(longdiag, "X");
    strcat(longdiag, "\n\nlast\r\x01line");
    struct dsn_rcpt rc[3] = {
        {.addr = "a@example.net",
         .action = DSN_ACTION_FAILED,
         .status = "5.7.1",
         .remote_mta = "mx1.example.net",
         .diagnostic = longdiag},
        {.addr = "b@example.net",
         .action = DSN_ACTION_DELIVERED,
         .status = "2.0.0",
         .remote_mta = "mx2.example.net",
         .diagnostic = "250 2.0.0 Ok: queued as 1234"},
        {.addr = "c@example.net",
         .orcpt = "bad-no-semicolon",
         .action = DSN_ACTION_RELAYED,
         .status = "5.1.1"}, /* wrong class for relayed: 2.0.0 */
    };
    struct dsn_report r;
    struct mem m;
    base_report(&r, &m, rc, 3);
    struct buf out;
    buf_init(&out, 1 << 20);
    unsigned flags;
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    static struct parsed p;
    take_apart(out.data, out.len, &p);

    /* the delivery-status part: a header line block per recipient */
    char ds[8192];
    memcpy(ds, p.part[1].body, p.part[1].body_len);
    ds[p.part[1].body_len] = '\0';
    size_t groups = 0;
    for (const char *s = ds; (s = strstr(s, "\r\n\r\n")) != NULL; s += 4)
        groups++;
    assert_int_equal(groups, 3);
    assert_non_null(strstr(ds, "Final-Recipient: rfc822; a@example.net\r\nAction: failed\r\n"
                               "Status: 5.7.1\r\n"));
    assert_non_null(strstr(ds, "Final-Recipient: rfc822; b@example.net\r\nAction: delivered\r\n"
                               "Status: 2.0.0\r\n"));
    assert_non_null(strstr(ds, "Final-Recipient: rfc822; c@example.net\r\nAction: relayed\r\n"
                               "Status: 2.0.0\r\n"));
    assert_null(strstr(ds, "Original-Recipient")); /* not "type;xtext": left out */

    /* the long diagnostic: folded at 78, unfolded it is the words of the reply */
    const char *dc = strstr(ds, "Diagnostic-Code: smtp; 550-5.7.1 word");
    assert_non_null(dc);
    const char *end = dc;
    size_t lines = 0;
    for (;;) {
        const char *nl = strstr(end, "\r\n");
        assert_non_null(nl);
        size_t len = (size_t)(nl - end);
        if (lines > 0 && end[0] != ' ')
            break;
        /* a folded line holds at most 78 octets unless one word is longer */
        if (len > 78)
            assert_null(memchr(end + 1, ' ', len - 1));
        assert_true(len > 1); /* never a line of white space only */
        lines++;
        end = nl + 2;
    }
    assert_true(lines >= 4);
    char unf[2048];
    size_t o = 0;
    for (const char *s = dc; s < end; s++) {
        if (s[0] == '\r' && s[1] == '\n') {
            s++;
            continue;
        }
        unf[o++] = *s;
    }
    unf[o] = '\0';
    char want[2048];
    strcpy(want, "Diagnostic-Code: smtp; 550-5.7.1");
    for (int i = 0; i < 40; i++)
        strcat(want, " word");
    strcat(want, " ");
    for (int i = 0; i < 100; i++)
        strcat(want, "X");
    strcat(want, " last line");
    assert_string_equal(unf, want);

    /* part 1 lists each recipient */
    assert_non_null(strstr(p.part[0].body, "<a@example.net>: failed (5.7.1)"));
    assert_non_null(strstr(p.part[0].body, "<b@example.net>: delivered (2.0.0)"));
    assert_non_null(strstr(p.part[0].body, "<c@example.net>: relayed (2.0.0)"));
    buf_free(&out);
}

static void test_compose_utf8(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {.addr = "j\xc3\xb6rg@example.net",
                          .action = DSN_ACTION_FAILED,
                          .status = "5.1.1",
                          .diagnostic = "550 5.1.1 unbekannt: j\xc3\xb6rg"};
    struct dsn_report r;
    struct mem m;
    struct buf out;
    unsigned flags;
    static struct parsed p;

    base_report(&r, &m, &rc, 1);
    r.smtputf8 = true;
    r.ret = SMTP_RET_FULL;
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    assert_int_equal(flags, DSN_OUT_8BIT);
    take_apart(out.data, out.len, &p);
    assert_non_null(strstr(p.part[1].hdr, "message/global-delivery-status"));
    assert_non_null(strstr(p.part[2].hdr, "message/global\r\n"));
    assert_non_null(strstr(p.part[1].body, "Final-Recipient: utf-8; j\xc3\xb6rg@example.net"));
    assert_non_null(strstr(p.part[0].hdr, "charset=utf-8"));
    assert_non_null(strstr(p.top, "Content-Transfer-Encoding: 8bit"));
    buf_free(&out);

    /* not SMTPUTF8: 8-bit octets from the remote reply become '?' */
    struct dsn_rcpt rc2 = {
        .addr = "bob@example.net", .action = DSN_ACTION_FAILED, .diagnostic = "550 caf\xc3\xa9"};
    base_report(&r, &m, &rc2, 1);
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    assert_int_equal(flags, 0);
    assert_false(smtp_needs_8bit((const uint8_t *)out.data, out.len));
    assert_non_null(strstr(out.data, "Diagnostic-Code: smtp; 550 caf??\r\n"));
    buf_free(&out);
}

static void test_compose_boundary_clash(void **state)
{
    (void)state;
    /* the original holds the first boundary candidate */
    static const char evil[] = "Subject: x\r\n\r\n--=_tern-00000000000000AB\r\n"
                               "--=_tern-00000000000000AB--\r\n";
    struct dsn_rcpt rc = {.addr = "bob@example.net", .action = DSN_ACTION_FAILED};
    struct dsn_report r;
    struct mem m;
    base_report(&r, &m, &rc, 1);
    m.p = evil;
    m.n = r.orig_size = sizeof evil - 1;
    r.ret = SMTP_RET_FULL;
    struct buf out;
    buf_init(&out, 1 << 20);
    unsigned flags;
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    static struct parsed p;
    take_apart(out.data, out.len, &p); /* counts the boundary: only the delimiters */
    assert_string_not_equal(p.boundary, "=_tern-00000000000000AB");
    assert_int_equal(p.part[2].body_len, sizeof evil - 1);
    buf_free(&out);

    /* and a remote reply that holds it */
    struct dsn_rcpt rc2 = {.addr = "bob@example.net",
                           .action = DSN_ACTION_FAILED,
                           .diagnostic = "550 --=_tern-00000000000000AB"};
    base_report(&r, &m, &rc2, 1);
    buf_init(&out, 1 << 20);
    assert_int_equal(dsn_compose(&r, &out, &flags), 0);
    take_apart(out.data, out.len, &p);
    assert_string_not_equal(p.boundary, "=_tern-00000000000000AB");
    buf_free(&out);
}

static void test_compose_errors(void **state)
{
    (void)state;
    struct dsn_rcpt rc = {.addr = "bob@example.net", .action = DSN_ACTION_FAILED};
    struct dsn_report r;
    struct mem m;
    struct buf out;
    unsigned flags;
    buf_init(&out, 1 << 20);
    buf_puts(&out, "keep");

    base_report(&r, &m, &rc, 1);
    r.to = ""; /* never to the null sender */
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    base_report(&r, &m, &rc, 0);
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    base_report(&r, &m, &rc, 1);
    r.to = "a@b\r\nBcc: x@y";
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    base_report(&r, &m, &rc, 1);
    r.hostname = "mx example";
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    base_report(&r, &m, &rc, 1);
    r.unique = "a/b";
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    base_report(&r, &m, &rc, 1);
    r.envid = "a b";
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    struct dsn_rcpt bad = {.addr = "a\n@b", .action = DSN_ACTION_FAILED};
    base_report(&r, &m, &bad, 1);
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);

    /* read errors and a short original, at every read */
    for (int k = 0; k < 2; k++) { /* the scan, then the copy */
        base_report(&r, &m, &rc, 1);
        r.ret = SMTP_RET_FULL;
        m.fail_at = k;
        assert_int_equal(dsn_compose(&r, &out, &flags), -1);
    }
    base_report(&r, &m, &rc, 1);
    r.orig_size += 10;
    r.ret = SMTP_RET_FULL;
    assert_int_equal(dsn_compose(&r, &out, &flags), -1);

    /* out too small */
    struct buf small;
    buf_init(&small, 200);
    base_report(&r, &m, &rc, 1);
    assert_int_equal(dsn_compose(&r, &small, &flags), -1);
    assert_int_equal(small.len, 0);
    buf_free(&small);

    assert_string_equal(out.data, "keep");
    assert_int_equal(out.len, 4);
    buf_free(&out);
}

/* ---------------------------------------------------------------------
 * 8BITMIME downgrade
 */

/* Decode quoted-printable (RFC 2045 §6.7) strictly enough for the test. */
static size_t qp_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=') {
            if (i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
                i += 2;
                continue;
            }
            assert_true(i + 2 < n);
            unsigned v;
            char hx[3] = {in[i + 1], in[i + 2], 0};
            assert_true(sscanf(hx, "%2X", &v) == 1);
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* Feed msg in chunks of `step` (0: whole), return the result and the output. */
static enum smtp_8to7_result convert(const char *msg, size_t n, size_t step, struct buf *out)
{
    struct smtp_8to7 c;
    smtp_8to7_init(&c);
    enum smtp_8to7_result res = SMTP_8TO7_OK;
    for (size_t i = 0; i < n && res == SMTP_8TO7_OK;) {
        size_t k = step == 0 || step > n - i ? n - i : step;
        res = smtp_8to7_feed(&c, (const uint8_t *)msg + i, k, out);
        i += k;
    }
    if (res == SMTP_8TO7_OK)
        res = smtp_8to7_finish(&c, out);
    assert_true(res != SMTP_8TO7_OK || c.in == n);
    assert_true(res != SMTP_8TO7_OK || c.out == out->len);
    smtp_8to7_free(&c);
    return res;
}

static void check_roundtrip(const char *msg, size_t n, const char *want_hdr)
{
    size_t steps[] = {0, 1, 2, 3, 7, 64};
    char first[65536];
    size_t first_len = 0;
    for (size_t s = 0; s < N(steps); s++) {
        struct buf out;
        buf_init(&out, 1 << 20);
        assert_int_equal(convert(msg, n, steps[s], &out), SMTP_8TO7_OK);
        assert_false(smtp_needs_8bit((const uint8_t *)out.data, out.len));
        check_lines(out.data, out.len);
        if (s == 0) {
            assert_true(out.len < sizeof first);
            memcpy(first, out.data, out.len);
            first_len = out.len;
        } else {
            assert_int_equal(out.len, first_len);
            assert_memory_equal(out.data, first, first_len);
        }
        buf_free(&out);
    }
    /* the header section as expected, the body decodes back to the original's */
    const char *he = strstr(first, "\r\n\r\n");
    assert_non_null(he);
    size_t hl = (size_t)(he - first) + 4;
    assert_int_equal(hl, strlen(want_hdr));
    assert_memory_equal(first, want_hdr, hl);
    /* lines of at most 76 octets; no white space before a line end */
    for (const char *l = first + hl; l < first + first_len;) {
        const char *e = strstr(l, "\r\n");
        assert_non_null(e);
        assert_true(e - l <= SMTP_QP_LINE_MAX);
        if (e > l)
            assert_true(e[-1] != ' ' && e[-1] != '\t');
        l = e + 2;
    }
    const char *ob = strstr(msg, "\r\n\r\n");
    size_t obo = n >= 2 && msg[0] == '\r' && msg[1] == '\n' ? 2
                 : ob != NULL                               ? (size_t)(ob - msg) + 4
                                                            : 0;
    char dec[65536];
    size_t dl = qp_decode(first + hl, first_len - hl, dec);
    assert_int_equal(dl, n - obo);
    assert_memory_equal(dec, msg + obo, dl);
}

static void test_8to7(void **state)
{
    (void)state;
    assert_false(smtp_needs_8bit((const uint8_t *)"abc\r\n", 5));
    assert_true(smtp_needs_8bit((const uint8_t *)"ab\x80", 3));
    assert_false(smtp_needs_8bit(NULL, 0));

    /* plain message, no MIME fields: all three are added */
    static const char m1[] = "Subject: caf\r\n"
                             "\r\n"
                             "Caf\xc3\xa9 = cr\xc3\xa8me \r\n"
                             "tab\tat end\t\r\n"
                             "\r\n"
                             "last line without CRLF \xff";
    check_roundtrip(m1, sizeof m1 - 1,
                    "Subject: caf\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=unknown-8bit\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");

    /* MIME single part: CTE 8bit replaced (also folded), others kept */
    static const char m2[] = "MIME-Version: 1.0\r\n"
                             "Content-Transfer-Encoding:\r\n 8bit\r\n"
                             "Content-Type: text/plain;\r\n\tcharset=utf-8\r\n"
                             "X-Other: y\r\n"
                             "\r\n"
                             "\xc3\xa9t\xc3\xa9\r\n";
    check_roundtrip(m2, sizeof m2 - 1,
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain;\r\n\tcharset=utf-8\r\n"
                    "X-Other: y\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");

    /* long lines, bare CR and LF, '=' and a line of only spaces */
    char m3[4096];
    size_t n = 0;
    n += (size_t)sprintf(m3, "Content-Type: text/plain; charset=latin1\r\n\r\n");
    for (int i = 0; i < 300; i++)
        m3[n++] = (char)(i % 3 == 0 ? 0xe9 : i % 7 == 0 ? '=' : 'a');
    static const char tail[] = "\r\n   \r\nx\ry\nz\r\r\n.\r\n \r\n";
    memcpy(m3 + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;
    check_roundtrip(m3, n,
                    "Content-Type: text/plain; charset=latin1\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");

    /* empty header section; header section only */
    static const char m4[] = "\r\n\xe9\r\n";
    check_roundtrip(m4, sizeof m4 - 1,
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=unknown-8bit\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    struct buf out;
    buf_init(&out, 1 << 20);
    assert_int_equal(convert("Subject: x\r\n", 12, 0, &out), SMTP_8TO7_OK);
    assert_string_equal(out.data, "Subject: x\r\n");
    buf_free(&out);

    /* what cannot be converted */
    const char *cannot[] = {
        "Subject: caf\xc3\xa9\r\n\r\nbody\xe9\r\n",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\xe9\r\n--x--\r\n",
        "Content-Type: (comment) Multipart/alternative; boundary=x\r\n\r\n\xe9\r\n",
        "Content-Type: message/rfc822\r\n\r\nSubject: \xe9\r\n\r\n",
        "Content-Transfer-Encoding: base64\r\n\r\n\xe9\r\n",
        "Content-Transfer-Encoding: binary\r\n\r\n\xe9\r\n",
        "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n\xe9\r\n",
        "not a field\r\n\r\n\xe9\r\n",
        " continuation first\r\n\r\n\xe9\r\n",
        "Subject: \xe9\r\n", /* header section only, 8-bit */
    };
    for (size_t i = 0; i < N(cannot); i++) {
        for (size_t step = 0; step < 3; step++) {
            buf_init(&out, 1 << 20);
            enum smtp_8to7_result res = convert(cannot[i], strlen(cannot[i]), step, &out);
            if (res != SMTP_8TO7_CANNOT)
                fail_msg("cannot[%zu] step %zu: %d", i, step, res);
            buf_free(&out);
        }
    }

    /* a header section over the limit */
    size_t big = SMTP_8TO7_HEADER_MAX + 100;
    char *h = malloc(big);
    assert_non_null(h);
    for (size_t i = 0; i < big; i += 10)
        memcpy(h + i, "X-A: yyy\r\n", i + 10 <= big ? 10 : big - i);
    buf_init(&out, 1 << 20);
    assert_int_equal(convert(h, big, 0, &out), SMTP_8TO7_CANNOT);
    buf_free(&out);
    free(h);

    /* out too small: FULL, and it stays so */
    struct smtp_8to7 c;
    smtp_8to7_init(&c);
    buf_init(&out, 20);
    assert_int_equal(smtp_8to7_feed(&c, (const uint8_t *)m1, sizeof m1 - 1, &out), SMTP_8TO7_FULL);
    assert_int_equal(smtp_8to7_feed(&c, (const uint8_t *)"x", 1, &out), SMTP_8TO7_FULL);
    assert_int_equal(smtp_8to7_finish(&c, &out), SMTP_8TO7_FULL);
    smtp_8to7_free(&c);
    smtp_8to7_free(&c);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_should_report),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_compose_failed),
        cmocka_unit_test(test_compose_ret),
        cmocka_unit_test(test_compose_multi_fold),
        cmocka_unit_test(test_compose_utf8),
        cmocka_unit_test(test_compose_boundary_clash),
        cmocka_unit_test(test_compose_errors),
        cmocka_unit_test(test_8to7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
