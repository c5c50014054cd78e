"""The toy benchmarks built from easy-VQA's test split (installed under .venv/toy-parts by `make test`)."""

import json
from collections import Counter

import pytest

from llava_patch.eval import easyvqa
from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.eval.files import read_json, read_jsonl
from llava_patch.eval.minibench import SHORT_ANSWER
from llava_patch.eval.runner import score_answers
from llava_patch.models.toy_parts import EASY_VQA, part

IMAGES = 40  # more than the 36 (shape, colour) strata (unknowns included), few enough to build quickly

YES_NO, SHORT = get_benchmark("easyvqa_yesno"), get_benchmark("easyvqa")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return easyvqa.build_easyvqa(tmp_path_factory.mktemp("data"), images=IMAGES, seed=3)


def _source():
    return read_json(part(EASY_VQA) / "test" / "questions.json")


def _chosen(root) -> set[int]:
    """The chosen test images: each benchmark gets those its questions show (a few have no yes/no or no
    "what" question)."""
    return {int(path.stem) for benchmark in (YES_NO, SHORT) for path in benchmark.image_path(root, "").iterdir()}


def test_the_builder_writes_both_benchmarks_in_llavas_layout(built):
    assert len(_chosen(built)) == IMAGES
    for split in YES_NO.splits:
        assert YES_NO.file(built, "labels", split=split).is_file()
    assert SHORT.file(built, "questions").is_file()
    # The runner's loaders read them: every question names a copied image and ends with LLaVA's suffix.
    for benchmark in (YES_NO, SHORT):
        questions = benchmark.questions(built)
        assert {question.image for question in questions} == {path.name for path in benchmark.image_path(built, "").iterdir()}
        assert all(question.text.endswith("\n" + SHORT_ANSWER) and question.text[0].isupper() for question in questions)
        assert not any(benchmark.image_path(built, question.image).is_symlink() for question in questions)


def test_every_question_of_the_chosen_images_goes_in_its_split(built):
    chosen = _chosen(built)
    expected = Counter()
    for question, answer, image_id in _source():
        if image_id in chosen:
            expected[easyvqa.question_kind(question, answer) if answer in ("yes", "no") else "short"] += 1
    rows = [row for _, row in read_jsonl(YES_NO.question_path(built))]
    assert Counter(row["category"] for row in rows) == {split: expected[split] for split in YES_NO.splits}
    assert len(read_json(SHORT.file(built, "questions"))) == len(SHORT.questions(built)) == expected["short"]
    # question ids are the positions in easy-VQA's file, in file order
    assert [row["question_id"] for row in rows] == sorted(row["question_id"] for row in rows)
    source = _source()
    for row in rows:
        question, answer, image_id = source[row["question_id"]]
        assert row["image"] == f"{image_id}.png" and row["text"] == easyvqa.format_question(question)


@pytest.mark.parametrize("question, answer, kind", [
    ("is there a circle?", "no", "shape"),
    ("is a red shape present?", "yes", "color"),
    ("is there not a circle in the image?", "yes", "negation"),
    ("is no teal shape present?", "no", "negation"),
    ("what color is the triangle?", "blue", "color"),
    ("what is the red shape?", "rectangle", "shape"),
])
def test_question_kinds(question, answer, kind):
    assert easyvqa.question_kind(question, answer) == kind


def test_every_yes_no_template_falls_in_a_split_of_the_record():
    kinds = {easyvqa.question_kind(question, answer) for question, answer, _ in _source() if answer in ("yes", "no")}
    assert kinds == set(YES_NO.splits) == {"shape", "color", "negation"}


def test_the_sample_is_stratified_and_deterministic(tmp_path, built):
    again = easyvqa.build_easyvqa(tmp_path / "again", images=IMAGES, seed=3)
    for relative in ("easyvqa_yesno/llava_easyvqa_yesno.jsonl", "easyvqa/llava_easyvqa.jsonl",
                     "easyvqa/easyvqa_questions.json", "easyvqa_yesno/labels/easyvqa_negation.json"):
        assert (again / relative).read_bytes() == (built / relative).read_bytes()
    other = easyvqa.build_easyvqa(tmp_path / "other", images=IMAGES, seed=4)
    assert (other / "easyvqa/llava_easyvqa.jsonl").read_bytes() != (built / "easyvqa/llava_easyvqa.jsonl").read_bytes()

    strata = easyvqa._strata([tuple(row) for row in _source()])
    chosen = [strata[image_id] for image_id in _chosen(built)]
    # each of the 36 strata gets its share of 40 images within one: here at most two of one stratum
    assert len(set(strata.values())) == 36 and max(Counter(chosen).values()) <= 2
    shapes = Counter(shape for shape, _ in chosen)
    assert all(abs(shapes[shape] - IMAGES * share / len(strata)) <= 3
               for shape, share in Counter(shape for shape, _ in strata.values()).items())


def test_it_never_overwrites(built):
    with pytest.raises(FileExistsError, match="easyvqa_yesno: exists"):
        easyvqa.build_easyvqa(built, images=1)
    with pytest.raises(ValueError, match="has 1000 images"):
        easyvqa.build_easyvqa(built / "new", images=1001)


def _answer(path, benchmark, root, reply):
    rows = [{"question_id": q.question_id, "prompt": q.text, "text": reply(q), "answer_id": str(n), "model_id": "x",
             "metadata": {}} for n, q in enumerate(benchmark.questions(root))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_perfect_answers_score_full_marks_and_wrong_ones_less(tmp_path, built):
    labels = {row["question_id"]: row["label"] for split in YES_NO.splits
              for _, row in read_jsonl(YES_NO.file(built, "labels", split=split))}
    truth = read_json(SHORT.file(built, "questions"))

    perfect = score_answers("easyvqa_yesno", _answer(tmp_path / "yn.jsonl", YES_NO, built,
                                                     lambda q: labels[q.question_id].capitalize() + "."), built)
    assert perfect["headline"] == perfect["f1_mean"] == 100.0
    assert all(perfect[split]["f1"] == 100.0 for split in YES_NO.splits)
    always_yes = score_answers("easyvqa_yesno", _answer(tmp_path / "yes.jsonl", YES_NO, built, lambda q: "Yes"), built)
    assert always_yes["f1_mean"] < 100.0 and always_yes["shape"]["yes_ratio"] == 100.0

    perfect = score_answers("easyvqa", _answer(tmp_path / "s.jsonl", SHORT, built,
                                               lambda q: truth[q.question_id]["answer"].capitalize() + "."), built)
    assert perfect["headline"] == perfect["accuracy"] == 100.0
    wrong = score_answers("easyvqa", _answer(tmp_path / "w.jsonl", SHORT, built, lambda q: "circle"), built)
    assert 0.0 < wrong["accuracy"] < 100.0  # some shape questions are about circles


def test_training_questions_are_asked_as_the_benchmarks_ask_them(built):
    train = easyvqa.training_questions()
    assert len(train) == 38575 and all(image.is_file() for image, _, _ in train[:50])
    assert all(text.endswith("\n" + SHORT_ANSWER) for _, text, _ in train)
    test = easyvqa.training_questions("test")
    asked = {q.text for benchmark in (YES_NO, SHORT) for q in benchmark.questions(built)}
    assert asked <= {text for _, text, _ in test}
    with pytest.raises(ValueError, match="unknown easy-VQA split 'val'"):
        easyvqa.training_questions("val")


def test_the_pope_scorer_still_refuses_unknown_splits(tmp_path):
    pope = get_benchmark("pope")
    assert pope.splits == ("adversarial", "popular", "random")
    question = {"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "category": "shape"}
    pope.question_path(tmp_path).parent.mkdir(parents=True)
    pope.question_path(tmp_path).write_text(json.dumps(question) + "\n")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "text": "Yes"}) + "\n")
    with pytest.raises(ValueError, match=r"unknown POPE split\(s\) \['shape'\]; expected \['adversarial', 'popular', 'random'\]"):
        score_answers("pope", answers, tmp_path)


def test_calibration_questions_come_from_the_training_split_in_llavas_question_format(tmp_path):
    from llava_patch.calibration.fitprune import read_questions

    path = easyvqa.write_calibration_questions(tmp_path / "calibration", 12, seed=0)
    assert path == tmp_path / "calibration" / "questions.jsonl" and not (tmp_path / "calibration.partial").exists()
    rows = [row for _, row in read_jsonl(path)]
    assert read_questions(path) == rows and len(rows) == 12 and all(set(row) == {"question_id", "image", "text"} for row in rows)
    train = read_json(part(EASY_VQA) / "train" / "questions.json")
    assert [row["question_id"] for row in rows] == sorted(row["question_id"] for row in rows)  # file order
    images = tmp_path / "calibration" / "images"
    for row in rows:  # the training split's question, asked as the benchmarks ask, with its training image
        question, _, image_id = train[row["question_id"]]
        assert row["image"] == f"{image_id}.png" and row["text"] == easyvqa.format_question(question)
        assert (images / row["image"]).read_bytes() == (part(EASY_VQA) / "train" / "images" / row["image"]).read_bytes()
    assert len({row["image"] for row in rows}) == 12 == len(list(images.iterdir()))  # one question per image
    again = easyvqa.write_calibration_questions(tmp_path / "again", 12, seed=0)
    other = easyvqa.write_calibration_questions(tmp_path / "other", 12, seed=1)
    assert again.read_bytes() == path.read_bytes() != other.read_bytes()
    with pytest.raises(FileExistsError, match="calibration: exists"):
        easyvqa.write_calibration_questions(tmp_path / "calibration", 12)
    with pytest.raises(ValueError, match="training split has 4000 images"):
        easyvqa.write_calibration_questions(tmp_path / "big", 4001)
