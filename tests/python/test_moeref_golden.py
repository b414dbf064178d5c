"""Tests of tools/moeref_golden.py: the safetensors reader and writer, GoldenSet, the sampling
and Philox port, and compare(), which must say exactly what `moeref compare` (golden/compare.cc,
golden/decisions.cc, golden/anchored_run.cc) says: every verdict, status and note.

Golden sets are built with the C++ CLI (`moeref golden`), and some by hand with the module's
writer, following golden/golden_set.h. Candidates with decisions of their own (another expert,
another sampled token) are made the honest way, by the reference re-run on those decisions
(`moeref anchor`), or by `moeref candidate --emulate`. Run by ctest (tests/CMakeLists.txt), which
sets MOEREF_CLI and MOEREF_SOURCE_DIR; by hand:

    MOEREF_CLI=build/tools/moeref PYTHONPATH=tools python3 -m unittest discover -s tests/python -v
"""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import unittest.mock
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(os.environ.get("MOEREF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
CLI = os.environ.get("MOEREF_CLI", str(SOURCE_DIR / "build" / "tools" / "moeref"))
TOOL = SOURCE_DIR / "tools" / "moeref_golden.py"
sys.path.insert(0, str(SOURCE_DIR / "tools"))

import moeref_golden as mg  # noqa: E402

CONFIG = SOURCE_DIR / "configs" / "golden" / "tiny-mqa-moe.json"
# Set by setUpModule:
TMP = Path()  # a temporary directory for everything the tests write
TINY = Path()  # the tiny-mqa-moe set, built once; tests that corrupt a set copy it first
SYNTHETIC = Path()  # a model set built by hand (write_set_by_hand), without weights
SYNTHETIC_TOP_K = Path()  # an op set built by hand: top_k on chosen router probabilities


def run_cli(*args, check=True):
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"moeref {' '.join(map(str, args))} exited {result.returncode}: "
                             f"{result.stderr}")
    return result


def sha256_of_tensor(array: np.ndarray, dtype: str) -> str:
    stored = {"F32": "<f4", "I32": "<i4"}[dtype]
    return hashlib.sha256(np.ascontiguousarray(array, dtype=stored).tobytes()).hexdigest()


def write_set_by_hand(directory: Path, manifest: dict, inputs: dict, trace: list,
                      weights: dict | None = None) -> None:
    """A golden set as golden/golden_set.h describes it, written without the C++ code.
    trace: (name, array, op, tolerance_class) in execution order."""
    directory.mkdir(parents=True)
    files = {}
    if weights:
        mg.write_safetensors(directory / "weights.safetensors", weights)
    mg.write_safetensors(directory / "inputs.safetensors", inputs)
    mg.write_safetensors(directory / "trace.safetensors", {name: a for name, a, _, _ in trace})
    for file in ("weights.safetensors", "inputs.safetensors", "trace.safetensors"):
        if (directory / file).exists():
            files[file] = hashlib.sha256((directory / file).read_bytes()).hexdigest()
    tensors = []
    for name, array, op, tolerance_class in trace:
        dtype = "I32" if array.dtype == np.int32 else "F32"
        tensors.append({"name": name, "file": "trace.safetensors", "dtype": dtype,
                        "shape": list(array.shape), "sha256": sha256_of_tensor(array, dtype),
                        "op": op, "tolerance_class": tolerance_class})
    manifest = dict(manifest, files=files, tensors=tensors)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def f32(values):
    return np.array(values, dtype=np.float32)


def i32(values):
    return np.array(values, dtype=np.int32)


# The hand-built model set (no weights: a routing or sampling flip, which needs a re-run of the
# model, cannot be checked on it). Greedy tokens are judged on the logits row that chose them:
# row 0 on the last row of prefill/logits (token 0 at 3.0; token 2 at 2.5 is 0.5 away, within
# bf16's resolution 0.3 * (2 + 3.0 + 2.5) = 2.25 and beyond fp16's 0.225), row 1 on decode.0/logits
# (tokens 1 and 4 tie exactly at 2.0: the tie rule picks 1, and 4 is never excused).
SYNTHETIC_TRACE = [
    ("prefill/layers.0.moe.router_probs",
     f32([[0.35, 0.3500001, 0.2, 0.0999999], [0.4, 0.39995, 0.2, 0.00005],
          [0.7, 0.25, 0.0, 0.05]]), "softmax", "probability"),
    ("prefill/layers.0.moe.topk_indices", i32([[1, 0], [0, 1], [0, 1]]), "top_k", "exact"),
    ("prefill/layers.0.out", f32([[1, -2, 3, 0.5], [0.25, 0, -1, 2], [4, 5, -6, 7]]),
     "residual_add", "activation"),
    ("prefill/layers.0.moe.aux_loss", f32(0.0), "load_balancing_loss", "activation"),
    ("prefill/layers.0.moe.z_loss", f32(0.75), "router_z_loss", "activation"),
    ("prefill/logits", f32([[0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 5, 2.5, 0], [3.0, -1, 2.5, 0, 1]]),
     "lm_head", "logits"),
    ("decode.0/logits", f32([[0.5, 2.0, 1.0, -3.0, 2.0]]), "lm_head", "logits"),
    ("greedy_tokens", i32([0, 1]), "greedy", "exact"),
    ("sampled_tokens", i32([7, 8, 9]), "sampling", "exact"),
]

# The hand-built top_k op set: router probabilities of 4 experts chosen around the resolutions of
# the default tolerances, resolution = tol(p_reference) + tol(p_candidate), tol(p) = k + k * p.
#   row 0: experts 1 and 0 are 1.2e-7 apart: a near-tie at every precision (fp32: 8.1e-6)
#   row 1: experts 0 and 1 are 5e-5 apart: beyond fp32 (8.4e-6), within tf32 (0.0112)
#   row 2: experts 0 and 1 are 0.45 apart, expert 3 is 0.2 below expert 1: beyond even bf16
#          (0.177 and 0.138)
#   row 3: experts 0 and 1 tie exactly (the lower index ranks first); expert 2 is 0.1 below 1:
#          within bf16 (0.15), beyond fp16 (0.0175)
TOP_K_PROBS = f32([[0.35, 0.3500001, 0.2, 0.0999999], [0.4, 0.39995, 0.2, 0.00005],
                   [0.7, 0.25, 0.0, 0.05], [0.3, 0.3, 0.2, 0.2]])
TOP_K_INDICES = i32([[1, 0], [0, 1], [0, 1], [0, 1]])
TOP_K_WEIGHTS = np.take_along_axis(TOP_K_PROBS, TOP_K_INDICES, axis=1)
# Its calibration (golden/calibration.h), made up: the worst honest backend's [max |a - e|, NMSE]
# on "weights" at fp32, bf16 and fp16, none at tf32 (no gates there). The gates: 4 times the max
# abs error floored at 4 roundings of the largest weight (0.7), 16 times the NMSE floored at
# (4 roundings)^2: at fp32 6.68e-7 and 1.6e-12, at bf16 0.04 and 9.77e-4, at fp16 0.04 and
# 1.6e-3 (there the honest max abs error is above the class's 7e-3, and atol widens to 0.04).
TOP_K_HONEST_ERRORS = {"fp32": {"weights": [1e-7, 1e-13]}, "bf16": {"weights": [0.01, 1e-8]},
                       "fp16": {"weights": [0.01, 1e-4]}}


def setUpModule():
    global TMP, TINY, SYNTHETIC, SYNTHETIC_TOP_K
    if not Path(CLI).exists():
        raise AssertionError(f"the moeref CLI is not at {CLI}: build it, or set MOEREF_CLI")
    TMP = Path(tempfile.mkdtemp(prefix="moeref_golden_test."))
    TINY = TMP / "tiny-mqa-moe"
    run_cli("golden", CONFIG, "--out", TINY)
    SYNTHETIC = TMP / "synthetic"
    write_set_by_hand(SYNTHETIC, {"format_version": 1, "kind": "model", "case": "synthetic",
                                  "description": "built by hand",
                                  "inputs": {"prompt": [1, 2, 3]}},
                      {"prompt": i32([1, 2, 3])}, SYNTHETIC_TRACE)
    SYNTHETIC_TOP_K = TMP / "synthetic-top-k"
    write_set_by_hand(SYNTHETIC_TOP_K, {"format_version": 1, "kind": "op", "case": "top-k-by-hand",
                                        "op": "top_k", "description": "built by hand",
                                        "parameters": {"k": 2, "n_experts": 4,
                                                       "renormalize": False, "tokens": 4},
                                        "honest_errors": TOP_K_HONEST_ERRORS},
                      {"probs": TOP_K_PROBS},
                      [("indices", TOP_K_INDICES, "top_k", "exact"),
                       ("weights", TOP_K_WEIGHTS, "top_k", "probability")])


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def copy_of_trace(golden: mg.GoldenSet) -> dict:
    return {e["name"]: golden.tensor(e["name"]).copy() for e in golden.expected}


HF_MIXTRAL = SOURCE_DIR / "golden" / "sets" / "tiny-hf-mixtral"
OP_SAMPLING = SOURCE_DIR / "golden" / "sets" / "ops" / "sampling-top-k-top-p"
OP_GREEDY = SOURCE_DIR / "golden" / "sets" / "ops" / "sampling-greedy-ties"
_EMULATED = {}


def emulated_candidate(set_dir: Path, precision: str) -> Path:
    """`moeref candidate SET --emulate PRECISION`: the set's model run with kernels computing at
    that precision, teacher-forced, its own decisions included (written once per test run)."""
    key = (str(set_dir), precision)
    if key not in _EMULATED:
        path = TMP / f"emulated-{set_dir.name}-{precision}.safetensors"
        run_cli("candidate", set_dir, "--emulate", precision, "--out", path)
        _EMULATED[key] = path
    return _EMULATED[key]


def rerun_candidate(golden: mg.GoldenSet, decisions: dict) -> dict:
    """What an honest backend that made these routing decisions computes, every other routing its
    own choice on what follows them: the reference re-run on the routing (`moeref anchor`), the
    routing not decided here taken from the re-run's own choices until it repeats itself."""
    candidate = copy_of_trace(golden)
    candidate.update(decisions)
    while True:
        run = mg.anchored_run(golden, candidate)
        moved = [e["name"] for e in golden.expected if e["name"].endswith("moe.topk_indices")
                 and e["name"] not in decisions
                 and not np.array_equal(run[e["name"]], candidate[e["name"]])]
        if not moved:
            break
        for name in moved:
            candidate[name] = run[name].copy()
    result = {e["name"]: run[e["name"]].copy() for e in golden.expected}
    result.update({name: np.array(value) for name, value in decisions.items()})
    return result


def sampled_flip_candidate(golden: mg.GoldenSet, row: int, token: int) -> dict:
    """What an honest backend that sampled `token` at step `row` of the sampled generation
    computes: the reference's tokens before it, `token`, then the reference's own choices after
    that prefix (re-run until the fed tokens are the ones the reference draws after them)."""
    sampled = golden.tensor("sampled_tokens").copy()
    sampled[row] = token
    while True:
        run = mg.anchored_run(golden, {"sampled_tokens": sampled})
        following = run["sampled_tokens"].copy()
        following[:row + 1] = sampled[:row + 1]
        if np.array_equal(following, sampled):
            break
        sampled = following
    result = {e["name"]: run[e["name"]].copy() for e in golden.expected}
    result["sampled_tokens"] = sampled
    return result


def routing_order(golden: mg.GoldenSet, name: str, token: int) -> list[int]:
    """The experts of one token's router probabilities, most likely first (ties: lower index)."""
    probs = golden.tensor(name[:-len("topk_indices")] + "router_probs")[token]
    return sorted(range(probs.size), key=lambda e: (-float(probs[e]), e))


def sampling_row(golden: mg.GoldenSet, row: int):
    """Row `row` of the op sampling set: (logits, parameters, u, kept [(token, low, high)])."""
    parameters = golden.manifest["parameters"]
    logits = golden.inputs["logits"][row]
    u = mg.generation_uniform(parameters["seed"], parameters["draw"], row, parameters["request"])
    kept, low = [], 0.0
    for token, p in mg.processed_distribution(logits, parameters["temperature"],
                                              parameters["top_k"], parameters["top_p"]):
        kept.append((token, low, low + p))
        low += p
    return logits, parameters, u, kept


def interval_distance(u: float, low: float, high: float) -> float:
    return low - u if u < low else u - high if u >= high else 0.0


class FakeTorchTensor:
    """Enough of torch.Tensor for the module: detach, cpu, float, numpy, dtype."""

    def __init__(self, array: np.ndarray, dtype: str):
        self.array, self.dtype = array, dtype  # dtype like "torch.bfloat16"
        self.calls = []

    def _step(self, name, array=None, dtype=None):
        self.calls.append(name)
        other = FakeTorchTensor(self.array if array is None else array, dtype or self.dtype)
        other.calls = self.calls
        return other

    def detach(self):
        return self._step("detach")

    def cpu(self):
        return self._step("cpu")

    def is_floating_point(self):
        return self.dtype in ("torch.float16", "torch.bfloat16", "torch.float32", "torch.float64")

    def float(self):
        return self._step("float", self.array.astype(np.float32), "torch.float32")

    def numpy(self):
        if self.dtype == "torch.bfloat16":
            raise TypeError("Got unsupported ScalarType BFloat16")
        self.calls.append("numpy")
        return self.array


# ---------------------------------------------------------------------------------------------


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(dir=TMP))

    def test_round_trip_of_every_dtype(self):
        rng = np.random.default_rng(1)
        tensors = {
            "bool": np.array([[True, False, True]]),
            "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
            "i8": np.array([-128, 127], dtype=np.int8),
            "i16": np.array([-32768, 5], dtype=np.int16),
            "u16": np.array([65535], dtype=np.uint16),
            "f16": rng.standard_normal((2, 2)).astype(np.float16),
            "i32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
            "u32": np.array([2**32 - 1], dtype=np.uint32),
            "f32": rng.standard_normal((3, 1, 2)).astype(np.float32),
            "f64": rng.standard_normal(4),
            "i64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
            "u64": np.array([2**64 - 1], dtype=np.uint64),
            "scalar": np.float32(2.5),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "bf16": f32([1.0, -2.5, 3.140625]),
        }
        path = self.dir / "all.safetensors"
        mg.write_safetensors(path, tensors, metadata={"format": "pt"}, dtypes={"bf16": "BF16"})
        file = mg.read_safetensors_file(path)
        self.assertEqual(set(file.tensors), set(tensors))
        self.assertEqual(file.metadata, {"format": "pt"})
        self.assertEqual(file.dtypes["bf16"], "BF16")
        self.assertEqual(file.dtypes["f16"], "F16")
        self.assertEqual(file.dtypes["bool"], "BOOL")
        for name, value in tensors.items():
            with self.subTest(name=name):
                read = file[name]
                self.assertEqual(read.shape, np.shape(value))
                if name == "bf16":
                    self.assertEqual(read.dtype, np.float32)
                else:
                    self.assertEqual(read.dtype, np.asarray(value).dtype)
                np.testing.assert_array_equal(read, value)
        self.assertEqual(mg.read_safetensors(path).keys(), file.tensors.keys())

    def test_layout_follows_the_format(self):
        path = self.dir / "layout.safetensors"
        mg.write_safetensors(path, {"b": f32([1, 2, 3]), "a": i32([[4]])})
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        self.assertEqual(n % 8, 0, "the header is padded to a multiple of 8")
        header = json.loads(data[8:8 + n])
        self.assertEqual(list(header), ["b", "a"], "tensors keep the order given")
        self.assertEqual(header["b"], {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]})
        self.assertEqual(header["a"], {"dtype": "I32", "shape": [1, 1], "data_offsets": [12, 16]})
        self.assertEqual(data[8 + n:], f32([1, 2, 3]).tobytes() + i32([4]).tobytes())
        self.assertEqual(len(list(self.dir.iterdir())), 1, "no temporary file is left behind")

    def test_bf16_rounds_to_nearest_even(self):
        x = f32([1.0, 1.00390625, 1.01171875, -1.01171875, np.nan, -np.inf, 1.3])
        bits = mg.bfloat16_bits(x)
        np.testing.assert_array_equal(bits[:6], [0x3F80, 0x3F80, 0x3F82, 0xBF82, 0x7FC0, 0xFF80])
        u = int(np.float32(1.3).view(np.uint32))
        self.assertEqual(int(bits[6]), (u + 0x7FFF + ((u >> 16) & 1)) >> 16)
        self.assertEqual(float(mg.bfloat16_round(np.float32(1.3))), 1.296875)
        self.assertEqual(mg.bfloat16_round(np.float32(1.3)).shape, ())

    def test_torch_like_tensors_are_written_in_their_dtype(self):
        path = self.dir / "torch.safetensors"
        mg.write_safetensors(path, {"w": FakeTorchTensor(f32([1.5, -2.0]), "torch.bfloat16"),
                                    "i": FakeTorchTensor(np.array([3, 4]), "torch.int64")})
        file = mg.read_safetensors_file(path)
        self.assertEqual(file.dtypes, {"w": "BF16", "i": "I64"})
        np.testing.assert_array_equal(file["w"], [1.5, -2.0])

    def test_rejects_malformed_files(self):
        def header_file(header, data=b"", length=None):
            text = json.dumps(header).encode() if isinstance(header, (dict, list)) else header
            return (len(text) if length is None else length).to_bytes(8, "little") + text + data

        ok = {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
        cases = {
            "short": (b"\x01\x02", "shorter than the 8-byte"),
            "huge header": (header_file(b"{}", length=200_000_000), "exceeds the limit"),
            "header past end": (header_file(b"{}", length=100), "past the end"),
            "not utf-8": (header_file(b'{"\xff": 1}'), "UTF-8"),
            "not json": (header_file(b"{not json"), "not valid JSON"),
            "not an object": (header_file([1, 2]), "not a JSON object"),
            "duplicate name": (header_file(b'{"x": {"dtype": "F32", "shape": [0], "data_offsets": '
                                           b'[0, 0]}, "x": {"dtype": "F32", "shape": [0], '
                                           b'"data_offsets": [0, 0]}}'), "duplicate"),
            "unknown dtype": (header_file({"x": dict(ok["x"], dtype="F8_E4M3")}, bytes(8)),
                              "unknown dtype"),
            "negative dim": (header_file({"x": dict(ok["x"], shape=[-2])}, bytes(8)),
                             "non-negative"),
            "fractional dim": (header_file({"x": dict(ok["x"], shape=[2.0])}, bytes(8)),
                               "non-negative"),
            "extra key": (header_file({"x": dict(ok["x"], extra=1)}, bytes(8)), "exactly"),
            "size mismatch": (header_file({"x": dict(ok["x"], shape=[3])}, bytes(8)), "needs 12"),
            "gap": (header_file({"x": dict(ok["x"], data_offsets=[4, 12])}, bytes(12)), "gap"),
            "overlap": (header_file({"x": ok["x"], "y": dict(ok["x"], data_offsets=[4, 12])},
                                    bytes(12)), "overlaps"),
            "trailing data": (header_file(ok, bytes(9)), "end of file"),
            "missing data": (header_file(ok, bytes(7)), "data"),
            "bad metadata": (header_file({"__metadata__": {"a": 1}}), "__metadata__"),
        }
        for name, (content, words) in cases.items():
            with self.subTest(case=name):
                path = self.dir / f"{name.replace(' ', '_')}.safetensors"
                path.write_bytes(content)
                with self.assertRaises(mg.SafetensorsError) as raised:
                    mg.read_safetensors_file(path)
                self.assertIn(str(path), str(raised.exception))
                self.assertIn(words, str(raised.exception))
        path = self.dir / "valid.safetensors"
        path.write_bytes(header_file(ok, f32([1, 2]).tobytes()))
        np.testing.assert_array_equal(mg.read_safetensors(path)["x"], [1, 2])

    def test_reads_what_moeref_writes(self):
        weights = self.dir / "weights.safetensors"
        run_cli("init", CONFIG, "--out", weights)
        golden = mg.GoldenSet(TINY)
        read = mg.read_safetensors(weights)
        self.assertEqual(list(read), list(golden.weights))
        for name, array in read.items():
            np.testing.assert_array_equal(array, golden.weights[name], err_msg=name)


# ---------------------------------------------------------------------------------------------


class GoldenSetTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(dir=TMP))

    def corrupted_copy(self) -> Path:
        copy = self.dir / "set"
        shutil.copytree(TINY, copy)
        return copy

    def assert_both_reject(self, set_dir: Path, *words: str):
        """Python raises GoldenError and `moeref compare` fails, both naming `words`."""
        with self.assertRaises(mg.GoldenError) as raised:
            mg.GoldenSet(set_dir)
        for word in words:
            self.assertIn(word, str(raised.exception))
        candidate = self.dir / "candidate.safetensors"
        mg.write_safetensors(candidate, {"greedy_tokens": i32([0])})
        result = run_cli("compare", set_dir, candidate, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(words[0], result.stderr)
        return str(raised.exception)

    def test_reads_the_set(self):
        golden = mg.GoldenSet(TINY)
        manifest = json.loads((TINY / "manifest.json").read_text())
        self.assertEqual(golden.manifest, manifest)
        self.assertEqual((golden.name, golden.kind), ("tiny-mqa-moe", "model"))
        self.assertEqual([e["name"] for e in golden.expected],
                         [t["name"] for t in manifest["tensors"]])
        self.assertEqual(golden.expected[0]["name"], "prefill/embed.out")
        self.assertEqual(golden.expected[-1]["name"], "sampled_tokens")
        for entry in golden.expected:
            array = golden.tensor(entry["name"])
            self.assertEqual(list(array.shape), entry["shape"])
            self.assertEqual(array.dtype, np.int32 if entry["dtype"] == "I32" else np.float32)
            self.assertEqual(entry["tolerance_class"] == "exact", entry["dtype"] == "I32")
        prompt = golden.inputs["prompt"]
        self.assertEqual(prompt.tolist(), manifest["inputs"]["prompt"])
        self.assertIsNotNone(golden.weights)
        self.assertIn("embed.weight", golden.weights)
        with self.assertRaises(mg.GoldenError):
            golden.tensor("prefill/no.such.tensor")

    def test_prefill_tensors_equal_moeref_trace(self):
        golden = mg.GoldenSet(TINY)
        trace = self.dir / "trace.safetensors"
        tokens = ",".join(str(t) for t in golden.inputs["prompt"].tolist())
        run_cli("trace", CONFIG, "--tokens", tokens, "--out", trace)
        traced = mg.read_safetensors(trace)
        prefill = [e["name"] for e in golden.expected if e["name"].startswith("prefill/")]
        self.assertEqual(prefill, list(traced))
        for name in prefill:
            np.testing.assert_array_equal(golden.tensor(name), traced[name])

    def test_sha256_mismatch_names_the_file(self):
        copy = self.corrupted_copy()
        data = bytearray((copy / "trace.safetensors").read_bytes())
        data[-1] ^= 0x01
        (copy / "trace.safetensors").write_bytes(data)
        message = self.assert_both_reject(copy, "trace.safetensors", "sha256")
        self.assertIn(str(copy), message)

    def test_missing_file_names_the_file(self):
        copy = self.corrupted_copy()
        (copy / "weights.safetensors").unlink()
        self.assert_both_reject(copy, "weights.safetensors", "missing")

    def test_malformed_manifest_names_the_file(self):
        copy = self.corrupted_copy()
        text = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(text[: len(text) // 2])
        self.assert_both_reject(copy, "manifest.json", "malformed JSON")

    def test_missing_manifest_names_the_file(self):
        self.assert_both_reject(self.dir, "manifest.json")

    def test_unknown_format_version_names_the_file_and_the_value(self):
        copy = self.corrupted_copy()
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["format_version"] = 2
        (copy / "manifest.json").write_text(json.dumps(manifest))
        self.assert_both_reject(copy, "manifest.json", "format_version 2")

    def test_tensor_entries_are_checked(self):
        for field, value, words in (("sha256", "0" * 64, "sha256"),
                                    ("shape", [1, 2], "shape"),
                                    ("dtype", "F16", "dtype"),
                                    ("tolerance_class", "loose", "tolerance class")):
            with self.subTest(field=field):
                copy = self.corrupted_copy()
                manifest = json.loads((copy / "manifest.json").read_text())
                manifest["tensors"][3][field] = value
                (copy / "manifest.json").write_text(json.dumps(manifest))
                self.assert_both_reject(copy, manifest["tensors"][3]["name"], words)
                shutil.rmtree(copy)

    def test_a_tensor_listed_twice(self):
        copy = self.corrupted_copy()
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["tensors"][5] = manifest["tensors"][4]
        (copy / "manifest.json").write_text(json.dumps(manifest))
        self.assert_both_reject(copy, manifest["tensors"][4]["name"], "listed twice")

    def test_a_set_built_by_hand_is_read_by_both(self):
        golden = mg.GoldenSet(SYNTHETIC)
        self.assertEqual([e["name"] for e in golden.expected], [t[0] for t in SYNTHETIC_TRACE])
        self.assertIsNone(golden.weights)
        candidate = self.dir / "c.safetensors"
        mg.write_safetensors(candidate, {name: a for name, a, _, _ in SYNTHETIC_TRACE})
        self.assertEqual(run_cli("compare", SYNTHETIC, candidate).returncode, 0)


# ---------------------------------------------------------------------------------------------


class CompareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.golden = mg.GoldenSet(TINY)
        cls.synthetic = mg.GoldenSet(SYNTHETIC)

    def test_the_golden_trace_passes_at_every_precision(self):
        for precision in mg.PRECISIONS:
            with self.subTest(precision=precision):
                report = mg.compare(self.golden, copy_of_trace(self.golden), precision)
                self.assertTrue(report.passed)
                self.assertIsNone(report.first_failure)
                self.assertEqual(report.compared, len(self.golden.expected))
                self.assertEqual({t.status for t in report.tensors}, {"pass"})
                self.assertEqual(max(t.max_abs_error for t in report.tensors), 0.0)
                self.assertEqual(min(t.cosine for t in report.tensors), 1.0)
        self.assertTrue(mg.compare(TINY, copy_of_trace(self.golden)).passed, "a path works too")

    def test_a_perturbed_tensor_is_the_first_failure(self):
        candidate = copy_of_trace(self.golden)
        name = "prefill/layers.1.attn.q"
        candidate[name][2, 1, 3] += 0.01
        candidate["decode.3/logits"][0, 5] += 1.0  # a later failure
        report = mg.compare(self.golden, candidate)
        self.assertFalse(report.passed)
        self.assertEqual(report.first_failure, name)
        tensor = report[name]
        self.assertEqual((tensor.status, tensor.out_of_tolerance, tensor.non_finite),
                         ("FAIL", 1, 0))
        self.assertAlmostEqual(tensor.max_abs_error, 0.01, places=6)
        self.assertEqual(tensor.note, f"1 of {tensor.elements} elements out of tolerance")
        self.assertEqual(report["decode.3/logits"].status, "FAIL")
        self.assertEqual(report["prefill/layers.1.attn.k"].status, "pass")
        self.assertIn(f"FAIL: the first failing tensor is {name}: look there first",
                      report.to_text())

    def test_metrics(self):
        name = "prefill/layers.0.out"
        e = self.golden.tensor(name).astype(np.float64)
        a = e.copy()
        a[0, 0] += 1e-3
        a[3, 7] -= 2e-6
        a = a.astype(np.float32)
        report = mg.compare(self.golden, {name: a})[name]
        d = a.astype(np.float64) - e
        self.assertEqual(report.max_abs_error, np.abs(d).max())
        self.assertEqual(report.max_rel_error, (np.abs(d)[e != 0] / np.abs(e[e != 0])).max())
        self.assertAlmostEqual(report.nmse, (d * d).sum() / (e * e).sum(), delta=1e-20)
        cosine = (a * e).sum() / math.sqrt((e * e).sum() * (a.astype(np.float64) ** 2).sum())
        self.assertAlmostEqual(report.cosine, cosine, places=14)
        self.assertEqual((report.rtol, report.atol), mg.DEFAULT_TOLERANCES["fp32"]["activation"])
        self.assertEqual(report.out_of_tolerance,
                         int((np.abs(d) > report.atol + report.rtol * np.abs(e)).sum()))

    def test_zero_expected_values(self):
        name = "prefill/layers.0.moe.aux_loss"  # 0.0 in the hand-built set
        same = mg.compare(self.synthetic, {name: f32(0.0)})[name]
        self.assertEqual((same.status, same.nmse, same.cosine, same.max_rel_error),
                         ("pass", 0.0, 1.0, 0.0))
        off = mg.compare(self.synthetic, {name: f32(1e-3)})[name]
        self.assertEqual(off.status, "FAIL")
        self.assertEqual(off.max_rel_error, 0.0, "relative error skips zero expected values")
        self.assertEqual(off.nmse, float(np.float32(1e-3)) ** 2, "NMSE is the squared error")
        self.assertEqual(off.cosine, 0.0)
        zeros = mg.compare(self.synthetic, {"prefill/layers.0.moe.z_loss": f32(0.0)})
        self.assertEqual(zeros.tensors[4].cosine, 0.0)

    def test_non_finite_values_fail(self):
        candidate = copy_of_trace(self.golden)
        name = "prefill/layers.0.attn.out"
        candidate[name][1, 1] = np.nan
        candidate[name][2, 2] = np.inf
        report = mg.compare(self.golden, candidate, "bf16", rtol=1e9, atol=1e9)
        tensor = report[name]
        self.assertEqual((tensor.status, tensor.non_finite, tensor.out_of_tolerance),
                         ("FAIL", 2, 2))
        self.assertEqual(tensor.note, "2 non-finite values")
        self.assertEqual(report.first_failure, name)

    def test_shapes_and_dtypes(self):
        logits = self.golden.tensor("prefill/logits")
        indices = self.golden.tensor("prefill/layers.0.moe.topk_indices")
        report = mg.compare(self.golden, {"prefill/logits": logits[:, :-1],
                                          "prefill/layers.0.moe.topk_indices": indices.astype(
                                              np.float32),
                                          "prefill/layers.0.moe.kept": self.golden.tensor(
                                              "prefill/layers.0.moe.kept").astype(np.int64),
                                          "prefill/layers.0.attn.q": self.golden.tensor(
                                              "prefill/layers.0.attn.q").astype(np.int32)})
        self.assertEqual(report["prefill/logits"].note, "shape [12,255], expected [12,256]")
        self.assertEqual(report["prefill/layers.0.moe.topk_indices"].note,
                         "dtype F32 where I32 or I64 is expected")
        self.assertEqual(report["prefill/layers.0.attn.q"].note,
                         "dtype I32 where F32, F16, BF16 or F64 is expected")
        self.assertEqual(report["prefill/layers.0.moe.kept"].status, "pass")
        self.assertEqual(report.first_failure, "prefill/layers.0.attn.q")
        fine = {"prefill/logits": logits.astype(np.float64),
                "prefill/embed.out": self.golden.tensor("prefill/embed.out").astype(np.float16),
                "greedy_tokens": self.golden.tensor("greedy_tokens").astype(np.int64)}
        report = mg.compare(self.golden, fine, "fp16")
        self.assertTrue(report.passed, report.to_text())

    def test_torch_like_tensors(self):
        name = "prefill/layers.0.attn_norm.out"
        values = mg.bfloat16_round(self.golden.tensor(name))
        bf16 = FakeTorchTensor(values, "torch.bfloat16")
        indices = FakeTorchTensor(self.golden.tensor("prefill/layers.0.moe.topk_indices")
                                  .astype(np.int64), "torch.int64")
        double = FakeTorchTensor(self.golden.tensor("prefill/logits").astype(np.float64),
                                 "torch.float64")
        report = mg.compare(self.golden, {name: bf16, "prefill/logits": double,
                                          "prefill/layers.0.moe.topk_indices": indices}, "bf16")
        self.assertTrue(report.passed, report.to_text())
        self.assertEqual(bf16.calls, ["detach", "cpu", "float", "numpy"])
        self.assertNotIn("float", indices.calls, "integer tensors stay integers")
        self.assertNotIn("float", double.calls, "float64 is not narrowed")
        wrong = mg.compare(self.golden, {"prefill/layers.0.moe.kept": FakeTorchTensor(
            f32(np.zeros((12, 2))), "torch.bfloat16")})
        self.assertEqual(wrong["prefill/layers.0.moe.kept"].note,
                         "dtype BF16 where I32 or I64 is expected")

    def test_a_flipped_top_k_index_at_a_large_margin_fails(self):
        name = "prefill/layers.0.moe.topk_indices"
        probs = self.golden.tensor("prefill/layers.0.moe.router_probs").astype(np.float64)
        ordered = -np.sort(-probs, axis=1)
        row = int(np.argmax(ordered[:, 0] - ordered[:, 1]))  # k = 2: swap ranks 0 and 1
        first, second = (int(e) for e in self.golden.tensor(name)[row])
        candidate = copy_of_trace(self.golden)
        candidate[name][row] = candidate[name][row][::-1]
        for precision in ("fp32", "fp16"):
            with self.subTest(precision=precision):
                rtol, atol = mg.DEFAULT_TOLERANCES[precision]["probability"]
                distance = probs[row, first] - probs[row, second]
                self.assertGreater(distance, 2 * atol + rtol * (probs[row, first]
                                                                + probs[row, second]))
                report = mg.compare(self.golden, candidate, precision)
                self.assertFalse(report.passed)
                self.assertTrue(report.anchored, "a routing decision differs: re-run")
                self.assertEqual(report.first_failure, name)
                self.assertEqual(report[name].status, "FAIL")
                self.assertEqual(report[name].out_of_tolerance, 2)
                self.assertIn(f"row {row} differs: rank 0: expert {second} where the reference "
                              f"chose expert {first} (golden probability ", report[name].note)
                self.assertIn(f"beyond the {precision} resolution", report[name].note)

    def test_a_near_tie_is_excused_in_its_row_only(self):
        candidate = {"indices": TOP_K_INDICES.copy()}
        candidate["indices"][0] = [0, 1]  # 1.2e-7 apart
        report = mg.compare(SYNTHETIC_TOP_K, candidate)
        self.assertTrue(report.passed, report.to_text())
        self.assertFalse(report.anchored, "an op set is never re-run")
        topk = report["indices"]
        self.assertEqual((topk.status, topk.out_of_tolerance), ("near_tie", 2))
        self.assertRegex(topk.note, r"^row 0 differs: rank 0: expert 0 where the reference chose "
                                    r"expert 1 \(golden probability 0.35 where the golden choice "
                                    r"has 0.35\): 1.19e-07 apart, within the fp32 resolution "
                                    r"8.1e-06: a near-tie$")
        candidate["indices"][1] = [1, 0]  # 5e-5 apart: another row, beyond fp32
        report = mg.compare(SYNTHETIC_TOP_K, candidate)
        self.assertFalse(report.passed)
        self.assertEqual(report.first_failure, "indices")
        self.assertEqual(report["indices"].status, "FAIL")
        self.assertEqual(report["indices"].out_of_tolerance, 4)
        self.assertTrue(report["indices"].note.startswith(
            "row 1 differs: rank 0: expert 1 where the reference chose expert 0"))
        self.assertIn("beyond the fp32 resolution", report["indices"].note)

    def test_the_resolution_depends_on_the_precision(self):
        def status(rows: dict, precision: str, **overrides) -> str:
            candidate = {"indices": TOP_K_INDICES.copy()}
            for row, experts in rows.items():
                candidate["indices"][row] = experts
            return mg.compare(SYNTHETIC_TOP_K, candidate, precision, **overrides)["indices"].status

        self.assertEqual(status({1: [1, 0]}, "fp32"), "FAIL")  # 5e-5 apart
        for precision in ("tf32", "bf16", "fp16"):
            self.assertEqual(status({1: [1, 0]}, precision), "near_tie", precision)
        self.assertEqual(status({2: [1, 0]}, "bf16"), "FAIL")  # 0.45 apart
        self.assertEqual(status({2: [0, 3]}, "bf16"), "FAIL")  # 0.2 apart, resolution 0.138
        self.assertEqual(status({3: [0, 2]}, "bf16"), "near_tie")  # 0.1 apart, resolution 0.15
        self.assertEqual(status({3: [0, 2]}, "fp16"), "FAIL")
        # an override moves the resolution too
        self.assertEqual(status({2: [1, 0]}, "fp32", rtol=1.0, atol=1.0), "near_tie")

    def test_exact_ties_are_never_excused(self):
        candidate = {"indices": TOP_K_INDICES.copy()}
        candidate["indices"][3] = [1, 0]
        note = mg.compare(SYNTHETIC_TOP_K, candidate, "bf16", rtol=1.0, atol=1.0)["indices"].note
        self.assertEqual(note, "row 3 differs: rank 0: expert 1 where the reference chose expert "
                               "0 (golden probability 0.3 where the golden choice has 0.3): an "
                               "exact tie, which the tie rule decides (the lower index ranks "
                               "first), not rounding")
        greedy = {"greedy_tokens": i32([0, 4])}  # decode.0/logits: tokens 1 and 4 both 2.0
        report = mg.compare(SYNTHETIC, greedy, "bf16")
        self.assertEqual(report["greedy_tokens"].status, "FAIL")
        self.assertEqual(report["greedy_tokens"].note,
                         "row 1 differs: token 4 where the reference chose token 1 (golden logit "
                         "2 where the golden choice has 2): an exact tie, which the tie rule "
                         "decides (the lowest token id wins), not rounding")

    def test_rows_that_choose_no_valid_experts_fail_first(self):
        cases = {(0, 0): "rank 1: expert 0 chosen twice",
                 (4, 0): "rank 0: expert 4 does not exist (4 experts)",
                 (1, -3): "rank 1: expert -3 does not exist (4 experts)",
                 (2**40, 0): "rank 0: expert -1 does not exist (4 experts)"}  # beyond int32
        for experts, words in cases.items():
            with self.subTest(experts=experts):
                candidate = {"indices": TOP_K_INDICES.astype(np.int64)}
                candidate["indices"][2] = experts
                report = mg.compare(SYNTHETIC_TOP_K, candidate, "bf16", rtol=1.0, atol=1.0)
                self.assertEqual(report["indices"].status, "FAIL")
                self.assertEqual(report["indices"].note, "row 2 differs: " + words)

    def test_greedy_tokens_are_judged_on_the_logits_that_chose_them(self):
        def note(row, token, precision):
            candidate = {"greedy_tokens": self.synthetic.tensor("greedy_tokens").copy()}
            candidate["greedy_tokens"][row] = token
            report = mg.compare(self.synthetic, candidate, precision)
            self.assertFalse(report.anchored, "greedy decode calls are teacher-forced: no re-run")
            return report["greedy_tokens"].status, report["greedy_tokens"].note

        # row 0, the last row of prefill/logits: token 2 is 0.5 below token 0 (3.0); the
        # resolution is k * (2 + 3.0 + 2.5) of the logits class
        self.assertEqual(note(0, 2, "bf16"), (
            "near_tie", "row 0 differs: token 2 where the reference chose token 0 (golden logit "
                        "2.5 where the golden choice has 3): 0.5 apart, within the bf16 "
                        "resolution 2.25: a near-tie"))
        for precision in ("fp32", "tf32", "fp16"):
            self.assertEqual(note(0, 2, precision)[0], "FAIL", precision)
        status, words = note(0, 1, "bf16")  # -1.0: 4 apart, resolution 1.8
        self.assertEqual(status, "FAIL")
        self.assertTrue(words.endswith("4 apart, beyond the bf16 resolution 1.8"), words)
        self.assertEqual(note(1, 5, "bf16"), (
            "FAIL", "row 1 differs: token 5 is outside the vocabulary of 5"))
        # kept flags are no judged decision: any difference fails
        kept = "prefill/layers.0.moe.kept"
        candidate = {kept: self.golden.tensor(kept).copy()}
        candidate[kept][0, 0] = 1 - candidate[kept][0, 0]
        self.assertEqual(mg.compare(self.golden, candidate)[kept].note, "row 0 differs")

    def test_sampled_tokens_are_judged_against_u(self):
        """The op sampling set: row 0 draws u = 0.61296 in token 39's interval; the interval of
        token 46, the next one kept, starts 0.0231 above u, within bf16's resolution 2 * (0.06 +
        0.06 * u) = 0.194 but beyond fp16's 0.0226; token 22's is 0.518 away; token 0 was cut."""
        golden = mg.GoldenSet(OP_SAMPLING)

        def verdict(token, precision):
            candidate = {"tokens": golden.tensor("tokens").copy()}
            candidate["tokens"][0] = token
            tensor = mg.compare(golden, candidate, precision)["tokens"]
            return tensor.status, tensor.note

        self.assertEqual(int(golden.tensor("tokens")[0]), 39)
        self.assertEqual(verdict(46, "bf16"), (
            "near_tie", "row 0 differs: token 46 where the reference drew token 39 (u = 0.612960): "
                        "its interval is [0.636089, 0.770427), 0.0231 from u, within the bf16 "
                        "resolution 0.194: a near-tie"))
        self.assertEqual(verdict(46, "fp16"), (
            "FAIL", "row 0 differs: token 46 where the reference drew token 39 (u = 0.612960): "
                    "its interval is [0.636089, 0.770427), 0.0231 from u, beyond the fp16 "
                    "resolution 0.0226"))
        self.assertEqual(verdict(22, "bf16"), (
            "FAIL", "row 0 differs: token 22 where the reference drew token 39 (u = 0.612960): "
                    "its interval is [0.000000, 0.095306), 0.518 from u, beyond the bf16 "
                    "resolution 0.194"))
        status, note = verdict(0, "bf16")
        self.assertEqual(status, "near_tie")
        self.assertIn("token 0 where the reference drew token 39 (u = 0.612960): the top-k/top-p "
                      "cut removed it (probability 0.03416 before the cut, 0.0127 below the "
                      "least kept token's), within the bf16 resolution 0.194: a near-tie", note)
        self.assertEqual(verdict(50, "bf16"), (
            "FAIL", "row 0 differs: token 50 is outside the vocabulary of 50"))
        # the op greedy set: temperature 0, judged as greedy tokens on the logits class
        greedy = mg.GoldenSet(OP_GREEDY)
        logits, tokens = greedy.inputs["logits"], greedy.tensor("tokens")
        candidate = {"tokens": tokens.copy()}
        row = 0
        other = int(np.argsort(-logits[row], kind="stable")[1])
        candidate["tokens"][row] = other
        note = mg.compare(greedy, candidate, "bf16")["tokens"].note
        self.assertTrue(note.startswith(f"row 0 differs: token {other} where the reference chose "
                                        f"token {tokens[row]} (golden logit "), note)

    def test_philox_and_sampling_are_the_reference_s(self):
        # Random123's known answers for philox4x32_R(10, ...)
        self.assertEqual(mg.philox4x32_10((0, 0, 0, 0), (0, 0)),
                         (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8))
        self.assertEqual(mg.philox4x32_10((2**32 - 1,) * 4, (2**32 - 1,) * 2),
                         (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD))
        self.assertEqual(mg.philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
                                          (0xA4093822, 0x299F31D0)),
                         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))
        u = mg.generation_uniform(2**40 + 7, 1, 2, 3)
        self.assertEqual(u * 2**24, int(u * 2**24), "24 bits times 2^-24")
        # the op sampling set: its processed distributions and tokens, to the bit
        golden = mg.GoldenSet(OP_SAMPLING)
        probs = golden.tensor("probs")
        for row in range(probs.shape[0]):
            logits, parameters, u, kept = sampling_row(golden, row)
            distribution = mg.processed_distribution(logits, parameters["temperature"],
                                                     parameters["top_k"], parameters["top_p"])
            full = np.zeros(probs.shape[1], dtype=np.float32)
            for token, p in distribution:
                full[token] = p
            np.testing.assert_array_equal(full, probs[row], err_msg=f"row {row}")
            self.assertEqual(mg.draw_token(distribution, u), golden.tensor("tokens")[row])

    def test_per_tensor_gates(self):
        def weights(precision, change, **overrides):
            candidate = {"weights": change(TOP_K_WEIGHTS.astype(np.float64))}
            return mg.compare(SYNTHETIC_TOP_K, candidate, precision, **overrides)["weights"]

        def one_element(delta):
            def change(w):
                w[2, 0] += delta
                return w
            return change

        largest = float(TOP_K_WEIGHTS.max())
        fp32_bound = 4 * max(1e-7, 4 * 2**-24 * largest)
        exact = weights("fp32", lambda w: w)
        self.assertEqual((exact.status, exact.max_abs_bound, exact.nmse_bound),
                         ("pass", fp32_bound, 16 * max(1e-13, (4 * 2**-24) ** 2)))
        self.assertEqual(weights("fp32", one_element(6e-7)).status, "pass")
        above = weights("fp32", one_element(8e-7))  # within the elementwise 1e-6 * (1 + |e|)
        self.assertEqual(above.out_of_tolerance, 0)
        self.assertEqual((above.status, above.note), (
            "FAIL", "max abs error 8e-07 is above the fp32 gate 6.68e-07 (4 times the worst "
                    "honest fp32 backend's 1e-07, floored at 4 roundings)"))
        spread = weights("bf16", lambda w: w + 0.03)  # max abs 0.03 < 0.04, NMSE 5.5e-3
        self.assertEqual((spread.status, spread.note), (
            "FAIL", "NMSE 0.00555 is above the bf16 gate 0.000977 (16 times the worst honest "
                    "bf16 backend's 1e-08, floored at 4 roundings)"))
        self.assertEqual(weights("bf16", lambda w: w + 0.01).status, "pass")
        # fp16: the honest max abs error 0.01 is above the class's 7e-3: atol widens to 0.04
        widened = weights("fp16", one_element(0.03))
        self.assertEqual((widened.status, widened.atol, widened.rtol), ("pass", 0.04, 7e-3))
        self.assertEqual(weights("fp16", one_element(0.03), atol=7e-3).status, "FAIL")
        # elementwise failures keep their note; no calibration at tf32; overrides: no gates
        beyond = weights("fp32", one_element(1e-3))
        self.assertEqual((beyond.status, beyond.note), ("FAIL", "1 of 8 elements out of tolerance"))
        self.assertEqual(beyond.max_abs_bound, fp32_bound)
        for tensor in (weights("tf32", one_element(8e-7)),
                       weights("fp32", one_element(8e-7), rtol=1e-6)):
            self.assertEqual((tensor.status, tensor.max_abs_bound, tensor.nmse_bound),
                             ("pass", math.inf, math.inf))
        report = mg.compare(SYNTHETIC_TOP_K, {"weights": TOP_K_WEIGHTS}).to_dict()
        self.assertEqual(json.loads(mg.compare(SYNTHETIC_TOP_K, {"weights": TOP_K_WEIGHTS},
                                               "tf32").to_json())["tensors"][1]["max_abs_bound"],
                         None, "inf is written as null, as in the C++ report")
        self.assertEqual(report["tensors"][0]["max_abs_bound"], math.inf, "integer tensors")

    def test_decisions_on_calibrated_scores(self):
        """Greedy row 0 of the hand-built set (token 2, 0.5 below token 0 at 3.0) at bf16: a
        near-tie on the class tolerance (resolution 1.5), a failure where prefill/logits is
        calibrated with an honest max abs error of 0.1 (resolution 0.2 + 0.2 + 2^-9 * 5.5)."""
        calibrated = Path(tempfile.mkdtemp(dir=TMP)) / "calibrated"
        write_set_by_hand(calibrated, {"format_version": 1, "kind": "model", "case": "calibrated",
                                       "honest_errors": {"bf16": {"prefill/logits": [0.1, 1e-4]}}},
                          {"prompt": i32([1, 2, 3])}, SYNTHETIC_TRACE)
        candidate = {"greedy_tokens": i32([2, 1])}
        self.assertEqual(mg.compare(SYNTHETIC, candidate, "bf16")["greedy_tokens"].status,
                         "near_tie")
        self.assertEqual(mg.compare(calibrated, candidate, "bf16")["greedy_tokens"].note,
                         "row 0 differs: token 2 where the reference chose token 0 (golden logit "
                         "2.5 where the golden choice has 3): 0.5 apart, beyond the bf16 "
                         "resolution 0.411")
        self.assertEqual(mg.compare(calibrated, candidate, "bf16", atol=0.2)["greedy_tokens"]
                         .status, "near_tie", "an override goes back to the class tolerance")

    def test_a_malformed_calibration_is_an_error(self):
        broken = Path(tempfile.mkdtemp(dir=TMP)) / "broken"
        shutil.copytree(SYNTHETIC_TOP_K, broken)
        manifest = json.loads((broken / "manifest.json").read_text())
        manifest["honest_errors"]["fp32"]["weights"] = [1e-7]
        (broken / "manifest.json").write_text(json.dumps(manifest))
        with self.assertRaises(mg.GoldenError) as raised:
            mg.compare(broken, {"weights": TOP_K_WEIGHTS})
        self.assertEqual(str(raised.exception), f'{broken / "manifest.json"}: honest_errors.fp32.'
                                                '"weights" must be [max_abs_error, nmse], got '
                                                '[1e-07]')
        self.assertTrue(mg.compare(broken, {"weights": TOP_K_WEIGHTS}, "tf32").passed)
        path = broken.parent / "weights.safetensors"
        mg.write_safetensors(path, {"weights": TOP_K_WEIGHTS})
        result = run_cli("compare", broken, path, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(str(raised.exception), result.stderr)

    def test_missing_extra_and_require_all(self):
        candidate = {"prefill/logits": self.golden.tensor("prefill/logits"),
                     "prefill/logitz": f32([1]), "a.extra": f32([2])}
        report = mg.compare(self.golden, candidate)
        self.assertTrue(report.passed)
        self.assertEqual(report.compared, 1)
        self.assertEqual(report.extra, ["a.extra", "prefill/logitz"])
        self.assertEqual(report["prefill/embed.out"].status, "missing")
        self.assertEqual(report["prefill/embed.out"].note, "not in the candidate")
        strict = mg.compare(self.golden, candidate, require_all=True)
        self.assertFalse(strict.passed)
        self.assertEqual(strict.first_failure, "prefill/embed.out")
        nothing = mg.compare(self.golden, {"unrelated": f32([1])})
        self.assertFalse(nothing.passed)
        self.assertIsNone(nothing.first_failure)
        self.assertTrue(nothing.to_text().endswith("FAIL: the candidate has none of the set's "
                                                   "tensors\n"))

    def test_overrides_and_bad_precision(self):
        candidate = copy_of_trace(self.golden)
        candidate["prefill/layers.0.attn.v"] *= 1.01
        self.assertFalse(mg.compare(self.golden, candidate).passed)
        loose = mg.compare(self.golden, candidate, rtol=0.02, atol=0.0)
        self.assertTrue(loose.passed)
        self.assertEqual((loose["prefill/layers.0.attn.v"].rtol,
                          loose["prefill/layers.0.attn.v"].atol), (0.02, 0.0))
        self.assertEqual(loose["greedy_tokens"].rtol, 0.0, "integer tensors have no tolerance")
        with self.assertRaisesRegex(ValueError, "fp32, tf32, bf16 or fp16"):
            mg.compare(self.golden, candidate, "fp8")

    def test_to_dict_has_the_keys_of_the_cpp_report(self):
        report = mg.compare(self.golden, copy_of_trace(self.golden)).to_dict()
        self.assertEqual(set(report), {"set", "precision", "passed", "anchored", "compared",
                                       "first_failure", "extra", "tensors"})
        self.assertEqual(set(report["tensors"][0]), {
            "name", "op", "tolerance_class", "status", "elements", "out_of_tolerance",
            "non_finite", "max_abs_error", "max_rel_error", "nmse", "cosine", "rtol", "atol",
            "max_abs_bound", "nmse_bound", "note"})
        self.assertEqual(json.loads(json.dumps(report)), report)


# ---------------------------------------------------------------------------------------------


class ReanchoringTest(unittest.TestCase):
    """After a routing or sampling flip the tensors are compared with the reference re-run on the
    candidate's own decisions (`moeref anchor`); a near-tie excuses nothing after it."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(dir=TMP))
        cls.golden = mg.GoldenSet(TINY)
        cls.name = "prefill/layers.0.moe.topk_indices"
        # token 0 in the first routing of the run: the golden rank-1 expert, the third most
        # likely one (0.00135 below it: bf16 cannot resolve that, fp32 can), the least likely one
        order = routing_order(cls.golden, cls.name, 0)
        cls.second, cls.third, cls.least = order[1], order[2], order[-1]
        probs = cls.golden.tensor("prefill/layers.0.moe.router_probs")[0].astype(np.float64)
        cls.gap = probs[cls.second] - probs[cls.third]
        assert list(cls.golden.tensor(cls.name)[0]) == order[:2]

    def flipped(self, expert: int) -> dict:
        indices = self.golden.tensor(self.name).copy()
        indices[0, 1] = expert
        return rerun_candidate(self.golden, {self.name: indices})

    def test_a_flip_within_the_resolution_is_re_anchored_and_passes(self):
        self.assertLess(self.gap, 0.002, "the case needs a router gap that bf16 cannot resolve")
        candidate = self.flipped(self.third)
        report = mg.compare(self.golden, candidate, "bf16")
        self.assertTrue(report.passed, report.to_text())
        self.assertTrue(report.anchored)
        self.assertIn("re-anchored: a routing or sampling decision differs, so the tensors are "
                      "compared with the reference re-run on the candidate's own decisions\n",
                      report.to_text())
        for t in report.tensors:
            if t.name == self.name:
                self.assertEqual(t.status, "near_tie")
                self.assertIn(f"row 0 differs: rank 1: expert {self.third} where the reference "
                              f"chose expert {self.second}", t.note)
                self.assertIn("within the bf16 resolution", t.note)
            else:
                # the flipped expert's outputs and everything after it: the re-run's, to the bit
                # (a later routing that the flip moved within the resolution is a near-tie)
                self.assertEqual(t.max_abs_error, 0.0, t.name)
                self.assertIn(t.status, ("pass", "near_tie") if t.name.endswith("topk_indices")
                              else ("pass",), t.name)
        # what the flip changed, and what the set's own tensors would have failed
        differs = [n for n in candidate if not np.array_equal(candidate[n], self.golden.tensor(n))]
        self.assertIn("prefill/layers.0.moe.expert_outputs", differs)
        # fp32 resolves the gap: the same flip fails there, at the decision itself
        strict = mg.compare(self.golden, candidate)
        self.assertFalse(strict.passed)
        self.assertEqual(strict.first_failure, self.name)
        self.assertIn("beyond the fp32 resolution", strict[self.name].note)

    def test_after_a_legitimate_flip_a_later_bug_still_fails(self):
        candidate = self.flipped(self.third)
        later = "decode.1/logits"
        candidate[later][0, 0] += 5.0
        report = mg.compare(self.golden, candidate, "bf16")
        self.assertFalse(report.passed)
        self.assertTrue(report.anchored)
        self.assertEqual(report.first_failure, later, report.to_text())
        self.assertEqual(report[self.name].status, "near_tie")
        self.assertEqual(report[later].status, "FAIL")
        self.assertEqual(report[later].note, f"1 of {report[later].elements} elements out of "
                                             "tolerance")
        self.assertNotIn("after", report.to_text())
        # a backend that reports the flip but computes the golden expert's outputs is caught too:
        # the re-run ran the expert it named
        dishonest = copy_of_trace(self.golden)
        dishonest[self.name] = candidate[self.name]
        report = mg.compare(self.golden, dishonest, "bf16")
        self.assertFalse(report.passed)
        self.assertEqual(report[self.name].status, "near_tie")
        self.assertEqual(report.first_failure, "prefill/layers.0.moe.expert_outputs")

    def test_a_flip_to_an_unlikely_expert_fails_naming_both(self):
        report = mg.compare(self.golden, self.flipped(self.least), "bf16")
        self.assertFalse(report.passed)
        self.assertEqual(report.first_failure, self.name)
        note = report[self.name].note
        self.assertIn(f"row 0 differs: rank 1: expert {self.least} where the reference chose "
                      f"expert {self.second} (golden probability ", note)
        self.assertIn("beyond the bf16 resolution", note)

    def test_sampled_flips_are_judged_on_the_re_run(self):
        run = mg.anchored_run(self.golden, copy_of_trace(self.golden))
        sampling = self.golden.manifest["inputs"]["sampling"]
        prompt = len(self.golden.manifest["inputs"]["prompt"])
        row = 2
        u = mg.generation_uniform(sampling["seed"], 0, prompt + row)
        kept, low = [], 0.0
        for token, p in mg.processed_distribution(run["sampled_logits"][row],
                                                  sampling["temperature"], sampling["top_k"],
                                                  sampling["top_p"]):
            kept.append((interval_distance(u, low, low + p), token))
            low += p
        kept.sort()
        reference = int(self.golden.tensor("sampled_tokens")[row])
        self.assertEqual(kept[0], (0.0, reference))
        near, far = kept[1], kept[-1]
        self.assertLess(near[0], 0.01)
        self.assertGreater(far[0], 0.3)
        for (distance, token), status in ((near, "near_tie"), (far, "FAIL")):
            with self.subTest(token=token):
                candidate = sampled_flip_candidate(self.golden, row, token)
                report = mg.compare(self.golden, candidate, "bf16")
                self.assertTrue(report.anchored)
                self.assertEqual(report["sampled_tokens"].status, status, report.to_text())
                self.assertEqual(report["sampled_tokens"].out_of_tolerance, 1,
                                 "the tokens after the flip are the re-run's own")
                self.assertIn(f"row {row} differs: token {token} where the reference drew token "
                              f"{reference} (u = {u:.6f}): its interval is ",
                              report["sampled_tokens"].note)
                self.assertIn(f"{distance:.3g} from u", report["sampled_tokens"].note)
                self.assertEqual(report.passed, status == "near_tie")

    def test_an_emulated_bf16_run_passes_re_anchored(self):
        """`moeref candidate --emulate bf16` on tiny-hf-mixtral flips two routings and a sampled
        token, each within bf16's resolution; everything else is the re-run's within tolerance."""
        file = mg.read_safetensors_file(emulated_candidate(HF_MIXTRAL, "bf16"))
        report = mg.compare(HF_MIXTRAL, file, "bf16")
        self.assertTrue(report.passed, report.to_text())
        self.assertTrue(report.anchored)
        near = [t.name for t in report.tensors if t.status == "near_tie"]
        self.assertEqual(len(near), 3, report.to_text())
        self.assertEqual(sum(n.endswith("moe.topk_indices") for n in near), 2)
        self.assertIn("sampled_tokens", near)
        self.assertIn("where the reference drew token", report["sampled_tokens"].note)
        self.assertFalse(mg.compare(HF_MIXTRAL, file, "fp32").passed)
        # a later bug in the same run still fails
        planted = dict(file.tensors)
        planted["decode.3/logits"] = planted["decode.3/logits"] + 5.0
        report = mg.compare(HF_MIXTRAL, planted, "bf16")
        self.assertFalse(report.passed)
        self.assertEqual(report.first_failure, "decode.3/logits")
        self.assertEqual(len([t for t in report.tensors if t.status == "near_tie"]), 3)

    def test_a_precomputed_re_run(self):
        candidate = self.flipped(self.third)
        expected = mg.compare(self.golden, candidate, "bf16").to_dict()
        run = mg.anchored_run(self.golden, candidate)
        self.assertIn("sampled_logits", run)
        missing = "/nonexistent/moeref"
        from_mapping = mg.compare(self.golden, candidate, "bf16", moeref=missing, anchored=run)
        self.assertEqual(from_mapping.to_dict(), expected)
        path = self.dir / "anchored.safetensors"
        mg.write_safetensors(self.dir / "decisions.safetensors", candidate)
        run_cli("anchor", TINY, self.dir / "decisions.safetensors", "--out", path)
        from_file = mg.compare(self.golden, candidate, "bf16", moeref=missing, anchored=path)
        self.assertEqual(from_file.to_dict(), expected)
        # not read where no decision differs: the set's own tensors are the re-run's
        exact = mg.compare(self.golden, copy_of_trace(self.golden), anchored={"x": f32([1])})
        self.assertFalse(exact.anchored)
        self.assertTrue(exact.passed)

    def test_the_program_is_found_or_the_error_says_how(self):
        candidate = self.flipped(self.third)
        with self.assertRaises(mg.AnchoringError) as raised:
            mg.compare(self.golden, candidate, "bf16", moeref=self.dir / "no-such-moeref")
        self.assertIn("no-such-moeref", str(raised.exception))
        self.assertIn("MOEREF_CLI", str(raised.exception))
        cli = str(Path(shutil.which(CLI)).resolve())
        fake = self.dir / "fake-moeref"
        fake.write_text("#!/bin/sh\necho 'fake: cannot anchor' >&2\nexit 3\n")
        fake.chmod(0o755)
        with unittest.mock.patch.dict(os.environ, {"MOEREF_CLI": cli}):
            self.assertEqual(mg.find_moeref(), cli)
            self.assertEqual(mg.find_moeref(fake), str(fake), "the argument comes first")
            with self.assertRaises(mg.AnchoringError) as raised:
                mg.compare(self.golden, candidate, "bf16", moeref=fake)
            self.assertIn("exited 3: fake: cannot anchor", str(raised.exception))
        with unittest.mock.patch.dict(os.environ, {"MOEREF_CLI": str(self.dir / "gone")}):
            with self.assertRaisesRegex(mg.AnchoringError, "MOEREF_CLI"):
                mg.find_moeref()
        # Without an argument, MOEREF_CLI or moeref on PATH: build/tools/moeref next to tools/,
        # and where there is none, an error that says what differs and how to point to moeref.
        decisions = self.dir / "flipped.safetensors"
        mg.write_safetensors(decisions, candidate)
        script = ("import sys, moeref_golden as mg\n"
                  "try:\n"
                  f"    r = mg.compare({str(TINY)!r}, mg.read_safetensors_file({str(decisions)!r}),"
                  " 'bf16')\n"
                  "    print('anchored' if r.anchored else 'not anchored', r.passed)\n"
                  "except mg.AnchoringError as e:\n"
                  "    print('AnchoringError:', e)\n")
        for with_build in (False, True):
            with self.subTest(with_build=with_build):
                root = Path(tempfile.mkdtemp(dir=self.dir))
                (root / "tools").mkdir()
                shutil.copy(TOOL, root / "tools" / "moeref_golden.py")
                if with_build:
                    (root / "build" / "tools").mkdir(parents=True)
                    (root / "build" / "tools" / "moeref").symlink_to(cli)
                env = {k: v for k, v in os.environ.items() if k != "MOEREF_CLI"}
                env.update(PYTHONPATH=str(root / "tools"), PATH=str(root))
                result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                        text=True, env=env)
                self.assertEqual(result.returncode, 0, result.stderr)
                if with_build:
                    self.assertEqual(result.stdout, "anchored True\n")
                else:
                    for words in ("AnchoringError: a routing or sampling decision of the "
                                  "candidate differs", "re-anchoring", "moeref=PATH",
                                  "--moeref PATH", "MOEREF_CLI", "on PATH", "build/tools/moeref"):
                        self.assertIn(words, result.stdout)

    def test_a_flip_in_a_set_without_weights(self):
        """A hand-built model set has no weights to re-run: a flip is judged on the set's own
        scores, without re-anchoring, and both checkers report the same."""
        for name, row in (("prefill/layers.0.moe.topk_indices", 0), ("sampled_tokens", 1)):
            with self.subTest(name=name):
                candidate = {n: a.copy() for n, a, _, _ in SYNTHETIC_TRACE}
                candidate[name][row] = candidate[name][row][::-1] if candidate[name].ndim > 1 \
                    else candidate[name][row] + 1
                report = mg.compare(SYNTHETIC, candidate)
                self.assertFalse(report.anchored)
                path = self.dir / "flip.safetensors"
                mg.write_safetensors(path, candidate)
                result = run_cli("compare", SYNTHETIC, path, "--json", check=False)
                self.assertIn(result.returncode, (0, 1), result.stderr)
                self.assertEqual(json.loads(result.stdout), json.loads(report.to_json()))


# ---------------------------------------------------------------------------------------------


class AgreesWithCppTest(unittest.TestCase):
    """The same candidate file gives the same report here and from `moeref compare`."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(dir=TMP))
        cls.golden = mg.GoldenSet(TINY)

    def cpp_report(self, set_dir, candidate_file, *options):
        result = run_cli("compare", set_dir, candidate_file, "--json", *options, check=False)
        self.assertIn(result.returncode, (0, 1), result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(result.returncode, 0 if report["passed"] else 1)
        text = run_cli("compare", set_dir, candidate_file, *options, check=False).stdout
        verbose = run_cli("compare", set_dir, candidate_file, "--verbose", *options,
                          check=False).stdout
        return report, (text, verbose)

    def assert_same_report(self, python: dict, cpp: dict):
        for key in ("set", "precision", "passed", "anchored", "compared", "first_failure",
                    "extra"):
            self.assertEqual(python[key], cpp[key], key)
        self.assertEqual(len(python["tensors"]), len(cpp["tensors"]))
        for p, c in zip(python["tensors"], cpp["tensors"]):
            for key, value in c.items():
                if isinstance(value, float) or value is None and isinstance(p[key], float):
                    if value is None:  # nlohmann writes non-finite numbers as null
                        self.assertFalse(math.isfinite(p[key]), (p["name"], key))
                    else:
                        self.assertTrue(math.isclose(p[key], value, rel_tol=1e-12, abs_tol=0),
                                        (p["name"], key, p[key], value))
                else:
                    self.assertEqual(p[key], value, (p["name"], key))

    def check(self, set_dir, candidate: dict, precision="fp32", dtypes=None, rtol=None,
              atol=None, require_all=False, expect_pass=None):
        """Writes `candidate`, compares it here (from the dict and from the file) and with the
        C++ CLI, and demands the same report and text."""
        path = self.dir / "candidate.safetensors"
        mg.write_safetensors(path, candidate, dtypes=dtypes)
        options = ["--precision", precision]
        options += ["--rtol", repr(rtol)] if rtol is not None else []
        options += ["--atol", repr(atol)] if atol is not None else []
        options += ["--require-all"] if require_all else []
        cpp, cpp_text = self.cpp_report(set_dir, path, *options)
        from_file = mg.compare(set_dir, mg.read_safetensors_file(path), precision, rtol, atol,
                               require_all)
        self.assert_same_report(from_file.to_dict(), cpp)
        self.assertEqual((from_file.to_text(), from_file.to_text(all_tensors=True)), cpp_text)
        if not dtypes:
            from_dict = mg.compare(set_dir, candidate, precision, rtol, atol, require_all)
            self.assert_same_report(from_dict.to_dict(), cpp)
        if expect_pass is not None:
            self.assertEqual(cpp["passed"], expect_pass)
        return cpp

    def test_an_exact_copy(self):
        for precision in mg.PRECISIONS:
            with self.subTest(precision=precision):
                self.check(TINY, copy_of_trace(self.golden), precision, expect_pass=True)

    def test_one_perturbed_tensor(self):
        candidate = copy_of_trace(self.golden)
        candidate["decode.1/layers.0.moe.expert_outputs"][0, 1, 5] *= 1.001
        for precision in ("fp32", "bf16"):
            with self.subTest(precision=precision):
                self.check(TINY, candidate, precision)
        cpp = self.check(TINY, candidate, "fp32", expect_pass=False)
        self.assertEqual(cpp["first_failure"], "decode.1/layers.0.moe.expert_outputs")

    def test_a_bf16_rounded_copy(self):
        candidate = copy_of_trace(self.golden)
        bf16 = {e["name"]: "BF16" for e in self.golden.expected if e["dtype"] == "F32"}
        self.check(TINY, candidate, "bf16", dtypes=bf16, expect_pass=True)
        cpp = self.check(TINY, candidate, "fp32", dtypes=bf16, expect_pass=False)
        self.assertEqual(cpp["first_failure"], "prefill/embed.out")
        rounded = {n: mg.bfloat16_round(a) if n in bf16 else a for n, a in candidate.items()}
        self.check(TINY, rounded, "bf16", expect_pass=True)
        self.check(TINY, rounded, "fp32", expect_pass=False)

    def test_the_committed_vision_set(self):
        """tiny-vision: its image is an input, and a perturbed vision tensor is reported alike."""
        vision_dir = SOURCE_DIR / "golden" / "sets" / "tiny-vision"
        vision = mg.GoldenSet(vision_dir)
        self.assertEqual(vision.inputs["image"].shape, (3, 16, 16))
        self.assertEqual(vision.manifest["inputs"]["image"]["position"], 4)
        candidate = copy_of_trace(vision)
        self.check(vision_dir, candidate, "fp32", expect_pass=True)
        candidate["image/vision.resampler.out"][3, 7] += 0.5
        cpp = self.check(vision_dir, candidate, "fp32", expect_pass=False)
        self.assertEqual(cpp["first_failure"], "image/vision.resampler.out")
        self.check(vision_dir, candidate, "bf16")

    def test_mixed_dtypes_written_here_are_read_by_moeref(self):
        candidate = copy_of_trace(self.golden)
        names = [e["name"] for e in self.golden.expected]
        floats = [n for n in names if candidate[n].dtype == np.float32]
        integers = [n for n in names if candidate[n].dtype == np.int32]
        for i, name in enumerate(floats):
            candidate[name] = (candidate[name].astype(np.float16) if i % 3 == 0
                               else candidate[name].astype(np.float64) if i % 3 == 1
                               else candidate[name])
        for name in integers[::2]:
            candidate[name] = candidate[name].astype(np.int64)
        candidate["extra.tensor"] = np.arange(3, dtype=np.uint8)
        dtypes = {name: "BF16" for name in floats[2::6]}
        for precision in ("fp16", "bf16", "fp32"):
            with self.subTest(precision=precision):
                self.check(TINY, candidate, precision, dtypes=dtypes)

    def test_flips_that_need_re_anchoring(self):
        """Routing and sampled flips near and far, honest (the reference re-run on them) and not
        (the golden tensors with a decision changed), invalid rows, and a bug after a flip."""
        name = "prefill/layers.0.moe.topk_indices"
        order = routing_order(self.golden, name, 0)
        candidates = {}
        for label, expert in (("near", order[2]), ("far", order[-1])):
            indices = self.golden.tensor(name).copy()
            indices[0, 1] = expert
            candidates[f"honest {label} routing"] = rerun_candidate(self.golden, {name: indices})
            dishonest = copy_of_trace(self.golden)
            dishonest[name] = indices
            candidates[f"dishonest {label} routing"] = dishonest
        planted = {n: a.copy() for n, a in candidates["honest near routing"].items()}
        planted["decode.1/logits"][0, 0] += 5.0
        candidates["a bug after a flip"] = planted
        later = "decode.2/layers.1.moe.topk_indices"
        swapped = copy_of_trace(self.golden)
        swapped[later][0] = swapped[later][0][::-1]
        candidates["swapped ranks in a decode call"] = swapped
        for label, row in (("chosen twice", [3, 3]), ("no such expert", [99, 0])):
            invalid = copy_of_trace(self.golden)
            invalid["prefill/layers.1.moe.topk_indices"][4] = row
            candidates[label] = invalid
        wide = copy_of_trace(self.golden)
        wide[name] = wide[name].astype(np.int64)
        wide[name][1, 0] = 2**40  # outside int32: read as -1, no expert
        candidates["beyond int32"] = wide
        reference = [int(t) for t in self.golden.tensor("sampled_tokens")]
        sampled = copy_of_trace(self.golden)
        sampled["sampled_tokens"][5] = (reference[5] + 1) % 256
        candidates["dishonest sampled token"] = sampled
        candidates["honest sampled token"] = sampled_flip_candidate(
            self.golden, 2, (reference[2] - 1) % 256)
        for label, candidate in candidates.items():
            for precision in ("fp32", "bf16", "fp16"):
                with self.subTest(candidate=label, precision=precision):
                    cpp = self.check(TINY, candidate, precision)
                    self.assertTrue(cpp["anchored"])
        cpp = self.check(TINY, candidates["a bug after a flip"], "bf16", expect_pass=False)
        self.assertEqual(cpp["first_failure"], "decode.1/logits")
        self.check(TINY, candidates["honest near routing"], "bf16", expect_pass=True)

    def test_emulated_runs(self):
        """`moeref candidate --emulate`: a plain backend at each precision, with the decisions it
        makes (tiny-hf-mixtral at bf16 flips two routings and a sampled token), at every
        precision, as is and with a later tensor broken."""
        for emulated in ("bf16", "fp16", "tf32"):
            file = mg.read_safetensors_file(emulated_candidate(HF_MIXTRAL, emulated))
            candidate = dict(file.tensors)
            broken = dict(candidate)
            broken["decode.3/layers.0.attn.out"] = candidate["decode.3/layers.0.attn.out"] + 5.0
            for precision in mg.PRECISIONS:
                with self.subTest(emulated=emulated, precision=precision):
                    cpp = self.check(HF_MIXTRAL, candidate, precision,
                                     expect_pass=True if precision == emulated == "bf16" else None)
                    self.check(HF_MIXTRAL, broken, precision, expect_pass=False)
                    if emulated == "bf16":
                        self.assertTrue(cpp["anchored"])

    def test_the_op_sampling_set_near_and_far_from_u(self):
        """sampling-top-k-top-p: tokens whose interval is next to u, far from it, cut by top-k or
        top-p, and outside the vocabulary; sampling-greedy-ties: ties and clear choices."""
        golden = mg.GoldenSet(OP_SAMPLING)
        rows = golden.tensor("tokens").size
        changes = {"near": {}, "far": {}, "cut": {}, "least likely": {}}
        for row in range(rows):
            logits, parameters, u, kept = sampling_row(golden, row)
            reference = int(golden.tensor("tokens")[row])
            others = sorted((interval_distance(u, low, high), token)
                            for token, low, high in kept if token != reference)
            if others:
                changes["near"][row] = others[0][1]
                changes["far"][row] = others[-1][1]
            cut = [t for t in np.argsort(-logits, kind="stable").tolist()
                   if t not in {token for token, _, _ in kept}]
            if cut:
                changes["cut"][row] = cut[0]
                changes["least likely"][row] = cut[-1]
        self.assertGreater(min(len(c) for c in changes.values()), rows // 2)
        variants = {}
        for label, by_row in changes.items():
            for row, token in list(by_row.items())[::3]:  # one row changed at a time
                candidate = {"tokens": golden.tensor("tokens").copy()}
                candidate["tokens"][row] = token
                variants[f"{label}, row {row}"] = candidate
        all_near = {"tokens": golden.tensor("tokens").copy()}
        for row, token in changes["near"].items():
            all_near["tokens"][row] = token
        variants["every row near"] = all_near
        for token in (-1, 50, 2**31 - 1):
            candidate = {"tokens": golden.tensor("tokens").astype(np.int64)}
            candidate["tokens"][3] = token
            variants[f"token {token}"] = candidate
        statuses = set()
        for label, candidate in variants.items():
            for precision in mg.PRECISIONS:
                with self.subTest(variant=label, precision=precision):
                    cpp = self.check(OP_SAMPLING, candidate, precision)
                    statuses.add(cpp["tensors"][-1]["status"])
        self.assertEqual(statuses, {"near_tie", "FAIL"}, "both verdicts are exercised")
        greedy = mg.GoldenSet(OP_GREEDY)
        logits, tokens = greedy.inputs["logits"], greedy.tensor("tokens")
        for row in range(tokens.size):
            for rank in (0, 1, 2, logits.shape[1] - 1):
                token = int(np.argsort(-logits[row], kind="stable")[rank])
                if token == tokens[row]:
                    continue
                candidate = {"tokens": tokens.copy()}
                candidate["tokens"][row] = token
                for precision in mg.PRECISIONS:
                    with self.subTest(greedy_row=row, token=token, precision=precision):
                        self.check(OP_GREEDY, candidate, precision)

    def test_hand_built_sets(self):
        base = {name: a.copy() for name, a, _, _ in SYNTHETIC_TRACE}
        variants = []
        for row, token in ((0, 2), (0, 1), (0, 4), (1, 4), (1, 0), (0, 5), (1, -1)):
            candidate = {n: a.copy() for n, a in base.items()}
            candidate["greedy_tokens"][row] = token
            candidate["prefill/layers.0.moe.aux_loss"] = f32(1e-3)
            variants.append(candidate)
        zeros = {n: np.zeros_like(a) for n, a in base.items()
                 if n not in ("prefill/layers.0.moe.topk_indices", "sampled_tokens")}
        variants.append(zeros)
        for i, candidate in enumerate(variants):
            for precision in mg.PRECISIONS:
                with self.subTest(variant=i, precision=precision):
                    self.check(SYNTHETIC, candidate, precision)
        calibrated = self.dir / "calibrated"
        if not calibrated.exists():
            write_set_by_hand(calibrated, {"format_version": 1, "kind": "model",
                                           "case": "calibrated", "honest_errors": {
                                               "bf16": {"prefill/logits": [0.1, 1e-4],
                                                        "prefill/layers.0.out": [0.05, 1e-3]},
                                               "fp32": {"decode.0/logits": [1e-6, 1e-12]}}},
                              {"prompt": i32([1, 2, 3])}, SYNTHETIC_TRACE)
        for i, candidate in enumerate(variants):
            candidate = dict(candidate, **{"prefill/layers.0.out": base["prefill/layers.0.out"]
                                           + 0.01 * i})
            for precision in mg.PRECISIONS:
                with self.subTest(calibrated=i, precision=precision):
                    self.check(calibrated, candidate, precision)
        top_k = []
        for rows in ({0: [0, 1]}, {1: [1, 0]}, {2: [1, 0]}, {2: [0, 3]}, {3: [1, 0]}, {3: [0, 2]},
                     {0: [0, 1], 2: [1, 0]}, {0: [0, 1], 1: [1, 0], 3: [0, 2]}, {1: [1, 1]},
                     {2: [0, 4]}, {3: [-2, 0]}):
            candidate = {"indices": TOP_K_INDICES.copy(),
                         "weights": np.take_along_axis(TOP_K_PROBS, TOP_K_INDICES, axis=1)}
            for row, experts in rows.items():
                candidate["indices"][row] = experts
            top_k.append(candidate)
        for delta in (6e-7, 8e-7, 1e-3, 0.01, 0.03):  # around the gates of both precisions
            near = TOP_K_WEIGHTS.astype(np.float64) + delta
            one = TOP_K_WEIGHTS.astype(np.float64)
            one[2, 0] += delta
            top_k += [{"indices": TOP_K_INDICES, "weights": near},
                      {"indices": TOP_K_INDICES, "weights": one}]
        for i, candidate in enumerate(top_k):
            for precision in mg.PRECISIONS:
                with self.subTest(top_k=i, precision=precision):
                    self.check(SYNTHETIC_TOP_K, candidate, precision)
            self.check(SYNTHETIC_TOP_K, candidate, "fp32", rtol=0.2, atol=0.01)

    def test_overrides_require_all_and_mismatches(self):
        candidate = copy_of_trace(self.golden)
        del candidate["prefill/layers.0.attn.k"]
        candidate["prefill/layers.1.attn.probs"] = candidate["prefill/layers.1.attn.probs"][:, :2]
        candidate["decode.2/layers.0.moe.kept"] = candidate["decode.2/layers.0.moe.kept"].astype(
            np.float32)
        candidate["decode.0/layers.1.attn.v"][0, 0, 0] = np.nan
        candidate["decode.1/layers.1.attn.v"] *= 1.003
        self.check(TINY, candidate, "fp32", rtol=1e-2, atol=1e-3)
        self.check(TINY, candidate, "tf32", require_all=True)
        self.check(TINY, {"prefill/logits": candidate["prefill/logits"]}, "fp32",
                   require_all=True)
        self.check(TINY, {"nothing": f32([0])}, "fp32", expect_pass=False)

    def test_the_default_tolerances_match(self):
        """The class tolerances and gate constants are those of golden/tolerances.cc: checked on
        a set without calibration (the class bounds alone) and on a calibrated one (atol widened
        to 4 times the honest max abs error where that is larger; the gates' bounds)."""
        plain = self.dir / "uncalibrated"
        if not plain.exists():
            shutil.copytree(TINY, plain)
            manifest = json.loads((plain / "manifest.json").read_text())
            self.assertIn("honest_errors", manifest)
            del manifest["honest_errors"]
            (plain / "manifest.json").write_text(json.dumps(manifest))
        classes = {}
        for precision in mg.PRECISIONS:
            with self.subTest(precision=precision):
                cpp = self.check(plain, copy_of_trace(self.golden), precision)
                for t in cpp["tensors"]:
                    expected = mg.default_tolerance(precision, t["tolerance_class"])
                    self.assertEqual((t["rtol"], t["atol"]), expected, t["name"])
                    self.assertEqual((t["max_abs_bound"], t["nmse_bound"]), (None, None))
                    classes.setdefault(t["tolerance_class"], 0)
                    classes[t["tolerance_class"]] += 1
                cpp = self.check(TINY, copy_of_trace(self.golden), precision, expect_pass=True)
                for t in cpp["tensors"]:
                    rtol, atol = mg.default_tolerance(precision, t["tolerance_class"])
                    honest = mg.honest_error(self.golden, precision, t["name"])
                    if t["tolerance_class"] == "exact":
                        self.assertIsNone(honest)
                        continue
                    self.assertIsNotNone(honest, t["name"])
                    self.assertEqual((t["rtol"], t["atol"]),
                                     (rtol, max(atol, mg.GATE_FACTORS[0] * honest[0])), t["name"])
                    self.assertEqual(t["nmse_bound"], mg.GATE_FACTORS[1] * max(
                        honest[1], (mg.GATE_FLOOR_ROUNDINGS * mg.UNIT_ROUNDOFF[precision]) ** 2))
        self.assertEqual(set(classes), {"exact", "activation", "probability", "logits"})

    def test_other_model_and_op_sets(self):
        rng = np.random.default_rng(7)
        sets = []
        for config in ("tiny-gqa-mixed", "tiny-capacity"):
            path = SOURCE_DIR / "configs" / "golden" / f"{config}.json"
            if path.exists():
                run_cli("golden", path, "--out", self.dir / config)
                sets.append(self.dir / config)
        run_cli("golden", "--ops", "--out", self.dir / "ops")
        sets += sorted(p.parent for p in (self.dir / "ops").glob("*/manifest.json"))
        self.assertGreater(len(sets), 10)
        for set_dir in sets:
            golden = mg.GoldenSet(set_dir)
            candidate = copy_of_trace(golden)
            for name, array in candidate.items():
                if array.size and rng.random() < 0.5:
                    flat = array.reshape(-1)
                    flat[rng.integers(flat.size)] += 1 if array.dtype == np.int32 else \
                        np.float32(rng.choice([1e-7, 1e-4, 1e-2]))
            for precision in ("fp32", "bf16"):
                with self.subTest(set=set_dir.name, precision=precision):
                    self.check(set_dir, candidate, precision)


# ---------------------------------------------------------------------------------------------


class CommandLineTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(dir=TMP))

    def tool(self, *args, env=None):
        return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                              text=True, env=env)

    def test_compare_exits_like_moeref_compare(self):
        golden = mg.GoldenSet(TINY)
        candidate = copy_of_trace(golden)
        good = self.dir / "good.safetensors"
        mg.write_safetensors(good, candidate)
        candidate["prefill/layers.0.moe.router_logits"][0, 0] += 1
        bad = self.dir / "bad.safetensors"
        mg.write_safetensors(bad, candidate)
        flips = emulated_candidate(HF_MIXTRAL, "bf16")  # re-anchored: moeref found by MOEREF_CLI
        for set_dir, path in ((TINY, good), (TINY, bad), (HF_MIXTRAL, flips)):
            for options in ([], ["--precision", "bf16"], ["--rtol", "0.5", "--atol", "0.01"]):
                with self.subTest(file=path.name, options=options):
                    mine = self.tool("compare", set_dir, path, "--json", *options)
                    cpp = run_cli("compare", set_dir, path, "--json", *options, check=False)
                    self.assertEqual(mine.returncode, cpp.returncode, mine.stderr)
                    self.assertEqual(json.loads(mine.stdout), json.loads(cpp.stdout))
                    for verbose in ([], ["--verbose"]):
                        text = self.tool("compare", set_dir, path, *verbose, *options)
                        self.assertEqual(text.stdout, run_cli("compare", set_dir, path, *verbose,
                                                              *options, check=False).stdout)
        self.assertIn("re-anchored", self.tool("compare", HF_MIXTRAL, flips).stdout)
        self.assertEqual(self.tool("compare", TINY, bad).returncode, 1)
        missing = self.tool("compare", self.dir, good)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("manifest.json", missing.stderr)
        self.assertEqual(self.tool("compare", TINY).returncode, 2, "usage error")
        self.assertEqual(self.tool("compare", TINY, good, "--precision", "fp8").returncode, 2)

    def test_the_moeref_option(self):
        flips = emulated_candidate(HF_MIXTRAL, "bf16")
        env = {k: v for k, v in os.environ.items() if k != "MOEREF_CLI"}
        cpp = run_cli("compare", HF_MIXTRAL, flips, "--precision", "bf16").stdout
        given = self.tool("compare", HF_MIXTRAL, flips, "--precision", "bf16", "--moeref", CLI,
                          env=env)
        self.assertEqual((given.returncode, given.stdout), (0, cpp), given.stderr)
        wrong = self.tool("compare", HF_MIXTRAL, flips, "--moeref", self.dir / "none", env=env)
        self.assertEqual((wrong.returncode, wrong.stdout), (1, ""))
        self.assertTrue(wrong.stderr.startswith("error: a routing or sampling decision of the "
                                                "candidate differs"), wrong.stderr)
        self.assertIn(str(self.dir / "none"), wrong.stderr)
        # no decision differs: no program needed, even a wrong one
        exact = self.dir / "exact.safetensors"
        mg.write_safetensors(exact, copy_of_trace(mg.GoldenSet(HF_MIXTRAL)))
        self.assertEqual(self.tool("compare", HF_MIXTRAL, exact, "--moeref", self.dir / "none",
                                   env=env).returncode, 0)

    def test_show_lists_the_tensors(self):
        result = self.tool("show", TINY)
        self.assertEqual(result.returncode, 0, result.stderr)
        golden = mg.GoldenSet(TINY)
        for entry in golden.expected:
            self.assertIn(entry["name"], result.stdout)
        self.assertIn("tiny-mqa-moe", result.stdout)
        self.assertIn("prompt", result.stdout)

    def test_module_docstring_teaches(self):
        doc = mg.__doc__
        for words in ("register_forward_hook", "compare(", "first_failure", "GoldenSet(",
                      "precision", "near_tie", "write_safetensors", "resolution", "exact tie",
                      "re-run", "moeref anchor", "moeref=", "--moeref", "MOEREF_CLI",
                      "build/tools/moeref", "anchored=", "AnchoringError", "report.anchored"):
            self.assertIn(words, doc)


if __name__ == "__main__":
    unittest.main()
