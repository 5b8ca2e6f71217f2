"""The student's input format, shared by training and serving.

One function builds the encoder text from `(history, recommended item)`. Its name and
version go into the manifest; the service refuses a model whose format it does not speak,
so training and serving can never disagree about what the model reads.

Layout (format `prism-evidence` v2; `·` separates fields, `;` history entries):

    item: <item> Back to the Future (1985) · <g1> sci-fi · <a1> comedy
    evidence: history 3 · genre <g1> 3/3 strong · era <dec> <decs> 2/3 basic <e1> <e2> ·
      similar <s1> <g1> · <s2> <g1> · new no
    history: <h1> The Thing ; <h2> Star Wars ; <h3> E.T. the Extra-Terrestrial

The item and the evidence come first and history entries follow, most recent first, so the
token budget is met by dropping the oldest entries and never the recommended item. The
evidence says which claims the request supports and how strongly (`explain.claims`), so the
student learns the rules rather than a user population's habits; titles are written as a
sentence would (`explain.titles`) and history entries are titles only, so that a request
with genres keeps as many of the newest history titles in the budget as one without.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from explain import slots
from explain.evidence import Evidence, compute_evidence, decade_forms, similar_capable
from explain.items import FEATURE_KEYS, Item, distinct_recent, rewatched

FORMAT_NAME = "prism-evidence"
FORMAT_VERSION = 2
SUPPORTED_FORMATS = frozenset({(FORMAT_NAME, FORMAT_VERSION)})


class UnsupportedFormatError(ValueError):
    pass


class TokenEncoder(Protocol):
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, BOS and EOS included."""
        ...


@dataclass(frozen=True)
class InputConfig:
    max_history: int = 50  # the most recent items kept before the token budget applies
    max_input_tokens: int = 512  # the encoder budget, BOS and EOS included
    max_extra_attributes: int = 4  # scalar attributes (director, city...) shown for the item

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InputConfig:
        known = {k: int(v) for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def format_descriptor(config: InputConfig) -> dict[str, Any]:
    """The `input_format` object of the manifest."""
    return {"name": FORMAT_NAME, "version": FORMAT_VERSION, "config": config.to_dict()}


def check_format(descriptor: Mapping[str, Any]) -> InputConfig:
    key = (descriptor.get("name"), descriptor.get("version"))
    if key not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(
            f"input format {key[0]}/{key[1]} is not supported by this build "
            f"(it speaks {', '.join(f'{n}/{v}' for n, v in sorted(SUPPORTED_FORMATS))})"
        )
    return InputConfig.from_dict(descriptor.get("config", {}))


@dataclass(frozen=True)
class StudentInput:
    text: str
    input_ids: list[int]
    slot_values: dict[str, str]  # the slots this request can fill, and their words
    evidence: Evidence
    history_used: int  # history entries that fit in the text (most recent first)
    history_given: int
    window: tuple[Item, ...] = ()  # the history the evidence reads, most recent first
    similar: frozenset[int] = frozenset()  # window positions a similarity claim may name


def _extra_attributes(item: Item, limit: int) -> list[str]:
    out = []
    for key, value in item.attributes.items():
        if key in FEATURE_KEYS or key == "year" or isinstance(value, list | dict | tuple):
            continue
        out.append(f"{key} {value}")
        if len(out) == limit:
            break
    return out


def titled(item: Item) -> str:
    """The display title, with its year when known: "The Thing (1982)"."""
    title = item.display_title if item.nameable else "untitled"
    return f"{title} ({item.year})" if item.year is not None else title


def _evidence(ev: Evidence) -> str:
    fields = [f"history {ev.history_size}"]
    if ev.shared:
        fields.append(
            "genre "
            + " ".join(
                f"{slot} {g.count}/{ev.with_genres} {g.level}"
                for slot, g in zip(slots.SHARED, ev.shared, strict=False)
            )
        )
    elif ev.with_genres:
        fields.append("genre none")
    if ev.decade is not None:
        long_form, _ = decade_forms(ev.decade)
        share = f"{ev.decade_count}/{ev.dated}"
        if ev.era == "none":
            fields.append(f"era {long_form} {share} none")
        else:
            examples = " ".join(slots.ERA[: len(ev.era_examples)])
            era = f"era {slots.DECADE} {slots.DECADE_SHORT} {share} {ev.era} {examples}"
            fields.append(era.rstrip())
    if ev.similar:
        shared_slot = {
            g.genre.lower(): slot for slot, g in zip(slots.SHARED, ev.shared, strict=False)
        }
        similar = []
        for slot, genres in zip(slots.SIMILAR, ev.similar_genres, strict=False):
            common = [shared_slot[g.lower()] for g in genres if g.lower() in shared_slot]
            similar.append(" ".join([slot, *common]))
        fields.append("similar " + " · ".join(similar))
    fields.append(f"new {'yes' if ev.novelty else 'no'}")
    return " · ".join(fields)


def _header(item: Item, ev: Evidence, cfg: InputConfig) -> str:
    shared_slot = {g.genre.lower(): s for s, g in zip(slots.SHARED, ev.shared, strict=False)}
    only_slot = {f.lower(): s for s, f in zip(slots.ITEM_ONLY, ev.item_only, strict=False)}
    fields = [f"{slots.ITEM} {titled(item)}"]
    for feature in item.features:
        slot = shared_slot.get(feature.lower()) or only_slot.get(feature.lower())
        fields.append(f"{slot} {feature.lower()}" if slot else feature.lower())
    fields += _extra_attributes(item, cfg.max_extra_attributes)
    return f"item: {' · '.join(fields)}\nevidence: {_evidence(ev)}\nhistory:"


def _entry(position: int, item: Item) -> str:
    slot = slots.history_slot(position) if position < slots.MAX_HISTORY_SLOTS else ""
    title = item.display_title if item.nameable else "untitled"
    return f" {slot} {title} ;"


def recent_window(
    history: Sequence[Item], config: InputConfig, item: Item | None = None
) -> list[Item]:
    """The `max_history` most recent distinct films, most recent first: what the evidence
    reads (`explain.items.distinct_recent`: a film watched twice counts once).

    With `item` (the recommended one), its own earlier watches are left out: a film is no
    evidence for itself ("because you watched Heat, Heat is a pick")."""
    return distinct_recent(history, item, config.max_history) if config.max_history else []


def window_evidence(
    history: Sequence[Item], item: Item, config: InputConfig
) -> tuple[list[Item], Evidence]:
    """The window the evidence reads (`recent_window`) and that evidence: what the student's
    input states and the built-in teacher writes from."""
    recent_first = recent_window(history, config, item)
    return recent_first, compute_evidence(recent_first, item, rewatch=rewatched(history, item))


def build_input(
    history: Sequence[Item], item: Item, encoder: TokenEncoder, config: InputConfig
) -> StudentInput:
    """Build the encoder input for one request.

    `history` is chronological (oldest first, the last entry is the most recent). It is cut
    to `max_history` distinct films (the recommended item's own watches left out), then the
    oldest entries are dropped until the text fits `max_input_tokens`. The evidence is
    computed on those `max_history` films.
    """
    recent_first, ev = window_evidence(history, item, config)
    header = _header(item, ev, config)
    budget = config.max_input_tokens
    used_tokens = len(encoder.encode(header))
    entries: list[str] = []
    for position, past in enumerate(recent_first):
        entry = _entry(position, past)
        cost = len(encoder.encode(entry)) - 2  # without its own BOS/EOS
        if used_tokens + cost > budget:
            break
        entries.append(entry)
        used_tokens += cost
    # Tokenising the pieces apart can differ by a token from the whole text at the joins:
    # drop entries until the real encoding fits.
    while True:
        text = header + "".join(entries)
        ids = encoder.encode(text)
        if len(ids) <= budget or not entries:
            break
        entries.pop()
    if len(ids) > budget:  # the item and evidence alone exceed a tiny budget: cut the tail
        ids = [*ids[: budget - 1], ids[-1]]
    values = slots.slot_values(recent_first, item, ev, history_used=len(entries))
    return StudentInput(
        text,
        ids,
        values,
        ev,
        len(entries),
        len(history),
        tuple(recent_first),
        similar_capable(recent_first, item),
    )
