import base64
import hashlib
import hmac
import re
import string
import struct

import pytest

from scoresvc.errors import InvalidSessionKey
from scoresvc.sessions import SignedSessionKeys, StoredSessionKeys
from tests.unit.fakes import FakeRepository

SECRET = b"0123456789abcdef0123456789abcdef"
KEY_ALPHABET = re.compile(r"[A-Za-z0-9_-]+\Z")


@pytest.fixture
def signed(clock):
    return SignedSessionKeys(SECRET, ttl_seconds=600, clock=clock)


@pytest.fixture
def stored(clock):
    return StoredSessionKeys(FakeRepository(), ttl_seconds=600, clock=clock)


@pytest.fixture(params=["signed", "stored"])
def keys(request):
    return request.getfixturevalue(request.param)


def mutations(key: str):
    """Every key that differs from key in exactly one character of its alphabet."""
    alphabet = string.ascii_letters + string.digits + "-_"
    for position, original in enumerate(key):
        for replacement in alphabet:
            if replacement != original:
                yield key[:position] + replacement + key[position + 1 :]


def test_a_key_names_the_user_it_was_issued_to(keys):
    assert keys.verify(keys.issue(4711)) == 4711
    assert keys.verify(keys.issue(0)) == 0
    assert keys.verify(keys.issue(2147483647)) == 2147483647


def test_keys_use_only_url_safe_characters_and_carry_at_least_128_bits(keys):
    key = keys.issue(1)
    assert KEY_ALPHABET.match(key)
    assert len(key) * 6 >= 128 + 12 * 6  # room for 128 random bits beside any payload


def test_every_login_gives_a_new_key(keys):
    assert len({keys.issue(1) for _ in range(50)}) == 50


def test_a_key_is_valid_until_the_end_of_its_lifetime_and_not_at_it(keys, clock):
    key = keys.issue(1)
    clock.advance(599.999)
    assert keys.verify(key) == 1
    clock.advance(0.001)
    with pytest.raises(InvalidSessionKey, match="expired"):
        keys.verify(key)


def test_the_lifetime_is_configurable(clock):
    keys = SignedSessionKeys(SECRET, ttl_seconds=5, clock=clock)
    key = keys.issue(1)
    clock.advance(4.9)
    assert keys.verify(key) == 1
    clock.advance(0.1)
    with pytest.raises(InvalidSessionKey):
        keys.verify(key)


@pytest.mark.parametrize(
    "key", ["", "x", "a" * 80, "a" * 43, "!" * 80, "=" * 80, " " * 80, "é" * 80, "a" * 10_000]
)
def test_garbage_is_refused(keys, key):
    with pytest.raises(InvalidSessionKey):
        keys.verify(key)


def test_changing_any_single_character_of_a_key_makes_it_invalid(keys):
    key = keys.issue(4711)
    for mutated in mutations(key):
        with pytest.raises(InvalidSessionKey):
            keys.verify(mutated)


def test_a_signed_key_from_another_secret_is_refused(clock):
    other = SignedSessionKeys(b"another secret, 32 bytes long!!!", clock=clock)
    with pytest.raises(InvalidSessionKey):
        SignedSessionKeys(SECRET, clock=clock).verify(other.issue(1))


def test_a_signed_key_cannot_be_re_addressed_to_another_user_or_extended(signed, clock):
    raw = bytearray(base64.urlsafe_b64decode(signed.issue(1)))
    raw[3] = 2  # user 1 -> user 2
    with pytest.raises(InvalidSessionKey):
        signed.verify(base64.urlsafe_b64encode(bytes(raw)).decode())
    raw = bytearray(base64.urlsafe_b64decode(signed.issue(1)))
    raw[4:12] = (2**63).to_bytes(8, "big")  # expiry far in the future
    with pytest.raises(InvalidSessionKey):
        signed.verify(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_a_key_forged_without_the_secret_is_refused(signed, clock):
    payload = (7).to_bytes(4, "big") + (2**62).to_bytes(8, "big") + bytes(16)
    guessed_mac = hmac.digest(b"guessed secret, 32 bytes long!!!", payload, hashlib.sha256)
    with pytest.raises(InvalidSessionKey):
        signed.verify(base64.urlsafe_b64encode(payload + guessed_mac).decode())


def signed_with(secret: bytes, user_id: int, expires_at: float) -> str:
    """A key as SignedSessionKeys writes one, with any expiry (seconds since 1970)."""
    payload = struct.pack(">IQ16s", user_id, int(expires_at * 1000), bytes(16))
    mac = hmac.digest(secret, payload, hashlib.sha256)
    return base64.urlsafe_b64encode(payload + mac).decode("ascii")


def test_a_key_made_with_the_secret_for_longer_than_the_ttl_is_refused(signed, clock):
    # Whoever holds the secret (or held it) makes keys of any lifetime: 11 days is refused.
    with pytest.raises(InvalidSessionKey, match="longer than the session TTL"):
        signed.verify(signed_with(SECRET, 7, clock() + 11 * 86400))
    with pytest.raises(InvalidSessionKey, match="longer than the session TTL"):
        signed.verify(signed_with(SECRET, 7, clock() + 600 + 5.001))


def test_a_key_made_by_a_clock_up_to_5_s_ahead_is_taken(signed, clock):
    assert signed.verify(signed_with(SECRET, 7, clock() + 600 + 5)) == 7
    assert signed.verify(signed_with(SECRET, 7, clock() + 0.001)) == 7


def test_keys_issued_under_a_longer_ttl_end_once_a_shorter_one_is_set(clock):
    day = SignedSessionKeys(SECRET, ttl_seconds=86400, clock=clock)
    key = day.issue(7)
    assert day.verify(key) == 7
    with pytest.raises(InvalidSessionKey, match="longer than the session TTL"):
        SignedSessionKeys(SECRET, ttl_seconds=600, clock=clock).verify(key)
    clock.advance(86400 - 600)  # as long left as a key issued now under 600 s
    assert SignedSessionKeys(SECRET, ttl_seconds=600, clock=clock).verify(key) == 7


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        SignedSessionKeys(b"short")


def test_signed_keys_need_nothing_stored_and_stay_valid_after_a_new_login(signed):
    first = signed.issue(1)
    signed.issue(1)
    assert signed.verify(first) == 1


def test_a_stored_key_is_replaced_by_the_users_next_login(stored):
    first = stored.issue(1)
    second = stored.issue(1)
    with pytest.raises(InvalidSessionKey, match="replaced"):
        stored.verify(first)
    assert stored.verify(second) == 1


def test_a_new_login_of_one_user_leaves_other_users_keys_alone(stored):
    mine = stored.issue(1)
    stored.issue(2)
    assert stored.verify(mine) == 1


def test_stored_keys_are_kept_as_hashes_only(clock):
    repository = FakeRepository()
    key = StoredSessionKeys(repository, clock=clock).issue(1)
    key_hash, _ = repository.session_keys[1]
    assert key not in key_hash
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_a_stored_key_unknown_to_the_database_is_refused(stored):
    with pytest.raises(InvalidSessionKey):
        stored.verify("A" * 43)
