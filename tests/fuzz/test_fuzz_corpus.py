"""Replay the fuzz seeds and regression inputs through the harness checks (no atheris needed).

Runs on whatever build of ``xyra._core`` is importable (release, debug or sanitizer), so
every input the fuzzer ever had to be taught stays checked by the ordinary test suite.
Inputs under ``regressions/open/`` show findings not fixed yet: they are expected to fail
(strict xfail, so the fix that makes one pass also has to move it to ``regressions/<name>/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fuzz_frames
import fuzz_frames_big
import fuzz_handshake
import fuzz_inflate
import pytest

HERE = Path(__file__).resolve().parent

frames = pytest.importorskip("xyra._core.frames")
deflate = pytest.importorskip("xyra._core.deflate")
protocol = pytest.importorskip("xyra._core.protocol")

OPEN = pytest.mark.xfail(
    strict=True,
    reason="open fuzz finding (docs/fuzzing.md); once fixed, git mv it out of regressions/open/",
)


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def inputs(name: str) -> list[Any]:
    found: list[Any] = []
    for folder in (HERE / "corpus" / name, HERE / "regressions" / name):
        found += [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in _files(folder)]
    for p in _files(HERE / "regressions" / "open" / name):
        found.append(pytest.param(p, id=f"open/{p.name}", marks=OPEN))
    return found


@pytest.mark.parametrize("path", inputs("frames"))
def test_frames_input(path: Path) -> None:
    fuzz_frames.load(frames)
    fuzz_frames.test_one_input(path.read_bytes())


@pytest.mark.parametrize("path", inputs("frames_big"))
def test_frames_big_input(path: Path) -> None:
    fuzz_frames_big.load(frames)
    fuzz_frames_big.test_one_input(path.read_bytes())


@pytest.mark.parametrize("path", inputs("inflate"))
def test_inflate_input(path: Path) -> None:
    fuzz_inflate.load(deflate)
    fuzz_inflate.test_one_input(path.read_bytes())


def test_harness_layouts_accept_any_bytes() -> None:
    """Short and odd inputs decode without errors of their own."""
    fuzz_frames.load(frames)
    fuzz_inflate.load(deflate)
    for data in (b"", b"\x00", b"\xff" * 2, b"\x04\x02\x07\xff", b"\x17\x01\x03\x00"):
        fuzz_frames.test_one_input(data)
        fuzz_inflate.test_one_input(data)


@pytest.mark.parametrize("path", inputs("handshake"))
def test_handshake_input(path: Path) -> None:
    fuzz_handshake.load(protocol)
    fuzz_handshake.test_one_input(path.read_bytes())
