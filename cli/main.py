"""The ``zactor`` console script: one click group."""

from __future__ import annotations

import click

from zactor._version import __version__


@click.group()
@click.version_option(__version__, prog_name="zactor")
def cli() -> None:
    """zactor: distributed tasks and actors on ZeroMQ."""


@cli.command()
@click.option("--num-cpus", type=int, default=None, help="Workers to start (default: one per CPU).")
def demo(num_cpus: int | None) -> None:
    """Run a small demo (Monte Carlo pi, tasks and an actor) on a local cluster."""
    import zactor

    zactor.init(num_cpus=num_cpus)
    try:
        from zactor_cli import _demo

        _demo.run()
    finally:
        zactor.shutdown()


@cli.command()
@click.option("--address", default="auto", show_default=True,
              help="The cluster's address; 'auto' finds this user's newest local cluster.")
@click.option("--group-by", type=click.Choice(["node", "owner"]), default="node",
              show_default=True, help="Group the objects by node or by the process that "
              "made them.")
@click.option("--limit", type=int, default=None, help="Show at most this many per group.")
@click.option("--json", "as_json", is_flag=True, help="Print the objects as JSON instead.")
def memory(address: str, group_by: str, limit: int | None, as_json: bool) -> None:
    """Show the objects of a running cluster: size, where they are, who references them."""
    from zactor.util import state

    try:
        if as_json:
            import json

            click.echo(json.dumps({"objects": state.list_objects(address, limit=limit),
                                   "nodes": state.summarize_objects(address)}, indent=1))
        else:
            click.echo(state.memory_summary(address, group_by=group_by, limit=limit))
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from exc


from zactor_cli import cluster as _cluster  # noqa: E402
from zactor_cli import jobs as _jobs  # noqa: E402
from zactor_cli import logs as _logs  # noqa: E402
from zactor_cli import serve as _serve  # noqa: E402
from zactor_cli import state as _state_cli  # noqa: E402

for _command in (_cluster.head, _cluster.worker, _cluster.status, _cluster.stop, _jobs.job,
                 _serve.serve, *_state_cli.COMMANDS, *_logs.COMMANDS):
    cli.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    cli()
