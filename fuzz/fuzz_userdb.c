/*
 * fuzz_userdb - libFuzzer target for the user store and sender login map
 * parsers (src/auth/userdb.c, src/auth/senderlogin.c).
 *
 * Input: a user store, a line "%%", a sender login map (without that line,
 * the whole input is given to both parsers). No password is hashed or checked
 * here (crypt is slow by design; fuzz_sasl covers the checks).
 *
 * Invariants: a failed parse says why; every entry is found by its login, in
 * upper case too; logins are lowercase; each of an entry's networks admits its
 * own (zeroed) address; the "any CRAM-MD5 / SCRAM" flags match the entries; a
 * login is allowed its own address when no entry applies, and the null sender
 * always. Everything is freed (LeakSanitizer).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "auth/senderlogin.h"
#include "auth/userdb.h"

static void check_users(const struct userdb *db)
{
    bool cram = false, scram = false;
    for (size_t i = 0; i < userdb_count(db); i++) {
        const struct userdb_entry *e = userdb_entry_at(db, i);
        if (!e || !e->login || !e->hash || userdb_find(db, e->login) != e)
            abort();
        char up[320];
        size_t n = strlen(e->login);
        if (n >= sizeof up)
            abort();
        for (size_t k = 0; k <= n; k++) {
            char c = e->login[k];
            if (c >= 'A' && c <= 'Z')
                abort();
            up[k] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        }
        if (userdb_find(db, up) != e)
            abort();
        cram |= e->cram_secret != NULL;
        scram |= e->has_scram;
        if (e->has_scram && (e->scram.iterations < 4096 || e->scram.salt_len == 0 ||
                             e->scram.salt_len > sizeof e->scram.salt))
            abort();
        for (size_t k = 0; k < e->nnetworks; k++) {
            const struct config_cidr *c = &e->networks[k];
            if (c->family == AF_INET) {
                struct sockaddr_in s4 = {.sin_family = AF_INET};
                memcpy(&s4.sin_addr, c->addr, 4);
                if (c->prefix > 32 || !userdb_network_allows(e, (struct sockaddr *)&s4))
                    abort();
            } else {
                struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
                memcpy(&s6.sin6_addr, c->addr, 16);
                if (c->family != AF_INET6 || c->prefix > 128 ||
                    !userdb_network_allows(e, (struct sockaddr *)&s6))
                    abort();
            }
        }
        if (e->nnetworks == 0 && !userdb_network_allows(e, NULL))
            abort();
    }
    if (cram != userdb_any_cram(db) || scram != userdb_any_scram(db))
        abort();
}

static void check_map(const struct sender_login *m, const char *text, size_t len)
{
    static const char *const who[] = {"alice@example.test", "Bob@Example.Test", "x@y.test"};
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
        if (!sender_login_allows(m, who[i], ""))
            abort();
        (void)sender_login_allows(m, who[i], "alice@example.test");
        (void)sender_login_allows(m, who[i], "postmaster@example.test");
    }
    if (!sender_login_allows(m, "nobody-mapped@unmapped.invalid",
                             "NOBODY-mapped@unmapped.invalid") &&
        sender_login_count(m) == 0)
        abort();
    /* the first word of each line, as an address and as a login */
    size_t pos = 0, lines = 0;
    while (pos < len && lines < 32) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t w = pos;
        while (w < end && text[w] != ' ' && text[w] != '\t' && text[w] != '\0')
            w++;
        if (w > pos && w - pos < 300) {
            char key[301];
            memcpy(key, text + pos, w - pos);
            key[w - pos] = '\0';
            (void)sender_login_allows(m, key, key);
            (void)sender_login_allows(m, "alice@example.test", key);
            lines++;
        }
        pos = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t ulen = size, moff = 0;
    for (size_t i = 0; i + 3 <= size; i++) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "%%", 2) == 0 &&
            text[i + 2] == '\n') {
            ulen = i;
            moff = i + 3;
            break;
        }
    }
    struct config_diags diags = {0, NULL};
    struct userdb *db = userdb_parse(text, ulen, "fuzz.users", &diags);
    if (!db && diags.n == 0)
        abort();
    if (db)
        check_users(db);
    userdb_free(db);
    config_diags_free(&diags);

    struct sender_login *m = sender_login_parse(text + moff, size - moff, "fuzz.map", &diags);
    if (!m && diags.n == 0)
        abort();
    for (size_t i = 0; i < diags.n; i++)
        if (!diags.v[i].msg || !diags.v[i].file)
            abort();
    check_map(m, text + moff, size - moff);
    sender_login_free(m);
    config_diags_free(&diags);
    return 0;
}
