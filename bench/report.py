"""The suite's output: results.json, results.md (the tables the README quotes) and scale.png."""

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import ranks as ranks_part
from bench.throughput import DESCRIPTIONS, NARROW, WIDE

ABSENT = "-"  # in a table: the server did not run there
ENDPOINT_LABELS = {"highscorelist": "highscorelist", "login": "login", "score": "score POST"}


class Figures:
    """Look-ups into one run's results: a server's summary, per-round ratios of two servers."""

    def __init__(self, results: dict) -> None:
        self.results = results
        self.cells = {
            (cell["endpoint"], cell["connections"]): cell["servers"]
            for cell in results["http"]["cells"]
        }

    def ratio(self, endpoint: str, name: str, base: str, connections: int = NARROW) -> float | None:
        """The median over rounds of name's throughput / base's in the same round, or None."""
        servers = self.cells.get((endpoint, connections), {})
        if name not in servers or base not in servers:
            return None
        pairs = zip(servers[name]["rates"], servers[base]["rates"], strict=True)
        return statistics.median(rate / base_rate for rate, base_rate in pairs)

    def server(self, endpoint: str, name: str, connections: int = NARROW) -> dict | None:
        """One server's summary in one cell, or None if it did not run there."""
        return self.cells.get((endpoint, connections), {}).get(name)

    def read_after_write_problems(self) -> int | None:
        """How many problems the read-after-write checks found, or None if none ran."""
        checks = self.results["http"]["read_after_write"]
        if not checks:
            return None
        return sum(len(entry["problems"]) for entry in checks.values())


def _inprocess_ratio(figures: Figures) -> float:
    """The app's in-process list cost over raw sqlite3's."""
    inprocess = figures.results["inprocess"]
    return inprocess["app_us"]["highscorelist"] / inprocess["floor_us"]["highscorelist"]


def _scale_ratio(figures: Figures) -> float:
    """The list's cost on the largest level over its cost on the smallest."""
    scale = {entry["players"]: entry for entry in figures.results["scale"]}
    return scale[max(scale)]["highscorelist_us"] / scale[min(scale)]["highscorelist_us"]


def _bytes_per_row(figures: Figures) -> float:
    """Memory per stored best score on the largest level."""
    return max(figures.results["scale"], key=lambda entry: entry["players"])["bytes_per_row"]


# (section, figure, "min" or "max", the bound, how to get it from a run's results)
TARGETS: tuple[tuple[str, str, str, float, Callable[[Figures], float | None]], ...] = (
    *(
        (
            "one process",
            f"{ENDPOINT_LABELS[endpoint]} / bare ceiling, 16 connections",
            "min",
            bound,
            lambda f, endpoint=endpoint: f.ratio(endpoint, "memory", "bare"),
        )
        for endpoint, bound in (("highscorelist", 0.9), ("login", 0.9), ("score", 0.8))
    ),
    (
        "one process",
        "login under `waitress-serve scoresvc:app` / stock waitress 100-byte ceiling, "
        "8 threads each",
        "min",
        0.9,
        lambda f: f.ratio("login", "waitress-serve-8t", "ceiling-8t"),
    ),
    (
        "one process",
        "in-process highscorelist cost / raw sqlite3 floor",
        "max",
        2,
        _inprocess_ratio,
    ),
    (
        "one process",
        "highscorelist cost at 1M players / at 1k",
        "max",
        1.2,
        _scale_ratio,
    ),
    (
        "one process",
        "memory per stored best score (bytes)",
        "max",
        80,
        _bytes_per_row,
    ),
    (
        "one process",
        "durable-mode (file) score POST throughput / in-memory, 16 connections",
        "min",
        0.7,
        lambda f: f.ratio("score", "file", "memory"),
    ),
    *(
        (
            "workers",
            f"{ENDPOINT_LABELS[endpoint]}, {database}: 2 workers / 1 worker",
            "min",
            bound,
            lambda f, endpoint=endpoint, database=database: f.ratio(
                endpoint, f"{database}-2", database
            ),
        )
        for endpoint, database, bound in (
            ("highscorelist", "memory", 1.5),
            ("highscorelist", "file", 1.5),
            ("login", "memory", 1.5),
            ("login", "file", 1.5),
            ("score", "file", 1.4),
        )
    ),
    *(
        (
            "workers",
            f"{ENDPOINT_LABELS[endpoint]}, memory, 2 workers / 2-process bare ceiling",
            "min",
            bound,
            lambda f, endpoint=endpoint: f.ratio(endpoint, "memory-2", "bare-2"),
        )
        for endpoint, bound in (("highscorelist", 0.9), ("login", 0.9), ("score", 0.8))
    ),
    *(
        (
            "PostgreSQL",
            f"{ENDPOINT_LABELS[endpoint]}, {workers} worker{'s' if workers > 1 else ''}: "
            "PostgreSQL / SQLite file",
            "min",
            bound,
            lambda f, endpoint=endpoint, suffix=suffix: f.ratio(
                endpoint, f"postgresql{suffix}", f"file{suffix}"
            ),
        )
        for endpoint, bound in (("highscorelist", 0.5), ("score", 0.3))
        for workers, suffix in ((1, ""), (2, "-2"))
    ),
    (
        "read after write",
        "problems found by the checks after every POST run",
        "max",
        0,
        Figures.read_after_write_problems,
    ),
)

# Ratios shown at 16 connections: (label, server, baseline).
RATIOS = (
    ("bare ceiling, 2 processes / 1", "bare-2", "bare"),
    ("100-byte ceiling, 2 processes / 1", "ceiling-2", "ceiling"),
    ("memory, 2 workers / 1", "memory-2", "memory"),
    ("file, 2 workers / 1", "file-2", "file"),
    ("PostgreSQL, 2 workers / 1", "postgresql-2", "postgresql"),
    ("memory, 1 worker / bare ceiling", "memory", "bare"),
    ("memory, 1 worker / 100-byte ceiling", "memory", "ceiling"),
    ("memory, 2 workers / 2-process bare ceiling", "memory-2", "bare-2"),
    ("memory, 2 workers / 2-process 100-byte ceiling", "memory-2", "ceiling-2"),
    ("file, 2 workers / 2-process bare ceiling", "file-2", "bare-2"),
    ("PostgreSQL, 2 workers / 2-process bare ceiling", "postgresql-2", "bare-2"),
    ("file / memory, 1 worker", "file", "memory"),
    ("file / memory, 2 workers", "file-2", "memory-2"),
    ("PostgreSQL / file, 1 worker", "postgresql", "file"),
    ("PostgreSQL / file, 2 workers", "postgresql-2", "file-2"),
    ("waitress-serve scoresvc:app / its ceiling, 8 threads", "waitress-serve-8t", "ceiling-8t"),
)


def write(results: dict, directory: Path) -> None:
    """Write results.json, results.md and (with matplotlib) scale.png into directory.

    results may hold the ranks part alone (`python -m bench --ranks` with no whole run before).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart = "scale" in results and _chart(results["scale"], directory / "scale.png")
    (directory / "results.md").write_text(markdown(results, chart))


def markdown(results: dict, chart: bool) -> str:
    """The results as Markdown tables."""
    meta = results["meta"]
    whole = "http" in results  # else the ranks part alone
    lines = [
        "# scoresvc benchmark results",
        "",
        f"{meta['date']} on {meta['machine']}; Python {meta['python']}, SQLite {meta['sqlite']},"
        f" waitress {meta['waitress']}, {meta['wrk']}"
        + (f", PostgreSQL {meta['postgresql']}" if meta.get("postgresql") else "")
        + ".",
        "",
        f"Command: `{meta['command']}`" + (f" on {meta['code']}" if meta.get("code") else ""),
        "",
        *_targets(results),
    ]
    if whole:
        figures = Figures(results)
        lines += [
            *_http(results, figures),
            *_read_after_write(results),
            *_scale_model(results),
            *_inprocess(results),
            *_scale(results, chart),
        ]
    if "ranks" in results:
        lines += ["", *ranks_markdown(results["ranks"]).splitlines()]
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> list[str]:
    """Every target, met or missed, or not measured."""
    lines = ["## Targets", "", "| | figure | target | measured | |", "|---|---|---|---|---|"]
    targets = []
    if "http" in results:
        figures = Figures(results)
        targets += [
            (section, label, kind, bound, figure(figures))
            for section, label, kind, bound, figure in TARGETS
        ]
    if "ranks" in results:
        targets += _ranks_targets(results["ranks"])
    if "limits" in results:
        label = "score POST, default post limit (5/20) on / off, 20,000 users, no 429"
        targets.append(("Operating it", label, "min", 0.95, results["limits"]["ratio"]))
    for section, label, kind, bound, value in targets:
        target = f"{'≥' if kind == 'min' else '≤'} {bound:g}"
        if value is None:
            lines.append(f"| {section} | {label} | {target} | not measured | |")
            continue
        met = value >= bound if kind == "min" else value <= bound
        small = isinstance(value, float) and bound < 10 and value < 100
        shown = f"{value:.2f}" if small else f"{value:.0f}"
        lines.append(f"| {section} | {label} | {target} | {shown} | {'met' if met else 'missed'} |")
    return lines


def _http(results: dict, figures: Figures) -> list[str]:
    """Throughput, ratios, latency and CPU over HTTP; what was not measured."""
    http = results["http"]
    names = [name for name in DESCRIPTIONS if name in http["servers"]]
    lines = [
        "",
        "## Throughput and latency over HTTP",
        "",
        f"Each server listens on loopback and is driven by wrk ({http['wrk_threads']} thread, "
        f"keep-alive) for {http['seconds']:g} s a run; the servers of one endpoint alternate "
        f"within each of {http['rounds']} rounds; medians of the rounds, and each ratio the "
        "median of its per-round ratios. Every waitress runs "
        f"{http['threads']} threads a process unless said. The ceilings serve a do-nothing app: "
        "the **bare** one answers everything with an empty body (the targets' baseline), the "
        f"other answers a GET with {http['ceiling_get_body_bytes']} bytes (scoresvc's answers: "
        "80 for a key, about 170 for a list), which stock waitress sends in a second write. "
        "A ceiling of 2 processes forks them after binding one listening socket, which both "
        "accept from, as scoresvc's supervisor does with its workers (bench/ceiling.py). "
        f"Score POSTs rotate through {http['players']} users' keys with rising scores on a "
        "fresh level, so every one is an upsert that improves a best; the high score list's "
        f"level holds {http['players']} players. A PostgreSQL database is analyzed once "
        "filled, as autovacuum would soon have done (without statistics, its top 15 is a sort "
        "of the whole level). Every server's stderr goes to a file.",
        "",
        "| server | what | highscorelist req/s | login req/s | score POST req/s |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rates = [_rate(figures.server(endpoint, name)) for endpoint in ENDPOINT_LABELS]
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | {' | '.join(rates)} |")
    lines += [
        "",
        f"Ratios at {NARROW} connections (per-round medians):",
        "",
        "| ratio | highscorelist | login | score POST |",
        "|---|---|---|---|",
    ]
    for label, name, base in RATIOS:
        ratios = [figures.ratio(endpoint, name, base) for endpoint in ENDPOINT_LABELS]
        if any(ratio is not None for ratio in ratios):
            shown = " | ".join(ABSENT if ratio is None else f"{ratio:.2f}" for ratio in ratios)
            lines.append(f"| {label} | {shown} |")
    lines += [
        "",
        f"Latency at {NARROW} connections (wrk's p50 / p99, ms) and CPU time (user + system) "
        "per request, µs, of the server's processes together (a supervisor's and its "
        "workers'), and of PostgreSQL's:",
        "",
        "| server | highscorelist | login | score POST | CPU list / login / POST "
        "| PostgreSQL CPU list / POST |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        summaries = [figures.server(endpoint, name) for endpoint in ENDPOINT_LABELS]
        latencies = " | ".join(
            ABSENT if s is None else f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" for s in summaries
        )
        cpu = " / ".join(_cpu(s, "cpu_us_per_request") for s in summaries)
        database = " / ".join(
            _cpu(s, "database_cpu_us_per_request") for s in (summaries[0], summaries[2])
        )
        if not name.startswith("postgresql"):
            database = ""
        lines.append(f"| {name} | {latencies} | {cpu} | {database} |")
    wide = [
        name
        for name in ("bare", "ceiling", "memory", "file")
        if figures.server("login", name, WIDE)
    ]
    if wide:
        lines += [
            "",
            f"One process at {WIDE} connections, req/s (and scoresvc in memory / bare ceiling):",
            "",
            f"| endpoint | {' | '.join(wide)} | memory / bare |",
            "|---|" + "---|" * (len(wide) + 1),
        ]
        for endpoint in ("highscorelist", "login"):
            rates = " | ".join(_rate(figures.server(endpoint, name, WIDE)) for name in wide)
            ratio = figures.ratio(endpoint, "memory", "bare", WIDE)
            shown = ABSENT if ratio is None else f"{ratio:.2f}"
            lines.append(f"| {ENDPOINT_LABELS[endpoint]} | {rates} | {shown} |")
    errors = sum(
        summary["errors"]
        for cell in http["cells"]
        for name, summary in cell["servers"].items()
        if not name.startswith(("bare", "ceiling"))
    )
    lines += ["", f"Non-200 answers or socket errors from scoresvc in all runs: {errors}."]
    shared = [
        summary["other_cores"]
        for cell in http["cells"]
        for summary in cell["servers"].values()
        if summary.get("other_cores") is not None
    ]
    if shared:
        lines += [
            "",
            "How shared the machine was: other processes (the machine's busy CPU less the "
            "server's, PostgreSQL's and wrk's; a rough figure, to about 0.2 cores) used a median "
            f"of {statistics.median(shared):.1f} cores over a server's rounds, "
            f"{max(shared):.1f} at most.",
        ]
    if http["missing"]:
        lines += ["", "Not measured:", ""]
        lines += [f"- {name}: {reason}" for name, reason in http["missing"].items()]
    return lines


def _read_after_write(results: dict) -> list[str]:
    """What the read-after-write checks found, server by server."""
    checks = results["http"]["read_after_write"]
    lines = [
        "",
        "## Read after write",
        "",
        "After every score POST run on a scoresvc server, two checks, each read over fresh "
        "connections (with 2 workers, the reads land on either): the run's level's list, read 8 "
        "times, holds 15 of the run's own posts on each read, each of them one of the last 15 "
        "answered or later; and a fresh level, read 8 times (cached empty by every worker that "
        "answered), then given 20 scores each over a connection of its own, lists exactly their "
        "top 15 on each of 8 reads (bench/readafterwrite.py).",
        "",
        "| server | checks | problems |",
        "|---|---|---|",
    ]
    for name, entry in checks.items():
        problems = "; ".join(entry["problems"]) or "none"
        lines.append(f"| {name} | {entry['checks']} | {problems} |")
    return lines


def _scale_model(results: dict) -> list[str]:
    """PostgreSQL's rates under pgbench, and CPU per request of workers and PostgreSQL."""
    model = results["scale_model"]
    postgresql = model["postgresql"]
    lines = ["", "## Scale model inputs", ""]
    if "missing" in postgresql:
        lines.append(f"PostgreSQL on its own: not measured ({postgresql['missing']}).")
    else:
        settings = ", ".join(f"{name}={value}" for name, value in postgresql["settings"].items())
        lines += [
            f"PostgreSQL {postgresql['version']} on this machine ({settings}), driven by "
            f"{postgresql['pgbench']} (prepared statements, one transaction a statement) on a "
            "level of 1,000 players, analyzed: **read** is the service's top-15 query, "
            "**upsert** the "
            "service's score upsert with its own commit, every one improving a best. CPU is "
            "every PostgreSQL process's (user + system) per transaction; pgbench runs on the "
            "same cores, and so did whatever else the machine ran (last column, the machine's "
            "busy CPU less PostgreSQL's and pgbench's: a rough figure, to about 0.2 cores).",
            "",
            "| script | clients | transactions/s | latency ms | PostgreSQL CPU µs/transaction "
            "| other processes' cores |",
            "|---|---|---|---|---|---|",
        ]
        for run in postgresql["runs"]:
            others = run.get("other_cores")
            lines.append(
                f"| {run['script']} | {run['clients']} | {run['tps']:,.0f} "
                f"| {run['latency_ms']:.2f} | {_us(run['server_cpu_us_per_transaction'])} "
                f"| {'?' if others is None else f'{others:.1f}'} |"
            )
    lines += [
        "",
        f"CPU per request at {NARROW} connections, µs, of the workers (the processes under "
        "the supervisor; the whole server where it has none) and of PostgreSQL's processes; "
        "their ratio is how many cores of scoresvc workers one core of PostgreSQL keeps busy:",
        "",
        "| server | request | worker CPU µs | PostgreSQL CPU µs "
        "| worker cores per PostgreSQL core |",
        "|---|---|---|---|---|",
    ]
    for name, endpoints in model["cpu_us_per_request"].items():
        for endpoint, cpu in endpoints.items():
            worker, database = cpu["worker"], cpu["postgresql"]
            shown, per_core = ABSENT, ABSENT
            if name.startswith("postgresql"):
                shown = _us(database)
                per_core = f"{worker / database:.1f}" if worker and database else "?"
            lines.append(
                f"| {name} | {ENDPOINT_LABELS[endpoint]} | {_us(worker)} | {shown} | {per_core} |"
            )
    return lines


def _inprocess(results: dict) -> list[str]:
    """The app's in-process cost beside raw sqlite3's."""
    inprocess = results["inprocess"]
    lines = [
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
    return lines


def _scale(results: dict, chart: bool) -> list[str]:
    """In-process costs and memory as a level grows."""
    lines = [
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
    return lines


def _size(players: int) -> str:
    """1,000 as 1k, 1,000,000 as 1M."""
    for unit, suffix in ((1_000_000, "M"), (1000, "k")):
        if players >= unit and players % unit == 0:
            return f"{players // unit}{suffix}"
    return f"{players:,}"


def _worst(ratios: list[dict], operation: str) -> float | None:
    """The highest cost ratio of an operation over every place (and distribution)."""
    values = [entry["ratio"] for entry in ratios if entry["operation"] == operation]
    return max(values) if values else None


def _post_now_over_before(posts: dict | None, players: int) -> float | None:
    """What a POST on the level costs now over what it would cost without the ranking structure.

    The app's POST, over the same less the part of its upsert that differs: the per-round
    median of the upsert on best_scores less the same upsert on a table as migration 0002 left
    best_scores (see bench/ranks.py's measure_upserts()).
    """
    if not posts or "upserts" not in posts:
        return None
    post = posts["us"][str(players)]
    samples = posts["upserts"]["samples"]
    pairs = zip(samples[f"now-{players}"], samples[f"before-{players}"], strict=True)
    extra = statistics.median(now - before for now, before in pairs)
    return post / (post - extra) if post > extra else None


def _ranks_targets(ranks: dict) -> list[tuple[str, str, str, float, float | None]]:
    """The players' view's Cost rule, database by database: (section, label, kind, bound,
    value)."""
    small, large = min(ranks["sizes"]), max(ranks["sizes"])
    per = f"at {_size(large)} players / at {_size(small)}, worst place"
    databases = ranks["databases"]
    section = "players' view"
    targets = []
    for name, entry in databases.items():
        what = ranks_part.LABELS[name]
        targets += [
            (
                section,
                f"{operation} {per}, in process: {what}",
                "max",
                ranks_part.COST_BOUND,
                _worst(entry.get("ratios", []), operation),
            )
            for operation in ranks_part.OPERATIONS
        ]
    for name, entry in databases.items():
        if name == "memory":
            continue  # no server can reach a process's memory database
        what = ranks_part.LABELS[name]
        ratios = (entry.get("http") or {}).get("ratios", [])
        targets += [
            (
                section,
                f"{operation} {per}, over HTTP: {what}",
                "max",
                ranks_part.COST_BOUND,
                _worst(ratios, operation),
            )
            for operation in ranks_part.OPERATIONS
        ]
    for name, entry in databases.items():
        targets.append(
            (
                section,
                f"score POST at {_size(large)} players, now / without the ranking "
                f"structure (estimated): {ranks_part.LABELS[name]}",
                "max",
                ranks_part.POST_BOUND,
                _post_now_over_before(entry.get("posts"), large),
            )
        )
    for name, entry in databases.items():
        storage = entry.get("storage")
        targets.append(
            (
                section,
                f"bytes per stored best score, whole service, {_size(large)}-player "
                f"levels: {ranks_part.LABELS[name]}",
                "max",
                ranks_part.BYTES_BOUND,
                None if storage is None else storage["bytes_per_row"],
            )
        )
    return targets


def ranks_markdown(ranks: dict) -> str:
    """The ranks part's tables (bench/ranks.py), for results.md and for a run of it alone."""
    meta = ranks.get("meta", {})
    sizes = ranks["sizes"]
    small, large = min(sizes), max(sizes)
    ratio_head = f"{_size(large)} / {_size(small)}"
    rows = sum(level["players"] for level in ranks["levels"])
    databases = ranks["databases"]
    any_entry = next((entry for entry in databases.values() if "cells" in entry), {})
    lines = [
        "## Players' view at scale: rank, around, from, score POSTs, storage",
        "",
        f"Measured {meta.get('date', '?')} on {meta.get('code', '?')} by "
        f"`{meta.get('command', 'python -m bench')}`, in {ranks['seconds']:.0f} s.",
        "",
        "Each database holds one level per size ("
        + ", ".join(f"{size:,}" for size in sizes)
        + " players) and score distribution: **uniform** scores over 0..2^31-1, and "
        f"**dense** ones over 0..players/{ranks['dense_players_per_score']}-1 (about "
        f"{ranks['dense_players_per_score']} players on each score, ordered among themselves "
        f"by when they reached it), {rows:,} best scores in all. They are INSERTed into "
        "best_scores once the app's migrations have run, so that whatever the migrations keep "
        "beside the table is kept as the service keeps it; PostgreSQL is then VACUUM ANALYZEd, "
        "as autovacuum soon would be. The places are the first, the middle and the last of a "
        "level's ordering; `from` asks for the page that starts at the first place, the one "
        "that starts at the middle, and the last 15. In process, the repository's rank(), "
        "window_around() and window_from(): µs per call (the mean of as many calls as "
        f"fit in {ranks_part.SAMPLE_SECONDS * 1000:.0f} ms, or one slower call), the median of "
        f"{any_entry.get('rounds', '?')} rounds that take every call in turn, the sizes of each "
        "one after another, after a first pass that warms the caches; each ratio is the median "
        "of its per-round ratios. The rule (SPEC.md, Players' view, Cost): "
        f"≤ {ranks_part.COST_BOUND:g} for {_size(large)} / {_size(small)} at any place.",
    ]
    for name, entry in databases.items():
        what = ranks_part.DESCRIPTIONS[name]
        if "missing" in entry:
            lines += ["", f"**{what}**: not measured ({entry['missing']})."]
            continue
        fill = sum(entry["fill_seconds"].values())
        largest = entry["fill_seconds"].get(f"uniform-{large}")
        vacuum = entry.get("vacuum_analyze_seconds")
        lines += [
            "",
            f"**{what}**: filled in {fill:.1f} s"
            + (f" ({largest:.1f} s for the {_size(large)} uniform level)" if largest else "")
            + (f", VACUUM ANALYZE {vacuum:.1f} s" if vacuum is not None else "")
            + f"; calls timed in {entry['seconds']['calls']:.0f} s.",
            "",
            "| call | place | scores | "
            + " | ".join(f"{_size(size)} µs" for size in sizes)
            + f" | {ratio_head} |",
            "|---|---|---|" + "---|" * (len(sizes) + 1),
        ]
        cells = {
            (c["distribution"], c["players"], c["place"], c["operation"]): c for c in entry["cells"]
        }
        ratios = {(r["distribution"], r["place"], r["operation"]): r for r in entry["ratios"]}
        for operation in ranks_part.OPERATIONS:
            for distribution in ranks_part.DISTRIBUTIONS:
                for place in ranks_part.PLACES:
                    costs = " | ".join(
                        _us_cell(cells.get((distribution, size, place, operation)))
                        for size in sizes
                    )
                    ratio = ratios.get((distribution, place, operation))
                    lines.append(
                        f"| {operation} | {place} | {distribution} | {costs} "
                        f"| {ABSENT if ratio is None else _ratio(ratio['ratio'])} |"
                    )
        problems = entry.get("problems") or []
        lines += [
            "",
            "Answers that disagree with the table's own ordering: "
            + ("; ".join(problems) if problems else "none")
            + ".",
        ]
    lines += _ranks_http(databases, ratio_head)
    lines += _ranks_posts(databases, small, large)
    lines += _ranks_storage(databases, large)
    return "\n".join(lines) + "\n"


def _ranks_http(databases: dict, ratio_head: str) -> list[str]:
    measured = {
        name: entry["http"]
        for name, entry in databases.items()
        if "cells" in (entry.get("http") or {})
    }
    lines = ["", "### Over HTTP", ""]
    if measured:
        http = next(iter(measured.values()))
        sizes = sorted({cell["players"] for cell in http["cells"]})
        small, large = _size(sizes[0]), _size(sizes[-1])
        lines += [
            "A scoresvc server (one worker, its default threads) on each filled database, driven "
            f"by wrk over {http['connections']} keep-alive connection (no request waits behind "
            f"another), {http['seconds']} s a run, the two sizes side by side in each of "
            f"{http['rounds']} rounds; uniform scores. µs per request: the run's time over its "
            "requests, the median of the rounds; the cost ratio is the median of the per-round "
            "ratios. Server RSS (its processes together): after the first requests, and after "
            "all.",
            "",
            f"| database | call | place | {small} µs | {large} µs | p50 ms {small} / {large} "
            f"| cost {ratio_head} | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, http in measured.items():
            cells = {(c["players"], c["place"], c["operation"]): c for c in http["cells"]}
            ratios = {(r["place"], r["operation"]): r["ratio"] for r in http["ratios"]}
            for operation in ranks_part.OPERATIONS:
                for place in ranks_part.PLACES:
                    first = cells[(sizes[0], place, operation)]
                    last = cells[(sizes[-1], place, operation)]
                    lines.append(
                        f"| {name} | {operation} | {place} | {_us_cell(first)} "
                        f"| {_us_cell(last)} | {first['p50_ms']:.2f} / {last['p50_ms']:.2f} "
                        f"| {_ratio(ratios[(place, operation)])} "
                        f"| {first['errors'] + last['errors']} |"
                    )
        lines.append("")
        for name, http in measured.items():
            rss = http["server_rss_bytes"]
            lines.append(
                f"- {name}: server RSS {rss['start'] / 2**20:.0f} MB, then "
                f"{rss['end'] / 2**20:.0f} MB."
            )
    for name, entry in databases.items():
        http = entry.get("http")
        if http is not None and "missing" in http:
            lines.append(f"- {name}: not measured over HTTP ({http['missing']}).")
    return lines


def _ranks_posts(databases: dict, small: int, large: int) -> list[str]:
    lines = [
        "",
        "### Score POSTs",
        "",
        "Through the app in process (its access line included; a memory database's deferred "
        "writes counted), each raising one of 1,000 players' best a little (a real write, "
        "moving the score up the ordering), rotating through them, on the uniform levels in "
        "turn. Then the upsert alone, each its own commit: on best_scores, and on a copy of "
        "the two levels in a table as migration 0002 left best_scores (its ranking index, no "
        "more: what a post wrote before the ranking structure). A POST's cost without the "
        "structure is estimated as its cost now less the (per-round, median) difference of "
        f"the two upserts. Target: ≤ {ranks_part.POST_BOUND:g} now / without, at "
        f"{_size(large)} players.",
        "",
        f"| database | POST µs, {_size(small)} | POST µs, {_size(large)} "
        f"| {_size(large)} / {_size(small)} | upsert µs at {_size(large)}: now / without "
        f"| POST at {_size(large)}: now / without | non-200 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in databases.items():
        posts = entry.get("posts")
        if posts is None:
            continue
        upserts = posts["upserts"]["us"]
        estimate = _post_now_over_before(posts, large)
        lines.append(
            f"| {name} | {posts['us'][str(small)]:.0f} | {posts['us'][str(large)]:.0f} "
            f"| {_ratio(posts['ratio'])} "
            f"| {upserts[f'now-{large}']:.0f} / {upserts[f'before-{large}']:.0f} "
            f"| {ABSENT if estimate is None else _ratio(estimate)} | {posts['failures']} |"
        )
    return lines


def _ranks_storage(databases: dict, large: int) -> list[str]:
    lines = [
        "",
        "### Storage per stored best score",
        "",
        "For the whole service: a SQLite file's every file (the database after a checkpoint "
        "of the bulk load, its WAL and shared memory, the level versions), with what each "
        "table and index takes inside it (dbstat); PostgreSQL's pg_total_relation_size of "
        "each of the service's tables (heap, indexes, TOAST, free space and visibility maps), "
        "with the database's own size (its catalogs included) beside; the memory database's "
        f"growth of the process's RSS over the fill. Target: ≤ {ranks_part.BYTES_BOUND} bytes.",
        "",
        "| database | rows | MB | bytes per stored best score | what takes it |",
        "|---|---|---|---|---|",
    ]
    for name, entry in databases.items():
        storage = entry.get("storage")
        if storage is None:
            continue
        parts = storage.get("parts") or {}
        shown = [
            f"{part} {size / 2**20:.1f} MB"
            for part, size in parts.items()
            if size >= storage["bytes"] / 100
        ]
        if "database_bytes" in storage:
            shown.append(f"(database {storage['database_bytes'] / 2**20:.1f} MB)")
        if "files" in storage:
            shown.append(
                "(files: "
                + ", ".join(
                    f"{file} {size / 2**20:.1f} MB" for file, size in storage["files"].items()
                )
                + ")"
            )
        lines.append(
            f"| {name} | {storage['rows']:,} | {storage['bytes'] / 2**20:.1f} "
            f"| {storage['bytes_per_row']:.0f} | {', '.join(shown) or 'RSS growth'} |"
        )
    return lines


def _us_cell(cell: dict | None) -> str:
    if cell is None:
        return ABSENT
    return f"{cell['us']:,.0f}" if cell["us"] >= 100 else f"{cell['us']:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _rate(summary: dict | None) -> str:
    return ABSENT if summary is None else f"{summary['rate']:,.0f}"


def _cpu(summary: dict | None, key: str) -> str:
    return ABSENT if summary is None else _us(summary[key])


def _us(value: float | None) -> str:
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
