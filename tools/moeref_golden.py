#!/usr/bin/env python3
"""Check a PyTorch, Triton or any other backend against moeref golden sets, in Python.

A golden set is a directory that `moeref golden` writes (docs/golden-format.md):

    manifest.json        what produced the set, its margins, and the sha256 of every file and
                         expected tensor, listed in execution order
    weights.safetensors  the model's weights (model, batching and speculative cases)
    inputs.safetensors   the inputs: "prompt" (token ids) for model cases, operands for op cases
    trace.safetensors    the expected tensors, e.g. "prefill/layers.0.attn.q",
                         "decode.0/logits", "greedy_tokens", "sampled_tokens"

This module needs only numpy (and the standard library). It reads and writes safetensors files,
opens a golden set (checking every sha256), and compares your tensors with the same rules and the
same numbers as `moeref compare`, so a report made here and one made by the C++ checker agree.

How to check a PyTorch model, layer by layer
--------------------------------------------
1. Open the set and build your model from its config and weights::

       import torch
       import moeref_golden as mg           # tools/ on PYTHONPATH

       gs = mg.GoldenSet("golden/sets/tiny-mqa-moe")    # raises GoldenError if anything is off
       config = gs.manifest["config"]                      # the model config (docs/config.md)
       weights = {k: torch.from_numpy(v) for k, v in gs.weights.items()}
       # names as moeref writes them: "embed.weight", "layers.0.attn.q_proj.weight",
       # "layers.0.moe.router.weight", "layers.0.moe.experts.3.down_proj.weight", ...
       # (`moeref export-hf --weights DIR/weights.safetensors` gives a Mixtral checkpoint instead)
       model = MyModel(config)
       model.load_state_dict(my_renaming(weights))
       prompt = torch.from_numpy(gs.inputs["prompt"]).long()          # [T] token ids

2. Run the prompt and collect the intermediates you have, named as in docs/tracing.md with the
   call as prefix: "prefill/" for the prompt, "decode.i/" for the i-th greedy decode step
   (gs.manifest["inputs"]["decode_steps"] of them), then "greedy_tokens" and "sampled_tokens".
   Forward hooks collect them without touching the model; drop the batch dimension and keep the
   traced shape::

       captured, call = {}, ["prefill/"]    # set call[0] = f"decode.{i}/" before decode step i
       def keep(name, pick=lambda output: output):
           def hook(module, args, output):
               captured[call[0] + name] = pick(output)[0].detach()   # [1, T, ...] -> [T, ...]
           return hook

       for i, layer in enumerate(model.layers):
           layer.attn_norm.register_forward_hook(keep(f"layers.{i}.attn_norm.out"))
           layer.attn.o_proj.register_forward_hook(keep(f"layers.{i}.attn.out"))
           layer.moe.router.register_forward_hook(keep(f"layers.{i}.moe.router_logits"))
           # a module returning (weights, indices): keep both; indices stay integers
           layer.moe.top_k.register_forward_hook(keep(f"layers.{i}.moe.topk_weights",
                                                      lambda output: output[0]))
           layer.moe.top_k.register_forward_hook(keep(f"layers.{i}.moe.topk_indices",
                                                      lambda output: output[1]))
       with torch.no_grad():
           captured["prefill/logits"] = model(prompt[None])[0]          # [T, V]

   Tensors you do not provide are reported as missing, not failed (unless require_all=True), so
   start with a few and add more. Names the set does not have are listed as extra: a typo shows.

3. Compare, at the precision your kernels compute in, and look where it first goes wrong::

       report = mg.compare(gs, captured, precision="bf16")   # "fp32", "tf32", "bf16" or "fp16"
       print(report.to_text())
       assert report.passed, f"first failing tensor: {report.first_failure}"

   Candidate values may be numpy arrays or torch tensors (anything with .numpy(): float tensors
   are taken as .detach().cpu().float().numpy(), float64 ones unchanged). Float tensors may be
   float16, bfloat16, float32 or float64; integer tensors (expert indices, kept flags, tokens)
   int32 or int64.

Or save the dict with `mg.write_safetensors("mine.safetensors", captured)` and run
`python3 tools/moeref_golden.py compare GOLDEN_DIR mine.safetensors --precision bf16`
(or `moeref compare` on the same file: both read the same files and say the same).

The rules (golden/compare.h, golden/decisions.h, golden/anchored_run.h)
-----------------------------------------------------------------------
- Float tensors pass when every element has |a - e| <= atol + rtol * |e| and is finite. rtol and
  atol come from the precision and the tensor's tolerance class (DEFAULT_TOLERANCES below) unless
  you pass rtol/atol. Reported: max abs error, max relative error (over nonzero expected values),
  NMSE = sum (a - e)^2 / sum e^2, cosine similarity, and how many elements are out of tolerance.
- Per-tensor gates, where the set is calibrated (the sets moeref writes: the
  manifest's "honest_errors", the worst max abs error and NMSE that twelve honest emulated
  backends make on each float tensor at each precision): a float tensor that passes elementwise
  still fails when its max abs error exceeds 4 times the honest one or its NMSE 16 times the
  honest one, each floored at 4 roundings of the precision (GATE_FACTORS, UNIT_ROUNDOFF); the
  report gives the bounds as max_abs_bound and nmse_bound (inf where no gate applies). Where the
  honest backends err by more than the class allows on a tensor, its elementwise atol widens to
  4 times their max abs error. rtol/atol overrides turn the gates off.
- Integer tensors must be equal, row by row (a row: one token's experts, or one token). A row of
  a decision that differs is judged on the scores the reference chose from: it is excused, as a
  "near_tie" (reported, not failed), only when your option scores within the precision's
  resolution of the reference's option, resolution = tol(score of the reference's option) +
  tol(score of yours), tol(v) = atol + rtol * |v| of the scores' class (where the score tensor
  is calibrated, routing and greedy decisions take tol(v) = 2 * its honest max abs error + one
  rounding * |v| instead); an exact tie is the tie rule's to decide and is never excused. The
  note names both options, their scores and the distance ("row 7 differs: rank 0: expert 6 where
  the reference chose expert 5 (golden probability 0.2456 where the golden choice has 0.2472):
  0.0016 apart, within the bf16 resolution 0.0315: a near-tie").
    top-k experts ("...moe.topk_indices", an op case's "indices"): rank by rank, on the router
      probabilities (probability class); an expert that does not exist or is chosen twice fails;
    greedy tokens: on the logits row that chose the token (logits class);
    sampled tokens: on the processed distribution of ref/generation/sampling.h and the Philox draw u
      (probability class): the distance from u to your token's cumulative-probability interval,
      against 2 * tol(u); a token the top-k/top-p cut removed, by its probability before the cut
      against the least probable kept token's.
    an op case's "tokens" (op "sampling": its parameters, u drawn at position = row; op
      "greedy": as greedy tokens);
    a batching case's "step.s/sampled" rows (request, token) and "request.id/tokens": token k of
      a request on row k of its "request.id/logits" with the request's sampling parameters and
      u = generation_uniform(seed, 0, len(prompt) + k, id, 0), as a sampled token (probability
      class), or at temperature 0 as a greedy token (the logits' score tolerance); a step row
      naming another request than the schedule's fails;
    a speculative case's decisions, on the block's q ("draft_probs") and p ("target_probs"),
      probability class (judge_drawn, judge_acceptance): "mode/block.b/draft_tokens" row i drawn
      from q row i with u from the draft-proposal stream (3) at position + i (its argmax in
      mode "greedy"); "accepted" row i, the test u q(x) <= p(x) on the proposal x the candidate
      fed and u = accept_u[i], excused when |u q(x) - p(x)| is within tol(p(x)) + u tol(q(x))
      (greedy: x against the argmax of p, or the best other token's, as a greedy token);
      "final_token" drawn with final_u from the last p row after every proposal was accepted
      (final_kind 1), else from the residual max(0, p - q) of the rejected row (tolerance
      doubled: two probabilities; p itself where the residual is empty), or p's argmax (greedy).
  Any other differing row (kept flags, ...) fails: "row N differs". Statuses: "pass", "FAIL",
  "near_tie", "missing".
- A wrong shape or dtype fails. The report's first_failure is the first failing tensor in
  execution order: the place to look first. passed means no failure and at least one compared.

Decisions and re-anchoring
--------------------------
A near-tie does not excuse what follows it: after another expert ran or another token was fed
back, a backend computes something else, equally valid, and a bug after the flip must still fail.
So when one of your decisions differs from the set's, the expected tensors are those of the
reference **re-run on your own decisions** (report.anchored is True, and the text report says
"re-anchored: ..."); whether each of your decisions was itself legitimate is judged on that
re-run's scores, as above. The set must have weights (a set built by hand without them is judged
on its own scores), and the decisions that count are (needs_anchoring):
  model sets: "...moe.topk_indices" and "sampled_tokens" (integer dtype, the set's shape); every
    routing is forced to yours and your sampled tokens are fed back. Greedy tokens need no re-run
    (the decode calls are teacher-forced with the set's tokens);
  batching sets: "...moe.topk_indices", "step.s/sampled" and "request.id/tokens" (integer dtype,
    the set's shape); the schedule is replayed with the routing forced and each request fed your
    tokens ("request.id/tokens", else the "step.s/sampled" rows);
  speculative sets: "mode/block.b/draft_tokens", "accepted" and "final_token" of integer dtype,
    whatever their shape, that differ from the set's or that the set does not have; both
    generations are re-run following your proposals, acceptances and final tokens block by
    block, so the blocks are yours, however many there are. The tensors compared are then the
    re-run's blocks: per mode, blocks b = 0, 1, ... while the re-run has "mode/block.b/position",
    each with the fields of the set's "greedy/block.0/" in the set's order, then "mode/tokens";
    "extra" lists your tensors outside that list.

The re-run is the C++ reference's: this module writes your decision tensors to a temporary
directory with write_safetensors and runs

    moeref anchor GOLDEN_DIR CANDIDATE.safetensors --out ANCHORED.safetensors

The moeref program is found as: the moeref= argument of compare() (`--moeref PATH` on the command
line), else the MOEREF_CLI environment variable, else `moeref` on PATH, else build/tools/moeref
of this repository (next to tools/). If there is none, compare() raises AnchoringError saying so;
build moeref (cmake --build build) or point to it::

    report = mg.compare(gs, captured, precision="bf16", moeref="/path/to/moeref")

or pass a re-run made elsewhere: anchored= takes the mapping (name -> array) or the path of the
safetensors file that `moeref anchor` writes, and is used only when a decision differs::

    report = mg.compare(gs, captured, precision="bf16", anchored="anchored.safetensors")

Without a differing decision no program is needed: the set's tensors are the re-run's, bit for
bit.

"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION", "PRECISIONS", "DEFAULT_TOLERANCES", "GoldenError", "SafetensorsError",
    "SafetensorsFile", "read_safetensors", "read_safetensors_file", "write_safetensors",
    "bfloat16_bits", "bfloat16_round", "GoldenSet", "TensorReport", "Report", "compare",
    "default_tolerance", "GATE_FACTORS", "GATE_FLOOR_ROUNDINGS", "DECISION_FACTOR",
    "UNIT_ROUNDOFF", "honest_error", "AnchoringError", "find_moeref", "anchored_run",
    "needs_anchoring", "philox4x32_10", "generation_uniform", "processed_distribution",
    "draw_token", "judge_top_k", "judge_greedy", "judge_sampled", "main",
]


class GoldenError(Exception):
    """A golden set that cannot be trusted: the message names the file or tensor and the problem."""


class SafetensorsError(ValueError):
    """A malformed safetensors file, or tensors that cannot be written; names the file."""


class AnchoringError(RuntimeError):
    """Re-anchoring could not be done: a routing or sampling decision of the candidate differs,
    and the moeref program that re-runs the reference on it was not found or failed."""


# ---------------------------------------------------------------------------------------------
# safetensors (the format of huggingface/safetensors; ref/io/safetensors.h)
#
#   u64 little-endian N | N bytes of UTF-8 JSON header | data
#   header: {name: {"dtype": D, "shape": [...], "data_offsets": [begin, end]},
#            "__metadata__": {str: str}}, offsets relative to the start of the data.

_MAX_HEADER_BYTES = 100_000_000
_METADATA_KEY = "__metadata__"

# The dtypes numpy can hold. BF16 has no numpy type: it is read as float32 (exact, by shifting
# the 16 bits into the high half) and written from float arrays by rounding to nearest even.
_NUMPY_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # the raw bits; converted to float32 on reading
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_NAME_OF_KIND = {  # numpy dtype (kind, itemsize) -> safetensors name
    ("b", 1): "BOOL", ("u", 1): "U8", ("i", 1): "I8", ("i", 2): "I16", ("u", 2): "U16",
    ("f", 2): "F16", ("i", 4): "I32", ("u", 4): "U32", ("f", 4): "F32", ("f", 8): "F64",
    ("i", 8): "I64", ("u", 8): "U64",
}


def _dtype_name(array: np.ndarray) -> str:
    """The safetensors name of an array's dtype ("F32", ...); "BF16" for ml_dtypes' bfloat16."""
    if array.dtype.name == "bfloat16":
        return "BF16"
    name = _NAME_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise SafetensorsError(f"numpy dtype {array.dtype} has no safetensors equivalent")
    return name


def bfloat16_bits(values: Any) -> np.ndarray:
    """The bf16 bits (uint16) of float values, rounded to nearest even; NaN becomes 0x7FC0."""
    f = np.asarray(values, dtype=np.float32)
    u = np.ascontiguousarray(f).reshape(-1).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[np.isnan(f.reshape(-1))] = 0x7FC0
    return rounded.reshape(f.shape)


def _bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bf16 bits -> float32, exactly: the 16 bits become the high half."""
    return (bits.astype(np.uint32).reshape(-1) << 16).view(np.float32).reshape(bits.shape)


def bfloat16_round(values: Any) -> np.ndarray:
    """float32 values rounded to bf16 (nearest even), as float32: what a bf16 tensor holds."""
    return _bits_to_float32(bfloat16_bits(values))


class SafetensorsFile:
    """A safetensors file read and validated.

    tensors: name -> numpy array, in the order of the data (BF16 tensors as float32);
    dtypes: name -> the dtype written in the file ("BF16", "F32", ...);
    metadata: the "__metadata__" strings; raw: name -> the tensor's bytes as stored.
    """

    def __init__(self, path: Path, tensors: dict, dtypes: dict, metadata: dict, raw: dict):
        self.path = path
        self.tensors = tensors
        self.dtypes = dtypes
        self.metadata = metadata
        self.raw = raw

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise SafetensorsError(f"{self.path}: no tensor named '{name}'")
        return self.tensors[name]


def _header_pairs(pairs: list) -> dict:
    """json object hook: rejects a key that repeats in one object, at any depth."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise SafetensorsError(f"duplicate key '{key}'")
        result[key] = value
    return result


def _reject_constant(name: str):
    raise SafetensorsError(f"{name} is not JSON")


def _index(path: Path, where: str, value: Any) -> int:
    """A JSON value as an integer >= 0 below 2^63, like the C++ reader; anything else fails."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise SafetensorsError(f"{path}: {where} is {json.dumps(value)[:64]}, "
                               "not a non-negative integer below 2^63")
    return value


def read_safetensors_file(path: str | os.PathLike) -> SafetensorsFile:
    """Reads and validates a safetensors file like moeref's C++ reader.

    Rejected, with a SafetensorsError naming the file: under 8 bytes, a header length over 10^8
    or past the end, a header that is not UTF-8 or not a JSON object, duplicate names, entries
    that are not {dtype, shape, data_offsets}, unknown dtypes, negative or non-integer
    dimensions, a byte span that is not prod(shape) * size(dtype), offsets with gaps or overlaps,
    and data that does not end exactly at the end of the file.
    """
    path = Path(path)
    try:
        data = bytearray(path.read_bytes())  # bytearray: the arrays below are writable views
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) < 8:
        raise SafetensorsError(f"{path}: file is {len(data)} bytes, shorter than the 8-byte "
                               "header length")
    n = int.from_bytes(data[:8], "little")
    if n > _MAX_HEADER_BYTES:
        raise SafetensorsError(f"{path}: header length {n} exceeds the limit of "
                               f"{_MAX_HEADER_BYTES} bytes")
    if n > len(data) - 8:
        raise SafetensorsError(f"{path}: header length {n} reaches past the end of the "
                               f"{len(data)}-byte file")
    try:
        text = bytes(data[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 at byte {e.start}") from None
    try:
        header = json.loads(text, object_pairs_hook=_header_pairs, parse_constant=_reject_constant)
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None
    except ValueError as e:
        raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is a JSON {type(header).__name__}, "
                               "not a JSON object")

    metadata = {}
    entries = []  # (begin, end, order, name, dtype, shape)
    for order, (name, entry) in enumerate(header.items()):
        if name == _METADATA_KEY:
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise SafetensorsError(f"{path}: __metadata__ is not an object of strings")
            metadata = dict(entry)
            continue
        where = f"tensor '{name}'"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{path}: {where} must be an object with exactly dtype, shape "
                                   "and data_offsets")
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in _NUMPY_DTYPES:
            raise SafetensorsError(f"{path}: {where}: unknown dtype {json.dumps(dtype)[:64]}")
        if not isinstance(entry["shape"], list):
            raise SafetensorsError(f"{path}: {where}: shape is not an array")
        shape = [_index(path, f"{where}: shape[{i}]", d) for i, d in enumerate(entry["shape"])]
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise SafetensorsError(f"{path}: {where}: data_offsets is not [begin, end]")
        begin = _index(path, f"{where}: data_offsets[0]", offsets[0])
        end = _index(path, f"{where}: data_offsets[1]", offsets[1])
        if begin > end:
            raise SafetensorsError(f"{path}: {where}: data_offsets begin {begin} is after end "
                                   f"{end}")
        size = math.prod(shape) * _NUMPY_DTYPES[dtype].itemsize
        if size >= 2**64:
            raise SafetensorsError(f"{path}: {where}: shape {shape} of {dtype} overflows 64 bits")
        if size != end - begin:
            raise SafetensorsError(f"{path}: {where}: shape {shape} of {dtype} needs {size} bytes "
                                   f"but data_offsets [{begin}, {end}] span {end - begin}")
        entries.append((begin, end, order, name, dtype, shape))

    entries.sort(key=lambda e: e[:3])  # by offset; empty tensors keep their header order
    data_size = len(data) - 8 - n
    covered, previous = 0, None
    for begin, end, _, name, _, _ in entries:
        if begin > covered:
            raise SafetensorsError(f"{path}: gap before tensor '{name}' (data_offsets [{begin}, "
                                   f"{end}]): the data must tile without gaps")
        if begin < covered:
            raise SafetensorsError(f"{path}: tensor '{name}' overlaps tensor '{previous}'")
        covered, previous = end, name
    if covered != data_size:
        raise SafetensorsError(f"{path}: tensor data ends at offset {covered} but the file holds "
                               f"{data_size} data bytes: data must end exactly at the end of file")

    start = 8 + n
    tensors, dtypes, raw = {}, {}, {}
    view = memoryview(data)
    for begin, end, _, name, dtype, shape in entries:
        chunk = view[start + begin:start + end]
        array = np.frombuffer(chunk, dtype=_NUMPY_DTYPES[dtype]).reshape(shape)
        if dtype == "BF16":
            array = _bits_to_float32(array)
        tensors[name], dtypes[name], raw[name] = array, dtype, chunk
    return SafetensorsFile(path, tensors, dtypes, metadata, raw)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> numpy array of a safetensors file (BF16 as float32), validated as above."""
    return read_safetensors_file(path).tensors


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                      metadata: Mapping[str, str] | None = None,
                      dtypes: Mapping[str, str] | None = None) -> None:
    """Writes `tensors` (name -> array or torch tensor) in the given order, atomically.

    Each tensor keeps its numpy dtype, unless `dtypes` names another for it: {"x": "BF16"} rounds
    a float tensor to bf16 (nearest even), {"y": "F16"} casts. The header is padded with spaces to
    a multiple of 8; the file appears only when complete.
    """
    path = Path(path)
    dtypes = dict(dtypes or {})
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError(f"{path}: metadata must map strings to strings")
        header[_METADATA_KEY] = dict(metadata)
    blobs, offset = [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == _METADATA_KEY:
            raise SafetensorsError(f"{path}: invalid tensor name {name!r}")
        array, original = _to_numpy(value)
        dtype = dtypes.pop(name, None) or original or _dtype_name(array)
        if dtype == "BF16":
            blob = bfloat16_bits(array).astype("<u2").tobytes()
        elif dtype in _NUMPY_DTYPES:
            blob = np.ascontiguousarray(array, dtype=_NUMPY_DTYPES[dtype]).tobytes()
        else:
            raise SafetensorsError(f"{path}: tensor '{name}': unknown dtype {dtype!r}")
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if dtypes:
        raise SafetensorsError(f"{path}: dtypes names tensors not written: {sorted(dtypes)}")
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(len(text).to_bytes(8, "little"))
            out.write(text)
            for blob in blobs:
                out.write(blob)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _to_numpy(value: Any) -> tuple[np.ndarray, str | None]:
    """A candidate value as a numpy array, and the safetensors dtype name it had when that is not
    the array's own (a torch bfloat16 tensor becomes float32 but stays "BF16")."""
    if isinstance(value, np.ndarray):
        return value, None
    if hasattr(value, "numpy") and hasattr(value, "dtype"):  # a torch tensor, without torch
        tensor = value
        for step in ("detach", "cpu"):
            if hasattr(tensor, step):
                tensor = getattr(tensor, step)()
        torch_dtype = str(tensor.dtype).replace("torch.", "")
        original = {"bfloat16": "BF16", "float16": "F16", "half": "F16"}.get(torch_dtype)
        floating = getattr(tensor, "is_floating_point", lambda: False)()
        if floating and torch_dtype != "float64" and hasattr(tensor, "float"):
            tensor = tensor.float()
        return np.asarray(tensor.numpy()), original
    return np.asarray(value), None


# ---------------------------------------------------------------------------------------------
# Golden sets (golden/golden_set.h)

_WEIGHTS_FILE = "weights.safetensors"
_INPUTS_FILE = "inputs.safetensors"
_TRACE_FILE = "trace.safetensors"
TOLERANCE_CLASSES = ("exact", "activation", "probability", "logits")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class GoldenSet:
    """A golden set directory, opened and checked.

    Opening checks format_version, every file's sha256 against the manifest's "files", and every
    expected tensor's dtype, shape and sha256 against trace.safetensors; any problem raises
    GoldenError naming the file or tensor.

    manifest: the parsed manifest.json; name / kind: its "case" and "kind";
    expected: the manifest's tensor entries (dicts with name, op, tolerance_class, dtype, shape,
    sha256, file), in execution order; tensor(name): an expected tensor as a numpy array;
    inputs: name -> array ("prompt" for model cases); weights: name -> array, or None.
    """

    def __init__(self, path: str | os.PathLike):
        self.dir = Path(path)
        manifest_path = self.dir / "manifest.json"

        def fail(where: Any, problem: str):
            raise GoldenError(f"{where}: {problem}")

        try:
            text = manifest_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            fail(manifest_path, "cannot open (is this a golden set directory?)")
        try:
            m = json.loads(text)
        except ValueError as e:
            fail(manifest_path, f"malformed JSON: {e}")
        if not isinstance(m, dict):
            fail(manifest_path, "expected a JSON object")

        def require(obj: Any, key: str, where: Any, kind: type | None = None) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                fail(where, f'key "{key}" is missing')
            if kind is not None and not isinstance(obj[key], kind):
                fail(where, f'key "{key}" must be a {"string" if kind is str else kind.__name__}')
            return obj[key]

        version = require(m, "format_version", manifest_path)
        if isinstance(version, bool) or version != FORMAT_VERSION:
            fail(manifest_path, f"unknown format_version {json.dumps(version)} "
                                f"(this reader reads {FORMAT_VERSION})")
        kind = require(m, "kind", manifest_path, str)
        if kind not in ("model", "op", "speculative", "batching"):
            fail(manifest_path, f'unknown kind "{kind}"')
        require(m, "case", manifest_path, str)

        files = require(m, "files", manifest_path)
        if not isinstance(files, dict):
            fail(manifest_path, 'key "files" must be an object')
        for file, digest in files.items():
            file_path = self.dir / file
            if not file_path.exists():
                fail(file_path, "missing (listed in manifest.json)")
            if not isinstance(digest, str) or _sha256_file(file_path) != digest:
                fail(file_path, "sha256 does not match manifest.json: the file was changed or "
                                "corrupted")
        try:
            weights = (read_safetensors_file(self.dir / _WEIGHTS_FILE)
                       if _WEIGHTS_FILE in files else None)
            inputs = read_safetensors_file(self.dir / _INPUTS_FILE)
            trace = read_safetensors_file(self.dir / _TRACE_FILE)
        except SafetensorsError as e:
            raise GoldenError(str(e)) from None

        tensors = require(m, "tensors", manifest_path)
        if not isinstance(tensors, list):
            fail(manifest_path, 'key "tensors" must be an array')
        self.expected: list[dict] = []
        self._entries: dict[str, dict] = {}
        for entry in tensors:
            name = require(entry, "name", manifest_path, str)
            where = f'{manifest_path}: tensor "{name}"'
            if name in self._entries:
                fail(where, "listed twice")
            if name not in trace:
                fail(where, f"not in {_TRACE_FILE}")
            if (require(entry, "dtype", where, str) != trace.dtypes[name]
                    or require(entry, "shape", where) != list(trace[name].shape)):
                fail(where, f"dtype or shape differs from {_TRACE_FILE}")
            if require(entry, "sha256", where, str) != hashlib.sha256(trace.raw[name]).hexdigest():
                fail(where, "sha256 does not match the tensor's bytes")
            require(entry, "op", where, str)
            if require(entry, "tolerance_class", where, str) not in TOLERANCE_CLASSES:
                fail(where, f'unknown tolerance class "{entry["tolerance_class"]}"')
            self._entries[name] = entry
            self.expected.append(entry)
        if len(self.expected) != len(trace.tensors):
            fail(manifest_path, f'"tensors" lists {len(self.expected)} of the '
                                f"{len(trace.tensors)} tensors in {_TRACE_FILE}")
        self.manifest: dict = m
        self.name: str = m["case"]
        self.kind: str = kind
        self.trace = trace
        self.inputs: dict[str, np.ndarray] = inputs.tensors
        self.weights: dict[str, np.ndarray] | None = weights.tensors if weights else None

    def has_expected(self, name: str) -> bool:
        return name in self.trace

    def tensor(self, name: str) -> np.ndarray:
        """The expected tensor `name` (float32 or int32); GoldenError if the set has none."""
        if name not in self.trace:
            raise GoldenError(f'{self.dir}: no expected tensor named "{name}"')
        return self.trace.tensors[name]

    def entry(self, name: str) -> dict:
        """The manifest entry of expected tensor `name`."""
        if name not in self._entries:
            raise GoldenError(f'{self.dir}: no expected tensor named "{name}"')
        return self._entries[name]

    def __repr__(self) -> str:
        return f"GoldenSet({str(self.dir)!r}: {self.kind} case {self.name!r}, " \
               f"{len(self.expected)} tensors)"


# ---------------------------------------------------------------------------------------------
# The checker (golden/compare.h, golden/compare.cc)

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")

# (rtol, atol) per precision and float tolerance class; the exact class is always (0, 0).
# A copy of golden/tolerances.cc (which says how they were measured): rtol = atol = k, so an
# element passes when |a - e| <= k * (1 + |e|). tests/python/test_moeref_golden.py keeps the two
# in sync by comparing this module's reports with `moeref compare --json` at every precision.
DEFAULT_TOLERANCES = {
    "fp32": {"activation": (2e-5, 2e-5), "probability": (3e-6, 3e-6), "logits": (2e-5, 2e-5)},
    "tf32": {"activation": (4e-2, 4e-2), "probability": (4e-3, 4e-3), "logits": (3e-2, 3e-2)},
    "bf16": {"activation": (4e-1, 4e-1), "probability": (6e-2, 6e-2), "logits": (3e-1, 3e-1)},
    "fp16": {"activation": (5e-2, 5e-2), "probability": (7e-3, 7e-3), "logits": (4e-2, 4e-2)},
}


def default_tolerance(precision: str, tolerance_class: str) -> tuple[float, float]:
    """(rtol, atol) that `precision` gets for `tolerance_class` by default."""
    _check_precision(precision)
    if tolerance_class == "exact":
        return (0.0, 0.0)
    if tolerance_class not in DEFAULT_TOLERANCES[precision]:
        raise ValueError(f'unknown tolerance class "{tolerance_class}"')
    return DEFAULT_TOLERANCES[precision][tolerance_class]


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision "{precision}" (fp32, tf32, bf16 or fp16)')


# The per-tensor gates and decision resolutions of calibrated sets (golden/calibration.h; copies
# of golden/tolerances.cc's gate_factors, decision_factor and unit_roundoff, the same at every
# precision and tolerance class): a float tensor fails above GATE_FACTORS[0] times the worst
# honest backend's max |a - e| or GATE_FACTORS[1] times its NMSE, each baseline floored at
# GATE_FLOOR_ROUNDINGS roundings of the tensor's largest value (squared, for the NMSE); a decision
# is judged with tol(v) = DECISION_FACTOR * the score tensor's worst honest max |a - e| +
# UNIT_ROUNDOFF * |v|.
GATE_FACTORS = (4.0, 16.0)
GATE_FLOOR_ROUNDINGS = 4.0
DECISION_FACTOR = 2.0
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "tf32": 2.0**-24, "bf16": 2.0**-9, "fp16": 2.0**-11}


def honest_error(golden: GoldenSet, precision: str, tensor: str) -> tuple[float, float] | None:
    """(max_abs_error, nmse) of the worst honest emulated backend on `tensor` at `precision`, from
    the manifest's "honest_errors", or None where the set has none (not calibrated: written before
    calibration, or built by hand). GoldenError for a malformed entry."""
    by_precision = golden.manifest.get("honest_errors")
    if not isinstance(by_precision, dict) or precision not in by_precision:
        return None
    by_tensor = by_precision[precision]
    if not isinstance(by_tensor, dict) or tensor not in by_tensor:
        return None
    pair = by_tensor[tensor]
    if not (isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
        raise GoldenError(f'{golden.dir / "manifest.json"}: honest_errors.{precision}."{tensor}" '
                          f"must be [max_abs_error, nmse], got "
                          f"{json.dumps(pair, separators=(',', ':'))}")
    return float(pair[0]), float(pair[1])


@dataclass
class TensorReport:
    """How one expected tensor compared. status: "pass", "FAIL", "near_tie" or "missing";
    out_of_tolerance: float elements past the tolerance (non-finite ones included),
    or integer mismatches; note: why it failed or was excused, in words."""
    name: str
    op: str
    tolerance_class: str
    status: str = "pass"
    elements: int = 0
    out_of_tolerance: int = 0
    non_finite: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    nmse: float = 0.0
    cosine: float = 1.0
    rtol: float = 0.0
    atol: float = 0.0
    max_abs_bound: float = math.inf  # the per-tensor gates applied (inf: none)
    nmse_bound: float = math.inf
    note: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "name", "op", "tolerance_class", "status", "elements", "out_of_tolerance",
            "non_finite", "max_abs_error", "max_rel_error", "nmse", "cosine", "rtol", "atol",
            "max_abs_bound", "nmse_bound", "note")}

    def to_text(self) -> str:
        """One line, as `moeref compare` prints it."""
        if self.status == "missing":
            line = "  %-14s %s\n" % (self.status, self.name)
        elif self.tolerance_class == "exact":
            line = "  %-14s %-48s %d of %d differ%s%s\n" % (
                self.status, self.name, self.out_of_tolerance, self.elements,
                ": " if self.note else "", self.note)
        else:
            line = ("  %-14s %-48s max abs %.2e  max rel %.2e  nmse %.2e  cos %.7f  out %d/%d%s%s\n"
                    % (self.status, self.name, self.max_abs_error, self.max_rel_error, self.nmse,
                       self.cosine, self.out_of_tolerance, self.elements,
                       ": " if self.note else "", self.note))
        return line if len(line) < 400 else line[:399]  # the C++ line buffer


@dataclass
class Report:
    """A candidate compared with a golden set: one TensorReport per expected tensor in execution
    order, the candidate's names the set does not have (extra), the first failing tensor, whether
    the tensors were compared with the reference re-run on the candidate's own decisions
    (anchored), the number compared (not missing), and the verdict."""
    set: str
    precision: str
    tensors: list[TensorReport] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    first_failure: str | None = None
    anchored: bool = False
    compared: int = 0
    passed: bool = False

    def __getitem__(self, name: str) -> TensorReport:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The keys and values of `moeref compare --json` (compare.cc, CompareReport::to_json)."""
        return {"set": self.set, "precision": self.precision, "passed": self.passed,
                "anchored": self.anchored, "compared": self.compared,
                "first_failure": self.first_failure, "extra": list(self.extra),
                "tensors": [t.to_dict() for t in self.tensors]}

    def to_json(self, indent: int | None = 2) -> str:
        """to_dict() as JSON; non-finite numbers become null, as in the C++ report."""
        def finite(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: finite(v) for k, v in value.items()}
            if isinstance(value, list):
                return [finite(v) for v in value]
            return value
        return json.dumps(finite(self.to_dict()), indent=indent, sort_keys=True)

    def to_text(self, all_tensors: bool = False) -> str:
        """The tensors that did not simply pass (every tensor with all_tensors), a summary and the
        verdict, as `moeref compare` (--verbose) prints them."""
        out = [f"golden set {self.set}, candidate at {self.precision}\n"]
        counts = {status: 0 for status in ("pass", "FAIL", "near_tie", "missing")}
        largest_error = 0.0
        for t in self.tensors:
            counts[t.status] += 1
            if t.status != "missing":
                largest_error = max(largest_error, t.max_abs_error)
            if all_tensors or t.status != "pass":
                out.append(t.to_text())
        out += [f"  extra          {name} (not in the set)\n" for name in self.extra]
        if self.anchored:
            out.append("re-anchored: a routing or sampling decision differs, so the tensors are "
                       "compared with the reference re-run on the candidate's own decisions\n")
        summary = ("%d of %d tensors compared: %d pass, %d near-tie, %d fail; %d missing, "
                   "%d extra; largest abs error %.3g\n" % (
                       self.compared, len(self.tensors), counts["pass"], counts["near_tie"],
                       counts["FAIL"], counts["missing"], len(self.extra), largest_error))
        out.append(summary if len(summary) < 200 else summary[:199])  # the C++ buffer
        if self.passed:
            out.append("PASS\n")
        elif self.first_failure is not None:
            out.append(f"FAIL: the first failing tensor is {self.first_failure}: "
                       "look there first\n")
        else:
            out.append("FAIL: the candidate has none of the set's tensors\n")
        return "".join(out)


def _traced_name(name: str) -> str:
    """"decode.2/layers.0.attn.q" -> "layers.0.attn.q"."""
    slash = name.find("/")
    return name if slash < 0 else name[slash + 1:]


def _max(values: np.ndarray) -> float:
    """The largest value, NaN skipped, at least 0: what the C++ running std::max gives."""
    values = values[~np.isnan(values)]
    return float(values.max(initial=0.0))


def _sum(values: np.ndarray) -> float:
    """Left-to-right sum (cumsum is sequential), bit for bit the C++ loop's."""
    return float(np.cumsum(values)[-1]) if values.size else 0.0


# ---------------------------------------------------------------------------------------------
# Random numbers and sampling (ref/generation/philox.h, ref/generation/sampling.h), in plain Python floats (IEEE
# doubles) and the same order of operations, so that every probability and every draw is the
# C++ one to the bit.

_MASK32 = 0xFFFFFFFF


def philox4x32_10(counter: Iterable[int], key: Iterable[int]) -> tuple[int, int, int, int]:
    """Philox4x32-10 (Salmon et al., SC11; Random123's philox4x32_R(10, ...)): four 32-bit words
    of counter and two of key -> four 32-bit random words (ref/generation/philox.cc)."""
    c0, c1, c2, c3 = (int(word) & _MASK32 for word in counter)
    k0, k1 = (int(word) & _MASK32 for word in key)
    for r in range(10):
        if r > 0:
            k0 = (k0 + 0x9E3779B9) & _MASK32
            k1 = (k1 + 0xBB67AE85) & _MASK32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1,
                          p0 & _MASK32)
    return c0, c1, c2, c3


def generation_uniform(seed: int, draw: int, position: int, request: int = 0,
                       stream: int = 0) -> float:
    """The uniform number in [0, 1) of one draw of generation (ref/generation/philox.h): Philox with key =
    {seed & 0xffffffff, seed >> 32} and counter = {draw, position, request, stream} (stream 0:
    sampling), the first word's top 24 bits times 2^-24 (a float, exactly)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    bits = philox4x32_10((draw, position, request, stream), (seed, seed >> 32))[0]
    return (bits >> 8) * 2.0**-24


def processed_distribution(logits: Any, temperature: float, top_k: int = 0,
                           top_p: float = 1.0) -> list[tuple[int, float]]:
    """Steps 1-5 of ref/generation/sampling.h for temperature > 0: the kept tokens in token-id order, as
    (token, probability) pairs summing to 1. `logits` is one row, read as float32."""
    values = np.asarray(logits, dtype=np.float32).reshape(-1).tolist()
    if not values:
        raise ValueError("no logits to sample from")
    temperature = float(temperature)
    # Until the softmax the second field holds the scaled logit z.
    kept = [(i, v / temperature) for i, v in enumerate(values)]

    def by_value_then_id(t):
        return -t[1], t[0]

    if 0 < top_k < len(kept):
        kept = sorted(sorted(kept, key=by_value_then_id)[:top_k])
    max_z = kept[0][1]
    for _, z in kept:
        if max_z < z:
            max_z = z
    exps = [(token, math.exp(z - max_z)) for token, z in kept]
    total = 0.0
    for _, e in exps:
        total += e
    kept = [(token, e / total) for token, e in exps]
    if top_p < 1.0:
        ranked = sorted(kept, key=by_value_then_id)
        cumulative, n_kept = 0.0, 0
        while n_kept < len(ranked) and (n_kept == 0 or cumulative < top_p):
            cumulative += ranked[n_kept][1]
            n_kept += 1
        kept = sorted(ranked[:n_kept])
    kept_sum = 0.0
    for _, p in kept:
        kept_sum += p
    return [(token, p / kept_sum) for token, p in kept]


def draw_token(distribution: list[tuple[int, float]], u: float) -> int:
    """Step 6 of ref/generation/sampling.h: the first kept token (in id order) whose cumulative probability
    exceeds u; the last one if rounding leaves u at or past the total."""
    cumulative = 0.0
    for token, p in distribution:
        cumulative += p
        if u < cumulative:
            return token
    return distribution[-1][0]


# ---------------------------------------------------------------------------------------------
# Judging a decision that differs from the reference's (golden/decisions.h, decisions.cc).
# The notes are the C++ ones, character for character.

def _tol(tolerance: tuple[float, float], value: float) -> float:
    rtol, atol = tolerance
    return atol + rtol * abs(value)


def _by_scores(expected_score: float, actual_score: float, options: str, unit: str,
               tolerance: tuple[float, float], precision: str,
               tie_rule: str) -> tuple[bool, str]:
    distance = abs(expected_score - actual_score)
    resolution = _tol(tolerance, expected_score) + _tol(tolerance, actual_score)
    scores = " (golden %s %.4g where the golden choice has %.4g)" % (unit, actual_score,
                                                                     expected_score)
    if distance == 0.0:
        return False, options + scores + ": an exact tie, which " + tie_rule + ", not rounding"
    if distance <= resolution:
        return True, options + scores + (": %.3g apart, within the %s resolution %.3g: a near-tie"
                                         % (distance, precision, resolution))
    return False, options + scores + (": %.3g apart, beyond the %s resolution %.3g"
                                      % (distance, precision, resolution))


def judge_top_k(probs: Any, expected: list[int], actual: list[int],
                tolerance: tuple[float, float], precision: str) -> tuple[bool, str]:
    """One token's experts, rank order, judged on the reference's router probabilities of every
    expert: (excused, note). An expert that does not exist or is chosen twice fails first; then
    each rank that differs is judged by _by_scores; the note is the first failing rank's, else
    the first excused rank's."""
    probs = np.asarray(probs, dtype=np.float32).reshape(-1).tolist()
    n_experts = len(probs)
    for r, a in enumerate(actual):
        if a < 0 or a >= n_experts:
            return False, "rank %d: expert %d does not exist (%d experts)" % (r, a, n_experts)
        if a in actual[:r]:
            return False, "rank %d: expert %d chosen twice" % (r, a)
    note = ""
    for r, (e, a) in enumerate(zip(expected, actual)):
        if a == e:
            continue
        excused, rank_note = _by_scores(
            probs[e], probs[a], "rank %d: expert %d where the reference chose expert %d"
            % (r, a, e), "probability", tolerance, precision,
            "the tie rule decides (the lower index ranks first)")
        if not excused:
            return False, rank_note
        note = note or rank_note
    return True, note


def judge_greedy(logits: Any, expected: int, actual: int, tolerance: tuple[float, float],
                 precision: str) -> tuple[bool, str]:
    """One greedy token chosen from `logits` (the reference's row): (excused, note)."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1).tolist()
    if actual < 0 or actual >= len(logits):
        return False, "token %d is outside the vocabulary of %d" % (actual, len(logits))
    return _by_scores(logits[expected], logits[actual],
                      "token %d where the reference chose token %d" % (actual, expected), "logit",
                      tolerance, precision, "the tie rule decides (the lowest token id wins)")


def judge_sampled(logits: Any, sampling: Mapping[str, Any], u: float, expected: int, actual: int,
                  tolerance: tuple[float, float], precision: str) -> tuple[bool, str]:
    """One sampled token from `logits` with `sampling` (temperature, top_k, top_p) and the draw u;
    `tolerance` is the probabilities' (the logits' at temperature 0, which is greedy)."""
    vocab = int(np.asarray(logits).size)
    if actual < 0 or actual >= vocab:
        return False, "token %d is outside the vocabulary of %d" % (actual, vocab)
    temperature = float(sampling["temperature"])
    if temperature == 0.0:
        return judge_greedy(logits, expected, actual, tolerance, precision)
    top_k, top_p = int(sampling["top_k"]), float(sampling["top_p"])
    resolution = 2.0 * _tol(tolerance, u)
    options = "token %d where the reference drew token %d (u = %.6f)" % (actual, expected, u)
    kept = processed_distribution(logits, temperature, top_k, top_p)
    verdict = _by_interval(kept, u, actual, options, resolution, precision)
    if verdict is not None:
        return verdict
    # Cut by top-k or top-p: its probability before the cut against the least kept token's.
    everything = processed_distribution(logits, temperature, 0, 1.0)
    least_kept = 1.0
    for token, _ in kept:
        least_kept = min(least_kept, everything[token][1])
    probability = everything[actual][1]
    distance = least_kept - probability
    # Equal probabilities are the cut's tie rule (the lower token id ranks first), not rounding's.
    excused = 0.0 < distance <= resolution
    return excused, options + (
        ": the top-k/top-p cut removed it (probability %.4g before the cut, %.3g below the least "
        "kept token's), %s the %s resolution %.3g%s"
        % (probability, distance, "within" if excused else "beyond", precision, resolution,
           ": a near-tie" if excused else ""))


def _most_probable(scores: list[float]) -> int:
    """std::max_element: the first of the largest scores."""
    best = 0
    for i, s in enumerate(scores):
        if scores[best] < s:
            best = i
    return best


def _by_interval(kept: list[tuple[int, float]], u: float, actual: int, options: str,
                 resolution: float, precision: str) -> tuple[bool, str] | None:
    """The verdict on `actual` drawn with u from `kept` (token-id order): excused when u is within
    `resolution` of its interval; None when `kept` lacks the token."""
    low = 0.0
    for token, p in kept:
        high = low + p
        if token == actual:
            distance = low - u if u < low else u - high if u >= high else 0.0
            where = options + ": its interval is [%.6f, %.6f), %.3g from u" % (low, high, distance)
            excused = distance <= resolution
            return excused, where + ((", within the %s resolution %.3g: a near-tie" if excused
                                      else ", beyond the %s resolution %.3g")
                                     % (precision, resolution))
        low = high
    return None


def judge_drawn(weights: Any, greedy: bool, u: float, expected: int, actual: int,
                tolerance: tuple[float, float], precision: str) -> tuple[bool, str]:
    """One token drawn with u from `weights` over the vocabulary (normalised by their sum, in
    token-id order, zero weights left out), or with greedy their argmax; `tolerance` is the
    weights' (decisions.cc, judge_drawn): (excused, note)."""
    weights = np.asarray(weights, dtype=np.float32).reshape(-1).tolist()
    vocab = len(weights)
    if actual < 0 or actual >= vocab:
        return False, "token %d is outside the vocabulary of %d" % (actual, vocab)
    if greedy:
        return _by_scores(weights[expected], weights[actual],
                          "token %d where the reference chose token %d" % (actual, expected),
                          "probability", tolerance, precision,
                          "the tie rule decides (the lowest token id wins)")
    total = 0.0
    for w in weights:
        total += w if 0.0 < w else 0.0
    kept = [(t, w / total) for t, w in enumerate(weights) if w > 0.0]
    options = "token %d where the reference drew token %d (u = %.6f)" % (actual, expected, u)
    resolution = 2.0 * _tol(tolerance, u)
    verdict = _by_interval(kept, u, actual, options, resolution, precision)
    if verdict is not None:
        return verdict
    return False, options + ": it has no probability there"


def judge_acceptance(p_row: Any, q_row: Any, proposal: int, greedy: bool, u: float, actual: int,
                     tolerance: tuple[float, float], precision: str) -> tuple[bool, str]:
    """A speculative acceptance test decided `actual` (1 accept, 0 reject) where the reference
    decided the other way (decisions.cc, judge_acceptance): sampled, u q(x) <= p(x), excused when
    |u q(x) - p(x)| is within tol(p(x)) + u tol(q(x)) and not 0; greedy, x against the argmax of
    `p_row` (or, where they are one token, the best other token's), as a greedy token."""
    p_row = np.asarray(p_row, dtype=np.float32).reshape(-1).tolist()
    q_row = np.asarray(q_row, dtype=np.float32).reshape(-1).tolist()
    vocab = len(p_row)
    if proposal < 0 or proposal >= vocab:
        return False, "proposal %d is outside the vocabulary of %d" % (proposal, vocab)
    decided = "accepted" if actual != 0 else "rejected"
    p = p_row[proposal]
    if greedy:
        best = _most_probable(p_row)
        others = list(p_row)
        others[best] = -math.inf
        other = _most_probable(others) if best == proposal else proposal
        return _by_scores(p_row[best], p_row[other],
                          "proposal %d %s, where token %d is the reference's argmax"
                          % (proposal, decided, best), "probability", tolerance, precision,
                          "the tie rule decides (the lowest token id wins)")
    q = q_row[proposal]
    distance = abs(u * q - p)
    resolution = _tol(tolerance, p) + u * _tol(tolerance, q)
    excused = 0.0 < distance <= resolution
    return excused, ("proposal %d %s where the reference %s it (u q = %.6g, p = %.6g): %.3g "
                     "apart, %s the %s resolution %.3g%s"
                     % (proposal, decided, "rejected" if actual != 0 else "accepted", u * q, p,
                        distance, "within" if excused else "beyond", precision, resolution,
                        ": a near-tie" if excused else ""))

def _sampling_params(parameters: Mapping[str, Any]) -> dict:
    return {"temperature": float(parameters["temperature"]), "top_k": int(parameters["top_k"]),
            "top_p": float(parameters["top_p"]), "seed": int(parameters["seed"])}


def _row_of(tensor: np.ndarray, width: int, row: int) -> np.ndarray:
    return np.asarray(tensor, dtype=np.float32).reshape(-1)[row * width:(row + 1) * width]


# ---------------------------------------------------------------------------------------------
# Re-anchoring (golden/anchored_run.h): the reference re-run on the candidate's own decisions,
# made by the C++ program (`moeref anchor`).

_DRAFT_PROPOSAL_STREAM = 3  # ref/generation/philox.h, RandomStream::kDraftProposal


def _leading_integer(text: str) -> int:
    """The integer a string starts with, as std::stoll reads it ("3/tokens" -> 3)."""
    digits = ""
    for c in text:
        if not c.isdigit():
            break
        digits += c
    if not digits:
        raise GoldenError(f'"{text}" does not start with a number')
    return int(digits)


def _is_routing(name: str) -> bool:
    return _traced_name(name).endswith("moe.topk_indices")


def _moves_tensors(golden: GoldenSet, name: str) -> bool:
    """A decision after which the reference computes something else: routing everywhere, and the
    tokens fed back (a model set's "sampled_tokens", a batching set's "step.s/sampled" and
    "request.id/tokens")."""
    if _is_routing(name):
        return True
    if golden.kind == "model":
        return name == "sampled_tokens"
    return golden.kind == "batching" and (_traced_name(name) == "sampled" or (
        name.startswith("request.") and name.endswith("/tokens")))


def _is_speculative_decision(name: str) -> bool:
    return name.endswith(("/draft_tokens", "/accepted", "/final_token"))


def _as_int32(values: np.ndarray) -> np.ndarray:
    """Integer values as int32, as anchored_run.cc reads them: through double, and -1 (no expert,
    no token) for what lies outside int32."""
    doubles = np.asarray(values).astype(np.float64).reshape(-1)
    inside = (doubles >= -2.0**31) & (doubles <= 2.0**31 - 1)
    return np.where(inside, doubles, -1.0).astype(np.int32)


def _as_decisions(array: np.ndarray, dtype: str) -> np.ndarray:
    """A candidate tensor's values as decisions (compare.cc, as_doubles then as_decision): 0 for
    a dtype that holds no number the checker reads."""
    if dtype not in ("F32", "F64", "F16", "BF16", "I32", "I64"):
        return np.zeros(np.asarray(array).size, dtype=np.int32)
    return _as_int32(array)


def _usable_decisions(golden: GoldenSet,
                      arrays: Mapping[str, tuple[np.ndarray, str]]) -> dict[str, tuple]:
    """The candidate's decision tensors that a re-run can take (anchored_run.cc): in a model or
    batching set, routing and fed-back tokens of integer dtype and the set's shape (usable());
    in a speculative set, every integer "draft_tokens", "accepted" and "final_token", whatever
    its shape (a block may examine more or fewer proposals than the set's)."""
    usable = {}
    if golden.kind == "speculative":
        for name, (array, dtype) in arrays.items():
            if _is_speculative_decision(name) and dtype in ("I32", "I64"):
                usable[name] = (array, dtype)
        return usable
    for entry in golden.expected:
        name = entry["name"]
        if not _moves_tensors(golden, name) or name not in arrays:
            continue
        array, dtype = arrays[name]
        if dtype in ("I32", "I64") and list(array.shape) == list(golden.tensor(name).shape):
            usable[name] = (array, dtype)
    return usable


def _needs_anchoring(golden: GoldenSet, arrays: Mapping[str, tuple[np.ndarray, str]]) -> bool:
    if golden.kind not in ("model", "batching", "speculative") or golden.weights is None:
        return False
    for name, (array, _) in _usable_decisions(golden, arrays).items():
        if not golden.has_expected(name):  # a speculative block the set does not have
            return True
        if not np.array_equal(_as_int32(array), golden.tensor(name).reshape(-1)):
            return True
    return False


def _speculative_entry(name: str) -> dict:
    """A speculative tensor's entry (speculative_case.cc, speculative_tensor)."""
    probability = name.endswith(("draft_probs", "target_probs", "accept_u", "final_u"))
    return {"name": name, "op": "speculative_decoding",
            "tolerance_class": "probability" if probability else "exact"}


def _anchored_expected(golden: GoldenSet, anchored: Mapping[str, np.ndarray]) -> list[dict]:
    """The tensors to compare after a re-run, in execution order (anchored_run.cc,
    anchored_expected): the set's, except for a speculative case, whose blocks are the re-run's:
    per mode, blocks b = 0, 1, ... while the re-run has "mode/block.b/position", each with the
    fields of the set's "greedy/block.0/" in the set's order, then "mode/tokens"."""
    if golden.kind != "speculative":
        return golden.expected
    first = "greedy/block.0/"
    fields = [e["name"][len(first):] for e in golden.expected if e["name"].startswith(first)]
    expected = []
    for mode in ("greedy", "sampled"):
        b = 0
        while f"{mode}/block.{b}/position" in anchored:
            expected += [_speculative_entry(f"{mode}/block.{b}/{f}") for f in fields]
            b += 1
        expected.append(_speculative_entry(f"{mode}/tokens"))
    return expected


def needs_anchoring(golden_set: GoldenSet | str | os.PathLike,
                    candidate: Mapping[str, Any] | SafetensorsFile) -> bool:
    """Whether compare() compares `candidate` with a re-run: the set is a model, batching or
    speculative case with weights (a set built by hand without them is judged on its own scores)
    and some decision tensor of the candidate differs from the set's: in a model set a
    "...moe.topk_indices" or "sampled_tokens", in a batching set a "...moe.topk_indices",
    "step.s/sampled" or "request.id/tokens" (each of integer dtype and the set's shape); in a
    speculative set a "mode/block.b/draft_tokens", "accepted" or "final_token" of integer dtype,
    whatever its shape, or one that the set does not have."""
    golden = golden_set if isinstance(golden_set, GoldenSet) else GoldenSet(golden_set)
    return _needs_anchoring(golden, _candidate_arrays(candidate))


def find_moeref(moeref: str | os.PathLike | None = None) -> str:
    """The moeref program: `moeref` (a path, or a name looked up on PATH), else $MOEREF_CLI, else
    `moeref` on PATH, else build/tools/moeref of the repository this module lies in. Raises
    AnchoringError saying how to point to it when none is found."""
    how = ("pass moeref=PATH to compare() (--moeref PATH on the command line), set MOEREF_CLI, "
           "put moeref on PATH, or build it (cmake --build build gives build/tools/moeref); or "
           "pass anchored= with the output of `moeref anchor GOLDEN_DIR CANDIDATE --out FILE` "
           "made elsewhere")
    for given, where in ((moeref, "the moeref argument"),
                         (os.environ.get("MOEREF_CLI") or None, "MOEREF_CLI")):
        if given is not None:
            found = shutil.which(str(given))
            if found is None:
                raise AnchoringError(
                    f"a routing or sampling decision of the candidate differs from the set's, "
                    f"and re-anchoring needs the moeref program, but {where} ({given}) is not "
                    f"an executable program: {how}")
            return found
    found = shutil.which("moeref")
    if found is not None:
        return found
    built = Path(__file__).resolve().parent.parent / "build" / "tools" / "moeref"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    raise AnchoringError(
        "a routing or sampling decision of the candidate differs from the set's, so the tensors "
        "must be compared with the reference re-run on the candidate's own decisions "
        "(re-anchoring), which needs the moeref program (`moeref anchor`), and none was found "
        f"(no moeref argument, no MOEREF_CLI, no moeref on PATH, no {built}): {how}")


def _anchored_run(golden: GoldenSet, arrays: Mapping[str, tuple[np.ndarray, str]],
                  moeref: str | os.PathLike | None) -> dict[str, np.ndarray]:
    if golden.kind not in ("model", "batching", "speculative"):
        raise GoldenError(f"{golden.dir}: not a model case")  # candidate_runner.cc's words
    if golden.weights is None:
        raise GoldenError(f"{golden.dir}: no weights to re-run the reference with")
    program = find_moeref(moeref)
    decisions = _usable_decisions(golden, arrays)
    with tempfile.TemporaryDirectory(prefix="moeref_anchor.") as directory:
        candidate_path = Path(directory) / "candidate.safetensors"
        out = Path(directory) / "anchored.safetensors"
        write_safetensors(candidate_path, {name: a for name, (a, _) in decisions.items()},
                          dtypes={name: dtype for name, (_, dtype) in decisions.items()})
        command = [program, "anchor", str(golden.dir), str(candidate_path), "--out", str(out)]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as e:
            raise AnchoringError(f"cannot run {program}: {e}") from None
        if result.returncode != 0 or not out.exists():
            raise AnchoringError(f"{program} anchor {golden.dir} exited {result.returncode}: "
                                 f"{result.stderr.strip()}")
        return dict(read_safetensors(out))


def anchored_run(golden_set: GoldenSet | str | os.PathLike,
                 candidate: Mapping[str, Any] | SafetensorsFile,
                 moeref: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The reference re-run on the candidate's decisions, made by `moeref anchor` (found by
    find_moeref(moeref)): name -> array, under the set's names. A model case's run also has
    "sampled_logits" [sampled tokens, vocab] (the logits each step of the sampled generation chose
    from); a batching case's is the schedule replayed with the routing forced and each request fed
    the candidate's tokens; a speculative case's follows the candidate's proposals, acceptances
    and final tokens block by block, so its blocks are the candidate's, however many there are.
    Every decision tensor holds the reference's own choice given the candidate's earlier ones.
    Only the candidate's decision tensors (see needs_anchoring) are read; they are written to a
    temporary directory, removed afterwards. GoldenError for a set that is not a model, batching
    or speculative case with weights; AnchoringError when moeref is not found or fails."""
    golden = golden_set if isinstance(golden_set, GoldenSet) else GoldenSet(golden_set)
    return _anchored_run(golden, _candidate_arrays(candidate), moeref)


# ---------------------------------------------------------------------------------------------
# The checker (golden/compare.cc, Checker)

class _Checker:
    def __init__(self, golden: GoldenSet, precision: str, rtol: float | None,
                 atol: float | None, anchored: Mapping[str, np.ndarray] | None,
                 candidate: Mapping[str, tuple[np.ndarray, str]] | None = None):
        self.golden, self.precision, self.rtol, self.atol = golden, precision, rtol, atol
        self.anchored = anchored
        self.candidate = candidate if candidate is not None else {}

    def tolerance_for(self, tolerance_class: str) -> tuple[float, float]:
        rtol, atol = default_tolerance(self.precision, tolerance_class)
        return (rtol if self.rtol is None else float(self.rtol),
                atol if self.atol is None else float(self.atol))

    def gate_baseline(self, name: str) -> tuple[float, float] | None:
        """The honest backends' worst errors on tensor `name`, where the set stores them and no
        rtol/atol override turns the gates off."""
        if self.rtol is not None or self.atol is not None:
            return None
        return honest_error(self.golden, self.precision, name)

    def score_tolerance(self, tolerance_class: str, score_tensor: str) -> tuple[float, float]:
        """(rtol, atol) of the scores a decision was made on: one rounding, plus DECISION_FACTOR
        times the worst honest error on the score tensor where the set is calibrated; the class
        tolerance otherwise."""
        honest = self.gate_baseline(score_tensor)
        if honest is not None:
            return UNIT_ROUNDOFF[self.precision], DECISION_FACTOR * honest[0]
        return self.tolerance_for(tolerance_class)

    def expected(self, name: str) -> np.ndarray:
        """What the candidate's tensor `name` is compared with: the re-anchored reference's where
        there is a re-run, the set's otherwise (GoldenError if neither has it)."""
        if self.anchored is not None and name in self.anchored:
            return self.anchored[name]
        return self.golden.tensor(name)

    def judge(self, name: str, row: int, expected_row: list[int],
              actual_row: list[int]) -> tuple[bool, str] | None:
        """(excused, note) of a differing row of a decision tensor, judged on the scores the
        reference chose from; None for a tensor that is no judged decision."""
        p = self.precision
        manifest = self.golden.manifest
        inputs = self.golden.inputs
        if _traced_name(name).endswith("moe.topk_indices") or (name == "indices"
                                                               and "probs" in inputs):
            probs_name = ("probs" if name == "indices"
                          else name[:-len("topk_indices")] + "router_probs")
            if name != "indices" and not self.golden.has_expected(probs_name):
                return None
            probs = inputs["probs"] if name == "indices" else self.expected(probs_name)
            return judge_top_k(_row_of(probs, probs.shape[-1], row), expected_row, actual_row,
                               self.score_tolerance("probability", probs_name), p)
        if name == "greedy_tokens" and self.golden.kind == "model":
            logits_name = "prefill/logits" if row == 0 else f"decode.{row - 1}/logits"
            if not self.golden.has_expected(logits_name):
                return None
            logits = self.expected(logits_name)
            return judge_greedy(_row_of(logits, logits.shape[1], logits.shape[0] - 1),
                                expected_row[0], actual_row[0],
                                self.score_tolerance("logits", logits_name), p)
        if name == "sampled_tokens" and self.golden.kind == "model" and self.anchored is not None:
            if "sampled_logits" not in self.anchored:
                raise GoldenError('the re-anchored run has no "sampled_logits", which '
                                  '`moeref anchor` writes')
            logits = self.anchored["sampled_logits"]
            sampling = _sampling_params(manifest["inputs"]["sampling"])
            position = (len(manifest["inputs"]["prompt"]) + row) & _MASK32
            u = generation_uniform(sampling["seed"], 0, position, 0, 0)
            return judge_sampled(_row_of(logits, logits.shape[1], row), sampling, u,
                                 expected_row[0], actual_row[0],
                                 self.tolerance_for("logits" if sampling["temperature"] == 0.0
                                                    else "probability"), p)
        if self.golden.kind == "speculative":
            return self.judge_speculative(name, row, expected_row[0], actual_row[0])
        if self.golden.kind == "batching" and _traced_name(name) == "sampled":
            if actual_row[0] != expected_row[0]:
                return False, ("request %d where the schedule samples for request %d"
                               % (actual_row[0], expected_row[0]))
            return self.judge_request_token(
                expected_row[0], self.generated_before(name, row, expected_row[0]),
                expected_row[1], actual_row[1])
        if self.golden.kind == "batching" and _traced_name(name) == "tokens":
            return self.judge_request_token(_leading_integer(name[len("request."):]), row,
                                            expected_row[0], actual_row[0])
        if name == "tokens" and self.golden.kind == "op" and "logits" in inputs:
            logits = inputs["logits"]
            parameters = manifest["parameters"]
            sampling = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
            u = 0.0
            if manifest.get("op") == "sampling":
                sampling = _sampling_params(parameters)
                u = generation_uniform(sampling["seed"], int(parameters["draw"]), row,
                                       int(parameters["request"]), 0)
            tolerance = self.tolerance_for("logits" if sampling["temperature"] == 0.0
                                           else "probability")
            return judge_sampled(_row_of(logits, logits.shape[1], row), sampling, u,
                                 expected_row[0], actual_row[0], tolerance, p)
        return None

    def has(self, name: str) -> bool:
        return (self.anchored is not None and name in self.anchored) or \
            self.golden.has_expected(name)

    def judge_speculative(self, name: str, row: int, expected_value: int,
                          actual_value: int) -> tuple[bool, str] | None:
        """A speculative block's decision (ref/generation/speculative.h) on the block's q and p: row `row` of
        "mode/block.b/draft_tokens", "accepted" or "final_token"."""
        prefix, field_name = name[:name.rfind("/") + 1], name[name.rfind("/") + 1:]
        if not self.has(prefix + "draft_probs") or not self.has(prefix + "target_probs"):
            return None
        greedy = name.startswith("greedy/")
        q = np.asarray(self.expected(prefix + "draft_probs"), dtype=np.float32)
        p = np.asarray(self.expected(prefix + "target_probs"), dtype=np.float32)
        vocab = p.shape[-1]
        tolerance = self.score_tolerance("probability", prefix + "target_probs")
        precision = self.precision
        if field_name == "draft_tokens":
            sampling = _sampling_params(self.golden.manifest["inputs"]["sampling"])
            position = int(_as_int32(self.expected(prefix + "position"))[0]) + row
            u = 0.0 if greedy else generation_uniform(sampling["seed"], 0, position & _MASK32,
                                                      0, _DRAFT_PROPOSAL_STREAM)
            return judge_drawn(_row_of(q, vocab, row), greedy, u, expected_value, actual_value,
                               self.score_tolerance("probability", prefix + "draft_probs"),
                               precision)
        if field_name == "accepted":
            # The proposal tested is the one the candidate fed (its own), which the re-run
            # followed.
            proposals = prefix + "draft_tokens"
            if proposals in self.candidate:
                fed = _as_decisions(*self.candidate[proposals]).tolist()
            else:
                fed = _as_int32(self.expected(proposals)).tolist()
            if row >= len(fed) or row >= q.shape[0]:
                return None
            u = float(np.asarray(self.expected(prefix + "accept_u"),
                                 dtype=np.float32).reshape(-1)[row])
            return judge_acceptance(_row_of(p, vocab, row), _row_of(q, vocab, row), fed[row],
                                    greedy, u, actual_value, tolerance, precision)
        if field_name == "final_token":
            kind = int(_as_int32(self.expected(prefix + "final_kind"))[0])
            u = float(np.asarray(self.expected(prefix + "final_u"),
                                 dtype=np.float32).reshape(-1)[0])
            if kind == 1:
                return judge_drawn(_row_of(p, vocab, p.shape[0] - 1), greedy, u, expected_value,
                                   actual_value, tolerance, precision)
            i = int(np.asarray(self.expected(prefix + "accepted")).size) - 1
            if kind != 0 or i < 0 or i >= q.shape[0]:
                return None
            p_row = _row_of(p, vocab, i)
            if greedy:
                return judge_drawn(p_row, True, 0.0, expected_value, actual_value, tolerance,
                                   precision)
            difference = p_row - _row_of(q, vocab, i)  # in float32, as the C++
            residual = np.where(difference > 0, difference, np.float32(0.0)).astype(np.float32)
            empty = bool(np.all(residual <= 0.0))
            # Two probabilities' errors in each residual weight.
            doubled = (2.0 * tolerance[0], 2.0 * tolerance[1])
            return judge_drawn(p_row if empty else residual, False, u, expected_value,
                               actual_value, doubled, precision)
        return None

    def generated_before(self, name: str, row: int, request: int) -> int:
        """A batching set's request: how many tokens it generated before row `row` of the step
        tensor `name` ("step.s/sampled"), by the set's schedule."""
        step = _leading_integer(name[len("step."):])
        count = 0
        for s in range(step + 1):
            sampled = _as_int32(self.golden.tensor(f"step.{s}/sampled"))
            rows = sampled.size // 2
            count += sum(1 for r in range(row if s == step else rows)
                         if int(sampled[r * 2]) == request)
        return count

    def judge_request_token(self, request: int, k: int, expected_token: int,
                            actual_token: int) -> tuple[bool, str] | None:
        """A batching set's token k of a request, chosen from that request's logits row k with
        its sampling parameters and the Philox draw at its position (ref/generation/engine.h)."""
        logits_name = f"request.{request}/logits"
        if not self.golden.has_expected(logits_name):
            return None
        logits = self.expected(logits_name)
        if k >= logits.shape[0]:
            return None
        for entry in self.golden.manifest["requests"]:
            if int(entry["id"]) != request:
                continue
            sampling = _sampling_params(entry["sampling"])
            position = (len(entry["prompt"]) + k) & _MASK32
            greedy = sampling["temperature"] == 0.0
            u = 0.0 if greedy else generation_uniform(sampling["seed"], 0, position,
                                                      request & _MASK32, 0)
            tolerance = (self.score_tolerance("logits", logits_name) if greedy
                         else self.tolerance_for("probability"))
            return judge_sampled(_row_of(logits, logits.shape[1], k), sampling, u,
                                 expected_token, actual_token, tolerance, self.precision)
        return None

    def check_integers(self, name: str, expected: np.ndarray, actual: np.ndarray,
                       shape: list, report: TensorReport) -> None:
        """Each differing row is judged on its own: rows of top-k indices (tokens) do not depend
        on one another, greedy decode calls are teacher-forced, and a sampled token after a
        legitimate flip is judged against the reference re-run on the candidate's own earlier
        tokens. Judging stops at the first failing row; every differing element is counted."""
        width = 1 if len(shape) <= 1 else shape[-1]
        rows = 0 if width == 0 else report.elements // width
        if rows == 0:
            return
        expected = expected[:rows * width].reshape(rows, width)
        actual = actual[:rows * width].reshape(rows, width)
        differs = expected != actual
        report.out_of_tolerance = int(differs.sum())
        first_near_tie = first_failure = None
        for row in (int(r) for r in np.flatnonzero(differs.any(axis=1))):
            expected_row = [int(e) for e in expected[row]]
            actual_row = [int(a) if -2.0**31 <= a <= 2.0**31 - 1 else -1 for a in actual[row]]
            verdict = self.judge(name, row, expected_row, actual_row)
            where = f"row {row} differs"
            if verdict is None:
                first_failure = where
            elif not verdict[0]:
                first_failure = where + ": " + verdict[1]
            elif first_near_tie is None:
                first_near_tie = where + ": " + verdict[1]
            if first_failure is not None:
                break
        if first_failure is not None:
            report.status, report.note = "FAIL", first_failure
        elif first_near_tie is not None:
            report.status, report.note = "near_tie", first_near_tie

    def check(self, entry: dict, candidate: tuple[np.ndarray, str] | None) -> TensorReport:
        golden = self.expected(entry["name"])
        report = TensorReport(entry["name"], entry["op"], entry["tolerance_class"],
                              elements=int(golden.size))
        if candidate is None:
            report.status, report.note = "missing", "not in the candidate"
            return report
        array, dtype = candidate
        if list(array.shape) != list(golden.shape):
            report.status = "FAIL"
            report.note = (f"shape {json.dumps(list(array.shape), separators=(',', ':'))}, "
                           f"expected {json.dumps(list(golden.shape), separators=(',', ':'))}")
            return report
        integer = entry["tolerance_class"] == "exact"
        if dtype not in (("I32", "I64") if integer else ("F32", "F16", "BF16", "F64")):
            report.status = "FAIL"
            report.note = (f"dtype {dtype} where "
                           f"{'I32 or I64' if integer else 'F32, F16, BF16 or F64'} is expected")
            return report
        expected = golden.astype(np.float64).reshape(-1)
        actual = array.astype(np.float64).reshape(-1)
        if integer:
            self.check_integers(entry["name"], expected, actual, list(golden.shape), report)
        else:
            report.rtol, report.atol = self.tolerance_for(entry["tolerance_class"])
            honest = self.gate_baseline(entry["name"])
            # Where an honest backend errs by more than the class allows on this tensor, the
            # elementwise bound widens to the gate's.
            if honest is not None:
                report.atol = max(report.atol, GATE_FACTORS[0] * honest[0])
            largest_expected = self.measure_floats(expected, actual, report)
            if honest is not None:
                self.apply_gates(honest, largest_expected, report)
        return report

    def apply_gates(self, honest: tuple[float, float], largest_expected: float,
                    report: TensorReport) -> None:
        """The per-tensor gates (compare.cc, apply_gates): the bounds always, a failure only for
        a tensor that passed the elementwise check."""
        floor = GATE_FLOOR_ROUNDINGS * UNIT_ROUNDOFF[self.precision]
        report.max_abs_bound = GATE_FACTORS[0] * max(honest[0], floor * largest_expected)
        report.nmse_bound = GATE_FACTORS[1] * max(honest[1], floor * floor)
        if report.status == "FAIL":
            return
        p = self.precision
        if report.max_abs_error > report.max_abs_bound:
            note = ("max abs error %.3g is above the %s gate %.3g (%g times the worst honest %s "
                    "backend's %.3g, floored at %g roundings)"
                    % (report.max_abs_error, p, report.max_abs_bound, GATE_FACTORS[0], p,
                       honest[0], GATE_FLOOR_ROUNDINGS))
        elif report.nmse > report.nmse_bound:
            note = ("NMSE %.3g is above the %s gate %.3g (%g times the worst honest %s backend's "
                    "%.3g, floored at %g roundings)"
                    % (report.nmse, p, report.nmse_bound, GATE_FACTORS[1], p, honest[1],
                       GATE_FLOOR_ROUNDINGS))
        else:
            return
        report.status, report.note = "FAIL", note

    @staticmethod
    def measure_floats(expected: np.ndarray, actual: np.ndarray, report: TensorReport) -> float:
        """Fills the metrics and the elementwise verdict; returns the largest |e| over the
        elements where both values are finite."""
        with np.errstate(all="ignore"):
            golden_finite = np.isfinite(expected)
            # A golden inf or NaN must be reproduced exactly.
            unmatched = ~golden_finite & ~((actual == expected)
                                           | (np.isnan(actual) & np.isnan(expected)))
            finite = golden_finite & np.isfinite(actual)
            report.non_finite = int((golden_finite & ~np.isfinite(actual)).sum())
            e, a = expected[finite], actual[finite]
            largest_expected = float(np.abs(e).max(initial=0.0))
            error = np.abs(a - e)
            report.max_abs_error = _max(error)
            nonzero = e != 0.0
            report.max_rel_error = _max(error[nonzero] / np.abs(e[nonzero]))
            report.out_of_tolerance = report.non_finite + int(unmatched.sum()) + int(
                (error > report.atol + report.rtol * np.abs(e)).sum())
            squared_error = _sum(error * error)
            squared_expected = _sum(e * e)
            squared_actual = _sum(a * a)
            product = _sum(a * e)
        report.nmse = squared_error / squared_expected if squared_expected > 0 else squared_error
        if squared_expected > 0 and squared_actual > 0:
            report.cosine = product / math.sqrt(squared_expected * squared_actual)
        else:
            report.cosine = 1.0 if squared_expected == squared_actual else 0.0
        if report.non_finite > 0:
            report.note = f"{report.non_finite} non-finite values"
        elif report.out_of_tolerance > 0:
            report.note = (f"{report.out_of_tolerance} of {report.elements} elements out of "
                           "tolerance")
        report.status = "FAIL" if report.out_of_tolerance > 0 else "pass"
        return largest_expected


def _candidate_arrays(candidate: Any) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (array, safetensors dtype name) of a dict of arrays/tensors or a SafetensorsFile."""
    if isinstance(candidate, SafetensorsFile):
        return {name: (array, candidate.dtypes[name]) for name, array in candidate.tensors.items()}
    result = {}
    for name, value in candidate.items():
        array, original = _to_numpy(value)
        try:
            dtype = original or _dtype_name(array)
        except SafetensorsError:
            dtype = str(array.dtype)
        result[name] = (array, dtype)
    return result


def compare(golden_set: GoldenSet | str | os.PathLike,
            candidate: Mapping[str, Any] | SafetensorsFile,
            precision: str = "fp32", rtol: float | None = None, atol: float | None = None,
            require_all: bool = False, *, moeref: str | os.PathLike | None = None,
            anchored: Mapping[str, Any] | str | os.PathLike | None = None) -> Report:
    """Compares `candidate` (name -> numpy array or torch tensor, or a SafetensorsFile) with a
    golden set, with exactly the rules and numbers of `moeref compare` (golden/compare.cc).

    precision picks the default tolerances ("fp32", "tf32", "bf16", "fp16"); rtol / atol override
    them for every float class (and for the decisions' resolutions). require_all=True fails
    tensors the candidate lacks; otherwise they are only reported as missing.

    When a decision of the candidate that moves what follows differs (routing or sampled tokens
    of a model case, routing or tokens of a batching case, proposals, acceptances or final tokens
    of a speculative case; see needs_anchoring), the tensors are compared with the reference
    re-run on the candidate's decisions (report.anchored; for a speculative case the blocks
    compared are the re-run's): `anchored` when given (a mapping name -> array, a
    SafetensorsFile, or the path of a safetensors file, as `moeref anchor` writes it), else made
    by running `moeref anchor` (moeref: the program, see find_moeref). `anchored` is not read
    when no such decision differs. Raises AnchoringError when a re-run is needed and the program
    is not found or fails.
    """
    _check_precision(precision)
    golden = golden_set if isinstance(golden_set, GoldenSet) else GoldenSet(golden_set)
    arrays = _candidate_arrays(candidate)
    rerun = None
    if _needs_anchoring(golden, arrays):
        if anchored is None:
            rerun = _anchored_run(golden, arrays, moeref)
        elif isinstance(anchored, (str, os.PathLike)):
            rerun = dict(read_safetensors(anchored))
        elif isinstance(anchored, SafetensorsFile):
            rerun = dict(anchored.tensors)
        else:
            rerun = {name: _to_numpy(value)[0] for name, value in anchored.items()}
    checker = _Checker(golden, precision, rtol, atol, rerun, arrays)
    report = Report(set=golden.name, precision=precision, anchored=rerun is not None)
    failed = False
    expected = golden.expected if rerun is None else _anchored_expected(golden, rerun)
    for entry in expected:
        tensor = checker.check(entry, arrays.get(entry["name"]))
        if tensor.status != "missing":
            report.compared += 1
        fails = tensor.status == "FAIL" or (tensor.status == "missing" and require_all)
        if fails and report.first_failure is None:
            report.first_failure = tensor.name
        failed = failed or fails
        report.tensors.append(tensor)
    known = {entry["name"] for entry in expected}
    report.extra = sorted((n for n in arrays if n not in known), key=lambda n: n.encode("utf-8"))
    report.passed = not failed and report.compared > 0
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def _show(golden: GoldenSet) -> str:
    m = golden.manifest
    lines = [f"golden set {golden.name} ({golden.kind} case, format_version {m['format_version']})"]
    if m.get("description"):
        lines.append(f"  {m['description']}")
    for title, tensors in (("weights", golden.weights), ("inputs", golden.inputs)):
        if tensors is not None:
            lines.append(f"{title}: {len(tensors)} tensors, "
                         f"{sum(a.size for a in tensors.values())} values")
    if "prompt" in golden.inputs:
        lines.append(f"  prompt: {golden.inputs['prompt'].reshape(-1).tolist()}")
    margins = m.get("margins")
    if isinstance(margins, dict):
        scalars = {k: v for k, v in margins.items() if not isinstance(v, (list, dict))}
        if scalars:
            lines.append("margins: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float)
                                                 else f"{k} {v}" for k, v in scalars.items()))
    lines.append(f"expected tensors, in execution order ({len(golden.expected)}):")
    for entry in golden.expected:
        shape = "[" + ", ".join(str(d) for d in entry["shape"]) + "]"
        lines.append(f"  {entry['name']:<48} {entry['dtype']:<4} {shape:<16} "
                     f"{entry['op']:<20} {entry['tolerance_class']}")
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moeref_golden.py",
        description="Check tensors against a moeref golden set, with the rules of "
                    "`moeref compare`. Exit codes: 0 pass, 1 fail or error, 2 usage error.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare a candidate safetensors file with a golden set")
    c.add_argument("golden_dir")
    c.add_argument("candidate", help="a safetensors file of tensors named as in the set")
    c.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="picks the default tolerances (default fp32)")
    c.add_argument("--rtol", type=float, help="relative tolerance for every float tensor")
    c.add_argument("--atol", type=float, help="absolute tolerance for every float tensor")
    c.add_argument("--require-all", action="store_true",
                   help="fail tensors the candidate does not have")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--verbose", action="store_true",
                   help="list every tensor, not only those that did not pass")
    c.add_argument("--moeref", metavar="PATH",
                   help="the moeref program, which re-runs the reference when a routing or "
                        "sampled decision differs (default: $MOEREF_CLI, moeref on PATH, or "
                        "build/tools/moeref)")
    s = sub.add_parser("show", help="list a golden set's tensors")
    s.add_argument("golden_dir")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        golden = GoldenSet(args.golden_dir)
        if args.command == "show":
            sys.stdout.write(_show(golden))
            return 0
        report = compare(golden, read_safetensors_file(args.candidate), args.precision,
                         args.rtol, args.atol, args.require_all, moeref=args.moeref)
    except (GoldenError, SafetensorsError, AnchoringError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(report.to_json() + "\n" if args.json else report.to_text(args.verbose))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
