"""Label maps of typed samples → the series lookup's label keys, each distinct JSON text once.

The series lookup keys a sample by its identity fields and its labels as a sorted tuple of
pairs (validate.label_key). Building that tuple from a parsed map for every sample cost more
than parsing the rest of the sample, yet a stream repeats the same few label maps over and over.
So the typed path keeps labels as raw JSON text and this cache maps each text to its key; only
a text not seen before is parsed, with the same types the typed path used to demand (an object
of strings, or null).

Labels that are not an object of strings (or null) make `keys` answer None: the decoder then
takes its general path for the batch, as it did when the typed decoding itself refused such
labels, so every reason and detail stays what that path gives. Texts that differ only in
spelling (key order, spaces, escapes) are separate entries with the same key. The cache is
bounded in entries and in bytes of text (a hostile producer can send a label map of almost a
message's size, each one different); when full it starts over, which costs re-parsing, never
a wrong key.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import Any

import msgspec

from pipeline.core.decode.wire import NO_LABELS
from pipeline.core.validate import label_key

_MISSING: Any = object()
_LABEL_MAP = msgspec.json.Decoder(dict[str, str] | None)
DEFAULT_MAX_TEXTS = 65_536
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class LabelKeys:
    """Raw label JSON → label key, cached per distinct text."""

    def __init__(
        self, max_texts: int = DEFAULT_MAX_TEXTS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_texts = max_texts
        self.max_bytes = max_bytes
        self._key_of: dict[bytes, Any] = {}
        self._bytes = 0  # of the cached texts

    def __len__(self) -> int:
        return len(self._key_of)

    def keys(self, raw_labels: list[msgspec.Raw]) -> Iterable[Any] | None:
        """The label key of every sample's labels, in order (C-level maps on a cache hit);
        None if some sample's labels are not an object of strings."""
        if raw_labels.count(NO_LABELS) == len(raw_labels):  # identity first: no Raw compared
            return repeat(None, len(raw_labels))
        texts = list(map(bytes, raw_labels))
        found = list(map(self._key_of.get, texts, repeat(_MISSING)))
        if _MISSING in found:
            for i, text in enumerate(texts):
                if found[i] is _MISSING:
                    # Learnt by an earlier sample of this batch, or new.
                    key = self._key_of.get(text, _MISSING)
                    if key is _MISSING:
                        try:
                            key = self._learn(text)
                        except (msgspec.ValidationError, msgspec.DecodeError):
                            return None
                    found[i] = key
        return found

    @property
    def text_bytes(self) -> int:
        return self._bytes

    def _learn(self, text: bytes) -> Any:
        key = label_key(_LABEL_MAP.decode(text))
        if len(text) > self.max_bytes:
            return key  # read every time rather than flush the cache for it
        if len(self._key_of) >= self.max_texts or self._bytes + len(text) > self.max_bytes:
            self._key_of.clear()
            self._bytes = 0
        self._key_of[text] = key
        self._bytes += len(text)
        return key


def parsed_labels(raw: msgspec.Raw) -> dict[str, str] | None:
    """The label map of a sample whose labels `keys` has read, for the validator's path."""
    return None if raw is NO_LABELS else _LABEL_MAP.decode(bytes(raw))
