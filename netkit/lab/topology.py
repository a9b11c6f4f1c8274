"""The lab's small internet: which namespaces, joined how, with which addresses.

    pc ──(lan bridge, 192.168.50.0/24)── router ══(TUN, relay packet mode: NAT)══ isp
                                                                                   │
              internet bridge 198.51.100.0/24 ─────────────────────────────────────┘
              ├── dns   .2 root, .3 test. TLD, .4 example.test (authoritative only)
              ├── proxy .8 proxy.example.test (HTTP forward proxy)
              ├── web   .10 www.example.test (HTTPS with the lab's CA)
              ├── ssh   .22 ssh.example.test (OpenSSH's sshd)
              └── mail  .25 mail.example.test (the SMTP relay, a maildir)

The router's outside address is 203.0.113.1 (TEST-NET-3); the ISP's end of the outside
TUN is 203.0.113.254. Every address is in a test or private range, never routed
anywhere: the namespaces have no link to the host's networks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

PREFIX = "nkl-"  # every namespace, bridge and veth the lab makes starts with this

LAN = ipaddress.ip_network("192.168.50.0/24")
INTERNET = ipaddress.ip_network("198.51.100.0/24")
OUTSIDE = ipaddress.ip_network("203.0.113.0/24")
ROUTER_LAN, ROUTER_OUTSIDE, ISP_OUTSIDE = "192.168.50.1", "203.0.113.1", "203.0.113.254"
ISP_INTERNET = "198.51.100.1"
ROOT, TLD, EXAMPLE, WEB = "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.10"
PROXY, SSH, MAIL = "198.51.100.8", "198.51.100.22", "198.51.100.25"
BLOCKED_PORT = 8081  # the web server listens here too; the router's firewall rejects it


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[str, ...] = ()  # on its link (with the prefix length)
    bridge: str = ""  # the bridge its eth0 is on ("" : none)
    gateway: str = ""
    about: str = ""

    @property
    def netns(self) -> str:
        return PREFIX + self.name


@dataclass(frozen=True)
class Lab:
    nodes: tuple[Node, ...] = field(default_factory=lambda: NODES)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no lab node {name!r}; the nodes: "
                       f"{', '.join(n.name for n in self.nodes)}")

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        return (LAN, INTERNET, OUTSIDE)


NODES: tuple[Node, ...] = (
    Node("pc", (), "lan", "", "a home PC: its address comes by DHCP"),
    Node("router", (f"{ROUTER_LAN}/24",), "", "",
         "home router: DHCP server, DNS resolver, NAT (the relay's packet mode)"),
    Node("isp", (f"{ISP_INTERNET}/24",), "", "", "the internet provider: routes"),
    Node("dns", (f"{ROOT}/24", f"{TLD}/24", f"{EXAMPLE}/24"), "internet", ISP_INTERNET,
         "authoritative DNS: the root, test., example.test"),
    Node("web", (f"{WEB}/24",), "internet", ISP_INTERNET,
         "www.example.test: HTTP and HTTPS (the lab's CA)"),
    Node("proxy", (f"{PROXY}/24",), "internet", ISP_INTERNET,
         "proxy.example.test: an HTTP forward proxy on port 8080"),
    Node("ssh", (f"{SSH}/24",), "internet", ISP_INTERNET,
         "ssh.example.test: OpenSSH's sshd (root, by key)"),
    Node("mail", (f"{MAIL}/24",), "internet", ISP_INTERNET,
         "mail.example.test: the SMTP relay, example.test's MX, a maildir"),
)
