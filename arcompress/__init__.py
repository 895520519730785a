"""arcompress: lossless image compression with learned autoregressive models.

Python API: :func:`compress` / :func:`decompress` on numpy arrays, :func:`encode_file` /
:func:`decode_file` on files, :func:`info` on .arc bytes.
"""

from .api import compress, decode_file, decompress, encode_file, info

__all__ = ["compress", "decompress", "encode_file", "decode_file", "info"]
__version__ = "0.1.0"
