"""The ``oplearn`` command: quickstart, generate, info, train, eval."""

from __future__ import annotations

import json
import sys
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
@click.option("--n", "n", type=int, required=True, help="Number of samples.")
@click.option("--resolution", type=int, required=True, help="Grid points per axis.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output file (default PDE_N_R.h5).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="PDE parameter, e.g. --param tau=3.")
@click.option("--device", default="cpu", show_default=True, help="Where to solve: cpu, cuda, cuda:1 or auto.")
@click.option("--batch", type=int, default=1, show_default=True, help="Samples solved together in one call.")
@click.option("--workers", type=int, default=None, help="Solver processes on CPU (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue an interrupted file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def generate(pde, n, resolution, seed, out, params, device, batch, workers, resume, overwrite):
    """Solve PDE for N random inputs and write an HDF5 dataset."""
    import yaml

    from oplearn.data import generate as run_generate
    from oplearn.errors import ConfigError

    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param expects KEY=VALUE, got '{item}'")
        values[key] = yaml.safe_load(value)
    out = out or Path(f"{pde}_{n}_{resolution}.h5")
    path = run_generate(pde, n, resolution, seed=seed, out=out, params=values, device=device,
                        batch=batch, workers=workers, resume=resume, overwrite=overwrite)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
def info(file):
    """Describe a dataset file or a run directory."""
    from oplearn.data.store import describe, is_oplearn_file
    from oplearn.errors import DataError

    if file.is_dir():
        if not (file / "config.yaml").is_file():
            raise DataError(f"{file} is a directory but not a run directory (no config.yaml)")
        click.echo((file / "config.yaml").read_text().rstrip())
        for name in ("results.json",):
            if (file / name).is_file():
                click.echo(f"--- {name}\n{(file / name).read_text().rstrip()}")
        return
    if file.is_file() and not is_oplearn_file(file):  # a format we read but do not write
        from oplearn.data.formats import load_arrays

        loaded = load_arrays(file)
        for name, array in loaded["arrays"].items():
            click.echo(f"{name}: {array.shape} {array.dtype}")
        click.echo(f"attributes: {json.dumps(loaded['attrs'], default=str)}")
        return
    click.echo(describe(file))


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--input-key", default=None, help="FNO .mat only: the variable holding the inputs.")
@click.option("--output-key", default=None, help="FNO .mat only: the variable holding the outputs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing destination file.")
def convert(source, destination, input_key, output_key, overwrite):
    """Convert an FNO .mat, PDEBench HDF5 or neuraloperator .pt file to an oplearn HDF5 file."""
    from oplearn.data.formats import convert as run_convert
    from oplearn.data.store import describe

    keys = {name: value for name, value in (("input_key", input_key), ("output_key", output_key)) if value}
    path = run_convert(source, destination, overwrite=overwrite, **keys)
    click.echo(describe(path))


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
            click.echo(f"{name}: relative L2 {entry['rel_l2']:.4f} at grid {tuple(entry['resolution'])}")


@cli.command(name="eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset file to test on.")
@click.option("--resolution", type=int, default=None, help="Generate the run's test set at this resolution.")
@click.option("--device", default="auto", show_default=True)
def evaluate(run, data, resolution, device):
    """Evaluate a trained run: metrics JSON and figures."""
    from oplearn.train.evaluation import evaluate_run

    results = evaluate_run(run, data=data, resolution=resolution, device=device)
    for name, entry in results.items():
        bands = ", ".join(f"{band} {value:.4f}" if value is not None else f"{band} -"
                          for band, value in entry["band_relative_errors"].items())
        click.echo(f"{name}: relative L2 {entry['rel_l2']:.4f} at grid {tuple(entry['resolution'])} "
                   f"({entry['samples']} samples; by band: {bands}) -> {entry['figure']}")
    click.echo(json.dumps({name: entry["rel_l2"] for name, entry in results.items()}))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit with status 2."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except OplearnError as error:
        click.echo(f"error: {error}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
