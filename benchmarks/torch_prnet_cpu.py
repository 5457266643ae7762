"""Benchmark-only: a faithful PyTorch resfcn256 (PRNet) train step on CPU, for comparison.

NOT part of prn_jax: the package and its tests never import this file, and PyTorch is not a
project dependency. Run it from a throwaway environment:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python benchmarks/torch_prnet_cpu.py --size 128 256 --batch 16

Network as docs/network.md: TF SAME padding (extra pad after for even kernels), no
biases, BatchNorm (eps 1e-3, TF decay 0.999 = PyTorch momentum 0.001) + ReLU, resBlocks with
1x1 stride-s shortcut, 17 transposed 4x4 convs, BN + sigmoid at the end. The train step is
PRNet's: weighted mean squared error of the position map, Adam (lr 1e-4) with the 2e-4 L2
weight regulariser applied as coupled weight decay on conv kernels only. The script asserts the
trainable parameter count 13,353,618 at width 16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

EXPECTED_PARAMS_W16 = 13_353_618


def tf_same_pads(k: int, s: int) -> tuple[int, int]:
    total = max(k - s, 0)
    return total // 2, total - total // 2


class ConvSame(nn.Module):
    """TF conv2d, SAME padding (input sizes divisible by the stride), no bias."""

    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, padding=0, bias=False)
        lo, hi = tf_same_pads(k, s)
        self.pad = (lo, hi, lo, hi)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class ConvTransposeSame(nn.Module):
    """TF conv2d_transpose, SAME padding, output size = input size * stride, no bias.

    TF: out[o*s + t - lo] += x[o] @ w[t]; PyTorch's ConvTranspose2d with padding=lo computes
    the same sum for out indices 0.., plus (stride 1) one extra trailing row/column, cropped.
    """

    def __init__(self, cin, cout, k, s):
        super().__init__()
        lo, _ = tf_same_pads(k, s)
        self.conv = nn.ConvTranspose2d(cin, cout, k, s, padding=lo, bias=False)
        self.stride = s

    def forward(self, x):
        h, w = x.shape[2] * self.stride, x.shape[3] * self.stride
        return self.conv(x)[:, :, :h, :w]


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.001)


class ResBlock(nn.Module):
    def __init__(self, cin, c, s, k=4):
        super().__init__()
        self.shortcut = ConvSame(cin, c, 1, s) if (s != 1 or cin != c) else None
        self.conv1, self.bn1 = ConvSame(cin, c // 2, 1, 1), bn(c // 2)
        self.conv2, self.bn2 = ConvSame(c // 2, c // 2, k, s), bn(c // 2)
        self.conv3 = ConvSame(c // 2, c, 1, 1)
        self.bn_out = bn(c)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn_out(self.conv3(h) + shortcut))


class ResFCN256(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        w = width
        self.stem, self.stem_bn = ConvSame(3, w, 4, 1), bn(w)
        blocks, cin = [], w
        for c, s in [
            (2 * w, 2),
            (2 * w, 1),
            (4 * w, 2),
            (4 * w, 1),
            (8 * w, 2),
            (8 * w, 1),
            (16 * w, 2),
            (16 * w, 1),
            (32 * w, 2),
            (32 * w, 1),
        ]:
            blocks.append(ResBlock(cin, c, s))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        dec, bns = [], []
        for c, s in [
            (32 * w, 1),
            (16 * w, 2),
            (16 * w, 1),
            (16 * w, 1),
            (8 * w, 2),
            (8 * w, 1),
            (8 * w, 1),
            (4 * w, 2),
            (4 * w, 1),
            (4 * w, 1),
            (2 * w, 2),
            (2 * w, 1),
            (w, 2),
            (w, 1),
            (3, 1),
            (3, 1),
            (3, 1),
        ]:
            dec.append(ConvTransposeSame(cin, c, 4, s))
            bns.append(bn(c))
            cin = c
        self.dec, self.dec_bn = nn.ModuleList(dec), nn.ModuleList(bns)

    def forward(self, x):
        h = F.relu(self.stem_bn(self.stem(x)))
        h = self.blocks(h)
        for i, (conv, norm) in enumerate(zip(self.dec, self.dec_bn)):
            h = norm(conv(h))
            h = torch.sigmoid(h) if i == len(self.dec) - 1 else F.relu(h)
        return h


def train_step_time(size, batch, width, steps, warmup):
    torch.manual_seed(0)
    model = ResFCN256(width).train()
    n_params = sum(p.numel() for p in model.parameters())
    if width == 16:
        assert n_params == EXPECTED_PARAMS_W16, n_params
    kernels = [p for n, p in model.named_parameters() if p.ndim == 4]
    others = [p for n, p in model.named_parameters() if p.ndim != 4]
    opt = torch.optim.Adam(
        [{"params": kernels, "weight_decay": 2e-4}, {"params": others, "weight_decay": 0.0}], lr=1e-4
    )
    images = torch.rand(batch, 3, size, size)
    labels = torch.rand(batch, 3, size, size)
    mask = torch.rand(1, 1, size, size)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.mean(((model(images) - labels) ** 2) * mask)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"  size {size}: step times {', '.join(f'{t:.3f}' for t in times)} s", flush=True)
    return statistics.median(times), min(times), n_params


def forward_time(size, batch, width, steps, warmup):
    """Median and minimum seconds of an inference forward (eval mode, no autograd)."""
    model = ResFCN256(width).eval()
    images = torch.rand(batch, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            start = time.perf_counter()
            model(images)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description="PyTorch PRNet CPU train-step benchmark")
    parser.add_argument("--size", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (oneDNN caches primitives)")
    parser.add_argument("--forward", action="store_true", help="time the inference forward instead")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.forward:
        for size in args.size:
            t, t_min = forward_time(size, args.batch, args.width, args.steps, args.warmup)
            print(
                f"size {size} batch {args.batch} width {args.width}: forward median {1e3 * t:.1f} ms, "
                f"min {1e3 * t_min:.1f} ms over {args.steps}",
                flush=True,
            )
        return
    for size in args.size:
        t, t_min, n = train_step_time(size, args.batch, args.width, args.steps, args.warmup)
        print(
            f"size {size} batch {args.batch} width {args.width} params {n}: train step "
            f"median {t:.3f} s, min {t_min:.3f} s over {args.steps} steps "
            f"({args.batch / t:.1f} img/s at the median)",
            flush=True,
        )


if __name__ == "__main__":
    main()
