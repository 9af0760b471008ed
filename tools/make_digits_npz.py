#!/usr/bin/env python
"""Regenerate pydl/datasets/digits.npz from scikit-learn's copy of the UCI digits data.

The source is ``sklearn/datasets/data/digits.csv.gz`` (1797 rows of 64 pixel counts in 0..16 and
the class label; E. Alpaydin, C. Kaynak, UCI ML Repository, 1998, CC BY 4.0). pydl never runs this
at import: the .npz it writes is committed and shipped in the wheel.

Usage:
    python tools/make_digits_npz.py [--csv PATH] [--out PATH]

Without ``--csv`` the file is taken from the installed scikit-learn (found without importing it).
"""

import argparse
import gzip
import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sklearn_csv():
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-learn is not installed; pass --csv PATH/digits.csv.gz")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data",
                        "digits.csv.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=None, help="digits.csv.gz (default: scikit-learn's)")
    parser.add_argument("--out", default=os.path.join(ROOT, "pydl", "datasets", "digits.npz"))
    args = parser.parse_args()
    with gzip.open(args.csv or sklearn_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (1797, 65) or table.min() < 0 or table[:, :64].max() > 16 \
            or table[:, 64].max() > 9:
        raise SystemExit(f"unexpected digits table: shape {table.shape}, "
                         f"range {table.min()}..{table.max()}")
    images = table[:, :64].astype(np.uint8).reshape(-1, 8, 8)
    target = table[:, 64].astype(np.uint8)
    np.savez_compressed(args.out, images=images, target=target)
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
