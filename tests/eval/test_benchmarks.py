"""The benchmark records, the JSON readers, the provenance of a run and the sweep's methods."""

import json
from pathlib import Path

import pytest

from llava_patch.eval import provenance
from llava_patch.eval.benchmarks import BENCHMARKS, MMVET_GRADER, VIDEO_QA_JUDGE, VIDEO_QA_PAIRS, get_benchmark
from llava_patch.eval.files import read_json, read_jsonl
from llava_patch.eval.scoring import benchmarks as local_scorers


def test_every_record_names_a_registered_scorer_or_who_else_scores_it():
    for record in BENCHMARKS.values():
        assert record.scorer is None or record.scorer in local_scorers(), record.name
        if record.video:
            assert record.judge == VIDEO_QA_JUDGE and not record.greedy and record.max_new_tokens == 1024
        else:
            assert record.greedy
    assert get_benchmark("sqa").scorer == "sqa_img" and get_benchmark("vqav2").scorer is None
    assert get_benchmark("easyvqa").max_new_tokens == get_benchmark("easyvqa_yesno").max_new_tokens == 16
    assert get_benchmark("mmvet").judge == MMVET_GRADER and get_benchmark("mmvet").headline == "score"
    # the key each local scorer's "headline" repeats (tests/eval/test_scoring.py checks the scorers' side)
    assert {name: record.headline for name, record in BENCHMARKS.items() if record.scorer} == {
        "gqa": "accuracy", "textvqa": "accuracy", "pope": "f1_mean", "mme": "perception", "seed": "image_accuracy",
        "sqa": "image_accuracy", "mmbench": "accuracy", "mmbench_cn": "accuracy", "easyvqa_yesno": "f1_mean",
        "easyvqa": "accuracy"}
    assert {name: record.display for name, record in BENCHMARKS.items()} == {
        "vqav2": "VQAv2", "gqa": "GQA", "vizwiz": "VizWiz", "textvqa": "TextVQA", "pope": "POPE", "mme": "MME",
        "seed": "SEED", "mmvet": "MM-Vet", "sqa": "SQA-IMG", "mmbench": "MMB", "mmbench_cn": "MMB-CN",
        "easyvqa_yesno": "easy-VQA yes/no", "easyvqa": "easy-VQA",
        "msvd": "MSVD", "msrvtt": "MSRVTT", "tgif": "TGIF", "activitynet": "ActivityNet"}
    assert get_benchmark("pope").file("/data", "labels", split="random") == Path("/data/pope/coco/coco_pope_random.json")


def test_video_qa_keeps_the_first_pairs_in_file_order(tmp_path):
    qa = tmp_path / "GPT_Zero_Shot_QA" / "TGIF_Zero_Shot_QA"
    qa.mkdir(parents=True)
    count = VIDEO_QA_PAIRS + 500
    (qa / "test_q.json").write_text(json.dumps(
        [{"video_name": f"v{i}", "question_id": f"q{i}", "question": "what?"} for i in reversed(range(count))]))
    (qa / "test_a.json").write_text(json.dumps([{"question_id": f"q{i}", "answer": str(i)} for i in range(count)]))
    questions = get_benchmark("tgif").questions(tmp_path)
    assert [q.question_id for q in questions] == [f"q{i}" for i in reversed(range(500, count))]
    assert questions[0].record == {"answer": str(count - 1)} and questions[0].image == f"v{count - 1}"


def test_the_readers_name_the_file_and_line(tmp_path):
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"a": 1}\n\n{"b": 2}\n')
    assert read_jsonl(lines) == [(1, {"a": 1}), (3, {"b": 2})]
    lines.write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(ValueError, match=r"rows\.jsonl, line 2: malformed JSON"):
        read_jsonl(lines)
    document = tmp_path / "doc.json"
    document.write_text('{\n  "a": 1,\n  "b": }\n')
    with pytest.raises(ValueError, match=r"doc\.json, line 3: malformed JSON"):
        read_json(document)
    for reader in (read_json, read_jsonl):
        with pytest.raises(FileNotFoundError, match=r"missing\.json"):
            reader(tmp_path / "missing.json")


LLAVA_HF_TEXT = {"model_type": "llama", "vocab_size": 32064}  # llava-hf leaves LlamaConfig's 7B defaults out
VICUNA_13B = {"model_type": "llama", "hidden_size": 5120, "num_hidden_layers": 40}


@pytest.mark.parametrize("config, expected", [
    ({"model_type": "llava_llama", "hidden_size": 4096, "num_hidden_layers": 32, "image_aspect_ratio": "pad"}, "llava-1.5-7b"),
    ({"model_type": "llava_llama", "hidden_size": 5120, "num_hidden_layers": 40}, "llava-1.5-13b"),
    ({"model_type": "llava_llama", "hidden_size": 4096, "num_hidden_layers": 32, "image_aspect_ratio": "anyres"}, "llava-next-7b"),
    ({"model_type": "llava_llama", "hidden_size": 4096, "num_hidden_layers": 32, "mm_video_tower": "x"}, "video-llava-7b"),
    ({"model_type": "llava", "text_config": LLAVA_HF_TEXT}, "llava-1.5-7b"),
    ({"model_type": "llava", "text_config": VICUNA_13B}, "llava-1.5-13b"),
    ({"model_type": "llava_next", "text_config": LLAVA_HF_TEXT}, "llava-next-7b"),
    ({"model_type": "video_llava", "text_config": LLAVA_HF_TEXT}, "video-llava-7b"),
    ({"model_type": "llava_next", "text_config": VICUNA_13B}, None),  # no published NeXT-13B rows
    ({"model_type": "llava_next", "text_config": {"model_type": "mistral"}}, None),
    ({"model_type": "llava", "text_config": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 4}}, None),
    ({"model_type": "qwen2_vl"}, None),
])
def test_the_published_model_is_read_from_the_checkpoints_config(config, expected):
    assert provenance.paper_model_of(config) == expected


def test_paper_model_of_a_directory_and_of_what_has_no_config(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": VICUNA_13B}))
    assert provenance.paper_model(tmp_path / "ckpt") == "llava-1.5-13b"
    assert provenance.paper_model(tmp_path) is None
    assert provenance.paper_model("no-such-owner/no-such-model") is None  # a hub id never downloaded


def test_the_sweep_runs_the_unpruned_model_and_every_method_with_a_reduction_ratio(tmp_path):
    from llava_patch.eval.sweep import default_methods, sweep

    assert default_methods() == ["none", "fastervlm", "fastv", "grid", "random", "vtc_cls"]
    with pytest.raises(ValueError, match="prumerge_plus.*keep = 64, 128, 256 only"):
        sweep("unused", tmp_path, tmp_path, ["pope"], methods=["none", "prumerge_plus"])
