"""Flax modules that configs under test point at by 'zoo_modules:Name' (tests/ is on the path)."""

import flax.linen as nn


class ThreeLogits(nn.Module):
    """A model whose output does not fit a 10-class dataset: [B, 3]."""

    activation: str = "relu"

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class Broken(nn.Module):
    """A module that fails when traced."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10)(x.reshape(x.shape[0], -1)) @ x


class NoParams(nn.Module):
    """A module with nothing to train: logits from a fixed projection of the pixels."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return x.reshape(x.shape[0], -1)[:, :10]


class JunkLayout(nn.Module):
    """A linear model whose torch_layout hook drops the bias (a layout must keep every number)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10, name="fc")(x.reshape(x.shape[0], -1))

    @staticmethod
    def torch_layout(params):
        return [("fc.weight", params["fc"]["kernel"])]
