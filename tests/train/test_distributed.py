"""Real multi-process data parallelism: torchrun, gloo, two processes."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled-checkpointed"])
def test_two_gloo_processes_match_one_process(small_config, tmp_path, compiled):
    """Two DDP processes train as one; also with torch.compile and activation checkpointing (vs eager)."""
    distributed_config = small_config
    if compiled:
        distributed_config = {**small_config, "model": {**small_config["model"], "checkpoint_blocks": True},
                              "train": {**small_config["train"], "compile": True}}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(distributed_config))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "oplearn.cli", "train", str(config_path), "--out", str(tmp_path / "ddp")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    fit(small_config, tmp_path / "single", progress=False)
    ddp, single = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert len(ddp) == len(single) == small_config["train"]["epochs"]
    for a, b in zip(ddp, single):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["test_rel_l2"] == pytest.approx(b["test_rel_l2"], abs=1e-5)
    # Complex spectral weights (stored as real pairs) are synchronised and trained the same way.
    ddp_weights = Checkpoint(tmp_path / "ddp" / "checkpoints" / "last.safetensors").tensors
    single_weights = Checkpoint(tmp_path / "single" / "checkpoints" / "last.safetensors").tensors
    spectral = [k for k in ddp_weights if k.endswith("spectral.weight_pairs")]
    assert spectral
    for name in spectral:
        torch.testing.assert_close(ddp_weights[name], single_weights[name], atol=1e-5, rtol=1e-4)
