"""Run Debian's nginx on loopback in front of the emulator, as a gateway would sit before SMH.

Everything lives in a temporary directory: the generated config, a self-signed CA and server
certificate (made with the ``openssl`` CLI), the pid file and the logs. nginx runs in the
foreground as a child process. The access log records ``$request_method $uri $status`` only:
never ``$request`` or ``$args``, because the query string carries the access token.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["NginxGateway", "make_tls_files", "nginx_binary", "openssl_binary"]


def nginx_binary() -> str | None:
    """Path of the nginx binary (PATH, then /usr/sbin), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def openssl_binary() -> str | None:
    """Path of the openssl CLI, or None."""
    return shutil.which("openssl")


@dataclass(frozen=True)
class TLSFiles:
    """A CA certificate to trust and a server key/certificate for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Create a throwaway CA and a server certificate it signed (EC P-256, valid 2 days)."""
    openssl = openssl_binary()
    if openssl is None:
        raise RuntimeError("openssl CLI not found")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:smh.test\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-subj", "/CN=smh-async test CA", "-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    sign = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-extfile", ext]
    run = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", *ca_ext],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, *sign, "-out", cert, "-days", "2"],
    ]
    for cmd in run:
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return TLSFiles(ca, cert, key)


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayConfig:
    """What the gateway does. ``rate`` enables ``limit_req`` (429 beyond it)."""

    upstream_port: int
    tls: TLSFiles | None = None
    rate: int | None = None
    burst: int = 0
    keepalive_requests: int = 1000
    keepalive_timeout: str = "75s"


class NginxGateway:
    """nginx as a reverse proxy on a random loopback port; ``base_url`` points at it."""

    def __init__(self, directory: Path, config: GatewayConfig) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx not found")
        self.binary = binary
        self.dir = directory
        self.config = config
        self.port = free_port()
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:port`` with TLS, else ``http://``."""
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def render(self) -> str:
        """The nginx.conf text."""
        c = self.config
        user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
        listen = f"listen 127.0.0.1:{self.port}" + (" ssl" if c.tls else "") + ";"
        tls = f"ssl_certificate {c.tls.cert}; ssl_certificate_key {c.tls.key};" if c.tls else ""
        zone = (
            f"limit_req_zone $binary_remote_addr zone=smh:1m rate={c.rate}r/s; "
            "limit_req_status 429;"
            if c.rate
            else ""
        )
        limit = f"limit_req zone=smh burst={c.burst} nodelay;" if c.rate else ""
        return f"""
{user}
worker_processes 1;
error_log {self.error_log} info;
events {{ worker_connections 4096; }}
http {{
    log_format smh '$request_method $uri $status';
    access_log {self.access_log} smh;
    client_body_temp_path {self.dir}/tmp_body;
    proxy_temp_path {self.dir}/tmp_proxy;
    fastcgi_temp_path {self.dir}/tmp_fastcgi;
    uwsgi_temp_path {self.dir}/tmp_uwsgi;
    scgi_temp_path {self.dir}/tmp_scgi;
    keepalive_requests {c.keepalive_requests};
    keepalive_timeout {c.keepalive_timeout};
    {zone}
    upstream smh {{ server 127.0.0.1:{c.upstream_port}; keepalive 64; }}
    server {{
        {listen}
        {tls}
        location / {{
            {limit}
            proxy_pass http://smh;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""

    def start(self) -> None:
        """Write the config, start nginx in the foreground and wait until it accepts."""
        conf = self.dir / "nginx.conf"
        conf.write_text(self.render())
        self._proc = subprocess.Popen(
            [
                self.binary,
                "-p",
                str(self.dir),
                "-e",
                str(self.error_log),
                "-c",
                str(conf),
                "-g",
                f"daemon off; pid {self.dir}/nginx.pid;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"nginx exited: {err} {self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("nginx did not start listening within 10 s")

    def stop(self) -> None:
        """Graceful stop (SIGQUIT: finish requests, flush logs), then make sure it is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def access_lines(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` for every request nginx logged."""
        out = []
        for line in self.access_log.read_text().splitlines():
            method, path, status = line.split(" ")
            out.append((method, path, int(status)))
        return out

    def __enter__(self) -> NginxGateway:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
