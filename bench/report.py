"""The suite's output: results.json, results.md (the tables the README quotes) and scale.png."""

import json
from pathlib import Path

# (figure, key in target_figures(), "min" or "max", the bound)
TARGETS = (
    ("highscorelist throughput / bare ceiling, 16 connections", "hsl_ratio", "min", 0.9),
    ("login throughput / bare ceiling, 16 connections", "login_ratio", "min", 0.9),
    ("score POST throughput / bare ceiling, 16 connections", "score_ratio", "min", 0.8),
    ("in-process highscorelist cost / raw sqlite3 floor", "inprocess_ratio", "max", 2),
    ("highscorelist cost at 1M players / at 1k", "scale_ratio", "max", 1.2),
    ("memory per stored best score (bytes)", "bytes_per_row", "max", 80),
    ("durable-mode score throughput / in-memory, 16 connections", "durable_ratio", "min", 0.7),
)


def target_figures(results: dict) -> dict[str, float]:
    """The figure behind each target, from the results."""
    rows = {(row["endpoint"], row["connections"]): row for row in results["http"]["rows"]}
    inprocess = results["inprocess"]
    scale = {entry["players"]: entry for entry in results["scale"]}
    smallest, largest = min(scale), max(scale)
    return {
        # The bare ceiling: the do-nothing app that answers nothing, the strictest baseline.
        "hsl_ratio": rows["highscorelist", 16]["memory_to_bare"],
        "login_ratio": rows["login", 16]["memory_to_bare"],
        "score_ratio": rows["score", 16]["memory_to_bare"],
        "inprocess_ratio": inprocess["app_us"]["highscorelist"]
        / inprocess["floor_us"]["highscorelist"],
        "scale_ratio": scale[largest]["highscorelist_us"] / scale[smallest]["highscorelist_us"],
        "bytes_per_row": scale[largest]["bytes_per_row"],
        "durable_ratio": rows["score", 16]["durable_to_memory"],
    }


def write(results: dict, directory: Path) -> None:
    """Write results.json, results.md and (with matplotlib) scale.png into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart = _chart(results["scale"], directory / "scale.png")
    (directory / "results.md").write_text(markdown(results, chart))


def markdown(results: dict, chart: bool) -> str:
    """The results as Markdown tables."""
    meta = results["meta"]
    http = results["http"]
    lines = [
        "# scoresvc benchmark results",
        "",
        f"{meta['date']} on {meta['machine']}; Python {meta['python']}, SQLite {meta['sqlite']},"
        f" waitress {meta['waitress']}, {meta['wrk']}.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "## Targets",
        "",
        "| figure | target | measured | |",
        "|---|---|---|---|",
    ]
    figures = target_figures(results)
    for label, key, kind, bound in TARGETS:
        value = figures[key]
        met = value >= bound if kind == "min" else value <= bound
        shown = f"{value:.0f}" if key == "bytes_per_row" else f"{value:.2f}"
        target = f"{'≥' if kind == 'min' else '≤'} {bound:g}"
        lines.append(f"| {label} | {target} | {shown} | {'met' if met else 'missed'} |")
    lines += [
        "",
        "## Throughput and latency over HTTP",
        "",
        f"waitress with {http['threads']} threads serving a do-nothing app, and scoresvc in "
        f"memory and on a WAL file (durable), driven by wrk ({http['wrk_threads']} thread, "
        f"keep-alive) for {http['seconds']:g} s per run, the four servers alternating in each of "
        f"{http['rounds']} rounds; medians of the rounds, and each ratio the median of its "
        "per-round ratios. The **ceiling** answers a GET with "
        f"{http['ceiling_get_body_bytes']} bytes (scoresvc's answers: 80 for a key, about 170 "
        "for a list) and a POST with nothing (as scoresvc answers a score); the **bare** "
        "ceiling answers everything with an empty body. The targets are taken against the bare "
        "ceiling. Stock waitress sends a response's headers and body in two socket writes, so "
        "a body costs the ceiling a system call and a TCP segment per request (and at 64 "
        "connections much of its throughput); scoresvc's channel sends an answer in one write, "
        "so it can pass the ceiling, and the bare ceiling is the fair baseline. "
        "Every server's stderr goes to a file: for scoresvc, one access line per request plus "
        "waitress's warnings; for the ceilings, waitress's warnings (under load, mostly "
        f"'Task queue depth'). Score POSTs rotate through {http['players']} users' keys with "
        "rising scores on a fresh level, so every one is an upsert that improves a best; the "
        f"high score list's level holds {http['players']} players.",
        "",
        "| endpoint | conns | bare req/s | ceiling req/s | scoresvc req/s | scoresvc / bare "
        "| scoresvc / ceiling | durable req/s | durable / memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in http["rows"]:
        bare, ceiling, memory, durable = (
            row["servers"][name] for name in ("bare", "ceiling", "memory", "durable")
        )
        lines.append(
            f"| {row['endpoint']} | {row['connections']} | {bare['rate']:,.0f} "
            f"| {ceiling['rate']:,.0f} | {memory['rate']:,.0f} "
            f"| **{row['memory_to_bare']:.2f}** | {row['memory_to_ceiling']:.2f} "
            f"| {durable['rate']:,.0f} | {row['durable_to_memory']:.2f} |"
        )
    lines += [
        "",
        "Latency (wrk's p50 / p99, ms) and the server process's CPU time (user + system) per "
        "request, µs:",
        "",
        "| endpoint | conns | bare | ceiling | scoresvc | durable | CPU bare / ceiling / "
        "scoresvc / durable |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in http["rows"]:
        servers = [row["servers"][name] for name in ("bare", "ceiling", "memory", "durable")]
        latencies = " | ".join(f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" for s in servers)
        cpu = " / ".join(_cpu(s) for s in servers)
        lines.append(f"| {row['endpoint']} | {row['connections']} | {latencies} | {cpu} |")
    errors = sum(
        summary["errors"]
        for row in http["rows"]
        for name, summary in row["servers"].items()
        if name in ("memory", "durable")
    )
    lines += ["", f"Non-200 answers or socket errors from scoresvc in all runs: {errors}."]

    inprocess = results["inprocess"]
    lines += [
        "",
        "## In-process cost",
        "",
        "The WSGI app called directly (no HTTP), access line included, beside raw `sqlite3` "
        "running the same SQL on the same kind of database (a shared-cache memory database, "
        f"{inprocess['players']} players on the level).",
        "",
        "| endpoint | scoresvc µs/request | raw sqlite3 µs | ratio |",
        "|---|---|---|---|",
    ]
    for endpoint, cost in inprocess["app_us"].items():
        floor = inprocess["floor_us"].get(endpoint)
        if floor:
            lines.append(f"| {endpoint} | {cost:.1f} | {floor:.1f} | {cost / floor:.2f} |")
        else:
            lines.append(f"| {endpoint} | {cost:.1f} | (no SQL) | |")

    lines += [
        "",
        "## Scale",
        "",
        "One level holding N players (filled in bulk), in-process µs per call: the high score "
        "list through the app (as served: cached until a write changes it), the repository's "
        "top-15 query with no cache (what the first read after a changing write costs), the "
        "same query on the raw driver, and a score POST that improves a best. Memory: RSS "
        "growth of a fresh process over the fill, per row.",
        "",
        "| players | highscorelist µs | top-15 query, uncached µs | raw query µs "
        "| score POST µs | bytes per row |",
        "|---|---|---|---|---|---|",
    ]
    for entry in results["scale"]:
        lines.append(
            f"| {entry['players']:,} | {entry['highscorelist_us']:.1f} "
            f"| {entry['top_scores_query_us']:.1f} | {entry['raw_query_us']:.1f} "
            f"| {entry['score_us']:.1f} | {entry['bytes_per_row']:.0f} |"
        )
    if chart:
        lines += ["", "![cost against players](scale.png)"]
    return "\n".join(lines) + "\n"


def _cpu(summary: dict) -> str:
    value = summary["cpu_us_per_request"]
    return "?" if value is None else f"{value:.0f}"


def _chart(scale: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    players = [entry["players"] for entry in scale]
    figure, axes = plt.subplots(figsize=(7, 4.8), dpi=110)
    for key, label in (
        ("score_us", "score POST (app)"),
        ("top_scores_query_us", "top-15 query, uncached (repository)"),
        ("raw_query_us", "top-15 query (raw sqlite3)"),
        ("highscorelist_us", "highscorelist (app)"),
    ):
        axes.plot(players, [entry[key] for entry in scale], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("players in the level")
    axes.set_ylabel("µs per call, in process")
    axes.set_title("scoresvc: cost against the size of a level")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
