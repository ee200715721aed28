#!/usr/bin/env bash
# I2V Studio: one command to set up and test (the web UI and its start/stop commands come with the UI issue).
#   ./start_app.sh setup   create .venv and install requirements.txt (only when it changed)
#   ./start_app.sh test    setup + test tools, then run the whole test suite
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
VENV=.venv
PY="$VENV/bin/python"

find_python() {
  for candidate in "${I2V_PYTHON:-}" python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: I2V Studio needs Python 3.11 or newer with the venv module; none was found." >&2
  echo "       Install it (Debian/Ubuntu: apt-get install python3 python3-venv) or set I2V_PYTHON=/path/to/python." >&2
  return 1
}

# Installs a requirements file unless the same content was installed already (stamp = its hash).
install_once() {
  local file=$1 stamp="$VENV/.installed-$(basename "$1").sha256" want
  want=$(sha256sum "$file" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "installing $file …"
  "$PY" -m pip install --disable-pip-version-check -q -r "$file"
  echo "$want" >"$stamp"
}

setup() {
  if [ ! -x "$PY" ]; then
    local python
    python=$(find_python)
    echo "creating $VENV with $python"
    "$python" -m venv "$VENV"
  fi
  install_once requirements.txt
}

run_tests() {
  setup
  install_once requirements-dev.txt
  "$PY" -m pytest -q "$@"
}

action=${1:-help}
[ $# -gt 0 ] && shift
case "$action" in
  setup) setup ;;
  test) run_tests "$@" ;;
  help|-h|--help)
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
    echo "Make a video now: ./start_app.sh setup && .venv/bin/python -m i2v generate --help" ;;
  *) echo "error: unknown action '$action' (try: setup, test)" >&2; exit 2 ;;
esac
