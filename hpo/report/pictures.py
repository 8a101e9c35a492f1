"""The tutorial's matplotlib pictures, redrawn for the winner, as base64 PNGs for the HTML.

Uses matplotlib's object API (no pyplot): no global figure state, no GUI backend.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpo.mnist import Mnist
from hpo.retrain import Trained
from hpo.splits import normalise
from hpo.train import predict

WRONG, RIGHT = "#c00000", "#000000"
MAX_SHOWN = 12
# The minimum of cross entropy on softmax outputs (log(1 + 9/e)): the double-softmax floor.
SOFTMAX_FLOOR = 1.4612


@dataclass(frozen=True)
class Picture:
    title: str
    caption: str
    png_base64: str


@dataclass(frozen=True)
class Predictions:
    labels: torch.Tensor
    best: torch.Tensor
    baseline: torch.Tensor

    @property
    def fixed(self) -> torch.Tensor:
        """Indices of test digits the best model gets right and the baseline gets wrong."""
        return ((self.best == self.labels) & (self.baseline != self.labels)).nonzero().flatten()

    @property
    def broken(self) -> torch.Tensor:
        return ((self.best != self.labels) & (self.baseline == self.labels)).nonzero().flatten()


def predictions(mnist: Mnist, best: Trained, baseline: Trained) -> Predictions:
    # Only the 10k test images are normalised here, not the whole training set.
    x = normalise(mnist.arrays.test_images)
    return Predictions(mnist.arrays.test_labels, predict(best.model, x), predict(baseline.model, x))


def all_pictures(mnist: Mnist, best: Trained, baseline: Trained) -> list[Picture]:
    p = predictions(mnist, best, baseline)
    images = mnist.arrays.test_images
    n_fixed, n_broken = len(p.fixed), len(p.broken)
    n_train = len(mnist.arrays.train_labels)
    first6 = torch.arange(min(6, len(p.labels)))
    return [
        Picture(
            "Six test digits, as the tutorial shows them, with the best model's prediction",
            f"Test accuracy of this best model {best.test_acc:.2%}; of the tutorial's "
            f"{baseline.test_acc:.2%} (one seed each, trained on all {n_train:,} training "
            "images). Red: wrong.",
            _digits(images, p, first6, rows=2, cols=3, tutorial=False),
        ),
        Picture(
            f"Digits the best model gets right and the tutorial gets wrong ({n_fixed})",
            _shown(n_fixed) + "Title: true label / best / tutorial.",
            _digits(images, p, p.fixed[:MAX_SHOWN], rows=2, cols=6, tutorial=True),
        ),
        Picture(
            f"Digits the best model gets wrong and the tutorial gets right ({n_broken})",
            _shown(n_broken) + "Title: true label / best / tutorial.",
            _digits(images, p, p.broken[:MAX_SHOWN], rows=2, cols=6, tutorial=True),
        ),
        Picture(
            "Training loss: best vs the tutorial",
            _loss_caption(best, baseline, n_train),
            _losses(best, baseline),
        ),
    ]


def _shown(n: int) -> str:
    return f"The first {min(n, MAX_SHOWN)} of {n} in test-set order. " if n else "None. "


def _loss_caption(best: Trained, baseline: Trained, n_train: int) -> str:
    text = f"Mean training loss per epoch, each retrained on all {n_train:,} training images."
    if "softmax" in (best.config.head, baseline.config.head) and best.config.head != (
        baseline.config.head
    ):
        text += (
            f" The tutorial's double softmax cannot go below {SOFTMAX_FLOOR:.2f}, so the "
            "two heads' losses are on different scales: compare shapes, not levels."
        )
    return text


def _digits(
    images: torch.Tensor,
    p: Predictions,
    index: torch.Tensor,
    *,
    rows: int,
    cols: int,
    tutorial: bool,
) -> str:
    fig = Figure(figsize=(cols * 1.6, rows * (1.9 if tutorial else 2.3)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(index):
            ax.set_axis_off()
            continue
        i = int(index[k])
        ax.imshow(images[i].numpy(), cmap="gray", interpolation="none")
        truth, mine, theirs = int(p.labels[i]), int(p.best[i]), int(p.baseline[i])
        if tutorial:
            ax.set_title(f"{truth} / {mine} / {theirs}", fontsize=10)
        else:
            ax.set_title(
                f"Ground Truth: {truth}\nbest predicts {mine}",
                fontsize=10,
                color=RIGHT if mine == truth else WRONG,
            )
    fig.tight_layout()
    return _png(fig)


def _losses(best: Trained, baseline: Trained) -> str:
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    for trained, name, colour in ((baseline, "tutorial", "#222222"), (best, "best", "#d62728")):
        epochs = range(1, len(trained.train_loss) + 1)
        ax.plot(
            epochs,
            trained.train_loss,
            marker="o",
            color=colour,
            label=f"{name} ({trained.config.head} head)",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Train Loss")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
