"""The DHCP codec (property tests: whatever comes in, only MalformedPacket comes out)
and the lease engine's rules, with the time passed in."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.dhcp import options as o
from netkit.proto.dhcp.client import ClientSession, lease_from
from netkit.proto.dhcp.leases import Leases, Reservation, Subnet
from netkit.proto.dhcp.packet import (
    BOOTREPLY,
    MAGIC,
    ZERO,
    MalformedPacket,
    Message,
    build,
    parse,
)

NET = ipaddress.IPv4Network("10.0.0.0/24")
SERVER = "10.0.0.1"


def subnet(lo: str = "10.0.0.100", hi: str = "10.0.0.109", **kw) -> Subnet:  # type: ignore[no-untyped-def]
    return Subnet(network=NET, ranges=[(int(ipaddress.IPv4Address(lo)),
                                        int(ipaddress.IPv4Address(hi)))],
                  server_id=SERVER, lease_time=600,
                  options={3: o.encode(3, ["10.0.0.1"]), 6: o.encode(6, ["10.0.0.53"]),
                           15: o.encode(15, "lan.test"), 42: o.encode(42, ["10.0.0.2"])},
                  **kw)


def mac(i: int) -> str:
    return f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}"


def dora(engine: Leases, client: ClientSession, now: float = 0.0) -> Message:
    offer = engine.handle(client.discover(), now).reply
    assert offer is not None and offer.type == o.OFFER
    out = engine.handle(client.request(offer), now)
    assert out.reply is not None and out.reply.type == o.ACK, out
    assert out.changed and out.events
    return out.reply


# --- the codec ---

option_values = st.dictionaries(
    st.integers(1, 254).filter(lambda c: c not in (52, 53)), st.binary(max_size=300),
    max_size=8)


@given(option_values, st.integers(0, 2**32 - 1), st.binary(min_size=6, max_size=6))
@settings(max_examples=300)
def test_what_fits_comes_back_unchanged(values, xid, hw) -> None:
    msg = Message(xid=xid, chaddr=hw, options={53: b"\x01", **values})
    data = build(msg, 1500 - 28)
    assert len(data) <= 1500 - 28
    back = parse(data)
    assert back.xid == xid and back.chaddr[:6] == hw and back.type == 1
    for code, value in back.options.items():  # nothing invented, nothing cut short
        assert msg.options[code] == value
    if sum(len(v) + 2 * (len(v) // 255 + 1) for v in values.values()) < 300:
        assert back.options == msg.options  # all of it fits: all of it is there


@given(st.binary(max_size=700))
@settings(max_examples=500)
def test_random_bytes_are_malformed_or_a_message(data) -> None:
    with contextlib.suppress(MalformedPacket):
        parse(data)


@given(st.data())
@settings(max_examples=500)
def test_mutated_messages_never_raise_anything_else(data) -> None:
    msg = ClientSession(mac(1), xid=7, hostname="pc").discover()
    raw = bytearray(build(msg, 600))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parsed = parse(bytes(raw[:cut]))
    except MalformedPacket:
        return
    engine = Leases([subnet()])
    engine.handle(parsed, 0.0)  # whatever it is, the engine answers or drops it


def test_options_overflow_into_file_and_sname() -> None:
    big = {60: b"v" * 200, 43: b"w" * 90, 77: b"u" * 40}
    msg = Message(options={53: b"\x02", **big})
    data = build(msg, 420)  # the options field alone cannot hold them
    back = parse(data)
    assert back.options == msg.options and not back.file and not back.sname
    assert data[236 + 4:].find(bytes([52, 1])) >= 0  # option 52 says where


def test_long_options_are_split_and_joined() -> None:
    msg = Message(options={53: b"\x05", 121: b"r" * 600})
    back = parse(build(msg, 1472))
    assert back.options[121] == b"r" * 600


@pytest.mark.parametrize("bad", [
    b"", b"\x01" * 100, bytes(236) + MAGIC,                        # short, no op
    b"\x01\x01\x06\x00" + bytes(232) + b"\x00\x00\x00\x00",        # no magic cookie
    b"\x03\x01\x06\x00" + bytes(232) + MAGIC + b"\xff",            # op 3
    b"\x01\x01\x06\x00" + bytes(232) + MAGIC + b"\x35\x05\x01",    # option past the end
    b"\x01\x01\x20\x00" + bytes(232) + MAGIC + b"\xff",            # hlen 32
    b"\x01\x01\x06\x00" + bytes(232) + MAGIC + b"\x34\x01\x07\xff",  # overload 7
])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse(bad)


def test_option_types() -> None:
    assert o.encode(o.code_of("classless-static-routes"), ["10.1.0.0/16 10.0.0.1",
                                                           "0.0.0.0/0 10.0.0.254"]) == \
        bytes([16, 10, 1, 10, 0, 0, 1, 0, 10, 0, 0, 254])
    assert o.decode(121, bytes([16, 10, 1, 10, 0, 0, 1])) == ["10.1.0.0/16 10.0.0.1"]
    assert o.encode(119, ["lan.test"]) == b"\x03lan\x04test\x00"
    assert o.code_of("42") == 42 and o.code_of("ntp-servers") == 42
    with pytest.raises(ValueError):
        o.code_of("no-such-option")
    with pytest.raises(ValueError):
        o.encode(51, -1)


# --- the engine ---

def test_dora_gives_a_lease_with_the_options_asked_for() -> None:
    engine = Leases([subnet()])
    c = ClientSession(mac(1), xid=1, hostname="pc1")
    ack = dora(engine, c)
    lease = lease_from(ack, c.mac)
    assert lease.address == "10.0.0.100" and lease.prefix == 24
    assert lease.router == ["10.0.0.1"] and lease.dns == ["10.0.0.53"]
    assert lease.domain == "lan.test" and lease.lease_time == 600
    assert lease.renewal_time == 300 and lease.rebinding_time == 525
    assert lease.server == SERVER and lease.options["ntp-servers"] == ["10.0.0.2"]
    assert list(ack.options)[:2] == [53, 54]
    assert engine.by_address["10.0.0.100"].hostname == "pc1"


def test_no_address_goes_to_two_clients_and_the_same_client_gets_its_own_back() -> None:
    engine = Leases([subnet()])
    seen = {}
    for i in range(10):
        c = ClientSession(mac(i), xid=i)
        seen[mac(i)] = dora(engine, c).yiaddr
    assert len(set(seen.values())) == 10
    again = dora(engine, ClientSession(mac(3), xid=99), now=5)
    assert again.yiaddr == seen[mac(3)]
    # the pool is full now: an eleventh client gets nothing, and it is said once
    out = engine.handle(ClientSession(mac(50), xid=50).discover(), 6)
    assert out.reply is None and out.dropped == "pool full"


def test_released_and_expired_addresses_are_given_out_again() -> None:
    engine = Leases([subnet("10.0.0.100", "10.0.0.100")])
    first = ClientSession(mac(1), xid=1)
    lease = lease_from(dora(engine, first), first.mac)
    out = engine.handle(first.release(lease), 10)
    assert [e.kind for e in out.events] == ["released"] and out.reply is None
    assert dora(engine, ClientSession(mac(2), xid=2), now=11).yiaddr == "10.0.0.100"
    expired = engine.expire(11 + 601)
    assert [e.kind for e in expired.events] == ["expired"]
    assert dora(engine, ClientSession(mac(3), xid=3), now=700).yiaddr == "10.0.0.100"


def test_reservations_are_honoured_and_never_given_to_others() -> None:
    s = subnet("10.0.0.100", "10.0.0.101",
               reservations=[Reservation("10.0.0.100", mac=mac(7), hostname="printer")])
    engine = Leases([s])
    assert dora(engine, ClientSession(mac(1), xid=1)).yiaddr == "10.0.0.101"
    out = engine.handle(ClientSession(mac(2), xid=2).discover(), 0)
    assert out.reply is None and out.dropped == "pool full"  # .100 is the printer's
    ack = dora(engine, ClientSession(mac(7), xid=3))
    assert ack.yiaddr == "10.0.0.100" and ack.options[12] == b"printer"
    # another client asking for the reserved address by INIT-REBOOT is refused
    other = ClientSession(mac(1), xid=4)
    req = other.discover()
    req.options = {53: bytes([o.REQUEST]), 50: o.encode(50, "10.0.0.100")}
    assert engine.handle(req, 1).reply.type == o.NAK


def test_requests_for_a_wrong_network_or_from_strangers() -> None:
    engine = Leases([subnet()])
    c = ClientSession(mac(1), xid=1)
    ack = dora(engine, c)
    reboot = Message(xid=2, chaddr=c.chaddr, options={53: bytes([o.REQUEST]),
                                                      50: o.encode(50, "192.168.9.9")})
    nak = engine.handle(reboot, 1).reply
    assert nak is not None and nak.type == o.NAK and nak.options[56] == b"wrong network"
    stranger = Message(xid=3, chaddr=bytes.fromhex("020000009999"),
                       options={53: bytes([o.REQUEST]), 50: o.encode(50, ack.yiaddr)})
    out = engine.handle(stranger, 1)  # RFC 2131 4.3.2: silent for an unknown client
    assert out.reply is None and out.dropped == "INIT-REBOOT from an unknown client"
    stranger.options[50] = o.encode(50, "10.0.0.105")
    stranger.ciaddr = ZERO
    other = ClientSession("02:00:00:00:99:98", xid=4)
    dora(engine, other)
    renew_of_taken = Message(xid=5, chaddr=bytes.fromhex("020000009997"),
                             ciaddr=ack.yiaddr, options={53: bytes([o.REQUEST])})
    assert engine.handle(renew_of_taken, 2).reply.type == o.NAK


def test_renewing_extends_and_a_choice_of_another_server_frees_the_offer() -> None:
    engine = Leases([subnet()])
    c = ClientSession(mac(1), xid=1)
    lease = lease_from(dora(engine, c), c.mac)
    out = engine.handle(c.renew(lease), 100)
    assert out.reply.type == o.ACK and out.events[0].kind == "renewed"
    assert engine.by_address[lease.address].expires == 700
    d = ClientSession(mac(2), xid=2)
    offer = engine.handle(d.discover(), 0).reply
    elsewhere = d.request(offer)
    elsewhere.options[54] = o.encode(54, "10.0.0.250")
    assert engine.handle(elsewhere, 1).reply is None
    assert engine.by_address[offer.yiaddr].state == "expired"


def test_decline_quarantines_the_address() -> None:
    engine = Leases([subnet("10.0.0.100", "10.0.0.101")], decline_time=50)
    c = ClientSession(mac(1), xid=1)
    lease = lease_from(dora(engine, c), c.mac)
    out = engine.handle(c.decline(lease), 1)
    assert out.events[0].kind == "declined" and out.reply is None
    assert dora(engine, ClientSession(mac(1), xid=2), now=2).yiaddr == "10.0.0.101"
    assert engine.handle(ClientSession(mac(3), xid=3).discover(), 3).dropped == "pool full"
    engine.expire(60)
    assert dora(engine, ClientSession(mac(3), xid=4), now=61).yiaddr == lease.address


def test_inform_gets_options_without_a_lease() -> None:
    engine = Leases([subnet()])
    msg = Message(xid=1, chaddr=bytes.fromhex("020000000001"), ciaddr="10.0.0.7",
                  options={53: bytes([o.INFORM]), 55: bytes([3, 6, 15])})
    reply = engine.handle(msg, 0).reply
    assert reply.type == o.ACK and reply.yiaddr == ZERO
    assert 51 not in reply.options and reply.options[3] == o.encode(3, ["10.0.0.1"])


def test_a_flood_of_discovers_cannot_take_the_pool() -> None:
    engine = Leases([subnet("10.0.0.100", "10.0.0.199")], max_offers=20, offer_timeout=5)
    rng = random.Random(1)
    answered = 0
    for i in range(1000):
        m = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
        answered += engine.handle(ClientSession(m, xid=i).discover(), 0).reply is not None
    assert answered == 20  # the rest dropped and counted by the server
    # a real client still gets an address once the flood's offers lapse
    engine.expire(6)
    assert dora(engine, ClientSession(mac(1), xid=5000), now=6).type == o.ACK
    # one client asking again and again holds one offer, not many
    c = ClientSession(mac(2), xid=1)
    for _ in range(50):
        engine.handle(c.discover(), 7)
    assert engine.offers == 1


def test_relayed_requests_pick_the_subnet_by_giaddr_and_circuit_and_echo_option_82() -> None:
    other = Subnet(network=ipaddress.IPv4Network("10.9.0.0/24"),
                   ranges=[(int(ipaddress.IPv4Address("10.9.0.10")),
                            int(ipaddress.IPv4Address("10.9.0.20")))],
                   server_id=SERVER, circuit_id=b"port7")
    engine = Leases([subnet(), other])
    c = ClientSession(mac(1), xid=1, giaddr="10.9.0.1")
    msg = c.discover()
    relay_info = b"\x01\x05port7\x02\x03abc"
    msg.options[82] = relay_info
    offer = engine.handle(msg, 0).reply
    assert offer.yiaddr == "10.9.0.10" and offer.giaddr == "10.9.0.1"
    assert list(offer.options)[-1] == 82 and offer.options[82] == relay_info
    msg.options[82] = b"\x01\x05port8"  # no subnet for that circuit
    assert engine.handle(msg, 0).dropped == "no subnet for this client"


@given(st.lists(st.tuples(st.sampled_from([1, 3, 4, 7, 8, 2, 99]), st.integers(0, 7),
                          st.sampled_from([ZERO, "10.0.0.100", "10.0.0.105", "1.2.3.4"]),
                          st.booleans()), max_size=60))
@settings(max_examples=200)
def test_any_sequence_of_messages_keeps_one_client_per_address(steps) -> None:
    engine = Leases([subnet("10.0.0.100", "10.0.0.105")], max_offers=4)
    now = 0.0
    for kind, who, address, with_server in steps:
        now += 1
        opts = {53: bytes([kind])}
        if address != ZERO:
            opts[50] = o.encode(50, address)
        if with_server:
            opts[54] = o.encode(54, SERVER)
        msg = Message(xid=who, chaddr=bytes.fromhex(mac(who).replace(":", "")),
                      ciaddr=address if kind in (3, 7, 8) and not with_server else ZERO,
                      options=opts)
        out = engine.handle(msg, now)
        if out.reply is not None:
            assert out.reply.op == BOOTREPLY and out.reply.xid == who
            build(out.reply, msg.max_reply_size())
        if now % 7 == 0:
            engine.expire(now)
    holders: dict[str, str] = {}
    for lease in engine.by_address.values():
        if lease.state == "bound" and lease.expires > now:
            assert lease.client not in holders, "a client with two addresses"
            holders[lease.client] = lease.address
    assert len(set(holders.values())) == len(holders)


def test_max_message_size_is_honoured() -> None:
    msg = Message(options={53: b"\x01", 57: struct.pack("!H", 400)})
    assert msg.max_reply_size() == 548  # never below the 576-byte datagram
    msg.options[57] = struct.pack("!H", 9000)
    assert msg.max_reply_size() == 1472


# --- a shared store: offers claimed, what others wrote merged, renewals only ---

def test_offers_are_leases_to_commit_when_the_store_is_shared() -> None:
    engine = Leases([subnet()])
    engine.persist_offers = True
    out = engine.handle(ClientSession(mac(1), xid=1).discover(), 0.0)
    assert out.reply is not None and out.reply.type == o.OFFER
    assert [(x.address, x.state) for x in out.changed] == [(out.reply.yiaddr, "offered")]


def test_a_merged_row_of_another_server_keeps_its_address_from_us() -> None:
    from netkit.proto.dhcp.leases import Lease
    engine = Leases([subnet()])
    other = Lease("10.0.0.100", "mac:02:00:00:00:09:09", "02:00:00:00:09:09", "", "bound",
                  1000.0, str(NET), version=7)
    engine.merge([other])
    offer = engine.handle(ClientSession(mac(1), xid=1).discover(), 0.0).reply
    assert offer is not None and offer.yiaddr == "10.0.0.101"
    older = Lease("10.0.0.100", "mac:x", "x", "", "released", 0.0, str(NET), version=3)
    engine.merge([older])  # an older version changes nothing
    assert engine.by_address["10.0.0.100"].version == 7
    engine.merge([Lease("10.0.0.100", "", "", "", "released", 0.0, str(NET), version=8)],
                 skip={"10.0.0.100"})  # ours still on its way: not replaced
    assert engine.by_address["10.0.0.100"].version == 7


def test_a_change_remembers_the_version_it_was_made_from() -> None:
    engine = Leases([subnet()])
    client = ClientSession(mac(1), xid=1)
    offer = engine.handle(client.discover(), 0.0).reply
    assert offer is not None
    engine.by_address[offer.yiaddr].version = 41  # the store saved the offer as v41
    out = engine.handle(client.request(offer), 1.0)
    assert out.changed[0].state == "bound" and out.changed[0].version == 41


def test_without_the_database_renewals_only_and_never_past_what_it_granted() -> None:
    engine = Leases([subnet()])
    client = ClientSession(mac(1), xid=1)
    ack = dora(engine, client, now=0.0)
    lease = lease_from(ack, mac(1))
    bound = engine.by_address[lease.address]
    engine.new_leases = False
    assert engine.handle(client.renew(lease), 200.0).reply is None  # never confirmed
    bound.durable = bound.expires  # the store confirmed it
    out = engine.handle(client.renew(lease), 200.0)
    assert out.reply is not None and out.reply.type == o.ACK and not out.changed
    assert struct.unpack("!I", out.reply.options[51])[0] == 400  # 600 granted at 0
    assert out.reply.options[58] == struct.pack("!I", 200)
    newcomer = ClientSession(mac(2), xid=2)
    out = engine.handle(newcomer.discover(), 200.0)
    assert out.reply is None and out.dropped.startswith("no new leases")
    # its own lease offered again to a client that starts over (no change)
    out = engine.handle(client.discover(), 200.0)
    assert out.reply is not None and out.reply.yiaddr == lease.address and not out.changed
    # a REQUEST for an address it does not hold: silence, not a NAK from a stale view
    bad = newcomer.request(out.reply)
    out = engine.handle(bad, 200.0)
    assert out.reply is None and out.dropped.startswith("no new leases")
    assert engine.handle(client.renew(lease), 700.0).reply is None  # ran out


def test_another_servers_offer_to_a_client_does_not_end_our_lease_for_it() -> None:
    from netkit.proto.dhcp.leases import Lease
    engine = Leases([subnet()])
    client = ClientSession(mac(1), xid=1)
    ack = dora(engine, client)
    ours = engine.by_address[ack.yiaddr]
    theirs = Lease("10.0.0.105", client.__class__(mac(1), xid=2).discover().client_key,
                   mac(1), "", "offered", 10.0, str(NET), version=9)
    engine.merge([theirs])
    assert ours.state == "bound" and engine.by_client[theirs.client] is ours
    assert engine.by_address["10.0.0.105"] is theirs
