#!/usr/bin/env python3
"""Runs every console example of the documentation and checks that it prints what the page says.

A console example is a fenced block opened with ```console in README.md or docs/*.md. In it, a
line starting with "$ " is a command (a trailing backslash continues it on the next line); the
lines up to the next command or the end of the block are what it prints, stdout and stderr
together. In the expected lines, "..." stands for any text within a line (a timing, a path), and
a line holding only "..." for any number of lines, none included. A command that exits with a
status other than 0 must print a line containing "error" that the page shows.

Each page's commands run in order, with bash, in one temporary directory of their own (a file one
command writes is there for the next), where `configs`, `golden`, `docs` and `tools` are links to
the repository's and both `moeref` and `build/tools/moeref` run the moeref under test.

Usage: docs_examples.py MOEREF SOURCE_DIR [PAGE...]   (pages relative to SOURCE_DIR; default: all)
Exit status 0 when every example prints what its page shows, 1 otherwise (each difference is
printed with the page and line of the command), 2 on a malformed block.
"""

import os
import re
import subprocess
import sys
import tempfile

LINKED = ("configs", "golden", "docs", "tools")
COMMAND_TIMEOUT_S = 300


class Example:
    def __init__(self, page, line, command):
        self.page = page
        self.line = line  # of the "$ " line, 1-based
        self.command = command
        self.expected = []


def parse_examples(page, text):
    """The console examples of one page, in order. Raises ValueError on an unterminated block."""
    examples = []
    inside = False
    current = None
    continuing = False
    opened_at = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not inside:
            if re.fullmatch(r"```console\s*", line):
                inside, current, continuing, opened_at = True, None, False, number
            continue
        if re.fullmatch(r"```\s*", line):
            if continuing:
                raise ValueError(f"{page}:{number}: the command continues past the block's end")
            inside = False
            continue
        if continuing:
            current.command += "\n" + line
            continuing = line.endswith("\\")
        elif line.startswith("$ "):
            current = Example(page, number, line[2:])
            examples.append(current)
            continuing = line.endswith("\\")
        elif current is None:
            raise ValueError(f"{page}:{number}: output before the block's first command")
        else:
            current.expected.append(line)
    if inside:
        raise ValueError(f"{page}:{opened_at}: unterminated console block")
    return examples


def line_matches(expected, actual):
    parts = [re.escape(part) for part in expected.split("...")]
    return re.fullmatch(".*?".join(parts), actual) is not None


def output_matches(expected, actual):
    """Whether the actual lines match the expected ones ("..." lines match any run of lines)."""
    if not expected:
        return not actual
    head = expected[0]
    if head.strip() == "...":
        return any(output_matches(expected[1:], actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and line_matches(head, actual[0]) and output_matches(expected[1:],
                                                                              actual[1:])


def prepare(workdir, moeref, source_dir):
    for name in LINKED:
        os.symlink(os.path.join(source_dir, name), os.path.join(workdir, name))
    os.makedirs(os.path.join(workdir, "build", "tools"))
    os.symlink(moeref, os.path.join(workdir, "build", "tools", "moeref"))
    bin_dir = os.path.join(workdir, ".bin")
    os.makedirs(bin_dir)
    os.symlink(moeref, os.path.join(bin_dir, "moeref"))
    return bin_dir


def run_page(page, examples, moeref, source_dir):
    failures = 0
    with tempfile.TemporaryDirectory(prefix="docs-examples-") as workdir:
        bin_dir = prepare(workdir, moeref, source_dir)
        env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
        for example in examples:
            result = subprocess.run(["bash", "-c", example.command], cwd=workdir, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    timeout=COMMAND_TIMEOUT_S, text=True, errors="replace")
            actual = result.stdout.splitlines()
            problems = []
            if not output_matches(example.expected, actual):
                problems.append("prints something else")
            if result.returncode != 0 and not any("error" in e for e in example.expected):
                problems.append(f"exits with status {result.returncode}")
            if problems:
                failures += 1
                print(f"{page}:{example.line}: $ {example.command}\n  " + "; ".join(problems))
                print("  the page shows:\n" + "".join(f"    {e}\n" for e in example.expected))
                print("  it printed:\n" + "".join(f"    {a}\n" for a in actual))
    return failures


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    moeref, source_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    pages = argv[3:] or (["README.md"] + sorted(
        os.path.join("docs", name) for name in os.listdir(os.path.join(source_dir, "docs"))
        if name.endswith(".md")))
    try:
        parsed = []
        for page in pages:
            with open(os.path.join(source_dir, page), encoding="utf-8") as f:
                parsed.append((page, parse_examples(page, f.read())))
    except ValueError as error:
        print(f"docs_examples: {error}", file=sys.stderr)
        return 2
    total = sum(len(examples) for _, examples in parsed)
    failures = sum(run_page(page, examples, moeref, source_dir)
                   for page, examples in parsed if examples)
    print(f"docs_examples: {total - failures} of {total} console examples print what their page "
          f"shows")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
