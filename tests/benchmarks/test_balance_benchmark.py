"""The balancing benchmark's tables and one seed of its loop, on small tables (the user-like table of
real files is skipped where ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmarks.balance import tables
from benchmarks.balance.__main__ import TABLES, Table, probe_table, run_seed, summarise
from PIL import Image, UnidentifiedImageError

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SOURCE / "mnist" / "mnist.npz").is_file(), reason="no ../shared/data")


@needs_data
def test_spoken_digits_is_a_csv_of_real_files_with_one_corrupt_png(tmp_path):
    import soundfile as sf

    frame = pd.read_csv(tables.spoken_digits(tmp_path, n=30, seed=1, source=SOURCE))
    assert list(frame.columns) == ["image", "audio", "note", "weak", "digit"] and len(frame) == 30
    with pytest.raises((UnidentifiedImageError, OSError)):
        Image.open(tmp_path / frame["image"][0]).load()
    assert np.asarray(Image.open(tmp_path / frame["image"][1])).shape == (28, 28)
    for row in frame.itertuples():  # every clip is a real recording, copied as it is
        assert sf.info(tmp_path / row.audio).samplerate == 8000
    assert frame["note"].fillna("").str.len().gt(0).mean() < 0.5  # a sparse note


def test_the_two_label_table_has_losses_of_very_different_scale():
    frame = tables.two_scales(2000)
    assert 8 < frame["price"].std() < 20  # a squared error ~100x the cross-entropy of "kind"
    assert set(frame["kind"]) == {"a", "b", "c"}


def test_one_seed_records_the_final_the_fused_and_the_best_single_model():
    small = Table(lambda d, n, s: tables.complementary(n, s), ["kind"], 300, "", {"text": "text_bag"})
    rows = run_seed("complementary", small, 0, ["none", "aux"], 300, 3)
    assert [r["strategy"] for r in rows] == ["none", "aux"]
    for row in rows:
        assert row["final_model"] in {"ensemble", "fused", "text", "tabular"}
        assert 0.33 < row["best_single_test_score"] <= row["oracle_single_test_score"] <= 1
        assert row["test_rows"] == 45
        assert {"probe_gap_text", "probe_gap_tabular"} <= set(row)
        assert all(-1 <= row[f"probe_gap_{m}"] <= 1 for m in ("text", "tabular"))
    frame = pd.DataFrame(rows).assign(commit="x")
    assert len(summarise(frame)) == 2 + 2  # header, rule, a row per strategy
    assert len(probe_table(frame)) == 6 + 2  # a blank line, 3 lines of text, header, rule, 2 rows
    assert set(TABLES) >= {"spoken_digits", "complementary", "dominated", "two_scales", "prices"}
