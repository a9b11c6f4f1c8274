"""DHCP options by code and name (RFC 2132 and later), with their value types.

Values are given as Python values (an address as "10.0.0.1", a list of them, an int,
a string, a route list for option 121) and encoded to bytes by `encode`; `decode` does
the reverse for what clients and tests read. Unknown codes are raw bytes both ways.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

# kind: ip, ips, u8, u16, u32, i32, str, bool, bytes, codes, domains, routes
OPTIONS: dict[int, tuple[str, str]] = {
    1: ("subnet-mask", "ip"), 2: ("time-offset", "i32"), 3: ("routers", "ips"),
    4: ("time-servers", "ips"), 6: ("domain-name-servers", "ips"), 7: ("log-servers", "ips"),
    12: ("host-name", "str"), 15: ("domain-name", "str"), 23: ("default-ip-ttl", "u8"),
    26: ("interface-mtu", "u16"), 28: ("broadcast-address", "ip"),
    33: ("static-routes", "ips"), 42: ("ntp-servers", "ips"), 43: ("vendor-specific", "bytes"),
    44: ("netbios-name-servers", "ips"), 50: ("requested-address", "ip"),
    51: ("lease-time", "u32"), 52: ("overload", "u8"), 53: ("message-type", "u8"),
    54: ("server-identifier", "ip"), 55: ("parameter-request-list", "codes"),
    56: ("message", "str"), 57: ("max-message-size", "u16"), 58: ("renewal-time", "u32"),
    59: ("rebinding-time", "u32"), 60: ("vendor-class-identifier", "bytes"),
    61: ("client-identifier", "bytes"), 66: ("tftp-server-name", "str"),
    67: ("bootfile-name", "str"), 81: ("client-fqdn", "bytes"),
    82: ("relay-agent-information", "bytes"), 114: ("captive-portal", "str"),
    119: ("domain-search", "domains"), 121: ("classless-static-routes", "routes"),
    150: ("tftp-server-address", "ips"), 252: ("wpad", "str"),
}
CODES: dict[str, int] = {name: code for code, (name, _) in OPTIONS.items()}
PAD, END = 0, 255

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
              7: "RELEASE", 8: "INFORM"}


def code_of(key: str | int) -> int:
    """An option's code from its name, its number, or its number as text."""
    if isinstance(key, int):
        code = key
    elif key.isdigit():
        code = int(key)
    elif key in CODES:
        return CODES[key]
    else:
        raise ValueError(f"unknown DHCP option {key!r} (a name such as 'ntp-servers', "
                         f"or a code 1-254)")
    if not 1 <= code <= 254:
        raise ValueError(f"DHCP option code {code} is not 1-254")
    return code


def kind_of(code: int) -> str:
    return OPTIONS.get(code, ("", "bytes"))[1]


def _ip(value: Any) -> bytes:
    return ipaddress.IPv4Address(value).packed


def _domain(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("idna")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad domain name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _route(text: str) -> bytes:
    """"10.1.0.0/16 10.0.0.1" -> RFC 3442's width, significant octets, router."""
    dest, _, router = text.partition(" ")
    net = ipaddress.IPv4Network(dest.strip(), strict=True)
    width = net.prefixlen
    return bytes([width]) + net.network_address.packed[:(width + 7) // 8] + _ip(router.strip())


def encode(code: int, value: Any) -> bytes:
    """An option's value as the bytes it carries (ValueError when it does not fit)."""
    kind = kind_of(code)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if kind == "ip":
        return _ip(value)
    if kind == "ips":
        values = value if isinstance(value, list | tuple) else [value]
        return b"".join(_ip(v) for v in values)
    if kind in ("u8", "u16", "u32", "i32"):
        fmt = {"u8": "!B", "u16": "!H", "u32": "!I", "i32": "!i"}[kind]
        try:
            return struct.pack(fmt, int(value))
        except struct.error:
            raise ValueError(f"{value} does not fit option {code}") from None
    if kind == "bool":
        return b"\x01" if value else b"\x00"
    if kind == "codes":
        return bytes(value)
    if kind == "domains":
        values = value if isinstance(value, list | tuple) else [value]
        return b"".join(_domain(v) for v in values)
    if kind == "routes":
        values = value if isinstance(value, list | tuple) else [value]
        return b"".join(_route(v) for v in values)
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"option {code} takes bytes here, got {value!r}")


def decode(code: int, data: bytes) -> Any:
    """The Python value of an option's bytes (raw bytes when they do not parse)."""
    kind = kind_of(code)
    try:
        if kind == "ip" and len(data) == 4:
            return str(ipaddress.IPv4Address(data))
        if kind == "ips" and data and len(data) % 4 == 0:
            return [str(ipaddress.IPv4Address(data[i:i + 4])) for i in range(0, len(data), 4)]
        if kind in ("u8", "u16", "u32", "i32"):
            fmt = {"u8": "!B", "u16": "!H", "u32": "!I", "i32": "!i"}[kind]
            if len(data) == struct.calcsize(fmt):
                return struct.unpack(fmt, data)[0]
        if kind == "str":
            return data.decode("utf-8", "replace").rstrip("\0")
        if kind == "codes":
            return list(data)
        if kind == "routes":
            return _decode_routes(data)
    except (ValueError, IndexError):
        pass
    return data


def _decode_routes(data: bytes) -> list[str]:
    routes, i = [], 0
    while i < len(data):
        width = data[i]
        n = (width + 7) // 8
        if width > 32 or i + 1 + n + 4 > len(data):
            raise ValueError("truncated route")
        dest = data[i + 1:i + 1 + n] + b"\0" * (4 - n)
        router = data[i + 1 + n:i + 5 + n]
        routes.append(f"{ipaddress.IPv4Address(dest)}/{width} {ipaddress.IPv4Address(router)}")
        i += 5 + n
    return routes
