"""Training-time augmentations, one file per modality kind; importing this package registers them
all in ``AUGMENTATIONS``. Each modality names its default list (``Modality.default_augmentation``);
``TrainConfig.augment`` picks them ("default", or per modality "image=randaugment,audio=specaugment").
"""

from polyfuse.data.augmentations import (
    audio,  # noqa: F401  (each import registers its augmentations)
    image,  # noqa: F401
    tabular,  # noqa: F401
    text,  # noqa: F401
    timeseries,  # noqa: F401
)
