/*
 * test_sasl - unit tests of the SASL mechanisms, each run end to end with the
 * client side computed here: PLAIN (authzid rules, malformed messages), LOGIN
 * (with and without an initial response), CRAM-MD5 (challenge form, HMAC-MD5
 * response, users without a secret), SCRAM-SHA-256 (ClientProof computed with
 * OpenSSL from the server's nonce and salt, ServerSignature checked, gs2
 * headers, channel binding, nonce and proof errors, stable fake salts for
 * unknown users), plus wrong passwords, unknown users, network restrictions,
 * strict base64, cancellation, overlong lines and calls out of order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "auth/sasl.h"
#include "auth/userdb.h"

#define OUTMAX SASL_MAX_CHALLENGE

/* alice: every mechanism; bob: PLAIN/LOGIN/SCRAM from 192.0.2.0/24 only;
   carol: PLAIN/LOGIN only. Passwords: alice "secret", bob "bobpw", carol
   "carolpw". */
static struct userdb *db;

static const struct sockaddr *addr_of(const char *ip)
{
    static struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (!ip)
        return NULL;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
            return NULL;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
            return NULL;
    }
    return (const struct sockaddr *)&ss;
}

static char *hash6(const char *pw)
{
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_rn(pw, "$6$rounds=1000$testsalt$", &cd, sizeof cd);
    return h ? strdup(h) : NULL;
}

static char *scram_of(const char *pw)
{
    static const uint8_t salt[16] = "0123456789abcdef";
    struct userdb_scram sc;
    if (!userdb_scram_make(pw, strlen(pw), 4096, salt, sizeof salt, &sc))
        return NULL;
    return userdb_scram_format(&sc);
}

static int setup(void **state)
{
    (void)state;
    char *ha = hash6("secret"), *hb = hash6("bobpw"), *hc = hash6("carolpw");
    char *sa = scram_of("secret"), *sb = scram_of("bobpw");
    char text[4096];
    snprintf(text, sizeof text,
             "Alice@Example.test:%s:scram-sha-256=%s;cram-md5=tanstaaftanstaaf\n"
             "bob@example.test:%s:scram-sha-256=%s;networks=192.0.2.0/24\n"
             "carol@example.test:%s\n",
             ha, sa, hb, sb, hc);
    struct config_diags d = {0};
    db = userdb_parse(text, strlen(text), "t.users", &d);
    for (size_t i = 0; i < d.n; i++)
        print_message("# %s:%u: %s\n", d.v[i].file, d.v[i].line, d.v[i].msg);
    config_diags_free(&d);
    free(ha);
    free(hb);
    free(hc);
    free(sa);
    free(sb);
    return db ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    userdb_free(db);
    return 0;
}

static char *enc(const void *data, size_t n)
{
    size_t max = (n + 2) / 3 * 4 + 1;
    char *s = malloc(max);
    s[0] = '\0';
    if (n)
        assert_int_not_equal(sasl_b64_encode(data, n, s, max), 0);
    return s;
}

/* Decode a challenge into a NUL-terminated string (static). */
static const char *dec(const char *b64)
{
    static char buf[OUTMAX];
    size_t n = 0;
    assert_int_equal(sasl_b64_decode(b64, strlen(b64), (uint8_t *)buf, sizeof buf - 1, &n), 0);
    buf[n] = '\0';
    return buf;
}

/* The outcome after SASL_CHECK_PASSWORD. */
static enum sasl_status check(struct sasl_session *s, enum sasl_status st)
{
    if (st != SASL_CHECK_PASSWORD)
        return st;
    sasl_check_password(s);
    return sasl_finish(s);
}

/* ---------------------------------------------------------------------
 * PLAIN
 */

static enum sasl_status plain(const void *msg, size_t n, const char *client, bool initial)
{
    char out[OUTMAX];
    struct sasl_session *s = sasl_new(SASL_PLAIN, "mail.example.test", addr_of(client));
    char *b = enc(msg, n);
    enum sasl_status st;
    if (initial) {
        st = sasl_start(s, db, n ? b : "=", n ? strlen(b) : 1, out, sizeof out);
    } else {
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        assert_string_equal(out, "");
        st = sasl_step(s, db, b, strlen(b), out, sizeof out);
    }
    st = check(s, st);
    free(b);
    sasl_free(s);
    return st;
}

static void test_plain(void **state)
{
    (void)state;
#define M(s) s, sizeof s - 1
    static const struct {
        const char *msg;
        size_t len;
        const char *client;
        enum sasl_status want;
    } cases[] = {
        {M("\0alice@example.test\0secret"), "127.0.0.1", SASL_SUCCESS},
        {M("\0ALICE@Example.Test\0secret"), "127.0.0.1", SASL_SUCCESS},
        {M("alice@example.test\0alice@example.test\0secret"), "127.0.0.1", SASL_SUCCESS},
        {M("Alice@example.test\0alice@example.test\0secret"), "127.0.0.1", SASL_SUCCESS},
        {M("\0alice@example.test\0wrong"), "127.0.0.1", SASL_FAILED},
        {M("\0alice@example.test\0secret "), "127.0.0.1", SASL_FAILED},
        {M("bob@example.test\0alice@example.test\0secret"), "127.0.0.1", SASL_FAILED},
        {M("\0nobody@example.test\0secret"), "127.0.0.1", SASL_FAILED},
        {M("\0alice\0secret"), "127.0.0.1", SASL_FAILED},
        {M("\0carol@example.test\0carolpw"), NULL, SASL_SUCCESS},
        {M("\0bob@example.test\0bobpw"), "192.0.2.9", SASL_SUCCESS},
        {M("\0bob@example.test\0bobpw"), "::ffff:192.0.2.9", SASL_SUCCESS},
        {M("\0bob@example.test\0bobpw"), "198.51.100.1", SASL_FAILED},
        {M("\0bob@example.test\0bobpw"), "::1", SASL_FAILED},
        {M("\0bob@example.test\0bobpw"), NULL, SASL_FAILED},
        /* malformed */
        {M(""), "127.0.0.1", SASL_MALFORMED},
        {M("alice@example.test"), "127.0.0.1", SASL_MALFORMED},
        {M("\0alice@example.test"), "127.0.0.1", SASL_MALFORMED},
        {M("\0alice@example.test\0"), "127.0.0.1", SASL_MALFORMED},
        {M("\0\0secret"), "127.0.0.1", SASL_MALFORMED},
        {M("\0alice@example.test\0secret\0"), "127.0.0.1", SASL_MALFORMED},
        {M("\0alice@example.test\0sec\0ret"), "127.0.0.1", SASL_MALFORMED},
    };
#undef M
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int initial = 0; initial < 2; initial++) {
            enum sasl_status st = plain(cases[i].msg, cases[i].len, cases[i].client, initial);
            if (st != cases[i].want)
                print_message("# case %zu initial %d: got %d\n", i, initial, (int)st);
            assert_int_equal(st, cases[i].want);
        }
    }
}

static void test_plain_login_and_order(void **state)
{
    (void)state;
    char out[OUTMAX];
    static const char msg[] = "\0ALICE@example.test\0secret";
    char *b = enc(msg, sizeof msg - 1);
    struct sasl_session *s = sasl_new(SASL_PLAIN, NULL, NULL);
    assert_null(sasl_login(s));
    assert_int_equal(sasl_session_mech(s), SASL_PLAIN);
    assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_CHECK_PASSWORD);
    assert_string_equal(sasl_login(s), "alice@example.test");
    /* a step while the check is due fails */
    assert_int_equal(sasl_finish(s), SASL_FAILED);
    assert_int_equal(sasl_step(s, db, b, strlen(b), out, sizeof out), SASL_FAILED);
    sasl_free(s);

    /* finishing twice, starting twice */
    s = sasl_new(SASL_PLAIN, NULL, NULL);
    assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_CHECK_PASSWORD);
    sasl_check_password(s);
    sasl_check_password(s); /* no effect */
    assert_int_equal(sasl_finish(s), SASL_SUCCESS);
    assert_int_equal(sasl_finish(s), SASL_FAILED);
    assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_FAILED);
    sasl_free(s);
    free(b);
    sasl_free(NULL);
}

/* Bad base64, "*", overlong lines, for every mechanism and step. */
static void test_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zm9v YmFy", "Zm9vYmFy\n",   "Zm9",  "Zm9=v",    "Zg=",  "Zh==",
        "Zm9vYh==",  "Zm9vYmE=Zm9v", "====", "Zm9vYmF-", "ab=c", "a===",
    };
    char out[OUTMAX];
    for (int m = 0; m < SASL_NMECH; m++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            struct sasl_session *s = sasl_new((enum sasl_mech)m, "mx.example.test", NULL);
            assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
            enum sasl_status st = sasl_step(s, db, bad[i], strlen(bad[i]), out, sizeof out);
            if (st != SASL_MALFORMED)
                print_message("# mech %d, \"%s\": %d\n", m, bad[i], (int)st);
            assert_int_equal(st, SASL_MALFORMED);
            /* the session is over */
            assert_int_equal(sasl_step(s, db, "", 0, out, sizeof out), SASL_FAILED);
            sasl_free(s);
            if (m == SASL_CRAM_MD5)
                continue;
            s = sasl_new((enum sasl_mech)m, "mx.example.test", NULL);
            assert_int_equal(sasl_start(s, db, bad[i], strlen(bad[i]), out, sizeof out),
                             SASL_MALFORMED);
            sasl_free(s);
        }
        /* cancel, at the start and at the first step */
        struct sasl_session *s = sasl_new((enum sasl_mech)m, NULL, NULL);
        assert_int_equal(sasl_start(s, db, "*", 1, out, sizeof out), SASL_CANCELLED);
        sasl_free(s);
        s = sasl_new((enum sasl_mech)m, NULL, NULL);
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        assert_int_equal(sasl_step(s, db, "*", 1, out, sizeof out), SASL_CANCELLED);
        sasl_free(s);
        /* overlong: valid base64, one quantum too long */
        size_t n = SASL_MAX_LINE + 4;
        char *big = malloc(n);
        memset(big, 'A', n);
        s = sasl_new((enum sasl_mech)m, NULL, NULL);
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        assert_int_equal(sasl_step(s, db, big, n, out, sizeof out), SASL_MALFORMED);
        sasl_free(s);
        /* at the limit it is decoded (and then fails as the mechanism sees fit) */
        s = sasl_new((enum sasl_mech)m, NULL, NULL);
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        enum sasl_status st = check(s, sasl_step(s, db, big, SASL_MAX_LINE, out, sizeof out));
        assert_true(st == SASL_MALFORMED || st == SASL_FAILED || st == SASL_CONTINUE);
        sasl_free(s);
        free(big);
    }
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *plain, *b64;
    } cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        uint8_t raw[32];
        size_t n = sasl_b64_encode((const uint8_t *)cases[i].plain, strlen(cases[i].plain), out,
                                   sizeof out);
        assert_int_equal(n, strlen(cases[i].b64));
        assert_string_equal(out, cases[i].b64);
        assert_int_equal(sasl_b64_decode(cases[i].b64, strlen(cases[i].b64), raw, sizeof raw, &n),
                         0);
        assert_int_equal(n, strlen(cases[i].plain));
        assert_memory_equal(raw, cases[i].plain, n);
    }
    uint8_t raw[4];
    size_t n;
    /* too small an output */
    assert_int_equal(sasl_b64_decode("Zm9vYg==", 8, raw, 3, &n), -1);
    assert_int_equal(sasl_b64_decode("Zm9vYg==", 8, raw, 4, &n), 0);
    char small[9];
    assert_int_equal(sasl_b64_encode((const uint8_t *)"foobar", 6, small, 8), 0);
    assert_int_equal(sasl_b64_encode((const uint8_t *)"foobar", 6, small, 9), 8);
    /* every octet value round trips */
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char big[400];
    assert_int_equal(sasl_b64_encode(all, 256, big, sizeof big), 344);
    assert_int_equal(sasl_b64_decode(big, 344, back, sizeof back, &n), 0);
    assert_int_equal(n, 256);
    assert_memory_equal(all, back, 256);
}

static void test_mech_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool ok;
        enum sasl_mech m;
    } cases[] = {
        {"PLAIN", true, SASL_PLAIN},
        {"plain", true, SASL_PLAIN},
        {"LOGIN", true, SASL_LOGIN},
        {"Cram-Md5", true, SASL_CRAM_MD5},
        {"SCRAM-SHA-256", true, SASL_SCRAM_SHA_256},
        {"SCRAM-SHA-256-PLUS", false, SASL_PLAIN},
        {"SCRAM-SHA-1", false, SASL_PLAIN},
        {"PLAI", false, SASL_PLAIN},
        {"", false, SASL_PLAIN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum sasl_mech m = SASL_PLAIN;
        assert_int_equal(sasl_mech_parse(cases[i].name, strlen(cases[i].name), &m), cases[i].ok);
        if (cases[i].ok) {
            assert_int_equal(m, cases[i].m);
            assert_true(strcasecmp(sasl_mech_name(m), cases[i].name) == 0);
        }
    }
    assert_false(sasl_mech_parse(NULL, 0, NULL));
}

/* ---------------------------------------------------------------------
 * LOGIN
 */

static enum sasl_status login(const char *user, const char *pw, const char *client, bool initial)
{
    char out[OUTMAX];
    struct sasl_session *s = sasl_new(SASL_LOGIN, "mx.example.test", addr_of(client));
    char *u = enc(user, strlen(user)), *p = enc(pw, strlen(pw));
    enum sasl_status st;
    if (initial) {
        st = sasl_start(s, db, *u ? u : "=", *u ? strlen(u) : 1, out, sizeof out);
    } else {
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        assert_string_equal(out, "VXNlcm5hbWU6");
        st = sasl_step(s, db, u, strlen(u), out, sizeof out);
    }
    assert_int_equal(st, SASL_CONTINUE);
    assert_string_equal(out, "UGFzc3dvcmQ6");
    st = check(s, sasl_step(s, db, p, strlen(p), out, sizeof out));
    free(u);
    free(p);
    sasl_free(s);
    return st;
}

static void test_login(void **state)
{
    (void)state;
    static const struct {
        const char *user, *pw, *client;
        enum sasl_status want;
    } cases[] = {
        {"alice@example.test", "secret", "127.0.0.1", SASL_SUCCESS},
        {"ALICE@EXAMPLE.TEST", "secret", "127.0.0.1", SASL_SUCCESS},
        {"alice@example.test", "Secret", "127.0.0.1", SASL_FAILED},
        {"alice@example.test", "", "127.0.0.1", SASL_FAILED},
        {"nobody@example.test", "secret", "127.0.0.1", SASL_FAILED},
        {"", "secret", "127.0.0.1", SASL_FAILED},
        {"carol@example.test", "carolpw", "::1", SASL_SUCCESS},
        {"bob@example.test", "bobpw", "192.0.2.200", SASL_SUCCESS},
        {"bob@example.test", "bobpw", "192.0.3.1", SASL_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int initial = 0; initial < 2; initial++) {
            enum sasl_status st = login(cases[i].user, cases[i].pw, cases[i].client, initial);
            if (st != cases[i].want)
                print_message("# case %zu initial %d: got %d\n", i, initial, (int)st);
            assert_int_equal(st, cases[i].want);
        }
    }
    /* cancel at the password */
    char out[OUTMAX];
    struct sasl_session *s = sasl_new(SASL_LOGIN, NULL, NULL);
    assert_int_equal(sasl_start(s, db, "YWxpY2VAZXhhbXBsZS50ZXN0", 24, out, sizeof out),
                     SASL_CONTINUE);
    assert_string_equal(sasl_login(s), "alice@example.test");
    assert_int_equal(sasl_step(s, db, "*", 1, out, sizeof out), SASL_CANCELLED);
    sasl_free(s);
}

/* ---------------------------------------------------------------------
 * CRAM-MD5
 */

/* "user hexdigest" for challenge with key, base64. */
static char *cram_answer(const char *user, const char *key, const char *chal, bool upper)
{
    uint8_t mac[16];
    unsigned len = 0;
    HMAC(EVP_md5(), key, (int)strlen(key), (const uint8_t *)chal, strlen(chal), mac, &len);
    char line[512];
    int n = snprintf(line, sizeof line, "%s ", user);
    for (int i = 0; i < 16; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, upper ? "%02X" : "%02x", mac[i]);
    return enc(line, (size_t)n);
}

static void test_cram_vector(void **state)
{
    (void)state;
    /* RFC 2195 §2: the client side computed here is right */
    char *a =
        cram_answer("tim", "tanstaaftanstaaf", "<1896.697170952@postoffice.reston.mci.net>", false);
    assert_string_equal(dec(a), "tim b913a602c7eda7a495b4e6e7334d3890");
    free(a);
}

static void test_cram(void **state)
{
    (void)state;
    static const struct {
        const char *user, *key, *client;
        bool upper;
        enum sasl_status want;
    } cases[] = {
        {"alice@example.test", "tanstaaftanstaaf", "127.0.0.1", false, SASL_SUCCESS},
        {"Alice@Example.Test", "tanstaaftanstaaf", "127.0.0.1", true, SASL_SUCCESS},
        {"alice@example.test", "tanstaaftanstaaF", "127.0.0.1", false, SASL_FAILED},
        {"carol@example.test", "carolpw", "127.0.0.1", false, SASL_FAILED}, /* no secret */
        {"carol@example.test", "no one's secret", "127.0.0.1", false, SASL_FAILED},
        {"nobody@example.test", "tanstaaftanstaaf", "127.0.0.1", false, SASL_FAILED},
        {"bob@example.test", "bobpw", "192.0.2.1", false, SASL_FAILED},
    };
    char out[OUTMAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sasl_session *s =
            sasl_new(SASL_CRAM_MD5, "mail.example.test", addr_of(cases[i].client));
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        char chal[OUTMAX];
        snprintf(chal, sizeof chal, "%s", dec(out));
        unsigned long long r;
        long long t;
        char host[64];
        assert_int_equal(sscanf(chal, "<%llu.%lld@%63[^>]>", &r, &t, host), 3);
        assert_string_equal(host, "mail.example.test");
        assert_int_equal(chal[strlen(chal) - 1], '>');
        char *a = cram_answer(cases[i].user, cases[i].key, chal, cases[i].upper);
        enum sasl_status st = sasl_step(s, db, a, strlen(a), out, sizeof out);
        if (st != cases[i].want)
            print_message("# case %zu: got %d\n", i, (int)st);
        assert_int_equal(st, cases[i].want);
        free(a);
        sasl_free(s);
    }
    /* two challenges differ */
    char c1[OUTMAX], c2[OUTMAX];
    struct sasl_session *s1 = sasl_new(SASL_CRAM_MD5, "h.test", NULL);
    struct sasl_session *s2 = sasl_new(SASL_CRAM_MD5, "h.test", NULL);
    sasl_start(s1, db, NULL, 0, c1, sizeof c1);
    sasl_start(s2, db, NULL, 0, c2, sizeof c2);
    assert_string_not_equal(c1, c2);
    sasl_free(s1);
    sasl_free(s2);
    /* malformed responses */
    static const char *const bad[] = {
        "alice@example.test",
        "alice@example.test b913a602c7eda7a495b4e6e7334d389",
        "alice@example.test b913a602c7eda7a495b4e6e7334d389g",
        "alice@example.testb913a602c7eda7a495b4e6e7334d38900",
        " b913a602c7eda7a495b4e6e7334d3890",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sasl_session *s = sasl_new(SASL_CRAM_MD5, "h.test", NULL);
        sasl_start(s, db, NULL, 0, out, sizeof out);
        char *a = enc(bad[i], strlen(bad[i]));
        enum sasl_status st = sasl_step(s, db, a, strlen(a), out, sizeof out);
        if (st != SASL_MALFORMED && st != SASL_FAILED)
            print_message("# bad %zu: got %d\n", i, (int)st);
        assert_true(st == SASL_MALFORMED || (i == 4 && st == SASL_FAILED));
        free(a);
        sasl_free(s);
    }
    /* no initial response with CRAM-MD5 */
    struct sasl_session *s = sasl_new(SASL_CRAM_MD5, "h.test", NULL);
    assert_int_equal(sasl_start(s, db, "=", 1, out, sizeof out), SASL_MALFORMED);
    sasl_free(s);
}

/* ---------------------------------------------------------------------
 * SCRAM-SHA-256
 */

/* How the client side of one test exchange behaves. */
struct scram_case {
    const char *gs2;        /* gs2 header the client sends */
    const char *user;       /* n= value (already saslname-encoded) */
    const char *pw;         /* password the client uses */
    const char *client;     /* client address */
    const char *cb;         /* c= value; NULL: base64 of gs2 */
    bool bad_nonce;         /* change the last character of the nonce */
    bool flip_proof;        /* flip a bit of the proof */
    const char *ext;        /* extensions after the client nonce, or NULL */
    enum sasl_status first; /* after client-first (CONTINUE to go on) */
    enum sasl_status final; /* after client-final (CONTINUE: v= expected) */
};

static void attr(const char *msg, const char *name, char *out, size_t max)
{
    const char *p = strstr(msg, name);
    assert_non_null(p);
    p += strlen(name);
    size_t n = strcspn(p, ",");
    assert_true(n < max);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void run_scram(const struct scram_case *c, bool initial, char *salt_seen, size_t saltmax)
{
    char out[OUTMAX];
    struct sasl_session *s = sasl_new(SASL_SCRAM_SHA_256, "mx.example.test", addr_of(c->client));
    char first[512];
    snprintf(first, sizeof first, "%sn=%s,r=fyko+d2lbbFgONRv9qkxdawL%s", c->gs2, c->user,
             c->ext ? c->ext : "");
    char *b = enc(first, strlen(first));
    enum sasl_status st;
    if (initial) {
        st = sasl_start(s, db, b, strlen(b), out, sizeof out);
    } else {
        assert_int_equal(sasl_start(s, db, NULL, 0, out, sizeof out), SASL_CONTINUE);
        assert_string_equal(out, "");
        st = sasl_step(s, db, b, strlen(b), out, sizeof out);
    }
    free(b);
    assert_int_equal(st, c->first);
    if (st != SASL_CONTINUE) {
        sasl_free(s);
        return;
    }
    char sfirst[OUTMAX], nonce[256], salt64[128], iters[16];
    snprintf(sfirst, sizeof sfirst, "%s", dec(out));
    attr(sfirst, "r=", nonce, sizeof nonce);
    attr(sfirst, "s=", salt64, sizeof salt64);
    attr(sfirst, "i=", iters, sizeof iters);
    assert_memory_equal(nonce, "fyko+d2lbbFgONRv9qkxdawL", 24);
    assert_true(strlen(nonce) > 24 + 16);
    if (salt_seen)
        snprintf(salt_seen, saltmax, "%s", salt64);
    uint8_t salt[64];
    size_t sl;
    assert_int_equal(sasl_b64_decode(salt64, strlen(salt64), salt, sizeof salt, &sl), 0);
    int iter = atoi(iters);
    assert_true(iter >= 4096);

    /* client-final */
    if (c->bad_nonce)
        nonce[strlen(nonce) - 1] ^= 1;
    char *cb = c->cb ? strdup(c->cb) : enc(c->gs2, strlen(c->gs2));
    char without[600];
    snprintf(without, sizeof without, "c=%s,r=%s", cb, nonce);
    free(cb);
    const char *bare = first + strlen(c->gs2);
    char auth[2048];
    snprintf(auth, sizeof auth, "%s,%s,%s", bare, sfirst, without);
    uint8_t salted[32], ckey[32], skey[32], stored[32], sig[32], proof[32], ssig[32];
    unsigned len;
    PKCS5_PBKDF2_HMAC(c->pw, (int)strlen(c->pw), salt, (int)sl, iter, EVP_sha256(), 32, salted);
    HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, ckey, &len);
    HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Server Key", 10, skey, &len);
    SHA256(ckey, 32, stored);
    HMAC(EVP_sha256(), stored, 32, (const uint8_t *)auth, strlen(auth), sig, &len);
    for (int i = 0; i < 32; i++)
        proof[i] = ckey[i] ^ sig[i];
    if (c->flip_proof)
        proof[7] ^= 0x10;
    HMAC(EVP_sha256(), skey, 32, (const uint8_t *)auth, strlen(auth), ssig, &len);
    char *p64 = enc(proof, 32);
    char final[800];
    snprintf(final, sizeof final, "%s,p=%s", without, p64);
    free(p64);
    b = enc(final, strlen(final));
    st = sasl_step(s, db, b, strlen(b), out, sizeof out);
    free(b);
    if (st != c->final)
        print_message("# %s%s: final %d\n", c->gs2, c->user, (int)st);
    assert_int_equal(st, c->final);
    if (st == SASL_CONTINUE) {
        char *v = enc(ssig, 32);
        char want[64];
        snprintf(want, sizeof want, "v=%s", v);
        free(v);
        assert_string_equal(dec(out), want);
        assert_int_equal(sasl_step(s, db, "", 0, out, sizeof out), SASL_SUCCESS);
        char lower[128];
        snprintf(lower, sizeof lower, "%s", c->user);
        for (char *q = lower; *q; q++)
            *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
        assert_string_equal(sasl_login(s), lower);
    }
    sasl_free(s);
}

static void test_scram(void **state)
{
    (void)state;
    enum sasl_status C = SASL_CONTINUE, F = SASL_FAILED, M = SASL_MALFORMED;
    const struct scram_case cases[] = {
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, C, C},
        {"y,,", "Alice@Example.Test", "secret", "127.0.0.1", NULL, false, false, NULL, C, C},
        {"n,a=alice@example.test,", "alice@example.test", "secret", "::1", NULL, false, false, NULL,
         C, C},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, ",x=ext", C, C},
        {"n,,", "bob@example.test", "bobpw", "192.0.2.3", NULL, false, false, NULL, C, C},
        /* failures */
        {"n,,", "alice@example.test", "wrong", "127.0.0.1", NULL, false, false, NULL, C, F},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, true, NULL, C, F},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, true, false, NULL, C, F},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", "eSws", false, false, NULL, C, F},
        {"n,a=bob@example.test,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false,
         NULL, C, F},
        {"n,,", "nobody@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, C, F},
        {"n,,", "carol@example.test", "carolpw", "127.0.0.1", NULL, false, false, NULL, C, F},
        {"n,,", "bob@example.test", "bobpw", "198.51.100.7", NULL, false, false, NULL, C, F},
        {"p=tls-unique,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, F,
         F},
        /* malformed client-first */
        {"x,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, M, M},
        {"n,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, M, M},
        {"n,b=x,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, M, M},
        {"n,,", "", "secret", "127.0.0.1", NULL, false, false, NULL, M, M},
        {"n,,", "al=ZZice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, M, M},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, ",", M, M},
        {"n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, ",xy", M, M},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int initial = 0; initial < 2; initial++)
            run_scram(&cases[i], initial, NULL, 0);

    /* an unknown login sees the same salt every time, and not a user's */
    char s1[128], s2[128], s3[128];
    const struct scram_case unknown = {
        "n,,", "nobody@example.test", "x", "127.0.0.1", NULL, false, false, NULL, C, F};
    const struct scram_case known = {
        "n,,", "alice@example.test", "secret", "127.0.0.1", NULL, false, false, NULL, C, C};
    run_scram(&unknown, true, s1, sizeof s1);
    run_scram(&unknown, false, s2, sizeof s2);
    run_scram(&known, true, s3, sizeof s3);
    assert_string_equal(s1, s2);
    assert_string_not_equal(s1, s3);
}

/* Raw client messages that must be refused. */
static void test_scram_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *first;
        enum sasl_status want;
    } firsts[] = {
        {"n,,m=x,n=alice@example.test,r=abc", SASL_FAILED},
        {"n,,n=alice@example.test", SASL_MALFORMED},
        {"n,,n=alice@example.test,r=", SASL_MALFORMED},
        {"n,,n=alice@example.test,x=abc", SASL_MALFORMED},
        {"n,,r=abc,n=alice@example.test", SASL_MALFORMED},
        {"n,,n=alice@example.test,r=a\x01"
         "b",
         SASL_MALFORMED},
        {"n,,n=alice@example.test,r=a b", SASL_MALFORMED},
        {"n,a=,n=alice@example.test,r=abc", SASL_MALFORMED},
        {"n,a=x", SASL_MALFORMED},
        {"n", SASL_MALFORMED},
        {"", SASL_MALFORMED},
    };
    char out[OUTMAX];
    for (size_t i = 0; i < sizeof firsts / sizeof firsts[0]; i++) {
        struct sasl_session *s = sasl_new(SASL_SCRAM_SHA_256, NULL, NULL);
        char *b = enc(firsts[i].first, strlen(firsts[i].first));
        enum sasl_status st = sasl_start(s, db, *b ? b : "=", *b ? strlen(b) : 1, out, sizeof out);
        if (st != firsts[i].want)
            print_message("# first %zu: %d\n", i, (int)st);
        assert_int_equal(st, firsts[i].want);
        free(b);
        sasl_free(s);
    }
    /* a NUL in client-first */
    struct sasl_session *s = sasl_new(SASL_SCRAM_SHA_256, NULL, NULL);
    char *b = enc("n,,n=a\0b@example.test,r=abc", 27);
    assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_MALFORMED);
    free(b);
    sasl_free(s);
    /* a client nonce too long to echo in a challenge */
    char first[2000];
    int n = snprintf(first, sizeof first, "n,,n=alice@example.test,r=");
    memset(first + n, 'x', 1500);
    first[n + 1500] = '\0';
    s = sasl_new(SASL_SCRAM_SHA_256, NULL, NULL);
    b = enc(first, strlen(first));
    assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_MALFORMED);
    free(b);
    sasl_free(s);

    /* client-final errors, after a good client-first */
    static const char *const finals[] = {
        "",
        "c=biws",
        "c=biws,r=abc",
        "c=bi ws,r=abc,p=AAAA",
        "r=abc,c=biws,p=AAAA",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=AAAA",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=!!!!",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,x=y",
    };
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
        s = sasl_new(SASL_SCRAM_SHA_256, NULL, NULL);
        b = enc("n,,n=alice@example.test,r=fyko+d2lbbFgONRv9qkxdawL", 50);
        assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_CONTINUE);
        free(b);
        b = enc(finals[i], strlen(finals[i]));
        enum sasl_status st = sasl_step(s, db, b, strlen(b), out, sizeof out);
        if (st != SASL_MALFORMED)
            print_message("# final %zu: %d\n", i, (int)st);
        assert_int_equal(st, SASL_MALFORMED);
        free(b);
        sasl_free(s);
    }
}

/* After server-final, only an empty line succeeds. */
static void test_scram_ack(void **state)
{
    (void)state;
    /* reuse run_scram's client up to server-final by hand: a wrong ack */
    static const char *const acks[] = {"*", "=", "dg==", "x"};
    for (size_t i = 0; i < sizeof acks / sizeof acks[0]; i++) {
        char out[OUTMAX];
        struct sasl_session *s = sasl_new(SASL_SCRAM_SHA_256, NULL, addr_of("127.0.0.1"));
        static const char first[] = "n,,n=alice@example.test,r=abcdefgh";
        char *b = enc(first, strlen(first));
        assert_int_equal(sasl_start(s, db, b, strlen(b), out, sizeof out), SASL_CONTINUE);
        free(b);
        char sfirst[OUTMAX], nonce[256], salt64[128];
        snprintf(sfirst, sizeof sfirst, "%s", dec(out));
        attr(sfirst, "r=", nonce, sizeof nonce);
        attr(sfirst, "s=", salt64, sizeof salt64);
        uint8_t salt[64], salted[32], ckey[32], stored[32], sig[32], proof[32];
        size_t sl;
        unsigned len;
        sasl_b64_decode(salt64, strlen(salt64), salt, sizeof salt, &sl);
        char without[400], auth[2048], final[600];
        snprintf(without, sizeof without, "c=biws,r=%s", nonce);
        snprintf(auth, sizeof auth, "%s,%s,%s", first + 3, sfirst, without);
        PKCS5_PBKDF2_HMAC("secret", 6, salt, (int)sl, 4096, EVP_sha256(), 32, salted);
        HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, ckey, &len);
        SHA256(ckey, 32, stored);
        HMAC(EVP_sha256(), stored, 32, (const uint8_t *)auth, strlen(auth), sig, &len);
        for (int k = 0; k < 32; k++)
            proof[k] = ckey[k] ^ sig[k];
        char *p64 = enc(proof, 32);
        snprintf(final, sizeof final, "%s,p=%s", without, p64);
        free(p64);
        b = enc(final, strlen(final));
        assert_int_equal(sasl_step(s, db, b, strlen(b), out, sizeof out), SASL_CONTINUE);
        free(b);
        enum sasl_status st = sasl_step(s, db, acks[i], strlen(acks[i]), out, sizeof out);
        assert_int_equal(st, i == 0 ? SASL_CANCELLED : SASL_MALFORMED);
        sasl_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),      cmocka_unit_test(test_mech_names),
        cmocka_unit_test(test_plain),       cmocka_unit_test(test_plain_login_and_order),
        cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_login),
        cmocka_unit_test(test_cram_vector), cmocka_unit_test(test_cram),
        cmocka_unit_test(test_scram),       cmocka_unit_test(test_scram_malformed),
        cmocka_unit_test(test_scram_ack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
