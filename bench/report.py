"""The suite's output, made from results.json alone: results.json itself, results.md (every
table), docs/performance.md (the prose of bench/performance.md.in with its tables filled in)
and scale.png. `python -m bench --report` writes them again without measuring."""

import json
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from bench import leaderboards as leaderboards_part
from bench import ranks as ranks_part
from bench.throughput import DESCRIPTIONS, NARROW, WIDE

ABSENT = "-"  # in a table: not measured there
TEMPLATE = Path(__file__).with_name("performance.md.in")
DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
ENDPOINT_LABELS = {"highscorelist": "highscorelist", "login": "login", "score": "score POST"}
# Other work beside a run, in cores, past which its 2-process figures say little about workers.
OTHER_WORK_CORES = 0.3


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
    *(
        (
            "one process",
            f"{ENDPOINT_LABELS[endpoint]} under `waitress-serve scoresvc:app` / stock waitress "
            "100-byte ceiling, 8 threads each",
            "min",
            bound,
            lambda f, endpoint=endpoint: f.ratio(endpoint, "waitress-serve-8t", "ceiling-8t"),
        )
        for endpoint, bound in (("highscorelist", 0.9), ("login", 0.9), ("score", 0.8))
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
            ("score", "file", 1.5),
        )
    ),
    *(
        (
            "workers",
            f"{ENDPOINT_LABELS[endpoint]}, {database}, 2 workers / 2-process bare ceiling",
            "min",
            bound,
            lambda f, endpoint=endpoint, database=database: f.ratio(
                endpoint, f"{database}-2", "bare-2"
            ),
        )
        for endpoint, database, bound in (
            ("highscorelist", "memory", 0.9),
            ("login", "memory", 0.9),
            ("score", "memory", 0.6),
            ("score", "file", 0.55),
        )
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


def table(columns: str | Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table: a header of columns ("a | b" or ["a", "b"]), then one line per row
    (None shown as ABSENT)."""
    if isinstance(columns, str):
        columns = columns.split(" | ")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| " + " | ".join(ABSENT if cell is None else str(cell) for cell in row) + " |"
        )
    return lines


def write(results: dict, directory: Path, document: Path | None = DOCUMENT) -> None:
    """Write results.json, results.md, scale.png (with matplotlib) into directory, and the
    document (docs/performance.md) from TEMPLATE.

    results may hold the ranks or limits part alone (with no whole run before).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart = "scale" in results and _chart(results["scale"], directory / "scale.png")
    (directory / "results.md").write_text(markdown(results, chart))
    if document is not None and TEMPLATE.exists():
        document.write_text(performance_document(results))


def performance_document(results: dict) -> str:
    """TEMPLATE with each {{name}} replaced by that part's lines (see PARTS)."""
    parts = {name: "\n".join(make(results)) for name, make in PARTS.items()}

    def fill(found: re.Match) -> str:
        return parts[found.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", fill, TEMPLATE.read_text())


def _measured(results: dict) -> list[str]:
    meta = results["meta"]
    ranks = results.get("ranks", {}).get("meta", {})
    lines = [
        "This page is generated: `python -m bench --report` writes it from",
        "[`bench/results/results.json`](../bench/results/results.json) and "
        "`bench/performance.md.in` without measuring again.",
        "",
        *table(
            "part | measured (UTC) | commit | command",
            [
                ["whole run", meta["date"], _commit(meta), f"`{meta['command']}`"],
                *(
                    [
                        [
                            "players' view and leaderboards",
                            ranks["date"],
                            _commit(ranks),
                            f"`{ranks['command']}`",
                        ]
                    ]
                    if ranks
                    else []
                ),
            ],
        ),
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}, SQLite {meta['sqlite']}, "
        f"waitress {meta['waitress']}, {meta['wrk']}"
        + (f", PostgreSQL {meta['postgresql']}" if meta.get("postgresql") else "")
        + ". The machine is shared and busy: read each figure beside its baseline of the same "
        "run (every ratio is the median of per-round ratios), not against another run's.",
    ]
    return lines


def _commit(meta: dict) -> str:
    """The commit measured (git rev-parse HEAD), and whether the service had changes beside."""
    code = meta.get("code", "?")
    short, _, changes = code.partition(" ")
    commit = meta.get("commit") or short  # runs before the full hash was kept: the short one
    return f"`{commit}`" + (f" {changes}" if changes else "")


def markdown(results: dict, chart: bool) -> str:
    """The results as Markdown tables."""
    lines = ["# scoresvc benchmark results", "", *_measured(results), "", *_targets(results)]
    if "http" in results:
        lines += [
            *_http(results, Figures(results)),
            *_read_after_write(results),
            *_scale_model(results),
            *_inprocess(results),
            *_scale(results, chart),
        ]
    if "ranks" in results:
        lines += ["", *ranks_markdown(results["ranks"])]
    return "\n".join(lines).replace("../bench/results/", "") + "\n"


def _targets(results: dict) -> list[str]:
    """Every target, met or missed, or not measured."""
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
    rows = []
    for section, label, kind, bound, value in targets:
        target = f"{'≥' if kind == 'min' else '≤'} {bound:g}"
        if value is None:
            rows.append([section, label, target, "not measured", ""])
            continue
        met = value >= bound if kind == "min" else value <= bound
        small = isinstance(value, float) and bound < 10 and value < 100
        shown = f"**{value:.2f}**" if small else f"**{value:.0f}**"
        rows.append([section, label, target, shown, "met" if met else "missed"])
    return ["## Targets", "", *table(" | figure | target | measured | ", rows)]


def _throughput(results: dict) -> list[str]:
    """req/s at 16 connections, one and two processes, per endpoint."""
    if "http" not in results:
        return ["(no whole run in results.json)"]
    figures = Figures(results)
    rows = []
    for label, name in (
        ("bare ceiling, 1 process / 2 processes on one socket", "bare"),
        ("scoresvc, memory, 1 worker / 2 workers", "memory"),
        ("scoresvc, file, 1 worker / 2 workers", "file"),
        ("scoresvc, PostgreSQL, 1 worker / 2 workers", "postgresql"),
    ):
        rows.append(
            [label]
            + [
                f"{_rate(figures.server(endpoint, name)) or ABSENT} / "
                f"{_rate(figures.server(endpoint, name + '-2')) or ABSENT}"
                for endpoint in ENDPOINT_LABELS
            ]
        )
    return table(f"req/s, {NARROW} connections | list (1,000 players) | login | score POST", rows)


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
        "accept from, taking connections in turn, as scoresvc's supervisor and workers do "
        "(bench/ceiling.py). "
        f"Score POSTs rotate through {http['players']} users' keys with rising scores on a "
        "fresh level, so every one is an upsert that improves a best; the high score list's "
        f"level holds {http['players']} players. A PostgreSQL database is analyzed once "
        "filled, as autovacuum would soon have done (without statistics, its top 15 is a sort "
        "of the whole level). Every server's stderr goes to a file.",
        "",
        *table(
            "server | what | highscorelist req/s | login req/s | score POST req/s",
            [
                [name, DESCRIPTIONS[name]]
                + [_rate(figures.server(endpoint, name)) for endpoint in ENDPOINT_LABELS]
                for name in names
            ],
        ),
        "",
        f"Ratios at {NARROW} connections (per-round medians):",
        "",
    ]
    rows = []
    for label, name, base in RATIOS:
        ratios = [figures.ratio(endpoint, name, base) for endpoint in ENDPOINT_LABELS]
        if any(ratio is not None for ratio in ratios):
            rows.append([label] + [None if ratio is None else f"{ratio:.2f}" for ratio in ratios])
    lines += table("ratio | highscorelist | login | score POST", rows)
    rows = []
    for name in names:
        summaries = [figures.server(endpoint, name) for endpoint in ENDPOINT_LABELS]
        latencies = [
            None if s is None else f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" for s in summaries
        ]
        cpu = " / ".join(_cpu(s, "cpu_us_per_request") for s in summaries)
        database = ""
        if name.startswith("postgresql"):
            database = " / ".join(
                _cpu(s, "database_cpu_us_per_request") for s in (summaries[0], summaries[2])
            )
        rows.append([name, *latencies, cpu, database])
    lines += [
        "",
        f"Latency at {NARROW} connections (wrk's p50 / p99, ms) and CPU time (user + system) "
        "per request, µs, of the server's processes together (a supervisor's and its "
        "workers'), and of PostgreSQL's:",
        "",
        *table(
            "server | highscorelist | login | score POST | CPU list / login / POST | "
            "PostgreSQL CPU list / POST",
            rows,
        ),
    ]
    wide = [n for n in ("bare", "ceiling", "memory", "file") if figures.server("login", n, WIDE)]
    if wide:
        rows = []
        for endpoint in ("highscorelist", "login"):
            ratio = figures.ratio(endpoint, "memory", "bare", WIDE)
            rows.append(
                [ENDPOINT_LABELS[endpoint]]
                + [_rate(figures.server(endpoint, name, WIDE)) for name in wide]
                + [None if ratio is None else f"{ratio:.2f}"]
            )
        lines += [
            "",
            f"One process at {WIDE} connections, req/s (and scoresvc in memory / bare ceiling):",
            "",
            *table(["endpoint", *wide, "memory / bare"], rows),
        ]
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
    return [
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
        *table(
            "server | checks | problems",
            [
                [name, entry["checks"], "; ".join(entry["problems"]) or "none"]
                for name, entry in checks.items()
            ],
        ),
    ]


def _pgbench_table(postgresql: dict) -> list[str]:
    """pgbench's runs: the service's statements on PostgreSQL alone."""
    return table(
        "script | clients | transactions/s | latency ms | PostgreSQL CPU µs/transaction | "
        "other processes' cores",
        [
            [
                run["script"],
                run["clients"],
                f"{run['tps']:,.0f}",
                f"{run['latency_ms']:.2f}",
                _us(run["server_cpu_us_per_transaction"]),
                "?" if run.get("other_cores") is None else f"{run['other_cores']:.1f}",
            ]
            for run in postgresql["runs"]
        ],
    )


def _cpu_table(model: dict, only_postgresql: bool = False) -> list[str]:
    """Worker and PostgreSQL CPU per request, and how many worker cores one PostgreSQL core
    keeps busy."""
    rows = []
    for name, endpoints in model["cpu_us_per_request"].items():
        on_postgresql = name.startswith("postgresql")
        if only_postgresql and not on_postgresql:
            continue
        for endpoint, cpu in endpoints.items():
            worker, database = cpu["worker"], cpu["postgresql"]
            per_core = f"{worker / database:.1f}" if worker and database else "?"
            rows.append(
                [name, ENDPOINT_LABELS[endpoint], _us(worker)]
                + ([_us(database), per_core] if on_postgresql else [None, None])
            )
    return table(
        "server | request | worker CPU µs | PostgreSQL CPU µs | worker cores per PostgreSQL core",
        rows,
    )


def _scale_model_table(results: dict) -> list[str]:
    """The scale model's inputs for docs/performance.md: CPU per request on PostgreSQL, and
    pgbench's rates."""
    if "scale_model" not in results:
        return ["(no whole run in results.json)"]
    model = results["scale_model"]
    lines = _cpu_table(model, only_postgresql=True)
    if "runs" in model["postgresql"]:
        lines += ["", *_pgbench_table(model["postgresql"])]
    return lines


def _scale_model(results: dict) -> list[str]:
    """PostgreSQL's rates under pgbench, and CPU per request of workers and PostgreSQL."""
    postgresql = results["scale_model"]["postgresql"]
    lines = ["", "## Scale model inputs", ""]
    if "missing" in postgresql:
        lines.append(f"PostgreSQL on its own: not measured ({postgresql['missing']}).")
    else:
        settings = ", ".join(f"{name}={value}" for name, value in postgresql["settings"].items())
        lines += [
            f"PostgreSQL {postgresql['version']} on this machine ({settings}), driven by "
            f"{postgresql['pgbench']} (prepared statements, one transaction a statement) on a "
            "level of 1,000 players, analyzed: **read** is the service's top-15 query, "
            "**upsert** the service's score upsert with its own commit, every one improving a "
            "best. CPU is every PostgreSQL process's (user + system) per transaction; pgbench "
            "runs on the same cores, and so did whatever else the machine ran (last column, the "
            "machine's busy CPU less PostgreSQL's and pgbench's: a rough figure, to about 0.2 "
            "cores).",
            "",
            *_pgbench_table(postgresql),
        ]
    return [
        *lines,
        "",
        f"CPU per request at {NARROW} connections, µs, of the workers (the processes under "
        "the supervisor; the whole server where it has none) and of PostgreSQL's processes; "
        "their ratio is how many cores of scoresvc workers one core of PostgreSQL keeps busy:",
        "",
        *_cpu_table(results["scale_model"]),
    ]


def _inprocess(results: dict) -> list[str]:
    """The app's in-process cost beside raw sqlite3's."""
    inprocess = results["inprocess"]
    rows = []
    for endpoint, cost in inprocess["app_us"].items():
        floor = inprocess["floor_us"].get(endpoint)
        rows.append(
            [endpoint, f"{cost:.1f}"]
            + ([f"{floor:.1f}", f"{cost / floor:.2f}"] if floor else ["(no SQL)", ""])
        )
    return [
        "",
        "## In-process cost",
        "",
        "The WSGI app called directly (no HTTP), access line included, beside raw `sqlite3` "
        "running the same SQL on the same kind of database (a shared-cache memory database, "
        f"{inprocess['players']} players on the level). `score, file`: posts to a SQLite file, "
        "accepted into its write journal and applied in batches, beside raw `sqlite3` "
        "committing each upsert to a WAL file on its own.",
        "",
        *table("endpoint | scoresvc µs/request | raw sqlite3 µs | ratio", rows),
        *_pieces(inprocess.get("pieces_us")),
    ]


def _pieces(pieces: dict[str, float] | None) -> list[str]:
    """What each piece of a login and a score POST costs on its own, where it was measured."""
    if not pieces:
        return []  # results of a run from before bench/inprocess.py measured them
    return [
        "",
        "Each piece of a login and a score POST on its own, called in a loop on the same app's "
        "objects (a score's write is accepted at once and applied by a thread of its own, "
        "its applying counted):",
        "",
        *table("piece | µs a call", [[name, f"{cost:.2f}"] for name, cost in pieces.items()]),
    ]


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
        *table(
            "players | highscorelist µs | top-15 query, uncached µs | raw query µs | "
            "score POST µs | bytes per row",
            [
                [
                    f"{entry['players']:,}",
                    f"{entry['highscorelist_us']:.1f}",
                    f"{entry['top_scores_query_us']:.1f}",
                    f"{entry['raw_query_us']:.1f}",
                    f"{entry['score_us']:.1f}",
                    f"{entry['bytes_per_row']:.0f}",
                ]
                for entry in results["scale"]
            ],
        ),
    ]
    if chart:
        lines += ["", "![cost against players](scale.png)"]
    return lines


def _limits(results: dict) -> list[str]:
    limits = results.get("limits")
    if not limits:
        return ["(not measured)"]
    ratios = [each["ratio"] for each in limits["rounds"]]
    return table(
        "score POST throughput, limit on / off | rounds | per-round ratios | target",
        [
            [
                f"**{limits['ratio']:.2f}**",
                f"{len(ratios)} of {limits['seconds']} s",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                "≥ 0.95",
            ]
        ],
    )


# The players' view and the leaderboards (bench/ranks.py) ---------------------------------------


def _size(players: int) -> str:
    """1,000 as 1k, 1,000,000 as 1M."""
    for unit, suffix in ((1_000_000, "M"), (1000, "k")):
        if players >= unit and players % unit == 0:
            return f"{players // unit}{suffix}"
    return f"{players:,}"


def _board(entry: dict) -> str:
    return entry.get("board") or entry["distribution"]  # results from before boards


def _worst(ratios: list[dict], operation: str, boards: Iterable[str] | None = None) -> float | None:
    """The highest cost ratio of an operation over every place (and the boards given)."""
    values = [
        entry["ratio"]
        for entry in ratios
        if entry["operation"] == operation and (boards is None or _board(entry) in boards)
    ]
    return max(values) if values else None


def _post_now_over_before(posts: dict | None, players: int) -> float | None:
    """What a POST on the level costs now over what it would cost without the ranking structure.

    The app's POST, over the same less the part of its upsert that differs: the per-round
    median of the upsert on best_scores less the same upsert on a table as migration 0002 left
    best_scores (see bench/posts.py's measure_upserts()).
    """
    if not posts or "upserts" not in posts:
        return None
    post = posts["us"][str(players)]
    samples = posts["upserts"]["samples"]
    pairs = zip(samples[f"now-{players}"], samples[f"before-{players}"], strict=True)
    extra = statistics.median(now - before for now, before in pairs)
    return post / (post - extra) if post > extra else None


def _ranks_targets(ranks: dict) -> list[tuple[str, str, str, float, float | None]]:
    """The Cost rules, database by database: (section, label, kind, bound, value)."""
    small, large = min(ranks["sizes"]), max(ranks["sizes"])
    per = f"at {_size(large)} players / at {_size(small)}, worst place and board"
    section = "players' view"
    targets = []
    for name, entry in ranks["databases"].items():
        what = ranks_part.LABELS[name]
        operations = ranks_part.OPERATIONS if "boards" in ranks else ("rank", "around", "from")
        targets += [
            (
                section,
                f"{operation} {per}, in process: {what}",
                "max",
                ranks_part.COST_BOUND,
                _worst(entry.get("ratios", []), operation),
            )
            for operation in operations
        ]
        http = entry.get("http") or {}
        if "ratios" in http:
            targets += [
                (
                    section,
                    f"{operation} {per}, over HTTP: {what}",
                    "max",
                    ranks_part.COST_BOUND,
                    _worst(http["ratios"], operation),
                )
                for operation in ranks_part.HTTP_OPERATIONS
            ]
        targets.append(
            (
                section,
                f"score POST at {_size(large)} players, now / without the ranking "
                f"structure (estimated): {what}",
                "max",
                ranks_part.POST_BOUND,
                _post_now_over_before(entry.get("posts"), large),
            )
        )
        storage = entry.get("storage")
        targets.append(
            (
                section,
                f"bytes per stored best score, whole service: {what}",
                "max",
                ranks_part.BYTES_BOUND,
                None if storage is None else storage["bytes_per_row"],
            )
        )
        boards = entry.get("leaderboards") or {}
        if boards:
            targets.append(
                (
                    "leaderboards",
                    f"post to a level with rules / to a default level: {what}",
                    "max",
                    leaderboards_part.POST_BOUND,
                    boards["posts"]["ratio"],
                )
            )
        if "season_starts" in boards:
            targets.append(
                (
                    "leaderboards",
                    f"season start at {_size(large)} players / at {_size(small)}: {what}",
                    "max",
                    leaderboards_part.SEASON_BOUND,
                    boards["season_starts"]["ratio"],
                )
            )
    return targets


BOARD_LABELS = {
    "uniform": "highest first",
    "dense": "highest first, ~10 players a score",
    "asc": "`asc` (lowest first)",
    "past": "a past season",
    "tied": "all tied on one score",
}


def _cost_table(ranks: dict) -> list[str]:
    """The SPEC's Cost rule: per board and call, the worst place's ratio on each database."""
    if "ranks" in ranks:
        ranks = ranks["ranks"]
    if not ranks:
        return ["(not measured)"]
    databases = {name: entry for name, entry in ranks["databases"].items() if "ratios" in entry}
    sizes = {}
    for entry in databases.values():
        for ratio in entry["ratios"]:
            sizes[_board(ratio)] = (
                ratio.get("small", min(ranks["sizes"])),
                ratio.get("large", max(ranks["sizes"])),
            )
    measured = {c["operation"] for entry in databases.values() for c in entry["cells"]}
    operations = [operation for operation in ranks_part.OPERATIONS if operation in measured]
    rows = []
    for board, (small, large) in sizes.items():
        for operation in operations:
            values = [_worst(entry["ratios"], operation, (board,)) for entry in databases.values()]
            errors = [
                any(
                    "error" in cell and _board(cell) == board and cell["operation"] == operation
                    for cell in entry["cells"]
                )
                for entry in databases.values()
            ]
            shown = [
                "failed" if error else None if value is None else _ratio(value)
                for value, error in zip(values, errors, strict=True)
            ]
            rows.append(
                [
                    BOARD_LABELS.get(board, board),
                    f"{_size(large)} / {_size(small)}",
                    operation,
                    *shown,
                ]
            )
    names = [ranks_part.LABELS[name] for name in databases]
    lines = table(["board", "players", "call", *names], rows)
    boards = {name: entry.get("leaderboards") for name, entry in databases.items()}
    if any(boards.values()):
        lines += [
            "",
            *table(
                ["leaderboards' cost, in process (per-round medians)", *names, "target"],
                [
                    ["post to a level with rules (`asc`, bounds) / to a default level"]
                    + [None if not b else _ratio(b["posts"]["ratio"]) for b in boards.values()]
                    + [f"≤ {leaderboards_part.POST_BOUND:g}"],
                    ["a post to a default level, µs"]
                    + [
                        None if not b else f"{b['posts']['us']['default']:.0f}"
                        for b in boards.values()
                    ]
                    + [""],
                    [
                        f"season start at {_size(max(ranks['sizes']))} / at "
                        f"{_size(min(ranks['sizes']))} players"
                    ]
                    + [
                        None
                        if not b or "season_starts" not in b
                        else _ratio(b["season_starts"]["ratio"])
                        for b in boards.values()
                    ]
                    + [f"≤ {leaderboards_part.SEASON_BOUND:g}"],
                ],
            ),
        ]
    return lines


def ranks_markdown(ranks: dict) -> list[str]:
    """The ranks part's tables (bench/ranks.py), for results.md and for a run of it alone."""
    meta = ranks.get("meta", {})
    sizes = ranks["sizes"]
    small, large = min(sizes), max(sizes)
    rows = sum(level["players"] for level in ranks["levels"])
    databases = ranks["databases"]
    any_entry = next((entry for entry in databases.values() if "cells" in entry), {})
    lines = [
        "## Players' view and leaderboards at scale: rank, around, from, users, posts, storage",
        "",
        f"Measured {meta.get('date', '?')} on {meta.get('code', '?')} by "
        f"`{meta.get('command', 'python -m bench')}`, in {ranks['seconds']:.0f} s.",
        "",
        "Each database holds one level per size ("
        + ", ".join(f"{size:,}" for size in sizes)
        + " players) and board: "
        + "; ".join(
            f"**{board}**: {BOARD_LABELS.get(board, board)}"
            for board in ranks.get("boards", ("uniform", "dense"))
        )
        + f" (ties up to {ranks.get('tied_max_players', 0):,} players), {rows:,} best scores "
        "in all, INSERTed in bulk into best_scores once the app's migrations have run "
        "(bench/fill.py), so that whatever the migrations keep beside the table is kept as the "
        "service keeps it; PostgreSQL is then VACUUM ANALYZEd, as autovacuum soon would be. "
        "The places are the first, the middle and the last of a board's ordering; `from` asks "
        "for the page that starts at the first place, the one that starts at the middle, and "
        "the last 15; `users` asks for the place's user and nine others. In process, the "
        "repository's own rank(), window_around(), window_from() and entries_of_users(): µs "
        "per call (the mean of as many calls as fit in 50 ms, or one slower call), the median "
        f"of {any_entry.get('rounds', '?')} rounds that take every call in turn, the sizes of "
        "each one after another, after a first pass that warms the caches; each ratio is the "
        f"median of its per-round ratios. The rule: ≤ {ranks_part.COST_BOUND:g} for "
        f"{_size(large)} / {_size(small)} at any place (ties: 100k / 1k).",
        "",
        *_cost_table(ranks),
    ]
    for name, entry in databases.items():
        what = ranks_part.DESCRIPTIONS[name]
        if "missing" in entry:
            lines += ["", f"**{what}**: not measured ({entry['missing']})."]
            continue
        fill = sum(entry["fill_seconds"].values())
        vacuum = entry.get("vacuum_analyze_seconds")
        cells = {(_board(c), c["players"], c["place"], c["operation"]): c for c in entry["cells"]}
        ratios = {(_board(r), r["place"], r["operation"]): r for r in entry["ratios"]}
        boards = list(dict.fromkeys(board for board, *_ in cells))
        operations = [o for o in ranks_part.OPERATIONS if any(k[3] == o for k in cells)]
        table_rows = [
            [operation, place, board]
            + [_us_cell(cells.get((board, size, place, operation))) for size in sizes]
            + [
                None
                if (board, place, operation) not in ratios
                else _ratio(ratios[(board, place, operation)]["ratio"])
            ]
            for operation in operations
            for board in boards
            for place in ranks_part.PLACES
        ]
        problems = entry.get("problems") or []
        lines += [
            "",
            f"**{what}**: filled in {fill:.1f} s"
            + (f", VACUUM ANALYZE {vacuum:.1f} s" if vacuum is not None else "")
            + f"; calls timed in {entry['seconds']['calls']:.0f} s.",
            "",
            *table(
                [
                    "call",
                    "place",
                    "board",
                    *(f"{_size(size)} µs" for size in sizes),
                    "largest / smallest",
                ],
                table_rows,
            ),
            "",
            "Answers that disagree with the table's own ordering, or errors: "
            + (
                "; ".join(problems[:6])
                + (f" (and {len(problems) - 6} more)" if len(problems) > 6 else "")
                if problems
                else "none"
            )
            + ".",
        ]
    lines += _ranks_http(databases)
    lines += _ranks_posts(databases, small, large)
    lines += _ranks_storage(databases)
    return lines


def _ranks_http(databases: dict) -> list[str]:
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
        rows = []
        for name, http in measured.items():
            cells = {(c["players"], c["place"], c["operation"]): c for c in http["cells"]}
            ratios = {(r["place"], r["operation"]): r["ratio"] for r in http["ratios"]}
            for operation in ranks_part.HTTP_OPERATIONS:
                for place in ranks_part.PLACES:
                    first = cells[(sizes[0], place, operation)]
                    last = cells[(sizes[-1], place, operation)]
                    rows.append(
                        [
                            name,
                            operation,
                            place,
                            _us_cell(first),
                            _us_cell(last),
                            f"{first['p50_ms']:.2f} / {last['p50_ms']:.2f}",
                            _ratio(ratios[(place, operation)]),
                            first["errors"] + last["errors"],
                        ]
                    )
        lines += [
            "A scoresvc server (one worker, its default threads) on each filled database, driven "
            f"by wrk over {http['connections']} keep-alive connection (no request waits behind "
            f"another), {http['seconds']} s a run, the two sizes side by side in each of "
            f"{http['rounds']} rounds; highest-first scores. µs per request: the run's time over "
            "its requests, the median of the rounds; the cost ratio is the median of the "
            "per-round ratios. Server RSS (its processes together): after the first requests, "
            "and after all.",
            "",
            *table(
                f"database | call | place | {small} µs | {large} µs | "
                f"p50 ms {small} / {large} | cost {large} / {small} | errors",
                rows,
            ),
            "",
        ]
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
    rows = []
    for name, entry in databases.items():
        posts = entry.get("posts")
        if posts is None:
            continue
        upserts = posts["upserts"]["us"]
        estimate = _post_now_over_before(posts, large)
        rows.append(
            [
                name,
                f"{posts['us'][str(small)]:.0f}",
                f"{posts['us'][str(large)]:.0f}",
                _ratio(posts["ratio"]),
                f"{upserts[f'now-{large}']:.0f} / {upserts[f'before-{large}']:.0f}",
                None if estimate is None else _ratio(estimate),
                posts["failures"],
            ]
        )
    return [
        "",
        "### Score POSTs",
        "",
        "Through the app in process (its access line included; a memory database's deferred "
        "writes counted), each raising one of 1,000 players' best a little (a real write, "
        "moving the score up the ordering), rotating through them, on the highest-first levels "
        "in turn. Then the upsert alone, each its own commit: on best_scores, and on a copy of "
        "the two levels in a table as migration 0002 left best_scores (its ranking index, no "
        "more: what a post wrote before the ranking structure). A POST's cost without the "
        "structure is estimated as its cost now less the (per-round, median) difference of "
        f"the two upserts. Target: ≤ {ranks_part.POST_BOUND:g} now / without, at "
        f"{_size(large)} players.",
        "",
        *table(
            f"database | POST µs, {_size(small)} | POST µs, {_size(large)} | "
            f"{_size(large)} / {_size(small)} | upsert µs at {_size(large)}: now / without | "
            f"POST at {_size(large)}: now / without | non-200",
            rows,
        ),
    ]


def _ranks_storage(databases: dict) -> list[str]:
    rows = []
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
            files = ", ".join(
                f"{file} {size / 2**20:.1f} MB" for file, size in storage["files"].items()
            )
            shown.append(f"(files: {files})")
        rows.append(
            [
                name,
                f"{storage['rows']:,}",
                f"{storage['bytes'] / 2**20:.1f}",
                f"{storage['bytes_per_row']:.0f}",
                ", ".join(shown) or "RSS growth",
            ]
        )
    return [
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
        *table("database | rows | MB | bytes per stored best score | what takes it", rows),
    ]


def _us_cell(cell: dict | None) -> str | None:
    if cell is None:
        return None
    if "error" in cell:
        return "failed"
    return f"{cell['us']:,.0f}" if cell["us"] >= 100 else f"{cell['us']:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _rate(summary: dict | None) -> str | None:
    return None if summary is None else f"{summary['rate']:,.0f}"


def _cpu(summary: dict | None, key: str) -> str:
    return ABSENT if summary is None else _us(summary[key])


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def _rules_beside_cost(results: dict) -> list[str]:
    """The players' view's and leaderboards' targets but the in-process costs (_cost_table's)."""
    if "ranks" not in results:
        return ["(not measured)"]
    rows = [
        [label, f"{'≥' if kind == 'min' else '≤'} {bound:g}"]
        + (
            ["not measured", ""]
            if value is None
            else [
                f"**{_ratio(value) if bound < 10 else f'{value:.0f}'}**",
                "met" if (value >= bound if kind == "min" else value <= bound) else "missed",
            ]
        )
        for _, label, kind, bound, value in _ranks_targets(results["ranks"])
        if "in process" not in label
    ]
    return table("figure | target | measured | ", rows)


def _cores_free(results: dict) -> list[str]:
    """What the machine left the run: the bare ceiling's 2 processes over its 1, per endpoint,
    and whether other work measured beside them, or the one process itself, explains it."""
    if "http" not in results:
        return []
    figures = Figures(results)
    ratios = [figures.ratio(endpoint, "bare-2", "bare") for endpoint in ENDPOINT_LABELS]
    ratios = [ratio for ratio in ratios if ratio is not None]
    if not ratios or max(ratios) >= 1.5:
        return []
    shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    pairs = [
        (figures.server(endpoint, "bare"), figures.server(endpoint, "bare-2"))
        for endpoint in ENDPOINT_LABELS
    ]
    others = [two["other_cores"] for _, two in pairs if two and two["other_cores"] is not None]
    if others and statistics.median(others) >= OTHER_WORK_CORES:
        return [
            f"In this run the bare ceiling's 2 processes reached only {shown} times its 1 (list, "
            f"login, POST): other work took {statistics.median(others):.1f} cores beside them, "
            "so the 2-worker figures and targets above say little about workers. The notes "
            "below come from earlier runs on a quieter machine, whose ratios they quote."
        ]
    busy = [
        one["rate"] * one["cpu_us_per_request"] / 1e6
        for one, _ in pairs
        if one and one["cpu_us_per_request"] is not None
    ]
    if not busy:
        return []
    return [
        f"In this run the bare ceiling's 2 processes reached {shown} times its 1 (list, login, "
        "POST) with no other work beside them: its one process already kept "
        f"{min(busy):.2f}-{max(busy):.2f} cores busy (the kernel's work on its sockets is not "
        "held by the GIL), and wrk took its share of the two. The 2-worker ratios above are "
        "taken against that ceiling."
    ]


# What bench/performance.md.in's {{name}} stands for.
PARTS: dict[str, Callable[[dict], list[str]]] = {
    "measured": _measured,
    "targets": lambda results: (
        _targets({k: v for k, v in results.items() if k not in ("ranks", "limits")})[2:]
        if "http" in results
        else ["(no whole run in results.json)"]
    ),
    "throughput": _throughput,
    "cores_free": _cores_free,
    "scale_model": _scale_model_table,
    "limits": _limits,
    "players_view": lambda results: _cost_table(results.get("ranks", {})),
    "players_view_targets": _rules_beside_cost,
}


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
