"""One process of test_train.py's DDP test, configured by torchrun's environment variables.

Each rank trains one step on its shard of the global batch through ``mlstep.train`` (which
initialises gloo and wraps the model in DDP itself) and saves its gradients to OUT_DIR.
The test forks it through :func:`run`; by hand:
``RANK=r LOCAL_RANK=r WORLD_SIZE=n MASTER_ADDR=127.0.0.1 MASTER_PORT=p python ddp_worker.py OUT_DIR``.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 1))


def global_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g), torch.randn(n, 1, generator=g)


def step_fn(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)  # mean over this rank's shard; DDP averages over ranks


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    import torch.distributed as dist

    from mlstep.tools.runtime import is_main_process
    from mlstep.train import TrainConfig, train

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    x, y = global_batch()
    shard = (x.chunk(world)[rank], y.chunk(world)[rank])
    model = make_model()
    config = TrainConfig(
        max_steps=1,
        grad_clip=None,
        device="cpu",
        progress=False,
        checkpoint_path=os.path.join(out_dir, "ckpt.pt"),
    )
    train(model, [shard], step_fn, config)
    assert dist.is_initialized() and dist.get_world_size() == world
    torch.save(
        {"main": is_main_process(), "grads": {n: p.grad for n, p in model.named_parameters()}},
        os.path.join(out_dir, f"grads{rank}.pt"),
    )
    dist.destroy_process_group()


def run(rank: int, world: int, port: int, out_dir: str) -> None:
    """Entry point for a forked process: set what torchrun would set, then train."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    main(out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
