"""Probabilistic recurrent peers on rnnlab's forecasting test windows: darts' ``RNNModel`` and
``BlockRNNModel`` (LSTM, Gaussian likelihood) and neuralforecast's ``DeepAR`` (its default
Student-t distribution), scored as rnnlab scores its own test windows.

    python scripts/peers_forecast.py                      # every peer, seeds 201 202 203
    python scripts/peers_forecast.py --peers deepar --seeds 201
    python scripts/peers_forecast.py --write-docs         # also write it into docs/results.md
    python scripts/peers_forecast.py --experiment forecast_fertility --write-docs

darts and neuralforecast are not rnnlab dependencies: run the script in a virtual environment
of its own (docs/results.md, "Probabilistic peers", gives the commands). The windows are those of
``experiment=forecast`` (weekly CO2, lookback 104, horizon 26, the chronological 70/15/15 split,
gaps forward-filled) or of ``--experiment forecast_fertility`` (192 countries' yearly fertility
rates, lookback 15, horizon 5, the same split of each series): the config is composed, its
ForecastDataModule set up, and every test window's inputs and targets checked against the
series the peers read. Each peer trains on the train parts (every series: one global model)
and stops early on the validation parts' windows (their targets in the val part, their inputs
reaching back into train), then forecasts every test window from its own origin, reading only
the history before it, with ``SAMPLES`` sample paths per window. Scores, in the target's units,
averaged over every window and step of every series as rnnlab's test metrics are: the CRPS of
the samples
(``rnnlab.models.intervals.crps_from_samples``), the pinball loss at 0.1, 0.5 and 0.9, the
coverage of the central 80 % and 95 % intervals and the 80 % interval's width (the samples'
empirical quantiles), and the MAE of the samples' median.

neuralforecast's DeepAR reports quantiles, not sample paths: its forecast at each step is a
Student-t (it feeds its mean back as the next input), whose parameters the script asks for
(``return_params=True``, the same model) and draws the samples from, per step.

Seeds 201, 202 and 203: from the set rnnlab's results never chose anything on.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from docs_tables import read_block, write_block

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGE = ROOT / "docs" / "results.md"
EXPERIMENTS = ("forecast", "forecast_fertility")  # shipped series, so no data.file to name
MARKER = "peers:forecast"  # experiment=forecast's block; another's is peers:<experiment>
SEEDS = (201, 202, 203)
SAMPLES = 200  # sample paths per test window
LEVELS = (0.1, 0.5, 0.9)  # the pinball loss's levels (rnnlab's default for a distribution)
ADVERBS = {"weeks": "weekly", "years": "yearly"}  # the changes darts reads, in the table's rows
KEYS = ("crps", "pinball", "coverage_80", "coverage_95", "interval_width_80", "mae")

# Training budgets, sized for a few minutes a run on one CPU thread. Architectures are each
# library's defaults unless named here.
DARTS_EPOCHS = 30  # at most; early stopping on the validation loss, patience below
DARTS_PATIENCE = 3
DEEPAR_STEPS = 1000  # at most (the library's default); validation every DEEPAR_CHECK steps
DEEPAR_CHECK = 50
DEEPAR_PATIENCE = 3  # validations without improvement before it stops
# training windows per step: the library's default, 1024, took 4 s a step here (an hour a run)
DEEPAR_WINDOWS = 64


class PeersError(Exception):
    """A setting the peers cannot follow, or windows that differ from rnnlab's: one line."""


@dataclass(frozen=True)
class Windows:
    """One series (original units, gaps filled) and the windows rnnlab cuts from it: the train
    part is ``[0, train_end)``, val ``[train_end, val_end)``, test ``[val_end, len(values))``;
    ``origins`` are the test windows' first target steps."""

    values: np.ndarray
    train_end: int
    val_end: int
    lookback: int
    horizon: int
    origins: np.ndarray
    name: str  # the series' id (the DataModule's series name)

    def actuals(self) -> np.ndarray:
        """(windows, horizon): each test window's targets."""
        return np.stack([self.values[o : o + self.horizon] for o in self.origins])


@dataclass(frozen=True)
class Panel:
    """Every series of an experiment in the DataModule's order, whose test windows, series by
    series, are the DataModule's test windows in its order; ``per_series``: the zscore is
    fitted on each series' train part (``data.per_series``), not on all of them together."""

    series: tuple[Windows, ...]
    per_series: bool
    where: str
    unit: str  # the target's unit, for the table's header
    step: str  # what one time step is (weeks, years)

    @property
    def windows(self) -> int:
        return sum(len(w.origins) for w in self.series)

    def actuals(self) -> np.ndarray:
        """(windows, horizon): every test window's targets, series after series."""
        return np.concatenate([w.actuals() for w in self.series])

    def describe(self) -> str:
        """The test windows in words, for the notes under the table."""
        first = self.series[0].origins
        if len(self.series) == 1:
            return f"{self.windows} test windows of {self.where} (origins {first[0]}–{first[-1]})"
        same = all(np.array_equal(w.origins, first) for w in self.series)
        origins = f", origins {first[0]}–{first[-1]} of each" if same else ""
        return f"{self.windows} test windows of {self.where} ({len(self.series)} series{origins})"


def forecast_windows(overrides: Sequence[str] = (), experiment: str = "forecast") -> Panel:
    """The series and test windows of ``experiment`` (with ``overrides``), as its
    ForecastDataModule holds them; refuses a setting the peers cannot follow (several targets,
    covariates, a stride other than 1) and checks every test window's targets and inputs
    against its series."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from rnnlab.utils.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *overrides])
    GlobalHydra.instance().clear()
    data = instantiate(cfg.data)
    data.setup()
    if len(data.columns) != 1 or data.known.width or data.stride != 1:
        raise PeersError(
            "the peers read one target column, no covariates and "
            "data.stride=1; drop the overrides that change that"
        )
    test = data.windows["test"]
    series = []
    # the bounds of each series, as the DataModule splits it (re-read from the source)
    for index, read in enumerate(data._series(data._table())):
        train_end, val_end, _ = data.parts(read)
        values = data.series[index].raw[:, 0].double().numpy()
        origins = np.asarray(test.origins[test.series == index], dtype=np.int64)
        name = data.series_names[index]
        series.append(
            Windows(values, train_end, val_end, data.lookback, data.horizon, origins, name)
        )
    panel = Panel(
        tuple(series),
        bool(data.per_series),
        data.display_name(),
        data.target_unit(data.target_columns[0]) or "original units",
        data.step_unit() or "steps",
    )
    expected = [(s, int(o)) for s, windows in enumerate(series) for o in windows.origins]
    dataset = data.dataset("test")
    for index, (number, origin) in enumerate(expected):
        item, values = dataset[index], series[number].values
        if (item["series"], item["origin"]) != (number, origin) or not np.array_equal(
            item["y"][:, 0].double().numpy(), values[origin : origin + data.horizon]
        ):
            raise PeersError(f"test window {index} differs from the DataModule's")
        history = item["history"][:, 0].double().numpy()
        if not np.array_equal(history, values[origin - data.lookback : origin]):
            raise PeersError(f"test window {index}'s inputs differ from the DataModule's")
    if len(dataset) != len(expected):
        raise PeersError("the DataModule has other test windows than its series' origins")
    return panel


def sample_quantiles(samples: torch.Tensor, levels: Sequence[float]) -> dict[float, torch.Tensor]:
    """The samples' empirical quantiles (linear between order statistics) at ``levels``."""
    at = torch.tensor(list(levels), dtype=samples.dtype)
    found = torch.quantile(samples, at, dim=-1)
    return {q: found[i] for i, q in enumerate(levels)}


def score(samples: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Means over every window and step of the scores of ``samples`` (windows, horizon, paths)
    at ``actual`` (windows, horizon), as rnnlab's ``test/`` interval metrics are computed, and
    the MAE of the samples' median."""
    from rnnlab.models.intervals import INTERVAL_ENDS, crps_from_samples, interval_values

    drawn = torch.as_tensor(samples, dtype=torch.float64)
    truth = torch.as_tensor(actual, dtype=torch.float64)
    if drawn.shape[:-1] != truth.shape or drawn.shape[-1] < 2:
        raise ValueError(f"samples {tuple(drawn.shape)} do not fit actuals {tuple(truth.shape)}")
    quantile_at = sample_quantiles(drawn, sorted({*LEVELS, *INTERVAL_ENDS}))
    values = interval_values(quantile_at, crps_from_samples(drawn, truth), truth, LEVELS)
    values["mae"] = (quantile_at[0.5] - truth).abs()
    return {key: float(values[key].mean()) for key in KEYS}


# --- the peers ------------------------------------------------------------------------------
def _darts_forecasts(panel: Panel, seed: int, block: bool, changes: bool = True) -> np.ndarray:
    """(windows, horizon, SAMPLES) of darts' RNNModel (``block``: BlockRNNModel), LSTM with a
    Gaussian likelihood, one model trained on every series' train part with the best validation
    epoch kept; on the series' step-to-step ``changes``, or on their levels with darts'
    reversible instance norm (each window normalised by its own inputs; BlockRNNModel only)."""
    import pandas as pd
    from darts import TimeSeries
    from darts.dataprocessing.transformers import Scaler
    from darts.models import BlockRNNModel, RNNModel
    from darts.utils.likelihood_models import GaussianLikelihood
    from pytorch_lightning.callbacks import EarlyStopping
    from sklearn.preprocessing import StandardScaler

    # changes: step t holds values[t] - values[t-1] (the level leaves the training range in the
    # test part; rnnlab reads values relative to the last one); lookback - 1 changes read the
    # same lookback values
    lag = int(changes)
    lookback, horizon = panel.series[0].lookback, panel.series[0].horizon
    series = []
    for windows in panel.series:
        read = np.diff(windows.values) if changes else windows.values
        steps = pd.RangeIndex(lag, len(windows.values))
        series.append(TimeSeries.from_times_and_values(steps, read.astype(np.float32)))
    # zscore fitted on the train parts, as rnnlab's: of all series together, or of each
    scaler = Scaler(StandardScaler(), global_fit=not panel.per_series)
    scaler.fit([s[: w.train_end - lag] for s, w in zip(series, panel.series, strict=True)])
    scaled = scaler.transform(series)
    train = [s[: w.train_end - lag] for s, w in zip(scaled, panel.series, strict=True)]
    # the validation windows: targets in the val part, inputs reaching back into train
    val = [
        s[w.train_end - lookback : w.val_end - lag]
        for s, w in zip(scaled, panel.series, strict=True)
    ]
    common = {
        "input_chunk_length": lookback - lag,
        "likelihood": GaussianLikelihood(),
        "n_epochs": DARTS_EPOCHS,
        "random_state": seed,
        "save_checkpoints": True,
        "force_reset": True,
        "pl_trainer_kwargs": {
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [EarlyStopping("val_loss", patience=DARTS_PATIENCE)],
        },
    }
    kind: Callable[..., object]
    with tempfile.TemporaryDirectory(prefix="rnnlab-peers-") as folder:
        name = f"{'block' if block else 'rnn'}{'' if changes else '_levels'}{seed}"
        if block:
            kind = BlockRNNModel
            model = BlockRNNModel(
                model="LSTM",
                output_chunk_length=horizon,
                use_reversible_instance_norm=not changes,
                work_dir=folder,
                model_name=name,
                **common,
            )
        elif changes:
            kind = RNNModel
            model = RNNModel(
                model="LSTM",
                training_length=lookback - lag + horizon,
                work_dir=folder,
                model_name=name,
                **common,
            )
        else:
            raise PeersError("darts' RNNModel has no reversible instance norm: read changes")
        model.fit(train, val_series=val, verbose=False)
        print(f"{name}: stopped after {model.epochs_trained} epochs", file=sys.stderr)
        best = kind.load_from_checkpoint(name, work_dir=folder, best=True)  # type: ignore[attr-defined]
        torch.manual_seed(seed)
        # one start for every series: the earliest test origin (a series whose test part
        # starts later forecasts from there too; only its own test windows are kept)
        forecasts = best.historical_forecasts(
            scaled,
            start=min(int(w.origins[0]) for w in panel.series),
            start_format="value",
            forecast_horizon=horizon,
            stride=1,
            retrain=False,
            last_points_only=False,
            overlap_end=False,
            num_samples=SAMPLES,
            verbose=False,
        )
    found = []
    for number, (windows, made) in enumerate(zip(panel.series, forecasts, strict=True)):
        by_start = {int(f.start_time()): f for f in made}
        if not set(windows.origins.tolist()) <= by_start.keys():
            raise PeersError("darts forecast other windows than rnnlab's test windows")
        kept = [by_start[int(o)] for o in windows.origins]
        # the scaler of that series (or the one of all)
        index = {"series_idx": number} if panel.per_series else {}
        drawn = np.stack([scaler.inverse_transform(f, **index).all_values()[:, 0, :] for f in kept])
        if changes:
            last = windows.values[windows.origins - 1]
            drawn = last[:, None, None] + np.cumsum(drawn.astype(np.float64), axis=1)
        found.append(drawn.astype(np.float64))
    return np.concatenate(found)


def darts_rnn(panel: Panel, seed: int) -> np.ndarray:
    return _darts_forecasts(panel, seed, block=False)


def darts_block_rnn(panel: Panel, seed: int) -> np.ndarray:
    return _darts_forecasts(panel, seed, block=True)


def darts_block_rnn_levels(panel: Panel, seed: int) -> np.ndarray:
    return _darts_forecasts(panel, seed, block=True, changes=False)


def deepar(panel: Panel, seed: int) -> np.ndarray:
    """(windows, horizon, SAMPLES) of neuralforecast's DeepAR (Student-t), one model trained on
    every series' train part with early stopping on the val parts, drawn from its per-step
    Student-t parameters."""
    first = panel.series[0]
    n = len(first.values)
    # its cross-validation holds out the same number of last steps of every series
    if len({(len(w.values) - w.val_end, w.val_end - w.train_end) for w in panel.series}) > 1:
        raise PeersError(
            "neuralforecast's DeepAR needs val and test parts of one length in every series; "
            "split by data.val_start/test_start or leave deepar out (--peers)"
        )
    import pandas as pd
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import DistributionLoss
    from neuralforecast.models import DeepAR

    frame = pd.concat(
        [
            pd.DataFrame({"unique_id": w.name, "ds": np.arange(len(w.values)), "y": w.values})
            for w in panel.series
        ],
        ignore_index=True,
    )
    model = DeepAR(
        h=first.horizon,
        input_size=first.lookback,
        # the default loss, asked to return the distribution's parameters beside its quantiles
        loss=DistributionLoss(distribution="StudentT", level=[80, 90], return_params=True),
        max_steps=DEEPAR_STEPS,
        val_check_steps=DEEPAR_CHECK,
        early_stop_patience_steps=DEEPAR_PATIENCE,
        windows_batch_size=DEEPAR_WINDOWS,
        scaler_type="standard",  # each window scaled by its own history (default: none)
        random_seed=seed,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    peers = NeuralForecast(models=[model], freq=1)
    forecast = peers.cross_validation(
        frame,
        val_size=first.val_end - first.train_end,
        test_size=n - first.val_end,
        n_windows=None,
        step_size=1,
        refit=False,
    )
    steps = len(peers.models[0].train_trajectories)  # one (step, loss) pair a training step
    print(f"deepar{seed}: stopped after {steps} steps", file=sys.stderr)
    ids = forecast["unique_id"].astype(str).to_numpy()
    params: dict[str, list[np.ndarray]] = {p: [] for p in ("df", "loc", "scale")}
    for windows in panel.series:
        own = forecast[ids == windows.name].sort_values(["cutoff", "ds"])
        origins = own["cutoff"].to_numpy()[:: windows.horizon] + 1
        if origins.tolist() != windows.origins.tolist():
            raise PeersError("neuralforecast forecast other windows than rnnlab's test windows")
        shape = (len(windows.origins), windows.horizon)
        for p, found in params.items():
            found.append(own[f"DeepAR-{p}"].to_numpy(dtype=np.float64).reshape(shape))
    df, loc, scale = (torch.tensor(np.concatenate(params[p])) for p in ("df", "loc", "scale"))
    torch.manual_seed(seed)
    drawn = torch.distributions.StudentT(df, loc, scale).sample((SAMPLES,))
    return drawn.permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Peer:
    name: str  # the table's row ({changes}: what the changes read are, e.g. "weekly changes")
    library: str  # the distribution that provides it
    run: Callable[[Panel, int], np.ndarray]


PEERS = {
    "darts_rnn": Peer("darts `RNNModel` (LSTM, Gaussian), {changes}", "darts", darts_rnn),
    "darts_block_rnn": Peer(
        "darts `BlockRNNModel` (LSTM, Gaussian), {changes}", "darts", darts_block_rnn
    ),
    "darts_block_rnn_levels": Peer(
        "darts `BlockRNNModel` (LSTM, Gaussian), levels with RIN", "darts", darts_block_rnn_levels
    ),
    "deepar": Peer("neuralforecast `DeepAR` (Student-t)", "neuralforecast", deepar),
}


# --- the table ------------------------------------------------------------------------------
def mean_std(values: Sequence[float], digits: int) -> str:
    """``mean ± sample standard deviation`` (the mean alone for one value)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seed_range(seeds: Sequence[int]) -> str:
    ordered = sorted(seeds)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(map(str, ordered))


def table(
    results: Mapping[str, Sequence[dict[str, float]]],
    seeds: Sequence[int],
    unit: str = "ppm",
    changes: str = "weekly changes",
) -> list[str]:
    """One row per peer: each score's mean ± standard deviation over the seeds; CRPS in
    ``unit``, darts' rows read ``changes``."""
    lines = [
        f"| peer | seeds | test CRPS ({unit}) | pinball | coverage 80 % | coverage 95 % "
        "| 80 % width | MAE of median | minutes per run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, runs in results.items():
        cells = [PEERS[key].name.format(changes=changes), seed_range(seeds)]
        for score_key, digits in zip(KEYS, (3, 3, 3, 3, 2, 3), strict=True):
            cells.append(mean_std([run[score_key] for run in runs], digits))
        cells.append(f"{statistics.mean(run['minutes'] for run in runs):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def versions(libraries: Sequence[str]) -> str:
    names = dict.fromkeys([*libraries, "torch", "pytorch-lightning"])
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


def missing_libraries(keys: Sequence[str]) -> list[str]:
    missing = []
    for library in dict.fromkeys(PEERS[k].library for k in keys):
        try:
            importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            missing.append(library)
    return missing


def run_peers(
    keys: Sequence[str], seeds: Sequence[int], experiment: str = "forecast"
) -> tuple[Panel, dict[str, list[dict[str, float]]]]:
    """The experiment's windows, and each peer's scores (and minutes) for each seed, in
    order; scores pooled over every test window and step of every series."""
    panel = forecast_windows(experiment=experiment)
    actual = panel.actuals()
    results: dict[str, list[dict[str, float]]] = {}
    for key in keys:
        for seed in seeds:
            started = time.monotonic()
            scores = score(PEERS[key].run(panel, seed), actual)
            scores["minutes"] = (time.monotonic() - started) / 60
            results.setdefault(key, []).append(scores)
            shown = " ".join(f"{k}={v:.4f}" for k, v in scores.items())
            print(f"{key} seed {seed}: {shown}", file=sys.stderr, flush=True)
    return panel, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--experiment",
        choices=EXPERIMENTS,
        default="forecast",
        help="whose test windows: forecast (CO2) or forecast_fertility (192 countries)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="also write the table into docs/results.md, between its peers:<experiment> "
        f"markers ({MARKER} for forecast)",
    )
    args = parser.parse_args(argv)
    marker = f"peers:{args.experiment}"
    if args.write_docs:
        try:
            read_block(RESULTS_PAGE.read_text(encoding="utf-8"), marker, "docs/results.md")
        except SystemExit as missing_marker:  # docs_tables' one line
            print(missing_marker, file=sys.stderr)
            return 2
    missing = missing_libraries(args.peers)
    if missing:
        print(
            f"error: {', '.join(missing)} not installed in this Python; make the peers' "
            "environment as docs/results.md says (Probabilistic peers) and run the script there",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)
    try:
        panel, results = run_peers(args.peers, args.seeds, args.experiment)
    except PeersError as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    lines = table(results, args.seeds, panel.unit, f"{ADVERBS.get(panel.step, 'step')} changes")
    notes = (
        f"{panel.describe()}, {SAMPLES} samples each; "
        f"{versions([PEERS[k].library for k in args.peers])}."
    )
    block = "\n".join([*lines, "", notes])
    print(block)
    if args.write_docs:
        write_block(RESULTS_PAGE, marker, block)
        print(f"wrote {RESULTS_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
