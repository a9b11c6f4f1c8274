"""`netkit lab up|down|status|exec|shell|check` (root).

    netkit lab up [--config lab.toml]  # build the small internet (netkit/lab/topology.py)
    netkit lab exec pc -- dig www.example.test
    netkit lab shell pc                # a shell inside the PC
    netkit lab status                  # nodes, addresses, servers, the router's NAT table
    netkit lab check                   # run the exercises of docs/lab.md, say which work
    netkit lab down                    # remove everything (also after a crash)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netkit.errors import ConfigError

from . import build, net
from . import topology as t
from .config import HostConfig, LabConfig, load, nodes


@dataclass
class Exercise:
    name: str
    node: str
    argv: list[str]
    expect: Callable[[subprocess.CompletedProcess[str]], bool]
    timeout: float = 20


def exercises(state: net.State) -> list[Exercise]:
    """The exercises of docs/lab.md, in the book's order."""
    www = "www.example.test"
    d = state.directory
    authorized = net.home(d, "ssh") / ".ssh" / "authorized_keys"
    token = f"lab-check-{time.time_ns()}"
    maildir = d / "mail" / "maildir" / "alice@example.test" / "new"
    ssh = "ssh -N -o BatchMode=yes -o ExitOnForwardFailure=yes"
    return [
        Exercise("the PC's address came by DHCP", "pc", ["ip", "-4", "-o", "addr", "show",
                                                          "eth0"],
                 lambda r: re.search(r"inet 192\.168\.50\.1\d\d/24", r.stdout) is not None),
        Exercise("ping the router", "pc", ["ping", "-c", "1", "-W", "2", t.ROUTER_LAN],
                 lambda r: r.returncode == 0),
        Exercise("ping the web server through the NAT", "pc",
                 ["ping", "-c", "1", "-W", "2", t.WEB], lambda r: r.returncode == 0),
        Exercise("traceroute across the router", "pc",
                 ["traceroute", "-n", "-w", "1", "-q", "1", t.WEB],
                 lambda r: t.ISP_OUTSIDE in r.stdout and t.WEB in r.stdout.splitlines()[-1]),
        Exercise("host www.example.test", "pc", ["host", www],
                 lambda r: f"has address {t.WEB}" in r.stdout),
        Exercise("dig +trace from the lab's root", "pc",
                 ["dig", "+trace", f"@{t.ROOT}", www],
                 lambda r: "Received" in r.stdout and f"{www}.\t" in r.stdout and
                 t.WEB in r.stdout),
        Exercise("HTTP by hand (nc)", "pc",
                 ["sh", "-c", f"printf 'GET / HTTP/1.1\\r\\nHost: {www}\\r\\n"
                              f"Connection: close\\r\\n\\r\\n' | nc -w 3 {www} 80"],
                 lambda r: r.stdout.startswith("HTTP/1.1 200")),
        Exercise("curl -i over HTTPS, the lab's CA trusted", "pc",
                 ["curl", "-sS", "-i", "--max-time", "5", f"https://{www}/"],
                 lambda r: r.stdout.startswith("HTTP/1.1 200")),
        Exercise("a 304 with If-Modified-Since", "pc",
                 ["curl", "-sS", "-i", "--max-time", "5", "-H",
                  "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT", f"https://{www}/"],
                 lambda r: r.stdout.startswith("HTTP/1.1 304")),
        Exercise("openssl s_client verifies the certificate", "pc",
                 ["sh", "-c", f"openssl s_client -connect {www}:443 -servername {www} "
                              "-verify_return_error </dev/null"],
                 lambda r: "Verify return code: 0 (ok)" in r.stdout),
        Exercise("a firewall rule that blocks (the router rejects port 8081)", "pc",
                 ["curl", "-sS", "--max-time", "5", f"http://{www}:{t.BLOCKED_PORT}/"],
                 lambda r: r.returncode == 7),  # refused at once (not a time-out)
        Exercise("and one that allows (the LAN to anywhere else)", "pc",
                 ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                  f"http://{www}/"], lambda r: r.stdout == "200"),
        Exercise("a request through the proxy", "pc",
                 ["curl", "-sS", "-i", "--max-time", "5", "-x",
                  "http://proxy.example.test:8080", f"http://{www}/"],
                 lambda r: r.stdout.startswith("HTTP/1.1 200") and "Via:" in r.stdout),
        Exercise("nc -l on the web server, nc from the PC", "pc",
                 ["sh", "-c", f"ip netns exec {t.PREFIX}web nc -l -w 3 {t.WEB} 9000 "
                              f"> ~/.nc & sleep 0.5; echo hello | nc -w 2 {t.WEB} 9000;"
                              " wait; cat ~/.nc; rm -f ~/.nc"],
                 lambda r: "hello" in r.stdout),
        Exercise("example.test's mail goes to its MX", "pc",
                 ["host", "-t", "mx", "example.test"],
                 lambda r: "mail is handled by 10 mail.example.test" in r.stdout),
        Exercise("SMTP by hand (nc -C), the mail in alice's maildir", "pc",
                 ["sh", "-c", "printf 'EHLO pc.lan\\nMAIL FROM:<reader@pc.lan>\\n"
                              "RCPT TO:<alice@example.test>\\nDATA\\n"
                              f"Subject: by hand\\n\\n{token}\\n.\\nQUIT\\n' | "
                              "nc -C -w 5 mail.example.test 25; for i in $(seq 50); do "
                              f"grep -l {token} {maildir}/* 2>/dev/null && break; sleep 0.1; "
                              "done"],
                 lambda r: "221" in r.stdout and str(maildir) in r.stdout),
        Exercise("ssh-keygen, the key in the server's authorized_keys", "pc",
                 ["sh", "-c", "test -f ~/.ssh/id_ed25519 || ssh-keygen -q -t ed25519 -N '' "
                              "-f ~/.ssh/id_ed25519 && (grep -qxF \"$(cat ~/.ssh/id_ed25519"
                              f".pub)\" {authorized} 2>/dev/null || cat ~/.ssh/id_ed25519.pub "
                              f">> {authorized}) && ssh-keygen -lf ~/.ssh/id_ed25519.pub"],
                 lambda r: "(ED25519)" in r.stdout),
        Exercise("ssh with a ~/.ssh/config entry, the host key's fingerprint checked", "pc",
                 ["sh", "-c", "grep -q '^Host lab-ssh' ~/.ssh/config 2>/dev/null || printf "
                              "'Host lab-ssh\\n    HostName ssh.example.test\\n    User root"
                              "\\n    IdentityFile ~/.ssh/id_ed25519\\n' >> ~/.ssh/config; "
                              "ssh-keyscan -t ed25519 ssh.example.test 2>/dev/null > "
                              "~/.ssh/scanned; fp=$(ssh-keygen -lf ~/.ssh/scanned | cut -d' ' "
                              f"-f2); [ \"$fp\" = '{host_fingerprint(state)}' ] || {{ echo "
                              "\"$fp is not the server's\"; exit 1; }; echo \"fingerprint ok: "
                              "$fp\"; cat ~/.ssh/scanned >> ~/.ssh/known_hosts; ssh -o "
                              "BatchMode=yes lab-ssh ip -4 -o addr show eth0"],
                 lambda r: "fingerprint ok" in r.stdout and f"inet {t.SSH}/" in r.stdout),
        Exercise("ssh -L: the PC's port 8080 to www.example.test:80 through ssh", "pc",
                 ["sh", "-c", f"{ssh} -L 127.0.0.1:8080:{www}:80 lab-ssh & p=$!; "
                              "for i in $(seq 100); do code=$(curl -s -o /dev/null -w "
                              "'%{http_code}' http://127.0.0.1:8080/) && [ \"$code\" = 200 ] "
                              "&& break; sleep 0.1; done; kill $p; echo \"code $code\""],
                 lambda r: "code 200" in r.stdout),
        Exercise("ssh -R: the server's port 9000 to a listener on the PC, behind the NAT",
                 "pc",
                 ["sh", "-c", "timeout 15 nc -l 127.0.0.1 9001 > ~/.nc & n=$!; "
                              f"{ssh} -R 127.0.0.1:9000:127.0.0.1:9001 lab-ssh & p=$!; "
                              f"for i in $(seq 100); do ip netns exec {t.PREFIX}ssh sh -c "
                              "'echo hello from the internet | nc -N 127.0.0.1 9000' "
                              "2>/dev/null && break; sleep 0.1; done; wait $n; kill $p; "
                              "cat ~/.nc; rm -f ~/.nc"],
                 lambda r: "hello from the internet" in r.stdout),
    ]


def host_fingerprint(state: net.State) -> str:
    """The SHA256 fingerprint of the lab's sshd host key, as the server's admin reads it."""
    key = state.directory / "ssh" / "ssh_host_ed25519_key.pub"
    r = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True)
    return r.stdout.split()[1] if r.returncode == 0 else "(no host key)"


def run_exercise(state: net.State, e: Exercise) -> tuple[bool, str]:
    try:
        r = subprocess.run(net.in_ns(t.PREFIX + e.node, e.argv,
                                     net.home(state.directory, e.node)),
                           capture_output=True, text=True, timeout=e.timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    ok = e.expect(r)
    return ok, "" if ok else (r.stdout + r.stderr).strip()[-400:]


def rule_counted(state: net.State) -> tuple[bool, str]:
    """The router's rules show the reject rule's hits (`netkit ctl rules`)."""
    rules = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket",
                            str(state.directory / "router.sock"), "--json", "rules"],
                           capture_output=True, text=True, timeout=20)
    try:
        view = json.loads(rules.stdout)
    except ValueError:
        return False, rules.stdout + rules.stderr
    rejected = [r for r in view if isinstance(r, dict) and r.get("action") == "reject"
                and r.get("dport") == str(t.BLOCKED_PORT)]
    return bool(rejected) and rejected[0].get("hits", 0) > 0, rules.stdout[-400:]


def nat_seen(state: net.State) -> tuple[bool, str]:
    """The web server logged the router's outside address, and the router's table
    shows the mapping (the book's NAT chapter)."""
    log = state.directory / "logs" / "web-https.log"
    logged = log.exists() and t.ROUTER_OUTSIDE in log.read_text()
    table = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket",
                            str(state.directory / "router.sock"), "--json", "table"],
                           capture_output=True, text=True, timeout=20)
    return logged and t.ROUTER_OUTSIDE in table.stdout, table.stdout[-400:]


def check(state: net.State) -> int:
    failed = 0
    for e in exercises(state):
        ok, why = run_exercise(state, e)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {e.name}" + (f"\n     {why}" if why else ""))
    extra = (("the NAT seen: the web log and the router's table", nat_seen),
             ("the firewall's counter: `netkit ctl rules` on the router", rule_counted))
    for name, test in extra:
        ok, why = test(state)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f"\n     {why}"))
    total = len(exercises(state)) + len(extra)
    print(f"{total - failed} of {total} work")
    return 1 if failed else 0


def lab_of(state: net.State) -> t.Lab:
    """The lab that is up: the built-in nodes and the hosts its config added."""
    hosts = tuple(HostConfig(name=n, address=a) for n, a in state.data.get("hosts", []))
    return t.Lab(nodes(LabConfig(host=hosts)))


def _addresses(node: t.Node) -> list[str]:
    out = subprocess.run(["ip", "-n", node.netns, "-4", "-o", "addr"], capture_output=True,
                         text=True).stdout
    return sorted({m for m in re.findall(r"inet (\S+)", out) if not m.startswith("127.")},
                  key=lambda a: ipaddress.ip_interface(a))


def draw(lab: t.Lab) -> str:
    """The topology with the addresses the nodes have now."""
    def line(name: str, indent: str) -> str:
        node = lab.node(name)
        return f"{indent + name:<12} {', '.join(_addresses(node)) or '-':<50} {node.about}"
    servers = [n.name for n in lab.nodes if n.bridge == "internet"]
    out = [line("pc", ""), f"  │ br-lan {t.LAN} (the home LAN)", line("router", ""),
           f"  ║ TUN pair: the relay's packet mode, NAT to {t.ROUTER_OUTSIDE}", line("isp", ""),
           f"  │ br-net {t.INTERNET} (the internet)"]
    out += [line(name, "  ├─ " if i < len(servers) - 1 else "  └─ ")
            for i, name in enumerate(servers)]
    return "\n".join(out)


def status(state: net.State) -> int:
    if not net.is_up(state):
        print("the lab is down")
        return 1
    print(draw(lab_of(state)) + "\n\nservers:")
    for name, pid in state.data["pids"].items():
        print(f"  {'up  ' if net._alive(pid) else 'DOWN'} {name} (pid {pid})")
    table = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket",
                            str(state.directory / "router.sock"), "table"],
                           capture_output=True, text=True, timeout=20)
    print("\nthe router's connection table:\n" + (table.stdout or table.stderr).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netkit lab", description="A small internet in network "
                                "namespaces, built from netkit's servers (root).")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up")
    u.add_argument("--config", type=Path, help="lab.toml: your web root, records, hosts, "
                   "firewall rules (docs/lab.md)")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("check")
    e = sub.add_parser("exec")
    e.add_argument("node")
    e.add_argument("argv", nargs=argparse.REMAINDER)
    s = sub.add_parser("shell")
    s.add_argument("node")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("netkit lab: network namespaces need root", file=sys.stderr)
        return 2
    state = net.State()
    if args.command == "up":
        if net.is_up(state):
            print("the lab is up already")
            return 0
        started = time.monotonic()
        try:
            config = load(args.config)
        except ConfigError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            return 2
        try:
            build.up(state, config, args.config)
        except (net.LabError, OSError, subprocess.SubprocessError) as exc:
            print(f"netkit lab: {exc}; removing what was made", file=sys.stderr)
            net.down(state)
            return 1
        print(f"the lab is up ({time.monotonic() - started:.1f} s); the PC is "
              f"{state.data.get('pc')}: netkit lab exec pc -- curl https://www.example.test/")
        return 0
    if args.command == "down":
        removed = net.down(state)
        print("removed: " + (", ".join(removed) if removed else "nothing (the lab was down)"))
        return 0
    if args.command == "status":
        return status(state)
    if args.command == "check":
        if not net.is_up(state):
            print("the lab is down: netkit lab up", file=sys.stderr)
            return 1
        return check(state)
    try:
        lab_of(state).node(args.node)
    except KeyError as exc:
        print(f"netkit lab: {exc.args[0]}", file=sys.stderr)
        return 2
    ns = t.PREFIX + args.node
    home = net.home(state.directory, args.node)
    if args.command == "shell":
        return subprocess.call(net.in_ns(ns, [os.environ.get("SHELL", "/bin/sh")], home))
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        print("netkit lab exec NODE -- COMMAND", file=sys.stderr)
        return 2
    return subprocess.call(net.in_ns(ns, command, home))

