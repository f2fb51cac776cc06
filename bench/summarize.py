#!/usr/bin/env python3
"""Turns bench/compare.sh's JSON lines into the compare section of
docs/BENCHMARKS.md: medians of the runs per scenario and server, and the
ratio herald / Nchan. Only the text between the compare markers is replaced;
every other section of the file is kept as it is.

usage: summarize.py RESULTS.jsonl MACHINE.txt COMMANDS.txt [--print] BENCHMARKS.md
"""

import datetime
import json
import statistics
import sys

BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"

TITLES = {
    "ws": "WebSocket fan-out: 1 channel × 1,000 subscribers, 500 msg/s, 256 B",
    "sse": "SSE fan-out: 1 channel × 1,000 subscribers, 500 msg/s, 256 B",
    "ws_100": "WebSocket fan-out at everyday load: 1 channel × 1,000 subscribers, 100 msg/s, 256 B",
    "sse_100": "SSE fan-out at everyday load: 1 channel × 1,000 subscribers, 100 msg/s, 256 B",
    "ws_50": "WebSocket fan-out within capacity: 1 channel × 1,000 subscribers, 50 msg/s, 256 B",
    "poll": "Long poll: 1 channel × 200 subscribers, 100 msg/s, 256 B",
    "channels": "Many channels: 100 channels × 10 WebSocket subscribers, 2,000 msg/s, 256 B",
    "saturation": "Saturation: 1 channel × 1,000 WebSocket subscribers, as fast as possible (publisher at most 500 messages ahead of the slowest subscriber)",
    "saturation_10": "Saturation with little queueing: the same, publisher at most 10 messages ahead of the slowest subscriber",
    "saturation_1": "Saturation without queueing: the same, publisher at most 1 message ahead of the slowest subscriber",
    "publish": "Publish throughput: 8 concurrent publishers, 256 B",
    "publish_batch": "Batch publish: 8 concurrent publishers, `POST /pub` batches of 100 × 256 B (Nchan, which has no batch publish: single publishes)",
    "idle_ws": "10,000 idle WebSocket connections",
    "idle_sse": "10,000 idle SSE connections",
    "echo": "Seed echo: /demo/ws round trips, 1 connection, 64 B (herald only; nginx has no echo)",
}
ORDER = ["ws", "sse", "ws_100", "sse_100", "ws_50", "poll", "channels", "saturation", "saturation_10", "saturation_1", "publish", "publish_batch", "idle_ws", "idle_sse", "echo"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def lat(r, key):
    p = r.get("latency_us")
    return p[key] / 1000.0 if p else None


def server(r, key):
    s = r.get("server")
    return s[key] if s else None


def kernel_per_million(r):
    """The kernel's part of the server's CPU per million (system time)."""
    s = r.get("server")
    if not s or not s.get("cpu_s") or "cpu_system_s" not in s:
        return None
    return s["cpu_s_per_million"] * s["cpu_system_s"] / s["cpu_s"]


def kernel_share(r):
    s = r.get("server")
    if not s or not s.get("cpu_s") or "cpu_system_s" not in s:
        return None
    return s["cpu_system_s"] / s["cpu_s"]


# metric name, getter, format, better ("low" or "high")
FANOUT = [
    ("deliveries/s", lambda r: r["throughput"], "{:,.0f}", "high"),
    ("latency p50 (ms)", lambda r: lat(r, "p50"), "{:,.1f}", "low"),
    ("latency p99 (ms)", lambda r: lat(r, "p99"), "{:,.1f}", "low"),
    ("latency p99.9 (ms)", lambda r: lat(r, "p999"), "{:,.1f}", "low"),
    ("server CPU-s per million deliveries", lambda r: server(r, "cpu_s_per_million"), "{:.2f}", "low"),
    ("of it in the kernel (system time)", kernel_per_million, "{:.2f}", "low"),
    ("kernel share of the server's CPU", kernel_share, "{:.0%}", None),
    ("messages published", lambda r: r["messages"], "{:,.0f}", "high"),
    ("generator CPU / elapsed", lambda r: r.get("client_cpu_s", 0) / r["elapsed_s"] if r["elapsed_s"] else None, "{:.0%}", None),
]
PUBLISH = [
    ("publishes/s", lambda r: r["throughput"], "{:,.0f}", "high"),
    ("latency p50 (ms)", lambda r: lat(r, "p50"), "{:,.2f}", "low"),
    ("latency p99 (ms)", lambda r: lat(r, "p99"), "{:,.2f}", "low"),
    ("server CPU-s per million publishes", lambda r: server(r, "cpu_s_per_million"), "{:.1f}", "low"),
    ("of it in the kernel (system time)", kernel_per_million, "{:.1f}", "low"),
    ("kernel share of the server's CPU", kernel_share, "{:.0%}", None),
]
IDLE = [
    ("server RSS per connection (KiB)", lambda r: (server(r, "rss_per_connection_bytes") or 0) / 1024, "{:.1f}", "low"),
    ("connections opened", lambda r: r["delivered"], "{:,.0f}", "high"),
    ("connections/s while opening", lambda r: r["throughput"], "{:,.0f}", "high"),
]
ECHO = [
    ("round trips/s", lambda r: r["throughput"], "{:,.0f}", "high"),
    ("latency p50 (ms)", lambda r: lat(r, "p50"), "{:.3f}", "low"),
    ("latency p99 (ms)", lambda r: lat(r, "p99"), "{:.3f}", "low"),
    ("server CPU-s per million round trips", lambda r: server(r, "cpu_s_per_million"), "{:.1f}", "low"),
]


def metrics_for(case):
    if case.startswith("publish"):
        return PUBLISH
    if case.startswith("idle"):
        return IDLE
    if case == "echo":
        return ECHO
    return FANOUT


def fmt(fmt_, value):
    return "–" if value is None else fmt_.format(value)


def ratio(h, n):
    if h is None or n is None or n == 0:
        return "–"
    return f"{h / n:.2f}"


def section(results, machine, commands):
    by = {}
    failures = {}
    for row in results:
        key = (row["case"], row["server"])
        if row["report"] is None:
            failures[key] = failures.get(key, 0) + 1
        else:
            by.setdefault(key, []).append(row["report"])
    runs = max((len(v) for v in by.values()), default=0)
    out = [BEGIN, "## herald and Nchan side by side", ""]
    out.append(
        f"Written by `bench/compare.sh` on {datetime.date.today().isoformat()}. Each "
        f"figure is the median of {runs} runs; the last column is herald / Nchan "
        "(above 1 is better for throughput, below 1 better for latency, CPU and "
        "memory). Lost, duplicated and reordered deliveries are summed over all "
        "runs. Latency runs from the moment each message was due to be published "
        "(for rate-limited runs; from when it was sent at full speed) to its "
        "arrival, so a server that is slow to accept publishes is not flattered by "
        "it (no coordinated omission). Both servers ran on core 0 (`taskset`, one nginx worker, one tokio "
        "worker thread), `herald bench` on core 1. The machine is shared with "
        "other work, so wall-clock figures (deliveries/s, latency) are noisy; "
        "CPU-seconds per million deliveries and memory per connection are "
        "the steadier comparison. \"Of it in the kernel\" is the server's system "
        "time: system calls and, on loopback, the receiving side's network stack, "
        "the same work for both servers at the same deliveries; the \"floor\" row "
        "is the lowest CPU ratio herald could reach if its own code cost nothing."
    )
    out += ["", "```", *machine.strip().splitlines(), "```", ""]
    headline = ["| scenario | metric | herald | Nchan | herald/Nchan |", "| --- | --- | ---: | ---: | ---: |"]
    details = []
    for case in ORDER:
        if not any(k[0] == case for k in list(by) + list(failures)):
            continue
        h_runs = by.get((case, "herald"), [])
        n_runs = by.get((case, "nchan"), [])
        details += [f"### {TITLES.get(case, case)}", ""]
        details += ["| metric | herald | Nchan | herald/Nchan |", "| --- | ---: | ---: | ---: |"]
        for i, (name, get, f, _better) in enumerate(metrics_for(case)):
            h = median([get(r) for r in h_runs])
            n = median([get(r) for r in n_runs])
            row = f"| {name} | {fmt(f, h)} | {fmt(f, n)} | {ratio(h, n) if _better else '–'} |"
            details.append(row)
            if i == 0 or name.startswith("server CPU") or (case in ("ws", "sse", "ws_100", "sse_100", "ws_50", "channels", "poll", "saturation", "saturation_10", "saturation_1", "publish") and "p99 " in name):
                headline.append(f"| {case} | {name} | {fmt(f, h)} | {fmt(f, n)} | {ratio(h, n) if _better else '–'} |")
        h_kernel = median([kernel_per_million(r) for r in h_runs])
        n_cpu = median([server(r, "cpu_s_per_million") for r in n_runs])
        if h_kernel is not None and n_cpu:
            floor = f"| floor: herald's kernel CPU alone / Nchan's CPU | {h_kernel:.2f} | {n_cpu:.2f} | {h_kernel / n_cpu:.2f} |"
            details.append(floor)
            if case in ("ws_100", "sse_100", "ws_50", "poll", "channels", "publish"):
                headline.append(floor.replace("| floor", f"| {case} | floor", 1))
        if metrics_for(case) is FANOUT or case == "echo":
            def faults(rs):
                return "{} / {} / {}".format(
                    sum(r["lost"] for r in rs), sum(r["duplicated"] for r in rs), sum(r["reordered"] for r in rs)
                )
            details.append(f"| lost / duplicated / reordered | {faults(h_runs)} | {faults(n_runs) if n_runs else '–'} | |")
        fails = [f"{s}: {c} failed run(s)" for (k, s), c in failures.items() if k == case]
        details += [""] + ([f"Failures: {'; '.join(fails)}.", ""] if fails else [])
    out += ["### Headline", "", *headline, "", *details]
    out += [
        "### Plots",
        "",
        "WebSocket fan-out at 500 msg/s against the number of subscribers (one run per point, "
        "from `docs/bench/sweep.jsonl`): where deliveries/s stops growing, the server is saturated "
        "and latency becomes queueing.",
        "",
        "![deliveries/s against subscribers](bench/fanout-throughput.svg)",
        "",
        "![latency against subscribers](bench/fanout-latency.svg)",
        "",
        "### Commands",
        "",
        "`bench/compare.sh` ran these (PORT and PID filled in per server; the raw JSON lines are in "
        "`docs/bench/results.jsonl`):",
        "",
        "```",
        *sorted(commands.strip().splitlines()),
        "```",
        END,
    ]
    return "\n".join(out) + "\n"


def run(argv, make_section, begin, end, name):
    """Reads the results, machine and commands files named in `argv`, and
    prints the section (`--print`) or writes it between `begin` and `end`
    in the document (appended when the markers are missing)."""
    printing = "--print" in argv
    argv = [a for a in argv if a != "--print"]
    results_path, machine_path, commands_path, doc_path = argv[1:5]
    with open(results_path) as f:
        results = [json.loads(line) for line in f if line.strip()]
    with open(machine_path) as f:
        machine = f.read()
    with open(commands_path) as f:
        commands = f.read()
    text = make_section(results, machine, commands)
    if printing:
        sys.stdout.write(text)
        return
    try:
        with open(doc_path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Benchmarks\n"
    if begin in doc and end in doc:
        before = doc[: doc.index(begin)]
        after = doc[doc.index(end) + len(end):]
        doc = before + text.rstrip("\n") + after
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(doc_path, "w") as f:
        f.write(doc)
    print(f"wrote the {name} section of {doc_path}", file=sys.stderr)


if __name__ == "__main__":
    run(sys.argv, section, BEGIN, END, "compare")
