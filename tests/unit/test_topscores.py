"""LastReads: a board's last top scores given back for a read that found them as they were."""

from scoresvc.leaderboards import Rules
from scoresvc.storage.topscores import LastReads, TopScores

ROWS = [(2, 20, 2, 0), (1, 10, 2, 0)]  # user, stored score, players, rules version


def test_a_read_of_the_same_rows_under_the_same_rules_and_version_gets_the_last_one_back():
    last = LastReads(max_boards=10)
    top = TopScores([(2, 20), (1, 10)], players=2, version=7)
    last.keep(1, Rules(), ROWS, top)
    assert last.get(1, Rules(), [tuple(row) for row in ROWS], 7) is top


def test_other_rows_rules_version_or_board_get_nothing():
    last = LastReads(max_boards=10)
    last.keep(1, Rules(), ROWS, TopScores([(2, 20), (1, 10)], players=2, version=7))
    assert last.get(1, Rules(), [(2, 21, 2, 0), (1, 10, 2, 0)], 7) is None  # a score changed
    assert last.get(1, Rules(), [(2, 20, 3, 0), (1, 10, 3, 0)], 7) is None  # a player came
    assert last.get(1, Rules(), [(2, 20, 2, 1), (1, 10, 2, 1)], 7) is None  # rules stored anew
    assert last.get(1, Rules(order="asc"), ROWS, 7) is None  # shown another way
    assert last.get(1, Rules(), ROWS, 8) is None  # the level changed since
    assert last.get(2, Rules(), ROWS, 7) is None


def test_a_read_of_other_rows_replaces_the_board_s_last_one():
    last = LastReads(max_boards=10)
    last.keep(1, Rules(), ROWS, TopScores([], players=2))
    newer_rows = [(3, 30, 3, 0), *ROWS]
    newer = TopScores([(3, 30), (2, 20), (1, 10)], players=3)
    last.keep(1, Rules(), newer_rows, newer)
    assert last.get(1, Rules(), ROWS, 0) is None
    assert last.get(1, Rules(), newer_rows, 0) is newer


def test_room_is_made_by_dropping_the_board_kept_first():
    last = LastReads(max_boards=2)
    tops = {board: TopScores([], players=2) for board in (1, 2, 3)}
    for board, top in tops.items():
        last.keep(board, Rules(), ROWS, top)
    assert last.get(1, Rules(), ROWS, 0) is None  # kept first: gone
    assert last.get(2, Rules(), ROWS, 0) is tops[2]
    assert last.get(3, Rules(), ROWS, 0) is tops[3]


def test_none_are_kept_with_no_room():
    last = LastReads(max_boards=0)
    last.keep(1, Rules(), ROWS, TopScores([], players=2))
    assert last.get(1, Rules(), ROWS, 0) is None
