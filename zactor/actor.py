"""Actor types at Ray's path (``ray.actor``): for annotations, ``isinstance`` checks and
``exit_actor``.

Example::

    from zactor.actor import ActorHandle

    def report(progress: ActorHandle) -> None:
        progress.update.remote(1)
"""

from zactor._actor import ActorClass, ActorHandle, ActorMethod, exit_actor, method

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]
