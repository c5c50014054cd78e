"""Placeholder shrinking on hand-made token rows (ids: 9 = image placeholder, 0 = pad)."""

import pytest
import torch

from llava_patch.placeholders import shrink_placeholders

IMG = 9


def test_left_padded_rows_with_different_image_counts_are_right_aligned():
    ids = torch.tensor([[0, 5, IMG, IMG, IMG, 6, IMG, IMG, IMG, 7], [0, 0, 0, 0, 0, 5, IMG, IMG, IMG, 7]])
    mask = (ids != 0).long()
    out = shrink_placeholders(ids, mask, IMG, tokens_per_image=3, keep_per_image=[1, 2, 1], pad_token_id=0)
    assert out.input_ids.tolist() == [[5, IMG, 6, IMG, IMG, 7], [0, 0, 0, 5, IMG, 7]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert out.visual_tokens == [3, 1]


def test_right_padded_rows_stay_left_aligned_and_labels_follow():
    ids = torch.tensor([[5, IMG, IMG, 7, 8], [5, IMG, IMG, 0, 0]])
    mask = (ids != 0).long()
    labels = torch.tensor([[-100, -100, -100, 7, 8], [-100, -100, -100, -100, -100]])
    out = shrink_placeholders(ids, mask, IMG, 2, [1, 1], pad_token_id=0, labels=labels)
    assert out.input_ids.tolist() == [[5, IMG, 7, 8], [5, IMG, 0, 0]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert out.labels.tolist() == [[-100, -100, 7, 8], [-100, -100, -100, -100]]


def test_a_placeholder_count_that_does_not_match_the_images_is_refused():
    with pytest.raises(ValueError, match="hold 2 image placeholder tokens .* 1 image\\(s\\) of 3 tokens each need 3"):
        shrink_placeholders(torch.tensor([[5, IMG, IMG]]), None, IMG, 3, [1], pad_token_id=0)
