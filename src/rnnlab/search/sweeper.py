"""The Optuna sweeper behind ``hparams_search=optuna``: asks the study for trials, launches each
as a Hydra job through the configured launcher (in this process, or as local or SLURM jobs),
and tells the study each job's objective.

A study in a shared storage is searched by as many sweepers at once as are started on it (each
runs its own ``n_trials``; Optuna hands every trial to exactly one) and continued by the next
sweeper started on it after one was stopped: its finished trials stay. A job that fails is a
failed trial and the search goes on; a job its pruner stops is a pruned trial (told by the job
itself, ``rnnlab.search.trial``). A search stopped by a signal or Ctrl-C marks the trials it had
launched as failed before it ends, so none is left running in the study.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from rnnlab.search.space import SearchSpace, parse_space
from rnnlab.search.storage import SWEEP_JOURNAL, open_storage, shown_url, storage_url
from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# Written into the sweep directory when the search starts (where its study is) and rewritten
# with the best trial when it ends; rnnlab.summary reads it to find the study.
RESULTS_FILE = "optimization_results.yaml"


class StudySweeper(Sweeper):
    """Hydra's sweeper interface over an Optuna study (``conf/hydra/sweeper/optuna.yaml``)."""

    def __init__(
        self,
        sampler: Any,
        direction: str,
        study_name: str,
        n_trials: int,
        storage: str | None = None,
        pruner: Any = None,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        params: DictConfig | None = None,
        heartbeat_s: int | None = 60,
        trial_id: int | None = None,
    ) -> None:
        self.sampler, self.pruner, self.direction = sampler, pruner, str(direction)
        self.study_name, self.storage = str(study_name), storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.max_failure_rate = float(max_failure_rate)
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.heartbeat_s = int(heartbeat_s) if heartbeat_s else None
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        try:
            self._check_settings()
            space = parse_space(self.params, arguments)
            # a setting that does not compose ends the command before the study is touched
            self.validate_batch_is_legal([space.first_point()])
            study = self._open_study()
        except ConfigError as exc:
            self._refuse(exc)
        url = _study_url(self.config, self.storage)
        log.info(
            "study %s in %s: %d trial(s) there before this search, %d to run (%s)",
            study.study_name,
            shown_url(url),
            len(study.trials),
            self.n_trials,
            f"{type(study.sampler).__name__}, {type(study.pruner).__name__}",
        )
        _write_results(self.config, {"study_name": study.study_name, "storage": url})
        remaining = self.n_trials
        while remaining > 0:
            batch = min(remaining, self.n_jobs)
            self._run_batch(study, space, batch)
            remaining -= batch
        self._finish(study, url)

    def _check_settings(self) -> None:
        if self.n_trials < 1 or self.n_jobs < 1:
            raise ConfigError(
                f"hydra.sweeper.n_trials={self.n_trials} and hydra.sweeper.n_jobs={self.n_jobs} "
                "must both be at least 1"
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} must be from 0 to 1"
            )
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction}: choose minimize or maximize"
            )

    def _open_study(self) -> optuna.Study:
        import optuna

        assert self.config is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # this sweeper logs the study
        url = _study_url(self.config, self.storage)
        if self.storage is None and Path(url).name == SWEEP_JOURNAL:
            # this search's own journal: a file left there is an earlier search's (overwrite)
            Path(url).unlink(missing_ok=True)
            Path(url).parent.mkdir(parents=True, exist_ok=True)
        storage = open_storage(url, self.heartbeat_s)
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=self.sampler,
                pruner=self.pruner,
                study_name=self.study_name,
                direction=optuna.study.StudyDirection[self.direction.upper()],
                load_if_exists=True,
            )
        except ValueError as exc:  # a study of this name that goes the other way
            raise ConfigError(
                f"the study {self.study_name!r} in {shown_url(url)} cannot be continued: {exc}; "
                "choose another hydra.sweeper.study_name"
            ) from exc
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"the study {self.study_name!r} in {shown_url(url)} was created to "
                f"{study.direction.name.lower()} and this search would {self.direction} "
                "(monitor_mode); choose another hydra.sweeper.study_name"
            )
        monitor = self.config.get("monitor")
        if monitor and "objective" not in study.user_attrs:  # named for rnnlab.summary
            study.set_user_attr("objective", f"{monitor}_best")
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # trials of a worker that was killed (silent past the grace period): failed, so
            # that the study shows no trial running forever
            optuna.storages.fail_stale_trials(study)
        return study

    def _run_batch(self, study: optuna.Study, space: SearchSpace, size: int) -> None:
        """Ask for ``size`` trials, run them as one launch, tell their results."""
        from optuna.trial import TrialState

        with warnings.catch_warnings():  # heartbeats are ours here, not Study.optimize's
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trials = [study.ask(space.distributions) for _ in range(size)]
        batch = [
            (*space.overrides(trial.params), f"hydra.sweeper.trial_id={trial._trial_id}")
            for trial in trials
        ]
        try:
            with heartbeats(study, [trial._trial_id for trial in trials], self.heartbeat_s):
                returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
        except BaseException:  # stopped (Ctrl-C, a signal): no trial of ours stays RUNNING
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        self.job_idx += len(returns)
        failed = 0
        for trial, ret in zip(trials, returns, strict=True):
            finished = self._tell(study, trial, ret)
            failed += finished.state == TrialState.FAIL
        if failed / len(trials) > self.max_failure_rate:
            raise RuntimeError(
                f"{failed} of {len(trials)} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; see their status.json"
            )

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> Any:
        from optuna.trial import TrialState

        try:
            value = ret.return_value
        except BaseException:  # the job was stopped (it recorded why): so is the search
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        if value is None or not math.isfinite(float(value)):
            return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return study.tell(trial, float(value), skip_if_finished=True)

    def _finish(self, study: optuna.Study, url: str) -> None:
        """Log the best trial so far (of every worker) and write it beside the jobs."""
        assert self.config is not None
        results: dict[str, Any] = {"study_name": study.study_name, "storage": url}
        try:
            best = study.best_trial
        except ValueError:  # no trial has completed yet
            log.warning("no trial of study %s has completed", study.study_name)
        else:
            log.info("best trial %d: %s = %s", best.number, best.params, best.value)
            results.update(
                name="optuna",
                best_trial=best.number,
                best_params=dict(best.params),
                best_value=best.value,
            )
        _write_results(self.config, results)

    def _refuse(self, exc: ConfigError) -> NoReturn:
        """A setting that cannot work: one line and exit status 2, the sweep directory as it
        was, as the command's own checks end (``HYDRA_FULL_ERROR=1``: the traceback)."""
        from rnnlab.run.directory import remove_fresh_sweep_dir

        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise exc
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        (sweep_dir / RESULTS_FILE).unlink(missing_ok=True)
        if self.storage is None:
            (sweep_dir / SWEEP_JOURNAL).unlink(missing_ok=True)
        remove_fresh_sweep_dir(self.config)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def heartbeats(study: optuna.Study, trial_ids: list[int], interval_s: int | None) -> Iterator[None]:
    """While the trials run, record every ``interval_s`` that their worker is alive, where the
    storage keeps heartbeats (databases; Optuna's journal files keep none)."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if not interval_s or not is_heartbeat_enabled(storage):
        yield
        return
    assert isinstance(storage, BaseHeartbeat)
    stop = threading.Event()

    def beat() -> None:
        for trial_id in trial_ids:
            with contextlib.suppress(Exception):  # a busy database: the next beat counts
                storage.record_heartbeat(trial_id)

    def beating() -> None:
        while not stop.wait(interval_s):
            beat()

    beat()  # before the jobs start: a trial without any heartbeat never counts as stale
    thread = threading.Thread(target=beating, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _study_url(config: DictConfig, storage: str | None) -> str:
    return storage_url(storage, str(config.hydra.sweep.dir), str(config.hydra.runtime.cwd))


def _write_results(config: DictConfig, results: dict[str, Any]) -> None:
    path = Path(str(config.hydra.sweep.dir), RESULTS_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), path)
