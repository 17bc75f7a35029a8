"""Batched prediction (core/inference.py): the answers do not depend on the batch size and are the file's
own, for every format; a broken file keeps its one-line record among the others' answers, in input
order; a cancel stops between batches; a file that cannot take a batch gets one image at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.evaluation_helpers import one_torch_thread
from tests.helpers import make_image
from tests.model_file_helpers import tiny_exports

FORMATS = ("pt2", "onnx", "torchscript", "onnx-int8")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One tiny export per format (crop 32, resize 36), and an int8 ONNX file quantised from the ONNX one."""
    folder = tmp_path_factory.mktemp("exports")
    found = {name: path for name, path in tiny_exports(folder).items()}
    found["onnx-int8"] = _int8_copy(found["onnx"], folder / "model.int8.onnx")
    return found


def _int8_copy(fp32, target):
    import onnx

    from tl_studio.core.model_file import METADATA_KEY
    from tl_studio.core.quantize import quantize_onnx

    rng = np.random.default_rng(0)
    quantize_onnx(fp32, target, (rng.random((1, 3, 40, 50), dtype=np.float32) for _ in range(8)))
    model = onnx.load(str(target))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = json.dumps({**json.loads(entry.value), "quantization": {"format": "onnx-int8"}})
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """37 images of many sizes (two batches of 32, the second one short), JPEG and PNG, some large
    enough that the loader decodes the JPEG reduced."""
    folder = tmp_path_factory.mktemp("images")
    sizes = [24, 32, 40, 64, 97, 150]
    paths = []
    for i in range(37):
        suffix = ".png" if i % 3 == 0 else ".jpg"
        colour = ((i * 53) % 256, (i * 97) % 256, (i * 31) % 256)
        paths.append(make_image(folder / f"{i:02d}{suffix}", colour, size=sizes[i % len(sizes)], seed=i))
    return paths


def _load(path):
    from tl_studio.core.model_file import load_model_file

    return load_model_file(path, trust_torchscript=True)


def _predictions(model, paths, plan=None, workers=0, cancel=None):
    from tl_studio.core.predict import predict_paths

    return list(predict_paths(model.predict, model.classes, paths, top_k=2, cancel=cancel, plan=plan,
                              workers=workers))


def _probabilities(predictions) -> np.ndarray:
    return np.array([p.probabilities for p in predictions])


@pytest.mark.parametrize("fmt", ("pt2", "onnx", "torchscript"))
def test_every_full_precision_format_takes_batches_and_the_batch_size_changes_nothing(files, images, fmt):
    from tl_studio.core.inference import plan_for

    model = _load(files[fmt])
    one, many = plan_for(model, 1), plan_for(model, 32)
    assert one.batched and many.batched and many.batch_size == 32, many.note
    by_one, by_many = _predictions(model, images, one), _predictions(model, images, many, workers=1)
    assert [p.path for p in by_many] == [p.path for p in by_one] == [str(p) for p in images]
    assert [p.labels for p in by_many] == [p.labels for p in by_one]
    assert np.abs(_probabilities(by_many) - _probabilities(by_one)).max() <= 1e-5


@pytest.mark.parametrize("fmt", ("pt2", "onnx", "torchscript"))
def test_batched_answers_are_the_files_own_answers_on_each_whole_image(files, images, fmt):
    # PNG images, which both ways decode to the same pixels (a large JPEG is decoded reduced in batches, as
    # in validation); the canvas only moves the crop and resample out of the file, into the loader.
    from tl_studio.core.inference import plan_for

    model = _load(files[fmt])
    pngs = [path for path in images if path.suffix == ".png"]
    whole = _predictions(model, pngs)  # no plan: each image whole, on its own, as before batching
    plan = plan_for(model, 32)
    assert plan.batched, plan.note
    batched = _predictions(model, pngs, plan)
    assert [p.labels[0] for p in batched] == [p.labels[0] for p in whole]
    assert np.abs(_probabilities(batched) - _probabilities(whole)).max() <= 1e-5


def test_an_int8_file_answers_each_image_whole_as_onnx_runtime_does_anywhere(files, images):
    """In batches of canvases an int8 file's integer rounding moved confidences by up to 3.9 points from
    the README's snippet (each photo whole, a JPEG decoded with draft) and changed 2 of 153 "unknown"
    answers; each image whole, decoded as the snippet decodes it, the answers are the snippet's."""
    import onnxruntime
    from PIL import Image, ImageOps

    from tl_studio.core.inference import QUANTIZED_ONE_AT_A_TIME, plan_for

    model = _load(files["onnx-int8"])
    plan = plan_for(model, 32)
    assert not plan.batched and plan.note == QUANTIZED_ONE_AT_A_TIME
    resize = model.metadata["preprocessing"]["resize_size"]
    assert plan.decode_side == resize
    session = onnxruntime.InferenceSession(str(files["onnx-int8"]))
    got = _predictions(model, images, plan, workers=1)
    for path, prediction in zip(images, got):
        photo = Image.open(path)
        photo.draft(None, (resize, resize))  # as the snippet does
        pixels = np.asarray(ImageOps.exif_transpose(photo).convert("RGB"), dtype=np.float32) / 255
        expected = session.run(None, {"images": pixels.transpose(2, 0, 1)[None]})[0][0]
        assert np.abs(np.asarray(prediction.probabilities) - expected).max() <= 1e-6, path


def test_a_broken_file_keeps_its_record_and_the_others_their_answers_in_order(files, images, tmp_path):
    from tl_studio.core.images import ImageLoadError, load_rgb
    from tl_studio.core.inference import plan_for

    model = _load(files["pt2"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images[1].read_bytes()[:300])  # a JPEG cut short
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    paths = [*images[:5], broken, *images[5:9], not_image, *images[9:12]]
    reasons = {}
    for path in (broken, not_image):
        with pytest.raises(ImageLoadError) as error:
            load_rgb(path)
        reasons[str(path)] = error.value.reason
    expected = {p.path: p for p in _predictions(model, images, plan_for(model, 32))}
    for workers in (0, 1):
        got = _predictions(model, paths, plan_for(model, 4), workers=workers)
        assert [p.path for p in got] == [str(p) for p in paths]
        for prediction in got:
            if prediction.path in reasons:
                assert prediction.error == reasons[prediction.path] and not prediction.labels
            else:
                assert prediction.ok and prediction.labels == expected[prediction.path].labels
                assert prediction.probabilities == pytest.approx(expected[prediction.path].probabilities, abs=1e-6)


def test_a_cancel_stops_between_batches_and_keeps_what_was_done(files, images):
    from tl_studio.core.errors import Cancelled
    from tl_studio.core.inference import plan_for
    from tl_studio.core.predict import predict_paths

    model = _load(files["pt2"])
    got = []
    with pytest.raises(Cancelled):
        for prediction in predict_paths(model.predict, model.classes, images, plan=plan_for(model, 4),
                                        cancel=lambda: len(got) >= 8):
            got.append(prediction)
    assert [p.path for p in got] == [str(p) for p in images[:8]]


def test_an_onnx_file_with_a_fixed_batch_of_one_gets_one_image_at_a_time(files, images, tmp_path):
    import onnx

    from tl_studio.core.inference import plan_for

    model_proto = onnx.load(str(files["onnx"]))
    model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # as an old fixed-shape export
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model_proto, str(fixed))
    model = _load(fixed)
    plan = plan_for(model, 32)
    assert not plan.batched and "batch" in plan.note
    assert [p.labels for p in _predictions(model, images[:6], plan)] == \
        [p.labels for p in _predictions(_load(files["onnx"]), images[:6])]


def test_a_file_whose_metadata_names_another_preprocessing_is_not_batched(files):
    from tl_studio.core.inference import plan_for

    model = _load(files["pt2"])
    assert plan_for(model, 8).batched
    model.metadata["preprocessing"] = {**model.metadata["preprocessing"], "resize_size": 48}
    plan = plan_for(model, 8)
    assert not plan.batched and "preprocessing" in plan.note
    model.metadata.pop("preprocessing")
    assert not plan_for(model, 8).batched
