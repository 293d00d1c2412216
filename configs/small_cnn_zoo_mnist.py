"""The Small CNN Zoo's MNIST zoo (Unterthiner et al. 2020) regenerated: 28,800 small_cnn_zoo models, 86 epochs, batch 512.

Input: 28 px MNIST normalised with its mean and std (the original: [-1, 1]); 50,000 train images (the original: 60,000).
The grid, the sources of each setting, size and time are those of every Small CNN Zoo preset
(`jaxzoo.config.paper_zoos.published_zoo_config`); `notes` lists every difference from the original.

Run:  python -m jaxzoo.train --config configs/small_cnn_zoo_mnist.py --workdir runs/small_cnn_zoo_mnist
      (add --config.population.max_models=N for the first N models)
Then: python -m jaxzoo.export --workdir runs/small_cnn_zoo_mnist --out exports --format small_cnn_zoo \
          --epochs 0,1,2,3,20,40,60,80,86
      writes weights.npy, metrics.csv.gz and layout.csv as published (checkpoints 0, 1, 2, 3, 20, ..., 86).
"""

from jaxzoo.config.paper_zoos import published_zoo_config


def get_config():
    return published_zoo_config("mnist")
