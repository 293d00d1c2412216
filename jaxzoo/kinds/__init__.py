"""The zoo kinds and what each command runs for them, chosen once per command from the config's
`task` (or a workdir's config.json): `kinds.train.train_and_evaluate`, `kinds.export.export`,
`kinds.analyze.analyze`. Classification zoos are the library's folders (`training`, `export`,
`analysis`); INR zoos are `jaxzoo.inr`, which builds on them. One module per command, so a
command loads only what it runs.
"""

from jaxzoo.config import CLASSIFICATION, INR, config_kind
from jaxzoo.zoo.checkpoint import workdir_kind

KINDS = (CLASSIFICATION, INR)

__all__ = ["CLASSIFICATION", "INR", "KINDS", "config_kind", "workdir_kind"]
