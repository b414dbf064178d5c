#!/usr/bin/env bash
# Rewrites every committed golden set from its config: run after a deliberate change to the
# reference's numbers, then review the diff and say why in the commit. `moeref golden --verify
# golden/sets` (run by the test suite) checks that the committed sets still match the code.
# --force: each set replaces the committed one as a whole (docs/outputs.md).
set -euo pipefail
cd "$(dirname "$0")/.."
moeref=${MOEREF:-build/tools/moeref}
sets=golden/sets

"$moeref" golden configs/golden/tiny-mqa-moe.json --force --out "$sets/tiny-mqa-moe" \
  --description "Multi-query attention (1 K/V head), 16 experts top-2 in every layer, SwiGLU"
"$moeref" golden configs/golden/tiny-gqa-mixed.json --force --out "$sets/tiny-gqa-mixed" \
  --description "Grouped K/V heads (4 query, 2 K/V), LayerNorm, GELU, MoE every other layer"
"$moeref" golden configs/golden/tiny-capacity.json --force --out "$sets/tiny-capacity" \
  --description "Capacity factor 0.5: assignments dropped in GShard order (see capacity)"
"$moeref" golden configs/golden/tiny-hf-mixtral.json --force --out "$sets/tiny-hf-mixtral" \
  --description "Mixtral-compatible (exportable with moeref export-hf), 2 K/V heads, 8 experts"
"$moeref" golden --ops --force --out "$sets/ops"
"$moeref" golden configs/golden/tiny-speculative-target.json \
  --draft configs/golden/tiny-speculative-draft.json --force --out "$sets/tiny-speculative" \
  --name tiny-speculative --temperature 1.0 --top-p 1.0 --sampled-tokens 16 --seed 99 \
  --description "Speculative decoding, gamma 3: a 2-layer target and its own first layer as draft"
"$moeref" golden configs/golden/tiny-mqa-moe.json --batching --force --out "$sets/tiny-batching" \
  --name tiny-batching \
  --description "Continuous batching: 4 requests, chunked prefill, 3 preemptions, paged KV"
"$moeref" golden configs/golden/tiny-vision.json --force --out "$sets/tiny-vision" \
  --description "Vision: ViT tower, Perceiver Resampler, gated cross-attention (multi-query, q/k RMSNorm) in front of both layers; image after prompt token 4"
"$moeref" golden configs/golden/tiny-bf16-ready.json --force --out "$sets/tiny-bf16-ready" \
  --margin 0.05 --temperature 0.5 --top-k 0 --top-p 1.0 --prompt-length 8 --seed 319 --resolved-at bf16 \
  --description "bf16-ready: 4 experts top-1, 32 tokens, a prompt searched until every router, greedy and sampling decision is resolved at bf16: an honest bf16 or fp16 backend makes every decision as the reference does"
