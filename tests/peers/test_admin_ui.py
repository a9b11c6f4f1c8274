"""The admin page in a real headless browser (Debian chromium, driven by playwright):
it loads under its Content-Security-Policy with no console errors, shows a DHCP lease
and the SMTP queue after traffic, and renders attacker-chosen text as text."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.support.fixtures import free_port

pytestmark = pytest.mark.peer
HOSTILE = '"<img src=x onerror=alert(1)>"@evil.test'
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def send_hostile_mail(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")

        def cmd(line: bytes) -> bytes:
            if line:
                f.write(line + b"\r\n")
                f.flush()
            while True:
                reply = f.readline()
                if reply[3:4] != b"-":
                    return reply
        cmd(b"")
        cmd(b"EHLO test")
        assert cmd(b"MAIL FROM:<" + HOSTILE.encode() + b">").startswith(b"250")
        assert cmd(b"RCPT TO:<bob@far.test>").startswith(b"250")
        cmd(b"DATA")
        assert cmd(b"Subject: hi\r\n\r\nhello\r\n.").startswith(b"250")


def test_the_page_shows_state_and_escapes_everything(spawn, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium (bash scripts/install-peers.sh)")
    playwright = pytest.importorskip("playwright.sync_api")
    from netkit.clients import dhcp

    admin, smtp = free_port(), free_port()
    conf = tmp_path / "router.toml"
    conf.write_text(f"""[admin]
listen = "127.0.0.1:{admin}"
[dhcp]
interface = "lo"
port = 0
subnet = "127.0.10.0/24"
pool = ["127.0.10.100-127.0.10.110"]
lease_db = "{tmp_path / 'leases.db'}"
[smtp]
listen = ["127.0.0.1:{smtp}"]
queue_dir = "{tmp_path / 'queue'}"
maildir = "{tmp_path / 'mail'}"
resolver = ["127.0.0.1:9"]
retry_schedule = ["1h"]
""")
    proc = spawn("netkit", ["run", "--config", str(conf), "--control",
                            str(tmp_path / "ctl.sock")])
    m = proc.wait_for(r"dhcp: listening on 127\.0\.0\.1:(\d+) ")
    proc.wait_for(rf"listening on 127\.0\.0\.1:{admin} ")
    lease = asyncio.run(dhcp.obtain(server=f"127.0.0.1:{m.group(1)}", giaddr="127.0.10.1",
                                    mac="02:00:00:00:aa:01", hostname="laptop"))
    send_hostile_mail(smtp)
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: problems.append(msg.text)
                    if msg.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
            assert proc.proc.poll() is None, proc.log
            response = page.goto(f"http://127.0.0.1:{admin}/ui")
            assert response is not None and response.status == 200
            assert "script-src 'self'" in response.headers["content-security-policy"]
            page.get_by_text("laptop", exact=True).wait_for(timeout=10_000)
            page.get_by_text(lease.address, exact=True).first.wait_for(timeout=10_000)
            cell = page.get_by_text(HOSTILE, exact=True)
            cell.wait_for(timeout=10_000)  # the sender, shown as the text it is
            assert page.locator("img").count() == 0
            shot = os.environ.get("NETKIT_ADMIN_SCREENSHOT") or str(tmp_path / "ui.png")
            page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert Path(shot).stat().st_size > 10_000
