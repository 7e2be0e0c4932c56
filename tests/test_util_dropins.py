"""Ray's utility drop-ins on a real cluster: ``zactor.util.multiprocessing.Pool``, the joblib
backends (with scikit-learn), ``RayExecutor``, ``zactor.util.queue.Queue`` and
``zactor.experimental.tqdm_ray``."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import multiprocessing
import os
import queue as std_queue
import subprocess
import sys
import threading
import time

import psutil
import pytest
from remote_helpers import wait_until

import zactor
from zactor.util.multiprocessing import Pool

CLUSTER_KWARGS = {"num_cpus": 2}
pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]

DEADLINE_S = 30.0
_wait = functools.partial(wait_until, timeout=DEADLINE_S)


class DropinError(Exception):
    """A user exception that must come back as itself."""


def _square(x):
    return x * x


def _slow_first(x):
    # Item 0 takes long, so that the others finish first.
    if x == 0:
        time.sleep(0.5)
    return x


def _fail_on(x, bad=3):
    if x == bad:
        raise DropinError(f"bad item {x}")
    return x


def _init_worker(value):
    os.environ["ZACTOR_DROPIN_INIT"] = value


def _read_init(_=None):
    return os.environ.get("ZACTOR_DROPIN_INIT"), os.getpid()


def test_import_zactor_loads_no_drop_in_eagerly():
    code = ("import sys, zactor, zactor.util; "
            "loaded = [m for m in sys.modules if m.startswith(('zactor.util.multiprocessing', "
            "'zactor.util.joblib', 'zactor.util.queue', 'zactor.util.concurrent', "
            "'zactor.experimental', 'joblib', 'tqdm'))]; "
            "assert not loaded, loaded; "
            "assert zactor.util.queue.Queue and zactor.util.multiprocessing.Pool; "
            "assert zactor.util.joblib.register_ray and zactor.util.concurrent")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=DEADLINE_S)


# -- multiprocessing.Pool ----------------------------------------------------------------------


def test_pool_map_starmap_and_imap_keep_order_and_run_in_actors():
    with Pool(processes=2) as pool:
        assert pool.map(_square, range(20)) == [x * x for x in range(20)]
        assert pool.map(_square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.map(_square, []) == []
        assert pool.starmap(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]
        assert pool.starmap_async(pow, [(2, 5)]).get(timeout=DEADLINE_S) == [32]
        # imap: in input order, even though item 0 finishes last.
        assert list(pool.imap(_slow_first, range(6))) == list(range(6))
        pids = set(pool.map(lambda _: os.getpid(), range(8), chunksize=1))
        assert os.getpid() not in pids and len(pids) == 2


def test_pool_imap_unordered_yields_as_completed_and_imap_is_lazy():
    with Pool(processes=2) as pool:
        got = list(pool.imap_unordered(_slow_first, range(6)))
        assert sorted(got) == list(range(6))
        assert got[0] != 0, "imap_unordered waited for the slow first item"
        pulled = []

        def numbers():
            for i in range(1000):
                pulled.append(i)
                yield i

        it = pool.imap(_square, numbers(), chunksize=2)
        assert next(it) == 0 and next(it) == 1
        assert len(pulled) < 100, f"imap consumed {len(pulled)} inputs for two results"
        assert sum(it) == sum(x * x for x in range(2, 1000))
        assert len(pulled) == 1000
        slow = pool.imap(_slow_first, [0])
        with pytest.raises(multiprocessing.TimeoutError):
            slow.next(timeout=0.05)
        assert slow.next(timeout=DEADLINE_S) == 0
        with pytest.raises(StopIteration):
            next(slow)


def test_pool_apply_async_callbacks_errors_and_timeouts():
    with Pool(processes=2) as pool:
        assert pool.apply(pow, (2, 10)) == 1024
        assert pool.apply(_fail_on, (1,), {"bad": 2}) == 1
        results, errors, done = [], [], threading.Event()

        def on_result(value):
            results.append(value)
            done.set()

        ok = pool.apply_async(_square, (7,), callback=on_result,
                              error_callback=errors.append)
        assert ok.get(timeout=DEADLINE_S) == 49 and done.wait(DEADLINE_S)
        assert ok.ready() and ok.successful() and results == [49] and errors == []

        failed_event = threading.Event()

        def on_error(exc):
            errors.append(exc)
            failed_event.set()

        bad = pool.apply_async(_fail_on, (3,), callback=results.append, error_callback=on_error)
        bad.wait(DEADLINE_S)
        assert bad.ready() and not bad.successful() and failed_event.is_set()
        with pytest.raises(DropinError, match="bad item 3") as info:
            bad.get()
        assert type(info.value) is DropinError  # the original class, not a wrapper
        assert "_fail_on" in str(info.value.__cause__)  # the remote traceback
        assert isinstance(errors[0], DropinError) and results == [49]

        # map: the first error wins; map_async's callback gets the whole list.
        with pytest.raises(DropinError):
            pool.map(_fail_on, range(10), chunksize=1)
        lists = []
        pool.map_async(_square, range(5), callback=lists.append).get(timeout=DEADLINE_S)
        _wait(lambda: lists, message="the map_async callback")
        assert lists == [[0, 1, 4, 9, 16]]

        slow = pool.apply_async(time.sleep, (1.0,))
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0.05)
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        assert slow.get(timeout=DEADLINE_S) is None


def test_pool_initializer_close_join_and_context_manager_terminates():
    pool = Pool(processes=2, initializer=_init_worker, initargs=("ready",))
    values = pool.map(_read_init, range(6), chunksize=1)
    assert {v for v, _ in values} == {"ready"}
    late = []
    pool.map_async(_square, range(4), callback=late.append)
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.apply(_square, (1,))
    pool.join()
    assert late == [[0, 1, 4, 9]], "join returned before the work and its callback were done"

    with Pool(processes=1, maxtasksperchild=1) as fresh:
        pids = [fresh.apply(os.getpid) for _ in range(3)]
    assert len(set(pids)) == 3, "maxtasksperchild=1 reused an actor"

    with Pool(processes=2) as pool:
        pids = {pid for _, pid in pool.map(_read_init, range(4), chunksize=1)}
    with pytest.raises(ValueError, match="not running"):
        pool.map(_square, [1])
    _wait(lambda: not any(psutil.pid_exists(p) for p in pids),
          message="the pool's actors to end after the with block")


# -- joblib and scikit-learn -------------------------------------------------------------------


def _pid_and_square(x):
    return os.getpid(), x * x


@pytest.mark.parametrize("name", ["ray", "zactor"])
def test_joblib_backend_runs_parallel_on_the_cluster(name):
    import joblib

    from zactor.util.joblib import register_ray, register_zactor
    from zactor.util.joblib.ray_backend import RayBackend

    register_ray() if name == "ray" else register_zactor()
    with joblib.parallel_backend(name):
        assert isinstance(joblib.parallel.get_active_backend()[0], RayBackend)
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(_pid_and_square)(i) for i in range(12))
        with pytest.raises(DropinError):
            joblib.Parallel(n_jobs=-1)(joblib.delayed(_fail_on)(i) for i in range(6))
    assert [sq for _, sq in out] == [i * i for i in range(12)]
    assert os.getpid() not in {pid for pid, _ in out}


def test_scikit_learn_n_jobs_fits_in_cluster_workers():
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.model_selection import cross_validate
    from sklearn.tree import DecisionTreeClassifier

    from zactor.util.joblib import register_ray

    class PidTree(DecisionTreeClassifier):
        """Remembers the process that fitted it."""

        def fit(self, X, y, **kwargs):
            self.fit_pid_ = os.getpid()
            return super().fit(X, y, **kwargs)

    X, y = load_iris(return_X_y=True)
    register_ray()
    with joblib.parallel_backend("ray"):
        scores = cross_validate(PidTree(random_state=0), X, y, cv=4, n_jobs=2,
                                return_estimator=True)
    pids = {est.fit_pid_ for est in scores["estimator"]}
    assert os.getpid() not in pids, "the estimators were fitted in the driver"
    assert scores["test_score"].mean() > 0.8


# -- concurrent.futures ------------------------------------------------------------------------


def test_executor_submit_map_as_completed_and_exceptions():
    from zactor.util.concurrent.futures import RayExecutor, ZactorExecutor

    assert ZactorExecutor is RayExecutor
    with RayExecutor(max_workers=2) as ex:
        futures = [ex.submit(_pid_and_square, i) for i in range(8)]
        assert all(isinstance(f, cf.Future) for f in futures)
        done = [f.result() for f in cf.as_completed(futures, timeout=DEADLINE_S)]
        assert sorted(sq for _, sq in done) == [i * i for i in range(8)]
        assert os.getpid() not in {pid for pid, _ in done}
        finished, pending = cf.wait(futures, timeout=DEADLINE_S)
        assert len(finished) == 8 and not pending
        assert list(ex.map(pow, [2, 3], [3, 2], timeout=DEADLINE_S)) == [8, 9]
        failing = ex.submit(_fail_on, 3)
        with pytest.raises(DropinError, match="bad item 3"):
            failing.result(timeout=DEADLINE_S)
        assert isinstance(failing.exception(), DropinError)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)


def test_executor_shutdown_cancels_queued_futures_but_not_running_ones():
    from zactor.util.concurrent.futures import RayExecutor
    from zactor.util.queue import Queue

    gate = Queue()
    ex = RayExecutor(max_workers=1)
    running = ex.submit(lambda q: q.get(timeout=DEADLINE_S), gate)
    queued = ex.submit(abs, -1)
    _wait(running.running, message="the first call to start")
    assert not queued.running() and not queued.done()
    ex.shutdown(wait=False, cancel_futures=True)
    _wait(queued.cancelled, message="the queued call to be cancelled")
    assert not running.cancel()  # running: it cannot be
    gate.put("released")
    assert running.result(timeout=DEADLINE_S) == "released"
    ex.shutdown(wait=True)
    gate.shutdown()


# -- Queue -------------------------------------------------------------------------------------


def test_queue_blocking_timeouts_nowait_and_batches():
    from zactor.util.queue import Empty, Full, Queue

    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - start >= 0.25, "get(timeout) returned before its timeout"
    with pytest.raises(std_queue.Empty):  # Ray's Empty is a queue.Empty
        q.get_nowait()
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])  # all or nothing
    assert q.size() == 2
    q.put(3, timeout=1)
    assert q.full()
    with pytest.raises(std_queue.Full):
        q.put(4, timeout=0.2)
    with pytest.raises(Full):
        q.put_nowait(4)
    with pytest.raises(Empty):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get(block=False) == 3 and q.empty()
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.shutdown()


@zactor.remote
def _produce(q, n):
    for i in range(n):
        q.put(i, timeout=DEADLINE_S)
    return os.getpid()


@zactor.remote
def _take_one(q):
    return q.get(timeout=DEADLINE_S)


@zactor.remote
class _Consumer:
    def __init__(self, q):
        self.q = q

    def take(self, n):
        return [self.q.get(timeout=DEADLINE_S) for _ in range(n)], os.getpid()


def test_queue_between_a_producer_task_and_a_consumer_actor():
    from zactor.util.queue import Queue

    q = Queue(maxsize=4)  # smaller than the stream: the producer must block and resume
    consumer = _Consumer.remote(q)
    taken = consumer.take.remote(20)  # starts before anything is produced
    producer_pid = zactor.get(_produce.remote(q, 20), timeout=DEADLINE_S)
    items, consumer_pid = zactor.get(taken, timeout=DEADLINE_S)
    assert items == list(range(20))
    assert os.getpid() not in (producer_pid, consumer_pid)
    # A blocked get does not block the queue's actor: it still answers, and a put wakes it.
    waiter = _take_one.remote(q)
    assert q.qsize() == 0
    q.put("wake")
    assert zactor.get(waiter, timeout=DEADLINE_S) == "wake"
    zactor.kill(consumer)
    q.shutdown()


def test_queue_async_variants_and_shutdown():
    from zactor.util.queue import Empty, Queue

    q = Queue()

    async def roundtrip():
        await q.put_async("a")
        await q.put_async("b", block=False)
        first = await q.get_async(timeout=DEADLINE_S)
        second = await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.1)
        return first, second

    assert asyncio.run(roundtrip()) == ("a", "b")
    actor = q.actor
    q.shutdown()
    assert q.actor is None
    with pytest.raises(zactor.exceptions.ActorError):
        zactor.get(actor.qsize.remote(), timeout=DEADLINE_S)
    forced = Queue()
    forced.put(1)
    old = forced.actor
    forced.shutdown(force=True)
    with pytest.raises(zactor.exceptions.ActorError):
        zactor.get(old.qsize.remote(), timeout=DEADLINE_S)


# -- tqdm_ray ----------------------------------------------------------------------------------


@zactor.remote
def _with_bars(n):
    from zactor.experimental.tqdm_ray import tqdm

    print("plain line from the task")
    for _ in tqdm(range(n), desc="dropin-iter"):
        pass
    with tqdm(total=5, desc="dropin-manual") as bar:
        bar.update(2)
        bar.set_description("dropin-renamed")
        bar.update(3)
    return os.getpid()


@zactor.remote
class _BarActor:
    def run(self):
        from zactor.experimental.tqdm_ray import tqdm

        for _ in tqdm(range(4), desc="dropin-actor"):
            pass


def test_tqdm_ray_bars_from_a_task_and_an_actor_are_drawn_on_the_driver(capsys):
    from zactor.experimental.tqdm_ray import MAGIC

    pid = zactor.get(_with_bars.remote(10), timeout=DEADLINE_S)
    actor = _BarActor.remote()
    zactor.get(actor.run.remote(), timeout=DEADLINE_S)
    seen = []

    def drawn():
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        text = "".join(seen)
        return all(s in text for s in ("dropin-iter", "10/10", "dropin-renamed", "5/5",
                                       "dropin-actor", "4/4", "plain line from the task"))

    _wait(drawn, message="the bars' final states on the driver")
    text = "".join(seen)
    assert MAGIC not in text, "a progress-bar line was printed instead of drawn"
    assert f"pid={pid}" in text  # the bar says where it runs
    zactor.kill(actor)
