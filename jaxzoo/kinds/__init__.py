"""The zoo kinds and what each command runs for them, chosen once per command from the config's
`task` (or a workdir's config.json): `kinds.train.train_and_evaluate`, `kinds.export.export`,
`kinds.analyze.analyze`. Classification zoos are the library's folders (`training`, `export`,
`analysis`); INR zoos are `jaxzoo.inr`, which builds on them. One module per command, so a
command loads only what it runs.
"""

from jaxzoo.config import CLASSIFICATION, INR, config_kind
from jaxzoo.errors import UserError
from jaxzoo.zoo.checkpoint import workdir_kind

KINDS = (CLASSIFICATION, INR)

__all__ = ["CLASSIFICATION", "INR", "KINDS", "config_kind", "refuse_for_inr", "workdir_kind"]


def refuse_for_inr(given: dict[str, bool], instead: str) -> None:
    """UserError naming the first option that was given (`given`: flag -> whether it differs
    from its default) and applies to classification zoos only; `instead` says what an INR zoo
    does. Every command refuses such options alike."""
    flag = next((flag for flag, used in given.items() if used), None)
    if flag is not None:
        raise UserError(f"{flag} applies to classification zoos only; {instead}: drop {flag}")
