# The debug-build switch (debug.h): 1 when setup.py builds with XYRA_DEBUG, else the
# constant 0, so `if XYRA_DEBUG:` blocks cost nothing in a release build.
cdef extern from "debug.h":
    const int XYRA_DEBUG
