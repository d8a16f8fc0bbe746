"""Images: from a folder on disk to batches of network inputs.

    folders.py        DIR/<split>/<class>/* listed, without decoding a pixel (torch-free)
    decoding.py       a file → uint8 pixels at a scale, as image viewers orient them
    colour.py         mean RGB and colour PCA of a training set
    preprocessing.py  what the network's input numbers mean: ``Preprocessing`` (torch-free record)
    scales.py         the training scale S and the test scales Q (torch-free)
    datasets.py       training and evaluation samples, batches, the normalisation on the device
    loading.py        the DataLoader every reader uses
    samples.py        a small generated image folder (numpy and Pillow only)

Importing this package imports no torch; ``vggspec.data.TrainDataset`` and the other names of
``datasets.py`` (the module this package replaced) are found there when asked for.
"""

import importlib

from .preprocessing import Preprocessing
from .scales import TrainingScale


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    datasets = importlib.import_module(".datasets", __name__)
    try:
        return getattr(datasets, name)
    except AttributeError:
        raise AttributeError(f"module 'vggspec.data' has no attribute '{name}'") from None


__all__ = ["Preprocessing", "TrainingScale"]
