"""The statements that find places in a level's ordering through the rank_counts tree.

The ordering is the high score list's: highest score first, then whoever reached it first,
then the lower user id. rank_counts (see migration 0003) holds, per level, how many players
have a best score in each range of scores at four depths, so both questions below cost a
few hundred rows at most, however many players the level has:
- a player's rank: the players in the higher siblings of each of the player's four nodes,
  plus those who reached the same score first (from the ranking index);
- the entries from a rank on: go down the tree, at each depth taking the child whose running
  total passes the rank, to the exact score; then read on in the ranking index.
Both are single statements, so that PostgreSQL answers each in one round trip.
"""

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from scoresvc.storage.schema import RANK_COUNT_SHIFTS, best_scores, rank_counts

WINDOW_SIZE = 15

_ORDERING = (best_scores.c.score.desc(), best_scores.c.reached_at, best_scores.c.user_id)


def _number(value: int) -> ColumnElement[int]:
    # Constants of the tree written into the SQL: the planner sees them, and no parameter's
    # type has to match an operator's.
    return literal_column(str(value), Integer)


def _on_level():
    return rank_counts.c.level_id == bindparam("level_id")


def _with_parent_shifts() -> list[tuple[int | None, int]]:
    # Each depth's shift beside its parent's (None for depth 1, whose parent is the level).
    return list(zip((None, *RANK_COUNT_SHIFTS), RANK_COUNT_SHIFTS, strict=False))


def players_on_level() -> Select:
    """How many players have a score on :level_id (0 for none)."""
    return select(func.coalesce(func.sum(rank_counts.c.players), _number(0))).where(
        _on_level(), rank_counts.c.depth == _number(1)
    )


def rank_of_user() -> Select:
    """The score, rank and level's players of :user_id on :level_id; no row without a score."""
    me = best_scores.alias("me")
    other = best_scores.alias("other")
    ahead: ColumnElement[int] = _number(1)
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(), start=1):
        higher_siblings = [
            rank_counts.c.level_id == me.c.level_id,
            rank_counts.c.depth == _number(depth),
            rank_counts.c.prefix > me.c.score.bitwise_rshift(_number(shift)),
        ]
        if parent_shift is not None:
            # Siblings share the parent: prefixes up to the parent's next one, exclusive.
            next_parent = me.c.score.bitwise_rshift(_number(parent_shift)) + _number(1)
            higher_siblings.append(
                rank_counts.c.prefix < next_parent.bitwise_lshift(_number(parent_shift - shift))
            )
        players = select(func.sum(rank_counts.c.players)).where(*higher_siblings)
        ahead = ahead + func.coalesce(players.scalar_subquery(), _number(0))
    reached_first = select(func.count()).where(
        other.c.level_id == me.c.level_id,
        other.c.score == me.c.score,
        tuple_(other.c.reached_at, other.c.user_id) < tuple_(me.c.reached_at, me.c.user_id),
    )
    return select(
        me.c.score,
        ahead + reached_first.scalar_subquery(),
        players_on_level().scalar_subquery(),
    ).where(me.c.level_id == bindparam("level_id"), me.c.user_id == bindparam("user_id"))


def window_from_rank() -> Select:
    """user_id, score of up to 15 entries from :rank (1-based) on :level_id; none past the end."""
    # Down the tree: at each depth, the child of the node above holding the rank-th player,
    # and how many players rank ahead of that child.
    node = None
    for depth, (parent_shift, shift) in enumerate(_with_parent_shifts(), start=1):
        ahead_in_parent = (
            func.sum(rank_counts.c.players).over(order_by=rank_counts.c.prefix.desc())
            - rank_counts.c.players
        )
        conditions = [_on_level(), rank_counts.c.depth == _number(depth)]
        ahead_of_parent: ColumnElement[int] = _number(0)
        if node is not None and parent_shift is not None:
            first_child = (
                select(node.c.prefix)
                .scalar_subquery()
                .bitwise_lshift(_number(parent_shift - shift))
            )
            last_child = first_child + _number((1 << (parent_shift - shift)) - 1)
            conditions.append(rank_counts.c.prefix.between(first_child, last_child))
            ahead_of_parent = select(node.c.ahead).scalar_subquery()
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
    score = select(node.c.prefix).scalar_subquery()  # the depth-4 node is one score
    # Past the end there is no node: no offset then, and no score to read from.
    ahead = func.coalesce(select(node.c.ahead).scalar_subquery(), _number(0))
    tied_before = bindparam("rank") - _number(1) - ahead
    on_level = best_scores.c.level_id == bindparam("level_id")
    columns = (best_scores.c.user_id, best_scores.c.score, best_scores.c.reached_at)
    tied = (
        select(*columns)
        .where(on_level, best_scores.c.score == score)
        .order_by(best_scores.c.reached_at, best_scores.c.user_id)
        .limit(WINDOW_SIZE)
        .offset(tied_before)
        .subquery("tied")
    )
    lower = (
        select(*columns)
        .where(on_level, best_scores.c.score < score)
        .order_by(*_ORDERING)
        .limit(WINDOW_SIZE)
        .subquery("lower")
    )
    entries = union_all(select(tied), select(lower)).subquery("entries")
    return (
        select(entries.c.user_id, entries.c.score)
        .order_by(entries.c.score.desc(), entries.c.reached_at, entries.c.user_id)
        .limit(WINDOW_SIZE)
    )
