#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz (or those named) for SECONDS seconds each (default
# 60), building them first with clang in build-fuzz (MOEREF_FUZZ=ON). Each harness keeps its
# corpus in build-fuzz/fuzz-corpus/<harness>, started from the seeds tests/fuzz/CMakeLists.txt
# lists, and writes what it finds (crash-*, timeout-*, oom-*, leak-*) to
# build-fuzz/fuzz-findings/<harness>/. Exits 1 when anything was found. docs/fuzzing.md says how
# to keep a reproducer.
#
#   tools/fuzz.sh [SECONDS] [HARNESS...]
#
# MOEREF_FUZZ_BUILD names another build directory; MOEREF_JOBS the build's parallel jobs
# (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift $(($# > 0 ? 1 : 0))
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "tools/fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi
build=${MOEREF_FUZZ_BUILD:-build-fuzz}

# Configured once: a new configure stamps the new commit into every object of ref/.
if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=${CXX:-clang++} cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOEREF_FUZZ=ON
fi
cmake --build "$build" --target moeref_fuzzers -j"${MOEREF_JOBS:-2}"

harnesses=("$@")
if ((${#harnesses[@]} == 0)); then
  mapfile -t harnesses <"$build/tests/fuzz/harnesses.txt"
fi

found=()
for harness in "${harnesses[@]}"; do
  fuzzer=$build/tests/fuzz/fuzz_$harness
  if [[ ! -x $fuzzer ]]; then
    echo "tools/fuzz.sh: no harness '$harness' (see $build/tests/fuzz/harnesses.txt)" >&2
    exit 2
  fi
  corpus=$build/fuzz-corpus/$harness
  findings=$build/fuzz-findings/$harness
  mkdir -p "$corpus" "$findings"
  while IFS= read -r seed; do
    [[ -n $seed ]] && cp -n "$seed" "$corpus/seed-$(basename "$(dirname "$seed")")-$(basename "$seed")"
  done <"$build/tests/fuzz/$harness.seeds"
  echo "== fuzz_$harness for ${seconds}s"
  # A finding stops the fuzzer with a non-zero status; the others still run.
  if ! "$fuzzer" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/" -print_final_stats=1 2>"$build/fuzz-findings/$harness.log"; then
    tail -n 40 "$build/fuzz-findings/$harness.log" >&2
    found+=("$harness")
  else
    grep -E '^stat::number_of_executed_units' "$build/fuzz-findings/$harness.log" || true
  fi
done

if ((${#found[@]})); then
  echo "tools/fuzz.sh: findings for ${found[*]}: see $build/fuzz-findings/" >&2
  exit 1
fi
echo "tools/fuzz.sh: no findings"
