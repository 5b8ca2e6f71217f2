"""The grounded teacher's sentence patterns: data, kept apart from the logic that picks them.

Patterns are written with the student's slot tokens (`<item>`, `<gK>`, `<aK>`, `<dec>`,
`<decs>`, `<year>`, `<sK>`) plus two placeholders the teacher expands first: `{genres}`
(one or two shared-genre slots) and `{similar}` (one or two similar-title slots). They are
filled with the request's own values, so a pattern can only ever name what the request
contains. No pattern states how many films share a genre or a decade ("a lot of", "several"):
a student copies such words without their counts, so they would be claims no slot controls.

Each pattern lists the facts it needs (`needs`); the teacher only picks patterns whose needs
the request meets, which is what keeps a claim like "both are from the 1980s" true:

- `one` / `two`: one or two genres (or similar titles) are being named
- `a1`: the item has a feature the history lacks
- `s1`: there is a similar history title
- `g`: a shared genre with enough support
- `s1g1`: the most similar title has the `<g1>` genre
- `s1dec`: the most similar title is from the item's decade
- `hist`: the history is not empty (a cold-start request has no "usual picks" to speak of)

Rules for new patterns: the first evidence slot decides the aspect a pattern is read as
(`training.aspects.aspect_of`), so a genre pattern must use a genre slot before any other;
and avoid words that are also genres ("history", "family", "action", "drama", "war") or
short titles ("it", "up", "heat"), since delexicalising matches them case-insensitively.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from training.aspects import Aspect


@dataclass(frozen=True)
class Pattern:
    text: str
    needs: frozenset[str] = frozenset()


def _patterns(*rows: str | tuple[str, str]) -> tuple[Pattern, ...]:
    out = []
    for row in rows:
        text, needs = (row, "") if isinstance(row, str) else row
        out.append(Pattern(text, frozenset(needs.split())))
    return tuple(out)


MAIN: Mapping[Aspect, tuple[Pattern, ...]] = {
    "genre": _patterns(
        "Since you keep coming back to {genres}, <item> is an easy pick for you.",
        "<item> is a {genres} film, just like other titles you have enjoyed.",
        "Your taste for {genres} makes <item> a natural next watch.",
        "If you enjoy {genres}, <item> belongs on your list.",
        "<item> brings the {genres} you clearly love.",
        "A fan of {genres} like you should get a lot out of <item>.",
        "<item> matches the {genres} streak in what you watch.",
        "You have a soft spot for {genres}, which is exactly what <item> delivers.",
        "Looking for more {genres}? <item> is a strong choice.",
        "<item> leans into {genres}, the kind of film you keep choosing.",
        "Given how often you pick {genres}, <item> deserves a spot in your queue.",
        "<item> should click with you: a {genres} film, like others you have seen.",
        "More {genres} is never a bad idea for you, and <item> is a good place to start.",
        "You clearly enjoy {genres}, so <item> is worth a look.",
        "<item> offers the {genres} you seek out again and again.",
        "Your love of {genres} points straight to <item>.",
        "With {genres} at its core, <item> fits your taste well.",
        "Because your picks lean toward {genres}, <item> is a smart recommendation.",
        "Pure {genres} from start to finish, <item> suits what you like to watch.",
        (
            "You have watched other {genres} films, and <item> is another one worth your time.",
            "one",
        ),
        ("After the {genres} films you have watched, <item> is a natural next choice.", "one"),
        ("<item> is a {genres} film, and you have seen others of that kind.", "one"),
    ),
    "era": _patterns(
        "You have watched films from the <dec>, and <item> comes straight from that decade.",
        "<item> is a <decs> film, and the <dec> clearly suit your taste.",
        "Since you keep returning to the <dec>, <item> is a natural pick.",
        "Your love of <decs> cinema makes <item> an easy recommendation.",
        "<item>, released in <year>, belongs to the <dec> you keep returning to.",
        "Like films you have watched before, <item> is from the <dec>.",
        "If the <dec> are your era, <item> is one to add to the list.",
        "<item> captures the <decs> feel that runs through your watching.",
        "You have a clear taste for the <dec>, and <item> is a fine example of the decade.",
        "From <year>, <item> fits the <dec> streak in what you watch.",
        "For a fan of <decs> films like you, <item> is a strong pick.",
        "Going by your <dec> picks, <item> should suit you.",
        "<item> takes you back to the <dec>, a decade you clearly enjoy.",
        "The <dec> keep showing in your picks, so <item> is a good fit.",
        "<item> is pure <dec> cinema, just the period you seem to enjoy.",
        "Your <decs> picks make <item>, from <year>, an obvious next watch.",
        "Since you keep choosing films from the <dec>, <item> deserves a look.",
        "Another trip to the <dec>: <item> matches an era you keep coming back to.",
        "A <year> release, <item> fits right in with your <dec> favourites.",
        "<item> comes from the <dec>, and films you picked do too.",
    ),
    "similar": _patterns(
        "If you enjoyed {similar}, <item> is a natural next watch.",
        "<item> has a lot in common with {similar}, which you have watched.",
        "Because you watched {similar}, you are likely to enjoy <item>.",
        "<item> is very much in the same vein as {similar}.",
        "A fan of {similar} like you should love <item>.",
        "You liked {similar}, so <item> should be a good fit.",
        "<item> sits right next to {similar} in spirit.",
        "Coming from {similar}, <item> is an easy next step.",
        "<item> shares much of what made {similar} work for you.",
        "Think of <item> as a companion piece to {similar}.",
        "After {similar}, <item> is the obvious follow-on.",
        "<item> should appeal to you for the same reasons {similar} did.",
        "Your time with {similar} suggests <item> will land well.",
        "If {similar} worked for you, so should <item>.",
        "<item> is cut from the same cloth as {similar}.",
        "Since you picked {similar}, <item> is worth a look.",
        "<item> echoes {similar} from your watch list.",
        "Much like {similar}, <item> should keep you hooked.",
        "Having watched {similar}, you will likely enjoy <item> as well.",
        "<item> would make a great double bill with {similar}.",
    ),
}

SECOND: Mapping[Aspect, tuple[Pattern, ...]] = {
    "genre": _patterns(
        ("On top of that, <item> adds a touch of <a1>.", "a1"),
        ("There is a dash of <a1> in the mix as well.", "a1"),
        ("You will feel at home here if you liked <s1>.", "s1"),
        "The film should feel familiar in the best way.",
        "Give this one a try on your next movie night.",
        "This one is a good match for your taste.",
        "Expect the kind of story you keep choosing.",
    ),
    "era": _patterns(
        "The film has the style you seem to enjoy from that decade.",
        "This one should feel right at home among your <decs> favourites.",
        ("Beyond the era, this is a <g1> film like others you have watched.", "g"),
        ("This one would sit well next to <s1>.", "s1"),
        "Very much a film of its time, in the best way.",
    ),
    "similar": _patterns(
        "The film should feel familiar in all the right ways.",
        ("Like <s1>, this one is a <g1> film.", "s1g1"),
        ("Like <s1>, this one is from the <dec>.", "s1dec"),
        "This one is a strong candidate for your next movie night.",
        "Expect a similar mood and pace.",
    ),
}

# No shared genre, decade or similar title: the item is a departure, and is said to be one.
NO_EVIDENCE = _patterns(
    "<item> is a fresh pick that could widen your taste.",
    ("<item> is a <a1> film that brings something new to your list.", "a1"),
    "Something different: <item> could be a pleasant surprise.",
    ("<item> offers a change of pace from your usual picks.", "hist"),
    ("<item>, a <a1> film, might open a new direction for you.", "a1"),
    ("Try <item> for something outside your usual choices.", "hist"),
)
