"""A server's address read from a URL, or a precise reason it cannot be one.

``urllib.parse`` raises bare ``ValueError``s on an unclosed IPv6 bracket or a bad port, and
reads port 0 as "no port"; callers substituted the scheme's default port for it. Here every
URL a provider definition or a certificate check names is read once: the inventory's model
refuses a bad one with a 422, its certificate route does the same, and the TLS check reaches
the port the URL names (or the scheme's default when it names none), never another.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Endpoint", "endpoint", "url_problem"]

DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int


def endpoint(url: str) -> Endpoint:
    """The scheme, host and port ``url`` names; ``ValueError`` saying why it names none: an
    unclosed IPv6 bracket, a port that is not a number or not in 1..65535, no host."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # unbalanced brackets, or a host NFKC normalizes to a separator
        if "[" in url and "]" not in url.partition("[")[2]:
            raise ValueError("the URL has an unclosed IPv6 bracket '['") from None
        raise ValueError(f"the URL cannot be read: {exc}") from None
    netloc = parts.netloc.rpartition("@")[2]
    host_part, _, port_text = netloc.rpartition("]") if "[" in netloc else ("", "", netloc)
    if "[" in netloc and not host_part:
        raise ValueError("the URL has an unclosed IPv6 bracket '['")
    if host_part and port_text and not port_text.startswith(":"):
        raise ValueError("the URL has text between its IPv6 address and its port")
    _, colon, port_text = port_text.partition(":")
    if colon and port_text:
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"the URL's port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"the URL's port {port} is not in 1..65535")
    else:
        port = DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    if not parts.hostname:
        raise ValueError("the URL names no host (https://host[:port]/…)")
    return Endpoint(parts.scheme.lower(), parts.hostname, port)


def url_problem(url: str) -> str | None:
    """Why ``url`` names no server (``endpoint``'s reason), or None."""
    try:
        endpoint(url)
    except ValueError as exc:
        return str(exc)
    return None
