#!/usr/bin/env bash
# Create the Python 2.7 virtualenv that holds Autobahn TestSuite (wstest) and print the path of
# `wstest` on stdout (everything else goes to stderr, so callers can do WSTEST=$(bash ...)).
#
# Idempotent: a venv whose stamp matches the pins below is reused as it is; a missing, partial or
# outdated one is rebuilt. autobahntestsuite 0.8.2 runs on Python 2.7 only and its declared
# dependency ranges no longer resolve to a working set, so every package is pinned exactly and
# installed with --no-deps; `pip check` then proves the set is consistent.
#
# Environment:
#   XYRA_AUTOBAHN_VENV  where the venv lives (default /opt/xyra-autobahn, outside the repo)
#   XYRA_PY27           the Python 2.7 interpreter (default: pyenv's 2.7.18, then python2.7)
#   PYTHON3             the Python 3 that runs virtualenv itself (default python3)
set -euo pipefail

VENV="${XYRA_AUTOBAHN_VENV:-/opt/xyra-autobahn}"
PYTHON3="${PYTHON3:-python3}"

log() { echo "autobahn-venv: $*" >&2; }

# virtualenv 20.22 dropped creating Python 2 environments; these are its pinned helpers.
BOOTSTRAP_PINS="virtualenv==20.21.1 distlib==0.3.9 filelock==3.16.1 platformdirs==3.11.0"

# The working set for Python 2.7 (found by resolving autobahntestsuite 0.8.2's requirements,
# including autobahn[twisted,accelerate]==0.10.9, against the last Python 2 releases).
# wsaccel makes masking and UTF-8 validation native, without it the 9.* cases crawl.
PINS="
six==1.17.0
txaio==2.1.0
autobahn==0.10.9
wsaccel==0.6.6
ujson==2.0.3
Twisted==20.3.0
zope.interface==5.5.2
constantly==15.1.0
incremental==22.10.0
Automat==22.10.0
attrs==21.4.0
hyperlink==21.0.0
idna==2.10
typing==3.10.0.0
PyHamcrest==1.10.1
Jinja2==2.11.3
MarkupSafe==1.1.1
Werkzeug==1.0.1
klein==20.6.0
Tubes==0.2.1
pyOpenSSL==21.0.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==21.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
unittest2==1.1.0
traceback2==1.4.0
linecache2==1.0.0
argparse==1.4.0
autobahntestsuite==0.8.2
"
# shellcheck disable=SC2086  # unquoted on purpose: one line, single spaces
STAMP_TEXT="$BOOTSTRAP_PINS $(echo $PINS)"
STAMP="$VENV/.xyra-autobahn-pins"

find_py27() {
    if [[ -n "${XYRA_PY27:-}" ]]; then echo "$XYRA_PY27"; return; fi
    local root
    root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for candidate in "$root/versions/2.7.18/bin/python2.7" "$(command -v python2.7 || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then echo "$candidate"; return; fi
    done
    log "no Python 2.7 found (set XYRA_PY27); Debian 12 has none, pyenv's 2.7.18 is expected"
    exit 1
}

is_ready() {
    [[ -x "$VENV/bin/wstest" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_TEXT" ]] \
        && "$VENV/bin/python" -c "import autobahntestsuite.wstest" 2>/dev/null
}

mkdir -p "$(dirname "$VENV")"
# Two callers at once (parallel test runs) must not build into the same folder.
exec 9>"$VENV.lock"
flock 9

if is_ready; then
    echo "$VENV/bin/wstest"
    exit 0
fi

if [[ -e "$VENV" ]]; then
    # Only ever delete what this script built: a venv (pyvenv.cfg) or a half-built one of ours.
    if [[ -f "$VENV/pyvenv.cfg" || -f "$STAMP" || -z "$(ls -A "$VENV")" ]]; then
        log "rebuilding $VENV"
        rm -rf "$VENV"
    else
        log "$VENV exists and is not a venv; refusing to overwrite it"
        exit 1
    fi
fi

# wsaccel, zope.interface and friends build C extensions from source for Python 2.7.
if ! command -v gcc >/dev/null; then
    log "installing gcc"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2
fi

PY27="$(find_py27)"
log "python 2.7: $PY27"

BOOT="$(mktemp -d)"
trap 'rm -rf "$BOOT"' EXIT
# shellcheck disable=SC2086  # the pin lists are meant to split into words
PIP_ROOT_USER_ACTION=ignore "$PYTHON3" -m pip install -q --disable-pip-version-check \
    --no-deps --target "$BOOT" $BOOTSTRAP_PINS >&2
PYTHONPATH="$BOOT" "$PYTHON3" -m virtualenv -q --no-periodic-update -p "$PY27" "$VENV" >&2

echo "$PINS" | grep . >"$BOOT/requirements.txt"
# Python 2 deprecation banners from pip and cryptography are noise here.
export PYTHONWARNINGS="ignore" PIP_NO_PYTHON_VERSION_WARNING=1
# --no-build-isolation: the sdists build with the venv's pinned setuptools/wheel, so nothing
# unpinned is fetched behind our back.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-deps \
    --no-build-isolation -r "$BOOT/requirements.txt" >&2
"$VENV/bin/pip" check >&2
"$VENV/bin/wstest" --autobahnversion >&2

echo "$STAMP_TEXT" >"$STAMP"
log "ready: $VENV"
echo "$VENV/bin/wstest"
