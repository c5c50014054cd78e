"""Bootstrap intervals of a run's headline: the scorer's arithmetic on resampled questions."""

import json

import pytest

from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.eval.bootstrap import headline_interval
from llava_patch.eval.files import read_json, read_jsonl
from llava_patch.eval.minibench import build_minibench
from llava_patch.eval.runner import score_answers


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_minibench(tmp_path_factory.mktemp("data"), images=12)


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _truth(data):
    return read_json(get_benchmark("gqa").file(data, "questions"))


def _gqa_answers(data, path, wrong_every: int):
    truth = _truth(data)
    rows = [{"question_id": qid, "text": "purple" if index % wrong_every == 0 else item["answer"]}
            for index, (qid, item) in enumerate(truth.items())]
    return _write(path, rows)


def _pope_answers(data, path, flip_every: int):
    rows = []
    for split in ("adversarial", "popular", "random"):
        labels = [row for _, row in read_jsonl(get_benchmark("pope").file(data, "labels", split=split))]
        for index, label in enumerate(labels):
            answer = label["label"] if index % flip_every else ("no" if label["label"] == "yes" else "yes")
            rows.append({"question_id": label["question_id"], "text": answer.capitalize()})
    return _write(path, rows)


def test_perfect_answers_have_a_zero_width_interval(data, tmp_path):
    perfect = _write(tmp_path / "p.jsonl", [{"question_id": qid, "text": item["answer"]} for qid, item in _truth(data).items()])
    assert headline_interval("gqa", perfect, data) == (100.0, 100.0)


@pytest.mark.parametrize("benchmark", ["gqa", "pope"])
def test_the_interval_brackets_the_headline_and_repeats_with_its_seed(data, tmp_path, benchmark):
    answers = (_gqa_answers(data, tmp_path / "a.jsonl", wrong_every=3) if benchmark == "gqa"
               else _pope_answers(data, tmp_path / "a.jsonl", flip_every=3))
    headline = score_answers(benchmark, answers, data)["headline"]
    low, high = headline_interval(benchmark, answers, data)
    assert low < headline < high
    assert headline_interval(benchmark, answers, data) == (low, high)


def test_benchmarks_without_per_question_outcomes_get_none(data, tmp_path):
    assert headline_interval("mme", tmp_path / "unused.jsonl", data) is None
