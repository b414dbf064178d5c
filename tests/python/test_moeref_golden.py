"""Tests of tools/moeref_golden.py: the safetensors reader and writer, GoldenSet, and compare(),
which must say exactly what `moeref compare` (golden/compare.cc) says.

Golden sets are built with the C++ CLI (`moeref golden`), and some by hand with the module's
writer, following golden/golden_set.h. Run by ctest (tests/CMakeLists.txt), which sets MOEREF_CLI
and MOEREF_SOURCE_DIR; by hand:

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
SYNTHETIC = Path()  # a set built by hand (write_set_by_hand)


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


# The hand-built set: margins chosen around the resolutions of the default tolerances.
# Router rows: smallest gap among the top 3 of 1e-7 (a near-tie at every precision), 5e-5 (a
# failure at fp32, a near-tie at bf16) and 0.2 (a failure even at bf16, whose resolution is 0.17).
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
    ("greedy_tokens", i32([0, 4]), "greedy", "exact"),
    ("sampled_tokens", i32([7, 8, 9]), "sampling", "exact"),
]
SYNTHETIC_MARGINS = {"greedy_tokens": [0.2, 1e-7], "sampled_tokens": [0.3, 1e-7, 0.19]}


def setUpModule():
    global TMP, TINY, SYNTHETIC
    if not Path(CLI).exists():
        raise AssertionError(f"the moeref CLI is not at {CLI}: build it, or set MOEREF_CLI")
    TMP = Path(tempfile.mkdtemp(prefix="moeref_golden_test."))
    TINY = TMP / "tiny-mqa-moe"
    run_cli("golden", CONFIG, "--out", TINY)
    SYNTHETIC = TMP / "synthetic"
    write_set_by_hand(SYNTHETIC, {"format_version": 1, "kind": "model", "case": "synthetic",
                                  "description": "built by hand", "margins": SYNTHETIC_MARGINS},
                      {"prompt": i32([1, 2, 3])}, SYNTHETIC_TRACE)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def copy_of_trace(golden: mg.GoldenSet) -> dict:
    return {e["name"]: golden.tensor(e["name"]).copy() for e in golden.expected}


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
        self.assertEqual([name[len("prefill/"):] for name in prefill], list(traced))
        for name in prefill:
            np.testing.assert_array_equal(golden.tensor(name), traced[name[len("prefill/"):]])

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
        margins = (ordered[:, :2] - ordered[:, 1:3]).min(axis=1)  # k = 2: gaps among the top 3
        row = int(np.argmax(margins))
        candidate = copy_of_trace(self.golden)
        candidate[name][row] = candidate[name][row][::-1]
        for precision in ("fp32", "fp16"):
            with self.subTest(precision=precision):
                rtol, atol = mg.DEFAULT_TOLERANCES[precision]["probability"]
                self.assertGreater(margins[row], 2 * (atol + rtol * probs[row].max()))
                report = mg.compare(self.golden, candidate, precision)
                self.assertFalse(report.passed)
                self.assertEqual(report.first_failure, name)
                self.assertEqual(report[name].status, "FAIL")
                self.assertEqual(report[name].out_of_tolerance, 2)
                self.assertIn(f"row {row} differs although its golden margin", report[name].note)

    def test_a_near_tie_is_excused_and_so_is_what_follows(self):
        candidate = {name: a.copy() for name, a, _, _ in SYNTHETIC_TRACE}
        candidate["prefill/layers.0.moe.topk_indices"][0] = [0, 1]  # margin 1e-7
        candidate["prefill/logits"][2, 0] += 0.5  # would fail, but follows the near-tie
        report = mg.compare(self.synthetic, candidate)
        self.assertTrue(report.passed, report.to_text())
        topk = report["prefill/layers.0.moe.topk_indices"]
        self.assertEqual(topk.status, "near_tie")
        self.assertRegex(topk.note, r"^row 0 differs where the golden margin 1.\d+e-07 is below "
                                    r"the fp32 resolution 2.7e-06: a near-tie$")
        self.assertEqual(report["prefill/logits"].status, "after_near_tie")
        self.assertEqual(report["prefill/logits"].note,
                         "1 of 15 elements out of tolerance (after a near-tie)")
        candidate["prefill/layers.0.moe.router_probs"][0, 0] += 0.1  # before the near-tie
        report = mg.compare(self.synthetic, candidate)
        self.assertEqual(report.first_failure, "prefill/layers.0.moe.router_probs")

    def test_the_resolution_depends_on_the_precision(self):
        candidate = {name: a.copy() for name, a, _, _ in SYNTHETIC_TRACE}
        candidate["prefill/layers.0.moe.topk_indices"][1] = [1, 0]  # margin 5e-5
        self.assertEqual(mg.compare(self.synthetic, candidate, "fp32").tensors[1].status, "FAIL")
        self.assertEqual(mg.compare(self.synthetic, candidate, "bf16").tensors[1].status,
                         "near_tie")
        candidate["prefill/layers.0.moe.topk_indices"][1] = [0, 1]
        candidate["prefill/layers.0.moe.topk_indices"][2] = [1, 0]  # margin 0.2
        self.assertEqual(mg.compare(self.synthetic, candidate, "bf16").tensors[1].status, "FAIL")
        # an override moves the resolution too
        self.assertEqual(mg.compare(self.synthetic, candidate, "fp32", rtol=1.0, atol=1.0)
                         .tensors[1].status, "near_tie")

    def test_greedy_and_sampled_tokens_use_the_manifest_margins(self):
        def status(name, row, precision):
            candidate = {name: self.synthetic.tensor(name).copy()}
            candidate[name][row] += 1
            return mg.compare(self.synthetic, candidate, precision)[name].status

        # greedy row 0: margin 0.2, resolution 2 * (k + k * 3.0) from the top logit of the last
        # row of prefill/logits (the row that chose it; the tensor's largest logit is 5.0)
        self.assertEqual(status("greedy_tokens", 0, "fp32"), "FAIL")
        self.assertEqual(status("greedy_tokens", 0, "tf32"), "FAIL")       # 2 * 0.02 * 4 = 0.16
        self.assertEqual(status("greedy_tokens", 0, "bf16"), "near_tie")   # 2 * 0.2 * 4 = 1.6
        self.assertEqual(status("greedy_tokens", 1, "fp32"), "near_tie")   # margin 1e-7
        # sampled: resolution 2 * (k + k * 1.0) of the probability class
        self.assertEqual(status("sampled_tokens", 0, "bf16"), "FAIL")      # 0.3 > 0.2
        self.assertEqual(status("sampled_tokens", 1, "fp32"), "near_tie")  # 1e-7 < 4e-6
        self.assertEqual(status("sampled_tokens", 2, "bf16"), "near_tie")  # 0.19 < 0.2
        # kept flags have no margin: any difference fails
        kept = "prefill/layers.0.moe.kept"
        candidate = {kept: self.golden.tensor(kept).copy()}
        candidate[kept][0, 0] = 1 - candidate[kept][0, 0]
        self.assertEqual(mg.compare(self.golden, candidate)[kept].note, "row 0 differs")

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
        self.assertEqual(set(report), {"set", "precision", "passed", "compared", "first_failure",
                                       "extra", "tensors"})
        self.assertEqual(set(report["tensors"][0]), {
            "name", "op", "tolerance_class", "status", "elements", "out_of_tolerance",
            "non_finite", "max_abs_error", "max_rel_error", "nmse", "cosine", "rtol", "atol",
            "note"})
        self.assertEqual(json.loads(json.dumps(report)), report)


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
        for key in ("set", "precision", "passed", "compared", "first_failure", "extra"):
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

    def test_near_ties_and_what_follows(self):
        name = "prefill/layers.1.moe.topk_indices"
        probs = self.golden.tensor("prefill/layers.1.moe.router_probs").astype(np.float64)
        ordered = -np.sort(-probs, axis=1)
        row = int(np.argmin((ordered[:, :2] - ordered[:, 1:3]).min(axis=1)))
        candidate = copy_of_trace(self.golden)
        candidate[name][row] = candidate[name][row][::-1]
        candidate["decode.0/logits"] += 1.0
        candidate["greedy_tokens"][-1] += 1
        candidate["sampled_tokens"][2] += 1
        cpp = self.check(TINY, candidate, "bf16")
        statuses = {t["name"]: t["status"] for t in cpp["tensors"]}
        self.assertEqual(statuses[name], "near_tie")
        self.assertEqual(statuses["decode.0/logits"], "after_near_tie")
        self.assertTrue(cpp["passed"])
        self.check(TINY, candidate, "fp32", expect_pass=False)

    def test_hand_built_set(self):
        base = {name: a.copy() for name, a, _, _ in SYNTHETIC_TRACE}
        topk = "prefill/layers.0.moe.topk_indices"
        variants = []
        for rows in ([0], [1], [2], [0, 2], [2, 0]):
            candidate = {n: a.copy() for n, a in base.items()}
            for row in rows:  # [0, 2]: a near-tie row before a large-margin one (see report)
                candidate[topk][row] = candidate[topk][row][::-1]
            variants.append(candidate)
        for name, row in (("greedy_tokens", 0), ("greedy_tokens", 1), ("sampled_tokens", 0),
                          ("sampled_tokens", 1), ("sampled_tokens", 2)):
            candidate = {n: a.copy() for n, a in base.items()}
            candidate[name][row] += 1
            candidate["prefill/layers.0.moe.aux_loss"] = f32(1e-3)
            variants.append(candidate)
        zeros = {n: np.zeros_like(a) for n, a in base.items()}
        variants.append(zeros)
        for i, candidate in enumerate(variants):
            for precision in mg.PRECISIONS:
                with self.subTest(variant=i, precision=precision):
                    self.check(SYNTHETIC, candidate, precision)

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
        classes = {}
        for precision in mg.PRECISIONS:
            with self.subTest(precision=precision):
                cpp = self.check(TINY, copy_of_trace(self.golden), precision)
                for t in cpp["tensors"]:
                    expected = mg.default_tolerance(precision, t["tolerance_class"])
                    self.assertEqual((t["rtol"], t["atol"]), expected, t["name"])
                    classes.setdefault(t["tolerance_class"], 0)
                    classes[t["tolerance_class"]] += 1
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

    def tool(self, *args):
        return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                              text=True)

    def test_compare_exits_like_moeref_compare(self):
        golden = mg.GoldenSet(TINY)
        candidate = copy_of_trace(golden)
        good = self.dir / "good.safetensors"
        mg.write_safetensors(good, candidate)
        candidate["prefill/layers.0.moe.router_logits"][0, 0] += 1
        bad = self.dir / "bad.safetensors"
        mg.write_safetensors(bad, candidate)
        for path, code in ((good, 0), (bad, 1)):
            for options in ([], ["--precision", "bf16"], ["--rtol", "0.5", "--atol", "0.01"]):
                with self.subTest(file=path.name, options=options):
                    mine = self.tool("compare", TINY, path, "--json", *options)
                    cpp = run_cli("compare", TINY, path, "--json", *options, check=False)
                    self.assertEqual(mine.returncode, cpp.returncode, mine.stderr)
                    self.assertEqual(json.loads(mine.stdout), json.loads(cpp.stdout))
                    for verbose in ([], ["--verbose"]):
                        text = self.tool("compare", TINY, path, *verbose, *options)
                        self.assertEqual(text.stdout, run_cli("compare", TINY, path, *verbose,
                                                              *options, check=False).stdout)
        self.assertEqual(self.tool("compare", TINY, bad).returncode, 1)
        missing = self.tool("compare", self.dir, good)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("manifest.json", missing.stderr)
        self.assertEqual(self.tool("compare", TINY).returncode, 2, "usage error")
        self.assertEqual(self.tool("compare", TINY, good, "--precision", "fp8").returncode, 2)

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
                      "precision", "near_tie", "write_safetensors"):
            self.assertIn(words, doc)


if __name__ == "__main__":
    unittest.main()
