"""`prism-batch explain` on the tiny model: a local Ray with 2 workers against the
single-process path, row for row; resume after a crash without duplicates."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulk.cli import main
from bulk.explain_job import (
    JOB_FILE,
    ChunkExplainer,
    explain_log,
    part_path,
    prepare_output,
    read_output,
)
from explain.items import Item
from explain.types import ExplainJob

pytest.importorskip("ray")

FILMS = [
    {"item_id": "1", "title": "Alien (1979)", "attributes": {"genres": ["Horror", "Sci-Fi"]}},
    {"item_id": "2", "title": "Heat (1995)", "attributes": {"genres": ["Crime"]}},
    {"item_id": "3", "title": "Toy Story (1995)", "attributes": {"genres": ["Animation"]}},
    {"item_id": "4", "title": "The Thing (1982)", "attributes": {"genres": ["Horror", "Sci-Fi"]}},
]


def log_rows(users):
    out = []
    for k in range(22):
        history = [FILMS[(k + j) % 4] for j in range(k % 4)]
        if k % 5 == 0:
            history = [f["title"] for f in history]  # bare titles, as rankers send them
        item = {**FILMS[(k + 3) % 4], "item_id": f"r{k}"}
        out.append({"user_id": users[k % len(users)] if k % 3 else f"new-{k}",
                    "history": history, "recommended_item": item})  # fmt: skip
    out.append({"user_id": "x", "history": [], "recommended_item": {"title": ""}})  # invalid
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory, tiny_store):
    path = tmp_path_factory.mktemp("log") / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log_rows(tiny_store.known_users)))
    return path


def run(log, out, store, engine, chunk_rows=5):
    spec = prepare_output(log, out, store.store_dir, store.name, "production", chunk_rows)
    return spec, explain_log(spec, chunk_rows, engine=engine, workers=2)


def test_ray_with_two_workers_writes_what_one_process_writes(log, tiny_store, tmp_path):
    _, local = run(log, tmp_path / "local", tiny_store, "local")
    _, on_ray = run(log, tmp_path / "ray", tiny_store, "ray")
    assert local["rows"] == on_ray["rows"] == 23 and on_ray["chunks"] == 5
    expected, got = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert got.to_pylist() == expected.to_pylist()  # row for row, every column
    assert got.column("row").to_pylist() == list(range(23))
    assert set(got.column("model_version").to_pylist()) == {tiny_store.version}
    (bad,) = [r for r in got.to_pylist() if r["error"]]
    assert bad["row"] == 22 and bad["explanation"] is None and "invalid request" in bad["error"]


def test_rows_are_explained_as_the_explainer_explains_them(log, tiny_store, tmp_path):
    spec, _ = run(log, tmp_path / "out", tiny_store, "local")
    rows = read_output(tmp_path / "out").to_pylist()
    worker = ChunkExplainer(spec)
    raw = log_rows(tiny_store.known_users)[7]
    job = ExplainJob(
        raw["user_id"],
        tuple(Item.from_dict(h) for h in raw["history"]),
        Item.from_dict(raw["recommended_item"]),
    )
    (answer,) = worker.explainer.explain([job])
    assert rows[7]["explanation"] == answer.text and rows[7]["fallback"] == answer.fallback
    assert json.loads(rows[7]["evidence"]) == json.loads(json.dumps(list(answer.evidence)))
    assert rows[7]["user_known"] is True and rows[0]["user_known"] is False


def test_a_rerun_after_a_crash_finishes_without_duplicates(log, tiny_store, tmp_path):
    out = tmp_path / "out"
    run(log, out, tiny_store, "local")
    whole = read_output(out).to_pylist()
    # A crash: two chunks never written, one left half written under its temporary name.
    part_path(out, 1).unlink()
    part = part_path(out, 3)
    shutil.move(part, part.with_name(part.name + ".partial"))
    spec, again = run(log, out, tiny_store, "ray")
    assert again["chunks"] == 2 and again["rows"] == 10 and again["skipped_rows"] == 13
    assert read_output(out).to_pylist() == whole
    assert not list(out.glob("*.partial"))
    assert json.loads((out / JOB_FILE).read_text())["version"] == spec.version


def test_the_command_line_reads_parquet_and_prints_a_summary(tiny_store, tmp_path, capsys):
    path = tmp_path / "log.parquet"
    rows = [r for r in log_rows(tiny_store.known_users)[:8] if r["history"]]
    for r in rows:  # Parquet columns have one type: whole items throughout
        r["history"] = [h if isinstance(h, dict) else {"title": h} for h in r["history"]]
    pq.write_table(pa.Table.from_pylist(rows), path)
    code = main([
        "explain", "--input", str(path), "--output", str(tmp_path / "out"),
        "--store", str(tiny_store.store_dir), "--name", tiny_store.name, "--engine", "local",
        "--chunk-rows", "4", "--no-progress",
    ])  # fmt: skip
    assert code == 0
    assert f"{len(rows)} rows explained with {tiny_store.name}@" in capsys.readouterr().out
    assert read_output(tmp_path / "out").num_rows == len(rows)
    assert all(r["explanation"] for r in read_output(tmp_path / "out").to_pylist())
