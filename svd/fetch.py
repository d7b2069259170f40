"""Read the bytes behind a URL: http(s), a data: URI, or a local path."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import socket
import time
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlparse

import httpx

from svd.errors import InputError
from svd.settings import settings

MAX_REDIRECTS = 5


def read_url(
    url: str,
    field: str,
    *,
    allow_local: bool = True,
    max_bytes: int | None = None,
    timeout: float | None = None,
) -> bytes:
    """The bytes at `url`; InputError naming `field` when it cannot be read. The limits are
    SVD_MAX_DOWNLOAD_MB and SVD_FETCH_TIMEOUT unless given."""
    url = url.strip()
    max_bytes = max_bytes or settings().max_download_bytes
    timeout = timeout or settings().fetch_timeout
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        raise InputError(field, f"malformed URL {url!r}") from None
    if scheme == "data":
        return _read_data_uri(url, field, max_bytes)
    if scheme in ("http", "https"):
        return _read_http(url, field, max_bytes, timeout)
    if scheme == "file" or scheme == "" or _is_windows_drive(scheme):
        if not allow_local:
            raise InputError(field, "local files are not accepted here; use http(s) or data:")
        return _read_path(_local_path(url, scheme), field, max_bytes)
    raise InputError(field, f"unsupported URL scheme '{scheme}'; use http(s), data: or a file path")


def is_http(url: str) -> bool:
    """Whether `url` is an http(s) URL (fetched over the network, not read from here)."""
    try:
        return urlparse(url.strip()).scheme.lower() in ("http", "https")
    except ValueError:
        return False


def _is_windows_drive(scheme: str) -> bool:
    return len(scheme) == 1 and os.name == "nt"


def _local_path(url: str, scheme: str) -> Path:
    return file_path(url) if scheme == "file" else Path(url).expanduser()


def file_path(url: str) -> Path:
    """The path of a file:// URL (backends return their videos as such)."""
    return Path(unquote(urlparse(url).path))


def shorten_data_uri(value: str, keep: int = 60) -> str:
    """A data: URI cut to its head and size, for records and displays."""
    if value.startswith("data:") and len(value) > keep + 20:
        return f"{value[:keep]}... ({len(value):,} characters)"
    return value


def _too_big(field: str, max_bytes: int) -> InputError:
    return InputError(field, f"larger than the {max_bytes // (1024 * 1024)} MB limit")


def _read_data_uri(url: str, field: str, max_bytes: int) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise InputError(field, "malformed data: URI (no comma)")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise _too_big(field, max_bytes)
    if header.lower().endswith(";base64"):
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputError(field, "malformed data: URI (bad base64)") from None
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _too_big(field, max_bytes)
    return data


def _read_path(path: Path, field: str, max_bytes: int) -> bytes:
    if not path.is_file():
        raise InputError(field, f"no such file: {path}")
    if path.stat().st_size > max_bytes:
        raise _too_big(field, max_bytes)
    return path.read_bytes()


def _allowed_private() -> set[str] | None:
    """SVD_ALLOW_PRIVATE_URLS: "1" allows every address; else host or host:port entries."""
    value = settings().allow_private_urls.strip()
    if value.lower() in ("1", "true", "yes", "all"):
        return None
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def check_public(url: str, field: str) -> str | None:
    """Refuse URLs whose host is loopback, private, link-local or otherwise not public.

    Returns the checked address to connect to (None where SVD_ALLOW_PRIVATE_URLS allows the
    host), so a second DNS answer cannot point the request elsewhere.
    """
    try:
        parts = urlparse(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise InputError(field, f"malformed URL {url!r}") from None
    if not host:
        raise InputError(field, f"no host in {url!r}")
    allowed = _allowed_private()
    port = port or (443 if parts.scheme == "https" else 80)
    if allowed is None or host in allowed or f"{host}:{port}" in allowed:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InputError(field, f"cannot resolve the host {host!r}") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not all(a.is_global and not a.is_multicast for a in (ip, *embedded_ipv4(ip))):
            raise InputError(
                field,
                f"{host} is a private or local address ({ip}); "
                "set SVD_ALLOW_PRIVATE_URLS to allow it",
            )
    return infos[0][4][0]


EMBEDDING = [  # IPv6 ranges that carry an IPv4 address a router may deliver to
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64, local use
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated)
]


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The IPv4 addresses an IPv6 address stands for: mapped, NAT64, 6to4, Teredo."""
    if ip.version == 4:
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in net for net in EMBEDDING):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def pinned(url: str, address: str | None) -> tuple[str, dict, dict]:
    """The URL aimed at the checked address, with the Host header and TLS name of the host."""
    if address is None:
        return url, {}, {}
    parts = urlparse(url)
    ip = f"[{address}]" if ":" in address else address
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": parts.netloc}, extensions


def _read_http(url: str, field: str, max_bytes: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                address = check_public(url, field)  # every hop: a redirect may point inwards
                target, headers, extensions = pinned(url, address)
                request = client.build_request(
                    "GET", target, headers=headers, extensions=extensions
                )
                r = client.send(request, stream=True)
                if not r.is_redirect:
                    break
                r.close()
                location = r.headers.get("location")
                if not location:
                    raise InputError(field, f"a redirect without a Location from {url}")
                url = urljoin(url, location)
                if not is_http(url):
                    shown = shorten_data_uri(url, 40)
                    raise InputError(field, f"redirected to something not http(s): {shown}")
            else:
                raise InputError(field, f"more than {MAX_REDIRECTS} redirects")
            try:
                return _read_body(r, url, field, max_bytes, deadline)
            finally:
                r.close()
    except httpx.TimeoutException:
        raise InputError(field, f"fetching {url} took longer than {timeout:g} s") from None
    except httpx.InvalidURL:  # httpx reads a redirect's Location before we see it
        raise InputError(field, f"{url} redirected to something not http(s)") from None
    except httpx.HTTPError as e:
        raise InputError(field, f"could not fetch {url}: {e}") from None


def _read_body(r: httpx.Response, url: str, field: str, max_bytes: int, deadline: float) -> bytes:
    if r.status_code >= 400:
        raise InputError(field, f"the server answered HTTP {r.status_code} for {url}")
    size = int(r.headers.get("content-length") or 0)
    if size > max_bytes:
        raise _too_big(field, max_bytes)
    chunks, total = [], 0
    for chunk in r.iter_bytes():
        total += len(chunk)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("total time limit")
        if total > max_bytes:
            raise _too_big(field, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
