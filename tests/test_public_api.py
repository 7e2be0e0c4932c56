"""The public API is exactly what is meant to be public (as trio pins its exports)."""

from __future__ import annotations

import zactor

EXPECTED = {
    "ActorClass", "ActorHandle", "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator",
    "__version__", "actor", "available_resources", "cancel", "cloudpickle",
    "cluster_resources", "data", "exceptions", "get", "get_actor", "get_gpu_ids",
    "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes", "put",
    "remote", "remote_function", "runtime_context", "runtime_env", "serve", "shutdown",
    "timeline", "train", "tune", "util", "wait",
}
MODULES = {"actor", "cloudpickle", "data", "exceptions", "remote_function", "runtime_context",
           "runtime_env", "serve", "train", "tune", "util"}


def test_public_names_are_exactly_the_documented_ones():
    assert set(zactor.__all__) == EXPECTED


def test_every_public_name_resolves_and_unknown_names_raise_attribute_error():
    for name in EXPECTED:
        assert getattr(zactor, name) is not None
    try:
        zactor.not_a_thing  # noqa: B018
    except AttributeError as exc:
        assert "not_a_thing" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_ray_core_names_a_ray_program_uses_are_all_here():
    ray_core = ["init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "kill",
                "cancel", "get_actor", "method", "cluster_resources", "available_resources",
                "nodes", "get_runtime_context", "ObjectRef"]
    missing = [n for n in ray_core if not hasattr(zactor, n)]
    assert not missing
    assert hasattr(zactor.util, "ActorPool")
    for exc in ["RayError", "RayTaskError", "RayActorError", "GetTimeoutError",
                "TaskCancelledError", "WorkerCrashedError", "ObjectLostError",
                "ActorDiedError", "ActorUnavailableError"]:
        assert issubclass(getattr(zactor.exceptions, exc), Exception)


def test_public_functions_have_docstrings():
    for name in EXPECTED - {"__version__"} - MODULES:
        assert getattr(zactor, name).__doc__, f"zactor.{name} has no docstring"
