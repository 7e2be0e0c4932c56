"""zactor.tune on a real cluster: grid and random search, ASHA, median stopping, PBT,
Optuna, class trainables, trial failures retried from checkpoints, a trainer inside a
trial, and Tuner.restore after the driver is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from zactor import train, tune
from zactor.tune.schedulers import ASHAScheduler, MedianStoppingRule, PopulationBasedTraining
from zactor.tune.search import ConcurrencyLimiter

CLUSTER_KWARGS = {"num_cpus": 4}
pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(180)]


def _run(tmp_path, trainable, name, **kwargs) -> tune.ResultGrid:
    run = tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0,
                         **kwargs.pop("run", {}))
    return tune.Tuner(trainable, run_config=run, **kwargs).fit()


def _quadratic(config):
    for step in range(3):
        tune.report({"loss": (config["x"] - 3) ** 2 + config["y"] + 1 / (step + 1)})


def test_grid_search_finds_the_known_optimum(tmp_path):
    grid = _run(tmp_path, _quadratic, "grid",
                param_space={"x": tune.grid_search([0, 1, 2, 3, 4, 5]),
                             "y": tune.grid_search([0.0, 0.5])},
                tune_config=tune.TuneConfig(metric="loss", mode="min"))
    assert len(grid) == 12 and grid.num_errors == 0 and grid.num_terminated == 12
    best = grid.get_best_result()
    assert best.config == {"x": 3, "y": 0.0}
    assert best.metrics["loss"] == pytest.approx(1 / 3)
    assert best.metrics["training_iteration"] == 3 and len(best.metrics_dataframe) == 3
    frame = grid.get_dataframe()
    assert sorted(zip(frame["config/x"], frame["config/y"], strict=True)) == sorted(
        (x, y) for x in range(6) for y in (0.0, 0.5))
    assert grid.get_best_result(metric="loss", mode="max").config == {"x": 0, "y": 0.5}
    assert os.path.exists(os.path.join(best.path, "result.json"))


def test_random_search_draws_from_every_domain(tmp_path):
    space = {"u": tune.uniform(-1, 1), "q": tune.quniform(0, 10, 2.5),
             "lu": tune.loguniform(1e-4, 1e-1), "r": tune.randint(3, 6),
             "c": tune.choice(["a", "b"]), "n": tune.randn(0, 1),
             "s": tune.sample_from(lambda spec: spec.config["r"] * 10), "const": 7}

    def record(config):
        tune.report({"ok": 1, **{k: v for k, v in config.items()}})

    grid = _run(tmp_path, record, "random", param_space=space,
                tune_config=tune.TuneConfig(num_samples=25))
    configs = [r.config for r in grid]
    assert len(configs) == 25
    for c in configs:
        assert -1 <= c["u"] <= 1 and c["q"] in (0, 2.5, 5, 7.5, 10)
        assert 1e-4 <= c["lu"] <= 1e-1 and c["r"] in (3, 4, 5) and c["c"] in ("a", "b")
        assert c["s"] == c["r"] * 10 and c["const"] == 7 and isinstance(c["n"], float)
    assert len({c["u"] for c in configs}) == 25


def _slow_learner(config):
    # the loss falls with steps; a larger "quality" is better at every step
    for step in range(1, 17):
        tune.report({"loss": config["quality"] * -1 + 10 / step})


def test_asha_stops_bad_trials_earlier(tmp_path):
    asha = ASHAScheduler(max_t=16, grace_period=2, reduction_factor=2)
    grid = _run(tmp_path, _slow_learner, "asha",
                param_space={"quality": tune.grid_search(list(reversed(range(8))))},
                tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=asha,
                                            max_concurrent_trials=2))
    iters = {r.config["quality"]: r.metrics["training_iteration"] for r in grid}
    assert max(iters.values()) == 16  # the best ran to max_t
    assert min(iters.values()) < 16 and sum(iters.values()) < 8 * 16 * 0.75
    assert grid.get_best_result().config["quality"] == 7


def test_median_stopping_rule_stops_the_worse_trials(tmp_path):
    rule = MedianStoppingRule(time_attr="training_iteration", grace_period=3,
                              min_samples_required=2)
    grid = _run(tmp_path, _slow_learner, "median",
                param_space={"quality": tune.grid_search([6, 5, 0, 1])},
                tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=rule,
                                            max_concurrent_trials=1))
    iters = {r.config["quality"]: r.metrics["training_iteration"] for r in grid}
    # the first runs alone; the second is better than the first's running mean; the two
    # worse ones fall below the median of the others' and stop after the grace period
    assert iters[6] == 16 and iters[5] == 16
    assert 3 <= iters[0] < 16 and 3 <= iters[1] < 16


def _pbt_trainable(config):
    state = {"value": 0.0, "step": 0}
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = json.loads(open(os.path.join(d, "s.json")).read())
    while True:  # a step after every start, so that a restored trial reports again
        state["step"] += 1
        state["value"] += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump(state, f)
            tune.report({"value": state["value"], "lr": config["lr"]},
                        checkpoint=tune.Checkpoint.from_directory(d))
        if state["step"] >= 20:
            return


def test_pbt_exploits_better_trials(tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                  hyperparam_mutations={"lr": [0.1, 0.5, 1.0, 2.0]},
                                  quantile_fraction=0.5, resample_probability=0.0, seed=1)
    grid = _run(tmp_path, _pbt_trainable, "pbt",
                param_space={"lr": tune.grid_search([0.1, 0.1, 2.0, 2.0])},
                tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt))
    assert pbt.exploits, "no trial copied a better one"
    low_trials = [r for r in grid if r.config["lr"] != 0.1 or r.metrics["lr"] != 0.1]
    assert low_trials
    # a trial that started at lr 0.1 and exploited ends far above what 0.1 alone gives
    assert max(r.metrics["value"] for r in grid) > 20 * 0.1 * 5
    exploited = {trial for trial, _ in pbt.exploits}
    for r in grid:
        if r.metrics["trial_id"] in exploited:
            assert r.metrics["value"] > 20 * 0.1


def test_optuna_converges_on_a_quadratic(tmp_path):
    pytest.importorskip("optuna")
    from zactor.tune.search.optuna import OptunaSearch

    def objective(config):
        tune.report({"loss": (config["x"] - 2.5) ** 2 + (config["k"] - 4) ** 2})

    search = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)
    grid = _run(tmp_path, objective, "optuna",
                param_space={"x": tune.uniform(-10, 10), "k": tune.randint(0, 10)},
                tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=search,
                                            num_samples=40))
    assert len(grid) == 40
    best = grid.get_best_result()
    assert abs(best.config["x"] - 2.5) < 1.0 and best.config["k"] == 4
    first = [r.metrics["loss"] for r in grid][:10]
    assert best.metrics["loss"] < min(first)


class _Counter(tune.Trainable):
    def setup(self, config, offset: int = 0):
        self.total = config["start"] + offset

    def step(self):
        self.total += 1
        return {"total": self.total, "done": self.total >= 5 + self.config["start"]}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "t"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        self.total = int(open(os.path.join(checkpoint_dir, "t")).read())


def test_class_trainables_with_parameters_and_resources(tmp_path):
    trainable = tune.with_resources(tune.with_parameters(_Counter, offset=100),
                                    {"cpu": 0.5})
    grid = _run(tmp_path, trainable, "class",
                param_space={"start": tune.grid_search([0, 10])},
                tune_config=tune.TuneConfig(metric="total", mode="max"),
                run={"checkpoint_config": tune.CheckpointConfig(checkpoint_frequency=2,
                                                                num_to_keep=1)})
    totals = sorted(r.metrics["total"] for r in grid)
    assert totals == [101, 111]  # done at once: 100 + start is past start + 5
    assert all(r.checkpoint is not None for r in grid)
    with pytest.raises(ValueError, match="non-negative"):
        tune.Tuner(tune.with_resources(_Counter, {"CPU": -1}),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()


def _flaky(config):
    ckpt = tune.get_checkpoint()
    start = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = int(open(os.path.join(d, "step")).read())
    for step in range(start + 1, 7):
        if step == 4 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            if config["how"] == "raise":
                raise RuntimeError("flaky trial")
            os.kill(os.getpid(), signal.SIGKILL)  # the trial's process dies
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
            tune.report({"step": step, "start": start},
                        checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.parametrize("how", ["raise", "sigkill"])
def test_a_failed_trial_is_retried_from_its_checkpoint(tmp_path, how):
    marker = str(tmp_path / "marker")
    grid = _run(tmp_path, _flaky, f"flaky-{how}",
                param_space={"marker": marker, "how": how},
                run={"failure_config": tune.FailureConfig(max_failures=1)})
    (result,) = grid
    assert result.error is None and result.num_failures == 1
    assert result.metrics["step"] == 6 and result.metrics["start"] == 3
    assert [m["step"] for m in result._metrics_history] == [1, 2, 3, 4, 5, 6]
    os.remove(marker)
    grid = _run(tmp_path, _flaky, f"flaky-{how}-no-retry",
                param_space={"marker": marker, "how": how})
    assert grid.num_errors == 1 and grid[0].metrics["step"] == 3
    if how == "raise":
        assert "flaky trial" in str(grid.errors[0])


def _trial_with_a_trainer(config):
    from zactor.tune.integration.ray_train import TuneReportCallback

    def loop(cfg):
        for step in range(3):
            train.report({"scaled": cfg["x"] * train.get_context().get_world_size(),
                          "step": step})

    train.DataParallelTrainer(
        loop, train_loop_config=config, scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=config["dir"],
                                   callbacks=[TuneReportCallback()])).fit()


def test_a_trainer_runs_inside_a_trial(tmp_path):
    # Ray 2.60's way: the trial is the trainer's driver (it holds no CPU of its own here),
    # the trainer places its workers, and TuneReportCallback reports each step to the trial
    grid = _run(tmp_path, tune.with_resources(_trial_with_a_trainer, {"CPU": 0}),
                "nested", param_space={"x": tune.grid_search([1, 2]),
                                       "dir": str(tmp_path / "runs")},
                tune_config=tune.TuneConfig(max_concurrent_trials=1))
    assert sorted(r.metrics["scaled"] for r in grid) == [2, 4]
    assert all(r.metrics["training_iteration"] == 3 and r.metrics["step"] == 2 for r in grid)
    from zactor.tune.integration.ray_train import TuneReportCallback

    with pytest.raises(RuntimeError, match="Tune trial"):
        TuneReportCallback()


def test_stop_criteria_and_time_budget(tmp_path):
    def forever(config):
        i = 0
        while True:
            i += 1
            tune.report({"i": i})

    grid = _run(tmp_path, forever, "stop", run={"stop": {"i": 5}})
    assert grid[0].metrics["i"] == 5
    started = time.monotonic()
    grid = _run(tmp_path, forever, "budget", tune_config=tune.TuneConfig(time_budget_s=1.0))
    assert time.monotonic() - started < 30 and grid[0].metrics["i"] > 5
    with pytest.raises(ValueError, match="mode"):
        tune.TuneConfig(mode="best")
    with pytest.raises(TypeError, match="trainable"):
        tune.Tuner(None)
    with pytest.raises(RuntimeError, match="inside a trial"):
        tune.report({"x": 1})


RESTORE_DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import zactor
    from zactor import tune

    def slow(config):
        import tempfile
        ckpt = tune.get_checkpoint()
        start = 0
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = int(open(os.path.join(d, "i")).read())
        for i in range(start + 1, 6):
            with tempfile.TemporaryDirectory() as d:
                open(os.path.join(d, "i"), "w").write(str(i))
                tune.report({"i": i, "start": start, "x": config["x"]},
                            checkpoint=tune.Checkpoint.from_directory(d))
            if config["x"] >= 2 and i == 2 and config["first"]:
                open(os.path.join(config["dir"], f"ready{config['x']}"), "w").close()
                time.sleep(120)  # the test SIGKILLs this driver meanwhile

    zactor.init(num_cpus=2)
    path = os.path.join(sys.argv[1], "exp")
    if sys.argv[2] == "first":
        tune.Tuner(slow, param_space={"x": tune.grid_search([0, 1, 2, 3]),
                                      "dir": sys.argv[1], "first": True},
                   tune_config=tune.TuneConfig(max_concurrent_trials=2),
                   run_config=tune.RunConfig(name="exp", storage_path=sys.argv[1],
                                             verbose=0)).fit()
    else:
        assert tune.Tuner.can_restore(path)
        grid = tune.Tuner.restore(path, slow, param_space={
            "x": tune.grid_search([0, 1, 2, 3]), "dir": sys.argv[1], "first": False}).fit()
        print(json.dumps(sorted([r.config["x"], r.metrics["i"], r.metrics["start"]]
                                for r in grid)))
    zactor.shutdown()
""")


def test_restore_after_the_driver_is_sigkilled(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(RESTORE_DRIVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    first = subprocess.Popen([sys.executable, str(script), str(tmp_path), "first"], env=env,
                             start_new_session=True)
    deadline = time.monotonic() + 90
    ready = [tmp_path / "ready2", tmp_path / "ready3"]
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        assert first.poll() is None, "the first driver ended early"
        time.sleep(0.05)
    assert all(r.exists() for r in ready)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started
    first.wait(timeout=30)
    state = json.loads((tmp_path / "exp" / "experiment_state.json").read_text())
    statuses = sorted(t["status"] for t in state["trials"])
    assert statuses.count("TERMINATED") == 2 and statuses.count("RUNNING") == 2
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "second"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    # finished trials stay finished (start 0); the others resume after their step-2
    # checkpoint
    assert rows == [[0, 5, 0], [1, 5, 0], [2, 5, 2], [3, 5, 2]]


def _slow_after_first(config):
    tune.report({"n": 1, "x": config["x"], "pid": os.getpid()})
    if config["x"] == 0:
        time.sleep(120)  # stopped meanwhile: its slot's process goes, not the next trial
    tune.report({"n": 2, "x": config["x"], "pid": os.getpid()})


def test_a_stopped_trial_stuck_in_its_function_never_runs_beside_the_next(tmp_path):
    started = time.monotonic()
    grid = _run(tmp_path, _slow_after_first, "stuck",
                param_space={"x": tune.grid_search([0, 1])},
                tune_config=tune.TuneConfig(max_concurrent_trials=1),
                run={"stop": lambda trial_id, result: result["x"] == 0})
    assert time.monotonic() - started < 60
    by_x = {r.config["x"]: r.metrics for r in grid}
    assert by_x[0]["n"] == 1 and by_x[1]["n"] == 2
    # one slot: the next trial ran in a new process, the stuck one's having been ended
    assert by_x[0]["pid"] != by_x[1]["pid"]
