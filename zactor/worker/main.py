"""The worker process main loop.

    head ──EXECUTE──► "in" DEALER ──► main thread: reads the socket, runs tasks and sync
                                       │  methods inline (a thread pool or an asyncio loop
                                       │  for concurrent and async actors)
    head ◄─TASK_DONE── "out" DEALER ◄──┘
    head ──CANCEL────► "control" DEALER ──► control thread ──SIGINT──► main thread
    caller ──CALL────► the actor's own ROUTER ──► main thread ──OBJECT──► caller
                       (plain actors only: direct calls, see zactor/_direct.py)

The main thread is its own I/O thread: a task costs no hand-off between threads, and a task
blocked in ``get`` keeps reading the socket itself. Only cancellation needs another thread,
since the main thread may be deep in user code: the control thread signals it, and the
handler raises in the task only if that task is still the one running.

A worker runs one normal task at a time, or hosts one actor for life. Functions and classes
arrive once (the head knows which this worker has) and are cached by content hash.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import threading
from typing import Any

import cloudpickle
import zmq

from zactor import _process, _serialization, _state, config
from zactor._args import unpack_args
from zactor._client import CoreClient
from zactor._object_ref import ObjectRef
from zactor.comm.security import from_text
from zactor.comm.transport import POLLIN, dealer, has_message, recv_parts, zmq_poll
from zactor.exceptions import ActorDiedError, TaskCancelledError, _ActorExit
from zactor.protocol import (
    SPEC_FIELDS,
    Msg,
    ProtocolError,
    S,
    TaskKind,
    decode,
    encode,
)
from zactor.worker import generators
from zactor.worker.output import ForwardedStream, WorkerLog
from zactor.worker.results import ActorBroken, ResultSender

log = logging.getLogger(__name__)


class _Interrupted(BaseException):
    """Raised in the main thread to cancel the running task (a BaseException, like Ray's
    KeyboardInterrupt, so that ``except Exception`` in user code does not swallow it)."""


class TaskContext(threading.local):
    task_id: bytes | None = None
    name: str = ""
    #: (resources held, GPU ids, namespace) of the running task; the actor's, in an actor.
    placement: tuple | None = None
    #: ["pg", group id, bundle index, capture] of the running task's placement group, if any.
    group: list | None = None


class WorkerRuntime(ResultSender):
    def __init__(self, cfg: dict) -> None:
        self.pid = os.getpid()
        self.node_id = bytes.fromhex(cfg["node_id"])
        self.shm_dir = cfg["shm_dir"]
        self.context = TaskContext()
        self.functions: dict[bytes, Any] = {}
        self.backlog: collections.deque = collections.deque()
        self.actor_id: bytes | None = None
        self.actor_name = ""
        self.instance: Any = None
        self.actor_error_blob: bytes | None = None
        self.pool: Any = None  # a ThreadPoolExecutor, for max_concurrency > 1
        self.aloop: Any = None  # an AsyncActorLoop, for async actors
        self.current: bytes | None = None  # the normal task or sync call the main thread runs
        self.cancel_target: bytes | None = None
        self.cancelled: set[bytes] = set()
        self.main_ident = threading.get_ident()
        self.in_flight = 0
        self.in_flight_done = threading.Condition()
        self.actor_placement: tuple | None = None
        self.actor_group: list | None = None  # the actor's placement group strategy
        self.restarts = 0  # how often this actor was rebuilt before this incarnation
        self.checkpointing = False  # the actor defines __zactor_checkpoint__
        self.actor_meta: dict | None = None
        # A plain actor's own ROUTER, for direct calls (zactor._direct), and the caller of the
        # direct call running now.
        self.direct: zmq.Socket | None = None
        self.reply_to: bytes | None = None
        self.head_address = cfg["address"]
        creds = from_text(cfg.get("key"))
        # Output of workers on other machines than the head's says which node it came from.
        self.where = f", ip={cfg['node_ip']}" if cfg.get("key") else ""
        self.core = CoreClient(cfg["address"], "worker", node_id=self.node_id,
                               on_task=self._on_message, io_thread=False, creds=creds,
                               info={"node_ip": cfg.get("node_ip", "127.0.0.1"),
                                     "env_key": cfg.get("env_key")})
        # Tasks this worker submits inherit its runtime environment (as in Ray).
        self.core.runtime_env = cfg.get("env")
        self.stopping = threading.Event()
        self.control = dealer(self.core.ctx, self.core.key + b"!", cfg["address"],
                              creds=creds)
        self.control.send(encode(Msg.HELLO, "control", self.pid, self.node_id, {}))
        self.control_thread = threading.Thread(target=self._control_loop, daemon=True,
                                               name="zactor-control")
        self.control_thread.start()
        _state.core = self.core
        self.worker_id = self.core.key
        welcome = self.core.welcome
        for path in reversed(welcome.get("sys_path") or []):
            if path not in sys.path:
                sys.path.insert(0, path)
        if welcome.get("cwd") and os.path.isdir(welcome["cwd"]):
            os.chdir(welcome["cwd"])
        if cfg.get("env_key"):  # the environment's directory and modules come first
            from zactor.worker.environment import apply_paths

            apply_paths(cfg)
        self.core.on_blocked = self._on_blocked
        self.core.resume_info = self._resume_info
        self.core.on_interrupt = self._interrupt_now
        signal.signal(signal.SIGINT, self._on_sigint)
        self.logfile = self._open_log(cfg)
        record = self.logfile.write if self.logfile is not None else None
        sys.stdout = ForwardedStream("stdout", self._prefix, self._send_log, record)
        sys.stderr = ForwardedStream("stderr", self._prefix, self._send_log, record)
        _forward_logging(cfg)

    # -- plumbing ----------------------------------------------------------------------------

    def group(self) -> list | None:
        """The placement group strategy of the code running in the calling thread."""
        return self.context.group or self.actor_group

    def placement(self) -> tuple | None:
        """(resources, GPU ids, namespace) of the code running in the calling thread."""
        return self.context.placement or self.actor_placement

    def _resume_info(self) -> dict:
        """What a restarted head needs to hear from this worker (zactor._client)."""
        address = None
        if self.direct is not None:
            address = self.direct.getsockopt_string(zmq.LAST_ENDPOINT)
        return {"actor_id": self.actor_id, "address": address,
                "busy": self.current is not None}

    def _open_log(self, cfg: dict) -> WorkerLog | None:
        """This worker's file in its node's log directory (none if the node keeps none)."""
        logs_dir = cfg.get("logs_dir")
        max_bytes = cfg.get("log_max_bytes", config.WORKER_LOG_MAX_BYTES)
        if not logs_dir or max_bytes <= 0:
            return None
        try:
            return WorkerLog(os.path.join(logs_dir, f"worker-{self.pid}.log"), max_bytes,
                             self.context)
        except OSError as exc:  # the output still reaches the driver
            log.warning("worker %d keeps no log file: %s", self.pid, exc)
            return None

    def _prefix(self) -> str:
        name = self.actor_name or self.context.name or "worker"
        return f"({name} pid={self.pid}{self.where})"

    def _send_log(self, stream: str, prefix: str, text: str) -> None:
        self.core.send(encode(Msg.LOG, stream, prefix, text))

    def _on_message(self, mtype: Msg, fields: list, frames: list) -> None:
        """Work read from the socket: queued, run by the main loop in arrival order."""
        self.backlog.append((mtype, fields, frames))

    def _control_loop(self) -> None:
        control = self.control
        while not self.stopping.is_set():
            try:
                if not control.poll(100):
                    continue
                mtype, fields = decode(control.recv())
            except (zmq.ZMQError, ProtocolError):
                continue
            if mtype == Msg.CANCEL_TASK:
                self._cancel(fields[0])

    def _cancel(self, task_id: bytes) -> None:
        """Control thread: interrupt the task if it runs, else make sure it never starts."""
        if task_id == self.current and self.actor_id is None:
            self.cancel_target = task_id
            signal.pthread_kill(self.main_ident, signal.SIGINT)
            return
        if self.aloop is not None and self.aloop.cancel(task_id):
            return
        self.cancelled.add(task_id)

    def _on_sigint(self, signum, frame) -> None:  # noqa: ARG002
        if self.cancel_target is None or self.cancel_target != self.current:
            return
        if self.core.critical:
            self.core.interrupt_pending = True  # raised by _interrupt_now when it is safe
            return
        self._interrupt_now()

    def _interrupt_now(self) -> None:
        if self.cancel_target is not None and self.cancel_target == self.current:
            self.cancel_target = None
            raise _Interrupted()

    def _on_blocked(self, blocked: bool) -> None:
        if self.actor_id is None and self.current is not None:
            self.core.send(encode(Msg.BLOCKED, blocked))

    # -- main loop ---------------------------------------------------------------------------

    def serve(self) -> int:
        backlog = self.backlog
        pump = self.core.pump
        while True:
            if not backlog:
                if self.direct is None:
                    pump(50)
                else:
                    self._pump_both()
                continue
            mtype, fields, frames = backlog.popleft()
            if mtype == Msg.EXECUTE:
                self._execute(fields, frames)
            elif mtype == Msg.CALL:
                self._execute_direct(frames)
            elif mtype == Msg.EXIT:
                return self._exit()

    def _pump_both(self) -> None:
        """Wait for the head's socket or the actor's own; queue what came, in arrival order
        per socket (each caller's direct calls all come on one connection, in order)."""
        direct = self.direct
        core = self.core
        zmq_poll(self.watched, 50)
        if has_message(core.inp):
            core.drain()
        if has_message(direct):
            backlog = self.backlog
            while True:
                try:
                    frames = recv_parts(direct)
                except zmq.Again:
                    break
                backlog.append((Msg.CALL, None, frames))
                if not has_message(direct):
                    break
        core.flush_if_due()

    def _execute_direct(self, frames: list) -> None:
        try:
            mtype, fields = decode(frames[1])
            spec = fields[0]
            if mtype != Msg.CALL or len(frames) != 3 or len(spec) != len(SPEC_FIELDS) or \
                    spec[S.ACTOR_ID] != self.actor_id or spec[S.KIND] != TaskKind.ACTOR_CALL \
                    or spec[S.DEPS] or not isinstance(spec[S.METHOD], str):
                raise ProtocolError("not a direct call to this actor")
        except (ProtocolError, IndexError, TypeError) as exc:
            log.warning("dropped a malformed direct call: %s", exc)
            return
        self.reply_to = frames[0][:-1]
        try:
            # Shaped as an EXECUTE: no function, no dependencies, no placement; args frame 1.
            self._run_sync(spec, [spec, (), False, None], frames[1:])
        finally:
            self.reply_to = None

    def _exit(self) -> int:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        with self.in_flight_done:
            while self.in_flight:
                self.in_flight_done.wait()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        self.stopping.set()  # the control thread ends before its socket is closed
        self.control_thread.join(timeout=1)
        _flush_metrics(self.core)
        self.core.close(goodbye=(False,))
        return 0

    def _execute(self, fields: list, frames: list) -> None:
        spec = fields[0]
        kind = spec[S.KIND]
        if fields[2]:  # the function or class travels with its first task on this worker
            self.functions[spec[S.FN_HASH]] = cloudpickle.loads(frames[2])
        if kind == TaskKind.TASK:
            self._run_sync(spec, fields, frames)
        elif kind == TaskKind.ACTOR_CALL:
            if self.aloop is not None:
                self.track(1)
                self.aloop.submit(spec, fields, frames)
            elif self.pool is not None:
                self.track(1)
                self.pool.submit(self._run_pooled, spec, fields, frames)
            else:
                self._run_sync(spec, fields, frames)
        elif kind == TaskKind.ACTOR_CREATE:
            self._create_actor(spec, fields, frames)

    def track(self, delta: int) -> None:
        with self.in_flight_done:
            self.in_flight += delta
            if not self.in_flight:
                self.in_flight_done.notify_all()

    def _run_pooled(self, spec, fields, frames) -> None:
        try:
            self._run_sync(spec, fields, frames)
        finally:
            self.track(-1)

    # -- running -----------------------------------------------------------------------------

    def resolve_args(self, spec: list, fields: list, frames: list) -> tuple[list, dict, list]:
        """The call's arguments with dependencies substituted; also the refs kept alive."""
        deps = spec[S.DEPS]
        values: dict[int, Any] = {}
        keep: list = []
        if deps:
            provided = {}
            idx = 3 if fields[2] else 2
            for oid, status, loc in fields[1]:
                blob = None
                if loc is None:
                    blob = frames[idx]
                    idx += 1
                provided[oid] = (status, loc, blob)
            core = self.core
            for i, oid in enumerate(deps):
                entry = provided.get(oid)
                if entry is None:  # not ready when the head sent the call: fetch it
                    ref = ObjectRef(oid, _owned=False)
                    keep.append(ref)
                    entry = core.get_entries([oid], None)[0]
                values[i] = core.decode(oid, entry)
        if spec[S.ARGS_IN_DEP]:
            packed = values[len(deps) - 1]
        else:
            packed = _serialization.loads(frames[1])
        args, kwargs = unpack_args(packed, values.__getitem__)
        return args, kwargs, keep

    def target(self, spec: list):
        kind = spec[S.KIND]
        if kind == TaskKind.TASK:
            return self.functions[spec[S.FN_HASH]]
        if self.actor_error_blob is not None:
            raise ActorBroken()
        method = spec[S.METHOD]
        if method == "__ray_ready__":
            return lambda: True
        if method == "__ray_terminate__":
            return lambda: self.backlog.append((Msg.EXIT, [], []))
        return getattr(self.instance, method)

    def _run_sync(self, spec: list, fields: list, frames: list) -> None:
        task_id = spec[S.TASK_ID]
        ctx = self.context
        ctx.task_id = task_id
        ctx.name = spec[S.NAME]
        ctx.placement = fields[3]
        options = spec[S.OPTIONS]
        strategy = options.get("strategy") if options else None
        ctx.group = strategy if strategy and strategy[0] == "pg" else None
        on_main = threading.get_ident() == self.main_ident
        keep: list = []
        try:
            self.check_not_cancelled(spec)
            if fields[3] is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, fields[3][1]))
            if on_main:
                self.current = task_id
            fn = self.target(spec)
            args, kwargs, keep = self.resolve_args(spec, fields, frames)
            result = fn(*args, **kwargs)
            if spec[S.NUM_RETURNS] < 0:  # a generator: runs (and may be cancelled) here
                generators.run(self, spec, result)
                return
            if on_main:
                self.current = None
            if task_id in self.cancelled:  # a sync actor method that saw is_canceled()
                self.cancelled.discard(task_id)
                raise TaskCancelledError(f"Task {spec[S.NAME]} was cancelled")
            self.send_results(spec, result)
        except SystemExit as exc:  # sys.exit() in user code ends the process, as in Ray
            self.exit_process(exc.code)
        except _ActorExit:
            self.exit_actor()
        except _Interrupted:
            self.current = None
            self.send_error(spec, TaskCancelledError(f"Task {spec[S.NAME]} was cancelled"))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            self.current = None
            self.send_error(spec, exc)
        finally:
            self.current = None
            # A last line without its newline still goes out as this task's (its prefix,
            # its marker in the log file), so before the context is cleared.
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            ctx.task_id = None
            ctx.group = None
            ctx.name = ""
            del keep

    def is_canceled(self) -> bool:
        task_id = self.context.task_id
        return task_id is not None and (task_id in self.cancelled or
                                        task_id == self.cancel_target)

    def exit_process(self, code: Any) -> None:
        """The task called ``sys.exit``: the worker exits with that status (the head sees a
        dead worker: retries and restarts follow), after its output has left."""
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        self._leave(status)

    def exit_actor(self) -> None:
        """exit_actor(): the actor ends for good; its atexit handlers run first."""
        import atexit

        atexit._run_exitfuncs()
        try:  # the head marks the actor dead first, so this exit is not taken for a crash
            self.core.request("exit_actor", self.actor_id, timeout=10)
        except Exception:  # noqa: BLE001 - the head is gone: exit all the same
            pass
        self._leave(0)

    def _leave(self, status: int) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        _flush_metrics(self.core, wait=True)  # no GOODBYE follows: the head must have them
        self.core.close_outbound(linger_ms=2000)  # what was sent (output, YIELDs) goes first
        os._exit(status)

    def check_not_cancelled(self, spec: list) -> None:
        task_id = spec[S.TASK_ID]
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            raise TaskCancelledError(f"Task {spec[S.NAME]} was cancelled")

    def _create_actor(self, spec: list, fields: list, frames: list) -> None:
        options = spec[S.OPTIONS]
        self.actor_id = spec[S.ACTOR_ID]
        cls = self.functions[spec[S.FN_HASH]]
        self.actor_name = options.get("class_name") or getattr(cls, "__name__", "Actor")
        self.actor_meta = options.get("meta")
        if self.logfile is not None:  # what follows in the file is this actor's
            self.logfile.mark_actor(self.actor_name, self.actor_id)
        strategy = options.get("strategy")
        self.actor_group = strategy if strategy and strategy[0] == "pg" else None
        self.context.task_id = spec[S.TASK_ID]
        self.context.name = f"{self.actor_name}.__init__"
        try:
            args, kwargs, keep = self.resolve_args(spec, fields, frames)
            placement = fields[3]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, placement[1]))
            self.context.placement = self.actor_placement = placement
            self.restarts, checkpoint = placement[3], placement[4]
            self.instance = instance = cls(*args, **kwargs)
            del keep
            if checkpoint is not None and hasattr(instance, "__zactor_restore__"):
                instance.__zactor_restore__(_serialization.loads(checkpoint))
            self.checkpointing = hasattr(instance, "__zactor_checkpoint__")
        except BaseException as exc:  # noqa: BLE001
            import traceback

            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            err = ActorDiedError(
                f"The actor {self.actor_name} died because its constructor raised "
                f"{type(exc).__name__}: {exc}\n{tb}", self.actor_id.hex())
            self.actor_error_blob = _serialization.dumps_plain(err)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            self.core.send(encode(Msg.ACTOR_READY, self.actor_id, True, None),
                           [self.actor_error_blob])
            return
        finally:
            self.context.name = ""
        concurrency = options.get("max_concurrency")
        if options.get("is_async"):
            from zactor.worker.async_actor import AsyncActorLoop

            self.aloop = AsyncActorLoop(self, concurrency or config.DEFAULT_ASYNC_MAX_CONCURRENCY)
        elif concurrency and concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="zactor-actor")
        elif not self.checkpointing:
            # Only a plain actor takes direct calls: its main thread alone runs calls, so it
            # alone uses the socket. A checkpointing actor must save its state with the head
            # before any caller sees a result, so its results go through the head.
            self._bind_direct()
        address = self.direct.getsockopt_string(zmq.LAST_ENDPOINT) if self.direct else None
        self.core.send(encode(Msg.ACTOR_READY, self.actor_id, False, address))

    def _bind_direct(self) -> None:
        if not self.head_address.startswith("ipc://"):
            return
        folder = self.core.welcome.get("sock_dir") or \
            os.path.dirname(self.head_address[len("ipc://"):])
        sock = self.core.ctx.socket(zmq.ROUTER)
        for opt, val in ((zmq.SNDHWM, 0), (zmq.RCVHWM, 0), (zmq.LINGER, 0),
                         (zmq.ROUTER_MANDATORY, 1)):
            sock.setsockopt(opt, val)
        # A fresh name per incarnation: a caller still connected to a dead incarnation's
        # address must never reach the next one.
        path = f"{folder}/actor-{os.urandom(8).hex()}.sock"
        if len(path.encode()) > 107:  # sockaddr_un's limit: calls go through the head
            sock.close(linger=0)
            return
        sock.bind(f"ipc://{path}")
        self.direct = sock
        self.watched = [(self.core.inp, POLLIN), (sock, POLLIN)]

def _flush_metrics(core: CoreClient, wait: bool = False) -> None:
    """Send the user metrics this worker recorded since its last report (if it has any)."""
    metrics = sys.modules.get("zactor.util.metrics")
    if metrics is not None:
        try:
            metrics._flush(core, wait)
        except Exception:  # noqa: BLE001 - exiting all the same
            pass


def _forward_logging(cfg: dict) -> None:
    """The root logger writes to this worker's forwarded stderr (to the driver with the
    worker's prefix, and into its log file). Forked from the head or a node agent, the
    worker inherited their handlers, which write to *their* stderr under *their* label:
    those go. A handler that writes to ``sys.stderr`` as it is at each record, so that a
    stream a task swaps in (pytest's capture, contextlib.redirect_stderr) is honoured."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(cfg.get("log_level", logging.WARNING))


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a record comes."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def run(cfg: dict) -> int:
    """Entry point of a forked worker process."""
    _process.set_process_name("zactor-worker")
    # Until the runtime forwards its streams (_forward_logging), records go to this
    # process's own stderr, labelled as the worker's (not the inherited handlers' label).
    logging.basicConfig(level=cfg.get("log_level", logging.WARNING), force=True,
                        format="(zactor worker pid=%(process)d) %(levelname)s %(message)s")
    runtime = WorkerRuntime(cfg)
    _state.worker = runtime  # type: ignore[attr-defined]
    code = runtime.serve()
    return code
