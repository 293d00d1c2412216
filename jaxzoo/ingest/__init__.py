"""Imports published model zoos (ModelZooDataset trial folders, the Small CNN Zoo) into jaxzoo workdirs.

`ingest(source, workdir, dataset=None, overwrite=False)` reads the zoo with `trials` or
`small_cnn_zoo` and writes the workdir (`workdir`); `python -m jaxzoo.ingest` is the command.
"""

from jaxzoo.ingest.common import IngestError
from jaxzoo.ingest.small_cnn_zoo import SMALL_CNN_ZOO_FORMAT
from jaxzoo.ingest.trials import TRIALS_FORMAT
from jaxzoo.ingest.workdir import PROVENANCE, ingest

__all__ = ["PROVENANCE", "SMALL_CNN_ZOO_FORMAT", "TRIALS_FORMAT", "IngestError", "ingest"]
