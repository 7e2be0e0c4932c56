"""Autoscaling: ``zactor head --autoscaling-config FILE`` grows and shrinks the cluster
through a node provider (local processes, Slurm jobs, or one of your own).

Write a provider for other infrastructure by subclassing :class:`NodeProvider` (see
zactor.autoscaler.node_provider) and naming it in the config's ``provider`` section as
``{type: external, module: "package.module.ClassName"}``.
"""

from zactor.autoscaler.node_provider import Launch, NodeProvider

__all__ = ["Launch", "NodeProvider"]
