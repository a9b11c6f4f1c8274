"""A DNSSEC-signed DNS hierarchy of real NSD servers, signed by BIND's own tools
(`dnssec-keygen`, `dnssec-signzone` from Debian's bind9-utils), with the root's DS as
the trust anchor. For validators' tests: every case a validator must tell apart.

    PREFIX.2  .                    signed (ECDSAP256SHA256, NSEC); delegates lab.
    PREFIX.3  lab.                 signed (RSASHA256, NSEC); delegates the zones below,
                                   with DS records except for insecure.lab.
    PREFIX.4  secure.lab.         ED25519, NSEC: www A, *.wild A, txt-only TXT (NODATA for
                                   A), alias CNAME www.insecure.lab.; two children on the
                                   same server (no referral): child.secure.lab. (signed,
                                   its DS in secure.lab.) and plain.secure.lab. (unsigned)
              nsec3.lab.          ECDSAP384SHA384, NSEC3 (salt, 5 iterations): www A,
                                   *.wild A
              optout.lab.         NSEC3 with opt-out: www A
    PREFIX.5  unsigned.optout.lab. unsigned, delegated in optout.lab.'s opt-out span
              rsa512.lab.         RSASHA512: www A
              ed448.lab.          ED448: www A
              insecure.lab.       unsigned, no DS (an insecure delegation): www A
              badsig.lab.         www's RRSIG altered after signing (bogus)
              expired.lab.        signatures that expired yesterday (bogus)
              future.lab.         signatures valid from tomorrow (bogus)
              skewed.lab.         signatures valid from 10 minutes on (secure: clock skew)
              badds.lab.          its DS in lab. names no key of it (bogus)
              nonsec3.lab.        NSEC3-signed, the NSEC3 records then removed: its
                                   NXDOMAINs come without a proof (bogus)

    with SignedHierarchy(tmp_path) as h:
        h.root_hints, h.trust_anchor          # files for the resolver's config
        h.addr(4)                             # PREFIX.4
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from .nsd import Hierarchy, random_prefix, start_nsd, wait_ready

SOA = "{z} 3600 IN SOA ns.{z} admin.{z} 1 3600 600 86400 60\n"


def _leaf(zone: str, *records: str) -> str:
    return SOA.format(z=zone) + f"{zone} 3600 IN NS ns.{zone}\nns.{zone} 3600 IN A @4\n" + \
        "".join(r + "\n" for r in records)


# zone: (algorithm, dnssec-signzone's NSEC3 arguments or None, records); no algorithm:
# unsigned
LEAVES: dict[str, tuple[str, str | None, list[str]]] = {
    "secure.lab.": ("ED25519", None, [
        "www.secure.lab. 300 IN A 192.0.2.1", "*.wild.secure.lab. 300 IN A 192.0.2.2",
        'txt-only.secure.lab. 300 IN TXT "no address"',
        "alias.secure.lab. 300 IN CNAME www.insecure.lab."]),
    "nsec3.lab.": ("ECDSAP384SHA384", "-3 ab12 -H 5", [
        "www.nsec3.lab. 300 IN A 192.0.2.3", "*.wild.nsec3.lab. 300 IN A 192.0.2.4"]),
    "optout.lab.": ("ECDSAP256SHA256", "-3 - -H 0 -A", [
        "www.optout.lab. 300 IN A 192.0.2.10",
        "unsigned.optout.lab. 3600 IN NS ns.unsigned.optout.lab.",
        "ns.unsigned.optout.lab. 3600 IN A @5"]),
    "rsa512.lab.": ("RSASHA512", None, ["www.rsa512.lab. 300 IN A 192.0.2.11"]),
    "ed448.lab.": ("ED448", None, ["www.ed448.lab. 300 IN A 192.0.2.12"]),
    "insecure.lab.": ("", None, ["www.insecure.lab. 300 IN A 192.0.2.5"]),
    "badsig.lab.": ("ECDSAP256SHA256", None, ["www.badsig.lab. 300 IN A 192.0.2.6"]),
    "expired.lab.": ("ECDSAP256SHA256", None, ["www.expired.lab. 300 IN A 192.0.2.7"]),
    "future.lab.": ("ECDSAP256SHA256", None, ["www.future.lab. 300 IN A 192.0.2.13"]),
    "skewed.lab.": ("ECDSAP256SHA256", None, ["www.skewed.lab. 300 IN A 192.0.2.17"]),
    "badds.lab.": ("ECDSAP256SHA256", None, ["www.badds.lab. 300 IN A 192.0.2.8"]),
    "nonsec3.lab.": ("ECDSAP256SHA256", "-3 - -H 0", ["www.nonsec3.lab. 300 IN A 192.0.2.9"]),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (Debian: bind9-utils)")
    return path


def _stamp(t: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))


class SignedHierarchy:
    def __init__(self, base: Path, prefix: str | None = None,
                 extra: dict[str, list[str]] | None = None) -> None:
        """`extra`: more records for a zone, before it is signed (the benchmarks add
        thousands to secure.lab.)."""
        self.base = base
        self.extra = extra or {}
        self.prefix = prefix or random_prefix()
        self.hierarchy: Hierarchy | None = None
        self.root_hints = base / "root.hints"
        self.trust_anchor = base / "root.ds"

    def addr(self, n: int) -> str:
        return f"{self.prefix}.{n}"

    def _here(self, text: str) -> str:
        for n in (2, 3, 4, 5):
            text = text.replace(f"@{n}", self.addr(n))
        return text

    def _sign(self, zone: str, text: str, algorithm: str, nsec3: str | None,
              times: tuple[str, str] | None = None) -> tuple[str, str]:
        """(signed zone text, its DS lines)."""
        d = self.base / "keys" / (zone.rstrip(".").replace(".", "_") or "root")
        d.mkdir(parents=True, exist_ok=True)
        source = d / "zone"
        source.write_text("$TTL 3600\n" + text)
        keygen = [_tool("dnssec-keygen"), "-q", "-K", str(d), "-a", algorithm, "-n", "ZONE"]
        if algorithm.startswith("RSA"):
            keygen += ["-b", "2048"]
        subprocess.run([*keygen, "-f", "KSK", zone], check=True, capture_output=True,
                       cwd=d)
        subprocess.run([*keygen, zone], check=True, capture_output=True, cwd=d)
        now = time.time()
        start, end = times or (_stamp(now - 3600), _stamp(now + 30 * 86400))
        # -P: no check of the result (the expired and not-yet-valid zones would fail it)
        argv = [_tool("dnssec-signzone"), "-q", "-P", "-S", "-K", str(d), "-O", "full",
                "-o", zone,
                "-s", start, "-e", end, "-d", str(d), "-f", str(d / "signed")]
        if nsec3:
            argv += nsec3.split()
        subprocess.run([*argv, str(source)], check=True, capture_output=True, cwd=d)
        ds = (d / f"dsset-{zone}").read_text()
        return (d / "signed").read_text(), ds

    def start(self) -> SignedHierarchy:
        now = time.time()
        leaves: dict[str, str] = {}
        ds_lines: list[str] = []
        # two children of secure.lab. on its own server (answered with no referral): one
        # signed (DS in secure.lab.), one not
        child, child_ds = self._sign("child.secure.lab.", self._here(_leaf(
            "child.secure.lab.", "www.child.secure.lab. 300 IN A 192.0.2.15")),
            "ECDSAP256SHA256", None)
        leaves["child.secure.lab."] = child
        leaves["plain.secure.lab."] = self._here(_leaf(
            "plain.secure.lab.", "www.plain.secure.lab. 300 IN A 192.0.2.16"))
        self.extra["secure.lab."] = [*self.extra.get("secure.lab.", []),
                                     "child.secure.lab. 3600 IN NS ns.child.secure.lab.",
                                     self._here("ns.child.secure.lab. 3600 IN A @4"),
                                     "plain.secure.lab. 3600 IN NS ns.plain.secure.lab.",
                                     self._here("ns.plain.secure.lab. 3600 IN A @4"),
                                     *child_ds.strip().splitlines()]
        for zone, (algorithm, nsec3, records) in LEAVES.items():
            text = self._here(_leaf(zone, *records, *self.extra.get(zone, [])))
            if not algorithm:
                leaves[zone] = text
                continue
            times = None
            if zone == "expired.lab.":
                times = (_stamp(now - 10 * 86400), _stamp(now - 86400))
            elif zone == "future.lab.":
                times = (_stamp(now + 86400), _stamp(now + 10 * 86400))
            elif zone == "skewed.lab.":  # a signer whose clock runs 10 minutes fast
                times = (_stamp(now + 600), _stamp(now + 30 * 86400))
            signed, ds = self._sign(zone, text, algorithm, nsec3, times)
            if zone == "badsig.lab.":
                signed = _alter_signature(signed, "www.badsig.lab.", "A")
            if zone == "nonsec3.lab.":
                signed = "".join(line for line in signed.splitlines(keepends=True)
                                 if "NSEC3" not in line.split()[3:5])
            if zone == "badds.lab.":
                ds = _alter_digest(ds)
            leaves[zone] = signed
            ds_lines.append(ds)
        # the unsigned zone delegated from inside optout.lab.'s opt-out span
        # (on a server of its own: the referral and its opt-out proof are what is tested)
        unsigned = self._here(_leaf("unsigned.optout.lab.",
                                    "www.unsigned.optout.lab. 300 IN A 192.0.2.14")
                              .replace("IN A @4", "IN A @5"))
        tld = SOA.format(z="lab.") + "lab. 3600 IN NS ns.lab.\nns.lab. 3600 IN A @3\n"
        for zone in LEAVES:
            tld += f"{zone} 3600 IN NS ns.{zone}\nns.{zone} 3600 IN A @4\n"
        tld_signed, tld_ds = self._sign("lab.", self._here(tld + "".join(ds_lines)),
                                        "RSASHA256", None)
        root = ". 3600 IN SOA a.root. admin.root. 1 3600 600 86400 300\n" \
               ". 3600 IN NS a.root.\na.root. 3600 IN A @2\n" \
               "lab. 3600 IN NS ns.lab.\nns.lab. 3600 IN A @3\n"
        root_signed, root_ds = self._sign(".", self._here(root + tld_ds), "ECDSAP256SHA256",
                                          None)
        self.trust_anchor.write_text(root_ds)
        self.hierarchy = _start_nsd(self.base / "nsd", {
            self.addr(2): [(".", root_signed)], self.addr(3): [("lab.", tld_signed)],
            self.addr(4): list(leaves.items()),
            self.addr(5): [("unsigned.optout.lab.", unsigned)]})
        self.root_hints.write_text(".  3600000  NS  A.ROOT.\n"
                                   f"A.ROOT.  3600000  A  {self.addr(2)}\n")
        return self

    def stop(self) -> None:
        if self.hierarchy is not None:
            self.hierarchy.stop()
            self.hierarchy = None

    def __enter__(self) -> SignedHierarchy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alter_signature(signed: str, owner: str, rtype: str) -> str:
    out = []
    for line in signed.splitlines(keepends=True):
        words = line.split()
        if len(words) > 5 and words[0] == owner and words[3] == "RRSIG" and words[4] == rtype:
            sig = words[-1]
            flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
            line = line.replace(sig, flipped)
        out.append(line)
    return "".join(out)


def _alter_digest(ds: str) -> str:
    words = ds.split()
    digest = words[-1]
    words[-1] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    return " ".join(words) + "\n"


def _start_nsd(base: Path, zones_by_server: dict[str, list[tuple[str, str]]]) -> Hierarchy:
    from netkit.config import Address
    from netkit.transport.listeners import bind_socket

    processes = [start_nsd(base / server, server, zones)
                 for server, zones in zones_by_server.items()]
    prefix = next(iter(zones_by_server)).rsplit(".", 1)[0]
    # the Hierarchy type wants a socket to close; nothing here needs a black hole
    placeholder = bind_socket("udp", Address("127.0.0.1", 0))
    h = Hierarchy(base / "unused.hints", processes, placeholder, prefix)
    wait_ready(h, base, [(server, zone) for server, zones in zones_by_server.items()
                         for zone, _ in zones])
    return h
