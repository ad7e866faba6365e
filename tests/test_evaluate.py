"""Tests of i2l.evaluate: the TSV round trip, and full evaluations through the Predictor with a tiny checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import VAL_FORMULAS

from i2l.errors import I2LError
from i2l.evaluate import (
    TSV_COLUMNS,
    default_out_dir,
    evaluate,
    format_table,
    hardest,
    read_predictions,
    write_predictions,
)


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


def test_evaluate_writes_files_and_counts_problems(tiny_checkpoint, tiny_data, tmp_path):
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


def test_render_failure_is_reported_not_raised(tiny_checkpoint, tiny_data, tmp_path, monkeypatch):
    import i2l.evaluate as ev

    def broken(*args, **kwargs):
        raise RuntimeError("no renderer here")

    monkeypatch.setattr(ev, "render_back", broken)
    m = ev.evaluate(tiny_checkpoint, tiny_data, split="validate", limit=2, out_dir=tmp_path, device="cpu",
                    progress=False, render=True)
    assert m["render"]["error"] == "RuntimeError: no renderer here"
    assert m["n"] == 2 and "render-back failed" in ev.format_table(m)




def test_evaluate_as_is_beside_the_predictor(tiny_checkpoint, tiny_data, tmp_path):
    user = evaluate(tiny_checkpoint, tiny_data, split="validate", out_dir=tmp_path / "user", device="cpu",
                    progress=False, verbose=False)
    as_is = evaluate(tiny_checkpoint, tiny_data, split="validate", out_dir=tmp_path / "as_is", device="cpu",
                     progress=False, verbose=False, as_is=True)
    assert user["path"] == "predictor" and as_is["path"] == "as-is"
    assert user["n"] == as_is["n"] and as_is["counts"]["unreadable_images"] == 1  # the corrupt file, both ways
    rows = {r["image"]: r for r in read_predictions(tmp_path / "user")}
    scales = [r["scale"] for r in rows.values() if r["status"] != "unreadable"]
    assert scales and all(s != "" for s in scales)  # the Predictor says how it rescaled each image
    assert all(r["scale"] == 1.0 for r in read_predictions(tmp_path / "as_is") if r["status"] != "unreadable")
    assert default_out_dir(tiny_checkpoint, "test", 1, as_is=True).name == "test-beam1-as-is"
