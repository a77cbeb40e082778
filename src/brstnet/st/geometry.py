"""Patch geometry: physical sizes in micrometres, converted to pixels in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DataError


def um_to_px(length_um: float, pixel_size_um: float) -> int:
    """Convert a physical length to a whole number of pixels (at least 1).

    This is the only place where micrometres become pixels.

    Args:
        length_um: Length in micrometres.
        pixel_size_um: Size of one image pixel in micrometres.

    Returns:
        The rounded length in pixels.
    """
    if pixel_size_um <= 0 or not np.isfinite(pixel_size_um):
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    if length_um <= 0:
        raise ValueError(f"length_um must be positive, got {length_um!r}")
    return max(1, int(round(length_um / pixel_size_um)))


def estimate_pixel_size(
    array_xy: np.ndarray,
    pixel_xy: np.ndarray,
    *,
    spot_pitch_um: float,
    where: str = "",
    steps_um: tuple[float, float] | None = None,
) -> float:
    """Estimate the image pixel size from the spot grid.

    Fits ``pixel = A @ array + b`` by least squares; the length of A's columns is one grid
    step in pixels per array axis, and the physical steps turn them into micrometres per
    pixel (the mean over both axes).

    Args:
        array_xy: [N, 2] array (grid) coordinates of the spots.
        pixel_xy: [N, 2] spot centres in image pixels.
        spot_pitch_um: Physical centre-to-centre distance of one grid step along both
            axes (200 um on the ST arrays of her2st and He et al.).
        where: Name of the section / file, for error messages.
        steps_um: Physical length of one step along array x and y when they differ: the
            Visium hexagonal array has 50 um per array_col and 50 * sqrt(3) um per array_row.

    Returns:
        Micrometres per pixel.
    """
    array_xy = np.asarray(array_xy, dtype=float)
    pixel_xy = np.asarray(pixel_xy, dtype=float)
    if len(array_xy) < 3 or np.linalg.matrix_rank(array_xy - array_xy.mean(0)) < 2:
        raise DataError(
            f"{where}: cannot estimate the pixel size from fewer than 3 spots that span "
            "two directions; set data_processing.pixel_size_um to a number"
        )
    design = np.c_[array_xy, np.ones(len(array_xy))]
    coef, *_ = np.linalg.lstsq(design, pixel_xy, rcond=None)
    step_px = np.linalg.norm(coef[:2], axis=1)
    if steps_um is None:
        return spot_pitch_um / float(step_px.mean())
    return float(np.mean(np.asarray(steps_um, dtype=float) / step_px))


@dataclass(frozen=True)
class PatchGeometry:
    """How a spot becomes a model input: fixed at data processing, saved in every model
    bundle, and used unchanged by evaluation and whole-slide inference.

    Attributes:
        window_um: Side of the square window cut around a spot, in micrometres.
        size_px: Side of the patch the model sees, in pixels.
        max_background_fraction: Windows with more background are flagged (kept out of
            training; skipped by whole-slide inference).
        stain_reference: Stain normaliser fitted at data processing (JSON-ready), or
            ``None`` / ``{"method": None}`` for no normalisation.
    """

    window_um: float
    size_px: int
    max_background_fraction: float = 0.5
    stain_reference: dict[str, Any] | None = field(default=None, compare=True, hash=False)

    def __post_init__(self) -> None:
        if not self.window_um > 0:
            raise ValueError(f"window_um must be positive, got {self.window_um!r}")
        if int(self.size_px) < 1:
            raise ValueError(f"size_px must be >= 1, got {self.size_px!r}")
        if not 0 <= self.max_background_fraction <= 1:
            raise ValueError(
                f"max_background_fraction must be in [0, 1], got {self.max_background_fraction!r}"
            )

    def window_px(self, pixel_size_um: float) -> int:
        """The window's side in pixels of an image with ``pixel_size_um`` micrometres per pixel."""
        return um_to_px(self.window_um, pixel_size_um)

    @property
    def stain_method(self) -> str | None:
        return (self.stain_reference or {}).get("method")

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_um": float(self.window_um),
            "size_px": int(self.size_px),
            "max_background_fraction": float(self.max_background_fraction),
            "stain_reference": self.stain_reference or {"method": None},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchGeometry:
        return cls(
            window_um=float(data["window_um"]),
            size_px=int(data["size_px"]),
            max_background_fraction=float(data.get("max_background_fraction", 0.5)),
            stain_reference=data.get("stain_reference") or {"method": None},
        )
