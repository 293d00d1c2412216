"""INR exports in the layouts of DWSNets and NFN, and as flat vectors.

The readers here are written from the layouts' descriptions (folder names, state_dict keys,
splits files, statistics), not from jaxzoo's export code; the PyTorch models are DWSNets' INR
and NFN's Siren as those projects define them, so a file that loads and draws its image here
loads and draws it there.
"""

import dataclasses
import glob
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
