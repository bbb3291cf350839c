"""The training loop: one code path for a laptop and for torchrun.

A run directory holds ``config.yaml`` (the resolved config),
``metrics.jsonl`` (one line per epoch), ``checkpoints/last.safetensors``
(written every epoch) and ``results.json`` (final errors). ``resume=True``
continues from the last checkpoint and gives the same weights as an
uninterrupted run on CPU: the data order depends only on ``(seed, epoch)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from oplearn.data.dataset import FieldDataset
from oplearn.data.generate import generate
from oplearn.data.pdes import get_pde
from oplearn.data.store import differing_settings, is_oplearn_file, params_json, read_attributes
from oplearn.errors import ConfigError, DataError, TrainingError
from oplearn.layers.kan import grid_update_hooks
from oplearn.precision import autocast, tf32_matmuls
from oplearn.train import distributed
from oplearn.train.checkpoint import Checkpoint, save_checkpoint
from oplearn.train.config import Config, DataSource, dump_config, load_config, validate
from oplearn.train.recipes import CHECKPOINT, setup


class Callback:
    """Hooks called by the loop on the main process; subclass and override what you need."""

    def on_train_begin(self, model: torch.nn.Module, epoch: int = 0) -> None:
        """Before the first update (``epoch``: epochs already done, > 0 when resuming)."""

    def on_epoch_end(self, epoch: int, metrics: dict, model: torch.nn.Module) -> None:
        """After epoch ``epoch`` (1-based); keys added to ``metrics`` are logged to metrics.jsonl."""


def load_source(source: DataSource, name: str, context: distributed.Context | None = None,
                progress: bool = False) -> FieldDataset:
    """Open a data source, generating the file first when it is missing and a PDE is given."""
    context = context or distributed.Context()
    path = Path(source.path)
    if not path.exists():
        if source.pde is None:
            raise DataError(f"{name} data {path} does not exist; fix the path or give pde, n and resolution "
                            "to generate it")
        if context.is_main:
            generate(source.pde, source.n, source.resolution, seed=source.seed, out=path, params=source.params,
                     resume=True, progress=progress)
        distributed.barrier(context)
    elif source.pde is not None:
        _check_generated_as_configured(path, source)
    dataset = FieldDataset.open(path, f"{name} data {path}", source.n, source.input_steps, source.output_steps,
                                source.in_memory)
    if source.resolution is not None and any(n != source.resolution for n in dataset.resolution):
        raise DataError(f"{path} has grid {dataset.resolution}, but resolution {source.resolution} was asked for; "
                        "delete the file to regenerate it or fix the config")
    return dataset


def _check_generated_as_configured(path: Path, source: DataSource) -> None:
    """An existing file that ``source`` would generate must hold what ``source`` describes.

    Catches files left from other settings or from an older generator (whose
    parameters differ once defaults are filled in). Converted files are not checked.
    """
    if not is_oplearn_file(path):
        return
    stored = read_attributes(path)
    problem = get_pde(source.pde, **source.params)
    if stored.get("pde") != problem.name or "source" in stored["params"]:
        return
    wanted = {"params": json.loads(params_json(problem.model_dump(mode="json"))),  # as the generator stores them
              "seed": source.seed}
    differences = differing_settings({"params": stored["params"], "seed": stored.get("seed")}, wanted, "config")
    if differences:
        raise DataError(f"{path} was generated with {', '.join(differences)}; "
                        "delete the file to regenerate it, or fix the config")


def _prepare_run_dir(out: Path, config: Config, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ConfigError(f"cannot resume: {out / CHECKPOINT} does not exist; train without --resume first")
        saved = load_config(out / "config.yaml")
        mine, theirs = config.model_dump(), saved.model_dump()
        mine["train"].pop("epochs"), theirs["train"].pop("epochs")
        if mine != theirs:
            raise ConfigError(f"cannot resume {out}: the config differs from the saved one (only train.epochs "
                              "may change); start a new run directory")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"run directory {out} exists; pass --overwrite to replace it or --resume to continue")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def parameter_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """Optimizer groups of the trainable parameters: the model's own ``optimizer_groups(lr)`` when it has
    one (per-layer learning rates, e.g. muP), else one group at ``lr``."""
    if hasattr(model, "optimizer_groups"):
        groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]}
                  for group in model.optimizer_groups(lr)]
        return [group for group in groups if group["params"]]
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config):
    settings = config.train
    if settings.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, settings.step_size, settings.gamma)
    if settings.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def update_kan_grids(model: nn.Module, task, train, count: int, device: torch.device) -> int:
    """Refit every grid-based KAN layer's grid to its inputs on the first ``count`` training samples.

    The same samples on every rank, so data-parallel replicas stay identical. Returns the layer count.
    """
    inputs = train.batch(list(range(min(count, len(train)))))[0].to(device)
    model.eval()  # no dropout or the like while the grids are placed
    with grid_update_hooks(model) as layers:
        if layers:
            task.predict(model, inputs)
    return layers


def fit(config: Config | dict | str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
        progress: bool = True, callbacks: list[Callback] = ()) -> dict:
    """Train the configured model; return the final metrics (also in ``out/results.json``).

    ``config``: a Config, its dict form, or a YAML file.
    Runs data-parallel when launched by torchrun. Raises ``TrainingError`` if
    the loss becomes NaN, leaving the last good checkpoint in place.
    """
    if isinstance(config, (str, Path)):
        config = load_config(config)
    config = config if isinstance(config, Config) else validate(config)
    out = Path(out)
    context = distributed.setup(config.device)
    try:
        with tf32_matmuls(True) if config.train.tf32 else contextlib.nullcontext():
            return _fit(config, out, context, resume, overwrite, progress, list(callbacks))
    finally:
        distributed.teardown(context)


def _fit(config, out, context, resume, overwrite, progress, callbacks) -> dict:
    show = progress and context.is_main
    train = load_source(config.data.train, "train", context, show)
    test = load_source(config.data.test, "test", context, show)
    if config.train.batch_size < context.world_size:
        raise ConfigError(f"train.batch_size {config.train.batch_size} is smaller than the {context.world_size} "
                          "processes; it is the global batch, split across them")

    channels = list(train.channels)
    model, task, config = setup(config, train, context.device)
    with torch.no_grad():  # shape errors surface before anything is written
        task.predict(model, train.batch([0])[0].to(context.device))

    if context.is_main:
        _prepare_run_dir(out, config, resume, overwrite)
        if not resume:
            _write_atomic(out / "config.yaml", dump_config(config))
    distributed.barrier(context)

    optimizer = torch.optim.Adam(parameter_groups(model, config.train.lr), lr=config.train.lr,
                                 weight_decay=config.train.weight_decay)
    scheduler = make_scheduler(optimizer, config)
    start_epoch = 0
    if resume:
        checkpoint = Checkpoint(out / CHECKPOINT)
        checkpoint.restore(model, optimizer, scheduler)
        torch.set_rng_state(checkpoint.extra()["rng.torch"])
        start_epoch = checkpoint.state["epoch"]
    trained = DistributedDataParallel(model) if context.distributed else model
    if config.train.compile:
        trained = torch.compile(trained)

    if context.is_main:
        for callback in callbacks:
            callback.on_train_begin(model, start_epoch)
    bar = tqdm(range(start_epoch, config.train.epochs), desc="train", unit="epoch", disable=not show,
               initial=start_epoch, total=config.train.epochs, dynamic_ncols=True)
    metrics: dict = {}
    for epoch in bar:
        started = time.perf_counter()
        if epoch < config.train.kan_grid_updates:
            update_kan_grids(model, task, train, config.train.batch_size, context.device)
        trained.train()
        totals = torch.zeros(2, dtype=torch.float64)
        for indices, global_count in distributed.epoch_batches(len(train), config.train.batch_size, config.seed,
                                                                epoch, context):
            inputs, targets = (t.to(context.device, non_blocking=True) for t in train.batch(indices))
            with autocast(config.train.precision, context.device):
                losses = task.per_sample_loss(trained, inputs, targets).float()
            # DDP averages gradients over ranks; scaling by world size makes that a mean over the global batch.
            loss = losses.sum() * (context.world_size / global_count)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += torch.tensor([losses.detach().sum().item(), len(indices)], dtype=torch.float64)
        scheduler.step()
        totals = distributed.all_sum(totals, context)
        train_loss = (totals[0] / totals[1]).item()
        if not torch.isfinite(torch.tensor(train_loss)):
            raise TrainingError(f"the training loss became {train_loss} in epoch {epoch + 1}; the last good "
                                f"checkpoint ({out / CHECKPOINT}) is kept; lower train.lr or check the data")
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                   "epoch_seconds": time.perf_counter() - started}
        if context.is_main:
            evaluation_start = time.perf_counter()
            metrics["test_rel_l2"] = task.evaluate(model, test, context.device)
            metrics["test_seconds"] = time.perf_counter() - evaluation_start
            for callback in callbacks:
                callback.on_epoch_end(epoch + 1, metrics, model)
            save_checkpoint(out / CHECKPOINT, model, optimizer, scheduler,
                            extra={**task.state(), "rng.torch": torch.get_rng_state()},
                            state={"epoch": epoch + 1, "metrics": metrics, "channels": channels,
                                   "config": config.model_dump(mode="json")})
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            bar.set_postfix(loss=f"{train_loss:.4f}", test=f"{metrics['test_rel_l2']:.4f}")
    bar.close()

    results = {}
    if context.is_main:
        results = {"test": {"data": config.data.test.path, "resolution": list(test.resolution),
                            "rel_l2": task.evaluate(model, test, context.device)}}
        for name, source in config.data.extra_tests.items():
            extra = load_source(source, name, progress=show)
            results[name] = {"data": source.path, "resolution": list(extra.resolution),
                             "rel_l2": task.evaluate(model, extra, context.device)}
        results["epochs"] = config.train.epochs
        results["parameters"] = sum(p.numel() for p in model.parameters())
        _write_atomic(out / "results.json", json.dumps(results, indent=2))
    distributed.barrier(context)
    return results
