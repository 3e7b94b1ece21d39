/* The opening handshake's fast path: a request head scanned in place, and the
 * Sec-WebSocket-Accept value (SHA-1 + base64), for protocol.pyx.
 *
 * xyra_scan_upgrade() accepts only the canonical form of an upgrade request, the form
 * every WebSocket client sends: "GET /target HTTP/1.1", CRLF line ends, header names
 * that are tokens, values of visible ASCII, space and tab, no body. It answers
 * 1 (a canonical request whose RFC 6455 checks pass: Upgrade, Connection, version 13,
 * a 16-byte key) or 0: anything else, incomplete, odd, or to be refused, which the
 * caller hands to the general path (httptools and xyra/handshake.py, the reference
 * semantics). So this scanner never refuses anything itself: it can only be too strict.
 *
 * Header values are kept as offsets, the way llhttp hands them to httptools: leading
 * spaces and tabs skipped, trailing ones kept (callers trim where handshake.py strips).
 *
 * SHA-1 is written here from FIPS 180-4 (section 6.1), not linked from OpenSSL: its
 * only input is the validated 24-byte key and the RFC's GUID, and a header keeps the
 * wheels free of a libcrypto dependency. tests/unit/test_upgrade_fast.py checks it
 * against hashlib (OpenSSL) on the FIPS vectors and on random messages of every length
 * up to a few blocks.
 */
#ifndef XYRA_UPGRADE_H
#define XYRA_UPGRADE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- SHA-1 ------------------------------------------------------------------------ */

static inline uint32_t xyra_rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* One 64-byte block (FIPS 180-4 6.1.2). The schedule W[t] is kept in a 16-word ring,
 * and each group of 20 rounds has its own loop, so no round branches on t. */
#define XYRA_SHA1_W(t) \
    (w[(t) & 15] = xyra_rol32(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^ \
                              w[((t) + 2) & 15] ^ w[(t) & 15], 1))
#define XYRA_SHA1_ROUND(f, k, wt)                                   \
    do {                                                            \
        uint32_t t_ = xyra_rol32(a, 5) + (f) + e + (k) + (wt);      \
        e = d; d = c; c = xyra_rol32(b, 30); b = a; a = t_;         \
    } while (0)

static void xyra_sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[16];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    int t;
    for (t = 0; t < 16; t++)
        w[t] = ((uint32_t)p[4 * t] << 24) | ((uint32_t)p[4 * t + 1] << 16) |
               ((uint32_t)p[4 * t + 2] << 8) | (uint32_t)p[4 * t + 3];
    for (t = 0; t < 16; t++)
        XYRA_SHA1_ROUND((b & c) | (~b & d), 0x5A827999u, w[t]);
    for (; t < 20; t++)
        XYRA_SHA1_ROUND((b & c) | (~b & d), 0x5A827999u, XYRA_SHA1_W(t));
    for (; t < 40; t++)
        XYRA_SHA1_ROUND(b ^ c ^ d, 0x6ED9EBA1u, XYRA_SHA1_W(t));
    for (; t < 60; t++)
        XYRA_SHA1_ROUND((b & c) | (b & d) | (c & d), 0x8F1BBCDCu, XYRA_SHA1_W(t));
    for (; t < 80; t++)
        XYRA_SHA1_ROUND(b ^ c ^ d, 0xCA62C1D6u, XYRA_SHA1_W(t));
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

#undef XYRA_SHA1_W
#undef XYRA_SHA1_ROUND

/* The SHA-1 digest of data[0:n] into out[0:20]. */
static void xyra_sha1(const unsigned char *data, size_t n, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    unsigned char tail[128];
    size_t i = 0, rest, padded;
    uint64_t bits = (uint64_t)n * 8u;
    int k;
    for (; n - i >= 64; i += 64)
        xyra_sha1_block(h, data + i);
    rest = n - i;                      /* 0..63 bytes left */
    memcpy(tail, data + i, rest);
    tail[rest] = 0x80;
    padded = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, padded - rest - 1);
    for (k = 0; k < 8; k++)
        tail[padded - 1 - k] = (unsigned char)(bits >> (8 * k));
    xyra_sha1_block(h, tail);
    if (padded == 128)
        xyra_sha1_block(h, tail + 64);
    for (k = 0; k < 5; k++) {
        out[4 * k] = (unsigned char)(h[k] >> 24);
        out[4 * k + 1] = (unsigned char)(h[k] >> 16);
        out[4 * k + 2] = (unsigned char)(h[k] >> 8);
        out[4 * k + 3] = (unsigned char)h[k];
    }
}

/* ---- base64 and the accept value --------------------------------------------------- */

static const char xyra_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 of in[0:n] into out (4 * ceil(n / 3) characters, '=' padded); returns that count. */
static size_t xyra_base64(const unsigned char *in, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = xyra_b64[(v >> 18) & 63];
        out[o++] = xyra_b64[(v >> 12) & 63];
        out[o++] = xyra_b64[(v >> 6) & 63];
        out[o++] = xyra_b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = xyra_b64[(v >> 18) & 63];
        out[o++] = xyra_b64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = xyra_b64[(v >> 18) & 63];
        out[o++] = xyra_b64[(v >> 12) & 63];
        out[o++] = xyra_b64[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

#define XYRA_KEY_LEN 24
#define XYRA_ACCEPT_LEN 28

static inline int xyra_b64_symbol(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* Exactly the keys handshake.py's _KEY_16 accepts: 22 base64 symbols and "==". */
static int xyra_key_ok(const unsigned char *key, size_t n)
{
    size_t i;
    if (n != XYRA_KEY_LEN || key[22] != '=' || key[23] != '=')
        return 0;
    for (i = 0; i < 22; i++)
        if (!xyra_b64_symbol(key[i]))
            return 0;
    return 1;
}

/* Sec-WebSocket-Accept for a 24-byte key: base64(SHA-1(key + GUID)), 28 characters. */
static void xyra_accept(const unsigned char key[XYRA_KEY_LEN], char out[XYRA_ACCEPT_LEN])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[XYRA_KEY_LEN + 36];
    unsigned char digest[20];
    memcpy(buf, key, XYRA_KEY_LEN);
    memcpy(buf + XYRA_KEY_LEN, guid, 36);
    xyra_sha1(buf, sizeof buf, digest);
    xyra_base64(digest, 20, out);
}

/* ---- the request head -------------------------------------------------------------- */

enum {
    XYRA_H_HOST,
    XYRA_H_UPGRADE,
    XYRA_H_CONNECTION,
    XYRA_H_KEY,
    XYRA_H_VERSION,
    XYRA_H_PROTOCOL,
    XYRA_H_EXTENSIONS,
    XYRA_H_ORIGIN,
    XYRA_H_COUNT,
    XYRA_H_OTHER = -1,   /* a header the handshake ignores */
    XYRA_H_UNUSUAL = -2  /* one that changes the request's meaning: the general path */
};

typedef struct {
    size_t head_len;               /* the head, blank line included */
    size_t target, target_len;     /* the request target */
    size_t path_len;               /* its path: up to the first '?' */
    size_t val[XYRA_H_COUNT];      /* offsets of the values (leading OWS skipped) */
    size_t len[XYRA_H_COUNT];      /* their lengths (trailing OWS kept, as llhttp does) */
    unsigned char seen[XYRA_H_COUNT];
    int headers;                   /* header lines */
} xyra_head;

static inline unsigned char xyra_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* RFC 9110 tchar. */
static inline int xyra_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

/* Characters of an origin-form target taken here: RFC 3986 pchar, '/' and '?'. Anything
 * else ('#', quotes, braces, bytes over 0x7E...) goes the general way. */
static inline int xyra_target_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'':
    case '(': case ')': case '*': case '+': case ',': case ';': case '=': case ':':
    case '@': case '/': case '?': case '%':
        return 1;
    default:
        return 0;
    }
}

static inline int xyra_name_is(const unsigned char *p, const char *lower, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (xyra_lower(p[i]) != (unsigned char)lower[i])
            return 0;
    return 1;
}

/* Which header a name is: matched by length and first letter, then compared. */
static int xyra_header_kind(const unsigned char *p, size_t n)
{
    unsigned char c = xyra_lower(p[0]);
    switch (n) {
    case 4:
        if (c == 'h' && xyra_name_is(p, "host", 4)) return XYRA_H_HOST;
        break;
    case 6:
        if (c == 'o' && xyra_name_is(p, "origin", 6)) return XYRA_H_ORIGIN;
        if (c == 'e' && xyra_name_is(p, "expect", 6)) return XYRA_H_UNUSUAL;
        break;
    case 7:
        if (c == 'u' && xyra_name_is(p, "upgrade", 7)) return XYRA_H_UPGRADE;
        break;
    case 10:
        if (c == 'c' && xyra_name_is(p, "connection", 10)) return XYRA_H_CONNECTION;
        break;
    case 14:
        if (c == 'c' && xyra_name_is(p, "content-length", 14)) return XYRA_H_UNUSUAL;
        break;
    case 16:
        if (c == 'p' && xyra_name_is(p, "proxy-connection", 16)) return XYRA_H_UNUSUAL;
        break;
    case 17:
        if (c == 's' && xyra_name_is(p, "sec-websocket-key", 17)) return XYRA_H_KEY;
        if (c == 't' && xyra_name_is(p, "transfer-encoding", 17)) return XYRA_H_UNUSUAL;
        break;
    case 21:
        if (c == 's' && xyra_name_is(p, "sec-websocket-version", 21)) return XYRA_H_VERSION;
        break;
    case 22:
        if (c == 's' && xyra_name_is(p, "sec-websocket-protocol", 22)) return XYRA_H_PROTOCOL;
        break;
    case 24:
        if (c == 's' && xyra_name_is(p, "sec-websocket-extensions", 24))
            return XYRA_H_EXTENSIONS;
        break;
    }
    return XYRA_H_OTHER;
}

static inline int xyra_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* The length of p[0:n] without trailing spaces and tabs. */
static inline size_t xyra_rtrim(const unsigned char *p, size_t n)
{
    while (n && xyra_ows(p[n - 1]))
        n--;
    return n;
}

/* Whether `token` (lowercase) is one of the comma-separated, OWS-trimmed items of
 * p[0:n], compared case-insensitively (handshake.py's _has_token on ASCII values). */
static int xyra_has_token(const unsigned char *p, size_t n, const char *token, size_t tn)
{
    size_t i = 0;
    while (i <= n) {
        size_t start, end;
        while (i < n && xyra_ows(p[i]))
            i++;
        start = i;
        while (i < n && p[i] != ',')
            i++;
        end = start + xyra_rtrim(p + start, i - start);
        if (end - start == tn && xyra_name_is(p + start, token, tn))
            return 1;
        i++;  /* past the comma (or the end) */
    }
    return 0;
}

/* Scan the request head at p[0:n]; 1 if it is a canonical upgrade request that passes
 * the RFC 6455 checks (then *h describes it), 0 for anything else (see the top). */
static int xyra_scan_upgrade(const unsigned char *p, size_t n, size_t max_head,
                             int max_headers, xyra_head *h)
{
    size_t i, limit = n < max_head ? n : max_head;
    int kind;
    memset(h, 0, sizeof *h);
    /* The request line: GET SP origin-form SP HTTP/1.1 CRLF */
    if (limit < 16 || memcmp(p, "GET /", 5) != 0)
        return 0;
    h->target = 4;
    h->path_len = (size_t)-1;
    for (i = 4; i < limit && p[i] != ' '; i++) {
        if (!xyra_target_char(p[i]))
            return 0;
        if (p[i] == '?' && h->path_len == (size_t)-1)
            h->path_len = i - 4;
    }
    h->target_len = i - 4;
    if (h->path_len == (size_t)-1)
        h->path_len = h->target_len;
    if (limit - i < 11 || memcmp(p + i, " HTTP/1.1\r\n", 11) != 0)
        return 0;
    i += 11;
    /* Header lines, up to the blank line. */
    for (;;) {
        size_t name, name_len, value, end;
        if (limit - i < 2)
            return 0;                        /* incomplete, or over max_head */
        if (p[i] == '\r') {
            if (p[i + 1] != '\n')
                return 0;
            h->head_len = i + 2;
            break;
        }
        name = i;
        while (i < limit && xyra_tchar(p[i]))
            i++;
        if (i == limit || p[i] != ':' || i == name)
            return 0;                        /* no name, or not a token before ':' */
        name_len = i - name;
        i++;
        while (i < limit && xyra_ows(p[i]))
            i++;
        value = i;
        while (i < limit && ((p[i] >= 0x20 && p[i] <= 0x7E) || p[i] == '\t'))
            i++;
        if (limit - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
            return 0;                        /* a control byte, non-ASCII, bare CR/LF, or cut */
        end = i;
        i += 2;
        if (++h->headers > max_headers)
            return 0;
        kind = xyra_header_kind(p + name, name_len);
        if (kind == XYRA_H_UNUSUAL)
            return 0;
        if (kind >= 0) {
            if (h->seen[kind])
                return 0;                    /* a repeated handshake header */
            h->seen[kind] = 1;
            h->val[kind] = value;
            h->len[kind] = end - value;
        }
    }
    /* The checks of handshake.process_request, for the forms taken here. */
    if (!h->seen[XYRA_H_UPGRADE] ||
        !xyra_has_token(p + h->val[XYRA_H_UPGRADE], h->len[XYRA_H_UPGRADE], "websocket", 9))
        return 0;
    if (!h->seen[XYRA_H_CONNECTION] ||
        !xyra_has_token(p + h->val[XYRA_H_CONNECTION], h->len[XYRA_H_CONNECTION], "upgrade", 7))
        return 0;
    if (!h->seen[XYRA_H_VERSION] ||
        xyra_rtrim(p + h->val[XYRA_H_VERSION], h->len[XYRA_H_VERSION]) != 2 ||
        memcmp(p + h->val[XYRA_H_VERSION], "13", 2) != 0)
        return 0;
    if (!h->seen[XYRA_H_KEY] ||
        !xyra_key_ok(p + h->val[XYRA_H_KEY], xyra_rtrim(p + h->val[XYRA_H_KEY], h->len[XYRA_H_KEY])))
        return 0;
    return 1;
}

/* Whether an Origin value is exactly "<scheme>://<host>" for the Host value, compared
 * case-insensitively, with a host of letters, digits, '.', '-', '_' and an optional
 * ":port": then handshake.check_origin's default (same-origin) policy allows it.
 * 0 means "not decided here", not "refused". */
static int xyra_same_origin(const unsigned char *origin, size_t on, const unsigned char *host,
                            size_t hn, const char *scheme, size_t sn)
{
    size_t i;
    on = xyra_rtrim(origin, on);
    hn = xyra_rtrim(host, hn);
    if (hn == 0 || on != sn + 3 + hn)
        return 0;
    if (!xyra_name_is(origin, scheme, sn) || memcmp(origin + sn, "://", 3) != 0)
        return 0;
    for (i = 0; i < hn; i++) {
        unsigned char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':'))
            return 0;
        if (xyra_lower(c) != xyra_lower(origin[sn + 3 + i]))
            return 0;
    }
    return 1;
}

#endif
