#!/usr/bin/env bash
# Installs the system packages cascade-spec builds against: Debian's libtorch (PyTorch 1.13,
# CPU) and the OpenMP OpenBLAS (without it BLAS falls back to the slow reference one), plus
# cmake and a compiler. Idempotent: packages already present are left alone.
set -euo pipefail
packages=(libtorch-dev libopenblas0-openmp cmake g++ make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-debian: all packages present (${packages[*]})"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian: missing ${missing[*]}; run this script as root (sudo bash scripts/setup-debian.sh)" >&2
  exit 1
fi
echo "setup-debian: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y --no-install-recommends "${missing[@]}"
