"""The packet mode's engine: masquerade (source NAT to one outside address) with a
router's duties, sans-IO. Packets come in as bytes with the time; out come the packets
to write on each side.

    nat = Masquerade(outside="203.0.113.1", inside_router="10.1.0.1", firewall=fw,
                     table=ConnectionTable(...))
    to_out, to_in = nat.from_inside(data, now)     # lists of packets
    to_out, to_in = nat.from_outside(data, now)

Every flow (TCP, UDP, ICMP echo) gets an outside port (or echo identifier) from
`ports`; its row in the shared connection table shows inside, outside and target. TCP's
state follows its flags (SYN, established, FIN/RST) with a time-out per state. A packet
whose TTL runs out gets ICMP Time Exceeded (so traceroute shows the relay); one too big
for the outside MTU with DF gets Fragmentation Needed; ICMP errors from outside are
mapped back to the inside host by the header they carry. No packet leaves the outside
with another source than `outside`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import packet as pk
from .conntrack import ConnectionTable, Flow
from .rules import Firewall

PROTO_NAMES = {pk.TCP: "tcp", pk.UDP: "udp", pk.ICMP: "icmp"}


@dataclass(slots=True)
class Timeouts:
    tcp_established: float = 7440.0  # RFC 5382: at least 2 h 4 min
    tcp_transitory: float = 240.0  # SYN sent, FIN or RST seen (RFC 5382: 4 min)
    udp: float = 30.0
    icmp: float = 30.0


@dataclass(slots=True, eq=False)
class Mapping:
    proto: int
    inside: tuple[str, int]
    target: tuple[str, int]
    outside_port: int
    flow: Flow
    tcp_state: str = "syn"  # syn, established, closing


@dataclass(slots=True)
class Counters:
    forwarded_out: int = 0
    forwarded_in: int = 0
    malformed: int = 0
    denied: int = 0
    rejected: int = 0
    no_mapping: int = 0
    ttl_exceeded: int = 0
    frag_needed: int = 0
    fragments_dropped: int = 0
    unsupported: int = 0
    table_full: int = 0
    ports_exhausted: int = 0
    by_rule: dict[int, int] = field(default_factory=dict)


class Masquerade:
    def __init__(self, *, outside: str, inside_router: str, firewall: Firewall,
                 table: ConnectionTable, outside_mtu: int = 1500,
                 ports: tuple[int, int] = (20000, 59999),
                 timeouts: Timeouts | None = None) -> None:
        self.outside = outside
        self.inside_router = inside_router
        self.firewall = firewall
        self.table = table
        self.outside_mtu = outside_mtu
        self.ports = ports
        self.timeouts = timeouts or Timeouts()
        self.out_map: dict[tuple[int, str, int, str, int], Mapping] = {}
        self.in_map: dict[tuple[int, int], Mapping] = {}  # (proto, outside port)
        self.next_port = {p: ports[0] for p in PROTO_NAMES}
        self.counters = Counters()

    # --- inside -> outside ---

    def from_inside(self, data: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        c = self.counters
        try:
            p = pk.parse(data)
        except pk.MalformedPacket:
            c.malformed += 1
            return [], []
        if p.dst == self.inside_router:  # for the router itself: it answers pings only
            if p.proto == pk.ICMP and p.icmp_type == pk.ECHO_REQUEST:
                return [], [self._echo_reply(data, p)]
            c.unsupported += 1
            return [], []
        if p.fragment:
            c.fragments_dropped += 1
            return [], []
        if p.proto not in PROTO_NAMES or (p.proto == pk.ICMP and
                                          p.icmp_type != pk.ECHO_REQUEST):
            c.unsupported += 1
            return [], []
        if p.ttl <= 1:
            c.ttl_exceeded += 1
            return [], [pk.icmp_error(self.inside_router, data, pk.TIME_EXCEEDED, 0)]
        if p.df and p.total > self.outside_mtu:
            c.frag_needed += 1
            return [], [pk.icmp_error(self.inside_router, data, pk.UNREACHABLE,
                                      pk.FRAG_NEEDED, self.outside_mtu)]
        action, rule = self.firewall.decide(PROTO_NAMES[p.proto], p.src, p.dst,
                                            p.dport if p.proto != pk.ICMP else None)
        c.by_rule[rule] = c.by_rule.get(rule, 0) + 1
        if action != "allow":
            if action == "deny":
                c.denied += 1
                return [], []
            c.rejected += 1
            code = 13  # communication administratively prohibited (RFC 1812)
            return [], [pk.icmp_error(self.inside_router, data, pk.UNREACHABLE, code)]
        mapping = self._mapping(p, now)
        if mapping is None:
            return [], []
        self._follow_tcp(mapping, p.flags, now)
        out = bytearray(data)
        pk.rewrite(out, p, src=self.outside, sport=mapping.outside_port, ttl_decrement=True)
        mapping.flow.last = now
        mapping.flow.bytes_in += p.total
        c.forwarded_out += 1
        return [bytes(out)], []

    def _mapping(self, p: pk.Packet, now: float) -> Mapping | None:
        key = (p.proto, p.src, p.sport, p.dst, p.dport if p.proto != pk.ICMP else 0)
        m = self.out_map.get(key)
        if m is not None:
            return m
        port = self._free_port(p.proto)
        if port is None:
            self.counters.ports_exhausted += 1
            return None
        flow = self.table.open(PROTO_NAMES[p.proto], (p.src, p.sport), (p.dst, p.dport),
                               now, "masquerade")
        if flow is None:
            self.counters.table_full += 1
            return None
        flow.outside = (self.outside, port)
        m = Mapping(p.proto, (p.src, p.sport), (p.dst, p.dport), port, flow)
        self.out_map[key] = m
        self.in_map[(p.proto, port)] = m
        return m

    def _free_port(self, proto: int) -> int | None:
        lo, hi = self.ports
        for _ in range(hi - lo + 1):
            port = self.next_port[proto]
            self.next_port[proto] = lo if port >= hi else port + 1
            if (proto, port) not in self.in_map:
                return port
        return None

    def _follow_tcp(self, m: Mapping, flags: int, now: float) -> None:
        if m.proto != pk.TCP:
            return
        if flags & (pk.FIN | pk.RST):
            m.tcp_state = "closing"
        elif flags & pk.ACK and m.tcp_state == "syn" and m.flow.bytes_out:
            m.tcp_state = "established"
        m.flow.state = m.tcp_state

    # --- outside -> inside ---

    def from_outside(self, data: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        c = self.counters
        try:
            p = pk.parse(data)
        except pk.MalformedPacket:
            c.malformed += 1
            return [], []
        if p.dst != self.outside:
            c.no_mapping += 1
            return [], []
        if p.proto == pk.ICMP and p.icmp_type == pk.ECHO_REQUEST:
            return [self._echo_reply(data, p)], []  # our outside address answers pings
        if p.fragment:
            c.fragments_dropped += 1
            return [], []
        if p.proto == pk.ICMP and p.inner is not None:
            return [], self._error_back(data, p)
        if p.proto not in PROTO_NAMES:
            c.unsupported += 1
            return [], []
        port = p.dport if p.proto != pk.ICMP else p.sport
        m = self.in_map.get((p.proto, port))
        # only the target of a flow may answer through it (endpoint-dependent filtering)
        if m is None or (p.src != m.target[0] if p.proto == pk.ICMP else
                         (p.src, p.sport) != m.target):
            c.no_mapping += 1
            return [], []
        if p.ttl <= 1:
            c.ttl_exceeded += 1
            return [pk.icmp_error(self.outside, data, pk.TIME_EXCEEDED, 0)], []
        out = bytearray(data)
        pk.rewrite(out, p, dst=m.inside[0],
                   dport=m.inside[1] if p.proto != pk.ICMP else None,
                   sport=m.inside[1] if p.proto == pk.ICMP else None, ttl_decrement=True)
        if p.proto == pk.TCP:
            if p.flags & (pk.FIN | pk.RST):
                m.tcp_state = "closing"
            elif p.flags & pk.SYN and p.flags & pk.ACK:
                m.tcp_state = "established"
            m.flow.state = m.tcp_state
        m.flow.last = now
        m.flow.bytes_out += p.total
        if p.proto != pk.TCP:
            m.flow.state = "established"
        c.forwarded_in += 1
        return [], [bytes(out)]

    def _error_back(self, data: bytes, p: pk.Packet) -> list[bytes]:
        """An ICMP error about a packet we sent out: the packet it quotes has our
        outside address and port as its source; both are put back, in the quote and in
        the error's own destination."""
        inner = p.inner
        assert inner is not None
        port = inner.sport
        m = self.in_map.get((inner.proto, port))
        if m is None or inner.src != self.outside:
            self.counters.no_mapping += 1
            return []
        out = bytearray(data)
        quote = p.ihl + 8
        pk.rewrite(out, inner, src=m.inside[0], sport=m.inside[1], base=quote)
        # the inner IP checksum is fixed by rewrite; the ICMP checksum covers the quote:
        # recompute it whole (the quote's transport checksum may be cut off)
        out[p.ihl + 2:p.ihl + 4] = b"\0\0"
        out[p.ihl + 2:p.ihl + 4] = pk.checksum(out[p.ihl:p.total]).to_bytes(2, "big")
        pk.rewrite(out, pk.Packet(p.ihl, p.total, p.ident, p.df, False, p.ttl, pk.ICMP,
                                  p.src, p.dst), dst=m.inside[0], ttl_decrement=True)
        self.counters.forwarded_in += 1
        return [bytes(out)]

    def _echo_reply(self, data: bytes, p: pk.Packet) -> bytes:
        body = bytearray(data[p.ihl:p.total])
        body[0] = pk.ECHO_REPLY
        body[2:4] = b"\0\0"
        body[2:4] = pk.checksum(body).to_bytes(2, "big")
        return pk.build_ipv4(p.dst, p.src, pk.ICMP, bytes(body))

    # --- time ---

    def expire(self, now: float) -> int:
        t = self.timeouts
        gone = []
        for key, m in self.out_map.items():
            idle = now - m.flow.last
            limit = (t.tcp_established if m.tcp_state == "established" else t.tcp_transitory) \
                if m.proto == pk.TCP else (t.udp if m.proto == pk.UDP else t.icmp)
            if idle >= limit:
                gone.append(key)
        for key in gone:
            m = self.out_map.pop(key)
            self.in_map.pop((m.proto, m.outside_port), None)
            self.table.close(m.flow)
        return len(gone)
