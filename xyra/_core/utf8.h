/* Incremental UTF-8 validation (RFC 3629), resumable at any byte.
 *
 * The state carries how many continuation bytes are still expected and which range
 * the next one must fall in, so a text message split over fragments and reads is
 * checked as it arrives and fails at the first byte that makes it invalid.
 * Pure ASCII runs are skipped 8 bytes at a time.
 */
#ifndef XYRA_UTF8_H
#define XYRA_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XYRA_UTF8_ACCEPT 0u
#define XYRA_UTF8_REJECT 0xFFu

/* state = need | (range << 2); range picks the bounds of the next continuation byte */
static const unsigned char xyra_utf8_lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const unsigned char xyra_utf8_hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

/* Returns the new state: XYRA_UTF8_ACCEPT at a character boundary,
 * XYRA_UTF8_REJECT once invalid (sticky), anything else mid-character. */
static inline uint32_t xyra_utf8_feed(uint32_t state, const unsigned char *s, size_t n)
{
    size_t i = 0;
    if (state == XYRA_UTF8_REJECT)
        return state;
    while (i < n) {
        unsigned char b;
        if (state == XYRA_UTF8_ACCEPT) {
            uint64_t w;
            while (i + 8 <= n) {
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                i++;
            if (i >= n)
                break;
            b = s[i++];
            if (b >= 0xC2 && b <= 0xDF)
                state = 1;
            else if (b == 0xE0)
                state = 2 | (1 << 2);
            else if (b == 0xED)
                state = 2 | (2 << 2);
            else if (b >= 0xE1 && b <= 0xEF)
                state = 2;
            else if (b == 0xF0)
                state = 3 | (3 << 2);
            else if (b >= 0xF1 && b <= 0xF3)
                state = 3;
            else if (b == 0xF4)
                state = 3 | (4 << 2);
            else
                return XYRA_UTF8_REJECT;
        } else {
            uint32_t range = state >> 2;
            b = s[i++];
            if (b < xyra_utf8_lo[range] || b > xyra_utf8_hi[range])
                return XYRA_UTF8_REJECT;
            state = (state & 3u) - 1u; /* next continuation bytes take the full range */
        }
    }
    return state;
}

#endif
