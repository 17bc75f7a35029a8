"""`tl-studio lr-find` and `tl-studio advise` as a user runs them: the JSON they promise, a readable
summary with the next command to type, one-sentence errors, and a start-up that imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tl_studio.cli.main import main

FAST = ["--img-size", "64", "--batch-size", "8"]


def test_lr_find_json_gives_the_curve_and_a_suggestion(tiny_dataset, capsys):
    assert main(["lr-find", str(tiny_dataset), *FAST, "--workers", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"suggested_lr", "lrs", "losses", "raw_losses", "min_loss_lr", "diverged", "message"} <= set(result)
    assert len(result["lrs"]) == len(result["losses"]) >= 10
    assert result["lrs"] == sorted(result["lrs"]) and result["feature_cache"] is True
    assert 1e-4 <= result["suggested_lr"] <= 1e-1


def test_lr_find_prints_a_chart_and_the_command_to_use_it(tiny_dataset, capsys):
    assert main(["lr-find", str(tiny_dataset), *FAST, "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "<- suggested" in out and "Suggested learning rate:" in out
    assert f"Use it: tl-studio train {tiny_dataset} --model efficientnet_lite0 --batch-size 8 --img-size 64 --lr " in out


def test_the_command_lr_find_suggests_keeps_the_settings_the_sweep_used(tiny_dataset, capsys):
    # an SGD sweep's rate pasted into a default (AdamW) run would train at 10x its rate
    assert main(["lr-find", str(tiny_dataset), *FAST, "--steps", "40", "--optimizer", "sgd", "--batch-size", "8"]) == 0
    use = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Use it:"))
    assert " --optimizer sgd" in use and " --batch-size 8" in use and " --img-size 64" in use and " --lr " in use


def test_lr_find_names_the_files_the_scan_left_out(tiny_dataset, capsys):
    (tiny_dataset / "red" / "notes.jpg").write_text("not an image")
    assert main(["lr-find", str(tiny_dataset), *FAST, "--json"]) == 0
    sentence = json.loads(capsys.readouterr().out)["dataset_problems"]
    assert sentence.startswith("The dataset scan found 1 problem: 1 file left out of the sweep (red/notes.jpg).")
    assert main(["lr-find", str(tiny_dataset), *FAST]) == 0
    assert " ".join(capsys.readouterr().out.split()).count(sentence) == 1


@pytest.mark.parametrize("args, words", [(["--start-lr", "1", "--end-lr", "0.1"], "--start-lr"),
                                         (["--steps", "3"], "--steps"),
                                         (["--freeze", "99"], "out of range")])
def test_lr_find_mistakes_are_one_sentence(tiny_dataset, capsys, args, words):
    assert main(["lr-find", str(tiny_dataset), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_advise_json_gives_every_setting_with_reasons(tiny_dataset, capsys):
    assert main(["advise", str(tiny_dataset), "--img-size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"freeze", "lr", "epochs", "schedule", "linear_probe_acc", "reasons", "img_size", "augment"} <= set(result)
    assert result["freeze"] == "all" and result["schedule"] == "onecycle"  # 10 images per class
    assert len(result["reasons"]) == 6 and all(isinstance(r, str) and r for r in result["reasons"])
    assert 0.5 < result["linear_probe_acc"] <= 1


def test_advise_summary_ends_with_the_command_to_train(tiny_dataset, capsys):
    assert main(["advise", str(tiny_dataset), "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "Recommended for efficientnet_lite0" in out and "Freeze" in out and "memorise" in out
    assert f"tl-studio train {tiny_dataset} --model efficientnet_lite0 --freeze all" in out


def test_the_command_advise_suggests_keeps_the_settings_it_analysed(tiny_dataset, tmp_path, capsys):
    # without them the pasted command trained other weights (downloading them, offline: a failure) or
    # another optimizer than the advice's rate was for
    (tmp_path / "my config.json").write_text('{"seed": 3}')
    assert main(["advise", str(tiny_dataset), "--img-size", "64", "--weights", "none", "--optimizer", "sgd",
                 "--batch-size", "16", "--config", str(tmp_path / "my config.json")]) == 0
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert " --weights none --batch-size 16 --optimizer sgd" in command
    assert f" --config '{tmp_path / 'my config.json'}'" in command and command.count("--img-size") <= 1


def test_advise_names_the_files_the_scan_left_out(tiny_dataset, capsys):
    (tiny_dataset / "red" / "notes.jpg").write_text("not an image")
    assert main(["advise", str(tiny_dataset), "--img-size", "64", "--json"]) == 0
    sentence = json.loads(capsys.readouterr().out)["dataset_problems"]
    assert sentence.startswith("The dataset scan found 1 problem: 1 file left out of the analysis (red/notes.jpg).")
    assert main(["advise", str(tiny_dataset), "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert " ".join(out.split()).count(sentence) == 1  # wrapped, but every word of it
    assert "`tl-studio scan`" in out  # a command is not split at its hyphen


def test_advise_on_a_missing_folder_is_one_sentence(tmp_path, capsys):
    assert main(["advise", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tl-studio advise:") and "Traceback" not in err


def test_the_commands_import_no_torch_until_they_run():
    code = ("import sys, tl_studio.cli.cmd_lr_find, tl_studio.cli.cmd_advise, tl_studio.cli.main as m; "
            "m.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# `tl-studio advise` as the console entry point runs it, in a process of its own; says whether torch._dynamo
# (0.9 s of imports) was loaded by the end
ADVISE_PROCESS = """
import sys
from tl_studio.entry import main
code = main(["advise", sys.argv[1], "--img-size", "64", "--batch-size", "8", "--json"])
print(code, "torch._dynamo" in sys.modules)
"""


def test_advise_on_stored_features_does_not_import_the_compiler(tiny_dataset, private_cache_dir):
    """The second analysis finds every feature stored and builds no model; its linear probe's L-BFGS would
    import torch._dynamo only to mark itself as never compiled (core/cpu_settings.py)."""
    def advise() -> list[str]:
        out = subprocess.run([sys.executable, "-c", ADVISE_PROCESS, str(tiny_dataset)], capture_output=True,
                             text=True, check=True).stdout
        return out.splitlines()[-1].split()

    assert advise() == ["0", "True"]  # the first builds the model: timm and torchvision import torch._dynamo
    assert advise() == ["0", "False"]


def test_status_line_rewrites_one_line_and_clears_it():
    import io
    from types import SimpleNamespace

    from tl_studio.cli.reporters import StatusLine

    stream = io.StringIO()
    line = StatusLine(stream)
    line.clear()
    assert stream.getvalue() == ""  # nothing shown, nothing to clear
    line(SimpleNamespace(text="Sweeping 3/10"))
    line(SimpleNamespace(text="Sweeping 4/10"))
    line.clear()
    assert stream.getvalue() == "\r\033[KSweeping 3/10\r\033[KSweeping 4/10\r\033[K"


def test_run_with_status_line_returns_the_result_or_none_when_interrupted(capsys):
    from tl_studio.cli.reporters import run_with_status_line

    assert run_with_status_line("advise", lambda progress: 42) == 42

    def interrupted(progress):
        raise KeyboardInterrupt

    assert run_with_status_line("advise", interrupted) is None
    assert capsys.readouterr().err == "tl-studio advise: interrupted\n"
