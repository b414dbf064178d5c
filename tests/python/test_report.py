"""Tests of bench/report.py, the roofline table of docs/performance.md: the issue's targets are
judged on the fractions the benchmark measured, at their exact thresholds, and a run whose read
bandwidth moved is flagged. The runs are written by hand; no benchmark runs here.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("MOEREF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
REPORT = SOURCE_DIR / "bench" / "report.py"


def end_to_end(family, backend, tokens, tokens_per_s, fraction, **extra):
    bench = {"run_name": f"{family}/{backend}/{tokens}/iterations:1/manual_time",
             "run_type": "iteration", "tokens_per_s": tokens_per_s,
             "roofline_tokens_per_s": tokens_per_s / fraction, "roofline_fraction": fraction}
    bench.update(extra)
    return bench


def a_run(prefill_fraction, decode_fraction, peak_ratio, read_after):
    return {"context": {"date": "2026-11-29", "num_cpus": 2}, "benchmarks": [
        {"run_name": "BM_0_SgemmPeak/2048/iterations:4/manual_time", "run_type": "iteration",
         "gflops": 450.0, "label": "OpenBLAS 0.3.21 DYNAMIC_ARCH SkylakeX MAX_THREADS=64"},
        {"run_name": "BM_0_ReadBandwidth/iterations:8/manual_time", "run_type": "iteration",
         "gbytes_per_s": 50.0},
        end_to_end("BM_2_Prefill", "simd", 512, 3000.0, prefill_fraction, simd_over_ref=29.99),
        end_to_end("BM_2_Decode", "simd", 32, 200.0, decode_fraction, prompt_tokens=128.0),
        {"run_name": "BM_3_PeakResidentMemory/iterations:1", "run_type": "iteration",
         "peak_over_weights_plus_kv": peak_ratio, "peak_reset": 1, "peak_rss_mib": 1000.0,
         "weights_plus_kv_mib": 900.0},
        {"run_name": "BM_4_ReadBandwidthAfter/iterations:8/manual_time",
         "run_type": "iteration", "gbytes_per_s": read_after},
    ]}


def report(run):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.json"
        path.write_text(json.dumps(run), encoding="utf-8")
        out = subprocess.run([sys.executable, str(REPORT), "--input", str(path), "--json"],
                             capture_output=True, text=True, check=True).stdout
    return {r["result"]: r for r in json.loads(out)["rows"]}


class ReportTest(unittest.TestCase):
    def test_targets_are_met_at_their_thresholds(self):
        rows = report(a_run(0.70, 0.75, 1.15, 57.5))
        self.assertTrue(rows["prefill 512 simd"]["met"])
        self.assertTrue(rows["decode simd (32 after 128)"]["met"])
        self.assertTrue(rows["peak RSS 1000 MiB / weights+KV 900 MiB"]["met"])
        self.assertTrue(rows["read 1 GiB again at the end"]["met"])  # +15%: still steady
        self.assertEqual(rows["sgemm 2048^3 (baseline, SkylakeX)"]["value"], 450.0)

    def test_targets_just_below_are_not(self):
        rows = report(a_run(0.6999, 0.7499, 1.1501, 57.6))
        self.assertFalse(rows["prefill 512 simd"]["met"])
        self.assertFalse(rows["decode simd (32 after 128)"]["met"])
        self.assertFalse(rows["peak RSS 1000 MiB / weights+KV 900 MiB"]["met"])
        self.assertFalse(rows["read 1 GiB again at the end"]["met"])
        self.assertFalse(rows["prefill 512 simd / ref"]["met"])  # 29.99x against >= 30


if __name__ == "__main__":
    unittest.main()
