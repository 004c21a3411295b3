"""A thread of its own for queued work, done in batches: woken by the first item, then gathering."""

import threading
from collections.abc import Callable


class BatchThread:
    """Runs work() on a thread of its own each time it is woken, then lets more gather.

    The callers queue items themselves and call wake(): the first wake after a batch starts
    the next one, and the later ones cost a check. After each batch the thread waits
    gather_seconds, so that under load one batch serves many items. work() must not raise.
    The thread starts with the first wake(), so an owner that never queues anything never has
    one.
    """

    def __init__(self, work: Callable[[], None], *, name: str, gather_seconds: float) -> None:
        self._work = work
        self._name = name
        self._gather_seconds = gather_seconds
        self._wake = threading.Event()
        self._closing = threading.Event()  # also what the thread waits on between batches
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def closing(self) -> bool:
        """Whether close() has been called: no batch is run after the one under way."""
        return self._closing.is_set()

    def wake(self) -> None:
        """Have work() run soon."""
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                with self._start_lock:
                    if self._thread is None:
                        self._thread = threading.Thread(
                            target=self._run_until_closed, name=self._name, daemon=True
                        )
                        self._thread.start()

    def pause(self, seconds: float) -> None:
        """Wait seconds on the thread (called from work()), or less if close() comes first."""
        self._closing.wait(seconds)

    def close(self) -> None:
        """Stop the thread once its batch under way is done; what is queued stays queued."""
        self._closing.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run_until_closed(self) -> None:
        while not self._closing.is_set():
            self._wake.wait()
            self._wake.clear()  # before the batch: an item queued after this wakes us again
            self._work()
            self._closing.wait(self._gather_seconds)
