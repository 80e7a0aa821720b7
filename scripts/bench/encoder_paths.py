"""The encoder's two paths side by side: ``impl=packed`` (pack_padded_sequence) against
``impl=padded`` (fused kernels over the padded batch), one training step (forward, backward) and
one inference forward, on the same batches and weights, in one process.

    .venv/bin/python scripts/bench/encoder_paths.py [--device cpu|cuda] [--small] [--threads 1]

Needs only torch and ``rnnlab.models.encoder`` (``PYTHONPATH=src`` is enough), so it also runs
on a GPU machine without the rest of rnnlab's dependencies. Batches are drawn once per setting
from a seeded generator: JapaneseVowels-like lengths (7 to 29 steps, 12 channels) or log-normal
lengths (median 40, clipped to 10..1000, 3 channels), 64 sequences each. Before timing, the
script checks that both paths give the same outputs and gradients on these batches. Each row
is the median over ``--repetitions`` of the time per step, paths alternating order; the ratio is
packed / padded (above 1: padded is faster). On CUDA it also reports the peak memory of a
training step.

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:encoder_paths:<device>`` (``bench:encoder_paths:cpu``, ``bench:encoder_paths:cuda``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import alternate, bench_parser, median, parse, run_script, sync

from rnnlab.models.encoder import RNNEncoder

PATHS = ("packed", "padded")  # the encoder's impl, in the order of the table's columns
LENGTHS: dict[str, Callable[[torch.Generator, int], tuple[list[int], int]]] = {
    "JapaneseVowels-like": lambda g, n: (torch.randint(7, 30, (n,), generator=g).tolist(), 12),
    "log-normal": lambda g, n: (
        torch.exp(torch.randn(n, generator=g) * 0.9 + 3.7).clamp(10, 1000).long().tolist(),
        3,
    ),
}


def batch(
    lengths: list[int], features: int, device: torch.device, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), max(lengths), features, generator=g)
    size = torch.tensor(lengths)
    x[torch.arange(x.shape[1])[None, :] >= size[:, None]] = 0.0
    return x.to(device), size


def step(encoder: RNNEncoder, x: torch.Tensor, lengths: torch.Tensor, train: bool) -> None:
    if train:
        encoder.zero_grad(set_to_none=True)
        encoder(x, lengths).square().mean().backward()
    else:
        with torch.inference_mode():
            encoder(x, lengths)


def check_equal(encoder: RNNEncoder, x: torch.Tensor, lengths: torch.Tensor) -> float:
    """Largest difference between the paths' outputs and parameter gradients."""
    results = []
    for impl in ("packed", "padded"):
        encoder.impl = impl
        encoder.zero_grad(set_to_none=True)
        out = encoder(x, lengths)
        out.square().mean().backward()
        grads = [p.grad.detach().clone() for p in encoder.parameters() if p.grad is not None]
        results.append((out.detach(), grads))
    (a, ga), (b, gb) = results
    gaps = [(u - v).abs().max().item() for u, v in zip(ga, gb, strict=True)]
    return max([(a - b).abs().max().item(), *gaps])


def timed(
    encoder: RNNEncoder, impl: str, x: torch.Tensor, lengths: torch.Tensor, train: bool, bf16: bool
) -> float:
    encoder.impl = impl
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)
    with autocast:
        sync(x.device)
        start = time.perf_counter()
        step(encoder, x, lengths, train)
        sync(x.device)
    return time.perf_counter() - start


def time_paths(
    encoder: RNNEncoder,
    x: torch.Tensor,
    lengths: torch.Tensor,
    train: bool,
    bf16: bool,
    repetitions: int,
) -> dict[str, list[float]]:
    """Seconds per step of each path, ``repetitions`` times in alternating order after an
    untimed warm-up step each."""

    def run(impl: str) -> float:
        return timed(encoder, impl, x, lengths, train, bf16)

    times, _ = alternate(PATHS, repetitions, lambda _, impl: run(impl), run)
    return times


def peak_memory(
    encoder: RNNEncoder, impl: str, x: torch.Tensor, lengths: torch.Tensor, bf16: bool
) -> float:
    if x.device.type != "cuda":
        return float("nan")
    torch.cuda.reset_peak_memory_stats()
    timed(encoder, impl, x, lengths, True, bf16)
    return torch.cuda.max_memory_allocated() / 2**20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__.split("\n\n")[0], "one small setting, 3 repetitions", 20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parse(parser, argv, small={"repetitions": 3})


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the device, named even when it is the
    default, since the default depends on the machine."""
    return [args.device]


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown table."""
    return run_script("encoder_paths", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time both paths in every setting; the report and its table."""
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    settings = list(itertools.product(LENGTHS, (64, 256), (False, True)))
    if args.small:
        settings = [("JapaneseVowels-like", 16, False)]
    header = (
        "| lengths | hidden | precision | pass | packed ms | padded ms | packed / padded "
        "| max diff (fp32) | peak MiB packed | peak MiB padded |"
    )
    lines = [header, "|---" * 10 + "|"]
    for lengths_name, hidden, bf16 in settings:
        g = torch.Generator().manual_seed(0)
        sizes, features = LENGTHS[lengths_name](g, 64)
        x, lengths = batch(sizes, features, device, g)
        torch.manual_seed(0)
        encoder = RNNEncoder(features, hidden).to(device)  # the shipped default model
        diff = check_equal(encoder, x, lengths)
        for train in (True, False):
            times = time_paths(encoder, x, lengths, train, bf16, args.repetitions)
            packed, padded = (median(times[impl]) * 1e3 for impl in PATHS)
            memory = [peak_memory(encoder, impl, x, lengths, bf16) for impl in PATHS]
            lines.append(
                f"| {lengths_name} | {hidden} | {'bf16' if bf16 else 'fp32'} "
                f"| {'train step' if train else 'inference'} | {packed:.2f} | {padded:.2f} "
                f"| {packed / padded:.2f} | {diff:.1e} | {memory[0]:.0f} | {memory[1]:.0f} |"
            )
    title = f"device: {name}; torch {torch.__version__}; batch 64; {args.repetitions} repetitions"
    return "\n".join([title, *lines]), "\n".join(lines)


if __name__ == "__main__":
    main()
