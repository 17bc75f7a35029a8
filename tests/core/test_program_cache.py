"""Exported programs reused between exports of models of the same structure (core/program_cache.py):
a later export skips the trace, carries its own weights and metadata, and is checked like any other."""

from __future__ import annotations

import zipfile

import pytest
import torch
from torch import nn

from tl_studio.core import export, feature_layout, program_cache
from tl_studio.core.model_file import METADATA_KEY, load_exported_program, load_model_file
from tl_studio.core.preprocess import PreprocessSpec

SPEC = PreprocessSpec(crop_size=32, resize_size=36)


def _network(classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # The BatchNorm after the activation is not folded into the convolution at export (bn_folding.py):
    # its running statistics stay buffers of the program, which the store carries over like weights.
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(8, classes))
    with torch.no_grad():  # running statistics that differ between seeds, as after training
        network[2].running_mean.uniform_(-1, 1)
        network[2].running_var.uniform_(0.5, 2)
    return network.eval()


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.rand(1, 3, 40, 50, generator=generator), torch.rand(1, 3, 37, 33, generator=generator)]


@pytest.fixture
def traces(monkeypatch) -> list[int]:
    """Counts torch.export traces."""
    counted = []
    trace = export._export_program
    monkeypatch.setattr(export, "_export_program", lambda model: counted.append(1) or trace(model))
    return counted


def _export(network, path, classes=("a", "b"), temperature=1.0, spec=SPEC):
    metadata = {"classes": list(classes), "calibration": {"temperature": temperature}}
    return export.export_model(network, spec, metadata, path, "pt2", _images())


def _answers(path, image):
    return torch.as_tensor(load_model_file(path, "pt2").predict(image)).float()


def test_a_second_export_of_the_same_structure_reuses_the_program_with_its_own_weights(tmp_path, traces):
    first, second = _network(seed=0), _network(seed=1)
    _export(first, tmp_path / "first.pt2")
    assert len(traces) == 1 and len(list(program_cache.folder().glob("*.pt2"))) == 1
    report = _export(second, tmp_path / "second.pt2", classes=("x", "y"), temperature=2.0)
    assert len(traces) == 1  # no second trace
    assert report.check.passed
    image = _images()[0]
    reference = export.ExportedClassifier(second, SPEC, 2.0).eval()(image)
    assert torch.allclose(_answers(tmp_path / "second.pt2", image), reference, atol=1e-6)
    assert not torch.allclose(_answers(tmp_path / "first.pt2", image), reference, atol=1e-3)
    assert load_model_file(tmp_path / "second.pt2", "pt2").metadata["classes"] == ["x", "y"]


def test_a_model_file_carries_a_small_example_input_not_the_traced_one(tmp_path, traces):
    _export(_network(seed=0), tmp_path / "first.pt2")
    _export(_network(seed=1), tmp_path / "second.pt2")  # from the stored program
    for name in ("first.pt2", "second.pt2"):
        with zipfile.ZipFile(tmp_path / name) as archive:
            sizes = [entry.file_size for entry in archive.infolist() if "/sample_inputs/" in entry.filename]
        assert sizes and max(sizes) < 100_000  # the traced 2 x 3 x 301 x 257 input is 1.9 MB
        program, _ = load_exported_program(tmp_path / name)
        (example,), _kwargs = program.example_inputs
        assert torch.equal(example, export.stored_example_input())
        assert program.module()(example).shape == (1, 2)  # it is an input the file takes


def test_another_class_count_or_preprocessing_is_traced_afresh(tmp_path, traces):
    _export(_network(classes=2), tmp_path / "a.pt2")
    _export(_network(classes=3), tmp_path / "b.pt2", classes=("a", "b", "c"))
    _export(_network(classes=2), tmp_path / "c.pt2", spec=PreprocessSpec(crop_size=40, resize_size=44))
    assert len(traces) == 3 and len(list(program_cache.folder().glob("*.pt2"))) == 3


def test_a_stored_program_that_fails_the_check_is_forgotten_and_the_model_traced_afresh(tmp_path, traces,
                                                                                        monkeypatch):
    first = _network(seed=0)
    _export(first, tmp_path / "first.pt2")
    # a file written with the first model's weights answers like the first model, not the second
    records_of = program_cache._records_with_weights_of
    stale = export.ExportedClassifier(first, SPEC).eval()
    monkeypatch.setattr(program_cache, "_records_with_weights_of",
                        lambda entry, model, extra_files: records_of(entry, stale, extra_files))
    second = _network(seed=1)
    report = _export(second, tmp_path / "second.pt2")
    assert report.check.passed and len(traces) == 2
    image = _images()[1]
    assert torch.allclose(_answers(tmp_path / "second.pt2", image),
                          export.ExportedClassifier(second, SPEC).eval()(image), atol=1e-6)


def test_an_unreadable_stored_program_is_only_a_miss(tmp_path, traces):
    _export(_network(seed=0), tmp_path / "first.pt2")
    [entry] = program_cache.folder().glob("*.pt2")
    entry.write_bytes(b"PK\x03\x04 not an archive")
    assert _export(_network(seed=1), tmp_path / "second.pt2").check.passed
    assert len(traces) == 2
    model = export.ExportedClassifier(_network(seed=2), SPEC, 1.0).eval()
    assert program_cache.write_with_weights(program_cache.entry_for(model), model, {METADATA_KEY: "{}"},
                                            tmp_path / "third.pt2")


def test_the_least_recently_used_programs_go_first(tmp_path, traces, monkeypatch):
    monkeypatch.setattr(program_cache, "MAX_PROGRAMS", 2)
    for classes in (2, 3, 4):
        _export(_network(classes=classes), tmp_path / f"{classes}.pt2", classes=[str(i) for i in range(classes)])
    assert len(list(program_cache.folder().glob("*.pt2"))) == 2
    _export(_network(classes=2), tmp_path / "again.pt2")  # the oldest was evicted: traced again
    assert len(traces) == 4


def test_the_programs_kept_stay_within_their_byte_bound_the_newest_always_kept(tmp_path, traces, monkeypatch):
    _export(_network(classes=2), tmp_path / "2.pt2", classes=["0", "1"])
    [first] = program_cache.folder().glob("*.pt2")
    monkeypatch.setattr(program_cache, "MAX_BYTES", first.stat().st_size + 1)  # room for one
    _export(_network(classes=3), tmp_path / "3.pt2", classes=["0", "1", "2"])
    [kept] = program_cache.folder().glob("*.pt2")
    assert kept != first


def test_no_programs_are_kept_with_the_cache_turned_off(tmp_path, traces, monkeypatch):
    monkeypatch.setenv(feature_layout.LIMIT_ENV, "0")
    _export(_network(seed=0), tmp_path / "first.pt2")
    _export(_network(seed=1), tmp_path / "second.pt2")
    assert len(traces) == 2 and not program_cache.folder().exists()


def test_the_same_model_exported_twice_gives_the_same_bytes(tmp_path, traces, monkeypatch):
    monkeypatch.setenv(feature_layout.LIMIT_ENV, "0")  # both traced
    _export(_network(seed=0), tmp_path / "a.pt2")
    _export(_network(seed=0), tmp_path / "b.pt2")
    assert len(traces) == 2
    # the archive's root folder is not named after the temporary file each was written to
    with zipfile.ZipFile(tmp_path / "a.pt2") as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"archive"}
    assert (tmp_path / "a.pt2").read_bytes() == (tmp_path / "b.pt2").read_bytes()


def test_a_file_from_the_stored_program_is_the_file_a_trace_writes(tmp_path, traces, monkeypatch):
    _export(_network(seed=0), tmp_path / "first.pt2")
    _export(_network(seed=1), tmp_path / "stored.pt2", classes=("x", "y"), temperature=2.0)
    assert len(traces) == 1
    monkeypatch.setenv(feature_layout.LIMIT_ENV, "0")  # the store off: traced
    _export(_network(seed=1), tmp_path / "traced.pt2", classes=("x", "y"), temperature=2.0)
    assert len(traces) == 2
    assert (tmp_path / "stored.pt2").read_bytes() == (tmp_path / "traced.pt2").read_bytes()


@pytest.mark.parametrize("offset, traced_again", [(0, False), (100, True)])
def test_weights_that_lie_in_a_larger_storage_are_exported_from_the_stored_program_or_traced(
        tmp_path, traces, offset, traced_again):
    _export(_network(seed=0), tmp_path / "first.pt2")
    # as when weights are mapped from one file: the conv's weight is a view into a larger storage, at
    # its start (its own bytes go into the file) or further in (not the stored layout: traced afresh)
    second = _network(seed=1)
    conv = second[0]
    count = conv.weight.numel()
    shared = torch.zeros(offset + count + 100)
    shared[offset:offset + count] = conv.weight.detach().flatten()
    conv.weight = nn.Parameter(shared[offset:offset + count].view_as(conv.weight))
    assert _export(second, tmp_path / "second.pt2").check.passed
    assert len(traces) == (2 if traced_again else 1)
    image = _images()[0]
    assert torch.allclose(_answers(tmp_path / "second.pt2", image),
                          export.ExportedClassifier(second, SPEC).eval()(image), atol=1e-6)


def test_a_stored_program_the_writer_cannot_copy_is_only_a_miss(tmp_path, traces, monkeypatch):
    _export(_network(seed=0), tmp_path / "first.pt2")

    def refuse(records, path):
        path.write_bytes(b"half a file")
        raise RuntimeError("a record this torch does not take")

    monkeypatch.setattr(program_cache, "_write_records", refuse)
    second = _network(seed=1)
    assert _export(second, tmp_path / "second.pt2").check.passed
    assert len(traces) == 2  # traced afresh over the half-written file
    image = _images()[0]
    assert torch.allclose(_answers(tmp_path / "second.pt2", image),
                          export.ExportedClassifier(second, SPEC).eval()(image), atol=1e-6)


def test_a_network_exported_with_its_batchnorms_folded_reuses_its_program(tmp_path, traces):
    def foldable(seed):
        torch.manual_seed(seed)
        network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                nn.Flatten(), nn.Linear(8, 2))
        with torch.no_grad():
            network[1].running_mean.uniform_(-1, 1)
            network[1].running_var.uniform_(0.5, 2)
        return network.eval()

    _export(foldable(0), tmp_path / "first.pt2")
    second = foldable(1)
    assert _export(second, tmp_path / "second.pt2").check.passed
    assert len(traces) == 1
    image = _images()[0]
    assert torch.allclose(_answers(tmp_path / "second.pt2", image),
                          export.ExportedClassifier(second, SPEC).eval()(image), atol=1e-6)
    assert not any("running_mean" in name for name in load_exported_program(tmp_path / "second.pt2")[0].state_dict)
