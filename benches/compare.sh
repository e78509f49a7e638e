#!/usr/bin/env bash
# socket-lab beside Python, nginx and iperf3: one run, one machine, loopback only.
#
#   benches/compare.sh             # about 3 minutes; Markdown tables on stdout, stages on stderr
#   benches/compare.sh --install   # first install the missing tools (Debian, as root)
#   KEEP=1 benches/compare.sh      # keep every raw output (bench reports, wrk, RSS readings)
#
# Every peer starts on a free loopback port, is loaded for a bounded count or time, and is
# stopped by its PID. One-connection rows run client and server on the same CPU (taskset):
# unpinned, the scheduler's choice of one core or two swings them by 5x on a 2-core machine.
# BENCHMARKS.md holds the latest tables and what they teach.
set -euo pipefail
cd "$(dirname "$0")/.."

STAGES=8
stage() { echo "[$1/$STAGES] $2" >&2; }

# --- tools: from the distribution's packages, installed only when asked ----------------------
install=0
for arg in "$@"; do
  case $arg in
    --install) install=1 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
stage 1 "checking tools"
need=()
for tool in wrk nginx iperf3 hyperfine python3 taskset curl; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  packages="${need[*]/taskset/util-linux}"
  if [ "$install" = 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing $packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq $packages >/dev/null
  else
    echo "missing: ${need[*]}; install them (Debian: apt-get install $packages) or run benches/compare.sh --install as root" >&2
    exit 1
  fi
fi

stage 2 "building the release binary"
cargo build --release --quiet
BIN=$PWD/target/release/socket-lab
# The interpreter itself, not a version manager's shell shim (pyenv's adds ~100 ms a start).
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d)
# nginx's workers run as an unprivileged user: they must be able to read the pages.
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "raw outputs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# 10,000 connections are 10,000 descriptors on each side: the soft limit up to the hard one.
ulimit -n "$(ulimit -Hn)"

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

# rss_kib PID [FIELD]: VmRSS (now) or VmHWM (peak) of a process, in KiB.
rss_kib() { awk -v field="${2:-VmRSS}:" '$1 == field { print $2 }' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

# field FILE LABEL: the value after "LABEL: " in a socket-lab bench report.
field() { sed -n "s|^$2: ||p" "$1"; }
ratio() { python3 -c "print(f'{$1 / max($2, 1e-9):.2f}x')"; }

ROWS=()
MEMORY=()
# Other work on the machine skews every row: the table says how busy it was.
LOAD=$(cut -d" " -f1-3 /proc/loadavg)
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }

# --- ack protocol, 64-byte messages -------------------------------------------------------
stage 3 "ack protocol: socket-lab's engines and Python's ThreadingTCPServer, 1 and 32 connections"
ack_run() { # ack_run NAME PIN CONNS SERVER-COMMAND...: loads it, leaves bench output in $WORK/NAME
  local name=$1 pin=$2 conns=$3
  shift 3
  start "$name-server" $pin "$@"
  $pin "$BIN" bench --port "$PORT" --conns "$conns" --msgs 20000 --duration 5s \
    >"$WORK/$name"
  stop "$PID"
}
ack_cell() { echo "$(field "$1" msgs/s) msgs/s, p99 $(field "$1" latency | sed 's/.*p99 \([0-9.]*\) ms.*/\1/') ms"; }
msgs() { field "$WORK/$1" msgs/s; }

pin="taskset -c 0"
for engine in iterative threads epoll; do
  ack_run "ack-$engine-1" "$pin" 1 "$BIN" server --port 0 --quiet --engine "$engine"
done
ack_run ack-py-1 "$pin" 1 "$PYTHON" benches/ack_server.py 0
for engine in iterative threads epoll; do
  row "ack, 1 conn (pinned), $engine" "$(ack_cell "$WORK/ack-$engine-1")" \
    "$(ack_cell "$WORK/ack-py-1") (Python ThreadingTCPServer)" \
    "$(ratio "$(msgs "ack-$engine-1")" "$(msgs ack-py-1)")" "-"
done
# Not iterative: it serves one connection at a time, so 31 of 32 would wait for their acks.
for engine in threads epoll; do
  ack_run "ack-$engine-32" "" 32 "$BIN" server --port 0 --quiet --engine "$engine"
done
ack_run ack-py-32 "" 32 "$PYTHON" benches/ack_server.py 0
for engine in threads epoll; do
  row "ack, 32 conns, $engine" "$(ack_cell "$WORK/ack-$engine-32")" \
    "$(ack_cell "$WORK/ack-py-32") (Python ThreadingTCPServer)" \
    "$(ratio "$(msgs "ack-$engine-32")" "$(msgs ack-py-32)")" ">= 4x, p99 < 1 ms"
done

# --- HTTP keep-alive: wrk -t2 -c64 -d5s ---------------------------------------------------
stage 4 "HTTP keep-alive, wrk -c64: socket-lab (epoll, threads), nginx, Python http.server"
# The pages: socket-lab's answer to GET / (made per request: it shows the request) and its
# static /about, saved so nginx and Python serve the same bytes.
mkdir -p "$WORK/www"
start http-page "$BIN" http --port 0 --quiet
curl -s "http://127.0.0.1:$PORT/" >"$WORK/www/index.html"
curl -s "http://127.0.0.1:$PORT/about" >"$WORK/www/about"
stop "$PID"

wrk_run() { # wrk_run NAME PORT [PATH]: leaves "req/s errors" in $WORK/NAME
  wrk -t2 -c64 -d5s --timeout 2s "http://127.0.0.1:$2${3:-/}" >"$WORK/$1.wrk"
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
cell() { echo "$(rps "$1") req/s, $(errors "$1") errors"; }

for engine in epoll threads; do
  start "http-$engine" "$BIN" http --port 0 --quiet --engine "$engine"
  wrk_run "http-$engine" "$PORT" /
  wrk_run "about-$engine" "$PORT" /about
  stop "$PID"
done

start http-py "$PYTHON" benches/http_server.py 0 "$WORK/www/index.html"
wrk_run http-py "$PORT"
stop "$PID"

PORT=$(free_port)
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 16384; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  keepalive_requests 1000000;
  # The files stay open and in the page cache: nginx serves them from memory, as socket-lab
  # serves its pages.
  open_file_cache max=16;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $WORK/www;
    location = /about { default_type text/html; }
  }
}
EOF
start_on_port nginx nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
wrk_run http-nginx "$PORT" /
wrk_run about-nginx "$PORT" /about
stop "$PID"

for engine in epoll threads; do
  row "HTTP GET / (made per request), 64 conns, $engine" "$(cell "http-$engine")" \
    "nginx (the same bytes, a static file): $(cell http-nginx)" \
    "$(ratio "$(rps "http-$engine")" "$(rps http-nginx)")" ">= 1x nginx, 0 errors"
  row "HTTP GET /about (static), 64 conns, $engine" "$(cell "about-$engine")" \
    "nginx (the same bytes): $(cell about-nginx)" \
    "$(ratio "$(rps "about-$engine")" "$(rps about-nginx)")" ">= 1x nginx, 0 errors"
done
row "HTTP GET /, 64 conns, epoll" "$(cell http-epoll)" "Python http.server: $(cell http-py)" \
  "$(ratio "$(rps http-epoll)" "$(rps http-py)")" ">= 8x"

# --- idle keep-alive connections while wrk -c64 runs --------------------------------------
stage 5 "10,000 idle keep-alive connections on epoll (and 2,000 on threads) while wrk runs"
# idle_run NAME COUNT SERVER-COMMAND...: holds COUNT idle connections (each served once),
# reads the server's RSS, runs wrk beside them, then asks on every idle one again.
idle_run() {
  local name=$1 count=$2
  shift 2
  start "$name-server" "$@"
  local server_pid=$PID
  local before
  before=$(rss_kib "$server_pid")
  "$PYTHON" benches/idle_conns.py 127.0.0.1 "$PORT" "$count" 8 >"$WORK/$name.idle" 2>&1 &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  for _ in $(seq 600); do grep -qs holding "$WORK/$name.idle" && break; sleep 0.1; done
  local held now
  held=$(sed -n 's/^holding //p' "$WORK/$name.idle")
  now=$(rss_kib "$server_pid")
  wrk_run "$name" "$PORT"
  wait "$idle_pid" || true
  local again peak
  again=$(sed -n 's/^served again \([0-9]*\) of.*/\1/p' "$WORK/$name.idle")
  peak=$(rss_kib "$server_pid" VmHWM)
  stop "$server_pid"
  echo "$(cell "$name"), ${held:-0} of $count idle held, ${again:-0} served again after, peak RSS $(mib "$peak") MiB" >"$WORK/$name.row"
  echo "$before $now ${held:-0}" >"$WORK/$name.rss"
}
# The idle connections must outlive the run: read timeout 60 s, not 10 s.
start alone-epoll "$BIN" http --port 0 --quiet --read-timeout 60s
wrk_run alone-epoll "$PORT"
stop "$PID"
idle_run idle-epoll 10000 "$BIN" http --port 0 --quiet --read-timeout 60s
row "10000 idle + wrk -c64, epoll" "$(cat "$WORK/idle-epoll.row")" "the same server without them: $(cell alone-epoll)" \
  "$(ratio "$(rps idle-epoll)" "$(rps alone-epoll)")" "0 errors, all served again, RSS < 64 MiB, >= 0.9x"
idle_run idle-threads 2000 "$BIN" http --port 0 --quiet --read-timeout 60s --engine threads
row "2000 idle + wrk -c64, threads (cap 2048)" "$(cat "$WORK/idle-threads.row")" "-" "-" "-"

# --- memory per idle connection, each engine ----------------------------------------------
stage 6 "memory per idle connection: the ack server on each engine"
# The ack server with 1,000 idle connections, each acked once. The iterative engine serves
# one at a time: the other 999 wait in the listen queue (kernel memory, not the server's).
mem_row() { # mem_row WHAT FILE: "before now held" in FILE
  local before now held
  read -r before now held <"$2"
  MEMORY+=("| $1 | $held | $(mib "$before") MiB | $(mib "$now") MiB | $(python3 -c "print(f'{($now - $before) / max($held, 1):.1f}')") KiB |")
}
for engine in threads epoll; do
  start "mem-$engine" "$BIN" server --port 0 --quiet --engine "$engine" --max-clients 2000
  server_pid=$PID
  before=$(rss_kib "$server_pid")
  "$PYTHON" benches/idle_conns.py 127.0.0.1 "$PORT" 1000 1 ack >"$WORK/mem-$engine.idle" 2>&1 &
  idle_pid=$!
  PIDS+=("$idle_pid")
  for _ in $(seq 300); do grep -qs holding "$WORK/mem-$engine.idle" && break; sleep 0.1; done
  now=$(rss_kib "$server_pid")
  echo "$before $now $(sed -n 's/^holding //p' "$WORK/mem-$engine.idle")" >"$WORK/mem-$engine.rss"
  wait "$idle_pid" || true
  stop "$server_pid"
  mem_row "ack server, $engine" "$WORK/mem-$engine.rss"
done
mem_row "web server, threads" "$WORK/idle-threads.rss"
mem_row "web server, epoll" "$WORK/idle-epoll.rss"

# --- stream: 1 GiB through the ack server (recv 64 KiB) vs iperf3 ---------------------------
stage 7 "stream: 1 GiB through the ack server, and iperf3"
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
stage 8 "client session: start, connect, one message, q (hyperfine)"
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

# --- the tables ----------------------------------------------------------------------------
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr), load average at the start: $LOAD, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "| test | socket-lab | other | ratio | target |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| memory per idle connection | connections held | RSS before | RSS holding them | per connection |"
echo "|---|---|---|---|---|"
printf '%s\n' "${MEMORY[@]}"
