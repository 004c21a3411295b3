"""The statements that read places in a level's ordering, through the rank_counts tree.

The ordering is the high score list's: highest score first, then whoever reached it first,
then the lower user id; the ranking index holds the rows in that order. rank_counts (see
migration 0003) holds, per level, how many players have a best score in each range of scores
at four depths, so each statement reads a few hundred rows at most, whatever the level's size:
- a user's rank: the players in the higher siblings of each of the user's four nodes, plus
  those who reached the same score first;
- those who reached a score first: on a crowded score (migration 0006), the players in the
  earlier siblings of the user's seven nodes in tie_counts, the tree of the score's players by
  reached_at, and those with the same reached_at and a lower user id; on any other score,
  fewer than CROWDED_SCORE players, counted in the ranking index;
- the places around a user: the rank says how many come before the user's entry, and both
  sides are read from the entry on in the ranking index;
- the places from a rank: down the tree, at each depth into the child whose running total
  passes the rank, to the exact score; on a crowded score on down its tie tree to the exact
  reached_at; then on in the ranking index.
Each is a single statement, so that PostgreSQL answers it in one round trip.
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    CTE,
    BigInteger,
    FromClause,
    Integer,
    Select,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement

from scoresvc.storage.schema import (
    RANK_COUNT_SHIFTS,
    TIE_COUNT_SHIFTS,
    best_scores,
    level_rules,
    rank_counts,
    tie_counts,
)

WINDOW_SIZE = 15

_T = TypeVar("_T")
# The columns of a table, subquery or CTE (.c).
_Columns = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]
_Order = Callable[[_Columns], Sequence[ColumnElement[Any]]]


def _ahead_first(columns: _Columns) -> Sequence[ColumnElement[Any]]:
    # The ordering, for any selectable with score, reached_at and user_id columns.
    return (columns.score.desc(), columns.reached_at, columns.user_id)


def _behind_first(columns: _Columns) -> Sequence[ColumnElement[Any]]:
    # The ordering backwards: the ranking index read from its end.
    return (columns.score, columns.reached_at.desc(), columns.user_id.desc())


def _number(value: int) -> ColumnElement[int]:
    # Constants of the tree written into the SQL: the planner sees them, and no parameter's
    # type has to match an operator's.
    return literal_column(str(value), Integer)


def _value(column: ColumnElement[_T]) -> ColumnElement[_T]:
    # A one-row CTE's column, as a value anywhere in the statement.
    return select(column).scalar_subquery()


def _count_or_none(column: ColumnElement[int]) -> ColumnElement[int]:
    # A LIMIT from a one-row CTE: 0 when the CTE has no row (a LIMIT of NULL is an error).
    return func.coalesce(_value(column), _number(0))


# Before every reached_at: where a scan of a score's players starts when it has no tie tree.
_EARLIEST = literal_column("(-9223372036854775807 - 1)", BigInteger)


def _with_parent_shifts(shifts: tuple[int, ...]) -> list[tuple[int | None, int]]:
    # Each depth's shift beside its parent's (None for depth 1, whose parent is the root).
    return list(zip((None, *shifts), shifts, strict=False))


def _is_crowded(level_id: ColumnElement[int], score: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether the score has a tie tree: CROWDED_SCORE of the level's players held it."""
    # Correlated with whatever level_id and score come from, however deep it is nested.
    root = exists().where(
        tie_counts.c.level_id == level_id,
        tie_counts.c.score == score,
        tie_counts.c.depth == _number(0),
        tie_counts.c.prefix == _number(0),
    )
    return root.correlate_except(tie_counts)


def players_on_level() -> Select[int]:
    """How many players have a score on :level_id (0 for none)."""
    return select(func.coalesce(func.sum(rank_counts.c.players), _number(0))).where(
        rank_counts.c.level_id == bindparam("level_id"), rank_counts.c.depth == _number(1)
    )


def top_of_level() -> Select[int, int, int, int | None]:
    """user_id, score, the level's players and the stored version of the rules of
    :rules_level (the level whose board :level_id is; None without rules): the first 15
    places of :level_id.

    The version lets a replica that kept the level's rules in memory confirm, in the same
    round trip, that they were still the level's (see Levels.confirm).
    """
    rules_version = select(level_rules.c.version).where(
        level_rules.c.level_id == bindparam("rules_level", type_=Integer)
    )
    return (
        select(
            best_scores.c.user_id,
            best_scores.c.score,
            players_on_level().scalar_subquery(),
            rules_version.scalar_subquery(),
        )
        .where(best_scores.c.level_id == bindparam("level_id"))
        .order_by(*_ahead_first(best_scores.c))
        .limit(WINDOW_SIZE)
    )


def rank_of_user() -> Select[int, int, int]:
    """rank, score and the level's players of :user_id on :level_id; no row without a score."""
    me = best_scores.alias("me")
    return select(_rank(me), me.c.score, players_on_level().scalar_subquery()).where(
        me.c.level_id == bindparam("level_id"), me.c.user_id == bindparam("user_id")
    )


def _rank(me: FromClause) -> ColumnElement[int]:
    """The place of the best_scores row me: one plus the players ahead of it."""
    ahead: ColumnElement[int] = _number(1)
    # 64 bits: past the last node of a depth comes 2**31, one more than a 32-bit integer holds.
    score = cast(me.c.score, BigInteger)
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(RANK_COUNT_SHIFTS), 1):
        higher_siblings = [
            rank_counts.c.level_id == me.c.level_id,
            rank_counts.c.depth == _number(depth),
            rank_counts.c.prefix > score.bitwise_rshift(_number(shift)),
        ]
        if parent_shift is not None:
            # Siblings share the parent: prefixes up to the parent's next one, exclusive.
            next_parent = score.bitwise_rshift(_number(parent_shift)) + _number(1)
            higher_siblings.append(
                rank_counts.c.prefix < next_parent.bitwise_lshift(_number(parent_shift - shift))
            )
        players = select(func.sum(rank_counts.c.players)).where(*higher_siblings)
        ahead = ahead + func.coalesce(players.scalar_subquery(), _number(0))
    return ahead + _reached_first(me)


def _reached_first(me: FromClause) -> ColumnElement[int]:
    """How many players reached the score of the best_scores row me before it."""
    crowded = _is_crowded(me.c.level_id, me.c.score)
    reached_at = me.c.reached_at
    earlier: ColumnElement[int] = _number(0)
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(TIE_COUNT_SHIFTS), 1):
        earlier_siblings = [
            tie_counts.c.level_id == me.c.level_id,
            tie_counts.c.score == me.c.score,
            tie_counts.c.depth == _number(depth),
            tie_counts.c.prefix < reached_at.bitwise_rshift(_number(shift)),
        ]
        if parent_shift is not None:
            # Siblings share the parent: prefixes from the parent's first child on.
            parent = reached_at.bitwise_rshift(_number(parent_shift))
            earlier_siblings.append(
                tie_counts.c.prefix >= parent.bitwise_lshift(_number(parent_shift - shift))
            )
        players = select(func.sum(tie_counts.c.players)).where(*earlier_siblings)
        earlier = earlier + func.coalesce(players.scalar_subquery(), _number(0))
    # The rest are in the ranking index: on a crowded score those with the same reached_at,
    # on another all the score's players (fewer than CROWDED_SCORE).
    other = best_scores.alias("other")
    scanned = select(func.count()).where(
        other.c.level_id == me.c.level_id,
        other.c.score == me.c.score,
        other.c.reached_at >= case((crowded, me.c.reached_at), else_=_EARLIEST),
        tuple_(other.c.reached_at, other.c.user_id) < tuple_(me.c.reached_at, me.c.user_id),
    )
    return case((crowded, earlier), else_=_number(0)) + scanned.scalar_subquery()


def window_around_user() -> Select[int, int, int, int]:
    """user_id, score, first rank and players of the 15 places around :user_id on :level_id.

    Seven places come before the user's (fewer at the top, more at the bottom): read backwards
    from the user's entry in the ranking index, the rest forwards from it. No row when the
    user has no score.
    """
    me = best_scores.alias("me")
    found = (
        select(me.c.score, me.c.reached_at, me.c.user_id)
        .add_columns(_rank(me).label("rank"), players_on_level().scalar_subquery().label("players"))
        .where(me.c.level_id == bindparam("level_id"), me.c.user_id == bindparam("user_id"))
        .cte("found")  # read several times below: computed once
    )
    # first = max(1, min(rank - 7, players - 14)), as CASE: both databases have that.
    centred = found.c.rank - _number(WINDOW_SIZE // 2)
    last_full = found.c.players - _number(WINDOW_SIZE - 1)
    first = case((centred < last_full, centred), else_=last_full)
    first = case((first < _number(1), _number(1)), else_=first)
    score = _value(found.c.score)
    key = tuple_(_value(found.c.reached_at), _value(found.c.user_id))
    entry_key = tuple_(best_scores.c.reached_at, best_scores.c.user_id)
    before = _first_in_order(
        (best_scores.c.score == score, entry_key < key),
        (best_scores.c.score > score,),
        order=_behind_first,
        limit=_count_or_none(found.c.rank - first),
    )
    from_user = _first_in_order(
        (best_scores.c.score == score, entry_key >= key),
        (best_scores.c.score < score,),
        order=_ahead_first,
        limit=_count_or_none(_number(WINDOW_SIZE) - found.c.rank + first),
    )
    entries = union_all(select(before), select(from_user)).subquery("entries")
    return select(
        entries.c.user_id, entries.c.score, _value(first), _value(found.c.players)
    ).order_by(*_ahead_first(entries.c))


def window_from_rank(
    size: int = WINDOW_SIZE, *, reached_at: bool = False
) -> Select[*tuple[int, ...]]:
    """user_id, score and players of up to `size` places from :rank on :level_id.

    No row past the end. With reached_at, each row's reached_at comes after its score.
    """
    # Down the score tree to the exact score of the rank-th player.
    ranked = select(_number(0).label("ahead"), bindparam("rank", type_=Integer).label("wanted"))
    node = _descend(ranked.cte("ranked"), rank_counts, RANK_COUNT_SHIFTS, name="node")
    score = _value(node.c.prefix)  # a node at the last depth is one score
    # Past the end there is no node: then no offset, and no score to read from.
    tied_ahead: ColumnElement[int] = (
        bindparam("rank") - _number(1) - func.coalesce(_value(node.c.ahead), _number(0))
    )
    # On a crowded score, on down its tie tree to the exact reached_at of that player.
    tied = select(
        node.c.prefix.label("score"),
        _number(0).label("ahead"),
        (bindparam("rank") - node.c.ahead).label("wanted"),
    )
    time_node = _descend(tied.cte("tied"), tie_counts, TIE_COUNT_SHIFTS, name="time")
    since = func.coalesce(_value(time_node.c.prefix), _EARLIEST)
    skipped = tied_ahead - func.coalesce(_value(time_node.c.ahead), _number(0))
    on_level = best_scores.c.level_id == bindparam("level_id")
    columns = (best_scores.c.user_id, best_scores.c.score, best_scores.c.reached_at)
    tied_entries = (
        select(*columns)
        .where(on_level, best_scores.c.score == score, best_scores.c.reached_at >= since)
        .order_by(best_scores.c.reached_at, best_scores.c.user_id)
        .limit(size)
        .offset(skipped)
        .subquery("tied_entries")
    )
    lower = (
        select(*columns)
        .where(on_level, best_scores.c.score < score)
        .order_by(*_ahead_first(best_scores.c))
        .limit(size)
        .subquery("lower")
    )
    entries = union_all(select(tied_entries), select(lower)).subquery("entries")
    returned = [entries.c.user_id, entries.c.score]
    if reached_at:
        returned.append(entries.c.reached_at)
    return (
        select(*returned, players_on_level().scalar_subquery())
        .order_by(*_ahead_first(entries.c))
        .limit(size)
    )


def _descend(start: CTE, counts: Table, shifts: tuple[int, ...], *, name: str) -> CTE:
    """Down a tree of counts (rank_counts, tie_counts) to the node at its last depth holding
    the wanted-th player of its order, from the one-row CTE start (columns ahead, wanted and,
    for tie_counts, the score): a one-row CTE of the node's prefix and the players before it
    (those before start's, and those before it within), or none when no node holds them.

    At each depth the children of the node above, in the order (higher scores, then earlier
    times first), with a running total of the players before each. Each depth reads the one
    above once, so that the statement grows with the depths, not with their powers: joined
    on the left, which SQLite keeps as the outer loop (one row), so that each depth is one
    range of the counts' primary key.
    """
    within_score = counts is tie_counts
    in_order = counts.c.prefix if within_score else counts.c.prefix.desc()
    parent = start
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(shifts), 1):
        conditions = [counts.c.level_id == bindparam("level_id"), counts.c.depth == _number(depth)]
        carried = [parent.c.wanted]
        if within_score:
            conditions.append(counts.c.score == parent.c.score)
            carried.append(parent.c.score)
        if parent_shift is not None:
            first_child = parent.c.prefix.bitwise_lshift(_number(parent_shift - shift))
            last_child = first_child + _number((1 << (parent_shift - shift)) - 1)
            conditions.append(counts.c.prefix.between(first_child, last_child))
        ahead_within = func.sum(counts.c.players).over(order_by=in_order) - counts.c.players
        children = (
            select(
                counts.c.prefix,
                counts.c.players,
                (parent.c.ahead + ahead_within).label("ahead"),
                *carried,
            )
            .select_from(parent.outerjoin(counts, and_(*conditions)))
            .subquery(f"{name}_children_{depth}")
        )
        parent = (
            select(children.c.prefix, children.c.ahead, *(children.c[c.name] for c in carried))
            .where(
                children.c.ahead < children.c.wanted,
                children.c.ahead + children.c.players >= children.c.wanted,
            )
            .cte(f"{name}_{depth}")
        )
    return parent


def _first_in_order(
    *parts: tuple[ColumnElement[bool], ...], order: _Order, limit: ColumnElement[int]
) -> Subquery:
    """The first `limit` rows of the level, in `order`, among the parts (each a WHERE).

    Each part is a range of the ranking index, read in order and cut at 15 on its own, so
    that every one is an index range scan on either database.
    """
    on_level = best_scores.c.level_id == bindparam("level_id")
    columns = (best_scores.c.user_id, best_scores.c.score, best_scores.c.reached_at)
    ranges = [
        select(*columns)
        .where(on_level, *conditions)
        .order_by(*order(best_scores.c))
        .limit(WINDOW_SIZE)
        .subquery()
        for conditions in parts
    ]
    merged = union_all(*(select(part) for part in ranges)).subquery()
    return select(merged).order_by(*order(merged.c)).limit(limit).subquery()


def entries_of_users(count: int) -> Select[int, int, int, int]:
    """user_id, score, rank and players of those of :user_0 .. :user_<count-1> who have a score
    on :level_id, in the level's order (unused parameters: a user id no player has, -1)."""
    me = best_scores.alias("me")
    users = [bindparam(f"user_{n}", type_=Integer) for n in range(count)]
    # Each user found by the primary key, then ranked: ordered in the same SELECT, the rows
    # would be read in the ranking index's order, the whole level, to save sorting a few.
    found = (
        select(me.c.user_id, me.c.score, _rank(me).label("rank"))
        .where(me.c.level_id == bindparam("level_id"), me.c.user_id.in_(users))
        .cte("found")
        .prefix_with("MATERIALIZED")
    )
    return select(
        found.c.user_id, found.c.score, found.c.rank, players_on_level().scalar_subquery()
    ).order_by(found.c.rank)
