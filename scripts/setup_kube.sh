#!/usr/bin/env bash
# Build the Kubernetes test toolchain from the Go module proxy into .cache/kube (ignored by git), idempotently:
#
#   etcd, kube-apiserver, kube-controller-manager   the real API server the operator tests run against
#   helm                                             lint, template and install of charts/tickstrata
#
# Called by scripts/setup.sh. Each binary is stamped with its version and skipped when already built, so a second
# run takes a second. The first build of kube-apiserver takes 10-25 minutes on 2 cores; progress is printed.
# Why build rather than download: the machines reach only package registries, and the Go module proxy serves the
# Kubernetes sources (kind, k3d and minikube need Docker, which the CI machine does not have).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache"
KUBE="$CACHE/kube"
BIN="$KUBE/bin"
mkdir -p "$BIN"

# ---- pinned versions (all served by the Go module proxy; see ../shared/reference/infra.md) ----------------------
KUBERNETES_VERSION=v1.36.3
STAGING_VERSION=v0.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0

log() { printf '\033[1m[setup-kube]\033[0m %s\n' "$*" >&2; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] && [ -x "$3" ]; }

export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=mod
export GOTOOLCHAIN=local CGO_ENABLED=0

if ! command -v go >/dev/null; then
  log "no Go toolchain on this machine: the Kubernetes tests cannot run (install Go >= 1.25)"
  exit 1
fi

# A wrapper module per tool: `go install` refuses modules with replace directives (k8s.io/kubernetes has many).
wrapper() {  # wrapper <dir> <module-name>
  mkdir -p "$1"
  [ -f "$1/go.mod" ] || (cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

build_etcd() {
  stamp_ok "$KUBE/etcd.stamp" "$ETCD_VERSION" "$BIN/etcd" && return
  log "building etcd $ETCD_VERSION (1-3 min the first time)"
  local dir="$KUBE/src/etcd"
  wrapper "$dir" tickstrata.local/etcdbuild
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go build -trimpath -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  echo "$ETCD_VERSION" > "$KUBE/etcd.stamp"
}

build_kubernetes() {
  if stamp_ok "$KUBE/kubernetes.stamp" "$KUBERNETES_VERSION" "$BIN/kube-apiserver" &&
     [ -x "$BIN/kube-controller-manager" ]; then
    return
  fi
  log "building kube-apiserver and kube-controller-manager $KUBERNETES_VERSION (10-25 min the first time)"
  local dir="$KUBE/src/kubernetes"
  rm -rf "$dir" && wrapper "$dir" tickstrata.local/kubebuild
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -s "$gomod" ] || { log "could not fetch k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod"; exit 1; }
  # Kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces them with
  # local folders; point each at its published version instead.
  local staging
  staging=$(awk '/^replace/,/^\)/ { if ($1 ~ /^k8s\.io\// && $2 == "=>" && $3 ~ /^\.\/staging/) print $1 }' "$gomod")
  [ -n "$staging" ] || { log "no staging modules found in $gomod"; exit 1; }
  {
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    for module in $staging; do echo "replace $module => $module $STAGING_VERSION"; done
  } >> "$dir/go.mod"
  local minor ldflags
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (
    cd "$dir"
    # The blank imports make `go mod tidy` keep (and complete) the requires above; without them it drops them.
    cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
EOF
    go mod tidy
    grep -q "k8s.io/kubernetes $KUBERNETES_VERSION" go.mod || { echo "go.mod lost k8s.io/kubernetes $KUBERNETES_VERSION" >&2; exit 1; }
    log "  compiling kube-apiserver"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    log "  compiling kube-controller-manager"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
  )
  echo "$KUBERNETES_VERSION" > "$KUBE/kubernetes.stamp"
}

build_helm() {
  stamp_ok "$KUBE/helm.stamp" "$HELM_VERSION" "$BIN/helm" && return
  log "building helm $HELM_VERSION"
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$KUBE/helm.stamp"
}

build_etcd
build_helm
build_kubernetes
log "Kubernetes toolchain ready in $BIN: $(ls "$BIN" | tr '\n' ' ')"
