"""The model registry: what `config.model` names, as the population programs call it.

  model.arch = "cnn_s" | "cnn_m"   the original zoos' CNNs (fixed image size)
  model.arch = "cnn"               convs `model.convs` = ((features, kernel, pool), ...), then
                                   fully connected layers `model.widths` (CNN-s is
                                   convs ((8, 5, True), (6, 5, True), (4, 2, False)), widths (20,))
  model.arch = "mlp"               fully connected layers `model.widths` on the flattened image
  model.arch = "resnet18"          the ResNet-18 zoos (their own protocol)
  model.module = "pkg.mod:Class"   your own Flax module (or the class itself), built with
                                   `model.kwargs`; it overrides model.arch

A custom module is called as `module(x, train=...)` with x [B, H, W, C] float32 (normalised)
and returns logits [B, classes]. If it declares an `activation` field it receives the model's
`activation` factor (a name), and `num_classes` likewise. The `dropout` factor reaches a module
whose `__call__` takes `dropout_rate`: in a group with dropout it is called with each model's
rate (a traced scalar; `jaxzoo.models.cnn.dropout` applies it, rng 'dropout'), otherwise without
it; any other dropout is the module's own `nn.Dropout`. The `init`
factor draws every `kernel` (biases start at 0.01, as the original); other parameters keep the
module's own initialisation.

Export keys: the built-in CNNs and MLPs use the original zoos' `module_list.N` keys. A custom
module's parameters map to PyTorch's by default as `<path>.weight` / `<path>.bias` (Flax
module names joined by '.'; Dense kernels [in, out] transposed to Linear's [out, in], Conv
kernels HWIO to OIHW; norm `scale` -> `weight`), in the order the module creates them, and
that order is also the flat-vector order. A module may instead define a static method
`torch_layout(params) -> [(key, array), ...]` that receives one model's params (or a
population's, with a leading axis) and returns PyTorch-layout arrays in state_dict order.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo.errors import UserError
from jaxzoo.models.cnn import ARCHS, CNN, ArchSpec, ConvSpec

FAMILIES = ("cnn", "mlp")
RESNET_ARCHS = ("resnet18",)
MODEL_ARCHS = (*ARCHS, *FAMILIES, *RESNET_ARCHS)
CUSTOM = "custom"
TORCH_LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}


class ModelError(UserError, ValueError):
    """A model that cannot be built; the message names the config field and the fix."""


def import_object(spec: Any, field: str) -> Any:
    """'package.module:attribute' -> the object (an object is returned as it is)."""
    if not isinstance(spec, str):
        return spec
    spec = NAMED_MODULES.get(spec, spec)  # a registered module's short name
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelError(f"{field}={spec!r} is not 'package.module:Name': name the module and the attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import failure is the user's module's
        raise ModelError(
            f"{field}={spec!r}: module {module_name!r} does not import ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): fix it or put it on PYTHONPATH"
        ) from None
    try:
        obj = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ModelError(f"{field}={spec!r}: {module_name} has no {attribute!r}: check the name") from None
    return obj


def object_name(obj: Any) -> str:
    """'module:qualname' of a class or function, the string itself for a string."""
    return obj if isinstance(obj, str) else f"{obj.__module__}:{obj.__qualname__}"


def is_custom(model_config) -> bool:
    return bool(model_config.get("module"))


def arch_name(model_config) -> str:
    """The registry name, or 'custom' for a module of the user's."""
    return CUSTOM if is_custom(model_config) else model_config["arch"]


def arch_spec(model_config, image_size: int, channels: int, num_classes: int) -> ArchSpec:
    """The ArchSpec of a built-in CNN or MLP for images [image_size, image_size, channels]."""
    arch = model_config["arch"]
    if arch in ARCHS:
        return dataclasses.replace(ARCHS[arch], num_classes=num_classes, channels_in=channels)
    convs = tuple(ConvSpec(*map(_plain, conv)) for conv in model_config.get("convs", ())) if arch == "cnn" else ()
    return ArchSpec(
        name=arch,
        image_size=image_size,
        convs=convs,
        hidden=tuple(model_config.get("widths", ())),
        num_classes=num_classes,
        dropout_after_last_conv=True,
        dropout_always_present=False,
        channels_in=channels,
    )


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def check_arch(model_config, image_size: int) -> None:
    """ModelError naming the field unless a built-in CNN / MLP fits images of `image_size`."""
    arch = model_config["arch"]
    if arch in ARCHS:
        need = ARCHS[arch].image_size
        if image_size != need:
            raise ModelError(
                f"model.arch={arch} needs {need}px images, data.image_size is {image_size}: set "
                f"data.image_size={need} or use model.arch='cnn' with model.convs"
            )
        return
    widths = model_config.get("widths", ())
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ModelError(f"model.widths={tuple(widths)!r} must be positive integers, e.g. (64, 32)")
    if arch == "mlp":
        return
    convs = model_config.get("convs", ())
    if not convs:
        raise ModelError(
            "model.arch='cnn' needs model.convs, e.g. ((8, 5, True), (6, 5, True)) as (features, kernel, pool)"
        )
    size = image_size
    for i, conv in enumerate(convs):
        ok = (
            isinstance(conv, (tuple, list))
            and len(conv) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in conv[:2])
            and isinstance(conv[2], bool)
        )
        if not ok:
            raise ModelError(f"model.convs[{i}]={conv!r} is not (features, kernel, pool): e.g. (8, 5, True)")
        size = size - conv[1] + 1
        size = size // 2 if conv[2] else size
        if size < 1:
            raise ModelError(
                f"model.convs[{i}] leaves no pixels of a {image_size}px image: use smaller kernels, "
                "fewer pools or larger images"
            )


def takes_dropout_rate(module_cls: Any) -> bool:
    """Whether a custom module's `__call__` takes the population's per-model `dropout_rate`."""
    return isinstance(module_cls, type) and "dropout_rate" in inspect.signature(module_cls.__call__).parameters


class CustomModel:
    """A user's Flax module behind the call of the built-in models:
    `init(key, x, activation_index, dropout_rate, train)` and `apply(variables, x, ...)`."""

    def __init__(self, module_cls: Any, kwargs: dict, activation: str, num_classes: int, use_dropout: bool = False):
        fields = {f.name for f in dataclasses.fields(module_cls)} if dataclasses.is_dataclass(module_cls) else set()
        kwargs = dict(kwargs)
        if "activation" in fields:
            kwargs.setdefault("activation", activation)
        if "num_classes" in fields:
            kwargs.setdefault("num_classes", num_classes)
        try:
            self.module = module_cls(**kwargs)
        except TypeError as error:
            raise ModelError(
                f"model.module {object_name(module_cls)}(**model.kwargs) fails ({error}): fix model.kwargs"
            ) from None
        parameters = inspect.signature(type(self.module).__call__).parameters
        self.takes_train = "train" in parameters
        self.passes_dropout = use_dropout and takes_dropout_rate(module_cls)

    def _call_kwargs(self, train: bool, dropout_rate) -> dict:
        kwargs = {"train": train} if self.takes_train else {}
        if self.passes_dropout:
            kwargs["dropout_rate"] = dropout_rate
        return kwargs

    def init(self, key, x, activation_index, dropout_rate, train: bool):
        del activation_index
        return self.module.init({"params": key, "dropout": key}, x, **self._call_kwargs(train, dropout_rate))

    def apply(self, variables, x, activation_index, dropout_rate, train: bool, rngs=None, **kwargs):
        del activation_index
        return self.module.apply(variables, x, rngs=rngs, **self._call_kwargs(train, dropout_rate), **kwargs)

    def torch_layout(self):
        return getattr(type(self.module), "torch_layout", None)


def build_model(
    model_config, activation: str | tuple[str, ...], use_dropout: bool, conv: str, image_shape, num_classes: int
):
    """The module one group of a population trains: a CNN of the registry (`activation`: a name,
    or several, of which each model applies its own) or a custom one (one activation: its
    module's field)."""
    activations = (activation,) if isinstance(activation, str) else tuple(activation)
    if is_custom(model_config):
        (activation,) = activations
        cls = import_object(model_config["module"], "model.module")
        return CustomModel(cls, _kwargs(model_config), activation, num_classes, use_dropout)
    arch = arch_spec(model_config, image_shape[0], image_shape[-1], num_classes)
    return CNN(arch=arch, activations=activations, use_dropout=use_dropout, conv=conv)


def _kwargs(model_config) -> dict:
    kwargs = model_config.get("kwargs") or {}
    return kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)


def params_shapes(model, image_shape) -> dict:
    """One model's params as shapes (jax.ShapeDtypeStruct leaves)."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), 0, 0.0, train=False))[
        "params"
    ]


def param_order(model, image_shape) -> list[tuple[str, ...]]:
    """The params' key paths in the order the module creates them (an eager init on one image:
    transformed functions return dicts with sorted keys)."""
    params = model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), 0, 0.0, train=False)["params"]
    return list(traverse_util.flatten_dict(params))


def check_custom_model(model_config, image_shape, num_classes: int) -> None:
    """ModelError naming model.module unless it builds and maps [B, H, W, C] to [B, classes]."""
    if not is_custom(model_config):
        return
    name = object_name(model_config["module"])
    cls = import_object(model_config["module"], "model.module")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"model.module={name} is not a flax.linen Module class: point it at one")
    model = CustomModel(cls, _kwargs(model_config), "relu", num_classes, use_dropout=True)
    x = jnp.zeros((2, *image_shape))
    try:
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, 0, 0.0, train=False))
        out = jax.eval_shape(lambda v: model.apply(v, x, 0, 0.0, train=False), variables)
        rngs = {"dropout": jax.random.key(0)}
        jax.eval_shape(lambda v: model.apply(v, x, 0, 0.0, train=True, rngs=rngs), variables)  # as trained
    except Exception as error:  # the user's module failed to trace
        raise ModelError(
            f"model.module={name} fails on images [B, {', '.join(map(str, image_shape))}] "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}): fix the "
            "module"
        ) from None
    if not jax.tree.leaves(variables.get("params", {})):
        raise ModelError(f"model.module={name} has no parameters: a zoo of it has nothing to train; give it a layer")
    extra = sorted(set(variables) - {"params"})
    if extra:
        raise ModelError(
            f"model.module={name} has variable collections {extra} besides params (e.g. BatchNorm "
            "statistics): jaxzoo trains params only; use LayerNorm or none"
        )
    shape = getattr(out, "shape", None)
    if shape != (2, num_classes):
        raise ModelError(
            f"model.module={name} returns shape {shape} for 2 images, not [B, {num_classes}] "
            f"(the dataset's classes): make its last layer nn.Dense({num_classes})"
        )
    hook = model.torch_layout()
    if hook is not None:  # the export's mapping, tried on one model's (zero) params
        params = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), variables["params"])
        checked_layout(hook, params, 0)


def default_torch_tensors(params: dict, lead: int) -> Iterator[tuple[str, np.ndarray]]:
    """The default export mapping of a custom module's params (see the module docstring);
    `lead` leading axes (1 for a population) are kept in front."""
    for path, leaf in traverse_util.flatten_dict(params).items():
        array = np.asarray(leaf)
        name = TORCH_LEAF_NAMES.get(path[-1], path[-1])
        if path[-1] == "kernel":
            core = array.ndim - lead
            axes = tuple(range(lead))
            if core == 2:  # Dense [in, out] -> Linear [out, in]
                array = array.transpose(axes + (lead + 1, lead))
            elif core >= 3:  # Conv [*spatial, in, out] -> [out, in, *spatial]
                spatial = tuple(range(lead, lead + core - 2))
                array = array.transpose(axes + (lead + core - 1, lead + core - 2) + spatial)
        yield ".".join((*path[:-1], name)), array


def custom_torch_tensors(
    model: CustomModel, params: dict, order: list[tuple[str, ...]], lead: int
) -> list[tuple[str, np.ndarray]]:
    """(state_dict key, array) of a custom module's params in creation `order` (`param_order`;
    restored checkpoints hold dicts with sorted keys)."""
    flat = traverse_util.flatten_dict(params)
    ordered = traverse_util.unflatten_dict({path: flat[path] for path in order})
    hook = model.torch_layout()
    if hook is None:
        return list(default_torch_tensors(ordered, lead))
    return checked_layout(hook, ordered, lead)


def checked_layout(hook, params: dict, lead: int) -> list[tuple[str, np.ndarray]]:
    """A module's `torch_layout(params)` as [(key, numpy array)], or ModelError naming the hook
    and what it returned: distinct string keys, numeric arrays that keep the `lead` leading
    axes of `params` and hold as many numbers as the params (a layout reorders, never drops)."""
    name = f"{getattr(hook, '__qualname__', hook)}"
    leaves = jax.tree.leaves(params)
    front = tuple(np.shape(leaves[0])[:lead]) if leaves else ()
    try:
        pairs = [(key, np.asarray(array)) for key, array in hook(params)]
    except Exception as error:  # the user's hook, reported in one line
        raise ModelError(
            f"torch_layout {name} raised {type(error).__name__}: {' '.join(str(error).split())[:200]}: fix the hook"
        ) from None
    keys = [key for key, _ in pairs]
    if not all(isinstance(key, str) for key in keys) or len(set(keys)) != len(keys):
        raise ModelError(f"torch_layout {name} returned keys {keys[:8]}: return distinct state_dict keys (strings)")
    for key, array in pairs:
        if array.dtype.kind not in "fiub" or array.shape[:lead] != front:
            raise ModelError(
                f"torch_layout {name} returned {key!r} as {array.dtype} {array.shape}: return numeric arrays "
                f"with the params' leading axes {front}"
            )
    given, expected = sum(a.size for _, a in pairs), sum(np.size(leaf) for leaf in leaves)
    if given != expected:
        raise ModelError(
            f"torch_layout {name} returned {given} numbers for params of {expected}: return every parameter once"
        )
    return pairs


# Registered Flax modules, usable by their short name: `model.module = "small_cnn_zoo"`.
# small_cnn_zoo: the Small CNN Zoo's network (Unterthiner et al. 2020; `jaxzoo.models.cnn.SmallCNNZoo`),
# which `python -m jaxzoo.ingest` gives the zoos it imports from that format.
NAMED_MODULES = {"small_cnn_zoo": "jaxzoo.models.cnn:SmallCNNZoo"}
