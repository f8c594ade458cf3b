"""Index and split files from elsewhere: a JSON nested too deep is a one-line error."""

from __future__ import annotations

import pytest

from datasets.elevater import read_coco_index
from datasets.splits import read_json


def test_deeply_nested_json_is_refused_in_one_line(tmp_path) -> None:
    path = tmp_path / "split.json"
    path.write_text("[" * 200000 + "]" * 200000)
    with pytest.raises(ValueError, match="split.json nests its JSON too deeply") as err:
        read_json(str(path))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"split.json is not valid JSON \(RecursionError"):
        read_coco_index(str(path))
