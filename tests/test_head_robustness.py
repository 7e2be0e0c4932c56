"""The head drops malformed messages, counts them, and keeps serving the cluster."""

from __future__ import annotations

import os
import random

import msgpack
import pytest
import zmq
from remote_helpers import wait_until

import zactor
import zactor.testing
from zactor.protocol import VERSION, Msg

pytestmark = pytest.mark.usefixtures("cluster")


@zactor.remote
def square(x):
    return x * x


def garbage_messages() -> list[list[bytes]]:
    """Malformed messages: the header frame is version byte, type byte, msgpack field list."""
    version, submit, subscribe = VERSION, int(Msg.SUBMIT), int(Msg.SUBSCRIBE)
    wrong_version = (version + 77) % 256
    rng = random.Random(1234)
    return [
        [b""],  # empty frame
        [b"", b"", b""],  # several empty frames
        [os.urandom(64)],  # random bytes
        [bytes([version])],  # too short for a header
        [bytes([wrong_version, subscribe]) + msgpack.packb([[]])],  # wrong version byte
        [bytes([wrong_version, submit]) + msgpack.packb([[0] * 17]), b"args"],
        [bytes([version, 250]) + msgpack.packb([])],  # unknown message type
        # valid-looking headers with the wrong number of fields
        [bytes([version, submit]) + msgpack.packb([]), b"args"],
        [bytes([version, submit]) + msgpack.packb([1, 2, 3]), b"args"],
        [bytes([version, subscribe]) + msgpack.packb([[], [], []])],
        [bytes([version, int(Msg.CANCEL)]) + msgpack.packb([b"x"])],
        [bytes([version, submit]) + msgpack.packb({"spec": 1})],  # a map, not a list
        [bytes([version, subscribe]) + b"\xc1\xc1\xc1"],  # undecodable msgpack
        # a well-formed SUBMIT whose spec is nonsense, from a peer that never said HELLO
        [bytes([version, submit]) + msgpack.packb([[0] * 3]), b"args"],
        [bytes(rng.getrandbits(8) for _ in range(17)), b"\x00" * 9, os.urandom(300)],
    ]


def send_all(messages: list[list[bytes]]) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 2000)
    try:
        sock.connect(zactor.testing.head_address())
        for frames in messages:
            sock.send_multipart(frames)
    finally:
        sock.close()
        ctx.term()


def dropped() -> int:
    return int(zactor.testing.head_stats()["dropped_messages"])


@pytest.mark.timeout(60)
def test_head_counts_and_drops_malformed_messages_and_keeps_running_tasks():
    assert zactor.get(square.remote(3)) == 9
    before = dropped()
    messages = garbage_messages()
    send_all(messages)
    wait_until(lambda: dropped() >= before + len(messages), timeout=20,
               message=f"{len(messages)} more dropped messages")
    assert dropped() >= before + len(messages)
    assert zactor.get([square.remote(i) for i in range(10)], timeout=30) == \
        [i * i for i in range(10)]


@pytest.mark.timeout(60)
def test_head_survives_a_flood_of_random_messages():
    before = dropped()
    flood = [[os.urandom(random.randint(1, 512)) for _ in range(random.randint(1, 4))]
             for _ in range(500)]
    send_all(flood)
    wait_until(lambda: dropped() >= before + len(flood), timeout=30,
               message="the flood to be counted as dropped")
    assert zactor.get([square.remote(i) for i in range(20)], timeout=30) == \
        [i * i for i in range(20)]
    actor_cls = zactor.remote(type("Echo", (), {"echo": lambda self, x: x}))
    echo = actor_cls.remote()
    assert zactor.get(echo.echo.remote("still alive"), timeout=30) == "still alive"


def test_head_stats_reports_dropped_messages_as_a_number():
    stats = zactor.testing.head_stats()
    assert isinstance(stats, dict)
    assert isinstance(stats["dropped_messages"], int) and stats["dropped_messages"] >= 0
