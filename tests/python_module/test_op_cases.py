"""Op cases at the caller's shapes (moeref.op_case, moeref.write_op_case, `moeref golden --op`;
golden/shaped_op_cases.h), test-backend-ops style: a table of ops at odd shapes. Each written case
regenerates bit for bit (`moeref golden --verify`), its expected outputs are what moeref.ops
computes on its stored inputs, the checker passes the reference and fails a perturbed candidate,
and every decision's margin, recomputed here in numpy from the stored inputs, is above the one
asked for. Requests that cannot be met are refused, naming the decision; bad shapes are refused
naming the parameter. Python and the CLI write the same files for the same arguments, for op cases
and for model cases resolved at a precision."""

import json
import os
import subprocess

import numpy as np
import pytest

import moeref
import moeref_golden as mg
from conftest import SOURCE_DIR, TINY_CONFIG

CLI = os.environ.get("MOEREF_CLI", str(SOURCE_DIR / "build" / "tools" / "moeref"))

# Shapes off every multiple of 8, heads that group unevenly, a cache already holding positions.
CASES = [
    ("matmul", {"rows": 3, "in": 17, "out": 5}),
    ("rms_norm", {"rows": 2, "d": 13}),
    ("layer_norm", {"rows": 3, "d": 7}),
    ("rope", {"tokens": 5, "n_heads": 3, "head_dim": 10, "max_position": 5000}),
    ("softmax", {"rows": 3, "n": 19}),
    ("attention", {"new_tokens": 3, "n_heads": 6, "n_kv_heads": 3, "head_dim": 12,
                   "cached_positions": 7}),
    ("cross_attention", {"queries": 2, "n_heads": 3, "n_kv_heads": 1, "head_dim": 6,
                         "vision_tokens": 11}),
    ("top_k", {"tokens": 9, "n_experts": 6, "k": 3, "renormalize": 0}),
    ("expert_ffn", {"rows": 3, "d_model": 9, "d_ff": 13, "activation": "gelu"}),
    ("moe", {"tokens": 7, "d_model": 12, "n_experts": 5, "expert_d_ff": 10, "top_k": 2,
             "capacity_factor": 0.75}),
    ("sampling", {"positions": 5, "vocab_size": 23, "temperature": 0.9, "top_k": 7,
                  "top_p": 0.8}),
    ("greedy", {"rows": 4, "vocab_size": 29}),
]
IDS = [op for op, _ in CASES]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every case of the table, written once: op -> GoldenSet."""
    root = tmp_path_factory.mktemp("op-cases")
    return {op: moeref.write_op_case(root / op, op, shape) for op, shape in CASES}


def reference_outputs(op, inputs, parameters):
    """The op of moeref.ops on a case's stored inputs, by output name."""
    p = parameters
    if op == "matmul":
        return {"out": moeref.ops.matmul(inputs["x"], inputs["w"])}
    if op == "rms_norm":
        return {"out": moeref.ops.rms_norm(inputs["x"], inputs["weight"], p["eps"])}
    if op == "layer_norm":
        return {"out": moeref.ops.layer_norm(inputs["x"], inputs["weight"], inputs["bias"],
                                             p["eps"])}
    if op == "rope":
        return {"out": moeref.ops.rope(inputs["x"], inputs["positions"], p["theta"])}
    if op == "softmax":
        return {"out": moeref.ops.softmax(inputs["x"])}
    if op == "attention":
        context, probs = moeref.ops.attention(inputs["q"], inputs["keys"], inputs["values"],
                                              inputs["positions"],
                                              probs_width=p["probs_width"])
        return {"context": context, "probs": probs}
    if op == "cross_attention":
        last = np.full(p["queries"], p["vision_tokens"] - 1, dtype=np.int32)
        context, probs = moeref.ops.attention(inputs["q"], inputs["keys"], inputs["values"], last,
                                              probs_width=p["vision_tokens"])
        return {"context": context, "probs": probs}
    if op == "top_k":
        indices, weights = moeref.ops.top_k(inputs["probs"], p["k"], p["renormalize"])
        return {"indices": indices, "weights": weights}
    if op == "expert_ffn":
        weights = {name + ".weight": value for name, value in inputs.items() if name != "x"}
        return {"out": moeref.ops.ffn(inputs["x"], weights, p["activation"])}
    if op == "moe":
        weights = {name[len("moe."):]: value for name, value in inputs.items() if name != "x"}
        return moeref.ops.moe(inputs["x"], weights, p["top_k"], p["router_renormalize"],
                              p["capacity_factor"], p["activation"])
    if op == "sampling":
        logits = inputs["logits"]
        probs = np.zeros_like(logits)
        tokens = []
        for row in range(logits.shape[0]):
            kept, probabilities = moeref.ops.processed_distribution(
                logits[row], p["temperature"], p["top_k"], p["top_p"])
            probs[row, kept] = probabilities
            tokens.append(moeref.ops.sample_token(logits[row], p["temperature"], p["top_k"],
                                                  p["top_p"], p["seed"], row))
        return {"probs": probs, "tokens": np.array(tokens, dtype=np.int32)}
    if op == "greedy":
        return {"tokens": np.array([moeref.ops.greedy_token(row) for row in inputs["logits"]],
                                   dtype=np.int32)}
    raise AssertionError("no reference for " + op)


@pytest.mark.parametrize("op,shape", CASES, ids=IDS)
def test_case_is_at_the_callers_shapes_and_regenerates(op, shape, written):
    golden = written[op]
    assert golden.kind == "op" and golden.manifest["op"] == op
    for key, value in shape.items():
        assert golden.manifest["generator"]["shape"][key] == value
    run = subprocess.run([CLI, "golden", "--verify", golden.dir], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 golden set, 0 failed" in run.stdout


@pytest.mark.parametrize("op,shape", CASES, ids=IDS)
def test_expected_outputs_are_the_ops_on_the_stored_inputs(op, shape, written):
    golden = written[op]
    computed = reference_outputs(op, golden.inputs(), golden.manifest["parameters"])
    for entry in golden.expected:
        name = entry["name"]
        assert computed[name].tobytes() == golden.expected_tensor(name).tobytes(), name


def perturbed(candidate, name):
    """`name` off: a float tensor by 5%, a token tensor with its first token moved to another id."""
    changed = dict(candidate)
    value = candidate[name]
    if value.dtype == np.float32:
        changed[name] = np.asarray(value * np.float32(1.05), dtype=np.float32)
    else:
        changed[name] = value.copy()
        changed[name].flat[0] = 1 if value.flat[0] == 0 else 0
    return changed


@pytest.mark.parametrize("op,shape", CASES, ids=IDS)
def test_checker_passes_the_reference_and_fails_a_perturbed_candidate(op, shape, written):
    golden = written[op]
    reference = moeref.run_case(golden)
    assert moeref.compare(golden, reference, "fp32").passed
    name = golden.expected[0]["name"]
    candidate = perturbed(reference, name)
    report = moeref.compare(golden, candidate, "fp32")
    assert not report.passed
    assert report.first_failure == name


def softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_gaps(scores, k):
    """Per row, the smallest gap between neighbours among the k + 1 largest."""
    ordered = -np.sort(-np.asarray(scores, dtype=np.float64), axis=-1)[:, :k + 1]
    return (ordered[:, :-1] - ordered[:, 1:]).min(axis=-1)


def draw_margins(logits, temperature, seed):
    """Plain temperature sampling: each draw's distance from the nearest cumulative boundary."""
    margins = []
    for row, values in enumerate(softmax64(np.asarray(logits, np.float64) / temperature)):
        u = moeref.ops.generation_uniform(seed, 0, row, 0)
        margins.append(np.abs(u - np.cumsum(values)).min())
    return np.array(margins)


# Margins well above what the first seed gives, so the search has work to do.
MARGIN_CASES = [
    ("top_k", {"tokens": 6, "n_experts": 5, "k": 2}, 0.02),
    ("moe", {"tokens": 5, "d_model": 24, "n_experts": 4, "expert_d_ff": 8, "top_k": 2}, 0.02),
    ("sampling", {"positions": 6, "vocab_size": 9, "temperature": 1.5}, 0.02),
    ("greedy", {"rows": 5, "vocab_size": 11}, 0.3),
]


@pytest.mark.parametrize("op,shape,margin", MARGIN_CASES, ids=[c[0] for c in MARGIN_CASES])
def test_every_decision_clears_the_margin_asked_for(op, shape, margin):
    built = moeref.op_case(op, shape, seed=7, margin=margin)
    inputs, parameters = built["inputs"], built["manifest"]["parameters"]
    if op == "top_k":
        gaps = top_gaps(inputs["probs"], shape["k"])
    elif op == "moe":
        logits = inputs["x"].astype(np.float64) @ inputs["moe.router.weight"].astype(np.float64).T
        gaps = top_gaps(softmax64(logits), shape["top_k"])
    elif op == "sampling":
        gaps = draw_margins(inputs["logits"], shape["temperature"], parameters["seed"])
    else:
        gaps = top_gaps(inputs["logits"], 1)
    # float64 here against the reference's float32: equal to far below the margins asked for.
    assert gaps.min() > margin - 1e-6, gaps
    assert built["manifest"]["margins"]["min"] > margin
    # The search moved past seeds that missed it (the table's margins are chosen so).
    assert built["manifest"]["generator"]["seed"] > 7


def test_ops_without_decisions_take_the_first_seed():
    built = moeref.op_case("softmax", {"rows": 2, "n": 3}, seed=99, margin=0.5)
    assert built["manifest"]["generator"]["seed"] == 99
    assert built["manifest"]["margins"]["decisions"] == 0


def test_an_unreachable_margin_is_refused_naming_the_decision():
    with pytest.raises(RuntimeError, match=r'none of the 5 seeds from 0 .*"indices row \d+"'):
        moeref.op_case("top_k", {"tokens": 16, "n_experts": 64, "k": 8}, seed=0, margin=0.05,
                       tries=5)


def test_an_unresolvable_precision_is_refused_naming_the_decision(tmp_path):
    with pytest.raises(RuntimeError, match=r'resolves every decision at fp16 .*tokens row \d+: '
                                           r'margin .*fp16 resolution'):
        moeref.write_op_case(tmp_path / "case", "greedy", {"rows": 8, "vocab_size": 64},
                             margin=0.0, resolved_at="fp16", tries=2)
    assert not (tmp_path / "case").exists()


def cli_op_case(out, op, shape, *options):
    args = [CLI, "golden", "--op", op, "--out", str(out)]
    for key, value in shape.items():
        args += ["--shape", "%s=%s" % (key, value)]
    return subprocess.run(args + list(options), capture_output=True, text=True)


def assert_same_files(a, b):
    for name in ("inputs.safetensors", "trace.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    manifest_a = json.loads((a / "manifest.json").read_text())
    manifest_b = json.loads((b / "manifest.json").read_text())
    for generator_field in ("moeref_version", "git_commit"):
        manifest_a.pop(generator_field)
        manifest_b.pop(generator_field)
    assert manifest_a == manifest_b


def test_python_and_the_cli_write_the_same_op_case(tmp_path):
    op, shape = "moe", {"tokens": 5, "d_model": 8, "n_experts": 4, "expert_d_ff": 6, "top_k": 2,
                        "activation": "gelu"}
    moeref.write_op_case(tmp_path / "python", op, shape, seed=3, margin=0.01, resolved_at="bf16")
    run = cli_op_case(tmp_path / "cli", op, shape, "--seed", "3", "--margin", "0.01",
                      "--resolved-at", "bf16")
    assert run.returncode == 0, run.stderr
    assert_same_files(tmp_path / "python", tmp_path / "cli")
    assert moeref.GoldenSet(tmp_path / "cli").manifest["margins"]["resolved_at"] == "bf16"


BAD_SHAPES = [
    # (op, shape, what the message must say)
    ("convolution", {"rows": 1}, r'op "convolution" has no generated cases \(one of matmul'),
    ("matmul", {"rows": 3, "in": 4}, r'shape "out" of op matmul is missing'),
    ("matmul", {"rows": -3, "in": 4, "out": 2}, r'shape "rows" of op matmul must be an integer >= 1, got -3'),
    ("matmul", {"rows": 1.5, "in": 4, "out": 2}, r'"rows" .* got 1.5'),
    ("matmul", {"rows": 1, "in": 4, "out": 2, "cols": 2}, r'shape "cols" of op matmul is not a parameter'),
    ("softmax", {"rows": 1, "n": 2**20 + 1}, r'shape "n" of op softmax must be at most 1048576'),
    ("attention", {"new_tokens": 1, "n_heads": 4, "n_kv_heads": 3, "head_dim": 8,
                   "cached_positions": 0}, r'"n_kv_heads" .* must divide n_heads'),
    ("top_k", {"tokens": 2, "n_experts": 4, "k": 5}, r'"k" .* at most n_experts'),
    ("rope", {"tokens": 2, "n_heads": 1, "head_dim": 7}, r'"head_dim" .* even'),
    ("sampling", {"positions": 2, "vocab_size": 5, "temperature": 0.5, "top_p": 1.5},
     r'"top_p" .* \(0, 1\], got 1.5'),
    ("expert_ffn", {"rows": 1, "d_model": 2, "d_ff": 2, "activation": "relu"},
     r'"activation" .* "swiglu" or "gelu", got "relu"'),
]


@pytest.mark.parametrize("op,shape,message", BAD_SHAPES, ids=[m for _, _, m in BAD_SHAPES])
def test_bad_shapes_are_refused_naming_the_parameter(op, shape, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        moeref.op_case(op, shape)
    run = cli_op_case(tmp_path / "case", op, shape)
    assert run.returncode != 0
    assert "error" in run.stderr
    assert not (tmp_path / "case").exists()


def test_bad_arguments_are_refused_naming_the_argument():
    with pytest.raises(TypeError, match="shape"):
        moeref.op_case("matmul", [3, 4, 5])
    with pytest.raises(ValueError, match="resolved_at"):
        moeref.op_case("matmul", {"rows": 1, "in": 1, "out": 1}, resolved_at="fp8")
    with pytest.raises(ValueError, match="seed"):
        moeref.op_case("matmul", {"rows": 1, "in": 1, "out": 1}, seed=-1)
    with pytest.raises(ValueError, match="tries"):
        moeref.op_case("matmul", {"rows": 1, "in": 1, "out": 1}, tries=0)
    with pytest.raises(ValueError, match="margin"):
        moeref.op_case("matmul", {"rows": 1, "in": 1, "out": 1}, margin=-1.0)


def test_op_case_ops_lists_every_op_of_the_table():
    assert sorted(moeref.op_case_ops()) == sorted(IDS)


# The committed bf16-ready set's config, sampling and prompt (golden/regenerate.sh searched for it):
# every decision resolved at bf16. A given prompt is checked as a searched one is, so this is the
# check without the search's minute of calibrating refused candidates.
BF16_READY = SOURCE_DIR / "configs" / "golden" / "tiny-bf16-ready.json"
BF16_READY_PROMPT = [6, 1, 13, 19, 4, 31, 14, 18]


def test_python_and_the_cli_write_the_same_resolved_model_case(tmp_path):
    golden = moeref.write_model_case(tmp_path / "python", BF16_READY, prompt=BF16_READY_PROMPT,
                                     temperature=0.5, top_p=1.0, seed=319, margin_threshold=0.05,
                                     resolved_at="bf16")
    assert golden.manifest["margins"]["resolved_at"] == "bf16"
    run = subprocess.run([CLI, "golden", str(BF16_READY), "--out", str(tmp_path / "cli"),
                          "--tokens", ",".join(map(str, BF16_READY_PROMPT)),
                          "--temperature", "0.5", "--top-p", "1.0", "--seed", "319",
                          "--margin", "0.05", "--resolved-at", "bf16"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "python" / "weights.safetensors").read_bytes() == (
        tmp_path / "cli" / "weights.safetensors").read_bytes()
    assert_same_files(tmp_path / "python", tmp_path / "cli")


# A prompt of TINY_CONFIG with a sampled token whose margin is below its fp16 resolution.
GIVEN_PROMPT = [0, 13, 26, 39, 52]


def test_a_given_prompt_unresolved_at_the_precision_is_refused_naming_the_decision(tmp_path):
    with pytest.raises(RuntimeError, match=r"the given prompt fails the check: .* row \d+: "
                                           r"margin .*fp16 resolution"):
        moeref.write_model_case(tmp_path / "case", dict(TINY_CONFIG), prompt=GIVEN_PROMPT,
                                decode_steps=2, sampled_tokens=3, resolved_at="fp16")
    assert not (tmp_path / "case").exists()
