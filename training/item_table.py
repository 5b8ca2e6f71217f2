"""The distinct item forms of a distilled file, each stored once: records refer to them.

A record used to carry a copy of its whole history (50 items, titles and genres); 894,752
such records are gigabytes of repeated titles. Now a record lists references, and each
distinct form of an item (the catalogue's, a bare title, a catalogue sort form) is written
once to `<output>.items.jsonl`. A catalogue item's reference is its own id; another form of
it gets a content hash (`~` + 12 hex digits).

Forms are written and flushed before the record that uses them, so a record that reached the
file always finds its items, even after a crash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO

from explain.items import Item
from training.jsonl_tail import repair_tail

ITEMS_SUFFIX = ".items.jsonl"
_ID_CACHE_LIMIT = 200_000  # per-object shortcuts kept before starting afresh


class UnknownItemRefError(KeyError):
    pass


def items_path(output: Path) -> Path:
    return output.with_name(output.name + ITEMS_SUFFIX)


def _key(item: Item) -> str:
    return json.dumps(item.to_dict(), sort_keys=True, ensure_ascii=False)


class ItemTable:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._items: dict[str, Item] = {}
        self._refs: dict[str, str] = {}  # form (canonical JSON) -> ref
        # id(item) -> (item, ref): most items are shared objects, so most lookups skip the
        # JSON key. The item is held so its id cannot be reused while cached.
        self._by_object: dict[int, tuple[Item, str]] = {}
        self._handle: IO[str] | None = None
        if path is not None and path.exists():
            repair_tail(path)
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    raw = json.loads(line)
                    item = Item.from_dict(raw["item"])
                    self._items[raw["ref"]] = item
                    self._refs[_key(item)] = raw["ref"]

    @classmethod
    def beside(cls, output: Path) -> ItemTable:
        return cls(items_path(output))

    def __len__(self) -> int:
        return len(self._items)

    def ref(self, item: Item) -> str:
        cached = self._by_object.get(id(item))
        if cached is not None and cached[0] is item:
            return cached[1]
        key = _key(item)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._new_ref(item, key)
        if len(self._by_object) >= _ID_CACHE_LIMIT:
            self._by_object.clear()
        self._by_object[id(item)] = (item, ref)
        return ref

    def _new_ref(self, item: Item, key: str) -> str:
        ref = item.item_id if item.item_id and item.item_id not in self._items else None
        if ref is None or ref.startswith("~"):
            ref = "~" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
        self._items[ref] = item
        self._refs[key] = ref
        if self.path is not None:
            if self._handle is None:
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(json.dumps({"ref": ref, "item": item.to_dict()}) + "\n")
            self._handle.flush()  # before any record that refers to it
        return ref

    def item(self, ref: str) -> Item:
        try:
            return self._items[ref]
        except KeyError:
            raise UnknownItemRefError(f"no item {ref!r} in {self.path}") from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
