"""The interface between the autoscaler and whatever starts machines: a node provider.

A provider starts node agents (``zactor worker --address HEAD``) somewhere and stops them;
the autoscaler (zactor.autoscaler._autoscaler) decides when. A new provider — Kubernetes, a
cloud — is a subclass with these three methods, named in the autoscaling config as
``provider: {type: external, module: "package.module.ClassName"}`` (Ray's vocabulary).

Every call runs in the autoscaler's own thread, never in the head's event loop, so a
provider may block (``sbatch``, a cloud API) for as long as it needs.

A node is started with ``launch.command`` (the argv that starts its agent, pointed at the
head) and ``launch.env`` (which carries ``ZACTOR_NODE_TAG``: the node says it when it joins,
which is how the autoscaler knows a launch arrived).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Launch:
    """What a provider is asked to start."""

    tag: str  # names this launch; the node agent reports it when it joins
    node_type: str
    resources: dict[str, float]  # what the node declares (--num-cpus, --resources ...)
    node_config: dict[str, Any]  # the node type's provider-specific settings
    command: list[str]  # the agent's argv
    env: dict[str, str] = field(default_factory=dict)  # the agent's extra environment


class NodeProvider:
    """Start and stop node agents. Subclasses implement the three methods."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        self.provider_config = provider_config
        self.cluster_name = cluster_name

    def create_node(self, launch: Launch) -> str:
        """Start one node agent; return the provider's id for it. Raise on failure."""
        raise NotImplementedError

    def terminate_node(self, node_id: str) -> None:
        """Stop the node agent ``node_id`` (and whatever runs it)."""
        raise NotImplementedError

    def non_terminated_nodes(self) -> list[str]:
        """The ids of the nodes this provider started that still run (or are starting)."""
        raise NotImplementedError

    def log_tail(self, node_id: str, lines: int = 20) -> str:
        """The end of the node's output, if the provider keeps it ("" if not): the
        autoscaler adds it to the reason a launch failed."""
        return ""

    def shutdown(self) -> None:
        """The cluster stops: stop every node this provider started."""
        for node_id in self.non_terminated_nodes():
            self.terminate_node(node_id)


def make_provider(provider_config: dict[str, Any], cluster_name: str) -> NodeProvider:
    kind = provider_config.get("type")
    if kind == "local":
        from zactor.autoscaler._local import LocalNodeProvider

        return LocalNodeProvider(provider_config, cluster_name)
    if kind == "slurm":
        from zactor.autoscaler._slurm import SlurmNodeProvider

        return SlurmNodeProvider(provider_config, cluster_name)
    if kind == "external":
        path = provider_config.get("module") or ""
        module, _, name = path.rpartition(".")
        if not module:
            raise ValueError(f"provider.module must be 'package.module.ClassName', got "
                             f"{path!r}")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, NodeProvider)):
            raise ValueError(f"{path} is not a NodeProvider subclass")
        return cls(provider_config, cluster_name)
    raise ValueError(f"provider.type must be local, slurm or external, got {kind!r}")
