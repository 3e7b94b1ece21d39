/* Debug-build switch for the Cython core, after uvloop's includes/debug.h.
 *
 * setup.py defines XYRA_DEBUG=1 in the debug, sanitizer and fuzz builds. Code under
 * `if XYRA_DEBUG:` (invariant checks, live-object counters) is then compiled in; in a
 * release build the condition is the constant 0 and the C compiler deletes the block.
 */
#ifndef XYRA_DEBUG_H
#define XYRA_DEBUG_H

#ifndef XYRA_DEBUG
#define XYRA_DEBUG 0
#endif

#endif
