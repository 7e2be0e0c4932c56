"""Serve's errors (Ray's ``ray.serve.exceptions``)."""

from __future__ import annotations

from zactor.exceptions import ZactorError


class RayServeException(ZactorError):
    """A Serve call could not be done (an unknown or deleted application, a failed deploy)."""


class BackPressureError(RayServeException):
    """Every replica is full and the router's queue is at its bound (HTTP answers 503)."""

    def __init__(self, num_queued_requests: int, max_queued_requests: int,
                 deployment: str = "") -> None:
        self.num_queued_requests = num_queued_requests
        self.max_queued_requests = max_queued_requests
        super().__init__(f"Request dropped due to backpressure: deployment {deployment!r} "
                         f"has {num_queued_requests} queued requests, the bound is "
                         f"max_queued_requests={max_queued_requests}")

    def __reduce__(self):
        return type(self), (self.num_queued_requests, self.max_queued_requests)


class DeploymentUnavailableError(RayServeException):
    """The deployment is gone (its application was deleted or Serve shut down)."""


class RequestCancelledError(RayServeException):
    """The request was cancelled before it finished."""
