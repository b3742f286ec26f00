/*
 * sasl - the server side of PLAIN (RFC 4616), LOGIN
 * (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195) and SCRAM-SHA-256
 * (RFC 5802, RFC 7677) as SMTP AUTH (RFC 4954) carries them; see sasl.h.
 *
 * Each session is a small state machine (enum sasl_state) fed one client line
 * at a time. Client data is strict base64 (RFC 4648 §4, padding required, no
 * white space, zero pad bits), at most SASL_MAX_LINE octets. PLAIN and LOGIN
 * only collect the credentials: the crypt(3) check is sasl_check_password(),
 * run by the caller in a worker thread. CRAM-MD5 and SCRAM-SHA-256 need only
 * HMACs and finish on the spot. Unknown users, users not allowed from the
 * client's address and an authorization identity other than the login go the
 * same way as a wrong password: a dummy crypt(3) check for PLAIN and LOGIN, a
 * dummy HMAC for CRAM-MD5, and for SCRAM a salt derived from the login and a
 * per-process key (so the salt an unknown login sees does not change, as
 * RFC 5802 §9 suggests) and a proof that cannot verify.
 *
 * SCRAM: no channel binding (gs2 flags "n" and "y" accepted, "p=" fails), no
 * SASLprep (logins are addresses; passwords are used as the client sends
 * them). The server-final message "v=..." goes out as a last 334 challenge;
 * the client's empty reply then ends the exchange in SASL_SUCCESS.
 *
 * Every buffer that held a password, a decoded response or key material is
 * wiped with OPENSSL_cleanse() before it is freed. No logging, no I/O.
 */
#include "auth/sasl.h"
#include "core/base64.h"
#include "config/internal.h"
#include "core/util.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* Longest login kept (local part 64, '@', domain 253 and a NUL fit). */
#define SASL_MAX_LOGIN 320
/* Octets of randomness in the server's SCRAM nonce (24 base64 characters). */
#define SCRAM_NONCE_BYTES 18
/* Iterations announced for a login without a SCRAM verifier. */
#define SCRAM_FAKE_ITER 4096

enum sasl_state {
    ST_START,       /* sasl_start() not called yet */
    ST_PLAIN,       /* PLAIN: empty challenge sent, waiting for the response */
    ST_LOGIN_USER,  /* LOGIN: "Username:" sent */
    ST_LOGIN_PASS,  /* LOGIN: "Password:" sent */
    ST_CRAM,        /* CRAM-MD5: challenge sent, waiting for "user digest" */
    ST_SCRAM_FIRST, /* SCRAM: empty challenge sent, waiting for client-first */
    ST_SCRAM_FINAL, /* SCRAM: server-first sent, waiting for client-final */
    ST_SCRAM_ACK,   /* SCRAM: server-final sent, waiting for the empty response */
    ST_CHECK,       /* credentials collected: sasl_check_password() is due */
    ST_CHECKED,     /* checked: sasl_finish() gives the outcome */
    ST_DONE,        /* finished: every further call fails */
};

struct sasl_session {
    enum sasl_mech mech;
    enum sasl_state state;
    char hostname[256];             /* ours, for CRAM-MD5 challenges */
    struct sockaddr_storage client; /* the peer's address */
    bool have_client;               /* client holds an AF_INET or AF_INET6 address */
    char *login;                    /* claimed login, lowercased; NULL until known or if invalid */
    char *hash;                     /* the user's crypt hash; NULL: unknown (dummy check) */
    char *password;                 /* PLAIN/LOGIN password until checked (secret) */
    size_t password_len;
    bool deny;     /* fail whatever the credentials (unknown user, network, authzid) */
    bool verified; /* the password check passed and nothing denies */
    char challenge[SASL_MAX_CHALLENGE]; /* CRAM-MD5 challenge text (not base64) */
    /* SCRAM-SHA-256 */
    char *gs2_header;          /* "n,," or "y,,", with "a=..." when given */
    char *client_first_bare;   /* client-first-message-bare */
    char *server_first;        /* server-first-message */
    char *nonce;               /* c-nonce + s-nonce */
    struct userdb_scram scram; /* the user's verifier, or a fake one (secret) */
};

const char *sasl_mech_name(enum sasl_mech m)
{
    switch (m) {
    case SASL_PLAIN:
        return "PLAIN";
    case SASL_LOGIN:
        return "LOGIN";
    case SASL_CRAM_MD5:
        return "CRAM-MD5";
    case SASL_SCRAM_SHA_256:
        return "SCRAM-SHA-256";
    }
    return "UNKNOWN";
}

bool sasl_mech_parse(const char *name, size_t len, enum sasl_mech *out)
{
    if (!name)
        return false;
    for (int m = 0; m < SASL_NMECH; m++) {
        const char *n = sasl_mech_name((enum sasl_mech)m);
        if (strlen(n) == len && ascii_nieq(name, n, len)) {
            if (out)
                *out = (enum sasl_mech)m;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------
 * Base64 (RFC 4648 §4): core/base64.c
 */

int sasl_b64_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen)
{
    return base64_decode(in, len, out, outmax, outlen);
}

size_t sasl_b64_encode(const uint8_t *in, size_t len, char *out, size_t outmax)
{
    return base64_encode(in, len, out, outmax);
}

/* ---------------------------------------------------------------------
 * Session
 */

struct sasl_session *sasl_new(enum sasl_mech mech, const char *hostname,
                              const struct sockaddr *client)
{
    struct sasl_session *s = xcalloc(1, sizeof *s);
    s->mech = mech;
    s->state = ST_START;
    snprintf(s->hostname, sizeof s->hostname, "%s", hostname && *hostname ? hostname : "localhost");
    if (client && client->sa_family == AF_INET) {
        memcpy(&s->client, client, sizeof(struct sockaddr_in));
        s->have_client = true;
    } else if (client && client->sa_family == AF_INET6) {
        memcpy(&s->client, client, sizeof(struct sockaddr_in6));
        s->have_client = true;
    }
    return s;
}

static void free_secret(char *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

static void free_str(char *p)
{
    if (p)
        free_secret(p, strlen(p));
}

/* Forget what only the exchange needed. */
static void wipe(struct sasl_session *s)
{
    free_secret(s->password, s->password_len);
    s->password = NULL;
    s->password_len = 0;
    free_str(s->hash);
    s->hash = NULL;
    free_str(s->gs2_header);
    free_str(s->client_first_bare);
    free_str(s->server_first);
    free_str(s->nonce);
    s->gs2_header = s->client_first_bare = s->server_first = s->nonce = NULL;
    OPENSSL_cleanse(&s->scram, sizeof s->scram);
    OPENSSL_cleanse(s->challenge, sizeof s->challenge);
}

void sasl_free(struct sasl_session *s)
{
    if (!s)
        return;
    wipe(s);
    free(s->login);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

const char *sasl_login(const struct sasl_session *s)
{
    return s ? s->login : NULL;
}

enum sasl_mech sasl_session_mech(const struct sasl_session *s)
{
    return s->mech;
}

/* A terminal status: the session is over. */
static enum sasl_status end(struct sasl_session *s, enum sasl_status st)
{
    s->state = ST_DONE;
    wipe(s);
    return st;
}

/* Send challenge bytes as base64. */
static enum sasl_status challenge(struct sasl_session *s, enum sasl_state next, const void *data,
                                  size_t n, char *out, size_t outmax)
{
    if (!out || outmax == 0)
        return end(s, SASL_FAILED);
    if (n == 0) {
        out[0] = '\0';
    } else if (sasl_b64_encode(data, n, out, outmax) == 0) {
        return end(s, SASL_FAILED);
    }
    s->state = next;
    return SASL_CONTINUE;
}

/*
 * Decode one client response into a malloc'd buffer (NUL-terminated, for the
 * caller to free_secret with its length + 1). "*" cancels; with initial, "="
 * is an empty response. Returns SASL_CONTINUE on success.
 */
static enum sasl_status decode(const char *line, size_t len, bool initial, char **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    if (!line || len > SASL_MAX_LINE)
        return SASL_MALFORMED;
    if (len == 1 && line[0] == '*')
        return SASL_CANCELLED;
    if (initial && len == 1 && line[0] == '=')
        len = 0;
    size_t max = len / 4 * 3;
    char *b = xmalloc(max + 1);
    if (sasl_b64_decode(len ? line : "", len, (uint8_t *)b, max, n) != 0) {
        free_secret(b, max + 1);
        return SASL_MALFORMED;
    }
    b[*n] = '\0';
    *buf = b;
    return SASL_CONTINUE;
}

/*
 * Who is claiming: remember the login (lowercased, when it is an address),
 * look it up and copy its hash. An unknown login or one not allowed from the
 * client's address sets deny. Returns the entry (valid during this call only).
 */
static const struct userdb_entry *claim(struct sasl_session *s, const struct userdb *db,
                                        const char *name, size_t n)
{
    free(s->login);
    s->login = NULL;
    if (n == 0 || n >= SASL_MAX_LOGIN || memchr(name, '\0', n) || !cfg_valid_address(name, n)) {
        s->deny = true;
        return NULL;
    }
    s->login = xstrndup(name, n);
    ascii_lower(s->login);
    const struct userdb_entry *e = userdb_find(db, s->login);
    if (!e) {
        s->deny = true;
        return NULL;
    }
    free_str(s->hash);
    s->hash = e->hash ? xstrdup(e->hash) : NULL;
    if (!userdb_network_allows(e, s->have_client ? (const struct sockaddr *)&s->client : NULL))
        s->deny = true;
    return e;
}

/* Keep the password for the worker's check. */
static enum sasl_status want_check(struct sasl_session *s, const char *pw, size_t n)
{
    free_secret(s->password, s->password_len);
    s->password = xmalloc(n + 1);
    memcpy(s->password, pw, n);
    s->password[n] = '\0';
    s->password_len = n;
    s->state = ST_CHECK;
    return SASL_CHECK_PASSWORD;
}

/* PLAIN: [authzid] NUL authcid NUL passwd (RFC 4616 §2). */
static enum sasl_status plain_response(struct sasl_session *s, const struct userdb *db,
                                       const char *m, size_t n)
{
    const char *z1 = memchr(m, '\0', n);
    const char *z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - m)) : NULL;
    if (!z2)
        return end(s, SASL_MALFORMED);
    const char *pw = z2 + 1;
    size_t pwlen = n - (size_t)(pw - m);
    size_t zlen = (size_t)(z1 - m), clen = (size_t)(z2 - z1 - 1);
    if (clen == 0 || pwlen == 0 || memchr(pw, '\0', pwlen))
        return end(s, SASL_MALFORMED);
    claim(s, db, z1 + 1, clen);
    if (zlen > 0 && (zlen != clen || !ascii_nieq(m, z1 + 1, clen)))
        s->deny = true;
    return want_check(s, pw, pwlen);
}

/* CRAM-MD5: "<random.timestamp@hostname>" (RFC 2195 §2). */
static enum sasl_status cram_start(struct sasl_session *s, char *out, size_t outmax)
{
    uint64_t r;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        return end(s, SASL_FAILED);
    int n = snprintf(s->challenge, sizeof s->challenge, "<%llu.%lld@%s>", (unsigned long long)r,
                     (long long)(now_real_us() / 1000000), s->hostname);
    if (n < 0 || (size_t)n >= sizeof s->challenge || (size_t)n / 3 * 4 + 5 > SASL_MAX_CHALLENGE)
        return end(s, SASL_FAILED);
    return challenge(s, ST_CRAM, s->challenge, (size_t)n, out, outmax);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* CRAM-MD5 response: "user SP digest", digest 32 hex digits of HMAC-MD5. */
static enum sasl_status cram_response(struct sasl_session *s, const struct userdb *db,
                                      const char *m, size_t n)
{
    if (n < 34 || m[n - 33] != ' ')
        return end(s, SASL_MALFORMED);
    const char *digest = m + n - 32;
    char want[33], got[33];
    for (size_t i = 0; i < 32; i++) {
        if (!is_hex(digest[i]))
            return end(s, SASL_MALFORMED);
        got[i] = (char)(digest[i] >= 'A' && digest[i] <= 'F' ? digest[i] - 'A' + 'a' : digest[i]);
    }
    got[32] = '\0';
    const struct userdb_entry *e = claim(s, db, m, n - 33);
    const char *secret = e && e->cram_secret ? e->cram_secret : NULL;
    if (!secret) {
        s->deny = true;
        secret = "no one's secret";
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    bool ok = HMAC(EVP_md5(), secret, (int)strlen(secret), (const uint8_t *)s->challenge,
                   strlen(s->challenge), mac, &maclen) != NULL &&
              maclen == 16;
    for (size_t i = 0; i < 16; i++)
        snprintf(want + 2 * i, 3, "%02x", mac[i]);
    ok = ok && CRYPTO_memcmp(want, got, 32) == 0 && !s->deny;
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(want, sizeof want);
    return end(s, ok ? SASL_SUCCESS : SASL_FAILED);
}

/* ---------------------------------------------------------------------
 * SCRAM-SHA-256
 */

static unsigned char fake_key[32];
static CRYPTO_ONCE fake_once = CRYPTO_ONCE_STATIC_INIT;

static void fake_key_init(void)
{
    if (RAND_bytes(fake_key, sizeof fake_key) != 1)
        memset(fake_key, 0x5a, sizeof fake_key);
}

/* A verifier for a login that has none: a stable salt, keys nothing matches. */
static void scram_fake(struct sasl_session *s)
{
    struct userdb_scram *sc = &s->scram;
    memset(sc, 0, sizeof *sc);
    sc->iterations = SCRAM_FAKE_ITER;
    unsigned mdlen = 0;
    uint8_t mac[EVP_MAX_MD_SIZE];
    const char *who = s->login ? s->login : "";
    CRYPTO_THREAD_run_once(&fake_once, fake_key_init);
    if (!HMAC(EVP_sha256(), fake_key, sizeof fake_key, (const uint8_t *)who, strlen(who), mac,
              &mdlen))
        memset(mac, 0, sizeof mac);
    memcpy(sc->salt, mac, 16);
    sc->salt_len = 16;
    if (RAND_bytes(sc->stored_key, sizeof sc->stored_key) != 1)
        memset(sc->stored_key, 0, sizeof sc->stored_key);
    OPENSSL_cleanse(mac, sizeof mac);
}

/* saslname (RFC 5802 §5.1): "=2C" is ',', "=3D" is '=', any other '=' is an
   error. Writes the decoded name NUL-terminated to out (at least n+1). */
static bool saslname(const char *s, size_t n, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i + 2 < n && s[i + 1] == '2' && s[i + 2] == 'C')
                out[o++] = ',';
            else if (i + 2 < n && s[i + 1] == '3' && s[i + 2] == 'D')
                out[o++] = '=';
            else
                return false;
            i += 2;
        } else if (s[i] == ',' || s[i] == '\0') {
            return false;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return true;
}

/* Length of the attribute value at m[0..n) (up to the next ','). */
static size_t attr_len(const char *m, size_t n)
{
    const char *c = memchr(m, ',', n);
    return c ? (size_t)(c - m) : n;
}

static bool printable_nonce(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return false;
    return true;
}

/* client-first-message (RFC 5802 §7); replies with server-first-message. */
static enum sasl_status scram_first(struct sasl_session *s, const struct userdb *db, const char *m,
                                    size_t n, char *out, size_t outmax)
{
    if (memchr(m, '\0', n))
        return end(s, SASL_MALFORMED);
    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
    if (n >= 2 && m[0] == 'p' && m[1] == '=')
        return end(s, SASL_FAILED); /* channel binding: not offered */
    if (n < 3 || (m[0] != 'n' && m[0] != 'y') || m[1] != ',')
        return end(s, SASL_MALFORMED);
    size_t pos = 2;
    char *authzid = NULL;
    size_t azlen = 0;
    if (m[pos] != ',') {
        size_t l = attr_len(m + pos, n - pos);
        if (l < 3 || m[pos] != 'a' || m[pos + 1] != '=' || pos + l >= n)
            return end(s, SASL_MALFORMED);
        authzid = xmalloc(l);
        if (!saslname(m + pos + 2, l - 2, authzid, &azlen) || azlen == 0) {
            free(authzid);
            return end(s, SASL_MALFORMED);
        }
        pos += l;
    }
    if (pos >= n || m[pos] != ',') {
        free(authzid);
        return end(s, SASL_MALFORMED);
    }
    pos++;
    s->gs2_header = xstrndup(m, pos);
    const char *bare = m + pos;
    size_t blen = n - pos;

    /* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
    enum sasl_status st = SASL_MALFORMED;
    char *user = NULL;
    size_t ulen = 0, p = 0;
    if (blen >= 2 && bare[0] == 'm' && bare[1] == '=') {
        st = SASL_FAILED; /* mandatory extensions: none is supported */
        goto out;
    }
    size_t l = attr_len(bare, blen);
    if (l < 3 || bare[0] != 'n' || bare[1] != '=' || l >= blen)
        goto out;
    user = xmalloc(l);
    if (!saslname(bare + 2, l - 2, user, &ulen) || ulen == 0)
        goto out;
    p = l + 1;
    l = attr_len(bare + p, blen - p);
    if (l < 3 || bare[p] != 'r' || bare[p + 1] != '=' || !printable_nonce(bare + p + 2, l - 2))
        goto out;
    const char *cnonce = bare + p + 2;
    size_t cnlen = l - 2;
    p += l;
    while (p < blen) { /* extensions: "," attr-val; ignored */
        l = attr_len(bare + p + 1, blen - p - 1);
        if (l < 2 || bare[p + 1 + 1] != '=')
            goto out;
        p += 1 + l;
    }

    const struct userdb_entry *e = claim(s, db, user, ulen);
    if (authzid && (azlen != ulen || !ascii_nieq(authzid, user, ulen)))
        s->deny = true;
    if (e && e->has_scram)
        s->scram = e->scram;
    else {
        s->deny = true;
        scram_fake(s);
    }

    uint8_t rnd[SCRAM_NONCE_BYTES];
    char snonce[SCRAM_NONCE_BYTES / 3 * 4 + 1];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        st = SASL_FAILED;
        goto out;
    }
    sasl_b64_encode(rnd, sizeof rnd, snonce, sizeof snonce);
    size_t nlen = cnlen + strlen(snonce);
    s->nonce = xmalloc(nlen + 1);
    memcpy(s->nonce, cnonce, cnlen);
    memcpy(s->nonce + cnlen, snonce, strlen(snonce) + 1);
    char salt[sizeof s->scram.salt / 3 * 4 + 5];
    sasl_b64_encode(s->scram.salt, s->scram.salt_len, salt, sizeof salt);
    size_t sflen = 2 + nlen + 3 + strlen(salt) + 3 + 10 + 1;
    s->server_first = xmalloc(sflen);
    snprintf(s->server_first, sflen, "r=%s,s=%s,i=%u", s->nonce, salt,
             (unsigned)s->scram.iterations);
    if (strlen(s->server_first) / 3 * 4 + 5 > SASL_MAX_CHALLENGE) {
        st = SASL_MALFORMED; /* the client's nonce is too long to echo */
        goto out;
    }
    s->client_first_bare = xstrndup(bare, blen);
    free_secret(user, ulen + 1);
    free(authzid);
    return challenge(s, ST_SCRAM_FINAL, s->server_first, strlen(s->server_first), out, outmax);
out:
    if (user)
        free_secret(user, ulen + 1);
    free(authzid);
    return end(s, st);
}

/* client-final-message (RFC 5802 §7); verifies the proof, replies with
   server-final-message. */
static enum sasl_status scram_final(struct sasl_session *s, const char *m, size_t n, char *out,
                                    size_t outmax)
{
    if (memchr(m, '\0', n))
        return end(s, SASL_MALFORMED);
    /* channel-binding "," nonce ["," extensions] "," proof */
    size_t l = attr_len(m, n);
    if (l < 2 || m[0] != 'c' || m[1] != '=' || l >= n)
        return end(s, SASL_MALFORMED);
    uint8_t cb[SASL_MAX_LINE / 4 * 3];
    size_t cblen;
    if (sasl_b64_decode(m + 2, l - 2, cb, sizeof cb, &cblen) != 0)
        return end(s, SASL_MALFORMED);
    bool cb_ok = cblen == strlen(s->gs2_header) && memcmp(cb, s->gs2_header, cblen) == 0;
    size_t p = l + 1;
    l = attr_len(m + p, n - p);
    if (l < 3 || m[p] != 'r' || m[p + 1] != '=' || p + l >= n)
        return end(s, SASL_MALFORMED);
    bool nonce_ok = l - 2 == strlen(s->nonce) && memcmp(m + p + 2, s->nonce, l - 2) == 0;
    /* the proof is the last attribute */
    size_t pp = n;
    while (pp > p + l && !(m[pp - 1] == ',' && pp + 2 <= n && m[pp] == 'p' && m[pp + 1] == '='))
        pp--;
    if (pp <= p + l)
        return end(s, SASL_MALFORMED);
    size_t without_proof = pp - 1;
    uint8_t proof[32];
    size_t prlen;
    if (memchr(m + pp, ',', n - pp) ||
        sasl_b64_decode(m + pp + 2, n - pp - 2, proof, sizeof proof, &prlen) != 0 || prlen != 32)
        return end(s, SASL_MALFORMED);
    if (!cb_ok || !nonce_ok)
        return end(s, SASL_FAILED);

    /* AuthMessage = client-first-message-bare "," server-first-message ","
                     client-final-message-without-proof */
    size_t b = strlen(s->client_first_bare), f = strlen(s->server_first);
    size_t alen = b + 1 + f + 1 + without_proof;
    char *auth = xmalloc(alen);
    memcpy(auth, s->client_first_bare, b);
    auth[b] = ',';
    memcpy(auth + b + 1, s->server_first, f);
    auth[b + 1 + f] = ',';
    memcpy(auth + b + 2 + f, m, without_proof);

    uint8_t sig[EVP_MAX_MD_SIZE], key[32], h[32], ssig[EVP_MAX_MD_SIZE];
    unsigned siglen = 0, ssiglen = 0;
    bool ok = HMAC(EVP_sha256(), s->scram.stored_key, 32, (uint8_t *)auth, alen, sig, &siglen) &&
              siglen == 32;
    for (size_t i = 0; i < 32; i++)
        key[i] = proof[i] ^ sig[i];
    ok = ok && SHA256(key, sizeof key, h) != NULL &&
         CRYPTO_memcmp(h, s->scram.stored_key, 32) == 0 && !s->deny;
    ok = ok &&
         HMAC(EVP_sha256(), s->scram.server_key, 32, (uint8_t *)auth, alen, ssig, &ssiglen) !=
             NULL &&
         ssiglen == 32;
    char final[2 + 45];
    if (ok) {
        memcpy(final, "v=", 2);
        sasl_b64_encode(ssig, 32, final + 2, sizeof final - 2);
    }
    OPENSSL_cleanse(sig, sizeof sig);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(h, sizeof h);
    OPENSSL_cleanse(ssig, sizeof ssig);
    OPENSSL_cleanse(proof, sizeof proof);
    free_secret(auth, alen);
    if (!ok)
        return end(s, SASL_FAILED);
    s->verified = true;
    return challenge(s, ST_SCRAM_ACK, final, strlen(final), out, outmax);
}

/* ---------------------------------------------------------------------
 * The exchange
 */

/* A decoded response m[0..n) in the current state. */
static enum sasl_status respond(struct sasl_session *s, const struct userdb *db, const char *m,
                                size_t n, char *out, size_t outmax)
{
    switch (s->state) {
    case ST_PLAIN:
        if (n == 0)
            return end(s, SASL_MALFORMED);
        return plain_response(s, db, m, n);
    case ST_LOGIN_USER:
        claim(s, db, m, n);
        return challenge(s, ST_LOGIN_PASS, "Password:", 9, out, outmax);
    case ST_LOGIN_PASS:
        return want_check(s, m, n);
    case ST_CRAM:
        return cram_response(s, db, m, n);
    case ST_SCRAM_FIRST:
        return scram_first(s, db, m, n, out, outmax);
    case ST_SCRAM_FINAL:
        return scram_final(s, m, n, out, outmax);
    default:
        return end(s, SASL_FAILED);
    }
}

enum sasl_status sasl_start(struct sasl_session *s, const struct userdb *db, const char *initial,
                            size_t len, char *out, size_t outmax)
{
    if (!s)
        return SASL_FAILED;
    if (s->state != ST_START)
        return end(s, SASL_FAILED);
    if (out && outmax)
        out[0] = '\0';
    if (!initial) {
        switch (s->mech) {
        case SASL_PLAIN:
            return challenge(s, ST_PLAIN, NULL, 0, out, outmax);
        case SASL_LOGIN:
            return challenge(s, ST_LOGIN_USER, "Username:", 9, out, outmax);
        case SASL_CRAM_MD5:
            return cram_start(s, out, outmax);
        case SASL_SCRAM_SHA_256:
            return challenge(s, ST_SCRAM_FIRST, NULL, 0, out, outmax);
        }
        return end(s, SASL_FAILED);
    }
    switch (s->mech) {
    case SASL_PLAIN:
        s->state = ST_PLAIN;
        break;
    case SASL_LOGIN: /* some clients send the user name at once */
        s->state = ST_LOGIN_USER;
        break;
    case SASL_SCRAM_SHA_256:
        s->state = ST_SCRAM_FIRST;
        break;
    case SASL_CRAM_MD5: /* the server speaks first: no initial response */
        if (len == 1 && initial[0] == '*')
            return end(s, SASL_CANCELLED);
        return end(s, SASL_MALFORMED);
    }
    char *m;
    size_t n;
    enum sasl_status st = decode(initial, len, true, &m, &n);
    if (st != SASL_CONTINUE)
        return end(s, st);
    st = respond(s, db, m, n, out, outmax);
    free_secret(m, n + 1);
    return st;
}

enum sasl_status sasl_step(struct sasl_session *s, const struct userdb *db, const char *line,
                           size_t len, char *out, size_t outmax)
{
    if (!s)
        return SASL_FAILED;
    if (out && outmax)
        out[0] = '\0';
    switch (s->state) {
    case ST_PLAIN:
    case ST_LOGIN_USER:
    case ST_LOGIN_PASS:
    case ST_CRAM:
    case ST_SCRAM_FIRST:
    case ST_SCRAM_FINAL:
        break;
    case ST_SCRAM_ACK:
        if (line && len == 1 && line[0] == '*')
            return end(s, SASL_CANCELLED);
        return end(s, len == 0 && s->verified ? SASL_SUCCESS : SASL_MALFORMED);
    default:
        return end(s, SASL_FAILED);
    }
    char *m;
    size_t n;
    enum sasl_status st = decode(line, len, false, &m, &n);
    if (st != SASL_CONTINUE)
        return end(s, st);
    st = respond(s, db, m, n, out, outmax);
    free_secret(m, n + 1);
    return st;
}

void sasl_check_password(struct sasl_session *s)
{
    if (!s || s->state != ST_CHECK)
        return;
    bool ok = userdb_verify_password(s->hash, s->password, s->password_len);
    s->verified = ok && s->hash && !s->deny;
    free_secret(s->password, s->password_len);
    s->password = NULL;
    s->password_len = 0;
    s->state = ST_CHECKED;
}

enum sasl_status sasl_finish(struct sasl_session *s)
{
    if (!s)
        return SASL_FAILED;
    if (s->state != ST_CHECKED)
        return end(s, SASL_FAILED);
    return end(s, s->verified ? SASL_SUCCESS : SASL_FAILED);
}
