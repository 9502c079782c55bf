"""Small numpy containers shared by the core: amortized-append arrays and sample columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class GrowableArray:
    """A 1-d numpy array with amortized O(1) append and bulk extend."""

    def __init__(self, dtype: npt.DTypeLike, capacity: int = 64) -> None:
        self._data = np.empty(capacity, dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _reserve(self, needed: int) -> None:
        if needed > len(self._data):
            grown = np.empty(max(needed, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown

    def append(self, value: float) -> None:
        self._reserve(self._size + 1)
        self._data[self._size] = value
        self._size += 1

    def extend(self, values: np.ndarray) -> None:
        self._reserve(self._size + len(values))
        self._data[self._size : self._size + len(values)] = values
        self._size += len(values)

    def drop_head(self, n: int) -> None:
        """Forget the first n elements."""
        rest = self._data[n : self._size].copy()
        self._size = 0
        self.extend(rest)

    def view(self) -> np.ndarray:
        """The live contents (a view: do not keep it across appends)."""
        return self._data[: self._size]


@dataclass(slots=True)
class SampleColumns:
    """Valid samples of one input partition, in partition order, as parallel arrays.

    series: int32 id in the SeriesTable; ts: event time, epoch ms; value: float64;
    instance: int32 id of the reporting instance (-1 when absent); offset: source message offset;
    index: position inside a batch message (-1 for a single-sample message).
    """

    series: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    instance: np.ndarray
    offset: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, selector: np.ndarray | slice) -> SampleColumns:
        return SampleColumns(
            self.series[selector],
            self.ts[selector],
            self.value[selector],
            self.instance[selector],
            self.offset[selector],
            self.index[selector],
        )

    @staticmethod
    def concat(parts: list[SampleColumns]) -> SampleColumns:
        if not parts:
            return SampleColumns.empty()
        if len(parts) == 1:
            return parts[0]
        return SampleColumns(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS)
        )

    @staticmethod
    def empty() -> SampleColumns:
        return SampleColumns(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.int32),
        )


_FIELDS = ("series", "ts", "value", "instance", "offset", "index")
