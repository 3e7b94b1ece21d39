"""Build script for Xyra's compiled modules: the core (``xyra/_core``) and the
benchmark's load client (``xyra/bench/_drivers``, which shares the core's C headers).

Build modes come from the environment:

* default: release build, ``-O3``, C and Cython assertions compiled out. The hot
  path works on raw pointers whose bounds the parser state machine checks itself;
  Cython's own bounds checks stay on for indexed Python objects;
* ``XYRA_DEBUG=1``: ``-O0 -g3``, C ``assert`` and Cython ``assert`` on, plus
  ``initializedcheck``/``nonecheck``, and the ``XYRA_DEBUG`` macro (debug.h) that
  compiles in the ``if XYRA_DEBUG:`` invariant checks and live-object counters;
* ``XYRA_SANITIZE=1``: ASan + UBSan instrumentation (implies the debug directives).
  Run the tests with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``.
* ``XYRA_FUZZ=1``: clang (``CC=clang`` unless ``CC`` is set), libFuzzer coverage +
  ASan + UBSan, ``-O1 -g``, the debug directives. Run only under atheris with its
  ``asan_with_fuzzer.so`` preloaded: see tests/fuzz/run.sh and docs/fuzzing.md.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
CORE = ROOT / "xyra" / "_core"
DRIVERS = ROOT / "xyra" / "bench" / "_drivers"
# Every folder of .pyx sources; each one's modules are named after its package.
SOURCES = (CORE, DRIVERS)
# The bench's socket drivers use epoll and Linux's recv(MSG_TRUNC) on TCP (the bench
# itself is Linux-only: it pins with sched_setaffinity and reads /proc).
LINUX_ONLY = {"sockload"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _flag("XYRA_DEBUG")
SANITIZE = _flag("XYRA_SANITIZE")
FUZZ = _flag("XYRA_FUZZ")
MODE = "fuzz" if FUZZ else "sanitize" if SANITIZE else "debug" if DEBUG else "release"
if FUZZ:
    os.environ.setdefault("CC", "clang")  # LDSHARED follows CC (setuptools' customize_compiler)


def _compile_args() -> tuple[list[str], list[str], list[tuple[str, str | None]]]:
    if sys.platform == "win32":
        return (["/O2"], [], [])
    cflags = ["-std=c99", "-fno-strict-aliasing", "-Wno-unused-function"]
    ldflags: list[str] = []
    macros: list[tuple[str, str | None]] = []
    if FUZZ:
        fuzz = ["-fsanitize=fuzzer-no-link,address,undefined", "-fno-sanitize-recover=undefined"]
        cflags += [*fuzz, "-fno-omit-frame-pointer", "-g", "-O1", "-UNDEBUG"]
        ldflags += fuzz
        macros.append(("XYRA_DEBUG", "1"))
    elif DEBUG or SANITIZE:
        cflags += ["-O0", "-g3", "-UNDEBUG"]
        macros.append(("XYRA_DEBUG", "1"))
    else:
        cflags += ["-O3", "-DNDEBUG", "-DCYTHON_WITHOUT_ASSERTIONS"]
    if SANITIZE:
        san = [
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=undefined",
        ]
        cflags += san
        ldflags += san
    return cflags, ldflags, macros


def _directives() -> dict[str, object]:
    debug = DEBUG or SANITIZE or FUZZ
    return {
        "language_level": "3",
        "embedsignature": True,
        "cdivision": True,
        "boundscheck": True,
        "wraparound": True,
        "initializedcheck": debug,
        "nonecheck": debug,
    }


def _extensions() -> list[Extension]:
    from Cython.Build import cythonize
    from Cython.Compiler import Options

    # Cython's warnings fail the build, as aiohttp does it (cython -Werror).
    Options.warning_errors = True

    cflags, ldflags, macros = _compile_args()
    exts = [
        Extension(
            ".".join(pyx.relative_to(ROOT).with_suffix("").parts),
            [str(pyx.relative_to(ROOT))],
            # The drivers include the core's headers too (mask.h).
            include_dirs=[str(CORE.relative_to(ROOT))],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            define_macros=macros,
            libraries=["z"] if pyx.stem in {"deflate"} else [],
        )
        for folder in SOURCES
        for pyx in sorted(folder.glob("*.pyx"))
        if sys.platform.startswith("linux") or pyx.stem not in LINUX_ONLY
    ]
    return cythonize(
        exts,
        compiler_directives=_directives(),
        # One folder of generated C per build mode, so switching modes never
        # reuses C generated with the other mode's directives.
        build_dir=f"build/cython-{MODE}",
        force=_flag("XYRA_FORCE_CYTHON"),
        # Translate the modules in parallel processes where they fork (Linux); with the
        # spawn start method (macOS) the pool would re-run this file in each child.
        nthreads=(os.cpu_count() or 1) if sys.platform.startswith("linux") else 0,
    )


class ModeAwareBuildExt(build_ext):
    """Keep each build mode's objects apart, and rebuild when the mode changes.

    Without this, switching e.g. from the sanitizer build back to release with
    ``--inplace`` could silently keep the previous mode's shared objects.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # compile the modules in parallel unless told (-j N)
            self.parallel = os.cpu_count() or 1
        self.build_temp = str(Path(self.build_temp).parent / f"temp-{MODE}")
        stamp = ROOT / "build" / "last-inplace-mode"
        if self.inplace:
            previous = stamp.read_text().strip() if stamp.exists() else None
            if previous != MODE:
                self.force = True
            stamp.parent.mkdir(exist_ok=True)
            stamp.write_text(MODE)


setup(ext_modules=_extensions(), cmdclass={"build_ext": ModeAwareBuildExt})
