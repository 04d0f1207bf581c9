"""The HTTP proxy a client's own session goes through, from the environment, decided once.

``HTTPS_PROXY`` / ``HTTP_PROXY`` (by the base URL's scheme) and ``NO_PROXY`` are read the way
curl, httpx and the AWS CLI read them; as in Go's ``net/http`` (rclone, s5cmd), a loopback
base URL never goes through a proxy. aiohttp's own ``trust_env=True`` would look the
environment and ``~/.netrc`` up again for every request, each time in a worker thread: two
thread hops per request at hundreds of requests a second, for an answer that cannot change
(every request of a client goes to one base URL). So the answer is computed when the client
is built and passed to each request. ``~/.netrc`` is not read: SMH authenticates with a
token in the query, and a stray ``Authorization`` header is not wanted.

Proxy credentials (``http://user:password@proxy:3128``) become a ``Proxy-Authorization``
header (sent to the proxy only: on the CONNECT of an https base URL, on each request of a
plain-http one); the URL kept for the session, and so for any error text, has them removed.
Every form they take on the wire is kept in :attr:`ProxyChoice.secrets`, so that a proxy
echoing the request head (an error page) cannot put them into an error or a log.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass, field

from yarl import URL

from smh_async._errors import SMHConfigError
from smh_async._settings import is_loopback_host

__all__ = ["DIRECT", "ProxyChoice", "proxy_for"]

_FIX = "Unset it, add the SMH host to NO_PROXY, or set SMH_PROXY_FROM_ENV=false"  # every message


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """Where a client's requests go: ``url`` (no credentials) or None to connect directly;
    ``authorization``: the ``Proxy-Authorization`` value; ``secrets``: the credential in every
    form it can be echoed back in (never shown in a repr)."""

    url: URL | None = None
    authorization: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


DIRECT = ProxyChoice()


def proxy_for(base_url: str) -> ProxyChoice:
    """The proxy for ``base_url`` from the environment (:data:`DIRECT`: connect directly).

    Raises :class:`SMHConfigError` naming the variable, never its value (it may hold a
    password), when the proxy URL cannot be used.
    """
    url = URL(base_url)
    host = url.host or ""
    if is_loopback_host(host) or urllib.request.proxy_bypass(host):
        return DIRECT
    raw = urllib.request.getproxies().get(url.scheme, "").strip()
    if not raw:
        return DIRECT
    proxy = _parse(raw, f"{url.scheme.upper()}_PROXY")
    if proxy.user is None and proxy.password is None:
        return ProxyChoice(proxy)
    # Built here: aiohttp 3.14 deprecates BasicAuth/proxy_auth, 3.9 lacks its replacement.
    pair = f"{proxy.user or ''}:{proxy.password or ''}".encode()
    encoded = base64.b64encode(pair).decode("ascii")
    secrets = (f"Basic {encoded}", encoded, proxy.password or "", proxy.raw_password or "")
    return ProxyChoice(proxy.with_user(None), f"Basic {encoded}", tuple(s for s in secrets if s))


def _parse(raw: str, variable: str) -> URL:
    """``raw`` as an ``http://[user:password@]host:port`` URL, or a config error saying what
    is wrong with it (never the value itself)."""
    try:
        proxy = URL(raw if "://" in raw else f"http://{raw}")
        port = proxy.explicit_port
    except ValueError:  # yarl: a port that is not a number (a '/', '#' or '?' in a password)
        # The text of yarl's error is not shown: it may quote part of the password.
        raise _bad_proxy(
            variable,
            "is not a valid proxy URL (a port that is not a number from 1 to 65535, or a "
            "password holding '/', '#', '?' or '@' not percent-encoded as %2F, %23, %3F, %40)",
        ) from None
    if proxy.scheme != "http":
        raise _bad_proxy(
            variable,
            f"only an http://host:port proxy is supported (got a {proxy.scheme} URL); the "
            "connection to SMH through it is still end-to-end TLS",
        )
    if not proxy.host:
        raise _bad_proxy(variable, "the proxy URL has no host (expected http://host:port)")
    if port == 0 or proxy.path not in ("", "/") or proxy.query_string or proxy.fragment:
        # e.g. http://user:12#pw@host: yarl reads host "user", port 12 and a fragment.
        raise _bad_proxy(
            variable,
            "is not a valid proxy URL (expected http://[user:password@]host:port with no "
            "path, query or fragment; percent-encode '/', '#', '?' and '@' in a password)",
        )
    return proxy


def _bad_proxy(variable: str, why: str) -> SMHConfigError:
    return SMHConfigError(f"{variable}: {why}. {_FIX}", fields=("proxy_from_env",))
