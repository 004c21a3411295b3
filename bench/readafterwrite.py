"""Read after write, checked while the bench runs: a list shows the scores answered before it.

Two checks, each read over fresh connections, so that with several workers the reads and the
writes land on different processes (a new connection goes to whichever worker accepts it):

- after a wrk POST run, its level's list, read several times: each read holds 15 of the run's
  own posts, each of them one of the last 15 answered or later. (The reads may differ: posts
  that wrk sent but stopped waiting for are still being written when they are made.)
- a short exact check: read a fresh level's list (so that every worker has it cached empty),
  post scores for a few users over a connection each, and read the list again: it must be
  exactly the top 15 of what was posted.
"""

import http.client

from bench.load import WRK_THREADS
from bench.servers import Server, request

READS = 8  # fresh connections each list is read over
EXACT_POSTS = 20
LIST_LENGTH = 15
# bench/lua/post_score.lua: score = counter * 16 + wrk thread, key number (counter + thread).
_SCORE_STEP = 16


def after_post_run(server: Server, level: int, answered: int, players: int) -> list[str]:
    """What is wrong with the level's list after a wrk POST run that got answered 200s."""
    problems = []
    for _ in range(READS):
        text = _read_list(server, level)
        try:
            entries = _parse(text)
        except ValueError:
            problems.append(f"level {level}: read {text!r}")
            continue
        if len(entries) != min(LIST_LENGTH, answered):
            problems.append(f"level {level}: {len(entries)} entries after {answered} posts")
        for user, score in entries:
            counter, thread = divmod(score, _SCORE_STEP)
            if user != (counter + thread) % players + 1:
                problems.append(f"level {level}: {user}={score} was not posted by the run")
            # The answered posts have `answered` distinct counters, so the 15th highest of
            # them is at least answered - 14, and so is every entry of the top 15.
            elif WRK_THREADS == 1 and counter < answered - (LIST_LENGTH - 1):
                problems.append(f"level {level}: {user}={score} is older than the last answers")
    return problems[:3]


def exact(server: Server, keys: list[str], level: int) -> list[str]:
    """What is wrong with a fresh level's list after EXACT_POSTS posts on their own connections."""
    for _ in range(READS):
        _read_list(server, level)  # every worker that answers caches the empty list
    posted = {}
    for user in range(1, EXACT_POSTS + 1):
        score = user * 919 % 1000 + 1  # distinct for up to 1,000 users, in no particular order
        connection = server.connection()
        try:
            request(connection, "POST", f"/{level}/score?sessionkey={keys[user - 1]}", str(score))
        finally:
            connection.close()
        posted[user] = score
    ranked = sorted(posted.items(), key=lambda entry: -entry[1])[:LIST_LENGTH]
    expected = ",".join(f"{user}={score}" for user, score in ranked)
    problems = []
    for _ in range(READS):
        text = _read_list(server, level)
        if text != expected:
            problems.append(f"level {level}: read {text!r}, posted {expected!r}")
    return problems[:1]


def _read_list(server: Server, level: int) -> str:
    connection = server.connection()
    try:
        return request(connection, "GET", f"/{level}/highscorelist")
    except (OSError, http.client.HTTPException, RuntimeError) as error:
        return f"<{error}>"
    finally:
        connection.close()


def _parse(text: str) -> list[tuple[int, int]]:
    if not text:
        return []
    return [tuple(int(part) for part in entry.split("=")) for entry in text.split(",")]
