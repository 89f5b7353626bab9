#!/usr/bin/env bash
# Installs everything qvet needs from Debian's packages. Idempotent: packages already
# present are left alone, and apt is only asked when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang llvm libclang-rt-14-dev
  afl++ check libsubunit-dev qemu-utils zlib1g-dev libzstd-dev lcov gnuplot-nox
  libnbd-dev libnbd-bin nbdkit libqcow-dev python3-yaml chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root: sudo $0" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
