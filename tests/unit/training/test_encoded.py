"""Records -> item references on disk -> Arrow examples, equal to the in-memory encoding."""

import json

from explain.input_format import InputConfig
from tests.unit.training.test_distill import make_samples
from training.distill import distill
from training.distill_io import iter_distilled, read_distilled
from training.distill_stage import draw_samples
from training.encoded import EncodedExamples, load_encoded, write_encoded
from training.examples import to_examples
from training.item_table import items_path
from training.teachers import GroundedTeacher
from training.tokenization import train_bpe


def distilled(tmp_path, n=40):
    samples, profiles = make_samples(n, seed=4)
    out = tmp_path / "d.jsonl"
    distill(samples, GroundedTeacher(), out, profiles=profiles, progress=False)
    return out, samples


def test_records_store_references_and_each_item_once(tmp_path):
    out, samples = distilled(tmp_path)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and all(isinstance(h, str) for line in lines for h in line["history"])
    distinct = {json.dumps(i.to_dict()) for s in samples for i in (*s.history, s.item)}
    table_lines = items_path(out).read_text().splitlines()
    assert len(table_lines) <= len(distinct)  # one line per distinct form, never per record
    records = read_distilled(out)
    by_id = {s.sample_id: s for s in samples}
    for record in records:  # the references resolve to the items the samples had
        assert record.history == by_id[record.id].history and record.item == by_id[record.id].item
    # A catalogue item's reference is its own id.
    assert lines[0]["item"] == by_id[lines[0]["id"]].item.item_id


def test_old_records_with_inline_items_still_read(tmp_path):
    out, _ = distilled(tmp_path, n=5)
    (record, *_) = read_distilled(out)
    old = tmp_path / "old.jsonl"
    old.write_text(record.to_json_line())  # no table: items inline, as before
    assert read_distilled(old) == [record]


def test_the_arrow_file_holds_what_the_in_memory_encoding_gives(tmp_path):
    out, _ = distilled(tmp_path)
    records = read_distilled(out)
    tokenizer = train_bpe([r.text for r in records] * 3, vocab_size=300)
    config = InputConfig(max_input_tokens=64)
    users = {u: k + 1 for k, u in enumerate(sorted({r.user_id for r in records}))}
    path = tmp_path / "train.arrow"
    rows = write_encoded(
        iter_distilled(out), tokenizer, config, path, max_target_tokens=12, batch_rows=7,
        progress=False,
    )  # fmt: skip
    assert rows == len(records) and not path.with_name("train.arrow.partial").exists()
    expected = to_examples(records, tokenizer, config, users, max_target_tokens=12)
    examples = EncodedExamples(load_encoded(path), users)
    assert list(examples) == expected and examples[2:5] == expected[2:5]
    assert examples[-1] == expected[-1]
    assert examples.lengths.tolist() == [len(e.input_ids) for e in expected]
    blind = EncodedExamples(load_encoded(path), users, use_users=False)
    assert {e.user_row for e in blind} == {0}


def test_train_samples_are_drawn_at_random_by_seed():
    samples, _ = make_samples(50, seed=1)
    first = draw_samples(samples, 10, seed=0)
    assert first == draw_samples(samples, 10, seed=0)  # reproducible
    assert first != samples[:10] and first != draw_samples(samples, 10, seed=1)
    positions = [samples.index(s) for s in first]
    assert positions == sorted(positions)  # in their original order
    assert draw_samples(samples, None, seed=0) == samples
    assert max(positions) > 10


def test_long_jobs_end_with_one_summary_line():
    from training.progress import summary_line

    line = summary_line("distill", 10, {"empty": 1, "too_long": 2, "degenerate": 0}, 4.0)
    assert line == "distill: kept 10, dropped 3 (empty 1, too_long 2), 4.0 s (3 rows/s)"
