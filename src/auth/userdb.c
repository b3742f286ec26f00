/*
 * userdb - the user store file and password checks (see userdb.h for the
 * format; docs/auth.md says which entries enable which SASL mechanisms).
 *
 * userdb_parse() is pure: it reads logical lines as the configuration does
 * (src/config/internal.h: '#' comment lines, continuation lines starting with
 * white space), checks every field of every line, and reports each problem as
 * "file:line: message". Accepted hashes are yescrypt "$y$", bcrypt
 * "$2b$"/"$2y$"/"$2a$" and sha512-crypt "$6$" in the form crypt(3) writes
 * them; DES, MD5 and every other form are refused. The SCRAM-SHA-256
 * verifier is RFC 5803's "ITER:SALT:STOREDKEY:SERVERKEY" (RFC 5802 §3, with
 * at least 4096 iterations as RFC 7677 §4 asks). Entries are kept sorted by
 * login for binary search; the store owns every string and is immutable.
 *
 * userdb_verify_password() and userdb_hash_password() call libxcrypt
 * (crypt_rn, crypt_gensalt_rn): slow by design, for worker threads and
 * `tern user` only.
 */
#include "auth/userdb.h"
#include "auth/sasl.h"
#include "config/internal.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* The largest user store userdb_load() reads. */
#define USERDB_FILE_MAX (16 * 1024 * 1024)
/* The longest password userdb_verify_password() hashes (longer ones fail). */
#define USERDB_MAX_PASSWORD 1024
/* RFC 7677 §4: at least 4096 iterations. */
#define USERDB_SCRAM_MIN_ITER 4096

/* A yescrypt hash, at the cost `tern user` uses, of a string that is no one's
   password: what an unknown user's password is checked against. */
static const char dummy_hash[] =
    "$y$j9T$22eWDy.tdJiWOOLk.tdO11$7Fnr1kzbfj4tUp6Z4IXlAMA8pJ447iq4VCokYrFrgL/";

struct userdb {
    size_t n;
    struct userdb_entry *v; /* sorted by login */
    unsigned *lines;        /* line of each entry (while parsing) */
    bool any_cram;          /* some entry has cram_secret */
    bool any_scram;         /* some entry has has_scram */
};

struct uparser {
    struct cfg_diag_ctx dc;
    struct userdb *db;
};

static void entry_free(struct userdb_entry *e)
{
    free(e->login);
    free(e->hash);
    if (e->cram_secret) {
        OPENSSL_cleanse(e->cram_secret, strlen(e->cram_secret));
        free(e->cram_secret);
    }
    OPENSSL_cleanse(&e->scram, sizeof e->scram);
    free(e->networks);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* crypt(3)'s base64 alphabet. */
static bool is_crypt64(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '/';
}

/*
 * Is s a complete hash of one of the accepted kinds? Checks the prefix, the
 * number of '$'-separated fields, their characters and the length of the hash
 * part, so a truncated or foreign hash is caught when the file is read rather
 * than failing every login.
 */
static bool hash_ok(const char *s, size_t n)
{
    if (n >= 4 && s[0] == '$' && s[1] == '2' && (s[2] == 'a' || s[2] == 'b' || s[2] == 'y') &&
        s[3] == '$') {
        /* $2b$NN$ + 22 salt + 31 hash */
        if (n != 60 || s[4] < '0' || s[4] > '3' || s[5] < '0' || s[5] > '9' || s[6] != '$')
            return false;
        unsigned cost = (unsigned)(s[4] - '0') * 10 + (unsigned)(s[5] - '0');
        if (cost < 4 || cost > 31)
            return false;
        for (size_t i = 7; i < n; i++)
            if (!is_crypt64(s[i]))
                return false;
        return true;
    }
    size_t plen, want_last;
    size_t want_fields; /* fields after the prefix, the last being the hash */
    if (n > 3 && memcmp(s, "$y$", 3) == 0) {
        plen = 3;
        want_fields = 3; /* params $ salt $ hash */
        want_last = 43;
    } else if (n > 3 && memcmp(s, "$6$", 3) == 0) {
        plen = 3;
        want_fields = 0; /* [rounds=N $] salt $ hash: checked below */
        want_last = 86;
    } else {
        return false;
    }
    size_t nf = 0, fstart = plen, last = 0;
    for (size_t i = plen; i <= n; i++) {
        if (i < n && s[i] != '$') {
            /* sha512-crypt's "rounds=N" field has '=' */
            if (!is_crypt64(s[i]) && !(s[i] == '=' && nf == 0 && plen == 3 && s[1] == '6'))
                return false;
            continue;
        }
        if (i == fstart)
            return false; /* an empty field */
        nf++;
        last = i - fstart;
        fstart = i + 1;
    }
    if (last != want_last)
        return false;
    if (want_fields)
        return nf == want_fields;
    /* $6$: salt$hash, or rounds=N$salt$hash */
    if (nf == 2)
        return memchr(s + plen, '=', n - plen) == NULL;
    if (nf != 3 || strncmp(s + plen, "rounds=", 7) != 0)
        return false;
    const char *d = memchr(s + plen, '$', n - plen);
    uint64_t rounds;
    return parse_u64(s + plen + 7, (size_t)(d - s) - plen - 7, &rounds) && rounds >= 1000 &&
           rounds <= 999999999;
}

/* "address" or "address/prefix"; an IPv4-mapped IPv6 network becomes the
   IPv4 network it maps. Host bits are an error. */
static bool parse_cidr(const char *s, size_t n, struct config_cidr *out)
{
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    int fam = cfg_parse_ip(s, alen, out->addr);
    if (fam == 0)
        return false;
    unsigned max = fam == AF_INET ? 32 : 128;
    uint64_t prefix = max;
    if (slash && (!parse_u64(slash + 1, n - alen - 1, &prefix) || prefix > max))
        return false;
    out->family = fam;
    out->prefix = (unsigned)prefix;
    for (unsigned bit = out->prefix; bit < max; bit++)
        if (out->addr[bit / 8] & (0x80u >> (bit % 8)))
            return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (fam == AF_INET6 && out->prefix >= 96 && memcmp(out->addr, mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
    }
    return true;
}

/* Decode base64 field s[0..n) of exactly want octets (or 1..max when want is 0). */
static bool b64_field(const char *s, size_t n, uint8_t *out, size_t want, size_t max,
                      size_t *outlen)
{
    size_t got;
    if (sasl_b64_decode(s, n, out, max, &got) != 0)
        return false;
    if (want ? got != want : got == 0)
        return false;
    if (outlen)
        *outlen = got;
    return true;
}

/* "ITER:SALT:STOREDKEY:SERVERKEY" */
static bool parse_scram(const char *s, size_t n, struct userdb_scram *sc)
{
    const char *f[4];
    size_t fl[4];
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ':')
            continue;
        if (k == 4)
            return false;
        f[k] = s + start;
        fl[k++] = i - start;
        start = i + 1;
    }
    uint64_t iter;
    if (k != 4 || !parse_u64(f[0], fl[0], &iter) || iter < USERDB_SCRAM_MIN_ITER ||
        iter > UINT32_MAX)
        return false;
    sc->iterations = (uint32_t)iter;
    return b64_field(f[1], fl[1], sc->salt, 0, sizeof sc->salt, &sc->salt_len) &&
           b64_field(f[2], fl[2], sc->stored_key, 32, sizeof sc->stored_key, NULL) &&
           b64_field(f[3], fl[3], sc->server_key, 32, sizeof sc->server_key, NULL);
}

/* One option "name=value" of e; false after reporting an error. */
static bool parse_option(struct uparser *p, unsigned line, struct userdb_entry *e, const char *s,
                         size_t n, unsigned *seen)
{
    const char *eq = memchr(s, '=', n);
    size_t nlen = eq ? (size_t)(eq - s) : n;
    while (nlen > 0 && is_space(s[nlen - 1]))
        nlen--;
    const char *v = eq ? eq + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    while (vlen > 0 && is_space(*v)) {
        v++;
        vlen--;
    }
    static const char *const names[] = {"scram-sha-256", "cram-md5", "networks"};
    unsigned which = 3;
    for (unsigned i = 0; i < 3; i++)
        if (nlen == strlen(names[i]) && ascii_nieq(s, names[i], nlen))
            which = i;
    if (which == 3 || !eq) {
        cfg_error(&p->dc, line,
                  "%s: \"%.*s%s\" is not an option (scram-sha-256=, cram-md5= or networks=)",
                  e->login, CFG_EX(s, n));
        return false;
    }
    if (*seen & (1u << which)) {
        cfg_error(&p->dc, line, "%s: %s= given twice", e->login, names[which]);
        return false;
    }
    *seen |= 1u << which;
    if (vlen == 0) {
        cfg_error(&p->dc, line, "%s: %s= has no value", e->login, names[which]);
        return false;
    }
    switch (which) {
    case 0:
        if (!parse_scram(v, vlen, &e->scram)) {
            cfg_error(&p->dc, line,
                      "%s: scram-sha-256= must be ITER:SALT:STOREDKEY:SERVERKEY (at least %u "
                      "iterations; salt, 32-octet keys in base64)",
                      e->login, USERDB_SCRAM_MIN_ITER);
            return false;
        }
        e->has_scram = true;
        return true;
    case 1:
        e->cram_secret = xstrndup(v, vlen);
        return true;
    default: {
        size_t pos = 0;
        while (pos < vlen) {
            while (pos < vlen && (v[pos] == ',' || is_space(v[pos])))
                pos++;
            size_t t = pos;
            while (pos < vlen && v[pos] != ',' && !is_space(v[pos]))
                pos++;
            if (t == pos)
                break;
            struct config_cidr c;
            if (!parse_cidr(v + t, pos - t, &c)) {
                cfg_error(&p->dc, line,
                          "%s: networks: \"%.*s%s\" is not a numeric address or network "
                          "address/prefix without host bits (as 10.0.0.0/8 or ::1/128)",
                          e->login, CFG_EX(v + t, pos - t));
                return false;
            }
            e->networks = xreallocarray(e->networks, e->nnetworks + 1, sizeof *e->networks);
            e->networks[e->nnetworks++] = c;
        }
        if (e->nnetworks == 0) {
            cfg_error(&p->dc, line, "%s: networks= has no networks", e->login);
            return false;
        }
        return true;
    }
    }
}

static void user_line(void *arg, const struct cfg_lline *l)
{
    struct uparser *p = arg;
    unsigned line = l->nseg ? l->seg[0].line : 0;
    const char *c1 = memchr(l->s, ':', l->len);
    if (!c1) {
        cfg_error(&p->dc, line,
                  "syntax error: expected \"user@domain:HASH[:OPTIONS]\", not "
                  "\"%.*s%s\"",
                  CFG_EX(l->s, l->len));
        return;
    }
    size_t llen = (size_t)(c1 - l->s);
    if (!cfg_valid_address(l->s, llen)) {
        cfg_error(&p->dc, line, "\"%.*s%s\" is not a login (user@domain)", CFG_EX(l->s, llen));
        return;
    }
    struct userdb_entry e;
    memset(&e, 0, sizeof e);
    e.login = xstrndup(l->s, llen);
    ascii_lower(e.login);

    const char *h = c1 + 1;
    const char *end = l->s + l->len;
    const char *c2 = memchr(h, ':', (size_t)(end - h));
    size_t hlen = (size_t)((c2 ? c2 : end) - h);
    if (!hash_ok(h, hlen)) {
        if (hlen == 0)
            cfg_error(&p->dc, line, "%s: no password hash", e.login);
        else
            cfg_error(&p->dc, line,
                      "%s: the password hash must be a complete yescrypt ($y$), bcrypt ($2b$, "
                      "$2y$, $2a$) or sha512-crypt ($6$) hash",
                      e.login);
        entry_free(&e);
        return;
    }
    e.hash = xstrndup(h, hlen);

    bool bad = false;
    unsigned seen = 0;
    const char *o = c2 ? c2 + 1 : end;
    while (c2 && !bad) {
        const char *semi = memchr(o, ';', (size_t)(end - o));
        const char *oe = semi ? semi : end;
        const char *a = o, *b = oe;
        while (a < b && is_space(*a))
            a++;
        while (b > a && is_space(b[-1]))
            b--;
        if (a == b) {
            if (semi || o != c2 + 1) { /* "user:hash:" alone has no options */
                cfg_error(&p->dc, cfg_lline_line(l, (size_t)(o - l->s)),
                          "%s: an empty option (two ';' in a row or one at the end)", e.login);
                bad = true;
            }
        } else if (!parse_option(p, cfg_lline_line(l, (size_t)(a - l->s)), &e, a, (size_t)(b - a),
                                 &seen)) {
            bad = true;
        }
        if (!semi)
            break;
        o = semi + 1;
    }
    if (bad) {
        entry_free(&e);
        return;
    }
    struct userdb *db = p->db;
    db->v = xreallocarray(db->v, db->n + 1, sizeof *db->v);
    db->lines = xreallocarray(db->lines, db->n + 1, sizeof *db->lines);
    db->v[db->n] = e;
    db->lines[db->n++] = line;
}

static int cmp_index(const void *x, const void *y, void *arg)
{
    const struct userdb *db = arg;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = strcmp(db->v[i].login, db->v[j].login);
    return c ? c : (db->lines[i] < db->lines[j] ? -1 : db->lines[i] > db->lines[j]);
}

/* Sort the entries by login, then line, keeping lines[] in step. */
static void sort_entries(struct userdb *db)
{
    size_t n = db->n;
    if (n < 2)
        return;
    size_t *idx = xmallocarray(n, sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof *idx, cmp_index, db);
    struct userdb_entry *v = xmallocarray(n, sizeof *v);
    unsigned *lines = xmallocarray(n, sizeof *lines);
    for (size_t i = 0; i < n; i++) {
        v[i] = db->v[idx[i]];
        lines[i] = db->lines[idx[i]];
    }
    free(db->v);
    free(db->lines);
    db->v = v;
    db->lines = lines;
    free(idx);
}

struct userdb *userdb_parse(const char *text, size_t len, const char *file,
                            struct config_diags *diags)
{
    struct uparser p;
    memset(&p, 0, sizeof p);
    p.dc.diags = diags;
    p.dc.file = file;
    p.db = xcalloc(1, sizeof *p.db);
    cfg_read_lines(text ? text : "", text ? len : 0, false, &p.dc, user_line, &p);

    struct userdb *db = p.db;
    sort_entries(db);
    for (size_t i = 1; i < db->n; i++)
        if (strcmp(db->v[i].login, db->v[i - 1].login) == 0)
            cfg_error(&p.dc, db->lines[i], "%s: given twice (first at line %u)", db->v[i].login,
                      db->lines[i - 1]);
    for (size_t i = 0; i < db->n; i++) {
        db->any_cram |= db->v[i].cram_secret != NULL;
        db->any_scram |= db->v[i].has_scram;
    }
    free(db->lines);
    db->lines = NULL;
    if (p.dc.errors > 0) {
        userdb_free(db);
        return NULL;
    }
    return db;
}

struct userdb *userdb_load(const char *file, struct config_diags *diags)
{
    size_t len;
    char *text = cfg_read_file(file, USERDB_FILE_MAX, &len, diags);
    if (!text)
        return NULL;
    struct userdb *db = userdb_parse(text, len, file, diags);
    OPENSSL_cleanse(text, len); /* it may hold cram-md5 secrets */
    free(text);
    return db;
}

void userdb_free(struct userdb *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        entry_free(&db->v[i]);
    free(db->v);
    free(db->lines);
    free(db);
}

size_t userdb_count(const struct userdb *db)
{
    return db ? db->n : 0;
}

const struct userdb_entry *userdb_entry_at(const struct userdb *db, size_t i)
{
    return db && i < db->n ? &db->v[i] : NULL;
}

const struct userdb_entry *userdb_find(const struct userdb *db, const char *login)
{
    if (!db || !login)
        return NULL;
    char key[320];
    size_t n = strlen(login);
    if (n >= sizeof key)
        return NULL;
    memcpy(key, login, n + 1);
    ascii_lower(key);
    size_t lo = 0, hi = db->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, db->v[mid].login);
        if (c == 0)
            return &db->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

bool userdb_any_cram(const struct userdb *db)
{
    return db && db->any_cram;
}

bool userdb_any_scram(const struct userdb *db)
{
    return db && db->any_scram;
}

static bool cidr_match(const struct config_cidr *c, const unsigned char *addr)
{
    size_t bytes = c->prefix / 8;
    if (memcmp(c->addr, addr, bytes) != 0)
        return false;
    unsigned rest = c->prefix % 8;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (c->addr[bytes] & mask) == (addr[bytes] & mask);
}

bool userdb_network_allows(const struct userdb_entry *e, const struct sockaddr *sa)
{
    if (!e)
        return false;
    if (e->nnetworks == 0)
        return true;
    if (!sa)
        return false;
    unsigned char addr[16];
    int family;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        memcpy(addr, &sin->sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        family = IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) ? AF_INET : AF_INET6;
        memcpy(addr, sin6->sin6_addr.s6_addr + (family == AF_INET ? 12 : 0),
               family == AF_INET ? 4 : 16);
    } else {
        return false;
    }
    for (size_t i = 0; i < e->nnetworks; i++)
        if (e->networks[i].family == family && cidr_match(&e->networks[i], addr))
            return true;
    return false;
}

bool userdb_verify_password(const char *hash, const char *password, size_t password_len)
{
    bool real = hash != NULL;
    const char *setting = real ? hash : dummy_hash;
    size_t slen = strlen(setting);
    /* crypt_rn takes a C string: a password with a NUL or too long cannot match,
       but still costs one hash. */
    bool usable = password && password_len <= USERDB_MAX_PASSWORD &&
                  memchr(password, '\0', password_len) == NULL;
    char *pw = xmalloc(USERDB_MAX_PASSWORD + 1);
    size_t n = usable ? password_len : 0;
    if (n)
        memcpy(pw, password, n);
    pw[n] = '\0';
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    const char *out = crypt_rn(pw, setting, cd, (int)sizeof *cd);
    bool ok = out && strlen(out) == slen && CRYPTO_memcmp(out, setting, slen) == 0;
    OPENSSL_cleanse(cd, sizeof *cd);
    OPENSSL_cleanse(pw, USERDB_MAX_PASSWORD + 1);
    free(cd);
    free(pw);
    return ok && real && usable;
}

char *userdb_hash_password(const char *password)
{
    if (!password)
        return NULL;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, (int)sizeof salt))
        return NULL;
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    const char *out = crypt_rn(password, salt, cd, (int)sizeof *cd);
    char *hash = out && out[0] == '$' ? xstrdup(out) : NULL;
    OPENSSL_cleanse(cd, sizeof *cd);
    free(cd);
    return hash;
}

bool userdb_scram_make(const char *password, size_t password_len, uint32_t iterations,
                       const uint8_t *salt, size_t salt_len, struct userdb_scram *out)
{
    if (!password || !salt || salt_len == 0 || salt_len > sizeof out->salt ||
        iterations < USERDB_SCRAM_MIN_ITER || password_len > INT_MAX || iterations > INT_MAX)
        return false;
    uint8_t salted[32], client_key[32];
    unsigned mdlen = 0;
    bool ok = PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, (int)iterations,
                                EVP_sha256(), sizeof salted, salted) == 1 &&
              HMAC(EVP_sha256(), salted, sizeof salted, (const uint8_t *)"Client Key", 10,
                   client_key, &mdlen) != NULL &&
              mdlen == 32 && SHA256(client_key, sizeof client_key, out->stored_key) != NULL &&
              HMAC(EVP_sha256(), salted, sizeof salted, (const uint8_t *)"Server Key", 10,
                   out->server_key, &mdlen) != NULL &&
              mdlen == 32;
    out->iterations = iterations;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return ok;
}

char *userdb_scram_format(const struct userdb_scram *sc)
{
    char salt[((sizeof sc->salt + 2) / 3) * 4 + 1], sk[45], svk[45];
    if (!sc || sc->salt_len == 0 || sc->salt_len > sizeof sc->salt ||
        !sasl_b64_encode(sc->salt, sc->salt_len, salt, sizeof salt) ||
        !sasl_b64_encode(sc->stored_key, 32, sk, sizeof sk) ||
        !sasl_b64_encode(sc->server_key, 32, svk, sizeof svk))
        return NULL;
    size_t n = 10 + 1 + strlen(salt) + 1 + strlen(sk) + 1 + strlen(svk) + 1;
    char *s = xmalloc(n);
    snprintf(s, n, "%u:%s:%s:%s", (unsigned)sc->iterations, salt, sk, svk);
    return s;
}
