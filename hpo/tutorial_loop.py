"""The tutorial's training loop, kept to compare with (``--loader torchvision``): PIL images
through transforms, a DataLoader, ``nn.Module``, autograd and ``torch.optim.SGD``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.model import Net, build_model
from hpo.train import TUTORIAL_STEP, FitResult, OnEpoch, batches, run_epochs

EVAL_BATCH = 128  # the tutorial's test batch size


def fit_torchvision(
    config: TrainConfig, mnist: Mnist, device: torch.device, on_epoch: OnEpoch | None, *, full: bool
) -> FitResult:
    """The tutorial's loop: PIL images through transforms, a DataLoader, nn.Module, autograd and
    ``torch.optim.SGD``. Same batches in the same order as the tensor path, for comparison."""
    train_set, eval_set = mnist.torchvision_sets(full=full)
    net = build_model(config).to(device)
    optimiser = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)

    def train_epoch(lr: float) -> tuple[float, float]:
        for group in optimiser.param_groups:
            group["lr"] = lr
        order = [b.tolist() for b in batches(len(train_set), config.batch_size, generator)]
        net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, labels in DataLoader(train_set, batch_sampler=order):
            images, labels = images.to(device), labels.to(device)
            out = net(images)
            loss = criterion(out, labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item()
            correct += int((out.argmax(1) == labels).sum())
            seen += len(labels)
        return loss_sum / len(order), correct / seen

    eval_loader = DataLoader(eval_set, batch_size=EVAL_BATCH)
    history, status = run_epochs(
        config, device, train_epoch, lambda: _evaluate_loader(net, eval_loader, device), on_epoch
    )
    return FitResult(
        config,
        str(device),
        "test" if full else "val",
        tuple(history),
        status,
        TUTORIAL_STEP,
        net.cpu().eval(),
    )


@torch.no_grad()
def _evaluate_loader(net: Net, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    net.eval()
    loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        out = net(images)
        loss += float(torch.nn.functional.cross_entropy(out, labels, reduction="sum"))
        correct += int((out.argmax(1) == labels).sum())
        seen += len(labels)
    return loss / seen, correct / seen
