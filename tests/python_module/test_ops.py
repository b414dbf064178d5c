"""moeref.ops gives the C++ reference's bits: every committed op set (golden/sets/ops, written by
the C++ ops and verified by ctest's golden_verify_committed_sets) is read with the numpy-only
reader of tools/moeref_golden.py, its inputs are handed to the Python op, and every output must
equal the set's bit for bit."""

import numpy as np
import pytest

import moeref
import moeref_golden as mg
from conftest import OP_SETS


def bits_equal(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert actual.tobytes() == expected.tobytes()


def run_matmul(inputs, parameters):
    return {"out": moeref.ops.matmul(inputs["x"], inputs["w"])}


def run_rms_norm(inputs, parameters):
    return {"out": moeref.ops.rms_norm(inputs["x"], inputs["weight"], parameters["eps"])}


def run_layer_norm(inputs, parameters):
    return {"out": moeref.ops.layer_norm(inputs["x"], inputs["weight"], inputs["bias"],
                                         parameters["eps"])}


def run_rope(inputs, parameters):
    return {"out": moeref.ops.rope(inputs["x"], inputs["positions"], parameters["theta"],
                                   parameters.get("rope_scaling"))}


def run_softmax(inputs, parameters):
    return {"out": moeref.ops.softmax(inputs["x"])}


def run_attention(inputs, parameters):
    context, probs = moeref.ops.attention(inputs["q"], inputs["keys"], inputs["values"],
                                          inputs["positions"],
                                          probs_width=parameters["probs_width"])
    return {"context": context, "probs": probs}


def run_cross_attention(inputs, parameters):
    # Every query sees every vision token: the causal kernel with each query at the last one.
    last = parameters["vision_tokens"] - 1
    context, probs = moeref.ops.attention(inputs["q"], inputs["keys"], inputs["values"],
                                          [last] * parameters["queries"])
    return {"context": context, "probs": probs}


def run_top_k(inputs, parameters):
    indices, weights = moeref.ops.top_k(inputs["probs"], parameters["k"],
                                        parameters["renormalize"])
    return {"indices": indices, "weights": weights}


def run_expert_ffn(inputs, parameters):
    weights = {name + ".weight": value for name, value in inputs.items() if name != "x"}
    return {"out": moeref.ops.ffn(inputs["x"], weights, parameters["activation"])}


def run_moe(inputs, parameters):
    weights = {name[len("moe."):]: value for name, value in inputs.items() if name != "x"}
    return moeref.ops.moe(inputs["x"], weights, parameters["top_k"],
                          parameters["router_renormalize"], parameters["capacity_factor"],
                          parameters["activation"])


def run_gated_cross_attention(inputs, parameters):
    weights = {name: value for name, value in inputs.items()
               if name not in ("x", "vision_tokens", "positions")}
    traced = moeref.ops.gated_cross_attention(
        inputs["x"], inputs["vision_tokens"], inputs["positions"], parameters["image_position"],
        weights, parameters["n_heads"], parameters["n_kv_heads"], parameters["head_dim"],
        eps=parameters["norm_eps"])
    return {"layers.0." + name: value for name, value in traced.items()}


def run_greedy(inputs, parameters):
    logits = inputs["logits"]
    return {"tokens": np.array([moeref.ops.greedy_token(row) for row in logits], np.int32)}


def run_sampling(inputs, parameters):
    logits = inputs["logits"]
    probs = np.zeros_like(logits)
    tokens = []
    for position, row in enumerate(logits):
        kept, p = moeref.ops.processed_distribution(row, parameters["temperature"],
                                                    parameters["top_k"], parameters["top_p"])
        probs[position, kept] = p.astype(np.float32)
        tokens.append(moeref.ops.sample_token(
            row, parameters["temperature"], parameters["top_k"], parameters["top_p"],
            parameters["seed"], position, parameters["request"], parameters["draw"]))
    return {"probs": probs, "tokens": np.array(tokens, np.int32)}


RUNNERS = {
    "matmul": run_matmul,
    "rms_norm": run_rms_norm,
    "layer_norm": run_layer_norm,
    "rope": run_rope,
    "softmax": run_softmax,
    "attention": run_attention,
    "cross_attention": run_cross_attention,
    "top_k": run_top_k,
    "expert_ffn": run_expert_ffn,
    "moe": run_moe,
    "gated_cross_attention": run_gated_cross_attention,
    "greedy": run_greedy,
    "sampling": run_sampling,
}

OP_SET_DIRS = sorted(p for p in OP_SETS.iterdir() if (p / "manifest.json").exists())


def test_every_op_of_the_committed_sets_has_a_runner():
    ops = {mg.GoldenSet(d).manifest["op"] for d in OP_SET_DIRS}
    assert ops == set(RUNNERS)


@pytest.mark.parametrize("set_dir", OP_SET_DIRS, ids=lambda d: d.name)
def test_op_is_bit_identical_to_the_committed_set(set_dir):
    golden = mg.GoldenSet(set_dir)
    outputs = RUNNERS[golden.manifest["op"]](golden.inputs, golden.manifest["parameters"])
    for entry in golden.expected:
        bits_equal(outputs[entry["name"]], golden.tensor(entry["name"]))
    assert set(outputs) == {entry["name"] for entry in golden.expected}


def test_paged_attention_reads_the_blocks_of_its_table():
    # The same K/V as an unpaged cache of 8 positions, stored in a pool of 3 blocks of 4 in the
    # order (block 2, block 0): the results must be the same bits.
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 4, 8), dtype=np.float32)
    keys = rng.standard_normal((2, 8, 8), dtype=np.float32)
    values = rng.standard_normal((2, 8, 8), dtype=np.float32)
    pool_k = np.zeros((3, 2, 4, 8), np.float32)
    pool_v = np.zeros((3, 2, 4, 8), np.float32)
    for logical, block in enumerate([2, 0]):
        pool_k[block] = keys[:, 4 * logical:4 * logical + 4]
        pool_v[block] = values[:, 4 * logical:4 * logical + 4]
    expected = moeref.ops.attention(q, keys, values, [5, 6])
    paged = moeref.ops.attention(q, pool_k, pool_v, [5, 6], block_table=[2, 0])
    for a, e in zip(paged, expected):
        bits_equal(a, e)


def test_top_k_margins_are_the_gaps_between_neighbours():
    probs = np.array([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.4, 0.1]], np.float32)
    margins = moeref.ops.top_k_margins(probs, 2)
    np.testing.assert_allclose(margins, [np.float32(0.3) - np.float32(0.15), 0.0])


def test_capacity_drops_in_gshard_priority_order():
    # Capacity 1: expert 0 takes token 0's rank-0 choice, so token 1's rank-0 choice of expert 0
    # is dropped; rank-1 choices come after every rank-0 one.
    indices = np.array([[0, 1], [0, 2], [1, 2]], np.int32)
    kept, dropped = moeref.ops.apply_capacity(indices, 3, 1)
    np.testing.assert_array_equal(kept, [[1, 0], [0, 1], [1, 0]])
    assert dropped == 3


def test_philox_matches_the_random123_known_answer():
    # Random123's kat_vectors: philox4x32 10 rounds, counter and key all zero.
    assert moeref.ops.philox4x32_10([0, 0, 0, 0], [0, 0]) == [
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
