"""Chunks of a request log: the same cut every run, for JSON lines and for Parquet."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulk.inputs import InputFormatError, plan_chunks, read_chunk


def rows(n):
    return [
        {"user_id": f"u{k}", "history": [f"Film {k} (1990)"], "recommended_item": f"Pick {k}"}
        for k in range(n)
    ]


def test_json_lines_are_cut_into_chunks_at_line_offsets(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(r) for r in rows(7)]
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\nnot json\n")
    chunks = plan_chunks(path, 3)
    assert [(c.first_row, c.count) for c in chunks] == [(0, 3), (3, 3), (6, 2)]
    assert plan_chunks(path, 3) == chunks  # the same cut every time
    assert [r["user_id"] for r in read_chunk(path, chunks[1])] == ["u3", "u4", "u5"]
    assert read_chunk(path, chunks[2]) == [rows(7)[6], "not json"]  # bad rows come back as text


def test_parquet_chunks_stay_within_row_groups(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist(rows(10)), path, row_group_size=4)
    chunks = plan_chunks(path, 3)
    assert [(c.row_group, c.start, c.count, c.first_row) for c in chunks] == [
        (0, 0, 3, 0), (0, 3, 1, 3), (1, 0, 3, 4), (1, 3, 1, 7), (2, 0, 2, 8),
    ]  # fmt: skip
    got = [r["user_id"] for c in chunks for r in read_chunk(path, c)]
    assert got == [f"u{k}" for k in range(10)]


def test_other_files_are_refused(tmp_path):
    with pytest.raises(InputFormatError, match=r"parquet or \.jsonl"):
        plan_chunks(tmp_path / "log.csv", 10)
