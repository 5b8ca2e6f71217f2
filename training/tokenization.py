"""Tokenizers for the student: a ByteLevel BPE trained on the corpus, or a pretrained one.

Either way the result carries BART's specials at their usual ids (<s>=0, <pad>=1, </s>=2,
<unk>=3) and every slot token of `explain.slots` as an atomic added token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from explain import slots
from explain.tokenizer import SPECIAL_TOKENS, PrismTokenizer


def train_bpe(
    texts: Iterable[str], *, vocab_size: int = 4000, min_frequency: int = 2
) -> PrismTokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Slot tokens must never be learnt as merges: strip them from the training text.
    tok.train_from_iterator((slots.SLOT_PATTERN.sub(" ", t) for t in texts), trainer)
    tok.add_special_tokens(list(slots.ALL_SLOTS))
    return PrismTokenizer(tok)


def from_pretrained(name_or_path: str | Path) -> PrismTokenizer:
    """A hub or local tokenizer (e.g. facebook/bart-base) with the slot tokens added."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(name_or_path))
    hf.add_special_tokens({"additional_special_tokens": list(slots.ALL_SLOTS)})
    return PrismTokenizer(Tokenizer.from_str(hf.backend_tokenizer.to_str()))
