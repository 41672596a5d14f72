#!/usr/bin/env bash
# Install, start and stop the real servers the tests talk to: Redis, PostgreSQL,
# and headless Chromium (a binary, nothing to start). Everything lives under
# .noodle-services/ and binds 127.0.0.1 on free ports; `start` writes
# .noodle-services/env for the test run to source.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/.noodle-services"
mkdir -p "$ROOT"

need_apt=()
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install() {
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  [ -n "$(pg_bin)" ] || need_apt+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "services: installing ${need_apt[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian starts the packaged servers on their default ports; ours run on
    # their own ports, so stop the system ones to keep the machine quiet.
    $sudo service redis-server stop >/dev/null 2>&1 || true
    $sudo service postgresql stop >/dev/null 2>&1 || true
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  stop >/dev/null 2>&1 || true
  local rport pport pgbin
  rport=$(free_port)
  mkdir -p "$ROOT/redis"
  redis-server --port "$rport" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --dir "$ROOT/redis" --pidfile "$ROOT/redis/redis.pid" --logfile "$ROOT/redis/redis.log"
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

  pgbin=$(pg_bin)
  pport=$(free_port)
  rm -rf "$ROOT/pg"; mkdir -p "$ROOT/pg"
  local run=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$ROOT/pg"; chmod 755 "$ROOT"; run=(runuser -u postgres --); fi
  "${run[@]}" "$pgbin/initdb" -D "$ROOT/pg/data" -A trust -U noodle >/dev/null
  "${run[@]}" "$pgbin/pg_ctl" -D "$ROOT/pg/data" -l "$ROOT/pg/log" -w \
    -o "-p $pport -k $ROOT/pg -h 127.0.0.1" start >/dev/null
  "${run[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$pport" -U noodle noodle_test

  local chrome
  chrome=$(command -v chromium || true)
  cat > "$ROOT/env" <<ENV
export NOODLE_TEST_REDIS_URL=redis://127.0.0.1:$rport/0
export NOODLE_TEST_REDIS_PORT=$rport
export NOODLE_TEST_REDIS_SERVER=$(command -v redis-server)
export NOODLE_TEST_PG_URL=postgresql://noodle@127.0.0.1:$pport/noodle_test
export NOODLE_TEST_CHROMIUM=$chrome
ENV
  echo "services: redis on 127.0.0.1:$rport, postgresql on 127.0.0.1:$pport, chromium ${chrome:-absent}"
}

stop() {
  if [ -f "$ROOT/redis/redis.pid" ]; then kill "$(cat "$ROOT/redis/redis.pid")" 2>/dev/null || true; rm -f "$ROOT/redis/redis.pid"; fi
  # Redis servers a test restarted on the same port record their pid here too.
  for f in "$ROOT"/redis/*.pid; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
  if [ -d "$ROOT/pg/data" ]; then
    local run=(); [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin)/pg_ctl" -D "$ROOT/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -f "$ROOT/env"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
