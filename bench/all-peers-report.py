#!/usr/bin/env python3
"""bench/all-peers-report.py: the tables, the JSON and the chart of
bench/all-peers.sh (which runs the systems and calls this).

`report` (standard library only) reads the per-round synod-bench results and
the memory rows the script collected, prints the raw rows, the medians per op
and system, the ratios of Synod (each protocol) against the best peer, and the
memory / restart / disk table, and writes all of it as one JSON document.
`chart` (needs matplotlib: the script runs it from its virtualenv) draws that
JSON as a PNG bar chart.
"""

import argparse
import json
import statistics
import sys

SYNODS = ("synod-grpc", "synod-zookeeper")
PEERS = ("zookeeper", "etcd")


def median_of(rows, system, op, key):
    vals = [r[key] for s, _, r in rows if s == system and r["op"] == op]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, pattern):
    return pattern % v if v is not None else "-"


def report(args):
    rows = []
    with open(args.results) as f:
        for line in f:
            system, rnd, js = line.rstrip("\n").split("\t", 2)
            rows.append((system, int(rnd), json.loads(js)))
    memory = []
    with open(args.memory) as f:
        memory = [json.loads(line) for line in f if line.strip()]
    ops = args.ops.split()
    systems = args.systems.split()

    print()
    print("raw results, per round:")
    print("%5s  %-15s  %-16s  %9s  %8s  %8s  %8s  %9s  %6s" % (
        "round", "system", "op", "ops/s", "p50 ms", "p99 ms", "p999 ms", "requests", "errors"))
    for system, rnd, r in rows:
        print("%5d  %-15s  %-16s  %9.0f  %8.2f  %8.2f  %8.2f  %9d  %6d" % (
            rnd, system, r["op"], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"],
            r["requests"], r["errors"]))

    medians = {}
    for op in ops:
        medians[op] = {}
        for system in systems:
            medians[op][system] = {
                "ops_per_sec": median_of(rows, system, op, "ops_per_sec"),
                "p99_ms": median_of(rows, system, op, "p99_ms"),
                "rounds": sum(1 for s, _, r in rows if s == system and r["op"] == op),
            }

    print()
    print("medians over the rounds (ops/s, p99 ms):")
    print("%-16s" % "op" + "".join("  %15s %9s" % (s, "p99") for s in systems))
    for op in ops:
        cells = ""
        for s in systems:
            m = medians[op][s]
            cells += "  %15s %9s" % (fmt(m["ops_per_sec"], "%.0f"), fmt(m["p99_ms"], "%.2f"))
        print("%-16s%s" % (op, cells))

    # The best peer per op: by throughput for the ops ratio, by p99 for the
    # p99 ratio (they can differ).
    ratios = {}
    peers = [p for p in PEERS if p in systems]
    synods = [s for s in SYNODS if s in systems]
    if peers and synods:
        print()
        print("Synod against the best peer (ops ratio = synod / best peer's ops/s, "
              "p99 ratio = synod / lowest peer p99; > 1x ops and < 1x p99 favour Synod):")
        print("%-16s  %-15s  %10s  %-9s  %11s  %9s  %-9s  %10s  %9s" % (
            "op", "synod", "ops/s", "best peer", "peer ops/s", "ops ratio", "p99 peer",
            "peer p99", "p99 ratio"))
    for op in ops:
        with_ops = [p for p in peers if medians[op][p]["ops_per_sec"] is not None]
        with_p99 = [p for p in peers if medians[op][p]["p99_ms"] is not None]
        best_ops = max(with_ops, key=lambda p: medians[op][p]["ops_per_sec"], default=None)
        best_p99 = min(with_p99, key=lambda p: medians[op][p]["p99_ms"], default=None)
        ratios[op] = {}
        for s in synods:
            so, sp = medians[op][s]["ops_per_sec"], medians[op][s]["p99_ms"]
            po = medians[op][best_ops]["ops_per_sec"] if best_ops else None
            pp = medians[op][best_p99]["p99_ms"] if best_p99 else None
            ratios[op][s] = {
                "best_peer_by_ops": best_ops, "ops_ratio": ratio(so, po),
                "best_peer_by_p99": best_p99, "p99_ratio": ratio(sp, pp),
            }
            print("%-16s  %-15s  %10s  %-9s  %11s  %9s  %-9s  %10s  %9s" % (
                op, s, fmt(so, "%.0f"), best_ops or "-", fmt(po, "%.0f"),
                fmt(ratio(so, po), "%.2fx"), best_p99 or "-", fmt(pp, "%.2f"),
                fmt(ratio(sp, pp), "%.2fx")))

    if memory:
        print()
        print("memory / restart / disk (one member of each system):")
        print("%-10s  %9s  %10s  %10s  %10s  %9s  %11s  %10s  %11s" % (
            "system", "keys", "load ops/s", "RSS MiB", "heap MiB", "disk MiB", "restart s",
            "keys after", "RSS2 MiB"))
        for r in memory:
            heap = r["live_heap_kb"]
            print("%-10s  %9d  %10.0f  %10.0f  %10s  %9.0f  %11.2f  %10d  %11.0f" % (
                r["system"], r["keys_loaded"], r["load_ops_per_sec"], r["rss_after_load_kb"] / 1024,
                fmt(heap / 1024 if heap is not None else None, "%.0f"), r["disk_kb"] / 1024,
                r["restart_to_ready_ms"] / 1000, r["keys_after_restart"],
                r["rss_after_restart_kb"] / 1024))
        print("(RSS: VmRSS after the load; heap: ZooKeeper's live heap after a full GC;"
              " disk: du -s of the data directory after SIGKILL; restart: start to ready;"
              " keys after: what the restarted member reports, its own nodes included;"
              " RSS2: VmRSS once ready after the restart)")

    errors = sum(r["errors"] for _, _, r in rows)
    if errors:
        print()
        print("WARNING: %d requests failed across the runs (see the errors column)" % errors)

    settings = dict(s.split("=", 1) for s in args.setting)
    doc = {
        "settings": settings,
        "ops": ops,
        "systems": systems,
        "rounds": [{"system": s, "round": rnd, **r} for s, rnd, r in rows],
        "medians": medians,
        "ratios_vs_best_peer": ratios,
        "memory": memory,
        "errors": errors,
    }
    with open(args.json_out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


def chart(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.json) as f:
        doc = json.load(f)
    ops, systems, medians = doc["ops"], doc["systems"], doc["medians"]
    settings = doc["settings"]
    colors = {"synod-grpc": "#1f77b4", "synod-zookeeper": "#6baed6",
              "zookeeper": "#d62728", "etcd": "#2ca02c", "synod": "#1f77b4"}
    memory = doc["memory"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    width = 0.8 / max(len(systems), 1)

    def grouped(ax, key, title, ylabel, log=False):
        for i, s in enumerate(systems):
            vals = [medians[op][s][key] or 0 for op in ops]
            xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(ops))]
            bars = ax.bar(xs, vals, width, label=s, color=colors.get(s))
            for b, v in zip(bars, vals):
                if v:
                    label = "%.0f" % v if v >= 100 else "%.1f" % v
                    ax.annotate(label, (b.get_x() + b.get_width() / 2, v), ha="center",
                                va="bottom", fontsize=6, rotation=90, xytext=(0, 2),
                                textcoords="offset points")
        ax.set_xticks(range(len(ops)))
        ax.set_xticklabels(ops)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.2)
        ax.legend(fontsize=8)

    grouped(axes[0][0], "ops_per_sec", "throughput (median ops/s, higher is better)", "ops/s")
    grouped(axes[0][1], "p99_ms", "p99 latency (median ms, lower is better)", "ms", log=True)

    names = [r["system"] for r in memory]
    mem_ax, rst_ax = axes[1]
    if memory:
        metrics = [("RSS after load", [r["rss_after_load_kb"] / 1024 for r in memory]),
                   ("disk (du -s)", [r["disk_kb"] / 1024 for r in memory])]
        if any(r["live_heap_kb"] is not None for r in memory):
            metrics.insert(1, ("live heap (JVM)", [
                (r["live_heap_kb"] or 0) / 1024 for r in memory]))
        w = 0.8 / len(metrics)
        for i, (label, vals) in enumerate(metrics):
            xs = [j + (i - (len(metrics) - 1) / 2) * w for j in range(len(names))]
            bars = mem_ax.bar(xs, vals, w, label=label)
            for b, v in zip(bars, vals):
                if v:
                    mem_ax.annotate("%.0f" % v, (b.get_x() + b.get_width() / 2, v),
                                    ha="center", va="bottom", fontsize=7)
        mem_ax.set_xticks(range(len(names)))
        mem_ax.set_xticklabels(names)
        mem_ax.set_ylabel("MiB")
        mem_ax.legend(fontsize=8)
        keys = max(r["keys_loaded"] for r in memory)
        mem_ax.set_title("memory and disk at %s keys (one member each)" % format(keys, ","))
        secs = [r["restart_to_ready_ms"] / 1000 for r in memory]
        bars = rst_ax.bar(names, secs, color=[colors.get(n, "grey") for n in names])
        for b, v in zip(bars, secs):
            rst_ax.annotate("%.2f s" % v, (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
        rst_ax.set_ylabel("seconds")
        rst_ax.set_title("restart after SIGKILL until ready (%s keys)" % format(keys, ","))
        rst_ax.margins(y=0.2)
    else:
        for ax in (mem_ax, rst_ax):
            ax.axis("off")
    fig.suptitle(
        "Synod (commit %s) vs Apache ZooKeeper %s vs etcd %s: 3 members each on 127.0.0.1, fsync on,\n"
        "%s sessions x %s outstanding, %s B values, median of %s rounds of %s s, %s cores, %s"
        % (settings.get("synod_commit", "?"), settings.get("zookeeper_version", "?"),
           settings.get("etcd_version", "?"), settings.get("sessions", "?"),
           settings.get("depth", "?"), settings.get("value_size", "?"),
           settings.get("rounds", "?"), settings.get("duration_s", "?"),
           settings.get("cores", "?"), settings.get("started", "?")),
        fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--memory", required=True)
    r.add_argument("--ops", required=True)
    r.add_argument("--systems", required=True)
    r.add_argument("--json-out", required=True)
    r.add_argument("--setting", action="append", default=[])
    c = sub.add_parser("chart")
    c.add_argument("--json", required=True)
    c.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "report":
        report(args)
    else:
        chart(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
