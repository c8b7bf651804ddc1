"""The little HTTP the kit needs (JWKS GET, introspection POST): stdlib urllib only.

Like pyjwt's ``PyJWKClient`` it follows no redirects and accepts only http(s)
URLs; unlike it, it bounds the response size and the total time, and returns the
headers (for ``Cache-Control``). Plain http is refused except to a loopback host
unless the caller opts in: tokens and client secrets travel over it (RFC 6750
section 5.3, RFC 7662 section 4).
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

_CHUNK = 64 * 1024


class HttpFailure(Exception):
    """The request did not produce a complete response (network, timeout, too large)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Message
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: a JWKS or introspection URL is configured, not discovered."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool) -> str:
    """Return ``url`` if it is https (or http to loopback, or http when allowed)."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "https" or (scheme == "http" and (allow_http or _is_loopback(parsed.hostname))):
        if not parsed.hostname:
            raise ValueError(f"URL has no host: {url!r}")
        return url
    if scheme == "http":
        raise ValueError(
            f"refusing plain http to a non-loopback host: {url!r} (pass allow_http=True "
            "only on a network you trust)"
        )
    raise ValueError(f"only http(s) URLs are supported: {url!r}")


def request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    """One HTTP exchange; any HTTP status is returned, transport failures raise."""
    handlers: list[Any] = [_NoRedirect()]
    if ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
    opener = urllib.request.build_opener(*handlers)
    if urlparse(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are supported: {url!r}")
    req = urllib.request.Request(  # noqa: S310
        url, data=data, headers=dict(headers or {}), method=method
    )
    deadline = time.monotonic() + timeout
    try:
        try:
            response = opener.open(req, timeout=timeout)
        except HTTPError as err:
            response = err  # a non-2xx answer is still an answer
        with response:
            status = int(response.getcode() or 0)
            response_headers = response.headers
            body = _read_bounded(response, max_bytes, deadline)
    except (URLError, TimeoutError, OSError, http.client.HTTPException, ValueError) as err:
        raise HttpFailure(type(err).__name__) from err
    return HttpResponse(status=status, headers=response_headers, body=body)


def _read_bounded(response: Any, max_bytes: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise HttpFailure("response took too long")
        chunk: bytes = response.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise HttpFailure("response too large")
