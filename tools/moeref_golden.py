#!/usr/bin/env python3
"""Check a PyTorch, Triton or any other backend against moeref golden sets, in Python.

A golden set is a directory that `moeref golden` writes (docs/golden-format.md):

    manifest.json        what produced the set, its margins, and the sha256 of every file and
                         expected tensor, listed in execution order
    weights.safetensors  the model's weights (model cases)
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

The rules (golden/compare.h)
----------------------------
- Float tensors pass when every element has |a - e| <= atol + rtol * |e| and is finite. rtol and
  atol come from the precision and the tensor's tolerance class (DEFAULT_TOLERANCES below) unless
  you pass rtol/atol. Reported: max abs error, max relative error (over nonzero expected values),
  NMSE = sum (a - e)^2 / sum e^2, cosine similarity, and how many elements are out of tolerance.
- Integer tensors must be equal, except a near-tie: where the golden decision was closer than your
  precision can resolve (top-k experts: the router probabilities' gap; greedy tokens: the logits'
  gap; sampled tokens: the draw's distance to a boundary), a mismatch is reported as "near_tie",
  not failed, and any later tensor that fails is "after_near_tie" (it may legitimately differ).
- A wrong shape or dtype fails. The report's first_failure is the first failing tensor in
  execution order: the place to look first. passed means no failure and at least one compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
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
    "default_tolerance", "main",
]


class GoldenError(Exception):
    """A golden set that cannot be trusted: the message names the file or tensor and the problem."""


class SafetensorsError(ValueError):
    """A malformed safetensors file, or tensors that cannot be written; names the file."""


# ---------------------------------------------------------------------------------------------
# safetensors (semantics.md section 7; ref/safetensors.h)
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
    "fp32": {"activation": (9e-6, 9e-6), "probability": (1e-6, 1e-6), "logits": (8e-6, 8e-6)},
    "tf32": {"activation": (2e-2, 2e-2), "probability": (4e-3, 4e-3), "logits": (2e-2, 2e-2)},
    "bf16": {"activation": (3e-1, 3e-1), "probability": (5e-2, 5e-2), "logits": (2e-1, 2e-1)},
    "fp16": {"activation": (4e-2, 4e-2), "probability": (6e-3, 6e-3), "logits": (3e-2, 3e-2)},
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


@dataclass
class TensorReport:
    """How one expected tensor compared. status: "pass", "FAIL", "near_tie", "after_near_tie"
    or "missing"; out_of_tolerance: float elements past the tolerance (non-finite ones included),
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
    note: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "name", "op", "tolerance_class", "status", "elements", "out_of_tolerance",
            "non_finite", "max_abs_error", "max_rel_error", "nmse", "cosine", "rtol", "atol",
            "note")}

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
    order, the candidate's names the set does not have (extra), the first failing tensor, the
    number compared (not missing), and the verdict."""
    set: str
    precision: str
    tensors: list[TensorReport] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    first_failure: str | None = None
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
                "compared": self.compared, "first_failure": self.first_failure,
                "extra": list(self.extra), "tensors": [t.to_dict() for t in self.tensors]}

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
        counts = {status: 0 for status in ("pass", "FAIL", "near_tie", "after_near_tie",
                                           "missing")}
        largest_error = 0.0
        for t in self.tensors:
            counts[t.status] += 1
            if t.status != "missing":
                largest_error = max(largest_error, t.max_abs_error)
            if all_tensors or t.status != "pass":
                out.append(t.to_text())
        out += [f"  extra          {name} (not in the set)\n" for name in self.extra]
        summary = ("%d of %d tensors compared: %d pass, %d near-tie, %d after a near-tie, %d fail; "
                   "%d missing, %d extra; largest abs error %.3g\n" % (
                       self.compared, len(self.tensors), counts["pass"], counts["near_tie"],
                       counts["after_near_tie"], counts["FAIL"], counts["missing"],
                       len(self.extra), largest_error))
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


def _fmt(value: float) -> str:
    return "%.3g" % value


class _Checker:
    def __init__(self, golden: GoldenSet, precision: str, rtol: float | None,
                 atol: float | None):
        self.golden, self.precision, self.rtol, self.atol = golden, precision, rtol, atol

    def tolerance_for(self, tolerance_class: str) -> tuple[float, float]:
        rtol, atol = default_tolerance(self.precision, tolerance_class)
        return (rtol if self.rtol is None else float(self.rtol),
                atol if self.atol is None else float(self.atol))

    def resolution(self, tolerance_class: str, magnitude: float) -> float:
        """Twice the tolerance around `magnitude`: two values each off by one tolerance can swap
        an order that the golden values separate by less than this."""
        rtol, atol = self.tolerance_for(tolerance_class)
        return 2.0 * (atol + rtol * abs(magnitude))

    def decision(self, name: str, row: int, width: int) -> tuple[float, float] | None:
        """(golden margin, resolution) of the decision behind row `row` of an integer tensor, or
        None where no margin applies (kept flags) or the set lacks what decided it. Top-k indices:
        the gap among the k + 1 largest router probabilities (traced, or an op case's input
        "probs"); greedy tokens: the top-2 logit gap; sampled tokens: the draw's distance to a
        boundary (manifest margins)."""
        probs = None
        if _traced_name(name).endswith("moe.topk_indices"):
            probs_name = name[:-len("topk_indices")] + "router_probs"
            if self.golden.has_expected(probs_name):
                probs = self.golden.tensor(probs_name)
        elif name == "indices" and "probs" in self.golden.inputs:
            probs = self.golden.inputs["probs"]
        if probs is not None:
            row_probs = probs.reshape(-1, probs.shape[-1])[row].astype(np.float64)
            ordered = np.sort(row_probs)[::-1]
            # compare.cc's gap_at_rank(row, width - 1): the smallest gap among the top width + 1
            count = min(width, ordered.size - 1)
            gaps = ordered[:count] - ordered[1:count + 1]
            gap = float(gaps.min()) if gaps.size else math.inf
            return gap, self.resolution("probability", float(row_probs.max()))
        margins = self.golden.manifest.get("margins")
        margins = margins if isinstance(margins, dict) else {}

        def margin_at(key: str) -> float | None:
            values = margins.get(key)
            if not isinstance(values, list) or row >= len(values):
                return None
            value = values[row]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None
            return float(value)

        if name == "greedy_tokens":
            margin = margin_at("greedy_tokens")
            if margin is None:
                return None
            logits_name = "prefill/logits" if row == 0 else f"decode.{row - 1}/logits"
            top = 0.0
            if self.golden.has_expected(logits_name):
                logits = self.golden.tensor(logits_name)
                top = float(logits.reshape(-1)[-logits.shape[1]:].max())
            return margin, self.resolution("logits", top)
        key = {"sampled_tokens": "sampled_tokens", "tokens": "tokens"}.get(name)
        margin = margin_at(key) if key else None
        if margin is not None:
            return margin, self.resolution("probability", 1.0)
        return None

    def check_integers(self, name: str, expected: np.ndarray, actual: np.ndarray,
                       shape: list, report: TensorReport) -> None:
        """Each differing row is judged on its own (rows of top-k indices and of teacher-forced
        greedy tokens are independent), except in the sampled generation, one sequence, where the
        tokens after a near-tie may differ."""
        width = 1 if len(shape) <= 1 else shape[-1]
        if report.elements == 0 or width == 0:
            return
        differs = (expected != actual).reshape(-1, width)
        report.out_of_tolerance = int(differs.sum())
        one_sequence = name == "sampled_tokens"
        first_near_tie = first_failure = None
        for row in (int(r) for r in np.flatnonzero(differs.any(axis=1))):
            if first_failure is not None or (one_sequence and first_near_tie is not None):
                break
            d = self.decision(name, row, width)
            # An exact tie (margin 0) is the tie rule's to decide, not rounding's: never excused.
            if d is not None and 0.0 < d[0] < d[1]:
                if first_near_tie is None:
                    first_near_tie = (f"row {row} differs where the golden margin {_fmt(d[0])} is "
                                      f"below the {self.precision} resolution {_fmt(d[1])}: "
                                      "a near-tie")
            else:
                first_failure = (f"row {row} differs although its golden margin {_fmt(d[0])} is "
                                 f"above the {self.precision} resolution {_fmt(d[1])}"
                                 if d is not None else f"row {row} differs")
        if first_failure is not None:
            report.status, report.note = "FAIL", first_failure
        elif first_near_tie is not None:
            report.status, report.note = "near_tie", first_near_tie

    def check(self, entry: dict, candidate: tuple[np.ndarray, str] | None) -> TensorReport:
        golden = self.golden.tensor(entry["name"])
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
            self.measure_floats(expected, actual, report)
        return report

    @staticmethod
    def measure_floats(expected: np.ndarray, actual: np.ndarray, report: TensorReport) -> None:
        with np.errstate(all="ignore"):
            golden_finite = np.isfinite(expected)
            # A golden inf or NaN must be reproduced exactly.
            unmatched = ~golden_finite & ~((actual == expected)
                                           | (np.isnan(actual) & np.isnan(expected)))
            finite = golden_finite & np.isfinite(actual)
            report.non_finite = int((golden_finite & ~np.isfinite(actual)).sum())
            e, a = expected[finite], actual[finite]
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
            require_all: bool = False) -> Report:
    """Compares `candidate` (name -> numpy array or torch tensor, or a SafetensorsFile) with a
    golden set, with exactly the rules and numbers of `moeref compare` (golden/compare.cc).

    precision picks the default tolerances ("fp32", "tf32", "bf16", "fp16"); rtol / atol override
    them for every float class (and for the near-tie resolutions). require_all=True fails tensors
    the candidate lacks; otherwise they are only reported as missing.
    """
    _check_precision(precision)
    golden = golden_set if isinstance(golden_set, GoldenSet) else GoldenSet(golden_set)
    arrays = _candidate_arrays(candidate)
    checker = _Checker(golden, precision, rtol, atol)
    report = Report(set=golden.name, precision=precision)
    after_near_tie = failed = False
    for entry in golden.expected:
        tensor = checker.check(entry, arrays.get(entry["name"]))
        if tensor.status != "missing":
            report.compared += 1
        if tensor.status == "FAIL" and after_near_tie:
            tensor.status = "after_near_tie"
            tensor.note += " (after a near-tie)" if tensor.note else "after a near-tie"
        if tensor.status == "near_tie":
            after_near_tie = True
        fails = tensor.status == "FAIL" or (tensor.status == "missing" and require_all)
        if fails and report.first_failure is None:
            report.first_failure = tensor.name
        failed = failed or fails
        report.tensors.append(tensor)
    report.extra = sorted((n for n in arrays if not golden.has_expected(n)),
                          key=lambda n: n.encode("utf-8"))
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
    s = sub.add_parser("show", help="list a golden set's tensors")
    s.add_argument("golden_dir")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        golden = GoldenSet(args.golden_dir)
        if args.command == "show":
            sys.stdout.write(_show(golden))
            return 0
        report = compare(golden, read_safetensors_file(args.candidate), args.precision,
                         args.rtol, args.atol, args.require_all)
    except (GoldenError, SafetensorsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(report.to_json() + "\n" if args.json else report.to_text(args.verbose))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
