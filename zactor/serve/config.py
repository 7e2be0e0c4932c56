"""Serve's options (Ray's ``ray.serve.config``) and its own tunables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# How long a router's long poll to the controller waits for a change before asking again.
LISTEN_TIMEOUT_S = 10.0
# The controller's reconcile loop: how often it looks at every deployment.
CONTROL_LOOP_S = 0.05
# A replica that has not answered its stats call for this long leaves the routing tables
# until it answers again (it is restarting, or hung: the health check decides which).
UNRESPONSIVE_S = 1.0
STATS_PERIOD_S = 0.25
# A router that saw a replica fail stops sending it requests for this long, or until the
# controller says again that it is running.
SUSPECT_S = 2.0
# How often a router tells the controller how many requests it holds (autoscaling input).
METRICS_PUSH_S = 0.25
# zactor differs from Ray here: Ray's max_queued_requests defaults to no bound; ours bounds
# every router's queue, so a flood is answered with 503s instead of growing without limit.
DEFAULT_MAX_QUEUED_REQUESTS = 1000
# Control calls (stats, health checks, drain, reconfigure) a full replica must still answer.
REPLICA_CONTROL_SLOTS = 16

CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
PROXY_NAME = "SERVE_PROXY_ACTOR"
NAMESPACE = "serve"


def _from(cls, value: Any, what: str):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")
        return cls(**value)
    raise TypeError(f"{what} must be a dict or {cls.__name__}, got {type(value).__name__}")


@dataclass
class HTTPOptions:
    """Where the HTTP proxy listens (``serve.start(http_options=...)``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    root_path: str = ""
    request_timeout_s: float | None = None
    keep_alive_timeout_s: int = 5

    @classmethod
    def parse(cls, value: Any) -> HTTPOptions:
        return _from(cls, value, "http_options")


@dataclass
class LoggingConfig:
    """Serve's logging: access logs (one line per HTTP request: method, route, status,
    latency, replica) go to the ``zactor.serve.access`` logger of the proxy; to
    ``logs_dir/proxy_access.log`` when ``logs_dir`` is set, else to the proxy's stderr, which
    reaches the driver like any worker output."""

    log_level: str = "INFO"
    logs_dir: str | None = None
    enable_access_log: bool = True
    encoding: str = "TEXT"

    @classmethod
    def parse(cls, value: Any) -> LoggingConfig:
        return _from(cls, value, "logging_config")


@dataclass
class AutoscalingConfig:
    """Ray's autoscaling options: replicas between ``min_replicas`` and ``max_replicas``,
    aiming at ``target_ongoing_requests`` per replica (queued and running requests, as the
    handles see them, averaged over ``look_back_period_s``); a change must hold for
    ``upscale_delay_s`` / ``downscale_delay_s`` before it is made."""

    min_replicas: int = 1
    initial_replicas: int | None = None
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    smoothing_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError("autoscaling_config: min_replicas must be >= 0")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError("autoscaling_config: max_replicas must be >= max(1, min_replicas)")
        if self.target_ongoing_requests <= 0:
            raise ValueError("autoscaling_config: target_ongoing_requests must be > 0")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError("autoscaling_config: initial_replicas must lie between "
                             "min_replicas and max_replicas")

    @classmethod
    def parse(cls, value: Any) -> AutoscalingConfig:
        return _from(cls, value, "autoscaling_config")

    def dict(self) -> dict:
        return asdict(self)


@dataclass
class DeploymentConfig:
    """Everything about a deployment that is not its code (internal: what the controller
    keeps per deployment)."""

    num_replicas: int | None = 1
    autoscaling_config: AutoscalingConfig | None = None
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    user_config: Any = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0
    ray_actor_options: dict = field(default_factory=dict)

    @property
    def queue_bound(self) -> int:
        return (self.max_queued_requests if self.max_queued_requests >= 0
                else DEFAULT_MAX_QUEUED_REQUESTS)
