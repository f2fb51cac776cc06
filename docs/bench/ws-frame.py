#!/usr/bin/env python3
"""Medians and after/before ratios of docs/bench/ws-frame.sh's JSON lines.

    docs/bench/ws-frame.py [docs/bench/ws-frame.jsonl]
"""
import json
import statistics
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "docs/bench/ws-frame.jsonl"
runs = defaultdict(list)
for line in open(path):
    row = json.loads(line)
    runs[(row["case"], row["binary"])].append(row["report"])


def metrics(r):
    server = r.get("server") or {}
    lat = r.get("latency_us") or {}
    out = {
        "throughput": r["throughput"],
        "cpu_s_per_million": server.get("cpu_s_per_million"),
        "rss_per_connection_kib": (server.get("rss_per_connection_bytes") or 0) / 1024,
        "rss_growth_mib": (server.get("rss_after_kib", 0) - server.get("rss_connected_kib", 0)) / 1024,
        "p50_ms": lat.get("p50", 0) / 1000,
        "p99_ms": lat.get("p99", 0) / 1000,
        "lost+dup+reord": r["lost"] + r["duplicated"] + r["reordered"],
        "errors": r["errors"],
    }
    return out


cases = []
for case, _ in runs:
    if case not in cases:
        cases.append(case)
for case in cases:
    print(f"## {case}")
    before = [metrics(r) for r in runs.get((case, "before"), [])]
    after = [metrics(r) for r in runs.get((case, "after"), [])]
    print(f"runs: before {len(before)}, after {len(after)}")
    print("| metric | before | after | after / before | runs before | runs after |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for key in before[0] if before else []:
        b = [m[key] for m in before if m[key] is not None]
        a = [m[key] for m in after if m[key] is not None]
        if not b or not a:
            continue
        mb, ma = statistics.median(b), statistics.median(a)
        ratio = f"{ma / mb:.2f}" if mb else "–"
        fmt = lambda v: f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
        print(f"| {key} | {fmt(mb)} | {fmt(ma)} | {ratio} | {', '.join(fmt(v) for v in b)} | {', '.join(fmt(v) for v in a)} |")
    print()
