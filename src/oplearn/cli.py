"""The ``oplearn`` command: quickstart, generate, info, train, eval, ntk."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from oplearn.errors import OplearnError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oplearn")
def cli():
    """Learn operators between function spaces."""


@cli.command()
@click.option("--fast", is_flag=True, help="A one-minute version: fewer samples and epochs.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/quickstart-TIME).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Where the generated Darcy data is kept (reused when present).")
def quickstart(fast, out, data_dir):
    """Generate Darcy data, train an FNO, evaluate at 32x32 and zero-shot at 64x64."""
    from oplearn.quickstart import run_quickstart

    run_quickstart(fast=fast, out=out, data_dir=data_dir)


@cli.command()
@click.argument("pde")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("--resolution", type=click.IntRange(min=1), required=True,
              help="Grid PDEs: grid points per axis. Mesh PDEs (darcy_domain, elasticity, ...): the mesh's "
                   "resolution, elements per unit length.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output file (default PDE_N_R.h5).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="PDE parameter, e.g. --param tau=3.")
@click.option("--device", default="cpu", show_default=True, help="Where to solve: cpu, cuda, cuda:1 or auto.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples solved together in one call.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Solver processes on CPU (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue an interrupted file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@click.option("--inputs-only", is_flag=True,
              help="Draw the inputs without solving (darcy): a file for data-free physics-informed training.")
def generate(pde, n, resolution, seed, out, params, device, batch, workers, resume, overwrite, inputs_only):
    """Solve PDE for N random inputs and write an HDF5 dataset (grid or mesh, as the PDE makes them)."""
    from oplearn.data import generate as run_generate
    from oplearn.errors import ConfigError
    from oplearn.train.config import parse_value

    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param expects KEY=VALUE, got '{item}'")
        values[key] = parse_value("--param", item, value)
    out = out or Path(f"{pde}_{n}_{resolution}.h5")
    path = run_generate(pde, n, resolution, seed=seed, out=out, params=values, device=device,
                        batch=batch, workers=workers, resume=resume, overwrite=overwrite, inputs_only=inputs_only)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Draw one sample of an oplearn dataset file (input and output, first channel) into this PNG.")
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True, help="The sample --plot draws.")
def info(file, plot_path, sample):
    """Describe a dataset file or a run directory; --plot draws one sample of a dataset file."""
    from oplearn.data.store import describe, is_oplearn_file
    from oplearn.errors import ConfigError, DataError

    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG; name it '{plot_path.stem}.png' instead of '{plot_path.name}'")
    if plot_path is not None and (file.is_dir() or (file.is_file() and not is_oplearn_file(file))):
        raise ConfigError(f"--plot draws oplearn dataset files; {file} is not one (convert it first with "
                          "'oplearn convert', or plot a run's test set with 'oplearn eval')")
    if file.is_dir():
        from oplearn.train.run_dir import RunDir

        run = RunDir(file)
        if not run.config.is_file():
            raise DataError(f"{file} is a directory but not a run directory (no config.yaml)")
        click.echo(run.config.read_text().rstrip())
        if run.results.is_file():
            click.echo(f"--- {run.results.name}\n{run.results.read_text().rstrip()}")
        return
    if file.is_file() and not is_oplearn_file(file):  # a format we read but do not write
        from oplearn.data.formats import load_arrays

        loaded = load_arrays(file)
        for name, array in loaded["arrays"].items():
            click.echo(f"{name}: {array.shape} {array.dtype}")
        click.echo(f"attributes: {json.dumps(loaded['attrs'], default=str)}")
        return
    click.echo(describe(file))
    if plot_path is not None:
        click.echo(f"wrote {_plot_file_sample(file, sample, plot_path)}")


def _plot_file_sample(file: Path, index: int, out: Path) -> Path:
    """Draw sample ``index`` of a dataset file: grids as images or curves, meshes and point clouds on
    their points (input and output, first channel each)."""
    from oplearn.data.sources import open_data
    from oplearn.errors import ConfigError
    from oplearn.plot import plot_grid_sample, plot_mesh_sample

    data = open_data(file)
    if index >= len(data):
        raise ConfigError(f"--sample {index} is out of range: {file} holds {len(data)} samples (0..{len(data) - 1})")
    batch = data.batch([index])
    title = f"{file.name}: sample {index}"
    if data.kind == "grid":
        outputs = None if batch.targets is None else batch.targets[0].numpy()  # None: an inputs-only file
        return plot_grid_sample(batch.inputs[0].numpy(), outputs, out, title)
    cells = batch.cells[0].numpy() if batch.cells else None
    panels = [("input", batch.inputs[0, 0].numpy()), ("output", batch.targets[0, 0].numpy())]
    return plot_mesh_sample(batch.coords[0].T.numpy(), cells, panels, out, title)


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--format", "source_format", default=None, metavar="NAME",
              help="The source's layout (default: from its name): oplearn, pdebench, fno-mat, neuraloperator, "
                   "meshio, geofno-elasticity, geofno-airfoil, geofno-pipe, geofno-plasticity.")
@click.option("--input-key", default=None,
              help="FNO .mat: the variable holding the inputs; meshio: the point-data array(s), comma-separated.")
@click.option("--output-key", default=None,
              help="FNO .mat: the variable holding the outputs; meshio: the point-data array(s), comma-separated.")
@click.option("--overwrite", is_flag=True, help="Replace an existing destination file.")
def convert(source, destination, source_format, input_key, output_key, overwrite):
    """Convert SOURCE to an oplearn HDF5 file.

    Grid data: an FNO .mat, PDEBench HDF5 or neuraloperator .pt file. Mesh data: meshio files (one sample per
    file; a file, a folder or a quoted glob such as 'runs/*.vtu') or a Geo-FNO benchmark folder (elasticity,
    airfoil, pipe) or plasticity .mat file.
    """
    from oplearn.data.formats import convert as run_convert
    from oplearn.data.store import describe

    keys = {name: value for name, value in (("input_key", input_key), ("output_key", output_key)) if value}
    path = run_convert(source, destination, overwrite=overwrite, source_format=source_format, **keys)
    click.echo(describe(path))


def _where(entry: dict) -> str:
    """'at grid (32, 32)' or 'on mesh data (up to 1012 points)' for a results entry."""
    if "resolution" in entry:
        return f"at grid {tuple(entry['resolution'])}"
    return f"on {entry['geometry']} data (up to {entry['max_points']} points)"


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/CONFIG-NAME).")
@click.option("--resume", is_flag=True, help="Continue from the run's last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
def train(config, overrides, out, resume, overwrite):
    """Train a model from a YAML config (runs data-parallel under torchrun)."""
    from oplearn.train import fit, load_config

    settings = load_config(config, overrides)
    results = fit(settings, out or Path("runs") / config.stem, resume=resume, overwrite=overwrite)
    for name, entry in results.items():
        if isinstance(entry, dict):
            click.echo(f"{name}: relative L2 {entry['rel_l2']:.4f} {_where(entry)}")


@cli.command()
@click.argument("row")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set train.epochs=50 (recorded beside the row).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/paper/ROW).")
@click.option("--results", "results_file", type=click.Path(path_type=Path), default=None,
              help="Markdown file whose paper table gets the row (default benchmarks/RESULTS.md when it exists).")
@click.option("--resume", is_flag=True, help="Continue from the run's last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
def reproduce(row, overrides, out, results_file, resume, overwrite):
    """Reproduce a row of the FNO paper's table (burgers, darcy, ns_1e-3_fno2d, ...): data, training, zero-shot tests."""
    from oplearn.reproduce import reproduce as run_row

    default = Path("benchmarks/RESULTS.md")
    summary = run_row(row, out, list(overrides), results_file or (default if default.exists() else None),
                      resume=resume, overwrite=overwrite)
    click.echo(f"{row}: test relative L2 {summary['test_rel_l2']:.4f} (paper {summary['paper_rel_l2']})"
               + "".join(f", {e['resolution'][0]}: {e['rel_l2']:.4f}" for e in summary["zero_shot"].values()))


@cli.command(name="eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset file to test on.")
@click.option("--resolution", type=click.IntRange(min=1), default=None, help="Generate the run's test set at this resolution.")
@click.option("--queries", type=click.Path(path_type=Path), default=None,
              help="Predict at these points instead: a .npy (Q, d) array or a .npz with 'points' (DeepONet family).")
@click.option("--device", default="auto", show_default=True)
def evaluate(run, data, resolution, queries, device):
    """Evaluate a trained run: metrics JSON and figures."""
    from oplearn.train.evaluation import evaluate_run, predict_at_queries

    if queries is not None:
        if resolution is not None:
            from oplearn.errors import ConfigError

            raise ConfigError("give either --queries or --resolution, not both")
        entry = predict_at_queries(run, queries, data=data, device=device)
        click.echo(f"queries: {entry['samples']} samples at {entry['points']} points -> {entry['file']}"
                   + (f", {entry['figure']}" if "figure" in entry else ""))
        return
    results = evaluate_run(run, data=data, resolution=resolution, device=device)
    for name, entry in results.items():
        line = f"{name}: relative L2 {entry['rel_l2']:.4f} {_where(entry)} ({entry['samples']} samples"
        if "band_relative_errors" in entry:
            bands = ", ".join(f"{band} {value:.4f}" if value is not None else f"{band} -"
                              for band, value in entry["band_relative_errors"].items())
            line += f"; by band: {bands}) -> {entry['figure']}"
        else:
            line += ")"
        click.echo(line)
    click.echo(json.dumps({name: entry["rel_l2"] for name, entry in results.items()}))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Dataset file (from oplearn generate: it names its PDE); its first inputs are tuned.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many inputs, each tuned alone.")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="Adam steps per input.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--norm", type=click.Choice(["l2", "h-1", "h-2"]), default=None,
              help="The pde term's norm (default: h-1 where the PDE defines it, Darcy on grids; else l2).")
@click.option("--boundary-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--anchor", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a pull back to the trained prediction.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default RUN/tune).")
@click.option("--overwrite", is_flag=True, help="Replace earlier results in the output folder.")
@click.option("--device", default="auto", show_default=True)
def tune(run, data, samples, steps, lr, norm, boundary_weight, anchor, out, overwrite, device):
    """Test-time fine-tuning (PINO): adapt a trained run to new inputs by their PDE residual alone."""
    from oplearn.errors import DataError
    from oplearn.train.fine_tune import tune_run

    if not Path(data).is_file():
        raise DataError(f"--data {data} does not exist; pass a dataset file (see `oplearn generate`)")
    summary = tune_run(run, data, samples, steps, lr, norm, boundary_weight, anchor, out, overwrite, device)
    for entry in summary["samples"]:
        line = f"sample {entry['sample']}: loss {entry['first_loss']:.3g} -> {entry['final_loss']:.3g}"
        if "rel_l2_before" in entry:
            line += f", relative L2 {entry['rel_l2_before']:.4f} -> {entry['rel_l2_after']:.4f}"
        click.echo(line)
    click.echo(f"-> {summary['files']['npz']}, {summary['files']['json']}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Dataset file; its first N inputs are the kernel's points.")
@click.option("--n", "n", type=click.IntRange(min=1), default=256, show_default=True, help="Number of inputs.")
@click.option("--method", type=click.Choice(["auto", "jacobian", "vjp", "structured"]), default="auto",
              show_default=True, help="How empirical_ntk computes the kernel.")
@click.option("--chunk", type=click.IntRange(min=1), default=None, help="Inputs per block, to bound memory.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With a CONFIG.yaml instead of a run: override a config field.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default RUN/ntk, or CONFIG-ntk for a config).")
@click.option("--overwrite", is_flag=True, help="Replace earlier results in the output folder.")
def ntk(run, data, n, method, chunk, dtype, overrides, device, out, overwrite):
    """Neural tangent kernel of a trained run on the first N inputs of a dataset.

    RUN is a run directory (the trained model, its normalizers) or a config
    YAML (a fresh model at the config's seed, normalizers fitted on the N
    inputs and outputs). Writes ntk.json (eigenvalues, condition number,
    effective ranks, kernel-target alignment with the normalized targets,
    residual energy per eigen-direction), spectrum.png and kernel.safetensors.
    """
    import time

    import torch
    from safetensors.torch import save_file

    from oplearn.files import atomic_path

    from oplearn.analysis.kernels import kernel_summary, write_json
    from oplearn.plot import plot_kernel_spectrum
    from oplearn.analysis.ntk import empirical_ntk
    from oplearn.data.dataset import FieldDataset
    from oplearn.errors import ConfigError, DataError, ShapeError
    from oplearn.train import load_config
    from oplearn.devices import resolve_device
    from oplearn.train.recipes import load_run, setup
    from oplearn.train.task import ResidualTask

    if n < 2:
        raise ConfigError(f"--n must be at least 2 (a kernel needs two inputs), got {n}")
    is_config = run.is_file() and run.suffix in (".yaml", ".yml")
    if not (run.is_dir() or is_config):
        raise DataError(f"{run} is neither a run directory nor a config .yaml file; pass the --out of "
                        "`oplearn train` or a config")
    if not data.is_file():
        raise DataError(f"--data {data} does not exist; pass a dataset file (see `oplearn generate`)")
    if overrides and not is_config:
        raise ConfigError("--set applies to a config file only; a run directory keeps its saved config")
    if is_config:
        config = load_config(run, overrides)
        dataset = FieldDataset.open(data, n=n)
        model, task, config = setup(config, dataset, resolve_device(device))
        model.eval()
        out = out or Path(f"{run.stem}-ntk")
    else:
        config, model, task = load_run(run, device)
        dataset = FieldDataset.open(data, n=n)
        out = out or run / "ntk"
    files = {name: out / name for name in ("ntk.json", "spectrum.png", "kernel.safetensors")}
    if not overwrite and any(path.exists() for path in files.values()):
        raise ConfigError(f"{out} already holds NTK results; pass --overwrite to replace them or choose --out")
    out.mkdir(parents=True, exist_ok=True)

    where = next(model.parameters()).device
    batch = dataset.batch(range(n)).to(where)
    inputs, outputs = batch.inputs, batch.targets
    with torch.no_grad():
        encoded = task.input_normalizer.encode(inputs) if task.input_normalizer is not None else inputs
        if isinstance(task, ResidualTask):  # the model learns the first stage's residual
            outputs = outputs - task.base_task.predict(task.base, batch)
        targets = task.output_normalizer.encode(outputs) if task.output_normalizer is not None else outputs
        try:
            predictions = model(encoded)
        except RuntimeError as error:
            raise ShapeError(f"the {config.model.name} model cannot take the inputs of {data} "
                             f"{tuple(inputs.shape[1:])}: {str(error).splitlines()[0]}") from None
    started = time.perf_counter()
    kernel = empirical_ntk(model, encoded, method=method, outputs="trace", chunk=chunk, dtype=getattr(torch, dtype))
    seconds = time.perf_counter() - started
    summary = kernel_summary(kernel, targets=targets, residual=predictions - targets)
    summary = {"source": str(run), "fresh_model": is_config, "model": config.model.name, "data": str(data),
               "method": method, "dtype": dtype, "device": str(where), "kernel_seconds": seconds, **summary}
    with atomic_path(files["kernel.safetensors"]) as scratch:
        save_file({"kernel": kernel.detach().double().cpu().contiguous()}, str(scratch))
    plot_kernel_spectrum(torch.tensor(summary["eigenvalues"]), files["spectrum.png"],
                         f"trace NTK, {config.model.name}, n={n}")
    write_json(summary, files["ntk.json"])
    click.echo(f"n={n}: condition number {summary['condition_number']:.3g}, effective rank "
               f"{summary['effective_rank_entropy']:.1f} (entropy) / {summary['effective_rank_participation']:.1f} "
               f"(participation), kernel-target alignment {summary['kernel_target_alignment']:.3f} "
               f"-> {files['ntk.json']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors and environment faults print one ``error:`` line and exit with status 2."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            cli.main(args=argv, prog_name="oplearn", standalone_mode=False)
        except OplearnError as error:
            return _fail(str(error))
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            return 130
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx is not None else "oplearn"
            return _fail(f"{error.format_message()} (see '{command} --help')")
        except click.ClickException as error:
            return _fail(error.format_message())
        except OSError as error:  # the environment: a read-only or full disk, a path through a file, ...
            return _fail(_os_problem(error))
    return 0


def _fail(message: str) -> int:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    return 2


def _os_problem(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    what = error.strerror or str(error) or type(error).__name__
    return f"{where}{what}; check that the folder exists and is writable and that the disk has room"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
