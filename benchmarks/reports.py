"""Side-by-side reports for the benchmarks: a result against its input (and peers) on one
scale, from the evaluation metrics of :mod:`lipsdf_blender.core.surfaces.metrics`.

Only the benchmarks and their tests use these.
"""

from __future__ import annotations

import numpy as np

from lipsdf_blender.core.surfaces.metrics import (
    chamfer_hausdorff,
    grown_box,
    oriented_samples,
    point_mesh_distance,
    sample_surface,
    volume_iou,
    winding_inside,
)
from lipsdf_blender.core.surfaces.topology import (
    as_mesh,
    connected_components,
    face_normals,
    is_watertight,
    self_intersections,
)
from lipsdf_blender.core.types import Points


def normal_angles(P, N, V, F) -> tuple[np.ndarray, np.ndarray]:
    """For points ``P (k,3)`` with unit normals ``N (k,3)``: their distance to the mesh
    ``V, F`` and the angle in degrees between ``N`` and the normal of the closest face, as
    oriented (an inverted mesh gives 180)."""
    N_out, _ = face_normals(V, F)
    d, fi = point_mesh_distance(P, V, F)
    cos = np.clip(np.einsum("ij,ij->i", N, N_out[fi]), -1.0, 1.0)
    return d, np.degrees(np.arccos(cos))


def surface_report(V_in, F_in, V_out, F_out, n: int = 200_000, seed: int = 0) -> dict:
    """How true a result mesh is to its input, and how usable it is: one row of issue 9's table.

    Distances are in % of the input's bounding-box diagonal, angles in degrees.

    - ``chamfer_percent``: Chamfer-L1, the mean of the two directed mean distances, and
      ``hausdorff_in_out_percent`` / ``hausdorff_out_in_percent`` the directed maxima (in->out:
      what the result misses; out->in: what it adds, caps over holes included), from
      :func:`chamfer_hausdorff` with ``n`` samples a side.
    - ``normal_error_mean_deg`` / ``normal_error_p95_deg``: for ``n`` input samples, the angle
      between the sample's normal and the normal of the closest result face, as oriented (an
      inverted result gives 180). Input normals are first turned outward w.r.t. the input's
      winding-number solid (:func:`oriented_samples`; the share flipped is
      ``input_normals_flipped_percent``), so inconsistently oriented inputs are not penalised.
    - ``iou``: volume IoU of the winding-number solids (:func:`winding_inside`) of input and
      result on ``n`` uniform points of the input's box grown by 5 % a side.
    - ``watertight``, ``components``, ``self_intersections`` and ``faces`` of the result.

    Parameters
    ----------
    V_in, F_in : (n, 3) float, (m, 3) int
        The input mesh (any soup).
    V_out, F_out : (n', 3) float, (m', 3) int
        The result.
    n : int
        Samples per surface, and volume points for the IoU.
    seed : int

    Returns
    -------
    dict
        The keys above (floats, ints and bools).

    Example
    -------
    >>> from lipsdf_blender.core.inputs.primitives import icosphere
    >>> r = surface_report(*icosphere(1.0, 3), *icosphere(1.01, 3), n=5000)
    >>> round(r["iou"], 2), r["watertight"], r["self_intersections"]
    (0.97, True, 0)
    """
    V_in, F_in = as_mesh(V_in, F_in)
    V_out, F_out = as_mesh(V_out, F_out)
    diag = float(np.linalg.norm(V_in.max(axis=0) - V_in.min(axis=0)))
    ch = chamfer_hausdorff(V_in, F_in, V_out, F_out, n=n, seed=seed)
    P, N, flipped = oriented_samples(V_in, F_in, n, seed)
    _, angle = normal_angles(P, N, V_out, F_out)
    rng = np.random.default_rng(seed)
    lo, hi = grown_box(V_in)
    Q = lo + rng.random((n, 3)) * (hi - lo)
    return {
        "chamfer_percent": 100.0 * ch["chamfer_l1"] / diag,
        "hausdorff_in_out_percent": 100.0 * ch["a_to_b_max"] / diag,
        "hausdorff_out_in_percent": 100.0 * ch["b_to_a_max"] / diag,
        "normal_error_mean_deg": float(angle.mean()),
        "normal_error_p95_deg": float(np.percentile(angle, 95)),
        "input_normals_flipped_percent": 100.0 * flipped,
        "iou": volume_iou(winding_inside(V_in, F_in, Q), winding_inside(V_out, F_out, Q)),
        "watertight": is_watertight(F_out),
        "components": connected_components(F_out),
        "self_intersections": self_intersections(V_out, F_out),
        "faces": int(len(F_out)),
    }


def _segment_distance(P, A, B, chunk: int = 4096) -> np.ndarray:
    """Distance from each of ``P (k,3)`` to the nearest of segments ``A[i] B[i] (s,3)``."""
    AB = B - A
    L2 = np.maximum(np.einsum("ij,ij->i", AB, AB), 1e-300)
    out = np.empty(len(P))
    for s in range(0, len(P), chunk):
        X = P[s : s + chunk, None, :] - A[None]
        t = np.clip(np.einsum("kij,ij->ki", X, AB) / L2, 0.0, 1.0)
        d2 = np.einsum("kij,kij->ki", X - t[..., None] * AB, X - t[..., None] * AB)
        out[s : s + chunk] = np.sqrt(d2.min(axis=1))
    return out


def _sample_segments(A, B, n: int, seed: int) -> Points:
    length = np.linalg.norm(B - A, axis=1)
    rng = np.random.default_rng(seed)
    i = np.minimum(np.searchsorted(np.cumsum(length) / length.sum(), rng.random(n)), len(A) - 1)
    t = rng.random(n)[:, None]
    return A[i] + t * (B[i] - A[i])


def thickness_report(
    V_in, S_in, V_out, F_out, thickness: float, n: int = 200_000, seed: int = 0
) -> dict:
    """How well a solid result wraps an open sheet or a curve at half-thickness ``thickness``.

    The result's surface should lie at ``thickness`` from the input everywhere (a shell of
    half-thickness T around a sheet, a tube of radius T around a curve).

    - ``median_thickness`` and ``thickness_error_percent`` = (median - T) / T: the median
      distance from ``n`` result samples to the input; ``p95_thickness_error`` and
      ``p95_thickness_error_percent``: the 95th percentile of ``|distance - T|`` (object units,
      and % of T).
    - ``input_inside_percent``: share of ``n`` input samples inside the result (winding
      number > 0.5).
    - ``hausdorff_in_out`` (object units) and ``hausdorff_in_out_percent`` (% of the input's
      diagonal): the largest distance from the input (samples and vertices) to the result;
      ``hausdorff_bound``: T + 0.5 % of the diagonal, and ``within_bound`` whether it holds (a
      part of the outline that the result lost shows up here).
    - ``watertight``, ``components``, ``faces`` of the result.

    Parameters
    ----------
    V_in : (n, 3) float
    S_in : (m, 3) int or (m, 2) int
        The input's triangles (a sheet) or its polyline edges (a curve).
    V_out, F_out : (n', 3) float, (m', 3) int
        The closed result.
    thickness : float
        T, the half-thickness asked for, in object units.
    n : int
    seed : int
    """
    V_in = np.ascontiguousarray(V_in, dtype=np.float64)
    S_in = np.asarray(S_in, dtype=np.int64)
    V_out, F_out = as_mesh(V_out, F_out)
    T = float(thickness)
    diag = float(np.linalg.norm(V_in.max(axis=0) - V_in.min(axis=0)))
    P_out, _ = sample_surface(V_out, F_out, n, seed)
    if S_in.shape[1] == 2:
        A, B = V_in[S_in[:, 0]], V_in[S_in[:, 1]]
        d = _segment_distance(P_out, A, B)
        P_in = np.vstack([_sample_segments(A, B, n, seed + 1), V_in[np.unique(S_in)]])
    else:
        d, _ = point_mesh_distance(P_out, V_in, S_in)
        P_s, _ = sample_surface(V_in, S_in, n, seed + 1)
        P_in = np.vstack([P_s, V_in[np.unique(S_in)]])
    err = np.abs(d - T)
    d_in, _ = point_mesh_distance(P_in, V_out, F_out)
    median = float(np.median(d))
    bound = T + 0.005 * diag
    return {
        "median_thickness": median,
        "thickness_error_percent": 100.0 * (median - T) / T,
        "p95_thickness_error": float(np.percentile(err, 95)),
        "p95_thickness_error_percent": 100.0 * float(np.percentile(err, 95)) / T,
        "input_inside_percent": 100.0 * float(winding_inside(V_out, F_out, P_in).mean()),
        "hausdorff_in_out": float(d_in.max()),
        "hausdorff_in_out_percent": 100.0 * float(d_in.max()) / diag,
        "hausdorff_bound": bound,
        "within_bound": bool(d_in.max() <= bound),
        "watertight": is_watertight(F_out),
        "components": connected_components(F_out),
        "faces": int(len(F_out)),
    }


def scan_report(
    P,
    V_out,
    F_out,
    diag: float,
    V_ref=None,
    F_ref=None,
    seen: float = 0.005,
    n: int = 100_000,
    seed: int = 0,
) -> dict:
    """How true a result is to a raw scan ``P (k,3)``, and to the scanned object's reference
    surface ``V_ref, F_ref`` where there is one (bench_scans.py, issue 23).

    Distances in % of ``diag``, angles in degrees.

    - ``scan_mean_percent``, ``scan_p95_percent``: distance from every scan point to the
      result (a scan has no true surface; this is what the scanner measured).
    - With a reference: its *seen part* is the reference samples (``n``, area-uniform) within
      ``seen`` x ``diag`` of a scan point (``seen_percent``: that share of its area). There,
      ``seen_chamfer_percent``: the mean of (seen reference samples -> result) and (result
      samples whose nearest reference sample is a seen one -> reference); ``seen_normal_deg``,
      ``seen_normal_p95_deg``: the angle between the reference's outward normal at a seen
      sample and the result's closest face. On the whole reference, the unseen side
      included: ``chamfer_percent`` and ``iou`` of :func:`surface_report` (the unseen side
      has no right answer; a blob or a bubble there shows in these and in the renders).
    - ``watertight``, ``components``, ``self_intersections``, ``faces`` of the result.
    """
    from scipy.spatial import cKDTree

    P = np.asarray(P, dtype=np.float64)
    V_out, F_out = as_mesh(V_out, F_out)
    d, _ = point_mesh_distance(P, V_out, F_out)
    out = {
        "scan_mean_percent": 100.0 * float(d.mean()) / diag,
        "scan_p95_percent": 100.0 * float(np.percentile(d, 95)) / diag,
    }
    if V_ref is not None:
        V_ref, F_ref = as_mesh(V_ref, F_ref)
        tree, radius = cKDTree(P), seen * diag
        S, N, _ = oriented_samples(V_ref, F_ref, n, seed)
        near = tree.query(S, distance_upper_bound=radius)[0] <= radius
        d_ref, angle = normal_angles(S[near], N[near], V_out, F_out)
        # the result's part over the seen part: its samples whose nearest reference sample
        # is a seen one (however far the result is from the scan)
        Q, _ = sample_surface(V_out, F_out, n, seed + 1)
        Q = Q[near[cKDTree(S).query(Q)[1]]]
        d_out, _ = point_mesh_distance(Q, V_ref, F_ref)
        full = surface_report(V_ref, F_ref, V_out, F_out, n=n, seed=seed)
        out.update(
            seen_percent=100.0 * float(near.mean()),
            seen_chamfer_percent=50.0 * (float(d_ref.mean()) + float(d_out.mean())) / diag,
            seen_normal_deg=float(angle.mean()),
            seen_normal_p95_deg=float(np.percentile(angle, 95)),
            chamfer_percent=full["chamfer_percent"],
            iou=full["iou"],
        )
    out.update(
        watertight=is_watertight(F_out),
        components=connected_components(F_out),
        self_intersections=self_intersections(V_out, F_out),
        faces=int(len(F_out)),
    )
    return out
