"""Run benchmarks and print a Markdown table of pydl against numpy, one row per group.

Usage:
    python benches/report.py [pytest arguments...]     e.g. python benches/report.py benches/bench_gemm.py

Each pytest-benchmark group holds a "pydl" and a "numpy" entry (see benches/conftest.py). The
table shows both medians, the speed-up (numpy median / pydl median; > 1 means pydl is faster) and,
where a benchmark records extra_info["flops"], GFLOP/s.

Throughput groups, whose pydl entry records extra_info["samples"] (the samples processed per
round, e.g. benches/bench_training.py), get a second table instead: samples/s of pydl, numpy and
torch (when present), the ratios pydl/numpy and pydl/torch (> 1 means pydl is faster) and pydl's
GFLOP/s where extra_info["flops"] is recorded.
"""

import json
import os
import re
import subprocess
import sys
import tempfile


def impl_of(bench):
    params = bench.get("params") or {}
    if "impl" in params:
        return params["impl"]
    m = re.search(r"\b(pydl|numpy|torch)\b", bench["name"])
    return m.group(1) if m else None


def main(argv):
    args = argv or ["benches"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [sys.executable, "-m", "pytest", *args, "-q", f"--benchmark-json={out}",
               "--benchmark-columns=median"]
        rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
        if rc != 0:
            sys.exit(f"benchmark run failed (exit {rc}): {' '.join(cmd)}")
        with open(out) as f:
            data = json.load(f)

    groups = {}
    for b in data["benchmarks"]:
        impl = impl_of(b)
        if impl:
            groups.setdefault(b["group"], {})[impl] = b

    throughput = {k: g for k, g in groups.items()
                  if "samples" in g.get("pydl", {}).get("extra_info", {})}
    pairs = {k: g for k, g in groups.items()
             if k not in throughput and "pydl" in g and "numpy" in g}
    if pairs or not throughput:
        print_pairs(pairs)
    if throughput:
        if pairs:
            print()
        print_throughput(throughput)


def print_pairs(groups):
    print("| case | numpy median | pydl median | speed-up | numpy GFLOP/s | pydl GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sorted(groups, key=natural_key):
        g = groups[name]
        tn, tp = g["numpy"]["stats"]["median"], g["pydl"]["stats"]["median"]
        flops = g["pydl"].get("extra_info", {}).get("flops")
        gf = (f"{flops / tn / 1e9:.1f} | {flops / tp / 1e9:.1f}" if flops else " | ")
        print(f"| {name} | {fmt_time(tn)} | {fmt_time(tp)} | {tn / tp:.2f}x | {gf} |")


def print_throughput(groups):
    print("| case | pydl samples/s | numpy samples/s | torch samples/s | pydl/numpy | pydl/torch "
          "| pydl GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in sorted(groups, key=natural_key):
        g = groups[name]
        rate = {impl: b["extra_info"]["samples"] / b["stats"]["median"]
                for impl, b in g.items() if "samples" in b.get("extra_info", {})}
        cells = [fmt_rate(rate.get(impl)) for impl in ("pydl", "numpy", "torch")]
        for peer in ("numpy", "torch"):
            cells.append(f"{rate['pydl'] / rate[peer]:.2f}x" if peer in rate else "-")
        flops = g["pydl"]["extra_info"].get("flops")
        cells.append(f"{flops / g['pydl']['stats']['median'] / 1e9:.1f}" if flops else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


def fmt_rate(r):
    if r is None:
        return "-"
    return f"{r / 1e3:.1f}k" if r >= 1e3 else f"{r:.0f}"


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def fmt_time(t):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


if __name__ == "__main__":
    main(sys.argv[1:])
