"""Hand-written fakes of the repository, for tests without a database."""

from scoresvc.storage.repository import StoredSessionKey


class FakeRepository:
    """Keeps stored session keys in a dict, as the real repository keeps them in a table."""

    def __init__(self) -> None:
        self.session_keys: dict[int, tuple[str, int]] = {}

    def store_session_key(
        self, user_id: int, key_hash: str, expires_at_ms: int, *, now_ms: int | None = None
    ) -> None:
        self.session_keys[user_id] = (key_hash, expires_at_ms)
        if now_ms is not None:  # expired keys go
            expired = [user for user, (_, at) in self.session_keys.items() if at < now_ms]
            for user in expired:
                del self.session_keys[user]

    def find_session_key(self, key_hash: str) -> StoredSessionKey | None:
        for user_id, (stored_hash, expires_at_ms) in self.session_keys.items():
            if stored_hash == key_hash:
                return StoredSessionKey(user_id, expires_at_ms)
        return None
