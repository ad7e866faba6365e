"""``i2l predict``: text and JSON output, beam candidates, and bad files or checkpoints as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import formula_image, make_checkpoint, make_other_vocab_weights
from PIL import Image

from i2l.cli import main
from i2l.infer import Predictor


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out = {"ckpt": make_checkpoint(d / "tiny.ckpt")}
    for name, text in [("a.png", "x+1"), ("b.png", "a=b")]:
        formula_image(text).save(d / name)
        out[name] = d / name
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image\n")
    full = (d / "a.png").read_bytes()
    (d / "cut.png").write_bytes(full[: len(full) // 2])
    Image.new("1", (10000, 10000), 1).save(d / "huge.png")
    Image.new("RGBA", (50, 20), (0, 0, 0, 0)).save(d / "clear.png")
    Image.new("L", (50, 20), 255).save(d / "white.png")
    for name in ("empty.png", "text.png", "cut.png", "huge.png", "clear.png", "white.png"):
        out[name] = d / name
    out["other_vocab"] = make_other_vocab_weights(out["ckpt"], d / "other_vocab.pt")
    return out


def test_predict_text_output(files, capsys) -> None:
    code = main(["predict", str(files["a.png"]), str(files["b.png"]), "--checkpoint", str(files["ckpt"]),
                 "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    expected = Predictor.from_checkpoint(files["ckpt"], device="cpu").predict([files["a.png"]])[0].latex
    assert lines[0] == f"{files['a.png']}\t{expected}"


def test_predict_json_with_beam(files, capsys) -> None:
    code = main(["predict", str(files["a.png"]), "--checkpoint", str(files["ckpt"]), "--beam", "3", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["image"] == str(files["a.png"]) and record["error"] is None
    assert 1 <= len(record["candidates"]) <= 3 and record["candidates"][0]["latex"] == record["latex"]


def test_bad_files_are_reported_one_line_each(files, capsys) -> None:
    bad = ["empty.png", "text.png", "cut.png", "huge.png", "clear.png", "white.png"]
    code = main(["predict", str(files["a.png"]), *(str(files[b]) for b in bad), "--checkpoint", str(files["ckpt"])])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1 and len(lines) == 1 + len(bad)
    assert "ERROR" not in lines[0]
    for line, word in zip(lines[1:], ["empty", "not an image", "truncated", "too large", "no ink", "no ink"]):
        assert "ERROR" in line and word in line, line


def test_bad_checkpoints_exit_2(files, capsys, tmp_path) -> None:
    assert main(["predict", str(files["a.png"]), "--checkpoint", str(files["other_vocab"])]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(["predict", str(files["a.png"]), "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["predict", str(files["a.png"]), "--checkpoint", str(files["ckpt"]), "--beam", "0"]) == 2
    assert "beam" in capsys.readouterr().err


def test_serve_refuses_a_bad_checkpoint(files, capsys) -> None:
    assert main(["serve", "--checkpoint", str(files["other_vocab"]), "--port", "1"]) == 2
    assert "does not match" in capsys.readouterr().err
