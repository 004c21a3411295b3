"""The whole app through WebTest, driven by random calls and compared with a plain model."""

import re
from urllib.parse import quote

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule, run_state_machine_as_test
from webtest import TestApp

from scoresvc import create_app
from scoresvc.numbers import MAX_UINT31
from scoresvc.settings import Settings
from tests.clock import FakeClock
from tests.databases import empty_tables

TTL = 600.0
levels = st.integers(0, 2)
users = st.integers(0, 19) | st.just(MAX_UINT31)
scores = st.integers(0, 30) | st.just(MAX_UINT31)
bad_numbers = st.sampled_from(["", "-1", "+5", " 5", "1_0", "1e3", "0x1", "2147483648", "\u0663"])
KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class AppModel(RuleBasedStateMachine):
    """Players log in, post and read; the model knows each key's user, age and standing."""

    store_tokens = False
    database_url = "sqlite://"  # a new memory database for each example
    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        settings = Settings(
            store_tokens=self.store_tokens, session_ttl=TTL, database_url=self.database_url
        )
        self.app = create_app(settings, clock=self.clock)
        self.client = TestApp(self.app, lint=True)
        self.best: dict[int, dict[int, tuple[int, int]]] = {}  # level -> user -> (score, order)
        self.issued: dict[str, tuple[int, float]] = {}  # key -> (user, time issued)
        self.newest: dict[int, str] = {}  # user -> newest key
        self.order = 0

    def teardown(self) -> None:
        self.app.close()

    def key_works(self, key: str) -> bool:
        user, issued_at = self.issued[key]
        fresh = self.clock.now < issued_at + TTL
        return fresh and (not self.store_tokens or self.newest[user] == key)

    @rule(target=keys, user=users, short_path=st.booleans())
    def log_in(self, user, short_path):
        key = self.client.get(f"/{user}/" if short_path else f"/{user}/login", status=200).text
        assert KEY.match(key) and key not in self.issued
        self.issued[key] = (user, self.clock.now)
        self.newest[user] = key
        return key

    @rule(key=keys, level=levels, score=scores, line_ending=st.sampled_from(["", "\n", "\r\n"]))
    def post_a_score(self, key, level, score, line_ending):
        works = self.key_works(key)
        self.client.post(
            f"/{level}/score?sessionkey={key}",
            f"{score}{line_ending}",
            status=200 if works else 401,
        )
        user = self.issued[key][0]
        previous = self.best.setdefault(level, {}).get(user)
        if works and (previous is None or score > previous[0]):
            self.order += 1
            self.best[level][user] = (score, self.order)

    @rule(key=keys, level=levels, body=bad_numbers)
    def post_a_malformed_score(self, key, level, body):
        # The key is checked before the body: a dead key is 401 whatever the body says.
        self.client.post(
            f"/{level}/score?sessionkey={key}", body, status=400 if self.key_works(key) else 401
        )

    @rule(key=keys, level=levels)
    def post_with_the_key_twice(self, key, level):
        self.client.post(f"/{level}/score?sessionkey={key}&sessionkey={key}", "1", status=401)

    @rule(key=keys, level=levels, position=st.integers(0, 79), replacement=st.sampled_from("A-_9"))
    def post_with_a_key_changed_in_one_place(self, key, level, position, replacement):
        position %= len(key)
        if key[position] == replacement:
            return
        forged = key[:position] + replacement + key[position + 1 :]
        self.client.post(f"/{level}/score?sessionkey={forged}", "1", status=401)

    @rule(level=levels, head=st.booleans())
    def read_the_list(self, level, head):
        entries = sorted(self.best.get(level, {}).items(), key=lambda e: (-e[1][0], e[1][1]))
        expected = ",".join(f"{user}={score}" for user, (score, _) in entries[:15])
        if head:
            response = self.client.head(f"/{level}/highscorelist", status=200)
            assert response.body == b""
            assert response.headers["Content-Length"] == str(len(expected))
        else:
            assert self.client.get(f"/{level}/highscorelist", status=200).text == expected

    @rule(level=bad_numbers)
    def read_the_list_of_a_malformed_level(self, level):
        self.client.get(f"/{quote(level)}/highscorelist", status=400)

    @rule(seconds=st.sampled_from([1.0, 299.5, 599.999, 600.0]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)


class StoredKeysAppModel(AppModel):
    store_tokens = True


SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestTheAppWithSignedKeysBehavesLikeTheModel = AppModel.TestCase
TestTheAppWithSignedKeysBehavesLikeTheModel.settings = SETTINGS
TestTheAppWithStoredKeysBehavesLikeTheModel = StoredKeysAppModel.TestCase
TestTheAppWithStoredKeysBehavesLikeTheModel.settings = SETTINGS


@pytest.mark.parametrize("store_tokens", [False, True], ids=["signed-keys", "stored-keys"])
def test_the_app_on_postgresql_behaves_like_the_model(migrated_postgresql_url, store_tokens):
    class OnPostgreSQL(AppModel):
        database_url = migrated_postgresql_url

        def __init__(self) -> None:
            empty_tables(self.database_url)  # each example starts from an empty database
            super().__init__()

    OnPostgreSQL.store_tokens = store_tokens
    run_state_machine_as_test(OnPostgreSQL, settings=settings(SETTINGS, max_examples=10))
