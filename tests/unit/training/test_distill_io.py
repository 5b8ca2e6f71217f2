"""Resuming reads ids only, and repairs a torn last line from the end of the file."""

import json

import pytest

from training.distill_io import CorruptDistillFileError, DoneIds, id_key, iter_ids, repair_tail


def write(path, *lines, tail=b""):
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + tail)


def test_ids_are_read_without_the_rest_of_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    write(path, {"id": "00000000000000aa", "text": "x"}, {"text": "y", "id": "other"})
    path.write_bytes(path.read_bytes() + b'{"id": "torn", "te')
    assert list(iter_ids(path)) == ["00000000000000aa", "other"]  # the torn line is not done


def test_a_line_with_no_id_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    write(path, {"text": "no id"})
    with pytest.raises(CorruptDistillFileError, match=r"d\.jsonl:1"):
        list(iter_ids(path))


@pytest.mark.parametrize("chunk", [4, 1 << 16])
def test_a_torn_tail_is_cut_and_a_complete_one_terminated(tmp_path, chunk):
    torn = tmp_path / "torn.jsonl"
    write(torn, {"id": "a"}, tail=b'{"id": "b", "text": "' + b"x" * 50)
    repair_tail(torn, chunk=chunk)
    assert torn.read_bytes() == b'{"id": "a"}\n'
    whole = tmp_path / "whole.jsonl"
    write(whole, {"id": "a"}, tail=b'{"id": "b"}')
    repair_tail(whole, chunk=chunk)
    assert whole.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    only = tmp_path / "only.jsonl"
    only.write_bytes(b'{"id": "c", "te')
    repair_tail(only, chunk=chunk)
    assert only.read_bytes() == b""


def test_done_ids_say_why_a_sample_is_skipped(tmp_path):
    kept, dropped = tmp_path / "k.jsonl", tmp_path / "k.jsonl.dropped.jsonl"
    write(kept, *({"id": f"{k:016x}"} for k in range(1000)))
    write(dropped, {"id": "custom id", "reason": "empty"})
    done = DoneIds.read(kept, dropped)
    assert done.kept == 1000
    assert done.claim(f"{7:016x}") == "kept"
    assert done.claim("custom id") == "dropped"
    assert done.claim("fresh") is None and done.claim("fresh") == "new"
    assert id_key(f"{255:016x}") == 255 and id_key("custom id") != id_key("custom id ")
