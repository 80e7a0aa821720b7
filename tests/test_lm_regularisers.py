"""The language model's training-only regularisers: embedding dropout (whole characters, one
mask per batch, never in evaluation, never in the stored weights) and AR / TAR (added to the
training loss exactly as defined, never to an evaluation's)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from rnnlab.batch import IGNORE_TARGET, Batch
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.language import LanguageModel
from rnnlab.utils.errors import ConfigError

VOCAB = 40


def _model(**settings: float) -> LanguageModel:
    torch.manual_seed(0)
    encoder = RNNEncoder(8, 12, num_layers=1, cell="lstm", bidirectional=False)
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    return LanguageModel(encoder, VOCAB, optimizer, embedding_size=8, **settings)


def _ids() -> torch.Tensor:
    # every character at several places in several rows
    return torch.arange(VOCAB).repeat(3, 2)[:, torch.randperm(2 * VOCAB)]


def test_embedding_dropout_drops_whole_characters_with_one_mask_per_batch():
    model = _model(embedding_dropout=0.5).train()
    ids = _ids()
    weight = model.embedding.weight.detach()
    embedded = model.embed(ids).detach()
    dropped = set()
    for char in range(VOCAB):
        rows = embedded[ids == char]  # every occurrence in this batch: the same mask
        if rows.abs().sum() == 0:
            dropped.add(char)
        else:
            assert torch.allclose(rows, (weight[char] * 2).expand_as(rows)), char
    assert 5 < len(dropped) < VOCAB - 5  # about half, drawn per character
    # the next batch draws a new mask
    again = model.embed(ids).detach()
    assert {c for c in range(VOCAB) if again[ids == c].abs().sum() == 0} != dropped


def test_embedding_dropout_is_off_in_evaluation_and_never_in_the_stored_weights():
    model = _model(embedding_dropout=0.5)
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    ids = _ids()
    model.train()
    model.embed(ids).sum().backward()
    assert model.state_dict().keys() == stored.keys()  # no mask among them
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    model.eval()
    assert torch.equal(model.embed(ids), F.embedding(ids, model.embedding.weight))
    assert torch.equal(model(ids)[0], _model()(ids)[0])  # as if it had none


def _batch() -> Batch:
    torch.manual_seed(3)
    x = torch.randint(1, VOCAB, (3, 9))
    y = torch.randint(1, VOCAB, (3, 9))
    y[2, 6:] = IGNORE_TARGET  # the end of the text: not scored, not regularised
    return Batch(x=x, lengths=torch.tensor([9, 9, 6]), y=y)


def _by_hand(model: LanguageModel, batch: Batch, ar: float, tar: float) -> torch.Tensor:
    """The cross-entropy of the scored characters plus the two penalties, as defined."""
    out, _ = model.encoder.sequence(model.embedding(batch.x), None)
    y = batch.targets()
    valid = y != IGNORE_TARGET
    nll = F.cross_entropy(model.decoder(out)[valid], y[valid])
    squares = [out[b, t].pow(2).mean() for b, t in valid.nonzero().tolist()]
    steps = [
        (out[b, t] - out[b, t - 1]).pow(2).mean()
        for b, t in valid.nonzero().tolist()
        if t > 0 and valid[b, t - 1]
    ]
    return nll + ar * torch.stack(squares).mean() + tar * torch.stack(steps).mean()


@pytest.mark.parametrize(("ar", "tar"), [(2.0, 0.0), (0.0, 3.0), (1.5, 0.5)])
def test_ar_and_tar_add_their_penalties_to_the_training_loss(ar, tar):
    model = _model(ar=ar, tar=tar).train()  # no dropout: the outputs before and after agree
    batch = _batch()
    model.on_train_epoch_start()
    loss = model.training_step(batch, 0)
    with torch.no_grad():
        expected = _by_hand(model, batch, ar, tar)
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    assert not torch.allclose(loss, _by_hand(model, batch, 0.0, 0.0), rtol=1e-3)


def test_evaluation_loss_has_no_penalty():
    plain, regularised = _model(), _model(ar=5.0, tar=5.0)
    batch = _batch()
    for model in (plain, regularised):
        model.eval()
        model.on_validation_epoch_start()
    with torch.no_grad():
        assert torch.equal(regularised.stage_step(batch, "val"), plain.stage_step(batch, "val"))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("embedding_dropout", 1.0),
        ("embedding_dropout", -0.1),
        ("ar", -1.0),
        ("tar", float("inf")),
        ("tar", float("nan")),
    ],
)
def test_out_of_range_settings_are_refused_with_their_name(setting, value):
    with pytest.raises(ConfigError, match=f"model.{setting}="):
        _model(**{setting: value})


@pytest.mark.slow
def test_every_regulariser_trains_under_ddp_on_two_processes(tmp_path):
    import json

    from tests.test_charlm import LM_FAST, PROSE, _text_file
    from tests.test_cli import _run

    corpus = _text_file(tmp_path, PROSE * 30)
    run_dir = tmp_path / "ddp"
    regularisers = [
        "model.encoder.dropout=0",
        "model.encoder.locked_input_dropout=0.1",
        "model.encoder.locked_layer_dropout=0.2",
        "model.encoder.locked_output_dropout=0.2",
        "model.encoder.weight_drop=0.3",
        "model.embedding_dropout=0.1",
        "model.ar=1",
        "model.tar=1",
    ]
    done = _run(
        [
            "-m",
            "rnnlab.train",
            *LM_FAST,
            f"data.file={corpus}",
            "model.encoder.num_layers=2",
            *regularisers,
            "data.batch_size=2",
            "trainer=ddp_cpu",
            "trainer.devices=2",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test/bpc"] < metrics["test/bpc_unigram"]
