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
        # the direct-call messages: a notice with a bad spec, and a call sent to the head
        [bytes([version, int(Msg.CALLED)]) + msgpack.packb([[0] * 17, 5]), b"args"],
        [bytes([version, int(Msg.CALL)]) + msgpack.packb([[0] * 17]), b"args"],
    ]


def send_all(messages: list[list[bytes]], address: str | None = None) -> None:
    """Send raw ``messages`` from a fresh DEALER to the head (or another ``address``)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 2000)
    try:
        sock.connect(address or zactor.testing.head_address())
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


@pytest.mark.timeout(60)
def test_an_actors_own_socket_drops_malformed_direct_calls():
    from zactor import _api
    from zactor._args import pack_args

    @zactor.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def value(self):
            return self.n

    counter = Counter.remote()
    assert zactor.get(counter.incr.remote(), timeout=30) == 1
    address = _api.core().routes.active[counter._actor_id][0]
    other_actor = b"\x01" * 16
    spec = [b"\x02" * 16, 2, "Counter.incr", None, 1, {}, None, False, [], [], [],
            other_actor, "incr", None, False, None, False]
    messages = garbage_messages() + [
        [bytes([VERSION, int(Msg.CALL)]) + msgpack.packb([spec]), b"args"],  # another actor's
        [bytes([VERSION, int(Msg.CALL)]) + msgpack.packb([[1, 2]]), b"args"],  # a short spec
        [bytes([VERSION, int(Msg.CALL)]) + msgpack.packb([None]), b"args"],
    ]
    # Then a valid call on the same connection: once it has run, so has all of the above. Its
    # sender cannot be answered and is no client of the head, which drops the result.
    valid = list(spec)
    valid[11] = counter._actor_id
    valid[0] = b"\x03" * 16
    args_blob = pack_args((), {}, "test")[0].to_blob()
    messages.append([bytes([VERSION, int(Msg.CALL)]) + msgpack.packb([valid]), args_blob])
    send_all(messages, address)
    wait_until(lambda: zactor.get(counter.value.remote(), timeout=30) == 2,
               message="the actor ran the valid call behind the malformed ones")
    assert zactor.testing.head_stats()["early_results"] == 0
    # The actor, its state and its direct route are intact.
    assert [zactor.get(counter.incr.remote(), timeout=30) for _ in range(3)] == [3, 4, 5]
    assert counter._actor_id in _api.core().routes.active
