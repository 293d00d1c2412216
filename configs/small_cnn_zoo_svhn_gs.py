"""The Small CNN Zoo's SVHN-GS zoo (Unterthiner et al. 2020) regenerated: 28,800 small_cnn_zoo models, 86 epochs, batch 512.

Grid: optimizer {adam, rmsprop, sgd} x lr 5 points in [5e-4, 5e-2] x L2 {1e-8, 1e-6, 1e-4, 1e-2}
(as weight_decay 2c) x activation {relu, tanh} x 4 inits x train fraction {0.1, 0.25, 0.5, 1}
x dropout {0, 0.35, 0.7} x 5 random seeds. The original drew ~30,000 models' hyperparameters from these ranges at
random (ranges as the paper describes them, not confirmed against its text; batch size, scaling and grayscale from the generator's training
script; checkpoints and train fractions from its README); `notes` lists every difference (grid
points, inits without orthogonal / init std, weight decay also
on biases, Keras's optimizer defaults).
Input: jaxzoo's svhn_gs, 32 px, one channel the mean of R, G, B in [-1, 1] as the generator's
training script computed it (cached rounded to uint8); 60,000 train images (the original: 73,257).

Run:  python -m jaxzoo.train --config configs/small_cnn_zoo_svhn_gs.py --workdir runs/small_cnn_zoo_svhn_gs
      (add --config.population.max_models=N for the first N models)
Then: python -m jaxzoo.export --workdir runs/small_cnn_zoo_svhn_gs --out exports --format small_cnn_zoo \
          --epochs 0,1,2,3,20,40,60,80,86
      writes weights.npy, metrics.csv.gz and layout.csv as published (checkpoints 0, 1, 2, 3, 20, ..., 86).
Size: 100-200 GB of checkpoints (87 epochs of params and optimizer state: 19,880 bytes of params
per model, 59,660 with Adam's state); the export of the 9 published epochs is 28,800 x 9 rows of
4,970 float32, 5.2 GB.
Time: not measured at full size. The first 64 models for 2 epochs of mnist_5k (3,500 train images)
took 227 s on a shared 2-core CPU, compile and evaluation included; that rate scaled to 28,800
models x 86 epochs x ~50,000 images is about two CPU-years: train it on a GPU, or a part of it.
"""

from jaxzoo.config.paper_zoos import published_zoo_config


def get_config():
    return published_zoo_config("svhn_cropped")
