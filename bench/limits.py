"""What the score post limit costs: POST throughput with the default limit (5/20) against none.

Two one-process servers (memory database), each with USERS users logged in; wrk (one thread, 16
connections) posts rising scores rotating through the users' keys (bench/lua/post_score.lua),
alternating between the servers for --rounds rounds of --seconds each. With 20,000 users each
posts every few seconds, so the limit answers no 429 and both servers do the same work: the
difference is the limit's check. Part of `python -m bench` (`--limits` runs it alone), or:

    .venv/bin/python -m bench.limits --rounds 5
"""

import argparse
import secrets
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.load import Wrk, ensure_wrk, scratch_directory
from bench.servers import Server, request

USERS = 20_000
CONNECTIONS = 16


def log_in_everyone(server: Server, folder: Path) -> Path:
    """A file of USERS session keys, one a line, for wrk's script."""

    def log_in(user: int) -> str:
        connection = server.connection()
        try:
            return request(connection, "GET", f"/{user}/login")
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(log_in, range(USERS)))
    path = folder / f"keys-{server.name}.txt"
    path.write_text("".join(f"{key}\n" for key in keys))
    return path


def measure(
    wrk: Wrk,
    scratch: Path,
    rounds: int = 5,
    seconds: int = 3,
    progress: Callable[[str], None] = print,
) -> dict:
    """Each round's posts a second with the limit off and on, and the median ratio on / off."""
    env = {"SCORESVC_SECRET": secrets.token_urlsafe(32), "SCORESVC_SESSION_TTL": "86400"}
    servers = {
        name: Server.scoresvc(
            f"limit-{name}", scratch / f"limit-{name}.log", {**env, "SCORESVC_POST_LIMIT": limit}
        )
        for name, limit in (("off", "0"), ("on", "5/20"))
    }
    try:
        for server in servers.values():
            server.start()
        keys = {name: log_in_everyone(server, scratch) for name, server in servers.items()}
        measured = []
        for round_ in range(rounds):
            # Each round on a level of its own, the two servers in turn, first one then the other.
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            rate = {}
            for name in order:
                run = wrk.post_scores(
                    servers[name].url, CONNECTIONS, seconds, keys[name], 100 + round_
                )
                if run.status_errors:
                    raise RuntimeError(f"{run.status_errors} answers were not 200 ({name})")
                rate[name] = run.rate
            measured.append({**rate, "ratio": rate["on"] / rate["off"]})
            progress(
                f"  limits round {round_ + 1}: no limit {rate['off']:,.0f}/s, "
                f"5/20 {rate['on']:,.0f}/s, ratio {measured[-1]['ratio']:.3f}"
            )
    finally:
        for server in servers.values():
            server.stop()
    ratio = statistics.median(each["ratio"] for each in measured)
    return {"users": USERS, "seconds": seconds, "rounds": measured, "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    options = parser.parse_args()
    with scratch_directory() as scratch:
        figures = measure(
            Wrk(ensure_wrk(), Path(scratch)), Path(scratch), options.rounds, options.seconds
        )
    print(f"POST throughput, limit on / off: {figures['ratio']:.3f} (median)")


if __name__ == "__main__":
    main()
