#!/usr/bin/env bash
# Fail if the protos are not lint-clean (buf, rules in protos/buf.yaml) or if the committed Python stubs
# differ from a fresh generation (scripts/gen_protos.py --check). `make check` runs this.
#
# Usage: scripts/check_protos.sh [--repo-root DIR]
#   DIR defaults to the repository holding this script; the tools always come from that repository's .cache
#   (override with BUF=... and PYTHON=...), so a test can point the check at a copy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$here"
if [[ $# -eq 2 && $1 == --repo-root ]]; then
  root="$(cd "$2" && pwd)"
elif [[ $# -ne 0 ]]; then
  echo "usage: $0 [--repo-root DIR]" >&2
  exit 2
fi

buf="${BUF:-$here/.cache/bin/buf}"
python="${PYTHON:-$here/.cache/venv/bin/python}"
if [[ ! -x $buf ]]; then
  echo "check_protos: buf not found at $buf; run scripts/setup.sh" >&2
  exit 2
fi
if [[ ! -x $python ]]; then
  echo "check_protos: python not found at $python; run scripts/setup.sh" >&2
  exit 2
fi

echo "check_protos: buf lint $root/protos"
# buf reports paths relative to protos/ (the module root), e.g. tickstrata/quality/v1/quality_service.proto.
if ! (cd "$root/protos" && "$buf" lint); then
  echo "check_protos: buf lint failed; conventions are in protos/README.md" >&2
  exit 1
fi
exec "$python" "$here/scripts/gen_protos.py" --check --repo-root "$root"
