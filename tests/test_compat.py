"""Backward compatibility with zoos made by commit f4818c0 (tests/fixtures/f4818c0/README.md).

The fixture holds three tiny workdirs trained by f4818c0's code and, in manifest.json, the
sha256 of every file f4818c0's exporter wrote for them. These tests drive the current code
through its public command lines only (`python -m jaxzoo.<command>`, with f4818c0's flags),
always on a copy of the fixture:

  a. exporting the old workdirs gives the same bytes, format by format;
  b. the old classification workdir resumes for one more epoch, leaving the old epochs alone;
  c. the zoo card command reads the old workdirs;
  d. the current code computes the same identity (and model table) for the same config.

The shipped configs these flags name (configs/quickstart.py, inr_quickstart.py,
inr_dwsnets_mnist.py) are part of what is compared, and so is every export byte, model.py
included (the text of jaxzoo's standalone PyTorch models). A deliberate change of export bytes
is recorded in tests/fixtures/changes/manifest.json (by tests/fixtures/changes/record.py, with
its reason): the files it names are compared with the bytes recorded there, every other file
still with f4818c0's. The f4818c0 fixture itself is never regenerated.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "f4818c0"
MANIFEST = json.loads((FIXTURE / "manifest.json").read_text())
ZOOS = MANIFEST["zoos"]  # name -> {"train": flags of python -m jaxzoo.train, "identity_hash"}
EXPORTS = MANIFEST["exports"]  # name -> {"zoo", "flags", "experiment", "files", "excluded"}
CHANGES_FILE = FIXTURE.parent / "changes" / "manifest.json"
CHANGES = json.loads(CHANGES_FILE.read_text())["changes"] if CHANGES_FILE.exists() else []


def cli(command: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m jaxzoo.<command> args` from the repository root (the configs' paths are
    relative to it), with the session's environment (conftest: data, kernel and JAX caches)."""
    return subprocess.run(
        [sys.executable, "-m", f"jaxzoo.{command}", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def said(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}"


def copy_zoo(zoo: str, folder: pathlib.Path) -> pathlib.Path:
    """A writable copy of the fixture's workdir `zoo` under `folder`."""
    workdir = folder / zoo
    shutil.copytree(FIXTURE / zoo, workdir)
    return workdir


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: pathlib.Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def canonical_sha256(document) -> str:
    """As the fixture's generator (make_fixture.py): sorted keys, no spaces."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def environment_note() -> str:
    """The fixture's library versions against these: a serializer's new version (torch.save,
    pyarrow) can change bytes without any change in jaxzoo."""
    from importlib import metadata

    now = {}
    for name in MANIFEST["environment"]:
        try:
            now[name] = sys.version.split()[0] if name == "python" else metadata.version(name)
        except metadata.PackageNotFoundError:
            now[name] = None
    changed = {k: f"{v} -> {now[k]}" for k, v in MANIFEST["environment"].items() if now[k] != v}
    return (
        f"library versions changed since the fixture: {changed}" if changed else "same library versions as the fixture"
    )


def expected_files(name: str) -> dict:
    """{'files': {rel: sha256}, 'excluded': {rel: {..., 'rest_canonical_sha256'}}} of export
    `name`: f4818c0's, with the deliberate changes recorded since (tests/fixtures/changes), in order."""
    entry = EXPORTS[name]
    files, excluded = dict(entry["files"]), {rel: dict(value) for rel, value in entry["excluded"].items()}
    for change in CHANGES:
        recorded = change["exports"].get(name, {})
        files.update(recorded.get("files", {}))
        for rel, rest in recorded.get("excluded", {}).items():
            excluded[rel]["rest_canonical_sha256"] = rest
    return {"files": files, "excluded": excluded}


def without_fields(path: pathlib.Path, ignored_fields: list[str]) -> tuple[dict, dict]:
    """(the JSON document at `path` without `ignored_fields` (dotted paths), {field: removed value})."""
    document, removed = json.loads(path.read_text()), {}
    for field in ignored_fields:
        *parents, last = field.split(".")
        holder = document
        for key in parents:
            holder = holder.get(key, {})
        removed[field] = holder.pop(last, None)
    return document, removed


def rest_sha256(path: pathlib.Path, ignored_fields: list[str]) -> str:
    return canonical_sha256(without_fields(path, ignored_fields)[0])


def export_problems(name: str, out: pathlib.Path) -> list[str]:
    """How the export of manifest entry `name` written into `out` differs from f4818c0's (and
    the deliberate changes recorded since)."""
    entry, expected = EXPORTS[name], expected_files(name)
    found = tree_hashes(out)
    names = set(expected["files"]) | set(expected["excluded"])
    problems = [f"{name}: {rel} is missing" for rel in sorted(names - set(found))]
    problems += [f"{name}: {rel} is new" for rel in sorted(set(found) - names)]
    problems += [
        f"{name}: {rel} has other bytes"
        for rel, digest in sorted(expected["files"].items())
        if rel in found and found[rel] != digest
    ]
    for rel, excluded in sorted(expected["excluded"].items()):
        if rel not in found or "rest_canonical_sha256" not in excluded:
            continue
        document, removed = without_fields(out / rel, excluded["ignored_fields"])
        value = removed.get("report.out")
        if "report.out" in removed and (
            value is None or os.path.realpath(value) != os.path.realpath(out / entry["experiment"])
        ):
            problems.append(f"{name}: {rel} report.out is {value!r}, not the export folder")
        if canonical_sha256(document) != excluded["rest_canonical_sha256"]:
            problems.append(f"{name}: {rel} differs beyond {excluded['ignored_fields']}")
    return problems


def check_exports(names, tmp_path: pathlib.Path) -> None:
    """Exports the fixture zoos as the manifest entries `names` say (a few at a time) and
    asserts that each export holds f4818c0's files with f4818c0's bytes."""
    jobs = {}
    for name in names:
        entry = EXPORTS[name]
        workdir = copy_zoo(entry["zoo"], tmp_path / name)  # one copy each: export records itself in the workdir
        jobs[name] = ("--workdir", str(workdir), "--out", str(tmp_path / name / "out"), *entry["flags"])
    workers = max(2, min(4, os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = dict(zip(jobs, pool.map(lambda args: cli("export", *args), jobs.values())))
    problems = []
    for name, result in results.items():
        if result.returncode:
            problems.append(f"{name}: export failed, {said(result)}")
        else:
            problems += export_problems(name, tmp_path / name / "out")
    assert not problems, "\n".join(problems + [environment_note()])


# Between them these exports write every file kind of every format: all formats with every
# epoch's optimizer state and dataset.pt, the epoch and threshold filters, both INR layouts
# that `all` picks and the DWSNets Fashion-MNIST layout it does not pick for an MNIST zoo.
COVERING = (
    "quickstart-all-full",
    "quickstart-vectors-epochs",
    "inr_quickstart-all",
    "inr_dwsnets_mnist-all",
    "inr_dwsnets_mnist-dwsnets_fmnist",
)


def test_export_bytes_unchanged(tmp_path):
    """a. The exports that cover every format: the same files with the same bytes as f4818c0's
    exporter wrote (export.json compared without its absolute path)."""
    assert set(COVERING) <= set(EXPORTS)
    check_exports(COVERING, tmp_path)


# Single-format exports write the covering exports' files again; what differs is readme.md
# (it names the formats) and the dispatch of a format name. `vectors` is a format of both zoo
# kinds; the manifest keeps the other single formats (they pass too, at 10 s more).
SINGLE = ("quickstart-trials", "quickstart-vectors", "inr_quickstart-vectors")


def test_export_bytes_unchanged_single_formats(tmp_path):
    """a. The same for single-format exports: the same files again, readme.md included."""
    assert set(SINGLE) <= set(EXPORTS) - set(COVERING)
    check_exports(SINGLE, tmp_path)


def test_resume_old_classification_zoo(tmp_path):
    """b. The old 2-epoch zoo, resumed with num_epochs 3: epochs 0..2 keep every checkpoint file
    and metrics line, epoch 3 is trained for every model, and the identity stays."""
    workdir = copy_zoo("quickstart", tmp_path)
    flags = [
        flag if not flag.startswith("--config.training.num_epochs=") else "--config.training.num_epochs=3"
        for flag in ZOOS["quickstart"]["train"]
    ]
    assert "--config.training.num_epochs=3" in flags
    checkpoints_before = tree_hashes(workdir / "checkpoints")
    metrics_before = (workdir / "metrics.jsonl").read_text()
    models_before = json.loads((workdir / "models.json").read_text())

    result = cli("train", *flags, "--workdir", str(workdir))
    assert result.returncode == 0, said(result)

    checkpoints_after = tree_hashes(workdir / "checkpoints")
    changed = [rel for rel, digest in checkpoints_before.items() if checkpoints_after.get(rel) != digest]
    assert not changed, f"resuming changed or removed old checkpoint files: {changed}"
    epochs = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert epochs == [0, 1, 2, 3]
    assert not (workdir / "damaged").exists()
    metrics_after = (workdir / "metrics.jsonl").read_text()
    assert metrics_after.startswith(metrics_before), "resuming rewrote the old epochs' metrics lines"
    new_rows = [json.loads(line) for line in metrics_after[len(metrics_before) :].splitlines() if line.strip()]
    assert sorted((row["epoch"], row["model_id"]) for row in new_rows) == [
        (3, row["model_id"]) for row in sorted(models_before, key=lambda row: row["model_id"])
    ]
    assert all(0.0 <= row["test_acc"] <= 1.0 for row in new_rows)
    document = json.loads((workdir / "config.json").read_text())
    assert document["identity_hash"] == ZOOS["quickstart"]["identity_hash"]
    assert json.loads((workdir / "models.json").read_text()) == models_before


@pytest.mark.parametrize("zoo", ["quickstart", "inr_quickstart"])
def test_card_of_old_zoo(tmp_path, zoo):
    """c. The zoo card command reads the old workdir: card/README.md, zoo_card.json (and Table 2
    for a classification zoo) and every figure it names, without touching the zoo itself."""
    workdir = copy_zoo(zoo, tmp_path)
    before = {rel: digest for rel, digest in tree_hashes(workdir).items() if not rel.startswith("card/")}

    result = cli("analyze", "--workdir", str(workdir))
    assert result.returncode == 0, said(result)

    card_dir = workdir / "card"
    assert (card_dir / "README.md").read_text().strip()
    card = json.loads((card_dir / "zoo_card.json").read_text())
    assert card["name"] == json.loads((FIXTURE / zoo / "config.json").read_text())["config"]["name"]
    assert card["models"] == len(json.loads((FIXTURE / zoo / "models.json").read_text()))
    if zoo == "quickstart":
        assert json.loads((card_dir / "table2.json").read_text())
    assert card["figures"], "the card names no figure"
    missing = [figure for figure in card["figures"] if not (card_dir / pathlib.Path(figure).name).is_file()]
    assert not missing, f"figures named by the card but not written: {missing}"
    after = {rel: digest for rel, digest in tree_hashes(workdir).items() if not rel.startswith("card/")}
    assert after == before, "the card command changed the zoo"


@pytest.mark.parametrize("zoo", sorted(ZOOS))
def test_identity_unchanged(tmp_path, zoo):
    """d. The same command line trains, with the current code, a zoo of the same identity (and
    identity hash) and the same model table as the one f4818c0 recorded."""
    workdir = tmp_path / zoo
    result = cli("train", *ZOOS[zoo]["train"], "--workdir", str(workdir))
    assert result.returncode == 0, said(result)
    old = json.loads((FIXTURE / zoo / "config.json").read_text())
    new = json.loads((workdir / "config.json").read_text())
    assert old["identity_hash"] == ZOOS[zoo]["identity_hash"]
    assert new["identity_hash"] == old["identity_hash"]
    assert new["identity"] == old["identity"]
    assert json.loads((workdir / "models.json").read_text()) == json.loads((FIXTURE / zoo / "models.json").read_text())


def test_recorded_changes_leave_the_weights_pinned():
    """The deliberate changes recorded since f4818c0 (tests/fixtures/changes) each say why, and
    none re-records weights: trial checkpoints and flat-vector tensors keep f4818c0's bytes."""
    for change in CHANGES:
        assert change["why"].strip() and change["commit"], change
        for name, recorded in change["exports"].items():
            assert name in EXPORTS, f"{name} is not an export of the f4818c0 manifest"
            weights = [rel for rel in recorded["files"] if "/checkpoint_" in rel or rel.endswith(".safetensors")]
            assert not weights, f"{change['commit']} re-recorded weight files of {name}: {weights}"
