"""The node agent main loop.

    head ROUTER ◄── DEALER ── agent ──pipe──► zygote ──fork──► workers
                               │  ◄──pipe──  (started / exit PID CODE SIG)
                               └─ owns /dev/shm/zactor-<session>/ (FREE unlinks, exit removes)

It registers the node's resources, asks the zygote for workers when the head says SPAWN,
reports each worker's death at once (the zygote reaps it: no polling, no timeout), kills
workers on request and removes object files the head frees. It dies with the head
(PDEATHSIG) and takes its zygote and workers with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket

import psutil
import zmq

from zactor import _process
from zactor.node.zygote import start_zygote
from zactor.protocol import Msg, ProtocolError, decode, encode

log = logging.getLogger(__name__)


def node_resources(cfg: dict) -> dict:
    res: dict[str, float] = {"CPU": float(cfg["num_cpus"])}
    if cfg.get("num_gpus"):
        res["GPU"] = float(cfg["num_gpus"])
    mem = psutil.virtual_memory().total
    res["memory"] = float(int(mem * 0.7))
    res["object_store_memory"] = float(cfg.get("object_store_memory") or int(mem * 0.3))
    res["node:127.0.0.1"] = 1.0
    res["node:__internal_head__"] = 1.0
    for k, v in (cfg.get("resources") or {}).items():
        res[k] = float(v)
    return res


def _stop(signum, frame):  # noqa: ARG001
    raise SystemExit(0)


def agent_main(cfg: dict) -> int:
    _process.set_process_name("zactor-agent")
    signal.signal(signal.SIGTERM, _stop)
    node_id = bytes.fromhex(cfg["node_id"])
    worker_cfg = {"address": cfg["address"], "node_id": cfg["node_id"],
                  "shm_dir": cfg["shm_dir"], "log_level": cfg.get("log_level", 30)}
    zygote = start_zygote(worker_cfg)  # before ZeroMQ: fork only a single-threaded process
    workers: set[int] = set()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, b"N" + node_id)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.connect(cfg["address"])
    info = {"pid": os.getpid(), "shm_dir": cfg["shm_dir"], "ip": "127.0.0.1",
            "hostname": socket.gethostname(), "zygote_pid": zygote.pid}
    sock.send(encode(Msg.NODE_HELLO, node_id, node_resources(cfg), info))
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(zygote.evt_r, zmq.POLLIN)
    try:
        while True:
            for what, _ in poller.poll():
                if what is sock:
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if not _on_head_message(frames, zygote, workers):
                            return 0
                else:
                    events = zygote.read_events()
                    if events is None:
                        log.error("the zygote died; the node agent stops")
                        return 1
                    for ev in events:
                        if ev[0] == "started":
                            workers.add(int(ev[1]))
                        elif ev[0] == "exit":
                            pid = int(ev[1])
                            workers.discard(pid)
                            sock.send(encode(Msg.WORKER_EXIT, pid, int(ev[2]), int(ev[3])))
    finally:
        _cleanup(zygote, workers, cfg["shm_dir"])
        sock.close(linger=200)
        ctx.term()


def _on_head_message(frames: list, zygote, workers: set[int]) -> bool:
    try:
        mtype, fields = decode(frames[0])
    except ProtocolError as exc:
        log.warning("agent dropped a malformed message: %s", exc)
        return True
    if mtype == Msg.SPAWN:
        zygote.spawn(int(fields[0]))
    elif mtype == Msg.KILL_WORKER:
        pid, sig = fields
        if pid in workers:
            _process.kill(pid, sig)
    elif mtype == Msg.FREE:
        for path in fields[0]:
            try:
                os.unlink(path)
            except OSError:
                pass
    elif mtype == Msg.SHUTDOWN:
        return False
    return True


def _cleanup(zygote, workers: set[int], shm_dir: str) -> None:
    for pid in workers:
        _process.kill(pid)
    zygote.quit()  # it SIGKILLs and reaps every worker it forked, then exits
    try:
        os.waitpid(zygote.pid, 0)
    except ChildProcessError:
        pass
    shutil.rmtree(shm_dir, ignore_errors=True)
