"""``python -m zactor.head CONFIG_JSON``: run a head (and, embedded, its local node agent)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from zactor import _process


def _stop(signum, frame):  # noqa: ARG001
    raise SystemExit(0)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        level=cfg.get("log_level", logging.WARNING),
        format="(zactor head pid=%(process)d) %(levelname)s %(name)s: %(message)s",
    )
    _process.set_process_name("zactor-head")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.makedirs(cfg["shm_dir"], mode=0o700, exist_ok=True)
    agent_pid = None
    if cfg.get("local_node"):
        from zactor.node.agent import agent_main

        # Fork before this process starts ZeroMQ: the agent must not inherit its threads.
        agent_pid = _process.fork_child(agent_main, cfg, pdeathsig=signal.SIGTERM)
    from zactor.head.broker import Broker

    broker = Broker(cfg, agent_pid)
    try:
        broker.run()
    except SystemExit:
        pass
    finally:
        broker.shutdown()


if __name__ == "__main__":
    main()
