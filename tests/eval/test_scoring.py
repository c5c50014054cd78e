"""Local benchmark scorers and submission writers on tiny ground-truth files in the official formats.

Every expected metric is worked out by hand in the comments next to it.
"""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.eval.easyvqa import build_easyvqa
from llava_patch.eval.scoring import benchmarks, score, submission_benchmarks, write_submission
from llava_patch.eval.scoring.mmbench import parse_option
from llava_patch.eval.scoring.mme import parse_yes_no as mme_yes_no
from llava_patch.eval.scoring.pope import parse_yes_no as pope_yes_no
from llava_patch.eval.scoring.sqa import parse_letter
from llava_patch.eval.scoring.vqa_accuracy import normalize_answer, vqa_accuracy

OCR_SUFFIX = "Answer the question using a single word or phrase."


# ---------------------------------------------------------------------------------------- helpers


def write_answers(path: Path, rows) -> Path:
    """A LLaVA answer file from (question_id, text) or (question_id, text, prompt) tuples."""
    with path.open("w", encoding="utf-8") as handle:
        for number, (question_id, text, *prompt) in enumerate(rows):
            line = {
                "question_id": question_id,
                "prompt": prompt[0] if prompt else "question?",
                "text": text,
                "answer_id": f"ans{number}",
                "model_id": "tiny",
                "metadata": {},
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


MMBENCH_COLUMNS = [
    "index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category", "comment", "split",
]  # fmt: skip


def write_mmbench_tsv(path: Path, rows, with_answer=True) -> Path:
    """An MMBench TSV; rows are (index, [A, B, C, D], answer); images are long base64-like strings."""
    columns = MMBENCH_COLUMNS if with_answer else [c for c in MMBENCH_COLUMNS if c != "answer"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for index, options, answer in rows:
            values = {
                "index": index, "question": f"question {index}?", "hint": "nan", "answer": answer,
                "category": "cat", "image": "iVBOR" + "A" * 200_000, "source": "src",
                "l2-category": "l2", "comment": "nan", "split": "dev" if with_answer else "test",
            }  # fmt: skip
            values.update(zip("ABCD", options, strict=True))
            writer.writerow([values[column] for column in columns])
    return path


# ---------------------------------------------------------------------------------------- API


def test_registered_benchmarks():
    assert benchmarks() == sorted(["gqa", "textvqa", "pope", "sqa_img", "mme", "seed", "mmbench", "mmbench_cn", "vqav2_val",
                                   "easyvqa_yesno", "easyvqa"])
    assert submission_benchmarks() == ["mmbench", "mmbench_cn", "mmvet", "vizwiz", "vqav2"]


def test_unknown_benchmark_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'vqa'.*gqa.*vqav2_val"):
        score("vqa", tmp_path / "a.jsonl", tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark 'gqa'.*mmvet"):
        write_submission("gqa", tmp_path / "a.jsonl", tmp_path, tmp_path / "out.json")


def test_missing_ground_truth_names_the_path(tmp_path):
    answers = write_answers(tmp_path / "answers.jsonl", [("1", "yes")])
    with pytest.raises(FileNotFoundError, match=r"gqa/data/testdev_balanced_questions\.json"):
        score("gqa", answers, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pope/llava_pope_test\.jsonl"):
        score("pope", answers, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"mmbench_cn/mmbench_dev_cn_20231003\.tsv.*mmbench/mmbench_dev_cn_20231003\.tsv"):
        score("mmbench_cn", answers, tmp_path)


def test_malformed_answer_line_names_file_and_line(tmp_path, gqa_root):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"question_id": "q1", "text": "dog"}\n{"question_id": "q2", "text": \n')
    with pytest.raises(ValueError, match=r"answers\.jsonl, line 2: malformed JSON"):
        score("gqa", answers, gqa_root)
    answers.write_text('{"question_id": "q1", "text": "dog"}\n\n{"question_id": "q2"}\n')
    with pytest.raises(ValueError, match=r"answers\.jsonl, line 3: an answer needs"):
        score("gqa", answers, gqa_root)
    answers.write_text("\n")
    with pytest.raises(ValueError, match="no answers"):
        score("gqa", answers, gqa_root)


def test_unknown_and_repeated_question_ids(tmp_path, gqa_root):
    answers = write_answers(tmp_path / "answers.jsonl", [("q1", "dog"), ("q404", "cat")])
    with pytest.raises(ValueError, match=r"line 2: question 'q404' is not in the ground truth"):
        score("gqa", answers, gqa_root)
    answers = write_answers(tmp_path / "answers.jsonl", [("q1", "dog"), ("q1", "cat")])
    with pytest.raises(ValueError, match=r"line 2: question 'q1' is answered twice \(also .*line 1\)"):
        score("gqa", answers, gqa_root)


# ---------------------------------------------------------------------------------------- VQA normalisation


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("a dog", "dog"),
        ("The Dog.", "dog"),
        ("an apple", "apple"),
        ("two", "2"),
        ("Two dogs.", "2 dogs"),
        ("none", "0"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),
        ("yes!", "yes"),
        ("stop!", "stop"),
        ("hello-world", "hello world"),  # no space beside "-": replaced by a space
        ("hello - world", "hello world"),  # a space beside it: deleted
        ("(left)", "left"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("the cat's toy", "cat 's toy"),
        ("Yes\n", "yes"),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_vqa_accuracy_leave_one_out():
    # k humans agree: the k agreeing subsets see k-1 matches, the 10-k others see k.
    # k=1: 9·(1/3)/10 = 0.3; k=2: (2·1/3 + 8·2/3)/10 = 0.6; k=3: (3·2/3 + 7·1)/10 = 0.9; k=4: 1.
    for agreeing, expected in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]:
        humans = ["dog"] * agreeing + ["cat"] * (10 - agreeing)
        assert vqa_accuracy("Dog.", humans) == pytest.approx(expected)
    assert vqa_accuracy("two", ["2", "2", "two", "3", "3", "3", "3", "3", "3", "3"]) == pytest.approx(0.9)


def _reference_m4c():
    spec = importlib.util.find_spec("llava")
    if spec is None or spec.origin is None:
        pytest.skip("the original LLaVA package is not installed")
    path = Path(spec.origin).parent / "eval" / "m4c_evaluator.py"
    module_spec = importlib.util.spec_from_file_location("reference_m4c_evaluator", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_normalisation_matches_llava_m4c_evaluator():
    reference = _reference_m4c()
    processor = reference.EvalAIAnswerProcessor()
    samples = [
        "a dog", "Two.", "dont", "couldnt've", "couldntve", "somebody'd", "y'allll", "hes here", "1,000.5",
        "x.y.z", "A (big) [red] {ball}!", "semi;colon", "@home", "well - known", "The answer is: ten",
        "it's 5 o'clock", "oclock", "'twas", "twas", "None of them", "\tTHE\nEnd.", "." * 40,
    ]  # fmt: skip
    for sample in samples:
        assert normalize_answer(sample) == processor(sample), sample
    evaluator = reference.TextVQAAccuracyEvaluator()
    humans = ["2", "two", "3", "3", "a dog", "dog", "dog", "2", "cat", "Dog."]
    for prediction in ["2", "dog", "3", "cat", "fish"]:
        expected = evaluator.eval_pred_list([{"pred_answer": prediction, "gt_answers": humans}])
        assert vqa_accuracy(prediction, humans) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------- GQA


@pytest.fixture
def gqa_root(tmp_path):
    def question(answer, structural, balanced=True):
        return {"answer": answer, "isBalanced": balanced, "types": {"structural": structural, "semantic": "obj"}}

    write_json(
        tmp_path / "data" / "gqa" / "data" / "testdev_balanced_questions.json",
        {
            "q1": question("dog", "query"),
            "q2": question("yes", "verify"),
            "q3": question("red", "query"),
            "q4": question("no", "logical"),
            "q5": question("left", "query"),  # unanswered
            "q6": question("two", "query"),
            "q7": question("cat", "query", balanced=False),
        },
    )
    return tmp_path / "data"


def test_gqa_exact_match(tmp_path, gqa_root):
    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            ("q1", "Dog."),  # → "dog": right
            ("q2", "Yes"),  # → "yes": right
            ("q3", "a red"),  # GQA removes no articles: wrong
            ("q4", "yes"),  # wrong
            ("q6", "2"),  # no number words either: wrong
            ("q7", "cat"),  # not balanced: not counted
        ],
    )
    result = score("gqa", answers, gqa_root, allow_partial=True)  # q5 unanswered: scored as wrong
    assert result["accuracy"] == pytest.approx(100 / 3)  # 2 of 6 balanced
    assert result["headline"] == result["accuracy"]
    assert result["binary_accuracy"] == pytest.approx(50.0)  # q2 right, q4 wrong
    assert result["open_accuracy"] == pytest.approx(25.0)  # q1 right; q3, q6 wrong, q5 missing
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (5, 1, 6)


# ---------------------------------------------------------------------------------------- TextVQA


def test_textvqa_accuracy(tmp_path):
    def item(question_id, image_id, question, answers):
        return {"question_id": question_id, "image_id": image_id, "question": question, "answers": answers, "set_name": "val"}

    root = tmp_path / "data"
    write_json(
        root / "textvqa" / "TextVQA_0.5.1_val.json",
        {
            "dataset_type": "val",
            "data": [
                item(101, "img1", "What brand is this?", ["sony"] * 4 + ["canon"] * 6),
                item(102, "img1", "How many cameras?", ["2", "2", "two"] + ["3"] * 7),
                item(103, "img2", "What animal is shown?", ["a dog", "dog"] + ["cat"] * 8),
                item(104, "img3", "What does the sign say?", ["stop!"] + ["go"] * 9),
                item(105, "img4", "Is it open?", ["yes"] * 10),
                item(106, "img5", "Unanswered?", ["x"] * 10),
            ],
        },
    )

    def ocr_prompt(question, tokens):
        return f"{question}\nReference OCR token: {tokens}\n{OCR_SUFFIX}"

    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            ("img1", "Sony", ocr_prompt("What brand is this?", "SONY, camera")),  # 4 agree → 1.0
            ("img1", "Two.", ocr_prompt("How many cameras?", "2")),  # "2" ×3 after normalising → 0.9
            ("img2", "The dog", f"Reference OCR token: DOG\nWhat animal is shown?\n{OCR_SUFFIX}"),  # 2 → 0.6
            ("img3", "stop", f"What does the sign say?\n{OCR_SUFFIX}"),  # "stop!" → "stop": 1 → 0.3
            (105, "no", ""),  # matched by TextVQA question id; wrong → 0
        ],
    )
    result = score("textvqa", answers, root, allow_partial=True)  # 106 unanswered: scored as wrong
    assert result["accuracy"] == pytest.approx(100 * (1.0 + 0.9 + 0.6 + 0.3 + 0.0 + 0.0) / 6)  # 46.67
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (5, 1, 6)

    unknown = write_answers(tmp_path / "unknown.jsonl", [("img1", "x", ocr_prompt("What colour is it?", "red"))])
    with pytest.raises(ValueError, match=r"\('img1', 'what colour is it\?'\) .* not in the ground truth"):
        score("textvqa", unknown, root)


# ---------------------------------------------------------------------------------------- POPE


@pytest.fixture
def pope_root(tmp_path):
    root = tmp_path / "data"
    splits = {
        "adversarial": [("a1.jpg", "dog", "yes"), ("a1.jpg", "cat", "yes"), ("a2.jpg", "car", "no"), ("a2.jpg", "bus", "no")],
        "popular": [("p1.jpg", "dog", "yes"), ("p1.jpg", "cat", "no")],
        "random": [("r1.jpg", "dog", "yes"), ("r2.jpg", "cat", "no")],
    }
    llava_questions = []
    for split, rows in splits.items():
        labels = []
        for number, (image, thing, label) in enumerate(rows, start=1):
            text = f"Is there a {thing} in the image?"
            labels.append({"question_id": number, "image": image, "text": text, "label": label})
            llava_questions.append(
                {"question_id": len(llava_questions) + 1, "image": image, "text": f"{text}\n{OCR_SUFFIX}", "category": split}
            )
        write_jsonl(root / "pope" / "coco" / f"coco_pope_{split}.json", labels)
    write_jsonl(root / "pope" / "llava_pope_test.jsonl", llava_questions)
    return root


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("Yes, there is a dog.", "yes"),
        ("There is not a dog in the image.", "no"),
        ("No", "no"),
        ("No.", "no"),
        ("no, there is none", "no"),
        ("Yes. No dog though.", "yes"),  # only the first sentence counts
        ("Nope", "yes"),  # whole words only
        ("NO", "yes"),  # exactly "No", "no" or "not"
    ],
)
def test_pope_yes_no_parsing(text, parsed):
    assert pope_yes_no(text) == parsed


def test_pope_metrics_per_split_and_f1_mean(tmp_path, pope_root):
    # LLaVA question ids: adversarial 1-4, popular 5-6, random 7-8; answers out of order.
    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            (8, "Yes, there is."),  # random, label no → FP
            (1, "Yes, there is a dog."),  # adversarial, yes → TP
            (2, "There is not a cat in the image."),  # adversarial, yes → FN
            (3, "No."),  # adversarial, no → TN
            (4, "Yes"),  # adversarial, no → FP
            (5, "Yes"),  # popular, yes → TP
            (6, "no, there is none"),  # popular, no → TN
            (7, "Yes. No doubt."),  # random, yes → TP
        ],
    )
    result = score("pope", answers, pope_root)
    adversarial = result["adversarial"]  # TP 1, FP 1, TN 1, FN 1
    assert (adversarial["tp"], adversarial["fp"], adversarial["tn"], adversarial["fn"]) == (1, 1, 1, 1)
    for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        assert adversarial[key] == pytest.approx(50.0)
    popular = result["popular"]  # TP 1, TN 1
    assert [popular[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")] == pytest.approx([100, 100, 100, 100, 50])
    random_split = result["random"]  # TP 1, FP 1: P 50, R 100, F1 = 2·50·100/150
    assert [random_split[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")] == pytest.approx(
        [50, 50, 100, 200 / 3, 100]
    )
    assert result["f1_mean"] == pytest.approx((50 + 100 + 200 / 3) / 3)  # 72.22
    assert result["headline"] == result["f1_mean"]
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (8, 0, 8)


def test_pope_refuses_misaligned_label_files(tmp_path, pope_root):
    label_file = pope_root / "pope" / "coco" / "coco_pope_popular.json"
    rows = [json.loads(line) for line in label_file.read_text().splitlines()]
    rows[0]["image"] = "elsewhere.jpg"
    write_jsonl(label_file, rows)
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "yes")])
    with pytest.raises(ValueError, match="does not pair with"):
        score("pope", answers, pope_root)


# ---------------------------------------------------------------------------------------- ScienceQA


@pytest.mark.parametrize(
    "text, letter",
    [
        ("A", "A"),
        ("A.", "A"),
        ("C. a cat", "C"),
        ("The answer is B.", "B"),
        ("I think so. The answer is D", "D"),
        ("The answer is B. The answer is C.", None),  # two answers
        ("B is right", None),
        ("", None),
    ],
)
def test_sqa_letter_parsing(text, letter):
    assert parse_letter(text) == letter


def test_sqa_image_and_overall_accuracy(tmp_path):
    root = tmp_path / "data"

    def problem(answer, n_choices, image):
        return {"question": "q?", "choices": [f"c{i}" for i in range(n_choices)], "answer": answer, "image": image, "split": "test"}

    write_json(
        root / "scienceqa" / "problems.json",
        {
            "p1": problem(1, 3, "image.png"),
            "p2": problem(0, 2, "image.png"),
            "p3": problem(2, 4, "image.png"),
            "p4": problem(1, 2, None),
            "p5": problem(0, 2, None),
            "p6": problem(0, 2, "image.png"),  # unanswered
            "p7": problem(0, 2, "image.png"),  # train split
            "p8": problem(0, 2, "image.png"),  # in no split
        },
    )
    write_json(root / "scienceqa" / "pid_splits.json", {"train": ["p7"], "test": ["p1", "p2", "p3", "p4", "p5", "p6"]})
    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            ("p1", "B"),  # image, right
            ("p2", "The answer is A."),  # image, right
            ("p3", "A. c0"),  # image, wrong (answer C)
            ("p4", "B."),  # no image, right
            ("p5", "I think it's A"),  # no image, no letter → wrong
            ("p7", "B"),  # train split: ignored, as eval_science_qa.py does
        ],
    )
    result = score("sqa_img", answers, root, allow_partial=True)  # p6 unanswered: scored as wrong
    assert result["image_accuracy"] == pytest.approx(50.0)  # 2 of 4 image questions
    assert result["headline"] == result["image_accuracy"]
    assert result["accuracy"] == pytest.approx(50.0)  # 3 of 6
    assert (result["n_image_answered"], result["n_answered"], result["n_missing"]) == (3, 5, 1)
    assert (result["n_image_questions"], result["n_questions"]) == (4, 6)
    assert result["n_ignored_other_split"] == 1

    no_split = write_answers(tmp_path / "no_split.jsonl", [("p1", "B"), ("p8", "A")])
    with pytest.raises(ValueError, match=r"line 2: question 'p8' is in no split of .*pid_splits\.json"):
        score("sqa_img", no_split, root, allow_partial=True)
    unknown = write_answers(tmp_path / "unknown.jsonl", [("p1", "B"), ("p404", "A")])
    with pytest.raises(ValueError, match=r"line 2: question 'p404' is not in the ground truth .*problems\.json"):
        score("sqa_img", unknown, root, allow_partial=True)


# ---------------------------------------------------------------------------------------- MME

MME_PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
MME_COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]
YES_NO = "Please answer yes or no."


@pytest.fixture
def mme_root(tmp_path):
    release = tmp_path / "data" / "MME" / "MME_Benchmark_release_version"
    for subtask in MME_PERCEPTION + MME_COGNITION:
        (release / subtask).mkdir(parents=True)

    def image(folder, stem, lines):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.txt").write_text("".join(f"{q}\t{a}\n" for q, a in lines), encoding="utf-8")

    existence = release / "existence"
    image(existence, "000001", [(f"Is there a dog in this image? {YES_NO}", "Yes"), (f"Is there a cat in this image? {YES_NO}", "No")])
    image(existence, "000002", [(f"Is there a car in this image? {YES_NO}", "Yes"), (f"Is there a bus in this image? {YES_NO}", "No")])
    image(existence, "000003", [(f"Is there a cow in this image? {YES_NO}", "Yes"), (f"Is there a pig in this image? {YES_NO}", "No")])
    # the question files of five subtasks live in questions_answers_YN/ (the images in images/);
    # MME itself has questions with two spaces before "Please answer yes or no."
    qa_dir = release / "artwork" / "questions_answers_YN"
    image(qa_dir, "10002", [(f"Is this artwork created by Ann? {YES_NO}", "Yes"), (f"Is this artwork created by Bob?  {YES_NO}", "No")])
    code = release / "code_reasoning"
    image(code, "0020", [(f"Will this code print 3? {YES_NO}", "No"), (f"Will this code print 4? {YES_NO}", "Yes")])
    return tmp_path / "data"


@pytest.mark.parametrize(
    "text, parsed",
    [("Yes", "yes"), ("no", "no"), ("No, there is not.", "no"), ("yes, it is", "yes"), ("Not sure", "no"), ("Maybe", "other")],
)
def test_mme_yes_no_parsing(text, parsed):
    assert mme_yes_no(text) == parsed


def test_mme_acc_plus_needs_both_questions_of_an_image(tmp_path, mme_root):
    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            ("existence/000001.jpg", "Yes", f"Is there a dog in this image?\n{OCR_SUFFIX}"),  # right
            ("existence/000001.jpg", "No, there is not.", f"Is there a cat in this image?\n{OCR_SUFFIX}"),  # right
            ("existence/000002.jpg", "Yes", f"Is there a car in this image? {YES_NO}"),  # right
            ("existence/000002.jpg", "Yes", f"Is there a bus in this image? {YES_NO}"),  # wrong
            ("artwork/10002.jpg", "yes", f"Is this artwork created by Ann?\n{OCR_SUFFIX}"),  # right
            ("artwork/10002.jpg", "Maybe", f"Is this artwork created by Bob? {YES_NO}"),  # "other": wrong
            ("code_reasoning/0020.png", "no", f"Will this code print 3? {YES_NO}"),  # right
            ("code_reasoning/0020.png", "Yes", f"Will this code print 4? {YES_NO}"),  # right
        ],
    )
    result = score("mme", answers, mme_root, allow_partial=True)  # image 000003 unanswered: scored as wrong
    existence = result["subtasks"]["existence"]  # 3 of 6 right; of 3 images only 000001 both right
    assert (existence["acc"], existence["acc_plus"], existence["score"]) == pytest.approx((50.0, 100 / 3, 250 / 3))
    assert (existence["n_answered"], existence["n_missing"], existence["n_questions"]) == (4, 2, 6)
    artwork = result["subtasks"]["artwork"]  # 1 of 2 right; its one image not both right
    assert (artwork["acc"], artwork["acc_plus"], artwork["score"]) == pytest.approx((50.0, 0.0, 50.0))
    assert result["subtasks"]["code_reasoning"]["score"] == pytest.approx(200.0)
    assert set(result["subtasks"]) == {"existence", "artwork", "code_reasoning"}
    assert result["perception"] == pytest.approx(250 / 3 + 50)  # 133.33
    assert result["cognition"] == pytest.approx(200.0)
    assert result["total"] == pytest.approx(250 / 3 + 250)
    assert result["headline"] == result["perception"]
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (8, 2, 10)


def test_mme_unknown_question(tmp_path, mme_root):
    answers = write_answers(tmp_path / "answers.jsonl", [("existence/000001.jpg", "Yes", "Is there a fox in this image?")])
    with pytest.raises(ValueError, match=r"\('existence', '000001', 'Is there a fox in this image\?'\) is not in the ground truth"):
        score("mme", answers, mme_root)


# ---------------------------------------------------------------------------------------- SEED


def test_seed_image_accuracy(tmp_path):
    root = tmp_path / "data"

    def question(question_id, answer, data_type, type_id):
        return {"question_id": question_id, "answer": answer, "data_type": data_type, "question_type_id": type_id, "question": "?"}

    write_json(
        root / "seed_bench" / "SEED-Bench.json",
        {
            "question_type": {"Scene Understanding": 1, "Instance Identity": 2, "Action Recognition": 10},
            "questions": [
                question("1", "A", "image", 1),
                question("2", "B", "image", 1),
                question("3", "C", "image", 2),
                question("4", "D", "video", 10),
                question("5", "A", "image", 2),  # unanswered
            ],
        },
    )
    # LLaVA writes integer ids where SEED has digit strings.
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "A"), (2, "B."), (3, "C"), (4, "D")])
    result = score("seed", answers, root, allow_partial=True)  # 5 unanswered: scored as wrong
    assert result["image_accuracy"] == pytest.approx(50.0)  # 1 and 3 right of 4; "B." is not "B"
    assert result["headline"] == result["image_accuracy"]
    assert result["video_accuracy"] == pytest.approx(100.0)
    assert result["accuracy"] == pytest.approx(60.0)  # 3 of 5
    assert result["per_question_type"] == pytest.approx(
        {"Scene Understanding": 50.0, "Instance Identity": 50.0, "Action Recognition": 100.0}
    )
    assert (result["n_image_answered"], result["n_image_questions"], result["n_answered"], result["n_questions"]) == (3, 4, 4, 5)
    assert result["n_missing"] == 1


# ---------------------------------------------------------------------------------------- MMBench


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("B.", "B"),
        ("The answer is B.", "B"),
        ("(C) bird", "C"),
        ("答案是C。", "C"),
        ("dog", "B"),  # the option's text
        ("a dog or a cat", None),  # two options' texts
        ("E", None),  # not an option
        ("A or B", None),
    ],
)
def test_mmbench_option_parsing(text, letter):
    assert parse_option(text, {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}) == letter


def test_mmbench_circular_and_row_accuracy(tmp_path):
    root = tmp_path / "data"
    write_mmbench_tsv(
        root / "mmbench" / "mmbench_dev_20230712.tsv",
        [
            (0, ["cat", "dog", "bird", "fish"], "B"),
            (1000000, ["dog", "bird", "fish", "cat"], "A"),  # circular copy of 0
            (1, ["yes", "no", "nan", "nan"], "A"),  # two options
            (2, ["red", "green", "blue", "nan"], "C"),
            (3, ["x", "y", "nan", "nan"], "B"),  # unanswered
            (4, ["up", "down", "nan", "nan"], "A"),
            (1000004, ["down", "up", "nan", "nan"], "B"),  # circular copy of 4
        ],
    )
    answers = write_answers(
        tmp_path / "answers.jsonl",
        [
            (0, "The answer is B."),  # right
            (1000000, "A"),  # right → question 0 right
            (1, "yes"),  # option text → A: right
            (2, "B"),  # wrong
            (4, "A"),  # right
            (1000004, "A"),  # wrong → question 4 wrong
        ],
    )
    result = score("mmbench", answers, root, allow_partial=True)  # row 3 unanswered: scored as wrong
    assert result["row_accuracy"] == pytest.approx(400 / 7)  # 4 of 7 rows
    assert result["accuracy"] == pytest.approx(40.0)  # questions 0, 1 right; 2, 4 wrong; 3 missing
    assert result["headline"] == result["accuracy"]
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (6, 1, 7)
    assert (result["n_circular_answered"], result["n_circular_questions"]) == (4, 5)


def test_mmbench_cn_in_the_docs_layout(tmp_path):
    root = tmp_path / "data"  # LLaVA's docs put the CN file under mmbench/, its scripts under mmbench_cn/
    write_mmbench_tsv(
        root / "mmbench" / "mmbench_dev_cn_20231003.tsv", [(0, ["猫", "狗", "鸟", "鱼"], "B"), (1, ["是", "否", "nan", "nan"], "A")]
    )
    answers = write_answers(tmp_path / "answers.jsonl", [(0, "答案是B"), (1, "B")])
    result = score("mmbench_cn", answers, root)
    assert result["accuracy"] == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------- VQAv2 val


def test_vqav2_val_accuracy_per_answer_type(tmp_path):
    root = tmp_path / "data"

    def annotation(question_id, answer_type, answers):
        humans = [{"answer": answer, "answer_id": number} for number, answer in enumerate(answers, start=1)]
        return {"question_id": question_id, "answer_type": answer_type, "answers": humans}

    write_json(
        root / "vqav2" / "v2_mscoco_val2014_annotations.json",
        {
            "annotations": [
                annotation(1, "number", ["2"] * 3 + ["3"] * 7),
                annotation(2, "yes/no", ["yes"] * 10),
                annotation(3, "other", ["dog"] * 2 + ["cat"] * 8),
                annotation(4, "other", ["x"] * 10),  # unanswered
            ]
        },
    )
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "two"), (2, "Yes."), (3, "a dog")])
    result = score("vqav2_val", answers, root, allow_partial=True)  # 4 unanswered: scored as wrong
    # "two" → "2": 3 agree → 0.9; "Yes." → "yes": 1.0; "a dog" → "dog": 2 agree → 0.6; 4: 0
    assert result["accuracy"] == pytest.approx(100 * 2.5 / 4)
    assert result["per_answer_type"] == pytest.approx({"number": 90.0, "other": 30.0, "yes/no": 100.0})
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (3, 1, 4)


# ---------------------------------------------------------------------------------------- submissions


def test_vqav2_submission(tmp_path):
    root = tmp_path / "data"
    questions = [{"question_id": question_id, "image": f"{question_id}.jpg", "text": "?"} for question_id in (11, 12, 13)]
    write_jsonl(root / "vqav2" / "llava_vqav2_mscoco_test2015.jsonl", questions)
    write_jsonl(root / "vqav2" / "llava_vqav2_mscoco_test-dev2015.jsonl", [questions[0], questions[2]])  # 12: test-std
    answers = write_answers(tmp_path / "answers.jsonl", [(13, "Yes"), (11, "Two dogs.")])
    output = tmp_path / "upload" / "vqav2.json"
    assert write_submission("vqav2", answers, root, output) == output
    assert json.loads(output.read_text()) == [
        {"question_id": 11, "answer": "2 dogs"},
        {"question_id": 12, "answer": ""},
        {"question_id": 13, "answer": "yes"},
    ]
    with pytest.raises(FileExistsError, match="vqav2.json exists"):
        write_submission("vqav2", answers, root, output)
    stray = write_answers(tmp_path / "stray.jsonl", [(99, "yes")])
    with pytest.raises(ValueError, match="question '99' is not in the ground truth"):
        write_submission("vqav2", stray, root, tmp_path / "other.json")


def test_vizwiz_submission(tmp_path):
    root = tmp_path / "data"
    questions = [{"question_id": number, "image": f"VizWiz_test_0000000{number}.jpg", "text": "?"} for number in (0, 1)]
    write_jsonl(root / "vizwiz" / "llava_test.jsonl", questions)
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "Unanswerable"), (0, "A red can.")])
    output = write_submission("vizwiz", answers, root, tmp_path / "vizwiz.json")
    assert json.loads(output.read_text()) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "red can"},
        {"image": "VizWiz_test_00000001.jpg", "answer": "unanswerable"},
    ]
    partial = write_answers(tmp_path / "partial.jsonl", [(1, "no")])
    with pytest.raises(ValueError, match=r"leaves 1 VizWiz questions unanswered \(first: \[0\]\)"):
        write_submission("vizwiz", partial, root, tmp_path / "partial.json")


def test_mmvet_submission(tmp_path):
    root = tmp_path / "data"
    questions = [{"question_id": number, "image": f"v1_{number}.png", "text": "?"} for number in (0, 1)]
    write_jsonl(root / "mm-vet" / "llava-mm-vet.jsonl", questions)
    answers = write_answers(tmp_path / "answers.jsonl", [(0, "A long answer, kept as is."), (1, "Two")])
    output = write_submission("mmvet", answers, root, tmp_path / "mmvet.json")
    assert json.loads(output.read_text()) == {"v1_0": "A long answer, kept as is.", "v1_1": "Two"}


@pytest.fixture
def mmbench_test_root(tmp_path):
    root = tmp_path / "data"
    write_mmbench_tsv(
        root / "mmbench" / "mmbench_test_20230712.tsv",
        [(0, ["cat", "dog", "nan", "nan"], None), (1, ["a", "b", "c", "d"], None)],
        with_answer=False,
    )
    return root


def test_mmbench_submission_as_tsv(tmp_path, mmbench_test_root, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openpyxl(name, *args, **kwargs):
        if name == "openpyxl":
            raise ImportError("no openpyxl")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "C")])
    written = write_submission("mmbench", answers, mmbench_test_root, tmp_path / "upload" / "mmbench.xlsx", allow_partial=True)
    assert written == tmp_path / "upload" / "mmbench.tsv"
    with written.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows == [
        ["index", "question", "A", "B", "C", "D", "prediction", "split"],
        ["0", "question 0?", "cat", "dog", "nan", "nan", "", "test"],
        ["1", "question 1?", "a", "b", "c", "d", "C", "test"],
    ]
    with pytest.raises(FileExistsError):
        write_submission("mmbench", answers, mmbench_test_root, written, allow_partial=True)


def test_mmbench_submission_as_xlsx(tmp_path, mmbench_test_root):
    openpyxl = pytest.importorskip("openpyxl")
    answers = write_answers(tmp_path / "answers.jsonl", [(0, "B")])
    written = write_submission("mmbench", answers, mmbench_test_root, tmp_path / "mmbench.xlsx", allow_partial=True)
    assert written == tmp_path / "mmbench.xlsx"
    sheet = openpyxl.load_workbook(written).active
    assert [cell.value for cell in sheet[1]] == ["index", "question", "A", "B", "C", "D", "prediction", "split"]
    assert sheet.cell(row=2, column=7).value == "B"


# ---------------------------------------------------------------------------------------- partial answer files

# Each case: the data root, a partial answer file, how many of how many questions it leaves
# unanswered and the "first: ..." part of the error (at most five ids, in ground-truth order).


def _partial_gqa(tmp_path, request):
    answers = write_answers(tmp_path / "answers.jsonl", [("q1", "dog"), ("q7", "cat")])  # q7: not balanced, not required
    return request.getfixturevalue("gqa_root"), answers, 5, 6, "'q2', 'q3', 'q4', 'q5', 'q6'"


def _partial_textvqa(tmp_path, request):
    root = tmp_path / "data"
    item = {"image_id": "img1", "question": "What?", "answers": ["a"] * 10}
    write_json(root / "textvqa" / "TextVQA_0.5.1_val.json", {"data": [{**item, "question_id": 1}, {**item, "image_id": "img2", "question_id": 2}]})
    answers = write_answers(tmp_path / "answers.jsonl", [("img1", "a", f"What?\n{OCR_SUFFIX}")])
    return root, answers, 1, 2, "'2'"


def _partial_pope(tmp_path, request):
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "Yes")])
    return request.getfixturevalue("pope_root"), answers, 7, 8, "'2', '3', '4', '5', '6', ..."


def _partial_sqa(tmp_path, request):
    root = tmp_path / "data"
    problem = {"choices": ["x", "y"], "answer": 0, "image": "image.png"}
    write_json(root / "scienceqa" / "problems.json", {"p1": problem, "p2": problem, "p3": problem})
    write_json(root / "scienceqa" / "pid_splits.json", {"train": ["p3"], "test": ["p1", "p2"]})
    return root, write_answers(tmp_path / "answers.jsonl", [("p1", "A")]), 1, 2, "'p2'"


def _partial_mme(tmp_path, request):
    answers = write_answers(tmp_path / "answers.jsonl", [("code_reasoning/0020.png", "No", f"Will this code print 3? {YES_NO}")])
    first = "('existence', '000001', 'Is there a dog in this image?'), ('existence', '000001', 'Is there a cat in this image?'), "
    return request.getfixturevalue("mme_root"), answers, 9, 10, first + "..."  # (only the first two checked)


def _partial_seed(tmp_path, request):
    root = tmp_path / "data"
    questions = [{"question_id": str(n), "answer": "A", "data_type": "image", "question_type_id": 1} for n in (1, 2, 3)]
    write_json(root / "seed_bench" / "SEED-Bench.json", {"question_type": {"Scene Understanding": 1}, "questions": questions})
    return root, write_answers(tmp_path / "answers.jsonl", [(2, "A")]), 2, 3, "'1', '3'"


def _partial_mmbench(directory, tsv):
    def build(tmp_path, request):
        root = tmp_path / "data"
        write_mmbench_tsv(root / directory / tsv, [(0, ["x", "y", "nan", "nan"], "A"), (1000000, ["y", "x", "nan", "nan"], "B")])
        return root, write_answers(tmp_path / "answers.jsonl", [(0, "A")]), 1, 2, "'1000000'"

    return build


def _partial_vqav2_val(tmp_path, request):
    root = tmp_path / "data"
    annotations = [{"question_id": n, "answer_type": "other", "answers": [{"answer": "x"}] * 10} for n in range(1, 9)]
    write_json(root / "vqav2" / "v2_mscoco_val2014_annotations.json", {"annotations": annotations})
    return root, write_answers(tmp_path / "answers.jsonl", [(8, "x")]), 7, 8, "'1', '2', '3', '4', '5', ..."


def _partial_easyvqa(name):
    def build(tmp_path, request):
        root = build_easyvqa(tmp_path / "data", images=3)
        ids = [str(question.question_id) for question in get_benchmark(name).questions(root)]
        answers = write_answers(tmp_path / "answers.jsonl", [(ids[0], "yes")])
        missing = ids[1:]
        return root, answers, len(missing), len(ids), ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")

    return build


PARTIAL_CASES = {
    "gqa": _partial_gqa,
    "textvqa": _partial_textvqa,
    "pope": _partial_pope,
    "sqa_img": _partial_sqa,
    "mme": _partial_mme,
    "seed": _partial_seed,
    "mmbench": _partial_mmbench("mmbench", "mmbench_dev_20230712.tsv"),
    "mmbench_cn": _partial_mmbench("mmbench_cn", "mmbench_dev_cn_20231003.tsv"),
    "vqav2_val": _partial_vqav2_val,
    "easyvqa_yesno": _partial_easyvqa("easyvqa_yesno"),
    "easyvqa": _partial_easyvqa("easyvqa"),
}


def test_every_scorer_has_a_partial_case():
    assert sorted(PARTIAL_CASES) == benchmarks()


@pytest.mark.parametrize("benchmark", sorted(PARTIAL_CASES))
def test_missing_answers_are_an_error_unless_allow_partial(tmp_path, request, benchmark):
    root, answers, n_missing, n_questions, first = PARTIAL_CASES[benchmark](tmp_path, request)
    with pytest.raises(ValueError) as raised:
        score(benchmark, answers, root)
    message = str(raised.value)
    assert "\n" not in message
    head = f"{answers}: {n_missing} of {n_questions} questions have no answer (first: "
    tail = "); pass allow_partial=True (--allow-partial) to score them as wrong"
    assert message.startswith(head) and message.endswith(tail), message
    named = message[len(head) : -len(tail)]
    if first.endswith("..."):  # at most five named, then "..."
        assert named.startswith(first[: -len("...")]) and named.endswith(", ..."), named
    else:
        assert named == first

    result = score(benchmark, answers, root, allow_partial=True)
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (n_questions - n_missing, n_missing, n_questions)
    assert result["headline"] is not None


def test_registered_scorers_take_the_flag(tmp_path, request):
    from llava_patch.eval.scoring.registry import SCORERS

    root, answers, *_ = _partial_gqa(tmp_path, request)
    assert SCORERS["gqa"](answers, root, allow_partial=True)["n_missing"] == 5
    with pytest.raises(ValueError, match="have no answer"):
        SCORERS["gqa"](answers, root)


def test_gqa_half_answered_is_not_a_full_score(tmp_path):
    # The case: 9 right answers of 18 questions gave headline 100 with no warning.
    root = tmp_path / "data"
    questions = {f"q{n}": {"answer": "dog", "isBalanced": True, "types": {"structural": "query"}} for n in range(1, 19)}
    write_json(root / "gqa" / "data" / "testdev_balanced_questions.json", questions)
    answers = write_answers(tmp_path / "answers.jsonl", [(f"q{n}", "dog") for n in range(1, 10)])
    with pytest.raises(ValueError) as raised:
        score("gqa", answers, root)
    assert str(raised.value) == (
        f"{answers}: 9 of 18 questions have no answer (first: 'q10', 'q11', 'q12', 'q13', 'q14', ...); "
        "pass allow_partial=True (--allow-partial) to score them as wrong"
    )
    result = score("gqa", answers, root, allow_partial=True)
    assert result["headline"] == pytest.approx(50.0)
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (9, 9, 18)
    complete = write_answers(tmp_path / "complete.jsonl", [(f"q{n}", "dog") for n in range(1, 19)])
    assert score("gqa", complete, root)["n_missing"] == 0


def test_pope_missing_answers_are_wrong_but_not_false_positives(tmp_path, pope_root):
    # Adversarial split (labels yes, yes, no, no): 1 → TP, 2 and 3 missing, 4 → FP.
    answers = write_answers(tmp_path / "answers.jsonl", [(1, "Yes"), (4, "Yes"), (5, "Yes"), (6, "No"), (7, "Yes"), (8, "No")])
    result = score("pope", answers, pope_root, allow_partial=True)
    adversarial = result["adversarial"]
    assert (adversarial["tp"], adversarial["fp"], adversarial["tn"], adversarial["fn"]) == (1, 1, 0, 1)  # missing 2: FN
    assert (adversarial["n_answered"], adversarial["n_missing"]) == (2, 2)
    assert adversarial["accuracy"] == pytest.approx(25.0)  # 1 of 4
    assert adversarial["precision"] == pytest.approx(50.0)  # 1 of 2 yes answers
    assert adversarial["recall"] == pytest.approx(50.0)  # 1 of 2 yes labels
    assert adversarial["yes_ratio"] == pytest.approx(50.0)  # 2 yes answers of 4 questions
    assert result["popular"]["f1"] == result["random"]["f1"] == pytest.approx(100.0)
    assert result["f1_mean"] == pytest.approx((50 + 100 + 100) / 3)
    assert (result["n_answered"], result["n_missing"], result["n_questions"]) == (6, 2, 8)


def test_pope_split_without_answers_counts_under_allow_partial(tmp_path, pope_root):
    answers = write_answers(tmp_path / "answers.jsonl", [(5, "Yes"), (6, "No"), (7, "Yes"), (8, "No")])  # no adversarial answers
    result = score("pope", answers, pope_root, allow_partial=True)
    assert result["adversarial"]["f1"] == 0.0
    assert result["f1_mean"] == pytest.approx(200 / 3)  # (0 + 100 + 100) / 3, not 100


def test_textvqa_repeated_pairs_need_one_answer_each(tmp_path):
    # TextVQA val repeats a few (image, question) pairs; LLaVA asks each and both answers land on the pair.
    root = tmp_path / "data"
    item = {"image_id": "img1", "question": "What?", "answers": ["a"] * 10}
    write_json(root / "textvqa" / "TextVQA_0.5.1_val.json", {"data": [{**item, "question_id": 1}, {**item, "question_id": 2}]})
    prompt = f"What?\n{OCR_SUFFIX}"
    both = write_answers(tmp_path / "both.jsonl", [("img1", "a", prompt), ("img1", "b", prompt)])
    result = score("textvqa", both, root)
    assert (result["accuracy"], result["n_answered"], result["n_missing"]) == (pytest.approx(50.0), 2, 0)
    once = write_answers(tmp_path / "once.jsonl", [("img1", "a", prompt)])
    with pytest.raises(ValueError, match=r"1 of 2 questions have no answer \(first: '2'\)"):
        score("textvqa", once, root)
    thrice = write_answers(tmp_path / "thrice.jsonl", [("img1", "a", prompt)] * 3)
    with pytest.raises(ValueError, match=r"line 3: question \('img1', 'what\?'\) is answered 3 times but asked 2 times"):
        score("textvqa", thrice, root)


def test_mme_missing_question_fails_its_image_for_acc_plus(tmp_path, mme_root):
    answers = write_answers(tmp_path / "answers.jsonl", [("code_reasoning/0020.png", "No", f"Will this code print 3? {YES_NO}")])
    result = score("mme", answers, mme_root, allow_partial=True)
    code = result["subtasks"]["code_reasoning"]  # 1 of 2 right, the image not both right
    assert (code["acc"], code["acc_plus"], code["n_answered"], code["n_missing"]) == (50.0, 0.0, 1, 1)
    assert result["subtasks"]["existence"]["score"] == 0.0  # no answers: every question wrong
    assert set(result["subtasks"]) == {"existence", "artwork", "code_reasoning"}  # the subtasks with questions
    assert result["perception"] == 0.0 and result["cognition"] == pytest.approx(50.0)


def test_submission_writers_and_missing_answers(tmp_path, mmbench_test_root):
    # VQAv2: the test-dev questions (the benchmark's question file) must be answered; test-std ones may be blank.
    root = tmp_path / "data"
    questions = [{"question_id": question_id, "image": f"{question_id}.jpg", "text": "?"} for question_id in (11, 12, 13)]
    write_jsonl(root / "vqav2" / "llava_vqav2_mscoco_test2015.jsonl", questions)
    write_jsonl(root / "vqav2" / "llava_vqav2_mscoco_test-dev2015.jsonl", [questions[0], questions[2]])
    partial = write_answers(tmp_path / "partial.jsonl", [(11, "yes")])
    with pytest.raises(ValueError) as raised:
        write_submission("vqav2", partial, root, tmp_path / "vqav2.json")
    assert str(raised.value) == (
        f"{partial}: 1 of 2 questions have no answer (first: '13'); "
        "pass allow_partial=True (--allow-partial) to upload them blank (the server scores them as wrong)"
    )
    assert not (tmp_path / "vqav2.json").exists()
    output = write_submission("vqav2", partial, root, tmp_path / "vqav2.json", allow_partial=True)
    assert json.loads(output.read_text()) == [
        {"question_id": 11, "answer": "yes"}, {"question_id": 12, "answer": ""}, {"question_id": 13, "answer": ""},
    ]  # fmt: skip

    # Without the test-dev question file, every test2015 question is required.
    (root / "vqav2" / "llava_vqav2_mscoco_test-dev2015.jsonl").unlink()
    with pytest.raises(ValueError, match=r"partial\.jsonl: 2 of 3 questions have no answer \(first: '12', '13'\)"):
        write_submission("vqav2", partial, root, tmp_path / "vqav2-all.json")

    # MMBench test: every row (OpenCompass scores a blank prediction as wrong).
    answers = write_answers(tmp_path / "mmbench.jsonl", [(1, "C")])
    with pytest.raises(ValueError, match=r"mmbench\.jsonl: 1 of 2 questions have no answer \(first: '0'\); .*upload them blank"):
        write_submission("mmbench", answers, mmbench_test_root, tmp_path / "mmbench.tsv")
    assert not (tmp_path / "mmbench.tsv").exists()

    # VizWiz and MM-Vet: the server / grader needs every answer, so allow_partial does not apply.
    questions = [{"question_id": number, "image": f"VizWiz_test_0000000{number}.jpg", "text": "?"} for number in (0, 1)]
    write_jsonl(root / "vizwiz" / "llava_test.jsonl", questions)
    vizwiz = write_answers(tmp_path / "vizwiz.jsonl", [(1, "no")])
    with pytest.raises(ValueError, match="leaves 1 VizWiz questions unanswered"):
        write_submission("vizwiz", vizwiz, root, tmp_path / "vizwiz.json", allow_partial=True)
    write_jsonl(root / "mm-vet" / "llava-mm-vet.jsonl", [{"question_id": n, "image": "x.png", "text": "?"} for n in (0, 1)])
    with pytest.raises(ValueError, match="leaves 1 MM-Vet questions unanswered"):
        write_submission("mmvet", write_answers(tmp_path / "mmvet.jsonl", [(0, "a")]), root, tmp_path / "m.json", allow_partial=True)
