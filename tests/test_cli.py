"""Tests for the `i2l` command's parser and its error handling (the subcommands are tested with their modules)."""

import subprocess
import sys

import pytest

from i2l import cli
from i2l.errors import I2LError


def test_every_subcommand_is_there():
    parser = cli.build_parser()
    for argv in (["data", "download"], ["data", "stats", "x"], ["data", "synth"], ["train"],
                 ["evaluate", "--checkpoint", "c", "--data", "d"], ["predict", "a.png", "--checkpoint", "c"],
                 ["serve", "--checkpoint", "c"], ["demo"]):
        args = parser.parse_args(argv)
        assert callable(args.func)


def test_user_errors_become_one_line_and_exit_2(monkeypatch, capsys):
    def boom(args):
        raise I2LError("the file x.png is empty")

    monkeypatch.setattr(cli, "cmd_data_stats", boom)
    parser = cli.build_parser()
    args = parser.parse_args(["data", "stats", "x"])
    assert args.func is boom
    assert cli.main(["data", "stats", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["i2l data: error: the file x.png is empty"]


def test_train_flags_map_onto_the_config():
    args = cli.build_parser().parse_args(["train", "--preset", "seed", "--max-epochs", "3", "--devices", "2"])
    cfg = cli._train_config(args)
    assert (cfg.name, cfg.max_epochs, cfg.devices, cfg.strategy) == ("seed", 3, 2, "ddp")
    args = cli.build_parser().parse_args(["train", "--preset", "reference", "--init-from", "pretrained",
                                          "--set", "curriculum=[]", "--set", "warmup_steps=200"])
    cfg = cli._train_config(args)
    assert (cfg.init_from, cfg.curriculum, cfg.warmup_steps, cfg.d_model) == ("pretrained", (), 200, 256)
    with pytest.raises(I2LError, match="--set.*colour"):
        cli._train_config(cli.build_parser().parse_args(["train", "--set", "colour=red"]))


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "i2l.cli", "--help"], capture_output=True, text=True, check=True)
    for name in ("data", "train", "evaluate", "predict", "serve", "demo"):
        assert name in out.stdout


def test_unknown_preset_is_rejected():
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--preset", "huge"])
