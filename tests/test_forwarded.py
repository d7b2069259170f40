"""Forwarded headers as a proxy, and a client who writes its own, send them."""

import asyncio

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from svd.forwarded import limit_key, parse_address
from svd.routing import FalRouting
from svd.settings import Settings


async def echo(scope, receive, send):
    request = Request(scope)
    body = {"url": str(request.url), "client": request.client.host}
    await JSONResponse(body)(scope, receive, send)


def seen(trusted: str, headers: dict, peer: str = "127.0.0.1", host: str = "testserver"):
    """What the app sees of a request from `peer` with `headers`: (url, client address)."""

    async def ask():
        app = FalRouting(echo, trusted=trusted)
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            answer = (await c.get("/fal-ai/svd/x", headers=headers)).json()
            return answer["url"], answer["client"]

    return asyncio.run(ask())


def test_on_a_space_urls_are_https_on_the_spaces_host(monkeypatch):
    """A Space's proxy (at an address the app cannot know) terminates TLS: with SPACE_ID
    set its X-Forwarded-Proto counts, so the API hands out https URLs on the Space's host."""
    host = "someone-svd-studio.hf.space"
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    url, client = seen(Settings().trusted_proxies(), proxy, peer="10.20.30.40", host=host)
    assert url == f"https://{host}/fal-ai/svd/x" and client == "198.51.100.7"
    monkeypatch.delenv("SPACE_ID")  # elsewhere that peer is nobody to believe
    url, client = seen(Settings().trusted_proxies(), proxy, peer="10.20.30.40", host=host)
    assert url == f"http://{host}/fal-ai/svd/x" and client == "10.20.30.40"


@pytest.mark.parametrize("trusted, chain, client", [
    ("*", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the left is the client's own writing
    ("127.0.0.1, 10.0.0.0/8", "6.6.6.6, 203.0.113.9, 10.1.1.1", "203.0.113.9"),
    ("127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
    ("127.0.0.1", "0203.0.113.9", "131.0.113.9"),  # inet_aton's octal, as sockets read it
    ("127.0.0.1", "203.0.113.9:51234", "203.0.113.9"),  # with the port a proxy may add
    ("127.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
    ("127.0.0.1", "203.0.113.9, not-an-address", "127.0.0.1"),  # garbage: the peer counts
    ("192.0.2.1", "203.0.113.9", "127.0.0.1"),  # an untrusted peer's header counts for nothing
])  # fmt: skip
def test_the_client_is_the_rightmost_address_no_trusted_proxy_wrote(trusted, chain, client):
    assert seen(trusted, {"X-Forwarded-For": chain})[1] == client


def test_one_address_spelled_many_ways_is_one_limit_key():
    spellings = ["1.1.1.1", "::ffff:1.1.1.1", "0001.1.1.1", "1.1.257", "[::ffff:101:101]"]
    assert {limit_key(s) for s in spellings} == {"1.1.1.1"}
    # one IPv6 subscriber holds a /64: it counts as one
    assert limit_key("2001:db8:1:2::1") == limit_key("2001:db8:1:2:ffff::9")
    assert limit_key("2001:db8:1:2::1") != limit_key("2001:db8:1:3::1")
    assert parse_address("nonsense") is None and limit_key("nonsense") == "nonsense"


def test_a_bad_trusted_proxy_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS: 'proxy.local'"):
        FalRouting(echo, trusted="127.0.0.1, proxy.local")
