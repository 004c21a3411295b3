"""Ranks, windows, pages and lists over HTTP, in text and JSON, against a plain model; ETags.

Players log in and post (ties, small improvements, improvements across powers of two and
multiples of 2^8, 2^16 and 2^24, crowds of 0, 1, 14, 15, 16 and 30 players); every read is
compared with tests.rankingmodel, in the variant its Accept header asks for. Every list and rank
answer says Vary: Accept; every 200 carries an ETag that, for one request and variant, changes
exactly when the body does, means one body only, is never a tag of the other variant, and
revalidates: If-None-Match with it (as is, weak, in a list, or *) is a 304 with no body, with
an older one a 200 with the current body.
"""

import itertools
import json
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from webtest import TestApp, TestResponse

from scoresvc import create_app
from scoresvc.settings import Settings
from tests.clock import FakeClock
from tests.databases import empty_tables
from tests.rankingmodel import USERS, PostingRules, RankingModel, levels, users

TEXT_TYPE = "text/plain; charset=utf-8"
# Accept headers of each variant: the defaults, preferences by q-value, wildcards.
TEXT_ACCEPTS = (
    None,
    "*/*",
    "text/plain",
    "text/plain, application/json;q=0.5",
    "application/json;q=0.1, text/*",
    "text/html, */*;q=0.1",  # equal weights: text
)
JSON_ACCEPTS = (
    "application/json",
    "application/json, text/plain;q=0.5",
    "text/plain;q=0.2, application/*",
    "application/json;q=1.0, */*;q=0.1",
)
accepts = st.sampled_from(TEXT_ACCEPTS + JSON_ACCEPTS)
# How a client names the tag it holds in If-None-Match.
REVALIDATIONS = ("as sent", "weak", "in a list", "star")
revalidations = st.sampled_from(REVALIDATIONS)
SCORE_LINE_ENDINGS = ("", "\n", "\r\n")


def vary_names(response: TestResponse) -> set[str]:
    """The header names of every Vary header, lower-cased."""
    values = response.headers.getall("Vary")
    return {name.strip().lower() for value in values for name in value.split(",")}


def if_none_match(etag: str, form: str) -> str:
    if form == "weak":
        return f"W/{etag}"
    if form == "in a list":
        return f'"not-this-one", {etag}, W/"nor-this"'
    if form == "star":
        return "*"
    return etag


class PlayersViewMachine(PostingRules, RuleBasedStateMachine):
    """The app over HTTP and RankingModel, fed the same posts, agree on every read."""

    store_tokens = False

    def database_url(self) -> str:
        return "sqlite://"  # a new memory database for each example

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        settings = Settings(
            store_tokens=self.store_tokens,
            database_url=self.database_url(),
            # A crowd posts for the same users again and again on a clock that stands still.
            post_limit="0",
        )
        self.app = create_app(settings, clock=self.clock)
        self.client = TestApp(self.app, lint=True)
        self.model = RankingModel()
        self.keys: dict[int, str] = {}
        self.posts = 0  # the model's reached order: the count of posts answered so far
        self.last_seen: dict[tuple[str, str], tuple[str, bytes]] = {}  # (url, variant): tag, body
        self.bodies_of: dict[tuple[str, str], bytes] = {}  # (url, ETag): the body it stood for
        self.variant_of: dict[str, str] = {}  # ETag: the variant it was sent with

    def teardown(self) -> None:
        self.app.close()

    # Writes.

    def key(self, user: int) -> str:
        if user not in self.keys:
            self.keys[user] = self.client.get(f"/{user}/login", status=200).text
        return self.keys[user]

    def post(self, level: int, posts: list[tuple[int, int]]) -> None:
        for user, score in posts:
            ending = SCORE_LINE_ENDINGS[self.posts % len(SCORE_LINE_ENDINGS)]
            url = f"/{level}/score?sessionkey={self.key(user)}"
            self.client.post(url, f"{score}{ending}", status=200)
            self.posts += 1
            self.model.post(level, user, score, self.posts)

    @rule(user=users)
    def a_player_logs_in_again(self, user):
        # In stored-key mode this ends the previous key: the next posts use the new one.
        self.keys.pop(user, None)
        self.key(user)

    @rule(user=users)
    def a_client_asks_for_a_login_with_head(self, user):
        # HEAD issues no key: the user's key (in stored mode, the newest) goes on posting.
        assert self.client.head(f"/{user}/login", status=200).body == b""

    # Reads.

    def get(self, url: str, accept: str | None, status: int, form: str) -> TestResponse:
        """GET url with accept; check the variant, Vary, and for a 200 its ETag throughout."""
        as_json = accept in JSON_ACCEPTS
        response = self.client.get(url, headers={"Accept": accept} if accept else {}, status="*")
        assert response.status_int == status, (url, response.status, response.body)
        assert "accept" in vary_names(response), url
        if status != 200:
            expected_type = "application/problem+json" if as_json else TEXT_TYPE
            assert response.headers["Content-Type"] == expected_type
            if as_json:
                assert response.json["status"] == status
            return response
        assert response.headers["Content-Type"] == ("application/json" if as_json else TEXT_TYPE)
        assert response.headers["Cache-Control"] == "no-cache"
        self.check_etag(url, accept, response, form)
        return response

    def check_etag(self, url: str, accept: str | None, response: TestResponse, form: str):
        variant = "json" if accept in JSON_ACCEPTS else "text"
        etag, body = response.headers["ETag"], response.body
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
        # One tag, one variant: text and JSON never share one.
        assert self.variant_of.setdefault(etag, variant) == variant, (url, etag)
        # One tag, one body, for this request, ever (a strong validator).
        assert self.bodies_of.setdefault((url, etag), body) == body, (url, etag)
        # The tag changes exactly when the body does.
        previous = self.last_seen.get((url, variant))
        self.last_seen[(url, variant)] = (etag, body)
        if previous is not None:
            assert (previous[0] == etag) == (previous[1] == body), (url, previous, etag, body)
        headers = {"Accept": accept} if accept else {}
        # The client's copy is current: 304, no body, the same tag, still Vary: Accept.
        revalidated = self.client.get(
            url, headers={**headers, "If-None-Match": if_none_match(etag, form)}, status=304
        )
        assert revalidated.body == b""
        assert revalidated.headers["ETag"] == etag
        assert "accept" in vary_names(revalidated)
        # The client's copy is an older one: the current body, with its tag.
        if previous is not None and previous[0] != etag:
            fresh = self.client.get(url, headers={**headers, "If-None-Match": previous[0]})
            assert fresh.status_int == 200
            assert (fresh.headers["ETag"], fresh.body) == (etag, body)

    def expect_list(self, response: TestResponse, accept, level: int, window) -> None:
        entries, players = window
        if accept in JSON_ACCEPTS:
            assert json.loads(response.body) == {
                "level": level,
                "players": players,
                "entries": [
                    {"rank": rank, "user": user, "score": score} for rank, user, score in entries
                ],
            }
        else:
            assert response.text == ",".join(f"{user}={score}" for _, user, score in entries)

    @rule(level=levels, accept=accepts, form=revalidations)
    def every_users_rank_is_the_models(self, level, accept, form):
        for user in USERS:
            found = self.model.rank(level, user)
            response = self.get(
                f"/{level}/rank/{user}", accept, 404 if found is None else 200, form
            )
            if found is None:
                continue
            rank, score, players = found
            if accept in JSON_ACCEPTS:
                assert json.loads(response.body) == {
                    "level": level,
                    "user": user,
                    "rank": rank,
                    "score": score,
                    "players": players,
                }
            else:
                assert response.body == str(rank).encode()

    @rule(level=levels, accept=accepts, form=revalidations)
    def the_window_around_every_user_is_the_models(self, level, accept, form):
        for user in USERS:
            window = self.model.window_around(level, user)
            url = f"/{level}/highscorelist?around={user}"
            response = self.get(url, accept, 404 if window is None else 200, form)
            if window is not None:
                self.expect_list(response, accept, level, window)

    @rule(level=levels, accept=accepts, form=revalidations, data=st.data())
    def pages_from_anywhere_are_the_models(self, level, accept, form, data):
        for first in self.first_ranks(level, data):
            response = self.get(f"/{level}/highscorelist?from={first}", accept, 200, form)
            self.expect_list(response, accept, level, self.model.window_from(level, first))

    @rule(level=levels, accept=accepts, form=revalidations)
    def the_list_is_the_models_and_head_answers_as_get(self, level, accept, form):
        url = f"/{level}/highscorelist"
        response = self.get(url, accept, 200, form)
        self.expect_list(response, accept, level, self.model.window_from(level, 1))
        head = self.client.head(url, headers={"Accept": accept} if accept else {}, status=200)
        assert head.body == b""
        for name in ("Content-Type", "Content-Length", "ETag", "Cache-Control", "Vary"):
            assert head.headers.get(name) == response.headers.get(name), name


KEY_MODES = pytest.mark.parametrize("store_tokens", [False, True], ids=["signed", "stored"])
SETTINGS = settings(max_examples=25, stateful_step_count=30, deadline=None)


def run_on(database_url, store_tokens: bool, examples: int) -> None:
    """Run the machine, each example on the database database_url() gives."""

    class Machine(PlayersViewMachine):
        def database_url(self) -> str:
            return database_url()

    Machine.store_tokens = store_tokens
    run_state_machine_as_test(Machine, settings=settings(SETTINGS, max_examples=examples))


@KEY_MODES
def test_the_players_view_in_memory_is_the_models(store_tokens):
    run_on(lambda: "sqlite://", store_tokens, examples=40)


@KEY_MODES
def test_the_players_view_on_a_file_is_the_models(store_tokens):
    with tempfile.TemporaryDirectory(prefix="scoresvc-players-view-") as folder:
        numbers = itertools.count()  # a new file for each example
        run_on(lambda: f"sqlite:///{folder}/{next(numbers)}.db", store_tokens, examples=15)


@KEY_MODES
def test_the_players_view_on_postgresql_is_the_models(migrated_postgresql_url, store_tokens):
    def emptied() -> str:
        empty_tables(migrated_postgresql_url)  # each example starts from an empty database
        return migrated_postgresql_url

    run_on(emptied, store_tokens, examples=10)
