#!/usr/bin/env python3
"""Make the Hugging Face test data of tests/data/hf: checkpoints written by transformers itself.

Run where PyTorch and transformers 5 are installed (no test runs it; the test suite reads what it
wrote, committed under tests/data/hf). For each case it builds a tiny random MixtralForCausalLM
with transformers, saves it with `save_pretrained` exactly as a Hub checkpoint is saved, loads the
saved files back with `from_pretrained(dtype=torch.float32)` and records transformers' own fp32
logits for a fixed prompt:

  mixtral-bf16-sharded   BF16, shards of at most 40 kB (model.safetensors.index.json), a list
                         eos_token_id, default RoPE: the end-to-end import test.
  rope-<kind>            RoPE scaling of each kind transformers computes for this family
                         (default, linear, dynamic, yarn, llama3), BF16, one file; the prompt
                         (24 tokens) is longer than the original context (16) of yarn and
                         llama3, and than max_position_embeddings (16) of dynamic, which
                         rescales from there.

Each case directory holds the checkpoint (config.json, *.safetensors) and expected.safetensors
with `logits` [tokens, vocab] (fp32, transformers on the CPU, eager attention and experts),
`logits_f64` (the same files loaded with dtype=torch.float64: transformers' float64 forward,
which keeps RMSNorm, both softmaxes and the RoPE angles in float32), for default RoPE
`logits_exact` (that model with those float32 steps made float64: every step in float64),
`tokens` [tokens] (int64), and for RoPE the module's `inv_freq` [head_dim/2] and
`attention_scaling` [1] after the forward (the dynamic kind recomputes them for the prompt).
versions.json records the versions of torch and transformers that made them.

Usage: python3 tools/hf_make_test_data.py OUT_DIR
"""

import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import MixtralConfig, MixtralForCausalLM

PROMPT_LENGTH = 24
ORIGINAL_CONTEXT = 16

ROPE_KINDS = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT},
}


def tiny_config(rope_parameters, max_position_embeddings, eos_token_id):
    # head_dim is given: transformers 5.17's dynamic NTK reads config.head_dim, which is None
    # unless set (it then fails multiplying None by partial_rotary_factor).
    return MixtralConfig(head_dim=16,
        vocab_size=64, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2,
        max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_parameters, rope_theta=10000.0), initializer_range=0.25,
        tie_word_embeddings=False, eos_token_id=eos_token_id, bos_token_id=1,
        router_jitter_noise=0.0, attn_implementation="eager")


def prompt(vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (PROMPT_LENGTH,), generator=generator, dtype=torch.int64)


def all_float64(model):
    """Removes the float32 steps transformers keeps in a float64 model (RMSNorm, softmax of the
    router and of attention, RoPE angles): afterwards every step of the forward is float64.
    Default RoPE only. Returns torch's softmax, which the caller puts back."""
    softmax = F.softmax

    def softmax_in_input_dtype(input, dim=None, _stacklevel=3, dtype=None):
        return softmax(input, dim=dim, dtype=None if input.dtype == torch.float64 else dtype)

    F.softmax = softmax_in_input_dtype

    def rms_norm(module):
        def forward(x):
            return module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                                    + module.variance_epsilon))
        return forward

    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = rms_norm(module)

    rotary = model.model.rotary_emb
    config = model.config
    theta = config.rope_parameters["rope_theta"]
    head_dim = config.head_dim
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)

    def rotary_forward(x, position_ids):
        angles = position_ids[:, :, None].double() * inv_freq[None, None, :]
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    rotary.forward = rotary_forward
    return softmax


def make_case(out_dir, name, config, dtype, max_shard_size, seed):
    torch.manual_seed(seed)
    model = MixtralForCausalLM(config).to(dtype)
    case_dir = os.path.join(out_dir, name)
    model.save_pretrained(case_dir, max_shard_size=max_shard_size)

    loaded = MixtralForCausalLM.from_pretrained(case_dir, dtype=torch.float32,
                                                attn_implementation="eager",
                                                experts_implementation="eager")
    loaded.eval()
    tokens = prompt(config.vocab_size, seed + 1)
    with torch.no_grad():
        logits = loaded(tokens[None, :]).logits[0].contiguous()
    float64 = MixtralForCausalLM.from_pretrained(case_dir, dtype=torch.float64,
                                                 attn_implementation="eager",
                                                 experts_implementation="eager")
    float64.eval()
    with torch.no_grad():
        logits_f64 = float64(tokens[None, :]).logits[0].contiguous()
    expected = {"logits": logits.float(), "logits_f64": logits_f64, "tokens": tokens}
    if config.rope_parameters["rope_type"] == "default":
        softmax = all_float64(float64)
        with torch.no_grad():
            exact = float64(tokens[None, :]).logits[0].contiguous()
        F.softmax = softmax
        expected["logits_exact"] = exact
        print(f"{name}: float64 with its float32 steps vs all float64 "
              f"{((logits_f64 - exact).abs().max() / exact.abs().max()).item():.2e}, "
              f"fp32 vs all float64 "
              f"{((logits.double() - exact).abs().max() / exact.abs().max()).item():.2e}")
    rotary = loaded.model.rotary_emb
    expected["inv_freq"] = rotary.inv_freq.detach().float().contiguous()
    expected["attention_scaling"] = torch.tensor([float(rotary.attention_scaling)])
    save_file(expected, os.path.join(case_dir, "expected.safetensors"))
    files = sorted(os.listdir(case_dir))
    fp32_error = ((logits.double() - logits_f64).abs().max() / logits_f64.abs().max()).item()
    print(f"{name}: {files}, logits max |x| {logits.abs().max().item():.3f}, "
          f"fp32 vs float64 {fp32_error:.2e}, "
          f"attention_scaling {float(rotary.attention_scaling)}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    make_case(out_dir, "mixtral-bf16-sharded",
              tiny_config(ROPE_KINDS["default"], 64, eos_token_id=[2, 3]),
              torch.bfloat16, "40kB", seed=11)
    for i, (kind, parameters) in enumerate(ROPE_KINDS.items()):
        context = ORIGINAL_CONTEXT if kind == "dynamic" else 64
        make_case(out_dir, f"rope-{kind}", tiny_config(parameters, context, eos_token_id=2),
                  torch.bfloat16, "1GB", seed=100 + i)
    with open(os.path.join(out_dir, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__}, f,
                  indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
