"""Secure by default (DESIGN promise 5): every TCP connection to a cluster is CURVE-encrypted
and ZAP-authenticated. A peer without the cluster's key, or with the wrong one, gets nothing:
no reply, no task run, no object read; refusals are counted. An authenticated peer's
malformed frames are dropped and counted, and a peer of another version is refused with an
error that names both versions."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

import zactor
import zactor.testing
from zactor._client import CoreClient, HeadUnreachableError
from zactor._version import __version__, peer_versions
from zactor.comm.security import Credentials, read_key_file
from zactor.exceptions import HandshakeRefusedError
from zactor.protocol import VERSION, Msg, encode
from zactor.testing import Cluster


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.connect()
        c.creds = read_key_file(os.path.join(c._state_dir, "cluster.key"))
        c.tcp = "tcp://" + c.address
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def raw_socket(ctx, address: str, creds: Credentials | None):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"d" + os.urandom(8) + b"<")
    if creds is not None:
        creds.make_client(sock)
    sock.connect(address)
    return sock


def hello(info: dict | None = None) -> bytes:
    return encode(Msg.HELLO, "driver", os.getpid(), None,
                  {**peer_versions(), "namespace": "x", **(info or {})})


def replies(sock, wait_s: float) -> list[list[bytes]]:
    got = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if sock.poll(50):
            got.append(sock.recv_multipart())
    return got


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def recorded_submit(tmp_path, name: str) -> tuple[list[bytes], str]:
    """The exact frames a legitimate driver sends to run a task that creates a file (the
    task is not sent): a replay from an unauthenticated peer must not create it."""
    marker = str(tmp_path / name)

    @zactor.remote
    def touch(path):
        with open(path, "w") as f:
            f.write("ran")
        return "ran"

    core = zactor._api.core()
    captured = []
    original = core._send_out

    def record(header, frames):
        captured.append([header, *frames])

    core._send_out = record
    try:
        touch.remote(marker)
    finally:
        core._send_out = original
    submits = [m for m in captured if m[0][1] == Msg.SUBMIT]
    assert len(submits) == 1
    return submits[0], marker


def test_the_head_listens_on_loopback_unless_told(cluster):
    assert cluster.address.startswith("127.0.0.1:")


def test_a_driver_with_the_key_works(cluster, monkeypatch):
    monkeypatch.setenv("ZACTOR_CLUSTER_KEY", cluster.creds.text())
    client = CoreClient(cluster.tcp, "driver", connect_timeout=10, creds=cluster.creds)
    try:
        assert client.request("cluster_resources")["CPU"] == 1.0
    finally:
        client.close(goodbye=(False,))


@pytest.mark.parametrize("keys", ["none", "wrong server key", "wrong client key"])
def test_peers_without_the_key_get_nothing(cluster, ctx, tmp_path, keys):
    other = Credentials.generate()
    creds = {"none": None, "wrong server key": other,
             "wrong client key": Credentials(cluster.creds.server_public,
                                             cluster.creds.server_secret, other.client_public,
                                             other.client_secret)}[keys]
    refused_before = zactor.testing.head_stats()["refused_connections"]
    submit, marker = recorded_submit(tmp_path, "unauthenticated")
    secret = zactor.put(b"secret value")
    sock = raw_socket(ctx, cluster.tcp, creds)
    sock.send(hello())
    sock.send_multipart(submit)
    sock.send(encode(Msg.SUBSCRIBE, [secret.binary()]))
    sock.send(encode(Msg.REQUEST, 1, "cluster_resources", None))
    assert replies(sock, 1.5) == []
    wait_for(lambda: zactor.testing.head_stats()["refused_connections"] > refused_before)
    assert not os.path.exists(marker)
    # The same bytes from a peer with the key do run: the refusal above was the key's doing.
    good = raw_socket(ctx, cluster.tcp, cluster.creds)
    good.send(hello())
    good.send_multipart(submit)
    good.send(encode(Msg.SUBSCRIBE, [secret.binary()]))
    wait_for(lambda: os.path.exists(marker))
    assert any(m[0][1] == Msg.OBJECT for m in replies(good, 1.0))


def test_a_core_client_with_wrong_keys_is_told_why_it_hangs(cluster):
    with pytest.raises(HeadUnreachableError, match="cluster's key"):
        CoreClient(cluster.tcp, "driver", connect_timeout=1.0, creds=Credentials.generate())


def test_malformed_frames_from_an_authenticated_peer_are_dropped_and_counted(cluster, ctx):
    before = zactor.testing.head_stats()["dropped_messages"]
    sock = raw_socket(ctx, cluster.tcp, cluster.creds)
    sock.send(hello())
    assert replies(sock, 0.5)  # WELCOME
    sock.send(bytes((VERSION, Msg.SUBMIT)) + b"\xc1\xc1 not msgpack")
    sock.send(b"\x02")
    sock.send(bytes((VERSION, 250)) + msgpack.packb([]))
    sock.send(encode(Msg.SUBMIT, ["not", "a", "spec"]))
    wait_for(lambda: zactor.testing.head_stats()["dropped_messages"] >= before + 4)
    sock.send(encode(Msg.REQUEST, 7, "cluster_resources", None))
    answer = replies(sock, 1.0)
    assert answer and answer[0][0][1] == Msg.REPLY


PYTHON = ".".join(map(str, sys.version_info[:3]))


@pytest.mark.parametrize("info, protocol, named, mine", [
    ({"zactor_version": "0.0.0-other"}, VERSION, "zactor 0.0.0-other", f"zactor {__version__}"),
    ({}, 1, "(protocol 1)", f"(protocol {VERSION})"),
    ({"python": "3.2.1"}, VERSION, "Python 3.2.1", f"Python {PYTHON}"),
])
def test_a_peer_of_another_version_is_refused_naming_both(cluster, ctx, info, protocol,
                                                          named, mine):
    sock = raw_socket(ctx, cluster.tcp, cluster.creds)
    frame = bytearray(hello(info))
    frame[0] = protocol
    sock.send(bytes(frame))
    answer = replies(sock, 1.0)
    assert len(answer) == 1 and answer[0][0][0] == 0  # a refusal, readable by any version
    text = answer[0][0][1:].decode()
    assert named in text and mine in text


def test_a_different_python_patch_release_is_accepted(cluster, ctx):
    major, minor = sys.version_info[:2]
    sock = raw_socket(ctx, cluster.tcp, cluster.creds)
    sock.send(hello({"python": f"{major}.{minor}.999"}))
    answer = replies(sock, 1.0)
    assert answer and answer[0][0][1] == Msg.WELCOME


def test_core_client_raises_the_refusal(cluster, monkeypatch):
    monkeypatch.setattr("zactor._client.peer_versions",
                        lambda: {**peer_versions(), "zactor_version": "9.9.9"})
    with pytest.raises(HandshakeRefusedError, match="9.9.9"):
        CoreClient(cluster.tcp, "driver", connect_timeout=5, creds=cluster.creds)


def test_insecure_is_explicit_and_loud(tmp_path):
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "zactor_cli.main", "head", "--port", "0",
                             "--num-cpus", "0", "--state-dir", str(state), "--insecure"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        ready = state / "head.ready"
        wait_for(lambda: ready.exists() or proc.poll() is not None, 30)
        text = ready.read_text()
        assert "WARNING: --insecure" in text and "neither encrypted nor authenticated" in text
        assert not (state / "cluster.key").exists()
        address = next(w for w in text.split() if w.startswith("tcp://"))
        out = subprocess.run([sys.executable, "-m", "zactor_cli.main", "status", "--address",
                              address], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ZACTOR_CLUSTER_KEY": "insecure"})
        assert out.returncode == 0, out.stderr
        assert "INSECURE" in out.stdout
    finally:
        proc.terminate()
        proc.wait(30)
