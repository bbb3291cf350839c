"""The training loop: one code path for a laptop and for torchrun.

The loop writes a run directory (:class:`~oplearn.train.run_dir.RunDir`):
the resolved config, one metrics line per epoch, a checkpoint every epoch
and the final errors. ``resume=True`` continues from the last checkpoint and
gives the same weights as an uninterrupted run on CPU: the data order
depends only on ``(seed, epoch)``. What a batch means is the task's business
(:mod:`oplearn.train.task`), where the data come from the source's
(:mod:`oplearn.data.sources`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from oplearn.data.sources import check_like_training, load_source
from oplearn.data.writer import differing_settings
from oplearn.errors import ConfigError, TrainingError
from oplearn.files import write_atomic
from oplearn.precision import autocast, tf32_matmuls
from oplearn.train import distributed
from oplearn.train.callbacks import Callback, KANGridUpdates
from oplearn.train.checkpoint import Checkpoint, save_checkpoint
from oplearn.train.config import Config, dump_config, load_config, validate
from oplearn.train.recipes import setup
from oplearn.train.run_dir import RunDir


def data_summary(dataset) -> dict:
    """What results.json records of a dataset's geometry: the grid, or the largest point set."""
    if dataset.kind == "grid":
        return {"resolution": list(dataset.resolution)}
    return {"geometry": dataset.kind, "max_points": dataset.shape[0]}


def _flat(settings: dict, prefix: str = "") -> dict:
    """``{"model.width": 8, ...}`` of a nested config dump."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resumable(run: RunDir, config: Config) -> None:
    """Only ``train.epochs`` may differ from the saved config; a difference is named."""
    mine, theirs = _flat(config.model_dump(mode="json")), _flat(load_config(run.config).model_dump(mode="json"))
    mine.pop("train.epochs"), theirs.pop("train.epochs")
    differences = differing_settings(theirs, mine, "now")
    if differences:
        raise ConfigError(f"cannot resume {run}: it was trained with {', '.join(differences)}; only train.epochs "
                          "may change (start a new run directory for other settings)")


def _prepare_run_dir(run: RunDir, config: Config, resume: bool, overwrite: bool) -> None:
    """Make ``run`` ready: checked for resuming, or empty for a fresh start.

    A directory becomes a run with its first checkpoint: one that holds only what an interrupted first
    epoch leaves (a config, no checkpoint) starts again, with or without ``resume``.
    """
    out = run.path
    if resume and run.config.is_file():
        _check_resumable(run, config)
        if run.checkpoint.is_file():
            return
    elif resume:
        raise ConfigError(f"cannot resume {out}: it holds no run (no config.yaml); train without --resume first")
    if out.exists() and any(out.iterdir()):
        if not overwrite and (run.checkpoint.is_file() or not run.holds_only_run_files()):
            raise ConfigError(f"run directory {out} exists; pass --overwrite to replace it or --resume to continue")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def parameter_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """Optimizer groups of the trainable parameters: the model's ``optimizer_groups(lr)`` (one group at
    ``lr``, or per-layer learning rates such as muP's), frozen parameters left out."""
    groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]}
              for group in model.optimizer_groups(lr)]
    return [group for group in groups if group["params"]]


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config):
    settings = config.train
    if settings.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, settings.step_size, settings.gamma)
    if settings.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


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
    run = RunDir(out)
    sources = {"progress": show, "is_main": context.is_main, "barrier": lambda: distributed.barrier(context)}
    train = load_source(config.data.train, "train", **sources)
    test = load_source(config.data.test, "test", **sources)
    if config.train.batch_size < context.world_size:
        raise ConfigError(f"train.batch_size {config.train.batch_size} is smaller than the {context.world_size} "
                          "processes; it is the global batch, split across them")

    extras = {name: load_source(source, name, **sources) for name, source in config.data.extra_tests.items()}
    if config.train.batch_size > len(train):
        warnings.warn(f"train.batch_size {config.train.batch_size} is larger than the {len(train)} training "
                      "samples: every epoch is one step on all of them; lower train.batch_size")

    channels = list(train.channels)
    model, task, config = setup(config, train, context.device)
    task.loss.attach(model)
    if context.distributed and task.loss.balancer is not None and task.loss.balancer.needs_gradient_norms:
        raise ConfigError("train.balance gradient_norm differentiates each term separately, which DDP does not "
                          "support; train on one process or choose softadapt or relobralo")
    splits = {"train": (config.data.train, train), "test": (config.data.test, test),
              **{name: (config.data.extra_tests[name], data) for name, data in extras.items()}}
    for name, (source, data) in splits.items():  # every split fits the model before anything is written
        label = f"{name} data {source.path}"
        check_like_training(label, data, train.channels, train.kind, train.shape)
        task.check_data(model, data, label, context.device)

    restore = resume and run.checkpoint.is_file()
    if context.is_main:
        _prepare_run_dir(run, config, resume, overwrite)
        if not restore:
            write_atomic(run.config, dump_config(config))
    distributed.barrier(context)

    groups = parameter_groups(model, config.train.lr)
    # one fused kernel per parameter instead of ~10 small ops (real floating parameters only, not complex ones)
    fused = all(p.is_floating_point() for group in groups for p in group["params"])
    optimizer = torch.optim.Adam(groups, lr=config.train.lr, weight_decay=config.train.weight_decay, fused=fused)
    scheduler = make_scheduler(optimizer, config)
    start_epoch = 0
    if restore:
        checkpoint = Checkpoint(run.checkpoint)
        checkpoint.restore(model, optimizer, scheduler)
        torch.set_rng_state(checkpoint.extra()["rng.torch"])
        task.loss.load_state(checkpoint.extra())
        start_epoch = checkpoint.state["epoch"]
    trained = DistributedDataParallel(model) if context.distributed else model
    if config.train.compile:
        trained = torch.compile(trained)

    if config.train.kan_grid_updates:
        callbacks.insert(0, KANGridUpdates(task, train, config.train.kan_grid_updates, config.train.batch_size,
                                           context.device))
    if context.is_main:
        for callback in callbacks:
            callback.on_train_begin(model, start_epoch)
    bar = tqdm(range(start_epoch, config.train.epochs), desc="train", unit="epoch", disable=not show,
               initial=start_epoch, total=config.train.epochs, dynamic_ncols=True)
    metrics: dict = {}
    for epoch in bar:
        started = time.perf_counter()
        for callback in callbacks:
            callback.on_epoch_begin(epoch, model)
        trained.train()
        # summed on the device and read once per epoch: no host sync per step, and NCCL reduces device tensors
        totals = torch.zeros(2, dtype=torch.float64, device=context.device)
        for indices, global_count in distributed.epoch_batches(len(train), config.train.batch_size, config.seed,
                                                                epoch, context, config.data.train.labelled,
                                                                config.data.train.labelled_per_batch):
            batch = train.batch(indices).to(context.device, non_blocking=True)
            with autocast(config.train.precision, context.device):
                losses = task.per_sample_loss(trained, batch).float()
            # DDP averages gradients over ranks; scaling by world size makes that a mean over the global batch.
            loss = losses.sum() * (context.world_size / global_count)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals[0] += losses.detach().sum().double()
            totals[1] += len(indices)
        scheduler.step()
        totals = distributed.all_sum(totals, context)
        train_loss = (totals[0] / totals[1]).item()
        if not torch.isfinite(torch.tensor(train_loss)):
            raise TrainingError(f"the training loss became {train_loss} in epoch {epoch + 1}; the last good "
                                f"checkpoint ({run.checkpoint}) is kept; lower train.lr or check the data")
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                   "epoch_seconds": time.perf_counter() - started}
        if context.is_main:
            evaluation_start = time.perf_counter()
            metrics["test_rel_l2"] = task.evaluate(model, test, context.device)
            metrics["test_seconds"] = time.perf_counter() - evaluation_start
            for callback in callbacks:
                callback.on_epoch_end(epoch + 1, metrics, model)
            try:
                save_checkpoint(run.checkpoint, model, optimizer, scheduler,
                                extra={**task.state(), **task.loss.state(), "rng.torch": torch.get_rng_state()},
                                state={"epoch": epoch + 1, "metrics": metrics, "channels": channels,
                                       "data": data_summary(train), "config": config.model_dump(mode="json")})
            except (OSError, SafetensorError) as error:
                raise TrainingError(f"cannot write the checkpoint {run.checkpoint} ({error}); free disk space or "
                                    "fix permissions, then continue with --resume (the last good one is kept)") from None
            run.append_metrics(metrics)
            bar.set_postfix(loss=f"{train_loss:.4f}", test=f"{metrics['test_rel_l2']:.4f}")
    bar.close()

    results = {}
    if context.is_main:
        results = {"test": {"data": config.data.test.path, **data_summary(test),
                            "rel_l2": task.evaluate(model, test, context.device)}}
        for name, extra in extras.items():
            results[name] = {"data": config.data.extra_tests[name].path, **data_summary(extra),
                             "rel_l2": task.evaluate(model, extra, context.device)}
        results["epochs"] = config.train.epochs
        results["parameters"] = sum(p.numel() for p in model.parameters())
        run.write_results(results)
    distributed.barrier(context)
    return results
