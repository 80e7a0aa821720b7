"""A generated text sample in TensorBoard's Text tab, every validation, for any model that
generates text (a ``TextGenerator`` on ``TextData``: ``rnnlab.capabilities``)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.capabilities import TextData, TextGenerator
from rnnlab.sampling import sample_text


class TextSample(L.Callback):
    """After each validation (not the sanity check), sample ``length`` characters after
    ``prompt`` (None: the first characters of the validation text, which any corpus can
    continue) on rank 0 and log them under the tag ``sample``. Sampling uses its own seeded
    generator and restores the model's mode, so training is unchanged. Runs of models that
    generate no text get none."""

    def __init__(
        self,
        prompt: str | None = None,
        length: int = 300,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.prompt, self.length, self.temperature, self.seed = prompt, length, temperature, seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        data = getattr(trainer, "datamodule", None)  # missing from Lightning's types
        if not (isinstance(pl_module, TextGenerator) and isinstance(data, TextData)):
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers or data.vocab is None:
            return
        prompt = self.prompt if self.prompt is not None else data.opening("val")
        text = sample_text(
            pl_module, data.vocab, prompt, self.length, self.temperature, seed=self.seed
        )
        # Markdown: a code block keeps the text's own line breaks and spaces
        shown = f"```\n{prompt}{text}\n```"
        for logger in loggers:
            logger.experiment.add_text("sample", shown, trainer.global_step)
