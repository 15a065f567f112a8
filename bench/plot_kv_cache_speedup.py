#!/usr/bin/env python3
"""Plots the CSV that bench/kv_cache_speedup writes: total generation time against N with and
without the KV cache (left) and the speedup (right).

Needs matplotlib (pinned in bench/requirements-bench.txt).
Exit status: 0 when the PNG is written, 1 with a message without matplotlib or without rows,
2 for bad usage.
"""
import argparse
import csv
import sys


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv_path", metavar="CSV")
    parser.add_argument("png_path", metavar="PNG")
    parser.add_argument("title", metavar="TITLE", nargs="?", default="KV cache speedup")
    args = parser.parse_args(argv[1:])
    csv_path, png_path, title = args.csv_path, args.png_path, args.title
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_kv_cache_speedup.py: matplotlib is not installed: "
              "python3 -m pip install -r bench/requirements-bench.txt", file=sys.stderr)
        return 1

    n, cached, uncached = [], [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            n.append(int(row["n_new"]))
            cached.append(float(row["cache_total_s"]))
            uncached.append(float(row["nocache_total_s"]) if row["nocache_total_s"] else None)
    if not n:
        print(f"plot_kv_cache_speedup.py: {csv_path} has no rows", file=sys.stderr)
        return 1

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(n, cached, "o-", label="with KV cache")
    pairs = [(x, y) for x, y in zip(n, uncached) if y is not None]
    if pairs:
        left.plot([x for x, _ in pairs], [y for _, y in pairs], "s-", label="without KV cache")
    left.set_xlabel("new tokens N")
    left.set_ylabel("total time (s)")
    left.set_title("generation time")
    left.grid(True, alpha=0.3)
    left.legend()

    speedups = [(x, y / c) for x, y, c in zip(n, uncached, cached) if y is not None and c > 0]
    if speedups:
        right.plot([x for x, _ in speedups], [s for _, s in speedups], "o-", color="C2")
        for x, s in speedups:
            right.annotate(f"{s:.1f}x", (x, s), textcoords="offset points", xytext=(0, 6),
                           ha="center", fontsize=8)
    right.axhline(4.4, linestyle="--", color="gray", label="4.4x goal")
    right.set_xlabel("new tokens N")
    right.set_ylabel("without / with")
    right.set_title("KV cache speedup")
    right.grid(True, alpha=0.3)
    right.legend()

    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
