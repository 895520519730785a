"""arcompress: lossless image and audio compression with learned autoregressive models.

Python API: :func:`compress` / :func:`decompress` on image arrays, :func:`compress_audio` /
:func:`decompress_audio` on PCM sample arrays, :func:`encode_file` / :func:`decode_file` on
files (images and audio), :func:`info` on .arc bytes.
"""

from .api import compress, compress_audio, decode_file, decompress, decompress_audio, encode_file, info

__all__ = ["compress", "decompress", "compress_audio", "decompress_audio", "encode_file", "decode_file", "info"]
__version__ = "0.2.0"
