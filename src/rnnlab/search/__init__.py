"""Hyperparameter search with Optuna behind ``hparams_search=optuna``: the sweeper that asks a
study for trials and launches them as Hydra jobs (``sweeper.py``), the search space read from
Hydra's sweep syntax (``space.py``), where a study is kept (``storage.py``), the trial a job runs
and its pruning (``trial.py``) and a study read back for ``rnnlab.summary`` (``study_report.py``).

Optuna itself is imported only where a search runs: Hydra imports the sweeper's plugin module
on every command's start."""


class TrialPruned(Exception):  # Optuna's name for the same event
    """The search's pruner stopped this trial after a validation epoch; already recorded as
    pruned in the study. Defined here, free of Optuna and Lightning, for ``rnnlab.run.job``."""
