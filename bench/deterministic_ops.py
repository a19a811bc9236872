"""What the deterministic replacements cost: DeepLab-v2's loss step with them and with torch's own ops.

    python bench/deterministic_ops.py [--device cpu|cuda] [--repeats 20]

Times forward + backward of the loss at the VOC recipe's sizes (batch 10, 21 classes, 41x41 logits upsampled
to 321x321 crops): matrix-product upsampling with one-hot cross-entropy (what the pipeline runs) against
F.interpolate with F.cross_entropy (torch's ops, refused on CUDA in deterministic mode, so timed there with the
mode off). Prints the figures; asserts nothing.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.models.ops import cross_entropy_sum, resize_bilinear  # noqa: E402


def replacement_step(logits, labels):
    total, count = cross_entropy_sum(resize_bilinear(logits, labels.shape[1:]), labels, 255)
    return total / count


def torch_step(logits, labels):
    upsampled = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
    return F.cross_entropy(upsampled, labels, ignore_index=255)


def seconds_per_step(step, logits, labels, repeats: int) -> float:
    def once():
        logits.grad = None
        step(logits, labels).backward()

    once()  # warm-up
    if logits.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        once()
    if logits.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 21, 41, 41, generator=generator).to(device).requires_grad_()
    labels = torch.randint(0, 21, (10, 321, 321), generator=generator)
    labels[:, :20] = 255
    labels = labels.to(device)
    print(f"DeepLab-v2 loss, forward + backward, batch 10, 21 classes, 41x41 -> 321x321, on {device} "
          f"({torch.get_num_threads()} threads)" if device.type == "cpu" else f"on {torch.cuda.get_device_name()}")
    torch.use_deterministic_algorithms(device.type == "cpu")  # torch's upsampling backward is refused on CUDA
    baseline = seconds_per_step(torch_step, logits, labels, args.repeats)
    torch.use_deterministic_algorithms(True)
    ours = seconds_per_step(replacement_step, logits, labels, args.repeats)
    print(f"  torch's ops (F.interpolate + F.cross_entropy): {1000 * baseline:.1f} ms")
    print(f"  deterministic replacements:                    {1000 * ours:.1f} ms ({ours / baseline:.2f}x)")


if __name__ == "__main__":
    main()
