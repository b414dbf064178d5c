#!/usr/bin/env python3
"""What a call into the Python module costs beyond the op (docs/python.md, section 7).

Each op runs at its smallest shape, where the op's own work is a few nanoseconds (one row of a
handful of elements), so the time per call is the call's overhead: argument parsing, the operand
checks of python/arrays.h, allocating the result. A benchmark, not a test: it prints a table and
says which calls miss the 10 microsecond target.

    PYTHONPATH=build/python python3 bench/python_overhead.py [--repeat N]
"""

import argparse
import timeit

import numpy as np

import moeref

TARGET_US = 10.0


def cases():
    one = np.ones((1, 4), np.float32)
    w = np.ones((4, 4), np.float32)
    d = np.ones(4, np.float32)
    q = np.ones((1, 1, 4), np.float32)
    kv = np.ones((1, 1, 4), np.float32)
    probs = moeref.ops.softmax(one)
    indices, _ = moeref.ops.top_k(probs, 1)
    ffn = {"gate_proj.weight": w, "up_proj.weight": w, "down_proj.weight": w}
    return [
        ("matmul", lambda: moeref.ops.matmul(one, w)),
        ("rms_norm", lambda: moeref.ops.rms_norm(one, d)),
        ("layer_norm", lambda: moeref.ops.layer_norm(one, d, d)),
        ("rope", lambda: moeref.ops.rope(q, [0])),
        ("softmax", lambda: moeref.ops.softmax(one)),
        ("attention", lambda: moeref.ops.attention(q, kv, kv, [0])),
        ("top_k", lambda: moeref.ops.top_k(probs, 1)),
        ("apply_capacity", lambda: moeref.ops.apply_capacity(indices, 4, 1)),
        ("swiglu", lambda: moeref.ops.swiglu(d, d)),
        ("gelu", lambda: moeref.ops.gelu(d)),
        ("ffn (weights dict)", lambda: moeref.ops.ffn(one, ffn)),
        ("greedy_token", lambda: moeref.ops.greedy_token(d)),
        ("sample_token", lambda: moeref.ops.sample_token(d, 1.0, seed=1)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20000, help="calls per measurement")
    args = parser.parse_args()
    print("%-20s %12s" % ("op (smallest shape)", "us per call"))
    missed = []
    for name, call in cases():
        call()
        best = min(timeit.repeat(call, number=args.repeat, repeat=5)) / args.repeat * 1e6
        print("%-20s %12.2f" % (name, best))
        if best >= TARGET_US:
            missed.append(name)
    print("target: under %.0f us per call; %s" %
          (TARGET_US, "missed by " + ", ".join(missed) if missed else "every call meets it"))


if __name__ == "__main__":
    main()
