"""``zactor list``, ``zactor summary`` and ``zactor timeline``: Ray's state CLI
(``ray list tasks``, ``ray summary tasks``, ``ray timeline``) over zactor.util.state."""

from __future__ import annotations

import json
from typing import Any

import click

#: The columns of each resource's table (all fields are in --format json/yaml).
COLUMNS = {
    "nodes": ["node_id", "node_ip", "is_head_node", "state", "resources_total"],
    "actors": ["actor_id", "class_name", "name", "state", "pid", "node_id", "num_restarts"],
    "tasks": ["task_id", "attempt_number", "name", "state", "type", "node_id", "worker_pid",
              "error_type"],
    "objects": ["object_id", "size", "where", "status", "owner", "node"],
    "jobs": ["job_id", "submission_id", "type", "status", "entrypoint"],
    "placement-groups": ["placement_group_id", "name", "state", "strategy", "bundles"],
    "workers": ["worker_id", "worker_type", "pid", "node_id", "actor_id", "task_id"],
}
#: Columns of ids, shortened in tables (as `zactor status` shortens node ids).
SHORT = {"node_id", "node", "worker_id"}

_address = click.option("--address", default=None,
                        help="The cluster's address (default: ZACTOR_ADDRESS, else this "
                        "user's newest cluster on this machine).")


def parse_filter(text: str) -> tuple[str, str, str]:
    """``"state=RUNNING"`` or ``"name!=f"`` as Ray's (key, predicate, value)."""
    for op in ("!=", "="):
        key, found, value = text.partition(op)
        if found and key.strip():
            return key.strip(), op, value.strip()
    raise click.BadParameter(f"{text!r}: a filter is KEY=VALUE or KEY!=VALUE")


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(k, v)}" for k, v in value.items()
                         if not str(k).startswith("node:")) or "-"
    if isinstance(value, list):
        return f"{len(value)}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text[:12] if key in SHORT else text


def render(rows: list[dict], columns: list[str], fmt: str) -> str:
    """``rows`` as an aligned table, JSON or YAML."""
    if fmt == "json":
        return json.dumps([dict(r) for r in rows], indent=1, default=str)
    if fmt == "yaml":
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML comes with the extras
            raise click.ClickException("--format yaml needs PyYAML (pip install pyyaml)") \
                from exc
        return yaml.safe_dump([json.loads(json.dumps(dict(r), default=str)) for r in rows],
                              sort_keys=False).rstrip()
    from zactor._tables import table

    return table([c.upper() for c in columns],
                 [[_cell(c, r.get(c)) for c in columns] for r in rows])


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.command("list")
@click.argument("resource", type=click.Choice(list(COLUMNS)))
@click.option("--filter", "-f", "filters", multiple=True,
              help='A filter such as "state=RUNNING" or "name!=f" (repeatable; values '
              "compare case-insensitively, as in Ray).")
@click.option("--limit", type=int, default=100, show_default=True,
              help="List at most this many.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]),
              default="table", show_default=True)
@click.option("--detail", is_flag=True, help="Accepted for Ray's sake (every field is kept).")
@_address
def list_command(resource: str, filters: tuple[str, ...], limit: int, fmt: str, detail: bool,
                 address: str | None) -> None:
    """List the nodes, actors, tasks, objects, jobs, placement groups or workers of a
    running cluster (tasks: the live ones, then the recent finished ones)."""
    from zactor.util import state

    parsed = [parse_filter(f) for f in filters]
    try:
        if resource == "objects":
            rows = state.list_objects(address, parsed, limit=limit)
        else:
            rows = getattr(state, f"list_{resource.replace('-', '_')}")(
                address=address, filters=parsed, limit=limit)
    except (ConnectionError, ValueError, TimeoutError) as exc:
        raise _fail(exc) from exc
    click.echo(render(rows, COLUMNS[resource], fmt))
    if fmt == "table" and len(rows) == limit:
        click.echo(f"(the first {limit}: --limit shows more)", err=True)


@click.command()
@click.argument("resource", type=click.Choice(["tasks", "actors"]))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]),
              default="table", show_default=True)
@_address
def summary(resource: str, fmt: str, address: str | None) -> None:
    """Count the tasks (by function) or actors (by class) of a running cluster by state."""
    from zactor.util import state

    try:
        report = (state.summarize_tasks if resource == "tasks" else state.summarize_actors)(
            address=address)
    except (ConnectionError, ValueError, TimeoutError) as exc:
        raise _fail(exc) from exc
    if fmt != "table":
        click.echo(render([report], [], fmt) if fmt == "yaml" else json.dumps(report, indent=1))
        return
    cluster = report["cluster"]
    groups = list(cluster["summary"].values())
    key = "func_or_class_name" if resource == "tasks" else "class_name"
    states = sorted({s for g in groups for s in g["state_counts"]})
    rows = [[g[key], *([g["type"]] if resource == "tasks" else []),
             *(g["state_counts"].get(s, 0) for s in states)] for g in groups]
    headers = ["NAME" if resource == "tasks" else "CLASS_NAME",
               *(["TYPE"] if resource == "tasks" else []), *states]
    from zactor._tables import table

    first = 2 if resource == "tasks" else 1
    if resource == "tasks":
        click.echo(f"{cluster['total_tasks']} task(s), {cluster['total_actor_tasks']} of them "
                   f"actor calls, {cluster['total_actor_scheduled']} actor creation(s)")
    else:
        click.echo(f"{cluster['total_actors']} actor(s)")
    click.echo(table(headers, rows, right=set(range(first, first + len(states)))))


@click.command()
@click.option("--output", "-o", default=None,
              help="Where to write the trace (default: zactor-timeline-<time>.json here).")
@_address
def timeline(output: str | None, address: str | None) -> None:
    """Write the recent finished tasks as a Chrome trace: open it in chrome://tracing or
    ui.perfetto.dev (one row per worker, one row group per node)."""
    import time

    from zactor.util import state

    path = output or time.strftime("zactor-timeline-%Y%m%d-%H%M%S.json")
    try:
        events = state.chrome_trace(address)
    except (ConnectionError, ValueError, TimeoutError) as exc:
        raise _fail(exc) from exc
    with open(path, "w") as f:
        json.dump(events, f)
    tasks = sum(1 for e in events if e["ph"] == "X")
    click.echo(f"Wrote {tasks} task(s) to {path}: open it in chrome://tracing or "
               "https://ui.perfetto.dev")


COMMANDS = (list_command, summary, timeline)
