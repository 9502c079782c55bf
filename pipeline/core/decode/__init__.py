"""Bytes from the raw topic → validated sample columns plus rejects with reason codes.

Three encodings share one topic (schemas/): a single sample object, a JSON array of samples,
and a columnar series batch (one series, arrays `ts` and `value`). Checks that only need the
columns (finite values, negative delta counters, timestamps against the message time) run
vectorized over the whole consumed batch; the per-sample Python work is limited to pulling
fields out of the parsed JSON and a dictionary lookup of the series identity.

The modules: decoder.py (the Decoder: picks the path, isolates a record that raises),
wire.py (typed msgspec decoding of the common shapes), labels.py (each distinct label text →
the series lookup's key, once), rows.py (samples of single and array records → columns),
columnar.py (columnar batches), checks.py (the vectorized column checks), rejects.py (rejects
merged per record and reason, with excerpts). Per-sample validation lives in
pipeline/core/validate.py, which the producer client shares.
"""

from pipeline.core.decode.decoder import Decoder, DecodeResult, RawMessage
from pipeline.core.validate import DecodeLimits, Reject

__all__ = ["DecodeLimits", "DecodeResult", "Decoder", "RawMessage", "Reject"]
