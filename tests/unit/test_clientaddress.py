import pytest

from scoresvc.settingvalues import trusted_networks
from scoresvc.web.clientaddress import ClientAddresses, parse_address

PROXIES = ClientAddresses(trusted_networks("10.0.0.0/8, 192.0.2.1, 2001:db8:ffff::/48"))


def environ(peer: str | None, forwarded: str | None = None) -> dict:
    request = {}
    if peer is not None:
        request["REMOTE_ADDR"] = peer
    if forwarded is not None:
        request["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # No X-Forwarded-For, or a peer that is no proxy of ours: the peer.
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("11.0.0.1", "198.51.100.1", "11.0.0.1"),
        # A trusted peer: the right-most address that is not a trusted proxy.
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1"),
        ("192.0.2.1", "6.6.6.6, 198.51.100.1, 10.0.0.7", "198.51.100.1"),  # 6.6.6.6: forged
        ("10.1.2.3", "2001:db8::7, 2001:db8:ffff::1", "2001:db8::7"),
        ("10.1.2.3", "198.51.100.1,10.9.9.9", "198.51.100.1"),
        ("10.1.2.3", "198.51.100.1 , , 10.9.9.9", "198.51.100.1"),  # empty elements say nothing
        # Forms with a port, and normalized forms.
        ("10.1.2.3", "198.51.100.1:4711", "198.51.100.1"),
        ("10.1.2.3", "[2001:db8::7]:4711", "2001:db8::7"),
        ("10.1.2.3", "[2001:DB8:0::7]", "2001:db8::7"),
        ("10.1.2.3", "::ffff:198.51.100.1", "198.51.100.1"),
        # Every hop a trusted proxy: the left-most one.
        ("10.1.2.3", "10.0.0.1, 10.0.0.2", "10.0.0.1"),
        # Not an address where the client should stand: the last trusted hop.
        ("10.1.2.3", "198.51.100.1, unknown", "10.1.2.3"),
        ("10.1.2.3", "1.2.3.4, garbage, 10.0.0.5", "10.0.0.5"),
        ("10.1.2.3", "198.51.100.1%eth0", "10.1.2.3"),
        ("10.1.2.3", "[2001:db8::7]x", "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1:http", "10.1.2.3"),
        ("10.1.2.3", "٣.1.1.1", "10.1.2.3"),
        ("10.1.2.3", "1.2.3.4\x00", "10.1.2.3"),
        ("10.1.2.3", "", "10.1.2.3"),
        ("10.1.2.3", ",,,", "10.1.2.3"),
        # No peer address at all (a server that gives none).
        (None, None, "-"),
        (None, "198.51.100.1", "-"),
    ],
)
def test_the_client_is_the_peer_or_whom_trusted_proxies_name(peer, forwarded, client):
    assert PROXIES.of(environ(peer, forwarded)) == client


def test_without_trusted_proxies_the_header_is_never_read():
    addresses = ClientAddresses()
    assert addresses.of(environ("127.0.0.1", "198.51.100.1")) == "127.0.0.1"


def test_a_long_chain_of_trusted_hops_is_read_only_so_far():
    chain = ", ".join(["198.51.100.1"] + ["10.0.0.1"] * 10_000)
    assert PROXIES.of(environ("10.1.2.3", chain)) == "10.0.0.1"
    huge = "1" * 200_000
    assert PROXIES.of(environ("10.1.2.3", huge)) == "10.1.2.3"


@pytest.mark.parametrize(
    "text", ["10.0.0.0/8", "10.0.0.1", " ::1 ", "2001:db8::/32", "10.0.0.1/8", "10.0.0.0/8,,::1"]
)
def test_trusted_proxies_are_addresses_or_networks(text):
    assert trusted_networks(text)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "localhost", "10.0.0", "*", "10.0.0.1 10.0.0.2"])
def test_anything_else_is_refused_naming_the_culprit(text):
    with pytest.raises(ValueError, match="neither an IP address nor a CIDR network"):
        trusted_networks(f"::1, {text}")


def test_only_addresses_parse_as_addresses():
    assert str(parse_address("198.51.100.1")) == "198.51.100.1"
    assert parse_address("1" * 100) is None
    assert parse_address("[::1") is None
    assert parse_address("1.2.3.4:") is None


def test_a_requests_second_question_is_answered_as_its_first():
    request = environ("10.1.2.3", "198.51.100.1, 10.9.9.9")
    assert PROXIES.of(request) == PROXIES.of(request) == "198.51.100.1"

    request["HTTP_X_FORWARDED_FOR"] = "198.51.100.2"  # changed since: asked afresh
    assert PROXIES.of(request) == "198.51.100.2"
    request["REMOTE_ADDR"] = "203.0.113.9"
    assert PROXIES.of(request) == "203.0.113.9"


def test_each_set_of_trusted_proxies_answers_a_request_its_own_way():
    request = environ("10.1.2.3", "198.51.100.1, 192.0.2.1")
    assert PROXIES.of(request) == "198.51.100.1"
    assert ClientAddresses(trusted_networks("10.0.0.0/8")).of(request) == "192.0.2.1"
    assert ClientAddresses().of(request) == "10.1.2.3"


def test_clients_past_the_kept_addresses_are_still_told_apart():
    proxies = ClientAddresses(trusted_networks("10.0.0.0/8"))
    for number in range(10_000):
        client = f"198.51.{number // 256}.{number % 256}"
        assert proxies.of(environ("10.1.2.3", f"{client}, 10.0.0.{number % 256}")) == client
    assert proxies.of(environ("10.1.2.3", "::ffff:10.0.0.1, 10.0.0.2")) == "10.0.0.1"
