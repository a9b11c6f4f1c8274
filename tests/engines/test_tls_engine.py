"""The sans-IO TLS engine: two engines wired back to back, no sockets."""

from __future__ import annotations

import ssl

import pytest

from netkit.errors import TLSError
from netkit.proto.tls import TLSEngine
from netkit.tlsconf import SNISelector, client_context, server_context


def pump(a: TLSEngine, b: TLSEngine) -> None:
    for _ in range(10):
        moved = False
        for src, dst in ((a, b), (b, a)):
            out = src.outgoing()
            if out:
                dst.receive(out)
                moved = True
            if not src.handshake_done:
                try:
                    src.do_handshake()
                except TLSError:
                    raise
        if not moved and a.handshake_done and b.handshake_done:
            return


@pytest.fixture
def contexts(pki):
    server = server_context(pki.server_cert, pki.server_key, alpn=["h2", "http/1.1"])
    client = client_context(ca=pki.ca, alpn=["http/1.1"])
    return server, client


def test_handshake_data_and_half_close(contexts):
    server_ctx, client_ctx = contexts
    c = TLSEngine(client_ctx, server_side=False, server_hostname="localhost")
    s = TLSEngine(server_ctx, server_side=True)
    c.do_handshake()
    pump(c, s)
    assert c.handshake_done and s.handshake_done
    assert s.info().alpn == "http/1.1" and c.info().version == "TLSv1.3"
    c.write(b"hello")
    s.receive(c.outgoing())
    assert s.read() == b"hello" and s.read() is None
    c.close_notify()  # client half-closes ...
    s.receive(c.outgoing())
    assert s.read() == b""
    s.write(b"after")  # ... and still reads what the server sends after
    c.receive(s.outgoing())
    assert c.read() == b"after"


def test_untrusted_server_certificate_is_described(pki):
    s = TLSEngine(server_context(pki.server_cert, pki.server_key), server_side=True)
    c = TLSEngine(client_context(ca=pki.other_ca), server_side=False, server_hostname="localhost")
    c.do_handshake()
    with pytest.raises(TLSError, match=r"server certificate rejected: unable to get local "
                                       r"issuer certificate \(unknown CA\)"):
        pump(c, s)


def test_wrong_host_name_is_described(pki):
    s = TLSEngine(server_context(pki.server_cert, pki.server_key), server_side=True)
    c = TLSEngine(client_context(ca=pki.ca), server_side=False, server_hostname="other.example")
    c.do_handshake()
    with pytest.raises(TLSError, match=r"server certificate rejected: Hostname mismatch"):
        pump(c, s)


def test_plaintext_is_recognised(pki):
    s = TLSEngine(server_context(pki.server_cert, pki.server_key), server_side=True)
    s.receive(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(TLSError, match=r"plaintext sent to a TLS port \(first bytes 'SSH-2.0-'"):
        s.do_handshake()


def test_sni_without_default_certificate_rejects_unknown_names(pki):
    route = server_context(pki.server_cert, pki.server_key)
    default = server_context(None, None)
    SNISelector(default, [("localhost", route)], has_default_cert=False)
    ok_s = TLSEngine(default, server_side=True)
    ok_c = TLSEngine(client_context(ca=pki.ca), server_side=False, server_hostname="localhost")
    ok_c.do_handshake()
    pump(ok_c, ok_s)
    assert ok_s.info(getattr(ok_s.ssl_object, "sni", None)).server_name == "localhost"
    bad_s = TLSEngine(default, server_side=True)
    ctx = client_context(ca=pki.ca)
    ctx.check_hostname = False
    bad_c = TLSEngine(ctx, server_side=False, server_hostname="unknown.example")
    bad_c.do_handshake()
    with pytest.raises(TLSError, match="server name"):
        pump(bad_c, bad_s)


def test_min_version_is_enforced(pki):
    s = TLSEngine(server_context(pki.server_cert, pki.server_key, min_version="1.3"),
                  server_side=True)
    ctx = client_context(ca=pki.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = TLSEngine(ctx, server_side=False, server_hostname="localhost")
    c.do_handshake()
    with pytest.raises(TLSError):
        pump(c, s)
