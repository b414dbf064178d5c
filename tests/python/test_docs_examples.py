"""The parser and matcher of tests/docs_examples.py, which runs the docs' console examples."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import docs_examples  # noqa: E402


class ParseExamples(unittest.TestCase):
    def test_commands_continuations_and_outputs(self):
        text = "\n".join([
            "intro", "```console", "$ moeref a \\", "    --b 1", "out 1", "out 2",
            "$ moeref c", "```", "```", "$ not an example", "```", "```console", "$ d", "x",
            "```"])
        examples = docs_examples.parse_examples("page.md", text)
        self.assertEqual([(e.line, e.command, e.expected) for e in examples], [
            (3, "moeref a \\\n    --b 1", ["out 1", "out 2"]),
            (7, "moeref c", []),
            (13, "d", ["x"]),
        ])

    def test_malformed_blocks_are_refused_with_their_line(self):
        cases = [
            ("```console\n$ a\n", "page.md:1: unterminated console block"),
            ("```console\noutput first\n```\n", "page.md:2: output before the block's first command"),
            ("```console\n$ a \\\n```\n", "page.md:3: the command continues past the block's end"),
        ]
        for text, message in cases:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as caught:
                    docs_examples.parse_examples("page.md", text)
                self.assertEqual(str(caught.exception), message)


class OutputMatches(unittest.TestCase):
    CASES = [
        # expected, actual, matches
        (["a", "b"], ["a", "b"], True),
        (["a", "b"], ["a", "c"], False),
        (["a"], ["a", "b"], False),
        (["a", "b"], ["a"], False),
        ([], [], True),
        ([], ["a"], False),
        (["rate ... tokens/s"], ["rate 12.5 tokens/s"], True),
        (["rate ... tokens/s"], ["rate 12.5 tokens/s!"], False),
        (["rate ... tokens/s"], ["speed 12.5 tokens/s"], False),
        (["a", "...", "z"], ["a", "z"], True),
        (["a", "...", "z"], ["a", "b", "c", "z"], True),
        (["a", "...", "z"], ["a", "b", "c"], False),
        (["  ...", "z"], ["x", "y", "z"], True),
        (["(1.5) [x]*"], ["(1.5) [x]*"], True),
        (["(1.5) [x]*"], ["(105) [x]*"], False),
    ]

    def test_table(self):
        for expected, actual, matches in self.CASES:
            with self.subTest(expected=expected, actual=actual):
                self.assertEqual(docs_examples.output_matches(expected, actual), matches)


if __name__ == "__main__":
    unittest.main()
