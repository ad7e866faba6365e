"""Tests of i2l.evaluate: image comparison, the TSV round trip, and a full evaluation with a tiny checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from i2l.evaluate import (
    PUBLISHED,
    TSV_COLUMNS,
    binarize,
    column_edit,
    comparison_table,
    default_out_dir,
    format_table,
    hardest,
    images_match,
    read_predictions,
    write_predictions,
)

# made-up formulas (never real ones) over a tiny alphabet
TRAIN_FORMULAS = [f"{a} {op} {b}" for a in "xyab" for op in "+-=" for b in "123"][:36] + ["x ^ { 2 }"] * 4
VAL_FORMULAS = ["x + 1", "a - 2", "y = 3", "b + \\zeta", "x ^ { 2 }", "a = 1"]  # "\zeta": not in the vocab


# ----------------------------------------------------------------------------- image comparison
def _ink(h, w, boxes):
    a = np.ones((h, w), dtype=np.float32)
    for r0, r1, c0, c1 in boxes:
        a[r0:r1, c0:c1] = 0.0
    return a


def test_binarize_crops_to_ink():
    mask = binarize(_ink(20, 30, [(5, 8, 10, 12)]))
    assert mask.shape == (3, 2) and mask.all()
    assert binarize(np.ones((5, 5))).shape == (0, 0)
    assert binarize(Image.new("L", (10, 10), 255)).shape == (0, 0)


def test_images_match():
    a = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 8, 10)])
    shifted = _ink(30, 50, [(12, 16, 13, 15), (12, 16, 18, 20)])  # same ink elsewhere on a larger canvas
    wider = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 9, 11)])  # one more blank column between the glyphs
    other = _ink(20, 40, [(2, 7, 3, 5), (2, 6, 8, 10)])
    assert images_match(a, shifted) == (True, True)
    assert images_match(a, wider) == (False, True)
    assert images_match(a, other) == (False, False)
    assert images_match(np.ones((4, 4)), np.ones((6, 6))) == (True, True)  # both blank


def test_column_edit():
    a = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 8, 10)])  # ink columns: XX....XX (8 columns after cropping)
    wider = _ink(20, 40, [(2, 6, 3, 5), (2, 6, 9, 11)])  # one blank column more: one insertion
    assert column_edit(a, a) == (0, 7)
    assert column_edit(a, wider) == (1, 8)
    assert column_edit(a, None) == (7, 7)


# ----------------------------------------------------------------------------- tables
def test_comparison_table():
    m = {"bleu": 0.5, "edit_accuracy": 0.6, "exact_match": 0.1, "exact_match_nospace": 0.2, "seed_bleu": 0.7,
         "seed_exact_match": 0.1, "seed_cer": 0.3, "seed_edit_distance": 4.0,
         "render": {"image_exact_match": 0.15, "image_match_nospace": 0.25, "image_edit_accuracy": 0.4}}
    df = comparison_table(m)
    assert list(df.columns) == ["i2l (this run)", *PUBLISHED]
    assert df.loc["BLEU-4, corpus (standard)", "i2l (this run)"] == 0.5
    assert df.loc["BLEU-4, corpus (standard)", "Deng et al. 2017 (Im2Latex-100K test)"] == 0.8773
    assert df.loc["image exact match (render-back)", "i2l (this run)"] == 0.15
    assert df.loc["BLEU, mean sentence (seed)", "original project (its own metrics)"] == 0.81
    assert np.isnan(df.loc["token edit accuracy (standard)", "original project (its own metrics)"])
    no_render = comparison_table({"bleu": 0.5})
    assert np.isnan(no_render.loc["image exact match (render-back)", "i2l (this run)"])


def test_hardest():
    rows = [{"status": "ok", "cer": 0.1, "ref_len": 5}, {"status": "unreadable", "cer": 1.0, "ref_len": 9},
            {"status": "empty", "cer": 1.0, "ref_len": 3}, {"status": "ok", "cer": 0.5, "ref_len": 4},
            {"status": "ok", "cer": 1.0, "ref_len": 8}]
    assert [r["ref_len"] for r in hardest(rows, k=3)] == [8, 3, 4]


# ----------------------------------------------------------------------------- files
def test_predictions_tsv_round_trip(tmp_path):
    rows = [{"image": "a.png", "reference": "x \\\\ y", "prediction": "x\ty\nz", "status": "ok", "ref_len": 3,
             "pred_len": 3, "edit_distance": 2, "cer": 2 / 3, "bleu": 0.0, "exact_match": 0.0,
             "exact_match_nospace": 0.0, "unknown_in_ref": 1}]
    path = write_predictions(rows, tmp_path / "predictions.tsv")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(TSV_COLUMNS) and len(lines) == 2
    back = read_predictions(tmp_path)
    assert back[0]["prediction"] == "x y z" and back[0]["reference"] == "x \\\\ y"
    assert back[0]["cer"] == pytest.approx(2 / 3, abs=1e-5) and back[0]["unknown_in_ref"] == 1.0


def test_default_out_dir(tmp_path):
    assert default_out_dir(tmp_path / "run" / "checkpoints" / "best.ckpt", "test", 5) == \
        (tmp_path / "run" / "eval" / "test-beam5").resolve()
    assert default_out_dir(tmp_path / "x.ckpt", "validate", 1) == (tmp_path / "eval" / "validate-beam1").resolve()


def test_format_table():
    text = format_table({"split": "test", "beam_size": 1, "n": 3, "bleu": 0.5, "edit_accuracy": 0.25,
                         "exact_match": 0.0, "exact_match_nospace": 1 / 3, "seed_bleu": 0.4, "seed_cer": 0.6,
                         "seed_edit_distance": 2.0, "seed_exact_match": 0.0, "counts": {"samples": 3, "ok": 2}})
    assert "BLEU-4 (corpus)" in text and "0.5000" in text and "0.3333" in text
    assert "counts: samples 3, ok 2" in text


# ----------------------------------------------------------------------------- full evaluation
def _draw(text: str) -> Image.Image:
    img = Image.new("L", (16 + 7 * len(text), 32), 255)
    ImageDraw.Draw(img).text((8, 10), text, fill=0)
    return img


def make_tiny_dataset(root: Path) -> Path:
    """A processed-layout folder: 40 train, 6 validate formulas drawn with PIL's font, one corrupt image."""
    images = root / "images_processed"
    images.mkdir(parents=True)
    formulas = TRAIN_FORMULAS + VAL_FORMULAS
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    lines = {"train": [], "validate": []}
    for k, f in enumerate(formulas):
        split = "train" if k < len(TRAIN_FORMULAS) else "validate"
        _draw(f).save(images / f"f{k:03d}.png")
        lines[split].append(f"f{k:03d}.png {k}")
    (images / "f999.png").write_bytes(b"not a png at all")  # corrupt: load_split keeps it, reading fails
    lines["validate"].append(f"f999.png {len(TRAIN_FORMULAS)}")
    (root / "train_filter.lst").write_text("\n".join(lines["train"]) + "\n")
    (root / "validate_filter.lst").write_text("\n".join(lines["validate"]) + "\n")
    (root / "test_filter.lst").write_text("\n".join(lines["validate"]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tinyset") / "data")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """One epoch of the smoke model on the tiny set (seconds on a CPU)."""
    pytest.importorskip("i2l.decoding", reason="i2l.decoding (model developer) is not in this checkout yet")
    from i2l.config import get_config
    from i2l.train import fit

    runs = tmp_path_factory.mktemp("runs")
    cfg = get_config("smoke", data_dir=str(tiny_data), out_dir=str(runs), run_name="tiny", max_epochs=1,
                     accelerator="cpu", devices=1, max_len=20)
    result = fit(cfg, progress_bar=False)
    ckpt = result.best_checkpoint or result.last_checkpoint
    assert ckpt is not None and Path(ckpt).is_file()
    return Path(ckpt)


def test_evaluate_writes_files_and_counts_problems(tiny_checkpoint, tiny_data, tmp_path):
    from i2l.evaluate import evaluate

    m = evaluate(tiny_checkpoint, tiny_data, split="validate", out_dir=tmp_path, batch_size=4, device="cpu",
                 progress=False)
    assert (tmp_path / "predictions.tsv").is_file() and (tmp_path / "metrics.json").is_file()
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["bleu"] == pytest.approx(m["bleu"])
    for key in ("bleu", "edit_accuracy", "exact_match", "exact_match_nospace", "seed_bleu", "seed_cer",
                "seed_edit_distance", "seed_exact_match"):
        assert 0.0 <= on_disk[key] <= (100 if key == "seed_edit_distance" else 1.0)
    c = on_disk["counts"]
    assert on_disk["n"] == c["samples"] == len(VAL_FORMULAS) + 1
    assert c["unreadable_images"] == 1
    assert c["refs_with_unknown"] == 1 and c["unknown_tokens"] == 1
    assert c["ok"] + c["empty_predictions"] + c["failed_predictions"] + c["unreadable_images"] == c["samples"]
    rows = read_predictions(tmp_path)
    assert len(rows) == c["samples"]
    bad = [r for r in rows if r["image"].endswith("f999.png")][0]
    assert bad["status"] == "unreadable" and bad["prediction"] == "" and bad["exact_match"] == 0.0
    assert [r["reference"] for r in rows[:3]] == VAL_FORMULAS[:3]


def test_evaluate_limit_and_beam(tiny_checkpoint, tiny_data, tmp_path):
    from i2l.evaluate import evaluate

    m = evaluate(tiny_checkpoint, tiny_data, split="validate", beam_size=2, limit=3, out_dir=tmp_path,
                 device="cpu", progress=False, verbose=False, render=True)
    assert m["n"] == 3 and m["beam_size"] == 2
    rows = read_predictions(tmp_path)
    assert len(rows) == 3
    r = m["render"]
    assert r["ref_render_rate"] == 1.0 and r["n_rendered_refs"] == 3
    assert 0.0 <= r["image_exact_match"] <= r["image_match_nospace"] <= 1.0
    assert all(row["image_exact_match"] in (0.0, 1.0) for row in rows)
    exact = [row["image_exact_match"] for row in rows]
    assert sum(exact) / 3 == pytest.approx(r["image_exact_match"])


def test_evaluate_errors(tiny_checkpoint, tiny_data, tmp_path):
    from i2l.errors import I2LError
    from i2l.evaluate import evaluate

    with pytest.raises(I2LError, match="not found"):
        evaluate(tmp_path / "missing.ckpt", tiny_data, split="validate")
    empty = tmp_path / "empty"
    shutil.copytree(tiny_data, empty)
    (empty / "validate_filter.lst").write_text("")
    with pytest.raises(I2LError, match="no samples"):
        evaluate(tiny_checkpoint, empty, split="validate", out_dir=tmp_path / "o", progress=False)


def test_cli_evaluate_on_real_sample(tiny_checkpoint, shared_data, tmp_path, capsys):
    from i2l.cli import main

    sample = shared_data / "im2latex" / "sample" / "processed"
    rc = main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(sample), "--split", "validate",
               "--limit", "6", "--batch-size", "3", "--out", str(tmp_path)])
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n"] == 6 and m["split"] == "validate"
    assert m["counts"]["refs_with_unknown"] > 0  # a model trained on x, y, a, b cannot know arXiv's tokens
    assert len(read_predictions(tmp_path)) == 6
    assert "standard protocol" in capsys.readouterr().out


def test_render_back():
    render = pytest.importorskip("i2l.data.render", reason="i2l.data.render (synth developer) not here yet")
    from i2l.evaluate import render_back

    if render is None:  # pragma: no cover
        return
    rb = render_back(["x + 1", "a ^ { 2 }", "b"], ["x + 1", "a ^ { 3 }", None], backend="auto")
    assert rb["ref_render_rate"] == 1.0
    assert rb["render_rate"] == pytest.approx(2 / 3)
    assert rb["matches"] == [(True, True), (False, False), (False, False)]
    assert rb["image_exact_match"] == pytest.approx(1 / 3)
    assert 0.0 < rb["image_edit_accuracy"] < 1.0


def test_render_failure_is_reported_not_raised(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    import i2l.evaluate as ev

    def broken(*args, **kwargs):
        raise RuntimeError("no renderer here")

    monkeypatch.setattr(ev, "render_back", broken)
    m = ev.evaluate(tiny_checkpoint, tiny_data, split="validate", limit=2, out_dir=tmp_path, device="cpu",
                    progress=False, render=True)
    assert m["render"]["error"] == "RuntimeError: no renderer here"
    assert m["n"] == 2 and "render-back failed" in ev.format_table(m)


def test_render_back_real_formulas_match_themselves(shared_data):
    pytest.importorskip("i2l.data.render", reason="i2l.data.render (synth developer) not here yet")
    from i2l.evaluate import render_back

    path = shared_data / "im2latex" / "formulas" / "val.formulas.norm.txt"
    refs = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()][:12]
    truncated = [" ".join(r.split()[:-1]) for r in refs]  # the last token dropped: usually a different image
    rb = render_back(refs, refs)
    assert rb["n_rendered_refs"] >= 10
    assert rb["image_exact_match"] == 1.0 and rb["image_edit_accuracy"] == 1.0
    assert rb["render_rate"] == rb["ref_render_rate"]
    worse = render_back(refs, truncated)
    assert worse["image_exact_match"] < 1.0 and worse["image_edit_accuracy"] < 1.0


def test_find_checkpoint(tiny_checkpoint, tiny_data, tmp_path):
    from i2l.config import get_config
    from i2l.errors import I2LError
    from i2l.evaluate import find_checkpoint
    from i2l.lit import load_checkpoint

    cfg = get_config("smoke", data_dir=str(tiny_data), out_dir=str(tmp_path), run_name="r", max_epochs=1,
                     accelerator="cpu", devices=1, max_len=20)
    with pytest.raises(I2LError, match="no checkpoint"):
        find_checkpoint(cfg, train_if_missing=False)
    folder = cfg.run_dir / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, folder / "last.ckpt")
    assert find_checkpoint(cfg) == folder / "last.ckpt"  # notebook 04's checkpoint is used as it is
    (folder / "best.ckpt").write_bytes(b"stale")  # smoke mode: an unloadable checkpoint is trained again
    ckpt = find_checkpoint(cfg)
    assert ckpt.is_file() and load_checkpoint(ckpt)[1] is not None
