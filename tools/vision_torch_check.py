#!/usr/bin/env python3
"""Check moeref's vision path against an independent PyTorch implementation of docs/vision.md.

A manual check (docs/vision.md, section 8); no test depends on it, and it needs PyTorch and
safetensors, which moeref itself does not use.

  python3 tools/vision_torch_check.py golden/sets/tiny-vision [--resize IMAGE.ppm TRACE]

1. From a vision model set (golden/sets/tiny-vision), it rebuilds the model in float64 PyTorch
   with library ops where they exist: the patch embedding as a strided Conv2d (the layout
   docs/vision.md promises), F.layer_norm, F.scaled_dot_product_attention (no mask for the tower,
   the resampler and the cross-attention; causal for the decoder), F.gelu, and the decoder's
   RMSNorm, rotate-half RoPE and top-2 MoE written out. It feeds the set's input `image` and
   prompt, with the image before prompt token `inputs.image.position`, and compares the vision
   tokens, each gated block's K/V and outputs, and the prefill logits with the set's trace.
2. With --resize IMAGE TRACE: IMAGE is a binary PPM (P6, maxval 255, no comments) and TRACE is
   `moeref trace CONFIG --image IMAGE` of it with the set's config; it checks that moeref's
   `vision.pixels` equals F.interpolate(pixels / 255, mode="bilinear", align_corners=False,
   antialias=False) followed by the config's normalisation.

Error measure: max |a - b| / max |b| per tensor (b = moeref). Exit status 0 when every
measure is <= --tol (default 1e-5; fp32 against float64), else 1.
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def rel_err(a, b):
    b = b.to(torch.float64)
    return ((a.cpu() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


class Model:
    def __init__(self, set_dir, device):
        self.manifest = json.load(open(f"{set_dir}/manifest.json"))
        self.c = self.manifest["config"]
        self.v = self.c["vision"]
        self.w = {k: t.to(device, torch.float64)
                  for k, t in load_file(f"{set_dir}/weights.safetensors").items()}
        self.inputs = load_file(f"{set_dir}/inputs.safetensors")
        self.trace = load_file(f"{set_dir}/trace.safetensors")
        self.device = device

    def lin(self, x, name, bias=True):
        b = self.w.get(name + ".bias") if bias else None
        return F.linear(x, self.w[name + ".weight"], b)

    def ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"],
                            eps=self.v["norm_eps"])

    def rms(self, x, weight):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.c["norm_eps"]) * weight

    @staticmethod
    def sdpa(q, k, v, heads, kv_heads, causal=False):
        # q: [T, heads*hd], k, v: [S, kv_heads*hd] -> [T, heads*hd]
        hd = q.shape[-1] // heads
        q = q.view(-1, heads, hd).transpose(0, 1)
        k = k.view(-1, kv_heads, hd).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        v = v.view(-1, kv_heads, hd).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return out.transpose(0, 1).reshape(-1, heads * hd)

    def vision_block(self, x, p, features=None):
        heads = self.v["heads"]
        if features is None:
            n = self.ln(x, p + ".attn_norm")
            kv = n
        else:
            n = self.ln(x, p + ".latent_norm")
            kv = torch.cat([self.ln(features, p + ".media_norm"), n])
        q, k, v = (self.lin(n, p + ".attn.q_proj"), self.lin(kv, p + ".attn.k_proj"),
                   self.lin(kv, p + ".attn.v_proj"))
        x = x + self.lin(self.sdpa(q, k, v, heads, heads), p + ".attn.o_proj")
        hidden = F.gelu(self.lin(self.ln(x, p + ".mlp_norm"), p + ".mlp.up_proj"))
        return x + self.lin(hidden, p + ".mlp.down_proj")

    def vision_tokens(self, image):
        v, P = self.v, self.v["patch_size"]
        conv = self.w["vision.patch_embed.weight"].view(v["width"], v["channels"], P, P)
        x = F.conv2d(image[None], conv, self.w["vision.patch_embed.bias"], stride=P)
        x = x.flatten(2).transpose(1, 2)[0] + self.w["vision.pos_embed.weight"]
        for layer in range(v["layers"]):
            x = self.vision_block(x, f"vision.layers.{layer}")
        features = self.ln(x, "vision.final_norm")
        if v["resampler_latents"] > 0:
            r = self.w["vision.resampler.latents"]
            for layer in range(v["resampler_layers"]):
                r = self.vision_block(r, f"vision.resampler.layers.{layer}", features)
            features = self.ln(r, "vision.resampler.final_norm")
        return self.lin(features, "vision.projector")

    def rope(self, x, heads):
        hd = self.c["head_dim"]
        x = x.view(x.shape[0], heads, hd)
        pos = torch.arange(x.shape[0], dtype=torch.float64, device=self.device)[:, None]
        inv = self.c["rope_theta"] ** (-torch.arange(0, hd // 2, dtype=torch.float64,
                                                     device=self.device) * 2 / hd)
        angle = (pos * inv)[:, None, :]
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([a * angle.cos() - b * angle.sin(),
                          b * angle.cos() + a * angle.sin()], -1).reshape(x.shape[0], -1)

    def ffn(self, x, p):
        gate, up = self.lin(x, p + ".gate_proj", False), self.lin(x, p + ".up_proj", False)
        return self.lin(F.silu(gate) * up, p + ".down_proj", False)

    def moe(self, x, p):
        probs = torch.softmax(self.lin(x, p + ".router", False), -1)
        weights, chosen = probs.topk(self.c["top_k"], -1)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(self.c["top_k"]):
                expert = f"{p}.experts.{chosen[t, j].item()}"
                out[t] += weights[t, j] * self.ffn(x[t:t + 1], expert)[0]
        return out

    def gated_block(self, x, p, tokens, position, report):
        v, hd = self.v, self.c["head_dim"]
        k = self.lin(tokens, p + ".k_proj", False)
        if v["cross_attention_qk_norm"]:
            k = self.rms(k.view(-1, hd), self.w[p + ".k_norm.weight"]).view(k.shape)
        val = self.lin(tokens, p + ".v_proj", False)
        report(p + ".k", k.view(k.shape[0], -1, hd), "image/")
        report(p + ".v", val.view(val.shape[0], -1, hd), "image/")
        q = self.lin(self.rms(x, self.w[p + ".attn_norm.weight"]), p + ".q_proj", False)
        if v["cross_attention_qk_norm"]:
            q = self.rms(q.view(-1, hd), self.w[p + ".q_norm.weight"]).view(q.shape)
        attn = self.lin(self.sdpa(q, k, val, v["cross_attention_heads"],
                                  v["cross_attention_kv_heads"]), p + ".o_proj", False)
        sees = (torch.arange(x.shape[0], device=self.device) >= position)[:, None]
        x = x + torch.where(sees, torch.tanh(self.w[p + ".attn_gate"]) * attn, 0.0)
        f = self.ffn(self.rms(x, self.w[p + ".ffn_norm.weight"]), p + ".ffn")
        x = x + torch.where(sees, torch.tanh(self.w[p + ".ffn_gate"]) * f, 0.0)
        report(p + ".out", x, "prefill/")
        return x

    def prefill_logits(self, prompt, tokens, position, report):
        c = self.c
        x = self.w["embed.weight"][prompt]
        for layer in range(c["n_layers"]):
            p = f"layers.{layer}"
            if layer in self.v["cross_attention_layers"]:
                x = self.gated_block(x, p + ".xattn", tokens, position, report)
            n = self.rms(x, self.w[p + ".attn_norm.weight"])
            q = self.rope(self.lin(n, p + ".attn.q_proj", False), c["n_heads"])
            k = self.rope(self.lin(n, p + ".attn.k_proj", False), c["n_kv_heads"])
            val = self.lin(n, p + ".attn.v_proj", False)
            att = self.sdpa(q, k, val, c["n_heads"], c["n_kv_heads"], causal=True)
            x = x + self.lin(att, p + ".attn.o_proj", False)
            x = x + self.moe(self.rms(x, self.w[p + ".ffn_norm.weight"]), p + ".moe")
            report(p + ".out", x, "prefill/")
        return self.lin(self.rms(x, self.w["final_norm.weight"]), "lm_head", False)


def read_ppm(path):
    data = open(path, "rb").read()
    fields, end = [], 0
    while len(fields) < 4:  # magic, width, height, maxval, each ended by one whitespace byte
        start = end
        while data[end:end + 1].isspace():
            start = end = end + 1
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[start:end])
        end += 1
    magic, width, height, maxval = fields
    if magic != b"P6" or int(maxval) != 255:
        raise SystemExit(f"{path}: expected a P6 PPM with maxval 255 and no comments")
    raster = data[end:end + int(width) * int(height) * 3]
    hwc = torch.frombuffer(bytearray(raster), dtype=torch.uint8).view(int(height), int(width), 3)
    return hwc.permute(2, 0, 1).to(torch.float64) / 255


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set_dir")
    parser.add_argument("--resize", nargs=2, metavar=("IMAGE", "TRACE"))
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = Model(args.set_dir, device)
    worst = 0.0

    def report(name, value, prefix=""):
        nonlocal worst
        expected = model.trace[prefix + name]
        error = rel_err(value.reshape(expected.shape), expected)
        worst = max(worst, error)
        print(f"{prefix + name:40s} {tuple(expected.shape)!s:16s} rel err {error:.2e}")

    image = model.inputs["image"].to(device, torch.float64)
    position = model.manifest["inputs"]["image"]["position"]
    prompt = model.inputs["prompt"].to(device).long()
    tokens = model.vision_tokens(image)
    report("vision.tokens", tokens, "image/")
    logits = model.prefill_logits(prompt, tokens, position, report)
    report("logits", logits, "prefill/")

    if args.resize:
        pixels = read_ppm(args.resize[0]).to(device)
        traced = load_file(args.resize[1])["image/vision.pixels"]
        v = model.v
        size = (v["image_size"], v["image_size"])
        resized = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False,
                                antialias=False)[0]
        mean = torch.tensor(v["mean"], dtype=torch.float64, device=device)[:, None, None]
        std = torch.tensor(v["std"], dtype=torch.float64, device=device)[:, None, None]
        normalised = (resized - mean) / std
        error = rel_err(normalised, traced)
        worst = max(worst, error)
        print(f"{'resize ' + str(tuple(pixels.shape)) + ' -> vision.pixels':40s} "
              f"{tuple(traced.shape)!s:16s} rel err {error:.2e}")
    print(f"device {device}, torch {torch.__version__}: worst rel err {worst:.2e} "
          f"(tolerance {args.tol:g})")
    return 0 if worst <= args.tol and not math.isnan(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
