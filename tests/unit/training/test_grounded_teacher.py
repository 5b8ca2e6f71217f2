import random
import re
from collections import Counter, defaultdict

from explain import slots
from explain.claims import claims_in
from explain.evidence import compute_evidence, similar_capable
from explain.items import Item
from explain.rendering import fill_slots
from explain.verifier import Verifier
from training.aspects import ASPECTS, aspect_of
from training.data.types import Sample, UserProfile
from training.delexicalise import delexicalise
from training.faithfulness import TitleMatcher
from training.teachers import GroundedTeacher, TeacherRequest, choose_aspect
from training.teachers.patterns import MAIN, SECOND

GENRES = [
    "Action",
    "Adventure",
    "Comedy",
    "Drama",
    "Horror",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "Animation",
    "Crime",
    "Film-Noir",
    "War",
    "Musical",
    "Documentary",
    "Fantasy",
]
TITLES = [
    "Alien",
    "Aliens",
    "Heat",
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
    "Seven",
    "Titanic",
    "Matrix, The",
    "Gladiator",
    "Memento",
    "Amelie",
    "Chinatown",
    "Network",
    "Ghostbusters",
    "Terminator, The",
    "Big Lebowski, The",
    "Clueless",
    "Scream",
    "Shrek",
    "Heathers",
    "Tootsie",
    "Airplane!",
    "Brazil",
    "Platoon",
    "Patton",
    "Goodfellas",
    "Vertigo",
    "Psycho",
    "E.T. the Extra-Terrestrial",
    "Raging Bull",
    "Twister",
    "Speed",
    "Big",
    "Up",
    "Misérables, Les",
    "Dr. Strangelove",
    "2001: A Space Odyssey",
]


def make_catalogue(seed=7):
    rng = random.Random(seed)
    return [
        Item(
            f"{title} ({rng.randrange(1950, 2010)})",
            str(k),
            {"genres": rng.sample(GENRES, rng.randint(1, 3))},
        )
        for k, title in enumerate(TITLES)
    ]


CATALOGUE = make_catalogue()


def focused_catalogue(seed=5):
    """Mostly 1980s films in four genres: every aspect is well supported."""
    rng = random.Random(seed)
    return [
        Item(
            f"{t} ({rng.randrange(1980, 1990) if rng.random() < 0.8 else rng.randrange(1950, 2010)})",
            str(k),
            {"genres": rng.sample(GENRES[:4], rng.randint(1, 2))},
        )
        for k, t in enumerate(TITLES)
    ]


def random_requests(n, seed=0, catalogue=CATALOGUE):
    rng = random.Random(seed)
    out = []
    for k in range(n):
        item = rng.choice(catalogue)
        pool = [i for i in catalogue if i is not item]
        history = tuple(rng.sample(pool, rng.randint(0, 20)))
        sample = Sample(f"u{k % 37}", history, item, 1000 + k)
        profile = None
        if rng.random() < 0.8:
            profile = UserProfile(
                sample.user_id, tuple(rng.sample(GENRES, 2)), (1980,), rng.choice(ASPECTS)
            )
        out.append(TeacherRequest(sample, "(prompt not read)", profile))
    return out


def recent(sample):
    return list(reversed(sample.history))


def delex(sample, text):
    rf = recent(sample)
    ev = compute_evidence(rf, sample.item)
    return delexicalise(text, rf, sample.item, ev, len(rf)), slots.slot_values(
        rf, sample.item, ev, len(rf)
    )


GENRE_WORDS = sorted(
    {g.lower() for g in GENRES} | set(slots.COMMON_NOUN_GENRES), key=len, reverse=True
)
DECADE_OR_YEAR = re.compile(r"(?<![\w'])(?:(\d{4})s|'(\d{2})s|(\d{4}))(?![\w])")


def strip_titles(text, items):
    for item in sorted(items, key=lambda i: -len(i.display_title)):
        text = re.sub(re.escape(item.display_title), " ", text, flags=re.IGNORECASE)
    return text


def test_explanations_are_faithful_over_many_random_requests():
    teacher = GroundedTeacher()
    matcher = TitleMatcher(CATALOGUE)
    requests = random_requests(150) + random_requests(150, catalogue=focused_catalogue())
    texts = teacher.explain(requests)
    lengths = []
    for request, text in zip(requests, texts, strict=True):
        sample = request.sample
        assert isinstance(text, str) and "<" not in text and "{" not in text, text
        assert matcher.hallucinated(text, [*sample.history, sample.item]) == set(), text
        rest = strip_titles(text, [*sample.history, sample.item]).lower()
        item_genres = {f.lower() for f in sample.item.features}
        for genre in GENRE_WORDS:
            if re.search(rf"(?<![\w-]){re.escape(genre)}(?![\w-])", rest):
                assert genre in item_genres, (genre, text)
                rest = rest.replace(genre, " ")
        for long, short, year in DECADE_OR_YEAR.findall(rest):
            assert sample.item.year is not None, text
            if long:
                assert int(long) == sample.item.year // 10 * 10, text
            elif short:
                assert int(short) == sample.item.year % 100 // 10 * 10, text
            else:
                assert int(year) == sample.item.year, text
        # Every claim it makes holds under the written rules (the verifier's own check).
        explanation = teacher.compose(sample, request.profile)
        rf = recent(sample)
        ev = compute_evidence(rf, sample.item)
        values = slots.slot_values(rf, sample.item, ev, len(rf))
        verdict, _filled = Verifier(None).check(
            explanation.template, values, ev, similar_capable(rf, sample.item)
        )
        assert verdict.ok, (verdict.problem, explanation.template, text)
        # Delexicalising and filling again gives back the text: every mention has a slot.
        # (Up to case: fill_slots capitalises after a title's own full stop, "E.T. The".)
        target, values = delex(sample, text)
        assert fill_slots(target, values).text.lower() == text.lower(), (target, text)
        lengths.append(len(text.split()))
    assert min(lengths) >= 6 and max(lengths) <= 45
    assert 12 <= sum(lengths) / len(lengths) <= 30
    mentions_item = sum(
        1 for r, t in zip(requests, texts, strict=True) if r.sample.item.display_title in str(t)
    )
    assert mentions_item >= 0.9 * len(texts)


def test_era_is_only_claimed_when_the_decade_is_really_shared():
    teacher = GroundedTeacher()
    for request in random_requests(200, seed=3, catalogue=focused_catalogue()):
        explanation = teacher.compose(request.sample, request.profile)
        ev = compute_evidence(recent(request.sample), request.sample.item)
        if explanation.aspect == "era":
            assert ev.era != "none" and ev.decade_count >= 2
            assert ev.decade_count / ev.dated >= 0.5
        if explanation.aspect == "genre":
            assert ev.shared and ev.shared[0].count >= 2


def test_output_is_deterministic_per_seed_and_sample():
    requests = random_requests(60, seed=1, catalogue=focused_catalogue())
    first = GroundedTeacher(seed=0).explain(requests)
    assert GroundedTeacher(seed=0).explain(requests) == first
    # Batch composition does not matter: each sample has its own choice.
    assert GroundedTeacher(seed=0).explain(requests[::-1]) == first[::-1]
    # By default the wording of a request without a user style is a function of what the
    # input shows (the student can learn it); with that off, the seed decides.
    assert GroundedTeacher(seed=1).explain(requests) == first
    random_0 = GroundedTeacher(seed=0, visible_choice=False).explain(requests)
    random_1 = GroundedTeacher(seed=1, visible_choice=False).explain(requests)
    assert sum(a != b for a, b in zip(random_0, random_1, strict=True)) > 25


def test_wording_varies_widely_within_each_aspect():
    teacher = GroundedTeacher(visible_choice=False)  # the pools' range, not one chooser's
    mains, templates = defaultdict(set), defaultdict(set)
    for request in random_requests(600, seed=11, catalogue=focused_catalogue()):
        explanation = teacher.compose(request.sample, request.profile)
        target = explanation.template
        if explanation.aspect is None:
            continue
        assert aspect_of(target) == explanation.aspect, (target, explanation)
        mains[explanation.aspect].add(explanation.pattern.split("+")[0])
        templates[explanation.aspect].add(target)
    for aspect in ASPECTS:
        assert len(MAIN[aspect]) >= 12 and len(SECOND[aspect]) >= 5
        assert len(mains[aspect]) >= 12, (aspect, len(mains[aspect]))
        assert len(templates[aspect]) >= 35, (aspect, len(templates[aspect]))
    assert sum(len(MAIN[a]) for a in ASPECTS) >= 36


def test_openings_vary():
    texts = GroundedTeacher().explain(random_requests(400, seed=5))
    openings = Counter(" ".join(t.split()[:2]) for t in texts if isinstance(t, str))
    assert openings.most_common(1)[0][1] < 0.15 * len(texts)


def _item(title, year, *genres, item_id=None):
    return Item(f"{title} ({year})", item_id or title, {"genres": list(genres)})


ITEM = _item("Back to the Future", 1985, "Comedy", "Sci-Fi")


def _profile(aspect, genres=("Comedy",)):
    return UserProfile("u", genres, (1980,), aspect)


def test_preferred_aspect_is_used_when_its_evidence_exists():
    history = (
        _item("Alien", 1979, "Horror", "Sci-Fi"),
        _item("Airplane!", 1980, "Comedy"),
        _item("Blade Runner", 1982, "Sci-Fi"),
        _item("Ghostbusters", 1984, "Comedy"),
        _item("Platoon", 1986, "War"),
    )
    sample = Sample("u", history, ITEM, 1)
    teacher = GroundedTeacher()
    era = teacher.compose(sample, _profile("era"))
    assert era.aspect == "era"
    assert any(form in era.text for form in ("1980s", "'80s", "1985")), era.text
    assert teacher.compose(sample, _profile("genre")).aspect == "genre"
    assert teacher.compose(sample, _profile("similar")).aspect == "similar"


def test_missing_evidence_falls_back_in_a_fixed_order():
    teacher = GroundedTeacher()
    # No history item from the 1980s, but sci-fi shared three times: era falls back to genre.
    no_decade = (
        _item("Star Wars", 1977, "Sci-Fi"),
        _item("Alien", 1979, "Sci-Fi"),
        _item("Matrix, The", 1999, "Sci-Fi", "Action"),
    )
    explanation = teacher.compose(Sample("u", no_decade, ITEM, 1), _profile("era"))
    assert explanation.aspect == "genre"
    assert "sci-fi" in explanation.text and "1980s" not in explanation.text
    # One shared genre (below support) and no shared decade: genre falls back to similar.
    weak = (_item("Matrix, The", 1999, "Sci-Fi"), _item("Casablanca", 1942, "Romance"))
    explanation = teacher.compose(Sample("u", weak, ITEM, 1), _profile("genre"))
    assert explanation.aspect == "similar" and "The Matrix" in explanation.text
    # Nothing shared at all: no aspect, only the item's own facts.
    explanation = teacher.compose(Sample("u", (), ITEM, 1), _profile("similar"))
    assert explanation.aspect is None
    assert "Back to the Future" in explanation.text


def test_unknown_user_gets_the_aspect_with_the_strongest_evidence():
    teacher = GroundedTeacher()
    eighties = tuple(
        _item(t, 1980 + k, "Drama")
        for k, t in enumerate(["Raging Bull", "Brazil", "Platoon", "Amadeus"])
    )
    scifi = (_item("Alien", 1979, "Sci-Fi"), _item("Aliens", 1986, "Sci-Fi"))
    assert teacher.compose(Sample("u", eighties + scifi, ITEM, 1), None).aspect == "era"
    lots_of_scifi = tuple(
        _item(t, 1995, "Sci-Fi") for t in ["Gattaca", "Contact", "Sphere", "Event Horizon"]
    )
    assert teacher.compose(Sample("u", lots_of_scifi + scifi, ITEM, 1), None).aspect == "genre"
    assert choose_aspect({}, None) is None
    assert choose_aspect({"genre": 0.3, "era": 0.3}, None) == "genre"
    assert choose_aspect({"similar": 0.1}, "era") == "similar"
    assert choose_aspect({"era": 0.1, "similar": 0.9}, "genre") == "similar"


def test_intensity_wording_only_with_strong_support():
    two_of_five = (
        _item("Alien", 1979, "Sci-Fi"),
        _item("Heat", 1995, "Crime"),
        _item("Fargo", 1996, "Crime"),
        _item("Blade Runner", 1982, "Sci-Fi"),
        _item("Casablanca", 1942, "Romance"),
    )
    teacher = GroundedTeacher()
    for k in range(30):
        profile = UserProfile("u", ("Sci-Fi",), (1980,), "genre", voice=k)
        explanation = teacher.compose(Sample(f"u{k}", two_of_five, ITEM, k), profile)
        assert explanation.aspect == "genre"
        assert not any(u.strength == "strong" for u in claims_in(explanation.template)), (
            explanation.text
        )


def test_explain_reports_the_aspect_of_each_result():
    requests = random_requests(30, seed=9)
    teacher = GroundedTeacher()
    texts = teacher.explain(requests)
    assert len(texts) == len(teacher.last_aspects) == 30
    for request, text, aspect in zip(requests, texts, teacher.last_aspects, strict=True):
        explanation = teacher.compose(request.sample, request.profile)
        assert (explanation.text, explanation.aspect) == (text, aspect)
    assert teacher.name == "grounded/2" and GroundedTeacher(seed=3).name == "grounded/2+seed3"


def test_titles_ending_in_punctuation_are_written_as_they_are():
    item = _item("Mars Attacks!", 1996, "Comedy", "Sci-Fi")
    history = tuple(_item(f"E.T. the Sequel {k}", 1995, "Comedy", "Sci-Fi") for k in range(4))
    teacher = GroundedTeacher()
    for k in range(40):
        text = teacher.compose(Sample(f"u{k}", history, item, k), _profile(ASPECTS[k % 3])).text
        assert "Attacks! Is" not in text and "!." not in text, text
        assert "E.T. The" not in text, text


def test_a_cold_start_is_never_told_about_its_usual_picks():
    teacher = GroundedTeacher()
    for k, aspect in enumerate([*ASPECTS, None] * 6):
        profile = _profile(aspect) if aspect else None
        if profile is not None:
            profile = UserProfile("u", ("Comedy",), (1980,), aspect, voice=k % 6)
        text = teacher.compose(Sample(f"u{k}", (), ITEM, k), profile).text
        assert "usual" not in text and "watched" not in text, text
        assert text.startswith(("Back to the Future", "Something to start with")), text


def test_a_title_similar_only_by_its_decade_is_not_called_similar():
    # Bare titles: no genres anywhere, so the 1980s title is "similar" by its decade alone.
    bare = (Item("Airplane! (1980)", "a", {}), Item("Platoon (1986)", "p", {}))
    sample = Sample("u", bare, Item("Back to the Future (1985)", "b", {}), 1)
    explanation = GroundedTeacher().compose(sample, _profile("similar"))
    assert explanation.aspect == "era", explanation.text
    assert "1980s" in explanation.text or "'80s" in explanation.text


def test_every_pattern_reads_to_the_verifier_as_the_teacher_means_it():
    """The patterns' annotations and `explain.claims.claims_in` agree, so the verifier
    checks each sentence for the claims it really makes."""
    from training.teachers.patterns import COLD, CONTEXT, NOVEL

    pools = [*(("main", a, p) for a in ASPECTS for p in MAIN[a])]
    pools += [("second", a, p) for a in ASPECTS for p in SECOND[a]]
    pools += [("context", None, p) for p in CONTEXT] + [("novel", None, p) for p in NOVEL]
    pools += [("cold", None, p) for p in COLD]
    one_film_plurals: set[str] = set()
    for part, aspect, pattern in pools:
        template = pattern.text.replace("{genres}", "<g1>").replace("{similar}", "<s1>")
        found = claims_in(template)
        kinds = {c.claim for c in found}
        strong = any(c.strength == "strong" and c.claim != "history_reference" for c in found)
        assert strong == pattern.strong, (template, found)
        # "your recent watches": several films, which the verifier asks of the request
        several = any(c.claim == "history_reference" and c.strength == "strong" for c in found)
        if several and "h2" not in pattern.needs:
            one_film_plurals.add(template)
        assert ("novelty" in kinds) == (part in ("novel",) or "fresh pick" in template), template
        if part == "main":
            wanted = {"genre": "shared_genre", "era": "era", "similar": "similar_title"}[aspect]
            assert wanted in kinds, (template, found)
        if part == "context":
            assert kinds == {"history_reference"}, (template, found)
        if "era" in pattern.needs:
            assert "era" in kinds, template
    # Patterns that speak of several films but need only one: the teacher still writes them
    # for a one-film history (the default model was trained on its answers as they are; see
    # the README's Known limitations), and the verifier refuses them there, so the service
    # serves another candidate or the evidence sentence. A new one must be added here knowingly.
    assert one_film_plurals == {
        "<item> was picked for you with <h1> and your other recent watches in mind.",
        "Based on your recent watches, including <h1>, <item> is a pick for you.",
        "<item> follows on from your recent watches, such as <h1>.",
        "<item> comes recommended on the strength of your recent watches, <h1> among them.",
        "<item> offers a change of pace from <h1> and your usual picks.",
        "Try <item> for something outside your usual choices.",
    }
