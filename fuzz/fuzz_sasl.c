/*
 * fuzz_sasl - libFuzzer target for the SASL mechanisms (src/auth/sasl.c) and
 * their base64.
 *
 * Input: one control octet, then client lines separated by '\n'.
 *   bits 0-1  mechanism: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256
 *   bit 2     the first line is the initial response of the AUTH command
 *   bit 3     client address 192.0.2.1 instead of 127.0.0.1 (bob may only
 *             authenticate from 192.0.2.0/24)
 *   bit 4     raw lines: the target base64-encodes each line itself, after
 *             replacing "%N" with the nonce of the last SCRAM challenge and
 *             "%D" with alice's CRAM-MD5 digest of the last challenge, so the
 *             fuzzer reaches the later steps of each mechanism
 * Each line goes to sasl_step() while the status is SASL_CONTINUE; at
 * SASL_CHECK_PASSWORD the (cheap, $6$ rounds=1000) crypt check runs. The user
 * store is fixed: alice@example.test (all mechanisms), bob@example.test
 * (networks), carol@example.test (PLAIN/LOGIN only).
 *
 * Invariants: every status is one of enum sasl_status; a challenge is valid
 * base64 shorter than SASL_MAX_CHALLENGE; after a final status the session
 * refuses more input; the whole input, when it is strict base64, encodes back
 * to itself. Everything is freed (LeakSanitizer).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/sasl.h"
#include "auth/userdb.h"

#define MAX_LINES 16

/* $6$rounds=1000 hashes of "secret", "bobpw" and "carolpw". */
static const char users_fmt[] =
    "alice@example.test:$6$rounds=1000$saltsaltsalt$eX3bxJXT3.ujpABOqZ7ph4r9D9Fn0.qoDqJgZU6cTq8x"
    "Pfk2.Fmq2bf1GgjAlb6X1QXE7sMOtwZRTxjI1OZvT1:scram-sha-256=%s;cram-md5=tanstaaftanstaaf\n"
    "bob@example.test:$6$rounds=1000$pepperpepper$IRK3ceRyZjjw05tEusiK9X9jaIyQO4hf/P8DBJt64tWntK"
    "9M65HeGc7b8f2P/NkRKMikGYL0gT8uNWrwbJXEL.:scram-sha-256=%s;networks=192.0.2.0/24\n"
    "carol@example.test:$6$shortsalt$6x1XvBTH1CZHBxwOjDv5IzAuCXVa6w2yU1cfYAlcIYiY5s.GdhEFpx3vogqh"
    "saxdWpqFAR3nnFMP9/gspqJa71\n";

static struct userdb *db;

static void init(void)
{
    static const uint8_t salt[16] = "0123456789abcdef";
    struct userdb_scram a, b;
    if (!userdb_scram_make("secret", 6, 4096, salt, sizeof salt, &a) ||
        !userdb_scram_make("bobpw", 5, 4096, salt, sizeof salt, &b))
        abort();
    char *sa = userdb_scram_format(&a), *sb = userdb_scram_format(&b);
    char text[2048];
    snprintf(text, sizeof text, users_fmt, sa, sb);
    free(sa);
    free(sb);
    db = userdb_parse(text, strlen(text), "fuzz.users", NULL);
    if (!db)
        abort();
}

static void check_challenge(const char *out)
{
    size_t n = strnlen(out, SASL_MAX_CHALLENGE);
    if (n >= SASL_MAX_CHALLENGE)
        abort();
    uint8_t buf[SASL_MAX_CHALLENGE];
    size_t got;
    if (sasl_b64_decode(out, n, buf, sizeof buf, &got) != 0)
        abort();
}

/* Replace %N and %D in a raw line and base64-encode it into out. */
static size_t raw_line(const char *line, size_t len, const char *chal, char *out, size_t outmax)
{
    char text[SASL_MAX_LINE / 2];
    size_t n = 0;
    const char *nonce = strstr(chal, "r=");
    size_t nlen = nonce ? strcspn(nonce + 2, ",") : 0;
    for (size_t i = 0; i < len && n + 64 < sizeof text; i++) {
        if (line[i] == '%' && i + 1 < len && line[i + 1] == 'N' && nonce &&
            n + nlen < sizeof text - 64) {
            memcpy(text + n, nonce + 2, nlen);
            n += nlen;
            i++;
        } else if (line[i] == '%' && i + 1 < len && line[i + 1] == 'D') {
            uint8_t mac[16];
            unsigned ml = 0;
            HMAC(EVP_md5(), "tanstaaftanstaaf", 16, (const uint8_t *)chal, strlen(chal), mac, &ml);
            for (unsigned k = 0; k < 16; k++)
                n += (size_t)snprintf(text + n, sizeof text - n, "%02x", mac[k]);
            i++;
        } else {
            text[n++] = line[i];
        }
    }
    if (n == 0) {
        out[0] = '\0';
        return 0;
    }
    size_t w = sasl_b64_encode((const uint8_t *)text, n, out, outmax);
    if (w == 0)
        abort();
    return w;
}

static bool valid_status(enum sasl_status st)
{
    return st == SASL_CONTINUE || st == SASL_CHECK_PASSWORD || st == SASL_SUCCESS ||
           st == SASL_FAILED || st == SASL_MALFORMED || st == SASL_CANCELLED;
}

static void roundtrip(const uint8_t *data, size_t size)
{
    if (size > SASL_MAX_LINE)
        return;
    uint8_t *dec = malloc(size / 4 * 3 + 1);
    size_t n;
    if (sasl_b64_decode((const char *)data, size, dec, size / 4 * 3, &n) == 0) {
        char *enc = malloc(size + 1);
        if (sasl_b64_encode(dec, n, enc, size + 1) != size && size > 0)
            abort();
        if (size > 0 && memcmp(enc, data, size) != 0)
            abort(); /* strict base64 has one encoding */
        free(enc);
    }
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db)
        init();
    roundtrip(data, size);
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    enum sasl_mech mech = (enum sasl_mech)(ctl & 3);
    bool initial = ctl & 4, raw = ctl & 16;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(ctl & 8 ? 0xc0000201 : 0x7f000001);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    struct sasl_session *s = sasl_new(mech, "mx.example.test", (struct sockaddr *)&sin);
    char out[SASL_MAX_CHALLENGE];
    char chal[SASL_MAX_CHALLENGE] = ""; /* the last challenge, decoded */
    char *enc = malloc(SASL_MAX_LINE + 8);
    enum sasl_status st = SASL_CONTINUE;
    size_t pos = 0;
    if (!initial) {
        st = sasl_start(s, db, NULL, 0, out, sizeof out);
        if (st == SASL_CONTINUE) {
            check_challenge(out);
            size_t got = 0;
            sasl_b64_decode(out, strlen(out), (uint8_t *)chal, sizeof chal - 1, &got);
            chal[got] = '\0';
        }
    }
    for (int k = 0; k < MAX_LINES && st == SASL_CONTINUE && pos <= len; k++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *line = text + pos;
        size_t n = end - pos;
        pos = end + 1;
        if (raw && !(n == 1 && line[0] == '*')) {
            n = raw_line(line, n, chal, enc, SASL_MAX_LINE + 8);
            line = enc;
        }
        if (initial && k == 0)
            st = sasl_start(s, db, line, n, out, sizeof out);
        else
            st = sasl_step(s, db, line, n, out, sizeof out);
        if (!valid_status(st))
            abort();
        if (st == SASL_CONTINUE) {
            check_challenge(out);
            size_t got = 0;
            sasl_b64_decode(out, strlen(out), (uint8_t *)chal, sizeof chal - 1, &got);
            chal[got] = '\0';
        }
    }
    if (st == SASL_CHECK_PASSWORD) {
        sasl_check_password(s);
        st = sasl_finish(s);
        if (st != SASL_SUCCESS && st != SASL_FAILED)
            abort();
    }
    const char *login = sasl_login(s);
    if (login && strlen(login) >= 320)
        abort();
    if (st != SASL_CONTINUE && sasl_step(s, db, "", 0, out, sizeof out) != SASL_FAILED)
        abort();
    free(enc);
    sasl_free(s);
    return 0;
}
