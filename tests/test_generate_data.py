"""generate_data.py: the shipped data is reproducible, and large data sets are valid input for ingestion."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_json, write_config
from generate_data import SHIPPED, write_shipped


def test_shipped_data_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    first = write_shipped(tmp_path / "a")
    second = write_shipped(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    assert len(first) == len(SHIPPED)
    for a, b in zip(first, second, strict=True):
        rel = a.relative_to(tmp_path / "a")
        assert a.read_bytes() == b.read_bytes(), rel
        assert a.read_bytes() == (ROOT / rel).read_bytes(), f"committed {rel} differs from what the generator writes"


def test_large_data_sets_are_split_as_asked_and_ingestion_accepts_them(tmp_path: Path) -> None:
    data = tmp_path / "big"
    p = subprocess.run([sys.executable, str(ROOT / "generate_data.py"), "--rows", "1000", "--files", "3",
                        "--out", str(data)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    files = sorted(data.glob("*.csv"))
    assert len(files) == 3
    assert sum(len(f.read_text().splitlines()) - 1 for f in files) == 1000

    ws = tmp_path / "ws"
    (ws / "testdata").mkdir(parents=True)
    write_config(ws, input_folder_path=str(data))
    r = run_json("ingestion.py", ws)
    assert r["rejected_files"] == []
    assert len(r["ingested_files"]) == 3 and r["rows_read"] == 1000
    assert 0 < r["rows_added"] < 1000  # the generator adds some duplicate rows; they are dropped
