"""The int8 gate: agreement and accuracy figures, refusal of a model that fails, class-balanced calibration."""

from dataclasses import dataclass

import numpy as np
import pytest

from tl_studio.core import quantize


def _model(answers):
    """A fake model that answers class answers[i] for the i-th image it sees."""
    calls = iter(answers)

    def predict(_image):
        out = np.zeros((1, 3))
        out[0, next(calls)] = 1.0
        return out
    return predict


def _images(labels):
    return [(np.zeros((1, 3, 4, 4), np.float32), label) for label in labels]


def test_identical_models_pass():
    labels = [0, 1, 2, 0, 1] * 20
    check = quantize.compare(_model(labels), _model(labels), _images(labels))
    assert check.passed and check.agreement == 1.0 and check.accuracy_drop == 0.0


def test_two_disagreements_in_a_hundred_fail_the_gate():
    labels = [0, 1, 2, 0, 1] * 20
    int8 = list(labels)
    int8[3], int8[7] = 2, 0  # two images now wrong
    check = quantize.compare(_model(labels), _model(int8), _images(labels))
    assert check.agreement == pytest.approx(0.98) and not check.passed
    assert "FAILED" in check.describe()


def test_accuracy_drop_over_a_point_fails_even_with_high_agreement():
    check = quantize.Int8Check(images=1000, agreement=0.995, fp32_accuracy=0.95, int8_accuracy=0.935)
    assert not check.passed
    assert quantize.Int8Check(1000, 0.995, 0.95, 0.941).passed


@dataclass
class _R:
    path: str
    label: int


def test_calibration_draw_is_balanced_and_seeded():
    records = [_R(f"a{i}", 0) for i in range(100)] + [_R(f"b{i}", 1) for i in range(10)]
    chosen = quantize.pick_calibration_records(records, count=16, seed=3)
    assert sum(r.label == 1 for r in chosen) == 8 and len(chosen) == 16
    assert chosen == quantize.pick_calibration_records(records, count=16, seed=3)


def test_the_stem_and_the_depthwise_convolutions_stay_float(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def conv(name, source, out_channels, in_channels, group=1):
        weight = numpy_helper.from_array(np.ones((out_channels, in_channels // group, 3, 3), np.float32), name + ".w")
        return helper.make_node("Conv", [source, weight.name], [name], name=name, group=group, pads=[1, 1, 1, 1]), weight

    nodes, weights = zip(conv("stem", "images", 8, 3), conv("depthwise", "stem", 8, 8, group=8),
                         conv("pointwise", "depthwise", 4, 8), conv("second_depthwise", "pointwise", 4, 4, group=4))
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("second_depthwise", TensorProto.FLOAT, [1, 4, 8, 8])],
                              initializer=list(weights))
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert quantize.float_convolutions(path) == ["stem", "depthwise", "second_depthwise"]
