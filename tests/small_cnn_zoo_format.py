"""The Small CNN Zoo's published format (Unterthiner et al. 2020), as tests write it: layout.csv
rows (TensorFlow variable names and shapes, bias before kernel per layer) and the checkpoint
steps of its metrics.csv."""

UZ_LAYOUT = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]
UZ_STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
