"""Levels with rules and seasons on a real server of two workers, only through HTTP, against
tests.leaderboardmodel, with the workers' clock moved from outside.

Each example starts `scoresvc --workers 2` on a new SQLite file, then makes random calls: rules
set through the admin API (both orders, the three keeps, bounds, server-only writes, schedules
in the example's zone or another; a 409 predicted where order or keep change while the current
season has scores), seasons started by hand, player posts with session keys, trusted-writer
posts, and jumps of the clock to either side of the daily, weekly and monthly boundaries of a
zone whose clocks change in the days that follow (the integration model's starts). After each
step the current lists, the seasons and the rules object are read back; rules read ranks,
windows, pages, friends and the export of any season, past ones included.

The server has no clock a test may set, nor should it grow one: its processes run under Debian's
libfaketime (LD_PRELOAD), whose offset from the real time the test rewrites in a file
(FAKETIME_TIMESTAMP_FILE, read at every reading with FAKETIME_NO_CACHE=1). Forked workers read
the same file, so the sessions, SQLite's reached_at and the seasons' boundaries of both move
with it. The faked clock still runs between jumps: the model reads the time rather than setting
it, and a jump never lands within HORIZON before a midnight of any zone a level may be given,
so no boundary passes while requests are under way. What libfaketime 0.9.10 needs to keep a
threaded Python server working:

- its thread-safe build, libfaketimeMT.so.1: under libfaketime.so.1 a thread that reads the
  clock while another parses the file now and then gets the real time (a request then sees
  seasons months ahead, and waitress closes connections as idle);
- CLOCK_MONOTONIC left real (FAKETIME_DONT_FAKE_MONOTONIC=1): faked, Python's timed waits
  (Event.wait(timeout), which the log writer uses) never return. Real, time.sleep fails with
  EINVAL, which the server calls only when retrying a database at its start;
- FAKETIME_FORCE_MONOTONIC_FIX=0: the fix, on by default with this glibc, makes the condition
  waits of the GIL return at once, so that each request costs tens of ms of CPU.
"""

import contextlib
import csv
import glob
import http.client
import io
import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.leaderboardmodel import (
    MAX_SCORE,
    PAGE,
    LevelModel,
    Rejected,
    next_period_start,
    utc_us,
)
from tests.live.server import LiveServer
from tests.needs import lacking

ADMIN_TOKEN = "http-model-admin-token-0123456789abcdef"
WRITER_TOKEN = "http-model-writer-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
JSON = {"Accept": "application/json"}
SESSION_TTL_S = 600
ENVIRONMENT = {
    "SCORESVC_ADMIN_TOKEN": ADMIN_TOKEN,
    "SCORESVC_WRITER_TOKEN": WRITER_TOKEN,
    "SCORESVC_SECRET": "",  # generated and kept in the file: both workers sign with it
    "SCORESVC_POST_LIMIT": "0",
    "SCORESVC_SESSION_TTL": str(SESSION_TTL_S),
}
# Where Debian (libfaketime, for any architecture) and a build from source put the library:
# its thread-safe build, since a server's threads read the clock at once (see above).
LIBFAKETIME = (
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)

LEVELS = (3, MAX_SCORE)
# More users than a list shows, so that the 15-entry cut and the windows' shifts are exercised.
USERS = (*range(18), MAX_SCORE)
levels = st.sampled_from(LEVELS)
users = st.sampled_from(USERS)
scores = st.integers(0, 12) | st.sampled_from([0, 1, 2**30, MAX_SCORE - 1, MAX_SCORE])
bounds = st.sampled_from([0, 3, 8, 12, MAX_SCORE])

# (zone, a start a few days before its clocks change, a month's end and a Monday)
STARTS = [
    ("Europe/Berlin", "2026-03-26T12:00:00+01:00"),  # summer time Sunday 03-29, Monday 03-30
    ("Europe/Berlin", "2026-10-22T18:00:00+02:00"),  # winter time Sunday 10-25, November
    ("America/Santiago", "2026-08-28T12:00:00-04:00"),  # September; Sunday 09-06 has no 00:00
    ("America/Santiago", "2026-04-01T12:00:00-03:00"),  # 23:00 twice on Saturday 04-04
]
ZONES = ("UTC", "Europe/Berlin", "America/Santiago")
RESETS = ("never", "manual", "daily", "weekly", "monthly")

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
# How long an example may run after a jump of the clock before a boundary could pass under its
# requests: a jump lands at least this far before any zone's next midnight.
HORIZON_US = 20 * 60 * SECOND_US
# A worker is ready well within this; one that is not has hung at its start (start_server).
READY_TIMEOUT_S = 5
START_ATTEMPTS = 6
READY = re.compile(r"^(\d{4}-\d\d-\d\d) \S+ INFO \[scoresvc\] \[worker \d\] ready", re.MULTILINE)


def libfaketime() -> str:
    """The path of libfaketimeMT.so.1; the test skips without it (fails in CI)."""
    for pattern in LIBFAKETIME:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    lacking("no libfaketime to move the servers' clock: apt-get install libfaketime")


class OutsideClock:
    """The server processes' clock: the real one plus an offset libfaketime reads from a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_us = 0
        self.set(_real_us())

    def set(self, now_us: int) -> None:
        """From now on the servers' clock reads now_us, and runs on from there."""
        offset_us = now_us - _real_us()
        seconds = f"{abs(offset_us) // SECOND_US}.{abs(offset_us) % SECOND_US:06d}"
        written = self.path.with_suffix(".new")
        written.write_text(f"{'-' if offset_us < 0 else '+'}{seconds}\n")
        os.replace(written, self.path)  # whole, never half-written, at every reading
        self.offset_us = offset_us

    def now_us(self) -> int:
        return _real_us() + self.offset_us

    def environment(self, library: str) -> dict[str, str]:
        """The variables that put a process, and the processes it forks, on this clock."""
        return {
            "LD_PRELOAD": library,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_FORCE_MONOTONIC_FIX": "0",
        }


def _real_us() -> int:
    return time.time_ns() // 1000


# --- HTTP ---------------------------------------------------------------------------------


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """One request on a new connection (either worker may take it): (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def json_of(server: LiveServer, path: str, headers: dict[str, str] = JSON) -> dict | None:
    """A JSON answer's document; None for a 404."""
    status, text = call(server, "GET", path, None, headers)
    if status == 404:
        return None
    assert status == 200, f"GET {path}: {status} {text}"
    return json.loads(text)


def with_query(path: str, *parameters: str) -> str:
    return f"{path}?{'&'.join(parameters)}" if parameters else path


def text_list(entries) -> str:
    """A list's text body: user=score, best first."""
    return ",".join(f"{user}={score}" for user, score in entries)


def places(document: dict) -> tuple[tuple[tuple[int, int, int], ...], int]:
    """A JSON list's (rank, user, score) entries and its players."""
    entries = tuple((e["rank"], e["user"], e["score"]) for e in document["entries"])
    return entries, document["players"]


# --- the machine --------------------------------------------------------------------------


def rule_changes(zone: str):
    """A JSON object of rules to set: any of the fields, with the example's zone most often."""
    return st.fixed_dictionaries(
        {},
        optional={
            "order": st.sampled_from(["desc", "asc"]),
            "keep": st.sampled_from(["best", "latest", "sum"]),
            "reset": st.sampled_from(RESETS),
            "timezone": st.sampled_from([zone, zone, *ZONES]),
            "min_score": bounds,
            "max_score": bounds,
            "writes": st.sampled_from(["players", "server"]),
        },
    )


def starting_rules(zone: str):
    """Valid rules for a level with no score yet: any order and keep, a schedule most often."""
    return st.fixed_dictionaries(
        {
            "order": st.sampled_from(["desc", "asc"]),
            "keep": st.sampled_from(["best", "latest", "sum"]),
            "reset": st.sampled_from(["daily", "weekly", "monthly", "manual"]),
            "timezone": st.just(zone),
        },
        optional={"min_score": st.sampled_from([0, 1]), "writes": st.just("server")},
    )


class HttpLeaderboardMachine(RuleBasedStateMachine):
    """A server of two workers, driven through HTTP only, against LevelModel."""

    library: str  # libfaketime
    base: Path  # where each example's folder goes

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="example-", dir=self.base))
        self.clock = OutsideClock(self.folder / "faketime")
        self.server: LiveServer | None = None
        self.models: dict[int, LevelModel] = {}
        self.zone = "UTC"
        self.now = 0  # the servers' time when last read (µs)
        self.jumped_to = 0  # where the clock last jumped
        self.writes = 0  # the model's `reached`: one more with every post
        self.keys: dict[int, tuple[str, int, int]] = {}  # user: (key, read before, read after)
        self.both_answered = False

    def teardown(self) -> None:
        if self.server is not None:
            self.stop(self.server)

    def stop(self, server: LiveServer) -> None:
        server.kill()
        # A process whose supervisor is gone stops by itself, but one hung on libfaketime's
        # lock (see start_server) never does: end each process this example started, workers
        # and the applier (its command line names the example's database). Hung appliers were
        # left running, about 15 a run, before the applier was ended here too.
        for pid in server.started_pids():
            with contextlib.suppress(OSError):
                if str(self.folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)

    def start_server(self) -> LiveServer:
        """The example's server, both workers ready, on the faked clock.

        libfaketimeMT holds a lock while it reads the clock, and a worker forked while another
        thread of the supervisor held it waits for it for ever, before it logs that it is
        ready (here about one start in seven). Such a server is stopped and started again.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            server = LiveServer(
                self.folder / f"server-{attempt}.log",
                *("--workers", "2", "--database", f"sqlite:///{self.folder}/{attempt}.db"),
                env={**ENVIRONMENT, **self.clock.environment(self.library)},
            ).start()
            deadline = time.monotonic() + READY_TIMEOUT_S
            while len(ready := READY.findall(server.log_path.read_text())) < 2:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                # Logged by each worker's own time.time(): the faked date, not today's.
                for day in ready:
                    assert abs(_local_day(day) - self.now) < 2 * DAY_US, ready
                return server
            self.stop(server)
        raise AssertionError(f"no start of {START_ATTEMPTS} had both workers ready")

    # Time

    def read_now(self) -> int:
        """The servers' time now; no boundary may have passed since the last jump."""
        now = self.clock.now_us()
        assert now - self.jumped_to < HORIZON_US, "the example outran the clock's horizon"
        self.now = now
        return now

    def jump(self, target_us: int) -> None:
        """Move the servers' clock forward to target_us (later, to stay clear of midnights),
        and the model's seasons with it."""
        target = max(target_us, self.clock.now_us() + 1)
        while True:
            nearest = min(next_period_start("daily", zone, target) for zone in ZONES)
            if nearest > target + HORIZON_US:
                break
            target = nearest + SECOND_US  # just past it, rather than just before
        self.clock.set(target)
        for model in self.models.values():
            model.time_passes(self.now, target)
        self.now = self.jumped_to = target

    @rule(seconds=st.sampled_from([1, 3600, 86_400, 7 * 86_400, 31 * 86_400]))
    def time_passes(self, seconds):
        self.jump(self.read_now() + seconds * SECOND_US)

    @rule(
        reset=st.sampled_from(["daily", "weekly", "monthly"]),
        to_the_level=st.sampled_from([None, *LEVELS]),
        after=st.booleans(),
    )
    def time_passes_to_a_boundary(self, reset, to_the_level, after):
        """To just after the next boundary of a level's own schedule (or of reset in the
        example's zone), or to as close before it as the horizon allows."""
        zone = self.zone
        if to_the_level is not None and self.models[to_the_level].rules.reset in (
            "daily",
            "weekly",
            "monthly",
        ):
            rules = self.models[to_the_level].rules
            reset, zone = rules.reset, rules.timezone
        boundary = next_period_start(reset, zone, self.read_now())
        self.jump(boundary + SECOND_US if after else boundary - HORIZON_US - SECOND_US)

    # The start

    @initialize(start=st.sampled_from(STARTS), data=st.data())
    def the_server_starts(self, start, data):
        self.zone, at = start
        self.now = self.jumped_to = utc_us(at)
        self.clock.set(self.now)
        self.server = self.start_server()
        # Season 1 of every level began when the file was migrated, by the servers' clock.
        for level in LEVELS:
            rules = self.admin("GET", f"/admin/levels/{level}/rules")
            since = utc_us(rules["season_started"])
            assert self.jumped_to <= since <= self.read_now(), rules
            self.models[level] = LevelModel.new(since)
        # Levels start with rules of every kind (one of them often a schedule), before any post.
        for level in LEVELS:
            if data.draw(st.booleans(), label="rules at the start"):
                changes = data.draw(starting_rules(self.zone), label="changes")
                self.models[level].change_rules(changes)
                answer = self.admin("PUT", f"/admin/levels/{level}/rules", changes)
                self.check_rules_answer(level, answer)

    def admin(self, method: str, path: str, document: dict | None = None) -> dict:
        """An admin API call that must answer 200: its JSON."""
        body = None if document is None else json.dumps(document)
        status, text = call(self.server, method, path, body, ADMIN)
        assert status == 200, f"{method} {path} {body}: {status} {text}"
        return json.loads(text)

    # Writes

    def session_key(self, user: int) -> str:
        """The user's session key, logging in again once the clock has moved past its TTL
        (a key the model knows to have expired must be refused)."""
        now = self.read_now()
        if user in self.keys:
            key, before, after = self.keys[user]
            if now + 5 * SECOND_US < before + SESSION_TTL_S * SECOND_US:
                return key
            if now >= after + SESSION_TTL_S * SECOND_US:
                status, text = call(self.server, "POST", f"/3/score?sessionkey={key}", "1")
                assert status == 401, f"an expired key of {user}: {status} {text}"
        before = self.read_now()
        status, key = call(self.server, "GET", f"/{user}/login")
        assert status == 200, f"login of {user}: {status} {key}"
        self.keys[user] = (key, before, self.read_now())
        return key

    def post(self, level: int, user: int, score: int, by_server: bool) -> None:
        if by_server:
            path, headers = f"/{level}/score?user={user}", WRITER
        else:
            path, headers = f"/{level}/score?sessionkey={self.session_key(user)}", {}
        model = self.models[level]
        self.writes += 1
        try:
            model.post(user, score, self.writes, by_server=by_server, banned=False)
            expected = 200
        except Rejected as rejected:
            expected = {"server_only": 403, "out_of_bounds": 422}[rejected.kind]
        status, text = call(self.server, "POST", path, str(score), headers)
        assert status == expected, f"{score} posted on {level} for {user}: {status} {text}"

    @rule(level=levels, user=users, score=scores, by_server=st.booleans())
    def a_score_is_posted(self, level, user, score, by_server):
        self.post(level, user, score, by_server)

    @rule(level=levels, user=users, score=scores)
    def a_player_posts_once_the_key_has_expired(self, level, user, score):
        """The clock moves past the key's TTL: that key is refused, a new one posts."""
        self.session_key(user)
        _, _, after = self.keys[user]
        self.jump(after + SESSION_TTL_S * SECOND_US)
        self.post(level, user, score, False)

    @rule(level=levels, data=st.data())
    def the_writer_posts_a_score_another_player_has(self, level, data):
        """A tie: the one who reached it first ranks first, whichever worker wrote each."""
        entries = self.models[level].seasons[-1].entries
        if entries:
            _, (score, _) = data.draw(st.sampled_from(sorted(entries.items())), label="other")
            self.post(level, data.draw(users, label="user"), score, True)

    @rule(
        level=levels,
        posts=st.lists(st.tuples(users, st.integers(0, 12)), min_size=14, max_size=20),
    )
    def a_crowd_posts(self, level, posts):
        for user, score in posts:
            self.post(level, user, score, True)

    # Rules and seasons

    def change_rules(self, level: int, changes: dict) -> None:
        model = self.models[level]
        try:
            model.change_rules(changes)
        except Rejected as rejected:
            path = f"/admin/levels/{level}/rules"
            status, text = call(self.server, "PUT", path, json.dumps(changes), ADMIN)
            expected = {"invalid": 400, "conflict": 409}[rejected.kind]
            assert status == expected, f"{changes} on {level}: {status} {text}"
        else:
            answer = self.admin("PUT", f"/admin/levels/{level}/rules", changes)
            self.check_rules_answer(level, answer)

    @rule(level=levels, data=st.data())
    def the_rules_change(self, level, data):
        self.change_rules(level, data.draw(rule_changes(self.zone), label="changes"))

    @rule(level=levels, which=st.sampled_from(["order", "keep", "both"]), then=st.booleans())
    def order_or_keep_change(self, level, which, then):
        """A 409 while the current season has scores; after a new season (then), none."""
        model = self.models[level]
        if then:
            self.a_season_is_started_by_hand(level)
        changes = {}
        if which in ("order", "both"):
            changes["order"] = "asc" if model.rules.order == "desc" else "desc"
        if which in ("keep", "both"):
            keeps = ["best", "latest", "sum"]
            changes["keep"] = keeps[(keeps.index(model.rules.keep) + 1) % 3]
        self.change_rules(level, changes)

    @rule(level=levels, field=st.sampled_from(["colour", "season", "Order"]))
    def an_unknown_field_changes_nothing(self, level, field):
        path = f"/admin/levels/{level}/rules"
        status, text = call(self.server, "PUT", path, json.dumps({field: "asc"}), ADMIN)
        assert status == 400, f"{field} on {level}: {status} {text}"

    @rule(level=levels)
    def a_season_is_started_by_hand(self, level):
        before = self.read_now()
        answer = self.admin("POST", f"/admin/levels/{level}/seasons")
        started = utc_us(answer["season_started"])
        assert before <= started <= self.read_now(), answer
        self.models[level].next_season(started)
        self.check_rules_answer(level, answer)

    # Reads

    def check_rules_answer(self, level: int, answer: dict) -> None:
        model = self.models[level]
        assert answer["level"] == level
        assert {name: answer[name] for name in vars(model.rules)} == vars(model.rules), answer
        assert answer["season"] == model.current, answer
        assert utc_us(answer["season_started"]) == model.seasons[-1].started_us, answer
        assert _instant(answer["season_ends"]) == model.ends_us(self.read_now()), answer

    @invariant()
    def each_levels_list_seasons_and_rules_are_the_models(self):
        if self.server is None:
            return
        for level, model in self.models.items():
            status, text = call(self.server, "GET", f"/{level}/highscorelist")
            assert (status, text) == (200, text_list(model.seasons[-1].top())), level
            listing = json_of(self.server, f"/{level}/seasons")
            assert listing["current"] == model.current, listing
            expected = [
                (
                    number,
                    season.started_us,
                    None if number == model.current else season.ended_us,
                    season.players(),
                )
                for number, season in enumerate(model.seasons, start=1)
            ]
            got = [
                (s["season"], utc_us(s["started"]), _instant(s["ended"]), s["players"])
                for s in listing["seasons"]
            ]
            assert got == expected, level
            self.check_rules_answer(level, self.admin("GET", f"/admin/levels/{level}/rules"))

    @rule(level=levels, data=st.data())
    def a_seasons_ranks_windows_and_pages_are_the_models(self, level, data):
        model = self.models[level]
        number = data.draw(st.integers(1, model.current), label="season")
        season = model.season(number)
        # The current season by default, or any season by its number.
        by_number = [f"season={number}"]
        for asked in (by_number, []) if number == model.current else (by_number,):
            status, text = call(self.server, "GET", with_query(f"/{level}/highscorelist", *asked))
            assert (status, text) == (200, text_list(season.top())), asked
            for user in USERS:
                rank = json_of(self.server, with_query(f"/{level}/rank/{user}", *asked))
                found = None if rank is None else (rank["rank"], rank["score"], rank["players"])
                assert found == season.rank(user), (asked, user)
                path = with_query(f"/{level}/highscorelist", f"around={user}", *asked)
                around = json_of(self.server, path)
                window = None if around is None else places(around)
                assert window == season.window_around(user), (asked, user)
            players = season.players()
            for first in sorted({2, PAGE, PAGE + 1, max(players, 1), players + 1}):
                path = with_query(f"/{level}/highscorelist", f"from={first}", *asked)
                assert places(json_of(self.server, path)) == season.window_from(first), path

    @rule(
        level=levels,
        data=st.data(),
        friends=st.lists(users, min_size=1, max_size=8) | st.just(list(USERS)),
    )
    def friends_are_the_models(self, level, data, friends):
        model = self.models[level]
        number = data.draw(st.integers(1, model.current), label="season")
        named = ",".join(map(str, friends + friends[:2]))  # duplicates count once
        listing = json_of(self.server, f"/{level}/highscorelist?users={named}&season={number}")
        assert places(listing) == model.season(number).entries_of(friends)

    @rule(level=levels)
    def seasons_that_do_not_exist_are_not_found(self, level):
        for number in (0, self.models[level].current + 1):
            for path in (
                f"/{level}/highscorelist?season={number}",
                f"/{level}/rank/0?season={number}",
            ):
                status, text = call(self.server, "GET", path)
                assert status == 404, f"{path}: {status} {text}"

    @rule(level=levels, data=st.data())
    def an_export_is_the_models_with_times_from_the_faked_clock(self, level, data):
        """Each entry was reached within its season, in the order the model's posts came."""
        model = self.models[level]
        number = data.draw(st.integers(1, model.current), label="season")
        season = model.season(number)
        path = f"/admin/levels/{level}/export?season={number}"
        status, text = call(self.server, "GET", path, None, ADMIN)
        assert status == 200, f"{path}: {status} {text}"
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(int(r["rank"]), int(r["userid"]), int(r["score"])) for r in rows] == (
            season.ordering()
        )
        reached = {int(row["userid"]): utc_us(row["reached_at"]) for row in rows}
        ended = season.ended_us if number < model.current else self.read_now()
        assert all(season.started_us <= at <= ended for at in reached.values()), reached
        assert sorted(reached, key=reached.get) == sorted(
            reached, key=lambda user: season.entries[user][1]
        )

    @invariant()
    def both_workers_answer(self):
        # Once a few dozen requests went out, each on a new connection, both took some.
        if self.server is not None and self.writes > 30 and not self.both_answered:
            access = r"\[scoresvc\.access\] \[(worker \d)\]"
            answered = set(re.findall(access, self.server.log_text()))
            assert answered == {"worker 1", "worker 2"}, answered
            self.both_answered = True


def _instant(text: str | None) -> int | None:
    """An instant the API wrote (ISO 8601, UTC), in µs; null stays None."""
    return None if text is None else utc_us(text)


def _local_day(day: str) -> int:
    """A log line's date (local to the servers, in whatever zone they run) as µs, near enough."""
    return utc_us(f"{day}T12:00:00+00:00")


def test_levels_with_rules_and_seasons_over_http_with_workers_are_those_of_the_model(tmp_path):
    class Here(HttpLeaderboardMachine):
        library = libfaketime()
        base = tmp_path

    run_state_machine_as_test(
        Here,
        settings=settings(
            max_examples=15,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
