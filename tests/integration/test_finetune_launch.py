"""`prism-train distill` then `prism-train finetune`: the same command in one process on the
CPU, and as two DDP processes (gloo, on the CPU) started by torchrun, whose environment
accelerate reads as `accelerate launch` sets it on GPUs."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port
from training.cli import main
from training.modeling import UserAwareBart

pytest.importorskip("accelerate")

COMMON = [
    "--dataset", "synthetic", "--users", "12", "--seed", "2", "--max-train-samples", "120",
    "--eval-samples", "24", "--epochs", "1", "--batch-size", "8", "--no-ablation",
    "--no-progress", "--max-input-tokens", "64",
]  # fmt: skip


def test_finetune_after_distill_in_one_process_with_step_checkpoints(tmp_path):
    work = ["--work-dir", str(tmp_path)]
    assert main(["distill", *COMMON, *work]) == 0
    steps = ["--grad-accum", "2", "--save-every-steps", "3", "--eval-every-steps", "3"]
    assert main(["finetune", *COMMON, *work, *steps, "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "finetune_full.done.json").read_text())["summary"]
    history = summary["history"]
    assert [h["step"] for h in history] == list(range(3, 3 * len(history) + 1, 3))
    assert (tmp_path / "examples" / "train.arrow").exists()
    UserAwareBart.load(tmp_path / "full" / "best")


def test_two_ddp_processes_share_the_batches(tmp_path):
    work = ["--work-dir", str(tmp_path)]
    assert main(["distill", *COMMON, *work]) == 0
    launch = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()),
        "-m", "training.cli", "finetune", *COMMON, *work, "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(
        launch, check=False, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "finetune_full.done.json").read_text())["summary"]
    # Two processes split each epoch's batches: half the optimizer steps of one process.
    (last,) = summary["history"]
    batches = -(-summary["train_examples"] // 8)
    assert last["step"] == batches // 2
    UserAwareBart.load(tmp_path / "full" / "best")
