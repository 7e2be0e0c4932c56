"""Utilities at Ray's paths: ``zactor.util.ActorPool``."""

from zactor.util.actor_pool import ActorPool

__all__ = ["ActorPool"]
