"""Decoder blocks and the U-Net decoder generated from encoder taps."""

from keras_dynunet.decoders.blocks import UPSAMPLING_MODES, conv_block, upsample
from keras_dynunet.decoders.unet import default_decoder_channels, unet_decoder

__all__ = ["UPSAMPLING_MODES", "conv_block", "default_decoder_channels", "unet_decoder", "upsample"]
