#!/usr/bin/env bash
# socket-lab beside Python, nginx and iperf3: one run, one machine, loopback only.
#
#   benches/compare.sh            # about 90 seconds; prints a Markdown table on stdout
#
# Every peer starts on a free loopback port, is loaded for a bounded count or time, and is
# stopped by its PID. One-connection rows run client and server on the same CPU (taskset):
# unpinned, the scheduler's choice of one core or two swings them by 5x on a 2-core machine.
# BENCHMARKS.md holds the latest table and what it teaches.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- tools: from the distribution's packages ---------------------------------------------
need=()
for tool in wrk nginx iperf3 hyperfine python3 taskset curl; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]/taskset/util-linux}" >/dev/null
  else
    echo "missing: ${need[*]} (Debian: apt-get install wrk nginx iperf3 hyperfine python3 util-linux curl)" >&2
    exit 1
  fi
fi

cargo build --release --quiet
BIN=$PWD/target/release/socket-lab
# The interpreter itself, not a version manager's shell shim (pyenv's adds ~100 ms a start).
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d)
# nginx's workers run as an unprivileged user: they must be able to read the page.
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # KEEP=1 keeps every raw output (bench reports, wrk, iperf3 JSON) for a closer look.
  if [ "${KEEP:-0}" = 1 ]; then echo "raw outputs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start NAME COMMAND...: runs a server that prints "listening on HOST:PORT" first on stderr,
# waits (at most 10 s) for that line, and sets PID and PORT.
start() {
  local name=$1
  shift
  "$@" >/dev/null 2>"$WORK/$name.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$WORK/$name.err" 2>/dev/null; then
      PORT=$(sed -n '1s/.*://p' "$WORK/$name.err")
      return
    fi
    sleep 0.1
  done
  echo "$name did not start: $(cat "$WORK/$name.err")" >&2
  exit 1
}

# start_on_port NAME COMMAND...: for servers that need a port given (nginx, iperf3): waits
# until the port accepts a connection.
start_on_port() {
  local name=$1
  shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  echo "$name did not start: $(cat "$WORK/$name.err")" >&2
  exit 1
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

free_port() {
  python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# field FILE LABEL: the value after "LABEL: " in a socket-lab bench report.
field() { sed -n "s|^$2: ||p" "$1"; }
ratio() { python3 -c "print(f'{$1 / max($2, 1e-9):.2f}x')"; }

ROWS=()
# Other work on the machine skews every row: the table says how busy it was.
LOAD=$(cut -d" " -f1-3 /proc/loadavg)
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }

# --- ack protocol, 64-byte messages -------------------------------------------------------
ack_run() { # ack_run NAME PIN CONNS SERVER-COMMAND...: loads it, leaves bench output in $WORK/NAME
  local name=$1 pin=$2 conns=$3
  shift 3
  start "$name-server" $pin "$@"
  $pin "$BIN" bench --port "$PORT" --conns "$conns" --msgs 20000 --duration 5s \
    >"$WORK/$name"
  stop "$PID"
}
ack_cell() { echo "$(field "$1" msgs/s) msgs/s, p99 $(field "$1" latency | sed 's/.*p99 \([0-9.]*\) ms.*/\1/') ms"; }

pin="taskset -c 0"
ack_run ack-lab-1 "$pin" 1 "$BIN" server --port 0 --quiet
ack_run ack-py-1 "$pin" 1 "$PYTHON" benches/ack_server.py 0
ack_run ack-lab-32 "" 32 "$BIN" server --port 0 --quiet
ack_run ack-py-32 "" 32 "$PYTHON" benches/ack_server.py 0
row "ack, 1 conn (pinned)" "$(ack_cell "$WORK/ack-lab-1")" "$(ack_cell "$WORK/ack-py-1") (Python ThreadingTCPServer)" \
  "$(ratio "$(field "$WORK/ack-lab-1" msgs/s)" "$(field "$WORK/ack-py-1" msgs/s)")" "-"
row "ack, 32 conns" "$(ack_cell "$WORK/ack-lab-32")" "$(ack_cell "$WORK/ack-py-32") (Python ThreadingTCPServer)" \
  "$(ratio "$(field "$WORK/ack-lab-32" msgs/s)" "$(field "$WORK/ack-py-32" msgs/s)")" ">= 4x, p99 < 1 ms"

# --- HTTP keep-alive: GET / with wrk -t2 -c64 -d5s ----------------------------------------
# The page: socket-lab's own answer to GET /, saved so Python and nginx serve the same bytes.
mkdir -p "$WORK/www"
start http-page "$BIN" http --port 0 --quiet
curl -s "http://127.0.0.1:$PORT/" >"$WORK/www/index.html"
stop "$PID"

wrk_run() { # wrk_run NAME PORT: leaves "req/s errors" in $WORK/NAME
  wrk -t2 -c64 -d5s --timeout 2s "http://127.0.0.1:$2/" >"$WORK/$1.wrk"
  local rps errors
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$WORK/$1.wrk")
  errors=$(python3 - "$WORK/$1.wrk" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
non_2xx = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
print(socket_errors + non_2xx)
EOF
)
  echo "${rps%.*} $errors" >"$WORK/$1"
}
rps() { cut -d' ' -f1 "$WORK/$1"; }
errors() { cut -d' ' -f2 "$WORK/$1"; }

start http-lab "$BIN" http --port 0 --quiet
wrk_run http-lab "$PORT"
stop "$PID"

start http-py "$PYTHON" benches/http_server.py 0 "$WORK/www/index.html"
wrk_run http-py "$PORT"
stop "$PID"

PORT=$(free_port)
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server { listen 127.0.0.1:$PORT; root $WORK/www; }
}
EOF
start_on_port nginx nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
wrk_run http-nginx "$PORT"
stop "$PID"

cell() { echo "$(rps "$1") req/s, $(errors "$1") errors"; }
row "HTTP keep-alive, 64 conns" "$(cell http-lab)" "nginx: $(cell http-nginx)" \
  "$(ratio "$(rps http-lab)" "$(rps http-nginx)")" ">= 1x nginx, 0 errors"
row "HTTP keep-alive, 64 conns" "$(cell http-lab)" "Python http.server: $(cell http-py)" \
  "$(ratio "$(rps http-lab)" "$(rps http-py)")" ">= 8x"

# --- 1,000 idle keep-alive connections while wrk -c64 runs --------------------------------
# idle_run NAME SERVER-COMMAND...: holds 1,000 idle connections (waiting at most 5 s for them
# to be served), runs wrk beside them, and records the server's peak RSS.
idle_run() {
  local name=$1
  shift
  start "$name-server" "$@"
  local server_pid=$PID
  "$PYTHON" benches/idle_conns.py 127.0.0.1 "$PORT" 1000 15 >"$WORK/$name.idle" 2>&1 &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  for _ in $(seq 50); do grep -qs holding "$WORK/$name.idle" && break; sleep 0.1; done
  local held
  held=$(sed -n 's/^holding //p' "$WORK/$name.idle")
  wrk_run "$name" "$PORT"
  local rss
  rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status")
  stop "$idle_pid"
  stop "$server_pid"
  echo "$(cell "$name"), ${held:-0} of 1000 idle served, peak RSS $rss MiB"
}
before=$(idle_run idle-before "$BIN" http --port 0 --quiet --max-clients 64)
after=$(idle_run idle-lab "$BIN" http --port 0 --quiet)
row "1000 idle + wrk -c64" "$after" "same server capped at 64 (before): $before" "-" \
  "0 errors, no starvation, RSS < 64 MiB"

# --- stream: 1 GiB through the ack server (recv 64 KiB) vs iperf3 ---------------------------
start stream-lab $pin "$BIN" server --port 0 --quiet --recv-size 65536
$pin "$BIN" bench --port "$PORT" --stream --size 65536 --msgs 16384 --duration 60s \
  >"$WORK/stream-lab"
stop "$PID"
lab_gbits=$(python3 -c "print(f'{$(field "$WORK/stream-lab" MiB/s) * 8 * 1048576 / 1e9:.1f}')")

PORT=$(free_port)
# Not start_on_port: a probe connection would be the one test --one-off serves.
$pin iperf3 --server --bind 127.0.0.1 --port "$PORT" --one-off --forceflush >"$WORK/iperf3.out" 2>&1 &
PID=$!
PIDS+=("$PID")
for _ in $(seq 100); do grep -q 'Server listening' "$WORK/iperf3.out" && break; sleep 0.1; done
$pin iperf3 --client 127.0.0.1 --port "$PORT" --bytes 1G --json >"$WORK/iperf3.json"
stop "$PID"
iperf_gbits=$(python3 -c "import json; print(f\"{json.load(open('$WORK/iperf3.json'))['end']['sum_received']['bits_per_second'] / 1e9:.1f}\")")
row "stream 1 GiB, 1 conn (pinned)" "$lab_gbits Gbit/s ($(field "$WORK/stream-lab" acks | cut -d, -f1) recvs acked)" \
  "iperf3: $iperf_gbits Gbit/s" "$(ratio "$lab_gbits" "$iperf_gbits")" ">= 0.5x"

# --- client session: start, connect, one message, q ---------------------------------------
start session-server "$BIN" server --port 0 --quiet
hyperfine --warmup 5 --runs 100 --export-json "$WORK/session.json" \
  "printf 'hello\nq\n' | $BIN client --port $PORT" \
  "printf 'hello\nq\n' | $PYTHON benches/ack_client.py $PORT" >"$WORK/session.txt"
stop "$PID"
read -r lab_ms py_ms < <(python3 -c "
import json
results = json.load(open('$WORK/session.json'))['results']
print(*(f\"{r['mean'] * 1000:.2f}\" for r in results))")
row "client session (hyperfine)" "$lab_ms ms" "Python client.py: $py_ms ms" \
  "$(ratio "$py_ms" "$lab_ms")" ">= 10x faster"

# --- the table -----------------------------------------------------------------------------
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr), load average at the start: $LOAD"
echo
echo "| test | socket-lab | other | ratio | target |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
