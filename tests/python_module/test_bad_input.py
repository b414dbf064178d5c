"""Bad input raises a Python exception that names the argument, before anything runs, and never
ends the interpreter: each case is one call with one thing wrong (docs/python.md, "Arrays and
errors")."""

import numpy as np
import pytest

import moeref

X = np.ones((3, 8), np.float32)
W = np.ones((5, 8), np.float32)
Q = np.ones((2, 4, 8), np.float32)
KV = np.ones((2, 6, 8), np.float32)

CASES = [
    # (id, call, exception, words the message must contain)
    ("list-not-ndarray", lambda: moeref.ops.matmul([[1.0]], W), TypeError,
     ["x", "numpy.ndarray", "list"]),
    ("numpy-scalar", lambda: moeref.ops.gelu(np.float32(1.0)), TypeError,
     ["x", "numpy.ndarray", "numpy.float32"]),
    ("float64", lambda: moeref.ops.matmul(X.astype(np.float64), W), TypeError,
     ["x", "float32", "float64"]),
    ("big-endian", lambda: moeref.ops.matmul(X, W.astype(">f4")), TypeError, ["w", "float32"]),
    ("int-array", lambda: moeref.ops.softmax(np.ones((2, 3), np.int32)), TypeError,
     ["x", "int32"]),
    ("wrong-ndim", lambda: moeref.ops.matmul(X[0], W), ValueError, ["x", "2 dimensions"]),
    ("inner-dims-differ", lambda: moeref.ops.matmul(X, np.ones((5, 7), np.float32)), ValueError,
     ["w", "[*, 8]", "[5, 7]"]),
    ("transposed", lambda: moeref.ops.matmul(X, np.ones((8, 5), np.float32).T), ValueError,
     ["w", "C-contiguous", "ascontiguousarray"]),
    ("strided-slice", lambda: moeref.ops.softmax(np.ones((3, 16), np.float32)[:, ::2]),
     ValueError, ["x", "C-contiguous"]),
    ("norm-weight-length", lambda: moeref.ops.rms_norm(X, np.ones(7, np.float32)), ValueError,
     ["weight", "[8]", "[7]"]),
    ("rope-odd-head-dim", lambda: moeref.ops.rope(np.ones((2, 1, 3), np.float32), [0, 1]),
     ValueError, ["head_dim", "even"]),
    ("rope-positions-count", lambda: moeref.ops.rope(np.ones((2, 1, 4), np.float32), [0]),
     ValueError, ["positions", "one position per token"]),
    ("rope-negative-position", lambda: moeref.ops.rope(np.ones((1, 1, 4), np.float32), [-1]),
     ValueError, ["positions[0]", "negative"]),
    ("rope-float-positions", lambda: moeref.ops.rope(np.ones((1, 1, 4), np.float32), [0.5]),
     TypeError, ["positions", "integers"]),
    ("rope-scaling-without-factor",
     lambda: moeref.ops.rope(np.ones((1, 1, 4), np.float32), [0],
                             rope_scaling={"type": "yarn", "original_max_position_embeddings": 8}),
     moeref.ConfigError, ["rope_scaling.factor", "missing"]),
    ("rope-scaling-unknown-type",
     lambda: moeref.ops.rope(np.ones((1, 1, 4), np.float32), [0],
                             rope_scaling={"type": "longrope"}),
     moeref.ConfigError, ["rope_scaling.type", "longrope"]),
    ("rope-theta-negative", lambda: moeref.ops.rope(np.ones((1, 1, 4), np.float32), [0], -1.0),
     ValueError, ["theta", "positive"]),
    ("position-past-cache", lambda: moeref.ops.attention(Q, KV, KV, [0, 6]), ValueError,
     ["positions[1]", "6 positions"]),
    ("heads-not-multiple", lambda: moeref.ops.attention(np.ones((1, 3, 8), np.float32), KV, KV,
                                                        [0]), ValueError, ["heads", "multiple"]),
    ("values-shape", lambda: moeref.ops.attention(Q, KV, np.ones((2, 5, 8), np.float32), [0, 1]),
     ValueError, ["values", "[2, 6, 8]"]),
    ("block-outside-pool", lambda: moeref.ops.attention(
        Q, np.ones((2, 2, 4, 8), np.float32), np.ones((2, 2, 4, 8), np.float32), [0, 1],
        block_table=[0, 2]), ValueError, ["block_table[1]", "2 blocks"]),
    ("probs-width-too-small", lambda: moeref.ops.attention(Q, KV, KV, [0, 3], probs_width=3),
     ValueError, ["probs_width", "3"]),
    ("top-k-too-large", lambda: moeref.ops.top_k(np.ones((2, 4), np.float32), 5), ValueError,
     ["k", "1..4"]),
    ("capacity-indices-not-experts",
     lambda: moeref.ops.apply_capacity(np.array([[0, 4]], np.int32), 4, 1), ValueError,
     ["indices[0, 1]", "4"]),
    ("capacity-repeated-expert",
     lambda: moeref.ops.apply_capacity(np.array([[1, 1]], np.int32), 4, 1), ValueError,
     ["indices[0, 1]", "distinct"]),
    ("capacity-int64-indices",
     lambda: moeref.ops.apply_capacity(np.array([[0, 1]], np.int64), 4, 1), TypeError,
     ["indices", "int32"]),
    ("swiglu-shapes-differ",
     lambda: moeref.ops.swiglu(np.ones(4, np.float32), np.ones(5, np.float32)), ValueError,
     ["up", "[4]"]),
    ("ffn-missing-weight", lambda: moeref.ops.ffn(X, {"up_proj.weight": np.ones((4, 8),
                                                                                np.float32)}),
     KeyError, ["weights['gate_proj.weight']", "missing"]),
    ("ffn-unknown-weight", lambda: moeref.ops.ffn(X, {
        "up_proj.weight": np.ones((4, 8), np.float32),
        "down_proj.weight": np.ones((8, 4), np.float32),
        "bias": np.ones(8, np.float32)}, "gelu"), ValueError, ["weights['bias']", "not a weight"]),
    ("ffn-weight-shape", lambda: moeref.ops.ffn(X, {
        "up_proj.weight": np.ones((4, 8), np.float32),
        "down_proj.weight": np.ones((4, 8), np.float32)}, "gelu"), ValueError,
     ["weights['down_proj.weight']", "[8, 4]"]),
    ("unknown-activation", lambda: moeref.ops.ffn(X, {}, "relu"), ValueError,
     ["activation", "relu"]),
    ("moe-top-k", lambda: moeref.ops.moe(X, {"router.weight": np.ones((2, 8), np.float32)}, 3,
                                         activation="gelu"), ValueError, ["top_k", "1..2"]),
    ("moe-capacity-factor", lambda: moeref.ops.moe(X, {}, 1, capacity_factor=-1.0), ValueError,
     ["capacity_factor"]),
    ("sampling-temperature", lambda: moeref.ops.sample_token(np.ones(4, np.float32), -1.0),
     ValueError, ["temperature"]),
    ("sampling-top-p", lambda: moeref.ops.sample_token(np.ones(4, np.float32), 1.0, top_p=0.0),
     ValueError, ["top_p"]),
    ("sampling-position", lambda: moeref.ops.sample_token(np.ones(4, np.float32), 1.0,
                                                          position=-1), ValueError,
     ["position"]),
    ("empty-logits", lambda: moeref.ops.greedy_token(np.ones(0, np.float32)), ValueError,
     ["logits"]),
    ("patchify-size", lambda: moeref.ops.patchify(np.ones((3, 5, 5), np.float32), 2), ValueError,
     ["patch"]),
]


@pytest.mark.parametrize("call,exception,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_operand_raises_naming_it(call, exception, words):
    with pytest.raises(exception) as raised:
        call()
    for word in words:
        assert word in str(raised.value)


def test_config_that_does_not_validate_names_the_key(tiny_config):
    tiny_config["n_kv_heads"] = 3
    with pytest.raises(moeref.ConfigError) as raised:
        moeref.Model(tiny_config)
    assert 'config: key "n_kv_heads"' in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_config_with_an_unknown_key(tiny_config):
    tiny_config["n_expert"] = 4
    with pytest.raises(moeref.ConfigError, match="n_expert"):
        moeref.Model(tiny_config)


def test_config_that_json_cannot_hold(tiny_config):
    tiny_config["init_std"] = float("nan")
    with pytest.raises(TypeError, match="config"):
        moeref.Model(tiny_config)


def test_config_file_that_does_not_exist(tmp_path):
    with pytest.raises(moeref.ConfigError, match="missing.json"):
        moeref.Model(tmp_path / "missing.json")


def test_weights_of_the_wrong_shape_name_the_tensor(tiny_config):
    weights = moeref.Model(tiny_config).weights()
    weights = dict(weights)
    weights["embed.weight"] = np.ones((64, 15), np.float32)
    with pytest.raises(moeref.SafetensorsError) as raised:
        moeref.Model(tiny_config, weights)
    assert 'weights: tensor "embed.weight" has shape [64, 15]' in str(raised.value)


def test_weights_with_nan_name_the_element(tiny_config):
    weights = {k: v.copy() for k, v in moeref.Model(tiny_config).weights().items()}
    weights["final_norm.weight"][3] = np.nan
    with pytest.raises(moeref.SafetensorsError, match=r"final_norm.weight.*NaN at index 3"):
        moeref.Model(tiny_config, weights)


def test_weights_that_are_not_arrays(tiny_config):
    with pytest.raises(TypeError, match=r"weights\['embed.weight'\]"):
        moeref.Model(tiny_config, {"embed.weight": [[0.0]]})


def test_token_outside_the_vocabulary(tiny_config):
    model = moeref.Model(tiny_config)
    with pytest.raises(ValueError, match="64"):
        model.trace([1, 64])


def test_prompt_past_max_seq_len(tiny_config):
    model = moeref.Model(tiny_config)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.generate([1] * 30, max_new_tokens=8)


def test_model_weights_are_read_only_views(tiny_config):
    weights = moeref.Model(tiny_config).weights()
    with pytest.raises(ValueError, match="read-only"):
        weights["embed.weight"][0, 0] = 1.0


def test_candidate_of_an_unsupported_dtype():
    with pytest.raises(TypeError, match=r"candidate\['out'\].*uint8"):
        moeref.compare({"prefill/logits": np.ones((1, 4), np.float32)},
                       {"out": np.ones(2, np.uint8)})


def test_unknown_precision():
    with pytest.raises(ValueError, match="fp8"):
        moeref.compare({"prefill/logits": np.ones((1, 4), np.float32)},
                       {"prefill/logits": np.ones((1, 4), np.float32)}, "fp8")
