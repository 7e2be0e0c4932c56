"""A second driver joins the running cluster by address; detached actors outlive it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from remote_helpers import wait_until

import zactor
import zactor.testing

pytestmark = pytest.mark.usefixtures("cluster")

SECOND_DRIVER = textwrap.dedent(
    """
    import sys
    import zactor

    zactor.init(address=sys.argv[1], namespace="second-driver")

    @zactor.remote
    class Box:
        def __init__(self, value):
            self.value = value

        def get(self):
            return self.value

    keeper = Box.options(name="keeper", lifetime="detached").remote(41)
    ephemeral = Box.options(name="ephemeral").remote(1)
    print(zactor.get(keeper.get.remote()), zactor.get(ephemeral.get.remote()), flush=True)
    """
)


def name_is_free(name: str, namespace: str) -> bool:
    try:
        zactor.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


@pytest.mark.timeout(90)
def test_detached_actor_outlives_the_driver_that_created_it():
    proc = subprocess.run([sys.executable, "-c", SECOND_DRIVER, zactor.testing.head_address()],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["41", "1"]

    keeper = zactor.get_actor("keeper", namespace="second-driver")
    assert zactor.get(keeper.get.remote(), timeout=30) == 41
    # A non-detached actor shares its creating driver's fate.
    wait_until(lambda: name_is_free("ephemeral", "second-driver"), timeout=20, interval=0.2,
               message="the second driver's non-detached actor to die")
    zactor.kill(keeper)
    wait_until(lambda: name_is_free("keeper", "second-driver"), timeout=20, interval=0.2,
               message="the killed detached actor's name to be freed")
    # The cluster the first driver started is still up.
    assert zactor.cluster_resources()["CPU"] == 2
