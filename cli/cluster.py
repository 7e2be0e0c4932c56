"""``zactor head``, ``zactor worker``, ``zactor status``, ``zactor stop``: a cluster of
machines (DESIGN §7)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import click

from zactor import config


def _resources(value: str | None) -> dict:
    if not value:
        return {}
    try:
        res = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(res, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v >= 0
            for k, v in res.items()):
        raise click.BadParameter('expected a JSON object of non-negative numbers, '
                                 'e.g. \'{"accelerator": 2}\'')
    return res


def _daemonize(argv: list[str], log_path: str, ready: str, timeout: float = 60.0) -> int:
    """Run this command again in the background (a session of its own, output to
    ``log_path``); return its pid once ``ready`` (a file it writes) exists."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zactor_cli.main", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if proc.poll() is not None:
            raise click.ClickException(f"it exited with code {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"it did not start within {timeout:.0f} s; see "
                                       f"{log_path}")
        time.sleep(0.05)
    return proc.pid


def _logging(level: str) -> int:
    lvl = getattr(logging, level.upper())
    logging.basicConfig(level=lvl, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return lvl


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the head's only port). Give this machine's "
                   "address, or 0.0.0.0, for workers on other machines to reach it.")
@click.option("--port", type=int, default=config.DEFAULT_PORT, show_default=True,
              help="TCP port (0: any free port).")
@click.option("--num-cpus", type=int, default=None, help="CPUs of this node (default: all).")
@click.option("--num-gpus", type=int, default=None, help="GPUs of this node (default: found).")
@click.option("--resources", default=None, help='Custom resources, JSON: \'{"disk": 2}\'.')
@click.option("--object-store-memory", type=int, default=None,
              help="Bytes of shared memory for objects on this node.")
@click.option("--state-dir", default=None,
              help="Where the head keeps its key and control state "
                   "(default: ~/.zactor/head-PORT).")
@click.option("--insecure", is_flag=True,
              help="No encryption, no authentication: anyone who reaches the port can run "
                   "code. For trusted, isolated networks only.")
@click.option("--daemon", is_flag=True, help="Run in the background (pid file in the "
              "state directory).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--autoscaling-config", default=None, type=click.Path(dir_okay=False),
              help="Grow and shrink the cluster as this YAML file says (Ray's format).")
@click.option("--include-dashboard/--no-include-dashboard", default=None,
              help="Serve the dashboard and /metrics (default: when the dashboard extra "
                   "is installed).")
@click.option("--dashboard-host", default=config.DASHBOARD_HOST, show_default=True,
              help="Address the dashboard listens on. Every request needs the token "
                   "derived from the cluster key (the URL zactor status prints has it).")
@click.option("--dashboard-port", type=int, default=None,
              help=f"The dashboard's port (default: {config.DASHBOARD_PORT}, or the next "
                   "free one).")
def head(host, port, num_cpus, num_gpus, resources, object_store_memory, state_dir,
         insecure, daemon, log_level, autoscaling_config, include_dashboard, dashboard_host,
         dashboard_port) -> None:
    """Start a cluster's head, with a node agent for this machine."""
    from zactor import _registry, _session, dashboard
    from zactor.head.__main__ import run_head

    res = _resources(resources)
    autoscaling = None
    if autoscaling_config:
        from zactor.autoscaler import _config

        try:
            autoscaling = _config.load(autoscaling_config)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    state_dir = os.path.abspath(os.path.expanduser(
        state_dir or os.path.join("~", ".zactor", f"head-{port}")))
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    ready = os.path.join(state_dir, "head.ready")
    if daemon:
        if os.path.exists(ready):
            os.unlink(ready)  # left by a head that was killed
        argv = [a for a in sys.argv[1:] if a != "--daemon"]
        if "--state-dir" not in argv:
            argv += ["--state-dir", state_dir]
        pid = _daemonize(argv, os.path.join(state_dir, "head.log"), ready)
        with open(ready) as f:
            click.echo(f.read(), nl=False)
        click.echo(f"The head runs in the background (pid {pid}); stop it with: zactor stop")
        return
    lvl = _logging(log_level)
    cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    gpus = num_gpus if num_gpus is not None else _session.detect_gpus()
    cfg = _session.cluster_head_config(host, port, cpus, gpus, res, object_store_memory,
                                       state_dir, insecure, lvl)
    if autoscaling is not None:
        autoscaling["provider"].setdefault("log_dir", state_dir)  # the nodes' output
        cfg["autoscaling"] = autoscaling
    try:
        cfg["dashboard"] = dashboard.spec(include_dashboard, dashboard_host, dashboard_port)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    record = []

    def on_ready(broker) -> None:
        address = broker.tcp_address
        text = _join_text(address, cfg.get("key_file"), insecure)
        if broker.dashboard is not None:
            text += f"The dashboard: {broker.dashboard.url}\n"
        click.echo(text, nl=False)
        record.append(_registry.register(_registry.HEADS, {
            "address": address, "ipc": cfg["address"], "state_dir": state_dir,
            "key_file": cfg.get("key_file"), "insecure": insecure,
            "session_dir": cfg["session_dir"], "shm_dir": cfg["shm_dir"]}))
        with open(os.path.join(state_dir, "head.pid"), "w") as f:
            f.write(str(os.getpid()))
        with open(os.path.join(state_dir, "port"), "w") as f:
            f.write(address.rsplit(":", 1)[1])
        with open(ready + ".tmp", "w") as f:
            f.write(text)
        os.replace(ready + ".tmp", ready)

    import zmq

    try:
        run_head(cfg, on_ready)
    except zmq.ZMQError as exc:
        raise click.ClickException(f"cannot listen on {cfg['tcp']}: {exc} (is another head "
                                   "running there? zactor status tells)") from None
    except OSError as exc:  # the dashboard's explicit port
        raise click.ClickException(str(exc)) from None
    finally:
        for path in record:
            _registry.unregister(path)
        for name in ("head.pid", "head.ready"):
            try:
                os.unlink(os.path.join(state_dir, name))
            except OSError:
                pass


def _join_text(address: str, key_file: str | None, insecure: bool) -> str:
    lines = [f"zactor head listening on {address}", ""]
    if insecure:
        lines += ["WARNING: --insecure: connections are neither encrypted nor authenticated.",
                  "Anyone who can reach this port can run code on every node.", ""]
        env = "ZACTOR_CLUSTER_KEY=insecure "
    else:
        lines += [f"The cluster key is in {key_file} (mode 0600). Hand it to each machine",
                  "privately, as that file or as the environment variable:",
                  f"  export ZACTOR_CLUSTER_KEY=\"$(grep -v '^#' {key_file})\"", ""]
        env = ""
    lines += ["To add a worker node (on any machine):",
              f"  {env}zactor worker --address {address}",
              "To connect a driver:",
              f"  zactor.init(address=\"{address}\")   # or ZACTOR_ADDRESS={address}",
              "On this machine, zactor.init(address=\"auto\") needs no key.", ""]
    return "\n".join(lines)


@click.command()
@click.option("--address", required=True, help="The head's address, tcp://HOST:PORT.")
@click.option("--num-cpus", type=int, default=None)
@click.option("--num-gpus", type=int, default=None)
@click.option("--resources", default=None, help='Custom resources, JSON.')
@click.option("--object-store-memory", type=int, default=None)
@click.option("--node-ip-address", default=None,
              help="This node's address as other nodes see it (default: the one that "
                   "reaches the head).")
@click.option("--port", type=int, default=0, show_default=True,
              help="This node's one TCP port, for object transfers (0: any free port).")
@click.option("--metrics-port", type=int, default=0, show_default=True,
              help="HTTP port serving this node's numbers as Prometheus text, on the node's "
                   "address (0: any free port, -1: none); it asks for the cluster's "
                   "token. zactor status lists it.")
@click.option("--daemon", is_flag=True, help="Run in the background.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def worker(address, num_cpus, num_gpus, resources, object_store_memory, node_ip_address, port,
           metrics_port, daemon, log_level) -> None:
    """Start a node agent for this machine and join the cluster at ADDRESS."""
    from zactor import _registry, _session
    from zactor.node.daemon import run_node

    res = _resources(resources)
    address, creds = _registry.resolve(address)
    if not address.startswith("tcp://"):
        raise click.BadParameter("a worker joins a head by its tcp://HOST:PORT address",
                                 param_hint="--address")
    if creds is None:
        raise click.ClickException(
            "no cluster key: set ZACTOR_CLUSTER_KEY (or ZACTOR_CLUSTER_KEY_FILE) to the key "
            "the head printed (ZACTOR_CLUSTER_KEY=insecure for a head started --insecure)")
    if daemon:
        folder = _registry.log_dir()
        tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        ready = os.path.join(folder, f"{tag}.ready")
        argv = [a for a in sys.argv[1:] if a != "--daemon"]
        env_ready = {"ZACTOR_NODE_READY_FILE": ready}
        os.environ.update(env_ready)
        pid = _daemonize(argv, os.path.join(folder, f"{tag}.log"), ready)
        click.echo(f"The node agent runs in the background (pid {pid}); stop it with: "
                   "zactor stop")
        return
    lvl = _logging(log_level)
    ip = node_ip_address or _session.local_ip_towards(address)
    cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    gpus = num_gpus if num_gpus is not None else _session.detect_gpus()
    cfg = _session.node_config(address, ip, port, cpus, gpus, res, object_store_memory, lvl)
    cfg["metrics_port"] = metrics_port
    path = _registry.register(_registry.NODES, {
        "address": address, "ip": ip, "node_id": cfg["node_id"],
        "session_dir": cfg["session_dir"], "shm_dir": cfg["shm_dir"]})
    ready = os.environ.pop("ZACTOR_NODE_READY_FILE", None)
    if ready:
        with open(ready, "w") as f:
            f.write(str(os.getpid()))
    try:
        code = run_node(cfg, creds)
    finally:
        _registry.unregister(path)
    sys.exit(code)


@click.command()
@click.option("--address", default=None, help="The head's address (default: "
              "ZACTOR_ADDRESS, else this user's newest cluster on this machine).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(address, as_json) -> None:
    """Nodes, actors, pending work and refused connections of a running cluster."""
    from zactor import _registry
    from zactor._client import CoreClient

    try:
        target, creds = _registry.resolve(address)
        client = CoreClient(target, "observer", connect_timeout=10.0, creds=creds)
    except (ConnectionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        report = client.request("cluster_status")
    finally:
        client.close(goodbye=(False,))
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    click.echo(render_status(report))


def render_status(report: dict) -> str:
    """The status report as tables."""
    from zactor._tables import human_bytes, table

    out = [f"Cluster at {report['address']}"]
    if report.get("dashboard_url"):
        out.append(f"Dashboard: {report['dashboard_url']}")
    if report["insecure"]:
        out.append("WARNING: INSECURE cluster (--insecure): no encryption, no "
                   "authentication.")
    elif not report["encrypted"]:
        out.append(f"A local cluster: Unix sockets in a mode-0700 directory, reachable by "
                   f"this user only. Dropped messages: {report['dropped_messages']}.")
    else:
        out.append(f"Encrypted and authenticated (CURVE). Refused connections: "
                   f"{report['refused_connections']}; refused for their version: "
                   f"{report['refused_versions']}; dropped messages: "
                   f"{report['dropped_messages']}.")
    rows = []
    for n in report["nodes"]:
        total, avail = n["total"], n["available"]
        cpu = f"{total.get('CPU', 0) - avail.get('CPU', 0):g}/{total.get('CPU', 0):g}"
        gpu = f"{total.get('GPU', 0) - avail.get('GPU', 0):g}/{total.get('GPU', 0):g}"
        mem = f"{human_bytes(n['store_used'])}/{human_bytes(n['store_capacity'])}"
        state = "alive" if n["alive"] else "removed" if n.get("removed") else "DEAD"
        rows.append([n["node_id"][:12], n["ip"], "head" if n["is_head"] else "worker",
                     state, cpu, gpu, mem, n["workers"], _metrics_cell(n)])
    out += ["", "Nodes", table(["NODE", "IP", "ROLE", "STATE", "CPU", "GPU", "OBJECT STORE",
                                "WORKERS", "METRICS"], rows, right={4, 5, 6, 7})]
    states = report["actors_by_state"]
    out += ["", "Actors", table(["STATE", "COUNT"], [[k, v] for k, v in sorted(states.items())]
                                or [["-", 0]], right={1})]
    out += ["", f"Tasks: {report['tasks_queued']} queued for resources, "
                f"{report['tasks_waiting_for_args']} waiting for their arguments"]
    demand = [[shape, n, ""] for shape, n in report["demand"].items()]
    demand += [[shape, n, "no node can ever run it"]
               for shape, n in report["infeasible"].items()]
    if demand:
        out += ["", "Unmet resource demand",
                table(["RESOURCES", "TASKS OR BUNDLES", "NOTE"], demand, right={1})]
    scaler = report.get("autoscaler")
    if scaler:
        out += ["", "Autoscaler", table(
            ["NODE TYPE", "RESOURCES", "RUNNING", "LAUNCHING", "MIN", "MAX"],
            [[t["node_type"], ", ".join(f"{k}: {v:g}" for k, v in t["resources"].items()),
              t["running"], t["launching"], t["min_workers"], t["max_workers"]]
             for t in scaler["node_types"]], right={2, 3, 4, 5})]
        out.append(f"Pending launches: {len(scaler['pending_launches'])}; failed launches: "
                   f"{scaler['failed_launches']}")
        for failure in scaler["recent_failures"]:
            out.append(f"  failed: {failure['node_type']}: {failure['error']}")
        if scaler["events"]:
            out += ["Recent scaling events:"] + [
                f"  {time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['event']}"
                for e in scaler["events"]]
    groups = report.get("placement_groups") or []
    if groups:
        out += ["", "Placement groups", table(
            ["ID", "NAME", "STRATEGY", "STATE", "BUNDLES PLACED"],
            [[g["placement_group_id"][:12], g["name"] or "-", g["strategy"], g["state"],
              f"{g['placed']}/{g['bundles']}"] for g in groups], right={4})]
    return "\n".join(out)


def _metrics_cell(node: dict) -> str:
    """Where a node serves its Prometheus metrics, and whether it asks for the token; or
    why it does not serve them."""
    address = node.get("metrics_address")
    if address:
        return f"{address} (token)" if "token" in (node.get("metrics_note") or "") \
            else address
    return node.get("metrics_note") or "-"


@click.command()
@click.option("--force", is_flag=True, help="SIGKILL at once instead of stopping cleanly.")
def stop(force) -> None:
    """Stop every zactor head and node agent this user started on this machine."""
    from zactor import _registry

    stopped = _registry.stop_all(force=force)
    for what in stopped:
        click.echo(f"stopped {what}")
    if not stopped:
        click.echo("nothing to stop: no zactor head or node agent of this user runs here")
