/* Process-wide malloc tuning for a server that moves large messages.
 *
 * glibc returns freed memory at the top of the heap to the kernel past M_TRIM_THRESHOLD
 * and serves big requests with fresh mmaps; a 1 MiB echo then page-faults and zeroes
 * every page of every message. Raising both thresholds keeps recently freed message
 * buffers for reuse. Other C libraries: nothing to do.
 */
#ifndef XYRA_TUNE_H
#define XYRA_TUNE_H
#if defined(__GLIBC__)
#include <malloc.h>
static inline int xyra_tune_malloc(void)
{
    return mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024) && mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}
#else
static inline int xyra_tune_malloc(void) { return 0; }
#endif
#endif
