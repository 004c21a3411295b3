"""What the score post limit costs: POST throughput with the default limit (5/20) against none.

Two one-process servers (memory database), each with USERS users logged in; wrk (one thread, 16
connections) posts rising scores rotating through the users' keys (bench/lua/post_score.lua),
alternating between the servers for --rounds rounds of --seconds each. With 20,000 users each
posts every few seconds, so the limit answers no 429 and both servers do the same work: the
difference is the limit's check. Part of `python -m bench` (`--limits` runs it alone), or:

    .venv/bin/python -m bench.limits --rounds 5
"""

import argparse
import re
import statistics
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.httpclient import request
from tests.live.server import LiveServer

ROOT = Path(__file__).resolve().parents[1]

USERS = 20_000
POST_SCRIPT = ROOT / "bench" / "lua" / "post_score.lua"


def log_in_everyone(server: LiveServer, folder: Path) -> Path:
    """A file of USERS session keys, one a line, for wrk's script."""
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda u: request(server.port, "GET", f"/{u}/login"), range(USERS)))
    assert all(status == 200 for status, _ in answers)
    keys = folder / f"keys-{server.port}.txt"
    keys.write_text("".join(f"{key}\n" for _, key in answers))
    return keys


def posts_per_second(server: LiveServer, keys: Path, level: int, seconds: int) -> float:
    url = f"http://127.0.0.1:{server.port}"
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(POST_SCRIPT), url]
    out = subprocess.run(
        [*command, "--", str(keys), str(level)], capture_output=True, text=True, check=True
    ).stdout
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert refused is None, f"{refused[1]} answers were not 200"
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])


def measure(rounds: int = 5, seconds: int = 3, progress=print) -> dict:
    """Each round's posts a second with the limit off and on, and the median ratio on / off."""
    folder = Path(tempfile.mkdtemp(prefix="limit-cost-"))
    servers = {
        "off": LiveServer(folder / "off.log", "--post-limit", "0"),
        "on": LiveServer(folder / "on.log", "--post-limit", "5/20"),
    }
    try:
        for server in servers.values():
            server.start()
        keys = {name: log_in_everyone(server, folder) for name, server in servers.items()}
        measured = []
        for round_ in range(rounds):
            # Each round on a level of its own, the two servers in turn, first one then the other.
            order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            rate = {
                name: posts_per_second(servers[name], keys[name], 100 + round_, seconds)
                for name in order
            }
            measured.append({**rate, "ratio": rate["on"] / rate["off"]})
            progress(
                f"  limits round {round_ + 1}: no limit {rate['off']:,.0f}/s, "
                f"5/20 {rate['on']:,.0f}/s, ratio {measured[-1]['ratio']:.3f}"
            )
    finally:
        for server in servers.values():
            server.kill()
    ratio = statistics.median(each["ratio"] for each in measured)
    return {"users": USERS, "seconds": seconds, "rounds": measured, "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    options = parser.parse_args()
    figures = measure(options.rounds, options.seconds)
    print(f"POST throughput, limit on / off: {figures['ratio']:.3f} (median)")


if __name__ == "__main__":
    main()
