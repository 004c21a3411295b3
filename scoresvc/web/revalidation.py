"""Revalidation: entity tags for bodies, and If-None-Match (RFC 9110 8.8.3, 13.1.2)."""

from hashlib import blake2b


def entity_tag(body: bytes, variant: str) -> str:
    """A strong ETag for body in variant: new whenever the body is, never shared across variants."""
    return f'"{variant}-{blake2b(body, digest_size=12).hexdigest()}"'


def none_match(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header lists etag (or is *): the client's copy is current."""
    if etag not in if_none_match:
        return if_none_match.strip() == "*"
    # Weak comparison, the one If-None-Match uses: W/"x" matches "x".
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
