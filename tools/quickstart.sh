#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job on the
# built-in default (the tiny configs): statistics, a short greedy generation, then a golden set
# written afresh and checked against the committed one.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target moeref
moeref=build/tools/moeref

echo
echo "== What the tiny model costs (moeref stats configs/tiny.json)"
"$moeref" stats configs/tiny.json

echo
echo "== A greedy generation (moeref run configs/tiny.json)"
"$moeref" run configs/tiny.json --prompt "The mixture of experts" --max-new-tokens 16

echo
echo "== A golden set written now, checked against the committed one (moeref golden, moeref compare)"
"$moeref" golden configs/golden/tiny-mqa-moe.json --force --out build/golden/tiny-mqa-moe
"$moeref" compare golden/sets/tiny-mqa-moe build/golden/tiny-mqa-moe/trace.safetensors
echo "Every intermediate tensor of a prefill, decode steps and two generations came out bit for"
echo "bit as committed: this build computes exactly what the reference defines."
