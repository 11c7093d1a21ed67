"""Drawing speed: milliseconds per generated point for one sketch, sketches per second for 1,000.

python benchmarks/sample.py [--sizes default,paper] [--sketches 20] [--batch 1000] [--threads 1]

Measured with the project's own sampler (`aisketcher.sampler.Sampler`, the recurrent state and the
influence memory kept between steps), class-only drawing as `aisketcher draw` does it. Baseline, in the same process:
a plain Sketch-RNN decoder step of the same size on `torch.nn.LSTMCell` with the same point sampler
(no attention, no layer norm), so the ratio shows what the AI-Sketcher parts cost per point.

- default: the built-in model (its own points feed the influence layer's memory).
- paper: an AI-Sketcher of the paper's size with random weights, 20 classes, its end-of-sketch
  logit pushed down so that every row runs --paper-steps steps; the figures are per point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from aisketcher.api import Sketcher
from aisketcher.latents import class_latent
from aisketcher.model.config import make_config
from aisketcher.model.mixture import sample_points
from aisketcher.model.sketcher import SketchModel
from aisketcher.sampler import Sampler, make_generator


class PlainDecoder(nn.Module):
    """Sketch-RNN's decoder step on torch.nn.LSTMCell: input [z; s_i], GMM output."""

    def __init__(self, z_size: int, hidden: int, num_mixture: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(z_size + 5, hidden)
        self.output = nn.Linear(hidden, 3 + 6 * num_mixture)
        self.num_mixture = num_mixture

    @torch.no_grad()
    def sample(self, z: torch.Tensor, steps: int, temperature: float, gen: torch.Generator) -> None:
        """Draw `steps` points for every row of z."""
        point = z.new_zeros(z.shape[0], 5)
        point[:, 2] = 1.0
        state = None
        for _ in range(steps):
            state = self.cell(torch.cat([z, point], 1), state)
            point = sample_points(self.output(state[0]), self.num_mixture, temperature, gen)


def _points(sketches: list, max_steps: int) -> int:
    """Decoder steps a list of drawn stroke-3 sketches took: their points plus the end step."""
    return sum(min(len(s) + 1, max_steps) for s in sketches)


def time_single(model: SketchModel, labels: list[int], args, steps: int | None) -> float:
    """Milliseconds per decoder step drawing one sketch at a time."""
    total_points, total_time = 0, 0.0
    for i, label in enumerate(labels):
        latent = class_latent(model, [label], i)
        gen = make_generator(model.output.weight.device, i)
        start = time.perf_counter()
        sampler = Sampler(
            model, latent, 1, temperature=args.temperature, generator=gen, max_steps=steps
        )
        drawn = sampler.run()
        _sync(model.output.weight.device)
        total_time += time.perf_counter() - start
        total_points += _points(drawn, steps or model.config.max_seq_len)
    return total_time / total_points * 1e3


def time_batch(model: SketchModel, labels: list[int], args, steps: int | None):
    latent = class_latent(model, labels, 0)
    gen = make_generator(model.output.weight.device, 0)
    start = time.perf_counter()
    sampler = Sampler(
        model, latent, len(labels), temperature=args.temperature, generator=gen, max_steps=steps
    )
    drawn = sampler.run()
    _sync(model.output.weight.device)
    seconds = time.perf_counter() - start
    return seconds, _points(drawn, steps or model.config.max_seq_len) / len(drawn)


def time_plain(decoder: PlainDecoder, z_size: int, batch: int, steps: int, args) -> float:
    """Milliseconds per decoder step of the plain baseline for a batch of rows."""
    device = decoder.output.weight.device
    gen = make_generator(device, 0)
    z = torch.randn(batch, z_size, device=device)
    decoder.sample(z, 5, args.temperature, gen)
    start = time.perf_counter()
    decoder.sample(z, steps, args.temperature, gen)
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def load(size: str, device: str) -> tuple[SketchModel, int]:
    if size == "default":
        sketcher = Sketcher.load(device=device)
        return sketcher.model, len(sketcher.class_names)
    torch.manual_seed(0)
    model = SketchModel(make_config("ai-sketcher", size, num_classes=20))
    with torch.no_grad():
        model.output.bias[2] = -1e4  # the pen logits come first; the third ends the sketch
    return model.to(device).eval(), 20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="default,paper", help="default and/or paper, magenta")
    parser.add_argument("--sketches", type=int, default=20, help="single sketches to time")
    parser.add_argument("--batch", type=int, default=1000, help="sketches in the batch run")
    parser.add_argument("--paper-steps", type=int, default=100, help="steps per random-model row")
    parser.add_argument("--paper-batch", type=int, default=100, help="batch run at paper size")
    parser.add_argument("--temperature", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}"
    )
    results = {}
    for size in args.sizes.split(","):
        model, classes = load(size, args.device)
        cfg = model.config
        steps = None if size == "default" else args.paper_steps
        labels = [i % classes for i in range(args.sketches)]
        time_single(model, labels[:2], args, steps)  # warm-up
        per_point = time_single(model, labels, args, steps)
        batch = args.batch if size == "default" else args.paper_batch
        batch_labels = [i % classes for i in range(batch)]
        seconds, mean_points = time_batch(model, batch_labels, args, steps)
        plain = PlainDecoder(cfg.z_size, cfg.dec_rnn_size, cfg.num_mixture).to(args.device)
        plain_single = time_plain(plain, cfg.z_size, 1, 100, args)
        results[size] = {
            "config": cfg.name,
            "dec_rnn_size": cfg.dec_rnn_size,
            "cell": cfg.cell,
            "ms_per_point_single": per_point,
            "plain_lstm_ms_per_point_single": plain_single,
            "batch": batch,
            "batch_seconds": seconds,
            "batch_sketches_per_s": batch / seconds,
            "batch_mean_points": mean_points,
        }
        print(
            f"\n{size}: {cfg.name}, {cfg.cell} decoder {cfg.dec_rnn_size}, "
            f"{'trained' if size == 'default' else 'random weights'}"
        )
        print(
            f"  one sketch at a time: {per_point:.3f} ms per point "
            f"(plain nn.LSTMCell decoder of the same size: {plain_single:.3f} ms, "
            f"ratio {per_point / plain_single:.2f}); a 100-point sketch: {per_point * 100:.0f} ms"
        )
        print(
            f"  batch of {batch}: {seconds:.2f} s, {batch / seconds:.0f} sketches/s "
            f"({mean_points:.0f} decoder steps per sketch on average)"
        )
        if size == "default":
            print(
                f"  targets: <= 0.3 ms per point: {'met' if per_point <= 0.3 else 'NOT met'}; "
                f"1,000 sketches within 10 s: "
                f"{'met' if seconds * 1000 / batch <= 10 else 'NOT met'}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
