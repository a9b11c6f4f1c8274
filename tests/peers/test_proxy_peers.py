"""The proxy with real peers: curl -x for http and https (CONNECT to a TLS front with a
development certificate), netkit's client with proxy=, and tinyproxy as the upstream."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import anyio
import pytest

from netkit.clients.http import Client
from netkit.testing import serve_in_thread
from netkit.testing.ca import DevCA
from netkit.testing.tls import tls_front
from tests.drivers.test_http_client import tinyproxy  # noqa: F401  (a fixture)
from tests.drivers.test_proxy import app
from tests.support.fixtures import need

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, DevCA]]:
    """An HTTP origin, and a TLS front before it whose certificate says localhost."""
    ca = DevCA(tmp_path_factory.mktemp("proxy-ca"))
    with serve_in_thread("http", app=app) as web, \
            tls_front(f"127.0.0.1:{web.addresses[0][1]}", ca, "localhost") as front:
        yield web.url, front.addresses[0][1], ca


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("curl"), "-sS", *args], capture_output=True, text=True,
                          timeout=30)


def test_curl_through_the_proxy_for_http_and_https(origins) -> None:
    web, tls_port, ca = origins
    with serve_in_thread("proxy", {"proxy": {"deny_destinations": [],
                                             "connect_ports": [tls_port]}}) as px:
        r = curl("-x", px.url, f"{web}/inspect", "-d", "x=1")
        assert r.returncode == 0, r.stderr
        assert '"via":"1.1 netkit"' in r.stdout and '"length":3' in r.stdout
        r = curl("-x", px.url, "--cacert", str(ca.ca_file),
                 f"https://localhost:{tls_port}/inspect")
        assert r.returncode == 0, r.stderr
        assert '"method":"GET"' in r.stdout and "via" not in r.stdout  # a tunnel: untouched
        r = curl("-x", px.url, "-o", "/dev/null", f"https://localhost:{tls_port - 1}/")
        assert r.returncode == 56 and "CONNECT tunnel failed, response 403" in r.stderr
        assert px.counters["tunnels"] == 1 and px.counters["requests"] >= 3


def test_netkit_client_with_proxy_for_both_schemes(origins) -> None:
    web, tls_port, ca = origins
    with serve_in_thread("proxy", {"proxy": {"deny_destinations": [],
                                             "connect_ports": [tls_port]}}) as px:
        async def main() -> tuple[str, str]:
            async with Client(proxy=px.url, verify=ca.ca_file) as c:
                plain = await c.get(f"{web}/inspect")
                tunneled = await c.get(f"https://localhost:{tls_port}/inspect")
                return plain.headers["Via"], tunneled.json()["method"]
        assert anyio.run(main) == ("1.1 netkit", "GET")


def test_chained_through_tinyproxy(origins, tinyproxy) -> None:  # noqa: F811
    web, tls_port, ca = origins
    with serve_in_thread("proxy", {"proxy": {"upstream": f"127.0.0.1:{tinyproxy}",
                                             "deny_destinations": [],
                                             "connect_ports": [tls_port]}}) as px:
        r = curl("-i", "-x", px.url, f"{web}/inspect")
        assert r.returncode == 0, r.stderr
        head, body = r.stdout.split("\n\n", 1)  # (text mode: CR LF read as LF)
        # the origin saw both proxies, ours first; the answer came back through both
        assert '"via":"1.1 netkit, 1.1 ' in body and "tinyproxy" in body
        vias = [line.lower() for line in head.split("\n") if line.lower().startswith("via:")]
        assert "tinyproxy" in vias[0] and vias[-1] == "via: 1.1 netkit"
        r = curl("-x", px.url, "--cacert", str(ca.ca_file),
                 f"https://localhost:{tls_port}/inspect")
        assert r.returncode == 0 and '"method":"GET"' in r.stdout, r.stderr
