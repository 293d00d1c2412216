"""The zoo card's figures (matplotlib, written as PNG and SVG).

Figure 2 of the paper: accuracy distribution per epoch; Figure 3: a 2-D embedding of the
weights of all epochs (UMAP when umap-learn is installed, else PCA, said in the title).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402


def save(fig, folder: pathlib.Path, name: str) -> list[str]:
    paths = []
    for suffix in ("png", "svg"):
        path = folder / f"{name}.{suffix}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def accuracy_over_epochs(train_acc: np.ndarray, test_acc: np.ndarray, folder: pathlib.Path) -> list[str]:
    """train_acc, test_acc [epochs, M] (viable models): a box per epoch, train and test side by side."""
    epochs = np.arange(train_acc.shape[0])
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(epochs) + 3), 4))
    clean = lambda a: [row[np.isfinite(row)] for row in a]
    for values, offset, color, label in (
        (train_acc, -0.18, "tab:blue", "train"),
        (test_acc, 0.18, "tab:orange", "test"),
    ):
        parts = ax.boxplot(
            clean(values),
            positions=epochs + offset,
            widths=0.3,
            patch_artist=True,
            showfliers=False,
            manage_ticks=False,
        )
        for box in parts["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.6)
        ax.plot([], [], color=color, lw=6, alpha=0.6, label=label)
    shown = epochs[:: max(1, len(epochs) // 12)]
    ax.set_xticks(shown, [str(e) for e in shown])
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy over epochs (Figure 2)")
    ax.legend()
    return save(fig, folder, "accuracy_over_epochs")


def embed_2d(weights: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """[N, P] -> ([N, 2], method): UMAP (umap-learn) or, without it, PCA."""
    try:
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(weights), "UMAP"
    except ImportError:
        return pca(weights, 2), "PCA (umap-learn not installed)"


def pca(weights: np.ndarray, components: int = 2) -> np.ndarray:
    """[N, P] -> [N, components]: projections of the centred rows on their top principal axes.

    From the top eigenvectors (only those) of the smaller of the P x P and N x N second-moment
    matrices, in float64, instead of an SVD of the data: the same projections up to sign, in
    min(N, P)^2 memory.
    """
    centred = np.asarray(weights, np.float64) - np.mean(weights, axis=0, dtype=np.float64)
    small = min(centred.shape)
    top = [max(small - components, 0), small - 1]
    if centred.shape[1] <= centred.shape[0]:
        _, axes = scipy.linalg.eigh(centred.T @ centred, subset_by_index=top)  # ascending
        return centred @ axes[:, ::-1]
    values, vectors = scipy.linalg.eigh(centred @ centred.T, subset_by_index=top)  # X X^T = U S^2 U^T
    return vectors[:, ::-1] * np.sqrt(np.maximum(values[::-1], 0.0))  # projections U S


def weight_embedding(weights: np.ndarray, colours: dict[str, np.ndarray], folder: pathlib.Path) -> list[str]:
    """weights [N, P] of (model, epoch) rows; one panel per colouring (epoch, init, activation)."""
    points, method = embed_2d(weights)
    fig, axes = plt.subplots(1, len(colours), figsize=(5 * len(colours), 4.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], colours.items()):
        if values.dtype.kind in "iuf":
            scatter = ax.scatter(points[:, 0], points[:, 1], c=values, s=4, cmap="viridis")
            fig.colorbar(scatter, ax=ax, label=name)
        else:
            for category in sorted(set(values.tolist())):
                mask = values == category
                ax.scatter(points[mask, 0], points[mask, 1], s=4, label=str(category))
            ax.legend(markerscale=3, fontsize=8)
        ax.set_title(f"{method}, by {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, folder, "weights_embedding")


def final_accuracy(train_acc: np.ndarray, test_acc: np.ndarray, folder: pathlib.Path) -> list[str]:
    """Last-epoch test accuracy histogram, and train vs test accuracy (generalization gap)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(test_acc[np.isfinite(test_acc)], bins=30, color="tab:orange")
    left.set_xlabel("test accuracy")
    left.set_ylabel("models")
    left.set_title("Final test accuracy")
    right.scatter(train_acc, test_acc, s=6)
    low = float(np.nanmin([np.nanmin(train_acc), np.nanmin(test_acc)]))
    right.plot([low, 1], [low, 1], color="grey", lw=1)
    right.set_xlabel("train accuracy")
    right.set_ylabel("test accuracy")
    right.set_title("Generalization gap")
    return save(fig, folder, "final_accuracy")


def sparsity(sparsity_by_epoch: np.ndarray, test_acc: np.ndarray, folder: pathlib.Path) -> list[str]:
    """Twin zoos: sparsity [epochs, M] over epochs, and final test accuracy against sparsity."""
    epochs = np.arange(sparsity_by_epoch.shape[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.boxplot(
        [row[np.isfinite(row)] for row in sparsity_by_epoch],
        positions=epochs,
        widths=0.5,
        showfliers=False,
        manage_ticks=False,
    )
    left.plot(epochs, np.nanmean(sparsity_by_epoch, axis=1), color="tab:red", label="mean")
    left.set_xticks(epochs[:: max(1, len(epochs) // 12)])
    left.set_xlabel("epoch")
    left.set_ylabel("sparsity (share of weights with log alpha >= 3)")
    left.set_title("Sparsity over epochs")
    left.legend()
    right.scatter(sparsity_by_epoch[-1], test_acc[-1], s=8)
    right.set_xlabel("final sparsity")
    right.set_ylabel("final test accuracy (masked)")
    right.set_title("Accuracy vs sparsity")
    return save(fig, folder, "sparsity")
