"""Tests for i2l.model: shapes, parameter counts, the key/value cache, padding invariance, bad input."""

from __future__ import annotations

import pytest
import torch

from i2l.config import get_config
from i2l.errors import I2LError
from i2l.model import (
    MAX_IMAGE_SIDE,
    Im2LatexModel,
    check_images,
    parameter_counts,
    sinusoid_1d,
    sinusoid_2d,
)

V = 23


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**overrides):
    base = dict(d_model=32, num_heads=2, num_layers=2, dim_feedforward=64, dropout=0.0)
    base.update(overrides)
    return get_config("smoke", **base)


def ink_images(B: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    """White images (B, 1, H, W) with random dark strokes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.ones(B, 1, H, W)
    for b in range(B):
        for _ in range(6):
            y, x = (
                int(torch.randint(0, max(H - 6, 1), (1,), generator=g)),
                int(torch.randint(0, max(W - 12, 1), (1,), generator=g)),
            )
            images[b, 0, y : y + 5, x : x + 11] = torch.rand(5, 11, generator=g)[: H - y, : W - x] * 0.5
    return images


@pytest.fixture(scope="module", params=[True, False], ids=["pre-norm", "post-norm"])
def model(request) -> Im2LatexModel:
    torch.manual_seed(0)
    return Im2LatexModel(tiny_cfg(norm_first=request.param), V).eval()


def test_shapes_through_encoder_and_decoder(model):
    images = ink_images(2, 50, 130)
    memory, memory_mask = model.encode(images)
    Hf, Wf = model.feature_shape(50, 130)
    assert (Hf, Wf) == (4, 9)
    assert memory.shape == (2, Hf * Wf, 32) and memory_mask.shape == (2, Hf * Wf)
    assert memory_mask.dtype == torch.bool and not memory_mask.any()
    tokens = torch.randint(4, V, (2, 7))
    assert model(images, tokens).shape == (2, 7, V)


def test_memory_mask_from_sizes(model):
    images = ink_images(2, 64, 160)
    sizes = torch.tensor([[64, 160], [20, 40]])
    _, memory_mask = model.encode(images, sizes)
    # second image: ceil(20/16) x ceil(40/16) = 2 x 3 valid positions out of 4 x 10
    assert memory_mask[0].sum() == 0
    assert (~memory_mask[1]).sum() == 6
    valid = (~memory_mask[1]).reshape(4, 10)
    assert valid[:2, :3].all() and not valid[2:].any() and not valid[:, 3:].any()


def test_padding_does_not_change_the_encoding(model):
    """Inside a larger white-padded batch, the valid features equal those of the image alone."""
    image = ink_images(1, 37, 90, seed=3)
    alone, _ = model.encode(image)  # (1, 3 * 6, d)
    batch = torch.ones(3, 1, 80, 240)
    batch[1, :, :37, :90] = image[0]
    batch[0] = ink_images(1, 80, 240, seed=4)[0]
    sizes = torch.tensor([[80, 240], [37, 90], [50, 50]])
    memory, memory_mask = model.encode(batch, sizes)  # (3, 5 * 15, d)
    inside = memory[1].reshape(5, 15, -1)[:3, :6].reshape(18, -1)
    torch.testing.assert_close(inside, alone[0], atol=1e-5, rtol=1e-4)
    # and without the size mask the border features would differ (the test can fail)
    unmasked, _ = model.encode(batch)
    assert not torch.allclose(unmasked[1].reshape(5, 15, -1)[:3, :6].reshape(18, -1), alone[0], atol=1e-4)


def test_cached_steps_equal_teacher_forcing(model):
    """decode_step one token at a time reproduces forward's logits (the cache is correct)."""
    images = ink_images(3, 48, 100, seed=1)
    sizes = torch.tensor([[48, 100], [30, 64], [17, 20]])
    tokens = torch.randint(4, V, (3, 9))
    with torch.no_grad():
        full = model(images, tokens, sizes)  # (3, 9, V)
        memory, memory_mask = model.encode(images, sizes)
        state = model.init_state(memory, memory_mask, capacity=4)  # small: the buffers must grow
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = model.decode_step(tokens[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_state_select_keeps_rows(model):
    images = ink_images(2, 32, 64)
    with torch.no_grad():
        memory, mask = model.encode(images)
        state = model.init_state(memory, mask)
        tok = torch.tensor([5, 6])
        logits, state = model.decode_step(tok, state)
        flipped = state.select(torch.tensor([1, 0]))
        a, _ = model.decode_step(torch.tensor([7, 7]), state)
        b, _ = model.decode_step(torch.tensor([7, 7]), flipped)
    torch.testing.assert_close(a.flip(0), b)


def test_gradients_reach_encoder_and_decoder():
    torch.manual_seed(0)
    model = Im2LatexModel(tiny_cfg(), V).train()
    logits = model(ink_images(2, 32, 64), torch.randint(4, V, (2, 5)), torch.tensor([[32, 64], [20, 30]]))
    logits.logsumexp(-1).mean().backward()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.decoder.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "preset, low, high",
    [("seed", 3.2e6, 3.5e6), ("cpu", 3.2e6, 3.5e6), ("smoke", 2.7e6, 3.0e6), ("base", 5e6, 8e6)],
)
def test_parameter_counts_per_preset(preset, low, high):
    counts = parameter_counts(Im2LatexModel(get_config(preset), 500))
    assert low < counts["total"] < high, counts
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]


def test_positional_encodings():
    pe = sinusoid_1d(10, 8)
    assert pe.shape == (10, 8)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))
    pe2 = sinusoid_2d(3, 5, 8)
    assert pe2.shape == (8, 3, 5)
    assert torch.equal(pe2[:4, :, 0], pe2[:4, :, 4])  # first half depends on y only
    assert torch.equal(pe2[4:, 0, :], pe2[4:, 2, :])  # second half on x only
    with pytest.raises(I2LError, match="multiple of 4"):
        sinusoid_2d(2, 2, 6)


def test_pretrained_backbone_unavailable_is_a_clear_error(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(I2LError, match="pretrained_backbone=False"):
        Im2LatexModel(tiny_cfg(pretrained_backbone=True), V)


def test_backbone_is_torchvision_resnet18_up_to_layer3(monkeypatch):
    """Same modules, names and shapes as torchvision's; its (here: random) weights load into ours, conv1 summed."""
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    monkeypatch.setattr(torchvision.models, "resnet18", lambda weights=None: reference)
    enc = Im2LatexModel(tiny_cfg(pretrained_backbone=True), V).encoder
    theirs = reference.state_dict()
    ours = {k: v for k, v in enc.state_dict().items() if k.split(".")[0] in ("bn1", "layer1", "layer2", "layer3")}
    assert ours.keys() == {k for k in theirs if k.split(".")[0] in ("bn1", "layer1", "layer2", "layer3")}
    for k, v in ours.items():
        assert torch.equal(v, theirs[k]), k
    assert torch.allclose(enc.conv1.weight, theirs["conv1.weight"].sum(dim=1, keepdim=True))


def test_inference_imports_no_torchvision():
    import subprocess
    import sys

    code = ("import sys; from i2l.config import get_config; from i2l.model import Im2LatexModel; "
            "Im2LatexModel(get_config('smoke'), 10); assert 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_small_and_odd_images(model):
    for H, W in [(1, 1), (5, 7), (15, 16), (17, 33)]:
        memory, _ = model.encode(torch.ones(1, 1, H, W))
        assert memory.shape[1] == model.feature_shape(H, W)[0] * model.feature_shape(H, W)[1]
    assert model.feature_shape(5, 7) == (1, 1)


def test_check_images_accepts_and_rejects():
    img, sizes = check_images(torch.ones(20, 30))
    assert img.shape == (1, 1, 20, 30) and sizes is None
    img, _ = check_images(torch.full((1, 20, 30), 255, dtype=torch.uint8))
    assert img.dtype == torch.float32 and img.max() == 1.0
    bad = [
        (torch.ones(1, 3, 20, 30), "grayscale"),
        (torch.ones(0, 1, 20, 30), "empty"),
        (torch.ones(1, 1, 0, 30), "empty"),
        (torch.ones(2, 20, 30), "3-D"),
        (torch.ones(1, 1, 8, MAX_IMAGE_SIDE + 1), "maximum side"),
        ([[1.0]], "torch.Tensor"),
    ]
    for images, match in bad:
        with pytest.raises(I2LError, match=match):
            check_images(images)
    with pytest.raises(I2LError, match="sizes"):
        check_images(torch.ones(2, 1, 20, 30), torch.tensor([[20, 31], [5, 5]]))
    with pytest.raises(I2LError, match="sizes"):
        check_images(torch.ones(2, 1, 20, 30), torch.tensor([20, 30]))


def test_encoder_trace_and_model_plots(model):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from i2l.model import encoder_trace
    from i2l.plots.model import (
        plot_feature_maps,
        plot_parameter_counts,
        plot_positional_encoding_1d,
        plot_positional_encoding_2d,
    )

    trace = encoder_trace(model, ink_images(2, 40, 100), torch.tensor([[40, 100], [20, 50]]))
    shapes = {k: tuple(v.shape) for k, v in trace.items()}
    assert shapes["inverted"] == (2, 1, 40, 100)
    assert shapes["layer1"] == (2, 64, 10, 25) and shapes["layer3"] == (2, 256, 3, 7)
    assert shapes["proj+pos"] == (2, 32, 3, 7)
    fig = plot_feature_maps(trace, channels=3)
    assert len(fig.axes) == 6 * 3
    assert len(plot_positional_encoding_1d(20, 16).axes) == 2  # heatmap + colorbar
    assert len(plot_positional_encoding_2d(4, 10, 16, channels=[0, 9]).axes) == 3
    fig = plot_parameter_counts(parameter_counts(model))
    assert "M parameters" in fig.axes[0].get_title()
    with pytest.raises(I2LError):
        plot_feature_maps(trace, stages=("nope",))
    with pytest.raises(I2LError):
        plot_positional_encoding_2d(4, 10, 16, channels=[16])
    plt.close("all")
