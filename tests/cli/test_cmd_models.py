"""`tl-studio models` and `tl-studio weights`: output, exit codes, and no torch import once the catalog is cached."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from tl_studio.cli.main import main
from tl_studio.core import catalog, weights

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def catalog_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_STUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tl_studio_cache"))
        yield


def test_models_json_lists_every_model_with_its_weights_status(capsys, torch_home):
    resnet18 = catalog.get_model_info("resnet18")
    (torch_home / "hub" / "checkpoints" / resnet18.weights_file).write_bytes(b"")
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows)[0] == "efficientnet_lite0" and len(rows) == len(catalog.list_models())
    assert rows["efficientnet_lite0"]["weights_status"] == "bundled"
    assert rows["resnet18"]["weights_status"] == "cached"
    assert rows["resnet34"]["weights_status"] == "missing"
    assert {key: value for key, value in rows["resnet18"].items() if key != "weights_status"} == resnet18.to_dict()


def test_models_table_says_what_works_offline(capsys, torch_home):
    assert main(["models", "--filter", "ResNet"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "PARAMS", "ACC@1", "GFLOPS", "INPUT", "WEIGHTS"]
    info = catalog.get_model_info("resnet18")
    resnet18 = next(line for line in lines if line.startswith("resnet18 "))
    assert resnet18.split()[1:] == [f"{info.num_params / 1e6:.1f}M", f"{info.acc1:.1f}", f"{info.gflops:.2f}",
                                    "224", "download", f"{info.file_bytes / 1e6:.1f}", "MB"]
    assert "efficientnet_lite0" not in out
    # the default is not listed: no footnote for its mark; none of these works offline, said so
    assert "* default" not in out and f"None of these {len(lines) - 4} works offline yet" in out
    assert "PARAMS: parameters as published, with the 1,000-class ImageNet head" in out


def test_models_table_marks_the_bundled_default(capsys, torch_home):
    assert main(["models", "--filter", "lite0"]) == 0
    out = capsys.readouterr().out
    line = out.splitlines()[1]
    assert line.startswith("efficientnet_lite0 *") and line.endswith("bundled")
    assert "* default.\nIt works offline now.\n" in out


def test_a_filter_matching_nothing_says_so(capsys):
    assert main(["models", "--filter", "no-such-thing"]) == 1
    assert "No model matches" in capsys.readouterr().err


def test_models_does_not_import_torch_once_the_catalog_is_cached(tmp_path):
    env = {**_env(), "TL_STUDIO_CACHE_DIR": str(tmp_path / "cache")}
    prime = "from tl_studio.core import catalog; catalog.list_models()"
    subprocess.run([sys.executable, "-c", prime], check=True, cwd=REPO, env=env)
    code = ("import sys; from tl_studio.cli.main import main; main(['models','--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "efficientnet_lite0"


def _env() -> dict:
    import os

    return dict(os.environ)


def test_models_are_listed_by_name_as_people_count(capsys, torch_home):
    """Sorted as text, the list read resnet101, resnet152, resnet18, resnet34."""
    from tl_studio.core.natural_order import natural_key

    assert main(["models", "--filter", "resnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines[1:lines.index("")]]
    assert listed == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                      "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
    assert main(["models", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert names[0] == catalog.DEFAULT_MODEL and names[1:] == sorted(names[1:], key=natural_key)
    assert names.index("vit_b_16") < names.index("vit_b_32")
    efficientnets = [name for name in names[1:] if name.startswith("efficientnet")]
    assert efficientnets == [*(f"efficientnet_b{n}" for n in range(8)), "efficientnet_v2_l", "efficientnet_v2_m",
                             "efficientnet_v2_s"]


# --- tl-studio weights ---------------------------------------------------------------------------------------------


def test_weights_download_offline_prints_one_line_and_exits_2(capsys, torch_home, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    assert main(["weights", "download", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "resnet18-f37072fd.pth" in err and "tl-studio weights import resnet18" in err


def test_weights_download_shows_progress_and_saves_the_file(capsys, torch_home, tmp_path, monkeypatch):
    payload = b"x" * 300_000
    import hashlib

    name = f"resnet18-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (tmp_path / name).write_bytes(payload)
    local = dataclasses.replace(catalog.get_model_info("resnet18"), weights_url=(tmp_path / name).as_uri(),
                                weights_file=name)
    monkeypatch.setattr(catalog, "get_model_info", lambda _name: local)
    assert main(["weights", "download", "resnet18"]) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err and "saved to" in captured.out
    assert (torch_home / "hub" / "checkpoints" / name).read_bytes() == payload
    assert main(["weights", "download", "resnet18"]) == 0
    assert "already on this machine" in capsys.readouterr().out


def test_weights_download_ctrl_c_cancels_cleanly(capsys, torch_home, monkeypatch):
    def interrupted(url, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(weights.urllib.request, "urlopen", interrupted)
    assert main(["weights", "download", "resnet18"]) == 130
    assert "cancelled" in capsys.readouterr().err
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []


def test_weights_import_copies_and_then_reports_nothing_to_do(capsys, torch_home, tmp_path):
    import torch
    import torchvision.models

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    assert main(["weights", "import", "resnet18", str(tmp_path / "r18.pth")]) == 0
    out = capsys.readouterr().out
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"Weights copied to {cached}." in out and "differs from the one torchvision publishes" in out
    mask = os.umask(0o022)
    os.umask(mask)
    assert cached.stat().st_mode & 0o777 == 0o666 & ~mask  # mkstemp's 0600 hid it from others sharing the cache
    assert main(["weights", "import", "resnet18", str(tmp_path / "r18.pth")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    other = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(other, tmp_path / "other.pth")
    assert main(["weights", "import", "resnet18", str(tmp_path / "other.pth"), "--force"]) == 0
    assert f"Weights at {cached} replaced with {tmp_path / 'other.pth'}." in capsys.readouterr().out


def test_weights_import_of_a_wrong_file_is_a_one_line_error(capsys, torch_home, tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["weights", "import", "resnet18", str(tmp_path / "junk.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tl-studio weights:")
