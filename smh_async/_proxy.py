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
"""

from __future__ import annotations

import base64
import urllib.request

from yarl import URL

from smh_async._errors import SMHConfigError
from smh_async._settings import is_loopback_host

__all__ = ["proxy_for"]


def proxy_for(base_url: str) -> tuple[URL | None, str | None]:
    """``(proxy URL without credentials, Proxy-Authorization value)`` for ``base_url``.

    ``(None, None)``: connect directly.
    """
    url = URL(base_url)
    host = url.host or ""
    if is_loopback_host(host) or urllib.request.proxy_bypass(host):
        return None, None
    raw = urllib.request.getproxies().get(url.scheme, "").strip()
    if not raw:
        return None, None
    proxy = URL(raw if "://" in raw else f"http://{raw}")
    if proxy.scheme != "http" or not proxy.host:
        # Never echo the value: it may hold a password.
        raise SMHConfigError(
            f"{url.scheme.upper()}_PROXY: only an http://host:port proxy is supported "
            f"(got {'a ' + proxy.scheme + ' URL' if proxy.scheme else 'no host'}); the "
            "connection to SMH through it is still end-to-end TLS. Unset it, add the SMH "
            "host to NO_PROXY, or set SMH_PROXY_FROM_ENV=false",
            fields=("proxy_from_env",),
        )
    auth = None
    if proxy.user is not None or proxy.password is not None:
        # Built here: aiohttp 3.14 deprecates BasicAuth/proxy_auth, 3.9 lacks its replacement.
        pair = f"{proxy.user or ''}:{proxy.password or ''}".encode()
        auth = "Basic " + base64.b64encode(pair).decode("ascii")
    return proxy.with_user(None), auth
