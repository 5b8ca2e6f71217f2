"""The grounded teacher's sentence patterns: data, kept apart from the logic that picks them.

Patterns are written with the student's slot tokens (`<item>`, `<gK>`, `<aK>`, `<dec>`,
`<decs>`, `<year>`, `<sK>`, `<eK>`, `<hK>`) plus two placeholders the teacher expands first:
`{genres}` (one or two shared-genre slots) and `{similar}` (one or two similar-title slots).
They are filled with the request's own values, so a pattern can only name what the request
contains, and each says only what the claim rules (`explain.claims`) support for it:

- `needs` lists the facts a pattern requires of the request (below);
- `strong` marks a pattern with intensity wording ("keep coming back", "clearly", "streak"),
  which needs strong support for every genre (or the era) it names.

Facts:

- `hist` / `cold`: the history is / is not empty
- `h1`, `h2`: one or two nameable history titles the student's input lists
- `a1`: the item has a genre the history lacks
- `g`, `g2`: one or two supported shared genres (the genre aspect's `{genres}`)
- `s1`, `s2`: one or two history titles sharing genres with the item
- `s1g1`: the first of those has the `<g1>` genre
- `era`: the history backs the item's decade; `e1`, `e2`: titles from that decade
- `s1dec`: the most similar title is also from the item's decade (and the era is backed)
- `novel`: the item's genres are rare or absent in the history (or there is none)
- `year`: the item's year is known

No pattern states how many films share a genre or a decade ("a lot of", "several"): a
student copies such words without their counts. Every pattern is checked by the tests
against `explain.claims.claims_in`, so the verifier reads each as the teacher meant it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from training.aspects import Aspect


@dataclass(frozen=True)
class Pattern:
    text: str
    needs: frozenset[str] = frozenset()
    strong: bool = False


def _patterns(*rows: str | tuple[str, str]) -> tuple[Pattern, ...]:
    out = []
    for row in rows:
        text, needs = (row, "") if isinstance(row, str) else row
        tags = frozenset(needs.split())
        out.append(Pattern(text, tags - {"strong"}, "strong" in tags))
    return tuple(out)


MAIN: Mapping[Aspect, tuple[Pattern, ...]] = {
    "genre": _patterns(
        "<item> is a {genres} film, like others you have watched.",
        "If you enjoy {genres}, <item> belongs on your list.",
        "Looking for more {genres}? <item> is a strong choice.",
        "<item> should click with you: a {genres} film, like others you have seen.",
        "Your taste for {genres} makes <item> a natural next watch.",
        "With {genres} at its core, <item> fits your taste well.",
        "Pure {genres} from start to finish, <item> suits what you like to watch.",
        ("<item> is a {genres} film, like <s1>.", "s1g1"),
        ("You have watched other {genres} films, and <item> is another one worth your time.", ""),
        ("After the {genres} films you have watched, <item> is a natural next choice.", ""),
        ("Since you keep coming back to {genres}, <item> is an easy pick for you.", "strong"),
        ("<item> brings the {genres} you clearly love.", "strong"),
        ("<item> matches the {genres} streak in what you watch.", "strong"),
        ("You have a soft spot for {genres}, which is exactly what <item> delivers.", "strong"),
        ("<item> leans into {genres}, the kind of film you keep choosing.", "strong"),
        ("Given how often you pick {genres}, <item> deserves a spot in your queue.", "strong"),
        ("You clearly enjoy {genres}, so <item> is worth a look.", "strong"),
        ("<item> offers the {genres} you seek out again and again.", "strong"),
        ("Your love of {genres} points straight to <item>.", "strong"),
        ("Because your picks lean toward {genres}, <item> is a smart recommendation.", "strong"),
        ("A fan of {genres} like you should get a lot out of <item>.", "strong"),
    ),
    "era": _patterns(
        (
            "You have watched films from the <dec>, and <item> comes straight from that decade.",
            "era",
        ),
        ("Like films you have watched before, <item> is from the <dec>.", "era"),
        ("<item> comes from the <dec>, and films you picked do too.", "era"),
        ("Like <e1>, <item> comes from the <dec>.", "era e1"),
        ("<item> is from the <dec>, like <e1> and <e2>.", "era e1 e2"),
        ("From <year>, <item> sits with the <dec> films you have watched.", "era year"),
        ("Going by your <dec> picks, <item> should suit you.", "era"),
        ("<item> is pure <dec> cinema, from a decade you have watched.", "era"),
        ("<item> is a <decs> film, and the <dec> clearly suit your taste.", "era strong"),
        ("Since you keep returning to the <dec>, <item> is a natural pick.", "era strong"),
        ("Your love of <decs> cinema makes <item> an easy recommendation.", "era strong"),
        (
            "<item>, released in <year>, belongs to the <dec> you keep returning to.",
            "era year strong",
        ),
        ("If the <dec> are your era, <item> is one to add to the list.", "era strong"),
        ("<item> captures the <decs> feel that runs through your watching.", "era strong"),
        ("<item> takes you back to the <dec>, a decade you clearly enjoy.", "era strong"),
        ("The <dec> keep showing in your picks, so <item> is a good fit.", "era strong"),
        ("Another trip to the <dec>: <item> matches an era you keep coming back to.", "era strong"),
    ),
    "similar": _patterns(
        "If you enjoyed {similar}, <item> is a natural next watch.",
        "<item> has much in common with {similar}, which you have watched.",
        "Because you watched {similar}, you are likely to enjoy <item>.",
        "<item> is very much in the same vein as {similar}.",
        "You liked {similar}, so <item> should be a good fit.",
        "<item> sits right next to {similar} in spirit.",
        "<item> shares much of what made {similar} work for you.",
        "Think of <item> as a companion piece to {similar}.",
        "After {similar}, <item> is the obvious follow-on.",
        "<item> should appeal to you for the same reasons {similar} did.",
        "If {similar} worked for you, so should <item>.",
        "<item> is cut from the same cloth as {similar}.",
        "Much like {similar}, <item> should keep you hooked.",
        "Having enjoyed {similar}, you will likely enjoy <item> as well.",
        "<item> would make a great double bill with {similar}.",
    ),
}

SECOND: Mapping[Aspect, tuple[Pattern, ...]] = {
    "genre": _patterns(
        ("On top of that, <item> adds a touch of <a1>.", "a1"),
        ("There is a dash of <a1> in the mix as well.", "a1"),
        ("You will feel at home here if you liked <s1>.", "s1"),
        ("Like <s1>, this one is a <g1> film.", "s1g1"),
        "The film should feel familiar in the best way.",
        "Give this one a try on your next movie night.",
        "This one is a good match for your taste.",
    ),
    "era": _patterns(
        "The film has the style you seem to enjoy from that decade.",
        "This one should feel right at home among your <decs> picks.",
        ("Beyond the era, this is a <g1> film like others you have watched.", "g"),
        ("This one would sit well next to <s1>.", "s1"),
        ("Like <e1>, it comes from that decade.", "e1"),
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

# No aspect has support: the history is named as context, without claiming similarity; or
# the item is a departure (and said to be one) when the history lacks its genres.
CONTEXT = _patterns(
    ("<item> was picked for you with <h1> and your other recent watches in mind.", "h1"),
    ("Based on your recent watches, including <h1>, <item> is a pick for you.", "h1"),
    ("Your recent watches, from <h1> to <h2>, led to <item>.", "h1 h2"),
    ("With <h1> and <h2> among your recent watches, <item> is a pick worth trying.", "h1 h2"),
    ("Since you recently watched <h1>, <item> is up next for you.", "h1"),
    ("Picked with <h1> in mind, <item> is one to try next.", "h1"),
    ("<item> follows on from your recent watches, such as <h1>.", "h1"),
    ("You recently watched <h1> and <h2>, and <item> is next on the list.", "h1 h2"),
    ("<item> comes recommended on the strength of your recent watches, <h1> among them.", "h1"),
    ("Fresh from <h1>? <item> is a good one to queue up next.", "h1"),
)
NOVEL = _patterns(
    ("<item> is a fresh pick that could widen your taste.", "novel"),
    ("<item> is a <a1> film that brings something new to your list.", "novel a1 hist"),
    ("Something different: <item> could be a pleasant surprise.", "novel hist"),
    ("<item> offers a change of pace from <h1> and your usual picks.", "novel h1"),
    ("<item>, a <a1> film, might open a new direction for you.", "novel a1 hist"),
    ("Try <item> for something outside your usual choices.", "novel hist"),
)
COLD = _patterns(
    ("<item> is a fresh pick for you.", "cold"),
    ("<item> is a <a1> film worth a look.", "cold a1"),
    ("Something to start with: <item>, a <a1> film.", "cold a1"),
    ("<item> is a good place to start.", "cold"),
)
