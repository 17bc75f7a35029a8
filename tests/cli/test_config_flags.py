"""One flag table for every command that builds a training config: each flag sets a real config field,
choices come from core.config, and the same flag means the same thing in train, lr-find and advise."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from tl_studio.cli import cmd_advise, cmd_lr_find, cmd_train, config_flags
from tl_studio.core import config as settings
from tl_studio.core.config import TrainConfig

COMMANDS = {"train": cmd_train, "lr-find": cmd_lr_find, "advise": cmd_advise}


def parser_of(command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    command.add_arguments(parser)
    return parser


def test_every_flag_sets_a_config_field():
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    assert {flag.field for flag in config_flags.FLAGS.values()} <= fields
    assert set(config_flags.SWITCHES) <= fields
    for command in COMMANDS.values():
        assert set(command.SETTINGS) <= set(config_flags.FLAGS) | set(config_flags.SWITCHES)


@pytest.mark.parametrize("name", COMMANDS)
def test_choices_come_from_the_config_module(name, tmp_path):
    parser = parser_of(COMMANDS[name])
    choices = {action.dest: tuple(action.choices) for action in parser._actions if action.choices}
    expected = {"device": settings.DEVICES, "augment": settings.AUGMENTATIONS, "optimizer": settings.OPTIMIZERS,
                "schedule": settings.SCHEDULES, "class_weights": settings.CLASS_WEIGHTING,
                "decode": settings.DECODE_PLACES}
    assert choices == {dest: values for dest, values in expected.items() if dest in COMMANDS[name].SETTINGS}


@pytest.mark.parametrize("name", COMMANDS)
def test_the_same_flags_give_the_same_settings_in_every_command(name, tmp_path):
    command = COMMANDS[name]
    given = {"--model": "resnet18", "--batch-size": "12", "--img-size": "160", "--seed": "7", "--device": "cpu",
             "--optimizer": "sgd", "--val-fraction": "0.3", "--augment": "light", "--freeze": " ALL "}
    words = [str(tmp_path)] + (["--out", str(tmp_path / "run")] if name == "train" else [])
    for flag, value in given.items():
        if flag[2:].replace("-", "_") in command.SETTINGS:
            words += [flag, value]
    config = command.build_config(parser_of(command).parse_args(words))
    assert config.model == "resnet18" and config.batch_size == 12 and config.img_size == 160
    assert config.seed == 7 and config.device == "cpu" and config.optimizer == "sgd" and config.val_fraction == 0.3
    assert config.data_dir == str(tmp_path.resolve())
    if "augment" in command.SETTINGS:
        assert config.augment == "light"
    if "freeze" in command.SETTINGS:
        assert config.freeze == "all"
    untouched = TrainConfig()  # flags not given keep the defaults
    assert config.lr == untouched.lr and config.schedule == untouched.schedule


def test_renamed_fields_and_switches_reach_their_config_field(tmp_path):
    args = parser_of(cmd_train).parse_args([str(tmp_path), "--out", str(tmp_path / "run"), "--class-weights", "on",
                                             "--early-stopping", "3", "--no-feature-cache", "--no-amp"])
    config = cmd_train.build_config(args)
    assert config.class_weighting == "on" and config.early_stopping_patience == 3
    assert config.feature_cache is False and config.amp is False
    assert config_flags.flag_for("class_weighting") == "--class-weights"
    assert config_flags.flag_for("early_stopping_patience") == "--early-stopping"


def test_a_bad_choice_is_refused_by_every_command(tmp_path):
    for name, command in COMMANDS.items():
        words = [str(tmp_path), "--device", "tpu"] + (["--out", "x"] if name == "train" else [])
        with pytest.raises(argparse.ArgumentError, match="invalid choice"):
            parser_of(command).parse_args(words)


def test_every_default_a_flags_help_states_is_the_configs():
    # the help is what a user reads; a default changed in core.config must not leave it saying the old one
    import re

    from tl_studio.cli.config_flags import FLAGS
    from tl_studio.core.config import TrainConfig

    defaults = TrainConfig()
    stated = 0
    for flag in FLAGS.values():
        said = re.search(r"default:? ([\w.]+)", flag.options.get("help", ""))
        # said in words: they depend on --freeze, on the model, on the device
        if said is None or flag.field in ("lr", "img_size", "workers"):
            continue
        value, expected = said.group(1), getattr(defaults, flag.field)
        try:
            assert float(value) == float(expected), flag.flag
        except ValueError:
            assert value == str(expected), flag.flag
        stated += 1
    assert stated >= 12


def test_an_unknown_option_is_refused_with_the_commands_usage(tmp_path, capsys):
    """`train DATA --max-images 0` answered with "usage: tl-studio [-h] [--version] COMMAND …", which names
    none of train's options."""
    from tl_studio.cli.main import main

    with pytest.raises(SystemExit) as ended:
        main(["train", str(tmp_path), "--max-images", "0"])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.startswith("usage: tl-studio train ")
    assert err.rstrip().endswith("tl-studio train: error: unrecognized arguments: --max-images 0")
