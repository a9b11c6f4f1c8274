"""The SMTP relay's receiving side and queue with swaks as the client: local delivery
into Maildir, the relay policy (never an open relay), limits, and SIGKILL at the worst
moments."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netkit.testing.dns import DNSZones
from tests.support.fixtures import need

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def zones() -> Iterator[DNSZones]:
    """The DNS the relay asks for MX records: never the system's resolver in a test."""
    with DNSZones() as z:
        yield z


@pytest.fixture
def relay(spawn, tmp_path: Path, zones: DNSZones):  # type: ignore[no-untyped-def]
    def start(*extra: str):  # type: ignore[no-untyped-def]
        proc = spawn("netkit.servers.smtp", [
            "--listen", "127.0.0.1:0", "--set", f"smtp.queue_dir={tmp_path / 'queue'}",
            "--set", f'smtp.resolver=["127.0.0.1:{zones.port}"]',
            "--set", f"smtp.maildir={tmp_path / 'mail'}",
            "--set", 'smtp.local_domains=["example.test"]',
            "--set", "smtp.max_message_size=64KiB", "--set", "smtp.max_recipients=3", *extra])
        (_, port), = proc.listening(1)
        return proc, port
    return start


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("swaks"), "--server", "127.0.0.1", "--port", str(port),
                           "--from", "bob@elsewhere.test", *args],
                          capture_output=True, text=True, timeout=60)


def queued(tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "netkit.servers.smtp", "queue", "--set",
                          f"smtp.queue_dir={tmp_path / 'queue'}"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return json.loads(out)


def drained(tmp_path: Path, timeout: float = 10) -> bool:
    """The queue empties (a message leaves it just after its delivery is logged)."""
    deadline = time.monotonic() + timeout
    while queued(tmp_path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_local_mail_lands_in_the_maildir(relay, tmp_path: Path) -> None:
    proc, port = relay()
    r = swaks(port, "--to", "ann@example.test", "--header", "Subject: hi", "--body", "hello")
    assert r.returncode == 0 and "250 2.0.0 Ok: queued as" in r.stdout
    proc.wait_for(r"delivered to <ann@example.test> \(maildir\)")
    (mail,) = (tmp_path / "mail" / "ann@example.test" / "new").iterdir()
    text = mail.read_text()
    assert text.startswith("Received: from ") and "by localhost (netkit) with ESMTP" in text
    assert "Subject: hi" in text and "hello" in text
    assert list((tmp_path / "mail" / "ann@example.test" / "tmp").iterdir()) == []
    assert drained(tmp_path)  # delivered: out of the queue


def test_never_an_open_relay(relay, tmp_path: Path) -> None:
    proc, port = relay()
    # from 127.0.0.2: not in relay_networks (127.0.0.1/32, ::1/128)
    r = swaks(port, "--to", "victim@remote.test", "--local-interface", "127.0.0.2")
    assert r.returncode != 0 and "554 5.7.1 Relay access denied" in r.stdout
    proc.wait_for(r"127\.0\.0\.2: relay to <victim@remote.test> refused")
    r = swaks(port, "--to", "ann@example.test", "--local-interface", "127.0.0.2")
    assert r.returncode == 0  # local mail from anyone
    r = swaks(port, "--to", "friend@remote.test")  # from 127.0.0.1: relaying allowed
    assert r.returncode == 0
    (entry,) = queued(tmp_path)  # relayed: queued for remote.test (whose MX is unknown)
    (rcpt,) = entry["recipients"]
    assert (rcpt["address"], rcpt["state"]) == ("friend@remote.test", "pending")


def test_limits_get_their_codes(relay) -> None:
    _, port = relay()
    r = swaks(port, "--to", "ann@example.test", "--body", ("x" * 70 + "\n") * 1200)
    assert r.returncode != 0 and "552" in r.stdout
    r = swaks(port, "--to", ",".join(f"u{i}@example.test" for i in range(5)))
    assert "452 4.5.3 Too many recipients" in r.stdout


def test_sigkill_after_250_loses_nothing_and_during_data_queues_nothing(relay,
                                                                        tmp_path: Path) -> None:
    proc, port = relay()
    r = swaks(port, "--to", "far@remote.test", "--body", "keep me")
    assert r.returncode == 0
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait()
    (entry,) = queued(tmp_path)  # acknowledged: on disk, whatever happened next
    assert entry["sender"] == "bob@elsewhere.test"
    proc, port = relay()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        f.readline()
        for line in (b"EHLO t", b"MAIL FROM:<a@b.test>", b"RCPT TO:<c@remote.test>",
                     b"DATA"):
            f.write(line + b"\r\n")
            f.flush()
            while True:
                reply = f.readline()
                if reply[3:4] != b"-":
                    break
        assert reply.startswith(b"354")
        f.write(b"Subject: half\r\n\r\nnever finished\r\n")
        f.flush()
        proc.proc.send_signal(signal.SIGKILL)  # before the final dot: no 250 was sent
        proc.proc.wait()
    assert [e["id"] for e in queued(tmp_path)] == [entry["id"]]  # only the first


def test_a_queue_that_cannot_be_written_answers_451_and_recovers(relay,
                                                                 tmp_path: Path) -> None:
    proc, port = relay()
    tmp = tmp_path / "queue" / "tmp"
    tmp.rmdir()
    tmp.write_text("not a directory")  # every queue write now fails (ENOTDIR)
    r = swaks(port, "--to", "far@remote.test")
    assert r.returncode != 0 and "451 4.3.0 Cannot queue the message now" in r.stdout
    proc.wait_for(r"cannot queue a message: .*Not a directory")
    tmp.unlink()
    tmp.mkdir()
    r = swaks(port, "--to", "far@remote.test")
    assert r.returncode == 0 and "250 2.0.0 Ok: queued as" in r.stdout
    assert "Traceback" not in proc.log and len(queued(tmp_path)) == 1


def test_delivered_files_are_written_over_not_freed(relay, tmp_path: Path) -> None:
    """A delivered message's file becomes a spare that the next message is written over:
    no inode freed and allocated per message (store.py says why)."""
    proc, port = relay()
    spare = tmp_path / "queue" / "spare"

    def inodes() -> set[int]:
        return {p.stat().st_ino for p in spare.iterdir()}

    def deliver_one() -> None:
        start = len(proc.lines)
        assert swaks(port, "--to", "ann@example.test").returncode == 0
        proc.wait_for(r"delivered to <ann@example.test> \(maildir\)", start=start)
        assert drained(tmp_path)  # the file leaves active/ just after the line

    deliver_one()
    before = inodes()
    assert len(before) == 1
    for _ in range(4):
        deliver_one()
    assert inodes() == before  # the same files, written over
    assert len(list((tmp_path / "mail" / "ann@example.test" / "new").iterdir())) == 5


def test_garbage_gets_smtp_errors_never_a_traceback(relay) -> None:
    proc, port = relay()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.recv(200)
        for line in (b"HELLO?", b"RCPT TO:<a@example.test>", b"MAIL FROM:not-an-address",
                     b"\xff\xfe\x00garbage", b"DATA"):
            s.sendall(line + b"\r\n")
            reply = s.recv(200)
            assert reply[:1] == b"5", (line, reply)
        s.sendall(b"EHLO garbage.test\r\n")
        s.recv(400)
        for line in (b"MAIL FROM:<", b"MAIL FROM:a@[", b"MAIL FROM:<a@"):
            s.sendall(line + b"\r\n")  # the email parser raises on the first two
            assert s.recv(200) == b"553 5.1.3 Error: malformed address\r\n", line
    assert "Traceback" not in proc.log and "session exception" not in proc.log


def test_delivery_to_the_mx_and_retry_until_it_is_up(relay, zones: DNSZones,
                                                     tmp_path: Path) -> None:
    from netkit.testing.smtp import SMTPSink
    from tests.support.fixtures import free_port
    zones.add("dest.test", "MX", "10 mx.dest.test.")
    zones.add("mx.dest.test", "A", "127.0.0.1")
    mx_port = free_port()  # nothing listens there yet: the MX is down
    proc, port = relay("--set", f"smtp.mx_port={mx_port}",
                       "--set", "smtp.retry_schedule=[0.5]")
    r = swaks(port, "--to", "carol@dest.test", "--header", "Subject: via mx")
    assert r.returncode == 0
    proc.wait_for(rf"<carol@dest.test> deferred \(.*127\.0\.0\.1:{mx_port}")
    with SMTPSink(port=mx_port) as sink:
        proc.wait_for(r"delivered to <carol@dest.test> via 127\.0\.0\.1")
        (message,) = sink.messages
    assert message.sender == "bob@elsewhere.test" and message.recipients == ["carol@dest.test"]
    assert b"Subject: via mx" in message.content and message.content.startswith(b"Received:")
    assert drained(tmp_path)


def test_a_permanent_refusal_bounces_with_a_dsn(relay, zones: DNSZones, tmp_path: Path,
                                                netkit_smtp) -> None:
    zones.add("far.test", "MX", "5 mx.far.test.")
    zones.add("mx.far.test", "A", "127.0.0.1")
    netkit_smtp.refuse["nobody@far.test"] = 550
    proc, port = relay("--set", f"smtp.mx_port={netkit_smtp.port}")
    r = swaks(port, "--from", "ann@example.test", "--to", "nobody@far.test,real@far.test")
    assert r.returncode == 0
    proc.wait_for(r"<nobody@far.test> bounced: .*550")
    proc.wait_for(r"delivered to <ann@example.test> \(maildir\)")  # the DSN, home
    (message,) = netkit_smtp.messages
    assert message.recipients == ["real@far.test"]  # the other recipient went through
    (dsn,) = (tmp_path / "mail" / "ann@example.test" / "new").iterdir()
    text = dsn.read_text()
    assert re.search(r'multipart/report; report-type="?delivery-status', text), text[:600]
    assert "Final-Recipient: rfc822; nobody@far.test" in text and "Action: failed" in text
    assert "Status: 5.1.1" in text
    # the DSN came from the null sender: a bounce of it could not be sent back anywhere
    assert "queued" in proc.log and drained(tmp_path)


def test_a_null_mx_bounces_at_once(relay, zones: DNSZones, tmp_path: Path) -> None:
    zones.add("nomail.test", "MX", "0 .")
    proc, port = relay()
    assert swaks(port, "--from", "ann@example.test", "--to", "x@nomail.test").returncode == 0
    proc.wait_for(r"<x@nomail.test> bounced: nomail.test accepts no mail \(null MX")


def test_starttls_and_submission_with_auth_over_tls_only(relay, tmp_path: Path) -> None:
    import bcrypt

    from netkit import certs
    from tests.support.fixtures import free_port
    certs.issue(tmp_path / "certs", ["localhost", "127.0.0.1"])
    users = tmp_path / "users"
    users.write_text("ann:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode() + "\n")
    submission = free_port()
    proc, port = relay("--set", f"smtp.tls.cert={tmp_path / 'certs' / 'localhost.pem'}",
                       "--set", f"smtp.tls.key={tmp_path / 'certs' / 'localhost-key.pem'}",
                       "--set", f'smtp.submission=["127.0.0.1:{submission}"]',
                       "--set", f"smtp.credentials={users}",
                       "--set", "smtp.max_sessions_per_client=1")
    for _ in range(2):  # a session after STARTTLS is still one session, and ends as one
        r = swaks(port, "--to", "ann@example.test", "--tls")  # STARTTLS on the relay port
        assert r.returncode == 0 and "<-  220 " in r.stdout and "TLS started" in r.stdout
    auth = ["--auth", "PLAIN", "--auth-user", "ann", "--auth-password", "s3cret"]
    # submission: no AUTH before TLS, and no mail without AUTH
    r = swaks(submission, "--to", "x@remote.test", *auth)
    assert r.returncode != 0 and "did not advertise authentication" in r.stderr
    assert "AUTH" not in r.stdout  # not offered before STARTTLS
    r = swaks(submission, "--to", "x@remote.test", "--tls")
    assert r.returncode != 0 and "530" in r.stdout
    r = swaks(submission, "--to", "x@remote.test", "--tls", "--auth", "LOGIN",
              "--auth-user", "ann", "--auth-password", "wrong")
    assert r.returncode != 0 and "535" in r.stdout
    # authenticated, from an address outside relay_networks: relaying allowed
    r = swaks(submission, "--to", "x@remote.test", "--tls", *auth,
              "--local-interface", "127.0.0.2")
    assert r.returncode == 0 and "235" in r.stdout and "250 2.0.0 Ok: queued" in r.stdout
    assert "s3cret" not in proc.log and "wrong" not in proc.log
    assert "authenticated as ann" in proc.log


def test_an_idle_session_is_closed_a_busy_one_is_not(relay) -> None:
    """`smtp.idle_timeout` counts from the last command: NOOPs every 0.6 s keep a
    session for longer than its 1 s; a silent one is closed after about 1 s."""
    proc, port = relay("--set", "smtp.idle_timeout=1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as busy:
        assert busy.recv(100).startswith(b"220 ")
        for _ in range(4):
            time.sleep(0.6)
            busy.sendall(b"NOOP\r\n")
            assert busy.recv(100).startswith(b"250 ")
        t0 = time.monotonic()
        assert busy.recv(100) == b""  # now silent: closed
        assert 0.7 < time.monotonic() - t0 < 2.5
    with socket.create_connection(("127.0.0.1", port), timeout=5) as quiet:
        assert quiet.recv(100).startswith(b"220 ")
        t0 = time.monotonic()
        assert quiet.recv(100) == b""
        assert 0.7 < time.monotonic() - t0 < 2.5
    assert "Traceback" not in proc.log


def test_sessions_per_client_are_capped(relay) -> None:
    _, port = relay("--set", "smtp.max_sessions_per_client=2")
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for s in held:
            assert s.recv(100).startswith(b"220 ")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
            assert third.recv(100).startswith(b"421 4.7.0")
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.2", 0)) as other:
            assert other.recv(100).startswith(b"220 ")  # another client is not held back
    finally:
        for s in held:
            s.close()


def test_connections_are_capped_and_long_lines_refused(relay) -> None:
    proc, port = relay("--set", "smtp.max_connections=2")
    held = [socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=(f"127.0.0.{i}", 0)) for i in (1, 2)]
    try:
        for s in held:
            assert s.recv(100).startswith(b"220 ")
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.3", 0)) as third:
            assert third.recv(100) == b"421 4.3.2 Too many connections; try again later\r\n"
            assert third.recv(100) == b""  # and closed
        s = held[0]
        s.sendall(b"EHLO " + b"x" * 2000 + b"\r\n")  # RFC 5321 4.5.3.1.4: 512 octets
        assert s.recv(200).startswith(b"500 ")
        s.sendall(b"NOOP\r\n")  # the session goes on
        assert s.recv(200).startswith(b"250 ")
        s.sendall(b"EHLO t\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n")
        got = b""
        while b"354" not in got:
            got += s.recv(4096)
        s.sendall(b"Subject: long\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")  # 998 octets max
        reply = s.recv(200)
        assert reply.startswith(b"500 ") and b"too long" in reply.lower()
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # closed sessions give their places back (once the relay sees the close)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            greeting = s.recv(100)
        if greeting.startswith(b"220 ") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert greeting.startswith(b"220 ")
    assert "Traceback" not in proc.log


def test_queue_flush_and_delete_running_or_not(relay, zones: DNSZones, tmp_path: Path) -> None:
    from netkit.testing.smtp import SMTPSink
    from tests.support.fixtures import free_port
    zones.add("later.test", "MX", "10 mx.later.test.")
    zones.add("mx.later.test", "A", "127.0.0.1")
    mx_port = free_port()
    control = tmp_path / "ctl.sock"
    proc, port = relay("--set", f"smtp.mx_port={mx_port}", "--set",
                       "smtp.retry_schedule=[3600]", "--control", str(control))
    for who in ("one", "two"):
        assert swaks(port, "--to", f"{who}@later.test").returncode == 0
    proc.wait_for(r"<two@later.test> deferred")
    first, _ = queued(tmp_path)
    base = [sys.executable, "-m", "netkit.servers.smtp", "queue"]
    r = subprocess.run([*base, "delete", first["id"], "--socket", str(control)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout) == {"id": first["id"], "deleted": True}
    with SMTPSink(port=mx_port) as sink:  # the MX is up; the next try is an hour away...
        r = subprocess.run([*base, "flush", "--socket", str(control)], capture_output=True,
                           text=True, timeout=30)
        assert json.loads(r.stdout) == {"recipients_due": 1}
        proc.wait_for(r"delivered to <two@later.test>")  # ...flush made it now
        assert [m.recipients for m in sink.messages] == [["two@later.test"]]
    proc.stop()
    assert swaks(relay()[1], "--to", "three@later.test").returncode == 0
    r = subprocess.run([*base, "delete", "NOSUCHID", "--set",
                        f"smtp.queue_dir={tmp_path / 'queue'}"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1  # on the directory, no relay asked


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_relayed_mail_is_dkim_signed(relay, zones: DNSZones, tmp_path: Path, netkit_smtp,
                                     kind: str) -> None:
    import dkim as dkimpy
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from netkit.proto.smtp import dkim
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else \
        ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    zones.add("signed.test", "MX", "10 mx.signed.test.")
    zones.add("mx.signed.test", "A", "127.0.0.1")
    proc, port = relay("--set", f"smtp.mx_port={netkit_smtp.port}",
                       "--set", f'smtp.dkim=[{{domain="example.test", selector="mail", '
                                f'key="{pem}"}}]')
    r = swaks(port, "--from", "ann@example.test", "--to", "x@signed.test",
              "--header", "Subject: signed", "--body", "a body  to sign \n\n")
    assert r.returncode == 0
    proc.wait_for(r"delivered to <x@signed.test>")
    (message,) = netkit_smtp.messages
    assert message.content.startswith(b"DKIM-Signature: v=1; a=" +
                                      (b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256"))
    record = dkim.dns_record(key).encode()
    assert dkimpy.verify(message.content,
                         dnsfunc=lambda name, timeout=5: record
                         if name == b"mail._domainkey.example.test." else None)


def test_ehlo_advertises_the_extensions(relay) -> None:
    _, port = relay()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rwb")
        f.readline()
        f.write(b"EHLO client.test\r\n")
        f.flush()
        lines = []
        while True:
            line = f.readline().decode().strip()
            lines.append(line[4:])
            if line[3] == " ":
                break
    for extension in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
        assert extension in lines
    assert any(x.startswith("SIZE 65536") for x in lines)


def test_tls_required_destinations_are_deferred_without_tls(relay, zones: DNSZones,
                                                             netkit_smtp) -> None:
    zones.add("strict.test", "MX", "10 mx.strict.test.")
    zones.add("mx.strict.test", "A", "127.0.0.1")
    proc, port = relay("--set", f"smtp.mx_port={netkit_smtp.port}",
                       "--set", 'smtp.tls_required=["strict.test"]')
    assert swaks(port, "--to", "x@strict.test").returncode == 0
    proc.wait_for(r"<x@strict.test> deferred \(.*does not offer STARTTLS")
    assert netkit_smtp.messages == []  # the sink offers no TLS: nothing sent in clear


def test_a_pipelined_session_is_answered_in_order(relay, tmp_path: Path) -> None:
    proc, port = relay()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.recv(200)
        s.sendall(b"EHLO p.test\r\nMAIL FROM:<p@p.test>\r\nRCPT TO:<ann@example.test>\r\n"
                  b"RCPT TO:<x@nowhere.test>\r\nDATA\r\n")
        got = b""
        while got.count(b"\r\n354") < 1:
            got += s.recv(4096)
        s.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        while b"221" not in got:
            got += s.recv(4096)
    codes = [line[:3] for line in got.split(b"\r\n") if line[3:4] == b" "]
    assert codes == [b"250", b"250", b"250", b"250", b"354", b"250", b"221"]
    proc.wait_for(r"delivered to <ann@example.test>")


def test_the_client_command_line_shows_the_session(relay, tmp_path: Path) -> None:
    proc, port = relay()
    r = subprocess.run([sys.executable, "-m", "netkit.clients.smtp", "--server",
                        f"127.0.0.1:{port}", "--from", "bob@elsewhere.test", "--to",
                        "ann@example.test,nobody@far.test", "--header", "Subject: typed",
                        "--body", "hello from the client", "--no-tls", "-v"],
                       capture_output=True, text=True, timeout=60)
    lines = r.stdout.splitlines()
    assert "-> MAIL FROM:<bob@elsewhere.test>" in lines
    assert "-> RCPT TO:<ann@example.test>" in lines and "<- 250 2.1.5 OK" in lines
    assert "<- 554 5.7.1 Relay access denied" not in lines  # from 127.0.0.1 relaying is fine
    assert any(line.startswith("<- 250 2.0.0 Ok: queued as") for line in lines)
    assert r.returncode == 0, r.stderr
    proc.wait_for(r"delivered to <ann@example.test>")
    (mail,) = (tmp_path / "mail" / "ann@example.test" / "new").iterdir()
    assert "Subject: typed" in mail.read_text() and "hello from the client" in mail.read_text()


def test_one_session_carries_several_messages_to_a_destination(relay, zones: DNSZones,
                                                                tmp_path: Path) -> None:
    from netkit.testing.smtp import SMTPSink
    from tests.support.fixtures import free_port
    zones.add("batch.test", "MX", "10 mx.batch.test.")
    zones.add("mx.batch.test", "A", "127.0.0.1")
    mx_port = free_port()
    control = tmp_path / "ctl.sock"
    proc, port = relay("--set", f"smtp.mx_port={mx_port}", "--set",
                       "smtp.retry_schedule=[3600]", "--set",
                       "smtp.max_connections_per_destination=1", "--control", str(control))
    for i in range(3):
        assert swaks(port, "--to", f"r{i}@batch.test").returncode == 0
    proc.wait_for(r"<r2@batch.test> deferred")
    with SMTPSink(port=mx_port) as sink:
        subprocess.run([sys.executable, "-m", "netkit.servers.smtp", "queue", "flush",
                        "--socket", str(control)], check=True, capture_output=True, timeout=30)
        for i in range(3):
            proc.wait_for(rf"delivered to <r{i}@batch.test>")
        assert len(sink.messages) == 3 and sink.sessions == 1  # one connection, reused


def test_sessions_stay_open_between_passes_and_close_when_idle(relay, zones: DNSZones,
                                                               tmp_path: Path) -> None:
    """A session kept from one delivery pass carries the next message; one the server
    has closed meanwhile is not used (a new one is opened, nothing deferred); an idle
    one is ended with QUIT after a couple of seconds."""
    from netkit.testing.smtp import SMTPSink
    from tests.support.fixtures import free_port
    zones.add("kept.test", "MX", "10 mx.kept.test.")
    zones.add("mx.kept.test", "A", "127.0.0.1")
    mx_port = free_port()
    with SMTPSink(port=mx_port) as sink:
        proc, port = relay("--set", f"smtp.mx_port={mx_port}")
        for i in range(2):
            assert swaks(port, "--to", f"r{i}@kept.test").returncode == 0
            proc.wait_for(rf"delivered to <r{i}@kept.test>")
        assert sink.sessions == 1 and sink.quits == 0  # the second message: same session
        sink.drop_sessions()
        time.sleep(0.2)
        assert swaks(port, "--to", "r2@kept.test").returncode == 0
        proc.wait_for(r"delivered to <r2@kept.test>")
        assert sink.sessions == 2 and "deferred" not in proc.log
        deadline = time.monotonic() + 8
        while sink.quits < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.quits == 1  # the idle one, ended politely
    assert len(sink.messages) == 3 and drained(tmp_path)


def test_sighup_with_a_broken_credentials_file_keeps_serving(spawn, tmp_path: Path,
                                                             zones: DNSZones) -> None:
    conf = tmp_path / "smtp.toml"
    good = (f'[smtp]\nlisten = ["127.0.0.1:0"]\nqueue_dir = "{tmp_path / "queue"}"\n'
            f'maildir = "{tmp_path / "mail"}"\nlocal_domains = ["example.test"]\n'
            f'resolver = ["127.0.0.1:{zones.port}"]\n')
    conf.write_text(good)
    proc = spawn("netkit.servers.smtp", ["--config", str(conf)])
    (_, port), = proc.listening(1)
    users = tmp_path / "users"
    users.write_text("ann:plaintext\n")
    conf.write_text(good + f'credentials = "{users}"\n')
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=start)
    proc.wait_for(r"plaintext and older schemes are refused", start=start)
    assert proc.proc.poll() is None
    assert swaks(port, "--to", "ann@example.test").returncode == 0  # still serving


def test_a_client_that_never_reads_leaves_memory_bounded(relay) -> None:
    import time

    from tests.support import badpeers
    proc, port = relay()
    before = badpeers.rss_kib(proc.proc.pid)
    flood = b"EHLO x\r\n" + b"NOOP\r\nHELP\r\nRSET\r\n" * 200_000  # ~3 MB of pipelined commands
    with badpeers.never_reads(("127.0.0.1", port), flood, connections=3):
        time.sleep(1.5)
        grown = badpeers.rss_kib(proc.proc.pid) - before
        assert swaks(port, "--to", "ann@example.test").returncode == 0  # others served
    assert grown < 30_000, f"RSS grew by {grown} KiB"
    assert "Traceback" not in proc.log


def test_an_unreachable_resolver_defers_and_never_stops_the_relay(spawn, tmp_path: Path
                                                                   ) -> None:
    """A relay whose DNS servers do not answer at all (the DNS client's ConnectError)
    used to end the whole process from the delivery task; now the recipient waits."""
    proc = spawn("netkit.servers.smtp", [
        "--listen", "127.0.0.1:0", "--set", f"smtp.queue_dir={tmp_path / 'queue'}",
        "--set", 'smtp.resolver=["127.0.0.1:9"]', "--set", f"smtp.maildir={tmp_path / 'm'}"])
    (_, port), = proc.listening(1)
    assert swaks(port, "--to", "bob@far.test").returncode == 0
    proc.wait_for(r"<bob@far.test> deferred \(MX lookup for far\.test failed")
    assert swaks(port, "--to", "eve@far.test").returncode == 0  # still serving
    assert proc.proc.poll() is None and "Traceback" not in proc.log


def test_two_relays_as_mx_of_one_domain_lose_nothing_and_deliver_once(spawn, zones: DNSZones,
                                                                       tmp_path: Path) -> None:
    """The Postfix model (docs/scaling.md): two MX relays with their own queues. One is
    killed holding a message it acknowledged; the sender's next message goes to the other;
    when the first returns, each message reaches the mailbox host exactly once."""
    from netkit.testing.smtp import SMTPSink
    from tests.support.fixtures import free_port
    mx_port, final_port = free_port(), free_port()
    zones.add("multi.test", "MX", "10 mx1.multi.test.")
    zones.add("multi.test", "MX", "20 mx2.multi.test.")
    zones.add("mx1.multi.test", "A", "127.0.0.21")
    zones.add("mx2.multi.test", "A", "127.0.0.22")

    def mx_relay(addr: str, name: str):  # type: ignore[no-untyped-def]
        p = spawn("netkit.servers.smtp", [
            "--listen", f"{addr}:{mx_port}", "--set", f"smtp.queue_dir={tmp_path / name}",
            "--set", f"smtp.maildir={tmp_path / (name + '-mail')}",
            "--set", f"smtp.smarthost=127.0.0.1:{final_port}",  # the mailbox host, down
            "--set", "smtp.retry_schedule=[0.5]", "--set", f"smtp.hostname={name}",
            "--control", "none"])
        p.listening(1)
        return p
    a, b = mx_relay("127.0.0.21", "mx1"), mx_relay("127.0.0.22", "mx2")
    sender = spawn("netkit.servers.smtp", [
        "--listen", "127.0.0.1:0", "--set", f"smtp.queue_dir={tmp_path / 'sender'}",
        "--set", f"smtp.maildir={tmp_path / 'sender-mail'}", "--set", f"smtp.mx_port={mx_port}",
        "--set", f'smtp.resolver=["127.0.0.1:{zones.port}"]',
        "--set", "smtp.retry_schedule=[0.5]", "--control", "none"])
    (_, port), = sender.listening(1)
    assert swaks(port, "--to", "bob@multi.test", "--header", "Subject: one").returncode == 0
    sender.wait_for(r"delivered to <bob@multi.test> via 127\.0\.0\.21")
    a.wait_for(r"<bob@multi.test> deferred")  # acknowledged, held: the mailbox host is down
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    assert swaks(port, "--to", "carol@multi.test", "--header", "Subject: two").returncode == 0
    sender.wait_for(r"delivered to <carol@multi.test> via 127\.0\.0\.22")  # the next MX
    with SMTPSink(port=final_port) as mailbox:
        a = mx_relay("127.0.0.21", "mx1")  # back, with its queue
        a.wait_for(r"delivered to <bob@multi.test> via 127\.0\.0\.1")
        b.wait_for(r"delivered to <carol@multi.test> via 127\.0\.0\.1")
        time.sleep(1.5)  # a second delivery, if there were one, would come by now
        got = sorted(tuple(m.recipients) for m in mailbox.messages)
    assert got == [("bob@multi.test",), ("carol@multi.test",)]
