#!/usr/bin/env python3
"""Prints the one table of bench/serve_vs_llamacpp.sh from the --results JSON files that
bench/load/load_gen.py wrote, one per system: for each rate, each system's served requests, TTFT
and ITL p50/p99, TPOT p50, output tokens/s, tokens per SSE chunk, SLO attainment and goodput;
then each system's highest rate with >= 90% attainment. With --combined FILE it also writes every
system's results into one JSON file ({"systems": {NAME: results}, "machine": {...}}).

  bench/serve_compare_table.py pdserve=out/pdserve.json llama.cpp=out/llamacpp.json

Exit status: 0 when the table printed, 2 for bad usage, 1 when a results file cannot be read or
the files disagree on the load or the SLO.
"""
import argparse
import json
import math
import os
import sys

# Keys of the results JSON that define the load and the SLO: equal in every file, or the table
# would compare unlike runs.
LOAD_KEYS = ("prompt_words", "output_tokens", "requests_per_rate", "duration_s_per_rate", "seed",
             "ttft_slo_ms", "tpot_slo_ms")


def system_file(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got '{text}'")
    return name, path


def fmt(value, digits):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def table_rows(systems):
    """One row of cells per (rate, system), rates ascending, systems in the order given."""
    by_rate = {}
    for name, doc in systems.items():
        for r in doc["rates"]:
            by_rate.setdefault(r["rate"], {})[name] = r
    rows = []
    for rate in sorted(by_rate):
        for name in systems:
            r = by_rate[rate].get(name)
            if r is None:
                continue
            lost = r["n"] - r["served"]
            rows.append([
                f"{rate:g}", name, f"{r['served']}/{r['n']}" + (f" ({r['refused']} refused)"
                                                                  if r["refused"] else ""),
                fmt(r["ttft_ms"][0], 1), fmt(r["ttft_ms"][2], 1),
                fmt(r["itl_ms"][0], 1), fmt(r["itl_ms"][2], 1), fmt(r["tpot_ms"][0], 1),
                fmt(r["tok_s"], 1), fmt(r["tokens_per_chunk"], 2),
                fmt(r["attainment"] * 100 if r["attainment"] is not None else None, 1) + "%",
                fmt(r["goodput_req_s"], 2)] + (["*"] if lost else [""]))
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("systems", metavar="NAME=FILE", nargs="+", type=system_file)
    parser.add_argument("--combined", metavar="FILE", help="write every system's results here")
    args = parser.parse_args(argv[1:])
    systems = {}
    for name, path in args.systems:
        try:
            with open(path) as f:
                systems[name] = json.load(f)
        except (OSError, ValueError) as e:
            print(f"serve_compare_table: cannot read {path}: {e}", file=sys.stderr)
            return 1
    first = next(iter(systems.values()))
    for name, doc in systems.items():
        differ = [k for k in LOAD_KEYS if doc.get(k) != first.get(k)]
        if differ:
            print(f"serve_compare_table: {name}'s load differs in {', '.join(differ)}",
                  file=sys.stderr)
            return 1

    sizing = (f"{first['duration_s_per_rate']:g} s of Poisson arrivals per rate"
              if first["duration_s_per_rate"] else f"{first['requests_per_rate']} requests per rate")
    print(f"# {sizing}; prompt {first['prompt_words'][0]}-{first['prompt_words'][1]} words, "
          f"output {first['output_tokens'][0]}-{first['output_tokens'][1]} tokens (ignore_eos, "
          f"greedy); SLO: TTFT <= {first['ttft_slo_ms']:g} ms and mean ITL (TPOT) <= "
          f"{first['tpot_slo_ms']:g} ms; latencies in ms; goodput = requests/s meeting the SLO")
    header = ["rate/s", "system", "served", "TTFT p50", "p99", "ITL p50", "p99", "TPOT p50",
              "tok/s", "tok/chunk", "SLO ok", "goodput", ""]
    rows = table_rows(systems)
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i != 1 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    print(line(header))
    print("-" * len(line(header)))
    for r in rows:
        print(line(r))
    if any(r[-1] for r in rows):
        print("* some requests were not served (refused, failed or timed out: see the run's log);"
              " they count against the SLO")
    for name, doc in systems.items():
        good = [r["rate"] for r in doc["rates"] if (r["attainment"] or 0) >= 0.9]
        print(f"{name}: highest rate with >= 90% SLO attainment: "
              + (f"{max(good):g} req/s" if good else "none"))
    print("ITL = gap between SSE events with text at the client (tok/chunk tokens each); TPOT = "
          "(end - first token) / (tokens - 1), whatever the chunking")
    if args.combined:
        machine = {"cpus": os.cpu_count(), "loadavg": open("/proc/loadavg").read().split()[:3]}
        with open(args.combined, "w") as f:
            json.dump({"systems": systems, "machine": machine}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
