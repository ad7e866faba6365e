"""The shipped reference model: it loads, it is checked, it reads, and every door uses it by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint

from i2l.checkpoint import file_sha256
from i2l.errors import I2LError
from i2l.infer import Predictor
from i2l.pretrained import (
    CARD_FILE,
    SIMPLE_N,
    SIMPLE_TARGET,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    card,
    model_name,
    read_pretrained,
    read_simple,
    ship,
    simple_formulas,
    training_log,
)


@pytest.fixture(scope="module")
def shipped(one_thread) -> Predictor:
    return Predictor.pretrained(device="cpu")


def copy_weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    return folder


# ----------------------------------------------------------------------------- the files
def test_the_weights_ship_small_fp16_and_match_their_card():
    info = card()
    assert WEIGHTS_FILE.is_file() and WEIGHTS_FILE.stat().st_size <= 20 * 1024 * 1024
    assert file_sha256(WEIGHTS_FILE) == info["sha256"]
    ckpt = read_pretrained()
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert set(ckpt) >= {"config", "vocab", "state_dict"} and "optimizer_states" not in ckpt
    assert info["name"] == model_name() and info["scores"]["bleu"] > 0


def test_the_predictor_loads_the_shipped_model_and_names_it(shipped):
    assert shipped.model_name == card()["name"]
    assert shipped.cfg.name == "reference"
    assert Predictor.load("pretrained", device="cpu").model_name == shipped.model_name


def test_a_damaged_weights_file_is_refused_with_what_to_do(tmp_path):
    folder = copy_weights(tmp_path)
    data = bytearray((folder / WEIGHTS_FILE.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / WEIGHTS_FILE.name).write_bytes(bytes(data))
    with pytest.raises(I2LError, match="damaged.*reinstall i2l"):
        Predictor.pretrained(weights_dir=folder, device="cpu")


def test_a_missing_weights_file_or_card_is_refused_with_what_to_do(tmp_path):
    folder = copy_weights(tmp_path)
    (folder / WEIGHTS_FILE.name).unlink()
    with pytest.raises(I2LError, match="not found.*reinstall i2l"):
        Predictor.pretrained(weights_dir=folder, device="cpu")
    (folder / CARD_FILE.name).unlink()
    with pytest.raises(I2LError, match="card .* is missing.*--checkpoint"):
        Predictor.pretrained(weights_dir=folder, device="cpu")
    (folder / CARD_FILE.name).write_text("{not json")
    with pytest.raises(I2LError, match="cannot be read"):
        card(folder)


# ----------------------------------------------------------------------------- it reads
@pytest.fixture(scope="module")
def simple(shipped) -> dict:
    from i2l.data.render import latex_available

    if not latex_available():
        pytest.skip("pdflatex and Ghostscript are needed to render the formulas as the model's data was rendered")
    return read_simple(shipped)


def test_the_shipped_model_reads_simple_formulas_as_its_card_says(simple):
    """The reading the card records when the weights shipped, again now: broken or swapped weights fail here."""
    recorded = card()["scores"]
    assert simple["exact"] >= recorded["simple_exact"] - 1, simple["misread"]
    assert simple["bleu"] >= recorded["simple_bleu"] - 0.05, simple["misread"]


def test_the_shipped_model_reads_8_of_10_simple_formulas(simple):
    """Issue 13's target. While the shipped model's card records fewer, this is an expected failure, checked to be
    one: reading the target while the card says otherwise fails, so that the card is brought up to date."""
    if card()["scores"]["simple_exact"] < SIMPLE_TARGET:
        assert simple["exact"] < SIMPLE_TARGET, "the model reads the target now: ship it again to record it"
        pytest.xfail(f"{model_name()} reads {card()['scores']['simple_exact']} of {simple['n']} simple formulas "
                     f"(reference.json): still training towards {SIMPLE_TARGET}")
    assert simple["exact"] >= SIMPLE_TARGET, simple["misread"]


def test_the_simple_formulas_are_fresh():
    from i2l.config import get_config
    from i2l.data.synth import shard_dirs

    formulas = simple_formulas()
    assert len(formulas) == SIMPLE_N and len(set(formulas)) > SIMPLE_N // 2
    assert all(len(f.split()) <= 10 for f in formulas)
    for shard in shard_dirs(get_config("reference").data_path):  # where the reference data is on this machine
        assert not set(formulas) & set((shard / "formulas.norm.lst").read_text().splitlines())


def test_broken_weights_do_not_pass_the_reading_check(tmp_path, one_thread):
    """The reading test above depends on the weights: the same model with its decoder output zeroed reads nothing."""
    broken = Predictor.pretrained(device="cpu")
    with torch.no_grad():
        broken.model.decoder.output.weight.zero_()
        broken.model.decoder.output.bias.zero_()
    from conftest import formula_image

    result = broken.predict([formula_image("x+1")])[0]
    assert result.latex != "x + 1"


# ----------------------------------------------------------------------------- shipping
def test_ship_replaces_the_weights_only_when_the_proxy_improves(tmp_path):
    folder = tmp_path / "weights"
    first = make_checkpoint(tmp_path / "a.ckpt", seed=1)
    second = make_checkpoint(tmp_path / "b.ckpt", seed=2)
    assert ship(first, {"bleu": 0.30}, {"steps": 10}, weights_dir=folder)
    sha = card(folder)["sha256"]
    assert Predictor.pretrained(weights_dir=folder, device="cpu").model_name == "i2l-reference-1"
    assert not ship(second, {"bleu": 0.25}, {"steps": 20}, weights_dir=folder)  # worse: kept
    assert card(folder)["sha256"] == sha == file_sha256(folder / WEIGHTS_FILE.name)
    assert ship(second, {"bleu": 0.35}, {"steps": 20}, weights_dir=folder)
    info = card(folder)
    assert info["name"] == "i2l-reference-2" and info["sha256"] != sha and info["training"] == {"steps": 20}
    assert info["sha256"] == file_sha256(folder / WEIGHTS_FILE.name)


def test_ship_ships_the_training_log_and_training_log_finds_it(tmp_path):
    folder = tmp_path / "weights"
    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = make_checkpoint(run / "checkpoints" / "last.ckpt")
    with pytest.raises(I2LError, match="no training log"):
        training_log(ckpt)
    (run / "metrics.csv").write_text("step,train_loss\n10,2.0\n")
    assert training_log(ckpt) == run / "metrics.csv"
    assert ship(ckpt, {"bleu": 0.3}, {}, weights_dir=folder)
    with pytest.raises(I2LError, match="no training log"):
        training_log("pretrained", weights_dir=folder)  # shipped without its log
    assert ship(ckpt, {"bleu": 0.4}, {}, weights_dir=folder, metrics_csv=run / "metrics.csv")
    assert training_log("pretrained", weights_dir=folder).read_text() == "step,train_loss\n10,2.0\n"
    assert sorted(p.name for p in folder.iterdir()) == ["reference.json", "reference.pt", "reference_metrics.csv"]
    for p in folder.iterdir():  # readable like any new file, not mkstemp's 0600
        assert p.stat().st_mode & 0o044 == 0o044, p


def test_a_failed_ship_leaves_the_shipped_model_as_it_was(tmp_path):
    folder = tmp_path / "weights"
    ship(make_checkpoint(tmp_path / "a.ckpt"), {"bleu": 0.3}, {}, weights_dir=folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(I2LError, match="cannot be read"):
        ship(tmp_path / "broken.ckpt", {"bleu": 0.9}, {}, weights_dir=folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    with pytest.raises(I2LError, match="'bleu'"):
        ship(make_checkpoint(tmp_path / "b.ckpt"), {"exact_match": 0.9}, {}, weights_dir=folder)


def test_warm_start_from_the_shipped_model(one_thread):
    from i2l.data.dataset import vocabulary
    from i2l.model import Im2LatexModel
    from i2l.train import warm_start

    cfg = Predictor.pretrained(device="cpu").cfg
    vocab = vocabulary(cfg, [])
    model = Im2LatexModel(cfg, len(vocab))
    copied = warm_start(model, cfg, vocab, "pretrained")
    state = read_pretrained()["state_dict"]
    assert copied["new_tokens"] == len(vocab) - copied["tokens"] and copied["tokens"] > 4
    own = model.state_dict()
    rows = ("decoder.embedding.weight", "decoder.output.weight", "decoder.output.bias")
    assert all(torch.equal(own[k], v.float()) for k, v in state.items() if k not in rows and v.is_floating_point())


# ----------------------------------------------------------------------------- the doors
def test_i2l_predict_uses_the_shipped_model_and_says_so(tmp_path, capsys):
    from conftest import formula_image

    from i2l.cli import main

    formula_image("x+1").save(tmp_path / "f.png")
    assert main(["predict", str(tmp_path / "f.png"), "--json", "--device", "cpu"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model"] == model_name() and answer["error"] is None


def test_the_web_api_reports_the_shipped_model(tmp_path):
    pytest.importorskip("fastapi")
    from conftest import formula_image, png_bytes
    from fastapi.testclient import TestClient

    from i2l.serve import create_app

    client = TestClient(create_app(Predictor.load("pretrained", device="cpu")))
    assert client.get("/health").json()["model"] == model_name()
    answer = client.post("/predict", files={"file": ("f.png", png_bytes(formula_image("x+1")), "image/png")}).json()
    assert answer["model"] == model_name()
    own = make_checkpoint(tmp_path / "own.ckpt")
    client = TestClient(create_app(Predictor.load(own, device="cpu")))
    assert client.get("/health").json()["model"] == str(own)


def test_the_widget_app_defaults_to_the_shipped_model():
    pytest.importorskip("ipywidgets")
    from i2l.widgets import build_app

    assert build_app().predictor.model_name == model_name()
