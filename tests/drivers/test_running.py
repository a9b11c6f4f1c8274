"""Servers run from Python (netkit/running.py, netkit.testing): the config checked as the
CLI checks it, port 0 on loopback by default, a clean stop (no socket, task or thread
left after 200 runs), sync, async, uvloop and trio forms, and one code path with the CLI."""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.request
from pathlib import Path

import anyio
import pytest
from dnslib import DNSRecord

import netkit.servers.dns
import netkit.servers.http
import netkit.servers.tls
from netkit.contract import spec_of
from netkit.errors import ConfigError
from netkit.servers.http.app import AppRequest, AppResponse
from netkit.testing import serve, serve_in_thread

pytestmark = pytest.mark.anyio

ZONE = {"dns": {"recursion": False, "zone": [{"name": "test", "records": [
    "api 60 A 192.0.2.10"]}]}}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def ask(address: tuple[str, int], name: str, qtype: str = "A") -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(await anyio.to_thread.run_sync(
        lambda: q.send(address[0], address[1], timeout=2)))


async def hello(request: AppRequest) -> AppResponse:
    return AppResponse(200, [(b"content-type", b"text/plain")], b"hello " + request.method.encode())


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_the_cli_builds_servers_with_the_modules_public_create() -> None:
    for module in (netkit.servers.dns, netkit.servers.http, netkit.servers.tls):
        spec = spec_of(module.__name__.rsplit(".", 1)[1])
        assert spec.create is module.create


async def test_serve_listens_on_loopback_port_0_and_answers() -> None:
    async with netkit.servers.dns.serve(ZONE) as server:
        (host, port), = server.addresses
        assert host == "127.0.0.1" and port != 0
        r = await ask((host, port), "api.test")
        assert str(r.a.rdata) == "192.0.2.10"
        assert server.counters["datagrams_in"] == 1 and server.counters["datagrams_out"] == 1
        with pytest.raises(AttributeError, match="no URL"):
            _ = server.url
    async with netkit.servers.http.serve(app=hello) as web:
        assert web.url == f"http://127.0.0.1:{web.addresses[0][1]}"
        assert await anyio.to_thread.run_sync(get, web.url + "/") == (200, b"hello GET")
        assert web.counters["accepted"] == 1


async def test_an_address_in_the_config_is_kept() -> None:
    async with serve("dns", {"dns": {"listen": ["127.0.0.1:0", "127.0.0.2:0"]}}) as server:
        assert [h for h, _ in server.addresses] == ["127.0.0.1", "127.0.0.2"]


@pytest.mark.parametrize("config, problems", [
    ({"dns": {"recursoin": False, "listen": "nowhere"}},
     ["<config>: dns.recursoin: unknown key (did you mean 'recursion'?)",
      '<config>: dns.listen[0]: expected an address "HOST:PORT" such as "127.0.0.1:8443" '
      'or "[::1]:53", got "nowhere"']),
    ({"dnss": {}}, ["<config>: dnss: unknown section (did you mean 'dns'?)"]),
    ("[dns\nlisten = 1", None),
    ({"dns": {"zone": [{"name": "t", "file": "/nonexistent/t.zone"}]}},
     ["dns.zone[0]: /nonexistent/t.zone: No such file or directory"]),
    ({"dns": {"zone": [{"name": "t", "records": ["www A 1.2.3.4.5"]}]}}, None),
    ({"dns": {"zone": [{"name": "t", "records": ["x A 192.0.2.1"], "file": "z"}]}},
     ["<config>: dns.zone[0]: a zone has a file or records, not both"]),
    ({"dns": {"recursion": False, "forward": [{"zone": "corp", "servers": ["127.0.0.1:53"]}]}},
     ["<config>: dns: forward zones need recursion = true"]),
])
async def test_a_bad_config_is_a_config_error_listing_every_problem(config, problems) -> None:
    with pytest.raises(ConfigError) as caught:
        async with serve("dns", config):
            pytest.fail("served a bad config")
    if problems is not None:
        assert caught.value.problems == problems
    else:
        assert len(caught.value.problems) == 1  # TOML syntax, a record that does not parse


async def test_a_zone_file_without_its_soa_is_refused(tmp_path: Path) -> None:
    zone = tmp_path / "t.zone"
    zone.write_text("www 300 IN A 192.0.2.1\n")
    with pytest.raises(ConfigError) as caught:
        netkit.servers.dns.create({"dns": {"zone": [{"name": "t", "file": str(zone)}]}})
    assert caught.value.problems == [f"dns.zone[0]: {zone}: zone t. has no SOA record at "
                                     "its apex"]


async def test_toml_text_works_as_the_config() -> None:
    text = '[dns]\nrecursion = false\n[[dns.zone]]\nname = "test"\nrecords = ["api A 192.0.2.7"]\n'
    async with serve("dns", text) as server:
        r = await ask(server.addresses[0], "api.test")
        assert str(r.a.rdata) == "192.0.2.7"


async def test_an_error_in_the_block_comes_out_as_raised_and_the_server_stops() -> None:
    async with serve("http", app=hello):  # first-use work (the process opens /dev/null once
        pass                               # under pytest) before counting
    fds = open_fds()
    with pytest.raises(KeyError, match="mine"):
        async with serve("http", app=hello):
            raise KeyError("mine")
    assert open_fds() == fds


async def test_a_port_in_use_is_an_oserror_and_nothing_is_left() -> None:
    async with serve("http", app=hello) as first:
        fds = open_fds()
        with pytest.raises(OSError):
            async with serve("http", {"http": {"listen": [f"127.0.0.1:{first.addresses[0][1]}"]}}):
                pass
        assert open_fds() == fds


async def test_reload_takes_a_new_config_and_keeps_the_old_when_it_is_bad() -> None:
    async with serve("dns", ZONE) as server:
        server.reload({"dns": {"recursion": False, "zone": [{"name": "test", "records": [
            "api 60 A 192.0.2.99"]}]}})  # listen unset: 127.0.0.1:0 still, not rebound
        assert str((await ask(server.addresses[0], "api.test")).a.rdata) == "192.0.2.99"
        with pytest.raises(ConfigError):
            server.reload({"dns": {"zone": [{"name": "test", "records": ["bad A x"]}]}})
        assert str((await ask(server.addresses[0], "api.test")).a.rdata) == "192.0.2.99"


async def test_200_starts_and_stops_leave_no_socket_or_task() -> None:
    async with serve("dns", ZONE):  # imports and first-use caches, before counting
        pass
    async with serve("http", app=hello):
        pass
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    for i in range(100):
        async with serve("dns", ZONE) as server:
            if i % 25 == 0:
                assert str((await ask(server.addresses[0], "api.test")).a.rdata) == "192.0.2.10"
        async with serve("http", app=hello) as web:
            if i % 25 == 0:
                assert (await anyio.to_thread.run_sync(get, web.url))[0] == 200
    assert open_fds() == fds
    assert len(asyncio.all_tasks()) == tasks


def test_serve_in_thread_for_sync_tests_leaves_no_thread_or_socket() -> None:
    with serve_in_thread("http", app=hello) as warm:
        get(warm.url)
    fds, threads = open_fds(), threading.active_count()
    for _ in range(20):
        with serve_in_thread("http", app=hello) as web:
            assert get(web.url) == (200, b"hello GET")
    assert (open_fds(), threading.active_count()) == (fds, threads)


def test_serve_in_thread_reports_a_bad_config_and_leaves_no_thread() -> None:
    threads = threading.active_count()
    with pytest.raises(ConfigError):
        serve_in_thread("dns", {"dns": {"listen": "nowhere"}})
    assert threading.active_count() == threads


def test_call_runs_in_the_servers_thread() -> None:
    with serve_in_thread("dns", {"dns": {"recursion": False}}) as server:
        server.call(server.service.add_record, "api.test", "A", "192.0.2.5")
        r = DNSRecord.parse(DNSRecord.question("api.test").send(*server.addresses[0],
                                                               timeout=2))
        assert str(r.a.rdata) == "192.0.2.5"


def test_serve_on_uvloop_and_on_trio() -> None:
    async def once() -> str:
        async with serve("dns", ZONE) as server:
            return str((await ask(server.addresses[0], "api.test")).a.rdata)

    assert anyio.run(once, backend="asyncio", backend_options={"use_uvloop": True}) == \
        "192.0.2.10"
    pytest.importorskip("trio")
    threads = threading.active_count()
    assert anyio.run(once, backend="trio") == "192.0.2.10"  # in a thread of its own
    assert threading.active_count() <= threads + 1  # (trio keeps one idle worker thread)


def test_idle_connections_do_not_hold_the_stop() -> None:
    """Draining closes idle DNS-over-TCP and HTTP keep-alive connections at once instead
    of waiting out shutdown_timeout (5 s and 10 s by default)."""
    import socket
    import time

    dns = serve_in_thread("dns", ZONE)
    web = serve_in_thread("http", app=hello)
    idle_dns = socket.create_connection(dns.addresses[0])
    keep_alive = socket.create_connection(web.addresses[0])
    keep_alive.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert keep_alive.recv(100).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    dns.stop()
    web.stop()
    assert time.monotonic() - started < 1
    idle_dns.settimeout(2)
    keep_alive.settimeout(2)
    assert idle_dns.recv(10) == b""  # closed by the server
    while keep_alive.recv(4096):  # the rest of the response, then the close
        pass
    idle_dns.close()
    keep_alive.close()
