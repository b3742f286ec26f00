/*
 * params - ESMTP parameters of MAIL FROM and RCPT TO, and xtext.
 *
 * RFCs: 5321 §4.1.2 (Mail-parameters: esmtp-keyword ["=" esmtp-value],
 * separated by SP), 1870 §3 (SIZE), 6152 §2 (BODY=7BIT / 8BITMIME; BINARYMIME
 * of RFC 3030 is refused because Tern does not offer it), 6531 §3.4
 * (SMTPUTF8, no value), 3461 §4 (xtext), §4.1 (NOTIFY), §4.2 (ORCPT),
 * §4.3 (RET), §4.4 (ENVID).
 *
 * A parameter of an extension the server did not advertise is refused like
 * an unknown one (555 5.5.4). Pure: results go into the caller's structs,
 * error replies are static.
 *
 * ENVID is kept as sent (xtext) in a 100-octet field, so an ENVID whose
 * encoded form is longer than 100 octets is refused even if it decodes to
 * fewer. ENVID and ORCPT must decode to printable US-ASCII (RFC 3461 §4.2,
 * §4.4), so "+00" or "+0D+0A" never reach a DSN.
 */
#include "smtp/smtp.h"

#include <string.h>

#include "core/util.h"

static const struct smtp_status st_syntax = {501, "5.5.4", "Syntax error in parameters"};
static const struct smtp_status st_unsupported = {555, "5.5.4", "Unsupported parameter"};
static const struct smtp_status st_duplicate = {501, "5.5.4", "Duplicate parameter"};
static const struct smtp_status st_size = {501, "5.5.4", "Bad SIZE value"};
static const struct smtp_status st_body = {501, "5.5.4", "Bad BODY value"};
static const struct smtp_status st_binarymime = {555, "5.5.4", "BODY=BINARYMIME not supported"};
static const struct smtp_status st_smtputf8 = {501, "5.5.4", "SMTPUTF8 takes no value"};
static const struct smtp_status st_ret = {501, "5.5.4", "Bad RET value"};
static const struct smtp_status st_envid = {501, "5.5.4", "Bad ENVID value"};
static const struct smtp_status st_notify = {501, "5.5.4", "Bad NOTIFY value"};
static const struct smtp_status st_orcpt = {501, "5.5.4", "Bad ORCPT value"};
static const struct smtp_status st_auth = {501, "5.5.4", "Bad AUTH value"};

enum kw {
    KW_SIZE,
    KW_BODY,
    KW_SMTPUTF8,
    KW_RET,
    KW_ENVID,
    KW_NOTIFY,
    KW_ORCPT,
    KW_AUTH,
    KW_UNKNOWN,
};

/* One keyword[=value] item. */
struct item {
    const char *kw;
    size_t kwlen;
    const char *val; /* NULL when there is no "=" */
    size_t vallen;
};

static const struct {
    const char *name;
    enum kw kw;
    bool rcpt; /* a RCPT parameter, else MAIL */
} keywords[] = {
    {"SIZE", KW_SIZE, false},  {"BODY", KW_BODY, false},   {"SMTPUTF8", KW_SMTPUTF8, false},
    {"RET", KW_RET, false},    {"ENVID", KW_ENVID, false}, {"NOTIFY", KW_NOTIFY, true},
    {"ORCPT", KW_ORCPT, true}, {"AUTH", KW_AUTH, false},
};

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_hex_upper(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'A' + 10);
}

bool smtp_xtext_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            if (len - i < 3 || !is_hex_upper(s[i + 1]) || !is_hex_upper(s[i + 2]))
                return false;
            i += 2;
        } else if (s[i] < '!' || s[i] > '~' || s[i] == '=') {
            return false;
        }
    }
    return true;
}

long smtp_xtext_decode(const char *str, size_t len, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t k = 0;
    if (outlen == 0 || !smtp_xtext_valid(str, len))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '+') {
            c = (unsigned char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
            i += 2;
        }
        if (k >= outlen - 1)
            return -1;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return (long)k;
}

/* Valid xtext that decodes to printable US-ASCII (SP included) of at most max octets. */
static bool xtext_printable(const char *s, size_t len, size_t max)
{
    char tmp[SMTP_ORCPT_MAX + 1];
    if (max >= sizeof tmp)
        max = sizeof tmp - 1;
    long n = smtp_xtext_decode(s, len, tmp, max + 1);
    if (n < 0)
        return false;
    for (long i = 0; i < n; i++)
        if ((unsigned char)tmp[i] < 0x20 || (unsigned char)tmp[i] > 0x7e)
            return false;
    return true;
}

/*
 * Take the next item from s[*pos..len); returns NULL with it->kwlen == 0 at the
 * end, or the syntax error. esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
 * esmtp-value = 1*(%d33-60 / %d62-126).
 */
static const struct smtp_status *next_item(const char *str, size_t len, size_t *pos,
                                           struct item *it)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = *pos;
    memset(it, 0, sizeof *it);
    while (i < len && s[i] == ' ')
        i++;
    if (i >= len) {
        *pos = i;
        return NULL;
    }
    size_t k = i;
    if (!is_alnum(s[k]))
        return &st_syntax;
    while (k < len && (is_alnum(s[k]) || s[k] == '-'))
        k++;
    it->kw = str + i;
    it->kwlen = k - i;
    if (k < len && s[k] == '=') {
        size_t v = ++k;
        while (k < len && s[k] != ' ') {
            if (s[k] < 33 || s[k] > 126 || s[k] == '=')
                return &st_syntax;
            k++;
        }
        if (k == v)
            return &st_syntax;
        it->val = str + v;
        it->vallen = k - v;
    } else if (k < len && s[k] != ' ') {
        return &st_syntax;
    }
    *pos = k;
    return NULL;
}

static enum kw lookup(const struct item *it, bool rcpt)
{
    for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++) {
        size_t n = strlen(keywords[k].name);
        if (keywords[k].rcpt == rcpt && n == it->kwlen && ascii_nieq(it->kw, keywords[k].name, n))
            return keywords[k].kw;
    }
    return KW_UNKNOWN;
}

static bool val_is(const struct item *it, const char *word)
{
    size_t n = strlen(word);
    return it->vallen == n && ascii_nieq(it->val, word, n);
}

/* Is the extension behind this keyword advertised? */
static bool offered(enum kw kw, const struct smtp_ext *ext)
{
    if (ext == NULL)
        return false;
    switch (kw) {
    case KW_SIZE:
        return ext->size;
    case KW_BODY:
        return ext->eightbit;
    case KW_SMTPUTF8:
        return ext->smtputf8;
    case KW_RET:
    case KW_ENVID:
    case KW_NOTIFY:
    case KW_ORCPT:
        return ext->dsn;
    case KW_AUTH:
        return ext->auth;
    case KW_UNKNOWN:
        break;
    }
    return false;
}

/*
 * The next parameter of a MAIL (rcpt false) or RCPT (rcpt true) list: its item
 * and keyword. Returns NULL with it->kwlen == 0 at the end of the list; refuses
 * a keyword that is unknown or of an extension not offered (555), or repeated
 * (501). `seen` carries the keywords met so far.
 */
static const struct smtp_status *next_param(const char *s, size_t len, size_t *pos, bool rcpt,
                                            const struct smtp_ext *ext, unsigned *seen,
                                            struct item *it, enum kw *kw)
{
    const struct smtp_status *st = next_item(s, len, pos, it);
    if (st != NULL || it->kwlen == 0)
        return st;
    *kw = lookup(it, rcpt);
    if (*kw == KW_UNKNOWN || !offered(*kw, ext))
        return &st_unsupported;
    if (*seen & (1u << *kw))
        return &st_duplicate;
    *seen |= 1u << *kw;
    return NULL;
}

static const struct smtp_status *mail_params(const char *s, size_t len, const struct smtp_ext *ext,
                                             struct smtp_mail_params *out)
{
    size_t pos = 0;
    unsigned seen = 0;
    memset(out, 0, sizeof *out);
    for (;;) {
        struct item it;
        enum kw kw;
        const struct smtp_status *st = next_param(s, len, &pos, false, ext, &seen, &it, &kw);
        if (st != NULL || it.kwlen == 0)
            return st;
        switch (kw) {
        case KW_SIZE:
            if (it.val == NULL || it.vallen == 0 || it.vallen > 64)
                return &st_size;
            for (size_t k = 0; k < it.vallen; k++)
                if (it.val[k] < '0' || it.val[k] > '9')
                    return &st_size;
            /* A number past 2^64-1 is a size past any limit (552 from the caller), not a
               syntax error; it saturates instead of wrapping. */
            if (!parse_u64(it.val, it.vallen, &out->size))
                out->size = UINT64_MAX;
            out->has_size = true;
            break;
        case KW_BODY:
            if (it.val == NULL)
                return &st_body;
            if (val_is(&it, "7BIT"))
                out->body = SMTP_BODY_7BIT;
            else if (val_is(&it, "8BITMIME"))
                out->body = SMTP_BODY_8BITMIME;
            else if (val_is(&it, "BINARYMIME"))
                return &st_binarymime;
            else
                return &st_body;
            break;
        case KW_SMTPUTF8:
            if (it.val != NULL)
                return &st_smtputf8;
            out->smtputf8 = true;
            break;
        case KW_RET:
            if (it.val == NULL)
                return &st_ret;
            if (val_is(&it, "FULL"))
                out->ret = SMTP_RET_FULL;
            else if (val_is(&it, "HDRS"))
                out->ret = SMTP_RET_HDRS;
            else
                return &st_ret;
            break;
        case KW_ENVID:
            if (it.val == NULL || it.vallen > SMTP_ENVID_MAX ||
                !xtext_printable(it.val, it.vallen, SMTP_ENVID_MAX))
                return &st_envid;
            memcpy(out->envid, it.val, it.vallen);
            out->envid[it.vallen] = '\0';
            out->has_envid = true;
            break;
        case KW_AUTH:
            /* RFC 4954 §5: AUTH=<> or an xtext-encoded mailbox. */
            if (it.val == NULL || it.vallen == 0 || it.vallen > SMTP_AUTH_PARAM_MAX ||
                !smtp_xtext_valid(it.val, it.vallen))
                return &st_auth;
            memcpy(out->auth, it.val, it.vallen);
            out->auth[it.vallen] = '\0';
            out->has_auth = true;
            break;
        default:
            return &st_unsupported;
        }
    }
}

/* NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ), case-insensitive. */
static bool parse_notify(const char *s, size_t len, unsigned *out)
{
    unsigned bits = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        struct item w = {.val = s + i, .vallen = j - i};
        if (val_is(&w, "NEVER"))
            bits |= SMTP_NOTIFY_NEVER;
        else if (val_is(&w, "SUCCESS"))
            bits |= SMTP_NOTIFY_SUCCESS;
        else if (val_is(&w, "FAILURE"))
            bits |= SMTP_NOTIFY_FAILURE;
        else if (val_is(&w, "DELAY"))
            bits |= SMTP_NOTIFY_DELAY;
        else
            return false;
        if (j >= len)
            break;
        i = j + 1;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return false;
    *out = bits;
    return true;
}

/* ORCPT=addr-type ";" xtext, addr-type an atom (e.g. "rfc822"). */
static bool parse_orcpt(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    if (len > SMTP_ORCPT_MAX)
        return false;
    while (i < len && s[i] != ';') {
        if (!is_alnum(s[i]) && (s[i] == 0 || strchr("!#$%&'*+-/=?^_`{|}~", s[i]) == NULL))
            return false;
        i++;
    }
    if (i == 0 || i >= len || i + 1 == len)
        return false;
    return xtext_printable(str + i + 1, len - i - 1, SMTP_ORCPT_MAX);
}

static const struct smtp_status *rcpt_params(const char *s, size_t len, const struct smtp_ext *ext,
                                             struct smtp_rcpt_params *out)
{
    size_t pos = 0;
    unsigned seen = 0;
    memset(out, 0, sizeof *out);
    for (;;) {
        struct item it;
        enum kw kw;
        const struct smtp_status *st = next_param(s, len, &pos, true, ext, &seen, &it, &kw);
        if (st != NULL || it.kwlen == 0)
            return st;
        switch (kw) {
        case KW_NOTIFY:
            if (it.val == NULL || !parse_notify(it.val, it.vallen, &out->notify))
                return &st_notify;
            break;
        case KW_ORCPT:
            if (it.val == NULL || !parse_orcpt(it.val, it.vallen))
                return &st_orcpt;
            memcpy(out->orcpt, it.val, it.vallen);
            out->orcpt[it.vallen] = '\0';
            out->has_orcpt = true;
            break;
        default:
            return &st_unsupported;
        }
    }
}

/* The public entry points leave *out all zero when they fail. */
const struct smtp_status *smtp_mail_params_parse(const char *s, size_t len,
                                                 const struct smtp_ext *ext,
                                                 struct smtp_mail_params *out)
{
    const struct smtp_status *st = mail_params(s, len, ext, out);
    if (st != NULL)
        memset(out, 0, sizeof *out);
    return st;
}

const struct smtp_status *smtp_rcpt_params_parse(const char *s, size_t len,
                                                 const struct smtp_ext *ext,
                                                 struct smtp_rcpt_params *out)
{
    const struct smtp_status *st = rcpt_params(s, len, ext, out);
    if (st != NULL)
        memset(out, 0, sizeof *out);
    return st;
}
