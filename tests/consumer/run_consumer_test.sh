#!/usr/bin/env bash
# Installs a moeref build tree into <build dir>/consumer-prefix, builds the consumer project
# (tests/consumer) against it in <build dir>/consumer-build and runs its test: what a backend
# author's find_package(moeref) sees.
#
#   run_consumer_test.sh BUILD_DIR SOURCE_DIR BUILD_TYPE CXX_COMPILER [EXTRA_FLAGS]
#
# EXTRA_FLAGS go to both the compile and the link (the sanitizer flags of a MOEREF_SANITIZE
# build, without which the installed libraries do not link).
set -euo pipefail

build_dir=$1
source_dir=$2
build_type=$3
cxx_compiler=$4
extra_flags=${5:-}

prefix=$build_dir/consumer-prefix
consumer_build=$build_dir/consumer-build

cmake --install "$build_dir" --prefix "$prefix" > /dev/null
cmake -S "$source_dir/tests/consumer" -B "$consumer_build" -DCMAKE_BUILD_TYPE="$build_type" \
  -DCMAKE_CXX_COMPILER="$cxx_compiler" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_FLAGS="$extra_flags" -DCMAKE_EXE_LINKER_FLAGS="$extra_flags" > /dev/null
cmake --build "$consumer_build"
"$consumer_build/consumer_test"
