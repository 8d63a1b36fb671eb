#!/usr/bin/env bash
# Installs, idempotently, what test/e2e/harbor_den_test.go runs: Harbor in
# test/harbor/.venv (scripts/harbor-test-deps.sh) and den's Python SDK,
# sdk/python with its Harbor provider den.harbor, into that virtualenv
# (`pip install --no-deps`: the venv already has httpx and h2). The SDK is
# reinstalled only when a file of sdk/python changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/harbor-test-deps.sh"
venv="$root/test/harbor/.venv"
if [ ! -x "$venv/bin/harbor" ]; then
  exit 0 # no Python >= 3.12: harbor-test-deps.sh said so; the test skips
fi
stamp="$venv/.den-sdk.sha256"
want="$(cd "$root/sdk/python" && find pyproject.toml README.md den -type f \( -name '*.py' -o -name '*.toml' -o -name '*.md' -o -name py.typed \) -print0 2>/dev/null |
  sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c 'import den.harbor' 2>/dev/null; then
  exit 0
fi
echo "den: installing sdk/python into test/harbor/.venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$root/sdk/python"
echo "$want" >"$stamp"
