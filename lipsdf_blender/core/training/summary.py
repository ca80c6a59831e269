"""What a training (and a remesh) did, in words: one text for the CLI, ``info`` and the add-on.

Standard library only, so the Blender side (which never imports torch) can use it too.

Example
-------
>>> cloud_summary(
...     {"normals": "estimated", "points": 100000, "used": 99688, "flipped": 1234,
...      "outliers": 312, "noise": 0.0021, "seconds": 1.0},
...     seconds_labelling=4.2, noise_given=False)
'normals: estimated for 100,000 points, 1,234 flipped by the orientation check; 312 outliers dropped; noise 0.0021 (auto); labelling 4.2 s'
"""  # noqa: E501

from __future__ import annotations


def cloud_summary(
    cloud: dict | None, seconds_labelling: float | None = None, noise_given: bool | None = None
) -> str | None:
    """One line on a point cloud's normals, outliers, noise and labelling time.

    Parameters
    ----------
    cloud : dict or None
        A field record's ``cloud`` entry (see :class:`~.cloud.PreparedCloud`); ``None`` for
        meshes and curves, which get no line.
    seconds_labelling : float, optional
        The record's ``seconds_labelling``.
    noise_given : bool, optional
        Whether the user gave the noise level (``(given)``) or it was estimated (``(auto)``);
        ``None``: the record's own ``noise_given`` if it has one, else neither is said.

    Returns
    -------
    str or None
    """
    if not cloud:
        return None
    if noise_given is None:
        noise_given = cloud.get("noise_given")
    n = int(cloud.get("points") or 0)
    flipped = int(cloud.get("flipped") or 0)
    whose = "the input's" if cloud.get("normals") == "input" else "estimated"
    parts = [f"normals: {whose} for {n:,} points, {flipped:,} flipped by the orientation check"]
    merged = int(cloud.get("merged") or 0)
    if merged:
        parts.append(f"averaged into {merged:,} for the grid")
        n = merged
    outliers = int(cloud.get("outliers") or 0)
    parts.append(f"{outliers:,} outliers dropped" if outliers else "no outliers dropped")
    used = cloud.get("used")
    if used is not None and 0 < int(used) < n - outliers:
        parts.append(f"noise averaged out over {n - outliers:,} points into {int(used):,}")
    noise = cloud.get("noise")
    if noise is not None:
        tag = "" if noise_given is None else (" (given)" if noise_given else " (auto)")
        parts.append(f"noise {float(noise):.3g}{tag}")
    if seconds_labelling is not None:
        parts.append(f"labelling {float(seconds_labelling):.1f} s")
    return "; ".join(parts)


def record_summary(record: dict, noise_given: bool | None = None) -> str | None:
    """:func:`cloud_summary` of a field record (``None`` unless it was trained on a cloud)."""
    return cloud_summary(record.get("cloud"), record.get("seconds_labelling"), noise_given)


def witness_summary(detail_share: float | None) -> str | None:
    """Where a remesh came from: ``"detail 97 %, field 3 %"`` of its area.

    Parameters
    ----------
    detail_share : float or None
        :attr:`~lipsdf_blender.core.surfaces.extract.ExtractResult.detail_share`; ``None``
        (no input surface was used) gives ``None``.

    Examples
    --------
    >>> witness_summary(0.9704)
    'detail 97 %, field 3 %'
    """
    if detail_share is None:
        return None
    detail = round(100.0 * min(max(float(detail_share), 0.0), 1.0))
    return f"detail {detail} %, field {100 - detail} %"
