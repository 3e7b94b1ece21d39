/* Growing a bytes object that is still private to its creator.
 *
 * A connection reads a big binary frame straight into a bytes object it alone
 * references, growing it as data arrives, and hands that same object to the
 * application when the frame is complete: no copy of the payload at the end.
 */
#ifndef XYRA_BYTESBUF_H
#define XYRA_BYTESBUF_H
#include <Python.h>

/* Resize ``obj`` (a bytes object whose only reference the caller gives away) to n
 * bytes: a new reference to the resized object, or NULL with MemoryError set
 * (``obj`` is then freed). */
static inline PyObject* xyra_bytes_resized(PyObject* obj, Py_ssize_t n)
{
    if (_PyBytes_Resize(&obj, n) < 0)
        return NULL;
    return obj;
}
#endif
