#!/usr/bin/env python
"""Fuzz the checkpoint loader and the kernels' argument checks for many iterations.

The test suite runs a bounded number of hypothesis examples (tests/test_fuzz.py); this script
reuses the same mutators and catalogue of bad values in a plain random loop, for as long as you
like. Every outcome must be a result or a documented exception (loader: ValueError; kernels:
TypeError, ValueError, MemoryError). Anything else is printed with the seed that reproduces it,
and the exit status is 1. A call that hangs for 60 s dumps all stacks and exits.

Usage (from the repository root, after tools/devbuild):
    python tools/fuzz_loader.py [--iterations N] [--seed S] [--only loader|kernels]
"""

import argparse
import faulthandler
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import test_fuzz as fz  # noqa: E402


def fuzz_loader(rnd, originals, path):
    path.write_bytes(fz.mutate_bytes(rnd, rnd.choice(originals)))
    return "loaded" if fz.load_everything(path) else "ValueError"


def random_array(rnd):
    shape = tuple(rnd.randrange(7) for _ in range(rnd.randrange(4)))
    dtype = rnd.choice([np.float32, np.float32, np.float64, np.int64, np.uint8, ">f8"])
    a = np.random.default_rng(rnd.randrange(2 ** 32)).standard_normal(shape).astype(dtype)
    if shape and rnd.random() < 0.3:
        a = np.repeat(a, 2, axis=0)[::2]
    return a


def fuzz_kernels(rnd):
    name = rnd.choice(sorted(fz.CALLS))
    kwargs = fz.CALLS[name]()
    names = sorted(kwargs)
    for arg in rnd.sample(names, rnd.randint(1, min(3, len(names)))):
        r = rnd.random()
        if r < 0.6:
            kwargs[arg] = rnd.choice(fz.bad_values(kwargs[arg]))
        elif r < 0.8:
            kwargs[arg] = random_array(rnd)
        else:
            kwargs[arg] = kwargs[rnd.choice(names)]  # aliasing another argument
    result = fz.call_kernel(name, kwargs)
    return type(result).__name__ if isinstance(result, Exception) else "ok"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["loader", "kernels"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # zipfile duplicate names, numpy casts
    targets = [args.only] if args.only else ["loader", "kernels"]
    counts = {t: {} for t in targets}
    failures = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        originals = fz.valid_files(tmp)
        path = tmp / "fuzzed.npz"
        for i in range(args.iterations):
            seed = args.seed * 10 ** 9 + i
            target = targets[i % len(targets)]
            rnd = random.Random(seed)
            faulthandler.dump_traceback_later(60, exit=True)
            try:
                outcome = (fuzz_loader(rnd, originals, path) if target == "loader"
                           else fuzz_kernels(rnd))
            except Exception as e:  # an undocumented exception: a bug
                failures += 1
                outcome = f"BUG {type(e).__name__}"
                print(f"{target} seed={seed}: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                faulthandler.cancel_dump_traceback_later()
            counts[target][outcome] = counts[target].get(outcome, 0) + 1
    elapsed = time.monotonic() - start
    for target, c in counts.items():
        total = sum(c.values())
        print(f"{target}: {total} iterations: " +
              ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])))
    print(f"{args.iterations} iterations in {elapsed:.1f} s, {failures} undocumented outcomes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
