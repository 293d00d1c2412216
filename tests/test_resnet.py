"""ResNet-18 (CIFAR variant): parameter counts, torchvision key mapping, parity with the
PyTorch model in eval and train mode (PyTorch BatchNorm semantics), init, bfloat16."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxzoo.models import resnet
from jaxzoo.torch import ResNet18Cifar, load_resnet18

CLASSES, IMAGE = 10, (16, 16, 3)  # 16x16: layer4 is 2x2, so n = 8*2*2 per channel there
EXPECTED_COUNTS = {10: 11_173_962, 100: 11_220_132, 200: 11_271_432}


def to_nchw(x) -> "torch.Tensor":
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def init_fn():
    return jax.jit(resnet.init_resnet, static_argnums=(1, 2))


@pytest.fixture(scope="module")
def population():
    """(keys [2], variables with a leading population axis 2) from one vmapped init."""
    keys = jax.random.split(jax.random.key(9), 2)
    return keys, jax.jit(jax.vmap(resnet.init_resnet, (0, None, None)), static_argnums=(1, 2))(keys, CLASSES, IMAGE)


@pytest.fixture(scope="module")
def forward():
    """(train, eval) jitted applies of the float32 model."""
    model = resnet.ResNet18(CLASSES)
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return train, evaluate


@pytest.fixture(scope="module")
def trained_variables(init_fn, forward):
    """Perturbed params and running statistics after 3 train-mode passes (not the init)."""
    variables = init_fn(jax.random.key(0), CLASSES, IMAGE)

    @jax.jit
    def perturb(params, key):
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        # weights * (1 + 0.1 noise); BN scale/bias and fc bias (constant at init) + 0.1 noise
        noise = [0.1 * jax.random.normal(k, w.shape) for w, k in zip(leaves, keys)]
        return jax.tree.unflatten(treedef, [w + n if w.ndim == 1 else w * (1 + n) for w, n in zip(leaves, noise)])

    variables = {"params": perturb(variables["params"], jax.random.key(1)), "batch_stats": variables["batch_stats"]}
    for i in range(3):
        x = 1.0 + 2.0 * jax.random.normal(jax.random.key(10 + i), (8, *IMAGE))
        _, updates = forward[0](variables, x)
        variables = {"params": variables["params"], **updates}
    return variables


@pytest.mark.parametrize("classes", sorted(EXPECTED_COUNTS))
def test_parameter_counts(classes):
    shapes = jax.eval_shape(
        functools.partial(resnet.init_resnet, num_classes=classes, image_shape=(32, 32, 3)), jax.random.key(0)
    )
    assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == EXPECTED_COUNTS[classes]
    assert resnet.param_count(classes) == EXPECTED_COUNTS[classes]
    layout = resnet.index_map(classes, 3)
    assert layout[-1]["offset"] + int(np.prod(layout[-1]["shape"])) == EXPECTED_COUNTS[classes]
    assert sum(p.numel() for p in ResNet18Cifar(classes).parameters()) == EXPECTED_COUNTS[classes]


def test_state_dict_keys_shapes_and_flat_vectors(population):
    _, population = population
    exported = resnet.torch_state_dict(population)
    reference = ResNet18Cifar(CLASSES).state_dict()
    assert list(exported) == list(reference)
    for key, value in reference.items():
        assert exported[key].shape == (2, *value.shape), key
        assert exported[key].dtype == np.dtype(str(value.dtype).removeprefix("torch.")), key
    assert exported["layer2.0.downsample.0.weight"].shape == (2, 128, 64, 1, 1)
    assert "layer1.0.downsample.0.weight" not in exported

    vectors = resnet.flat_vectors(population["params"])
    assert vectors.shape == (2, resnet.param_count(CLASSES)) and vectors.dtype == np.float32
    layout = resnet.index_map(CLASSES, 3)
    assert [entry["key"] for entry in layout] == [name for name, _ in ResNet18Cifar(CLASSES).named_parameters()]
    for m in range(2):
        model = load_resnet18({key: value[m] for key, value in exported.items()}, CLASSES)  # strict=True
        np.testing.assert_array_equal(
            vectors[m], torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
        )
        for entry in layout:  # index_map addresses each tensor
            start, shape = entry["offset"], tuple(entry["shape"])
            piece = vectors[m, start : start + int(np.prod(shape))].reshape(shape)
            np.testing.assert_array_equal(piece, exported[entry["key"]][m])


def test_one_input_channel_layout():
    model = ResNet18Cifar(100, channels_in=1)
    layout = resnet.index_map(100, 1)
    assert [(e["key"], tuple(e["shape"])) for e in layout] == [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert resnet.param_count(100, 1) == sum(p.numel() for p in model.parameters())
    loaded = load_resnet18({key: value.numpy() for key, value in model.state_dict().items()}, 100)
    assert loaded.conv1.in_channels == 1 and not loaded.training


def test_eval_parity_with_torch(forward, trained_variables):
    stats = trained_variables["batch_stats"]["layer3_0"]["bn2"]
    assert int(stats["count"]) == 3 and not np.allclose(stats["var"], 1.0)
    x = 0.5 + jax.random.normal(jax.random.key(20), (4, *IMAGE))
    logits = np.asarray(forward[1](trained_variables, x))
    model = load_resnet18(resnet.torch_state_dict(trained_variables), CLASSES)
    with torch.no_grad():
        expected = model(to_nchw(x)).numpy()
    assert logits.dtype == np.float32 and logits.shape == (4, CLASSES)
    assert np.ptp(expected, axis=0).min() > 0.05 * np.abs(expected).max()  # logits depend on the input
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_train_mode_batchnorm_matches_torch(forward, trained_variables):
    x = jax.random.normal(jax.random.key(30), (8, *IMAGE)) * 1.5 - 0.3
    logits, updates = forward[0](trained_variables, x)
    state = resnet.torch_state_dict({"params": trained_variables["params"], **updates})
    model = load_resnet18(resnet.torch_state_dict(trained_variables), CLASSES).train()
    with torch.no_grad():
        expected = model(to_nchw(x)).numpy()
    assert np.ptp(expected, axis=0).min() > 0.05 * np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    reference = model.state_dict()
    checked = 0
    for key, value in reference.items():
        if key.endswith("num_batches_tracked"):
            assert state[key].dtype == np.int64 and int(state[key]) == int(value) == 4, key
            checked += 1
        elif key.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
            checked += 1
    assert checked == 3 * 20  # 20 BatchNorm layers


def test_init_statistics(init_fn, population):
    key = jax.random.key(7)
    variables = init_fn(key, CLASSES, IMAGE)
    exported = resnet.torch_state_dict(variables)
    for name, value in exported.items():
        if name.endswith(".weight") and value.ndim in (2, 4):
            fan_in = int(np.prod(value.shape[1:]))
            bound = np.sqrt(6.0 / fan_in)
            assert np.abs(value).max() <= np.float32(bound), name  # bound rounded to float32
            assert np.abs(value).max() > 0.99 * bound, name
            np.testing.assert_allclose(value.std(), bound / np.sqrt(3), rtol=0.05, err_msg=name)
            assert abs(value.mean()) < 0.1 * bound, name
        elif name.endswith("running_var"):
            assert np.all(value == 1.0), name
        elif name.endswith(("running_mean", "num_batches_tracked")):
            assert np.all(value == 0), name
        elif name != "fc.bias":
            kind = {"weight": 1.0, "bias": 0.0}[name.rsplit(".", 1)[1]]
            assert np.all(value == kind), name
    assert np.all(exported["fc.bias"] == np.float32(0.01))

    other = init_fn(jax.random.key(8), CLASSES, IMAGE)
    assert not np.allclose(other["params"]["conv1"]["kernel"], variables["params"]["conv1"]["kernel"])
    assert not np.allclose(other["params"]["fc"]["kernel"], variables["params"]["fc"]["kernel"])
    keys, batched = population
    for m in range(2):
        single = init_fn(keys[m], CLASSES, IMAGE)
        jax.tree.map(lambda a, b, m=m: np.testing.assert_array_equal(a[m], b), batched, single)


def test_bfloat16_compute(forward, trained_variables):
    model = resnet.ResNet18(CLASSES, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(40), (4, *IMAGE))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(trained_variables, x)
    assert logits.dtype == jnp.float32
    reference = np.asarray(forward[1](trained_variables, x))
    error = np.linalg.norm(np.asarray(logits) - reference) / np.linalg.norm(reference)
    assert 0 < error < 0.05

    fresh = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    _, updates = jax.eval_shape(functools.partial(model.apply, train=True, mutable=["batch_stats"]), fresh, x)
    for leaf in jax.tree.leaves(fresh["params"]):
        assert leaf.dtype == jnp.float32
    for path, leaf in jax.tree_util.tree_leaves_with_path(updates["batch_stats"]):
        expected = jnp.int32 if path[-1].key == "count" else jnp.float32
        assert leaf.dtype == expected, path
