"""The tokenizer both sides use: a `tokenizers` (Rust) tokenizer.json plus BART's specials.

Training writes the file, the service reads it; neither needs transformers for this.
BOS/EOS are added here rather than by the file's post-processor, so a pretrained
tokenizer.json (RoBERTa-style processor) and a locally trained one behave the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from pathlib import Path

from tokenizers import Tokenizer

from explain import slots

BOS, PAD, EOS, UNK, MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS = (BOS, PAD, EOS, UNK, MASK)
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    pass


class PrismTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        ids = {t: tokenizer.token_to_id(t) for t in (*SPECIAL_TOKENS, *slots.ALL_SLOTS)}
        missing = [t for t, i in ids.items() if i is None and t != MASK]
        if missing:
            raise TokenizerError(f"tokenizer lacks required tokens: {', '.join(missing[:8])}")
        self.bos_id: int = ids[BOS]  # type: ignore[assignment]
        self.pad_id: int = ids[PAD]  # type: ignore[assignment]
        self.eos_id: int = ids[EOS]  # type: ignore[assignment]
        self.slot_ids: dict[str, int] = {s: ids[s] for s in slots.ALL_SLOTS}  # type: ignore[misc]
        self._strip = {self.bos_id, self.pad_id, self.eos_id}

    @classmethod
    def from_file(cls, path: Path) -> PrismTokenizer:
        if path.is_dir():
            path = path / TOKENIZER_FILE
        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    def banned_slot_ids(self, fillable: Mapping[str, str] | Set[str]) -> list[int]:
        """The slot tokens a request cannot fill: decoding must never write them."""
        return [i for slot, i in self.slot_ids.items() if slot not in fillable]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Text with slot tokens kept and BOS/EOS/PAD dropped."""
        kept = [int(i) for i in ids if int(i) not in self._strip]
        return str(self._tok.decode(kept, skip_special_tokens=False)).strip()
