"""DNSSEC's checks as pure functions (RFC 4034, 4035, 5155, 6840, 8624): records in, a
verdict out, the time passed in. Nothing here asks anything of the network.

    verify_rrset(rrset, rrsigs, keys, zone, now) -> Verdict
    ds_matches(zone, dnskey_rdata, ds_rdata) -> bool
    nsec3_hash(name, salt, iterations) -> bytes

Records are `message.Record`s (owner in key form, RDATA uncompressed). A record that does
not parse raises `BadRecord` (a ValueError); callers turn it into a bogus verdict.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .message import _NAMES_IN_RDATA, Record, name_to_wire, read_name

DS, RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM = 43, 46, 47, 48, 50, 51

#: RFC 8624 section 3.1: algorithms a validator implements (5 and 7: SHA-1, still
#: "MUST" for validation there); others (RSAMD5, DSA, GOST, unknown) count as unsigned
ALGORITHMS = {5: "RSASHA1", 7: "RSASHA1-NSEC3-SHA1", 8: "RSASHA256", 10: "RSASHA512",
              13: "ECDSAP256SHA256", 14: "ECDSAP384SHA384", 15: "ED25519", 16: "ED448"}
try:  # an OpenSSL without Ed448 (some distributions' FIPS builds): as unsigned, not bogus
    ed448.Ed448PublicKey.from_public_bytes(bytes(57))
except Exception:
    del ALGORITHMS[16]
#: RFC 8624 section 3.3: DS digest types (SHA-1, SHA-256, SHA-384)
DIGESTS = {1: hashlib.sha1, 2: hashlib.sha256, 4: hashlib.sha384}
#: RFC 9276 section 3.2: NSEC3 with more iterations than this proves nothing (insecure)
MAX_NSEC3_ITERATIONS = 150


class BadRecord(ValueError):
    """A DNSSEC record whose RDATA does not parse."""


class Verdict(IntEnum):
    """How an RRset's signatures fared; the values are the Extended DNS Errors a bogus
    answer carries (RFC 8914), SECURE and UNSUPPORTED aside."""

    SECURE = 0
    UNSUPPORTED = 1  # no signature by a key of an algorithm we validate: as unsigned
    BOGUS = 6
    SIGNATURE_EXPIRED = 7
    SIGNATURE_NOT_YET_VALID = 8
    DNSKEY_MISSING = 9
    RRSIGS_MISSING = 10
    NSEC_MISSING = 12


# --- the records ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rrsig:
    type_covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: str  # key form
    signature: bytes
    head: bytes  # the RDATA before the signature, signer in canonical form

    @classmethod
    def parse(cls, rdata: bytes) -> Rrsig:
        try:
            fields = struct.unpack_from("!HBBIIIH", rdata)
            signer, end = read_name(rdata, 18)
        except (struct.error, ValueError) as exc:
            raise BadRecord(f"RRSIG: {exc}") from None
        if end > len(rdata) or end == len(rdata):
            raise BadRecord("RRSIG without a signature")
        head = rdata[:18] + name_to_wire(signer)
        return cls(*fields, signer, rdata[end:], head)


@dataclass(frozen=True, slots=True)
class Dnskey:
    flags: int
    protocol: int
    algorithm: int
    public_key: bytes
    rdata: bytes

    @classmethod
    def parse(cls, rdata: bytes) -> Dnskey:
        if len(rdata) < 5:
            raise BadRecord("DNSKEY too short")
        flags, protocol, algorithm = struct.unpack_from("!HBB", rdata)
        return cls(flags, protocol, algorithm, rdata[4:], rdata)

    @property
    def zone_key(self) -> bool:
        """Bit 7 (RFC 4034 2.1.1) set, protocol 3, not revoked (RFC 5011)."""
        return bool(self.flags & 0x0100) and self.protocol == 3 and not self.flags & 0x0080

    @property
    def key_tag(self) -> int:
        return key_tag(self.rdata)


def key_tag(rdata: bytes) -> int:
    """RFC 4034 appendix B."""
    total = 0
    for i, byte in enumerate(rdata):
        total += byte if i & 1 else byte << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


@dataclass(frozen=True, slots=True)
class Ds:
    key_tag: int
    algorithm: int
    digest_type: int
    digest: bytes

    @classmethod
    def parse(cls, rdata: bytes) -> Ds:
        if len(rdata) < 5:
            raise BadRecord("DS too short")
        tag, algorithm, digest_type = struct.unpack_from("!HBB", rdata)
        return cls(tag, algorithm, digest_type, rdata[4:])

    @property
    def usable(self) -> bool:
        return self.algorithm in ALGORITHMS and self.digest_type in DIGESTS


def ds_matches(zone: str, key: Dnskey, ds: Ds) -> bool:
    """The DS names this key: tag, algorithm and digest of owner | RDATA (RFC 4034 5.1.4)."""
    digest = DIGESTS.get(ds.digest_type)
    if digest is None or ds.key_tag != key.key_tag or ds.algorithm != key.algorithm:
        return False
    return digest(name_to_wire(zone) + key.rdata).digest() == ds.digest


@dataclass(frozen=True, slots=True)
class Nsec:
    owner: str
    next: str  # key form
    types: frozenset[int]

    @classmethod
    def parse(cls, owner: str, rdata: bytes) -> Nsec:
        try:
            nxt, end = read_name(rdata, 0)
        except ValueError as exc:
            raise BadRecord(f"NSEC: {exc}") from None
        return cls(owner, nxt, type_bitmap(rdata[end:]))


@dataclass(frozen=True, slots=True)
class Nsec3:
    owner_hash: bytes  # the first label, decoded
    zone: str  # the rest of the owner name
    algorithm: int
    opt_out: bool
    iterations: int
    salt: bytes
    next_hash: bytes
    types: frozenset[int]

    @classmethod
    def parse(cls, owner: str, rdata: bytes) -> Nsec3:
        try:
            algorithm, flags, iterations, salt_len = struct.unpack_from("!BBHB", rdata)
            salt = rdata[5:5 + salt_len]
            i = 5 + salt_len
            hash_len = rdata[i]
            next_hash = rdata[i + 1:i + 1 + hash_len]
            bitmap = rdata[i + 1 + hash_len:]
            if len(salt) != salt_len or len(next_hash) != hash_len or not hash_len:
                raise ValueError("truncated")
            label, _, zone = owner.partition(".")
            owner_hash = base64.b32hexdecode(label.upper() + "=" * (-len(label) % 8))
        except (struct.error, IndexError, ValueError) as exc:
            raise BadRecord(f"NSEC3: {exc}") from None
        return cls(owner_hash, zone or ".", algorithm, bool(flags & 1), iterations, salt,
                   next_hash, type_bitmap(bitmap))

    def covers(self, hashed: bytes) -> bool:
        """`hashed` falls strictly between this owner and the next (the chain wraps)."""
        if self.owner_hash < self.next_hash:
            return self.owner_hash < hashed < self.next_hash
        return hashed > self.owner_hash or hashed < self.next_hash  # the last one


def type_bitmap(data: bytes) -> frozenset[int]:
    """RFC 4034 4.1.2: window blocks of type bits."""
    types = set()
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise BadRecord("type bitmap truncated")
        window, length = data[i], data[i + 1]
        if not 1 <= length <= 32 or i + 2 + length > len(data):
            raise BadRecord("type bitmap block malformed")
        for j, byte in enumerate(data[i + 2:i + 2 + length]):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + j * 8 + bit)
        i += 2 + length
    return frozenset(types)


def nsec3_hash(name: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5155 section 5: iterated SHA-1 of the owner name in canonical wire form."""
    digest = hashlib.sha1(name_to_wire(name) + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return digest


# --- canonical forms --------------------------------------------------------------------

def canonical_rdata(rtype: int, rdata: bytes) -> bytes:
    """RFC 4034 6.2 (as RFC 6840 5.1 corrects it: not NSEC, not RRSIG): the names inside
    RDATA of the old types in lower case. Our parser keeps those names uncompressed."""
    spec = _NAMES_IN_RDATA.get(rtype)
    if spec is None:
        return rdata
    offset, count = spec
    out = bytearray(rdata)
    i = offset
    for _ in range(count):
        while i < len(out) and out[i]:
            length = out[i]
            out[i + 1:i + 1 + length] = bytes(out[i + 1:i + 1 + length]).lower()
            i += 1 + length
        i += 1
    return bytes(out)


def canonical_key(name: str) -> tuple[bytes, ...]:
    """Sort key for RFC 4034 6.1 canonical order: labels right to left, lower case."""
    if name == ".":
        return ()
    return tuple(label.encode("latin-1") for label in reversed(name.rstrip(".").split(".")))


def signed_data(sig: Rrsig, rrset: Sequence[Record]) -> bytes:
    """RFC 4034 3.1.8.1: the RRSIG's fields, then the RRset in canonical form and order,
    with the original TTL; a wildcard expansion is signed as its wildcard owner."""
    owner = rrset[0].name
    labels = 0 if owner == "." else owner.rstrip(".").count(".") + 1
    if sig.labels < labels:
        owner = "*." + ".".join(owner.rstrip(".").split(".")[labels - sig.labels:]) + "."
    head = name_to_wire(owner) + struct.pack("!HHI", rrset[0].rtype, rrset[0].rclass,
                                             sig.original_ttl)
    rdatas = sorted({canonical_rdata(rr.rtype, rr.rdata) for rr in rrset})
    return sig.head + b"".join(head + struct.pack("!H", len(r)) + r for r in rdatas)


# --- signatures -------------------------------------------------------------------------

def _rsa(key: bytes) -> rsa.RSAPublicKey:
    if not key:
        raise BadRecord("empty RSA key")
    if key[0]:
        e_len, i = key[0], 1
    else:
        e_len, i = struct.unpack_from("!H", key, 1)[0], 3
    e = int.from_bytes(key[i:i + e_len], "big")
    n = int.from_bytes(key[i + e_len:], "big")
    if not e or n.bit_length() < 512:
        raise BadRecord("RSA key malformed")
    return rsa.RSAPublicNumbers(e, n).public_key()


def verify_signature(algorithm: int, public_key: bytes, signature: bytes, data: bytes
                     ) -> bool:
    """True when `signature` over `data` checks out with the key (False for a bad one;
    BadRecord for a key or signature of the wrong shape)."""
    try:
        if algorithm in (5, 7, 8, 10):
            digest = hashes.SHA1() if algorithm in (5, 7) else \
                hashes.SHA256() if algorithm == 8 else hashes.SHA512()
            _rsa(public_key).verify(signature, data, padding.PKCS1v15(), digest)
        elif algorithm in (13, 14):
            size = 32 if algorithm == 13 else 48
            if len(public_key) != 2 * size or len(signature) != 2 * size:
                raise BadRecord("ECDSA key or signature of the wrong length")
            curve = ec.SECP256R1() if algorithm == 13 else ec.SECP384R1()
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + public_key)
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256() if algorithm == 13
                                           else hashes.SHA384()))
        elif algorithm == 15:
            ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        elif algorithm == 16:
            ed448.Ed448PublicKey.from_public_bytes(public_key).verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    except (ValueError, TypeError) as exc:  # cryptography's words for a malformed key
        raise BadRecord(str(exc)) from None
    return True


@dataclass(slots=True)
class Checked:
    """An RRset's verdict, and the TTL it may live (capped by the original TTL and by
    the expiry of the signature that made it secure)."""

    verdict: Verdict
    ttl: int = 0
    why: str = ""


def verify_rrset(rrset: Sequence[Record], rrsigs: Iterable[Record], keys: Sequence[Dnskey],
                 zone: str, now: float) -> Checked:
    """SECURE if one RRSIG by `zone` with a key in `keys` covers `rrset` and verifies
    within its validity window (RFC 4035 5.3); else why not, most telling reason first."""
    if not rrset:
        return Checked(Verdict.BOGUS, why="empty RRset")
    rtype, owner = rrset[0].rtype, rrset[0].name
    labels = 0 if owner == "." else owner.rstrip(".").count(".") + 1
    seen = Verdict.RRSIGS_MISSING
    why = f"no RRSIG for {owner} {rtype}"
    usable_algorithm = False
    for rr in rrsigs:
        try:
            sig = Rrsig.parse(rr.rdata)
        except BadRecord as exc:
            seen, why = Verdict.BOGUS, str(exc)
            continue
        if sig.type_covered != rtype or sig.signer != zone or sig.labels > labels:
            continue
        if sig.algorithm not in ALGORITHMS:
            continue
        usable_algorithm = True
        now32 = int(now) & 0xFFFFFFFF
        skew = clock_skew(sig)
        if _serial_diff(sig.inception, now32) > skew:
            seen, why = Verdict.SIGNATURE_NOT_YET_VALID, f"RRSIG for {owner} not yet valid"
            continue
        if _serial_diff(now32, sig.expiration) > skew:
            seen, why = Verdict.SIGNATURE_EXPIRED, f"RRSIG for {owner} expired"
            continue
        candidates = [k for k in keys if k.algorithm == sig.algorithm and
                      k.key_tag == sig.key_tag and k.zone_key]
        if not candidates:
            if seen == Verdict.RRSIGS_MISSING:
                seen, why = Verdict.DNSKEY_MISSING, \
                    f"no DNSKEY {sig.key_tag} of {zone} for {owner}"
            continue
        data = signed_data(sig, rrset)
        for key in candidates:
            try:
                if verify_signature(sig.algorithm, key.public_key, sig.signature, data):
                    ttl = min(min(rr.ttl for rr in rrset), sig.original_ttl,
                              max(0, _serial_diff(sig.expiration, now32)))
                    return Checked(Verdict.SECURE, ttl)
            except BadRecord as exc:
                why = str(exc)
        seen, why = Verdict.BOGUS, f"RRSIG for {owner} {rtype} does not verify"
    if not usable_algorithm and seen == Verdict.RRSIGS_MISSING and any(
            _covers(rr, rtype) for rr in rrsigs):
        return Checked(Verdict.UNSUPPORTED, why="signed with algorithms we do not validate")
    return Checked(seen, why=why)


def clock_skew(sig: Rrsig) -> int:
    """How far outside its window a signature is still taken: a tenth of its validity,
    at least an hour, at most a day (Unbound's val-sig-skew-min/max), so that a signer's
    clock or ours being off by minutes does not make a zone bogus."""
    lifetime = max(_serial_diff(sig.expiration, sig.inception), 0)
    return min(max(lifetime // 10, 3600), 86400)


def _covers(rr: Record, rtype: int) -> bool:
    return len(rr.rdata) >= 2 and struct.unpack_from("!H", rr.rdata)[0] == rtype


def _serial_lt(a: int, b: int) -> bool:
    """RFC 1982 serial number arithmetic on 32 bits (RRSIG times wrap in 2106)."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def _serial_diff(later: int, earlier: int) -> int:
    d = (later - earlier) & 0xFFFFFFFF
    return d if d < 0x80000000 else -(0x100000000 - d)


def verify_dnskeys(zone: str, dnskeys: Sequence[Record], rrsigs: Sequence[Record],
                   anchors: Sequence[Ds | Dnskey], now: float) -> tuple[Checked, list[Dnskey]]:
    """A zone's DNSKEY RRset against the DS RRset its parent signed (or the trust
    anchor): one key the DS names must sign the whole set (RFC 4035 5.2)."""
    try:
        keys = [Dnskey.parse(rr.rdata) for rr in dnskeys]
    except BadRecord as exc:
        return Checked(Verdict.BOGUS, why=str(exc)), []
    usable = [a for a in anchors if (a.usable if isinstance(a, Ds) else
                                     a.algorithm in ALGORITHMS)]
    if not usable:
        return Checked(Verdict.UNSUPPORTED, why="no DS of an algorithm and digest we "
                                                "validate"), []
    if not keys:
        return Checked(Verdict.DNSKEY_MISSING, why=f"no DNSKEY for {zone}"), []
    trusted = [k for k in keys if k.zone_key and any(
        (ds_matches(zone, k, a) if isinstance(a, Ds) else a.rdata == k.rdata)
        for a in usable)]
    if not trusted:
        return Checked(Verdict.DNSKEY_MISSING, why=f"no DNSKEY of {zone} matches its DS"), []
    checked = verify_rrset(dnskeys, rrsigs, trusted, zone, now)
    if checked.verdict is Verdict.UNSUPPORTED:
        checked = Checked(Verdict.BOGUS, why=f"DNSKEY set of {zone} not signed by its DS key")
    return checked, (keys if checked.verdict is Verdict.SECURE else [])


# --- trust anchors ----------------------------------------------------------------------

#: IANA's root trust anchors (root-anchors.xml: KSK-2017 and KSK-2024), as DS records
IANA_ROOT_ANCHORS = """\
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
"""


def parse_trust_anchors(text: str) -> list[Ds | Dnskey]:
    """The root's DS or DNSKEY records in zone-file form (root.key, root.ds, a
    `dnssec-signzone` dsset file): `. [TTL] [IN] DS|DNSKEY ...`; comments after `;`.
    ValueError names the line that is not one."""
    anchors: list[Ds | Dnskey] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != ".":
            raise ValueError(f"line {number}: only anchors for the root (\".\") are taken")
        rest = words[1:]
        while rest and (rest[0].isdigit() or rest[0].upper() == "IN"):
            rest = rest[1:]
        try:
            kind, fields = rest[0].upper(), rest[1:]
            if kind == "DS":
                anchors.append(Ds(int(fields[0]), int(fields[1]), int(fields[2]),
                                  bytes.fromhex("".join(fields[3:]))))
            elif kind == "DNSKEY":
                key = base64.b64decode("".join(fields[3:]), validate=True)
                rdata = struct.pack("!HBB", int(fields[0]), int(fields[1]),
                                    int(fields[2])) + key
                anchors.append(Dnskey.parse(rdata))
            else:
                raise ValueError(f"a {kind} record")
        except (IndexError, ValueError, struct.error) as exc:
            raise ValueError(f"line {number}: not a DS or DNSKEY record ({exc})") from None
    if not anchors:
        raise ValueError("no DS or DNSKEY record")
    return anchors
