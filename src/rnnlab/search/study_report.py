"""An Optuna study read back from its storage, for ``rnnlab.summary``: one row per trial (its
state, objective, settings, epochs reported and run directory), the best trial, how much each
setting mattered (Optuna's parameter importances) and the optimisation history as a figure.

A study is found from its storage (a database URL or a journal file) and its name, or from a
sweep directory whose ``optimization_results.yaml`` the sweeper wrote.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from omegaconf import OmegaConf

from rnnlab import plotting
from rnnlab.search.storage import is_journal, open_storage, shown_url, storage_url
from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

RESULTS_FILE = "optimization_results.yaml"  # as rnnlab.search.sweeper writes it
# Fewer completed trials say nothing about which setting mattered: no importances then.
MIN_TRIALS_FOR_IMPORTANCE = 4
# The study's user attribute naming its objective (the sweeper sets it: "val/loss_best").
OBJECTIVE_ATTR = "objective"


def is_storage(argument: str) -> bool:
    """Whether ``rnnlab.summary``'s argument names a study's storage rather than a sweep."""
    return "://" in argument or Path(argument).is_file()


def sweep_study(sweep_dir: Path) -> tuple[str, str] | None:
    """(storage URL, study name) of the search that wrote ``sweep_dir``, if one did."""
    record = sweep_dir / RESULTS_FILE
    if not record.is_file():
        return None
    results = OmegaConf.to_container(OmegaConf.load(record))
    if not isinstance(results, dict) or not results.get("storage"):
        return None  # written by an older sweeper, without its storage
    return str(results["storage"]), str(results["study_name"])


def load_study(storage: str, name: str | None) -> optuna.Study:
    """The study ``name`` in ``storage`` (a path or URL as typed); without a name, the
    storage's only study. A ConfigError in one line when there is no such study."""
    import optuna

    url = storage_url(storage, ".", Path.cwd())
    file = url if is_journal(url) else None
    if url.startswith("sqlite:///"):
        file = url.removeprefix("sqlite:///")
    if file is not None and not Path(file).is_file():  # opening would create an empty one
        raise ConfigError(
            f"no study storage at {file}; pass a journal file, a database URL or a sweep directory"
        )
    opened = open_storage(url)
    names = optuna.get_all_study_names(opened)
    if name is None and len(names) == 1:
        name = names[0]
    if name not in names:
        which = "" if name is None else f"no study {name!r}; "
        raise ConfigError(
            f"{shown_url(url)}: {which}choose one with --study: {', '.join(names) or 'none'}"
        )
    return optuna.load_study(study_name=name, storage=opened)


def objective_name(study: optuna.Study) -> str:
    return str(study.user_attrs.get(OBJECTIVE_ATTR, "objective"))


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, best (``*``), state, objective (the last reported score of a
    pruned trial), each setting, the epochs it reported and its run directory."""
    objective = objective_name(study)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value
        if value is None and trial.intermediate_values:  # a pruned trial: its last score
            value = trial.intermediate_values[max(trial.intermediate_values)]
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                objective: math.nan if value is None else float(value),
                **{k: trial.params.get(k) for k in _param_names(study)},
                "epochs": max(trial.intermediate_values, default=0),
                "run_dir": trial.user_attrs.get("run_dir", ""),
            }
        )
    table = pd.DataFrame(rows)
    table.insert(1, "best", "")
    best = _best_number(study)
    if best is not None:
        table.loc[table["trial"] == best, "best"] = "*"
    table.attrs.update(objective=objective, name=study.study_name)
    return table


def _param_names(study: optuna.Study) -> list[str]:
    names: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False):
        names.update(dict.fromkeys(trial.params))
    return list(names)


def _best_number(study: optuna.Study) -> int | None:
    try:
        return int(study.best_trial.number)
    except ValueError:  # no completed trial
        return None


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Each setting's share of the objective's variance over the completed trials (Optuna's
    fANOVA importances, seeded); None while there are too few trials to say."""
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError):  # e.g. no setting varied among the completed trials
        return None
    return {str(k): float(v) for k, v in found.items()}


def study_lines(study: optuna.Study) -> list[str]:
    """The best trial and the importances, as lines printed under the table."""
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    lines = [f"study {study.study_name}: {len(study.trials)} trial(s), {counts or 'none'}"]
    best = _best_number(study)
    if best is not None:
        trial = study.best_trial
        settings = " ".join(f"{k}={v}" for k, v in trial.params.items())
        lines.append(f"best trial {best}: {objective_name(study)} {trial.value:.6g}  {settings}")
    found = importances(study)
    if found:
        shares = ", ".join(f"{k} {v:.2f}" for k, v in found.items())
        lines.append(f"importance of each setting (fANOVA, completed trials): {shares}")
    return lines


def history_figure(study: optuna.Study) -> Figure:
    """The objective of every finished trial in the order they were created, the best so far
    as a line; pruned trials at their last reported score, failed ones marked on the axis."""
    from matplotlib.figure import Figure

    table = trials_table(study)
    objective = table.attrs["objective"]
    maximize = study.direction.name == "MAXIMIZE"
    with plotting.styled():
        fig = Figure(figsize=(7.5, 3.6), layout="constrained")
        ax = fig.add_subplot()
        shown = (("complete", "completed", 1, "o"), ("pruned", "pruned (last score)", 0, "x"))
        for state, label, spare, marker in shown:
            rows = table[table["state"] == state]
            ax.scatter(rows["trial"], rows[objective], color=plotting.role_color(state, spare),
                       marker=marker, s=22, label=label, zorder=3)  # fmt: skip
        done = table[table["state"] == "complete"].set_index("trial")[objective]
        if len(done):
            running = done.cummax() if maximize else done.cummin()
            ax.step(running.index, running.values, where="post", label="best so far",
                    color=plotting.role_color("best"))  # fmt: skip
        failed = table[table["state"] == "fail"]["trial"]
        if len(failed):
            ax.plot(failed, [0] * len(failed), "|", transform=ax.get_xaxis_transform(),
                    color=plotting.role_color("other"), markersize=12, label="failed")  # fmt: skip
        better = "higher" if maximize else "lower"
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{objective} ({better} is better)")
        if _spans_decades(table[objective]):
            ax.set_yscale("log")  # a diverged trial's loss would flatten the rest
        ax.legend(loc="best")
        ax.set_title(plotting.title("Optimisation history", study.study_name))
    return fig


def _spans_decades(values: Any) -> bool:
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return len(finite) > 1 and max(finite) / min(finite) > 100
