"""LLaVA-1.5's real prompt under LLaMA's own SentencePiece vocabulary (llama.cpp's vocab-only GGUF of
LLaMA-1/2, which Vicuna uses; `make setup` extracts it from the llama-cpp-python sdist, offline)."""

import pytest
from transformers import AutoTokenizer

from llava_patch.models.checkpoint import sha256
from llava_patch.models.prompting import tokenize_with_images, vicuna_v1_prompt
from llava_patch.models.toy_parts import LLAMA_VOCAB_GGUF, LLAMA_VOCAB_SHA256, part

QUESTION = "What is the man holding?\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def llama_tokenizer():
    path = part(LLAMA_VOCAB_GGUF)
    assert sha256(path) == LLAMA_VOCAB_SHA256
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_our_vicuna_v1_prompt_tokenizes_as_llavas_own_code(llama_tokenizer):
    from llava.conversation import conv_templates
    from llava.mm_utils import tokenizer_image_token

    conversation = conv_templates["vicuna_v1"].copy()
    conversation.append_message(conversation.roles[0], "<image>\n" + QUESTION)
    conversation.append_message(conversation.roles[1], None)
    theirs = tokenizer_image_token(conversation.get_prompt(), llama_tokenizer, -200)
    assert conversation.get_prompt() == vicuna_v1_prompt(QUESTION)
    assert tokenize_with_images(vicuna_v1_prompt(QUESTION), llama_tokenizer, -200) == theirs


def test_the_image_starts_at_token_35_as_fastv_and_fastervlm_hard_code(llama_tokenizer):
    """FastV's `fastv_kvcache.py` (FasterVLM's FastV runs) takes image keys [35:611); FastV's own scripts
    use 36. With the real vocabulary, BOS + system prompt + "USER: " are 35 tokens: 35 is right."""
    ids = tokenize_with_images(vicuna_v1_prompt(QUESTION), llama_tokenizer, image_token_id=-200, tokens_per_image=576)
    assert ids[0] == llama_tokenizer.bos_token_id == 1
    first = ids.index(-200)
    assert first == 35 and ids[first:first + 576] == [-200] * 576 and ids[first + 576] != -200
