"""A trusted proxy's X-Forwarded-* headers: the scheme and host the caller used, and the
caller's address. The address is the rightmost one in X-Forwarded-For that no trusted proxy
wrote (a client may put anything at the left), in one canonical form, so the per-address
limit cannot be dodged by spelling an address another way."""

from __future__ import annotations

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An address in any spelling a socket library accepts (`::ffff:1.1.1.1`, `0001.1.1.1`,
    `[::1]`), with or without a port (`1.1.1.1:80`, `[::1]:80`); IPv4-mapped IPv6 as IPv4.
    None for what is no address."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6] or [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        try:  # the old spellings: leading zeros, fewer parts, hex
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def limit_key(host: str) -> str:
    """What the per-address limit counts: the address, or its /64 for IPv6 (one
    subscriber's block), or the text itself when it is no address."""
    address = parse_address(host)
    if address is None:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Trusted:
    """The proxies whose forwarded headers are believed: "*" (any peer: only proxies can
    reach the app), or addresses and networks separated by commas."""

    def __init__(self, spec: str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        self.any = "*" in parts
        self.networks: list[Network] = []
        for part in parts:
            if part != "*":
                try:
                    self.networks.append(ipaddress.ip_network(part.strip("[]"), strict=False))
                except ValueError:
                    raise ValueError(
                        f"FORWARDED_ALLOW_IPS: {part!r} is no address or network"
                    ) from None

    def __contains__(self, address: Address | None) -> bool:
        if address is None:
            return False
        return self.any or any(address in net for net in self.networks)

    def client(self, forwarded_for: str) -> Address | None:
        """The rightmost address in X-Forwarded-For that no trusted proxy wrote; None when
        an entry on the way is no address."""
        entries = [e for e in forwarded_for.split(",") if e.strip()]
        for entry in reversed(entries):
            address = parse_address(entry)
            if address is None:
                return None
            if self.any or address not in self:
                return address
        return None


class ForwardedHeaders:
    """What a request's ASGI scope says of its caller: for a request from a trusted proxy,
    the scheme, host and client it forwards; for every request, the client's address in
    its canonical form."""

    def __init__(self, trusted: str):
        self.trusted = Trusted(trusted)

    def apply(self, scope) -> None:
        """Rewrite `scope` (one with a client) in place."""
        host, port = scope["client"]
        peer = parse_address(host)
        scope["client"] = (str(peer) if peer else host, port)
        if peer not in self.trusted:
            return
        headers = dict(reversed(scope["headers"]))  # the first of each name
        proto = headers.get(b"x-forwarded-proto", b"").split(b",")[0].strip().lower()
        if proto in (b"http", b"https"):
            secure = proto == b"https"
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = "https" if secure else "http"
        forwarded_host = headers.get(b"x-forwarded-host", b"").split(b",")[0].strip()
        if forwarded_host:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope["headers"].append((b"host", forwarded_host))
        chain = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
        client = self.trusted.client(chain.decode("latin-1")) if chain else None
        if client is not None:
            scope["client"] = (str(client), 0)
