"""The hub cache, downloads (progress, cancel, hash check, offline) and importing weight files."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import socket
import threading
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.models

from tl_studio.core import catalog, models, weight_import, weights
from tl_studio.core.errors import Cancelled, UserError, WeightsUnavailableError


@pytest.fixture(scope="module", autouse=True)
def catalog_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_STUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tl_studio_cache"))
        yield


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving the files of its ``root`` folder."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.root, server.url = root, f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _served_weights(server, payload: bytes, name: str | None = None) -> catalog.ModelInfo:
    """resnet18's catalog entry, pointed at a file on the local server (named with its real hash by default)."""
    name = name or f"tiny-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (server.root / name).write_bytes(payload)
    return dataclasses.replace(catalog.get_model_info("resnet18"), weights_url=f"{server.url}/{name}",
                               weights_file=name)


def _checkpoint_files(torch_home: Path) -> list[str]:
    return sorted(p.name for p in (torch_home / "hub" / "checkpoints").iterdir())


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several chunks


def test_download_reports_progress_verifies_and_lands_in_the_hub_cache(torch_home, web_server):
    info = _served_weights(web_server, PAYLOAD)
    calls = []
    path = weights.download_weights(info, progress=lambda done, total: calls.append((done, total)))
    assert path == torch_home / "hub" / "checkpoints" / info.weights_file
    assert path.read_bytes() == PAYLOAD
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls) and len(calls) > 2
    assert _checkpoint_files(torch_home) == [info.weights_file]  # no temporary file left
    assert catalog.weights_status(info) == "cached"


def test_cancel_stops_the_download_and_leaves_nothing(torch_home, web_server):
    info = _served_weights(web_server, PAYLOAD)
    progress = []
    with pytest.raises(Cancelled):
        weights.download_weights(info, progress=lambda d, t: progress.append(d), cancel=lambda: len(progress) > 1)
    assert 0 < progress[-1] < len(PAYLOAD)
    assert _checkpoint_files(torch_home) == []


def test_a_file_that_does_not_match_its_hash_is_not_saved(torch_home, web_server):
    info = _served_weights(web_server, PAYLOAD, name="tiny-deadbeef.pth")
    with pytest.raises(UserError, match="corrupt"):
        weights.download_weights(info)
    assert _checkpoint_files(torch_home) == []


def test_offline_says_which_file_where_and_how_to_import_it(torch_home, monkeypatch):
    def no_network(url, timeout=None):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    info = catalog.get_model_info("resnet18")
    with pytest.raises(WeightsUnavailableError) as caught:
        weights.download_weights(info)
    message = str(caught.value)
    assert info.weights_file in message and info.weights_url in message
    assert "tl-studio weights import resnet18" in message and "Import weights" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert "could not find the download server" in message and "Errno" not in message  # words, not errno
    assert (caught.value.filename, caught.value.url) == (info.weights_file, info.weights_url)
    assert _checkpoint_files(torch_home) == []


def test_an_unreachable_server_is_reported_as_unavailable(torch_home):
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    info = dataclasses.replace(catalog.get_model_info("resnet18"),
                               weights_url=f"http://127.0.0.1:{port}/resnet18-f37072fd.pth")
    with pytest.raises(WeightsUnavailableError, match="resnet18-f37072fd.pth"):
        weights.download_weights(info, timeout=5)
    assert _checkpoint_files(torch_home) == []


def test_http_errors_are_reported_as_unavailable(torch_home, web_server):
    info = dataclasses.replace(_served_weights(web_server, PAYLOAD), weights_url=f"{web_server.url}/gone-1234.pth")
    with pytest.raises(WeightsUnavailableError, match="HTTP 404"):
        weights.download_weights(info)


def test_building_a_model_without_cached_weights_offline_fails_clearly(torch_home, monkeypatch):
    monkeypatch.setattr(weights.urllib.request, "urlopen", _refuse)
    with pytest.raises(WeightsUnavailableError, match="tl-studio weights import resnet18") as caught:
        models.build_model("resnet18", 2)
    assert "no connection (Connection refused); is this computer offline?" in str(caught.value)


def _refuse(url, timeout=None):
    raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))


def test_cached_weights_are_used_without_the_network(torch_home, monkeypatch):
    monkeypatch.setattr(weights.urllib.request, "urlopen", _refuse)
    info = catalog.get_model_info("resnet18")
    cached = torch_home / "hub" / "checkpoints" / info.weights_file
    cached.write_bytes(b"anything")  # like torch.hub, a cached file is not re-hashed
    assert weights.ensure_weights(info) == cached
    assert weights.ensure_weights(catalog.get_model_info("efficientnet_lite0")).is_file()


def test_hash_rule_is_torch_hubs():
    assert weights.HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern
    assert weights.expected_hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert weights.expected_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert weights.expected_hash_prefix("mine.pth") is None


# --- import -------------------------------------------------------------------------------------------------------


def _resnet18_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_import_copies_a_fitting_file_under_the_expected_name(torch_home, tmp_path):
    source = _resnet18_file(tmp_path / "downloaded.pth", seed=1)
    result = weight_import.import_weights("resnet18", source)
    assert result.path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert result.action == "copied" and result.matches_published_hash is False  # random weights, not torchvision's
    assert result.path.read_bytes() == source.read_bytes()
    assert catalog.weights_status(catalog.get_model_info("resnet18")) == "cached"
    assert weight_import.import_weights("resnet18", source).action == "already cached"


def test_import_never_silently_replaces_different_cached_weights(torch_home, tmp_path):
    first = _resnet18_file(tmp_path / "first.pth", seed=1)
    second = _resnet18_file(tmp_path / "second.pth", seed=2)
    cached = weight_import.import_weights("resnet18", first).path
    with pytest.raises(UserError, match="--force"):
        weight_import.import_weights("resnet18", second)
    assert cached.read_bytes() == first.read_bytes()
    assert weight_import.import_weights("resnet18", second, force=True).action == "replaced"
    assert cached.read_bytes() == second.read_bytes()


def test_import_refuses_weights_of_another_architecture(torch_home, tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(UserError, match="does not fit resnet18"):
        weight_import.import_weights("resnet18", tmp_path / "resnet34.pth")
    assert _checkpoint_files(torch_home) == []


def test_import_refuses_files_that_would_run_code_or_are_not_weights(torch_home, tmp_path):
    torch.save({"optimizer": "state", "epoch": 3}, tmp_path / "checkpoint.pth")
    with pytest.raises(UserError, match="not a state dict"):
        weight_import.import_weights("resnet18", tmp_path / "checkpoint.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(UserError, match="holds Python objects .* can run code") as refused:
        weight_import.import_weights("resnet18", tmp_path / "module.pth")
    assert "weights_only=False" not in str(refused.value)  # torch's own advice would be to run the code
    (tmp_path / "text.pth").write_text("not a weights file")
    with pytest.raises(UserError, match="cannot be read as a weights file: torch.save did not write it"):
        weight_import.import_weights("resnet18", tmp_path / "text.pth")
    with pytest.raises(UserError, match="not a file"):
        weight_import.import_weights("resnet18", tmp_path / "missing.pth")
    assert _checkpoint_files(torch_home) == []


def test_the_bundled_model_has_nothing_to_import(torch_home, tmp_path):
    with pytest.raises(UserError, match="ships with its weights"):
        weight_import.import_weights("efficientnet_lite0", tmp_path / "whatever.pth")


class _RunsAShellCommand:
    def __reduce__(self):
        return os.system, ("true",)  # harmless if it ever ran; the load must refuse it anyway


def test_a_weights_file_that_would_run_code_or_is_damaged_gets_its_own_sentence_without_torch_s_advice(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2), "hook": _RunsAShellCommand()}, tmp_path / "code.pth")
    good = tmp_path / "good.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # an incomplete download
    with open(tmp_path / "pickled.pth", "wb") as handle:  # a pickle that torch.save did not write
        pickle.dump({"fc.weight": [0.0]}, handle, protocol=4)
    expected = {"code.pth": "loading those can run code", "cut.pth": "torch.save did not write it, or it is damaged",
                "pickled.pth": "torch.save did not write it, or it is damaged"}
    for name, words in expected.items():
        with pytest.raises(UserError) as refused:
            weights.load_state_dict_file(tmp_path / name)
        message = str(refused.value)
        assert message.startswith(name) and words in message, message
        assert "weights_only=False" not in message and "\n" not in message, message


def test_a_runs_checkpoint_or_model_file_given_as_weights_says_what_it_is_and_what_to_do(tmp_path_factory):
    from tests.evaluation_helpers import tiny_model

    run = tiny_model(tmp_path_factory)
    with pytest.raises(UserError, match=r"best.ckpt is a checkpoint of a TL Studio run, not pretrained weights: .*"
                                        r"--resume") as refused:
        weights.load_state_dict_file(run.run_dir / "best.ckpt")
    assert f"`tl-studio train {run.data_dir} --out {run.run_dir} --resume`" in str(refused.value)  # not DATA_DIR
    with pytest.raises(UserError, match=r"model.pt2 is an exported model file, not pretrained weights: .*predict"):
        weights.load_state_dict_file(run.model_file)
    with pytest.raises(UserError, match="is an exported model file"):
        models.build_model("efficientnet_lite0", 3, weights=run.model_file)
