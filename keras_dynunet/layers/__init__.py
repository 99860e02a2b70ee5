"""Custom, serialisable Keras layers and initialisers used by the decoders."""

from keras_dynunet.layers.icnr import ICNR
from keras_dynunet.layers.no_copy import use_no_copy_layers
from keras_dynunet.layers.pixel_shuffle import PixelShuffle
from keras_dynunet.layers.spatial import MatchSpatial, PadToMultiple, pad_to_stride

__all__ = [
    "ICNR",
    "MatchSpatial",
    "PadToMultiple",
    "PixelShuffle",
    "pad_to_stride",
    "use_no_copy_layers",
]
