#!/usr/bin/env bash
# The README's test command, and exactly what CI runs: install what is missing, build, run the
# whole test suite; then build again under AddressSanitizer + UndefinedBehaviorSanitizer and run
# the suite once more; then build everything with clang (its warnings too) with the fuzzers, and
# run each fuzzer for a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEREF_SANITIZE=ON
cmake --build build-asan -j2
ctest --test-dir build-asan --output-on-failure -j2

CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEREF_FUZZ=ON
cmake --build build-fuzz -j2
tools/fuzz.sh 5
