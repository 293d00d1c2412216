"""Base config of every CNN zoo: the original protocol's defaults (CNN-s on mnist_5k, Adam).

Zoo configs override it (see configs/quickstart.py, configs/<dataset>_<kind>.py).
Run:  python -m jaxzoo.train --config configs/default.py --workdir runs/default
Time: 1,000 models x 50 epochs on mnist_5k, ~35 min on a 2-core CPU.
"""

from jaxzoo.config import base_config


def get_config():
    return base_config()
