"""Timing calls in process on a shared, noisy machine: both sides of a ratio in the same round,
each ratio the median of its per-round ratios."""

import statistics
import time
from collections.abc import Callable, Iterable

SAMPLE_SECONDS = 0.05  # one timing of one call: as many calls as fit in this (at least one)
MAX_CALLS = 2000


def time_call(call: Callable[[], object], seconds: float = SAMPLE_SECONDS) -> float:
    """µs per call: one call's time if it took seconds or more, else the mean of as many more
    as fit in seconds."""
    started = time.perf_counter()
    call()
    once = time.perf_counter() - started
    if once >= seconds:
        return once * 1e6  # a slow call: once is enough, beside the noise of a shared machine
    count = min(MAX_CALLS, int(seconds / max(once, 1e-7)))
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def timed_sample(
    call: Callable[[], object], finish: Callable[[], object], seconds: float = 0.2
) -> float:
    """µs per call over about seconds (at least 20 calls), finish() (a flush) included."""
    started = time.perf_counter()
    call()
    finish()
    once = time.perf_counter() - started
    count = max(20, min(MAX_CALLS, int(seconds / once)))
    started = time.perf_counter()
    for _ in range(count):
        call()
    finish()
    return (time.perf_counter() - started) / count * 1e6


def alternate(samplers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each sampler once a round, in turn: its samples."""
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(rounds):
        for name, sampler in samplers.items():
            samples[name].append(sampler())
    return samples


def median_ratio(values: Iterable[float], bases: Iterable[float]) -> float:
    """The median of the per-round ratios value / base."""
    return statistics.median(v / b for v, b in zip(values, bases, strict=True))


def summary(samples: dict[str, list[float]], large: str, small: str) -> dict:
    """Each sampler's median, the samples, and large's per-round ratio to small."""
    return {
        "us": {name: statistics.median(values) for name, values in samples.items()},
        "samples": samples,
        "ratio": median_ratio(samples[large], samples[small]),
    }


class RisingScores:
    """Each call gives the next (user, score) of a rotation whose every score beats the user's."""

    def __init__(self, users: list[tuple[int, int]], step: int = 1) -> None:
        self.users = users
        self.step = step  # -1: falling scores, a new best on a level ordered lowest first
        self.count = 0

    def __call__(self) -> tuple[int, int]:
        count, users = self.count, self.users
        self.count = count + 1
        user, score = users[count % len(users)]
        return user, score + self.step * (1 + count // len(users))
