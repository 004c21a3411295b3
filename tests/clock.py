"""A clock for tests: time stands still until a test moves it."""


class FakeClock:
    """Callable like time.time, returning a time that only advance() changes."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
