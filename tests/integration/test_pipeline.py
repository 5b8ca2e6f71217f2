"""The whole offline chain at tiny size: data -> distill -> fine-tune -> evaluate -> publish -> serve."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from explain.explainer import DecodeSettings
from explain.input_format import InputConfig
from model_store.store import ModelStore
from service.loader import load_explainer
from training.distill_io import read_distilled
from training.finetune_setup import StudentShape, TrainConfig
from training.pipeline import PipelineConfig, run_pipeline
from training.publish_stage import QualityGateError

EVAL_KEYS = {
    "title_hallucination_rate",
    "history_grounding_rate",
    "aspect_match_full",
    "aspect_match_no_user",
    "usr",
    "rouge_l",
    "bleu4",
    "num_test_samples",
    "unfilled_slot_rate",
    "distinct_patterns",
    "fallback_rate",
}


def tiny_config():
    return PipelineConfig(
        name="prism-pipeline-test",
        num_users=24,
        seed=3,
        eval_samples=24,
        base_eval_samples=4,
        input=InputConfig(max_input_tokens=64),
        vocab_size=400,
        train=TrainConfig(
            shape=StudentShape(
                d_model=32, layers=1, heads=2, ffn=64, max_positions=80, dropout=0.0
            ),
            epochs=1,
            batch_size=32,
            lr=3e-3,
            seed=3,
            threads=1,
        ),
        force=True,
        max_new_tokens=16,
    )


def test_tiny_pipeline_publishes_a_version_that_the_service_serves(tmp_path):
    store_dir, work_dir = tmp_path / "store", tmp_path / "work"
    version, evaluation = run_pipeline(
        tiny_config(), store_dir=store_dir, work_dir=work_dir, progress=False
    )

    store = ModelStore(store_dir)
    assert store.aliases("prism-pipeline-test") == {
        "latest": version.version,
        "production": version.version,
    }
    manifest = store.resolve("prism-pipeline-test").manifest
    assert set(manifest.eval) >= EVAL_KEYS and manifest.eval["num_test_samples"] == 24
    assert manifest.parity_passed and manifest.input_format.name == "prism-evidence"
    assert {"eval/report.md", "eval/report.json", "eval/chart.png", "onnx/encoder.onnx"} <= set(
        manifest.files
    )
    assert set(evaluation["systems"]) >= {
        "Prism (full)",
        "Prism w/o user",
        "untrained base",
        "teacher",
    }
    assert (work_dir / "distilled" / "train_anonymous.jsonl").exists()
    # Records hold references, the items are stored once beside them; examples are Arrow.
    line = json.loads((work_dir / "distilled" / "train.jsonl").read_text().splitlines()[0])
    assert isinstance(line["item"], str) and all(isinstance(h, str) for h in line["history"])
    assert (work_dir / "distilled" / "train.jsonl.items.jsonl").exists()
    assert (work_dir / "examples" / "train.arrow").exists()
    assert not (work_dir / "examples" / "train.json").exists()

    engine = load_explainer(
        store,
        store.resolve("prism-pipeline-test"),
        provider="cpu",
        variant="auto",
        intra_op_threads=1,
        max_history=50,
        max_input_tokens=None,
        max_new_tokens_limit=48,
        decode=DecodeSettings(),
        auto_export=False,
    )
    (record, *_) = read_distilled(work_dir / "distilled" / "test.jsonl")
    results = engine.explain([record.job(), record.job("nobody")])
    assert [r.user_known for r in results] == [True, False]
    # A one-epoch tiny model may write nothing but spaces; the answer is then the evidence
    # sentence, never empty, and says so.
    assert all(r.text and (r.fallback or any(c.isalnum() for c in r.text)) for r in results), (
        results
    )

    # Run again: every stage is done, and the published version is reused, not published twice.
    again, _ = run_pipeline(tiny_config(), store_dir=store_dir, work_dir=work_dir, progress=False)
    assert again.version == version.version
    assert [m.version for m in store.list_versions("prism-pipeline-test")] == [version.version]


def test_a_build_that_misses_a_bar_trains_again_with_the_next_seed(tmp_path):
    """A one-epoch tiny student misses bars at every seed: both attempts run, the second in
    seed-4/ on the first's data and ablation, and only one version is published, unpromoted:
    the attempt that missed the fewest bars."""
    store_dir, work_dir = tmp_path / "store", tmp_path / "work"
    config = replace(tiny_config(), name="prism-attempts-test", force=False, attempts=2)
    with pytest.raises(QualityGateError, match="published but not promoted"):
        run_pipeline(config, store_dir=store_dir, work_dir=work_dir, progress=False)

    retry = work_dir / "seed-4"
    assert (retry / "finetune_full.done.json").exists() and (retry / "eval" / "report.md").exists()
    assert all((retry / name).is_symlink() for name in ("distilled", "tokenizer", "no_user"))
    assert (retry / "no_user").resolve() == (work_dir / "no_user").resolve()
    weights = Path("full", "best", "model", "model.safetensors")
    assert (retry / weights).read_bytes() != (work_dir / weights).read_bytes()

    store = ModelStore(store_dir)
    (only,) = store.list_versions("prism-attempts-test")
    assert "production" not in store.aliases("prism-attempts-test")
    tried = only.eval["training_attempts"]
    assert [t["seed"] for t in tried] == [3, 4] and all(t["failed_bars"] for t in tried)
    fewest = min(tried, key=lambda t: len(t["failed_bars"]))  # the earliest on a tie
    assert only.eval["training_seed"] == fewest["seed"]

    # Resumed: every attempt is read back, nothing is trained or published again, and the
    # verdicts are today's bars on the recorded figures, not the verdicts recorded with them.
    marker = retry / "evaluate.done.json"
    recorded = json.loads(marker.read_text())
    for bar in recorded["summary"]["bars"].values():
        bar["passed"] = True
    marker.write_text(json.dumps(recorded))
    with pytest.raises(QualityGateError, match="is published but not promoted"):
        run_pipeline(config, store_dir=store_dir, work_dir=work_dir, progress=False)
    assert [v.version for v in store.list_versions("prism-attempts-test")] == [only.version]
