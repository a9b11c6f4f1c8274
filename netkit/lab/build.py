"""`netkit lab up`: the namespaces and links of topology.py, the configs, the servers.

Order: the configs and zone files (checked before anything is made); namespaces and
links; the lab's CA and the web certificate; each node's own /etc (the CA trusted, its
resolver, root's home in the lab's directory); the authoritative DNS servers, the web
server, the proxy, sshd and the mail relay on the internet side; the router (`netkit
run` of servers/home-router.toml: DHCP, the resolver, the relay in packet mode), whose
TUN devices are then wired (the outside one moved into the ISP); last the PC asks for
its address by DHCP.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

from netkit.servers.relay.service import RuleConfig
from netkit.testing.ca import DevCA

from . import net
from . import topology as t
from .config import LabConfig, nodes

ROOT_ZONE = [". 86400 IN NS a.root.test.", f"a.root.test. 86400 IN A {t.ROOT}",
             "test. 86400 IN NS ns.nic.test.", f"ns.nic.test. 86400 IN A {t.TLD}"]
TLD_ZONE = ["test. 86400 IN NS ns.nic.test.", f"ns.nic.test. 86400 IN A {t.TLD}",
            f"a.root.test. 86400 IN A {t.ROOT}",  # the root server's own name lives here
            "example.test. 86400 IN NS ns.example.test.",
            f"ns.example.test. 86400 IN A {t.EXAMPLE}"]
EXAMPLE_ZONE = ["example.test. 3600 IN NS ns.example.test.",
                f"ns.example.test. 3600 IN A {t.EXAMPLE}",
                f"www.example.test. 300 IN A {t.WEB}",
                f"proxy.example.test. 300 IN A {t.PROXY}",
                f"ssh.example.test. 300 IN A {t.SSH}",
                f"mail.example.test. 300 IN A {t.MAIL}",
                "example.test. 300 IN MX 10 mail.example.test.",
                f"example.test. 300 IN A {t.WEB}"]
TUN_IN, TUN_OUT = t.PREFIX + "tin", t.PREFIX + "tout"
# the router's firewall unless lab.toml has [[lab.rule]]: the LAN may go anywhere but to
# the web server's port BLOCKED_PORT
DEFAULT_RULES = (
    RuleConfig(action="reject", proto="tcp", dst=(ipaddress.ip_network(f"{t.WEB}/32"),),
               dport=t.BLOCKED_PORT),
    RuleConfig(action="allow", src=(t.LAN,)),
)


ROUTER_CONFIG = Path(__file__).with_name("home-router.toml")  # servers/home-router.toml


def _authority(d: Path, name: str, address: str, records: list[str]) -> Path:
    """A zone file (the reader can open it: d/zones/) and its authoritative server's
    config."""
    label = "root" if name == "." else name.rstrip(".")
    primary = {".": "a.root.test.", "test.": "ns.nic.test."}.get(name, f"ns.{name}")
    zones = d / "zones"
    zones.mkdir(exist_ok=True)
    zone = zones / f"{label}.zone"
    mailbox = "hostmaster." + ("root.test." if name == "." else name)
    zone.write_text(f"$ORIGIN {name}\n$TTL 3600\n"
                    f"{name} 3600 IN SOA {primary} {mailbox} 1 7200 3600 1209600 300\n" +
                    "\n".join(records) + "\n")
    conf = d / f"dns-{label}.toml"
    conf.write_text(f"""[dns]
listen = ["{address}:53"]
recursion = false
allow = ["0.0.0.0/0"]
[[dns.zone]]
name = "{name}"
file = "{zone}"
""")
    return conf


def _inline(value: object) -> str:
    """A TOML inline value (for --set)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(str(value))


def _rules(rules: tuple[RuleConfig, ...]) -> str:
    return _inline([{"action": r.action, "proto": r.proto, "src": [str(n) for n in r.src],
                     "dst": [str(n) for n in r.dst],
                     **({} if r.dport is None else {"dport": r.dport})} for r in rules])


def router_argv(d: Path, config: LabConfig) -> list[str]:
    """servers/home-router.toml (DHCP, the resolver, the relay in packet mode), with the
    lab's own state paths, root, TUN devices and firewall set over it."""
    sets = {"dhcp.lease_db": str(d / "leases.db"),
            "dhcp.lease_time": float(config.lease_time),
            "dns.root_hints": str(d / "root.hints"),
            "dns.query_private_authorities": True,  # the lab's authorities are private
            "dns.nodefault": ["test"],  # resolve .test (RFC 6761 would answer NXDOMAIN)
            "relay.packet.tun": TUN_IN, "relay.packet.outside_tun": TUN_OUT,
            "relay.packet.outside": t.ROUTER_OUTSIDE,
            "relay.packet.inside_router": t.ROUTER_LAN}
    argv = [*net.python(), "-m", "netkit", "run", "--config", str(ROUTER_CONFIG)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={_inline(value)}"]
    rules = DEFAULT_RULES if config.rule is None else config.rule
    return [*argv, "--set", f"relay.rule={_rules(rules)}"]


def _configs(d: Path, config: LabConfig) -> dict[str, Path]:
    """The servers' config files, written and checked before anything is made."""
    d.mkdir(parents=True, exist_ok=True)
    example = [*EXAMPLE_ZONE, *(f"{h.name}.example.test. 300 IN A {h.address}"
                                for h in config.host), *config.records]
    files = {zone: _authority(d, zone, address, records) for zone, address, records in
             ((".", t.ROOT, ROOT_ZONE), ("test.", t.TLD, TLD_ZONE),
              ("example.test.", t.EXAMPLE, example))}
    (d / "root.hints").write_text(
        f".  3600000  NS  A.ROOT.TEST.\nA.ROOT.TEST.  3600000  A  {t.ROOT}\n")
    files["mail"] = d / "mail.toml"
    files["mail"].write_text(f"""[smtp]
listen = ["{t.MAIL}:25"]
hostname = "mail.example.test"
local_domains = ["example.test"]
queue_dir = "{d / 'mail' / 'queue'}"
maildir = "{d / 'mail' / 'maildir'}"
relay_networks = []   # an open relay never: mail for example.test only
""")
    checks = [(f"dns {zone}", [*net.python(), "-m", "netkit.servers.dns", "--config",
                               str(files[zone])]) for zone in (".", "test.", "example.test.")]
    checks += [("the router", router_argv(d, config)),
               ("the mail relay", [*net.python(), "-m", "netkit.servers.smtp", "--config",
                                   str(files["mail"])])]
    for what, argv in checks:
        r = subprocess.run([*argv, "--check-config"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise net.LabError(f"{what}'s config: {(r.stdout + r.stderr).strip()}")
    return files


def _node_etc(d: Path, lab: t.Lab, ca: DevCA) -> None:
    """Each node's own /etc files (`ip netns exec` mounts /etc/netns/NODE/* over /etc):
    the lab's CA trusted, its resolver, and root's home in the lab's directory, so that
    ~/.ssh in the PC is the PC's own."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    system = bundle.read_text() if bundle.exists() else ""
    passwd = Path("/etc/passwd").read_text().splitlines()
    for node in lab.nodes:
        etc = net.ETC_NETNS / node.netns
        (etc / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
        (etc / "ssl" / "certs" / "ca-certificates.crt").write_text(
            system + ca.ca_file.read_text())
        # the PC asks the router; the servers ask example.test's authority (all the
        # names they need are there)
        (etc / "resolv.conf").write_text(
            f"nameserver {t.ROUTER_LAN if node.name in ('pc', 'router') else t.EXAMPLE}\n")
        home = net.home(d, node.name)
        (home / ".ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        lines = [":".join([*f[:5], str(home), *f[6:]]) if f[:1] == ["root"] else line
                 for line in passwd for f in [line.split(":")]]
        (etc / "passwd").write_text("\n".join(lines) + "\n")


def _sshd(d: Path) -> Path:
    """OpenSSH's sshd config for the ssh node: root by key only, forwarding allowed."""
    sd = d / "ssh"
    sd.mkdir(exist_ok=True)
    host_key = sd / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ssh.example.test",
                        "-f", str(host_key)], check=True)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    conf = sd / "sshd_config"
    conf.write_text(f"""ListenAddress {t.SSH}:22
HostKey {host_key}
PidFile {sd / 'sshd.pid'}
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
LogLevel VERBOSE
""")
    return conf


def up(state: net.State | None = None, config: LabConfig | None = None,
       config_path: Path | None = None) -> net.State:
    """Build the lab (LabError when it cannot be; what was made is recorded and `down`
    removes it)."""
    config = config or LabConfig()
    lab = t.Lab(nodes(config))
    state = state or net.State()
    if net.is_up(state):
        return state
    conflicts = net.host_conflicts(lab)
    if conflicts:
        raise net.LabError("the host already uses the lab's addresses: " +
                           ", ".join(conflicts))
    d = state.directory
    files = _configs(d, config)
    state.data["hosts"] = [[h.name, h.address] for h in config.host]
    state.data["config"] = str(config_path) if config_path else ""
    state.save()
    logs = d / "logs"
    logs.mkdir(exist_ok=True)
    for node in lab.nodes:
        net._ip("netns", "add", node.netns)
        state.add("namespaces", node.netns)
        net._ip("link", "set", "lo", "up", ns=node.netns)
    router, isp = lab.node("router").netns, lab.node("isp").netns
    # the LAN: a bridge in the router, the PC's eth0 on it
    net._ip("link", "add", "br-lan", "type", "bridge", ns=router)
    net._ip("addr", "add", f"{t.ROUTER_LAN}/24", "dev", "br-lan", ns=router)
    net._ip("link", "set", "br-lan", "up", ns=router)
    # the internet: a bridge in the ISP, every server's eth0 on it
    net._ip("link", "add", "br-net", "type", "bridge", ns=isp)
    net._ip("addr", "add", f"{t.ISP_INTERNET}/24", "dev", "br-net", ns=isp)
    net._ip("link", "set", "br-net", "up", ns=isp)
    for node in lab.nodes:
        if not node.bridge:
            continue
        owner, bridge = (router, "br-lan") if node.bridge == "lan" else (isp, "br-net")
        port = f"{t.PREFIX}{node.name}"
        net._ip("link", "add", "eth0", "netns", node.netns, "type", "veth", "peer", "name",
                port, "netns", owner)
        net._ip("link", "set", port, "master", bridge, "up", ns=owner)
        net._ip("link", "set", "eth0", "up", ns=node.netns)
        for address in node.addresses:
            net._ip("addr", "add", address, "dev", "eth0", ns=node.netns)
        if node.gateway:
            net._ip("route", "add", "default", "via", node.gateway, ns=node.netns)
    for ns in (router, isp):
        subprocess.run(net.in_ns(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]),
                       check=True)
    (d / "ca").mkdir(exist_ok=True)
    ca = DevCA(d / "ca")
    cert, key = ca.issue("www.example.test", "example.test", t.WEB)
    _node_etc(d, lab, ca)
    # the internet's servers
    dns_ns = lab.node("dns").netns
    for zone, address in ((".", t.ROOT), ("test.", t.TLD), ("example.test.", t.EXAMPLE)):
        net.start(state, f"dns {zone}", dns_ns,
                  [*net.python(), "-m", "netkit.servers.dns", "--config", str(files[zone])],
                  logs / f"dns-{address}.log")
    www = config.web_root or d / "www"
    if config.web_root is None:
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(
            "<h1>www.example.test</h1>\n<p>Served in the lab.</p>\n")
    web_ns = lab.node("web").netns
    net.start(state, "web http", web_ns,
              [*net.python(), "-m", "netkit.servers.http", "--set",
               f'http.listen=["{t.WEB}:80", "{t.WEB}:{t.BLOCKED_PORT}"]',
               "--set", f"http.root={www}"], logs / "web-http.log")
    net.start(state, "web https", web_ns,
              [*net.python(), "-m", "netkit.servers.http", "--listen", f"{t.WEB}:443",
               "--set", f"http.root={www}", "--set", f"http.tls.cert={cert}",
               "--set", f"http.tls.key={key}"], logs / "web-https.log")
    net.start(state, "proxy", lab.node("proxy").netns,
              [*net.python(), "-m", "netkit.servers.proxy", "--set",
               f'proxy.listen=["{t.PROXY}:8080"]', "--set", 'proxy.allow=["0.0.0.0/0"]'],
              logs / "proxy.log")
    net.start(state, "sshd", lab.node("ssh").netns,
              ["/usr/sbin/sshd", "-D", "-e", "-f", str(_sshd(d))], logs / "sshd.log")
    net.start(state, "mail", lab.node("mail").netns,
              [*net.python(), "-m", "netkit.servers.smtp", "--config", str(files["mail"])],
              logs / "mail.log")
    # the router: DHCP, the resolver, NAT and the firewall (servers/home-router.toml)
    control = d / "router.sock"
    net.start(state, "router", router, [*router_argv(d, config), "--control", str(control)],
              logs / "router.log")
    net.wait_for("the router's TUN devices", lambda: _has_link(router, TUN_OUT))
    net._ip("link", "set", TUN_OUT, "netns", isp, ns=router)
    net._ip("addr", "add", f"{t.ISP_OUTSIDE}/24", "dev", TUN_OUT, ns=isp)
    net._ip("link", "set", TUN_OUT, "up", ns=isp)
    net._ip("link", "set", TUN_IN, "up", ns=router)
    net._ip("route", "add", "default", "dev", TUN_IN, ns=router)
    # the relay's ICMP errors (reject, TTL, fragmentation needed) come from the router's
    # LAN address, which is this namespace's own: the kernel drops such packets as
    # martians unless the device accepts local sources
    subprocess.run(net.in_ns(router, ["sysctl", "-q", "-w",
                                      f"net.ipv4.conf.{TUN_IN}.accept_local=1"]), check=True)
    net.wait_for("the router's DHCP and DNS", lambda: (logs / "router.log").exists() and
                 "dhcp: listening" in (logs / "router.log").read_text())
    state.add("files", str(control))
    dhcp_pc(state, lab)
    for node, port, address in (("ssh", 22, t.SSH), ("mail", 25, t.MAIL)):
        ns = lab.node(node).netns
        net.wait_for(f"the {node} server", lambda n=ns, a=address, p=port: _listening(n, a, p))
    return state


def _listening(ns: str, address: str, port: int) -> bool:
    out = subprocess.run(net.in_ns(ns, ["ss", "-Htln", f"src {address}:{port}"]),
                         capture_output=True, text=True).stdout
    return bool(out.strip())


def _has_link(ns: str, name: str) -> bool:
    return subprocess.run(["ip", "-n", ns, "link", "show", name],
                          capture_output=True).returncode == 0


def dhcp_pc(state: net.State, lab: t.Lab) -> str:
    """The PC asks for an address (netkit's DHCP client) and puts it on eth0 with the
    default route and the DNS server the lease names; the address."""
    pc = lab.node("pc").netns
    last = ""
    for _ in range(5):
        r = subprocess.run(net.in_ns(pc, [*net.python(), "-m", "netkit.clients.dhcp",
                                          "--interface", "eth0", "--hostname", "pc"]),
                           capture_output=True, text=True, timeout=60)
        last = r.stdout + r.stderr
        if r.returncode == 0:
            break
        time.sleep(0.5)
    else:
        raise net.LabError(f"the PC got no address by DHCP: {last.strip()}")
    fields = {line[:13].strip(): line[13:].strip() for line in r.stdout.splitlines()}
    address = fields["address"].split()[0]
    router = fields["router"].split(",")[0].strip()
    net._ip("addr", "add", address, "dev", "eth0", ns=pc)
    net._ip("route", "add", "default", "via", router, ns=pc)
    state.data["pc"] = address
    state.save()
    return address
