"""A plain model of a level's ordering, and score strategies that stress a ranking structure.

The ordering is the contract's: highest score first, then whoever reached it first, then the
lower user id (two scores reached in the same microsecond). The model keeps each user's best as
(score, reached), where reached is anything that orders: a counter of improving posts, or the
`reached_at` the database gave.
"""

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from scoresvc.numbers import MAX_UINT31

PAGE = 15  # entries in a list, a page and a window
ABOVE = 7  # entries above a user's own in the window around it (and as many below)

# Where a structure that splits scores by bits or bytes has its edges: powers of two, multiples
# of 2^8, 2^16 and 2^24 (the first few, and the last ones below the top), and the extremes.
BOUNDARY_BASES = sorted(
    {0, MAX_UINT31}
    | {2**k for k in range(31)}
    | {step * count for step in (2**8, 2**16, 2**24) for count in (1, 2, 3, 127, 128, 255, 256)}
    | {MAX_UINT31 // step * step for step in (2**8, 2**16, 2**24)}
)
BOUNDARIES = sorted(
    {
        base + offset
        for base in BOUNDARY_BASES
        for offset in (-2, -1, 0, 1, 2)
        if 0 <= base + offset <= MAX_UINT31
    }
)

scores = st.one_of(
    st.integers(0, 3),  # tiny: ties among many players
    st.sampled_from(BOUNDARIES),  # at and beside the edges
    st.integers(0, MAX_UINT31),  # anywhere
    st.integers(MAX_UINT31 - 3, MAX_UINT31),  # at the very top
    st.integers(2**16 - 3, 2**16 + 3),  # a cluster across 2^16
)


def next_boundary_above(score: int, kind: str) -> int:
    """The first power of two (kind "2^k") or multiple of kind ("256"...) above score."""
    if kind == "2^k":
        return 1 << score.bit_length()
    step = int(kind)
    return (score // step + 1) * step


BOUNDARY_KINDS = ("2^k", "256", "65536", "16777216")

LEVELS = (0, 1, 7, MAX_UINT31)
# Enough users for a level of 30 players, few enough that they meet again and again.
USERS = (*range(34), MAX_UINT31)
levels = st.sampled_from(LEVELS)
users = st.sampled_from(USERS)
# Levels of these sizes have each end of a window, and of a page, at each place.
CROWD_SIZES = (0, 1, 14, 15, 16, 30)


def crowd_scores(size: int):
    """size scores: all different, all equal, or a mix of three values."""
    return st.one_of(
        st.lists(scores, min_size=size, max_size=size),
        scores.map(lambda score: [score] * size),
        st.lists(st.integers(0, 2), min_size=size, max_size=size),
    )


class RankingModel:
    """Each level's best scores as {level: {user: (score, reached)}}, and what follows."""

    def __init__(self) -> None:
        self.best: dict[int, dict[int, tuple[int, int]]] = {}
        self._orderings: dict[int, list[tuple[int, int, int]]] = {}

    def beats(self, level: int, user: int, score: int) -> bool:
        """Whether score would become the user's best on the level."""
        previous = self.best.get(level, {}).get(user)
        return previous is None or score > previous[0]

    def post(self, level: int, user: int, score: int, reached: int) -> bool:
        """Keep score as the user's best if it beats it (reached: when); whether it did."""
        if not self.beats(level, user, score):
            return False
        self.best.setdefault(level, {})[user] = (score, reached)
        self._orderings.pop(level, None)
        return True

    def ordering(self, level: int) -> list[tuple[int, int, int]]:
        """The level's whole ordering as (rank, user, score), rank 1 first."""
        if level not in self._orderings:
            users = self.best.get(level, {})
            ordered = sorted(users, key=lambda user: (-users[user][0], users[user][1], user))
            self._orderings[level] = [
                (rank, user, users[user][0]) for rank, user in enumerate(ordered, start=1)
            ]
        return self._orderings[level]

    def players(self, level: int) -> int:
        return len(self.best.get(level, {}))

    def rank(self, level: int, user: int) -> tuple[int, int, int] | None:
        """(rank, score, players), or None for a user with no score on the level."""
        for rank, other, score in self.ordering(level):
            if other == user:
                return (rank, score, self.players(level))
        return None

    def window_from(self, level: int, first: int) -> tuple[tuple[tuple[int, int, int], ...], int]:
        """(the PAGE entries from rank first on, players)."""
        return (tuple(self.ordering(level)[first - 1 : first - 1 + PAGE]), self.players(level))

    def window_around(self, level: int, user: int):
        """(PAGE entries, the user's with ABOVE above and below, shifted at the ends, players)."""
        found = self.rank(level, user)
        if found is None:
            return None
        first = found[0] - ABOVE
        first = min(first, self.players(level) - PAGE + 1)  # shifted up at the bottom
        first = max(first, 1)  # shifted down at the top
        window = self.window_from(level, first)
        assert (found[0], user, found[1]) in window[0]
        assert len(window[0]) == min(PAGE, self.players(level))
        return window

    def top(self, level: int) -> list[tuple[int, int]]:
        """The high score list: (user, score) of the first PAGE places."""
        return [(user, score) for _, user, score in self.ordering(level)[:PAGE]]


class PostingRules:
    """The rules that post scores, for a state machine with post() and a RankingModel, model.

    post(level, [(user, score), ...]) records each score in turn, checks that it was accepted
    and teaches the model. The rules make ties, small improvements, improvements across the
    edges of BOUNDARY_KINDS, posts that are no better, and crowds of CROWD_SIZES players.
    """

    model: RankingModel

    def post(self, level: int, posts: list[tuple[int, int]]) -> None:
        raise NotImplementedError

    def a_player_of(self, level: int, data) -> tuple[int, int] | None:
        """(user, best score) of a random player of the level, or None if it has none."""
        players = sorted(self.model.best.get(level, {}).items())
        if not players:
            return None
        user, (score, _) = data.draw(st.sampled_from(players), label="player")
        return user, score

    def crowd(self, level: int, size: int, data) -> None:
        first = data.draw(st.sampled_from([0, len(USERS) - 1 - size]), label="first user")
        crowd = zip(
            range(first, first + size), data.draw(crowd_scores(size), label="scores"), strict=True
        )
        self.post(level, list(crowd))

    @initialize(level=levels, size=st.sampled_from(CROWD_SIZES), data=st.data())
    def a_level_starts_with_a_crowd(self, level, size, data):
        self.crowd(level, size, data)

    @rule(level=levels, size=st.sampled_from(CROWD_SIZES), data=st.data())
    def a_crowd_posts(self, level, size, data):
        self.crowd(level, size, data)

    @rule(level=levels, user=users, score=scores)
    def a_player_posts(self, level, user, score):
        self.post(level, [(user, score)])

    @rule(level=levels, user=users, data=st.data())
    def a_player_reaches_another_players_score(self, level, user, data):
        other = self.a_player_of(level, data)
        if other is not None:
            self.post(level, [(user, other[1])])

    @rule(level=levels, data=st.data(), step=st.integers(1, 2))
    def a_player_improves_a_little(self, level, data, step):
        found = self.a_player_of(level, data)
        if found is not None:
            self.post(level, [(found[0], min(found[1] + step, MAX_UINT31))])

    @rule(
        level=levels,
        data=st.data(),
        kind=st.sampled_from(BOUNDARY_KINDS),
        offset=st.sampled_from([-1, 0, 1]),
    )
    def a_player_improves_across_a_boundary(self, level, data, kind, offset):
        found = self.a_player_of(level, data)
        if found is not None:
            user, score = found
            target = next_boundary_above(score, kind) + offset
            self.post(level, [(user, min(max(target, score + 1), MAX_UINT31))])

    @rule(level=levels, data=st.data(), less=st.integers(0, 3))
    def a_player_posts_no_better(self, level, data, less):
        found = self.a_player_of(level, data)
        if found is not None:
            self.post(level, [(found[0], max(found[1] - less, 0))])

    def first_ranks(self, level: int, data) -> list[int]:
        """Ranks to read pages from: both ends, each side of them, far past the end, any."""
        players = self.model.players(level)
        firsts = {1, 2, PAGE, PAGE + 1, players + 1, players + PAGE, MAX_UINT31}
        firsts |= {first for first in (players, players - PAGE + 1, players - PAGE) if first >= 1}
        firsts.add(data.draw(st.integers(1, players + 20), label="first"))
        return sorted(firsts)
