"""Time one FNO training step (forward, relative L2, backward, Adam).

    python benchmarks/fno_step.py --resolution 256 --batch 32 --width 64 --modes 32 --layers 4

Prints the median step time over --repeats steps after --warmup steps and, on
CUDA, the peak allocated memory. Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from oplearn.losses import relative_lp_loss
from oplearn.models import build
from oplearn.devices import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--modes", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build("fno", in_channels=1, out_channels=1, modes=(args.modes, args.modes), width=args.width,
                  n_layers=args.layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 1, args.resolution, args.resolution, device=device)
    y = torch.randn_like(x)

    def step():
        loss = relative_lp_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"{args.resolution}x{args.resolution}, batch {args.batch}, width {args.width}, modes {args.modes}, "
          f"{args.layers} layers: median step {1000 * statistics.median(times):.1f} ms{peak}")


if __name__ == "__main__":
    main()
