"""Placeholder resizing on hand-made token rows (ids: 9 = placeholder, 0 = pad)."""

import pytest
import torch

from llava_patch.placeholders import resize_placeholders

P = 9


def test_left_padded_rows_with_different_item_counts_are_right_aligned():
    ids = torch.tensor([[0, 5, P, P, P, 6, P, P, P, 7], [0, 0, 0, 0, 0, 5, P, P, P, 7]])
    mask = (ids != 0).long()
    out = resize_placeholders(ids, mask, P, [3, 3, 3], [1, 2, 1], pad_token_id=0)
    assert out.input_ids.tolist() == [[5, P, 6, P, P, 7], [0, 0, 0, 5, P, 7]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert out.placeholder_tokens == [3, 1]


def test_runs_can_grow_and_adjacent_items_are_told_apart():
    ids = torch.tensor([[5, P, P, P, P, P, 7]])  # two adjacent items of 2 and 3 placeholders
    out = resize_placeholders(ids, None, P, [2, 3], [4, 1], pad_token_id=0)
    assert out.input_ids.tolist() == [[5, P, P, P, P, P, 7]] and out.placeholder_tokens == [5]
    out = resize_placeholders(ids, None, P, [3, 2], [1, 4], pad_token_id=0)
    assert out.input_ids.tolist() == [[5, P, P, P, P, P, 7]]
    out = resize_placeholders(ids, None, P, [2, 3], [1, 6], pad_token_id=0)
    assert out.input_ids.tolist() == [[5] + [P] * 7 + [7]]


def test_right_padded_rows_stay_left_aligned_and_labels_follow():
    ids = torch.tensor([[5, P, P, 7, 8], [5, P, P, 0, 0]])
    mask = (ids != 0).long()
    labels = torch.tensor([[-100, -100, -100, 7, 8], [-100, -100, -100, -100, -100]])
    out = resize_placeholders(ids, mask, P, [2, 2], [1, 1], pad_token_id=0, labels=labels)
    assert out.input_ids.tolist() == [[5, P, 7, 8], [5, P, 0, 0]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert out.labels.tolist() == [[-100, -100, 7, 8], [-100, -100, -100, -100]]


def test_a_placeholder_count_that_does_not_match_the_items_is_refused():
    with pytest.raises(ValueError, match="hold 2 placeholder tokens .* 1 item\\(s\\) passed need 3"):
        resize_placeholders(torch.tensor([[5, P, P]]), None, P, [3], [1], pad_token_id=0)
