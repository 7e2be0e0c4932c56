"""Serve's driver API: start, run, status, delete, shutdown, and the handles."""

from __future__ import annotations

import copyreg
import hashlib
import inspect
import logging
import time
from typing import Any

import cloudpickle

import zactor
from zactor.serve import _longpoll, _router, config
from zactor.serve.config import HTTPOptions, LoggingConfig
from zactor.serve.deployment import Application, Deployment
from zactor.serve.exceptions import RayServeException
from zactor.serve.handle import DeploymentHandle
from zactor.serve.schema import ServeStatus

log = logging.getLogger(__name__)


def _controller_or_none() -> Any:
    try:
        return zactor.get_actor(config.CONTROLLER_NAME, namespace=config.NAMESPACE)
    except ValueError:
        return None


def start(http_options: dict | HTTPOptions | None = None,
          logging_config: dict | LoggingConfig | None = None, **_ignored: Any) -> None:
    """Start Serve on the cluster (``zactor.init()`` first if needed): the controller, and the
    HTTP proxy on ``http_options`` (default 127.0.0.1:8000). A running Serve is reused.

        serve.start(http_options={"host": "127.0.0.1", "port": 8123})
    """
    if not zactor.is_initialized():
        zactor.init()
    http = HTTPOptions.parse(http_options)
    logging_cfg = LoggingConfig.parse(logging_config)
    controller = _controller_or_none()
    if controller is not None and http_options is not None:
        running = zactor.get(controller.http_address.remote())
        if running is not None and tuple(running) != (http.host, http.port):
            log.warning("serve.start: Serve already runs, its proxy on %s:%d; the new "
                        "http_options (%s:%d) are not applied (as in Ray)", running[0],
                        running[1], http.host, http.port)
    if controller is None:
        from zactor.serve._controller import Controller

        try:
            controller = Controller.options(
                name=config.CONTROLLER_NAME, namespace=config.NAMESPACE,
                lifetime="detached", max_concurrency=1000).remote(
                    vars(http), vars(logging_cfg))
        except Exception:  # noqa: BLE001 - another driver started it first
            controller = _controller_or_none()
            if controller is None:
                raise
    try:
        zactor.get(controller.start_proxy.remote())
    except Exception as exc:
        zactor.kill(controller)
        raise RayServeException(f"Serve failed to start its HTTP proxy on "
                                f"{http.host}:{http.port}: {exc}") from exc


def _pickle_starlette_state() -> None:
    """starlette's ``State`` (``app.state`` of every FastAPI app) does not unpickle: its
    ``__getattr__`` reads an attribute unpickling has not set yet, recursing until the stack
    ends. An ingress app travels to its replicas pickled, so give State a reducer."""
    try:
        from starlette.datastructures import State
    except ImportError:
        return
    copyreg.pickle(State, lambda state: (State, (dict(state._state),)))


def _specs(app: Application, app_name: str) -> tuple[list[dict], str]:
    """Each deployment of the graph, its bound children replaced by handles."""
    graph = app._graph()
    names: dict[str, Application] = {}
    for node in graph:
        other = names.get(node.deployment.name)
        if other is not None and other.deployment.func_or_class is not \
                node.deployment.func_or_class:
            raise ValueError(f"two different deployments are named "
                             f"{node.deployment.name!r} in application {app_name!r}: give one "
                             "of them another name with .options(name=...)")
        names[node.deployment.name] = node

    def swap(value: Any) -> Any:
        if isinstance(value, Application):
            return DeploymentHandle(value.deployment.name, app_name)
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    _pickle_starlette_state()
    specs = []
    for node in names.values():
        dep: Deployment = node.deployment
        blob = cloudpickle.dumps((dep.func_or_class, swap(node._args), swap(node._kwargs)))
        cfg = dep._config
        version = dep.version or hashlib.sha1(
            blob + repr((sorted(cfg.ray_actor_options.items()),
                         cfg.max_ongoing_requests)).encode()).hexdigest()[:16]
        specs.append({"name": dep.name, "blob": blob, "version": version, "config": cfg})
    return specs, app.deployment.name


def _wait_running(controller: Any, name: str, timeout_s: float | None = None) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_note = time.monotonic()
    while True:
        status = zactor.get(controller.app_status.remote(name))
        if status is None:
            raise RayServeException(f"application {name!r} disappeared while deploying")
        state, message = status
        if state == "RUNNING":
            return
        if state == "DEPLOY_FAILED":
            raise RayServeException(f"Deploying application {name!r} failed: {message}")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"application {name!r} is not running after {timeout_s} s "
                               f"({state})")
        if time.monotonic() - last_note > 15:
            log.warning("serve: application %r is still %s", name, state)
            last_note = time.monotonic()
        time.sleep(0.02)


def run(target: Application, *, name: str = "default", route_prefix: str | None = "/",
        blocking: bool = False, logging_config: Any = None, _local_testing_mode: bool = False,
        **_ignored: Any) -> DeploymentHandle:
    """Deploy an application (or redeploy it: replicas roll over to the new code or config
    without dropping requests) and return a handle to its ingress deployment once it runs.

        handle = serve.run(Model.bind(), name="model", route_prefix="/model")
        handle.remote(x).result()
    """
    if isinstance(target, Deployment):
        target = target.bind()
    if not isinstance(target, Application):
        raise TypeError(f"serve.run takes an Application (Deployment.bind(...)), got "
                        f"{type(target).__name__}")
    if route_prefix is not None and (not route_prefix.startswith("/") or (
            len(route_prefix) > 1 and route_prefix.endswith("/"))):
        raise ValueError(f"route_prefix must start with '/' and not end with one, got "
                         f"{route_prefix!r}")
    if _controller_or_none() is None:
        start(logging_config=logging_config)
    controller = _controller_or_none()
    specs, ingress = _specs(target, name)
    zactor.get(controller.deploy_application.remote(name, route_prefix, specs, ingress))
    _wait_running(controller, name)
    handle = DeploymentHandle(ingress, name)
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            shutdown()
    return handle


def status() -> ServeStatus:
    """Applications, their deployments and replicas, in Ray's shape.

        serve.status().applications["default"].status       # "RUNNING"
    """
    controller = _controller_or_none()
    if controller is None:
        return ServeStatus()
    return ServeStatus._from_dict(zactor.get(controller.status.remote()))


def delete(name: str, _blocking: bool = True) -> None:
    """Delete an application: its route answers 404, its handles raise, its replicas stop
    (after finishing the requests they have); the other applications go on."""
    controller = _longpoll.controller()
    if not zactor.get(controller.delete_application.remote(name)):
        log.warning("serve.delete: there is no application %r", name)
        return
    deadline = time.monotonic() + 120
    while _blocking and time.monotonic() < deadline:
        if zactor.get(controller.app_status.remote(name)) is None:
            return
        time.sleep(0.02)


def shutdown() -> None:
    """Delete every application and stop Serve (the controller and the proxy)."""
    if not zactor.is_initialized():
        return
    controller = _controller_or_none()
    if controller is None:
        return
    try:
        zactor.get(controller.shutdown.remote(), timeout=120)
    finally:
        zactor.kill(controller)
        _router.reset()


def get_app_handle(name: str) -> DeploymentHandle:
    """A handle to an application's ingress deployment."""
    deployment = zactor.get(_longpoll.controller().has_deployment.remote(name, None))
    if deployment is None:
        raise RayServeException(f"Application '{name}' does not exist")
    return DeploymentHandle(deployment, name)


def get_deployment_handle(deployment_name: str, app_name: str | None = None) -> DeploymentHandle:
    """A handle to one deployment of an application (inside a replica, its own application
    by default)."""
    if app_name is None:
        from zactor.serve import context

        app_name = context._current.app_name if context._current is not None else "default"
    found = zactor.get(_longpoll.controller().has_deployment.remote(app_name, deployment_name))
    if found is None:
        raise RayServeException(f"Deployment '{deployment_name}' in application '{app_name}' "
                                "does not exist")
    return DeploymentHandle(deployment_name, app_name)


def ingress(app: Any):
    """Serve a FastAPI (or any ASGI) application from a deployment class: its routes may be
    the class's methods.

        app = FastAPI()

        @serve.deployment
        @serve.ingress(app)
        class Api:
            @app.get("/hello")
            def hello(self, name: str) -> str:
                return f"hello {name}"
    """
    def decorator(cls: type) -> type:
        if not isinstance(cls, type):
            raise TypeError("@serve.ingress decorates a class")
        _class_based_routes(app, cls)
        cls.__serve_asgi_app__ = app
        return cls

    return decorator


def _servable() -> Any:
    from zactor.serve import context

    return context.get_replica_context().servable_object


def _class_based_routes(app: Any, cls: type) -> None:
    """Routes declared on the class's methods get the replica's instance as ``self``, through
    a FastAPI dependency. Done here, in the driver, where the routes' annotations resolve
    (a replica unpickles the functions without the globals their annotations name)."""
    try:
        from fastapi import Depends
        from fastapi.routing import APIRoute
    except ImportError:
        return
    router = getattr(app, "router", None)
    if router is None:
        return
    params = [p for p in inspect.signature(APIRoute.__init__).parameters
              if p not in ("self", "path", "endpoint")]
    for i, route in enumerate(router.routes):
        if not isinstance(route, APIRoute):
            continue
        fn = route.endpoint
        if cls.__dict__.get(getattr(fn, "__name__", None)) is not fn:
            continue
        sig = inspect.signature(fn)
        first, *rest = sig.parameters.values()
        fn.__signature__ = sig.replace(parameters=[
            first.replace(default=Depends(_servable))] +
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest])
        options = {p: getattr(route, p) for p in params if hasattr(route, p)}
        router.routes[i] = type(route)(route.path, fn, **options)
