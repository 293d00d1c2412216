"""INR exports in the layouts of DWSNets and NFN, and as flat vectors.

The readers here are written from the layouts' descriptions (folder names, state_dict keys,
splits files, statistics), not from jaxzoo's export code; the PyTorch models are DWSNets' INR
and NFN's Siren as those projects define them, so a file that loads and draws its image here
loads and draws it there.
"""

import collections
import dataclasses
import glob
import hashlib
import json
import math
import os
import pathlib
import re
import shutil

import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxzoo.export import ExportError  # noqa: E402
from jaxzoo.export.__main__ import main  # noqa: E402
from jaxzoo.inr import arena, siren  # noqa: E402
from jaxzoo.inr.export import export_inr  # noqa: E402
from jaxzoo.inr.zoo import read_inr_zoo  # noqa: E402
from jaxzoo.kinds.export import export  # noqa: E402

SPLIT_FOLDER = {"training": "train", "testing": "test"}
DWS_KEYS = ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
NFN_KEYS = [
    "net.0.linear.weight",
    "net.0.linear.bias",
    "net.1.linear.weight",
    "net.1.linear.bias",
    "net.2.weight",
    "net.2.bias",
]
SHAPES = [(32, 2), (32,), (32, 32), (32,), (1, 32), (1,)]
TEST_IMAGES = 4  # the DWSNets fixture fits train images only: its copy marks the last 4 as test images


def quiet(message):
    pass


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dws_workdir(inr_zoo, tmp_path_factory):
    """A copy of the DWSNets-style zoo whose last TEST_IMAGES images are marked as test images
    (split 'test', split_index 0..3), so that the testing/test names are exercised too."""
    workdir = tmp_path_factory.mktemp("inr_export") / "zoo"
    shutil.copytree(inr_zoo, workdir)
    table = json.loads((workdir / "models.json").read_text())
    if not any(row["split"] == "test" for row in table):
        images = sorted({row["image"] for row in table})[-TEST_IMAGES:]
        for row in table:
            if row["image"] in images:
                row["split"], row["split_index"] = "test", images.index(row["image"])
        (workdir / "models.json").write_text(json.dumps(table))
    return workdir


@pytest.fixture(scope="module")
def dws_export(dws_workdir, tmp_path_factory):
    """`all` of the DWSNets-style zoo: dwsnets_mnist (nfn does not fit) and vectors."""
    out = tmp_path_factory.mktemp("dws_out")
    report = export(dws_workdir, out, "all", log=quiet)
    return pathlib.Path(report["out"]), report


@pytest.fixture(scope="module")
def fmnist_export(dws_workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fmnist_out")
    return pathlib.Path(export(dws_workdir, out, "dwsnets_fmnist", log=quiet)["out"])


@pytest.fixture(scope="module")
def nfn_export(inr_zoo_nfn, tmp_path_factory):
    """`all` of the NFN-style zoo: nfn (no DWSNets layout fits) and vectors."""
    out = tmp_path_factory.mktemp("nfn_out")
    report = export(inr_zoo_nfn, out, "all", log=quiet)
    return pathlib.Path(report["out"]), report


def table_of(workdir) -> list[dict]:
    return json.loads((pathlib.Path(workdir) / "models.json").read_text())


def first_seed(workdir) -> int:
    return json.loads((pathlib.Path(workdir) / "config.json").read_text())["config"]["population"]["first_seed"]


def expected_val_images(table) -> set[int]:
    """The documented val rule: round(n * 5000 / 60000) of the n train images (sorted by image
    index), drawn with numpy default_rng(42)."""
    train = sorted({row["image"] for row in table if row["split"] == "train"})
    size = 5000 if len(train) >= 60000 else round(len(train) * 5000 / 60000)
    return {train[i] for i in np.random.default_rng(42).choice(len(train), size, replace=False)}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def check_state_dict(state_dict, keys):
    assert list(state_dict) == keys
    for key, shape in zip(keys, SHAPES):
        assert tuple(state_dict[key].shape) == shape, key
        assert state_dict[key].dtype == torch.float32, key


# ---- readers written from the layouts' descriptions ----------------------------------------------

DWS_MNIST = re.compile(
    r"^mnist-inrs(?:-seed(\d+))?/mnist_png_(training|testing)_(\d+)_(\d+)/checkpoints/model_final\.pth$"
)
DWS_FMNIST = re.compile(r"^fmnist_inrs(?:_seed(\d+))?/(train|test)/model_(\d+)\.pth$")
NFN_FILE = re.compile(r"^randinit_smaller(?:_aug(\d+))?_(\d)s/net(\d+)\.pth$")


def dws_mnist_files(root: pathlib.Path, table, seed0: int) -> dict[int, pathlib.Path]:
    """{row index in models.json: file} of every file of the DWSNets MNIST layout."""
    by_key = {(row["seed"], row["split"], row["label"], row["split_index"]): i for i, row in enumerate(table)}
    files = {}
    for path in root.glob("mnist-inrs*/**/*.pth"):
        match = DWS_MNIST.match(path.relative_to(root).as_posix())
        assert match, path
        seed = seed0 if match.group(1) is None else int(match.group(1))
        assert match.group(1) is None or seed != seed0
        key = (seed, SPLIT_FOLDER[match.group(2)], int(match.group(3)), int(match.group(4)))
        assert key in by_key, key
        files[by_key[key]] = path
    return files


def nfn_files(root: pathlib.Path, table, seed0: int) -> dict[int, pathlib.Path]:
    """{row index: file} of NFN's layout: aug{k} holds seed slot k + 1, net{idx} the image idx."""
    by_key = {(row["seed"], row["image"]): i for i, row in enumerate(table)}
    files = {}
    for path in root.glob("*/*.pth"):
        match = NFN_FILE.match(path.relative_to(root).as_posix())
        assert match, path
        slot = 0 if match.group(1) is None else int(match.group(1)) + 1
        index = by_key[(seed0 + slot, int(match.group(3)))]
        assert table[index]["label"] == int(match.group(2))
        files[index] = path
    return files


# ---- the PyTorch models of the two projects ------------------------------------------------------


class DwsSiren(torch.nn.Module):
    """DWSNets' Siren layer: its own weight and bias parameters, sin(30 x) after the linear map."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(dim_out, dim_in))
        self.bias = torch.nn.Parameter(torch.zeros(dim_out))

    def forward(self, x):
        return torch.sin(30.0 * torch.nn.functional.linear(x, self.weight, self.bias))


class DwsINR(torch.nn.Module):
    """DWSNets' INR(in_dim=2, n_layers=3, up_scale=16): 2 -> 32 -> 32 -> 1, plus 0.5."""

    def __init__(self):
        super().__init__()
        self.seq = torch.nn.Sequential(DwsSiren(2, 32), DwsSiren(32, 32), torch.nn.Linear(32, 1))

    def forward(self, x):
        return self.seq(x) + 0.5


def dws_coordinates(size=28):
    """DWSNets' make_coordinates: np.meshgrid's default indexing, (x, y) stacked, row-major."""
    x, y = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


class SineLayer(torch.nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = torch.nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return torch.sin(30.0 * self.linear(x))


class NfnSiren(torch.nn.Module):
    """NFN's Siren (hidden_features 32, hidden_layers 1, outermost_linear)."""

    def __init__(self, channels=1):
        super().__init__()
        self.net = torch.nn.Sequential(SineLayer(2, 32), SineLayer(32, 32), torch.nn.Linear(32, channels))

    def forward(self, coords):
        return self.net(coords), coords


def nfn_coordinates(size=28):
    grid = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 2)


def check_reconstructions(workdir, files, model, coords, draw, peak):
    """Each file, loaded into `model`, draws the image jaxzoo's SIREN draws (within 1e-5), whose
    PSNR against the fitted image is the recorded final PSNR (within 0.01 dB)."""
    zoo = read_inr_zoo(workdir)
    rows = np.array(sorted(files))
    params = {name: {k: v[rows] for k, v in layer.items()} for name, layer in zoo.params().items()}
    expected = zoo.reconstruct(params)
    targets = zoo.target_images(rows)
    psnr = zoo.metrics()["psnr"][rows]
    for n, row in enumerate(rows):
        model.load_state_dict(load(files[row]))
        with torch.no_grad():
            image = draw(model, coords).reshape(expected.shape[1:]).numpy()
        np.testing.assert_allclose(image, expected[n], atol=1e-5, rtol=0)
        mse = np.mean((image.astype(np.float64) - targets[n]) ** 2)
        assert abs(10 * math.log10(peak**2 / mse) - psnr[n]) < 0.01, row


# ---- DWSNets ----------------------------------------------------------------------------------


def test_dwsnets_mnist_folders_hold_one_state_dict_per_model(dws_export, dws_workdir):
    root, report = dws_export
    table = table_of(dws_workdir)
    seed0 = first_seed(dws_workdir)
    files = dws_mnist_files(root, table, seed0)
    assert sorted(files) == list(range(len(table)))  # every model once, nothing else
    primary = list(root.glob("mnist-inrs/*/checkpoints/model_final.pth"))
    assert len(primary) == len({row["image"] for row in table})  # one INR per image in mnist-inrs
    assert any("testing" in p.as_posix() for p in primary) and any("training" in p.as_posix() for p in primary)
    for path in files.values():
        check_state_dict(load(path), DWS_KEYS)
    assert report["written"] == ["dwsnets_mnist", "vectors"] and "nfn" in report["skipped"]
    assert not list(root.glob("siren_*"))
    assert json.loads((root / "export.json").read_text())["complete"] is True
    config = json.loads((root / "config.json").read_text())
    assert config == json.loads((dws_workdir / "config.json").read_text())["config"]
    readme = (root / "readme.md").read_text()
    for phrase in (
        "'xy'",
        "offset of 0.5",
        "[0, 1]",
        "10 log10(1^2 / MSE)",
        "mnist-inrs-seed",
        "unseeded",
        "absolute",
        "10,000",
    ):
        assert phrase in readme, phrase


def test_dwsnets_mnist_splits_and_statistics(dws_export, dws_workdir):
    root, _ = dws_export
    table = table_of(dws_workdir)
    splits = json.loads((root / "mnist_splits.json").read_text())
    assert set(splits) == {"train", "val", "test"}
    seen = []
    for split, entry in splits.items():
        assert set(entry) == {"path", "label"} and len(entry["path"]) == len(entry["label"])
        for path, label in zip(entry["path"], entry["label"]):
            assert isinstance(label, str) and not os.path.isabs(path) and path.startswith("mnist-inrs/")
            assert (root / path).is_file()
            assert pathlib.Path(path).parent.parent.stem.split("_")[-2] == label  # DWSNets' label rule
            assert ("training" in path) == (split in ("train", "val"))
            seen.append(path)
    assert len(seen) == len(set(seen))  # disjoint
    assert sorted(seen) == sorted(p.relative_to(root).as_posix() for p in root.glob("mnist-inrs/*/*/*.pth"))
    # val: the documented draw of round(n_train * 5000 / 60000) train images
    n_train = len({row["image"] for row in table if row["split"] == "train"})
    assert len(splits["val"]["path"]) == round(n_train * 5000 / 60000) > 0
    primary = {
        (row["split_index"], row["label"]): row["image"]
        for row in table
        if row["seed"] == first_seed(dws_workdir) and row["split"] == "train"
    }
    val = {
        primary[(int(p.split("/")[1].split("_")[-1]), int(label))]
        for p, label in zip(splits["val"]["path"], splits["val"]["label"])
    }
    assert val == expected_val_images(table)
    assert len(splits["test"]["path"]) == TEST_IMAGES

    # statistics.pth: per layer over the train split's INRs, weights (in, out, 1), biases (out, 1)
    stats = load(root / "statistics.pth")
    loaded = [load(root / p) for p in splits["train"]["path"]]
    weights = [
        torch.stack([v.permute(1, 0) for sd in loaded for k, v in sd.items() if k == key]) for key in DWS_KEYS[0::2]
    ]
    biases = [torch.stack([sd[key] for sd in loaded]) for key in DWS_KEYS[1::2]]
    assert [tuple(t.shape) for t in stats["weights"]["mean"]] == [(2, 32, 1), (32, 32, 1), (32, 1, 1)]
    assert [tuple(t.shape) for t in stats["biases"]["std"]] == [(32, 1), (32, 1), (1, 1)]
    for name, tensors in (("weights", weights), ("biases", biases)):
        for got_mean, got_std, values in zip(stats[name]["mean"], stats[name]["std"], tensors):
            torch.testing.assert_close(got_mean, values.mean(0).unsqueeze(-1), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got_std, values.std(0).unsqueeze(-1), rtol=1e-5, atol=1e-6)


def test_dwsnets_files_draw_the_images_in_dwsnets_inr(dws_export, dws_workdir):
    root, _ = dws_export
    files = dws_mnist_files(root, table_of(dws_workdir), first_seed(dws_workdir))
    check_reconstructions(dws_workdir, files, DwsINR(), dws_coordinates(), lambda model, x: model(x), peak=1.0)


def test_dwsnets_fmnist_layout(fmnist_export, dws_workdir):
    root = fmnist_export
    table = table_of(dws_workdir)
    seed0 = first_seed(dws_workdir)
    by_key = {(row["seed"], row["split"], row["split_index"]): row for row in table}
    count = 0
    for path in root.glob("fmnist_inrs*/*/*.pth"):
        match = DWS_FMNIST.match(path.relative_to(root).as_posix())
        assert match, path
        seed = seed0 if match.group(1) is None else int(match.group(1))
        row = by_key[(seed, match.group(2), int(match.group(3)))]
        state_dict = load(path)
        label = state_dict.pop("label")
        assert type(label) is int and label == row["label"]
        check_state_dict(state_dict, DWS_KEYS)
        count += 1
    assert count == len(table)
    splits = json.loads((root / "fmnist_inrs" / "splits.json").read_text())
    assert set(splits) == {"train", "val", "test"}
    paths = [p for split in splits.values() for p in split]
    assert all(isinstance(p, str) for p in paths) and len(paths) == len(set(paths))
    assert sorted(paths) == sorted(p.relative_to(root).as_posix() for p in root.glob("fmnist_inrs/*/*.pth"))
    assert all("/".join(p.split("/")[-2:]).startswith("train/") for p in splits["train"] + splits["val"])
    assert all("/".join(p.split("/")[-2:]).startswith("test/") for p in splits["test"])
    n_train = len({row["image"] for row in table if row["split"] == "train"})
    assert len(splits["val"]) == round(n_train * 5000 / 60000) and len(splits["test"]) == TEST_IMAGES
    stats = load(root / "fmnist_inrs" / "statistics.pth")
    assert [tuple(t.shape) for t in stats["weights"]["std"]] == [(2, 32, 1), (32, 32, 1), (32, 1, 1)]
    assert not (root / "vectors").exists() and not (root / "mnist-inrs").exists()


# ---- NFN ---------------------------------------------------------------------------------------


def test_nfn_layout(nfn_export, inr_zoo_nfn):
    root, report = nfn_export
    table = table_of(inr_zoo_nfn)
    assert report["written"] == ["nfn", "vectors"] and set(report["skipped"]) == {"dwsnets_mnist"}
    data = root / "siren_mnist_wts"
    files = nfn_files(data, table, first_seed(inr_zoo_nfn))
    assert sorted(files) == list(range(len(table)))
    assert {p.name for p in data.iterdir()} >= {"randinit_smaller_3s", "randinit_smaller_aug0_3s"}
    for path in files.values():
        check_state_dict(load(path), NFN_KEYS)
    # NFN's SirenDataset: idx and label from its regexes, one file per image under the prefix
    prefix = "randinit_smaller"
    found = {}
    for path in glob.glob(os.path.join(data, f"{prefix}_[0-9]s/*.pth")):
        relative = os.path.relpath(path, data)
        found[int(re.search(r"net(\d+)\.pth", relative).group(1))] = int(re.search(r"_(\d)s", relative).group(1))
    images = {row["image"]: row["label"] for row in table}
    assert found == images
    readme = (root / "readme.md").read_text()
    assert "'ij'" in readme and "[-1, 1]" in readme and "aug{k-1}" in readme


def test_nfn_files_draw_the_images_in_nfn_siren(nfn_export, inr_zoo_nfn):
    root, _ = nfn_export
    files = nfn_files(root / "siren_mnist_wts", table_of(inr_zoo_nfn), first_seed(inr_zoo_nfn))
    check_reconstructions(inr_zoo_nfn, files, NfnSiren(), nfn_coordinates(), lambda model, x: model(x)[0], peak=2.0)


# ---- vectors -----------------------------------------------------------------------------------


def read_vectors(folder: pathlib.Path):
    from safetensors.numpy import load_file

    out = {}
    for split in ("train", "val", "test"):
        tensors = load_file(str(folder / f"{split}.safetensors"))
        meta = json.loads((folder / f"{split}.json").read_text())
        out[split] = (tensors, meta)
    return out


@pytest.mark.parametrize("style", ["dwsnets", "nfn"])
def test_vectors_rows_are_the_state_dicts_flattened(style, request):
    if style == "dwsnets":
        (root, _), workdir = request.getfixturevalue("dws_export"), request.getfixturevalue("dws_workdir")
        files = dws_mnist_files(root, table_of(workdir), first_seed(workdir))
        keys = DWS_KEYS
    else:
        (root, _), workdir = request.getfixturevalue("nfn_export"), request.getfixturevalue("inr_zoo_nfn")
        files = nfn_files(root / "siren_mnist_wts", table_of(workdir), first_seed(workdir))
        keys = NFN_KEYS
    table = table_of(workdir)
    metrics = read_inr_zoo(workdir).metrics()
    vectors = read_vectors(root / "vectors")
    val = expected_val_images(table)
    ids = []
    for split, (tensors, meta) in vectors.items():
        weights = tensors["weights"]
        assert weights.dtype == np.float32 and len(weights) == meta["rows"] == len(tensors["model_id"])
        layout = meta["index_dict"]["tensors"]
        assert [t["shape"] for t in layout] == [list(shape) for shape in SHAPES]
        assert [t["offset"] for t in layout] == list(np.cumsum([0] + [math.prod(s) for s in SHAPES[:-1]]))
        for r, model_id in enumerate(tensors["model_id"]):
            row = table[int(model_id)]
            state_dict = load(files[int(model_id)])
            flat = np.concatenate([state_dict[key].numpy().ravel() for key in keys])
            np.testing.assert_array_equal(weights[r], flat)
            for name in ("seed", "image", "split_index", "label"):
                assert tensors[name][r] == row[name], name
            assert meta["categorical_properties"]["split"][r] == row["split"]
            for name in ("psnr", "mse", "steps", "steps_to_target"):  # NaN steps_to_target: never reached
                np.testing.assert_array_equal(tensors[name][r], metrics[name][int(model_id)], name)
            # the split follows the image: test images in test, the val images (all seeds) in val
            assert split == ("test" if row["split"] == "test" else "val" if row["image"] in val else "train")
        ids += list(tensors["model_id"])
    assert sorted(ids) == list(range(len(table)))
    if style == "nfn":  # the NFN fixture has models that never reached the target
        assert (
            np.isnan(np.concatenate([v[0]["steps_to_target"] for v in vectors.values()])).sum()
            == np.isnan(metrics["steps_to_target"]).sum()
            > 0
        )
    else:
        assert len(vectors["test"][0]["weights"]) == TEST_IMAGES * len({row["seed"] for row in table})
    dataset = torch.load(root / "vectors" / "dataset.pt", weights_only=False)
    assert dataset["train"]["weights"].shape == vectors["train"][0]["weights"].shape


# ---- refusals ----------------------------------------------------------------------------------


def changed(zoo, **fields):
    """The zoo with model config fields (or 'channels', 'label') changed."""
    config = ml_collections.ConfigDict(zoo.config.to_dict())
    spec, table = zoo.spec, zoo.table
    for name, value in fields.items():
        if name == "channels":
            spec = dataclasses.replace(spec, out_features=value)
        elif name == "label":
            table = [{**row, "label": value} for row in table]
        else:
            config.model[name] = value
    return dataclasses.replace(zoo, config=config, spec=spec, table=table)


@pytest.mark.parametrize(
    "fmt, fields, message",
    [
        ("dwsnets_mnist", {"output_offset": 0.0}, "needs model.output_offset=0.5"),
        ("dwsnets_mnist", {"target_range": "symmetric"}, "needs model.target_range='unit'"),
        ("dwsnets_fmnist", {"w0_first": 20.0}, "needs model.w0_first=30.0"),
        ("dwsnets_mnist", {"w0_hidden": 20.0}, "needs model.w0_hidden=30.0"),
        ("dwsnets_mnist", {"widths": (32, 16)}, "needs model.widths of one even width"),
        ("dwsnets_mnist", {"channels": 3}, "needs images of 1 channel"),
        ("nfn", {"coordinates": "ij", "output_offset": 0.0}, "needs model.target_range='symmetric'"),
        ("nfn", {"coordinates": "ij", "target_range": "symmetric"}, "needs model.output_offset=0.0"),
        (
            "nfn",
            {"coordinates": "ij", "target_range": "symmetric", "output_offset": 0.0, "label": 12},
            "needs labels 0..9",
        ),
    ],
)
def test_each_layout_check_refuses_in_one_line_and_writes_nothing(
    dws_workdir, tmp_path, monkeypatch, fmt, fields, message
):
    import jaxzoo.inr.export as inr_export

    zoo = changed(read_inr_zoo(dws_workdir), **fields)
    monkeypatch.setattr(inr_export, "read_inr_zoo", lambda path: zoo)
    out = tmp_path / "out"
    with pytest.raises(ExportError) as error:
        export(dws_workdir, out, fmt, log=quiet)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "export it as" in str(error.value) and "vectors" in str(error.value)
    assert not out.exists()


def test_all_writes_only_the_layouts_that_fit(dws_workdir, tmp_path, monkeypatch):
    import jaxzoo.inr.export as inr_export

    zoo = changed(read_inr_zoo(dws_workdir), output_offset=0.0)  # neither DWSNets nor NFN
    monkeypatch.setattr(inr_export, "read_inr_zoo", lambda path: zoo)
    report = export(dws_workdir, tmp_path, "all", log=quiet)
    root = pathlib.Path(report["out"])
    assert report["written"] == ["vectors"] and set(report["skipped"]) == {"dwsnets_mnist", "nfn"}
    assert sorted(p.name for p in root.iterdir()) == ["config.json", "export.json", "readme.md", "vectors"]
    assert "not written: dwsnets_mnist" in (root / "readme.md").read_text()


def test_cli_refuses_mismatched_formats_in_one_line(dws_workdir, inr_zoo_nfn, tiny_zoo, tmp_path, capsys):
    cases = [
        (inr_zoo_nfn, "dwsnets_mnist", "needs model.coordinates='xy'"),
        (dws_workdir, "nfn", "needs model.coordinates='ij'"),
        (tiny_zoo, "nfn", "is for INR zoos"),
        (tiny_zoo, "dwsnets_fmnist", "is for INR zoos"),
        (dws_workdir, "trials", "is for classification zoos"),
    ]
    for workdir, fmt, message in cases:
        out = tmp_path / f"out_{fmt}"
        capsys.readouterr()
        assert main(["--workdir", str(workdir), "--out", str(out), "--format", fmt]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not out.exists()
    assert (
        main(["--workdir", str(dws_workdir), "--out", str(tmp_path / "e"), "--format", "vectors", "--epochs", "1"]) == 2
    )
    assert "--epochs applies to classification zoos only" in capsys.readouterr().err


def test_an_export_is_replaced_only_with_overwrite(dws_workdir, tmp_path):
    report = export(dws_workdir, tmp_path, "vectors", log=quiet)
    with pytest.raises(ExportError, match="already holds an export"):
        export(dws_workdir, tmp_path, "vectors", log=quiet)
    with pytest.raises(ExportError, match="already holds an export of another zoo or with other settings"):
        export(dws_workdir, tmp_path, "dwsnets_mnist", log=quiet)
    assert export(dws_workdir, tmp_path, "dwsnets_mnist", overwrite=True, log=quiet)["out"] == report["out"]
    assert not (pathlib.Path(report["out"]) / "vectors").exists()  # the old export was removed
    foreign = tmp_path / "foreign"
    (foreign / read_inr_zoo(dws_workdir).name).mkdir(parents=True)
    (foreign / read_inr_zoo(dws_workdir).name / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a jaxzoo export"):
        export(dws_workdir, foreign, "vectors", log=quiet)


# ---- Neural Field Arena (fit-a-nef) -------------------------------------------------------------

ARENA_CONFIG = [  # fit-a-nef's SIREN, flattened by SIREN_key: per layer bias before kernel, kernels [in, out]
    ["kernel_net_0.linear.bias", [32]],
    ["kernel_net_0.linear.kernel", [2, 32]],
    ["kernel_net_1.linear.bias", [32]],
    ["kernel_net_1.linear.kernel", [32, 32]],
    ["output_linear.bias", [1]],
    ["output_linear.kernel", [32, 1]],
]


def check_sha256sums(folder: pathlib.Path, name: str = "checksums.sha256") -> list[str]:
    """As `sha256sum -c` checks `folder/name`: each line '<64 hex digits>  <file>' (two spaces, text
    mode), the file's sha256 equal to the digest; returns the files listed, in order."""
    listed = []
    for line in (folder / name).read_text().splitlines():
        match = re.fullmatch(r"([0-9a-f]{64})  (\S.*)", line)
        assert match, line
        digest, file = match.groups()
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest, file
        listed.append(file)
    return listed


def read_arena(folder: pathlib.Path) -> dict:
    """As the Arena's PreloadedNeFDataset reads a folder: every *.hdf5, ordered by the start of
    its `{name}_{start}-{end}` stem, `params` and the other datasets stacked in that order, the
    param_config (a JSON [key, shape] list in a one-element string dataset) of the first file."""
    h5py = pytest.importorskip("h5py")
    paths = sorted(folder.glob("*.hdf5"), key=lambda p: int(p.stem.split("_")[1].split("-")[0]))
    out, end_before = collections.defaultdict(list), 0
    for path in paths:
        start, end = (int(x) for x in path.stem.split("_")[1].split("-"))
        assert start == end_before  # the files tile rows 0..N-1
        with h5py.File(path, "r") as f:
            assert f["params"].shape[0] == end - start and f["params"].dtype == np.float32
            out["param_config"] = out.get("param_config") or json.loads(f["param_config"][0].decode("utf-8"))
            for key in f.keys():
                if key != "param_config":
                    out[key].append(f[key][:])
        end_before = end
    data = {key: (np.concatenate(value) if key != "param_config" else value) for key, value in out.items()}
    data["files"] = [p.name for p in paths]
    return data


def unflatten(row: np.ndarray, config) -> dict:
    """The Arena's param_vector_to_list: consecutive slices of the row, each reshaped."""
    out, start = {}, 0
    for key, shape in config:
        out[key] = row[start : start + math.prod(shape)].reshape(shape)
        start += math.prod(shape)
    assert start == len(row)
    return out


def fit_a_nef_siren(tensors: dict, nef: dict, coords: np.ndarray) -> np.ndarray:
    """fit-a-nef's SIREN: sin(omega_0 * (x @ kernel + bias)) for kernel_net_0..L-2, then
    output_linear (x @ kernel + bias), float32."""
    x = coords
    for i in range(nef["params"]["num_layers"] - 1):
        layer = f"kernel_net_{i}.linear"
        x = np.sin(np.float32(nef["params"]["omega_0"]) * (x @ tensors[f"{layer}.kernel"] + tensors[f"{layer}.bias"]))
    return x @ tensors["output_linear.kernel"] + tensors["output_linear.bias"]


def fit_a_nef_coordinates(size=28):
    """fit-a-nef's load_images: meshgrid (default indexing) of linspace(-1, 1) per axis, (x, y) stacked."""
    x, y = np.meshgrid(np.linspace(-1, 1, size, dtype=np.float32), np.linspace(-1, 1, size, dtype=np.float32))
    return np.stack([x, y], axis=-1).reshape(size * size, 2)


@pytest.mark.parametrize("style", ["dwsnets", "nfn"])
def test_arena_files_read_and_draw_as_fit_a_nef(style, request, tmp_path):
    workdir = request.getfixturevalue("dws_workdir" if style == "dwsnets" else "inr_zoo_nfn")
    if style == "dwsnets":  # through the command line's format check
        assert main(["--workdir", str(workdir), "--out", str(tmp_path), "--format", "arena"]) == 0
        report = json.loads(next(tmp_path.glob("*/export.json")).read_text())["report"]
    else:
        report = export(workdir, tmp_path, "arena", log=quiet)
    root = pathlib.Path(report["out"])
    assert report["written"] == ["arena"] and not (root / "vectors").exists()
    data = read_arena(root / "arena")
    table = table_of(workdir)
    images = sorted({row["image"] for row in table})
    seeds = sorted({row["seed"] for row in table})
    n = len(images)
    assert data["files"] == [f"nefs_{s * n}-{(s + 1) * n}.hdf5" for s in range(len(seeds))]
    assert data["param_config"] == ARENA_CONFIG
    nef = json.loads((root / "arena" / "nef.json").read_text())
    assert nef == {"name": "SIREN", "params": {"hidden_dim": 32, "num_layers": 3, "omega_0": 30.0, "output_dim": 1}}
    assert json.loads((root / "arena" / "nef_cfg.json").read_text()) == nef
    # rows: seed-major, images ascending (fit-a-nef's numbering for a zoo of every image from 0)
    by_id = {row["model_id"]: row for row in table}
    expected_order = [(s, i) for s in seeds for i in images]
    assert [(by_id[m]["seed"], by_id[m]["image"]) for m in data["model_id"]] == expected_order
    assert list(data["image"]) == [i for _, i in expected_order] and list(data["seed"]) == [
        s for s, _ in expected_order
    ]
    assert [by_id[m]["label"] for m in data["model_id"]] == list(data["labels"])
    # each row, unflattened and drawn by fit-a-nef's SIREN, is the zoo's drawing at the recorded PSNR
    zoo = read_inr_zoo(workdir)
    expected = zoo.reconstruct(zoo.params())
    targets = zoo.target_images(np.arange(len(table)))
    psnr, peak = zoo.metrics()["psnr"], (1.0 if style == "dwsnets" else 2.0)
    coords = fit_a_nef_coordinates()
    for row, model in zip(data["params"], data["model_id"]):
        image = fit_a_nef_siren(unflatten(row, data["param_config"]), nef, coords).reshape(28, 28, 1)
        np.testing.assert_allclose(image, expected[model], atol=1e-5, rtol=0)
        mse = np.mean((image.astype(np.float64) - targets[model]) ** 2)
        assert abs(10 * math.log10(peak**2 / mse) - psnr[model]) < 0.01
    np.testing.assert_array_equal(data["psnr"], psnr[data["model_id"]])
    # splits: the first seed's rows, train images then test images, the last round(n_train / 10) train as val
    n_train = sum(row["split"] == "train" for row in table if row["seed"] == seeds[0])
    n_val = min(5000, round(n_train / 10))
    ranges = {"train": (0, n_train - n_val), "val": (n_train - n_val, n_train), "test": (n_train, n)}
    ranges = {k: v for k, v in ranges.items() if v[1] > v[0]}
    metadata = json.loads((root / "arena" / "metadata.json").read_text())
    assert set(metadata) == set(ranges) | {f"{a}_{b}" for a, b in ranges.values()}
    for split, (start, end) in ranges.items():
        assert all(by_id[m]["split"] == ("test" if split == "test" else "train") for m in data["model_id"][start:end])
        rows = data["params"][start:end].astype(np.float64)
        mean, std, offset = [], [], 0
        for _, shape in ARENA_CONFIG:  # the Arena's per_layer statistics: one mean and std per tensor
            part = rows[:, offset : offset + math.prod(shape)]
            mean += [part.mean()] * part.shape[1]
            std += [np.sqrt((part**2).mean() - part.mean() ** 2)] * part.shape[1]
            offset += part.shape[1]
        for name in (split, f"{start}_{end}"):
            np.testing.assert_allclose(metadata[name]["mean"], mean, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(metadata[name]["std"], std, rtol=1e-6, atol=1e-12)
    # checksums.sha256: every other file of the folder, once each, and verifying as sha256sum -c
    listed = check_sha256sums(root / "arena")
    assert sorted(listed) == sorted(p.name for p in (root / "arena").iterdir() if p.name != "checksums.sha256")
    assert not list((root / "arena").glob(".*"))  # no temporary files left
    changed = bytearray((root / "arena" / "metadata.json").read_bytes())
    changed[len(changed) // 2] ^= 1
    (root / "arena" / "metadata.json").write_bytes(bytes(changed))
    with pytest.raises(AssertionError, match="metadata.json"):
        check_sha256sums(root / "arena")
    readme = (root / "readme.md").read_text()
    assert "arena/nefs_{start}-{end}.hdf5" in readme and "omega_0 30" in readme
    assert "arena/checksums.sha256" in readme
    assert ("input rows are swapped" in readme) == (style == "nfn") and ("offset 0.5" in readme) == (style == "dwsnets")


def test_arena_refuses_a_siren_fit_a_nef_cannot_hold(dws_workdir, tmp_path, monkeypatch):
    import jaxzoo.inr.export as inr_export

    for fields, message in (
        ({"w0_first": 20.0}, "needs model.w0_first=model.w0_hidden=30.0"),
        ({"widths": (32, 16)}, "needs model.widths of one width"),
    ):
        zoo = changed(read_inr_zoo(dws_workdir), **fields)
        monkeypatch.setattr(inr_export, "read_inr_zoo", lambda path: zoo)
        out = tmp_path / "out"
        with pytest.raises(ExportError) as error:
            export_inr(dws_workdir, out, "arena", log=quiet)
        assert message in str(error.value) and "\n" not in str(error.value) and "fit-a-nef" in str(error.value)
        assert not out.exists()


# ---- a zoo whose images do not start at 0 --------------------------------------------------------


def test_a_zoo_not_starting_at_image_0_opens_in_nfns_loader(inr_zoo_nfn, tmp_path):
    """A copy of the NFN-style zoo whose images are numbered from SHIFT (as images.first=SHIFT
    numbers them): NFN's SirenDataset indexes net0..net{N-1} (its `idcs = range(len(...))`), so
    the export must number the files from 0 and say which image each is."""
    shift = 7
    workdir = tmp_path / "zoo"
    shutil.copytree(inr_zoo_nfn, workdir)
    table = table_of(workdir)
    for row in table:
        row["image"] += shift
        row["split_index"] += shift
    (workdir / "models.json").write_text(json.dumps(table))
    root = pathlib.Path(export(workdir, tmp_path / "out", "nfn", log=quiet)["out"])
    data = root / "siren_mnist_wts"
    # NFN's SirenDataset: {idx: path}, {idx: label} from the regexes, then items 0..len-1
    idx_to_path, idx_to_label = {}, {}
    for path in glob.glob(os.path.join(data, "randinit_smaller_[0-9]s/*.pth")):
        idx = int(re.search(r"net(\d+)\.pth", path).group(1))
        idx_to_path[idx], idx_to_label[idx] = path, int(re.search(r"_(\d)s", path).group(1))
    items = [(load(idx_to_path[i]), idx_to_label[i]) for i in range(len(idx_to_path))]  # KeyError: 0 if not from 0
    index = json.loads((root / "nfn_index.json").read_text())
    assert [entry["net"] for entry in index] == list(range(len(items)))
    seed0 = first_seed(workdir)
    by_image = {row["image"]: i for i, row in enumerate(table) if row["seed"] == seed0}
    params = read_inr_zoo(workdir).params()
    for (state_dict, label), entry in zip(items, index):
        model = by_image[entry["image"]]
        assert entry["image"] == entry["net"] + shift and label == entry["label"] == table[model]["label"]
        np.testing.assert_array_equal(state_dict["net.0.linear.weight"].numpy(), params["layer0"]["kernel"][model].T)
    readme = (root / "readme.md").read_text()
    assert "nfn_index.json" in readme and f"image {shift} is the first" in readme
    # the arena layout numbers its rows from 0 too, `image` mapping them back
    arena_root = pathlib.Path(export_inr(workdir, tmp_path / "arena_out", "arena", log=quiet)["out"]) / "arena"
    rows = read_arena(arena_root)
    n = len(by_image)
    assert rows["files"][0] == f"nefs_0-{n}.hdf5" and list(rows["image"][:n]) == sorted(by_image)


# ---- exact maps of the field -------------------------------------------------------------------


def field_maps(coordinates):
    return [
        arena.translation(0.3, -0.2, coordinates),
        arena.translation(3, -2, coordinates, shape=(28, 28)),
        arena.rotation(0.7, coordinates),
        arena.scaling(1.7, coordinates),
        arena.scaling((0.8, -1.3), coordinates),
    ]


@pytest.mark.parametrize("style", ["dwsnets", "nfn"])
def test_field_maps_are_exact_on_the_field_and_on_the_grid(style, request):
    workdir = request.getfixturevalue("dws_workdir" if style == "dwsnets" else "inr_zoo_nfn")
    zoo = read_inr_zoo(workdir)
    coordinates = zoo.config.model.coordinates
    rows = np.arange(4)
    params = {name: {k: v[rows] for k, v in layer.items()} for name, layer in zoo.params().items()}
    points = np.random.default_rng(0).uniform(-1.2, 1.2, (200, 2)).astype(np.float32)
    draw = lambda p, x: np.stack(
        [
            np.asarray(siren.apply(zoo.spec, {k: {n: a[m] for n, a in v.items()} for k, v in p.items()}, x))
            for m in range(len(rows))
        ]
    )
    for field_map in field_maps(coordinates):
        moved = draw(arena.map_params(params, field_map), points)
        source = (points.astype(np.float64) @ field_map.matrix.T + field_map.offset).astype(np.float32)
        np.testing.assert_allclose(moved, draw(params, source), atol=2e-4, rtol=0)
    # on the grid: a whole-pixel shift, a quarter turn and a flip move the image itself
    before = zoo.reconstruct(params)[..., 0]
    shifted = zoo.reconstruct(arena.map_params(params, arena.translation(3, -2, coordinates, shape=(28, 28))))[..., 0]
    np.testing.assert_allclose(shifted[:, 3:, :-2], before[:, :-3, 2:], atol=1e-4, rtol=0)
    turned = zoo.reconstruct(arena.map_params(params, arena.rotation(math.pi / 2, coordinates)))[..., 0]
    np.testing.assert_allclose(turned, np.rot90(before, axes=(1, 2)), atol=1e-4, rtol=0)
    flipped = zoo.reconstruct(arena.map_params(params, arena.scaling((1, -1), coordinates)))[..., 0]
    np.testing.assert_allclose(flipped, before[:, :, ::-1], atol=1e-4, rtol=0)


def test_field_maps_of_flat_vectors_equal_those_of_params(nfn_export, inr_zoo_nfn):
    root, _ = nfn_export
    tensors, meta = read_vectors(root / "vectors")["train"]
    zoo = read_inr_zoo(inr_zoo_nfn)
    ids = tensors["model_id"]
    params = {name: {k: v[ids] for k, v in layer.items()} for name, layer in zoo.params().items()}
    for field_map in field_maps("ij"):
        mapped = arena.map_params(params, field_map)
        flat = np.concatenate(
            [
                a.reshape(len(ids), -1)
                for layer in (mapped[name] for name in siren.layer_names(zoo.spec))
                for a in (np.swapaxes(layer["kernel"], 1, 2), layer["bias"])
            ],
            axis=1,
        )
        np.testing.assert_allclose(
            arena.map_vectors(tensors["weights"], meta["index_dict"], field_map), flat, rtol=1e-6, atol=1e-7
        )
