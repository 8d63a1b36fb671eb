#!/usr/bin/env bash
# Installs, idempotently, the host packages den needs: busybox-static (the
# tiny test image), debootstrap (the base image), e2fsprogs, iproute2, tmux
# (interactive tests), openssl, curl, QEMU (microVM sandboxes), the OpenSSH
# client and rsync (SSH gateway tests). Go itself
# must already be installed.
set -euo pipefail
need=()
for pkg in busybox-static debootstrap e2fsprogs iproute2 tmux curl ca-certificates xz-utils python3-venv qemu-system-x86 qemu-utils openssh-client rsync; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "den: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "den: Go is required (https://go.dev/dl), version from go.mod" >&2; exit 1; }
