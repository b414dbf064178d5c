"""moeref.compare says what `moeref compare` says (golden/compare.h, through the CLI): the same
verdict, first failing tensor and per-tensor statuses on committed sets and on candidates that
pass, fail, or differ only as an emulated low-precision backend does. And the checker's other
parts: the reference's own run of a set passes, a trace can stand in for a set, and sets written
for a config of the caller's are the ones the model traces."""

import json
import os
import subprocess

import numpy as np
import pytest

import moeref
import moeref_golden as mg
from conftest import MODEL_SETS, OP_SETS, SOURCE_DIR

CLI = os.environ.get("MOEREF_CLI", str(SOURCE_DIR / "build" / "tools" / "moeref"))


def cli_report(set_dir, candidate_path, precision):
    run = subprocess.run([CLI, "compare", str(set_dir), str(candidate_path), "--precision",
                          precision, "--json"], capture_output=True, text=True)
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


def assert_same_report(report, cli):
    assert report.passed == cli["passed"]
    assert report.first_failure == cli.get("first_failure")
    assert report.anchored == cli["anchored"]
    assert [(t.name, t.status) for t in report.tensors] == [
        (t["name"], t["status"]) for t in cli["tensors"]]
    assert report.to_json() == cli


def perturbed(candidate, name, scale):
    changed = dict(candidate)
    changed[name] = (candidate[name] * np.float32(1 + scale)).astype(candidate[name].dtype)
    return changed


CASES = [
    # (set, how the candidate is made, precision)
    ("tiny-mqa-moe", "reference", "fp32"),
    ("tiny-mqa-moe", "attn.q off by 5%", "bf16"),
    ("tiny-mqa-moe", "emulated bf16", "bf16"),
    ("tiny-gqa-mixed", "emulated fp16", "fp16"),
    ("ops/moe-capacity", "reference", "fp32"),
    ("ops/matmul-13x96x40", "out off by 1%", "fp32"),
    ("tiny-speculative", "reference", "bf16"),
]


def candidate_for(set_dir, how, tmp_path):
    path = tmp_path / "candidate.safetensors"
    if how.startswith("emulated"):
        precision = how.split()[1]
        subprocess.run([CLI, "candidate", str(set_dir), "--emulate", precision, "--out",
                        str(path)], check=True, capture_output=True)
        return mg.read_safetensors(path), path
    candidate = moeref.run_case(moeref.GoldenSet(set_dir))
    if how == "attn.q off by 5%":
        candidate = perturbed(candidate, "prefill/layers.0.attn.q", 0.05)
    elif how == "out off by 1%":
        candidate = perturbed(candidate, "out", 0.01)
    mg.write_safetensors(path, candidate)
    return candidate, path


@pytest.mark.parametrize("case,how,precision", CASES, ids=["%s %s %s" % c for c in CASES])
def test_compare_says_what_the_cli_says(case, how, precision, tmp_path):
    set_dir = MODEL_SETS / case
    candidate, path = candidate_for(set_dir, how, tmp_path)
    report = moeref.compare(set_dir, candidate, precision)
    assert_same_report(report, cli_report(set_dir, path, precision))
    assert report.passed == (how in ("reference", "emulated bf16", "emulated fp16"))


def test_report_names_the_first_failing_tensor_and_its_statistics():
    set_dir = MODEL_SETS / "tiny-mqa-moe"
    golden = moeref.GoldenSet(set_dir)
    candidate = perturbed(moeref.run_case(golden), "prefill/layers.1.attn.v", 0.05)
    report = moeref.compare(golden, candidate, "bf16")
    assert report.verdict == "FAIL" and not report
    assert report.first_failure == "prefill/layers.1.attn.v"
    failed = report.tensor("prefill/layers.1.attn.v")
    assert failed.status == "FAIL"
    # Within the elementwise bf16 tolerance, but far past what honest backends reach on this
    # tensor: the calibrated gate catches it and says so.
    assert failed.nmse > failed.nmse_bound
    assert "gate" in failed.note
    assert "prefill/layers.1.attn.v" in report.to_text()


def test_a_trace_stands_in_for_a_set(tiny_config):
    model = moeref.Model(tiny_config)
    trace = model.trace([5, 6, 7, 8], 1)
    assert moeref.compare(trace, trace).passed
    candidate = perturbed(trace, "decode.0/layers.1.ffn_norm.out", 0.01)
    report = moeref.compare(trace, candidate, "fp32")
    assert report.first_failure == "decode.0/layers.1.ffn_norm.out"
    assert report.tensor("prefill/logits").status == "pass"


def test_written_model_case_is_what_the_model_traces(tiny_config, tmp_path):
    golden = moeref.write_model_case(tmp_path / "case", tiny_config, prompt_length=6,
                                     decode_steps=2, sampled_tokens=3)
    inputs = golden.manifest["inputs"]
    assert len(inputs["prompt"]) == 6
    margins = golden.manifest["margins"]
    assert min(margins["min_router"], margins["min_greedy"], margins["min_sample"]) >= 1e-3
    traced = moeref.Model(tiny_config).trace(inputs["prompt"], 2)
    for name, value in traced.items():
        assert value.tobytes() == golden.expected_tensor(name).tobytes(), name
    assert moeref.compare(golden, moeref.run_case(golden), "bf16").passed


def test_op_case_builds_the_committed_op_set():
    assert "matmul-8x32x16" in moeref.op_case_names()
    built = moeref.op_case("matmul-8x32x16")
    committed = mg.GoldenSet(OP_SETS / "matmul-8x32x16")
    assert built["outputs"]["out"].tobytes() == committed.tensor("out").tobytes()
    assert built["inputs"]["x"].tobytes() == committed.inputs["x"].tobytes()
