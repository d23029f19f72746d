"""An imported line without an event id gets uuid5(namespace, "<line number>\\n<sha256 of the
line>"), computed without the uuid module: the ids must stay exactly those, or a file imported
before would import twice."""

from __future__ import annotations

import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from eventstore.log.bulk import _IDS, _derived_id


@given(st.integers(min_value=1, max_value=10**9), st.text(min_size=1, max_size=500))
def test_derived_ids_are_uuid5_of_the_line_number_and_its_hash(number: int, line: str) -> None:
    name = f"{number}\n{hashlib.sha256(line.encode()).hexdigest()}"
    assert _derived_id(number, line) == str(uuid.uuid5(_IDS, name))
