#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job on the
# built-in default (the tiny config): its statistics and a short greedy generation.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target moeref

build/tools/moeref stats configs/tiny.json
build/tools/moeref run configs/tiny.json --prompt "The mixture of experts" --max-new-tokens 16
