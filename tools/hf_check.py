#!/usr/bin/env python3
"""Check that Hugging Face transformers' MixtralForCausalLM reproduces moeref's logits.

A manual interoperability check (docs/hf-interop.md); no test depends on it, and it needs
PyTorch, transformers, safetensors and numpy, none of which moeref itself uses.

Inputs:
  HF_DIR  a directory written by `moeref export-hf CONFIG --out HF_DIR`
          (config.json + model.safetensors in the MixtralForCausalLM layout);
  TRACE   a safetensors file written by `moeref trace CONFIG --tokens IDS --out TRACE` for the
          same config and weights. It must hold `prefill/logits` [tokens, vocab] and, for each MoE
          layer L, `prefill/layers.L.moe.router_logits` [tokens, n_experts]. The trace does not record the
          token ids, so pass the same ids with --tokens.

What it does:
  1. loads the model with MixtralForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32,
     attn_implementation="eager", experts_implementation="eager"), collecting the loading
     info (missing / unexpected / mismatched keys) and every warning transformers logs;
  2. checks that each tensor of model.safetensors arrived in the model unchanged (transformers
     5.x fuses the per-expert w1/w3/w2 matrices into mlp.experts.gate_up_proj / down_proj on
     load; the check undoes that fusion to compare);
  3. runs the tokens as one batch of 1 with output_router_logits=True (and
     output_hidden_states=True) on the CPU, and also on CUDA when a GPU is present, with TF32
     off for matrix products and cuDNN;
  4. compares HF's logits and each layer's router logits with moeref's trace.

Error measures, for HF values a and moeref values b (moeref is the reference):
  max_abs_err          max |a - b|
  max_rel_err_norm     max |a - b| / max |b|             (error relative to the tensor's scale)
  max_rel_err_elem     max over elements |a - b| / (|b| + 1e-6)   (elementwise; large where b ~ 0)
It also reports whether the greedy argmax of the logits agrees at every position and whether
the router's top-k expert sets agree with the trace's layers.L.moe.topk_indices.

Exit status: 0 when every device's max abs logits error is <= --tol (default 1e-4),
1 when one exceeds it, 2 on a usage or loading problem.

Example:
  ./build/tools/moeref export-hf configs/tiny.json --out .hfcheck/tiny-hf
  ./build/tools/moeref trace configs/tiny.json --tokens 1,17,42 --out .hfcheck/trace.safetensors
  python3 tools/hf_check.py .hfcheck/tiny-hf .hfcheck/trace.safetensors --tokens 1,17,42 \\
      --json-out hf_check.json
"""

import argparse
import datetime
import json
import logging
import os
import platform
import re
import sys
import warnings

REL_EPS = 1e-6


def parse_tokens(text):
    try:
        tokens = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not tokens:
        raise argparse.ArgumentTypeError("no token ids given")
    if any(t < 0 for t in tokens):
        raise argparse.ArgumentTypeError(f"token ids must be non-negative ({text!r})")
    return tokens


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See docs/hf-interop.md for the commands and the last measured results.",
    )
    parser.add_argument("hf_dir", help="directory written by `moeref export-hf`")
    parser.add_argument("trace", help="safetensors file written by `moeref trace`")
    parser.add_argument("--tokens", required=True, type=parse_tokens,
                        help="comma-separated token ids, exactly as given to `moeref trace`")
    parser.add_argument("--devices", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (default): the CPU, and CUDA too when available")
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="largest max-abs logits error that passes (default 1e-4)")
    parser.add_argument("--json-out", help="write the results as JSON to this file")
    return parser


# ----------------------------------------------------------------------------- comparisons


def errors(a, b):
    """Error measures of a (Hugging Face) against b (moeref), both numpy float arrays."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: HF {a.shape} vs moeref {b.shape}")
    diff = np.abs(a - b)
    max_b = float(np.max(np.abs(b))) if b.size else 0.0
    max_abs = float(np.max(diff)) if diff.size else 0.0
    return {
        "shape": list(b.shape),
        "max_abs_err": max_abs,
        "max_rel_err_norm": max_abs / max_b if max_b > 0 else float("inf"),
        "max_rel_err_elem": float(np.max(diff / (np.abs(b) + REL_EPS))) if diff.size else 0.0,
        "max_abs_ref": max_b,
    }


def fmt_err(e):
    return (f"max_abs_err={e['max_abs_err']:.3e}  "
            f"max_rel_err_norm={e['max_rel_err_norm']:.3e}  "
            f"max_rel_err_elem={e['max_rel_err_elem']:.3e}")


def router_layers(trace):
    """Sorted list of (layer index, trace key) for every MoE layer's router logits."""
    found = []
    for key in trace:
        m = re.fullmatch(r"layers\.(\d+)\.moe\.router_logits", key)
        if m:
            found.append((int(m.group(1)), key))
    return sorted(found)


# ----------------------------------------------------------------------------- weights


def locate_loaded(name, shape, state):
    """The loaded tensor (numpy) that holds file tensor `name`, or None; undoes expert fusion."""
    if name in state and tuple(state[name].shape) == tuple(shape):
        return name, state[name]
    m = re.fullmatch(r"(model\.layers\.\d+)\.block_sparse_moe\.gate\.weight", name)
    if m:
        for key in (f"{m.group(1)}.mlp.gate.weight", f"{m.group(1)}.mlp.router.weight"):
            if key in state and tuple(state[key].shape) == tuple(shape):
                return key, state[key]
        return None
    m = re.fullmatch(r"(model\.layers\.\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight",
                     name)
    if not m:
        return None
    prefix, expert, which = m.group(1), int(m.group(2)), m.group(3)
    for moe in ("mlp", "block_sparse_moe"):
        if which == "w2":
            key = f"{prefix}.{moe}.experts.down_proj"
            if key not in state:
                continue
            fused = state[key]  # [E, d, ff] (F.linear layout) or [E, ff, d]
            if tuple(fused.shape[1:]) == tuple(shape):
                return f"{key}[{expert}]", fused[expert]
            if tuple(fused.shape[1:]) == tuple(shape[::-1]):
                return f"{key}[{expert}].T", fused[expert].T
        else:
            key = f"{prefix}.{moe}.experts.gate_up_proj"
            if key not in state:
                continue
            fused = state[key]  # [E, 2 ff, d] (gate rows, then up rows) or [E, d, 2 ff]
            ff, d = shape
            half = slice(0, ff) if which == "w1" else slice(ff, 2 * ff)
            if tuple(fused.shape[1:]) == (2 * ff, d):
                return f"{key}[{expert}, {half.start}:{half.stop}]", fused[expert, half, :]
            if tuple(fused.shape[1:]) == (d, 2 * ff):
                return f"{key}[{expert}, :, {half.start}:{half.stop}].T", fused[expert, :, half].T
    return None


def check_weights(model, weights_path):
    import numpy as np
    from safetensors.numpy import load_file

    file_tensors = load_file(weights_path)
    state = {k: v.detach().to("cpu").numpy() for k, v in model.state_dict().items()}
    used = set()
    unmatched, differing = [], []
    max_diff = 0.0
    for name in sorted(file_tensors):
        expected = file_tensors[name]
        found = locate_loaded(name, expected.shape, state)
        if found is None:
            unmatched.append(name)
            continue
        where, loaded = found
        used.add(where.split("[")[0])
        diff = float(np.max(np.abs(loaded.astype(np.float64) - expected.astype(np.float64))))
        if diff != 0.0 or loaded.dtype != expected.dtype:
            differing.append({"file": name, "model": where, "max_abs_diff": diff,
                              "model_dtype": str(loaded.dtype)})
        max_diff = max(max_diff, diff)
    not_from_file = sorted(k for k in state if k not in used)
    return {
        "file_tensors": len(file_tensors),
        "compared": len(file_tensors) - len(unmatched),
        "unmatched_file_tensors": unmatched,
        "model_tensors_not_from_file": not_from_file,
        "differing": differing,
        "max_abs_diff": max_diff,
        "bit_identical": not unmatched and not differing and not not_from_file,
    }


# ----------------------------------------------------------------------------- loading


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            self.messages.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def loading_info_to_json(info):
    if info is None:
        return None
    if not isinstance(info, dict):
        info = vars(info) if hasattr(info, "__dict__") else {"value": info}
    out = {}
    for key, value in info.items():
        if isinstance(value, (set, frozenset, list, tuple)):
            out[key] = sorted(str(v) for v in value)
        elif isinstance(value, dict):
            out[key] = {str(k): str(v) for k, v in value.items()}
        else:
            out[key] = str(value)
    return out


def load_model(hf_dir):
    """from_pretrained in fp32 with eager attention and experts; returns (model, load record)."""
    import torch
    import transformers
    from transformers import MixtralForCausalLM

    handler = ListHandler()
    tf_logger = logging.getLogger("transformers")
    tf_logger.addHandler(handler)
    attempts = [
        dict(dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"),
        dict(dtype=torch.float32, attn_implementation="eager"),
        dict(torch_dtype=torch.float32, attn_implementation="eager"),
    ]
    failures = []
    result = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for kwargs in attempts:
            try:
                result = MixtralForCausalLM.from_pretrained(
                    hf_dir, output_loading_info=True, **kwargs)
                used_kwargs = {k: str(v) for k, v in kwargs.items()}
                break
            except TypeError as e:  # an argument this transformers version does not take
                failures.append(f"{sorted(kwargs)}: {type(e).__name__}: {e}")
    tf_logger.removeHandler(handler)
    if result is None:
        raise RuntimeError("from_pretrained failed with every argument set:\n  "
                           + "\n  ".join(failures))
    model, info = result if isinstance(result, tuple) else (result, None)
    model.eval()
    py_warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    for w in py_warnings:
        print(f"  python warning while loading: {w}", file=sys.stderr)
    cfg = model.config
    record = {
        "from_pretrained_kwargs": used_kwargs,
        "rejected_kwargs": failures,
        "loading_info": loading_info_to_json(info),
        "transformers_log": handler.messages,
        "python_warnings": py_warnings,
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "experts_implementation": getattr(cfg, "_experts_implementation", None),
        "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "config_rope": {
            k: (getattr(cfg, k) if isinstance(getattr(cfg, k, None), (int, float, str, dict,
                                                                       type(None))) else
                str(getattr(cfg, k)))
            for k in ("rope_theta", "rope_parameters", "rope_scaling")
            if hasattr(cfg, k)
        },
        "num_key_value_heads": getattr(cfg, "num_key_value_heads", None),
        "transformers_version": transformers.__version__,
    }
    return model, record


# ----------------------------------------------------------------------------- running


def set_no_tf32(torch):
    """Turn TF32 off for CUDA matmuls and cuDNN; return what the flags read afterwards."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    state = {}
    for name, getter in (
        ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
        ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
        ("float32_matmul_precision", torch.get_float32_matmul_precision),
    ):
        try:
            state[name] = getter()
        except Exception as e:  # noqa: BLE001 (report, don't fail, on an API change)
            state[name] = f"unreadable: {e}"
    return state


def run_device(model, device, tokens, trace):
    import numpy as np
    import torch

    run = {"device": device}
    if device == "cuda":
        run["tf32"] = set_no_tf32(torch)
        run["device_name"] = torch.cuda.get_device_name(0)
    else:
        run["device_name"] = platform.processor() or platform.machine()
        run["torch_threads"] = torch.get_num_threads()
    model.to(device)
    ids = torch.tensor([tokens], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True, output_hidden_states=True,
                    use_cache=False, return_dict=True)
    hf_logits = out.logits[0].detach().to("cpu", torch.float64).numpy()
    ref_logits = trace["logits"].astype(np.float64)
    e = errors(hf_logits, ref_logits)
    hf_arg = hf_logits.argmax(axis=-1)
    ref_arg = ref_logits.argmax(axis=-1)
    sorted_ref = np.sort(ref_logits, axis=-1)
    e["argmax_agree"] = int((hf_arg == ref_arg).sum())
    e["positions"] = int(len(tokens))
    e["argmax_all_agree"] = bool((hf_arg == ref_arg).all())
    e["argmax_mismatch_positions"] = [int(i) for i in np.nonzero(hf_arg != ref_arg)[0]]
    e["min_top1_top2_gap_ref"] = float(np.min(sorted_ref[:, -1] - sorted_ref[:, -2]))
    e["logits_dtype"] = str(out.logits.dtype)
    run["logits"] = e

    layers = router_layers(trace)
    hf_router = out.router_logits if out.router_logits is not None else ()
    run["router_logits"] = {}
    run["router_logits_count"] = {"hf": len(hf_router), "moeref": len(layers)}
    if len(hf_router) != len(layers):
        run["router_logits_error"] = (f"HF returned {len(hf_router)} router-logit tensors, "
                                      f"moeref traced {len(layers)}")
    for (layer, key), hf_r in zip(layers, hf_router):
        a = hf_r.detach().to("cpu", torch.float64).numpy().reshape(trace[key].shape)
        r = errors(a, trace[key])
        topk_key = f"layers.{layer}.moe.topk_indices"
        if topk_key in trace:
            k = trace[topk_key].shape[-1]
            hf_top = np.argsort(-a, axis=-1, kind="stable")[:, :k]
            agree = [set(h.tolist()) == set(m.tolist())
                     for h, m in zip(hf_top, trace[topk_key])]
            r["topk_sets_agree"] = int(sum(agree))
            r["tokens"] = len(agree)
        run["router_logits"][f"layers.{layer}"] = r

    # Informational: hidden states against the trace. transformers reports the embeddings, then
    # each decoder layer's output, with the last entry after the final norm.
    hs = out.hidden_states or ()
    n_layers = len([k for k in trace if re.fullmatch(r"layers\.\d+\.out", k)])
    hidden = {}
    for i, h in enumerate(hs):
        a = h[0].detach().to("cpu", torch.float64).numpy()
        candidates = []
        if i == 0:
            candidates.append("embed.out")
        else:
            candidates.append(f"layers.{i - 1}.out")
        if i == len(hs) - 1:
            candidates.append("final_norm.out")
        best = None
        for c in candidates:
            if c in trace and trace[c].shape == a.shape:
                err = errors(a, trace[c])
                if best is None or err["max_abs_err"] < best[1]["max_abs_err"]:
                    best = (c, err)
        if best is not None:
            hidden[f"hidden_states[{i}] vs {best[0]}"] = best[1]
    run["hidden_states"] = hidden
    run["hidden_states_count"] = {"hf": len(hs), "moeref_layers": n_layers}
    model.to("cpu")
    return run


def print_run(run, tol):
    print(f"\n== {run['device']} ({run['device_name']})")
    if "tf32" in run:
        print(f"  TF32 flags: {run['tf32']}")
    e = run["logits"]
    verdict = "PASS" if e["max_abs_err"] <= tol else "FAIL"
    print(f"  logits {e['shape']}: {fmt_err(e)}  [{verdict} at tol {tol:g}]")
    print(f"    max |moeref logit| = {e['max_abs_ref']:.4f}; greedy argmax agrees at "
          f"{e['argmax_agree']}/{e['positions']} positions"
          + (f" (differs at {e['argmax_mismatch_positions']})"
             if e["argmax_mismatch_positions"] else "")
          + f"; smallest moeref top1-top2 gap {e['min_top1_top2_gap_ref']:.3e}")
    if "router_logits_error" in run:
        print(f"  router logits: {run['router_logits_error']}")
    for layer, r in run["router_logits"].items():
        extra = (f"  top-k sets agree {r['topk_sets_agree']}/{r['tokens']}"
                 if "topk_sets_agree" in r else "")
        print(f"  router logits {layer} {r['shape']}: {fmt_err(r)}{extra}")
    for name, h in run["hidden_states"].items():
        print(f"  (info) {name}: max_abs_err={h['max_abs_err']:.3e}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    weights_path = os.path.join(args.hf_dir, "model.safetensors")
    for path in (os.path.join(args.hf_dir, "config.json"), weights_path, args.trace):
        if not os.path.isfile(path):
            print(f"hf_check: {path}: no such file", file=sys.stderr)
            return 2

    import numpy as np
    import safetensors
    import torch
    import transformers
    from safetensors.numpy import load_file

    # moeref trace writes the golden sets' names ("prefill/logits"); read without the prefix.
    trace = {name.removeprefix("prefill/"): value for name, value in load_file(args.trace).items()}
    if "logits" not in trace:
        print(f"hf_check: {args.trace}: no tensor named prefill/logits", file=sys.stderr)
        return 2
    if trace["logits"].shape[0] != len(args.tokens):
        print(f"hf_check: {args.trace} has logits for {trace['logits'].shape[0]} tokens but "
              f"--tokens gives {len(args.tokens)}", file=sys.stderr)
        return 2

    now = datetime.datetime.now(datetime.timezone.utc)
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "cuda_runtime": torch.version.cuda,
    }
    print(f"hf_check {now.strftime('%Y-%m-%d %H:%M:%S UTC')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    with open(os.path.join(args.hf_dir, "config.json")) as f:
        hf_config = json.load(f)

    model, load = load_model(args.hf_dir)
    print(f"loaded with {load['from_pretrained_kwargs']}; attn={load['attn_implementation']} "
          f"experts={load['experts_implementation']} params={load['param_dtypes']} "
          f"num_key_value_heads={load['num_key_value_heads']}")
    print(f"config rope fields as transformers holds them: {load['config_rope']}")
    info = load["loading_info"] or {}
    for key, value in info.items():
        print(f"loading info {key}: {value if value else 'none'}")
    for message in load["transformers_log"]:
        print(f"transformers said: {message}")
    if not load["transformers_log"]:
        print("transformers logged no warnings while loading")

    weights = check_weights(model, weights_path)
    print(f"weights: {weights['compared']}/{weights['file_tensors']} file tensors found in the "
          f"model, max abs diff {weights['max_abs_diff']:g}, bit identical: "
          f"{weights['bit_identical']}")
    for key in ("unmatched_file_tensors", "model_tensors_not_from_file", "differing"):
        if weights[key]:
            print(f"  {key}: {weights[key]}")

    devices = ["cpu"] if args.devices in ("auto", "cpu") else []
    skipped = None
    if args.devices in ("auto", "cuda"):
        if torch.cuda.is_available():
            devices.append("cuda")
        else:
            skipped = "cuda: torch.cuda.is_available() is False"
            print(f"skipping {skipped}")
            if args.devices == "cuda":
                return 2

    runs = []
    for device in devices:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = run_device(model, device, args.tokens, trace)
        run["python_warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        runs.append(run)
        print_run(run, args.tol)
        for w in run["python_warnings"]:
            print(f"  python warning: {w}")

    passed = all(r["logits"]["max_abs_err"] <= args.tol for r in runs)
    print(f"\n{'PASS' if passed else 'FAIL'}: max abs logits error "
          + ", ".join(f"{r['device']} {r['logits']['max_abs_err']:.3e}" for r in runs)
          + f" (tolerance {args.tol:g})")

    if args.json_out:
        result = {
            "date_utc": now.isoformat(timespec="seconds"),
            "versions": versions,
            "hf_dir": args.hf_dir,
            "hf_config": hf_config,
            "trace": args.trace,
            "tokens": args.tokens,
            "tolerance": args.tol,
            "error_definitions": {
                "max_abs_err": "max |hf - moeref|",
                "max_rel_err_norm": "max |hf - moeref| / max |moeref|",
                "max_rel_err_elem": f"max |hf - moeref| / (|moeref| + {REL_EPS:g})",
            },
            "load": load,
            "weights": weights,
            "skipped": skipped,
            "runs": runs,
            "pass": passed,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2, default=str)
            f.write("\n")
        print(f"wrote {args.json_out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
