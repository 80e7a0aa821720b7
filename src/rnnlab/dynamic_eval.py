"""Dynamic evaluation of a language model (Krause et al. 2018): ``val/bpc_dynamic`` and
``test/bpc_dynamic``.

The model reads the test part as one stream, in windows of ``window`` characters, carrying its
state. Each window is scored first, then the model takes one gradient step on that window's
loss, ``w <- w - lr * grad - decay * (w - w_trained)``: it adapts to the text it has read, and
the decay pulls it back toward the trained weights. A character's score therefore depends only
on the characters before it (never on a later one, a test checks). One stream, not the static
scoring's ``data.eval_streams``: with parallel streams a step taken on one stream's window would
already know text that comes after another stream's next window. Dropout is off throughout; the
model itself is left as it was (a copy adapts).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.capabilities import TextGenerator
from rnnlab.models.language import detached
from rnnlab.utils.errors import ConfigError

log = logging.getLogger(__name__)


@runtime_checkable
class TextParts(Protocol):
    """The data of a language model as dynamic evaluation reads it: each part's character ids
    and the training window length."""

    bptt: int

    @property
    def parts(self) -> Mapping[str, np.ndarray]: ...


def check_settings(settings: Any, model: object) -> tuple[float, float, int | None] | None:
    """``dynamic_eval``'s lr, decay and window; None when off (lr 0). A model that does not
    read text, and values out of range, are refused in one line."""
    if settings is None or not settings.get("lr"):
        return None
    lr, decay, window = settings.get("lr"), settings.get("decay", 0.0), settings.get("window")
    if not isinstance(model, TextGenerator):
        raise ConfigError(
            f"dynamic_eval applies to language models, not {type(model).__name__}: "
            "set dynamic_eval.lr=0"
        )
    if not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"dynamic_eval.lr={lr} must be a finite number > 0 (0: off)")
    if not (isinstance(decay, int | float) and 0 <= decay < 1):
        raise ConfigError(f"dynamic_eval.decay={decay} must be in [0, 1)")
    if window is not None and not (isinstance(window, int) and window >= 1):
        raise ConfigError(
            f"dynamic_eval.window={window} must be a whole number >= 1 (null: data.bptt)"
        )
    return float(lr), float(decay), window


def dynamic_nll(
    model: nn.Module, ids: np.ndarray, window: int, lr: float, decay: float
) -> np.ndarray:
    """The NLL (nats) of each of ``ids[1:]`` given the characters before it, by dynamic
    evaluation of a copy of ``model`` (``model(ids, state) -> (logits, state)``)."""
    work = copy.deepcopy(model).eval()
    params = [p for p in work.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    device = params[0].device
    text = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    scores, state = [], None
    for start in range(0, len(text) - 1, window):
        targets = text[start + 1 : start + 1 + window]
        inputs = text[start : start + len(targets)]
        with torch.enable_grad():
            logits, after = work(inputs[None], state)
            nll = F.cross_entropy(logits[0].float(), targets, reduction="none")
            grads = torch.autograd.grad(nll.mean(), params, allow_unused=True)
        scores.append(nll.detach())  # scored before the step on its own characters
        with torch.no_grad():
            for param, grad, start_value in zip(params, grads, trained, strict=True):
                if grad is not None:
                    param.sub_(lr * grad)
                param.sub_(decay * (param - start_value))
        state = detached(after)
    return torch.cat(scores).cpu().double().numpy() if scores else np.zeros(0)


def dynamic_metrics(
    settings: tuple[float, float, int | None] | None, model: nn.Module, data: object
) -> dict[str, float]:
    """``val/bpc_dynamic`` and ``test/bpc_dynamic`` of the parts ``data`` holds, each read from
    the tested weights (windows of its ``bptt`` unless ``settings`` give a window): the val
    score is the one to choose the settings on. Nothing when ``settings`` is None (off)."""
    if settings is None:
        return {}
    if not isinstance(data, TextParts):
        raise ConfigError(f"dynamic_eval needs a text's parts, which {type(data).__name__} has not")
    lr, decay, window = settings
    metrics = {}
    for part in ("val", "test"):
        if part not in data.parts:  # a text scored with a trained model: its test part only
            continue
        ids = data.parts[part]
        log.info(
            "dynamic evaluation of %d %s characters (lr %g, decay %g, windows of %d)",
            max(len(ids) - 1, 0),
            part,
            lr,
            decay,
            window or data.bptt,
        )
        nll = dynamic_nll(model, ids, window or data.bptt, lr, decay)
        metrics[f"{part}/bpc_dynamic"] = float(nll.mean() / math.log(2)) if len(nll) else math.nan
    return metrics
