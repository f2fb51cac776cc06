#!/usr/bin/env python3
"""Turns bench/compare-redis.sh's JSON lines into the compare-redis section of
docs/BENCHMARKS.md: medians of the runs per scenario and system, and the
ratio herald / Nchan. Only the text between the compare-redis markers is
replaced (the markers are appended at the end of the file when absent).

usage: summarize_redis.py RESULTS.jsonl MACHINE.txt COMMANDS.txt [--print] BENCHMARKS.md
"""

import datetime
import sys

from summarize import fmt, median, ratio, run

BEGIN = "<!-- compare-redis:begin -->"
END = "<!-- compare-redis:end -->"

TITLES = {
    "publish": "Publish throughput: 8 concurrent publishers on node A, 256 B",
    "ws": "Cross-node WebSocket fan-out: 200 subscribers on node B, 1 channel, 100 msg/s published on node A, 256 B",
    "sse": "Cross-node SSE fan-out: 200 subscribers on node B, 1 channel, 100 msg/s published on node A, 256 B",
}
ORDER = ["publish", "ws", "sse"]


def lat(row, key):
    p = row["report"].get("latency_us")
    return p[key] / 1000.0 if p else None


def per_million(row, key):
    n = row["report"]["delivered"]
    return row["cpu"][key] * 1e6 / n if n else None


def total_per_million(row):
    n = row["report"]["delivered"]
    return (row["cpu"]["server_s"] + row["cpu"]["redis_s"]) * 1e6 / n if n else None


def node_b_share(row):
    cpu = row["cpu"]
    return cpu["node_b_s"] / cpu["server_s"] if cpu.get("server_s") else None


def generator(row):
    r = row["report"]
    return r.get("client_cpu_s", 0) / r["elapsed_s"] if r["elapsed_s"] else None


# metric name, getter (of a results row), format, ratio shown
PUBLISH = [
    ("publishes/s", lambda w: w["report"]["throughput"], "{:,.0f}", True),
    ("latency p50 (ms)", lambda w: lat(w, "p50"), "{:,.2f}", True),
    ("latency p99 (ms)", lambda w: lat(w, "p99"), "{:,.2f}", True),
    ("latency p99.9 (ms)", lambda w: lat(w, "p999"), "{:,.2f}", True),
    ("server CPU-s per million publishes (both nodes)", lambda w: per_million(w, "server_s"), "{:.1f}", True),
    ("redis-server CPU-s per million publishes", lambda w: per_million(w, "redis_s"), "{:.1f}", True),
    ("both nodes + Redis, CPU-s per million publishes", total_per_million, "{:.1f}", True),
    ("node B's share of the nodes' CPU", node_b_share, "{:.0%}", False),
    ("publishes acknowledged", lambda w: w["report"]["delivered"], "{:,.0f}", False),
    ("generator CPU / elapsed", generator, "{:.0%}", False),
]
FANOUT = [
    ("deliveries/s", lambda w: w["report"]["throughput"], "{:,.0f}", True),
    ("latency p50 (ms)", lambda w: lat(w, "p50"), "{:,.1f}", True),
    ("latency p99 (ms)", lambda w: lat(w, "p99"), "{:,.1f}", True),
    ("latency p99.9 (ms)", lambda w: lat(w, "p999"), "{:,.1f}", True),
    ("server CPU-s per million deliveries (both nodes)", lambda w: per_million(w, "server_s"), "{:.2f}", True),
    ("redis-server CPU-s per million deliveries", lambda w: per_million(w, "redis_s"), "{:.2f}", True),
    ("both nodes + Redis, CPU-s per million deliveries", total_per_million, "{:.2f}", True),
    ("node B's share of the nodes' CPU", node_b_share, "{:.0%}", False),
    ("messages published", lambda w: w["report"]["messages"], "{:,.0f}", False),
    ("generator CPU / elapsed", generator, "{:.0%}", False),
]


def section(results, machine, commands):
    by = {}
    failures = {}
    for row in results:
        key = (row["case"], row["server"])
        if row["report"] is None:
            failures[key] = failures.get(key, 0) + 1
        else:
            by.setdefault(key, []).append(row)
    runs = max((len(v) for v in by.values()), default=0)

    def med(case, server, name):
        metrics = PUBLISH if case == "publish" else FANOUT
        get = next(g for (m, g, _f, _r) in metrics if m == name)
        return median([get(w) for w in by.get((case, server), [])])

    out = [BEGIN, "## The Redis engine and Nchan on Redis, side by side", ""]
    out.append(
        f"Written by `bench/compare-redis.sh` on {datetime.date.today().isoformat()}. "
        "Each system runs two nodes on one private `redis-server`: two `herald serve --redis` "
        "processes, or two one-worker nginx instances whose Nchan keeps its messages in that "
        "Redis (`nchan_redis_pass`, distributed mode); both keep 1,000 messages per channel for "
        "1 hour. Every run starts a fresh Redis and fresh nodes. Redis and the four node "
        "processes are pinned to core 0 (`taskset`), `herald bench` to core 1. Publishes go to "
        "node A; fan-out subscribers are on node B, so every delivery crosses Redis. Server CPU "
        "is utime + stime from `/proc` of both nodes (nginx: their workers) over the whole run, "
        "Redis's is counted apart. "
        f"Each figure is the median of {runs} runs, the two systems alternating which goes "
        "first; the last column is herald / Nchan (above 1 is better for throughput, below 1 "
        "better for latency and CPU). Lost, duplicated and reordered deliveries are summed over "
        "all runs. The machine is shared with other work, so wall-clock figures are noisy."
    )
    out += ["", "```", *machine.strip().splitlines(), "```", ""]

    # Issue 15's target: publishes/s at least 1.5x Nchan's, at no worse a
    # publish-to-delivery p99 (the cross-node WebSocket fan-out).
    pub_h, pub_n = med("publish", "herald", "publishes/s"), med("publish", "nchan", "publishes/s")
    p99_h, p99_n = med("ws", "herald", "latency p99 (ms)"), med("ws", "nchan", "latency p99 (ms)")
    if None not in (pub_h, pub_n, p99_h, p99_n):
        met = pub_h >= 1.5 * pub_n and p99_h <= p99_n
        out += [
            f"Issue 15's target, herald ≥ 1.5× Nchan-with-Redis publishes/s at ≤ its p99: "
            f"publishes/s {pub_h / pub_n:.2f}×, cross-node WebSocket publish-to-delivery p99 "
            f"{p99_h:,.1f} ms against {p99_n:,.1f} ms: **{'met' if met else 'not met'}**.",
            "",
        ]

    for case in ORDER:
        if not any(k[0] == case for k in list(by) + list(failures)):
            continue
        h_runs = by.get((case, "herald"), [])
        n_runs = by.get((case, "nchan"), [])
        out += [f"### {TITLES[case]}", ""]
        out += ["| metric | herald | Nchan | herald/Nchan |", "| --- | ---: | ---: | ---: |"]
        for name, get, f, show_ratio in PUBLISH if case == "publish" else FANOUT:
            h = median([get(w) for w in h_runs])
            n = median([get(w) for w in n_runs])
            out.append(f"| {name} | {fmt(f, h)} | {fmt(f, n)} | {ratio(h, n) if show_ratio else '–'} |")

        def faults(rows):
            if not rows:
                return "–"
            rs = [w["report"] for w in rows]
            return "{} / {} / {}".format(
                sum(r["lost"] for r in rs), sum(r["duplicated"] for r in rs), sum(r["reordered"] for r in rs)
            )

        def errors(rows):
            return str(sum(w["report"].get("errors", 0) for w in rows)) if rows else "–"

        if case != "publish":
            out.append(f"| lost / duplicated / reordered | {faults(h_runs)} | {faults(n_runs)} | |")
        out.append(f"| errors | {errors(h_runs)} | {errors(n_runs)} | |")
        fails = [f"{s}: {c} failed run(s)" for (k, s), c in failures.items() if k == case]
        out += [""] + ([f"Failures: {'; '.join(fails)}.", ""] if fails else [])

    out += [
        "### Commands",
        "",
        "`bench/compare-redis.sh` ran these (ports and PIDs filled in per run; the raw JSON lines, "
        "with the script's CPU counts, are in `docs/bench/redis-results.jsonl`):",
        "",
        "```",
        *commands.strip().splitlines(),
        "```",
        END,
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    run(sys.argv, section, BEGIN, END, "compare-redis")
