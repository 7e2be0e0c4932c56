"""The ``zactor`` console script: one click group; cluster commands come with the cluster issue."""

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


if __name__ == "__main__":  # pragma: no cover
    cli()
