"""``zactor job submit|status|logs|stop|list|delete``: jobs, over the cluster's own encrypted
connection (zactor.job_submission)."""

from __future__ import annotations

import json
import os
import shlex
import sys

import click

_ADDRESS = click.option("--address", default=None,
                        help="The head's address (default: ZACTOR_ADDRESS, else this user's "
                             "newest cluster on this machine).")


def _client(address):
    from zactor.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, LookupError, NotImplementedError) as exc:
        raise click.ClickException(str(exc)) from exc


def _runtime_env(as_json: str | None, path: str | None) -> dict:
    """The job's runtime_env from --runtime-env-json or --runtime-env (as Ray's CLI: not
    both); relative paths in it are relative to this directory."""
    import yaml

    if as_json and path:
        raise click.UsageError("give --runtime-env or --runtime-env-json, not both")
    try:
        if as_json:
            env = json.loads(as_json)
        elif path:
            with open(path) as f:
                env = yaml.safe_load(f) or {}
        else:
            return {}
    except (ValueError, yaml.YAMLError) as exc:
        raise click.UsageError(f"runtime_env does not parse: {exc}") from exc
    if not isinstance(env, dict):
        raise click.UsageError("runtime_env must be a mapping")
    return env


@click.group()
def job() -> None:
    """Run driver programs on a cluster, and manage them."""


@job.command(context_settings={"ignore_unknown_options": True})
@_ADDRESS
@click.option("--working-dir", default=None,
              help="Local directory (or zip) uploaded for the job to run in.")
@click.option("--runtime-env-json", default=None, help="runtime_env as JSON.")
@click.option("--runtime-env", "runtime_env_file", default=None,
              type=click.Path(exists=True, dir_okay=False), help="runtime_env as a YAML file.")
@click.option("--submission-id", default=None, help="The job's id (default: a new one).")
@click.option("--entrypoint-num-cpus", type=float, default=None)
@click.option("--no-wait", is_flag=True, help="Return once submitted; do not follow its logs.")
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(address, working_dir, runtime_env_json, runtime_env_file, submission_id,
           entrypoint_num_cpus, no_wait, entrypoint) -> None:
    """Submit ENTRYPOINT (after --) as a job; follow its logs until it ends, and exit 0 if it
    succeeded."""
    from zactor.job_submission import JobStatus

    runtime_env = _runtime_env(runtime_env_json, runtime_env_file)
    if working_dir:
        runtime_env["working_dir"] = os.path.abspath(working_dir)
    client = _client(address)
    job_id = _call(client.submit_job, **{
        "entrypoint": " ".join(shlex.quote(a) for a in entrypoint) if len(entrypoint) > 1
        else entrypoint[0], "runtime_env": runtime_env, "submission_id": submission_id,
        "entrypoint_num_cpus": entrypoint_num_cpus})
    click.echo(f"Job '{job_id}' submitted successfully", err=True)
    if no_wait:
        click.echo(job_id)
        return
    for text in client.follow_logs(job_id):
        sys.stdout.write(text)
        sys.stdout.flush()
    status = client.get_job_status(job_id)
    click.echo(f"Job '{job_id}' {status.value.lower()}", err=True)
    sys.exit(0 if status == JobStatus.SUCCEEDED else 1)


@job.command()
@_ADDRESS
@click.argument("job_id")
def status(address, job_id) -> None:
    """A job's status and message."""
    info = _call(_client(address).get_job_info, job_id)
    click.echo(f"Job '{job_id}': {info.status.value}\n{info.message}")


@job.command()
@_ADDRESS
@click.option("--follow", "-f", is_flag=True, help="Follow the logs until the job ends.")
@click.argument("job_id")
def logs(address, follow, job_id) -> None:
    """What a job printed."""
    client = _client(address)
    if follow:
        for text in _call(client.follow_logs, job_id):
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        click.echo(_call(client.get_job_logs, job_id), nl=False)


@job.command()
@_ADDRESS
@click.argument("job_id")
def stop(address, job_id) -> None:
    """Stop a job: its processes, and the tasks and actors it started."""
    stopped = _call(_client(address).stop_job, job_id)
    click.echo(f"Job '{job_id}' " + ("is being stopped" if stopped else "had already ended"))


@job.command()
@_ADDRESS
@click.argument("job_id")
def delete(address, job_id) -> None:
    """Forget an ended job and its log."""
    _call(_client(address).delete_job, job_id)
    click.echo(f"Job '{job_id}' deleted")


@job.command(name="list")
@_ADDRESS
def list_jobs(address) -> None:
    """Every job of the cluster, as a table."""
    from zactor._tables import table

    rows = [[j.submission_id, j.status.value, j.driver_exit_code if j.driver_exit_code
             is not None else "", j.entrypoint[:60]] for j in _client(address).list_jobs()]
    click.echo(table(["JOB", "STATUS", "EXIT", "ENTRYPOINT"], rows, right={2}) if rows
               else "no jobs")
