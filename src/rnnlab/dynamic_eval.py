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

``rms=true`` is the paper's RMS variant: each weight's step is divided by the root mean square
of its gradient over windows of the training part (read with the trained weights, no step
taken), and its decay multiplied by that RMS over the mean RMS of all weights (capped at a full
step back): weights the training text moved much adapt by smaller steps and are pulled back
harder. Its step size is on another scale than plain SGD's, so it is chosen on validation
separately.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


# the training characters the RMS variant reads for its gradients' RMS: enough windows for a
# stable mean, a bounded cost on a large corpus
RMS_CHARS = 1 << 20


class Settings(NamedTuple):
    lr: float
    decay: float
    window: int | None  # None: data.bptt
    rms: bool = False


def check_settings(settings: Any, model: object) -> Settings | None:
    """``dynamic_eval``'s lr, decay, window and rms; None when off (lr 0). A model that does
    not read text, and values out of range, are refused in one line."""
    if settings is None or not settings.get("lr"):
        return None
    lr, decay, window = settings.get("lr"), settings.get("decay", 0.0), settings.get("window")
    rms = settings.get("rms", False)
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
    if not isinstance(rms, bool):
        raise ConfigError(f"dynamic_eval.rms={rms} must be true or false")
    return Settings(float(lr), float(decay), window, rms)


def _windows(
    work: nn.Module, params: list[nn.Parameter], ids: np.ndarray, window: int
) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]]:
    """Read ``ids`` as one stream in windows of ``window`` characters, carrying the state:
    each window's per-character NLL and the gradients of its mean (None for a weight it does
    not reach). Steps the caller takes between windows are seen by the next one."""
    text = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=params[0].device)
    state = None
    for start in range(0, len(text) - 1, window):
        targets = text[start + 1 : start + 1 + window]
        inputs = text[start : start + len(targets)]
        with torch.enable_grad():
            logits, after = work(inputs[None], state)
            nll = F.cross_entropy(logits[0].float(), targets, reduction="none")
            grads = torch.autograd.grad(nll.mean(), params, allow_unused=True)
        yield nll.detach(), grads
        state = detached(after)


def gradient_rms(model: nn.Module, ids: np.ndarray, window: int) -> list[torch.Tensor]:
    """The root mean square of each trainable weight's gradient over the windows of ``ids``
    (at most ``RMS_CHARS`` of them), read by a copy of ``model`` that takes no step."""
    work = copy.deepcopy(model).eval()
    params = [p for p in work.parameters() if p.requires_grad]
    squares = [torch.zeros_like(p) for p in params]
    count = 0
    for _, grads in _windows(work, params, ids[: RMS_CHARS + 1], window):
        count += 1
        for total, grad in zip(squares, grads, strict=True):
            if grad is not None:
                total.add_(grad.detach() ** 2)
    return [(total / max(count, 1)).sqrt() for total in squares]


def dynamic_nll(
    model: nn.Module,
    ids: np.ndarray,
    window: int,
    lr: float,
    decay: float,
    rms: list[torch.Tensor] | None = None,
) -> np.ndarray:
    """The NLL (nats) of each of ``ids[1:]`` given the characters before it, by dynamic
    evaluation of a copy of ``model`` (``model(ids, state) -> (logits, state)``); with ``rms``
    (``gradient_rms`` of the same model), the RMS variant's steps."""
    work = copy.deepcopy(model).eval()
    params = [p for p in work.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    steps, decays = _scales(rms, decay) if rms is not None else (None, None)
    scores = []
    for nll, grads in _windows(work, params, ids, window):
        scores.append(nll)  # scored before the step on its own characters
        with torch.no_grad():
            for i, (param, grad, start_value) in enumerate(
                zip(params, grads, trained, strict=True)
            ):
                if grad is not None:
                    param.sub_(lr * (grad if steps is None else grad * steps[i]))
                param.sub_((decay if decays is None else decays[i]) * (param - start_value))
    return torch.cat(scores).cpu().double().numpy() if scores else np.zeros(0)


def _scales(rms: list[torch.Tensor], decay: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The RMS variant's factors per weight: on the gradient, one over its RMS (a weight whose
    gradient was always 0 in training takes steps as if its RMS were a thousandth of the
    mean); on the decay, its RMS over the mean RMS of all weights, at most a full step back."""
    mean = torch.cat([r.flatten() for r in rms]).mean().clamp_min(torch.finfo(torch.float32).tiny)
    steps = [1 / r.clamp_min(1e-3 * mean) for r in rms]
    decays = [(decay * r / mean).clamp_max(1.0) for r in rms]
    return steps, decays


def dynamic_metrics(settings: Settings | None, model: nn.Module, data: object) -> dict[str, float]:
    """``val/bpc_dynamic`` and ``test/bpc_dynamic`` of the parts ``data`` holds, each read from
    the tested weights (windows of its ``bptt`` unless ``settings`` give a window): the val
    score is the one to choose the settings on. Nothing when ``settings`` is None (off)."""
    if settings is None:
        return {}
    if not isinstance(data, TextParts):
        raise ConfigError(f"dynamic_eval needs a text's parts, which {type(data).__name__} has not")
    lr, decay, window, with_rms = settings
    rms = None
    if with_rms:
        if "train" not in data.parts:
            raise ConfigError(
                "dynamic_eval.rms=true reads the gradients of the training part, and this text "
                "has none (a file scored by a trained model): set dynamic_eval.rms=false"
            )
        log.info("dynamic evaluation: gradient RMS over the training part")
        rms = gradient_rms(model, data.parts["train"], window or data.bptt)
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
        nll = dynamic_nll(model, ids, window or data.bptt, lr, decay, rms)
        metrics[f"{part}/bpc_dynamic"] = float(nll.mean() / math.log(2)) if len(nll) else math.nan
    return metrics
