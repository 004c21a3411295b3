"""Domain errors: what went wrong, in the service's own terms (the app maps them to HTTP)."""


class ScoreServiceError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidNumber(ScoreServiceError, ValueError):
    """A userid, levelid or score that is not a decimal number from 0 to 2**31 - 1."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} must be a whole number from 0 to 2147483647, in ASCII digits")
        self.field = field


class InvalidSessionKey(ScoreServiceError):
    """A session key that is missing, malformed, forged, expired or replaced."""


class DatabaseUnavailable(ScoreServiceError):
    """The database could not answer."""


class UserBanned(ScoreServiceError):
    """A banned user: their score posts and logins are refused."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} is banned")
        self.user_id = user_id


class RateLimited(ScoreServiceError):
    """A request over one of the service's limits, refused with nothing done."""

    def __init__(self, what: str, retry_after_seconds: int) -> None:
        super().__init__(f"too many {what}: try again in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class NoSuchSeason(ScoreServiceError):
    """A season number the level has not reached (or 0)."""

    def __init__(self, level_id: int, season: int) -> None:
        super().__init__(f"level {level_id} has no season {season}")


class ScoreRejected(ScoreServiceError):
    """A score post a level's rules refuse, recorded nowhere; reason says which rule."""

    reason = ""


class ScoreOutOfBounds(ScoreRejected):
    """A posted score outside the level's min_score and max_score."""

    def __init__(self, score: int, min_score: int, max_score: int) -> None:
        super().__init__(
            f"score {score} is outside this level's bounds, {min_score} to {max_score}"
        )
        self.reason = "below_min_score" if score < min_score else "above_max_score"


class ServerWritesOnly(ScoreRejected):
    """A player's post to a level whose scores only the game's own server writes."""

    reason = "server_only"

    def __init__(self, level_id: int) -> None:
        super().__init__(f"level {level_id} takes scores from the game's server only")


class RulesConflict(ScoreServiceError):
    """A change of rules the level's current season cannot take (it has scores)."""
