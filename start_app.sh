#!/usr/bin/env bash
# I2V Studio: one command to set up, start and look after the web app.
#   ./start_app.sh [start] [APP FLAGS]  set up if needed, start in the background (restarts the instance this script
#                                       started), wait until it answers, print the URL
#   ./start_app.sh stop | restart [APP FLAGS] | status | logs
#   ./start_app.sh download [MODEL]     fetch the weights into the Hugging Face cache (default ali-vilab/i2vgen-xl)
#   ./start_app.sh --foreground [APP FLAGS]   run in this terminal (Ctrl-C stops it)
#   ./start_app.sh setup [--cluster]    create .venv and install requirements.txt (only when it changed);
#                                       --cluster adds Ray (requirements-cluster.txt) for --executor ray
#   ./start_app.sh test [PYTEST ARGS]   setup + test tools, then run the whole test suite
# App flags and I2V_* variables: README "Configuration" (e.g. --port 8080 --model tiny).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
VENV=.venv
PY="$VENV/bin/python"
LOG_DIR=${I2V_LOG_DIR:-logs}
[ "$LOG_DIR" = none ] && LOG_DIR=logs  # log files off: the PID and console files still need a home
PID_FILE="$LOG_DIR/app.pid"
START_TIMEOUT=${I2V_START_TIMEOUT:-120}

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
  if [ "${1:-}" = "--cluster" ]; then
    install_once requirements-cluster.txt
  fi
}

run_tests() {
  setup --cluster  # the Ray executor's tests (tests/test_ray_workers.py) run too
  install_once requirements-dev.txt
  "$PY" -m pytest -q "$@"
}

# -- the background app ---------------------------------------------------------------------------------------
# The PID file names the process this script started; we only ever signal that process, and only while its
# command line is still our app.py (a reused PID belongs to someone else).
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid; pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "app.py" || return 1
  echo "$pid"
}

# host, port and log folder of the settings the app will use (flags > I2V_* > defaults), from the app's own code.
app_address() {
  "$PY" -c 'import sys; from i2v.settings import load_settings; s = load_settings(sys.argv[1:]); print(s.host, s.port, s.logs or "")' "$@"
}

url_for() {  # host port → the URL to open
  local host=$1 port=$2
  case "$host" in 0.0.0.0|"::") host=127.0.0.1 ;; esac
  echo "http://$host:$port/"
}

answers() {  # URL → 0 when /healthz answers (any HTTP status: with auth on it may be 401 on other routes)
  "$PY" - "$1" <<'PYEOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "healthz", timeout=2)
except urllib.error.HTTPError:
    pass
except OSError:
    sys.exit(1)
PYEOF
}

stop_app() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    echo "I2V Studio is not running."
    return 0
  fi
  echo "stopping I2V Studio (PID $pid) …"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "it did not stop within 15 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PID_FILE"
  echo "stopped."
}

show_log_tail() {  # what the app wrote before it failed: its log file of this run, then anything outside logging
  local app_log=$1 console=$2
  if [ -n "$app_log" ] && [ -e "$app_log" ] && [ "$app_log" -nt "$PID_FILE.started" ]; then
    tail -n 30 "$app_log" >&2
  fi
  [ -s "$console" ] && tail -n 30 "$console" >&2
  return 0
}

start_app() {
  setup
  local address host port app_logs url console pid
  address=$(app_address "$@") || { echo "error: invalid settings (see above)" >&2; exit 2; }
  read -r host port app_logs <<<"$address"
  url=$(url_for "$host" "$port")
  if running_pid >/dev/null; then
    stop_app
  elif answers "$url"; then
    echo "error: something else already answers on $url (not started by this script); choose another --port." >&2
    exit 1
  fi
  mkdir -p "$LOG_DIR"
  # The app writes its own rotating log (app_YYYYmmdd_HHMMSS.log, latest.log); the console file only catches what
  # bypasses logging (a crash before logging starts), so it stays small.
  console="$LOG_DIR/console.log"
  touch "$PID_FILE.started"
  I2V_CONSOLE_LOG=off nohup "$PY" app.py "$@" >"$console" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local app_log=""
  [ -n "$app_logs" ] && app_log="$app_logs/latest.log"
  echo "starting I2V Studio (PID $pid, log ${app_log:-$console}) …"
  local waited=0
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      echo "error: the app exited during start-up. Last log lines:" >&2
      show_log_tail "$app_log" "$console"
      exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT * 2)) ]; then
      echo "error: the app did not answer on $url within $START_TIMEOUT s (still running as PID $pid). Last log lines:" >&2
      show_log_tail "$app_log" "$console"
      exit 1
    fi
    sleep 0.5; waited=$((waited + 1))
  done
  echo "I2V Studio is running: $url"
  case "$host" in 127.0.0.1|localhost|::1) ;;
    *) echo "note: listening on $host — reachable from other machines." ;;
  esac
}

status_app() {
  local pid
  if ! pid=$(running_pid); then
    echo "I2V Studio: not running."
    return 3
  fi
  local address host port url
  # its settings: the flags on its command line (after app.py) and its environment, read by the app's own code
  address=$("$PY" - "$pid" <<'PYEOF'
import sys
from pathlib import Path
from i2v.settings import load_settings
argv = Path(f"/proc/{sys.argv[1]}/cmdline").read_bytes().split(b"\0")
argv = [a.decode() for a in argv if a]
after = argv[[i for i, a in enumerate(argv) if a.endswith("app.py")][0] + 1:]
environ = dict(line.split("=", 1) for line in Path(f"/proc/{sys.argv[1]}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in line)
s = load_settings(after, environ=environ)
print(s.host, s.port)
PYEOF
  ) || address="127.0.0.1 7860"
  read -r host port <<<"$address"
  url=$(url_for "$host" "$port")
  echo "I2V Studio: running"
  echo "  PID:  $pid"
  echo "  URL:  $url"
  echo "  log:  $(readlink -f "$LOG_DIR/latest.log" 2>/dev/null || echo "?")"
  "$PY" - "$url" <<'PYEOF' || echo "  (not answering on $url yet)"
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1] + "healthz", timeout=3))
def duration(seconds):
    minutes, hours = int(seconds // 60) % 60, int(seconds // 3600)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {int(seconds % 60):02d} s"
print(f"  model: {health.get('resident_model') or 'none'} in memory (configured: {health['model']})")
print(f"  up:    {duration(health['uptime_s'])}, {health['queue']} job(s) waiting")
try:
    gpu = json.load(urllib.request.urlopen(sys.argv[1] + "gpu_status", timeout=3))
    if gpu["app"]["idle_stop_in_s"] is not None:
        print(f"  idle:  stops itself in {duration(gpu['app']['idle_stop_in_s'])} unless a job comes "
              f"(after {duration(gpu['app']['idle_stop_after_s'])} without one)")
    if gpu["gpu_present"]:
        for g in gpu["gpus"]:
            print(f"  GPU {g['index']}: {g['name']}, {g['memory_used_bytes'] / 2**30:.1f} / {g['memory_total_bytes'] / 2**30:.1f} GiB used")
    else:
        print(f"  GPU:   none ({gpu['reason']})")
except OSError:
    print("  GPU:   (gpu_status needs the app's credentials)")
try:
    for w in json.load(urllib.request.urlopen(sys.argv[1] + "api/workers", timeout=3))["workers"]:
        where = "the CPU" if w["gpu"] == "cpu" else f"GPU {w['gpu']}"
        job = f" job {w['job']}" if w["job"] else ""
        print(f"  worker {w['name']}: {where} of {w['node']}, PID {w['pid']}, {w['state']}{job}, "
              f"model {w['resident_model'] or '(none yet)'}, {w['jobs']['done']} job(s) done, "
              f"{w['restarts']} restart(s)")
except OSError:
    print("  workers: (api/workers needs the app's credentials)")
PYEOF
}

action=${1:-start}
case "$action" in
  --foreground|-h|--help) shift ;;
  --*) action=start ;;  # ./start_app.sh --port 8080 = start with those flags
  *) [ $# -gt 0 ] && shift ;;
esac
case "$action" in
  start) start_app "$@" ;;
  restart) stop_app; start_app "$@" ;;
  stop) stop_app ;;
  status) status_app ;;
  logs)
    [ -e "$LOG_DIR/latest.log" ] || { echo "no log yet: start the app first." >&2; exit 1; }
    exec tail -n 50 -F "$LOG_DIR/latest.log" ;;
  foreground|--foreground) setup; exec "$PY" app.py "$@" ;;
  download) setup; exec "$PY" -m i2v download "$@" ;;
  setup) setup "$@" ;;
  test) run_tests "$@" ;;
  help|-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "error: unknown action '$action' (try: start, stop, restart, status, logs, download, --foreground, setup, test, help)" >&2
     exit 2 ;;
esac
