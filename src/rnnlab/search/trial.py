"""The trial a search's job runs, seen from inside the job: the sweeper names it in the job's
Hydra config (``hydra.sweeper.trial_id``), the job opens the same study from its storage, and a
callback reports the monitored metric after every validation epoch. When the search's pruner
says the trial is not worth finishing, the job records it as pruned in Optuna and stops at once
(``TrialPruned``: ``rnnlab.run.job`` writes ``status.json`` as pruned, not failed).

Reported through the storage, not through the sweeper: a job started by another process (the
local or SLURM launcher) or another machine reaches the study the same way as one in-process.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from omegaconf import DictConfig

from rnnlab.search import TrialPruned
from rnnlab.search.storage import open_storage, storage_url

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def trial_settings() -> DictConfig | None:
    """The running job's ``hydra.sweeper`` when the job is a trial of an Optuna search."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    if sweeper is None or sweeper.get("trial_id") is None:
        return None
    return sweeper


def open_study(settings: DictConfig, sweep_dir: str, cwd: str) -> optuna.Study:
    """The search's study as a job sees it: same storage and name, the search's pruner."""
    import optuna
    from hydra.utils import instantiate

    pruner = instantiate(settings.pruner) if settings.get("pruner") else None
    url = storage_url(settings.get("storage"), sweep_dir, cwd)
    return optuna.load_study(
        study_name=str(settings.study_name),
        storage=open_storage(url),
        pruner=pruner,
        # never asked to sample here; stated so that loading builds no default sampler
        sampler=optuna.samplers.RandomSampler(),
    )


def trial_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The callback that reports this job's trial, when the job runs one; else none."""
    from hydra.core.hydra_config import HydraConfig

    settings = trial_settings()
    if settings is None:
        return []
    import optuna

    hydra = HydraConfig.get()
    study = open_study(settings, str(hydra.sweep.dir), str(hydra.runtime.cwd))
    trial = optuna.trial.Trial(study, int(settings.trial_id))
    return [ReportToTrial(study, trial, str(cfg.monitor), str(cfg.paths.output_dir))]


class ReportToTrial(L.Callback):
    """After every validation epoch, report the monitored metric to the trial and stop the
    run when the pruner says so (in the process that runs the sweep's job)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, monitor: str, run_dir: str):
        self.study, self.trial, self.monitor = study, trial, monitor
        self.run_dir = str(Path(run_dir).absolute())

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:  # which run directory is this trial's
            self.trial.set_user_attr("run_dir", self.run_dir)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        verdict = self._report(trainer.callback_metrics.get(self.monitor), trainer)
        if verdict is not None:
            raise TrialPruned(verdict)

    def _report(self, metric: Any, trainer: L.Trainer) -> str | None:
        """Report the metric; the reason to stop when the pruner prunes (already recorded).
        A multi-process run (DDP) is reported, never pruned: its other processes do not run
        this callback (they are not the sweep's job), so they could not be told to stop."""
        from optuna.trial import TrialState

        if metric is None:
            return None
        # the step is the number of epochs trained, so a pruner's min_resource counts epochs
        value, epoch = float(metric), trainer.current_epoch + 1
        self.trial.report(value, step=epoch)
        if trainer.world_size > 1 or not self.trial.should_prune():
            return None
        self.study.tell(self.trial.number, state=TrialState.PRUNED)
        shown = "NaN" if math.isnan(value) else f"{value:.4g}"
        reason = f"after epoch {epoch}: {self.monitor} {shown}"
        log.info("trial %d pruned %s", self.trial.number, reason)
        return reason
