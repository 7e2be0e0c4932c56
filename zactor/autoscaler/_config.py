"""The autoscaling config file (``zactor head --autoscaling-config FILE``), in Ray's
vocabulary so that a Ray user recognises it::

    cluster_name: demo
    max_workers: 4                 # worker nodes in all, at most
    upscaling_speed: 1.0           # launches in flight: up to this times the nodes there are
    idle_timeout_minutes: 5        # a worker node idle this long is removed
    provider:
      type: local                  # local | slurm | external (module: pkg.mod.Class)
    available_node_types:
      cpu4:
        resources: {CPU: 4}
        min_workers: 0
        max_workers: 3
        node_config: {}            # provider-specific (slurm: sbatch options)

zactor's own settings go under ``provider``: ``node_launch_timeout_s`` (seconds a launched
node has to join before it counts as failed, default 120) and ``launch_backoff_s`` (the
first wait before retrying a failed launch, doubled each time up to 300 s; default 5).
"""

from __future__ import annotations

from typing import Any

TOP_KEYS = {"cluster_name", "max_workers", "upscaling_speed", "idle_timeout_minutes",
            "provider", "available_node_types", "head_node_type"}
TYPE_KEYS = {"resources", "min_workers", "max_workers", "node_config"}


def load(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ValueError(f"cannot read the autoscaling config {path}: {exc.strerror}") \
            from None
    except yaml.YAMLError as exc:
        raise ValueError(f"the autoscaling config {path} does not parse: {exc}") from None
    return validate(raw)


def validate(raw: Any) -> dict[str, Any]:
    """The config with defaults filled in; ValueError naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("the autoscaling config must be a mapping")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown autoscaling config field(s): {unknown}")
    types = raw.get("available_node_types")
    if not isinstance(types, dict) or not types:
        raise ValueError("available_node_types must name at least one node type")
    out_types = {}
    for name, spec in types.items():
        if not isinstance(spec, dict):
            raise ValueError(f"node type {name!r} must be a mapping")
        bad = sorted(set(spec) - TYPE_KEYS)
        if bad:
            raise ValueError(f"node type {name!r}: unknown field(s) {bad}")
        resources = spec.get("resources")
        if not isinstance(resources, dict) or not resources.get("CPU"):
            raise ValueError(f"node type {name!r} must declare resources, with CPU")
        for key, value in resources.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"node type {name!r}: resource {key!r} must be a "
                                 "non-negative number")
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers", 1 << 30)
        for key, value in (("min_workers", lo), ("max_workers", hi)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"node type {name!r}: {key} must be a non-negative integer")
        if lo > hi:
            raise ValueError(f"node type {name!r}: min_workers exceeds max_workers")
        out_types[str(name)] = {"resources": {k: float(v) for k, v in resources.items()},
                                "min_workers": lo, "max_workers": hi,
                                "node_config": dict(spec.get("node_config") or {})}
    provider = raw.get("provider") or {"type": "local"}
    if not isinstance(provider, dict) or "type" not in provider:
        raise ValueError("provider must be a mapping with a type")
    numbers = {"max_workers": (raw.get("max_workers", 1 << 30), int),
               "upscaling_speed": (raw.get("upscaling_speed", 1.0), (int, float)),
               "idle_timeout_minutes": (raw.get("idle_timeout_minutes", 5.0), (int, float)),
               "node_launch_timeout_s": (provider.get("node_launch_timeout_s", 120.0),
                                         (int, float)),
               "launch_backoff_s": (provider.get("launch_backoff_s", 5.0), (int, float))}
    for key, (value, kind) in numbers.items():
        if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
            raise ValueError(f"{key} must be a non-negative number, got {value!r}")
    return {"cluster_name": str(raw.get("cluster_name") or "zactor"),
            "max_workers": numbers["max_workers"][0],
            "upscaling_speed": float(numbers["upscaling_speed"][0]),
            "idle_timeout_s": float(numbers["idle_timeout_minutes"][0]) * 60.0,
            "node_launch_timeout_s": float(numbers["node_launch_timeout_s"][0]),
            "launch_backoff_s": float(numbers["launch_backoff_s"][0]),
            "provider": dict(provider), "available_node_types": out_types}
