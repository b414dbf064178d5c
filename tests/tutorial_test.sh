#!/usr/bin/env bash
# Runs the commands of docs/checking-a-backend.md, so that the tutorial keeps working: every
# fenced block opened with ```sh is extracted, in order, into one bash script (so a variable set
# or a file written by one block is there for the next), which runs with `set -euo pipefail` in a
# temporary directory.
#
# Environment (ctest sets both, tests/CMakeLists.txt):
#   MOEREF             the built moeref binary
#   MOEREF_SOURCE_DIR  the repository root
#
# A line of a block that starts with "! " is a command expected to fail: it must exit with
# status 1 exactly (under set -e a plain "!" would pass over a command that succeeds). Only whole
# lines are rewritten, so a heredoc's body must not start a line with "! ".
set -euo pipefail

: "${MOEREF:?MOEREF must be the path of the moeref binary}"
: "${MOEREF_SOURCE_DIR:?MOEREF_SOURCE_DIR must be the repository root}"
export MOEREF MOEREF_SOURCE_DIR

doc=$MOEREF_SOURCE_DIR/docs/checking-a-backend.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

script=$work/tutorial.sh
{
  echo 'set -euo pipefail'
  echo 'expect_exit_1() {'
  echo '  local status=0'
  echo '  "$@" || status=$?'
  echo '  if [ "$status" -ne 1 ]; then'
  echo '    echo "tutorial_test: expected exit status 1, got $status: $*" >&2'
  echo '    exit 1'
  echo '  fi'
  echo '}'
  awk -v doc="$doc" '
    /^```sh[[:space:]]*$/ { inside = 1; blocks++; printf "\n# block %d, %s:%d\n", blocks, doc, NR; next }
    inside && /^```[[:space:]]*$/ { inside = 0; next }
    inside && /^! / { print "expect_exit_1 " substr($0, 3); next }
    inside { print }
    END {
      if (inside) { printf "tutorial_test: unterminated sh block in %s\n", doc > "/dev/stderr"; exit 1 }
      if (blocks == 0) { printf "tutorial_test: no sh blocks in %s\n", doc > "/dev/stderr"; exit 1 }
    }' "$doc"
} >"$script"

echo "tutorial_test: running $(grep -c '^# block ' "$script") sh blocks of $doc"
mkdir "$work/run"
cd "$work/run"
# The tutorial's own mktemp -d lands inside $work, removed on exit.
TMPDIR=$work PS4='+ tutorial: ' bash -x "$script"
echo "tutorial_test: all commands ran as documented"
