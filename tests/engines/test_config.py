"""The config loader: types, every problem at once, overrides, and the conf/ examples."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from netkit import config
from netkit.config import Address, Duration, Network, Size, field
from netkit.errors import ConfigError
from netkit.servers import tls

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    max_entries: int = field(100, min=0)
    ttl: Duration = Duration(60)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    listen: tuple[Address, ...] = (Address("127.0.0.1", 53),)
    allow: tuple[Network, ...] = ()
    buffer: Size = Size(4096)
    mode: Literal["a", "b"] = "a"
    file: Path | None = None
    enabled: bool = True
    cache: Inner = Inner()


def load(text: str, tmp_path: Path) -> Sample:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.load(Sample, "dns", path)


def test_every_type_parses(tmp_path):
    c = load("""
[dns]
listen = ["[::1]:5353", "127.0.0.2:0"]
allow = ["10.0.0.0/8", "::1/128"]
buffer = "64KiB"
mode = "b"
file = "data/cache.bin"
enabled = false
cache = { max_entries = 5, ttl = "5m" }
""", tmp_path)
    assert c.listen == (Address("::1", 5353), Address("127.0.0.2", 0))
    assert str(c.listen[0]) == "[::1]:5353"
    assert c.allow == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert c.buffer == 65536 and c.mode == "b" and c.enabled is False
    assert c.file == tmp_path / "data/cache.bin"  # relative to the config file
    assert c.cache == Inner(max_entries=5, ttl=Duration(300))


def test_defaults_when_the_section_is_absent(tmp_path):
    assert load("", tmp_path) == Sample()


def test_every_problem_is_reported_at_once_with_file_key_and_reason(tmp_path):
    with pytest.raises(ConfigError) as info:
        load("""
[dns]
listen = ["127.0.0.1"]
allow = ["10.0.0.300/8"]
buffer = "lots"
mode = "c"
enabled = "yes"
cach = {}
[dns.cache]
max_entries = -1
ttl = "forever"
""", tmp_path)
    path = tmp_path / "c.toml"
    assert info.value.problems == [
        f'{path}: dns.cach: unknown key (did you mean \'cache\'?)',
        f'{path}: dns.listen[0]: expected an address "HOST:PORT" such as "127.0.0.1:8443" '
        f'or "[::1]:53", got "127.0.0.1"',
        f'{path}: dns.allow[0]: expected a CIDR network such as "10.0.0.0/8" or "::1/128", '
        f'got "10.0.0.300/8"',
        f'{path}: dns.buffer: expected a size such as 4096, "64KiB", "10MiB" or "1GB", '
        f'got "lots"',
        f"{path}: dns.mode: expected one of 'a', 'b', got \"c\"",
        f'{path}: dns.enabled: expected true or false, got "yes"',
        f"{path}: dns.cache.max_entries: expected an integer >= 0, got -1",
        f'{path}: dns.cache.ttl: expected a duration such as 30, "250ms", "30s", "5m" or '
        f'"2h", got "forever"',
    ]


def test_unknown_section_and_bad_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[tsl]\n")
    with pytest.raises(ConfigError, match=r"tsl: unknown section \(did you mean 'tls'\?\)"):
        config.read_document(path)
    path.write_text("[dns\n")
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        config.read_document(path)
    with pytest.raises(ConfigError, match=r"file not found"):
        config.read_document(tmp_path / "nope.toml")


def test_set_overrides_any_key_including_list_elements():
    doc: dict = {"tls": {"tunnel": [{"forward": "127.0.0.1:1"}]}}
    for text in ("tls.tunnel.0.forward=127.0.0.1:2", "tls.tunnel.0.alpn=['h2']",
                 "tls.watch_interval=0", "tls.tunnel.1.mode=client"):
        config.apply_override(doc, *config.parse_override(text))
    assert doc == {"tls": {"watch_interval": 0, "tunnel": [
        {"forward": "127.0.0.1:2", "alpn": ["h2"]}, {"mode": "client"}]}}
    with pytest.raises(ConfigError):
        config.parse_override("no-equals-sign")


@pytest.mark.parametrize("text,seconds", [(30, 30), ("250ms", 0.25), ("1.5s", 1.5),
                                          ("5m", 300), ("2h", 7200)])
def test_durations(text, seconds):
    assert Duration.parse(text) == seconds


@pytest.mark.parametrize("bad", [-1, "5 minutes", "", True, "1y"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        Duration.parse(bad)


@pytest.mark.parametrize("text,port", [("a.example:0", 0), ("[fe80::1%eth0]:9", 9)])
def test_addresses(text, port):
    assert Address.parse(text).port == port


@pytest.mark.parametrize("bad", ["1.2.3.4:65536", "[nothex]:1", "::1:53", ":53", "host"])
def test_bad_addresses(bad):
    with pytest.raises(ValueError):
        Address.parse(bad)


@pytest.mark.parametrize("path", sorted((ROOT / "conf").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads_and_checks(path, tmp_path):
    # each file is checked by the server it configures, exactly as an operator would
    doc = config.read_document(path)
    assert doc, f"{path} is empty"
    for section in doc:
        r = subprocess.run([sys.executable, "-m", f"netkit.servers.{section}", "--config",
                            str(path), "--check-config"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT,
                           env=dict(os.environ, XDG_DATA_HOME=str(tmp_path)))
        assert r.returncode == 0, r.stderr


def test_check_config_exit_codes(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[tls]\nwatch_interval = "1s"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[tls]\nwatch_intreval = "1s"\nshutdown_timeout = "soon"\n')
    run = [sys.executable, "-m", "netkit.servers.tls", "--check-config",
           "--set", f"tls.dev_cert_dir={tmp_path / 'dev'}"]
    ok = subprocess.run([*run, "--config", str(good)], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    r = subprocess.run([*run, "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{bad}: tls.watch_intreval: unknown key (did you mean 'watch_interval'?)",
        f'{bad}: tls.shutdown_timeout: expected a duration such as 30, "250ms", "30s", "5m" '
        f'or "2h", got "soon"',
    ]
    r = subprocess.run([*run, "--listen", "nowhere"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--listen nowhere: expected an address" in r.stderr


def test_tunnel_cross_field_rules(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[tls.tunnel]]\ncert = "c.pem"\nallow_cn = ["x"]\n')
    with pytest.raises(ConfigError) as info:
        config.load(tls.Config, "tls", path)
    assert info.value.problems == [f"{path}: tls.tunnel[0]: cert and key go together"]


def test_a_single_address_stands_for_a_list(tmp_path):
    assert load('[dns]\nlisten = "127.0.0.1:8443"\n', tmp_path).listen == \
        (Address("127.0.0.1", 8443),)
    with pytest.raises(ConfigError, match=r"dns.listen\[0\]: expected an address"):
        load('[dns]\nlisten = "nowhere"\n', tmp_path)
    with pytest.raises(ConfigError, match=r"dns.cache: expected a table"):
        load('[dns]\ncache = "x"\n', tmp_path)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'[dns]\nrate_limit = 1 # caf\xe9\n')
    with pytest.raises(ConfigError) as caught:
        config.read_document(path)
    assert caught.value.problems == [f"{path}: not UTF-8 (TOML must be): byte 0xe9 at offset 26"]


def test_check_config_writes_nothing_and_needs_the_servers_section(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"))
    r = subprocess.run([sys.executable, "-m", "netkit.servers.tls", "--check-config"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert list(home.rglob("*")) == []  # no development CA written by a check
    other = tmp_path / "other.toml"
    other.write_text('[tls]\nwatch_interval = "1s"\n')
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dns", "--config", str(other),
                        "--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"{other}: no [dns] section"
