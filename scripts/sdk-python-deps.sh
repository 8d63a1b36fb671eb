#!/usr/bin/env bash
# Installs, idempotently, what the Python SDK's test suite needs
# (test/e2e/sdk_python_test.go runs it against a real `den up`): a virtualenv
# in sdk/python/.venv with the SDK (editable, so the suite tests the tree) and
# sdk/python/requirements-test.txt (every package pinned). It reruns only when
# the requirements, pyproject.toml or the interpreter changed.
#
# The SDK needs Python >= 3.11: this takes the first of python3.13,
# python3.12, python3.11 or python3 that is new enough. None found is an
# error here; the Go test says so too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/sdk/python"
venv="$dir/.venv"

new_enough() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

python=""
for cand in python3.13 python3.12 python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1 && new_enough "$cand"; then
    python="$(command -v "$cand")"
    break
  fi
done
if [ -z "$python" ]; then
  echo "den: no Python >= 3.11 with the venv module found: install python3 and python3-venv (scripts/deps.sh does)" >&2
  exit 1
fi

stamp="$venv/.den-requirements.sha256"
want="$( (echo "$python"; "$python" --version; cat "$dir/requirements-test.txt" "$dir/pyproject.toml") | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "den: creating the virtualenv sdk/python/.venv with $("$python" --version)"
rm -rf "$venv"
"$python" -m venv "$venv" || {
  echo "den: $python -m venv failed: install python3-venv" >&2
  exit 1
}
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements-test.txt" -e "$dir"
echo "$want" >"$stamp"
