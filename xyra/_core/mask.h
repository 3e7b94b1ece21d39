/* In-place XOR masking of WebSocket payloads (RFC 6455 section 5.3).
 *
 * Works a machine word (and, with SSE2, 16 bytes) at a time. `phase` is how many
 * payload bytes came before `data` in the same frame, so a frame that arrives in
 * several reads is unmasked piece by piece with the key rotated to match.
 */
#ifndef XYRA_MASK_H
#define XYRA_MASK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void xyra_mask(unsigned char *data, size_t len,
                             const unsigned char key[4], size_t phase)
{
    unsigned char k[8];
    uint64_t k64, w;
    size_t i = 0;
    for (int j = 0; j < 8; j++)
        k[j] = key[(phase + (size_t)j) & 3];
    memcpy(&k64, k, 8);
#if defined(__SSE2__)
    if (len >= 16) {
        __m128i kv = _mm_set_epi64x((long long)k64, (long long)k64);
        for (; i + 64 <= len; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(data + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(data + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(data + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(data + i + 48));
            _mm_storeu_si128((__m128i *)(data + i), _mm_xor_si128(a, kv));
            _mm_storeu_si128((__m128i *)(data + i + 16), _mm_xor_si128(b, kv));
            _mm_storeu_si128((__m128i *)(data + i + 32), _mm_xor_si128(c, kv));
            _mm_storeu_si128((__m128i *)(data + i + 48), _mm_xor_si128(d, kv));
        }
        for (; i + 16 <= len; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(data + i));
            _mm_storeu_si128((__m128i *)(data + i), _mm_xor_si128(a, kv));
        }
    }
#endif
    /* 16 is a multiple of 8 (and of 4), so the key phase is unchanged here. */
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        w ^= k64;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= k[i & 7];
}

#endif
