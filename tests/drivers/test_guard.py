"""The network guard refuses, before anything is sent, any destination past loopback."""

from __future__ import annotations

import socket

import pytest

from tests.support import guard


def test_guard_refuses_other_addresses_and_names_before_sending():
    with socket.socket() as s, pytest.raises(guard.NetworkGuardError, match=r"192\.0\.2\.1"):
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: refused by the hook, never sent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            pytest.raises(guard.NetworkGuardError):
        s.sendto(b"x", ("198.51.100.7", 53))
    with pytest.raises(guard.NetworkGuardError, match=r"example\.com"):
        socket.getaddrinfo("example.com", 80)  # would ask /etc/resolv.conf's server
    assert len(guard._violations) == 3
    guard._violations.clear()  # this test meant to trip it; the teardown check is for others


def test_guard_lets_loopback_through():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", ("127.0.0.9", 9))
    socket.getaddrinfo("localhost", 80)
    socket.getaddrinfo("::1", 80)
    assert guard.permitted("::ffff:127.0.0.1") and not guard.permitted("10.0.0.1")
