"""The workers' connection counts: who may accept the next connection."""

import os

import pytest

from scoresvc.serving import balancing
from scoresvc.serving.balancing import SLACK, ConnectionCounts


@pytest.fixture
def counts():
    counts = ConnectionCounts(3)
    yield counts
    counts.close()


def test_a_worker_alone_always_accepts(counts):
    assert counts.share(1).may_accept(1000)


def test_a_worker_more_than_slack_ahead_of_another_waits_for_it(counts):
    first, second = counts.share(1), counts.share(2)
    assert second.may_accept(3)
    assert first.may_accept(3 + SLACK)
    assert not first.may_accept(4 + SLACK)
    assert second.may_accept(3)  # the one with the fewest always accepts


def test_a_worker_that_left_or_was_forgotten_is_not_waited_for(counts):
    first, second, third = counts.share(1), counts.share(2), counts.share(3)
    second.may_accept(0)
    third.may_accept(0)
    assert not first.may_accept(5)
    second.leave()
    assert not first.may_accept(5)  # the third still holds none
    counts.forget(os.getpid())  # every share here is this process's
    assert first.may_accept(5)


def test_a_worker_silent_past_the_stale_time_is_not_waited_for(counts, monkeypatch):
    first, second = counts.share(1), counts.share(2)
    second.may_accept(0)
    assert not first.may_accept(5)
    said_at = balancing.time.monotonic_ns()
    later = said_at + int(balancing.STALE_SECONDS * 1e9) + 1
    monkeypatch.setattr(balancing.time, "monotonic_ns", lambda: later)
    assert first.may_accept(5)


def test_the_counts_are_shared_over_a_fork(counts):
    pid = os.fork()
    if pid == 0:
        counts.share(2).may_accept(0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert not counts.share(1).may_accept(5)
    counts.forget(pid)
    assert counts.share(1).may_accept(5)


def test_a_paused_worker_is_woken_once_it_is_no_longer_ahead(counts):
    first, second = counts.share(1), counts.share(2)
    second.may_accept(0)
    assert not first.may_accept(2)
    second.may_accept(0)  # the first is still ahead: left asleep
    with pytest.raises(BlockingIOError):
        os.eventfd_read(first.waker)
    second.may_accept(1)
    assert os.eventfd_read(first.waker) == 1
    assert first.may_accept(2)
