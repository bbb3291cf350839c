"""oplearn's FNO against neuraloperator 2.0.0's FNO: same architecture, same parameter count, one process.

    pip install -e '.[bench]'                                                     # neuraloperator==2.0.0
    python benchmarks/spectral.py --device cpu --dims 2 --repeats 3                # smoke run
    python benchmarks/spectral.py --preset cpu --device cpu --markdown              # the CPU table
    python benchmarks/spectral.py --preset gpu --device cuda --markdown             # the GPU table
    python benchmarks/spectral.py --preset gpu --device cuda --precision mixed --compile --markdown

For every configuration both models are built from seed 0 and timed in interleaved repeats (ours, theirs,
ours, ...): a forward pass under ``torch.no_grad`` and one training step (forward, relative L2 loss, backward,
Adam). Reported: median ms, the peak memory of the call above what was allocated when it began (both models'
weights, Adam states and the inputs stay resident the whole time, so they are left out; CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; CPU: one extra call under the profiler,
``oplearn.analysis.memory.measured_cpu_peak``), theirs/ours ratios, and an FFT floor: one
layer's ``irfftn(rfftn(v))`` forward and backward on the ``(batch, width, *grid)`` activation, times n_layers,
the FFT work a dense FNO step cannot avoid.

Matching (read from neuralop/layers/spectral_convolution.py, fno_block.py, channel_mlp.py, embeddings.py):

- Modes. Ours ``modes=m`` keeps wavenumbers ``-m..m-1`` on every axis but the last and ``0..m-1`` on the last.
  neuralop keeps, after an fftshift, ``n // 2`` modes on each side of 0 (``-n/2..n/2-1`` for even n) and
  ``n_last // 2 + 1`` modes ``0..n_last//2`` on the last axis. So ``n_modes = (2 m_1, ..., 2 m_{d-1}, 2 m_d - 2)``
  keeps exactly our set; both store weights ``(in, out, 2 m_1, ..., m_d)``, theirs in fftshift order.
- Lifting: ``lifting_channel_ratio=0`` gives one 1x1 conv (ChannelMLP with n_layers=1); ``projection_channel_ratio
  = projection / width`` gives 1x1 -> GELU -> 1x1; ``use_channel_mlp=False, fno_skip='linear'`` gives the paper's
  block. Per block ours has the spectral weights plus a 1x1 conv with bias; theirs has the spectral weights with a
  bias on the spectral conv and a bias-free 1x1 skip: the same count, so the totals are equal (complex = 2 reals).
- Differences that do not change the count: their grid embedding is ``j / n`` (ours ``j / (n - 1)``), their FFT is
  normalised "forward" (ours on the way back; the product is the same), and with ``use_channel_mlp=False`` their
  post-activation block applies the non-linearity twice (``gelu(gelu(.))``) in every block but the last. The
  weight-copy check therefore uses ReLU in both (idempotent) and a grid embedding on ``[0, n/(n-1))``; with those,
  outputs agree to float32 rounding. The timed models use GELU, so theirs pays one extra GELU per block.
- Keep the grid sizes even: for an odd size neuralop shifts the output spectrum by one wavenumber on every axis
  but the last (it applies ``fftshift`` where ``ifftshift`` is needed), so the two models then differ.
- ``--precision mixed`` runs theirs with ``fno_block_precision='mixed'`` (complex32 after the FFT): CPU FFTs have
  no half precision, so on CPU their row reads "failed"; on CUDA it needs power-of-two sizes (the presets are).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from oplearn.analysis.memory import measured_cpu_peak
from oplearn.losses import relative_lp_loss
from oplearn.models import build
from oplearn.reproduce import commit, device_name


@dataclass(frozen=True)
class Config:
    dim: int
    size: int
    batch: int
    width: int
    modes: int
    projection: int = 128
    n_layers: int = 4
    in_channels: int = 1
    out_channels: int = 1

    @property
    def grid(self) -> tuple[int, ...]:
        return (self.size,) * self.dim

    @property
    def label(self) -> str:
        return (f"{self.dim}-D {'x'.join(map(str, self.grid))}, batch {self.batch}, width {self.width}, "
                f"modes {self.modes}")


PRESETS = {
    "cpu": [Config(1, 1024, 20, 64, 16), Config(2, 64, 20, 32, 12), Config(3, 32, 4, 16, 8)],
    "gpu": [Config(1, 8192, 64, 64, 16), Config(2, 256, 32, 64, 32), Config(2, 512, 16, 64, 32),
            Config(3, 64, 8, 32, 12)],
}


def load_neuralop():
    """neuraloperator's FNO class and version, or None when it is not installed."""
    try:
        import neuralop
        from neuralop.models import FNO
    except ImportError:
        return None
    return FNO, neuralop.__version__


def neuralop_n_modes(modes: tuple[int, ...]) -> tuple[int, ...]:
    """neuraloperator ``n_modes`` keeping the wavenumbers of oplearn's ``modes`` (see the module docstring)."""
    return tuple(2 * m for m in modes[:-1]) + (2 * modes[-1] - 2,)


def build_ours(cfg: Config, activation: str = "gelu"):
    torch.manual_seed(0)
    return build("fno", in_channels=cfg.in_channels, out_channels=cfg.out_channels, modes=(cfg.modes,) * cfg.dim,
                 width=cfg.width, n_layers=cfg.n_layers, projection_channels=cfg.projection, activation=activation)


def build_theirs(cfg: Config, precision: str = "full", non_linearity=F.gelu, grid_end: float = 1.0):
    """neuraloperator's FNO with our architecture; ``grid_end`` sets the grid embedding's domain ``[0, end)``."""
    FNO = load_neuralop()[0]
    from neuralop.layers.embeddings import GridEmbeddingND

    ratio = cfg.projection / cfg.width
    if int(ratio * cfg.width) != cfg.projection:
        raise ValueError(f"projection {cfg.projection} is not reachable as a ratio of width {cfg.width}")
    torch.manual_seed(0)
    return FNO(neuralop_n_modes((cfg.modes,) * cfg.dim), in_channels=cfg.in_channels, out_channels=cfg.out_channels,
               hidden_channels=cfg.width, n_layers=cfg.n_layers, lifting_channel_ratio=0,
               projection_channel_ratio=ratio,
               positional_embedding=GridEmbeddingND(cfg.in_channels, cfg.dim, [[0.0, grid_end]] * cfg.dim),
               non_linearity=non_linearity, use_channel_mlp=False, fno_skip="linear",
               fno_block_precision=precision)


def count_params(model) -> int:
    """Real parameter count: a complex entry counts as 2."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def copy_weights(ours, theirs, cfg: Config) -> None:
    """Load our weights into their model (parameter names only, so any SpectralConv implementation works)."""
    src, dst = ours.state_dict(), theirs.state_dict()
    new = {}

    def put(key: str, value: torch.Tensor) -> None:
        new[key] = value.detach().reshape(dst[key].shape).to(dst[key].dtype)

    put("lifting.fcs.0.weight", src["lifting.weight"])
    put("lifting.fcs.0.bias", src["lifting.bias"])
    axes = tuple(range(2, 1 + cfg.dim))  # non-last mode axes: ours 0..m-1, -m..-1; theirs -m..m-1
    for i in range(cfg.n_layers):
        weight = torch.view_as_complex(src[f"blocks.{i}.spectral.weight_pairs"].contiguous())
        if axes:
            weight = torch.roll(weight, shifts=(cfg.modes,) * len(axes), dims=axes)
        put(f"fno_blocks.convs.{i}.weight.tensor", weight)
        put(f"fno_blocks.convs.{i}.bias", src[f"blocks.{i}.pointwise.bias"])
        put(f"fno_blocks.fno_skips.{i}.conv.weight", src[f"blocks.{i}.pointwise.weight"])
    for theirs_index, ours_index in ((0, 0), (1, 2)):
        for kind in ("weight", "bias"):
            put(f"projection.fcs.{theirs_index}.{kind}", src[f"projection.{ours_index}.{kind}"])
    theirs.load_state_dict(new, strict=True)


def weight_copy_difference(cfg: Config, device: torch.device, batch: int = 2) -> float:
    """max |ours - theirs| / max |ours| on random input after copying our weights into theirs (ReLU, see above)."""
    ours = build_ours(cfg, activation="relu").to(device)
    theirs = build_theirs(cfg, non_linearity=F.relu, grid_end=cfg.size / (cfg.size - 1)).to(device)
    copy_weights(ours, theirs, cfg)
    x = torch.randn(batch, 1, *cfg.grid, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    return ((a - b).abs().max() / a.abs().max()).item()


def timed(fn, device: torch.device) -> tuple[float, float | None]:
    """Milliseconds of one call and, on CUDA, its peak MiB above what was allocated when it began."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    ms = 1000 * (time.perf_counter() - start)
    return ms, (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None


def interleaved(fns: dict, device, warmup: int, repeats: int) -> dict:
    """Median ms and max peak MiB per name, calling the functions in turn; a failing one reports its error."""
    results = {name: {"ms": [], "mib": [], "error": None} for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            if results[name]["error"]:
                continue
            try:
                ms, mib = timed(fn, device)
            except (RuntimeError, NotImplementedError) as error:
                results[name]["error"] = str(error).splitlines()[0][:80]
                continue
            if round_ >= warmup:
                results[name]["ms"].append(ms)
                results[name]["mib"].append(mib)
    if device.type == "cpu":  # one more call each, under the profiler (not timed)
        for name, fn in fns.items():
            if not results[name]["error"]:
                results[name]["mib"] = [measured_cpu_peak(fn) / 2**20]
    return {name: {"ms": statistics.median(r["ms"]) if r["ms"] else None,
                   "mib": max(r["mib"]) if r["mib"] and r["mib"][0] is not None else None,
                   "error": r["error"]} for name, r in results.items()}


def fft_floor_ms(cfg: Config, device, warmup: int, repeats: int) -> float:
    """n_layers x (rfftn + irfftn of the activation, forward and backward): a dense FNO step's FFT work."""
    v = torch.randn(cfg.batch, cfg.width, *cfg.grid, device=device, requires_grad=True)
    grad = torch.randn_like(v)
    axes = tuple(range(2, v.ndim))

    def layer():
        out = torch.fft.irfftn(torch.fft.rfftn(v, dim=axes), s=cfg.grid, dim=axes)
        torch.autograd.grad(out, v, grad)

    return cfg.n_layers * interleaved({"fft": layer}, device, warmup, repeats)["fft"]["ms"]


def closures(model, x, y, mixed: bool):
    """(forward, training step) for one model; mixed: forward and loss under bfloat16 autocast."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def autocast():
        return torch.autocast(x.device.type, dtype=torch.bfloat16) if mixed else contextlib.nullcontext()

    def forward():
        with torch.no_grad(), autocast():
            model(x)

    def step():
        with autocast():
            loss = relative_lp_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return forward, step


def run_config(cfg: Config, args, device) -> dict:
    ours, theirs = build_ours(cfg), build_theirs(cfg, precision="mixed" if args.precision == "mixed" else "full")
    counts = count_params(ours), count_params(theirs)
    assert counts[0] == counts[1], f"parameter counts differ: ours {counts[0]}, theirs {counts[1]}"
    difference = weight_copy_difference(cfg, device)
    ours, theirs = ours.to(device), theirs.to(device)
    if args.compile:
        ours = torch.compile(ours)
    x = torch.randn(cfg.batch, 1, *cfg.grid, device=device)
    y = torch.randn_like(x)
    mixed = args.precision == "mixed"
    (f_ours, s_ours), (f_theirs, s_theirs) = closures(ours, x, y, mixed), closures(theirs, x, y, mixed)
    forward = interleaved({"ours": f_ours, "theirs": f_theirs}, device, args.warmup, args.repeats)
    step = interleaved({"ours": s_ours, "theirs": s_theirs}, device, args.warmup, args.repeats)
    floor = fft_floor_ms(cfg, device, args.warmup, args.repeats)
    return {"cfg": cfg, "params": counts, "difference": difference, "forward": forward, "step": step,
            "floor": floor}


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def cells(result: dict) -> list[str]:
    """ours ms, theirs ms, theirs/ours, peak MiB ours / theirs for one mode (forward or step)."""
    ms = [f"failed: {result[n]['error']}" if result[n]["error"] else fmt(result[n]["ms"]) for n in ("ours", "theirs")]
    ours, theirs = result["ours"]["ms"], result["theirs"]["ms"]
    ratio = "-" if ours is None or theirs is None else f"{theirs / ours:.2f}"
    return [*ms, ratio, f"{fmt(result['ours']['mib'], '.0f')} / {fmt(result['theirs']['mib'], '.0f')}"]


COLUMNS = ["config", "params ours / theirs", "copy check", "fwd ms ours", "fwd ms theirs", "fwd theirs/ours",
           "fwd MiB ours / theirs", "step ms ours", "step ms theirs", "step theirs/ours", "step MiB ours / theirs",
           "FFT floor ms", "ours step/floor"]


def table_row(row: dict) -> list[str]:
    step_ours = row["step"]["ours"]["ms"]
    return [row["cfg"].label, f"{row['params'][0]:,} / {row['params'][1]:,}", f"{row['difference']:.1e}",
            *cells(row["forward"]), *cells(row["step"]),
            fmt(row["floor"]), "-" if step_ours is None else f"{step_ours / row['floor']:.1f}"]


def text_block(row: list[str]) -> str:
    fwd, step = ", ".join(f"{c} {v}" for c, v in zip(COLUMNS[3:7], row[3:7])), \
        ", ".join(f"{c} {v}" for c, v in zip(COLUMNS[7:11], row[7:11]))
    return (f"{row[0]}: params ours / theirs {row[1]}, weight-copy max rel. difference {row[2]}\n"
            f"  {fwd}\n  {step}\n  FFT floor {row[11]} ms, ours step / floor {row[12]}")


def environment(device, neuralop_version: str, args) -> str:
    """Hardware, versions, threads, date, commit, precision and the exact command line (for RESULTS.md)."""
    return (f"{device_name(device)}; torch {torch.__version__}, neuraloperator {neuralop_version}, "
            f"{torch.get_num_threads()} threads; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"commit {commit()}; precision {args.precision}{', ours compiled' if args.compile else ''}\n\n"
            f"`python {shlex.join(sys.argv)}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--dims", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=("fp32", "mixed"), default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (theirs stays eager)")
    parser.add_argument("--markdown", action="store_true", help="print a table for benchmarks/RESULTS.md")
    args = parser.parse_args()
    loaded = load_neuralop()
    if loaded is None:
        print("neuraloperator is not installed: pip install -e '.[bench]'", file=sys.stderr)
        sys.exit(2)
    if args.repeats < 1 or args.warmup < (1 if args.compile else 0):
        parser.error("--repeats must be >= 1 and --warmup >= 0 (>= 1 with --compile)")
    device = torch.device(args.device)
    rows = []
    for cfg in (c for c in PRESETS[args.preset] if c.dim in args.dims):
        row = run_config(cfg, args, device)
        rows.append(row)
        if not args.markdown:
            print(text_block(table_row(row)), flush=True)
    if args.markdown:
        print(environment(device, loaded[1], args) + "\n")
        print("| " + " | ".join(COLUMNS) + " |\n" + "| --- " * len(COLUMNS) + "|")
        for row in rows:
            print("| " + " | ".join(table_row(row)) + " |")


if __name__ == "__main__":
    main()
