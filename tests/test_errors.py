"""Errors: remote exceptions come back as Python errors; bad input gets a clear error at once."""

from __future__ import annotations

import threading

import pytest

import zactor
import zactor.exceptions as zexc

pytestmark = pytest.mark.usefixtures("cluster")


class InsufficientFunds(Exception):
    """A custom exception whose __init__ takes extra arguments."""

    def __init__(self, account, needed, available):
        super().__init__(f"account {account} needs {needed}, has {available}")
        self.account = account
        self.needed = needed
        self.available = available


class CarriesALock(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


@zactor.remote
def raise_value_error_in_task(message):
    raise ValueError(message)


@zactor.remote
def raise_insufficient_funds():
    raise InsufficientFunds("acct-7", 100, 42)


@zactor.remote
def raise_unpicklable_exception():
    raise CarriesALock("lock-holding failure message")


@zactor.remote
def ok(x=None):
    return x


def test_remote_exception_is_catchable_as_its_original_class():
    with pytest.raises(ValueError, match="bad input 123"):
        zactor.get(raise_value_error_in_task.remote("bad input 123"))


def test_remote_exception_is_also_a_task_error_with_the_remote_traceback():
    with pytest.raises(zexc.TaskError) as info:
        zactor.get(raise_value_error_in_task.remote("bad input 456"))
    err = info.value
    text = str(err)
    assert isinstance(err, ValueError)
    assert isinstance(err, zexc.ZactorError)
    assert "bad input 456" in text
    assert "raise_value_error_in_task" in text, "the remote traceback names the function"
    assert 'File "' in text and "line" in text, "the remote traceback text is in the message"


def test_ray_exception_aliases_match_zactor_classes():
    with pytest.raises(zexc.RayTaskError):
        zactor.get(raise_value_error_in_task.remote("alias"))
    assert issubclass(zexc.TaskError, zexc.RayError) or zexc.TaskError is zexc.RayTaskError
    assert issubclass(zexc.ActorDiedError, zexc.RayActorError)
    assert issubclass(zexc.ZactorError, Exception)


def test_failure_classes_share_the_zactor_error_base():
    for cls in (zexc.TaskError, zexc.GetTimeoutError, zexc.ActorDiedError,
                zexc.ActorUnavailableError, zexc.WorkerCrashedError, zexc.ObjectLostError,
                zexc.TaskCancelledError, zexc.NodeDiedError):
        assert issubclass(cls, zexc.ZactorError), cls
    assert issubclass(zexc.GetTimeoutError, TimeoutError)


def test_custom_exception_with_extra_init_arguments_arrives_as_its_class():
    with pytest.raises(InsufficientFunds) as info:
        zactor.get(raise_insufficient_funds.remote())
    err = info.value
    assert isinstance(err, zexc.TaskError)
    assert "account acct-7 needs 100, has 42" in str(err)
    assert "raise_insufficient_funds" in str(err)


def test_unpicklable_exception_still_arrives_with_type_message_and_traceback():
    with pytest.raises(zexc.TaskError) as info:
        zactor.get(raise_unpicklable_exception.remote())
    text = str(info.value)
    assert "CarriesALock" in text
    assert "lock-holding failure message" in text
    assert "raise_unpicklable_exception" in text and 'File "' in text


def test_error_in_a_dependency_propagates_to_the_dependent_task():
    failed = raise_value_error_in_task.remote("upstream failure")
    downstream = ok.remote(failed)
    with pytest.raises(ValueError) as info:
        zactor.get(downstream)
    assert isinstance(info.value, zexc.TaskError)
    assert "upstream failure" in str(info.value)


def test_error_raised_in_a_nested_task_reaches_the_driver():
    @zactor.remote
    def outer():
        return zactor.get(raise_value_error_in_task.remote("deep failure"))

    with pytest.raises(ValueError) as info:
        zactor.get(outer.remote())
    assert "deep failure" in str(info.value)


# Bad input: clear errors at the call site.


def test_unknown_option_in_options_raises_value_error_listing_valid_options():
    with pytest.raises(ValueError) as info:
        ok.options(num_cpu=1)
    text = str(info.value)
    assert "num_cpu" in text
    assert "num_cpus" in text and "num_returns" in text, "valid options are listed"


def test_unknown_option_in_remote_decorator_raises_value_error():
    with pytest.raises(ValueError) as info:

        @zactor.remote(max_retry=2)
        def f():
            return 1

    assert "max_retry" in str(info.value) and "max_retries" in str(info.value)


def test_unknown_option_for_an_actor_raises_value_error():
    @zactor.remote
    class A:
        def ping(self):
            return 1

    with pytest.raises(ValueError) as info:
        A.options(max_restart=1)
    assert "max_restart" in str(info.value) and "max_restarts" in str(info.value)


def test_unpicklable_argument_raises_type_error_naming_the_problem():
    with pytest.raises(TypeError) as info:
        ok.remote(threading.Lock())
    text = str(info.value).lower()
    assert "lock" in text
    assert "argument" in text or "serializ" in text or "pickl" in text


def test_unpicklable_function_raises_type_error():
    lock = threading.Lock()

    with pytest.raises(TypeError) as info:

        @zactor.remote
        def uses_lock():
            with lock:
                return 1

        uses_lock.remote()
    assert "lock" in str(info.value).lower()


def test_get_on_something_that_is_not_an_object_ref_raises_type_error():
    with pytest.raises(TypeError):
        zactor.get(42)
    with pytest.raises(TypeError):
        zactor.get("not a ref")


def test_put_of_an_object_ref_raises_type_error():
    with pytest.raises(TypeError):
        zactor.put(zactor.put(1))

