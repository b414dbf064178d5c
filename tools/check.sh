#!/usr/bin/env bash
# The README's test command, and exactly what CI runs: install what is missing, build, run the
# whole test suite; then build again under AddressSanitizer + UndefinedBehaviorSanitizer and run
# the suite once more.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEREF_SANITIZE=ON
cmake --build build-asan -j2
ctest --test-dir build-asan --output-on-failure -j2
