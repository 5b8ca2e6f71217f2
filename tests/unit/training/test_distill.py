import json
import random

import pytest

from explain.input_format import InputConfig, build_input
from explain.items import Item
from explain.rendering import fill_slots
from training.aspects import ASPECTS, aspect_of
from training.data.types import Sample, UserProfile
from training.distill import (
    TeacherUnavailableError,
    WordCountEncoder,
    distill,
    dropped_path,
    read_distilled,
)
from training.prompts import DEFAULT_TEMPLATE, PromptTemplate
from training.teachers import GroundedTeacher, TeacherFailure

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation"]
TITLES = [
    "Alien",
    "Star Wars",
    "Thing, The",
    "Back to the Future",
    "Blade Runner",
    "Casablanca",
    "Godfather, The",
    "Jaws",
    "Rocky",
    "Annie Hall",
    "Taxi Driver",
    "Die Hard",
    "Toy Story",
    "Fargo",
    "Titanic",
    "Matrix, The",
    "Gladiator",
    "Memento",
    "Chinatown",
    "Ghostbusters",
    "Terminator, The",
    "Clueless",
    "Scream",
    "Shrek",
    "Tootsie",
    "Brazil",
    "Platoon",
    "Vertigo",
]
RNG = random.Random(3)
CATALOGUE = [
    Item(
        f"{t} ({RNG.randrange(1960, 2005)})",
        str(k),
        {"genres": RNG.sample(GENRES, RNG.randint(1, 3))},
    )
    for k, t in enumerate(TITLES)
]
OUTSIDE = Item("Citizen Kane (1941)", "999", {"genres": ["Drama"]})  # never in any request


def make_samples(n, seed=0):
    rng = random.Random(seed)
    out, profiles = [], {}
    for k in range(n):
        item = rng.choice(CATALOGUE)
        history = tuple(rng.sample([i for i in CATALOGUE if i is not item], rng.randint(1, 12)))
        user = f"u{k % 9}"
        out.append(Sample(user, history, item, 100 + k))
        profiles[user] = UserProfile(user, ("Comedy",), (1980,), ASPECTS[k % 9 % 3])
    return out, profiles


def run(samples, teacher, output, **kwargs):
    kwargs.setdefault("profiles", make_samples(0)[1])
    kwargs.setdefault("catalogue_titles", [*CATALOGUE, OUTSIDE])
    kwargs.setdefault("batch_size", 8)
    return distill(samples, teacher, output, progress=False, **kwargs)


class Recording:
    """Wraps a teacher: records which ids it was asked for, optionally interrupts."""

    def __init__(self, inner, interrupt_after=None):
        self.inner, self.interrupt_after, self.asked = inner, interrupt_after, []

    @property
    def name(self):
        return self.inner.name

    @property
    def last_aspects(self):
        return self.inner.last_aspects

    @property
    def last_templates(self):
        return self.inner.last_templates

    def explain(self, requests):
        if self.interrupt_after is not None and len(self.asked) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.asked += [r.sample.sample_id for r in requests]
        return self.inner.explain(requests)


class Scripted:
    """Answers from a function of the request: the faults a real teacher produces."""

    name = "scripted"

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def explain(self, requests):
        self.asked += [r.sample.sample_id for r in requests]
        return [self.answer(k, r) for k, r in enumerate(requests, len(self.asked) - len(requests))]


def test_records_carry_the_request_the_texts_and_their_slot_templates(tmp_path):
    samples, profiles = make_samples(40)
    out = tmp_path / "d.jsonl"
    stats = run(samples, GroundedTeacher(), out, profiles=profiles)
    records = read_distilled(out)
    assert stats.kept == len(records) == 40
    assert stats.dropped == stats.errors == 0
    by_id = {s.sample_id: s for s in samples}
    for record in records:
        sample = by_id[record.id]
        assert record.user_id == sample.user_id and record.timestamp == sample.timestamp
        assert [h.title for h in record.history] == [h.title for h in sample.history]
        assert record.item.to_dict() == {
            "item_id": sample.item.item_id,
            "title": sample.item.title,
            "attributes": {"genres": list(sample.item.features)},
        }
        assert record.teacher == "grounded/2" and record.template == "oracle-faithful/1"
        assert record.aspect == aspect_of(record.target)
        if record.teacher_aspect is not None:
            assert record.aspect == record.teacher_aspect
        assert record.profile_aspect == profiles[sample.user_id].aspect
        student = build_input(sample.history, sample.item, WordCountEncoder(), InputConfig())
        assert record.history_used == student.history_used
        filled = fill_slots(record.target, student.slot_values)
        assert filled.unfilled == () and filled.text.lower() == record.text.lower()
        assert "<item>" in record.target


def test_an_interrupted_run_resumes_to_the_one_shot_result(tmp_path):
    samples, profiles = make_samples(40)
    one_shot = tmp_path / "one.jsonl"
    run(samples, GroundedTeacher(), one_shot, profiles=profiles)

    resumed = tmp_path / "resumed.jsonl"
    interrupted = Recording(GroundedTeacher(), interrupt_after=16)
    with pytest.raises(KeyboardInterrupt):
        run(samples, interrupted, resumed, profiles=profiles)
    assert len(read_distilled(resumed)) == 16
    # A crash in the middle of a write leaves a torn line behind.
    with resumed.open("ab") as handle:
        handle.write(b'{"id": "deadbeef", "text": "Half a li')
    again = Recording(GroundedTeacher())
    stats = run(samples, again, resumed, profiles=profiles)
    assert stats.skipped_existing == 16 and stats.kept == 24 and stats.existing == 16
    assert set(again.asked).isdisjoint(r.id for r in read_distilled(one_shot)[:16])
    assert resumed.read_bytes() == one_shot.read_bytes()
    ids = [r.id for r in read_distilled(resumed)]
    assert len(ids) == len(set(ids)) == 40
    # A third run has nothing left to do and asks the teacher nothing.
    idle = Recording(GroundedTeacher())
    assert run(samples, idle, resumed, profiles=profiles).kept == 0 and idle.asked == []


def test_a_complete_but_unterminated_last_line_is_kept(tmp_path):
    samples, profiles = make_samples(10)
    out = tmp_path / "d.jsonl"
    run(samples[:5], GroundedTeacher(), out, profiles=profiles)
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    stats = run(samples, GroundedTeacher(), out, profiles=profiles)
    assert stats.skipped_existing == 5
    lines = out.read_text().splitlines()
    assert len(lines) == 10 and all(json.loads(line) for line in lines)


def test_a_corrupt_line_inside_the_file_is_an_error(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text('\nnot json\n{"id": "b"}\n')  # records are read lazily, line by line
    with pytest.raises(ValueError, match=r"d.jsonl:2"):
        read_distilled(out)


def test_faulty_answers_are_dropped_with_their_reason_and_not_asked_again(tmp_path):
    samples, _ = make_samples(8, seed=5)
    good = "{item} is a great pick because it fits what you watch."
    faults = [
        lambda r: TeacherFailure("HTTP 500"),
        lambda r: "   ",
        lambda r: "great great great great movie",
        lambda r: "Nice pick.",
        lambda r: "Be natural: Sound like a genuine recommendation from a friend. Yes.",
        lambda r: f"Like Citizen Kane, {title(r)} is a masterpiece you will enjoy.",
        lambda r: 'Explanation: "' + good.format(item=title(r)) + '"',
        lambda r: r.prompt,
    ]
    teacher = Scripted(lambda k, r: faults[k](r) if k < len(faults) else good.format(item=title(r)))
    out = tmp_path / "d.jsonl"
    stats = run(samples, teacher, out, profiles={})
    assert (stats.errors, stats.empty, stats.degenerate, stats.hallucinated, stats.kept) == (
        1,
        1,
        4,
        1,
        1,
    )
    assert stats.hallucinated_titles == 1 and stats.invented == {"Citizen Kane": 1}
    dropped = [json.loads(line) for line in dropped_path(out).read_text().splitlines()]
    assert [d["reason"] for d in dropped] == [
        "empty",
        "degenerate",
        "degenerate",
        "degenerate",
        "hallucinated",
        "degenerate",
    ]
    assert [d.get("detail") for d in dropped if d["reason"] == "degenerate"] == [
        "repetitive",
        "too_short",
        "echo",
        "echo",
    ]
    (kept,) = read_distilled(out)
    assert kept.text == good.format(item=title_of(samples[6])) and kept.profile_aspect is None
    assert kept.target.startswith("<item> is a great pick")

    # On resume only the failed request is asked again; dropped ones are remembered.
    retry = Scripted(lambda k, r: good.format(item=title(r)))
    stats = run(samples, retry, out, profiles={})
    assert retry.asked == [samples[0].sample_id]
    assert (stats.kept, stats.skipped_existing, stats.skipped_dropped) == (1, 1, 6)


def title(request):
    return title_of(request.sample)


def title_of(sample):
    return sample.item.display_title


def test_a_title_the_student_input_has_no_slot_for_is_dropped(tmp_path):
    item = Item("Alien (1979)", "1", {"genres": ["Horror", "Sci-Fi"]})
    old = Item("Casablanca (1942)", "2", {"genres": ["Romance"]})  # oldest, shares nothing
    recent = tuple(
        Item(f"Horror Film Number {k} (1979)", f"h{k}", {"genres": ["Horror"]}) for k in range(30)
    )
    sample = Sample("u", (old, *recent), item, 1)
    config = InputConfig(max_input_tokens=120)
    assert build_input(sample.history, item, WordCountEncoder(), config).history_used < 31
    teacher = Scripted(
        lambda k, r: "Since you watched Casablanca, Alien is a fine next choice for you."
    )
    stats = run([sample], teacher, tmp_path / "d.jsonl", input_config=config, profiles={})
    assert stats.unslotted == 1 and stats.kept == 0
    # With the whole history in the window the same answer has a slot and is kept.
    stats = run([sample], teacher, tmp_path / "e.jsonl", profiles={})
    assert stats.kept == 1
    assert (
        read_distilled(tmp_path / "e.jsonl")[0].target
        == "Since you watched <h31>, <item> is a fine next choice for you."
    )


def test_a_short_title_used_as_an_ordinary_word_is_dropped(tmp_path):
    item = Item("Alien (1979)", "1", {"genres": ["Sci-Fi"]})
    up = Item("Up (2009)", "2", {"genres": ["Animation"]})
    sample = Sample("u", (up,), item, 1)
    ordinary = Scripted(lambda k, r: "Since you grew up on cartoons, Alien is a bold next choice.")
    stats = run([sample], ordinary, tmp_path / "d.jsonl", profiles={})
    assert stats.ambiguous == 1 and stats.kept == 0
    titled = Scripted(lambda k, r: "After Up, Alien is a bold next choice for you.")
    run([sample], titled, tmp_path / "e.jsonl", profiles={})
    assert (
        read_distilled(tmp_path / "e.jsonl")[0].target
        == "After <h1>, <item> is a bold next choice for you."
    )


def test_a_teacher_that_keeps_failing_stops_the_run_and_keeps_the_file(tmp_path):
    samples, _ = make_samples(30, seed=2)
    teacher = Scripted(
        lambda k, r: (
            f"{title(r)} fits what you watch very well." if k < 10 else TeacherFailure("down")
        )
    )
    out = tmp_path / "d.jsonl"
    with pytest.raises(
        TeacherUnavailableError,
        match=r"failed 5 times in a row.*wrote 10 explanations this run, 10 in",
    ) as info:
        run(samples, teacher, out, batch_size=4, max_consecutive_failures=5, profiles={})
    assert info.value.stats.kept == 10 and len(read_distilled(out)) == 10
    assert len(teacher.asked) == 16  # it stopped at the batch where the limit was reached


def test_a_teacher_that_raises_counts_as_failures(tmp_path):
    class Broken:
        name = "broken"

        def explain(self, requests):
            raise RuntimeError("CUDA error")

    samples, _ = make_samples(6)
    with pytest.raises(TeacherUnavailableError, match="CUDA error"):
        run(samples, Broken(), tmp_path / "d.jsonl", batch_size=2, max_consecutive_failures=3)


def test_duplicate_samples_are_distilled_once_and_a_custom_template_is_recorded(tmp_path):
    samples, _ = make_samples(5)
    custom = PromptTemplate.from_text("History: {history}\nExplain {item_to_explain}:")
    stats = run(
        samples + samples[:2], GroundedTeacher(), tmp_path / "d.jsonl", template=custom.text
    )
    assert stats.kept == 5 and stats.duplicates == 2
    records = read_distilled(tmp_path / "d.jsonl")
    assert {r.template for r in records} == {custom.template_id}
    assert (
        custom.template_id.startswith("custom/sha256-")
        and custom.template_id != DEFAULT_TEMPLATE.template_id
    )


def test_the_grounded_teacher_passes_every_filter(tmp_path):
    samples, profiles = make_samples(150, seed=8)
    stats = run(samples, GroundedTeacher(), tmp_path / "d.jsonl", profiles=profiles, batch_size=32)
    assert stats.kept == 150, stats.summary()
    aspects = {r.aspect for r in read_distilled(tmp_path / "d.jsonl")}
    assert {"genre", "era", "similar"} <= aspects
