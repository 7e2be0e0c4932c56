"""Ray's ``ray.cluster_utils``, for tests written against it: see zactor.testing.Cluster."""

from zactor._cluster_utils import Cluster, ClusterNode

__all__ = ["Cluster", "ClusterNode"]
