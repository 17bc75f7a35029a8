"""The sentence a run starts with when the dataset scan found problems: every problem counted, grouped by
what it means for the run, with the first few paths of each group."""

from tl_studio.core.data import Problem
from tl_studio.core.problem_summary import EXAMPLES, problems_sentence


def test_no_problems_give_no_sentence():
    assert problems_sentence(()) is None


def test_every_problem_is_counted_in_the_group_of_what_it_means_for_the_run():
    problems = [Problem("ants/notes.jpg", "Not an image file", "not_image"),
                Problem("bees/cut.jpg", "Truncated image", "truncated"),
                Problem("bees/dup.jpg", "Identical to ants/a.jpg: the same image has two labels", "duplicate"),
                Problem("stray.jpg", "Not inside a class folder", "outside_class"),
                Problem("wasps", "Class 'wasps' has only 1 usable image", "small_class"),
                Problem("odd/x.png", "Corrupt image", "a kind this summary has never heard of")]
    sentence = problems_sentence(problems)
    assert sentence.startswith("The dataset scan found 6 problems: ")
    assert "4 files left out of the run (ants/notes.jpg, bees/cut.jpg, stray.jpg and 1 more)" in sentence
    assert "1 duplicate image with another label or in another split (bees/dup.jpg)" in sentence
    assert "1 class with only one image (wasps)" in sentence
    assert sentence.endswith("`tl-studio scan` or the Data step's Problems tab gives the reason for each.")


def test_one_problem_is_said_in_the_singular():
    sentence = problems_sentence([Problem("a/b.jpg", "Empty file", "empty_file")])
    assert sentence.startswith("The dataset scan found 1 problem: 1 file left out of the run (a/b.jpg).")


def test_a_long_list_names_only_the_first_few():
    problems = [Problem(f"a/{i}.jpg", "Not an image file", "not_image") for i in range(40)]
    sentence = problems_sentence(problems)
    assert f"a/{EXAMPLES - 1}.jpg" in sentence and f"a/{EXAMPLES}.jpg" not in sentence
    assert f"and {40 - EXAMPLES} more" in sentence


def test_a_file_name_that_is_not_utf8_is_shown_byte_by_byte():
    name = b"blue/bad\xff.jpg".decode("utf-8", "surrogateescape")  # as os.listdir gives it
    sentence = problems_sentence([Problem(name, "Not an image file", "not_image")], left_out_of="the evaluation")
    assert "1 file left out of the evaluation (blue/bad\\xff.jpg)" in sentence
    sentence.encode("utf-8")  # printable and writable to the run's event log


def test_the_cli_shows_a_note_s_control_characters_instead_of_obeying_them():
    import io

    from tl_studio.cli.reporters import ProgressBar
    from tl_studio.core.events import FitStart

    stream = io.StringIO()
    note = problems_sentence([Problem("blue/bad\x1b[2J.jpg", "Not an image file", "not_image")])
    ProgressBar(stream).on_fit_start(FitStart("run", ("a", "b"), 8, 2, 1, 1, 1, "CPU", 1, 2, True, None,
                                              notes=(note,)))
    assert "\x1b" not in stream.getvalue() and "blue/bad\\x1b[2J.jpg" in stream.getvalue()
