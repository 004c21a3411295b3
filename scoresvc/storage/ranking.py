"""The statements that read places in a level's ordering, through the rank_counts tree.

The ordering is the high score list's: highest score first, then whoever reached it first,
then the lower user id; the ranking index holds the rows in that order. rank_counts (see
migration 0003) holds, per level, how many players have a best score in each range of scores
at four depths, so each statement reads a few hundred rows at most, whatever the level's size:
- a user's rank: the players in the higher siblings of each of the user's four nodes, plus
  those who reached the same score first;
- the places around a user: the rank says how many come before the user's entry, and both
  sides are read from the entry on in the ranking index;
- the places from a rank: down the tree, at each depth into the child whose running total
  passes the rank, to the exact score; then on in the ranking index.
Each is a single statement, so that PostgreSQL answers it in one round trip.
"""

from collections.abc import Callable, Sequence

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    Subquery,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from scoresvc.storage.schema import RANK_COUNT_SHIFTS, best_scores, rank_counts

WINDOW_SIZE = 15

_Order = Callable[[object], Sequence[ColumnElement]]


def _ahead_first(columns) -> Sequence[ColumnElement]:
    # The ordering, for any selectable with score, reached_at and user_id columns.
    return (columns.score.desc(), columns.reached_at, columns.user_id)


def _behind_first(columns) -> Sequence[ColumnElement]:
    # The ordering backwards: the ranking index read from its end.
    return (columns.score, columns.reached_at.desc(), columns.user_id.desc())


def _number(value: int) -> ColumnElement[int]:
    # Constants of the tree written into the SQL: the planner sees them, and no parameter's
    # type has to match an operator's.
    return literal_column(str(value), Integer)


def _value(column: ColumnElement) -> ColumnElement:
    # A one-row CTE's column, as a value anywhere in the statement.
    return select(column).scalar_subquery()


def _count_or_none(column: ColumnElement[int]) -> ColumnElement[int]:
    # A LIMIT from a one-row CTE: 0 when the CTE has no row (a LIMIT of NULL is an error).
    return func.coalesce(_value(column), _number(0))


def _with_parent_shifts() -> list[tuple[int | None, int]]:
    # Each depth's shift beside its parent's (None for depth 1, whose parent is the level).
    return list(zip((None, *RANK_COUNT_SHIFTS), RANK_COUNT_SHIFTS, strict=False))


def players_on_level() -> Select:
    """How many players have a score on :level_id (0 for none)."""
    return select(func.coalesce(func.sum(rank_counts.c.players), _number(0))).where(
        rank_counts.c.level_id == bindparam("level_id"), rank_counts.c.depth == _number(1)
    )


def top_of_level() -> Select:
    """user_id, score and the level's players: the first 15 places of :level_id."""
    return (
        select(best_scores.c.user_id, best_scores.c.score, players_on_level().scalar_subquery())
        .where(best_scores.c.level_id == bindparam("level_id"))
        .order_by(*_ahead_first(best_scores.c))
        .limit(WINDOW_SIZE)
    )


def rank_of_user() -> Select:
    """rank, score and the level's players of :user_id on :level_id; no row without a score."""
    me = best_scores.alias("me")
    return select(_rank(me), me.c.score, players_on_level().scalar_subquery()).where(
        me.c.level_id == bindparam("level_id"), me.c.user_id == bindparam("user_id")
    )


def _rank(me) -> ColumnElement[int]:
    """The place of the best_scores row me: one plus the players ahead of it."""
    ahead: ColumnElement[int] = _number(1)
    # 64 bits: past the last node of a depth comes 2**31, one more than a 32-bit integer holds.
    score = cast(me.c.score, BigInteger)
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(), start=1):
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
    other = best_scores.alias("other")
    reached_first = select(func.count()).where(
        other.c.level_id == me.c.level_id,
        other.c.score == me.c.score,
        tuple_(other.c.reached_at, other.c.user_id) < tuple_(me.c.reached_at, me.c.user_id),
    )
    return ahead + reached_first.scalar_subquery()


def window_around_user() -> Select:
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


def window_from_rank(size: int = WINDOW_SIZE, *, reached_at: bool = False) -> Select:
    """user_id, score and players of up to `size` places from :rank on :level_id.

    No row past the end. With reached_at, each row's reached_at comes after its score.
    """
    # Down the tree: at each depth, the child of the node above holding the rank-th player,
    # and how many players rank ahead of that child.
    node = None
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(), start=1):
        ahead_in_parent = (
            func.sum(rank_counts.c.players).over(order_by=rank_counts.c.prefix.desc())
            - rank_counts.c.players
        )
        conditions = [
            rank_counts.c.level_id == bindparam("level_id"),
            rank_counts.c.depth == _number(depth),
        ]
        ahead_of_parent: ColumnElement[int] = _number(0)
        if node is not None and parent_shift is not None:
            first_child = _value(node.c.prefix).bitwise_lshift(_number(parent_shift - shift))
            last_child = first_child + _number((1 << (parent_shift - shift)) - 1)
            conditions.append(rank_counts.c.prefix.between(first_child, last_child))
            ahead_of_parent = _value(node.c.ahead)
        children = (
            select(
                rank_counts.c.prefix,
                rank_counts.c.players,
                (ahead_of_parent + ahead_in_parent).label("ahead"),
            )
            .where(*conditions)
            .subquery(f"children_{depth}")
        )
        wanted = bindparam("rank")
        node = (
            select(children.c.prefix, children.c.ahead)
            .where(children.c.ahead < wanted, children.c.ahead + children.c.players >= wanted)
            .cte(f"node_{depth}")
        )
    score = _value(node.c.prefix)  # a node at the last depth is one score
    # Past the end there is no node: then no offset, and no score to read from.
    tied_ahead = bindparam("rank") - _number(1) - func.coalesce(_value(node.c.ahead), _number(0))
    on_level = best_scores.c.level_id == bindparam("level_id")
    columns = (best_scores.c.user_id, best_scores.c.score, best_scores.c.reached_at)
    tied = (
        select(*columns)
        .where(on_level, best_scores.c.score == score)
        .order_by(best_scores.c.reached_at, best_scores.c.user_id)
        .limit(size)
        .offset(tied_ahead)
        .subquery("tied")
    )
    lower = (
        select(*columns)
        .where(on_level, best_scores.c.score < score)
        .order_by(*_ahead_first(best_scores.c))
        .limit(size)
        .subquery("lower")
    )
    entries = union_all(select(tied), select(lower)).subquery("entries")
    returned = [entries.c.user_id, entries.c.score]
    if reached_at:
        returned.append(entries.c.reached_at)
    return (
        select(*returned, players_on_level().scalar_subquery())
        .order_by(*_ahead_first(entries.c))
        .limit(size)
    )


def _first_in_order(*parts: tuple[ColumnElement, ...], order: _Order, limit) -> Subquery:
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


def entries_of_users(count: int) -> Select:
    """user_id, score, rank and players of those of :user_0 .. :user_<count-1> who have a score
    on :level_id, in the level's order (unused parameters: a user id no player has, -1)."""
    me = best_scores.alias("me")
    users = [bindparam(f"user_{n}", type_=Integer) for n in range(count)]
    return (
        select(me.c.user_id, me.c.score, _rank(me), players_on_level().scalar_subquery())
        .where(me.c.level_id == bindparam("level_id"), me.c.user_id.in_(users))
        .order_by(*_ahead_first(me.c))
    )
