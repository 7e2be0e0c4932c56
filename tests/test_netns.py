"""The network-namespace harness itself (tests/netns.py): hosts reach each other and the test
process over TCP across the bridge, have no route off the machine, can be cut off and restored,
and leave nothing behind."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

import netns
import pytest

DEADLINE_S = 5.0
CONNECT_TIMEOUT_S = 0.5  # per attempt; a cut host must fail well within a second

# Every test needs namespaces; the session fixture skips them all where they can't be made.
pytestmark = pytest.mark.usefixtures("test_network")

ECHO_SERVER = """
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 0))
srv.listen()
print(srv.getsockname()[1], flush=True)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# argv: address, port, timeout; prints what came back, or the error and exits 1.
ECHO_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])),
                                  timeout=float(sys.argv[3])) as s:
        s.sendall(b"ping")
        print(s.recv(100).decode())
except OSError as exc:
    print(type(exc).__name__, exc)
    sys.exit(1)
"""


def read_line(proc: subprocess.Popen, timeout: float = DEADLINE_S) -> str:
    """The next line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from {proc.args} in {timeout} s (exit code {proc.poll()})"
    return proc.stdout.readline().strip()


def echo_client(host: netns.Host, ip: str, port: int) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", ECHO_CLIENT, ip, str(port), str(CONNECT_TIMEOUT_S)]
    return host.run(argv, timeout=DEADLINE_S)


def connect(ip: str, port: int) -> socket.socket:
    return socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT_S)


def echo(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(100)


@pytest.fixture(scope="module")
def hosts(test_network):
    return test_network.add_host("a"), test_network.add_host("b")


@pytest.fixture(scope="module")
def echo_server(hosts):
    """An echo server in host a: (host, port)."""
    a, _ = hosts
    proc = a.popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(read_line(proc))
        yield a, port
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def root_echo_server(test_network):
    """An echo server in the test process, on the bridge address (the root namespace)."""
    srv = socket.create_server((test_network.ip, 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(DEADLINE_S)
                conn.sendall(conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(DEADLINE_S)
        srv.close()


def test_hosts_have_distinct_addresses_in_the_test_range(test_network, hosts):
    a, b = hosts
    assert test_network.ip == str(test_network.subnet.network_address + 1)
    assert test_network.subnet.subnet_of(netns.TEST_RANGE)
    assert a.ip != b.ip
    assert {a.ip, b.ip} < set(map(str, test_network.subnet.hosts()))
    for name in (a.name, b.name, a.veth, a.peer, test_network.bridge):
        assert len(name) <= 15 and name.startswith(test_network.name_prefix)
    assert {a.name, b.name} <= set(netns.list_namespaces())


def test_host_to_host_tcp(echo_server, hosts):
    a, port = echo_server
    _, b = hosts
    result = echo_client(b, a.ip, port)
    assert result.returncode == 0 and result.stdout.strip() == "ping", result


def test_root_namespace_to_host_tcp(echo_server):
    a, port = echo_server
    with connect(a.ip, port) as sock:
        assert echo(sock) == b"ping"


def test_host_to_bridge_address_tcp(test_network, hosts, root_echo_server):
    _, b = hosts
    result = echo_client(b, test_network.ip, root_echo_server)
    assert result.returncode == 0 and result.stdout.strip() == "ping", result


def test_loopback_is_per_namespace(hosts):
    """The test process's 127.0.0.1 is not the host's: a server there can't be reached."""
    _, b = hosts
    with socket.create_server(("127.0.0.1", 0)) as srv:
        result = echo_client(b, "127.0.0.1", srv.getsockname()[1])
    assert result.returncode == 1 and "ConnectionRefusedError" in result.stdout, result


def test_no_route_off_the_test_network(hosts):
    """Only route lookups, no packets: nothing outside the host's /24 is reachable."""
    a, _ = hosts
    assert a.run(["ip", "route", "show", "default"]).stdout.strip() == ""
    for outside in ("8.8.8.8", "192.0.2.1", "10.0.0.1", "198.19.255.1"):
        result = a.run(["ip", "route", "get", outside])
        assert result.returncode != 0 and "unreachable" in result.stderr, (outside, result)


def test_pids_lists_processes_in_the_host(hosts):
    a, _ = hosts
    proc = a.popen(["sleep", "60"])
    try:
        assert proc.pid in a.pids()
        assert os.getpid() not in a.pids()
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in a.pids()


def test_cut_stops_traffic_and_restore_resumes_it(echo_server, hosts):
    a, port = echo_server
    _, b = hosts
    with connect(a.ip, port) as established:
        assert echo(established, b"before") == b"before"
        a.cut()
        try:
            assert a.is_cut
            start = time.monotonic()
            with pytest.raises(OSError):
                connect(a.ip, port).close()
            assert time.monotonic() - start < 1.0
            result = echo_client(b, a.ip, port)
            assert result.returncode == 1, result
            # An established connection stalls rather than breaks.
            established.sendall(b"during")
            established.settimeout(0.3)
            with pytest.raises(TimeoutError):
                established.recv(100)
        finally:
            a.restore()
        assert not a.is_cut
        # TCP retransmits what was sent during the cut; new connections work again.
        established.settimeout(DEADLINE_S)
        assert established.recv(100) == b"during"
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                with connect(a.ip, port) as sock:
                    assert echo(sock) == b"ping"
                break
            except OSError:
                assert time.monotonic() < deadline, "no connection after restore()"
    result = echo_client(b, a.ip, port)
    assert result.returncode == 0 and result.stdout.strip() == "ping", result


def test_close_removes_everything_and_kills_processes(test_network):
    with netns.TestNetwork() as net:
        # A second network beside the session's takes another /24 and routes to its own bridge.
        assert net.subnet != test_network.subnet and net.subnet.subnet_of(netns.TEST_RANGE)
        hosts = [net.add_host(), net.add_host()]
        route = netns._ip("route", "get", hosts[0].ip).stdout
        assert f"dev {net.bridge} " in route, route
        procs = [h.popen(["sleep", "60"]) for h in hosts]
        prefix = net.name_prefix
        assert any(n.startswith(prefix) for n in netns.list_namespaces())
        assert any(n.startswith(prefix) for n in netns.list_links())
        pid_file = os.path.join(netns.STATE_DIR, f"{prefix}.pid")
        assert os.path.exists(pid_file)
    assert all(p.returncode is not None for p in procs)
    ip = netns._ip_binary()
    ns_out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
    link_out = subprocess.run([ip, "link"], capture_output=True, text=True).stdout
    assert prefix not in ns_out and prefix not in link_out
    assert not os.path.exists(pid_file)
    net.close()  # a second close is harmless


def test_close_after_things_vanished_or_half_made():
    net = netns.TestNetwork()
    try:
        host = net.add_host()
        netns._ip("netns", "del", host.name)  # removed behind the harness's back
        netns._ip("netns", "add", f"{net.name_prefix}h3")  # the next host's name is taken
        with pytest.raises(netns.IpError):
            net.add_host()
    finally:
        net.close()
    net.close()
    assert not any(n.startswith(net.name_prefix)
                   for n in netns.list_namespaces() + netns.list_links())


def test_remove_stale_cleans_up_dead_owners_only(test_network):
    """A network whose owner died is removed; the live session's network is not."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import netns\n"
        "net = netns.TestNetwork(); net.add_host(); print(net.name_prefix, flush=True)\n"
        "import os; os._exit(0)  # die without close()\n"
    )
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    dead = subprocess.run([sys.executable, "-c", code, tests_dir], capture_output=True,
                          text=True, timeout=DEADLINE_S)
    assert dead.returncode == 0, dead.stderr
    prefix = dead.stdout.strip()
    assert any(n.startswith(prefix) for n in netns.list_namespaces())
    removed = netns.remove_stale()
    assert {f"{prefix}h2", f"{prefix}br", f"{prefix}p2"} <= set(removed)
    assert not any(n.startswith(prefix) for n in netns.list_namespaces() + netns.list_links())
    assert not os.path.exists(os.path.join(netns.STATE_DIR, f"{prefix}.pid"))
    live = test_network.name_prefix
    assert not any(n.startswith(live) for n in removed)
    assert test_network.bridge in netns.list_links()
