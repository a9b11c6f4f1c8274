"""The faster chacha20-poly1305@openssh.com gives asyncssh's exact bytes: compared with
asyncssh's own module functions (which stay as they are) for any input."""

from __future__ import annotations

from asyncssh.crypto import chacha
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.servers.sshfwd import fastchacha

assert fastchacha.install()  # the asyncssh installed is the one it was written against


@given(st.binary(min_size=64, max_size=64), st.binary(min_size=4, max_size=4),
       st.binary(max_size=40000), st.binary(min_size=8, max_size=8))
@settings(max_examples=200, deadline=None)
def test_same_bytes_as_asyncssh(key: bytes, header: bytes, data: bytes, nonce: bytes) -> None:
    cipher = chacha.ChachaCipher(key)
    k, adkey = key[:32], key[32:]
    want_header = chacha.chacha20(adkey, header, nonce, 0)
    want_data = chacha.chacha20(k, data, nonce, 1)
    want_tag = chacha.poly1305(k, want_header + want_data, nonce)
    sealed, tag = cipher.encrypt_and_sign(header, data, nonce)
    assert (sealed, tag) == (want_header + want_data, want_tag)
    assert cipher.decrypt_header(sealed[:4], nonce) == header
    assert cipher.verify_and_decrypt(sealed[:4], sealed[4:], nonce, tag) == data
    bad = bytes([tag[0] ^ 1]) + tag[1:]
    assert cipher.verify_and_decrypt(sealed[:4], sealed[4:], nonce, bad) is None
