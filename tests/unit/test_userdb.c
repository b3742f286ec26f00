/*
 * test_userdb - unit tests of the user store: parsing (every hash kind, the
 * options, comments and continuation lines), every error with its line
 * (refused hashes, bad logins, bad options, duplicates), lookup in any case,
 * network restrictions, password checks (real, wrong, dummy, NUL, overlong),
 * new yescrypt hashes, the SCRAM-SHA-256 verifier against RFC 7677's example,
 * and examples/users.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
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

#ifndef TERN_SOURCE_ROOT
#define TERN_SOURCE_ROOT "."
#endif

/* crypt(3) hashes of "secret" (and of "bobpw") of each accepted kind. */
#define H6                                                                                         \
    "$6$rounds=1000$saltsaltsalt$eX3bxJXT3.ujpABOqZ7ph4r9D9Fn0.qoDqJgZU6cTq8xPfk2."                \
    "Fmq2bf1GgjAlb6X1QXE7sMOtwZRTxjI1OZvT1"
#define H6BOB                                                                                      \
    "$6$rounds=1000$pepperpepper$IRK3ceRyZjjw05tEusiK9X9jaIyQO4hf/P8DBJt64tWntK9M65HeGc7b8f2P/"    \
    "NkRKMikGYL0gT8uNWrwbJXEL."
#define H6PLAIN                                                                                    \
    "$6$shortsalt$6x1XvBTH1CZHBxwOjDv5IzAuCXVa6w2yU1cfYAlcIYiY5s.GdhEFpx3vogqhsaxdWpqFAR3nnFMP9/"  \
    "gspqJa71"
#define H2B "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW"
#define HY "$y$j9T$22eWDy.tdJiWOOLk.tdO11$7Fnr1kzbfj4tUp6Z4IXlAMA8pJ447iq4VCokYrFrgL/"
#define SCRAM                                                                                      \
    "4096:W22ZaJ0SNY7soEsUEjb6gQ==:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"                  \
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static struct userdb *parse(const char *text, struct config_diags *d)
{
    return userdb_parse(text, strlen(text), "t.users", d);
}

static bool has_diag(const struct config_diags *d, unsigned line, const char *text)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && strstr(d->v[i].msg, text) &&
            strcmp(d->v[i].file, "t.users") == 0)
            return true;
    return false;
}

static void dump_diags(const struct config_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("# diag %s:%u: %s\n", d->v[i].file, d->v[i].line, d->v[i].msg);
}

static void test_parse_valid(void **state)
{
    (void)state;
    static const char text[] =
        "# users\n"
        "\n"
        "Alice@Example.TEST:" H6 "\n"
        "bob@example.test:" H2B ":networks=192.0.2.0/24, 2001:db8::/32\n"
        "  # a comment inside does not end the entry\n"
        "carol@example.test:" HY ":cram-md5=tanstaaf tanstaaf;\n"
        "    scram-sha-256=" SCRAM "\n"
        "dave@example.test:" H6PLAIN ":\n"
        "erin@example.test:" H6 ":NETWORKS=::ffff:10.0.0.0/104 ; Cram-MD5 = x\n";
    struct config_diags d = {0};
    struct userdb *db = parse(text, &d);
    dump_diags(&d);
    assert_non_null(db);
    assert_int_equal(d.n, 0);
    assert_int_equal(userdb_count(db), 5);
    assert_true(userdb_any_cram(db));
    assert_true(userdb_any_scram(db));

    const struct userdb_entry *e = userdb_find(db, "ALICE@example.test");
    assert_non_null(e);
    assert_string_equal(e->login, "alice@example.test");
    assert_string_equal(e->hash, H6);
    assert_null(e->cram_secret);
    assert_false(e->has_scram);
    assert_int_equal(e->nnetworks, 0);

    e = userdb_find(db, "bob@example.test");
    assert_non_null(e);
    assert_int_equal(e->nnetworks, 2);
    assert_int_equal(e->networks[0].family, AF_INET);
    assert_int_equal(e->networks[0].prefix, 24);
    assert_int_equal(e->networks[1].family, AF_INET6);

    e = userdb_find(db, "carol@example.test");
    assert_non_null(e);
    assert_string_equal(e->cram_secret, "tanstaaf tanstaaf");
    assert_true(e->has_scram);
    assert_int_equal(e->scram.iterations, 4096);
    assert_int_equal(e->scram.salt_len, 16);

    e = userdb_find(db, "erin@example.test");
    assert_non_null(e);
    assert_string_equal(e->cram_secret, "x");
    assert_int_equal(e->nnetworks, 1);
    assert_int_equal(e->networks[0].family, AF_INET); /* the mapped network is IPv4 */
    assert_int_equal(e->networks[0].prefix, 8);

    assert_non_null(userdb_find(db, "dave@example.test"));
    assert_null(userdb_find(db, "nobody@example.test"));
    assert_null(userdb_find(db, ""));
    assert_null(userdb_find(NULL, "alice@example.test"));
    /* entries come in login order */
    assert_string_equal(userdb_entry_at(db, 0)->login, "alice@example.test");
    assert_string_equal(userdb_entry_at(db, 4)->login, "erin@example.test");
    assert_null(userdb_entry_at(db, 5));
    userdb_free(db);
    config_diags_free(&d);

    db = parse("", &d);
    assert_non_null(db);
    assert_int_equal(userdb_count(db), 0);
    assert_false(userdb_any_cram(db));
    assert_false(userdb_any_scram(db));
    userdb_free(db);
    userdb_free(NULL);
}

/* One line that must be refused, with a word of the message. */
struct bad_case {
    const char *text;
    unsigned line;
    const char *msg;
};

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"alice@example.test\n", 1, "syntax error"},
        {"alice@example.test:\n", 1, "no password hash"},
        {"alice:" H6 "\n", 1, "is not a login"},
        {"@example.test:" H6 "\n", 1, "is not a login"},
        {"a b@example.test:" H6 "\n", 1, "is not a login"},
        {"# c\nalice@example.test:$1$abc$iCQ2D3nhptRYi27fDYv2s1\n", 2, "yescrypt"},
        {"alice@example.test:abNANd1rDfiNc\n", 1, "yescrypt"},
        {"alice@example.test:secret\n", 1, "yescrypt"},
        {"alice@example.test:$y$j9T$22eWDy.tdJiWOOLk.tdO11$\n", 1, "yescrypt"},
        {"alice@example.test:$y$j9T$22eWDy.tdJiWOOLk.tdO11\n", 1, "yescrypt"},
        {"alice@example.test:$y$$22eWDy.tdJiWOOLk.tdO11$7Fnr1kzbfj4tUp6Z4IXlAMA8pJ447iq4VCokYrFrgL/"
         "\n",
         1, "yescrypt"},
        {"alice@example.test:$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIr\n", 1,
         "yescrypt"},
        {"alice@example.test:$2x$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW\n", 1,
         "yescrypt"},
        {"alice@example.test:$6$rounds=10$saltsaltsalt$eX3bxJXT3.ujpABOqZ7ph4r9D9Fn0.qoDqJgZU6cTq8"
         "xPfk2.Fmq2bf1GgjAlb6X1QXE7sMOtwZRTxjI1OZvT1\n",
         1, "yescrypt"},
        {"alice@example.test:$6$salt=x$eX3bxJXT3.ujpABOqZ7ph4r9D9Fn0.qoDqJgZU6cTq8xPfk2.Fmq2bf1Ggj"
         "Alb6X1QXE7sMOtwZRTxjI1OZvT1\n",
         1, "yescrypt"},
        {"alice@example.test:$5$abc$xyz\n", 1, "yescrypt"},
        {"alice@example.test:" H6 ":bogus=1\n", 1, "is not an option"},
        {"alice@example.test:" H6 ":networks\n", 1, "is not an option"},
        {"alice@example.test:" H6 ":networks=\n", 1, "has no value"},
        {"alice@example.test:" H6 ":networks=,\n", 1, "has no networks"},
        {"alice@example.test:" H6 ":networks=10.0.0.1/8\n", 1, "host bits"},
        {"alice@example.test:" H6 ":networks=10.0.0.0/33\n", 1, "not a numeric address"},
        {"alice@example.test:" H6 ":networks=example.test\n", 1, "not a numeric address"},
        {"alice@example.test:" H6 ":networks=[::1]/128\n", 1, "not a numeric address"},
        {"alice@example.test:" H6 ":cram-md5=a;cram-md5=b\n", 1, "given twice"},
        {"alice@example.test:" H6 ":cram-md5=a;;networks=::1\n", 1, "an empty option"},
        {"alice@example.test:" H6 ":cram-md5=a;\n", 1, "an empty option"},
        {"alice@example.test:" H6 ":scram-sha-256=4096:W22ZaJ0SNY7soEsUEjb6gQ==:AAAA:AAAA\n", 1,
         "ITER:SALT"},
        {"alice@example.test:" H6 ":scram-sha-256=4095:W22ZaJ0SNY7soEsUEjb6gQ==:"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
         "\n",
         1, "at least 4096"},
        {"alice@example.test:" H6 ":scram-sha-256=4096:W22Z aJ0SNY7soEsUEjb6gQ==:"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
         "\n",
         1, "ITER:SALT"},
        {"alice@example.test:" H6 ":scram-sha-256=" SCRAM ":x\n", 1, "ITER:SALT"},
        {"alice@example.test:" H6 ":scram-sha-256=4096::"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
         "\n",
         1, "ITER:SALT"},
        {"alice@example.test:" H6 "\nbob@example.test:" H6 "\nALICE@example.test:" H6BOB "\n", 3,
         "given twice (first at line 1)"},
        {"  alice@example.test:" H6 "\n", 1, "continues the previous line"},
        {"alice@example.test:" H6 "\x01\n", 1, "control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config_diags d = {0};
        struct userdb *db = parse(cases[i].text, &d);
        if (db || !has_diag(&d, cases[i].line, cases[i].msg)) {
            print_message("# case %zu: %s", i, cases[i].text);
            dump_diags(&d);
        }
        assert_null(db);
        assert_true(has_diag(&d, cases[i].line, cases[i].msg));
        config_diags_free(&d);
    }
    /* diags may be NULL */
    assert_null(parse("x\n", NULL));
}

static void test_network_allows(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct userdb *db = parse("a@example.test:" H6 ":networks=127.0.0.0/8,::1/128,10.1.2.3\n"
                              "b@example.test:" H6 "\n",
                              &d);
    assert_non_null(db);
    const struct userdb_entry *a = userdb_find(db, "a@example.test");
    const struct userdb_entry *b = userdb_find(db, "b@example.test");
    static const struct {
        const char *addr;
        bool want;
    } cases[] = {
        {"127.0.0.1", true},
        {"127.255.0.9", true},
        {"128.0.0.1", false},
        {"10.1.2.3", true},
        {"10.1.2.4", false},
        {"::1", true},
        {"::2", false},
        {"::ffff:127.0.0.5", true},
        {"::ffff:10.1.2.3", true},
        {"::ffff:128.0.0.1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (strchr(cases[i].addr, ':')) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &s6->sin6_addr), 1);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            assert_int_equal(inet_pton(AF_INET, cases[i].addr, &s4->sin_addr), 1);
        }
        if (userdb_network_allows(a, (struct sockaddr *)&ss) != cases[i].want)
            print_message("# case %s\n", cases[i].addr);
        assert_int_equal(userdb_network_allows(a, (struct sockaddr *)&ss), cases[i].want);
        assert_true(userdb_network_allows(b, (struct sockaddr *)&ss));
    }
    assert_false(userdb_network_allows(a, NULL));
    assert_true(userdb_network_allows(b, NULL));
    assert_false(userdb_network_allows(NULL, NULL));
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    assert_false(userdb_network_allows(a, &unix_sa));
    userdb_free(db);
    config_diags_free(&d);
}

static void test_verify_password(void **state)
{
    (void)state;
    static const struct {
        const char *hash;
        const char *pw;
        size_t len;
        bool want;
    } cases[] = {
        {H6, "secret", 6, true},
        {H6, "Secret", 6, false},
        {H6, "secre", 5, false},
        {H6, "secret\0x", 8, false}, /* a NUL ends nothing: the whole password counts */
        {H6PLAIN, "secret", 6, true},
        {H2B, "secret", 6, true},
        {H2B, "secreT", 6, false},
        {H6BOB, "bobpw", 5, true},
        {HY, "", 0, false},
        {NULL, "secret", 6, false},
        {NULL, "not a password: the dummy of unknown users", 42, false},
        {H6, NULL, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (userdb_verify_password(cases[i].hash, cases[i].pw, cases[i].len) != cases[i].want)
            print_message("# case %zu\n", i);
        assert_int_equal(userdb_verify_password(cases[i].hash, cases[i].pw, cases[i].len),
                         cases[i].want);
    }
    char *long_pw = malloc(5000);
    memset(long_pw, 'a', 5000);
    assert_false(userdb_verify_password(H6, long_pw, 5000));
    free(long_pw);
}

static void test_hash_password(void **state)
{
    (void)state;
    char *h = userdb_hash_password("tern-demo");
    assert_non_null(h);
    assert_memory_equal(h, "$y$", 3);
    assert_true(userdb_verify_password(h, "tern-demo", 9));
    assert_false(userdb_verify_password(h, "tern-demO", 9));
    /* what it writes, the parser reads */
    char line[512];
    snprintf(line, sizeof line, "x@example.test:%s\n", h);
    struct config_diags d = {0};
    struct userdb *db = parse(line, &d);
    assert_non_null(db);
    userdb_free(db);
    char *h2 = userdb_hash_password("tern-demo");
    assert_string_not_equal(h, h2); /* a fresh salt each time */
    free(h);
    free(h2);
    assert_null(userdb_hash_password(NULL));
}

static void b64(const char *s, uint8_t *out, size_t *n)
{
    assert_int_equal(sasl_b64_decode(s, strlen(s), out, 64, n), 0);
}

/* RFC 7677 §3: user "user", password "pencil". The verifier made here must
   accept the RFC's ClientProof and give its ServerSignature. */
static void test_scram_rfc7677(void **state)
{
    (void)state;
    static const char auth[] =
        "n=user,r=rOprNGfwEbeRWgbNEkqO,"
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    uint8_t salt[64], proof[64], ssig[64], sig[32], key[32], h[32], mine[32];
    size_t sl, pl, sgl;
    b64("W22ZaJ0SNY7soEsUEjb6gQ==", salt, &sl);
    b64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", proof, &pl);
    b64("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", ssig, &sgl);
    assert_int_equal(pl, 32);
    struct userdb_scram sc;
    assert_true(userdb_scram_make("pencil", 6, 4096, salt, sl, &sc));
    unsigned len = 0;
    HMAC(EVP_sha256(), sc.stored_key, 32, (const uint8_t *)auth, strlen(auth), sig, &len);
    for (int i = 0; i < 32; i++)
        key[i] = proof[i] ^ sig[i];
    SHA256(key, 32, h);
    assert_memory_equal(h, sc.stored_key, 32);
    HMAC(EVP_sha256(), sc.server_key, 32, (const uint8_t *)auth, strlen(auth), mine, &len);
    assert_memory_equal(mine, ssig, 32);

    /* formatted, it reads back */
    char *f = userdb_scram_format(&sc);
    assert_non_null(f);
    assert_memory_equal(f, "4096:W22ZaJ0SNY7soEsUEjb6gQ==:", 30);
    char line[512];
    snprintf(line, sizeof line, "user@example.test:" H6 ":scram-sha-256=%s\n", f);
    struct config_diags d = {0};
    struct userdb *db = parse(line, &d);
    assert_non_null(db);
    const struct userdb_entry *e = userdb_find(db, "user@example.test");
    assert_true(e->has_scram);
    assert_memory_equal(e->scram.stored_key, sc.stored_key, 32);
    assert_memory_equal(e->scram.server_key, sc.server_key, 32);
    userdb_free(db);
    free(f);
    /* bad arguments */
    assert_false(userdb_scram_make("pencil", 6, 4095, salt, sl, &sc));
    assert_false(userdb_scram_make("pencil", 6, 4096, salt, 0, &sc));
    assert_false(userdb_scram_make(NULL, 0, 4096, salt, sl, &sc));
}

static void test_example_users(void **state)
{
    (void)state;
    struct config_diags d = {0};
    struct userdb *db = userdb_load(TERN_SOURCE_ROOT "/examples/users", &d);
    dump_diags(&d);
    assert_non_null(db);
    const struct userdb_entry *e = userdb_find(db, "demo@example.test");
    assert_non_null(e);
    assert_true(userdb_verify_password(e->hash, "tern-demo", 9));
    assert_int_equal(e->nnetworks, 2);
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    s4.sin_addr.s_addr = htonl(0x7f000001);
    assert_true(userdb_network_allows(e, (struct sockaddr *)&s4));
    s4.sin_addr.s_addr = htonl(0xc0000201);
    assert_false(userdb_network_allows(e, (struct sockaddr *)&s4));
    userdb_free(db);
    config_diags_free(&d);

    db = userdb_load(TERN_SOURCE_ROOT "/no/such/file", &d);
    assert_null(db);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    config_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),    cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_network_allows), cmocka_unit_test(test_verify_password),
        cmocka_unit_test(test_hash_password),  cmocka_unit_test(test_scram_rfc7677),
        cmocka_unit_test(test_example_users),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
