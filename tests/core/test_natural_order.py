"""Model names in the order people count them."""

from tl_studio.core.natural_order import natural_key


def test_numbers_count_and_regnet_sizes_go_by_their_compute():
    names = ["resnet101", "resnet18", "vit_b_32", "vit_b_16", "regnet_x_32gf", "regnet_x_400mf", "regnet_x_1_6gf",
             "regnet_x_800mf", "regnet_x_3_2gf", "efficientnet_v2_s", "efficientnet_b7"]
    assert sorted(names, key=natural_key) == [
        "efficientnet_b7", "efficientnet_v2_s", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf",
        "regnet_x_3_2gf", "regnet_x_32gf", "resnet18", "resnet101", "vit_b_16", "vit_b_32"]
