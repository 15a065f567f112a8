#!/usr/bin/env python3
"""Prints the side-by-side table of bench/engine_vs_llamacpp.sh from the CSV rows
(engine,threads,batch,metric,value) that bench/engine and bench/llamacpp_baseline.py append.

Exit status: 0 when the table printed, 2 for bad usage, 1 (a traceback) when the CSV cannot be
read.
"""
import argparse
import csv
import sys


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_csv", metavar="RESULTS_CSV")
    args = parser.parse_args(argv[1:])
    # (engine, threads, batch, metric) -> value. Over several rounds each metric keeps its best:
    # the highest rate, the lowest time; memory keeps its highest (the peak of any round).
    values = {}
    with open(args.results_csv, newline="") as f:
        for engine, threads, batch, metric, value in csv.reader(f):
            key, value = (engine, threads, batch, metric), float(value)
            if key in values:
                keep_min = metric.endswith("_ms")
                value = min(values[key], value) if keep_min else max(values[key], value)
            values[key] = value

    def get(engine, threads, batch, metric):
        return values.get((engine, threads, batch, metric))

    threads = sorted({k[1] for k in values if k[1]}, key=int)
    batches = sorted({k[2] for k in values if k[0] == "pdserve" and k[3] == "decode_tok_s"},
                     key=int)
    weight_bytes = get("pdserve", "", "", "weight_bytes")

    rows = []  # label, threads, ours, theirs, digits
    for t in threads:
        rows.append(("prefill tokens/s", t, get("pdserve", t, "1", "prefill_tok_s"),
                     get("llama.cpp", t, "1", "prefill_tok_s"), 1))
        for b in batches:
            rows.append((f"decode tokens/s, batch {b}", t, get("pdserve", t, b, "decode_tok_s"),
                         get("llama.cpp", t, b, "decode_tok_s"), 1))
        ours_ms = get("pdserve", t, "1", "decode_step_ms")
        theirs_ms = get("llama.cpp", t, "1", "decode_step_ms")
        rows.append(("decode step ms, batch 1", t, ours_ms, theirs_ms, 2))
        # The same weights are read per step by both, so one byte count serves both sides.
        rows.append(("decode weight GB/s, batch 1", t,
                     weight_bytes / ours_ms / 1e6 if weight_bytes and ours_ms else None,
                     weight_bytes / theirs_ms / 1e6 if weight_bytes and theirs_ms else None, 2))
        for b in batches:
            if b != "1":
                rows.append((f"decode weight GB/s, batch {b}", t,
                             get("pdserve", t, b, "weight_gb_s"), None, 2))
        memcpy = get("pdserve", t, "", "memcpy_gb_s")
        rows.append(("memcpy GB/s (same run)", t, memcpy, memcpy, 2))
    for metric, label in (("vmrss_mib", "VmRSS MiB"), ("vmhwm_mib", "VmHWM MiB"),
                          ("model_file_mib", "model file MiB")):
        rows.append((label, "-", get("pdserve", "", "", metric), get("llama.cpp", "", "", metric),
                     1))

    header = ["", "threads", "pdserve", "llama.cpp", "pdserve / llama.cpp"]
    cells = []
    for label, t, ours, theirs, digits in rows:
        fmt = lambda v: "n/a" if v is None else f"{v:.{digits}f}"
        if label.startswith("memcpy"):
            ratio = ""
        elif ours is not None and theirs:
            ratio = f"{ours / theirs:.2f}x"
        else:
            ratio = "n/a"
        cells.append([label, t, fmt(ours), fmt(theirs) if not label.startswith("memcpy") else "",
                      ratio])
    widths = [max(len(r[c]) for r in cells + [header]) for c in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for r in cells:
        print(line(r))
    print("tokens/s and GB/s rows: ratio > 1 means pdserve is faster; step ms and memory rows: < 1"
          " means pdserve is faster / smaller. Each number is the best over the rounds. llama.cpp decodes one sequence in its Python API: batch 8 is n/a. Weight GB/s ="
          f" {weight_bytes / 1e6:.1f} MB of weights per step / step time for both."
          if weight_bytes else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
