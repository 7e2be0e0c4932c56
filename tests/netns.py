"""Separate "hosts" for tests, made of Linux network namespaces joined by a bridge.

Why: a cluster test that runs every process on one machine only ever talks over loopback, so it
can't show what happens when traffic crosses a real interface, or when one machine is cut off
from the rest. Here each :class:`Host` is a network namespace with its own loopback and one veth
link to a Linux bridge in the root namespace; the root namespace (the test process itself) has
the bridge's address. ``Host.cut()`` takes the host's link down, as if its cable were pulled.

What is isolated, and what is not: only the network. Processes in a host share the machine's
file system, ``/dev/shm``, pid namespace and users with everything else. In particular a
ZeroMQ ``ipc://`` endpoint (a Unix socket with a path) can still be reached from any host, while
``tcp://127.0.0.1`` cannot: loopback is per namespace, so a host's 127.0.0.1 is its own.

Addresses come only from 198.18.0.0/15, the range reserved for network tests (RFC 2544). Each
network takes a free /24 in that range (198.18.0.0/24 when nothing else uses it), the bridge is
``.1`` and hosts are ``.2`` and up. No host gets a default route, so nothing run inside a host
can send a packet off the machine.

Names: every network draws a random four-hex ``tag`` and names everything ``zt<tag>...``
(namespace ``zt<tag>h<N>``, bridge ``zt<tag>br``, veth ends ``zt<tag>v<N>`` inside the host and
``zt<tag>p<N>`` on the bridge), at most 15 characters as Linux requires. The owner's pid (and
start time, against pid reuse) is recorded in ``/tmp/zactor-netns/zt<tag>.pid`` before anything
is made, so that :func:`remove_stale` can clean up after a crashed run without ever touching the
namespaces of a session that is still alive.

Needs root and iproute2 (``ip``); :func:`available` says why not when they are missing. Nothing
here needs iptables or nftables. On a machine where iptables filters bridged traffic
(``net.bridge.bridge-nf-call-iptables=1`` with a FORWARD policy of DROP, as Docker sets up),
traffic between hosts can be dropped; that is not the case on the test machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

PREFIX = "zt"
STATE_DIR = "/tmp/zactor-netns"
# RFC 2544: 198.18.0.0/15 is set aside for benchmarking and test networks. Use nothing else.
TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")
MAX_HOSTS = 253  # .2 .. .254 of a /24
SETTLE_S = 5.0  # how long a link may take to come up, or a process to die
KILL_GRACE_S = 1.0  # SIGTERM first, then SIGKILL after this long

_available: list[str | None] = []  # the answer of available(), once checked
_own_tags: set[str] = set()  # tags drawn by this process (for the leak check)


# --- running ip ---------------------------------------------------------------------------------


def _ip_binary() -> str | None:
    """``ip`` from PATH, or from the sbin directories that a non-login PATH may lack."""
    found = shutil.which("ip")
    if found:
        return found
    for candidate in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class IpError(RuntimeError):
    """An ``ip`` command failed; the message has the command and its stderr."""


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    binary = _ip_binary()
    if binary is None:
        raise IpError("iproute2 is not installed (no `ip` command)")
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise IpError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _ip_quiet(*args: str) -> bool:
    """Run ``ip``, ignoring failure (for clean-up of things that may already be gone)."""
    try:
        return _ip(*args, check=False).returncode == 0
    except (IpError, OSError, subprocess.TimeoutExpired):
        return False


def list_namespaces() -> list[str]:
    """Names of the network namespaces in ``ip netns list``."""
    if _ip_binary() is None:
        return []
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[str]:
    """Names of the links in the root namespace (without the ``@peer`` suffix)."""
    if _ip_binary() is None:
        return []
    names = []
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _namespace_pids(name: str) -> list[int]:
    try:
        out = _ip("netns", "pids", name, check=False).stdout
    except (IpError, OSError, subprocess.TimeoutExpired):
        return []
    return [int(tok) for tok in out.split() if tok.isdigit() and int(tok) != os.getpid()]


def _kill_namespace_processes(name: str, deadline_s: float = SETTLE_S) -> list[int]:
    """SIGTERM every process in namespace ``name``, SIGKILL what is left after a grace period,
    and wait until none remain (or the deadline passes). Returns the pids still there."""
    pids = _namespace_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    start = time.monotonic()
    killed = False
    while pids:
        elapsed = time.monotonic() - start
        if elapsed > deadline_s:
            break
        if elapsed > KILL_GRACE_S and not killed:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)
        pids = _namespace_pids(name)
    return pids


# --- ownership records --------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Process start time (clock ticks since boot) from /proc, or None when there's no such
    process. Recorded with the pid so that a reused pid isn't taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # Field 22 of /proc/pid/stat; fields[0] here is field 3 (state).
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]


def _pid_file(prefix: str, tag: str) -> str:
    return os.path.join(STATE_DIR, f"{prefix}{tag}.pid")


def _owner_alive(pid_file: str) -> bool:
    """True when the process recorded in ``pid_file`` still runs (or the file can't be read:
    when in doubt, a namespace counts as someone else's)."""
    try:
        with open(pid_file) as f:
            pid_s, start = f.read().split()
        pid = int(pid_s)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return _start_time(pid) == start


def _claim_tag(prefix: str = PREFIX) -> str:
    """Draw a random tag that nothing on this machine uses and record this process as its
    owner (the pid file is made with O_EXCL, so two sessions can't draw the same tag)."""
    os.makedirs(STATE_DIR, exist_ok=True)
    existing = list_namespaces() + list_links()
    for _ in range(100):
        tag = secrets.token_hex(2)
        if any(name.startswith(prefix + tag) for name in existing):
            continue
        try:
            fd = os.open(_pid_file(prefix, tag), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
        _own_tags.add(prefix + tag)
        return tag
    raise RuntimeError("could not draw an unused network tag")


def _release_tag(prefix: str, tag: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_pid_file(prefix, tag))


# What follows ``<prefix><tag>`` in the names made here (e.g. zt1a2bbr, zt1a2bh2, zt1a2bp2).
_SUFFIX_RE = r"(?:br|chk|[hvp][0-9]+)"


def _names_with(prefix_tag: str) -> tuple[list[str], list[str]]:
    """(namespaces, links) named as this module names things for ``prefix_tag`` (e.g.
    ``zt1a2b``); other names that merely start the same (ZeroTier's ``zt...`` links) are not."""
    name_re = re.compile(re.escape(prefix_tag) + _SUFFIX_RE)
    namespaces = [n for n in list_namespaces() if name_re.fullmatch(n)]
    links = [n for n in list_links() if name_re.fullmatch(n)]
    return namespaces, links


def _remove_all(prefix_tag: str, deadline_s: float = SETTLE_S) -> list[str]:
    """Remove every namespace and root-namespace link named ``<prefix_tag>...`` (killing the
    processes inside the namespaces first). Returns the names that remain at the deadline."""
    namespaces, links = _names_with(prefix_tag)
    for ns in namespaces:
        _kill_namespace_processes(ns)
    # Deleting the bridge-side veth deletes its peer too; do it before the namespace goes,
    # because a namespace's links are otherwise freed asynchronously, some time after `del`.
    for link in sorted(links, key=lambda n: n.endswith("br")):
        _ip_quiet("link", "del", link)
    for ns in namespaces:
        _ip_quiet("netns", "del", ns)
    deadline = time.monotonic() + deadline_s
    while True:
        namespaces, links = _names_with(prefix_tag)
        if not namespaces and not links:
            return []
        if time.monotonic() > deadline:
            return namespaces + links
        for link in links:
            _ip_quiet("link", "del", link)
        for ns in namespaces:
            _ip_quiet("netns", "del", ns)
        time.sleep(0.05)



def remove_stale(prefix: str = PREFIX) -> list[str]:
    """Remove namespaces and links left behind by test processes that died without cleaning up.

    Only tags with a pid file in ``/tmp/zactor-netns`` whose recorded owner is no longer
    running are touched; names without a pid file (made by something else, or whose owner we
    can't tell) and those of live sessions are left alone. Returns the names removed.
    """
    if _ip_binary() is None:
        return []
    try:
        files = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return []
    removed: list[str] = []
    pattern = re.compile(re.escape(prefix) + r"([0-9a-f]{4})\.pid")
    for file in sorted(files):
        match = pattern.fullmatch(file)
        if not match:
            continue
        tag = match.group(1)
        path = os.path.join(STATE_DIR, file)
        if _owner_alive(path):
            continue
        namespaces, links = _names_with(prefix + tag)
        left = _remove_all(prefix + tag)
        removed.extend(n for n in namespaces + links if n not in left)
        if not left:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return removed


def leftovers() -> list[str]:
    """Namespaces and links made by this process (any tag it drew) that still exist."""
    if not _own_tags or _ip_binary() is None:
        return []
    ours = re.compile("(?:" + "|".join(map(re.escape, _own_tags)) + ")" + _SUFFIX_RE)
    return sorted(n for n in list_namespaces() + list_links() if ours.fullmatch(n))


# --- can we? ------------------------------------------------------------------------------------


def available() -> str | None:
    """None when network namespaces, veth pairs and bridges can be made here, else why not.

    Checks for real, once per process: makes a throwaway namespace with a veth link into it and
    a bridge, and removes them again.
    """
    if not _available:
        _available.append(_check_available())
    return _available[0]


def _check_available() -> str | None:
    if os.geteuid() != 0:
        return f"network namespaces need root (tests run as uid {os.geteuid()})"
    if _ip_binary() is None:
        return "iproute2 is not installed (no `ip` command); `make test` installs it as root"
    try:
        tag = _claim_tag()
    except OSError as exc:
        return f"cannot record namespace ownership in {STATE_DIR}: {exc}"
    ns, veth, peer, br = (f"{PREFIX}{tag}{s}" for s in ("chk", "v0", "p0", "br"))
    try:
        steps = [
            ("netns", "add", ns),
            ("link", "add", peer, "type", "veth", "peer", "name", veth, "netns", ns),
            ("link", "add", br, "type", "bridge"),
        ]
        for step in steps:
            try:
                proc = _ip(*step, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"`ip {' '.join(step)}` could not run: {exc}"
            if proc.returncode != 0:
                return f"`ip {' '.join(step)}` failed: {proc.stderr.strip()}"
        return None
    finally:
        left = _remove_all(PREFIX + tag)
        if not left:
            _release_tag(PREFIX, tag)


# --- the network --------------------------------------------------------------------------------


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of the root namespace's addresses and routes."""
    used = []
    for args in (("-o", "-4", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for word in _ip(*args, check=False).stdout.split():
            if "/" in word or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", word):
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(word, strict=False))
    return [n for n in used if isinstance(n, ipaddress.IPv4Network)]


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Serialise choosing a subnet and assigning it, between concurrent test sessions."""
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(os.path.join(STATE_DIR, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class TestNetwork:
    """A bridge in the root namespace and the hosts attached to it; a context manager.

    ``with TestNetwork() as net: a = net.add_host(); b = net.add_host()`` gives two hosts that
    reach each other (and the test process, at ``net.ip``) over TCP. ``close()`` removes every
    namespace and link made here and kills what still runs in the hosts; it may be called more
    than once, and after a failure half-way through making something.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.tag = _claim_tag(prefix)
        self.bridge = f"{prefix}{self.tag}br"
        self.hosts: list[Host] = []
        self.subnet: ipaddress.IPv4Network | None = None
        self.ip = ""  # the root namespace's address on the bridge
        self._closed = False
        try:
            with _allocation_lock():
                self.subnet = self._free_subnet()
                self.ip = str(self.subnet.network_address + 1)
                _ip("link", "add", self.bridge, "type", "bridge", "stp_state", "0",
                    "forward_delay", "0")
                _ip("addr", "add", f"{self.ip}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise

    @property
    def name_prefix(self) -> str:
        """What every namespace and link of this network is named with (``zt<tag>``)."""
        return self.prefix + self.tag

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = [n for n in _used_networks() if n.overlaps(TEST_RANGE)]
        for candidate in TEST_RANGE.subnets(new_prefix=24):
            if not any(candidate.overlaps(n) for n in used):
                return candidate
        raise RuntimeError(f"no free /24 left in {TEST_RANGE}")

    def add_host(self, name: str | None = None) -> Host:
        """Make a host: a namespace with lo up and one veth link to the bridge, with address
        ``<subnet>.N`` and no default route. ``name`` is only a label for messages; the
        namespace is always ``zt<tag>h<N>`` (Linux limits names to 15 characters)."""
        if self._closed:
            raise RuntimeError("the network is closed")
        assert self.subnet is not None
        index = len(self.hosts) + 2  # .1 is the bridge
        if index - 1 > MAX_HOSTS:
            raise RuntimeError(f"at most {MAX_HOSTS} hosts per network")
        host = Host(self, index, label=name)
        self.hosts.append(host)  # before making anything, so close() cleans up a half-made host
        ns, veth, peer = host.name, host.veth, host.peer
        _ip("netns", "add", ns)
        _ip("link", "add", peer, "type", "veth", "peer", "name", veth, "netns", ns)
        _ip("link", "set", peer, "master", self.bridge)
        _ip("-n", ns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", veth)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", veth, "up")
        _ip("link", "set", peer, "up")
        host.wait_link_up()
        return host

    def close(self) -> None:
        """Kill what runs in the hosts and remove all namespaces, veth links and the bridge.
        Safe to call again, and after a partial failure; raises if something can't be removed."""
        self._closed = True
        left = _remove_all(self.name_prefix)  # kills what runs inside: SIGTERM, then SIGKILL
        for host in self.hosts:
            host._reap()
        if left:
            raise RuntimeError(f"could not remove {left}")
        _release_tag(self.prefix, self.tag)

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TestNetwork({self.bridge}, {self.subnet}, hosts={[h.name for h in self.hosts]})"


class Host:
    """One "machine": a network namespace ``name`` reachable at ``ip`` through the bridge."""

    def __init__(self, network: TestNetwork, index: int, label: str | None = None) -> None:
        assert network.subnet is not None
        self.network = network
        self.index = index
        self.label = label or f"h{index}"
        prefix = network.name_prefix
        self.name = f"{prefix}h{index}"  # the namespace
        self.veth = f"{prefix}v{index}"  # inside the namespace
        self.peer = f"{prefix}p{index}"  # on the bridge, in the root namespace
        self.ip = str(network.subnet.network_address + index)
        self.is_cut = False
        self._procs: list[subprocess.Popen] = []

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside this host (``ip netns exec NAME ...``)."""
        binary = _ip_binary()
        if binary is None:
            raise IpError("iproute2 is not installed (no `ip` command)")
        return [binary, "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside the host; the environment is inherited unless ``env=`` is given.
        ``ip netns exec`` execs the command, so the Popen's pid is the command's own. What is
        still running at ``close()`` is killed."""
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 30.0, **kwargs: Any
            ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the host to completion; output is captured as text unless
        ``capture_output``/``stdout``/``stderr``/``text`` say otherwise."""
        if not {"stdout", "stderr"} & kwargs.keys():
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), timeout=timeout, **kwargs)

    def pids(self) -> list[int]:
        """Processes running in the host's namespace."""
        return _namespace_pids(self.name)

    def cut(self) -> None:
        """Take the host off the network: its bridge-side link goes down, so its own link
        loses carrier. Packets to and from it are dropped (connections time out, they are not
        refused); established TCP connections survive and resume after ``restore()``."""
        _ip("link", "set", self.peer, "down")
        self.is_cut = True

    def restore(self) -> None:
        """Undo ``cut()``, and wait until the link forwards again."""
        _ip("link", "set", self.peer, "up")
        self.wait_link_up()
        self.is_cut = False

    def wait_link_up(self, timeout: float = SETTLE_S) -> None:
        """Wait until the bridge port forwards and the host's end has carrier."""
        deadline = time.monotonic() + timeout
        while True:
            if self._bridge_port_forwarding() and self._host_link_up():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"link of {self.name} did not come up in {timeout} s")
            time.sleep(0.01)

    def _bridge_port_forwarding(self) -> bool:
        try:
            with open(f"/sys/class/net/{self.peer}/brport/state") as f:
                return f.read().strip() == "3"  # BR_STATE_FORWARDING
        except OSError:
            return False

    def _host_link_up(self) -> bool:
        out = _ip("-n", self.name, "-o", "link", "show", self.veth, check=False).stdout
        return "LOWER_UP" in out and "NO-CARRIER" not in out

    def _reap(self) -> None:
        """Kill (if still running) and wait for the processes started with ``popen``, so that
        none is left a zombie."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                proc.wait(timeout=SETTLE_S)
        self._procs = [p for p in self._procs if p.returncode is None]

    def __repr__(self) -> str:
        return f"Host({self.label}: {self.name} {self.ip}{' cut' if self.is_cut else ''})"


__all__ = [
    "Host",
    "IpError",
    "TestNetwork",
    "available",
    "leftovers",
    "list_links",
    "list_namespaces",
    "remove_stale",
]
