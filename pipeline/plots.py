"""PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def learning_curves(records: Sequence[dict], path: Path, title: str, reference: float | None = None) -> None:
    """Train and test error (log scale) and test accuracy against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [100 * r["train_error"] for r in records], "o-", label="train error")
    ax1.plot(epochs, [100 * r["test_error"] for r in records], "s-", label="test error")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("error (%)")
    ax1.legend()
    ax1.grid(alpha=0.3, which="both")
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in records], "s-", color="C1", label="test accuracy")
    if reference is not None:
        ax2.axhline(100 * reference, color="k", ls="--", lw=1, label=f"paper target {100 * reference:.1f} %")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
