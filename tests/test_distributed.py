"""RCA under DistributedDataParallel: two CPU processes (gloo) against one process on the same batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from wsss.models.classifier import CAMClassifier
from wsss.train_classifier import rca_step

RCA = {"contrast": True, "aggregation": False, "embed_dim": 8, "bank_size": 4, "bank_update": "fifo",
       "bank_momentum": 0.99, "bank_confidence": 0.0, "contrast_start_epoch": 0, "temperature": 0.07,
       "mixup_beta": 8.0}


def make_model():
    torch.manual_seed(0)
    model = CAMClassifier(3, {"width": 0.125}, rca=RCA)
    model.bank.update(F.normalize(torch.randn(5, 8), dim=1), torch.tensor([0, 0, 1, 2, 2]))
    return model


def make_batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=generator)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    return images, targets, torch.tensor([11, 12, 13, 14])


def one_step(model, images, targets, seeds):
    """Contrast loss, its gradient on the projection head, and the bank after the update."""
    model.train()
    model.projection.layers[1].eval()  # BatchNorm with fixed statistics: no per-rank batch dependence
    out = model(images)
    contrast = rca_step(model, out, targets, seeds, RCA, epoch=0)
    model.zero_grad()
    contrast.backward()
    grad = model.projection.layers[0].weight.grad.clone()
    if dist.is_initialized():  # what DDP does to gradients: average over ranks
        dist.all_reduce(grad)
        grad /= dist.get_world_size()
    return float(contrast.detach()), grad, model.bank.entries.clone(), model.bank.pointer.clone()


def worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    images, targets, seeds = make_batch()
    half = slice(2 * rank, 2 * rank + 2)
    result = one_step(make_model(), images[half], targets[half], seeds[half])
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_ranks_hold_the_same_bank_and_the_loss_does_not_depend_on_the_gpu_count(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    # every rank applied the same, all-gathered bank updates
    assert torch.equal(rank0[2], rank1[2]) and torch.equal(rank0[3], rank1[3])

    images, targets, seeds = make_batch()
    model = make_model()
    single_loss, single_grad, single_bank, single_pointer = one_step(model, images, targets, seeds)
    # ... and the same as one process that saw the whole batch
    assert torch.equal(rank0[3], single_pointer)
    torch.testing.assert_close(rank0[2], single_bank)
    # the loss is the global mean: the ranks' losses (each x world size) average to the single-process
    # loss, and so do the gradients DDP averages
    assert abs((rank0[0] + rank1[0]) / 2 - single_loss) < 1e-5 * max(1.0, abs(single_loss))
    torch.testing.assert_close(rank0[1], single_grad)
    torch.testing.assert_close(rank1[1], single_grad)
