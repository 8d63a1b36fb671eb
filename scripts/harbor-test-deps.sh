#!/usr/bin/env bash
# Installs, idempotently, Harbor (the Terminal-Bench harness) for
# test/e2e/harbor_test.go, which runs Harbor's built-in e2b environment
# against a real `den up`: a virtualenv in test/harbor/.venv with
# test/harbor/requirements.txt (harbor[e2b], every package pinned).
# It reruns only when the requirements or the interpreter changed.
#
# Harbor needs Python >= 3.12. Debian 12's python3 is 3.11, so this takes
# the first of python3.13, python3.12 or python3 that is new enough, then a
# pyenv-installed 3.12+ (the project's machines have one). None found is
# reported and skipped here; the Go test says so too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/test/harbor"
venv="$dir/.venv"

new_enough() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

python=""
for cand in python3.13 python3.12 python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && new_enough "$cand"; then
    python="$(command -v "$cand")"
    break
  fi
done
if [ -z "$python" ]; then
  echo "den: no Python >= 3.12 found (Harbor needs one); skipping test/harbor install (the Harbor test will be skipped)" >&2
  exit 0
fi

stamp="$venv/.den-requirements.sha256"
want="$( (echo "$python"; "$python" --version; cat "$dir/requirements.txt") | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/harbor" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "den: creating the virtualenv test/harbor/.venv with $("$python" --version) (Harbor; about a minute)"
rm -rf "$venv"
"$python" -m venv "$venv" || {
  echo "den: $python -m venv failed" >&2
  exit 1
}
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
echo "$want" >"$stamp"
