#!/usr/bin/env python3
"""The roofline table of the small config (docs/performance.md).

Runs bench/roofline_bench once (or reads the JSON of an earlier run) and prints one row per
result: its value, its roofline (the compute peak or the read bandwidth measured in the same run),
the fraction of the roofline reached, and the target where one is set.

The compute roofline is the higher of the two compute baselines of the run: OpenBLAS sgemm with
the kernels simd/ runs, and the Highway FMA-throughput probe (the CPU's peak at its widest
vector). A roofline that rested on the library alone would flatter the model wherever the
library's kernels are below the CPU's. The report warns when they are: when the kernel set in use
is not the best this CPU supports (the run's context), and when sgemm reaches less than
SGEMM_SHORTFALL of the FMA probe.

A prefill's targets are judged against the roofline model's bound that the benchmark computed,
printed under its row: the compute roofline, except that each expert of the prompt's routing
takes the longer of its FLOPs at the peak and its weights' bytes at the read bandwidth. Below the
ridge point (an expert of 16 tokens does 8 FLOPs per byte of its weights) reading them takes
longer than computing with them, and no implementation reaches the compute roofline alone.

  python3 bench/report.py                        run build/bench/roofline_bench, print the table
  python3 bench/report.py --json                 the same rows as JSON
  python3 bench/report.py --binary B -- ARGS     another binary; ARGS go to it (--benchmark_filter)
  python3 bench/report.py --input run.json       a run saved with --benchmark_out=run.json
  python3 bench/report.py --wait-idle            first wait for idle CPUs (3 s at 95% idle)

A run prints the share of the machine's CPU time that other processes took while it ran (from
/proc/stat and the benchmark's own rusage): above a few percent, the numbers carry their load.

Exit status: 0 once the table is printed, whether the targets are met or not (the table says);
1 when the benchmark cannot be run or its output read.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The targets on the small config, 2 threads, against the honest baselines.
DECODE_FRACTION_TARGET = 0.85
# The context the decode target is judged at; decode near the end of the context is reported
# beside it without a target (docs/performance.md, section 3).
DECODE_TARGET_PROMPT = 128
PREFILL_512_FRACTION_TARGET = 0.75
PREFILL_128_FRACTION_TARGET = 0.60
PREFILL_SPEEDUP_TARGET = 30.0
PEAK_MEMORY_RATIO_TARGET = 1.15
# The read bandwidth and the FMA probe at the end of the run within this fraction of the ones at
# the start; else the machine changed during the run (other work on it, the hypervisor moving its
# vCPUs) and the fractions are not to be trusted.
STEADY_TOLERANCE = 0.15
# Kernels one vector width below the CPU's reach at most half of its FMA peak (OpenBLAS's AVX2
# kernels on an AVX-512 CPU: 234 against 478 GFLOP/s of its AVX-512 ones, docs/performance.md);
# its kernels suited to the CPU reach most of it. Below this share, sgemm is not the CPU's best.
SGEMM_SHORTFALL = 0.6
# A run in which other processes took more than this share of the CPU time is a loaded one.
LOADED_SHARE = 0.05


def cpu_jiffies():
    """(all, idle) jiffies of the machine since boot, from /proc/stat; None where it is absent."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(values), values[3] + values[4]  # idle + iowait


def wait_for_idle(idle_share=0.95, window_s=3.0):
    """Returns once the CPUs have been at least idle_share idle over window_s seconds."""
    while True:
        before = cpu_jiffies()
        if before is None:
            return
        time.sleep(window_s)
        after = cpu_jiffies()
        if (after[1] - before[1]) >= idle_share * max(1, after[0] - before[0]):
            return


def run_benchmark(binary, extra_args):
    """The benchmark's JSON, with the CPU share other processes took during it in its context."""
    command = [binary, "--benchmark_format=json"] + extra_args
    before = cpu_jiffies()
    try:
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(command, stdout=output)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise subprocess.CalledProcessError(process.returncode, command)
            output.seek(0)
            run = json.load(output)
    except (OSError, ValueError, subprocess.CalledProcessError) as error:
        sys.exit(f"report.py: cannot run {' '.join(command)}: {error}")
    after = cpu_jiffies()
    if before is not None:
        total = after[0] - before[0]
        busy = total - (after[1] - before[1])
        ours = (usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK")
        run.setdefault("context", {})["other_processes_cpu_share"] = max(0.0, busy - ours) / total
    return run


def row(result, value, unit, roofline=None, fraction=None, target=None, met=None):
    return {"result": result, "value": value, "unit": unit, "roofline": roofline,
            "fraction": fraction, "target": target, "met": met}


def measured(run):
    """The benchmarks of the run that completed, each with its family and name parts."""
    for bench in run["benchmarks"]:
        if bench.get("run_type") == "aggregate" or "error_occurred" in bench:
            continue
        parts = bench["run_name"].split("/")
        yield parts[0], parts, bench


def compute_baselines(run):
    """(best sgemm, best FMA probe) in GFLOP/s of the run; None for one it did not measure."""
    best = {"BM_0_SgemmPeak": None, "BM_0_FmaPeak": None}
    for family, _, bench in measured(run):
        if family in best:
            best[family] = max(best[family] or 0.0, bench["gflops"])
    return best["BM_0_SgemmPeak"], best["BM_0_FmaPeak"]


def compute_roofline(run):
    """The higher of the run's compute baselines, GFLOP/s; None when it measured neither."""
    measured_peaks = [peak for peak in compute_baselines(run) if peak is not None]
    return max(measured_peaks) if measured_peaks else None


def warnings_of(run):
    """Why the library's kernels are below what the CPU supports, where the run shows it."""
    warnings = []
    context = run.get("context", {})
    core, best = context.get("openblas_core"), context.get("openblas_best_core")
    if core and best and core != best:
        warnings.append(f"OpenBLAS runs its {core} kernels, below the {best} kernels this CPU "
                        "supports (its build cannot re-select them): the compute roofline is the "
                        "FMA probe")
    sgemm, fma = compute_baselines(run)
    if sgemm and fma and sgemm < SGEMM_SHORTFALL * fma:
        warning = (f"OpenBLAS sgemm reaches {100 * sgemm / fma:.0f}% of the FMA probe (below "
                   f"{100 * SGEMM_SHORTFALL:.0f}%): its kernels are below what this CPU supports")
        others = context.get("other_processes_cpu_share", 0.0)
        if others > LOADED_SHARE:
            # Other work slows sgemm's thread team more than the probe's independent chains.
            warning += (f", or other processes (which took {100 * others:.0f}% of the CPU time) "
                        "slowed it: rerun on an idle machine")
        warnings.append(warning)
    return warnings


def rows_of(run):
    """One row per benchmark (and one per speedup), in the order the benchmarks ran."""
    rows = []
    read_at_start = fma_at_start = None
    compute = compute_roofline(run)
    for family, parts, bench in measured(run):
        if family == "BM_0_SgemmPeak":
            rows.append(row(f"sgemm {parts[1]}^3 (baseline{blas_core(bench)})", bench["gflops"],
                            "GFLOP/s"))
        elif family == "BM_0_FmaPeak":
            fma_at_start = bench["gflops"]
            target = bench.get("label", "")
            rows.append(row(f"FMA probe, {bench['lanes']:.0f} lanes {target} (baseline)",
                            bench["gflops"], "GFLOP/s"))
            rows.append(row("compute roofline: the higher baseline", compute, "GFLOP/s"))
        elif family == "BM_0_ReadBandwidth":
            read_at_start = bench["gbytes_per_s"]
            rows.append(row("read 1 GiB, all threads (baseline)", read_at_start, "GB/s"))
        elif family == "BM_4_ReadBandwidthAfter" and read_at_start:
            rows.append(steadiness_row("read 1 GiB again at the end", bench["gbytes_per_s"],
                                       "GB/s", read_at_start))
        elif family == "BM_4_FmaPeakAfter" and fma_at_start:
            # A guest whose hypervisor moved its vCPUs onto one physical core, or another tenant's
            # work on the cores, reads far below the first.
            rows.append(steadiness_row("FMA probe again at the end", bench["gflops"], "GFLOP/s",
                                       fma_at_start))
        elif family == "BM_1_SimdMatvec":
            rows.append(row(f"simd matvec {parts[1]}x{parts[2]}", bench["gbytes_per_s"], "GB/s",
                            bench["roofline_gbytes_per_s"], bench["roofline_fraction"]))
        elif family == "BM_1_SimdMatmul":
            roofline = compute or bench["roofline_gflops"]
            rows.append(row(f"simd matmul {parts[1]}x{parts[2]} -> {parts[3]}", bench["gflops"],
                            "GFLOP/s", roofline, bench["gflops"] / roofline))
        elif family in ("BM_2_Prefill", "BM_2_Decode"):
            rows.extend(end_to_end_rows(family, parts[1], int(parts[2]), bench, compute))
        elif family == "BM_3_PeakResidentMemory":
            ratio = bench["peak_over_weights_plus_kv"]
            note = "" if bench["peak_reset"] else " (VmHWM not reset: includes the baselines)"
            rows.append(row(f"peak RSS {bench['peak_rss_mib']:.0f} MiB / weights+KV "
                            f"{bench['weights_plus_kv_mib']:.0f} MiB{note}", ratio, "x",
                            target=f"<= {PEAK_MEMORY_RATIO_TARGET}",
                            met=ratio <= PEAK_MEMORY_RATIO_TARGET))
    return rows


def steadiness_row(name, after, unit, at_start):
    """Not a roofline: a baseline measured again at the end of the run, against the one at the
    start; steady when within STEADY_TOLERANCE of it."""
    steady = abs(after / at_start - 1) <= STEADY_TOLERANCE
    return row(name, after, unit, at_start, after / at_start, f"1 +- {STEADY_TOLERANCE:g} (steady)",
               steady)


def blas_core(bench):
    """", Core" from the benchmark's label, openblas_get_config(): "... <core> MAX_THREADS=n"."""
    words = bench.get("label", "").split()
    for before, word in zip(words, words[1:]):
        if word.startswith("MAX_THREADS="):
            return f", {before}"
    return ""


PREFILL_FRACTION_TARGETS = {512: PREFILL_512_FRACTION_TARGET, 128: PREFILL_128_FRACTION_TARGET}


def end_to_end_rows(family, backend, tokens, bench, compute):
    fraction = bench["roofline_fraction"]
    roofline = bench["roofline_tokens_per_s"]
    target = met = None
    model = None
    if family == "BM_2_Prefill":
        name = f"prefill {tokens} {backend}"
        if compute and "flops_per_token" in bench:
            roofline = compute * 1e9 / bench["flops_per_token"]
            fraction = bench["tokens_per_s"] / roofline
        if backend == "simd" and "model_roofline_tokens_per_s" in bench:
            model = bench["model_roofline_tokens_per_s"]
        if backend == "simd" and tokens in PREFILL_FRACTION_TARGETS:
            goal = PREFILL_FRACTION_TARGETS[tokens]
            judged = fraction if model is None else bench["model_roofline_fraction"]
            target, met = f">= {goal}", judged >= goal
    else:
        name = f"decode {backend} ({tokens} after {bench['prompt_tokens']:.0f})"
        if backend == "simd" and bench["prompt_tokens"] == DECODE_TARGET_PROMPT:
            target, met = f">= {DECODE_FRACTION_TARGET}", fraction >= DECODE_FRACTION_TARGET
    if model is None:
        rows = [row(name, bench["tokens_per_s"], "tok/s", roofline, fraction, target, met)]
    else:
        # The target is judged against the roofline model's bound: the compute roofline alone
        # assumes the experts' weights cost nothing to read, which below the ridge point they do.
        read = bench["model_read_gbytes_per_s"]
        rows = [row(name, bench["tokens_per_s"], "tok/s", roofline, fraction),
                row(f"  against the roofline model (experts read at {read:.1f} GB/s)",
                    bench["tokens_per_s"], "tok/s", model, bench["model_roofline_fraction"],
                    target, met)]
    if "adjacent_read_gbytes_per_s" in bench:
        # Not the roofline: the same tokens against a read of the weights in place just
        # before and after, which shows how much of a shortfall the machine's state explains.
        adjacent = bench["adjacent_read_gbytes_per_s"] * 1e9
        rows.append(row(f"  against its weights read in place ({adjacent / 1e9:.1f} GB/s)",
                        bench["tokens_per_s"], "tok/s", adjacent / bench["bytes_per_token"],
                        bench["adjacent_fraction"]))
    if "simd_over_ref" in bench:
        speedup = bench["simd_over_ref"]
        phase = name.split(" ")[0]
        speedup_target = speedup_met = None
        if phase == "prefill":
            speedup_target = f">= {PREFILL_SPEEDUP_TARGET:g}"
            speedup_met = speedup >= PREFILL_SPEEDUP_TARGET
        rows.append(row(f"{phase} {tokens} simd / ref", speedup, "x", target=speedup_target,
                        met=speedup_met))
    return rows


def number(value):
    if value is None:
        return ""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def kernels_line(context):
    """The kernels simd/ ran with, from the run's context; None for a run without them."""
    if "openblas_core" not in context:
        return None
    core, chose = context["openblas_core"], context.get("openblas_chose", "")
    chosen = f" (OpenBLAS chose {chose})" if chose and chose != core else ""
    prefetch = context.get("tile_token_prefetch")
    tiles = f", tile token prefetch {prefetch}" if prefetch else ""
    return (f"kernels: OpenBLAS {core}{chosen}, Highway {context.get('highway_target', '?')}"
            f"{tiles}")


def print_table(run, rows, warnings):
    context = run.get("context", {})
    print(f"{context.get('date', '')}  {context.get('host_name', '')}  "
          f"{context.get('num_cpus', '?')} CPUs  {context.get('executable', '')}")
    if kernels_line(context):
        print(kernels_line(context))
    for warning in warnings:
        print(f"WARNING: {warning}")
    if "other_processes_cpu_share" in context:
        print(f"other processes took {100 * context['other_processes_cpu_share']:.1f}% of the "
              "machine's CPU time during the run")
    header = ("result", "value", "unit", "roofline", "fraction", "target", "met?")
    lines = [[r["result"], number(r["value"]), r["unit"], number(r["roofline"]),
              "" if r["fraction"] is None else f"{100 * r['fraction']:.1f}%", r["target"] or "",
              "" if r["met"] is None else ("yes" if r["met"] else "NO")] for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    for line in [header] + lines:
        print("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--binary", default=os.path.join(REPO, "build/bench/roofline_bench"))
    parser.add_argument("--input", help="JSON of an earlier run (--benchmark_out) instead of a run")
    parser.add_argument("--wait-idle", action="store_true",
                        help="first wait until the CPUs have been 95%% idle over 3 s")
    parser.add_argument("benchmark_args", nargs="*", help="after --: passed to the benchmark")
    args = parser.parse_args()
    if args.input:
        try:
            with open(args.input, encoding="utf-8") as file:
                run = json.load(file)
        except (OSError, ValueError) as error:
            sys.exit(f"report.py: cannot read the run {args.input}: {error}")
    else:
        if args.wait_idle:
            wait_for_idle()
        run = run_benchmark(args.binary, args.benchmark_args)
    rows = rows_of(run)
    warnings = warnings_of(run)
    if args.json:
        json.dump({"context": run.get("context", {}), "rows": rows, "warnings": warnings},
                  sys.stdout, indent=2)
        print()
    else:
        print_table(run, rows, warnings)


if __name__ == "__main__":
    main()
