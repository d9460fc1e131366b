from __future__ import annotations

from pathlib import Path

import pytest

from contracts.messages import DeviceRecord
from support_engine.errors import ConfigError
from support_engine.registry import load_devices

EXPECTED = [
    DeviceRecord(device_id="fz-1", product="freezer", region="north", cohorts={"batch": "B7"}, warranty_until_s=100.0),
    DeviceRecord(device_id="fz-2", product="freezer", firmware="8.0"),
]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "devices.csv",
            "device_id,product,region,firmware,cohort.batch,warranty_until_s\n"
            "fz-1,freezer,north,,B7,100\nfz-2,freezer,,8.0,,\n",
        ),
        (
            "devices.jsonl",
            '{"device_id": "fz-1", "product": "freezer", "region": "north", "cohorts": {"batch": "B7"},'
            ' "warranty_until_s": 100}\n\n{"device_id": "fz-2", "product": "freezer", "firmware": "8.0"}\n',
        ),
        (
            "devices.yaml",
            "- {device_id: fz-1, product: freezer, region: north, cohorts: {batch: B7}, warranty_until_s: 100}\n"
            "- {device_id: fz-2, product: freezer, firmware: '8.0'}\n",
        ),
    ],
)
def test_every_format_reads_the_same_records(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert load_devices(path) == EXPECTED


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("d.json", '[{"device_id": "a b"}]', "record 1"),
        ("d.json", '[{"device_id": "a"}, {"device_id": "a"}]', "appears twice"),
        ("d.json", "{", "not valid json"),
        ("d.txt", "x", "not '.txt'"),
        ("d.yaml", "device_id: a", "expected a list"),
    ],
)
def test_a_bad_registry_names_the_file_and_the_problem(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as info:
        load_devices(path)
    assert str(path) in str(info.value)
