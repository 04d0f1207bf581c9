"""Start Debian's nginx on loopback answering 204 to every purge, for the length of a block."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONFIG = """
worker_processes 1;
worker_cpu_affinity {affinity};
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location /api/v1/recycled/ {{ return 204; }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_binary() -> str:
    """Path of the nginx executable (``/usr/sbin`` is often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    if found is None:
        raise SystemExit("nginx not found: apt-get install -y nginx-light (make bench does it)")
    return found


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nginx exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start listening within 10 s")


@contextmanager
def running_nginx(cpu: int | None) -> Iterator[str]:
    """Yield the base URL of a fresh nginx; its one worker is pinned to ``cpu`` if given."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="smh-bench-nginx-") as root:
        affinity = "auto" if cpu is None else format(1 << cpu, "b")
        conf = Path(root, "nginx.conf")
        conf.write_text(CONFIG.format(root=root, port=port, affinity=affinity))
        cmd = [nginx_binary(), "-c", str(conf), "-p", root, "-e", f"{root}/error.log"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
