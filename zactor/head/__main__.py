"""``python -m zactor.head CONFIG_JSON``: run a head and, embedded, this machine's node agent."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from zactor import _process


def _stop(signum, frame):  # noqa: ARG001
    raise SystemExit(0)


def run_head(cfg: dict, on_ready=None) -> None:
    """Run a head (and, embedded, this machine's node agent) until it is stopped.
    ``on_ready(broker)`` is called once it listens."""
    _process.set_process_name("zactor-head")
    signal.signal(signal.SIGTERM, _stop)
    os.makedirs(cfg["shm_dir"], mode=0o700, exist_ok=True)
    agent = None
    if cfg.get("local_node"):
        import gc

        import zactor.worker.main  # noqa: F401 - loaded once here, shared by every fork below
        from zactor.node.agent import NodeAgent

        gc.collect()
        gc.freeze()  # keeps the collector from writing to (and so un-sharing) those pages
        agent = NodeAgent(cfg)  # forks the zygote: before this process starts ZeroMQ
    from zactor.head.broker import Broker

    try:
        broker = Broker(cfg, agent)
    except BaseException:
        if agent is not None:
            agent.shutdown()  # its workers, its store
        for key in ("session_dir", "shm_dir"):
            if cfg.get(key):
                _process.remove_tree(cfg[key])
        raise
    profile_to = os.environ.get("ZACTOR_PROFILE_HEAD")  # a developer's tool: cProfile output
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        if on_ready is not None:
            on_ready(broker)
        broker.run()
    except SystemExit:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        broker.shutdown()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        level=cfg.get("log_level", logging.WARNING),
        format="(zactor head pid=%(process)d) %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_head(cfg)


if __name__ == "__main__":
    main()
