from tl_studio.core.wording import counted


def test_a_count_takes_the_singular_only_for_one():
    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "wrong prediction") == "1 wrong prediction"
    assert counted(3, "class", "classes") == "3 classes" and counted(1, "class", "classes") == "1 class"
