#!/usr/bin/env bash
# Installs, idempotently, what the e2b SDK suites need (test/e2e/e2b_sdk_test.go
# runs them against a real `den up`):
#   test/e2b-js: `npm ci` (the e2b npm package pinned in package-lock.json)
#   test/e2b-py: a virtualenv in test/e2b-py/.venv with requirements.txt
# Each step reruns only when its lock/requirements file changed. A missing
# node/npm or python3 is reported and skipped here; the Go test says so too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

js="$root/test/e2b-js"
if command -v node >/dev/null && command -v npm >/dev/null; then
  stamp="$js/node_modules/.den-lock.sha256"
  want="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "den: npm ci in test/e2b-js"
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
else
  echo "den: node/npm not found; skipping test/e2b-js install (the e2b JS suite will be skipped)" >&2
fi

py="$root/test/e2b-py"
if command -v python3 >/dev/null; then
  venv="$py/.venv"
  stamp="$venv/.den-requirements.sha256"
  want="$( (python3 --version; cat "$py/requirements.txt") | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "den: creating the virtualenv test/e2b-py/.venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || {
      echo "den: python3 -m venv failed: install python3-venv (scripts/deps.sh does)" >&2
      exit 1
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt"
    echo "$want" >"$stamp"
  fi
else
  echo "den: python3 not found; skipping test/e2b-py install (the e2b Python suite will be skipped)" >&2
fi

# den's own Python and TypeScript SDKs' test dependencies.
"$root/scripts/sdk-python-deps.sh"
"$root/scripts/sdk-typescript-deps.sh"

# Harbor, for the Terminal-Bench-style runs through its e2b environment and
# through den's own provider (den.harbor, sdk/python).
"$root/scripts/harbor-den-deps.sh"
