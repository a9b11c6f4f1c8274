"""Response policy: RPZ zones and blocklists, as data and lookups (no files, no sockets).

Sources (parsed here from their text):

  rpz      a Response Policy Zone file (draft-vixie-dnsop-dns-rpz, as Unbound reads it):
           QNAME triggers `name` and `*.name`, Response-IP triggers
           `32.1.0.0.127.rpz-ip` (IPv4 and IPv6, `zz` for `::`), actions by CNAME:
           `.` NXDOMAIN, `*.` NODATA, `rpz-passthru.` PASSTHRU, `rpz-drop.` DROP, any
           other name a CNAME redirection; other records (A, AAAA, TXT ...) are the answer
  hosts    `0.0.0.0 ads.example` (any address; several names a line): the names only
  domains  one name a line: the name and every name below it
  adblock  `||ads.example^`: the name and every name below it; other rules are skipped

A line that is not one of these is skipped and counted (`Lists.skipped`), never an error,
in the plain formats; in an RPZ file it is an error (the previous version stays).
Names are kept as key-form strings in sets (one string per entry, no object per rule
for the plain formats): a million load in a few seconds and cost ~100 bytes each.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from .message import AAAA, CNAME, A, Record, name_to_wire

TXT = 16

NXDOMAIN, NODATA, PASSTHRU, DROP, LOCAL, REDIRECT = \
    "nxdomain", "nodata", "passthru", "drop", "local", "cname"
ACTIONS = (NXDOMAIN, NODATA, PASSTHRU, DROP)


class PolicyError(ValueError):
    """A policy source that does not parse (an RPZ file with a bad record)."""


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    records: tuple[Record, ...] = ()  # LOCAL: the answer (owner "" = the question's name)
    target: str = ""  # REDIRECT: the CNAME target


_NXDOMAIN, _NODATA, _PASSTHRU, _DROP = (Rule(a) for a in ACTIONS)
SIMPLE = {NXDOMAIN: _NXDOMAIN, NODATA: _NODATA, PASSTHRU: _PASSTHRU, DROP: _DROP}


@dataclass(slots=True)
class Lists:
    """One source's triggers."""

    exact: dict[str, Rule] | set[str] = field(default_factory=set)
    """Names that match themselves only (a set when every entry has `rule`)."""
    below: dict[str, Rule] | set[str] = field(default_factory=set)
    """Names whose subdomains match (RPZ `*.name`); with `apex_too`, the name as well."""
    apex_too: bool = False  # domains/adblock: a name blocks itself and what is below it
    ips: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Rule]] = \
        field(default_factory=list)
    rule: Rule = _NXDOMAIN  # the plain formats' one action
    skipped: int = 0  # lines of no use (counted, not errors)
    unsupported: int = 0  # RPZ triggers this server does not act on (NSDNAME, NSIP...)

    def __len__(self) -> int:
        return len(self.exact) + len(self.below) + len(self.ips)

    def match(self, name: str) -> Rule | None:
        """The rule for `name` (key form): exact first, then the closest enclosing
        wildcard (RPZ's precedence)."""
        exact = self.exact
        if name in exact:
            return exact[name] if isinstance(exact, dict) else self.rule
        below = self.below
        if not below:
            return None
        if self.apex_too and name in below:
            return below[name] if isinstance(below, dict) else self.rule
        i = name.find(".")
        while 0 <= i < len(name) - 1:
            parent = name[i + 1:]
            if parent in below:
                return below[parent] if isinstance(below, dict) else self.rule
            i = name.find(".", i + 1)
        return None

    def match_ip(self, address: str) -> Rule | None:
        if not self.ips:
            return None
        ip = ipaddress.ip_address(address)
        best: tuple[int, Rule] | None = None
        for net, rule in self.ips:  # the longest prefix wins (as the draft orders them)
            if ip.version == net.version and ip in net and \
                    (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, rule)
        return best[1] if best else None


_NAME = re.compile(r"^[A-Za-z0-9_*](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?\.?$")


def _name(text: str) -> str | None:
    """A plausible domain name in key form, or None."""
    text = text.strip().lower()
    if not text or len(text) > 253 or not _NAME.match(text) or ".." in text:
        return None
    return text if text.endswith(".") else text + "."


def parse_plain(text: str, fmt: str, rule: Rule = _NXDOMAIN) -> Lists:
    """hosts, domains or adblock text -> Lists (bad lines skipped and counted)."""
    out = Lists(rule=rule, apex_too=fmt != "hosts")
    names: set[str] = out.exact if fmt == "hosts" else out.below  # type: ignore[assignment]
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!;[":
            continue
        if fmt == "hosts":
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2 or not _is_address(fields[0]):
                out.skipped += 1
                continue
            for word in fields[1:]:
                name = _name(word)
                if name is None or name in ("localhost.", "localhost.localdomain.",
                                            "broadcasthost.", "local."):
                    if name is None:
                        out.skipped += 1
                    continue
                names.add(name)
        elif fmt == "domains":
            name = _name(line.split("#", 1)[0])
            if name is None:
                out.skipped += 1
                continue
            names.add(name)
        else:  # adblock: domain rules only
            if not (line.startswith("||") and line.endswith("^")) or "/" in line or \
                    "$" in line or "*" in line:
                out.skipped += 1
                continue
            name = _name(line[2:-1])
            if name is None:
                out.skipped += 1
                continue
            names.add(name)
    return out


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- RPZ --------------------------------------------------------------------------------

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CLASSES = {"IN", "CH", "HS"}


def parse_rpz(text: str, zone: str, override: str = "") -> Lists:
    """An RPZ zone file -> Lists. `zone` is its origin (owner names are relative to it);
    `override` replaces every rule's action (the zone's action_override)."""
    origin = _name(zone) or "."
    out = Lists(exact={}, below={})
    exact: dict[str, Rule] = out.exact  # type: ignore[assignment]
    below: dict[str, Rule] = out.below  # type: ignore[assignment]
    local: dict[tuple[str, bool], list[Record]] = {}
    ttl = 3600
    last_owner = origin
    for number, raw in enumerate(_join_parentheses(text), 1):
        line = _strip_comment(raw)
        if not line.strip():
            continue
        words = line.split()
        if words[0] == "$ORIGIN":
            origin = _name(words[1]) if len(words) > 1 else None
            if origin is None:
                raise PolicyError(f"line {number}: bad $ORIGIN")
            continue
        if words[0] == "$TTL":
            ttl = _ttl(words[1]) if len(words) > 1 else -1
            if ttl < 0:
                raise PolicyError(f"line {number}: bad $TTL")
            continue
        if line[0].isspace():
            owner = last_owner
        else:
            owner = _absolute(words.pop(0), origin)
            last_owner = owner
        record_ttl = ttl
        while words and (words[0].upper() in _CLASSES or words[0][0].isdigit()):
            word = words.pop(0)
            if word.upper() not in _CLASSES:
                record_ttl = _ttl(word)
                if record_ttl < 0:
                    raise PolicyError(f"line {number}: bad TTL {word!r}")
        if not words:
            raise PolicyError(f"line {number}: no record type")
        rtype, rdata = words[0].upper(), words[1:]
        if rtype in ("SOA", "NS") and owner == _name(zone):
            continue  # the zone's own apex records
        if not _in(owner, _name(zone) or "."):
            raise PolicyError(f"line {number}: {owner} is outside the zone {zone}")
        trigger = owner[:-len(_name(zone) or ".")] if _name(zone) != "." else owner
        trigger = trigger or "."
        rule = _rule(rtype, rdata, number, record_ttl)
        kind, key = _trigger(trigger)
        if kind == "unsupported":
            out.unsupported += 1
            continue
        if override:
            rule = SIMPLE.get(override, rule)
        if kind == "ip":
            network = key
            out.ips.append((network, rule))  # type: ignore[arg-type]
            continue
        if rule.action == LOCAL:
            local.setdefault((key, kind == "wild"), []).extend(rule.records)  # type: ignore[arg-type]
            continue
        (below if kind == "wild" else exact)[key] = rule  # type: ignore[index]
    for (key, wild), records in local.items():
        (below if wild else exact)[key] = Rule(LOCAL, tuple(records))
    return out


def _rule(rtype: str, rdata: list[str], number: int, ttl: int) -> Rule:
    if rtype == "CNAME":
        if len(rdata) != 1:
            raise PolicyError(f"line {number}: CNAME needs one target")
        target = rdata[0].lower()
        if target == ".":
            return _NXDOMAIN
        if target == "*.":
            return _NODATA
        if target in ("rpz-passthru.", "rpz-passthru"):
            return _PASSTHRU
        if target in ("rpz-drop.", "rpz-drop"):
            return _DROP
        if target.startswith("rpz-"):
            raise PolicyError(f"line {number}: unsupported action {target}")
        name = _name(target)
        if name is None or not target.endswith("."):
            raise PolicyError(f"line {number}: CNAME target {target!r} is not absolute")
        return Rule(REDIRECT, target=name)
    try:
        if rtype == "A":
            data = socket.inet_pton(socket.AF_INET, rdata[0])
            code = A
        elif rtype == "AAAA":
            data = socket.inet_pton(socket.AF_INET6, rdata[0])
            code = AAAA
        elif rtype == "TXT":
            data = _txt(" ".join(rdata))
            code = TXT
        else:
            raise PolicyError(f"line {number}: local data of type {rtype} is not supported "
                              f"(A, AAAA, TXT, CNAME)")
    except (OSError, IndexError, ValueError) as exc:
        raise PolicyError(f"line {number}: {rtype} {' '.join(rdata)!r}: {exc}") from None
    return Rule(LOCAL, (Record("", code, 1, ttl, data),))


def _txt(text: str) -> bytes:
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', text) if '"' in text else text.split()
    out = b""
    for part in parts:
        raw = part.replace('\\"', '"').encode()
        if len(raw) > 255:
            raise ValueError("a TXT string over 255 bytes")
        out += bytes([len(raw)]) + raw
    if not out:
        raise ValueError("empty TXT")
    return out


def _trigger(trigger: str) -> tuple[str, object]:
    """("exact" | "wild", name) for a QNAME trigger, ("ip", network) for Response-IP,
    ("unsupported", None) for the triggers not acted on."""
    labels = trigger.rstrip(".").split(".")
    if labels[-1] == "rpz-ip":
        return "ip", _rpz_ip(labels[:-1])
    if labels[-1] in ("rpz-nsdname", "rpz-nsip", "rpz-client-ip"):
        return "unsupported", None
    if labels[0] == "*":
        return "wild", ".".join(labels[1:]) + "." if len(labels) > 1 else "."
    return "exact", trigger


def _rpz_ip(labels: list[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`32.1.0.0.127` -> 127.0.0.1/32; `128.1.zz.db8.2001` -> 2001:db8::1/128."""
    try:
        prefix = int(labels[0])
        parts = list(reversed(labels[1:]))
        if len(parts) == 4 and "zz" not in parts:
            return ipaddress.ip_network(f"{'.'.join(parts)}/{prefix}")
        text = ":".join("" if p == "zz" else p for p in parts)
        if text.startswith(":"):
            text = ":" + text
        if text.endswith(":"):
            text += ":"
        return ipaddress.ip_network(f"{text}/{prefix}")
    except (ValueError, IndexError) as exc:
        raise PolicyError(f"rpz-ip trigger {'.'.join(labels)}: {exc}") from None


def _join_parentheses(text: str) -> Iterable[str]:
    pending = ""
    for line in text.splitlines():
        body = _strip_comment(line)
        if pending:
            pending += " " + body.strip()
        elif "(" in body:
            pending = body
        else:
            yield line
            continue
        if pending.count("(") <= pending.count(")"):
            yield pending.replace("(", " ").replace(")", " ")
            pending = ""
    if pending:
        yield pending


def _strip_comment(line: str) -> str:
    if ";" not in line:
        return line
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return line[:i]
    return line


def _ttl(word: str) -> int:
    m = re.fullmatch(r"(\d+)([smhdwSMHDW]?)", word)
    if not m:
        return -1
    return int(m.group(1)) * _TTL_UNITS.get(m.group(2).lower(), 1)


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    if name.endswith("."):
        return name.lower()
    return f"{name.lower()}.{origin}" if origin != "." else f"{name.lower()}."


def _in(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


def local_answer(rule: Rule, qname: str, qtype: int) -> list[Record]:
    """A LOCAL rule's records for the question (owner set to the name asked)."""
    return [Record(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata)
            for rr in rule.records if rr.rtype == qtype or qtype == 255]


def cname_record(qname: str, target: str, ttl: int = 300) -> Record:
    return Record(qname, CNAME, 1, ttl, name_to_wire(target), target)


