"""Placement groups on the embedded one-machine cluster: reservation, the bundle limits of
the work inside, pending and never-placeable groups, removal, child capture, Ray's older
``placement_group=`` option and the table."""

from __future__ import annotations

import logging
import time

import pytest
from remote_helpers import wait_until

import zactor
from zactor.exceptions import ActorPlacementGroupRemoved, TaskPlacementGroupRemoved
from zactor.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from zactor.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

CLUSTER_KWARGS = {"num_cpus": 4, "resources": {"disk": 2}}
pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(60)]


@zactor.remote
class Gauge:
    """Counts the tasks that run at once."""

    def __init__(self):
        self.now = self.most = 0

    def enter(self):
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self):
        self.now -= 1

    def peak(self):
        return self.most


@zactor.remote(num_cpus=1)
def busy(gauge, seconds: float) -> bool:
    # Not waited on: a task blocked in get lends its CPU out, as in Ray.
    gauge.enter.remote()
    time.sleep(seconds)
    gauge.leave.remote()
    return True


@zactor.remote(num_cpus=0)
def current():
    group = get_current_placement_group()
    return group.id.hex() if group else None


def cpus_free() -> float:
    return zactor.available_resources().get("CPU", 0.0)


def test_a_group_reserves_its_bundles_and_its_work_uses_only_them():
    group = placement_group([{"CPU": 1}, {"CPU": 1, "disk": 1}], name="two")
    assert zactor.get(group.ready(), timeout=10) == group
    assert group.wait(5) and group.bundle_count == 2
    assert group.bundle_specs == [{"CPU": 1}, {"CPU": 1, "disk": 1}]
    assert cpus_free() == 2 and zactor.available_resources()["disk"] == 1
    table = placement_group_table(group)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK"
    assert table["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0, "disk": 1.0}}
    assert get_placement_group("two") == group

    gauge = Gauge.options(num_cpus=0).remote()
    inside = [busy.options(scheduling_strategy=InGroup(group)).remote(gauge, 0.3)
              for _ in range(6)]
    assert all(zactor.get(inside, timeout=30))
    assert zactor.get(gauge.peak.remote()) == 2  # the group's two CPUs, never more
    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        busy.options(num_cpus=2, scheduling_strategy=InGroup(group)).remote(gauge, 0)
    with pytest.raises(ValueError, match="out of range"):
        busy.options(scheduling_strategy=InGroup(group, 2)).remote(gauge, 0)
    with pytest.raises(ValueError, match="cannot fit"):  # bundle 0 has no disk
        busy.options(resources={"disk": 1},
                     scheduling_strategy=InGroup(group, 0)).remote(gauge, 0)
    remove_placement_group(group)
    wait_until(lambda: cpus_free() == 4, message="the group's CPUs back")
    assert placement_group_table(group)["state"] == "REMOVED"
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("two")


def test_a_group_that_does_not_fit_waits_and_one_that_never_can_is_announced(caplog):
    first = placement_group([{"CPU": 3}])
    assert first.wait(10)
    second = placement_group([{"CPU": 2}])
    assert not second.wait(0.5)  # one CPU left: it waits, all or nothing
    assert placement_group_table(second)["state"] == "PENDING"
    status = zactor._api.core().request("cluster_status")
    assert status["demand"] == {"CPU: 2": 1}
    with caplog.at_level(logging.WARNING):
        never = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        wait_until(lambda: "cannot be placed" in caplog.text, message="the warning")
    assert "STRICT_SPREAD needs 2 nodes" in caplog.text
    assert placement_group_table(never)["state"] == "PENDING"  # it waits still, as in Ray
    remove_placement_group(first)
    assert second.wait(10)  # placed as soon as the CPUs are free
    for group in (second, never):
        remove_placement_group(group)
    with pytest.raises(ValueError, match="empty"):
        placement_group([{}])
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="ANYWHERE")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")


def test_removing_a_group_ends_its_actors_and_tasks():
    group = placement_group([{"CPU": 1}])
    assert group.wait(10)

    @zactor.remote
    class Inside:
        def ping(self):
            return "pong"

    actor = Inside.options(max_restarts=3, scheduling_strategy=InGroup(group)).remote()
    assert zactor.get(actor.ping.remote(), timeout=10) == "pong"

    @zactor.remote(num_cpus=1)
    def sleeper():
        time.sleep(60)

    running = sleeper.options(scheduling_strategy=InGroup(group)).remote()
    queued = sleeper.options(scheduling_strategy=InGroup(group)).remote()
    wait_until(lambda: cpus_free() == 3 and zactor._api.core().request(
        "cluster_status")["tasks_queued"] >= 1, message="one running, one queued")
    remove_placement_group(group)
    with pytest.raises(ActorPlacementGroupRemoved):
        zactor.get(actor.ping.remote(), timeout=10)  # killed for good: no restart
    for ref in (running, queued):
        with pytest.raises(TaskPlacementGroupRemoved):
            zactor.get(ref, timeout=10)
    with pytest.raises(TaskPlacementGroupRemoved):  # submitted after the removal
        zactor.get(current.options(scheduling_strategy=InGroup(group)).remote(), timeout=10)
    wait_until(lambda: cpus_free() == 4, message="all CPUs back")


def test_children_run_in_the_group_when_it_captures_them():
    group = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert group.wait(10)

    @zactor.remote(num_cpus=0)
    def parent():
        return get_current_placement_group().id.hex(), zactor.get(current.remote())

    captured = parent.options(scheduling_strategy=InGroup(
        group, placement_group_capture_child_tasks=True)).remote()
    not_captured = parent.options(scheduling_strategy=InGroup(group)).remote()
    assert zactor.get(captured, timeout=10) == (group.id.hex(), group.id.hex())
    assert zactor.get(not_captured, timeout=10) == (group.id.hex(), None)
    # Ray's older spelling
    assert zactor.get(current.options(placement_group=group,
                                      placement_group_bundle_index=1).remote()) == \
        group.id.hex()
    assert zactor.get(current.remote()) is None  # outside any group
    assert get_current_placement_group() is None  # a driver is in none
    remove_placement_group(group)


def test_the_table_lists_every_group_and_handles_travel():
    group = placement_group([{"CPU": 1}], strategy="STRICT_PACK", lifetime="detached")
    assert group.wait(10)
    table = placement_group_table()
    assert table[group.id.hex()]["strategy"] == "STRICT_PACK"
    assert table[group.id.hex()]["detached"] is True

    @zactor.remote(num_cpus=0)
    def specs(g):
        return g.bundle_specs, g == group

    assert zactor.get(specs.remote(group)) == ([{"CPU": 1}], True)
    assert isinstance(group, PlacementGroup)
    remove_placement_group(group)
