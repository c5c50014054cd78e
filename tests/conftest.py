"""Tiny checkpoints built from configs for every test (no download ever)."""

import os

# The tiny models' matrices are too small to share across threads: one intra-op thread runs them
# several times faster on a 2-core host (5× under load). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from llava_patch.models.tiny import build_tiny_llava, load


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def tiny_llava(tiny_llava_dir):
    """A freshly loaded (model, processor) pair: tests may patch the model freely."""
    torch.manual_seed(0)
    return load(tiny_llava_dir)


@pytest.fixture(scope="session")
def tiny_original(tmp_path_factory):
    """(original-layout checkpoint dir, the same model converted to the transformers layout)."""
    from llava_patch.models.convert import original_to_hf
    from llava_patch.models.tiny import build_tiny_llava_original

    root = tmp_path_factory.mktemp("tiny-original")
    original = build_tiny_llava_original(root)
    return original, original_to_hf(original, root / "converted-hf")


@pytest.fixture(scope="session")
def tiny_next_dir(tmp_path_factory):
    from llava_patch.models.tiny import build_tiny_llava_next

    return build_tiny_llava_next(tmp_path_factory.mktemp("tiny-next"))


@pytest.fixture(scope="session")
def tiny_original_next(tmp_path_factory):
    from llava_patch.models.tiny import build_tiny_llava_original

    return build_tiny_llava_original(tmp_path_factory.mktemp("tiny-original-next"), anyres=True)


@pytest.fixture(scope="session")
def tiny_video_dir(tmp_path_factory):
    from llava_patch.models.tiny import build_tiny_video_llava

    return build_tiny_video_llava(tmp_path_factory.mktemp("tiny-video-llava"))


@pytest.fixture(scope="session")
def tiny_llava_576_dir(tmp_path_factory):
    """LLaVA-1.5's real 336-px, 14-px-patch geometry (576 patches) on the tiny widths."""
    from llava_patch.models.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava-576"), image_size=336, patch_size=14)


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory):
    """A tiny LLaVA whose vision tower is a DINOv2 (`Dinov2Model`, 16×16 patches) instead of CLIP."""
    from llava_patch.models.tiny import build_tiny_llava_dinov2

    return build_tiny_llava_dinov2(tmp_path_factory.mktemp("tiny-dinov2"))


@pytest.fixture(scope="session")
def toy_dir():
    """The toy LLaVA's checkpoint (built into its cache on first use, about a minute)."""
    from llava_patch.models.toy import toy_checkpoint

    return toy_checkpoint()
