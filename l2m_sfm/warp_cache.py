"""An HDF5 cache of dense warps per named pair, so one scene's SfM configurations run the network once per pair.

Layout: group ``names_to_pair(name0, name1)`` with ``flow`` float32 (H, 2W, 2) (left half A->B positions in B,
right half B->A positions in A, normalised) and ``certainty`` float32 (H, 2W). The grids of a symmetric
``MatchOutput`` are implicit (``l2m.models.gp.cell_centres``). Only the final warp is kept (``warp_coarse`` of
a cached output is the final warp too; nothing in the SfM paths reads it). One writer at a time.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import torch

from l2m_sfm import h5io


class WarpCache:
    """Read / write the symmetric warps of named pairs in one HDF5 file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def get(self, name0: str, name1: str):
        """The cached MatchOutput of (name0, name1) in that order, or None."""
        from l2m.models.gp import cell_centres
        from l2m.models.matcher import MatchOutput

        if not self.path.exists():
            return None
        with h5py.File(self.path, "r") as f:
            key = h5io.names_to_pair(name0, name1)
            if key not in f or "certainty" not in f[key]:
                return None
            flow = torch.from_numpy(f[key]["flow"][()])
            cert = torch.from_numpy(f[key]["certainty"][()])
        h, w = cert.shape[0], cert.shape[1] // 2
        grid = cell_centres(h, w)
        warp = torch.cat((torch.cat((grid, flow[:, :w]), -1), torch.cat((flow[:, w:], grid), -1)), dim=1)
        return MatchOutput(warp, cert, warp, cert, True)

    def put(self, name0: str, name1: str, out, seconds: float | None = None) -> None:
        """Store a symmetric MatchOutput of (name0, name1) and the seconds it cost; complete or absent."""
        if not out.symmetric:
            raise ValueError("WarpCache keeps symmetric warps only")
        w = out.warp.shape[1] // 2
        flow = torch.cat((out.warp[:, :w, 2:], out.warp[:, w:, :2]), dim=1).float().cpu().numpy()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a", libver="earliest") as f:
            key = h5io.names_to_pair(name0, name1)
            if key in f:
                del f[key]
            g = f.create_group(key)
            g.attrs["seconds"] = float(seconds) if seconds is not None else float("nan")
            g.create_dataset("flow", data=flow)
            g.create_dataset("certainty", data=out.certainty.float().cpu().numpy())  # written last: complete

    def seconds(self, pairs: list[tuple[str, str]]) -> float:
        """Network seconds recorded for `pairs` (0 for pairs not cached): the cost a run without cache pays."""
        if not self.path.exists():
            return 0.0
        total = 0.0
        with h5py.File(self.path, "r") as f:
            for n0, n1 in pairs:
                for key in (h5io.names_to_pair(n0, n1), h5io.names_to_pair(n1, n0)):
                    if key in f:
                        total += float(f[key].attrs.get("seconds", 0.0))
                        break
        return total
