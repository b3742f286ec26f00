/*
 * logline - one key=value log message as one JSON object (see logline.h for
 * the rules; RFC 8259 §7 for the string escapes, RFC 3629 for UTF-8).
 *
 * The message is read as a sequence of tokens (fields, a parenthesised text,
 * bare words) by next_token(), three times: once to find the qid for
 * "trace", once to write the fields in order, once to gather the bare words
 * into "msg". Repeated names are counted in a fixed table on the stack
 * (struct names), so nothing is allocated and a line costs linear time.
 */
#include "core/logline.h"
#include "core/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum tok_kind {
    TOK_FIELD, /* key=value */
    TOK_TEXT,  /* (text) */
    TOK_WORD,  /* anything else */
};

/* One token: offsets into the message. */
struct tok {
    enum tok_kind kind;
    size_t k, klen; /* the key (TOK_FIELD) */
    size_t v, vlen; /* the value, the text without its parentheses, or the word */
};

/* Bounded output: writes stop at cap - 1 and set over. */
struct out {
    char *p;    /* the caller's buffer */
    size_t cap; /* its size */
    size_t len; /* octets written */
    bool over;  /* something did not fit */
};

static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Length of the key of a "key=" at s[p..len), or 0. */
static size_t key_at(const char *s, size_t len, size_t p)
{
    size_t q = p;
    while (q < len && is_key_char(s[q]))
        q++;
    return q > p && q < len && s[q] == '=' ? q - p : 0;
}

static size_t skip_spaces(const char *s, size_t len, size_t p)
{
    while (p < len && s[p] == ' ')
        p++;
    return p;
}

/* Does what follows position p (after a closing quote or parenthesis) look
   like the end of the value: only spaces, or spaces and then "key=" or "("? */
static bool ends_value(const char *s, size_t len, size_t p)
{
    if (p < len && s[p] != ' ')
        return false;
    p = skip_spaces(s, len, p);
    return p == len || s[p] == '(' || key_at(s, len, p) > 0;
}

/* A closing character at q is a candidate when the end or a space follows it. */
static bool closes(const char *s, size_t len, size_t q)
{
    return q + 1 == len || s[q + 1] == ' ';
}

/* The quoted value whose opening quote is at s[i]; sets the value, returns the
   position after the token. */
static size_t take_quoted(const char *s, size_t len, size_t i, struct tok *t)
{
    size_t first = len; /* first candidate */
    for (size_t q = i + 1; q < len; q++) {
        if (s[q] != '"' || !closes(s, len, q))
            continue;
        if (ends_value(s, len, q + 1)) {
            t->v = i + 1;
            t->vlen = q - i - 1;
            return q + 1;
        }
        if (first == len)
            first = q;
    }
    t->v = i + 1;
    t->vlen = first - i - 1;
    return first == len ? len : first + 1;
}

/* The parenthesised text whose '(' is at s[i]. A ')' followed by a space or
   the end may close it; the first such that balances the '(' and looks like
   the end of the value wins, else the first that looks like the end, else
   the first that balances, else the last. */
static size_t take_paren(const char *s, size_t len, size_t i, struct tok *t)
{
    size_t ending = len, balanced = len, last = len;
    long depth = 0;
    for (size_t q = i; q < len; q++) {
        if (s[q] == '(') {
            depth++;
            continue;
        }
        if (s[q] != ')')
            continue;
        depth--;
        if (!closes(s, len, q))
            continue;
        bool ends = ends_value(s, len, q + 1);
        if (depth == 0 && ends) {
            ending = balanced = q;
            break;
        }
        if (ends && ending == len)
            ending = q;
        if (depth == 0 && balanced == len)
            balanced = q;
        last = q;
    }
    size_t end = ending != len ? ending : balanced != len ? balanced : last;
    t->v = i + 1;
    if (end == len) {
        t->vlen = len - i - 1;
        return len;
    }
    t->vlen = end - i - 1;
    return end + 1;
}

/* The next token at or after *pos; false at the end of the message. */
static bool next_token(const char *s, size_t len, size_t *pos, struct tok *t)
{
    size_t i = skip_spaces(s, len, *pos);
    if (i >= len) {
        *pos = len;
        return false;
    }
    memset(t, 0, sizeof *t);
    if (s[i] == '(') {
        t->kind = TOK_TEXT;
        *pos = take_paren(s, len, i, t);
        return true;
    }
    size_t klen = key_at(s, len, i);
    if (klen > 0) {
        t->kind = TOK_FIELD;
        t->k = i;
        t->klen = klen;
        size_t v = i + klen + 1;
        if (v < len && s[v] == '"') {
            *pos = take_quoted(s, len, v, t);
            return true;
        }
        if (v < len && s[v] == '<') {
            for (size_t q = v + 1; q < len; q++) {
                if (s[q] == '>' && closes(s, len, q)) {
                    t->v = v + 1;
                    t->vlen = q - v - 1;
                    *pos = q + 1;
                    return true;
                }
            }
        }
        size_t e = v;
        while (e < len && s[e] != ' ')
            e++;
        t->v = v;
        t->vlen = e - v;
        *pos = e;
        return true;
    }
    t->kind = TOK_WORD;
    size_t e = i;
    while (e < len && s[e] != ' ')
        e++;
    t->v = i;
    t->vlen = e - i;
    *pos = e;
    return true;
}

/* The name a token gives its field ("text" for TOK_TEXT). */
static void tok_name(const char *s, const struct tok *t, const char **name, size_t *n)
{
    if (t->kind == TOK_TEXT) {
        *name = "text";
        *n = 4;
    } else {
        *name = s + t->k;
        *n = t->klen;
    }
}

static void put(struct out *o, const char *s, size_t n)
{
    if (o->over || n >= o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_s(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* s[0..n) as the inside of a JSON string. */
static void put_escaped(struct out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of octets to copy as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
            if (l > 0) {
                i += l;
                continue;
            }
        }
        put(o, s + run, i - run);
        char esc[7];
        const char *e = esc;
        size_t elen = 2;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c >= 0x80) {
                e = "\\ufffd";
            } else {
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
            }
            elen = 6;
            break;
        }
        put(o, e, elen);
        i++;
        run = i;
    }
    put(o, s + run, n - run);
}

/* ,"name[_N]": with N the number of earlier uses of the name plus one. */
static void put_name(struct out *o, const char *name, size_t n, size_t used)
{
    put(o, ",\"", 2);
    put_escaped(o, name, n);
    if (used > 0) {
        char num[24];
        int k = snprintf(num, sizeof num, "_%zu", used + 1);
        put(o, num, (size_t)k);
    }
    put(o, "\":", 2);
}

static bool is_reserved(const char *name, size_t n)
{
    static const char *const reserved[] = {"ts", "level", "trace", "msg"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == n && memcmp(reserved[i], name, n) == 0)
            return true;
    return false;
}

/* How many fields before position `before` (a token start) are named name,
   counting a reserved name as used once already. */
static size_t name_uses(const char *s, size_t len, size_t before, const char *name, size_t n)
{
    size_t used = is_reserved(name, n) ? 1 : 0;
    size_t pos = 0;
    struct tok t;
    while (pos < before && next_token(s, len, &pos, &t)) {
        if (pos > before)
            break;
        if (t.kind == TOK_WORD)
            continue;
        const char *tn;
        size_t tl;
        tok_name(s, &t, &tn, &tl);
        if (tl == n && memcmp(tn, name, n) == 0)
            used++;
    }
    return used;
}

/* The names met so far, for the _2, _3... of repeated ones: an open-addressing
   table on the stack, so a line of many fields costs linear time. Names are
   offsets into the message (NAME_TEXT for the "text" of a parenthesised
   text). When it fills up (more distinct names than a 4 KiB line can hold),
   name_uses() counts by scanning instead. */
#define NAME_SLOTS 2048
#define NAME_FULL (NAME_SLOTS / 4 * 3)
#define NAME_TEXT UINT32_MAX

struct name_slot {
    uint32_t off;  /* where the name is in the message, or NAME_TEXT */
    uint16_t len;  /* its length; 0: the slot is free */
    uint16_t uses; /* fields named so before the current one */
};

struct names {
    struct name_slot slot[NAME_SLOTS];
    size_t used; /* slots taken */
    bool full;   /* too many names (or too long a message): scan instead */
};

static const char *slot_name(const char *msg, const struct name_slot *sl)
{
    return sl->off == NAME_TEXT ? "text" : msg + sl->off;
}

/* How many fields before this one had the name; counts this one. */
static size_t names_use(struct names *t, const char *msg, size_t len, size_t start,
                        const struct tok *tk)
{
    const char *name;
    size_t n;
    tok_name(msg, tk, &name, &n);
    if (!t->full && (len >= NAME_TEXT || n > UINT16_MAX))
        t->full = true;
    if (t->full)
        return name_uses(msg, len, start, name, n);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    for (size_t i = h % NAME_SLOTS;; i = (i + 1) % NAME_SLOTS) {
        struct name_slot *sl = &t->slot[i];
        if (sl->len == 0) {
            if (t->used == NAME_FULL) {
                t->full = true;
                return name_uses(msg, len, start, name, n);
            }
            t->used++;
            sl->off = tk->kind == TOK_TEXT ? NAME_TEXT : (uint32_t)tk->k;
            sl->len = (uint16_t)n;
            sl->uses = is_reserved(name, n) ? 2 : 1;
            return sl->uses - 1;
        }
        if (sl->len == n && memcmp(slot_name(msg, sl), name, n) == 0) {
            if (sl->uses < UINT16_MAX)
                sl->uses++;
            return sl->uses - 1;
        }
    }
}

size_t logline_json(const char *ts, const char *level, const char *msg, size_t len, char *out,
                    size_t cap)
{
    if (cap == 0)
        return 0;
    struct out o = {out, cap, 0, false};
    put_s(&o, "{\"ts\":\"");
    put_escaped(&o, ts, strlen(ts));
    put_s(&o, "\",\"level\":\"");
    put_escaped(&o, level, strlen(level));
    put(&o, "\"", 1);

    size_t pos = 0;
    struct tok t;
    while (next_token(msg, len, &pos, &t)) {
        if (t.kind == TOK_FIELD && t.klen == 3 && memcmp(msg + t.k, "qid", 3) == 0) {
            if (t.vlen > 0) {
                put_s(&o, ",\"trace\":\"");
                put_escaped(&o, msg + t.v, t.vlen);
                put(&o, "\"", 1);
            }
            break;
        }
    }

    pos = 0;
    size_t start = 0;
    bool words = false;
    struct names names;
    names.used = 0;
    names.full = false;
    memset(names.slot, 0, sizeof names.slot);
    while (start = skip_spaces(msg, len, pos), next_token(msg, len, &pos, &t)) {
        if (t.kind == TOK_WORD) {
            words = true;
            continue;
        }
        const char *name;
        size_t n;
        tok_name(msg, &t, &name, &n);
        put_name(&o, name, n, names_use(&names, msg, len, start, &t));
        put(&o, "\"", 1);
        put_escaped(&o, msg + t.v, t.vlen);
        put(&o, "\"", 1);
    }

    if (words) {
        put_s(&o, ",\"msg\":\"");
        pos = 0;
        bool first = true;
        while (next_token(msg, len, &pos, &t)) {
            if (t.kind != TOK_WORD)
                continue;
            if (!first)
                put(&o, " ", 1);
            first = false;
            put_escaped(&o, msg + t.v, t.vlen);
        }
        put(&o, "\"", 1);
    }
    put(&o, "}", 1);
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    out[o.len] = '\0';
    return o.len;
}
