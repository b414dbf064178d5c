#!/usr/bin/env bash
# Installs the Debian 12 packages moeref needs that are not installed yet. Run as root.
set -euo pipefail

packages=(
  cmake make g++ git pkg-config
  libhwy-dev libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpng-dev libssl-dev
  python3 python3-numpy
  # The Python module (python/) and its tests, the tutorial's PyTorch backend among them.
  pybind11-dev python3-dev python3-pytest python3-torch
  # The clang build and tools/fuzz.sh: clang, its libFuzzer and sanitizer runtimes, its OpenMP.
  clang libclang-rt-14-dev libomp-dev
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  echo "moeref: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
