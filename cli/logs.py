"""``zactor logs``: Ray's log CLI (``ray logs``) over zactor.util.state's list_logs and
get_log — the output of a worker, an actor or a task, read from its node's log files::

    zactor logs                          the head node's log files, as a table
    zactor logs 'worker-12*'             the one file that matches: its last lines
    zactor logs actor --id ID -f         an actor's lines, then new ones as they come
    zactor logs task --id ID --tail 50   a task's last 50 lines
    zactor logs worker --pid PID [--node-id NODE]
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator

import click
from zactor_cli.state import _address

#: Ray's default for ``ray logs --tail``.
DEFAULT_TAIL = 1000
_ERRORS = (ConnectionError, ValueError, TimeoutError)


class _LogsGroup(click.Group):
    """``zactor logs [GLOB]`` means ``zactor logs cluster [GLOB]``, as in Ray."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] != "--help"):
            args = ["cluster", *args]
        return super().parse_args(ctx, args)


def _reading(fn: Callable) -> Callable:
    """The options every ``zactor logs`` command takes."""
    for option in reversed([
        click.option("--follow", "-f", is_flag=True,
                     help="Keep printing new lines as they are written (until Ctrl-C, or "
                     "until the task, actor or worker has ended)."),
        click.option("--tail", type=int, default=DEFAULT_TAIL, show_default=True,
                     help="Print only the last so many lines (-1: all of them)."),
        click.option("--interval", type=float, default=None,
                     help="Seconds between reads when following (default 0.5)."),
        click.option("--timeout", type=int, default=30, show_default=True,
                     help="Seconds to wait for each answer of the cluster."),
        _address,
    ]):
        fn = option(fn)
    return fn


def _node_options(fn: Callable) -> Callable:
    fn = click.option("--node-ip", default=None, help="The node, by its address.")(fn)
    return click.option("--node-id", default=None,
                        help="The node (its id, or the start of it; default: the head's "
                        "node).")(fn)


def _print(lines: Iterator[str]) -> None:
    """Print each line as it comes (a followed log: at once); Ctrl-C or SIGTERM end it
    quietly, closing the connection to the cluster on the way out."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        with contextlib.closing(lines):
            for line in lines:
                click.echo(line)
    except KeyboardInterrupt:
        pass
    except _ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=_LogsGroup)
def logs() -> None:
    """Print the output of a worker, an actor or a task, kept in its node's log files
    (one file per worker: its stdout and stderr). Without a subcommand: the log files of
    a node, or the one that a glob names."""


@logs.command("cluster")
@click.argument("glob", required=False)
@_node_options
@_reading
def cluster(glob: str | None, node_id: str | None, node_ip: str | None, follow: bool,
            tail: int, interval: float | None, timeout: int, address: str | None) -> None:
    """The log files of a node (the head's, unless --node-id or --node-ip): a table of
    those matching GLOB; the file itself when exactly one matches."""
    from zactor._tables import human_bytes, table
    from zactor.util import state

    session = None
    try:
        session = state._Session(address, timeout)
        node = state._node_id(session, node_id, node_ip)
        files = state._log_files(session, node, glob)
    except _ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if session is not None:
            session.close()
    where = f"node {node[:12]}" if node else "the head's node"
    if glob and not files:
        raise click.ClickException(f"no log file matches {glob!r} on {where}")
    if glob and len(files) == 1:
        _print(state.get_log(address=address, node_id=node, filename=files[0]["filename"],
                             tail=tail, follow=follow, timeout=timeout, _interval=interval))
        return
    rows = [[f["filename"], human_bytes(f["size"]),
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["mtime"]))] for f in files]
    click.echo(f"Log files of {where}:")
    click.echo(table(["FILE", "SIZE", "MODIFIED"], rows, right={1}))


@logs.command("actor")
@click.option("--id", "actor_id", required=True, help="The actor's id (hex).")
@_reading
def actor(actor_id: str, follow: bool, tail: int, interval: float | None, timeout: int,
          address: str | None) -> None:
    """An actor's output (its constructor's and its methods'), from the worker that hosts
    it (or hosted it last)."""
    from zactor.util import state

    _print(state.get_log(address=address, actor_id=actor_id, tail=tail, follow=follow,
                         timeout=timeout, _interval=interval))


@logs.command("task")
@click.option("--id", "task_id", required=True, help="The task's id (hex).")
@_reading
def task(task_id: str, follow: bool, tail: int, interval: float | None, timeout: int,
         address: str | None) -> None:
    """A task's output (its latest attempt's), cut out of the log of the worker that ran
    it."""
    from zactor.util import state

    _print(state.get_log(address=address, task_id=task_id, tail=tail, follow=follow,
                         timeout=timeout, _interval=interval))


@logs.command("worker")
@click.option("--pid", type=int, required=True, help="The worker's process id.")
@_node_options
@_reading
def worker(pid: int, node_id: str | None, node_ip: str | None, follow: bool, tail: int,
           interval: float | None, timeout: int, address: str | None) -> None:
    """A worker's whole log file: its stdout and stderr, with the marker lines that say
    which task or actor wrote what."""
    from zactor.util import state

    _print(state.get_log(address=address, node_id=node_id, node_ip=node_ip, pid=pid,
                         tail=tail, follow=follow, timeout=timeout, _interval=interval))


COMMANDS = (logs,)
