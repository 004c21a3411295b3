"""Signed keys' nonces come from `secrets` in 4 KiB draws: never one twice, not even after fork."""

import base64
import os
import secrets
import threading

import pytest

from scoresvc import sessions
from scoresvc.sessions import SignedSessionKeys


def nonce_of(key: str) -> bytes:
    return base64.urlsafe_b64decode(key)[12:28]  # after the user id (4 bytes) and expiry (8)


@pytest.fixture
def draws(monkeypatch) -> list[int]:
    """The sizes asked of secrets.token_bytes, which still answers with real random bytes."""
    asked: list[int] = []
    real = secrets.token_bytes

    def token_bytes(size: int) -> bytes:
        asked.append(size)
        return real(size)

    monkeypatch.setattr(sessions.secrets, "token_bytes", token_bytes)
    return asked


def test_every_key_gets_its_own_nonce_with_one_draw_per_256_keys(draws, clock):
    keys = SignedSessionKeys(b"s" * 32, clock=clock)
    nonces = {nonce_of(keys.issue(7)) for _ in range(1000)}
    assert len(nonces) == 1000
    assert draws == [4096] * 4  # 256 nonces a draw


def test_threads_draw_pools_of_their_own_and_never_share_a_nonce(draws, clock):
    keys = SignedSessionKeys(b"s" * 32, clock=clock)
    nonces: list[bytes] = []

    def issue() -> None:
        nonces.extend(nonce_of(keys.issue(7)) for _ in range(300))  # two draws each

    threads = [threading.Thread(target=issue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(nonces)) == len(nonces) == 8 * 300
    assert draws == [4096] * 16


def test_a_forked_child_does_not_hand_out_its_parents_nonces(draws, clock):
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    keys = SignedSessionKeys(b"s" * 32, clock=clock)
    keys.issue(1)  # the pool is filled in the parent
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: one key, its nonce to the parent, and out
        try:
            os.write(write_end, nonce_of(keys.issue(1)))
        finally:
            os._exit(0)
    os.close(write_end)
    child_nonce = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(child, 0)
    assert len(child_nonce) == 16
    assert child_nonce != nonce_of(keys.issue(1))  # the parent's next one
