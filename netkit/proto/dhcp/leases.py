"""The lease engine: which address a client gets, and the reply it gets (RFC 2131).

Sans-IO: `handle(request, now, ...)` takes a parsed message and the time, and returns
an `Outcome`: the reply (or none), the leases that changed (the driver commits them
before sending an ACK) and the events (new, renewed, released, expired, declined).
`expire(now)` reclaims what ran out; `next_deadline()` says when to call it next.

States: `offered` (held briefly for a DISCOVER), `bound`, `released` and `expired`
(free again, remembered so the client gets the same address back), `declined`
(quarantined: someone else uses it).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .options import ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST, encode
from .packet import BOOTREPLY, BROADCAST_FLAG, ZERO, Message, ip_int, ip_text

State = Literal["offered", "bound", "released", "expired", "declined"]
HELD = ("offered", "bound", "declined")  # states that keep an address from others
NO_DATABASE = "no new leases: the lease database is unreachable"


@dataclass(slots=True)
class Lease:
    address: str
    client: str  # "mac:..." or "id:..." (Message.client_key); "" for a declined address
    mac: str
    hostname: str
    state: State
    expires: float
    subnet: str
    version: int = 0  # a shared store's row version this server last saw at the address
    durable: float = 0.0
    """The expiry of this client's bound lease as the store last confirmed it (0: none):
    all a server may vouch for while the store is out of reach."""


@dataclass(frozen=True, slots=True)
class Reservation:
    address: str
    mac: str = ""
    client_id: str = ""  # hex
    hostname: str = ""

    def matches(self, msg: Message) -> bool:
        cid = msg.options.get(61)
        return (bool(self.mac) and self.mac.lower() == msg.mac) or \
            (bool(self.client_id) and cid is not None and cid.hex() == self.client_id.lower())


@dataclass(slots=True)
class Subnet:
    """One subnet as the engine uses it (the driver builds it from the config)."""

    network: ipaddress.IPv4Network
    ranges: list[tuple[int, int]]
    server_id: str
    lease_time: int = 3600
    options: dict[int, bytes] = field(default_factory=dict)
    """Configured options (router, DNS, domain...), encoded, in the order to send."""
    reservations: list[Reservation] = field(default_factory=list)
    interface: str = ""
    circuit_id: bytes = b""
    name: str = ""
    cursor: int = field(default=0, init=False)  # where the search for a free address goes on
    reserved: set[str] = field(default_factory=set, init=False)
    first: int = field(default=0, init=False)  # the network's addresses, as ints
    last: int = field(default=0, init=False)
    server_id_packed: bytes = field(default=b"", init=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.network)
        self.reserved = {r.address for r in self.reservations}
        self.first = int(self.network.network_address)
        self.last = int(self.network.broadcast_address)
        self.server_id_packed = encode(54, self.server_id)

    def contains(self, address: str) -> bool:
        try:
            n = ip_int(address)
        except ValueError:
            return False
        return self.first <= n <= self.last

    def in_pool(self, address: str) -> bool:
        n = ip_int(address)
        return any(lo <= n <= hi for lo, hi in self.ranges)

    def reservation_for(self, msg: Message) -> Reservation | None:
        for r in self.reservations:
            if r.matches(msg):
                return r
        return None

    def reserved_for_other(self, address: str, msg: Message) -> bool:
        if address not in self.reserved:
            return False
        mine = self.reservation_for(msg)
        return mine is None or mine.address != address

    @property
    def size(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)


@dataclass(slots=True)
class Event:
    kind: Literal["new", "renewed", "released", "expired", "declined"]
    lease: Lease


@dataclass(slots=True)
class Outcome:
    reply: Message | None = None
    changed: list[Lease] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    dropped: str = ""  # why nothing was answered, for the counters ("" when answered)


class Leases:
    """Every lease of every subnet, and the allocation rules."""

    def __init__(self, subnets: Iterable[Subnet], *, offer_timeout: float = 10.0,
                 max_offers: int = 256, decline_time: float = 86400.0) -> None:
        self.subnets = list(subnets)
        self.offer_timeout = offer_timeout
        self.max_offers = max_offers
        self.decline_time = decline_time
        self.by_address: dict[str, Lease] = {}
        self.by_client: dict[str, Lease] = {}
        self.offers = 0
        self.full_pools: set[str] = set()  # subnets found full since the last look
        self.persist_offers = False
        """Offers are leases to commit too (a shared store: the database hands out an
        address once, an offer included)."""
        self.new_leases = True
        """False while the shared lease database is unreachable: renewals of known
        leases only, never past the expiry the database holds."""

    # --- state ---

    def load(self, leases: Iterable[Lease]) -> None:
        for lease in leases:
            self._put(lease)

    def reconfigure(self, subnets: Iterable[Subnet]) -> None:
        """New pools and reservations; leases are kept (one outside every pool now is
        not renewed)."""
        self.subnets = list(subnets)

    def merge(self, rows: Iterable[Lease], *, skip: set[str] | frozenset[str] = frozenset()
              ) -> None:
        """What other servers wrote (a shared store): rows newer than this view replace
        it, except at the addresses in `skip` (changes of ours still on their way)."""
        for row in rows:
            cur = self.by_address.get(row.address)
            if row.address in skip or (cur is not None and cur.version >= row.version):
                continue
            row.durable = row.expires if row.state == "bound" else 0.0
            # no other lease changes: another server's offer to a client does not end
            # this server's lease for it (that write could free an address in use)
            if cur is not None and cur.client and self.by_client.get(cur.client) is cur:
                del self.by_client[cur.client]
            self.by_address[row.address] = row
            if row.client:
                held = self.by_client.get(row.client)
                if held is None or held.state not in HELD or \
                        (row.state == "bound" and held.state != "bound"):
                    self.by_client[row.client] = row
        self.offers = sum(1 for lease in self.by_address.values() if lease.state == "offered")

    def _put(self, lease: Lease) -> None:
        old = self.by_address.get(lease.address)
        if old is not None and not lease.version:
            lease.version = old.version  # the row this change was made from
        if old is not None and not lease.durable and old.client == lease.client:
            lease.durable = old.durable
        if old is not None and old.client and self.by_client.get(old.client) is old:
            del self.by_client[old.client]
        self.by_address[lease.address] = lease
        if lease.client:
            previous = self.by_client.get(lease.client)
            if previous is not None and previous is not lease and \
                    previous.address != lease.address and previous.state in HELD:
                previous.state = "released"  # one address per client at a time
                # a change of this view only, never written: it no longer stands for the
                # row a shared store holds, so no claim may pass as "unchanged since seen"
                previous.version = -1
            self.by_client[lease.client] = lease

    def taken(self, address: str, now: float, client: str) -> bool:
        lease = self.by_address.get(address)
        return lease is not None and lease.client != client and lease.state in HELD \
            and lease.expires > now

    def count(self) -> dict[str, int]:
        out = dict.fromkeys(("offered", "bound", "released", "expired", "declined"), 0)
        for lease in self.by_address.values():
            out[lease.state] += 1
        return out

    def expire(self, now: float) -> Outcome:
        """Offers that ran out are forgotten, bound leases that ran out are expired,
        declined addresses past their quarantine are freed."""
        out = Outcome()
        for lease in list(self.by_address.values()):
            if lease.expires > now or lease.state not in HELD:
                continue
            if lease.state == "offered":
                self.offers -= 1
                lease.state = "expired"
                continue
            lease.state = "expired"
            out.changed.append(lease)
            if lease.client:
                out.events.append(Event("expired", lease))
        self.offers = sum(1 for lease in self.by_address.values()
                          if lease.state == "offered")
        return out

    def next_deadline(self) -> float | None:
        held = [lease.expires for lease in self.by_address.values() if lease.state in HELD]
        return min(held) if held else None

    # --- choosing ---

    def subnet_for(self, msg: Message, interface: str, interface_address: str
                   ) -> Subnet | None:
        """By giaddr for a relayed request (and the relay's circuit id where a subnet asks
        for one), else by the interface it came in on."""
        if msg.giaddr != ZERO:
            circuit = _circuit_id(msg.options.get(82, b""))
            candidates = [s for s in self.subnets if s.contains(msg.giaddr)]
            for s in candidates:
                if s.circuit_id and s.circuit_id == circuit:
                    return s
            return next((s for s in candidates if not s.circuit_id), None)
        here = [s for s in self.subnets if not s.interface or s.interface == interface]
        if len(here) > 1 and interface_address:
            inside = [s for s in here if s.contains(interface_address)]
            here = inside or here
        return here[0] if here else None

    def _pick(self, subnet: Subnet, msg: Message, now: float) -> str | None:
        client = msg.client_key
        reserved = subnet.reservation_for(msg)
        if reserved is not None:
            return reserved.address if not self.taken(reserved.address, now, client) else None
        mine = self.by_client.get(client)
        if mine is not None and mine.state != "declined" and \
                self._usable(subnet, mine.address, msg, now):
            return mine.address
        wanted = msg.ip_option(50)
        if wanted and self._usable(subnet, wanted, msg, now):
            return wanted
        return self._free(subnet, msg, now)

    def _usable(self, subnet: Subnet, address: str, msg: Message, now: float) -> bool:
        return subnet.contains(address) and \
            subnet.in_pool(address) and not subnet.reserved_for_other(address, msg) and \
            not self.taken(address, now, msg.client_key)

    def _free(self, subnet: Subnet, msg: Message, now: float) -> str | None:
        """A never-used address (scanned from a cursor, so a large pool is not walked
        from its start every time), else the free one left longest ago."""
        total = subnet.size
        for _ in range(total):
            offset = subnet.cursor % total
            subnet.cursor += 1
            for lo, hi in subnet.ranges:
                if offset <= hi - lo:
                    address = ip_text(lo + offset)
                    break
                offset -= hi - lo + 1
            if address not in self.by_address and \
                    not subnet.reserved_for_other(address, msg):
                return address
        spare = [lease for lease in self.by_address.values()
                 if (lease.state not in HELD or lease.expires <= now)
                 and self._usable(subnet, lease.address, msg, now)]
        if not spare:
            self.full_pools.add(subnet.name)
            return None
        return min(spare, key=lambda lease: lease.expires).address

    def conflict(self, address: str, now: float) -> Lease:
        """`address` answered a ping though nobody holds it: out of the pool for
        `decline_time`, as a declined one (the offer that picked it is withdrawn)."""
        lease = self.by_address.get(address)
        if lease is not None and lease.state == "offered":
            self.offers = max(self.offers - 1, 0)
        if lease is not None and lease.client and self.by_client.get(lease.client) is lease:
            del self.by_client[lease.client]
        held = Lease(address, "", "", "", "declined", now + self.decline_time,
                     lease.subnet if lease is not None else "")
        self._put(held)
        return held

    # --- answering ---

    def handle(self, msg: Message, now: float, *, interface: str = "",
               interface_address: str = "") -> Outcome:
        kind = msg.type
        subnet = self.subnet_for(msg, interface, interface_address)
        if kind == DISCOVER:
            return self._discover(msg, subnet, now)
        if kind == REQUEST:
            return self._request(msg, subnet, now)
        if kind == RELEASE:
            return self._release(msg, subnet, now)
        if kind == DECLINE:
            return self._decline(msg, subnet, now)
        if kind == INFORM:
            return self._inform(msg, subnet)
        return Outcome(dropped="not a client message type")

    def _discover(self, msg: Message, subnet: Subnet | None, now: float) -> Outcome:
        if subnet is None:
            return Outcome(dropped="no subnet for this client")
        client = msg.client_key
        current = self.by_client.get(client)
        if not self.new_leases:
            if current is None or current.state != "bound" or current.durable <= now or \
                    not subnet.contains(current.address):
                return Outcome(dropped=NO_DATABASE)
            return Outcome(reply=self._reply(msg, subnet, OFFER, current.address,
                                             int(current.durable - now)))
        has_offer = current is not None and current.state == "offered" and \
            current.expires > now
        if not has_offer and self.offers >= self.max_offers:
            return Outcome(dropped="too many offers outstanding")
        address = self._pick(subnet, msg, now)
        if address is None:
            return Outcome(dropped="pool full")
        lease = self.by_address.get(address)
        if lease is not None and lease.client == client and lease.state == "bound" and \
                lease.expires > now:
            pass  # offered its own bound lease again: it stays bound
        else:
            if not (has_offer and current is not None and current.address == address):
                self.offers += 1
            if has_offer and current is not None and current.address != address:
                current.state = "expired"
                self.offers -= 1
            lease = Lease(address, client, msg.mac, _hostname(msg, subnet), "offered",
                          now + self.offer_timeout, subnet.name)
            self._put(lease)
            if self.persist_offers:
                return Outcome(reply=self._reply(msg, subnet, OFFER, address),
                               changed=[lease])
        return Outcome(reply=self._reply(msg, subnet, OFFER, address))

    def _request(self, msg: Message, subnet: Subnet | None, now: float) -> Outcome:
        server_id = msg.ip_option(54)
        requested = msg.ip_option(50)
        client = msg.client_key
        if server_id is not None:  # SELECTING
            if subnet is None or server_id != subnet.server_id:
                lease = self.by_client.get(client)
                if lease is not None and lease.state == "offered":  # it chose another
                    lease.state = "expired"
                    self.offers = max(self.offers - 1, 0)
                return Outcome(dropped="the client chose another server")
            address = requested or (msg.ciaddr if msg.ciaddr != ZERO else None)
            if address is None:
                return Outcome(dropped="a REQUEST naming no address")
        elif requested is not None:  # INIT-REBOOT
            address = requested
        elif msg.ciaddr != ZERO:  # RENEWING (unicast) or REBINDING (broadcast)
            address = msg.ciaddr
        else:
            return Outcome(dropped="a REQUEST naming no address")
        if subnet is None or not subnet.contains(address):
            if subnet is None:
                return Outcome(dropped="no subnet for this client")
            return self._nak(msg, subnet, "wrong network")
        lease = self.by_address.get(address)
        mine = lease is not None and lease.client == client
        if server_id is None and requested is not None and not mine and \
                self.by_client.get(client) is None:
            # RFC 2131 4.3.2: INIT-REBOOT from a client we know nothing of: silence
            return Outcome(dropped="INIT-REBOOT from an unknown client")
        if not self.new_leases:  # no NAK either: this view may be out of date
            # only what the database confirmed (not a change whose commit failed), and no
            # longer than it grants: once that runs out another server may hand it out
            if lease is None or not mine or lease.state != "bound" or lease.durable <= now:
                return Outcome(dropped=NO_DATABASE)
            return Outcome(reply=self._reply(msg, subnet, ACK, address,
                                             int(lease.durable - now)))
        reservation = subnet.reservation_for(msg)
        if reservation is not None and reservation.address != address:
            return self._nak(msg, subnet, "reserved for you: another address")
        if not mine and not self._usable(subnet, address, msg, now):
            return self._nak(msg, subnet, "address not available")
        if mine and lease is not None and lease.state == "declined":
            return self._nak(msg, subnet, "address declined")
        if reservation is None and not subnet.in_pool(address):
            return self._nak(msg, subnet, "address outside the pool")
        renewed = mine and lease is not None and lease.state == "bound"
        if mine and lease is not None and lease.state == "offered":
            self.offers = max(self.offers - 1, 0)
        new = Lease(address, client, msg.mac, _hostname(msg, subnet) or
                    (lease.hostname if mine and lease is not None else ""), "bound",
                    now + subnet.lease_time, subnet.name)
        self._put(new)
        return Outcome(reply=self._reply(msg, subnet, ACK, address), changed=[new],
                       events=[Event("renewed" if renewed else "new", new)])

    def _release(self, msg: Message, subnet: Subnet | None, now: float) -> Outcome:
        lease = self.by_address.get(msg.ciaddr)
        if lease is None or lease.client != msg.client_key or lease.state != "bound":
            return Outcome(dropped="RELEASE of no lease of this client")
        lease.state = "released"
        lease.expires = now
        return Outcome(changed=[lease], events=[Event("released", lease)],
                       dropped="RELEASE (no reply)")

    def _decline(self, msg: Message, subnet: Subnet | None, now: float) -> Outcome:
        address = msg.ip_option(50)
        if subnet is None or address is None or msg.ip_option(54) != subnet.server_id:
            return Outcome(dropped="DECLINE not for us")
        lease = self.by_address.get(address)
        if lease is None or lease.client != msg.client_key:
            return Outcome(dropped="DECLINE of no lease of this client")
        if lease.state == "offered":
            self.offers = max(self.offers - 1, 0)
        declined = Lease(address, "", "", "", "declined", now + self.decline_time,
                         subnet.name)
        self.by_client.pop(msg.client_key, None)
        self._put(declined)
        return Outcome(changed=[declined], events=[Event("declined", declined)],
                       dropped="DECLINE (no reply)")

    def _inform(self, msg: Message, subnet: Subnet | None) -> Outcome:
        if subnet is None:
            return Outcome(dropped="no subnet for this client")
        reply = self._reply(msg, subnet, ACK, ZERO)
        for code in (51, 58, 59):  # RFC 2131 4.3.5: no lease in an answer to INFORM
            reply.options.pop(code, None)
        return Outcome(reply=reply)

    def _nak(self, msg: Message, subnet: Subnet, why: str) -> Outcome:
        reply = _base_reply(msg, NAK, subnet.server_id_packed)
        reply.options[56] = why.encode()
        if 82 in msg.options:
            reply.options[82] = msg.options[82]
        if msg.giaddr != ZERO:
            reply.flags |= BROADCAST_FLAG  # the relay broadcasts it on the client's link
        return Outcome(reply=reply)

    def _reply(self, msg: Message, subnet: Subnet, kind: int, address: str,
               lease_time: int | None = None) -> Message:
        reply = _base_reply(msg, kind, subnet.server_id_packed)
        reply.yiaddr = address
        if kind == ACK and msg.ciaddr != ZERO:
            reply.ciaddr = msg.ciaddr
        if lease_time is None:
            lease_time = subnet.lease_time
        always = {51: struct.pack("!I", lease_time),
                  58: struct.pack("!I", lease_time // 2),
                  59: struct.pack("!I", lease_time * 7 // 8),
                  1: subnet.network.netmask.packed}
        wanted = msg.options.get(55)
        configured = dict(subnet.options)
        reservation = subnet.reservation_for(msg)
        if reservation is not None and reservation.hostname:
            configured[12] = reservation.hostname.encode()
        for code, value in always.items():
            reply.options[code] = value
        for code, value in configured.items():
            if wanted is None or code in wanted or code in (3, 6, 15):
                reply.options[code] = value
        if wanted:  # the order the client asked for (RFC 2132 9.8: SHOULD)
            ordered = {53: reply.options.pop(53), 54: reply.options.pop(54)}
            for code in wanted:
                if code in reply.options:
                    ordered[code] = reply.options.pop(code)
            ordered.update(reply.options)
            reply.options = ordered
        if 82 in msg.options:  # RFC 3046 2.2: echoed back, last
            reply.options[82] = msg.options[82]
        return reply


def _base_reply(msg: Message, kind: int, server_id: bytes) -> Message:
    return Message(op=BOOTREPLY, htype=msg.htype, hlen=msg.hlen, xid=msg.xid,
                   flags=msg.flags, giaddr=msg.giaddr, chaddr=msg.chaddr,
                   options={53: bytes([kind]), 54: server_id})


def _hostname(msg: Message, subnet: Subnet) -> str:
    reservation = subnet.reservation_for(msg)
    if reservation is not None and reservation.hostname:
        return reservation.hostname
    raw = msg.options.get(12, b"")
    name = raw.decode("ascii", "replace").strip("\0").strip().lower()
    label = name.split(".")[0]
    ok = label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) and \
        not label.startswith("-")
    return label if ok else ""


def _circuit_id(relay_info: bytes) -> bytes:
    """Sub-option 1 of option 82 (RFC 3046)."""
    i = 0
    while i + 2 <= len(relay_info):
        code, length = relay_info[i], relay_info[i + 1]
        if code == 1:
            return relay_info[i + 2:i + 2 + length]
        i += 2 + length
    return b""
