"""A work directory refuses a build resumed with another result-changing configuration."""

import json
from dataclasses import replace

import pytest

from training.cli import _config, build_parser, main
from training.config import default_config
from training.work_dir import (
    CONFIG_FILE,
    WorkDirConfigError,
    changed_fields,
    claim_work_dir,
    flatten,
)


def test_flatten_and_changed_fields_compare_nested_values_by_dotted_name():
    assert flatten({"a": 1, "train": {"lr": 0.1, "shape": {"layers": 2}}}) == {
        "a": 1,
        "train.lr": 0.1,
        "train.shape.layers": 2,
    }
    saved = {"seed": 0, "attempts": 1, "train": {"lr": 2e-3, "threads": 0, "epochs": 4}}
    current = {"seed": 0, "attempts": 3, "train": {"lr": 1e-3, "threads": 2, "epochs": 6}}
    # how the build runs (attempts, threads) may change; the recipe may not
    assert changed_fields(saved, current) == ["train.epochs", "train.lr"]
    # a field the saved configuration never had (an older version's) is not compared
    assert changed_fields({"seed": 0}, {"seed": 0, "request_forms": False}) == []


def test_a_finished_stage_pins_the_fields_it_depends_on(tmp_path):
    config = default_config()
    claim_work_dir(config, tmp_path)  # a fresh directory: recorded
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["train"]["lr"] == config.train.lr
    # nothing finished yet: another configuration may take the directory over
    other = replace(config, train=replace(config.train, lr=2e-3, epochs=4))
    claim_work_dir(other, tmp_path)
    # distilled: training and evaluation may still change, the data and teacher may not
    (tmp_path / "distill.done.json").write_text("{}")
    claim_work_dir(replace(other, eval_samples=10), tmp_path)
    claim_work_dir(other, tmp_path)
    with pytest.raises(WorkDirConfigError, match=r"teacher_max_new_tokens: 64 -> 32"):
        claim_work_dir(replace(other, teacher_max_new_tokens=32), tmp_path)
    # trained: the training recipe is pinned too, how the build runs is not
    (tmp_path / "finetune_full.done.json").write_text("{}")
    claim_work_dir(replace(other, attempts=1, distill_workers=8), tmp_path)
    with pytest.raises(WorkDirConfigError) as refused:
        claim_work_dir(config, tmp_path)
    message = str(refused.value)
    assert "train.epochs: 4 -> 6" in message and "train.lr: 0.002 -> 0.001" in message
    # the refused build left the record as it was
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["train"]["lr"] == 2e-3
    # evaluated: every field is pinned
    (tmp_path / "evaluate.done.json").write_text("{}")
    with pytest.raises(WorkDirConfigError, match=r"eval_samples: 800 -> 10"):
        claim_work_dir(replace(other, eval_samples=10), tmp_path)


def test_the_cli_refuses_a_resumed_build_with_another_teacher(tmp_path, capsys):
    work = tmp_path / "run"
    claim_work_dir(_config(build_parser().parse_args(["distill"])), work)
    (work / "dataset.done.json").write_text("{}")
    code = main(["distill", "--work-dir", str(work), "--teacher", "openai:http://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err
    assert "another configuration (teacher: 'grounded' -> 'openai:http://127.0.0.1:9')" in err
    assert "--work-dir" in err
