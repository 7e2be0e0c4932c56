"""Every error zactor raises, under one base class (DESIGN §1.2).

A remote exception comes back from ``get`` as a :class:`TaskError` that is *also* an instance
of the original exception's class::

    try:
        zactor.get(fails.remote())
    except ValueError as e:        # the original class still catches it
        assert isinstance(e, zactor.exceptions.TaskError)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ZactorError",
    "TaskError",
    "GetTimeoutError",
    "ActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "ActorNameTakenError",
    "WorkerCrashedError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "TaskCancelledError",
    "NodeDiedError",
    "TaskUnschedulableError",
    "ActorUnschedulableError",
    "HandshakeRefusedError",
    "RayError",
    "RayTaskError",
    "RayActorError",
]


class ZactorError(Exception):
    """Base class of every zactor error."""


class TaskError(ZactorError):
    """A task or actor method raised; ``str()`` holds the remote traceback.

    ``cause`` is the original exception when it could be unpickled, else ``None``.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        cause_type_name: str = "",
        pid: int | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.cause_type_name = cause_type_name or (type(cause).__name__ if cause else "")
        self.pid = pid
        # Not super(): in a dual class the next base is the user's exception, whose
        # __init__ may take anything.
        Exception.__init__(self, function_name, traceback_str, cause_type_name, pid)

    def __str__(self) -> str:
        where = f"{self.function_name}() (pid={self.pid})" if self.pid else self.function_name
        return f"zactor::{where}\n{self.traceback_str.rstrip()}"

    def __reduce__(self) -> Any:
        # The cause travels as (class, args, attributes) and is rebuilt without calling its
        # __init__: user exceptions often take constructor arguments other than their args.
        cause = self.cause
        state = None
        if cause is not None:
            state = (type(cause), cause.args, getattr(cause, "__dict__", None) or None)
        return (
            _rebuild_task_error,
            (self.function_name, self.traceback_str, state, self.cause_type_name, self.pid),
        )

    def as_instanceof_cause(self) -> TaskError:
        """Return an equivalent error that is also an instance of the cause's class."""
        return _dual_error(self)


_dual_classes: dict[type, type] = {}


def _rebuild_task_error(name, tb, state, type_name, pid) -> TaskError:
    cause = None
    if state is not None:
        cls, args, attrs = state
        try:
            cause = cls.__new__(cls, *args)
            cause.args = args
            if attrs:
                cause.__dict__.update(attrs)
        except Exception:  # noqa: BLE001 - an odd class: fall back to the plain TaskError
            cause = None
    return TaskError(name, tb, cause, type_name, pid).as_instanceof_cause()


def _dual_error(err: TaskError) -> TaskError:
    cause = err.cause
    if cause is None or isinstance(cause, TaskError):
        return err
    cause_cls = type(cause)
    dual = _dual_classes.get(cause_cls)
    if dual is None:
        try:
            dual = type(
                f"TaskError({cause_cls.__name__})",
                (TaskError, cause_cls),
                {"__init__": _dual_init, "__str__": TaskError.__str__,
                 "__reduce__": TaskError.__reduce__, "__module__": __name__},
            )
        except TypeError:  # incompatible layouts (e.g. some C exception types)
            return err
        _dual_classes[cause_cls] = dual
    inst = dual.__new__(dual)
    try:
        inst.__dict__.update(getattr(cause, "__dict__", {}))
    except Exception:  # noqa: BLE001 - best effort: keep the cause's attributes if we can
        pass
    TaskError.__init__(inst, err.function_name, err.traceback_str, cause, err.cause_type_name,
                       err.pid)
    inst.args = cause.args
    return inst


def _dual_init(self, *args, **kwargs) -> None:  # never called by zactor; keeps subclass sane
    TaskError.__init__(self, *args, **kwargs)


class GetTimeoutError(ZactorError, TimeoutError):
    """``get`` (or ``wait`` with ``fetch_local``) ran past its ``timeout``."""


class ActorError(ZactorError):
    """Base of the actor failures (Ray's ``RayActorError``)."""

    def __init__(self, message: str = "", actor_id: str | None = None) -> None:
        super().__init__(message)
        self.actor_id = actor_id


class ActorDiedError(ActorError):
    """The actor is dead: killed, out of restarts, its constructor raised, or out of scope."""


class ActorUnavailableError(ActorError):
    """The actor is restarting; the call may or may not have run."""


class ActorNameTakenError(ZactorError, ValueError):
    """An actor with this name already exists in the namespace."""


class WorkerCrashedError(ZactorError):
    """The worker running the task died and the task's retries are used up."""


class ObjectLostError(ZactorError):
    """The only copy of an object is gone and it cannot be rebuilt."""


class ObjectStoreFullError(ZactorError):
    """An object fits neither in the object store (after spilling what can be spilled) nor
    on the spill directory's disk; raised by the ``put`` or task that made it."""


class TaskCancelledError(ZactorError):
    """The task was cancelled with :func:`zactor.cancel`."""


class NodeDiedError(ZactorError):
    """The node the work ran on died."""


class TaskUnschedulableError(ZactorError):
    """The task (or actor) can never be placed: a hard node affinity names a node that is
    dead or unknown (Ray's name)."""


class ActorUnschedulableError(TaskUnschedulableError):
    """An actor that can never be placed (Ray's name)."""


class RuntimeEnvSetupError(ZactorError):
    """The task's, actor's or job's runtime environment could not be set up on its node
    (Ray's name); the message carries why, with pip's output when pip failed."""


class TaskPlacementGroupRemoved(ZactorError):
    """The placement group the task was to run in was removed (Ray's name)."""


class ActorPlacementGroupRemoved(ActorError):
    """The placement group the actor was placed in was removed (Ray's name)."""


class HandshakeRefusedError(ZactorError, ConnectionError):
    """The head refused this process at connection: another zactor, protocol or Python
    version (both are named), or a node it declared dead."""


class _ActorExit(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by ``zactor.actor.exit_actor()``; the actor's worker ends the actor on it."""


# Ray's names, so that ``except ray.exceptions.RayActorError`` keeps working after the import
# switch.
RayError = ZactorError
RayTaskError = TaskError
RayActorError = ActorError
#: The zactor-named alias (Ray's own name is RuntimeEnvSetupError itself).
ZactorRuntimeEnvSetupError = RuntimeEnvSetupError
