#!/usr/bin/env bash
# Offline checks of the packaging and CI configuration (nothing here needs the network once
# the three tools are installed; they are pip-installed into $PYTHON if missing):
#  * validate-pyproject: pyproject.toml against the PEP 621 / setuptools schemas and
#    cibuildwheel's own schema for [tool.cibuildwheel] (cibuildwheel registers it);
#  * cibuildwheel --print-build-identifiers for linux and macos: exactly cp310-cp313 for
#    manylinux + musllinux x86_64/aarch64 and macOS x86_64/arm64 (macOS identifiers print
#    fine on Linux; only building needs a Mac), and wheels.yml's runner matrix covers that
#    set exactly once (wheels/check_matrix.py);
#  * check-jsonschema: the workflows against the GitHub Actions workflow schema vendored
#    in check-jsonschema (--builtin-schema: no download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
export VALIDATE_PYPROJECT_NO_NETWORK=1

# trove-classifiers (validate-pyproject[all]) checks the classifiers without a download.
if ! "$PY" -c "import cibuildwheel, validate_pyproject, check_jsonschema, trove_classifiers" \
    2>/dev/null; then
  echo "check-config: installing cibuildwheel, validate-pyproject, check-jsonschema" >&2
  "$PY" -m pip install -q cibuildwheel "validate-pyproject[all]" check-jsonschema
fi
BIN="$("$PY" -c 'import sys, sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH="$BIN:$PATH"

echo "--- validate-pyproject"
"$PY" -m validate_pyproject pyproject.toml

echo "--- cibuildwheel build identifiers"
expected_linux="$(for os in manylinux musllinux; do for a in x86_64 aarch64; do
  for v in 310 311 312 313; do echo "cp$v-${os}_$a"; done; done; done | sort)"
expected_macos="$(for a in x86_64 arm64; do for v in 310 311 312 313; do
  echo "cp$v-macosx_$a"; done; done | sort)"
for platform in linux macos; do
  got="$(env -u CIBW_BUILD -u CIBW_SKIP -u CIBW_ARCHS -u CIBW_ARCHS_LINUX -u CIBW_ARCHS_MACOS \
    cibuildwheel --print-build-identifiers --platform "$platform" | sort)"
  want="expected_$platform"
  if [ "$got" != "${!want}" ]; then
    echo "cibuildwheel --platform $platform builds:" >&2
    diff <(echo "${!want}") <(echo "$got") >&2 || true
    exit 1
  fi
  echo "$platform: $(echo "$got" | wc -l) wheels ($(echo "$got" | tr '\n' ' '))"
done
"$PY" wheels/check_matrix.py

echo "--- check-jsonschema (GitHub workflows)"
"$PY" -m check_jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
echo "check-config: ok"
