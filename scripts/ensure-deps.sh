#!/usr/bin/env bash
# Makes sure what the tests need is present: node_modules, and the system services/binaries.
# Installs missing Debian packages when running as root; otherwise says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
missing=()
# binary:Debian package
# chromium: the browser tests (WebAuthn with a virtual authenticator) drive Debian's build via playwright-core.
# psql, openssl and the PostgreSQL server binaries: the database gateway tests (a private cluster with
# SCRAM/md5 roles is started from /usr/lib/postgresql/*/bin; TLS certificates come from openssl).
for pair in redis-server:redis-server redis-cli:redis-tools chromium:chromium psql:postgresql-client openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "missing: ${missing[*]} — install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# promtool (test/deploy/prometheus.test.ts checks and unit-tests deploy/prometheus/alerts.yml): only the
# binary, from Debian's prometheus package fetched with `apt-get download` (needs no root). Installing
# the package would pull 12 packages (35 with recommends) and, on a host with systemd, start a
# Prometheus server on :9090 — the gateway's default admin port.
PROMTOOL_DIR=node_modules/.cache/portcullis-tools
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$PROMTOOL_DIR/promtool" ]; then
  if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    echo "== fetching promtool (from Debian's prometheus package, the binary only)"
    tmp=$(mktemp -d) && chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -qq prometheus) && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus)
    fi
    mkdir -p "$PROMTOOL_DIR"
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool > "$PROMTOOL_DIR/promtool.part"
    chmod 755 "$PROMTOOL_DIR/promtool.part" && mv "$PROMTOOL_DIR/promtool.part" "$PROMTOOL_DIR/promtool"
    rm -rf "$tmp"
  else
    echo "missing: promtool — install it with: sudo apt-get install -y prometheus (or put promtool on PATH)" >&2
    exit 1
  fi
fi

# The shared Redis the machine normally starts on 127.0.0.1:6379 (store contract tests use it with
# their own key prefix); start one the same way if it is not answering.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/portcullis-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/portcullis-redis --logfile /tmp/portcullis-redis/redis.log
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# The machine's PostgreSQL on 127.0.0.1:5432 (trust, database `test`): the database gateway tests use
# it as the upstream. Start its cluster the way the machine does if it is not answering.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting PostgreSQL on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  fi
fi
