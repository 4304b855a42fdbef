"""No network: the agent opens nothing outside loopback, on both stacks.

Two proofs, neither of which sends a packet anywhere but 127.0.0.1:

* The audit hook (app/agent.py, CPython >= 3.8) really fires: a child process
  installs it, then a second hook that stops every non-loopback attempt before
  its system call, and tries a TCP connect, a UDP connect and send, and name
  lookups towards TEST-NET / ``.invalid`` names.  Each must be recorded as an
  ``outbound`` event of the right kind and blocked; loopback must pass
  unrecorded.  (The cells' positive controls then assert that no such event
  appears in any agent cell.)
* The system calls (strace, where it is installed and ptrace is allowed): a
  server with the agent, RUM and HelloGoodbyer on serves the page and both
  clients on /streaming and /view under ``strace -f``; no connect, sendto,
  sendmsg, sendmmsg, write or writev may reach an address outside loopback.
  A UDP connect sends nothing (the 3.x agent uses one to learn its own address)
  and is allowed unless to port 53 (DNS) or followed by a send.  This is the
  proof on CPython 2.7, which has no audit hooks, and a cross-check on 3.x.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import textwrap

import pytest

from tests.harness import clients
from tests.harness.paths import ROOT
from tests.harness.server import Server

CHILD_TIMEOUT = 30.0  # s for the audit-hook proof child
STRACE_PROBE_TIMEOUT = 10.0  # s for `strace true`

# label: (the outbound kind the agent's hook must record, or None; expected outcome)
ATTEMPTS = {
    "tcp_connect": ("tcp_connect", "blocked"),
    "tcp_connect_ex": ("tcp_connect", "blocked"),
    "tcp6_connect": ("tcp_connect", "blocked"),
    "udp_connect": ("udp_route_lookup", "blocked"),
    "udp_sendto": ("datagram_send", "blocked"),
    "udp_sendmsg": ("datagram_send", "blocked"),
    "getaddrinfo": ("dns_lookup", "blocked"),
    "getaddrinfo_bytes": ("dns_lookup", "blocked"),
    "gethostbyname": ("dns_lookup", "blocked"),
    "gethostbyaddr": ("dns_lookup", "blocked"),
    "create_connection": ("dns_lookup", "blocked"),
    "name_like_loopback": ("dns_lookup", "blocked"),
    "loopback_tcp": (None, "done"),
    "loopback_getaddrinfo": (None, "done"),
    "loopback_udp_sendto": (None, "done"),
}

PROOF = textwrap.dedent("""
    import json, socket, sys
    from app import agent

    ALLOWED = ("127.0.0.1", "::1", None)

    class Blocked(Exception):
        pass

    def host_of(address):
        return address[0] if isinstance(address, tuple) else address

    def blocker(name, args):
        # Added after the agent's hook, so it runs after it (hooks run in the
        # order added); raising aborts the call before its system call.
        if name in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if (address is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and host_of(address) not in ALLOWED):
                raise Blocked(name)
        elif name in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                      "socket.getnameinfo"):
            if host_of(args[0]) not in ALLOWED:
                raise Blocked(name)

    agent._watch_outbound()
    sys.addaudithook(blocker)

    def say(**fields):
        print(json.dumps(fields, sort_keys=True))
        sys.stdout.flush()

    def attempt(label, make, call):
        try:
            sock = make()
        except OSError as exc:  # e.g. no IPv6 here
            say(event="outcome", label=label, outcome="unavailable: %s" % exc)
            return
        say(event="attempt", label=label)
        try:
            call(sock)
            outcome = "done"
        except Blocked:
            outcome = "blocked"
        except OSError as exc:
            outcome = "oserror: %s" % exc
        finally:
            if sock is not None:
                sock.close()
        say(event="outcome", label=label, outcome=outcome)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    tcp = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp6 = lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    udp = lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    none = lambda: None
    far = ("192.0.2.1", 9)  # TEST-NET-1 (RFC 5737): never routed
    attempt("tcp_connect", tcp, lambda s: s.connect(far))
    attempt("tcp_connect_ex", tcp, lambda s: s.connect_ex(far))
    attempt("tcp6_connect", tcp6, lambda s: s.connect(("2001:db8::1", 9)))  # RFC 3849
    attempt("udp_connect", udp, lambda s: s.connect(far))
    attempt("udp_sendto", udp, lambda s: s.sendto(b"x", far))
    attempt("udp_sendmsg", udp, lambda s: s.sendmsg([b"x"], [], 0, far))
    attempt("getaddrinfo", none, lambda s: socket.getaddrinfo("collector.invalid", 443))
    attempt("getaddrinfo_bytes", none, lambda s: socket.getaddrinfo(b"collector.invalid", 443))
    attempt("gethostbyname", none, lambda s: socket.gethostbyname("collector.invalid"))
    attempt("gethostbyaddr", none, lambda s: socket.gethostbyaddr("192.0.2.1"))
    attempt("create_connection", none,
            lambda s: socket.create_connection(("collector.invalid", 443), timeout=1))
    attempt("name_like_loopback", none, lambda s: socket.getaddrinfo("127.0.0.1.invalid", 443))
    attempt("loopback_tcp", tcp, lambda s: s.connect(("127.0.0.1", port)))
    attempt("loopback_getaddrinfo", none, lambda s: socket.getaddrinfo("127.0.0.1", port))
    attempt("loopback_udp_sendto", udp, lambda s: s.sendto(b"x", ("127.0.0.1", port)))
""")


def has_audit_hooks(python):
    proc = subprocess.run(
        [python, "-c", "import sys; print(hasattr(sys, 'addaudithook'))"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    return proc.stdout.strip() == "True"


def strace_or_skip():
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (Debian: apt-get install strace)")
    probe = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect", "-o", "/dev/null", "true"],
        capture_output=True,
        text=True,
        timeout=STRACE_PROBE_TIMEOUT,
    )
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()}")
    return strace


TRACED = "connect,sendto,sendmsg,sendmmsg,write,writev"


def traced(strace, python, log, tmp_path):
    """A server interpreter that runs under strace -f, writing `log`."""
    wrapper = tmp_path / "traced-python"
    wrapper.write_text(
        f'#!/bin/sh\nexec {strace} -f -qq -yy -s 0 -e trace={TRACED} -o {log} {python} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


# `PID call(FD<decoration>, ...`: -yy decorates a socket with its protocol and,
# once connected, its local->remote addresses.
SYSCALL = re.compile(
    r"^(?P<pid>\d+)\s+(?P<call>connect|sendto|sendmsg|sendmmsg|write|writev)"
    r"\((?P<fd>\d+)<(?P<deco>.*?)>(?=[,)])(?P<rest>.*)$"
)
SOCKADDR = re.compile(r'inet_addr\("(?P<v4>[^"]+)"\)|inet_pton\(AF_INET6,\s*"(?P<v6>[^"]+)"')
PORT = re.compile(r"sin6?_port=htons\((\d+)\)")


def _loopback(host):
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _remote(decoration):
    """The remote host of a connected socket's decoration, e.g. TCP:[a:1->b:2]."""
    if "->" not in decoration:
        return None
    remote = decoration.split("->", 1)[1].rstrip("]")
    if remote.startswith("["):  # [v6]:port
        return remote[1:].split("]", 1)[0]
    return remote.rsplit(":", 1)[0]


def network_violations(trace):
    """(violations, udp_route_lookups) in an `strace -f -yy` log."""
    violations, lookups = [], []
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if not match:
            continue
        proto = match["deco"].split(":", 1)[0]
        if proto not in ("TCP", "UDP", "TCPv6", "UDPv6"):
            continue  # pipes, files, AF_UNIX and netlink sockets are local
        hosts = [m["v4"] or m["v6"] for m in SOCKADDR.finditer(match["rest"])]
        remote = _remote(match["deco"])
        if remote:
            hosts.append(remote)
        far = [h for h in hosts if not _loopback(h)]
        if not far:
            continue
        if match["call"] == "connect" and proto.startswith("UDP"):
            port = PORT.search(match["rest"])
            if port and port.group(1) == "53":
                violations.append(line)  # a resolver about to query a name server
            else:
                lookups.append(line)  # a UDP connect sends no packet
        else:
            violations.append(line)
    return violations, lookups


def test_network_violations_parser():
    """The parser itself, on lines in strace's own format."""
    trace = "\n".join(
        [
            "7 connect(3<UDP:[49134]>, {sa_family=AF_INET, sin_port=htons(1), "
            'sin_addr=inet_addr("1.1.1.1")}, 16) = 0',
            '7 connect(6<UNIX-STREAM:[4]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, '
            "110) = -1 ENOENT",
            '7 sendto(6<TCP:[127.0.0.1:39517->127.0.0.1:44846]>, ""..., 124, 0, NULL, 0) = 124',
            "8 connect(5<TCP:[9]>, {sa_family=AF_INET, sin_port=htons(443), "
            'sin_addr=inet_addr("192.0.2.1")}, 16 <unfinished ...>',
            "8 connect(5<UDP:[9]>, {sa_family=AF_INET, sin_port=htons(53), "
            'sin_addr=inet_addr("192.0.2.53")}, 16) = 0',
            "8 sendmmsg(5<UDP:[10.0.0.2:4000->192.0.2.53:53]>, [...], 2, MSG_NOSIGNAL) = 2",
            "8 connect(5<TCPv6:[9]>, {sa_family=AF_INET6, sin6_port=htons(80), "
            'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '8 write(7<TCPv6:[[2001:db8::2]:5->[2001:db8::1]:80]>, ""..., 10) = 10',
            '8 write(1<pipe:[5]>, ""..., 10) = 10',
        ]
    )
    violations, lookups = network_violations(trace)
    assert [v.split("(")[0] for v in violations] == [
        "8 connect",
        "8 connect",
        "8 sendmmsg",
        "8 write",
    ], violations
    assert len(lookups) == 1 and "1.1.1.1" in lookups[0], lookups


def run_proof(python, tmp_path, strace=None):
    argv = [python, "-c", PROOF]
    log = tmp_path / "proof.strace"
    if strace:
        argv = [
            strace,
            "-f",
            "-qq",
            "-yy",
            "-s",
            "0",
            "-e",
            f"trace={TRACED}",
            "-o",
            str(log),
            *argv,
        ]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()], log


def test_audit_hook_records_and_classifies_outbound_attempts(session, tmp_path):
    if not has_audit_hooks(session.server_python):
        pytest.skip(
            "no audit hooks on this interpreter (CPython 2.7): "
            "test_agent_server_makes_no_outbound_syscalls is the proof here"
        )
    strace = shutil.which("strace")
    lines, log = run_proof(session.server_python, tmp_path, strace)
    seen, label = {}, None
    for line in lines:
        if line["event"] == "attempt":
            label = line["label"]
            seen[label] = {"kinds": [], "outcome": None}
        elif line["event"] == "outbound":
            seen[label]["kinds"].append(line["kind"])
        elif line["event"] == "outcome":
            seen.setdefault(line["label"], {"kinds": []})["outcome"] = line["outcome"]
            label = None
    problems = []
    for name, (kind, outcome) in ATTEMPTS.items():
        got = seen.get(name)
        if got is None:
            problems.append(f"{name}: never attempted")
            continue
        if name == "tcp6_connect" and got["outcome"].startswith("unavailable"):
            continue  # no IPv6 sockets on this host
        want_kinds = [kind] if kind else []
        if got["kinds"][:1] != want_kinds[:1] or (not kind and got["kinds"]):
            problems.append(f"{name}: recorded {got['kinds']}, expected {want_kinds}")
        if got["outcome"] != outcome:
            problems.append(f"{name}: outcome {got['outcome']!r}, expected {outcome!r}")
    assert not problems, "\n".join(problems) + "\n" + json.dumps(seen, indent=1)
    if strace and log.exists():
        # The proof itself sent nothing anywhere: every attempt stopped in the hook.
        violations, lookups = network_violations(log.read_text())
        assert not violations and not lookups, violations + lookups


def test_agent_server_makes_no_outbound_syscalls(session, tmp_path):
    """Under strace -f: the agent (RUM and HelloGoodbyer on), or a layer session's request
    layer (HelloGoodbyer on), reaches nothing off loopback."""
    if not session.agent and not session.layer:
        pytest.skip("neither the agent nor a layer is in this session's server environment")
    strace = strace_or_skip()
    log = tmp_path / "server.strace"
    python = traced(strace, session.server_python, log, tmp_path)
    agent = bool(session.agent)
    with Server(
        python,
        agent=agent,
        rum=agent,
        hello_goodbyer=True,
        log_dir=session.logs,
        name="no-network",
        layer=session.layer,
    ) as server:
        page = server.get("/")[1]
        transcripts = [
            clients.run(c, f"{server.ws_url}{route}?client={c}")
            for c in clients.CLIENTS
            for route in ("/streaming", "/view")
        ]
    if agent:
        assert server.ready.get("agent_active"), server.explain("the agent is not active")
        assert "NREUM" in page, "RUM is not on: the proof would not exercise it"
    if session.layer:
        active = server.ready.get("layer_active") or {}
        assert server.ready.get("layer") == session.layer and active.get("hook_installed"), (
            server.explain(f"the layer {session.layer} is not set up: {active}")
        )
    # Each client reached the server (whether the view then ran is the cells' business:
    # on the 2016 vanilla stack the lazy RUM layer never runs it).
    assert all(any(e["event"] == "open" for e in t.events) for t in transcripts), [
        t.as_dict() for t in transcripts
    ]
    trace = log.read_text()
    assert "connect(" in trace or "sendto(" in trace, f"nothing traced in {log}"
    violations, lookups = network_violations(trace)
    outbound = [e for e in server.events if e["event"] == "outbound"]
    assert not violations, server.explain(
        f"system calls reaching beyond loopback ({log}):\n  " + "\n  ".join(violations)
    )
    if has_audit_hooks(session.server_python):
        # Cross-check: the audit hook saw every UDP connect strace saw, and no more.
        hooked = [e for e in outbound if e["kind"] == "udp_route_lookup"]
        assert len(hooked) == len(lookups), (outbound, lookups)
        assert [e for e in outbound if e["kind"] != "udp_route_lookup"] == [], outbound
