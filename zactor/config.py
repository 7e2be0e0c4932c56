"""Tunables, in one place. Each can be overridden by a ``ZACTOR_<NAME>`` environment variable."""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get("ZACTOR_" + name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get("ZACTOR_" + name)
    return float(raw) if raw else default


#: Objects whose pickle (buffers included) is smaller than this travel inline in messages.
INLINE_OBJECT_MAX: int = _env_int("INLINE_OBJECT_MAX", 100 * 1024)
#: Inline payloads at least this large are tried with lz4; kept compressed only if smaller.
COMPRESS_MIN: int = _env_int("COMPRESS_MIN", 4 * 1024)
#: Largest frame the head accepts; bigger messages are counted and dropped.
MAX_FRAME_BYTES: int = _env_int("MAX_FRAME_BYTES", 256 * 1024 * 1024)
#: Alignment of out-of-band buffers inside shared-memory object files (numpy/SIMD friendly).
BUFFER_ALIGN: int = 64

#: Where large objects live; a per-session directory is made below it.
SHM_ROOT: str = os.environ.get("ZACTOR_SHM_ROOT", "/dev/shm")
#: Share of the machine's memory the shared-memory object store may use when init() is not
#: given object_store_memory (Ray's default).
OBJECT_STORE_FRACTION: float = _env_float("OBJECT_STORE_FRACTION", 0.3)
#: Where objects spill to disk past the store's capacity; a per-session directory is made
#: below it. Empty: the session's directory (local disk, not /dev/shm).
SPILL_DIR: str = os.environ.get("ZACTOR_SPILL_DIR", "")
#: Bytes the spill directory's disk must keep free after a spill or a fallback write.
SPILL_DISK_RESERVE: int = _env_int("SPILL_DISK_RESERVE", 256 * 1024 * 1024)
#: Threads that copy one large object into the store together (one core alone does not
#: saturate the memory bus), for buffers of at least PARALLEL_COPY_MIN bytes.
PUT_COPY_THREADS: int = _env_int("PUT_COPY_THREADS", min(4, os.cpu_count() or 1))
PARALLEL_COPY_MIN: int = _env_int("PARALLEL_COPY_MIN", 8 * 1024 * 1024)
#: Seconds a process keeps a spare store region for its next large write (0: no spares).
SPARE_TTL_S: float = _env_float("SPARE_TTL_S", 0.5)
#: Seconds free store memory stays mapped for reuse (fast to write into) before it is given
#: back to the kernel.
ARENA_TRIM_S: float = _env_float("ARENA_TRIM_S", 5.0)
#: Where the per-user, mode-0700 socket directories are made.
SOCKET_ROOT: str = os.environ.get("ZACTOR_SOCKET_ROOT", "/tmp")

#: Seconds a driver waits for the head of an embedded cluster to answer.
HEAD_START_TIMEOUT_S: float = _env_float("HEAD_START_TIMEOUT_S", 30.0)
#: Seconds a driver exiting without shutdown() lets the tasks it started finish (their output
#: reaches its terminal before it ends).
EXIT_GRACE_S: float = _env_float("EXIT_GRACE_S", 2.0)
#: Seconds shutdown waits for the head to stop before killing it.
SHUTDOWN_TIMEOUT_S: float = _env_float("SHUTDOWN_TIMEOUT_S", 10.0)
#: Milliseconds between ZeroMQ reconnect attempts (the head may still be starting).
RECONNECT_IVL_MS: int = _env_int("RECONNECT_IVL_MS", 10)
#: ... doubling up to this many while the head stays away (a restarting head).
RECONNECT_IVL_MAX_MS: int = _env_int("RECONNECT_IVL_MAX_MS", 1000)

#: Reference-count releases are batched: sent when this many are pending ...
REF_BATCH: int = _env_int("REF_BATCH", 256)
#: ... or after this many seconds. Short: a released ref frees its object only once sent,
#: and a stream of large blocks (zactor.data) would otherwise fill the store with objects
#: nobody holds any more (10 ms against 50 ms: no change in make bench's rows).
REF_FLUSH_S: float = _env_float("REF_FLUSH_S", 0.01)

#: Actors one process calls directly at most (each route is two socket connections); calls to
#: others go through the head. 0 turns direct calls off.
DIRECT_ROUTES_MAX: int = _env_int("DIRECT_ROUTES_MAX", 32)
#: Results of direct calls the head keeps, at most, while it waits for the caller's notice of
#: the call (normally microseconds; only a caller that died in between leaves them behind).
EARLY_RESULTS_MAX: int = _env_int("EARLY_RESULTS_MAX", 100_000)

#: Workers per CPU a node runs at most that are not blocked in get (only zero-CPU tasks can need
#: more than one per CPU). Workers blocked in get are bounded by memory instead (below); the
#: drivers are warned each time a node's worker count doubles past this cap.
MAX_WORKERS_PER_CPU: int = _env_int("MAX_WORKERS_PER_CPU", 8)
#: Memory a worker is assumed to need, to bound how many start beyond the cap above.
WORKER_MEMORY_ESTIMATE: int = _env_int("WORKER_MEMORY_ESTIMATE", 64 * 1024 * 1024)
#: Share of the machine's memory that extra workers must leave available.
MEMORY_RESERVE_FRACTION: float = _env_float("MEMORY_RESERVE_FRACTION", 0.1)
#: Idle workers above the warm pool size exit after this many seconds.
IDLE_WORKER_TIMEOUT_S: float = _env_float("IDLE_WORKER_TIMEOUT_S", 10.0)

#: Default number of retries of a task whose worker died (Ray's default).
DEFAULT_MAX_RETRIES: int = 3
#: Default concurrency of async actors (Ray's default).
DEFAULT_ASYNC_MAX_CONCURRENCY: int = 1000

#: Seconds between a node agent's heartbeats to the head (sent from the agent's own process,
#: so busy workers never delay them).
HEARTBEAT_S: float = _env_float("HEARTBEAT_S", 0.5)
#: Seconds without a word from a node agent after which the head declares its node dead
#: (its tasks are replayed elsewhere, its actors restarted elsewhere).
NODE_TIMEOUT_S: float = _env_float("NODE_TIMEOUT_S", 3.0)
#: Seconds a node agent (and with it its workers) lives on without its head: long enough
#: for a head restart, short enough that nothing is orphaned for long.
HEAD_TIMEOUT_S: float = _env_float("HEAD_TIMEOUT_S", 60.0)
#: Bytes per chunk, and chunks in flight, when a node pulls an object from another.
TRANSFER_CHUNK: int = _env_int("TRANSFER_CHUNK", 4 * 1024 * 1024)
TRANSFER_WINDOW: int = _env_int("TRANSFER_WINDOW", 8)
#: Seconds a transfer waits for the next chunk before it fails.
TRANSFER_TIMEOUT_S: float = _env_float("TRANSFER_TIMEOUT_S", 60.0)
#: The head's TCP port when ``zactor head`` is not given one (Ray's is 6379).
DEFAULT_PORT: int = _env_int("PORT", 6380)
#: Seconds a restarted head waits for the workers of the actors it restored to call in, and
#: for their owners to come back, before it restarts (or ends) the missing ones.
HEAD_RECOVERY_S: float = _env_float("HEAD_RECOVERY_S", 10.0)
#: Seconds between the pings a driver connected over TCP sends its head, and seconds without
#: one after which the head takes it for dead (its handles and the actors it owns go): a
#: process on another machine cannot be watched through its pid.
CLIENT_PING_S: float = _env_float("CLIENT_PING_S", 2.0)
CLIENT_TIMEOUT_S: float = _env_float("CLIENT_TIMEOUT_S", 30.0)
#: Bytes a job's log may grow to; past that its older half goes.
JOB_LOG_MAX: int = _env_int("JOB_LOG_MAX", 100 * 1024 * 1024)
#: Bytes a worker's log file (``<session dir>/logs/worker-<pid>.log``) grows to before it is
#: rotated to ``.1`` (the previous ``.1`` goes): a worker's output takes at most about twice
#: this on its node's disk. 0: workers keep no log files (their output still reaches drivers).
WORKER_LOG_MAX_BYTES: int = _env_int("WORKER_LOG_MAX_BYTES", 16 * 1024 * 1024)
#: Bytes of a log file one answer to ``zactor logs`` / get_log carries at most (longer reads
#: take several); the head reads its own node's files in its event loop, so this stays small.
LOG_READ_MAX_BYTES: int = _env_int("LOG_READ_MAX_BYTES", 1024 * 1024)
#: Seconds the head waits for another node's answer to a log request before it gives up.
LOG_REQUEST_TIMEOUT_S: float = _env_float("LOG_REQUEST_TIMEOUT_S", 20.0)
#: Seconds between two reads of a followed log (get_log(follow=True), zactor logs -f).
LOG_FOLLOW_INTERVAL_S: float = _env_float("LOG_FOLLOW_INTERVAL_S", 0.5)
#: Seconds a stopped job's processes get after SIGTERM before SIGKILL.
JOB_STOP_GRACE_S: float = _env_float("JOB_STOP_GRACE_S", 3.0)

#: Where the head serves the dashboard page and /metrics (Ray's defaults). A port taken by
#: another program (or another cluster's dashboard) moves up by one, DASHBOARD_PORT_TRIES
#: times, when the default was asked for; a port given explicitly must be free.
DASHBOARD_HOST: str = os.environ.get("ZACTOR_DASHBOARD_HOST", "127.0.0.1")
DASHBOARD_PORT: int = _env_int("DASHBOARD_PORT", 8265)
DASHBOARD_PORT_TRIES: int = _env_int("DASHBOARD_PORT_TRIES", 50)
#: Seconds between the page's live updates (server-sent events), while a page is open.
DASHBOARD_REFRESH_S: float = _env_float("DASHBOARD_REFRESH_S", 1.0)
#: Rows of each kind one update carries (the newest tasks, the objects...): a page stays
#: light however large the cluster's history is.
DASHBOARD_ROWS_MAX: int = _env_int("DASHBOARD_ROWS_MAX", 500)
#: Times the dashboard's process may die within a minute before the head stops restarting it.
DASHBOARD_RESTARTS_MAX: int = _env_int("DASHBOARD_RESTARTS_MAX", 5)

#: Where runtime environments' packages, unpacked directories and virtualenvs are kept on a
#: machine, shared by its nodes (empty: /tmp/zactor-<uid>/runtime_resources).
RUNTIME_ENV_DIR: str = os.environ.get("ZACTOR_RUNTIME_ENV_DIR", "")
#: Bytes of unpacked packages and virtualenvs a machine keeps; past that, the least recently
#: used ones no process uses go (Ray's working_dir cache is 10 GB too).
RUNTIME_ENV_CACHE_MAX: int = _env_int("RUNTIME_ENV_CACHE_MAX", 10 * 1024**3)
#: Largest working_dir or py_modules package, in bytes (Ray's limit, 500 MiB).
RUNTIME_ENV_PACKAGE_MAX: int = _env_int("RUNTIME_ENV_PACKAGE_MAX", 500 * 1024 * 1024)
#: Bytes per message when a package is uploaded to the head or fetched from it.
RUNTIME_ENV_UPLOAD_CHUNK: int = _env_int("RUNTIME_ENV_UPLOAD_CHUNK", 8 * 1024 * 1024)
#: Seconds an environment's setup (pip) may take unless its config says otherwise (Ray's).
RUNTIME_ENV_SETUP_TIMEOUT_S: float = _env_float("RUNTIME_ENV_SETUP_TIMEOUT_S", 600.0)

#: Finished tasks and actor calls the head keeps for the state API (zactor list tasks,
#: zactor timeline), newest first; older ones are forgotten, so the head's memory stays
#: bounded whatever the workload (about 300 bytes each). Live tasks are listed besides these.
TASK_HISTORY_MAX: int = _env_int("TASK_HISTORY_MAX", 10_000)
#: Actors that died and that no handle reaches any more, kept for the state API.
DEAD_ACTORS_MAX: int = _env_int("DEAD_ACTORS_MAX", 1_000)

#: Seconds between a process's reports of its user metrics (zactor.util.metrics) to the head:
#: counters and histograms as what changed since the last report, gauges as their last value.
METRICS_REPORT_INTERVAL_S: float = _env_float("METRICS_REPORT_INTERVAL_S", 2.0)
#: User metric series (a name and one set of tag values) the head keeps at most; records of
#: further series are counted and dropped (zactor_metrics_series_dropped_total), with one
#: warning in the head's log.
METRICS_SERIES_MAX: int = _env_int("METRICS_SERIES_MAX", 10_000)
