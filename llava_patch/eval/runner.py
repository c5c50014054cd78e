"""One evaluation run: a model (either backend), a pruning method and budget, a benchmark.

Sharding: every process of `accelerate launch` (any number of GPUs or nodes) takes one contiguous
chunk of the question file, as LLaVA's `--num-chunks/--chunk-idx`; process 0 merges the shards in
question-file order. Resuming: each process appends whole batches to its shard file (one write,
flushed and fsynced); on restart a partly written batch is discarded and rerun, finished batches are
skipped. Batches are fixed blocks of the shard, so a resumed run computes exactly the batches an
uninterrupted run computes. Every answer records the visual tokens its sample carried into the LLM;
a count that differs from the budget stops the run (docs/decisions.md §1: a script that silently ran
unpruned). What the manifest records about the model, data, software and device comes from
`provenance`; how each benchmark is asked and scored, from its record in `benchmarks`.

Two ways to run without visual tokens (method `none`): `no_image`, the text-only prompt (no "<image>\n"),
and `empty_image`, the image prompt with its placeholder given zero visual tokens, the text around it
kept: what FasterVLM's code feeds the LLM at 100% reduction (docs/reproduce.md), the papers' 0-token
row. `printed_tokens` files a run under the token count a paper's table prints where the budget the
authors' code used differs (FastV: 57 tokens in the row printed 58); the manifest keeps both.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .. import apply, method_info
from ..models.loading import load_model
from ..models.media import VIDEO_TOKEN, read_image, read_video
from ..models.prompting import IMAGE_TOKEN, left_pad, tokenize_with_placeholders
from . import provenance
from .benchmarks import MMVET_GRADER, VIDEO_QA_JUDGE, Benchmark, Question, get_benchmark
from .files import read_json, read_jsonl, write_atomic
from .judge import API_KEY_ENV, BASE_URL_ENV, OpenAIChatClient, grade_mmvet, judge_video_qa

ANSWERS, MANIFEST, METRICS, CONFIG = "answers.jsonl", "manifest.json", "metrics.json", "run_config.json"
VIDEO_FRAMES = 8  # Video-LLaVA samples 8 frames per video


@dataclass
class RunConfig:
    model: str
    benchmark: str
    data_root: str
    output_dir: str
    backend: str = "llava"
    method: str = "none"
    options: dict = field(default_factory=dict)
    keep: int | None = None
    reduction_ratio: float | None = None
    batch_size: int = 1
    limit: int | None = None  # the first N questions only (smoke runs)
    dtype: str | None = None  # float16 / bfloat16 / float32; default: float16 on CUDA, float32 on CPU
    no_image: bool = False  # ask every question without its image (the text-only baseline; method "none")
    # the image prompt with 0 visual tokens in place of its placeholder (FasterVLM's 100% row; method "none")
    empty_image: bool = False
    printed_tokens: int | None = None  # the "# Token" of the paper's row this run fills, where the budget differs


# What reached the LLM in place of each question's image, as the manifest's `visual_input` says it.
VISUAL_INPUT = {
    "image": "the image's visual tokens, as the method and budget leave them",
    "no_image": "text only: the prompt without \"<image>\\n\" and no image (--no-image)",
    "empty_image": "the image prompt with 0 visual tokens in place of its placeholder: the text around \"<image>\" "
                   "(its \"\\n\") kept, no image encoded; what FasterVLM's code feeds the LLM at 100% reduction "
                   "(--empty-image)",
}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: says how far it got; the same command resumes it."""


def run(config: RunConfig, label: str | None = None) -> dict:
    """Run, resume or finish one evaluation; returns the manifest (process 0; {} on the others).

    Rerunning the same settings skips what is done: finished batches, the answers file, the manifest,
    the metrics. Everything is checked before the output folder is created, and every output is
    written atomically. `label` (e.g. "run 3/19") goes into the progress bar.
    """
    from accelerate import PartialState

    benchmark = get_benchmark(config.benchmark)
    output = Path(config.output_dir)
    status = _status(output, config, benchmark)
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU-only hosts shard over gloo
    if status == COMPLETE:
        if not state.is_main_process:
            return {}
        print(f"{output}: complete ({', '.join(_outputs(config, benchmark))}); nothing to do")
        return read_json(output / MANIFEST)
    questions = _questions(config, benchmark)
    budget = _budget(config)
    started = time.perf_counter()
    stats = {"new_tokens": 0, "generate_seconds": 0.0}
    if status != ANSWERED:
        loaded = _load(config, benchmark, budget, str(state.device))  # bad checkpoints and budgets fail here, before any file
        if state.is_main_process:
            _claim(output, config)
        state.wait_for_everyone()
        shard = _chunk(questions, state.num_processes, state.process_index)
        path = output / "shards" / f"{state.process_index:03d}-of-{state.num_processes:03d}.jsonl"
        stats = _run_shard(config, benchmark, loaded, shard, path, state.process_index,
                           " · ".join(filter(None, [config.benchmark, _describe(config), label])))
        state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    answers = _merge(output, questions, state.num_processes) if status != ANSWERED else [
        row for _, row in read_jsonl(output / ANSWERS)]
    manifest = _manifest(config, benchmark, answers, stats, time.perf_counter() - started, state)
    write_atomic(output / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    metrics = _score(config, benchmark, output)
    print(_summary(config, benchmark, manifest, metrics))
    return manifest


def _summary(config: RunConfig, benchmark: Benchmark, manifest: dict, metrics: dict | None) -> str:
    """One line: the headline number, the visual tokens measured, where the outputs are."""
    value = (metrics or {}).get(benchmark.headline)
    tokens = manifest["measured_visual_tokens"]
    measured = f"{tokens['min']}/{tokens['mean']:.1f}/{tokens['max']} (min/mean/max)" if tokens else "none"
    return (f"{config.benchmark} {benchmark.headline}: {'—' if value is None else f'{value:.4g}'} "
            f"({manifest['questions']} questions); visual tokens per sample measured {measured}; "
            f"outputs in {config.output_dir}")


NEW, PARTIAL, ANSWERED, COMPLETE = "new", "partial", "answered", "complete"


def _outputs(config: RunConfig, benchmark: Benchmark) -> list[str]:
    """The files a finished run has: answers and manifest, and metrics where they are computed here."""
    scored = benchmark.scorer is not None or (benchmark.judge is not None and bool(os.environ.get(API_KEY_ENV)))
    return [ANSWERS, MANIFEST] + ([METRICS] if scored else [])


def _status(output: Path, config: RunConfig, benchmark: Benchmark) -> str:
    """How far the run in `output` got (read only); a folder of other settings, or of something else,
    raises: results of different runs are never mixed."""
    saved = output / CONFIG
    if saved.exists():
        previous = _config_defaults() | read_json(saved)  # a run saved before a setting existed had its default
        if previous != asdict(config) | {"output_dir": previous["output_dir"]}:
            raise ValueError(f"{saved}: {output} holds a run with other settings; choose a new --output-dir")
    elif output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output}: exists and is not an evaluation run of llava_patch; choose a new --output-dir")
    else:
        return NEW
    if not (output / ANSWERS).exists():
        return PARTIAL
    return COMPLETE if all((output / name).exists() for name in _outputs(config, benchmark)) else ANSWERED


def _config_defaults() -> dict:
    return {f.name: f.default if f.default is not MISSING else f.default_factory()
            for f in fields(RunConfig) if f.default is not MISSING or f.default_factory is not MISSING}


def _questions(config: RunConfig, benchmark: Benchmark) -> list[Question]:
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"--limit {config.limit}: at least one question of {benchmark.question_path(config.data_root)}")
    questions = benchmark.questions(config.data_root)[: config.limit]
    if not questions:
        raise ValueError(f"{benchmark.question_path(config.data_root)}: no questions")
    if config.no_image:  # the same prompt text, without "<image>\n" and without the picture
        questions = [replace(question, image=None) for question in questions]
    return questions


def _budget(config: RunConfig) -> dict:
    """The budget arguments for `apply`, after the checks that need no model."""
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise ValueError(f"--batch-size {config.batch_size}: must be a positive integer")
    if config.no_image and config.method != "none":
        raise ValueError(f"--no-image asks without the image; it runs with --method none, not {config.method}")
    if config.empty_image and config.no_image:
        raise ValueError("--empty-image keeps the image prompt with 0 visual tokens, --no-image drops it: choose one")
    if config.empty_image and config.method != "none":
        raise ValueError(f"--empty-image gives the image 0 visual tokens; it runs with --method none, not {config.method}")
    printed = config.printed_tokens
    if printed is not None and (isinstance(printed, bool) or not isinstance(printed, int) or printed < 0):
        raise ValueError(f"--printed-tokens {printed}: the token count a paper's table prints, a number >= 0")
    return budget_arguments(config.method, config.keep, config.reduction_ratio)


def budget_arguments(method: str, keep: int | None, reduction_ratio: float | None) -> dict:
    """`apply`'s budget arguments for `method`: exactly what it takes (none for `none`), checked by name."""
    given = {name: value for name, value in (("keep", keep), ("reduction_ratio", reduction_ratio)) if value is not None}
    if not method_info(method).takes_budget:
        if given:
            raise ValueError(f"--method {method} keeps every token; it takes no --keep or --reduction-ratio")
        return {}
    if not given:
        raise ValueError(f"--method {method} needs a budget: --keep N or --reduction-ratio R")
    return given


def check_visual_tokens(measured: list[int], samples: int, expected: int | None, method: str, where: str) -> None:
    """Refuse a batch whose samples did not carry the budget's visual tokens into the LLM (a script that
    silently ran unpruned reported such numbers): one count per sample, each `expected` when fixed."""
    if len(measured) != samples or (expected is not None and set(measured) != {expected}):
        raise RuntimeError(f"{where}: {measured} visual tokens reached the LLM, but {method} with the requested "
                           f"budget gives {expected} per image; refusing to report it")


def _describe(config: RunConfig) -> str:
    if config.no_image:
        return "no image"
    if config.empty_image:
        return "0 visual tokens"
    if config.keep is not None:
        return f"{config.method} keep {config.keep}"
    if config.reduction_ratio is not None:
        return f"{config.method} {config.reduction_ratio:.0%} pruned"
    return config.method


@dataclass
class _Loaded:
    vlm: object
    handle: object
    expected: int | None  # visual tokens per sample the budget fixes (None: depends on the image)


def _load(config: RunConfig, benchmark: Benchmark, budget: dict, device: str) -> _Loaded:
    dtype = getattr(torch, config.dtype) if config.dtype else None
    vlm = load_model(config.model, backend=config.backend, dtype=dtype, device=device)
    handle = apply(vlm.model, config.method, **budget, **config.options)
    return _Loaded(vlm, handle, handle.expected_visual_tokens(frames=VIDEO_FRAMES if benchmark.video else None))


def _claim(output: Path, config: RunConfig) -> None:
    output.mkdir(parents=True, exist_ok=True)
    if not (output / CONFIG).exists():
        write_atomic(output / CONFIG, json.dumps(asdict(config), indent=2) + "\n")


def _chunk(questions: list[Question], count: int, index: int) -> list[Question]:
    size = -(-len(questions) // count)  # ceil, as LLaVA's split_list
    return questions[index * size : (index + 1) * size]


def _batches(questions: list[Question], batch_size: int) -> list[list[Question]]:
    """Consecutive blocks of at most batch_size; questions with and without an image never share one."""
    batches: list[list[Question]] = []
    for question in questions:
        if batches and len(batches[-1]) < batch_size and (batches[-1][0].image is None) == (question.image is None):
            batches[-1].append(question)
        else:
            batches.append([question])
    return batches


def _finished_batches(path: Path) -> set[int]:
    """Batches whose answers are all in the shard file; anything else (a torn last write) is dropped."""
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    batches: dict[int, list[dict]] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        batches.setdefault(row["metadata"]["batch"], []).append(row)
    finished = {batch for batch, rows in batches.items() if len(rows) == rows[0]["metadata"]["batch_size"]}
    kept = [row for batch in sorted(finished) for row in batches[batch]]
    if len(kept) != len(lines):
        write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept))
    return finished


def _run_shard(config: RunConfig, benchmark: Benchmark, loaded: _Loaded, shard: list[Question], path: Path,
               process: int, description: str) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = _batches(shard, config.batch_size)
    finished = _finished_batches(path)
    todo = [(index, batch) for index, batch in enumerate(batches) if index not in finished]
    stats = {"new_tokens": 0, "generate_seconds": 0.0}
    answered = sum(len(batches[index]) for index in finished)
    vlm, handle, expected = loaded.vlm, loaded.handle, loaded.expected
    model_id = Path(config.model).name
    progress = tqdm(total=len(shard), initial=answered, desc=description, unit="question", disable=process != 0)
    try:
        with open(path, "a", encoding="utf-8") as file:
            for index, batch in todo:
                empty = config.empty_image and batch[0].image is not None  # the image prompt, 0 visual tokens
                images = None if batch[0].image is None or empty else [_media(benchmark, config, q) for q in batch]
                torch.manual_seed(index)  # sampling protocols (video QA) repeat exactly, also when resumed
                start = time.perf_counter()
                with _empty_placeholders(vlm) if empty else _nothing():
                    answers = vlm.generate(images, [q.text for q in batch], max_new_tokens=benchmark.max_new_tokens)
                stats["generate_seconds"] += time.perf_counter() - start
                stats["new_tokens"] += vlm.last_new_tokens
                where = f"questions {[q.question_id for q in batch]}"
                visual = handle.last_visual_tokens if images is not None else [0] * len(batch)
                if images is not None:
                    check_visual_tokens(visual, len(batch), expected, config.method, where)
                elif empty:  # nothing visual may have reached the LLM
                    check_visual_tokens(handle.last_visual_tokens or [0] * len(batch), len(batch), 0, "--empty-image", where)
                equivalent = getattr(handle, "last_equivalent_visual_tokens", None) if images is not None else None
                equivalent = equivalent if equivalent and len(equivalent) == len(batch) else [None] * len(batch)
                margins = vlm.last_min_margins  # None entries where the protocol samples
                rows = [_answer_row(question, answer, model_id, tokens, index, len(batch), margin, layer_averaged)
                        for question, answer, tokens, margin, layer_averaged
                        in zip(batch, answers, visual, margins, equivalent)]
                file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                file.flush()
                os.fsync(file.fileno())
                answered += len(batch)
                progress.update(len(batch))
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted after {answered} of {len(shard)} questions"
                             f"{f' (process {process})' if process else ''}; rerun the same command to resume") from None
    finally:
        progress.close()
    return stats


@contextmanager
def _nothing():
    yield


@contextmanager
def _empty_placeholders(vlm):
    """While open, `vlm.generate(None, questions)` asks each question with the image prompt whose
    "<image>" (or "<video>") marker stands for no token at all: the text chunks around it tokenized
    exactly as for an image (LLaVA's `tokenizer_image_token`, BOS once), joined with nothing between.
    This is the sequence FasterVLM's `prepare_inputs_labels_for_multimodal` builds when its top-k keeps
    0 features (docs/reproduce.md); no image is read or encoded."""
    markers = {IMAGE_TOKEN: (0, 0), VIDEO_TOKEN: (0, 0)}

    def prepare(media, questions):
        rows = [tokenize_with_placeholders(vlm.prompt(question), vlm.tokenizer, markers) for question in questions]
        input_ids, attention_mask = left_pad(rows, vlm.pad_token_id)
        device = vlm.model.device
        return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}

    vlm.prepare = prepare  # shadows the class's prepare for this instance only
    try:
        yield
    finally:
        del vlm.prepare


def _media(benchmark: Benchmark, config: RunConfig, question: Question) -> Image.Image | list[Image.Image]:
    """The question's image, or the sampled frames of its video."""
    if isinstance(question.image, Image.Image):
        return question.image
    path = benchmark.image_path(Path(config.data_root), question.image)
    return read_video(path, VIDEO_FRAMES) if benchmark.video else read_image(path)


def _answer_row(question: Question, answer: str, model_id: str, visual_tokens: int, batch: int, batch_size: int,
                margin: float | None, equivalent_visual_tokens: float | None = None) -> dict:
    """LLaVA's answer-file record; the answer id is derived from the question so reruns are identical.
    An LLM-stage method adds the layer-averaged count (`equivalent_visual_tokens`) beside the final one."""
    metadata = {"visual_tokens": visual_tokens, "batch": batch, "batch_size": batch_size}
    if equivalent_visual_tokens is not None:
        metadata["equivalent_visual_tokens"] = round(float(equivalent_visual_tokens), 3)
    if margin is not None:
        metadata["min_logit_margin"] = round(margin, 6)
    row = {"question_id": question.question_id, "prompt": question.text, "text": answer,
           "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{model_id}/{question.question_id}").hex,
           "model_id": model_id, "metadata": metadata}
    row.update(question.record)
    return row


def _merge(output: Path, questions: list[Question], shards: int) -> list[dict]:
    """All shards' answers in question-file order, written atomically as answers.jsonl."""
    rows = [row for index in range(shards)
            for _, row in read_jsonl(output / "shards" / f"{index:03d}-of-{shards:03d}.jsonl")]
    position = {question.question_id: number for number, question in enumerate(questions)}
    rows.sort(key=lambda row: position[row["question_id"]])
    if len(rows) != len(questions):
        raise RuntimeError(f"{output}: {len(rows)} answers for {len(questions)} questions after merging the shards")
    write_atomic(output / ANSWERS, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return rows


def _manifest(config: RunConfig, benchmark: Benchmark, answers: list[dict], stats: dict, seconds: float, state) -> dict:
    visual = [row["metadata"]["visual_tokens"] for row in answers if row["metadata"]["visual_tokens"]]
    equivalent = [row["metadata"]["equivalent_visual_tokens"] for row in answers
                  if row["metadata"].get("equivalent_visual_tokens") is not None]
    question_file = benchmark.question_path(config.data_root)
    mode = "no_image" if config.no_image else "empty_image" if config.empty_image else "image"
    return {
        "model": config.model,
        "paper_model": provenance.paper_model(config.model),
        "weights_fingerprint": provenance.weights_fingerprint(config.model),
        "backend": config.backend,
        "method": config.method,
        "no_image": config.no_image,
        "empty_image": config.empty_image,
        "visual_input": {"mode": mode, "what": VISUAL_INPUT[mode]},
        "options": config.options,
        # files the options name (FitPrune's recipe, SparseVLM's settings): what exactly the run used
        "option_files": {str(value): provenance.sha256(value) for value in config.options.values()
                         if isinstance(value, str) and Path(value).is_file()},
        "requested_budget": {"keep": config.keep, "reduction_ratio": config.reduction_ratio},
        # the paper's "# Token" for this run's row where it differs from the budget run (None: not given)
        "printed_tokens": config.printed_tokens,
        "measured_visual_tokens": _summary_counts(visual),
        "measured_equivalent_visual_tokens": _summary_counts(equivalent),
        "benchmark": config.benchmark,
        "questions": len(answers),
        "data_files": {str(question_file): provenance.sha256(question_file)},
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "device": provenance.device_name(),
        "processes": state.num_processes,
        "batch_size": config.batch_size,
        "greedy_near_ties": _near_ties(answers),
        "wall_seconds": round(seconds, 3),
        "generated_tokens_this_session": stats["new_tokens"],
        "tokens_per_second": round(stats["new_tokens"] / stats["generate_seconds"], 3) if stats["generate_seconds"] else None,
        "how": f"{'greedy' if benchmark.greedy else 'sampled (seeded per batch)'} generate per batch, wall time "
               "of this process's session (resumed work is not re-timed); tokens/s = generated tokens of process 0 / "
               "its generate() seconds",
    }


def _summary_counts(counts: list) -> dict | None:
    return {"min": min(counts), "mean": statistics.fmean(counts), "max": max(counts)} if counts else None


NEAR_TIE = 0.05  # logits: below this top-2 gap, fp16 batched vs one-by-one decoding can flip the token


def _near_ties(answers: list[dict]) -> dict:
    """Answers whose greedy decoding passed a near-tie (batch composition may change them)."""
    ties = [row["question_id"] for row in answers if row["metadata"].get("min_logit_margin", NEAR_TIE) < NEAR_TIE]
    return {"threshold_logits": NEAR_TIE, "count": len(ties), "question_ids": ties[:100]}


def _score(config: RunConfig, benchmark: Benchmark, output: Path) -> dict | None:
    """metrics.json for benchmarks scored here; video QA only when a judge is configured (OPENAI_API_KEY)."""
    if benchmark.judge == VIDEO_QA_JUDGE and not os.environ.get(API_KEY_ENV):
        print(f"{output}: answers written; set {API_KEY_ENV} (and {BASE_URL_ENV}) and run `llava-patch score "
              f"{config.benchmark} --answers {output / ANSWERS} --data-root ...` for the judge's metrics")
        return None
    # A --limit run answers the first N questions only: the rest are scored as wrong, and the metrics say
    # how many (`n_missing`); its numbers check the pipeline, not the model.
    metrics = score_answers(config.benchmark, output / ANSWERS, Path(config.data_root), cache=output / "judge_cache.jsonl",
                            allow_partial=config.limit is not None)
    if metrics is not None:
        write_atomic(output / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def score_answers(benchmark: str, answers: str | Path, data_root: str | Path, cache: str | Path | None = None,
                  allow_partial: bool = False) -> dict | None:
    """Metrics of an answers file, as the benchmark's record says: its local scorer, or an LLM judge —
    video QA, and MM-Vet's GPT grader when OPENAI_API_KEY is set — cached per question in `cache`
    (default beside the answers). None for benchmarks scored by a server (write their submission files).
    A local scorer refuses an answers file that misses questions unless `allow_partial` (they count as
    wrong, and the metrics say how many)."""
    from . import scoring

    record, answers = get_benchmark(benchmark), Path(answers)
    cache = Path(cache) if cache else answers.with_name("judge_cache.jsonl")
    if record.judge == VIDEO_QA_JUDGE:
        records = [{"question_id": row["question_id"], "question": row["prompt"], "answer": row["answer"],
                    "pred": row["text"]} for _, row in read_jsonl(answers)]
        return judge_video_qa(records, OpenAIChatClient(), cache)
    if record.judge == MMVET_GRADER and os.environ.get(API_KEY_ENV):
        truth_file = record.file(data_root, "grader_truth")
        if not truth_file.is_file():
            raise FileNotFoundError(f"{truth_file}: missing (MM-Vet's questions and answers, from mm-vet.zip)")
        truth = read_json(truth_file)
        records = [{"question_id": row["question_id"], "question": row["prompt"],
                    "answer": truth[f"v1_{row['question_id']}"]["answer"], "pred": row["text"]}
                   for _, row in read_jsonl(answers)]
        return grade_mmvet(records, OpenAIChatClient(), cache)
    return scoring.score(record.scorer, answers, Path(data_root), allow_partial=allow_partial) if record.scorer else None
