"""Rate limits: token buckets in a fixed table of memory that the workers of a machine share."""

import hashlib
import ipaddress
import logging
import math
import mmap
import multiprocessing
import os
import secrets
import threading
from collections.abc import Callable
from typing import Protocol

from scoresvc.errors import RateLimited

# A limit's shape and its text belong to the settings (post_limit, login_limit).
from scoresvc.settingvalues import RateLimit

logger = logging.getLogger("scoresvc")

# The table: SETS sets of WAYS buckets, 16 bytes each (a key and a time): 1 MiB, whatever the
# number of users or addresses. A key lives in one set, chosen by a hash of it; see take().
SETS = 16_384
WAYS = 4
# Sets share this many locks (set number modulo STRIPES): two workers wait for each other
# only when they update buckets of two sets that share a lock, for a microsecond.
STRIPES = 64
# A lock held this long has been held by a process that died holding it (a kill -9 in the
# microsecond a take() lasts): a waiter then takes it over (see _SharedLocks).
STUCK_SECONDS = 0.25
_MASK64 = (1 << 64) - 1
_SET_WORDS = 2 * WAYS  # a key and a time a bucket
# Times are seconds since 1970 in doubles, whose steps there are a quarter microsecond: a
# burst's worth of additions may come out that much over, which is no reason to refuse.
_SLACK = 1e-6
# Keys are tagged by what they count, so that a post's key and a login's never share a bucket,
# and no key is 0, which marks an empty slot.
_POST_KEY = 1 << 62
_LOGIN_KEY = 2 << 62
_HASH_MASK = (1 << 62) - 1
# Client addresses whose hashes a process keeps: a client's posts parse and hash its address
# once, not each time. Emptied when full; an address not kept costs a few µs to hash again.
_KEPT_ADDRESS_HASHES = 4096


class _Lock(Protocol):
    """A stripe's lock: threading's, or multiprocessing's where processes share the table."""

    def acquire(self, block: bool = ..., timeout: float = ..., /) -> bool: ...

    def release(self) -> None: ...


class TokenBuckets:
    """Token buckets by key, in a fixed table; with shared=True, shared by forked processes.

    A bucket is one number, the time at which it is full again (the "theoretical arrival
    time" of GCRA, the token bucket with no timer): taking a token moves it 1/rate later,
    and is refused when that would put it more than a burst's worth of tokens ahead of now.

    The table is an anonymous shared mapping: made before the supervisor forks, every worker
    and every worker that replaces one uses the same buckets, and it goes with the service.
    A key's set is picked by a multiplicative hash with a random multiplier, so that nobody
    can choose keys that crowd one set. A key not in its set takes the bucket of the set that
    is nearest full (an empty or full one if there is one: that costs nothing). Only when all
    of a set's buckets are still refilling does a collision cost anything: the key evicted
    starts again from a full bucket, at most one burst more for it, never a 429 for anyone.
    """

    def __init__(self, *, shared: bool = False, sets: int = SETS) -> None:
        if sets & (sets - 1) or sets < STRIPES:
            raise ValueError(f"sets must be a power of two, at least {STRIPES}")
        self._shift = 64 - sets.bit_length() + 1
        self._multiplier = secrets.randbits(64) | 1
        self._slots = STRIPES  # the owners' words come first (see _SharedLocks)
        self._map = mmap.mmap(-1, (STRIPES + sets * WAYS * 2) * 8)
        self._words = memoryview(self._map).cast("Q")
        self._times = memoryview(self._map).cast("d")
        if shared:
            # POSIX semaphores (the fork context's, unlinked at once: nothing outlives the
            # processes). Taking or giving back a free one is an atomic operation in user space
            # (glibc's sem_trywait and sem_post): no system call, and the GIL kept.
            context = multiprocessing.get_context("fork")
            self._locks: list[_Lock] = [context.Lock() for _ in range(STRIPES)]
            # Its first STRIPES words: the pid holding each lock.
            self._owners: memoryview[int] | None = self._words
        else:
            self._locks = [threading.Lock() for _ in range(STRIPES)]
            self._owners = None
        self.shared = shared
        # For keys made from text (addresses): hashed with this, the same in every process
        # that shares the table, and unknown to clients.
        self.hash_key = secrets.token_bytes(16)

    def take(self, key: int, limit: RateLimit, now: float) -> float:
        """Take one token from key's bucket: 0.0, or the seconds until there is one (none taken).

        key: a whole number from 1 to 2**64 - 1.
        """
        interval = limit.interval
        horizon = limit.horizon  # how far ahead of now a bucket may be filling
        number = ((key * self._multiplier) & _MASK64) >> self._shift
        first = self._slots + number * _SET_WORDS
        stripe = number % STRIPES
        lock, owners = self._locks[stripe], self._owners
        if not lock.acquire(False):
            self._wait_for(stripe)
        if owners is not None:
            owners[stripe] = _pid
        try:
            words = self._words
            if words[first] == key:  # the first of its set: most keys, in a table not crowded
                slot = first + 1
            else:  # the set's keys read in one call, and searched, in C
                keys = words[first : first + _SET_WORDS : 2].tolist()
                slot = first + 2 * keys.index(key) + 1 if key in keys else 0
            if slot:
                full_at = self._times[slot]
                # Full since full_at, or filling; never more than the horizon ahead, even when
                # the clock has stepped back since.
                if full_at < now:
                    full_at = now
                elif full_at > now + horizon:
                    full_at = now + horizon
            else:
                # The bucket nearest full gives way (an empty one's time is 0.0: long full).
                times = self._times[first + 1 : first + _SET_WORDS : 2].tolist()
                slot = first + 2 * times.index(min(times)) + 1
                words[slot - 1] = key
                full_at = now  # a new bucket is full
            wait = full_at + interval - now - horizon
            if wait > _SLACK:
                self._times[slot] = full_at  # nothing taken (a stepped-back clock forgotten)
            else:
                self._times[slot] = full_at + interval
                wait = 0.0
        finally:
            if owners is not None:
                owners[stripe] = 0
            # Not suppress(): this runs on every score post, and a try costs nothing.
            try:  # noqa: SIM105
                lock.release()
            except ValueError:
                pass  # released already by another that took it over alongside: it is free
        return wait

    def _wait_for(self, stripe: int) -> None:
        """Take a stripe's lock that another holds: wait for it, or take over a dead holder's.

        A holder in another process writes its pid beside the lock while it holds it. A lock
        held for STUCK_SECONDS (a take() lasts microseconds) by a process that no longer
        exists is taken over; so is one held with no pid, by a holder killed in the instant
        between taking the lock and writing it. Two waiters may both take a dead holder's lock
        over: for one take() the buckets of its sets may lose an update, which lets one request
        more through.
        """
        lock, owners = self._locks[stripe], self._owners
        if owners is None:
            lock.acquire()  # a thread of this process: it cannot die holding it
            return
        while not lock.acquire(True, STUCK_SECONDS):
            owner = owners[stripe]
            if owner != _pid and not _alive(owner):
                logger.warning("a rate limit lock held by a process that died is taken over")
                return

    def close(self) -> None:
        """Unmap the table (in this process)."""
        self._words.release()
        self._times.release()
        self._map.close()


# This process's id, kept current across forks: os.getpid() is a system call.
_pid = os.getpid()


def _note_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_pid)


def _alive(pid: int) -> bool:
    if pid == 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Limits:
    """The service's limits: score posts per user and client address, logins per address."""

    def __init__(
        self,
        buckets: TokenBuckets,
        *,
        posts: RateLimit,
        logins: RateLimit,
        clock: Callable[[], float],
    ) -> None:
        self._buckets = buckets
        self._posts = posts
        self._posts_on = posts.enabled
        self._logins = logins
        self._clock = clock
        self._address_hashes: dict[str, int] = {}

    def check_post(self, user_id: int, address: str) -> None:
        """Take a post of user_id's from address; RateLimited, with nothing taken, if over."""
        # A user has a bucket at each client address: nobody elsewhere (who logs in as them,
        # or learnt a key of theirs) can use up the player's own.
        if self._posts_on:  # (on every score post: spelt out rather than a call to a helper)
            client = self._address_hashes.get(address)
            if client is None:
                client = self._address_hash(address)
            # The pair's key: the address's keyed hash (kept: see _address_hash) and the user id,
            # by an XOR rather than a second hash. One user's buckets at two addresses are one
            # only if their 62-bit hashes are equal, which nobody without the hash key arranges.
            key = _POST_KEY | ((client ^ user_id) & _HASH_MASK)
            wait = self._buckets.take(key, self._posts, self._clock())
            if wait:
                raise RateLimited("score posts for this user from this address", math.ceil(wait))

    def check_login(self, address: str) -> None:
        """Take a login from address; RateLimited, with nothing taken, if over the limit."""
        if self._logins.enabled:
            client = self._address_hashes.get(address)
            if client is None:
                client = self._address_hash(address)
            key = _LOGIN_KEY | (client & _HASH_MASK)
            wait = self._buckets.take(key, self._logins, self._clock())
            if wait:
                raise RateLimited("logins from this address", math.ceil(wait))

    def _address_hash(self, address: str) -> int:
        """address's keyed 64-bit hash (an IPv6 address's /64's), kept for its next request."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raw = address.encode("utf-8", "surrogateescape")  # no address: the text stands in
        else:
            # An IPv6 subscriber is given a /64 of addresses: the /64 is the client.
            raw = parsed.packed[:8] if parsed.version == 6 else parsed.packed
        digest = hashlib.blake2b(raw, digest_size=8, key=self._buckets.hash_key).digest()
        hashed = int.from_bytes(digest, "big")
        if len(self._address_hashes) >= _KEPT_ADDRESS_HASHES:
            self._address_hashes.clear()  # (threads may race here: at worst, one more clear)
        self._address_hashes[address] = hashed
        return hashed
