"""DataModule: splits, train-only normalisation, batching, and clear errors for bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.utils.data import DistributedSampler

from rnnlab.batch import Batch, ForecastExtras, TargetScaling
from rnnlab.data.classification import ClassificationDataModule, stratified_split
from rnnlab.data.collate import BucketBatchSampler, bucket_sampler, pad_collate
from rnnlab.data.normalize import scale_sequence
from rnnlab.data.ucr import load_archive
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import write_ts


@pytest.fixture(scope="module")
def vowels() -> dict[str, tuple[list[torch.Tensor], np.ndarray]]:
    return {split: load_archive("JapaneseVowels", split) for split in ("train", "test")}


def _module(vowels, normalize="zscore", edit=None, **kwargs) -> ClassificationDataModule:
    """A JapaneseVowels module reading from the cached raw splits, optionally edited first."""
    dm = ClassificationDataModule("JapaneseVowels", normalize=normalize, seed=3, **kwargs)

    def load_raw(split):
        sequences, labels = vowels[split]
        sequences = [s.clone() for s in sequences]
        if edit is not None:
            edit(split, sequences, labels)
        return sequences, labels

    dm.load_raw = load_raw
    dm.setup("fit")
    return dm


def test_archive_shapes_match_the_published_description(vowels):
    train_x, train_y = vowels["train"]
    test_x, _ = vowels["test"]
    assert (len(train_x), len(test_x)) == (270, 370)
    assert {s.shape[1] for s in train_x + test_x} == {12}
    lengths = [s.shape[0] for s in train_x + test_x]
    assert (min(lengths), max(lengths)) == (7, 29)
    assert sorted(set(train_y)) == [str(i) for i in range(1, 10)]


@pytest.mark.parametrize("normalize", ["zscore", "minmax"])
def test_statistics_come_from_the_training_part_only(vowels, normalize):
    dm = _module(vowels, normalize)
    steps = torch.cat(dm.splits["train"][0]).double()
    if normalize == "zscore":
        expected_shift, expected_scale = steps.mean(0), steps.std(0, unbiased=False)
    else:
        expected_shift, expected_scale = steps.amin(0), steps.amax(0) - steps.amin(0)
    torch.testing.assert_close(dm.normalizer.shift.double(), expected_shift, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dm.normalizer.scale.double(), expected_scale, rtol=1e-6, atol=1e-6)

    # Every split is transformed with those same statistics.
    raw_test = dm.splits["test"][0][5]
    torch.testing.assert_close(
        dm.dataset("test").sequences[5], (raw_test - dm.normalizer.shift) / dm.normalizer.scale
    )


def test_statistics_ignore_changes_to_validation_and_test_data(vowels):
    base = _module(vowels)
    _, val_idx = stratified_split(vowels["train"][1], 0.2, seed=3)

    def scale_val_and_test(split, sequences, labels):
        targets = range(len(sequences)) if split == "test" else val_idx
        for i in targets:
            sequences[i] *= 100.0

    changed = _module(vowels, edit=scale_val_and_test)
    torch.testing.assert_close(changed.normalizer.shift, base.normalizer.shift)
    torch.testing.assert_close(changed.normalizer.scale, base.normalizer.scale)

    # ...whereas touching one training sample does move them (the check above can fail).
    train_idx = sorted(set(range(270)) - set(val_idx))

    def scale_one_train(split, sequences, labels):
        if split == "train":
            sequences[train_idx[0]] *= 100.0

    moved = _module(vowels, edit=scale_one_train)
    assert not torch.allclose(moved.normalizer.shift, base.normalizer.shift)


def test_loaded_state_is_reused_not_refitted(vowels):
    fitted = _module(vowels)
    restored = ClassificationDataModule("JapaneseVowels", seed=3)
    restored.load_state_dict(fitted.state_dict())

    def load_raw(split):  # different raw data: a refit would give other statistics
        sequences, labels = vowels[split]
        return [s * 3 + 1 for s in sequences], labels

    restored.load_raw = load_raw
    restored.setup("test")
    torch.testing.assert_close(restored.normalizer.shift, fitted.normalizer.shift)
    assert restored.classes == fitted.classes


TINY = 2.0**-100  # exactly a float32


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 3)),
        # zero or at least 2**-100 in magnitude: a value near float32's smallest (1e-45) times
        # a factor below 1 underflows to 0, and no scaling can bring its shape back
        elements=st.just(0.0) | st.floats(TINY, 1e6, width=32) | st.floats(-1e6, -TINY, width=32),
    ),
    factor=st.floats(1e-3, 1e3),
)
def test_maxabs_keeps_each_sequences_shape_and_drops_its_magnitude(values, factor):
    sequence = torch.from_numpy(values)
    scaled = scale_sequence(sequence, "maxabs")
    peaks = scaled.abs().amax(dim=0)
    nonzero = sequence.abs().amax(dim=0) > 0
    # every channel that is not all zero peaks at exactly 1; an all-zero one stays zero
    torch.testing.assert_close(peaks[nonzero], torch.ones_like(peaks[nonzero]))
    assert torch.equal(scaled[:, ~nonzero], sequence[:, ~nonzero])
    # the same sequence at another magnitude (per channel) scales to the same values
    factors = torch.tensor([factor, 1.0, 1.0 / factor])[: sequence.shape[1]]
    torch.testing.assert_close(scale_sequence(sequence * factors, "maxabs"), scaled)
    assert torch.equal(scale_sequence(sequence, "none"), sequence)


def test_sequence_scale_applies_before_the_fit_and_to_every_split(vowels):
    train_idx, val_idx = stratified_split(vowels["train"][1], 0.2, seed=3)

    def magnify(split, sequences, labels):  # one sample of each split, 1000 times larger
        for i in (train_idx[0], val_idx[0]) if split == "train" else (0,):
            sequences[i] *= 1000.0

    base = _module(vowels, sequence_scale="maxabs")
    magnified = _module(vowels, sequence_scale="maxabs", edit=magnify)
    torch.testing.assert_close(magnified.normalizer.shift, base.normalizer.shift)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(
            magnified.dataset(split).sequences[0], base.dataset(split).sequences[0]
        )
    # without it the magnified samples do change what the model sees (the checks can fail)
    plain, plain_magnified = _module(vowels), _module(vowels, edit=magnify)
    assert not torch.allclose(plain_magnified.normalizer.shift, plain.normalizer.shift)
    assert not torch.allclose(
        plain_magnified.dataset("test").sequences[0], plain.dataset("test").sequences[0]
    )
    # the statistics are those of the scaled training sequences
    steps = torch.cat([scale_sequence(s, "maxabs") for s in base.splits["train"][0]]).double()
    torch.testing.assert_close(base.normalizer.shift.double(), steps.mean(0), rtol=1e-6, atol=1e-6)


def test_stratified_split_is_seeded_disjoint_and_keeps_every_class(vowels):
    labels = vowels["train"][1]
    train_idx, val_idx = stratified_split(labels, 0.2, seed=0)
    assert set(train_idx).isdisjoint(val_idx)
    assert len(train_idx) + len(val_idx) == len(labels)
    assert set(labels[train_idx]) == set(labels[val_idx]) == set(labels)
    again, _ = stratified_split(labels, 0.2, seed=0)
    other, _ = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(train_idx, again)
    assert not np.array_equal(train_idx, other)


def test_pad_collate_gives_padded_batch_and_cpu_int64_lengths():
    batch = [(torch.ones(3, 2), torch.tensor(0)), (torch.ones(5, 2), torch.tensor(1))]
    padded = pad_collate(batch)
    x, lengths, y = padded.x, padded.lengths, padded.y
    assert x.shape == (2, 5, 2)
    assert lengths.dtype == torch.int64 and lengths.device.type == "cpu"
    assert lengths.tolist() == [3, 5] and y.tolist() == [0, 1]
    assert x[0, 3:].abs().sum() == 0


def test_lengths_stay_on_cpu_when_the_batch_moves_to_a_device():
    batch = pad_collate([(torch.ones(4, 2), torch.tensor(0)), (torch.ones(2, 2), torch.tensor(1))])
    dm = ClassificationDataModule()
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved.x.device.type == moved.y.device.type == "meta"
    assert moved.lengths.device.type == "cpu" and moved.lengths.dtype == torch.int64


def test_a_batch_moves_its_extras_and_baselines_but_not_its_lengths():
    rows = 2
    batch = Batch(
        x=torch.ones(rows, 3, 1),
        lengths=torch.tensor([3, 2]),
        y=torch.ones(rows, 1, 1),
        index=torch.arange(rows),
        baselines={"naive": torch.zeros(rows, 1, 1)},
        scaling=TargetScaling(torch.zeros(rows, 1), torch.ones(rows, 1)),
        forecast=ForecastExtras(torch.ones(rows, 1), torch.ones(rows, 3, 1)),
    )
    moved = batch.to(torch.device("meta"))
    assert isinstance(moved, Batch) and moved.lengths is batch.lengths
    assert moved.scaling is not None and moved.forecast is not None
    tensors = [moved.x, moved.y, moved.index, moved.baselines["naive"]]
    tensors += [moved.scaling.shift, moved.scaling.scale]
    tensors += [moved.forecast.mase_scale, moved.forecast.history]
    assert {t.device.type for t in tensors} == {"meta"}


def test_a_batch_names_what_a_model_needs_and_it_lacks():
    batch = Batch(x=torch.ones(1, 2, 1), lengths=torch.tensor([2]))
    with pytest.raises(ValueError, match="no targets"):
        batch.targets()
    with pytest.raises(ValueError, match=r"no target scaling \(Batch\.scaling\)"):
        batch.target_scaling()
    scaling = TargetScaling(torch.tensor([[2.0]]), torch.tensor([[4.0]]))
    value = torch.tensor([[[10.0]]])
    torch.testing.assert_close(scaling.normalise(value), torch.tensor([[[2.0]]]))
    torch.testing.assert_close(scaling.denormalise(scaling.normalise(value)), value)


def test_bucket_sampler_covers_each_index_once_with_similar_lengths():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 200, (1000,), generator=generator).tolist()
    sampler = bucket_sampler(lengths, batch_size=16, shuffle=True, seed=0)
    sampler.pool_batches = 10
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch0])
    assert spread < 40  # ~200/10 pools of 160; random batches of 16 from 1..200 spread ~175
    sampler.sampler.set_epoch(1)  # Lightning calls this on the batch sampler's sampler
    assert list(sampler) != epoch0
    sampler.sampler.set_epoch(0)
    assert list(sampler) == epoch0


def test_bucket_sampler_shards_by_its_sampler_under_ddp():
    lengths = list(range(1, 101))
    shards = [
        BucketBatchSampler(
            DistributedSampler(lengths, num_replicas=2, rank=rank, shuffle=True, seed=0),
            batch_size=8,
            lengths=lengths,
        )
        for rank in (0, 1)
    ]
    seen = [sorted(i for b in shard for i in b) for shard in shards]
    assert not set(seen[0]) & set(seen[1])  # each rank its own half
    assert sorted(seen[0] + seen[1]) == list(range(100))
    assert len(list(shards[0])) == len(shards[0]) == 7  # ceil(50 / 8)


def test_bucketed_module_serves_every_training_sample(vowels):
    dm = _module(vowels, bucket=True, batch_size=16)
    seen = sum(len(batch) for batch in dm.train_dataloader())
    assert seen == len(dm.splits["train"][1])


# --- bad input: one clear error naming the problem and the fix ---------------------------------


def _file_module(tmp_path: Path, train_rows: list[str], test_rows: list[str] | None = None):
    good = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1:b", "5,4,3:b", "2,2,2,2:b"]
    return ClassificationDataModule(
        train_file=write_ts(tmp_path / "train.ts", train_rows),
        test_file=write_ts(tmp_path / "test.ts", test_rows or good),
        val_fraction=0.34,
    )


def test_nan_in_features_names_file_sample_and_step(tmp_path):
    rows = ["1,2,3:a", "2,3,4,5:a", "3,?,1:a", "1,1:b", "5,4,3:b", "2,2,2,2:b"]
    with pytest.raises(DataError, match=r"train\.ts sample 2 has NaN/inf at time step 1"):
        _file_module(tmp_path, rows).setup("fit")


def test_unseen_test_label_is_named(tmp_path):
    good = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1:b", "5,4,3:b", "2,2,2,2:b"]
    dm = _file_module(tmp_path, good, ["1,2:a", "1,2:c"])
    with pytest.raises(DataError, match=r"test\.ts has labels \['c'\]"):
        dm.setup("fit")


def test_too_few_samples_per_class_for_a_split(tmp_path):
    rows = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1:b"]  # class b: one sample
    with pytest.raises(DataError, match=r"class 'b' has 1 training samples.*data\.val_fraction"):
        _file_module(tmp_path, rows).setup("fit")


def test_zero_length_sequence_is_named(vowels):
    def empty_one(split, sequences, labels):
        if split == "test":
            sequences[4] = sequences[4][:0]

    with pytest.raises(DataError, match="JapaneseVowels test sample 4 has length 0"):
        _module(vowels, edit=empty_one)


def test_unknown_archive_name_lists_shipped_sets():
    with pytest.raises(DataError, match=r"unknown UCR/UEA data set 'NoSuchSet'.*JapaneseVowels"):
        ClassificationDataModule("NoSuchSet").setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"normalize": "robust"}, "data.normalize"),
        ({"sequence_scale": "max"}, "data.sequence_scale"),
        ({"val_fraction": 0.0}, "data.val_fraction"),
        ({"train_file": "x.ts"}, "data.test_file"),
    ],
)
def test_bad_data_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ClassificationDataModule(**kwargs)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"batch_size": 0}, r"^data\.batch_size must be >= 1, got 0$"),
        ({"num_workers": -1}, r"^data\.num_workers must be >= 0, got -1$"),
        ({"seed": -3}, r"^data\.seed must be an integer >= 0, got -3$"),
        ({"seed": 1.5}, r"^data\.seed must be an integer >= 0, got 1\.5$"),
    ],
)
@pytest.mark.parametrize(
    "module",
    [
        "classification.ClassificationDataModule",
        "regression.RegressionDataModule",
        "forecast.ForecastDataModule",
        "probes.AddingDataModule",
        "probes.CopyDataModule",
        "text.TextDataModule",
    ],
)
def test_every_task_refuses_bad_loader_settings_with_the_bases_message(module, setting, message):
    """The base DataModule checks the loader settings, one message each, for every task."""
    import importlib

    path, name = module.rsplit(".", 1)
    cls = getattr(importlib.import_module(f"rnnlab.data.{path}"), name)
    if "num_workers" in setting and cls.__name__ == "TextDataModule":
        pytest.skip("the text is read in the main process: TextDataModule has no num_workers")
    with pytest.raises(ConfigError, match=message):
        cls(**setting)


def test_archive_set_that_needs_a_download_fails_in_one_line(monkeypatch):
    import sktime.datasets

    def offline(*args, **kwargs):
        raise OSError("All download strategies failed.\nStrategy 1: no network")

    monkeypatch.setattr(sktime.datasets, "load_UCR_UEA_dataset", offline)
    with pytest.raises(DataError) as info:
        load_archive("Adiac", "train")  # in the archive, not shipped with sktime
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not load 'Adiac' (train): All download strategies failed;")
    assert "needs a network download" in message


def test_regression_set_is_refused_for_classification():
    with pytest.raises(DataError, match=r"Covid3Month_TRAIN\.ts declares target labels"):
        ClassificationDataModule("Covid3Month").setup("fit")
