"""The Optuna search in one process (rnnlab.search): the search space read from Hydra's sweep
syntax, storage URLs, the sweeper asking and telling a study through a stand-in launcher (failed
trials, a stopped search, a shared study, a continued one), the callback that reports each
validation epoch and prunes, a pruned job's status.json, and a study read back by
rnnlab.summary. The searches that train, in worker processes, are in test_search_workers.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from rnnlab.run.command import compose, hydra_session
from rnnlab.run.job import run_sweep_job
from rnnlab.search import TrialPruned
from rnnlab.search.space import override_value, parse_space
from rnnlab.search.storage import SWEEP_JOURNAL, open_storage, shown_url, storage_url
from rnnlab.search.sweeper import RESULTS_FILE, StudySweeper
from rnnlab.search.trial import ReportToTrial
from rnnlab.summary import main as summary_main
from rnnlab.utils.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- the search space ------------------------------------------------------------------------
def test_space_reads_every_sweep_of_the_shipped_config_and_the_command_line():
    params = {
        "model.encoder.cell": "choice(lstm, gru)",
        "model.encoder.hidden_size": "choice(32, 64, 128)",
        "model.optimizer.lr": "tag(log, interval(0.0003, 0.01))",
        "model.head_dropout": "interval(0.0, 0.5)",
        "model.encoder.num_layers": "range(1, 4)",
    }
    space = parse_space(params, ["model.head_dropout=0.1", "seed=1,2", "debug=limit"])
    assert space.distributions == {
        "model.encoder.cell": CategoricalDistribution(["lstm", "gru"]),
        "model.encoder.hidden_size": CategoricalDistribution([32, 64, 128]),
        "model.optimizer.lr": FloatDistribution(0.0003, 0.01, log=True),
        "model.encoder.num_layers": IntDistribution(1, 3),  # Hydra's range leaves out its stop
        "seed": CategoricalDistribution([1, 2]),  # a sweep typed on the command line
    }
    # a value typed on the command line fixes the setting for every trial
    assert space.fixed == ["model.head_dropout=0.1", "debug=limit"]
    assert space.first_point() == [
        "model.encoder.cell=lstm",
        "model.encoder.hidden_size=32",
        "model.optimizer.lr=0.0003",
        "model.encoder.num_layers=1",
        "seed=1",
        "model.head_dropout=0.1",
        "debug=limit",
    ]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("glob(*)", "is not a sweep Optuna draws from"),
        ("interval(0.5, 0.1)", "an interval needs low < high"),
        ("tag(log, interval(0.0, 1.0))", "an interval needs 0 < low < high"),
        ("choice([1, 2], [3])", "a choice needs values that are numbers, strings"),
    ],
)
def test_space_refuses_what_optuna_cannot_draw_in_one_line(sweep, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_space({"model.head_dropout": sweep}, [])


@pytest.mark.parametrize("value", ["lstm", "a b", "1", "true", "null", "it's", "x,y", 3, 0.1, 1e-05,
                                   True, None])  # fmt: skip
def test_a_drawn_value_reads_back_as_itself_on_a_command_line(value):
    parsed = OverridesParser.create().parse_override(f"k={override_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


# --- storages --------------------------------------------------------------------------------
def test_storage_urls_are_absolute_and_null_is_the_sweeps_own_journal(tmp_path):
    assert storage_url(None, "logs/s", tmp_path) == str(tmp_path / "logs/s" / SWEEP_JOURNAL)
    assert storage_url("sqlite:///o.db", "s", tmp_path) == f"sqlite:///{tmp_path / 'o.db'}"
    assert storage_url("sqlite:////abs/o.db", "s", tmp_path) == "sqlite:////abs/o.db"
    assert storage_url("runs/o.journal", "s", tmp_path) == str(tmp_path / "runs/o.journal")
    # SQLAlchemy's default PostgreSQL driver is psycopg2; the installed one is psycopg 3
    assert storage_url("postgresql://u@h:5/db", "s", tmp_path) == "postgresql+psycopg://u@h:5/db"
    assert shown_url("postgresql+psycopg://me:secret@h/db") == "postgresql+psycopg://me:***@h/db"


def test_a_storage_that_cannot_be_opened_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"no folder .*missing; create it"):
        open_storage(str(tmp_path / "missing" / "o.journal"))
    with pytest.raises(ConfigError, match=r"cannot open the storage nosuch://x: "):
        open_storage("nosuch://x")


# --- the sweeper, with a stand-in launcher ---------------------------------------------------
class Launcher:
    """Runs no training: a trial's objective is a function of its overrides; ``stop_at`` raises
    KeyboardInterrupt in that launch, as Ctrl-C would."""

    def __init__(self, objective, stop_at: int | None = None):
        self.objective, self.stop_at, self.launches = objective, stop_at, []

    def launch(self, batch, initial_job_idx):
        self.launches.append([list(overrides) for overrides in batch])
        if len(self.launches) == self.stop_at:
            raise KeyboardInterrupt
        returns = []
        for overrides in batch:
            settings = dict(o.split("=", 1) for o in overrides)
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = self.objective(settings)
            returns.append(ret)
        return returns


@contextlib.contextmanager
def _sweeper(tmp_path, overrides, launcher, seed=0):
    """The shipped hparams_search=optuna config, composed as the command composes it, with
    ``launcher`` in place of Hydra's."""
    argv = ["hparams_search=optuna", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    with hydra_session("train") as hydra_app:
        cfg = compose(hydra_app, "train", argv, checked=False)
        settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        assert isinstance(settings, dict)
        for name in ("_target_", "sampler", "pruner"):
            settings.pop(name)
        sweeper = StudySweeper(
            sampler=optuna.samplers.RandomSampler(seed=seed), pruner=None, **settings
        )
        sweeper.config = cfg
        sweeper.hydra_context = HydraContext(config_loader=hydra_app.config_loader, callbacks=None)
        sweeper.launcher = launcher
        yield sweeper


def _search(tmp_path, overrides, launcher, seed=0):
    with _sweeper(tmp_path, overrides, launcher, seed) as sweeper:
        # the command line's own overrides, as rnnlab.run passes them
        sweeper.sweep(arguments=list(sweeper.config.hydra.overrides.task))


def _study(url, name="optuna"):
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _lr(settings):
    return float(settings["model.optimizer.lr"])


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    # a trial whose learning rate lies above 0.003 "fails" (its job returns None)
    launcher = Launcher(lambda s: None if _lr(s) > 0.003 else _lr(s))
    _search(tmp_path, ["hydra.sweeper.n_trials=6"], launcher)
    study = _study(str(tmp_path / "sweep" / SWEEP_JOURNAL))
    states = [t.state for t in study.trials]
    lrs = [t.params["model.optimizer.lr"] for t in study.trials]
    assert len(launcher.launches) == 6 and len(states) == 6
    assert states == [TrialState.FAIL if lr > 0.003 else TrialState.COMPLETE for lr in lrs]
    assert TrialState.FAIL in states and TrialState.COMPLETE in states
    # each job's command line: the drawn settings, then the trial the job reports to
    first = launcher.launches[0][0]
    assert first[-1] == f"hydra.sweeper.trial_id={study.trials[0]._trial_id}"
    assert first[3] == f"model.optimizer.lr={lrs[0]!r}"
    results = OmegaConf.load(tmp_path / "sweep" / RESULTS_FILE)
    best = min(lr for lr in lrs if lr <= 0.003)
    assert results.best_value == best and results.best_params["model.optimizer.lr"] == best
    assert results.storage == str(tmp_path / "sweep" / SWEEP_JOURNAL)
    assert study.user_attrs["objective"] == "val/loss_best"


def test_a_search_stopped_mid_launch_leaves_no_trial_running_and_continues(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = [f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=4"]
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, storage, Launcher(_lr, stop_at=3))
    study = _study(url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    kept = [(t.params, t.value) for t in study.trials[:2]]
    # the next search on the study continues it: the finished trials stay as they were
    _search(tmp_path, [*storage, "hydra.sweeper.n_trials=2"], Launcher(_lr), seed=1)
    study = _study(url)
    assert [(t.params, t.value) for t in study.trials[:2]] == kept
    assert [t.state for t in study.trials[3:]] == [TrialState.COMPLETE] * 2
    assert len(study.trials) == 5


def test_a_killed_workers_trial_is_failed_when_the_next_search_starts(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    # a trial left running by a worker that died: its heartbeat stopped long ago
    study = optuna.create_study(study_name="optuna", storage=url)
    lost = study.ask()
    open_storage(url, heartbeat_s=1).record_heartbeat(lost._trial_id)
    with pytest.MonkeyPatch.context() as patch:  # as if three intervals had passed
        patch.setattr("optuna.storages._rdb.storage.RDBStorage._get_stale_trial_ids",
                      lambda self, study_id: [lost._trial_id])  # fmt: skip
        _search(tmp_path, [f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=1"],
                Launcher(_lr))  # fmt: skip
    assert [t.state for t in _study(url).trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_study_that_optimises_the_other_way_is_refused_in_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="optuna", storage=url, direction="maximize")
    with pytest.raises(SystemExit) as stopped:
        _search(tmp_path, [f"hydra.sweeper.storage={url}"], Launcher(_lr))
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the study 'optuna' in sqlite:///") and "\n" not in err
    assert "was created to maximize and this search would minimize" in err
    assert not (tmp_path / "sweep" / RESULTS_FILE).exists()


# --- a trial's job: reporting and pruning ----------------------------------------------------
def _trainer(epoch, value):
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        world_size=1,
        current_epoch=epoch,
        callback_metrics={"val/loss": torch.tensor(value)},
    )


def test_each_validation_is_reported_and_a_trial_worse_than_the_median_is_pruned(tmp_path):
    url = str(tmp_path / "study.journal")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1)
    study = optuna.create_study(study_name="s", storage=open_storage(url), pruner=pruner)
    study.add_trial(create_trial(value=0.5, intermediate_values={1: 1.0, 2: 0.5}))
    trial = study.ask()
    report = ReportToTrial(study, trial, "val/loss", str(tmp_path / "run"))
    report.setup(_trainer(0, 0.0), None, "fit")
    report.on_validation_end(_trainer(0, 0.9), None)  # epoch 1: better than the median
    with pytest.raises(TrialPruned, match=r"^after epoch 2: val/loss 3$"):
        report.on_validation_end(_trainer(1, 3.0), None)
    recorded = _study(url, "s").trials[1]
    assert recorded.state == TrialState.PRUNED
    assert recorded.intermediate_values == {1: pytest.approx(0.9), 2: 3.0}
    assert recorded.user_attrs["run_dir"] == str(tmp_path / "run")


def test_a_pruned_job_writes_pruned_in_its_status_not_failed(tmp_path):
    def pruned(cfg):
        raise TrialPruned("after epoch 2: val/loss 3")

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "monitor": "val/loss"})
    assert run_sweep_job(pruned, cfg, lambda cfg, metrics: 0.0) is None
    status = json.loads((tmp_path / "status.json").read_text())
    assert status == {"status": "pruned", "error": "after epoch 2: val/loss 3"}


# --- a study read back -----------------------------------------------------------------------
def test_summary_of_a_study_lists_every_trial_the_best_and_the_importances(tmp_path, capsys):
    journal = tmp_path / "o.journal"
    study = optuna.create_study(study_name="search", storage=open_storage(str(journal)))
    study.set_user_attr("objective", "val/loss_best")
    lr = FloatDistribution(1e-4, 10.0, log=True)
    for value, rate in ((0.8, 0.01), (0.3, 0.003), (2.5, 0.1), (0.5, 0.001)):
        study.add_trial(create_trial(value=value, params={"lr": rate}, distributions={"lr": lr},
                                     intermediate_values={1: value + 1, 2: value}))  # fmt: skip
    pruned = create_trial(state=TrialState.PRUNED, params={"lr": 5.0}, distributions={"lr": lr},
                          intermediate_values={1: 40.0})  # fmt: skip
    study.add_trial(pruned)
    study.add_trial(create_trial(state=TrialState.FAIL))
    summary_main([str(journal), "--plot", "--output", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("|") and "---" not in line]
    assert len(rows) == 7 and "val/loss_best" in rows[0]
    assert "|       1 | *      | complete |" in printed and "| pruned   |" in printed
    assert "study search: 6 trial(s), 4 complete, 1 fail, 1 pruned" in printed
    assert "best trial 1: val/loss_best 0.3  lr=0.003" in printed
    assert "importance of each setting (fANOVA, completed trials): lr 1.00" in printed
    for name in ("study_search.md", "study_search.csv", "study_search.png"):
        assert (tmp_path / "out" / name).is_file(), name
    pruned = next(line for line in rows if "pruned" in line)
    assert "40.0000" in pruned  # its last reported score


def test_summary_of_a_missing_study_is_one_line(tmp_path, capsys):
    journal = tmp_path / "o.journal"
    optuna.create_study(study_name="a", storage=open_storage(str(journal)))
    with pytest.raises(SystemExit) as stopped:
        summary_main([str(journal), "--study", "b"])
    assert stopped.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {journal}: no study 'b'; choose one with --study: a"
    )
    with pytest.raises(SystemExit):
        summary_main(["sqlite:///" + str(tmp_path / "none.db")])
    assert not Path(tmp_path / "none.db").exists()  # reading created no empty database


# --- the plugin ------------------------------------------------------------------------------
def test_hydra_finds_the_sweeper_and_its_module_imports_no_optuna():
    from hydra.core.plugins import Plugins

    name = "hydra_plugins.rnnlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert name in Plugins.instance().class_name_to_class  # Hydra builds plugins from there only
    # Hydra imports every plugin module when any command starts: that must stay cheap
    module = "hydra_plugins.rnnlab_optuna_sweeper.optuna_sweeper"
    probe = f"import sys, {module}; print('optuna' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
