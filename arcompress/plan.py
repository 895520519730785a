"""How an image plane group is cut into equal tiles that decode in lock-step.

Tiles are ``th x tw`` (``min(tile, H) x min(tile, W)``) in raster order; the last row and
column of tiles are padded with zeros marked "outside" (those pixels are never coded: the
decoder sets them to zero, as the encoder did).  Tiles are grouped ``group`` at a time: each
group is one payload segment, decoded in lock-step by one cached decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: tile side of the encoder's default plan (pixels)
DEFAULT_TILE = 32
#: most tiles in one lock-step group (payload segment)
DEFAULT_GROUP = 256
#: fewest tiles per group when an image is split into two segments for two decoding processes
MIN_SPLIT_GROUP = 16


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile: int
    group: int

    @property
    def tile_h(self) -> int:
        return min(self.tile, self.height)

    @property
    def tile_w(self) -> int:
        return min(self.tile, self.width)

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.tile_h)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.tile_w)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def groups(self) -> list[range]:
        """Tile index ranges, one per payload segment."""
        return [range(s, min(s + self.group, self.count)) for s in range(0, self.count, self.group)]

    def split(self, plane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, H, W) uint8 -> tiles (N, C, th, tw) zero-padded, and inside mask (N, 1, th, tw)."""
        c = plane.shape[0]
        th, tw, ph, pw = self.tile_h, self.tile_w, self.rows * self.tile_h, self.cols * self.tile_w
        padded = torch.zeros(c, ph, pw, dtype=plane.dtype)
        padded[:, :self.height, :self.width] = plane
        inside = torch.zeros(1, ph, pw, dtype=torch.float32)
        inside[:, :self.height, :self.width] = 1
        return _to_tiles(padded, self.rows, self.cols, th, tw), _to_tiles(inside, self.rows, self.cols, th, tw)

    def inside(self) -> torch.Tensor:
        """Inside mask (N, 1, th, tw) of every tile."""
        return self.split(torch.zeros(1, self.height, self.width, dtype=torch.uint8))[1]

    def join(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tiles (N, C, th, tw) -> (C, H, W), dropping the padding."""
        n, c, th, tw = tiles.shape
        full = tiles.reshape(self.rows, self.cols, c, th, tw).permute(2, 0, 3, 1, 4)
        return full.reshape(c, self.rows * th, self.cols * tw)[:, :self.height, :self.width]


def _to_tiles(x: torch.Tensor, rows: int, cols: int, th: int, tw: int) -> torch.Tensor:
    c = x.shape[0]
    t = x.reshape(c, rows, th, cols, tw).permute(1, 3, 0, 2, 4)
    return t.reshape(rows * cols, c, th, tw).contiguous()


def default_group(tiles: int) -> int:
    """Tiles per segment: at most DEFAULT_GROUP, and at least two segments (so two processes can
    decode in parallel) once there are 2 * MIN_SPLIT_GROUP tiles."""
    return min(DEFAULT_GROUP, max(MIN_SPLIT_GROUP, -(-tiles // 2)))


def default_plan(height: int, width: int) -> TilePlan:
    """The encoder's default plan.  From format version 5 a header that uses it does not record
    it, so this function is part of the format: change it only with a new version."""
    return TilePlan(height, width, DEFAULT_TILE, default_group(TilePlan(height, width, DEFAULT_TILE, 1).count))
