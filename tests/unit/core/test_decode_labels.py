"""Labelled samples on the typed path: label JSON text → series key, cached per distinct text.

The typed path (every record of a batch a well-typed sample) keeps labels as raw JSON and looks
each distinct text up once; the general path (any other batch) parses each sample in full. Both
must name the same series; labels of another type send the batch down the general path, so a
bad label map gets that path's reason.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from pipeline.core.decode import Decoder, DecodeResult, RawMessage
from pipeline.core.decode.labels import LabelKeys
from pipeline.core.reasons import Reason
from pipeline.core.series import SeriesTable
from pipeline.core.validate import label_key
from tests.support.samples import timer_sample

from .helpers import BASE_MS

HEAD = orjson.dumps(timer_sample(BASE_MS))[:-1]
# One label map spelled five ways, then two other maps.
SPELLINGS = [
    b'{"route":"/cart","method":"GET"}',
    b'{"method":"GET","route":"/cart"}',
    b'{ "method" : "GET",\n "route" : "/cart" }',
    b'{"\\u006dethod":"GET","route":"\\/cart"}',
    b'{"route":"/cart","method":"GET","route":"/cart"}',
    b'{"route":"/pay","method":"POST"}',
    b"{}",
]
NOT_LABELS = [
    b"5",
    b"1e999",  # valid JSON that msgspec cannot read as a number
    b'"GET"',
    b'["/cart"]',
    b'{"route":1}',
    b'{"route":null}',
    b'{"r":{"a":"b"}}',
    b'{"a":' * 300 + b'"x"' + b"}" * 300,
]


def labelled(text: bytes, value: float = 12.5) -> bytes:
    return HEAD + b',"value":' + repr(value).encode() + b',"labels":' + text + b"}"


def decode_with(decoder: Decoder, values: list[bytes]) -> DecodeResult:
    return decoder.decode([RawMessage(v, i, BASE_MS) for i, v in enumerate(values)])


def identities(decoder: Decoder, result: DecodeResult) -> list[Any]:
    return [decoder.series.identities[s].labels for s in result.columns.series.tolist()]


def test_typed_path_names_the_series_the_general_path_names() -> None:
    records = [labelled(text) for text in SPELLINGS] + [labelled(b"null")]
    typed = Decoder(SeriesTable())
    typed_result = decode_with(typed, records)
    assert typed_result.rejects == []
    assert len(typed.label_keys) == len(SPELLINGS) + 1  # the typed path read them, once each

    general = Decoder(SeriesTable())
    # A malformed record sends the whole batch down the general path.
    general_result = decode_with(general, [*records, b"{not json"])
    assert [r.reason for r in general_result.rejects] == [Reason.MALFORMED_JSON]
    assert len(general.label_keys) == 0

    cart = (("method", "GET"), ("route", "/cart"))
    pay = (("method", "POST"), ("route", "/pay"))
    expected = [cart] * 5 + [pay, (), ()]
    assert identities(typed, typed_result) == expected
    assert identities(general, general_result) == expected
    assert len(typed.series) == len(general.series) == 3


@pytest.mark.parametrize("text", NOT_LABELS)
def test_a_bad_label_map_in_a_typed_batch_is_rejected_alone(text: bytes) -> None:
    good = [labelled(SPELLINGS[0], float(v)) for v in range(4)]
    bad = labelled(text)
    decoder = Decoder(SeriesTable())
    result = decode_with(decoder, [good[0], good[1], bad, good[2], good[3]])
    assert not any(r.reason == Reason.UNDECODABLE for r in result.rejects)
    assert result.columns.offset.tolist() == [0, 1, 3, 4]
    assert result.columns.value.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert [(r.offset, r.index) for r in result.rejects] == [(2, -1)]
    # The same record in a batch the general path decodes gets the same reason and detail.
    alone = decode_with(Decoder(SeriesTable()), [bad, b"{not json"])
    assert (result.rejects[0].reason, result.rejects[0].detail) == (
        alone.rejects[0].reason,
        alone.rejects[0].detail,
    )
    assert result.rejects[0].reason in {Reason.WRONG_TYPE, Reason.INVALID_LABEL}
    # Then the same decoder reads good labels on the typed path again.
    again = decode_with(decoder, good)
    assert again.rejects == [] and len(decoder.label_keys) == 1


def test_the_text_cache_is_bounded_and_never_wrong_after_starting_over() -> None:
    keys = LabelKeys(max_texts=4)
    texts = [orjson.dumps({"route": f"/r{i}", "method": "GET"}) for i in range(10)]
    raws = msgspec.json.decode(b"[" + b",".join(texts) + b"]", type=list[msgspec.Raw])
    for _ in range(3):
        got = keys.keys(raws)
        assert len(keys) <= 4
        assert got == [label_key(orjson.loads(t)) for t in texts]
    bad = msgspec.json.decode(b'[{"route":"/a"},{"route":1}]', type=list[msgspec.Raw])
    assert keys.keys(bad) is None


def test_the_text_cache_is_bounded_in_bytes() -> None:
    keys = LabelKeys(max_bytes=1_000)
    texts = [orjson.dumps({"route": f"/{i}" + "x" * 200}) for i in range(20)]
    huge = orjson.dumps({f"k{i}": "v" * 100 for i in range(15)})  # > 1,000 bytes alone
    raws = msgspec.json.decode(b"[" + b",".join([*texts, huge]) + b"]", type=list[msgspec.Raw])
    for _ in range(2):
        got = keys.keys(raws)
        assert 0 < keys.text_bytes <= 1_000
        assert got == [label_key(orjson.loads(t)) for t in [*texts, huge]]
