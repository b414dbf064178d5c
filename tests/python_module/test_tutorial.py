"""Checking a PyTorch backend against moeref from pytest: the tutorial of docs/python.md.

Copy this file into your own test suite and replace TorchBackend with your backend. It checks
1. every op on its own, at many random shapes, against moeref.ops (the C++ reference's bits),
   the way llama.cpp's test-backend-ops checks every backend op against the CPU, and the router
   at fp16 and bf16 through the checker on golden op cases written at its shapes;
2. the whole model: a golden set is written for the config under test (moeref.write_model_case,
   which searches for a prompt whose decisions are not near-ties), the backend replays it and
   moeref.compare judges every tensor with the rules of `moeref compare`;
3. that the checker catches a planted bug (a negative control), and says where it starts.

Needs: the moeref module on PYTHONPATH (docs/python.md), numpy, torch (CPU is enough), pytest.
"""

import math

import numpy as np
import pytest
import torch

import moeref

# The model under test: small, so the whole file runs in seconds.
CONFIG = {
    "name": "tutorial",
    "vocab_size": 96,
    "d_model": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "head_dim": 8,
    "n_experts": 4,
    "top_k": 2,
    "expert_d_ff": 48,
    "max_seq_len": 32,
    "init_seed": 11,
    "init_std": 0.2,
}

# --------------------------------------------------------------------------------------------
# The backend under test: plain PyTorch, float32, the usual way of writing each op.


def t(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def torch_rms_norm(x, weight, eps=1e-5):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def torch_rope(x, positions, theta=10000.0, adjacent_pairs=False):
    """Rotate-half RoPE on x [tokens, heads, head_dim]; adjacent_pairs is the planted bug."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.as_tensor(positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = angles.cos().float()[:, None, :]
    sin = angles.sin().float()[:, None, :]
    if adjacent_pairs:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, b * cos + a * sin), -1).flatten(-2)
    a, b = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), -1)


def torch_attention(q, keys, values, positions):
    """Causal attention: q [T, H, hd] at positions over keys, values [G, S, hd]."""
    heads, kv_heads, hd = q.shape[1], keys.shape[0], q.shape[2]
    keys = keys.repeat_interleave(heads // kv_heads, 0)
    values = values.repeat_interleave(heads // kv_heads, 0)
    context = torch.empty_like(q)
    for i, p in enumerate(positions):
        scores = torch.einsum("hd,hsd->hs", q[i], keys[:, : p + 1]) / math.sqrt(hd)
        context[i] = torch.einsum("hs,hsd->hd", scores.softmax(-1), values[:, : p + 1])
    return context


def torch_swiglu_ffn(x, gate, up, down):
    return (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T


def torch_top_k(probs, k):
    weights, indices = probs.topk(k, -1)
    return indices.int(), weights / weights.sum(-1, keepdim=True)


class TorchBackend:
    """The model of CONFIG (RMSNorm, RoPE, GQA attention, top-k MoE with SwiGLU experts, untied
    LM head) with a KV cache; every forward call records its tensors under moeref's trace
    names (docs/tracing.md), which is all the checker needs."""

    def __init__(self, config, weights, adjacent_pairs=False):
        self.c = config
        self.w = {name: t(value) for name, value in weights.items()}
        self.adjacent_pairs = adjacent_pairs
        self.keys = [torch.zeros(config["n_kv_heads"], config["max_seq_len"], config["head_dim"])
                     for _ in range(config["n_layers"])]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.length = 0

    def forward(self, tokens, record):
        c, w = self.c, self.w
        n, positions = len(tokens), list(range(self.length, self.length + len(tokens)))
        x = w["embed.weight"][torch.as_tensor(tokens)]
        record("embed.out", x)
        for layer in range(c["n_layers"]):
            p = "layers.%d." % layer
            h = torch_rms_norm(x, w[p + "attn_norm.weight"])
            record(p + "attn_norm.out", h)
            q = (h @ w[p + "attn.q_proj.weight"].T).view(n, c["n_heads"], c["head_dim"])
            k = (h @ w[p + "attn.k_proj.weight"].T).view(n, c["n_kv_heads"], c["head_dim"])
            v = (h @ w[p + "attn.v_proj.weight"].T).view(n, c["n_kv_heads"], c["head_dim"])
            q = torch_rope(q, positions, adjacent_pairs=self.adjacent_pairs)
            k = torch_rope(k, positions, adjacent_pairs=self.adjacent_pairs)
            record(p + "attn.q", q)
            record(p + "attn.k", k)
            record(p + "attn.v", v)
            self.keys[layer][:, positions] = k.transpose(0, 1)
            self.values[layer][:, positions] = v.transpose(0, 1)
            context = torch_attention(q, self.keys[layer], self.values[layer], positions)
            record(p + "attn.context", context)
            attn_out = context.reshape(n, -1) @ w[p + "attn.o_proj.weight"].T
            record(p + "attn.out", attn_out)
            x = x + attn_out
            record(p + "attn.residual", x)
            h = torch_rms_norm(x, w[p + "ffn_norm.weight"])
            record(p + "ffn_norm.out", h)
            router_logits = h @ w[p + "moe.router.weight"].T
            probs = router_logits.softmax(-1)
            indices, weights = torch_top_k(probs, c["top_k"])
            record(p + "moe.router_logits", router_logits)
            record(p + "moe.router_probs", probs)
            record(p + "moe.topk_indices", indices)
            record(p + "moe.topk_weights", weights)
            moe_out = torch.zeros_like(h)
            for e in range(c["n_experts"]):
                e_prefix = p + "moe.experts.%d." % e
                rows, rank = (indices == e).nonzero(as_tuple=True)
                if len(rows) == 0:
                    continue
                y = torch_swiglu_ffn(h[rows], w[e_prefix + "gate_proj.weight"],
                                     w[e_prefix + "up_proj.weight"],
                                     w[e_prefix + "down_proj.weight"])
                moe_out.index_add_(0, rows, weights[rows, rank, None] * y)
            record(p + "moe.out", moe_out)
            x = x + moe_out
            record(p + "out", x)
        x = torch_rms_norm(x, w["final_norm.weight"])
        record("final_norm.out", x)
        logits = x @ w["lm_head.weight"].T
        record("logits", logits)
        self.length += n
        return logits


def replay_model_set(golden, backend_class, **options):
    """A model set replayed as docs/golden-format.md says: the prefill, then each decode call fed
    the set's greedy token (teacher forcing); the backend's own argmax of every call is
    "greedy_tokens", and its own sampled generation "sampled_tokens"."""
    config, weights = golden.manifest["config"], golden.weights()
    inputs = golden.manifest["inputs"]
    set_tokens = golden.expected_tensor("greedy_tokens")
    candidate = {}

    def recorder(prefix):
        def record(name, value):
            candidate[prefix + name] = value.detach().numpy()
        return record

    backend = backend_class(config, weights, **options)
    greedy = [int(backend.forward(inputs["prompt"], recorder("prefill/"))[-1].argmax())]
    for i in range(inputs["decode_steps"]):
        logits = backend.forward([int(set_tokens[i])], recorder("decode.%d/" % i))
        greedy.append(int(logits[-1].argmax()))
    candidate["greedy_tokens"] = np.array(greedy, np.int32)

    # Sampling is exact integer and double logic: the backend's logits, moeref's rule.
    s = inputs["sampling"]
    backend = backend_class(config, weights, **options)
    tokens, sampled = list(inputs["prompt"]), []
    for _ in range(inputs["sampled_tokens"]):
        logits = backend.forward(tokens[backend.length:], lambda name, value: None)
        row = np.ascontiguousarray(logits[-1].detach().numpy())
        sampled.append(moeref.ops.sample_token(row, s["temperature"], s["top_k"], s["top_p"],
                                               s["seed"], position=len(tokens)))
        tokens.append(sampled[-1])
    candidate["sampled_tokens"] = np.array(sampled, np.int32)
    return candidate


# --------------------------------------------------------------------------------------------
# 1. Op by op, at random shapes (test-backend-ops style).

RNG = np.random.default_rng(2024)


def random(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def nmse(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(((actual - expected) ** 2).sum() / max((expected ** 2).sum(), 1e-30))


# An fp32 backend is off by a few roundings: its NMSE against the reference is far below 1e-10.
FP32_NMSE = 1e-10

MATMUL_SHAPES = [(1, 8, 8), (7, 33, 5), (16, 64, 48), (3, 100, 1), (31, 17, 64)]
NORM_SHAPES = [(1, 8), (5, 37), (16, 64), (2, 1)]
SOFTMAX_SHAPES = [(1, 1), (3, 17), (4, 256)]
ROPE_SHAPES = [(1, 1, 2), (5, 3, 8), (7, 2, 64), (3, 4, 128)]
# (new tokens, query heads, K/V heads, head_dim, cached positions)
ATTENTION_SHAPES = [(1, 4, 1, 8, 0), (3, 4, 2, 16, 5), (13, 8, 8, 32, 0), (1, 4, 4, 64, 30)]
TOP_K_SHAPES = [(1, 4, 1), (9, 8, 2), (16, 16, 4)]


@pytest.mark.parametrize("rows,inner,out", MATMUL_SHAPES)
def test_matmul(rows, inner, out):
    x, w = random(rows, inner), random(out, inner)
    assert nmse(t(x) @ t(w).T, moeref.ops.matmul(x, w)) < FP32_NMSE


@pytest.mark.parametrize("rows,d", NORM_SHAPES)
def test_rms_norm(rows, d):
    x, weight = random(rows, d), random(d) + 1
    assert nmse(torch_rms_norm(t(x), t(weight)), moeref.ops.rms_norm(x, weight)) < FP32_NMSE


@pytest.mark.parametrize("rows,n", SOFTMAX_SHAPES)
def test_softmax(rows, n):
    x = random(rows, n, scale=4.0)
    assert nmse(t(x).softmax(-1), moeref.ops.softmax(x)) < FP32_NMSE


@pytest.mark.parametrize("tokens,heads,head_dim", ROPE_SHAPES)
def test_rope(tokens, heads, head_dim):
    x, positions = random(tokens, heads, head_dim), RNG.integers(0, 4096, tokens)
    assert nmse(torch_rope(t(x), positions), moeref.ops.rope(x, positions)) < FP32_NMSE


@pytest.mark.parametrize("tokens,heads,kv_heads,head_dim,cached", ATTENTION_SHAPES)
def test_attention(tokens, heads, kv_heads, head_dim, cached):
    capacity = cached + tokens
    q = random(tokens, heads, head_dim)
    keys, values = random(kv_heads, capacity, head_dim), random(kv_heads, capacity, head_dim)
    positions = list(range(cached, capacity))
    expected, _ = moeref.ops.attention(q, keys, values, positions)
    assert nmse(torch_attention(t(q), t(keys), t(values), positions), expected) < FP32_NMSE


@pytest.mark.parametrize("shape", [(7,), (3, 48), (2, 4, 16)])
def test_swiglu(shape):
    gate, up = random(*shape, scale=3.0), random(*shape)
    actual = torch.nn.functional.silu(t(gate)) * t(up)
    assert nmse(actual, moeref.ops.swiglu(gate, up)) < FP32_NMSE


@pytest.mark.parametrize("tokens,experts,k", TOP_K_SHAPES)
def test_router_top_k(tokens, experts, k):
    probs = moeref.ops.softmax(random(tokens, experts, scale=2.0))
    expected_indices, expected_weights = moeref.ops.top_k(probs, k)
    indices, weights = torch_top_k(t(probs), k)
    # A different choice is only acceptable where the reference itself is at a near-tie.
    margins = moeref.ops.top_k_margins(probs, k)
    for row in range(tokens):
        if margins[row] > 1e-6:
            assert indices[row].tolist() == expected_indices[row].tolist()
    assert nmse(weights, expected_weights) < FP32_NMSE


# The router at the backend's own shapes, through the checker, at reduced precision:
# moeref.write_op_case searches for inputs whose every choice is resolved at that precision
# (docs/golden-format.md, "Op cases at your shapes"), so a backend rounding the probabilities to it
# must still choose as the reference does, and compare judges its weights with its tolerances.
# bf16 resolves fewer choices than fp16: a smaller router.
@pytest.mark.parametrize("precision,dtype,tokens,experts,k", [
    ("fp16", torch.float16, 13, 6, 2), ("fp16", torch.float16, 7, 5, 3),
    ("bf16", torch.bfloat16, 5, 4, 2)])
def test_router_top_k_at_reduced_precision_through_the_checker(precision, dtype, tokens,
                                                                experts, k, tmp_path):
    golden = moeref.write_op_case(tmp_path / "router", "top_k",
                                  {"tokens": tokens, "n_experts": experts, "k": k},
                                  resolved_at=precision)
    probs = t(golden.inputs()["probs"]).to(dtype).float()
    indices, weights = torch_top_k(probs, k)
    candidate = {"indices": indices.numpy(), "weights": weights.numpy()}
    report = moeref.compare(golden, candidate, precision=precision)
    assert report.passed, report.to_text()


# --------------------------------------------------------------------------------------------
# 2. The whole model, through the checker.


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return moeref.write_model_case(tmp_path_factory.mktemp("golden") / "tutorial", CONFIG,
                                   prompt_length=8, decode_steps=3, sampled_tokens=4)


def test_whole_model_passes_the_checker(golden):
    report = moeref.compare(golden, replay_model_set(golden, TorchBackend), precision="fp32")
    assert report.passed, report.to_text()
    assert report.tensor("prefill/logits").max_abs_error < 1e-4


# 3. A negative control: RoPE on adjacent pairs (the original paper's and llama.cpp's 'llama'
# layout) instead of rotate-half must fail, first at the first tensor it touches.
def test_planted_rope_bug_is_caught_where_it_starts(golden):
    candidate = replay_model_set(golden, TorchBackend, adjacent_pairs=True)
    report = moeref.compare(golden, candidate, precision="bf16")
    assert not report.passed
    assert report.first_failure == "prefill/layers.0.attn.q"
