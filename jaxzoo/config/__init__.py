"""Zoo configs: the base config, validation, the zoo's identity and the paper's zoos.

A config is data (an `ml_collections.ConfigDict`), validated once at the boundary (`validate`);
its `identity` (the config less run-time and location fields) names the zoo a workdir holds.
"""

from jaxzoo.config.base import (
    CLASSIFICATION,
    INR,
    LOCATION_FIELDS,
    RESNET_ARCHS,
    SCHEDULERS,
    STATE_PLACEMENTS,
    base_config,
    check_recorded_dataset,
    comparable,
    config_kind,
    data_options,
    dataset_identity,
    describe_difference,
    identity,
    identity_hash,
    inr_identity,
    last_epoch,
    load_config_dataset,
    to_json_dict,
    to_plain,
    validate,
)
from jaxzoo.config.checks import MAX_MODELS, MAX_SEED, ConfigError
from jaxzoo.config.paper_zoos import paper_zoo, resnet_zoo

__all__ = [
    "CLASSIFICATION",
    "INR",
    "LOCATION_FIELDS",
    "MAX_MODELS",
    "MAX_SEED",
    "RESNET_ARCHS",
    "SCHEDULERS",
    "STATE_PLACEMENTS",
    "ConfigError",
    "base_config",
    "comparable",
    "config_kind",
    "last_epoch",
    "data_options",
    "check_recorded_dataset",
    "dataset_identity",
    "describe_difference",
    "identity",
    "identity_hash",
    "inr_identity",
    "load_config_dataset",
    "paper_zoo",
    "resnet_zoo",
    "to_json_dict",
    "to_plain",
    "validate",
]
