"""Adapters from flat vectors to what weight-space methods take (and back), and evaluating many
weight vectors on a zoo's data (`jaxzoo.weights.adapters`, `jaxzoo.weights.evaluate`).

The peers' conventions are checked by readers written here from their code's description:
NFN's `state_dict_to_tensors` + collate (weights [B, 1, out, in(, kh, kw)], biases [B, 1, out]),
DWSNets' INR dataset (weight.permute(1, 0).unsqueeze(-1), bias.unsqueeze(-1), batch first) and
ScaleGMN's CNN dataset (weight.transpose(0, 1), kernels padded centred to the largest and
flattened, dense weights and biases unsqueezed last), each applied to the export's own files."""

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxzoo.data import normalise  # noqa: E402
from jaxzoo.errors import UserError  # noqa: E402
from jaxzoo.export import export as export_classification  # noqa: E402
from jaxzoo.export import load_vectors, read_zoo  # noqa: E402
from jaxzoo.export.rows import trial_name  # noqa: E402
from jaxzoo.inr.zoo import read_inr_zoo  # noqa: E402
from jaxzoo.kinds.export import export as export_any  # noqa: E402
from jaxzoo.models import resnet  # noqa: E402
from jaxzoo.models.cnn import ArchSpec, ConvSpec  # noqa: E402
from jaxzoo.models.registry import ARCHS, params_shapes  # noqa: E402
from jaxzoo.models.torch_layout import index_dict, module_indices  # noqa: E402
from jaxzoo.weights import adapters  # noqa: E402
from jaxzoo.weights.evaluate import evaluate  # noqa: E402
from jaxzoo.zoo.reader import Zoo  # noqa: E402

SPLITS = ("train", "val", "test")


def load_model_py(path: pathlib.Path):
    """The export's model.py, imported by path as a user without jaxzoo would."""
    spec = importlib.util.spec_from_file_location("exported_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bits(array) -> np.ndarray:
    return np.ascontiguousarray(array, np.float32).view(np.uint32)


@pytest.fixture(scope="module")
def cnn_export(tiny_zoo, tmp_path_factory):
    """tiny_zoo exported once in every format: trial folders, vectors (every epoch), model.py."""
    report = export_classification(tiny_zoo, tmp_path_factory.mktemp("adapters") / "out", formats="all", log=None)
    return pathlib.Path(report["out"])


@pytest.fixture(scope="module")
def inr_export(inr_zoo, tmp_path_factory):
    """inr_zoo exported in DWSNets' MNIST layout and as vectors."""
    report = export_any(inr_zoo, tmp_path_factory.mktemp("adapters_inr") / "out", formats="all", log=None)
    return pathlib.Path(report["out"])


def all_rows(folder: pathlib.Path) -> tuple[np.ndarray, dict]:
    """Every split's rows joined: weights [N, P] and properties (arrays, or lists)."""
    splits = load_vectors(folder)
    weights = np.concatenate([splits[s].weights for s in SPLITS])
    properties = {}
    for name, value in splits["train"].properties.items():
        parts = [splits[s].properties[name] for s in SPLITS]
        properties[name] = sum(parts, []) if isinstance(value, list) else np.concatenate(parts)
    return weights, properties


# ---- layouts -----------------------------------------------------------------------------------


ARCH_CASES = [
    (ARCHS["cnn_s"], {"model::type": "CNN", "model::dropout": 0.0}),
    (ARCHS["cnn_s"], {"model::type": "CNN", "model::dropout": 0.5}),  # dropout modules shift the keys
    (ARCHS["cnn_m"], {"model::type": "CNN3", "model::dropout": 0.0}),
    (
        ArchSpec("mlp", 8, (), (12, 7), 10, True, False, channels_in=1),
        {"model::type": "jaxzoo:mlp", "model::widths": [12, 7], "model::image_size": 8},
    ),
    (  # a pooled 3x3 conv, then a 1x1 conv without pool, then dense layers
        ArchSpec("cnn", 10, (ConvSpec(4, 3, True), ConvSpec(6, 1, False)), (9,), 10, True, False, channels_in=1),
        {
            "model::type": "jaxzoo:cnn",
            "model::convs": [[4, 3, True], [6, 1, False]],
            "model::widths": [9],
            "model::image_size": 10,
        },
    ),
]


@pytest.mark.parametrize("arch,params", ARCH_CASES, ids=["cnn_s", "cnn_s_dropout", "cnn_m", "mlp", "cnn_1x1"])
def test_index_dict_layouts_give_the_exported_networks_tensors(arch, params):
    """An index_dict alone gives every tensor's shape in model.py's network, in state_dict order,
    and the keys of the dropout-free numbering (the index_dict's); with the network's keys the
    state_dicts load strictly, and the vector order is the network's parameters()."""
    channels = 1
    layout = adapters.vector_layout(index_dict(arch, channels))
    model_py = load_model_py(pathlib.Path(adapters.__file__).parents[1] / "export" / "torch_models.py")
    network = model_py.build_model(
        {**params, "model::channels_in": channels, "model::o_dim": 10, "model::nlin": "relu"}
    )
    expected = [(key, tuple(t.shape)) for key, t in network.state_dict().items()]
    assert [t.shape for t in layout.tensors] == [shape for _, shape in expected]
    keys = [f"module_list.{i}.{kind}" for i in module_indices(arch, 0.0) for kind in ("weight", "bias")]
    assert [t.key for t in layout.tensors] == keys
    assert layout.size == sum(int(np.prod(shape)) for _, shape in expected)
    vectors = np.random.default_rng(0).normal(size=(2, layout.size)).astype(np.float32)
    for vector, state_dict in zip(vectors, adapters.to_state_dicts(vectors, layout, keys=[k for k, _ in expected])):
        network.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
        assert np.array_equal(torch.nn.utils.parameters_to_vector(network.parameters()).detach().numpy(), vector)


# ---- round trips -------------------------------------------------------------------------------


def round_trips(vectors: np.ndarray, layout, dense_only: bool) -> None:
    """Every adapter and its inverse give the vectors back bit for bit."""
    assert np.array_equal(bits(adapters.from_tensors(adapters.to_tensors(vectors, layout), layout)), bits(vectors))
    state_dicts = adapters.to_state_dicts(vectors, layout)
    assert np.array_equal(bits(adapters.from_state_dicts(state_dicts, layout)), bits(vectors))
    assert np.array_equal(bits(adapters.from_nfn(*adapters.to_nfn(vectors, layout), layout)), bits(vectors))
    assert np.array_equal(bits(adapters.from_scalegmn(*adapters.to_scalegmn(vectors, layout), layout)), bits(vectors))
    wide = adapters.to_scalegmn(vectors, layout, max_kernel_size=(7, 7))
    assert np.array_equal(bits(adapters.from_scalegmn(*wide, layout, max_kernel_size=(7, 7))), bits(vectors))
    if dense_only:
        assert np.array_equal(bits(adapters.from_dwsnets(*adapters.to_dwsnets(vectors, layout), layout)), bits(vectors))
    else:
        with pytest.raises(UserError, match="DWSNets takes MLPs"):
            adapters.to_dwsnets(vectors, layout)


def test_round_trips_are_exact_for_every_family(cnn_export, inr_export):
    """CNN (the export's rows), MLP (random rows of an index_dict), SIREN (the INR export's rows);
    ResNet-18's tensors round-trip too, and the per-layer methods refuse its layout."""
    weights, _ = all_rows(cnn_export)
    round_trips(weights, adapters.vector_layout(cnn_export), dense_only=False)
    mlp = index_dict(ArchSpec("mlp", 8, (), (12, 7), 10, True, False, channels_in=1), 1)
    rng = np.random.default_rng(0)
    round_trips(rng.normal(size=(3, adapters.vector_layout(mlp).size)).astype(np.float32), mlp, dense_only=True)
    inr_weights, _ = all_rows(inr_export)
    round_trips(inr_weights, adapters.vector_layout(inr_export), dense_only=True)

    layout = adapters.vector_layout({"tensors": resnet.index_map(10, 3)})
    vectors = rng.normal(size=(1, layout.size)).astype(np.float32)
    tensors = adapters.to_tensors(vectors, layout)
    assert tensors["conv1.weight"].shape == (1, 64, 3, 3, 3) and tensors["fc.weight"].shape == (1, 10, 512)
    assert np.array_equal(bits(adapters.from_tensors(tensors, layout)), bits(vectors))
    with pytest.raises(UserError, match="not a layer's weight followed by its bias"):
        adapters.to_nfn(vectors, layout)


def test_flax_params_are_the_workdirs_checkpoints(tiny_zoo, inr_zoo, cnn_export, inr_export):
    """to_flax of the exported rows gives the checkpoint's params of those models and epochs, bit for
    bit; from_flax gives the rows back (CNN zoo and SIREN zoo)."""
    zoo = read_zoo(tiny_zoo)
    weights, properties = all_rows(cnn_export)
    index = {row["model_id"]: m for m, row in enumerate(zoo.table)}
    params = adapters.to_flax(weights, zoo)
    for epoch in np.unique(properties["epoch"]):
        rows = np.flatnonzero(properties["epoch"] == epoch)
        stored = zoo.checkpoints.params(int(epoch))
        models = [index[int(m)] for m in properties["model_id"][rows]]
        for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(stored)):
            assert np.array_equal(bits(got[rows]), bits(np.asarray(want)[models]))
    assert np.array_equal(bits(adapters.from_flax(params, tiny_zoo)), bits(weights))

    inr = read_inr_zoo(inr_zoo)
    weights, properties = all_rows(inr_export)
    params = adapters.to_flax(weights, inr)
    stored = inr.params()
    position = {row["model_id"]: m for m, row in enumerate(inr.table)}
    models = [position[int(m)] for m in properties["model_id"]]
    assert jax.tree.structure(params) == jax.tree.structure(stored)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(stored)):
        assert np.array_equal(bits(got), bits(np.asarray(want)[models]))
    assert np.array_equal(bits(adapters.from_flax(params, inr)), bits(weights))


def config_only_zoo(model: dict, channels: int, classes: int, size: int) -> Zoo:
    """A `Zoo` of config and data facts only (no checkpoints): what the Flax mapping reads."""
    facts = {"channels": channels, "num_classes": classes, "image_size": size}
    config = {"model": model, "data": {"image_size": size}, "training": {}}
    return Zoo(pathlib.Path("."), config, "", [{"activation": "relu"}], [], {}, None, facts, {})


def random_population(shapes, count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: rng.normal(size=(count, *leaf.shape)).astype(np.float32), shapes)


def test_flax_round_trips_for_resnet18_and_custom_modules():
    """ResNet-18 (trainable params; vector order = model.parameters()) and a custom module (its
    default torch layout): from_flax then to_flax is exact, and the tensors sit where the
    layout (resnet.index_map / the export's index_dict) says, in PyTorch's orientation."""
    zoo = config_only_zoo({"arch": "resnet18"}, 3, 10, 8)
    shapes = jax.eval_shape(lambda: resnet.init_resnet(jax.random.key(0), 10, (8, 8, 3)))["params"]
    params = random_population(shapes, 1, 0)
    vectors = adapters.from_flax(params, zoo)
    back = adapters.to_flax(vectors, zoo)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    assert all(np.array_equal(bits(a), bits(b)) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)))
    tensors = adapters.to_tensors(vectors, {"tensors": resnet.index_map(10, 3)})
    assert np.array_equal(tensors["fc.weight"][0], params["fc"]["kernel"][0].T)
    assert np.array_equal(tensors["conv1.weight"][0], params["conv1"]["kernel"][0].transpose(3, 2, 0, 1))

    zoo = config_only_zoo({"arch": "mlp", "module": "zoo_modules:ThreeLogits"}, 1, 3, 8)
    shapes = params_shapes(zoo.model("relu"), zoo.image_shape)
    params = random_population(shapes, 4, 1)
    vectors = adapters.from_flax(params, zoo)
    assert vectors.shape == (4, 64 * 3 + 3)
    back = adapters.to_flax(vectors, zoo)
    assert all(np.array_equal(bits(a), bits(b)) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)))
    tensors = adapters.to_tensors(vectors, zoo.vector_layout())
    assert np.array_equal(tensors["Dense_0.weight"], params["Dense_0"]["kernel"].transpose(0, 2, 1))
    weights, biases = adapters.to_dwsnets(vectors, zoo.vector_layout())
    assert weights[0].shape == (4, 64, 3, 1) and biases[0].shape == (4, 3, 1)


# ---- PyTorch -----------------------------------------------------------------------------------


def test_state_dicts_are_the_trials_checkpoints_and_compute_the_jax_logits(tiny_zoo, cnn_export):
    """The last epoch's rows as state_dicts equal the trial folders' checkpoints, load with
    strict=True into model.py's network and give the JAX model's logits; model.py's load_vector
    fills the same network from the row."""
    zoo = read_zoo(tiny_zoo)
    model_py = load_model_py(cnn_export / "model.py")
    weights, properties = all_rows(cnn_export)
    last = np.flatnonzero(properties["epoch"] == zoo.epochs[-1])
    state_dicts = adapters.to_state_dicts(weights[last], cnn_export)
    images = normalise(zoo.dataset().test[0][:16], zoo.dataset().mean, zoo.dataset().std)
    params = adapters.to_flax(weights[last], zoo)
    for i, row in enumerate(last):
        trial = (
            cnn_export
            / "trials"
            / trial_name({"model_id": properties["model_id"][row], "seed": properties["seed"][row]})
        )
        checkpoint = torch.load(trial / f"checkpoint_{zoo.epochs[-1]:06d}" / "checkpoints")
        assert list(checkpoint) == list(state_dicts[i])
        for key, value in checkpoint.items():
            assert np.array_equal(bits(value.numpy()), bits(state_dicts[i][key])), key
        network = model_py.build_model(json.loads((trial / "params.json").read_text()))
        network.load_state_dict({k: torch.from_numpy(v) for k, v in state_dicts[i].items()}, strict=True)
        logits = network.eval()(torch.from_numpy(images.transpose(0, 3, 1, 2))).detach().numpy()
        one = jax.tree.map(lambda a: a[i], params)
        expected = zoo.model(properties["activation"][row]).apply({"params": one}, images, 0, 0.0, train=False)
        np.testing.assert_allclose(logits, np.asarray(expected), rtol=1e-4, atol=1e-5)
        filled = model_py.load_vector(
            model_py.build_model(json.loads((trial / "params.json").read_text())), weights[row]
        )
        for key, value in filled.state_dict().items():
            assert np.array_equal(bits(value.numpy()), bits(state_dicts[i][key])), key
    with pytest.raises(ValueError, match="parameters"):
        model_py.load_vector(network, weights[last[0], :-1])


def test_nfn_and_scalegmn_match_their_readers_of_the_trials(cnn_export):
    """NFN's state_dict_to_tensors + collate, and ScaleGMN's CNN-dataset transform, applied to the
    trials' checkpoint files, give what to_nfn / to_scalegmn give for the same rows."""
    weights, properties = all_rows(cnn_export)
    rows = np.flatnonzero(properties["epoch"] == properties["epoch"].max())
    checkpoints = []
    for row in rows:
        trial = trial_name({"model_id": properties["model_id"][row], "seed": properties["seed"][row]})
        epoch = f"checkpoint_{int(properties['epoch'][row]):06d}"
        checkpoints.append(torch.load(cnn_export / "trials" / trial / epoch / "checkpoints"))

    # NFN: tensors in key order, weight then bias, each with a channel axis; batched by stacking.
    def nfn_reader(state_dict):
        keys, out = list(state_dict), ([], [])
        for i in range(0, len(keys), 2):
            assert keys[i + 1].endswith("bias")
            out[0].append(state_dict[keys[i]][None])
            out[1].append(state_dict[keys[i + 1]][None])
        return out

    read = [nfn_reader(sd) for sd in checkpoints]
    nfn_weights, nfn_biases = adapters.to_nfn(weights[rows], cnn_export)
    for layer, (w, b) in enumerate(zip(nfn_weights, nfn_biases)):
        assert w.ndim in (4, 6)  # NFN's network_spec_from_wsfeat takes dense (4) or conv (6) weights
        assert np.array_equal(bits(w), bits(torch.stack([r[0][layer] for r in read]).numpy()))
        assert np.array_equal(bits(b), bits(torch.stack([r[1][layer] for r in read]).numpy()))

    # ScaleGMN: [in, out, ...]; kernels padded centred to max_kernel_size, then H, W flattened.
    def scalegmn_reader(tensor, max_kernel_size):
        if tensor.ndim == 1:
            return tensor.unsqueeze(-1)
        tensor = tensor.transpose(0, 1)
        if tensor.ndim == 2:
            return tensor.unsqueeze(-1)
        full = (max_kernel_size[0] - tensor.shape[2], max_kernel_size[1] - tensor.shape[3])
        padding = (full[0] // 2, full[0] - full[0] // 2, full[1] // 2, full[1] - full[1] // 2)
        return torch.nn.functional.pad(tensor, padding).flatten(2, 3)

    for top in ((5, 5), (6, 6)):
        got_weights, got_biases = adapters.to_scalegmn(weights[rows], cnn_export, max_kernel_size=top)
        expected = [[scalegmn_reader(t, top) for t in sd.values()] for sd in checkpoints]
        for layer in range(len(got_weights)):
            want_w = torch.stack([e[2 * layer] for e in expected]).numpy()
            want_b = torch.stack([e[2 * layer + 1] for e in expected]).numpy()
            assert np.array_equal(bits(got_weights[layer]), bits(want_w)) and np.array_equal(
                bits(got_biases[layer]), bits(want_b)
            )


def test_dwsnets_matches_its_reader_of_the_exported_inr_files(inr_zoo, inr_export):
    """DWSNets' INRDataset reading of the exported mnist-inrs/*.pth files (weights permuted to
    [in, out] with a trailing feature axis, biases [out, 1]) equals to_dwsnets of the same rows."""
    zoo = read_inr_zoo(inr_zoo)
    weights, properties = all_rows(inr_export)
    first = min(properties["seed"])
    rows = [r for r in range(len(weights)) if properties["seed"][r] == first][:6]
    names = {"train": "training", "test": "testing"}
    files = [
        inr_export
        / "mnist-inrs"
        / f"mnist_png_{names[properties['split'][r]]}_{properties['label'][r]}_{properties['split_index'][r]}"
        / "checkpoints"
        / "model_final.pth"
        for r in rows
    ]
    read = []
    for path in files:
        state_dict = torch.load(path)
        read.append(
            (
                [v.permute(1, 0).unsqueeze(-1) for k, v in state_dict.items() if "weight" in k],
                [v.unsqueeze(-1) for k, v in state_dict.items() if "bias" in k],
            )
        )
    got_weights, got_biases = adapters.to_dwsnets(weights[rows], inr_export)
    assert len(got_weights) == zoo.spec.num_layers
    for layer in range(zoo.spec.num_layers):
        assert np.array_equal(bits(got_weights[layer]), bits(torch.stack([r[0][layer] for r in read]).numpy()))
        assert np.array_equal(bits(got_biases[layer]), bits(torch.stack([r[1][layer] for r in read]).numpy()))
    # ScaleGMN reads INRs in DWSNets' layout.
    scalegmn = adapters.to_scalegmn(weights[rows], inr_export)
    for a, b in zip(scalegmn[0] + scalegmn[1], got_weights + got_biases):
        assert np.array_equal(bits(a), bits(b))


# ---- evaluate ----------------------------------------------------------------------------------


def test_evaluate_reproduces_the_recorded_metrics_and_model_py_agrees(tiny_zoo, cnn_export):
    """The exported rows (every epoch) scored on the test and val splits give the recorded
    accuracies and losses; perturbed rows score otherwise; model.py's torch evaluate agrees."""
    weights, properties = all_rows(cnn_export)
    for split in ("test", "val"):
        scores = evaluate(weights, tiny_zoo, split, activation=properties["activation"], chunk=4)
        np.testing.assert_allclose(scores["accuracy"], properties[f"{split}_acc"], atol=1e-6)
        np.testing.assert_allclose(scores["loss"], properties[f"{split}_loss"], rtol=2e-5)
    rng = np.random.default_rng(0)
    perturbed = weights + rng.normal(scale=0.5, size=weights.shape).astype(np.float32)
    moved = evaluate(perturbed, tiny_zoo, activation=properties["activation"], chunk=4)
    assert not np.allclose(moved["loss"], properties["test_loss"], rtol=1e-3)

    zoo = read_zoo(tiny_zoo)
    model_py = load_model_py(cnn_export / "model.py")
    dataset = zoo.dataset()
    images = normalise(dataset.test[0], dataset.mean, dataset.std).transpose(0, 3, 1, 2)
    rows = np.flatnonzero(properties["epoch"] == zoo.epochs[-1])
    networks = []
    for row in rows:
        trial = trial_name({"model_id": properties["model_id"][row], "seed": properties["seed"][row]})
        params = json.loads((cnn_export / "trials" / trial / "params.json").read_text())
        networks.append(model_py.load_vector(model_py.build_model(params), perturbed[row]))
    got = model_py.evaluate(networks, torch.from_numpy(images), torch.from_numpy(dataset.test[1]), batch_size=7)
    np.testing.assert_allclose(got["accuracy"], moved["accuracy"][rows], atol=1e-9)
    np.testing.assert_allclose(got["loss"], moved["loss"][rows], rtol=1e-4)


def test_evaluate_inr_vectors_reproduces_mse_and_psnr(inr_zoo, inr_export):
    weights, properties = all_rows(inr_export)
    finite = np.isfinite(properties["mse"])
    scores = evaluate(weights[finite], inr_zoo, image=properties["image"][finite], chunk=20)
    np.testing.assert_allclose(scores["mse"], properties["mse"][finite], rtol=1e-4)
    np.testing.assert_allclose(scores["psnr"], properties["psnr"][finite], atol=1e-3)
    noisy = weights[finite] * np.float32(1.1)
    assert (evaluate(noisy, inr_zoo, image=properties["image"][finite])["mse"] > scores["mse"]).all()


def test_bad_inputs_are_user_errors(tiny_zoo, inr_zoo, cnn_export):
    weights, properties = all_rows(cnn_export)
    with pytest.raises(UserError, match="for a layout of 2464 numbers"):
        adapters.to_nfn(weights[:, :-1], cnn_export)
    with pytest.raises(UserError, match="the zoo's models have 2464 numbers"):
        adapters.to_flax(weights[:, 1:], tiny_zoo)
    with pytest.raises(UserError, match="mixes activations"):
        evaluate(weights, tiny_zoo)
    with pytest.raises(UserError, match=r"activations \['gelu'\] are not the zoo's"):
        evaluate(weights, tiny_zoo, activation="gelu")
    with pytest.raises(UserError, match="unknown split 'holdout'"):
        evaluate(weights, tiny_zoo, "holdout", activation="relu")
    with pytest.raises(UserError, match="image="):
        evaluate(np.zeros((1, read_inr_zoo(inr_zoo).spec.num_params), np.float32), inr_zoo)
    with pytest.raises(UserError, match="no index_dict.json"):
        adapters.vector_layout(cnn_export / "trials")
