"""Shared set-up of the atheris harnesses (see docs/fuzzing.md).

The harnesses fuzz the *compiled* core built with ``XYRA_FUZZ=1`` (clang, libFuzzer
coverage, ASan, UBSan). Such extensions only load with the sanitizer runtime and
libFuzzer in the process before Python, so ``prepare()`` re-executes the harness with
``LD_PRELOAD`` set to atheris' ``asan_with_fuzzer.so`` (ASan + UBSan + libFuzzer in one
library, built by atheris from the same clang that built the extensions when atheris is
installed from source; see tests/fuzz/run.sh).

Without atheris (``pytest tests/fuzz``) nothing here is used: the harnesses' check
functions run on whatever build is importable.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The test kit (kit.refcodec) for harnesses started as scripts; prepare() puts the fuzz
# tree's copy first.
if str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))

SANITIZER_ENV = {
    # Python's small-object allocator would hide overflows inside its arenas from ASan.
    "PYTHONMALLOC": "malloc",
    # CPython "leaks" by design at exit. A failed allocation surfaces as MemoryError
    # (which the harnesses report), and libFuzzer's -malloc_limit_mb still flags huge ones.
    "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}


def fuzz_tree() -> Path:
    """The source tree whose ``xyra`` is fuzzed: $XYRA_FUZZ_TREE, else this checkout."""
    return Path(os.environ.get("XYRA_FUZZ_TREE", str(REPO))).resolve()


def _runtime() -> str:
    import atheris

    lib = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not lib.exists():
        sys.exit(f"fuzz: {lib} is missing; install atheris from source (tests/fuzz/run.sh does)")
    return str(lib)


def prepare() -> None:
    """Make the fuzz build importable: re-exec under the sanitizer runtime if needed."""
    tree = fuzz_tree()
    stamp = tree / "build" / "last-inplace-mode"
    mode = stamp.read_text().strip() if stamp.exists() else "none"
    if mode != "fuzz":
        sys.exit(
            f"fuzz: {tree} holds a '{mode}' build, not XYRA_FUZZ=1 (its extensions would give "
            "the fuzzer no coverage); build one with tests/fuzz/run.sh or "
            "`XYRA_FUZZ=1 python setup.py build_ext --inplace` in a separate checkout"
        )
    if "asan_with_fuzzer" not in os.environ.get("LD_PRELOAD", ""):
        env = dict(os.environ)
        for key, value in SANITIZER_ENV.items():
            env.setdefault(key, value)
        env["LD_PRELOAD"] = ":".join(p for p in (_runtime(), env.get("LD_PRELOAD")) if p)
        env["XYRA_FUZZ_TREE"] = str(tree)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    sys.path.insert(0, str(tree))
    sys.path.insert(1, str(tree / "tests"))  # the test kit: kit.refcodec
    # libFuzzer runs argv[0] through the shell for -minimize_crash (and -fork/-jobs): make it
    # a command that starts this harness with this interpreter.
    sys.argv[0] = shlex.join([sys.executable, str(Path(sys.argv[0]).resolve())])


def check_loaded(module: object) -> None:
    """Refuse to fuzz an extension that is not the one in the fuzz tree."""
    path = Path(getattr(module, "__file__", "") or "").resolve()
    if fuzz_tree() not in path.parents:
        sys.exit(f"fuzz: imported {path}, not the build in {fuzz_tree()}")


def fuzz(module: str, load: Callable[[Any], None], test_one_input: Callable[[bytes], None]) -> None:
    """Run a harness under libFuzzer against the fuzz build of ``xyra._core.<module>``."""
    prepare()
    import atheris

    compiled = importlib.import_module(f"xyra._core.{module}")
    check_loaded(compiled)
    load(compiled)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


class Mismatch(AssertionError):
    """The code under test broke its contract; the message is the harness's report."""


def feed_checked(parser: Any, chunk: bytes, i: int, report: Callable[[str], str]) -> list[Any]:
    """``parser.feed(chunk)``, which must return a list and never raise."""
    try:
        out = parser.feed(chunk)
    except Exception as e:  # the core must never raise
        raise Mismatch(report(f"feed {i} raised {e!r}")) from e
    if not isinstance(out, list):
        raise Mismatch(report(f"feed returned {type(out)}"))
    return out
