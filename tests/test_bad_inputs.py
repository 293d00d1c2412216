"""Bad input by class over every command (`tests/bad_inputs.py`): each case ends in one stderr
line with exit code 2 and the file system as it was, and a damaged epoch anywhere is set aside and
retrained by `train`. The suite runs a few cases of every class of the generated table (the
hooks and factories themselves: test_models, test_optimizers, test_schedules);
`python tests/bad_inputs.py --survey` runs all of them."""

import concurrent.futures
import dataclasses

import bad_inputs
import pytest

# Per class, cases that span its commands and kinds (ids of `bad_inputs.generate_cases`).
SUITE = {
    "user_code": [
        "user.train.optimizer_not_optax",
        "user.train.module_fails_in_training",
        "user.train.schedule_options_text",
        "user.train.get_config_none",
    ],
    "damaged_epoch": ["damaged.train.truncated_array.e1", "damaged.merge.truncated_array.e1"],
    "changed_data": ["changed.export_with_data.other_images"],
    "foreign_files": [
        "foreign.train.npz_png",
        "foreign.merge.workdir_junk_zoo",
        "foreign.ingest.small_cnn_zoo_text_batch_size",
    ],
    "odd_values": [
        "odd.train.cpu_devices_huge",
        "odd.train.widths_given_twice",
        "odd.export.twin_weights_masked_no_twin",
    ],
}
# A torn checkpoint that Orbax itself reads (no seal): the one line must be the only line every
# time (TensorStore's leftover callbacks came in some runs and not in others).
REPEATED = "damaged.export_vectors.unsealed_truncated_array.e2"
REPEATS = 2
ZOOS = ("ZOO", "SHARDS", "NPZ_ZOO")  # the fixture zoos these cases read


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs") / "root"
    return root, bad_inputs.build_fixtures(root, log=None, zoos=ZOOS)


@pytest.mark.slow
def test_bad_inputs_of_every_class_end_in_one_line_and_change_nothing(fixtures):
    root, places = fixtures
    cases = {case.id: case for case in bad_inputs.generate_cases(places)}
    chosen = [cases[case_id] for ids in SUITE.values() for case_id in ids]  # KeyError: a fixture did not build
    assert {case.category for case in chosen} == set(bad_inputs.CLASSES)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda case: bad_inputs.run_case(case, root, places=places), chosen))
        repeats = [dataclasses.replace(cases[REPEATED], id=f"{REPEATED}.{n}") for n in range(REPEATS)]
        results += list(pool.map(lambda case: bad_inputs.run_case(case, root, places=places), repeats))
    failures = [
        f"{result.case.id}: {result.outcome} {result.detail} | {result.last_line[:300]}"
        for result in results
        if result.outcome != "clean"
    ]
    assert not failures, "\n".join(failures)


def test_the_classifier_tells_the_outcomes_apart():
    """The outcomes the table counts, from made-up runs (a runner that calls all clean would pass above)."""
    one_line = "jaxzoo: error: the problem: the fix\n"
    runs = {
        "clean": (bad_inputs.Completed(2, "", one_line, 1.0), []),
        "damage": (bad_inputs.Completed(2, "", one_line, 1.0), ["+out/.partial"]),
        "noise": (bad_inputs.Completed(2, "", one_line + "Exception ignored in: <coroutine>\n", 1.0), []),
        "traceback": (bad_inputs.Completed(1, "", "Traceback (most recent call last):\nKeyError: 'x'\n", 1.0), []),
        "silent": (bad_inputs.Completed(0, "", "", 1.0), []),
        "hang": (bad_inputs.Completed(None, "", "", 120.0), []),
        "other": (bad_inputs.Completed(1, "", "Killed\n", 1.0), []),
    }
    for outcome, (done, changed) in runs.items():
        assert bad_inputs.classify_error(done, changed)[0] == outcome
