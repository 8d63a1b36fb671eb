#!/usr/bin/env bash
# Installs, idempotently, the TypeScript SDK's development dependencies
# (sdk/typescript: typescript, @types/node and yaml, pinned in its
# package-lock.json) for its tests (test/e2e/sdk_typescript_test.go runs
# them against a real `den up`). `npm ci` reruns only when the lockfile
# changed. The SDK itself has no runtime dependencies: `npm install
# ./sdk/typescript` needs none of this. A missing node/npm is reported and
# skipped here; the Go test says so too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pkg="$root/sdk/typescript"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "den: node/npm not found; skipping the sdk/typescript install (the TypeScript SDK suite will be skipped)" >&2
  exit 0
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "den: sdk/typescript needs Node.js >= 20, found $(node --version)" >&2
  exit 1
fi
stamp="$pkg/node_modules/.den-lock.sha256"
want="$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "den: npm ci in sdk/typescript"
  (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
