"""jaxzoo.weights.sane: SANE's tokens of exported flat vectors, their inverse, the permutation spec.

The reference tokeniser and the permutation below are written here from SANE's described
algorithm (HSG-AIML/SANE: `tokenize_checkpoint`, the zoo CNN's permutation spec and
`get_permuted_param`), on PyTorch state_dicts read from the export with a reader written from
the index_dict's description, not with jaxzoo's code.
"""

import collections
import hashlib
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxzoo import export  # noqa: E402
from jaxzoo.errors import UserError  # noqa: E402
from jaxzoo.export.__main__ import main  # noqa: E402
from jaxzoo.weights import sane, symmetry  # noqa: E402

TOKEN_SIZES = (0, 7, 32, 400)  # widest row; narrow (rows cut in many tokens); row-sized; wider than any row


@pytest.fixture(scope="module")
def vectors(tiny_zoo, tmp_path_factory):
    """The tiny zoo's exported vectors (4 CNN-s models x epochs 0..2): {split: VectorSplit}."""
    root = tmp_path_factory.mktemp("sane")
    export.export(tiny_zoo, root, "vectors", log=None)
    return export.load_vectors(next(root.glob("*/vectors")))


def state_dict(row: np.ndarray, index_dict: dict) -> collections.OrderedDict:
    """One flat vector -> the original's state_dict: per layer (module_list.{layer}), the weight
    [kernel_no, channels_in, k, k] (a dense layer: [kernel_no, channels_in]) from idx_start,
    row-major, then the bias [kernel_no]."""
    out = collections.OrderedDict()
    for layer, start, units, size, cin in zip(
        *(index_dict[k] for k in ("layer", "idx_start", "kernel_no", "kernel_size", "channels_in"))
    ):
        side = int(round(size**0.5))
        shape = (units, cin, side, side) if size > 1 else (units, cin)
        count = units * cin * size
        out[f"module_list.{layer}.weight"] = torch.from_numpy(row[start : start + count].copy()).reshape(shape)
        out[f"module_list.{layer}.bias"] = torch.from_numpy(row[start + count : start + count + units].copy())
    return out


def sane_tokenize(checkpoint, tokensize):
    """SANE's tokenisation of one checkpoint: each weight (in key order) viewed [out, -1] with its
    bias as the last column, rows zero-padded to a multiple of tokensize and cut into tokens;
    positions (sequence index, layer index, row); tokensize 0: the widest row."""
    rows = []
    for key, w in checkpoint.items():
        if "weight" not in key:
            continue
        w = w.reshape(w.shape[0], -1)
        if key.replace("weight", "bias") in checkpoint:
            w = torch.cat([w, checkpoint[key.replace("weight", "bias")].unsqueeze(1)], dim=1)
        rows.append(w)
    tokensize = tokensize or max(w.shape[1] for w in rows)
    tokens, masks, pos = [], [], []
    for layer, w in enumerate(rows):
        factor = -(-w.shape[1] // tokensize)
        pos += [(layer, unit) for unit in range(w.shape[0]) for _ in range(factor)]
        padded = torch.zeros(w.shape[0], factor * tokensize)
        mask = torch.zeros(w.shape[0], factor * tokensize, dtype=torch.bool)
        padded[:, : w.shape[1]] = w
        mask[:, : w.shape[1]] = True
        tokens.append(padded.view(-1, tokensize))
        masks.append(mask.view(-1, tokensize))
    pos = torch.tensor([(n, layer, unit) for n, (layer, unit) in enumerate(pos)])
    pos = pos.to(torch.int16) if pos.max() <= 32767 else pos.to(torch.int)
    return torch.cat(tokens), torch.cat(masks), pos


def test_tokens_match_sanes_tokeniser_and_invert_exactly(vectors):
    for split, data in vectors.items():
        layout = data.index_dict
        for token_size in TOKEN_SIZES:
            tokens, mask, positions = sane.sane_tokens(data.weights, layout, token_size)
            assert tokens.shape[0] == len(data.weights) and tokens.dtype == np.float32
            for n, row in enumerate(data.weights):
                expected, expected_mask, expected_pos = sane_tokenize(state_dict(row, layout), token_size)
                np.testing.assert_array_equal(tokens[n], expected.numpy())
                np.testing.assert_array_equal(mask, expected_mask.numpy())
                np.testing.assert_array_equal(positions, expected_pos.numpy())
                assert positions.dtype == np.int16
            back = sane.sane_vectors(tokens, layout, token_size)
            assert back.dtype == data.weights.dtype
            np.testing.assert_array_equal(back, data.weights)  # bit for bit
    # a state_dict of a whole split ([N, ...] tensors) gives the tokens of its vectors
    data = vectors["train"]
    names = state_dict(data.weights[0], data.index_dict)
    stacked = {k: np.stack([state_dict(r, data.index_dict)[k].numpy() for r in data.weights]) for k in names}
    np.testing.assert_array_equal(
        sane.sane_tokens(stacked, data.index_dict, 16)[0], sane.sane_tokens(data.weights, data.index_dict, 16)[0]
    )


def siren_layout(widths=(32, 32), channels=1):
    """An INR export's per-tensor layout: layer{i}.weight [out, in], layer{i}.bias [out]."""
    features, tensors, offset = (2, *widths, channels), [], 0
    for i in range(len(features) - 1):
        for kind, shape in (("weight", [features[i + 1], features[i]]), ("bias", [features[i + 1]])):
            tensors.append({"key": f"layer{i}.{kind}", "offset": offset, "shape": shape})
            offset += int(np.prod(shape))
    return {"tensors": tensors}, offset


def test_per_tensor_layouts_tokenise_as_sane_and_refuse_strays():
    layout, size = siren_layout()
    rows = np.random.default_rng(0).standard_normal((3, size)).astype(np.float32)
    rows[0, 0], rows[1, 0], rows[2, 0] = -np.inf, np.nan, -2.0  # entry 0 is what padding points at
    for token_size in (0, 5):
        tokens, mask, positions = sane.sane_tokens(rows, layout, token_size)
        for n, row in enumerate(rows):
            checkpoint = collections.OrderedDict(
                (
                    t["key"],
                    torch.from_numpy(row[t["offset"] : t["offset"] + int(np.prod(t["shape"]))].copy()).reshape(
                        t["shape"]
                    ),
                )
                for t in layout["tensors"]
            )
            expected, expected_mask, expected_pos = sane_tokenize(checkpoint, token_size)
            np.testing.assert_array_equal(tokens[n], expected.numpy())
            np.testing.assert_array_equal(mask, expected_mask.numpy())
            np.testing.assert_array_equal(positions, expected_pos.numpy())
        assert not np.signbit(tokens[:, ~mask]).any()  # padding is +0.0, as SANE's torch.zeros
        np.testing.assert_array_equal(sane.sane_vectors(tokens, layout, token_size), rows)
    stray = {"tensors": [*layout["tensors"], {"key": "scale", "offset": size, "shape": [1]}]}
    with pytest.raises(UserError, match="scale of this layout is neither a weight nor the bias"):
        sane.sane_tokens(np.zeros((1, size + 1), np.float32), stray, 8)
    for bad, message in ((-1, "token_size must be an integer >= 0"), (2.5, "token_size must be an integer >= 0")):
        with pytest.raises(UserError, match=message):
            sane.sane_tokens(rows, layout, bad)
    with pytest.raises(UserError, match="do not fit this layout"):
        sane.sane_tokens(rows[:, :-1], layout, 8)


def get_permuted_param(spec, perm, key, params):
    """SANE's permutation of one tensor: along each axis with a named permutation, index_select
    by it; an axis that is a multiple of the permutation's size (a conv's channels flattened into
    a dense layer) is permuted in whole blocks."""
    w = params[key]
    for axis, p in enumerate(spec[key]):
        if p is None:
            continue
        n = len(perm[p])
        if w.shape[axis] != n:
            index = torch.arange(w.shape[axis]).view(n, -1)
            w = torch.index_select(w, axis, torch.index_select(index, 0, perm[p]).view(-1))
        else:
            w = torch.index_select(w, axis, perm[p])
    return w


def test_permutation_spec_is_sanes_and_permutes_as_jaxzoo(vectors):
    layout = vectors["train"].index_dict
    spec = sane.sane_permutation_spec(layout)
    m = [f"module_list.{n}" for n in layout["layer"]]
    assert m == ["module_list.0", "module_list.3", "module_list.6", "module_list.9", "module_list.11"]
    expected = {}  # SANE's zoo_cnn_permutation_spec: conv / dense (name, p_in, p_out)
    for name, p_in, p_out in zip(
        m, (None, "P_bg0", "P_bg1", "P_bg2", "P_bg3"), ("P_bg0", "P_bg1", "P_bg2", "P_bg3", None)
    ):
        expected[f"{name}.weight"], expected[f"{name}.bias"] = (p_out, p_in), (p_out,)
    assert spec == expected
    rng = np.random.default_rng(1)
    perms = symmetry.random_permutations(layout, rng)
    named = {f"P_bg{i}": torch.from_numpy(p) for i, p in enumerate(perms)}
    rows = vectors["train"].weights[:2]
    jax_side = symmetry.permute_vectors(rows, layout, list(perms))
    for row, permuted in zip(rows, jax_side):
        params = state_dict(row, layout)
        by_sane = {k: get_permuted_param(spec, named, k, params) for k in params}
        np.testing.assert_array_equal(np.concatenate([v.numpy().ravel() for v in by_sane.values()]), permuted)
    # the SIREN layout is a chain too; a ResNet-like layout is refused
    siren_spec = sane.sane_permutation_spec(siren_layout()[0])
    assert siren_spec["layer0.weight"] == ("P_bg0", None) and siren_spec["layer2.weight"] == (None, "P_bg1")
    residual = {
        "tensors": [
            {"key": "conv1.weight", "offset": 0, "shape": [4, 3, 3, 3]},
            {"key": "bn1.weight", "offset": 108, "shape": [4]},
            {"key": "bn1.bias", "offset": 112, "shape": [4]},
        ]
    }
    assert sane.sane_tokens(np.zeros((1, 116), np.float32), residual, 0)[0].shape == (1, 8, 27)
    with pytest.raises(UserError, match="chains of layers"):
        sane.sane_permutation_spec(residual)


def read_safetensors(path) -> dict[str, np.ndarray]:
    """A safetensors file as its format describes it: 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets}} (and __metadata__), then the raw little-endian data."""
    dtypes = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2", "U8": "u1", "BOOL": "?"}
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    header.pop("__metadata__", None)
    out = {}
    for name, entry in header.items():
        start, end = (8 + length + x for x in entry["data_offsets"])
        out[name] = np.frombuffer(raw[start:end], dtypes[entry["dtype"]]).reshape(entry["shape"])
    return out


def check_sha256sums(folder) -> list[str]:
    """As `sha256sum -c checksums.sha256` in `folder`: '<64 hex>  <file>' lines, each digest the
    file's sha256; returns the files listed."""
    listed = []
    for line in (folder / "checksums.sha256").read_text().splitlines():
        match = re.fullmatch(r"([0-9a-f]{64})  (\S.*)", line)
        assert match, line
        assert hashlib.sha256((folder / match[2]).read_bytes()).hexdigest() == match[1], match[2]
        listed.append(match[2])
    return listed


@pytest.fixture(scope="module")
def sane_export(tiny_zoo, tmp_path_factory):
    """The tiny zoo exported with --format sane --token_size 7 (through the command line)."""
    root = tmp_path_factory.mktemp("sane_export")
    assert main(["--workdir", str(tiny_zoo), "--out", str(root), "--format", "sane", "--token_size", "7"]) == 0
    return next(root.glob("*/sane"))


def test_sane_export_holds_the_vectors_rows_as_sanes_tokens(sane_export, vectors):
    """Each split's tokens are `sane_tokenize` (SANE's tokeniser, written above) of the vectors
    export's rows, same rows in the same order; mask, positions and properties alike."""
    for split, data in vectors.items():
        files = read_safetensors(sane_export / f"{split}.safetensors")
        meta = json.loads((sane_export / f"{split}.json").read_text())
        assert meta["token_size"] == 7 and meta["rows"] == len(data.weights)
        expected = [sane_tokenize(state_dict(row, data.index_dict), 7) for row in data.weights]
        assert files["tokens"].dtype == np.float32 and files["tokens"].shape == (len(data.weights), *meta["tokens"][1:])
        for tokens, (ref_tokens, ref_mask, ref_positions) in zip(files["tokens"], expected):
            np.testing.assert_array_equal(tokens, ref_tokens.numpy())
            np.testing.assert_array_equal(files["mask"].astype(bool), ref_mask.numpy().astype(bool))
            np.testing.assert_array_equal(files["positions"], ref_positions.numpy())
        for key, values in data.properties.items():
            if isinstance(values, list):
                assert meta["categorical_properties"][key] == values
            else:
                np.testing.assert_array_equal(files[key], values)
    spec = json.loads((sane_export / "permutation_spec.json").read_text())
    assert spec == {k: list(v) for k, v in sane.sane_permutation_spec(data.index_dict).items()}
    readme = (sane_export / "readme.md").read_text()
    assert "288" in readme and "safetensors" in readme
    assert not list(sane_export.rglob(".*"))  # the staged vectors and temporary files are gone


def test_sane_checksums_verify_and_catch_a_changed_byte(sane_export, tmp_path):
    listed = check_sha256sums(sane_export)
    assert sorted(listed) == sorted(p.name for p in sane_export.iterdir() if p.name != "checksums.sha256")
    copy = tmp_path / "sane"
    copy.mkdir()
    for path in sane_export.iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    changed = bytearray((copy / "val.safetensors").read_bytes())
    changed[-3] ^= 1
    (copy / "val.safetensors").write_bytes(bytes(changed))
    with pytest.raises(AssertionError, match="val.safetensors"):
        check_sha256sums(copy)


@pytest.mark.parametrize(
    "flags",
    [
        ("--format", "sane", "--token_size", "-3"),
        ("--format", "sane", "--token_size", "1.5"),
        ("--format", "vectors", "--token_size", "8"),
    ],
)
def test_bad_token_size_is_one_line_and_writes_nothing(tiny_zoo, tmp_path, capsys, flags):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        code = main(["--workdir", str(tiny_zoo), "--out", str(out), *flags])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "token_size" in err
    assert not out.exists()


def permuted_state_dict(state: dict, spec: dict, rng) -> dict:
    """The test's own reading of a permutation spec: one random permutation per name, applied
    to every axis that names it (a `blocks` axis moves each unit's consecutive entries together)."""
    perms = {name: torch.as_tensor(rng.permutation(size)) for name, size in spec["perms"].items()}
    out = {}
    for key, tensor in state.items():
        for axis, name in enumerate(spec["axes"].get(key, [])):
            if name is None:
                continue
            index = perms[name]
            units = spec["blocks"].get(key, {}).get(str(axis), 1)
            if units > 1:  # channel-major flatten: unit u holds entries u*units .. (u+1)*units - 1
                index = (index[:, None] * units + torch.arange(units)).reshape(-1)
            tensor = tensor.index_select(axis, index)
        out[key] = tensor
    return out


def test_permutation_specs_keep_the_logits_of_cnns_and_resnet18(vectors):
    """permutation_spec as JSON: applied by the test's own code to a trained CNN-s of the tiny zoo
    (a conv -> dense flatten in blocks) and to a ResNet-18 with random BatchNorm statistics
    (residual streams tied across blocks and downsampling), the logits stay; a spec that unties
    one residual stream changes them; Git Re-Basin's perm_to_axes reads it."""
    from jaxzoo.torch import ResNet18Cifar, ZooCNN  # torch-only classes
    from jaxzoo.weights.perm_spec import permutation_spec

    data = vectors["train"]
    spec = json.loads(json.dumps(permutation_spec(data.index_dict)))
    assert spec["blocks"] == {"module_list.9.weight": {"1": 9}}
    activation = data.properties["activation"][-1]
    model = ZooCNN("cnn_s", activation, 0.0, 1, 10).eval()
    state = state_dict(data.weights[-1], data.index_dict)
    model.load_state_dict(state, strict=True)
    images = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        reference = model(images)
        model.load_state_dict(permuted_state_dict(state, spec, np.random.default_rng(0)), strict=True)
        torch.testing.assert_close(model(images), reference, rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    resnet = ResNet18Cifar(10).eval()
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5), module.bias.data.uniform_(-0.2, 0.2)
    state = resnet.state_dict()
    layout = {"tensors": [{"key": k, "offset": 0, "shape": list(v.shape)} for k, v in state.items()]}
    spec = json.loads(json.dumps(permutation_spec(layout)))
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reference = resnet(images)
        resnet.load_state_dict(permuted_state_dict(state, spec, np.random.default_rng(1)), strict=True)
        torch.testing.assert_close(resnet(images), reference, rtol=1e-4, atol=1e-4)
        untied = {**spec, "axes": {**spec["axes"], "layer1.1.bn2.weight": ["P_other"]}}
        untied["perms"] = {**spec["perms"], "P_other": 64}
        resnet.load_state_dict(permuted_state_dict(state, untied, np.random.default_rng(1)), strict=True)
        assert (resnet(images) - reference).abs().max() > 1e-3
    perm_to_axes = collections.defaultdict(list)  # Git Re-Basin's permutation_spec_from_axes_to_perm
    for key, names in spec["axes"].items():
        for axis, name in enumerate(names):
            if name is not None:
                perm_to_axes[name].append((key, axis))
    assert set(perm_to_axes) == set(spec["perms"]) and len(perm_to_axes["P_stage0"]) > 10
