"""The network: a ResNet-18 encoder cut after ``layer3`` and a Transformer decoder with a key/value cache.

Pipeline (shapes for a batch of B images padded to H x W, d = d_model, h = num_heads, V = vocabulary size)::

    images (B, 1, H, W), 1.0 = white  --invert-->  x = 1 - images (white = 0 = the convolutions' zero padding)
    ResNet-18 stem + layer1..layer3      (B, 256, H/16, W/16)   stride 16, masked outside each image's size
    1x1 conv to d_model + 2-D sinusoid   (B, d, H', W')
    flatten                              memory (B, S = H' * W', d), memory_mask (B, S) True = padding
    Decoder: embedding * sqrt(d) + 1-D sinusoid, num_layers x [self-attn, cross-attn, feed-forward]
    Linear                               logits (B, T, V)

The decoder layers are written by hand with :func:`torch.nn.functional.scaled_dot_product_attention` so that
incremental decoding (:meth:`Im2LatexModel.decode_step`) reuses the cached self-attention keys/values of the
previous tokens and the cross-attention keys/values of the image, computed once (:class:`DecoderState`).
The one-token step (:meth:`DecoderLayer.step`) is the same computation as the teacher-forced ``forward``,
written with the functional API on weights fetched once per decoding, so that at batch 1 a step costs what
its few dozen small kernels cost rather than Python's module calls.

Padding never changes a prediction: the feature maps are zeroed outside each image's own size after every
convolution block (exactly what zero padding does at the image's border), and attention ignores the padded
positions. So an image decoded alone or inside a white-padded batch gives the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2l.config import Config
from i2l.errors import I2LError

STRIDE = 16  # total downsampling of the encoder (conv1 2, maxpool 2, layer2 2, layer3 2)
BACKBONE_CHANNELS = 256  # channels out of resnet18.layer3
MAX_IMAGE_SIDE = 4096  # larger images raise I2LError (memory); the processed Im2Latex images are < 1000 px


# ----------------------------------------------------------------------------- positional encodings
def sinusoid_1d(length: int, d_model: int, device: torch.device | None = None) -> Tensor:
    """The Transformer's sinusoidal table: (length, d_model), sin on even channels, cos on odd ones."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(length, d_model, device=device)  # (L, d)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return pe


def sinusoid_2d(height: int, width: int, d_model: int, device: torch.device | None = None) -> Tensor:
    """2-D sinusoidal encoding (d_model, H, W): the first half of the channels encode y, the second half x."""
    if d_model % 4:
        raise I2LError(f"d_model must be a multiple of 4 for the 2-D positional encoding, got {d_model}")
    half = d_model // 2
    pe_y = sinusoid_1d(height, half, device)  # (H, d/2)
    pe_x = sinusoid_1d(width, half, device)  # (W, d/2)
    pe = torch.cat(
        [pe_y.T[:, :, None].expand(half, height, width), pe_x.T[:, None, :].expand(half, height, width)],
        dim=0,
    )
    return pe  # (d, H, W)


# ----------------------------------------------------------------------------- input checks
def check_images(images: Tensor, sizes: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Validate and normalise a batch: returns float images (B, 1, H, W) and long sizes (B, 2) or None.

    Accepts (H, W), (1, H, W) or (B, 1, H, W); uint8 is divided by 255. Raises :class:`I2LError` with what to do.
    """
    if not isinstance(images, Tensor):
        raise I2LError(
            f"images must be a torch.Tensor (B, 1, H, W) with values in [0, 1], got {type(images)}"
        )
    if images.dim() == 2:
        images = images[None, None]
    elif images.dim() == 3:
        if images.shape[0] != 1:
            raise I2LError(
                f"a 3-D image must be (1, H, W) grayscale, got shape {tuple(images.shape)}; "
                "convert colour images with PIL .convert('L') or pass a batch (B, 1, H, W)"
            )
        images = images[None]
    elif images.dim() != 4:
        raise I2LError(f"images must be (B, 1, H, W), got shape {tuple(images.shape)}")
    B, C, H, W = images.shape
    if C != 1:
        raise I2LError(
            f"images must have one (grayscale) channel, got {C} channels (shape {tuple(images.shape)}); "
            "convert with PIL .convert('L') or images.mean(1, keepdim=True)"
        )
    if B == 0 or H == 0 or W == 0:
        raise I2LError(f"empty image batch of shape {tuple(images.shape)}: nothing to encode")
    if max(H, W) > MAX_IMAGE_SIDE:
        raise I2LError(
            f"image of {H} x {W} pixels is larger than the maximum side {MAX_IMAGE_SIDE}: "
            "crop it to the formula or downscale it (formulas are rendered at about 100 dpi in Im2Latex)"
        )
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        raise I2LError(f"images must be float in [0, 1] (or uint8), got dtype {images.dtype}")
    if sizes is not None:
        sizes = torch.as_tensor(sizes, device=images.device).long()
        if sizes.shape != (B, 2):
            raise I2LError(
                f"sizes must be (B, 2) = (height, width) per image, got shape {tuple(sizes.shape)}"
            )
        if (sizes < 1).any() or (sizes[:, 0] > H).any() or (sizes[:, 1] > W).any():
            raise I2LError(
                f"sizes must lie in [1, {H}] x [1, {W}] (the padded batch), got {sizes.tolist()}; "
                "sizes are each image's (height, width) before padding"
            )
    return images, sizes


def _ceil_div(a: Tensor, b: int) -> Tensor:
    return (a + b - 1) // b


# ----------------------------------------------------------------------------- encoder
class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, the same modules under the same names (so its weights load as they are);
    :meth:`Encoder._block` runs it, zeroing the outside of each image after every convolution."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))


def _resnet_layer(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels))


def _imagenet_resnet18_state() -> dict[str, Tensor]:
    """torchvision's ImageNet ResNet-18 weights (downloaded once into ~/.cache/torch), or a clear I2LError."""
    try:
        import torchvision

        return torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1).state_dict()
    except Exception as e:  # no torchvision, no network, no cached file, corrupt download
        raise I2LError(
            "pretrained_backbone=True but the torchvision ImageNet weights for resnet18 could not be loaded "
            f"({type(e).__name__}: {e}). Connect to the internet once (they are cached in ~/.cache/torch), "
            "or set pretrained_backbone=False to train from scratch."
        ) from e


class Encoder(nn.Module):
    """ResNet-18 up to layer3 (stride 16) + 1x1 conv to d_model + 2-D positional encoding, flattened.

    The backbone is built here, module for module as torchvision builds it and initialised the same way
    (so inference needs no torchvision, whose import costs seconds); ``pretrained_backbone=True`` loads
    torchvision's ImageNet weights into it."""

    def __init__(self, d_model: int, pretrained_backbone: bool = False, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # greyscale input
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _resnet_layer(64, 64, 1)
        self.layer2 = _resnet_layer(64, 128, 2)
        self.layer3 = _resnet_layer(128, BACKBONE_CHANNELS, 2)
        for m in self.modules():  # torchvision's initialisation of ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if pretrained_backbone:
            state = _imagenet_resnet18_state()
            ours = {k: v for k, v in state.items() if k.split(".")[0] in ("bn1", "layer1", "layer2", "layer3")}
            with torch.no_grad():  # a grey image fed as RGB sees the sum of the three colour filters
                ours["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
            self.load_state_dict(ours, strict=False)
        self.proj = nn.Conv2d(BACKBONE_CHANNELS, d_model, kernel_size=1)
        self.dropout = nn.Dropout(dropout)
        self.d_model = d_model
        # channels-last convolutions: 1.15-1.2x faster training on the CPU (benchmarks/train_throughput.py) and
        # the layout tensor cores prefer under mixed precision; the state dict is the same.
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def feature_shape(height: int, width: int) -> tuple[int, int]:
        """(H', W') of the feature map for an H x W input: ceil(H / 16), ceil(W / 16)."""
        return -(-height // STRIDE), -(-width // STRIDE)

    @staticmethod
    def _mask(valid: Tensor | None, height: int, width: int) -> Tensor | None:
        """(B, 1, height, width) bool, True inside each image's valid (h, w); None = all valid.

        Multiplying by it keeps the activations' dtype (bf16 under autocast stays bf16)."""
        if valid is None:
            return None
        ys = torch.arange(height, device=valid.device)
        xs = torch.arange(width, device=valid.device)
        m = (ys[None, :, None] < valid[:, 0, None, None]) & (xs[None, None, :] < valid[:, 1, None, None])
        return m[:, None]

    def _block(self, block: nn.Module, x: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """A torchvision BasicBlock, zeroing the outside of each image after every convolution."""
        stride = block.conv1.stride[0]
        if valid is not None and stride > 1:
            valid = _ceil_div(valid, stride)
        out = block.relu(block.bn1(block.conv1(x)))
        mask = self._mask(valid, out.shape[-2], out.shape[-1])
        if mask is not None:
            out = out * mask
        out = block.bn2(block.conv2(out))
        identity = x if block.downsample is None else block.downsample(x)
        out = block.relu(out + identity)
        if mask is not None:
            out = out * mask
        return out, valid

    def forward(
        self, images: Tensor, sizes: Tensor | None = None, trace: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """images (B, 1, H, W) -> feature map (B, d_model, H', W') and valid mask (B, H', W') bool.

        ``trace``: a dict that receives the output of every stage (for notebooks and plots).
        """
        keep = trace if trace is not None else {}
        B, _, H, W = images.shape
        valid = None  # (B, 2) valid (h, w) at the current resolution; None = whole image valid
        if sizes is not None and not bool((sizes[:, 0] == H).all() and (sizes[:, 1] == W).all()):
            valid = sizes
        x = 1.0 - images  # (B, 1, H, W): ink > 0, white background = 0 = zero padding
        mask = self._mask(valid, H, W)
        if mask is not None:
            x = x * mask
        keep["inverted"] = x
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        if valid is not None:
            valid = _ceil_div(valid, 2)
            x = x * self._mask(valid, x.shape[-2], x.shape[-1])
        x = self.maxpool(x)  # (B, 64, H/4, W/4); inputs >= 0, so masked zeros never win the max
        if valid is not None:
            valid = _ceil_div(valid, 2)
            x = x * self._mask(valid, x.shape[-2], x.shape[-1])
        keep["stem"] = x
        for name, layer in (("layer1", self.layer1), ("layer2", self.layer2), ("layer3", self.layer3)):
            for block in layer:  # (B, 64|128|256, H/4|H/8|H/16, W/4|W/8|W/16)
                x, valid = self._block(block, x, valid)
            keep[name] = x
        x = self.proj(x)  # (B, d, H', W')
        keep["proj"] = x
        Hf, Wf = x.shape[-2:]
        x = x + sinusoid_2d(Hf, Wf, self.d_model, x.device)[None].to(x.dtype)
        keep["proj+pos"] = x
        x = self.dropout(x)
        if valid is None:
            valid_mask = torch.ones(B, Hf, Wf, dtype=torch.bool, device=x.device)
        else:
            valid_mask = self._mask(valid, Hf, Wf)[:, 0]
        return x, valid_mask


# ----------------------------------------------------------------------------- decoder
class Attention(nn.Module):
    """Multi-head attention. Self-attention projects queries, keys and values with one Linear (``in_proj``);
    cross-attention projects queries (``q_proj``) and the memory's keys/values (``kv_proj``, computed once)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, self_attention: bool):
        super().__init__()
        if d_model % num_heads:
            raise I2LError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.head_dim, self.dropout = num_heads, d_model // num_heads, dropout
        if self_attention:
            self.in_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor, n: int) -> tuple[Tensor, ...]:  # (B, T, n*d) -> n x (B, h, T, d/h)
        B, T, _ = x.shape
        return x.view(B, T, n, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention: x (B, T, d) -> queries, keys, values (B, h, T, d/h)."""
        return self._split(self.in_proj(x), 3)

    def query(self, x: Tensor) -> Tensor:
        """Cross-attention: x (B, T, d) -> queries (B, h, T, d/h)."""
        return self._split(self.q_proj(x), 1)[0]

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention: memory (B, S, d) -> keys, values (B, h, S, d/h)."""
        return self._split(self.kv_proj(memory), 2)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """q (B, h, T, d/h) over k, v (B, h, S, d/h) -> (B, T, d) [and the weights (B, h, T, S)].

        attn_mask: bool, broadcastable to (B, h, T, S), True = may attend (the SDPA convention).
        """
        B, _, T, _ = q.shape
        weights = None
        if need_weights:  # explicit softmax, for plots only
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, T, S)
            if is_causal:
                causal = torch.ones(T, k.shape[-2], dtype=torch.bool, device=q.device).tril()
                attn_mask = causal if attn_mask is None else attn_mask & causal
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v  # (B, h, T, d/h)
        else:
            p = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal
            )
        out = out.transpose(1, 2).reshape(B, T, -1)  # (B, T, d)
        return self.out_proj(out), weights


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention and feed-forward; pre-norm (norm_first) or post-norm like the paper."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = Attention(d_model, num_heads, dropout, self_attention=True)
        self.cross_attn = Attention(d_model, num_heads, dropout, self_attention=False)
        self.ff = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.norm1, self.norm2, self.norm3 = (
            nn.LayerNorm(d_model),
            nn.LayerNorm(d_model),
            nn.LayerNorm(d_model),
        )
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: Tensor, y: Tensor, norm: nn.Module) -> Tensor:
        """x + dropout(y), then the norm in post-norm mode (pre-norm normalises the sublayer's input)."""
        if self.training:
            y = self.drop(y)
        return x + y if self.norm_first else norm(x + y)

    def _feed_forward(self, x: Tensor) -> Tensor:
        h = self.norm3(x) if self.norm_first else x
        ff = self.ff(h) if self.training else self.ff[3](self.ff[1](self.ff[0](h)))  # no dropout call in eval
        return self._residual(x, ff, self.norm3)

    def forward(
        self,
        x: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        cross_mask: Tensor | None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """All T tokens at once with causal self-attention (teacher forcing): x (B, T, d) -> (B, T, d),
        and the cross-attention weights (B, h, T, S) if asked for."""
        h = self.norm1(x) if self.norm_first else x
        q, k, v = self.self_attn.qkv(h)  # (B, h, T, d/h) each
        sa, _ = self.self_attn.attend(q, k, v, is_causal=x.shape[1] > 1)
        x = self._residual(x, sa, self.norm1)

        h = self.norm2(x) if self.norm_first else x
        q = self.cross_attn.query(h)  # (B, h, T, d/h)
        ca, weights = self.cross_attn.attend(q, *cross_kv, attn_mask=cross_mask, need_weights=need_weights)
        x = self._residual(x, ca, self.norm2)
        return self._feed_forward(x), weights

    def step_weights(self) -> StepWeights:
        """The tensors of :meth:`step`, fetched once per decoding (module attribute lookups are slow)."""
        sa, ca, ff = self.self_attn, self.cross_attn, self.ff
        return StepWeights(
            self.norm_first, sa.num_heads, sa.head_dim, self.norm1.eps,
            sa.in_proj.weight, sa.in_proj.bias, sa.out_proj.weight, sa.out_proj.bias,
            ca.q_proj.weight, ca.q_proj.bias, ca.out_proj.weight, ca.out_proj.bias,
            ff[0].weight, ff[0].bias, ff[3].weight, ff[3].bias,
            self.norm1.weight, self.norm1.bias, self.norm2.weight, self.norm2.bias,
            self.norm3.weight, self.norm3.bias,
        )  # fmt: skip

    @staticmethod
    def step(
        x: Tensor, cross_kv: tuple[Tensor, Tensor], cross_mask: Tensor | None, kv_cache: Tensor, pos: int,
        w: StepWeights,
    ) -> Tensor:  # fmt: skip
        """One new token x (B, 1, d) -> (B, 1, d): ``forward`` at position ``pos``, in eval mode (no dropout).

        kv_cache (B, 2, h, capacity, d/h) holds the keys and values of the ``pos`` previous tokens; the new
        token's are written at ``pos`` (in place) and it attends to positions 0 .. pos. Written with the
        functional API on weights fetched once (``w``), and with T = 1 the heads split and merge with views:
        at batch 1 a step costs what its ~30 kernels cost, not Python.
        """
        B, d = x.shape[0], x.shape[-1]

        def norm(t: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
            return F.layer_norm(t, (d,), weight, bias, w.eps)

        h = norm(x, w.norm1_w, w.norm1_b) if w.norm_first else x
        qkv = F.linear(h, w.in_proj_w, w.in_proj_b).view(B, 3, w.heads, 1, w.head_dim)  # (B, 3, h, 1, d/h)
        kv_cache[:, :, :, pos : pos + 1] = qkv[:, 1:]
        kv = kv_cache[:, :, :, : pos + 1]  # (B, 2, h, pos+1, d/h)
        sa = F.scaled_dot_product_attention(qkv[:, 0], kv[:, 0], kv[:, 1])  # (B, h, 1, d/h)
        x = x + F.linear(sa.reshape(B, 1, d), w.sa_out_w, w.sa_out_b)  # (B, 1, d)
        x = x if w.norm_first else norm(x, w.norm1_w, w.norm1_b)

        h = norm(x, w.norm2_w, w.norm2_b) if w.norm_first else x
        q = F.linear(h, w.q_w, w.q_b).view(B, w.heads, 1, w.head_dim)  # (B, h, 1, d/h)
        ca = F.scaled_dot_product_attention(q, *cross_kv, attn_mask=cross_mask)  # (B, h, 1, d/h)
        x = x + F.linear(ca.reshape(B, 1, d), w.ca_out_w, w.ca_out_b)
        x = x if w.norm_first else norm(x, w.norm2_w, w.norm2_b)

        h = norm(x, w.norm3_w, w.norm3_b) if w.norm_first else x
        x = x + F.linear(F.relu(F.linear(h, w.ff1_w, w.ff1_b)), w.ff2_w, w.ff2_b)  # (B, 1, d)
        return x if w.norm_first else norm(x, w.norm3_w, w.norm3_b)


class StepWeights(NamedTuple):
    """A decoder layer's settings and tensors for :meth:`DecoderLayer.step`."""

    norm_first: bool
    heads: int
    head_dim: int
    eps: float
    in_proj_w: Tensor
    in_proj_b: Tensor
    sa_out_w: Tensor
    sa_out_b: Tensor
    q_w: Tensor
    q_b: Tensor
    ca_out_w: Tensor
    ca_out_b: Tensor
    ff1_w: Tensor
    ff1_b: Tensor
    ff2_w: Tensor
    ff2_b: Tensor
    norm1_w: Tensor
    norm1_b: Tensor
    norm2_w: Tensor
    norm2_b: Tensor
    norm3_w: Tensor
    norm3_b: Tensor


@dataclass
class DecoderState:
    """What incremental decoding keeps between steps, for a batch of N rows (images or beams).

    cross_kv[l]: cross-attention keys/values of layer l (N, h, S, d/h), computed once from the memory;
    cross_mask: (N, 1, 1, S) bool, True = may attend, or None when no position is padding;
    self_kv[l]: self-attention keys and values of layer l in one buffer (N, 2, h, capacity, d/h), the first
    ``length`` positions filled. A step writes into the buffers in place: use the state it returns.
    """

    cross_kv: list[tuple[Tensor, Tensor]]
    cross_mask: Tensor | None
    self_kv: list[Tensor]
    length: int = 0
    weights: list[StepWeights] = field(default_factory=list)  # per layer, fetched once by init_state

    @property
    def capacity(self) -> int:
        """Tokens the buffers can hold before they grow."""
        return self.self_kv[0].shape[3] if self.self_kv else 1 << 30

    def grow(self, capacity: int) -> DecoderState:
        """The same state with buffers of at least ``capacity`` positions."""
        if capacity <= self.capacity:
            return self
        self_kv = []
        for kv in self.self_kv:
            new = kv.new_zeros(*kv.shape[:3], capacity, kv.shape[4])
            new[:, :, :, : self.length] = kv[:, :, :, : self.length]
            self_kv.append(new)
        return DecoderState(self.cross_kv, self.cross_mask, self_kv, self.length, self.weights)

    def select(self, index: Tensor, cross: bool = True) -> DecoderState:
        """Keep rows ``index`` (N',): drop finished sequences or reorder beams (``cross=False``: the rows keep
        their image, so the cross-attention keys/values are left as they are)."""
        self_kv = []
        for kv in self.self_kv:  # copy only the filled prefix into fresh buffers
            new = kv.new_empty(len(index), *kv.shape[1:])
            new[:, :, :, : self.length] = kv[:, :, :, : self.length].index_select(0, index)
            self_kv.append(new)
        if not cross:
            return DecoderState(self.cross_kv, self.cross_mask, self_kv, self.length, self.weights)
        cross_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross_kv]
        mask = None if self.cross_mask is None else self.cross_mask.index_select(0, index)
        return DecoderState(cross_kv, mask, self_kv, self.length, self.weights)


class Decoder(nn.Module):
    """Token embedding (scaled by sqrt(d_model)) + 1-D sinusoid, decoder layers, final norm (pre-norm), Linear."""

    def __init__(self, cfg: Config, vocab_size: int):
        super().__init__()
        d = cfg.d_model
        self.d_model, self.norm_first = d, cfg.norm_first
        self.embedding = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.embedding.weight, std=d**-0.5)  # after the sqrt(d) scaling: unit variance
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.num_heads, cfg.dim_feedforward, cfg.dropout, cfg.norm_first)
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(d) if cfg.norm_first else nn.Identity()
        self.output = nn.Linear(d, vocab_size)
        self.register_buffer("pe", sinusoid_1d(512, d), persistent=False)  # (512, d), grown on demand

    def positions(self, start: int, length: int) -> Tensor:
        """Positional encodings (length, d) for positions start .. start + length - 1."""
        if start + length > self.pe.shape[0]:
            self.pe = sinusoid_1d(2 * (start + length), self.d_model, self.pe.device)
        return self.pe[start : start + length]

    def embed(self, tokens: Tensor, start: int = 0) -> Tensor:
        """tokens (B, T) -> embedding * sqrt(d_model) + positional encoding (B, T, d)."""
        pe = self.positions(start, tokens.shape[1]).to(self.embedding.weight.dtype)  # (T, d)
        x = torch.add(pe, self.embedding(tokens), alpha=math.sqrt(self.d_model))  # one fused op
        return self.dropout(x) if self.training else x

    def init_state(self, memory: Tensor, memory_mask: Tensor | None, capacity: int = 64) -> DecoderState:
        """Cross-attention keys/values of every layer, computed once, and empty self-attention buffers."""
        cross_kv = [layer.cross_attn.keys_values(memory) for layer in self.layers]  # (B, h, S, d/h) each
        cross_mask = None
        if memory_mask is not None and bool(memory_mask.any()):
            cross_mask = ~memory_mask[:, None, None, :]  # (B, 1, 1, S) True = attend
        self_kv = [memory.new_zeros(k.shape[0], 2, k.shape[1], capacity, k.shape[3]) for k, _ in cross_kv]
        weights = [layer.step_weights() for layer in self.layers]
        return DecoderState(
            cross_kv, cross_mask, self_kv, 0, weights
        )  # self_kv: (B, 2, h, capacity, d/h) each

    def forward(self, tokens: Tensor, state: DecoderState, need_weights: bool = False) -> tuple[Tensor, list]:
        """Teacher forcing (the state's cache is not used): tokens (B, T) -> logits (B, T, V), cross weights."""
        x = self.embed(tokens)  # (B, T, d)
        weights = []
        for layer, cross_kv in zip(self.layers, state.cross_kv):
            x, w = layer(x, cross_kv, state.cross_mask, need_weights=need_weights)
            weights.append(w)
        return self.output(self.norm(x)), weights  # (B, T, V)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One incremental step: the newest tokens (N,) -> logits (N, V) and the state with their keys/values."""
        if state.length >= state.capacity:
            state = state.grow(2 * state.capacity)
        x = self.embed(tokens[:, None], start=state.length)  # (N, 1, d)
        for cross_kv, kv_cache, w in zip(state.cross_kv, state.self_kv, state.weights):
            x = DecoderLayer.step(x, cross_kv, state.cross_mask, kv_cache, state.length, w)  # (N, 1, d)
        logits = self.output(self.norm(x[:, 0]))  # (N, V)
        return logits, DecoderState(
            state.cross_kv, state.cross_mask, state.self_kv, state.length + 1, state.weights
        )


# ----------------------------------------------------------------------------- the model
class Im2LatexModel(nn.Module):
    """ResNet-18 encoder + Transformer decoder; ``forward`` for training, ``decode_step`` for cached decoding."""

    def __init__(self, cfg: Config, vocab_size: int):
        super().__init__()
        if vocab_size < 4:
            raise I2LError(f"vocab_size must be at least 4 (the special tokens), got {vocab_size}")
        self.cfg, self.vocab_size = cfg, vocab_size
        self.encoder = Encoder(cfg.d_model, cfg.pretrained_backbone, cfg.dropout)
        self.decoder = Decoder(cfg, vocab_size)

    @staticmethod
    def feature_shape(height: int, width: int) -> tuple[int, int]:
        """(H', W') of the encoder's feature map for an H x W image."""
        return Encoder.feature_shape(height, width)

    def encode(self, images: Tensor, sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """images (B, 1, H, W), sizes (B, 2) -> memory (B, S, d_model), memory_mask (B, S) bool, True = padding."""
        images, sizes = check_images(images, sizes)
        features, valid = self.encoder(images, sizes)  # (B, d, H', W'), (B, H', W')
        memory = features.permute(0, 2, 3, 1).flatten(1, 2)  # (B, S, d); a view of channels-last features
        return memory, ~valid.flatten(1)  # (B, S, d), (B, S)

    def init_state(
        self, memory: Tensor, memory_mask: Tensor | None = None, capacity: int = 64
    ) -> DecoderState:
        """The decoding state for memory (B, S, d): cross-attention keys/values precomputed, empty cache."""
        return self.decoder.init_state(memory, memory_mask, capacity)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Feed the newest tokens (N,) -> logits (N, V) for the next token, and the grown state."""
        return self.decoder.step(tokens, state)

    def decode_full(self, memory: Tensor, memory_mask: Tensor | None, tokens: Tensor) -> Tensor:
        """Full recomputation (no cache): tokens (B, T) -> logits (B, T, V)."""
        return self.decoder(tokens, self.decoder.init_state(memory, memory_mask))[0]

    def forward(self, images: Tensor, tokens: Tensor, sizes: Tensor | None = None) -> Tensor:
        """Teacher forcing: images (B, 1, H, W), decoder input tokens (B, T) -> logits (B, T, V)."""
        memory, memory_mask = self.encode(images, sizes)
        return self.decode_full(memory, memory_mask, tokens)


def encoder_trace(model: Im2LatexModel, images: Tensor, sizes: Tensor | None = None) -> dict[str, Tensor]:
    """The output of every encoder stage for images (B, 1, H, W): inverted, stem, layer1-3, proj, proj+pos."""
    images, sizes = check_images(images, sizes)
    trace: dict[str, Tensor] = {}
    with torch.no_grad():
        model.encoder(images.to(next(model.parameters()).device), sizes, trace=trace)
    return trace


def parameter_counts(model: Im2LatexModel) -> dict[str, int]:
    """Number of parameters per part: backbone, projection, embedding, decoder layers, output, total."""

    def count(*modules: nn.Module) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    enc, dec = model.encoder, model.decoder
    return {
        "encoder.backbone": count(enc.conv1, enc.bn1, enc.layer1, enc.layer2, enc.layer3),
        "encoder.proj": count(enc.proj),
        "decoder.embedding": count(dec.embedding),
        "decoder.layers": count(dec.layers, dec.norm),
        "decoder.output": count(dec.output),
        "total": count(model),
    }


__all__ = [
    "Im2LatexModel",
    "Encoder",
    "Decoder",
    "DecoderLayer",
    "DecoderState",
    "StepWeights",
    "Attention",
    "sinusoid_1d",
    "sinusoid_2d",
    "check_images",
    "parameter_counts",
    "encoder_trace",
    "STRIDE",
    "MAX_IMAGE_SIDE",
]
