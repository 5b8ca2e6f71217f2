"""`prism-train distill --engine ray`: shards on a local Ray with 2 workers give the records a
single process gives, and the streaming readers take the shard files as they are."""

from dataclasses import replace

import pytest

from training.config import PipelineConfig
from training.distill_io import iter_split, split_files
from training.pipeline import run_distill

pytest.importorskip("ray")


def config(**changes):
    base = PipelineConfig(name="ray-distill", num_users=10, seed=5, eval_samples=30)
    return replace(base, **changes)


def records_by_id(directory, split):
    return sorted((r.to_dict() for r in iter_split(directory, split)), key=lambda r: r["id"])


def test_shards_on_ray_hold_the_records_of_one_process(tmp_path):
    local = run_distill(config(), work_dir=tmp_path / "local", progress=False)
    on_ray = run_distill(
        config(distill_engine="ray", distill_workers=2, distill_shards=3),
        work_dir=tmp_path / "ray",
        progress=False,
    )
    assert "train.shard-0" in on_ray and "train" in local
    for split in ("train", "valid", "test", "train_anonymous"):
        shards = split_files(tmp_path / "ray" / "distilled", split)
        assert [p.name for p in shards] == [f"{split}.shard-{k:03d}.jsonl" for k in range(3)]
        expected = records_by_id(tmp_path / "local" / "distilled", split)
        assert expected and records_by_id(tmp_path / "ray" / "distilled", split) == expected


def test_a_rerun_on_ray_resumes_every_shard_without_duplicates(tmp_path):
    ray_config = config(distill_engine="ray", distill_workers=2, distill_shards=2)
    run_distill(ray_config, work_dir=tmp_path, progress=False)
    before = records_by_id(tmp_path / "distilled", "train")
    (tmp_path / "distill.done.json").unlink()  # as if the stage had been interrupted
    summary = run_distill(ray_config, work_dir=tmp_path, progress=False)
    assert all("kept 0 (+" in text for key, text in summary.items() if ".shard-" in key)
    assert records_by_id(tmp_path / "distilled", "train") == before
