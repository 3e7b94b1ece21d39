#!/usr/bin/env bash
# Coverage-guided fuzzing of the compiled frame parser, inflater and upgrade fast path
# (docs/fuzzing.md).
#
#   tests/fuzz/run.sh [SECONDS_PER_HARNESS] [BUILD_DIR]
#
# Builds the XYRA_FUZZ=1 extensions (clang, libFuzzer coverage, ASan, UBSan) in BUILD_DIR,
# or by default in a temporary copy of this working tree (tracked and untracked, not ignored,
# files), so the tree's own in-place .so files are never touched. Then runs each harness for
# SECONDS_PER_HARNESS (default 60) and prints executions, speed and coverage. Exits non-zero
# if a harness found something: the input is saved (and minimized) under artifacts/fuzz/.
#
# Environment: XYRA_FUZZ_HARNESSES (default "frames frames_big inflate handshake"), XYRA_FUZZ_OUT (default
# <repo>/artifacts/fuzz: the growing corpora and any findings), XYRA_FUZZ_INSTALL=0 to skip
# installing clang and atheris, PYTHON (default python3), and extra libFuzzer flags in
# XYRA_FUZZ_FLAGS (e.g. "-seed=1 -max_len=8192").
set -euo pipefail
SECS="${1:-60}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PYTHON:-python3}"
HARNESSES="${XYRA_FUZZ_HARNESSES:-frames frames_big inflate handshake}"
OUT="${XYRA_FUZZ_OUT:-$ROOT/artifacts/fuzz}"
ATHERIS_VERSION=3.0.0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

say() { printf '\n--- fuzz: %s ---\n' "$*"; }

# --- toolchain -------------------------------------------------------------------------------
ensure_deps() {
  if ! command -v clang >/dev/null ||
    [ ! -e "$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)" ]; then
    say "installing clang and its sanitizer/libFuzzer runtimes (Debian: clang libclang-rt-14-dev)"
    if [ "$(id -u)" != 0 ]; then
      echo "fuzz: need clang with compiler-rt; run as root or install clang + libclang-rt-NN-dev" >&2
      exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
  fi
  # atheris' prebuilt wheels carry a libFuzzer/ASan runtime from another LLVM; built from source
  # it links asan_with_fuzzer.so from this clang's runtimes, matching the instrumented code.
  local tag
  tag="$("$PY" - <<'EOF' 2>/dev/null || true
import importlib.metadata as md
d = md.distribution("atheris")
print(d.version, next((l.split(":", 1)[1].strip() for l in (d.read_text("WHEEL") or "").splitlines() if l.startswith("Tag:")), ""))
EOF
)"
  case "$tag" in
    "$ATHERIS_VERSION "*manylinux*) ;; # a prebuilt wheel: rebuild from source
    "$ATHERIS_VERSION "*) return 0 ;;
  esac
  say "installing atheris $ATHERIS_VERSION from source with clang (a few minutes, once)"
  CC=clang CXX=clang++ "$PY" -m pip install -q --no-deps --force-reinstall \
    --no-binary atheris "atheris==$ATHERIS_VERSION"
}

if [ "${XYRA_FUZZ_INSTALL:-1}" != 0 ]; then
  ensure_deps
fi
"$PY" -m pip show -q Cython >/dev/null 2>&1 || "$PY" -m pip install -q "Cython>=3.0.10"

# --- the fuzz build --------------------------------------------------------------------------
if [ $# -ge 2 ]; then
  TREE="$(cd "$2" && pwd)"
  [ -f "$TREE/setup.py" ] || { echo "fuzz: $TREE has no setup.py" >&2; exit 2; }
  if [ "$TREE" = "$ROOT" ]; then
    echo "fuzz: building the fuzz mode in place here replaces this tree's .so files" >&2
  fi
else
  TREE="$(mktemp -d /tmp/xyra-fuzz.XXXXXX)"
  trap 'rm -rf "$TREE"' EXIT
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
      tar --null -T - -cf -) | tar -xf - -C "$TREE"
  else
    tar -C "$ROOT" --exclude=./build --exclude=./artifacts -cf - . | tar -xf - -C "$TREE"
  fi
fi
say "building XYRA_FUZZ=1 in $TREE"
build_start=$SECONDS
(cd "$TREE" && XYRA_FUZZ=1 "$PY" setup.py -q build_ext --inplace -j 2 >"$TREE/fuzz-build.log" 2>&1) || {
  tail -40 "$TREE/fuzz-build.log" >&2
  exit 2
}
echo "built in $((SECONDS - build_start)) s"

# --- the runs --------------------------------------------------------------------------------
mkdir -p "$OUT"
status=0
summary=""
for h in $HARNESSES; do
  case "$h" in
    frames) module=frames; extra="" ;;
    # Inputs describe frames of up to ~330 KB; -len_control=0 lets them grow at once.
    frames_big) module=frames; extra="-max_len=256 -len_control=0" ;;
    inflate) module=deflate; extra="" ;;
    # Request heads: the default 4 KiB inputs hold any head the limits let through.
    handshake) module=protocol; extra="" ;;
    *) echo "fuzz: unknown harness $h" >&2; exit 2 ;;
  esac
  corpus="$OUT/corpus/$h"
  seeds=("$ROOT/tests/fuzz/corpus/$h")
  [ -d "$ROOT/tests/fuzz/regressions/$h" ] && seeds+=("$ROOT/tests/fuzz/regressions/$h")
  mkdir -p "$corpus"
  log="$OUT/$h.log"
  say "$h: $SECS s (corpus $corpus, log $log)"
  rc=0
  # shellcheck disable=SC2086
  XYRA_FUZZ_TREE="$TREE" timeout $((SECS + 600)) "$PY" "$ROOT/tests/fuzz/fuzz_$h.py" \
    -max_total_time="$SECS" -print_final_stats=1 -timeout=30 \
    -artifact_prefix="$OUT/$h-" $extra ${XYRA_FUZZ_FLAGS:-} "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)"
  if [ "$rc" != 0 ]; then
    status=1
    echo "FINDING in $h (exit $rc); the report:"
    sed -n '/=== Uncaught Python exception\|ERROR: AddressSanitizer\|runtime error\|ERROR: libFuzzer/,/^SUMMARY: /p' \
      "$log" | head -80
    crash="$(grep -oE "Test unit written to \S+" "$log" | tail -1 | sed 's/Test unit written to //')"
    if [ -n "$crash" ] && [ -f "$crash" ]; then
      echo "input: $crash ($(wc -c <"$crash") bytes): $(od -An -tx1 -v "$crash" | tr -d ' \n' | head -c 400)"
      say "$h: minimizing $crash (60 s at most)"
      XYRA_FUZZ_TREE="$TREE" timeout 300 "$PY" "$ROOT/tests/fuzz/fuzz_$h.py" -minimize_crash=1 \
        -max_total_time=60 -timeout=30 -exact_artifact_path="$crash.min" "$crash" \
        >"$log.minimize" 2>&1 || true
      if [ -f "$crash.min" ]; then
        echo "minimized: $crash.min ($(wc -c <"$crash.min") bytes): $(od -An -tx1 -v "$crash.min" | tr -d ' \n' | head -c 400)"
      fi
    fi
    summary+="$h: FINDING after ${runs:-?} executions (see $log)"$'\n'
    continue
  fi
  # Coverage of the module's own compiled code: replay the corpus once with -print_coverage.
  XYRA_FUZZ_TREE="$TREE" timeout 600 "$PY" "$ROOT/tests/fuzz/fuzz_$h.py" -runs=0 -print_coverage=1 \
    "$corpus" "${seeds[@]}" >"$log.coverage" 2>&1 || true
  report="$("$PY" "$ROOT/tests/fuzz/coverage_report.py" "$log.coverage" "$module" 2>&1 || true)"
  echo "$report"
  summary+="$h: ${runs:-?} executions, ${speed:-?} exec/s, $cov; $(echo "$report" | head -1)"$'\n'
done

say "summary"
printf '%s' "$summary"
if [ "$status" != 0 ]; then
  echo "fuzz: FAILED (findings above; inputs in $OUT)"
  exit 1
fi
echo "fuzz: no findings"
