"""benchmarks/memory.py on the tiny BERT: one row per snapshot_device, the snapshots' size as the formula says."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a training run per configuration, each in its own process
def test_measure_memory_writes_a_row_per_snapshot_device(tmp_path):
    output = tmp_path / "memory.csv"
    command = [sys.executable, "-m", "benchmarks.memory", "--models", "tiny_bert",
               "--snapshot_devices", "none", "cpu", "--csv", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = list(csv.DictReader(output.open()))
    assert [(row["model"], row["snapshot_device"]) for row in rows] == [("tiny_bert", "none"), ("tiny_bert", "cpu")]
    for row in rows:
        assert int(row["params"]) == 21378
        # two snapshots of the fp32 weights and AdamW's two moments: 24 bytes a parameter, plus buffers and step counts
        assert 24.0 < float(row["snapshot_bytes_per_param"]) < 24.5
        assert float(row["peak_rss_with_mb"]) > 100 and float(row["peak_rss_without_mb"]) > 100
        assert row["cuda_peak_with_mb"] == "" and row["device"] == "cpu"
    # the docs' table, from the CSV alone
    table = subprocess.run(command[:3] + ["--csv", str(output), "--table"], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=60, check=True).stdout.splitlines()
    assert table[0].startswith("| model | parameters | `snapshot_device` |") and len(table) == 2 + len(rows)
    assert table[2].startswith("| tiny_bert | 21,378 | `None` (training device) |")
    assert table[3].startswith('| tiny_bert | 21,378 | `"cpu"` |')
