"""``zactor serve run|status|shutdown``: Ray Serve's CLI. ``serve run`` takes an import
path (``module:app``) or a config file in Ray's ``serve build`` format (http_options, and
applications with their import paths, route prefixes and deployments' options)."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Any

import click

_ADDRESS = click.option("--address", default=None,
                        help="The cluster to use (default: ZACTOR_ADDRESS; for `run`, else a "
                             "new local cluster; else this user's newest cluster).")


def _connect(address: str | None, start_local: bool = False) -> None:
    import zactor

    address = address or os.environ.get("ZACTOR_ADDRESS")
    try:
        if address is None and start_local:
            zactor.init()
        else:
            zactor.init(address=address or "auto")
    except (ConnectionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _import(path: str) -> Any:
    """``module:attr`` (or ``module.attr``)."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise click.UsageError(f"an import path looks like module:app, got {path!r}")
    try:
        target = importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(f"cannot import {module!r}: {exc}") from exc
    _by_value(target)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.ClickException(f"{module!r} has no attribute {attr!r}") from None
    return target


def _by_value(module: Any) -> None:
    """A module of the app directory is not importable on the cluster's workers: its code
    travels with the deployments, pickled by value (cloudpickle's own switch for this)."""
    import cloudpickle

    top = sys.modules[module.__name__.partition(".")[0]]
    where = os.path.abspath(getattr(top, "__file__", None) or "")
    if where.startswith(os.path.abspath(sys.path[0]) + os.sep):
        cloudpickle.register_pickle_by_value(top)


def _application(path: str, args: dict | None = None) -> Any:
    from zactor import serve

    target = _import(path)
    if isinstance(target, serve.Deployment):
        return target.bind()
    if isinstance(target, serve.Application):
        return target
    if callable(target):  # an application builder, called with the config's args
        app = target(args or {})
        if isinstance(app, serve.Application):
            return app
    raise click.ClickException(f"{path!r} is not a serve Application (Deployment.bind(...)) "
                               "nor a function that returns one")


def _override(app: Any, deployments: list[dict]) -> None:
    """Apply a config's per-deployment options to the bound graph, by deployment name."""
    by_name = {}
    for entry in deployments or ():
        entry = dict(entry)
        name = entry.pop("name", None)
        if not name:
            raise click.ClickException("every entry under `deployments` needs a name")
        by_name[name] = entry
    nodes = {node.deployment.name: node for node in app._graph()}
    unknown = set(by_name) - set(nodes)
    if unknown:
        raise click.ClickException(f"the config names deployment(s) {sorted(unknown)} that the "
                                   f"application does not have (it has {sorted(nodes)})")
    for name, options in by_name.items():
        try:
            nodes[name]._deployment = nodes[name].deployment.options(**options)
        except (TypeError, ValueError) as exc:
            raise click.ClickException(f"deployment {name!r}: {exc}") from exc


def _read_config(path: str) -> dict:
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
        raise click.ClickException(f"{path}: a serve config has a list of `applications`")
    return config


@click.group()
def serve() -> None:
    """Serve applications: deploy, look at and shut down."""


@serve.command()
@click.argument("config_or_import_path")
@_ADDRESS
@click.option("--host", default=None, help="The HTTP proxy's host (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="The HTTP proxy's port (default 8000).")
@click.option("--name", default="default", show_default=True,
              help="The application's name (with an import path).")
@click.option("--route-prefix", default="/", show_default=True,
              help="The application's route prefix (with an import path).")
@click.option("--app-dir", "-d", default=".", show_default=True,
              help="Where the application's modules are imported from.")
@click.option("--non-blocking", is_flag=True,
              help="Return once deployed (the cluster keeps the applications).")
def run(config_or_import_path: str, address: str | None, host: str | None, port: int | None,
        name: str, route_prefix: str, app_dir: str, non_blocking: bool) -> None:
    """Deploy an application (module:app) or a config file's applications; wait, serving,
    until interrupted (Ctrl-C), then shut Serve down."""
    import zactor
    from zactor import serve as zserve

    sys.path.insert(0, os.path.abspath(app_dir))
    is_config = config_or_import_path.endswith((".yaml", ".yml", ".json"))
    config = _read_config(config_or_import_path) if is_config else {
        "applications": [{"name": name, "route_prefix": route_prefix,
                          "import_path": config_or_import_path}]}
    http = dict(config.get("http_options") or {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    apps = []
    for entry in config["applications"]:
        if "import_path" not in entry:
            raise click.ClickException("every application needs an import_path")
        app = _application(entry["import_path"], entry.get("args"))
        _override(app, entry.get("deployments"))
        apps.append((entry.get("name", "default"), entry.get("route_prefix", "/"), app))
    _connect(address, start_local=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        zserve.start(http_options=http)
        for app_name, prefix, app in apps:
            zserve.run(app, name=app_name, route_prefix=prefix)
            click.echo(f"Deployed application {app_name!r} at route prefix {prefix!r}.")
        http_options = zserve.HTTPOptions.parse(http)
        click.echo(f"Serving at http://{http_options.host}:{http_options.port}", err=True)
        if non_blocking:
            return
        stop.wait()
        click.echo("Shutting down Serve.", err=True)
        zserve.shutdown()
    except Exception as exc:  # noqa: BLE001 - say what failed, in one line
        raise click.ClickException(str(exc)) from exc
    finally:
        zactor.shutdown()


@serve.command()
@_ADDRESS
def status(address: str | None) -> None:
    """Print the applications' and deployments' status (YAML, Ray's shape)."""
    import yaml

    import zactor
    from zactor import serve as zserve

    _connect(address)
    try:
        click.echo(yaml.safe_dump(zserve.status().to_dict(), sort_keys=False), nl=False)
    finally:
        zactor.shutdown()


@serve.command()
@_ADDRESS
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def shutdown(address: str | None, yes: bool) -> None:
    """Delete every application and stop Serve on the cluster."""
    import zactor
    from zactor import serve as zserve

    if not yes:
        click.confirm("This will shut down Serve on the cluster, deleting every application. "
                      "Continue?", abort=True)
    _connect(address)
    try:
        zserve.shutdown()
        click.echo("Serve is shut down.")
    finally:
        zactor.shutdown()
