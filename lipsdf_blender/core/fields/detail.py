"""The surface a remesh is extracted from: the input's own distances near it, the field elsewhere.

A trained field is smooth: its zero level set rounds creases, ripples on flat faces and can fill
small cavities (measured in issue 9: Chamfer 0.13 % of the diagonal and 6.5° of normal error on a
clean cow, where a voxel remesh gets 0.10 % and 2°). Near the input, the input itself is a better
witness than any network: its exact distance (libigl's AABB tree) is known, and for meshes and
soups the generalised winding number ``w`` tells inside from outside wherever ``|w - 1/2|`` is
clearly away from zero. So :class:`DetailField` is

    h(x) = sign(1/2 - w(x)) * d(x)      where |w - 1/2| >= trust and d(x) <= band   (meshes)
    h(x) = a * sign(1/2 - w(x)) * |f(x)| + (1 - a) * f(x)              where d(x) > band
    h(x) = d(x) - thickness                                                       (unsigned)
    h(x) = f(x)                         everywhere else (the trained field)

with ``d`` the exact distance to the input and ``a`` rising from 0 to 1 as ``|w - 1/2|`` goes
through :data:`FAR_TRUST`. Near the input, where the winding number is sure it decides the
sign, so ``h`` changes sign at the input itself and the magnitude there is the exact distance.
Beyond the band the winding number overrules the field only where the input is closed around
the point (``w`` near 0 or 1: Suzanne's eye sockets stay open however the field fills them);
where the input is open (a hole, a scan's missing base, an open rim) ``w`` lies between and the
field's closure is kept: the detail never crosses a hole. The blend keeps ``h`` continuous in
``w``, so the field's closure meets the detail without a seam. Point clouds use their IMLS
distance near the points (:class:`CloudSurface`).

When the input is closed (every edge used as often in one direction as in the other, see
:attr:`InputSurface.closed`), the winding number is an integer away from the input and sure
everywhere: ``h`` is then the input's exact signed distance near the input, and the network
decides nothing on its zero level set. :class:`ExactField` is that distance everywhere, with
no network at all, so a closed mesh's remesh needs no training (:func:`exact_field`) and is the
same mesh before and after its field is trained.

``h`` is not 1-Lipschitz across the places where its two witnesses disagree, so extraction
cannot prune on ``|h|``. :meth:`DetailField.prune_bounds` gives what pruning needs instead: a
1-Lipschitz lower bound on the distance from a point to wherever ``h`` can cross a level near
the input or the field's surface, ``min(|f - level|, max(d - band, 0))``. Where the blend
crosses elsewhere (a sure winding number against the field, far from both), extraction
follows the surface from its neighbours (``extract._close_up``), so the result is closed
whatever the witnesses say.

The trained field itself is unchanged and stays 1-Lipschitz: queries, sphere tracing and the
distance bound use it; only surfaces are extracted from ``h``.
"""

from __future__ import annotations

import igl
import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import BadInputError
from ..inputs.geometry import Geometry, is_closed
from ..inputs.winding import mesh_winding_number
from ..phases import phase

#: ``|w - 1/2|`` below this is not trusted for the sign (a hole, an open rim, a soup's gap).
TRUST = 0.1
#: Beyond the band the winding number overrides the field from the first ``|w - 1/2|`` in
#: full from the second, in between in proportion: an input that is closed around a point
#: gives ``w`` of 0 or 1 there, a scan's open side or a shell's hole something between.
FAR_TRUST = (0.35, 0.45)
#: Closer to the input than this fraction of its diagonal, a point counts as on it.
ON_INPUT = 1e-6
#: Default half-width of the band, as a fraction of the input's bounding-box diagonal.
BAND = 0.006
# Points per libigl call: its fast winding number rebuilds its tree on every call.
_CHUNK = 1 << 20
_SIGNED_CHUNK = 1 << 16


def _diagonal(V: np.ndarray) -> float:
    return float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))


class InputSurface:
    """Exact distances to the input triangles or segments, and the winding number of triangles.

    Parameters
    ----------
    V : (n, 3) float
        Vertices, object units.
    S : (m, 3) or (m, 2) int
        Triangles (a mesh or soup) or segments (a curve).
    """

    trust = TRUST

    def __init__(self, V, S):
        self.V = np.ascontiguousarray(V, dtype=np.float64)
        self.S = np.ascontiguousarray(S, dtype=np.int64)
        if self.V.ndim != 2 or self.V.shape[1] != 3 or self.S.ndim != 2:
            raise BadInputError("an input surface needs (n, 3) vertices and (m, 2|3) indices")
        if self.S.shape[1] not in (2, 3) or len(self.S) == 0:
            raise BadInputError("an input surface needs triangles or segments")
        if self.S.min() < 0 or self.S.max() >= len(self.V):
            raise BadInputError("an input surface refers to vertices it does not have")
        self._tree = None
        self._closed = None
        self._normals = None

    @property
    def kind(self) -> str:
        """``"mesh"`` (triangles) or ``"curve"`` (segments)."""
        return "mesh" if self.S.shape[1] == 3 else "curve"

    @property
    def closed(self) -> bool:
        """True when the triangles bound a volume: with vertices at the same position welded,
        every edge is used as often from ``a`` to ``b`` as from ``b`` to ``a``.

        Then the winding number is an integer away from the input (self-intersecting and
        overlapping closed parts included), so its sign is sure everywhere. Non-manifold edges
        are allowed; a hole, an open rim or a flipped part makes the input not closed.
        """
        if self._closed is None:
            self._closed = self.kind == "mesh" and is_closed(self.V, self.S)
        return self._closed

    @classmethod
    def from_geometry(cls, geom: Geometry) -> InputSurface | None:
        """The surface of a mesh or curve; ``None`` for a point cloud (nothing to measure)."""
        if geom.kind == "mesh":
            return cls(geom.vertices, geom.faces)
        if geom.kind == "curve":
            return cls(geom.vertices, geom.edges)
        return None

    @property
    def tree(self):
        if self._tree is None:
            self._tree = igl.AABB()
            self._tree.init(self.V, self.S)
        return self._tree

    def diagonal(self) -> float:
        """Length of the bounding-box diagonal, object units."""
        return _diagonal(self.V)

    @phase("detail")
    def distance(self, P: np.ndarray) -> np.ndarray:
        """Exact unsigned distance from ``P (k, 3)`` to the triangles or segments, ``(k,)``."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        if len(P) == 0:
            return np.zeros(0)
        sq = self.tree.squared_distance(self.V, self.S, P)[0]
        return np.sqrt(np.maximum(sq, 0.0))

    def signed_distance(self, P: np.ndarray) -> np.ndarray:
        """Exact distance at ``P (k, 3)``, negative where the winding number is above 1/2."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        d = self.distance(P)
        return np.where(self.winding(P) > 0.5, -d, d)

    @phase("detail")
    def nearest_normals(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit normal of the triangle nearest to each of ``P (k, 3)`` (its winding order's
        side), ``(k, 3)``, where there is one (not a degenerate triangle), ``(k,) bool``, and
        the distance to it, ``(k,)``."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        if self._normals is None:
            T = self.V[self.S]
            n = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
            ln = np.linalg.norm(n, axis=1, keepdims=True)
            self._normals = np.divide(n, ln, out=np.zeros_like(n), where=ln > 0)
        if len(P) == 0:
            return np.zeros((0, 3)), np.zeros(0, dtype=bool), np.zeros(0)
        sq, face = self.tree.squared_distance(self.V, self.S, P)[:2]
        N = self._normals[face.ravel()]
        return N, np.any(N != 0, axis=1), np.sqrt(np.maximum(sq, 0.0))

    @phase("detail")
    def winding(self, P: np.ndarray) -> np.ndarray:
        """Generalised winding number at ``P (k, 3)`` (triangles only), ``(k,)``."""
        out = np.empty(len(P))
        for a in range(0, len(P), _CHUNK):
            q = np.ascontiguousarray(P[a : a + _CHUNK], dtype=np.float64)
            out[a : a + _CHUNK] = mesh_winding_number(self.V, self.S, q)
        return out


class ExactField:
    """The exact signed distance of a closed input (:attr:`InputSurface.closed`), no network.

    ``sign(1/2 - w) * d`` with ``w`` the winding number and ``d`` the exact distance: what
    :class:`DetailField` gives near a closed input, everywhere. It is 1-Lipschitz (its sign
    changes only on the input, where ``d = 0``), so extraction prunes on it directly. Follows
    the :class:`~lipsdf_blender.core.fields.sdf.DistanceField` protocol.

    Parameters
    ----------
    surface : InputSurface
        Triangles that bound a volume (its ``closed`` is true).
    lo, hi : (3,) float, optional
        The box to extract in, object units; default: the input's bounding box (a field
        trained on it has the same).
    """

    def __init__(self, surface: InputSurface, lo=None, hi=None):
        if not surface.closed:
            raise BadInputError("the exact field needs a closed input (it has holes or open rims)")
        self.surface = surface
        self.lo = surface.V.min(axis=0) if lo is None else np.asarray(lo, dtype=np.float64)
        self.hi = surface.V.max(axis=0) if hi is None else np.asarray(hi, dtype=np.float64)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    def signed(self, P: np.ndarray) -> np.ndarray:
        """Signed distances at ``P (k, 3)`` (object units, negative inside), ``(k,)``."""
        return self.surface.signed_distance(P)

    def exact(self, P: np.ndarray) -> np.ndarray:
        """Where the value is the input's own distance: everywhere, ``(k,) bool``."""
        return np.ones(len(P), dtype=bool)

    def input_normals(self, P: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray]:
        """Unit normals of the input at points ``P (k, 3)`` on or next to it (the nearest
        triangle's), ``(k, 3)``, and where they are known, ``(k,) bool``: everywhere but at
        degenerate triangles. Dual contouring asks at the surface's crossings of grid edges,
        where they are the exact gradient's limit; ``near`` is unused (every value here is
        the input's own)."""
        return self.surface.nearest_normals(P)[:2]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distances at ``x (n, 3)``; ``(n,)`` on ``x``'s device and dtype."""
        h = self.signed(x.detach().to("cpu", torch.float64).numpy())
        return torch.from_numpy(h).to(dtype=x.dtype, device=x.device)


def exact_field(geom: Geometry) -> ExactField | None:
    """The exact field of a closed mesh (its remesh needs no training), else ``None``."""
    if geom.kind != "mesh" or len(geom.faces) == 0:
        return None
    surface = InputSurface.from_geometry(geom)
    return ExactField(surface) if surface.closed else None


class CloudSurface:
    """A point cloud's own surface: oriented points, their areas, and an IMLS distance.

    Near the points, the implicit moving-least-squares distance (Kolluri 2008)

        g(x) = sum_i phi_i(x) n_i . (x - p_i) / sum_i phi_i(x),  phi_i = exp(-|x - p_i|^2 / r^2)

    over the 16 nearest points, ``r`` the distance to the 8th, is a signed distance to the
    surface the points sample, as exact as the points are. It is trusted where the foot of
    ``x`` (``x - g n``) lies among the points (within twice their local spacing), not past
    the rim of a hole or the end of a scan. :meth:`distance` (to the nearest point) is
    1-Lipschitz and bounds where ``g`` is used, which pruning needs.

    Parameters
    ----------
    P, N : (n, 3) float
        Points and outward unit normals, object units.
    A : (n,) float
        Per-point areas (:func:`normals.point_areas`), for the winding number.
    """

    kind = "cloud"
    # A cloud's winding number is trusted further from 1/2 only: between, training settled
    # the sign (cloud.settle_unsure) and the field carries it.
    trust = 0.3

    def __init__(self, P, N, A):
        self.V = np.ascontiguousarray(P, dtype=np.float64)
        self.N = np.ascontiguousarray(N, dtype=np.float64)
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        n = len(self.V)
        if self.V.ndim != 2 or self.V.shape[1] != 3 or n < 8:
            raise BadInputError("a cloud surface needs at least 8 points as an (n, 3) array")
        if self.N.shape != self.V.shape or self.A.shape != (n,):
            raise BadInputError("a cloud surface needs one normal and one area per point")
        self._tree = None
        self._reach = None

    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.V)
            # each point's local spacing: distance to its 4th neighbour
            self._reach = self._tree.query(self.V, k=5, workers=-1)[0][:, -1]
        return self._tree

    def diagonal(self) -> float:
        """Length of the bounding-box diagonal, object units."""
        return _diagonal(self.V)

    @phase("detail")
    def distance(self, P: np.ndarray) -> np.ndarray:
        """Distance from ``P (k, 3)`` to the nearest point, ``(k,)`` (1-Lipschitz)."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        if len(P) == 0:
            return np.zeros(0)
        return self.tree.query(P, k=1, workers=-1)[0]

    @phase("detail")
    def winding(self, P: np.ndarray) -> np.ndarray:
        """Winding number of the oriented cloud at ``P (k, 3)``, ``(k,)``."""
        from ..inputs.normals import winding_number

        out = np.empty(len(P))
        for a in range(0, len(P), _CHUNK):
            out[a : a + _CHUNK] = winding_number(self.V, self.N, self.A, P[a : a + _CHUNK])
        return out

    @phase("detail")
    def signed(self, P: np.ndarray, k: int = 16, normals: bool = False):
        """IMLS distance ``g`` at ``P (q, 3)`` and where it is trusted: ``(q,)``, ``(q,) bool``;
        with ``normals``, also the IMLS normal (the weighted mean of the neighbours' normals,
        ``g``'s gradient up to the weights' change), ``(q, 3)``.

        In chunks of :data:`_SIGNED_CHUNK` queries: each holds ``k`` neighbours' offsets and
        normals (~1 kB a query), and extraction asks for millions at once."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        g, ok, n = np.zeros(len(P)), np.zeros(len(P), dtype=bool), np.zeros((len(P), 3))
        for a in range(0, len(P), _SIGNED_CHUNK):
            sl = slice(a, a + _SIGNED_CHUNK)
            g[sl], ok[sl], n[sl] = self._signed(P[sl], k)
        return (g, ok, n) if normals else (g, ok)

    def _signed(self, P: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = min(k, len(self.V))
        d, idx = self.tree.query(P, k=k, workers=-1)
        r = np.maximum(d[:, min(7, k - 1)], 1e-12)[:, None]
        phi = np.exp(-((d / r) ** 2))
        D = P[:, None, :] - self.V[idx]
        Ni = self.N[idx]
        g = np.einsum("qk,qk->q", phi, np.einsum("qkd,qkd->qk", D, Ni)) / phi.sum(axis=1)
        n = np.einsum("qk,qkd->qd", phi, Ni)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        dn, jn = self.tree.query(P - g[:, None] * n, k=1, workers=-1)
        return g, dn <= 2.0 * self._reach[jn], n


class DetailField:
    """A field's surface with the input's exact detail near the input (see the module notes).

    Follows the :class:`~lipsdf_blender.core.fields.sdf.DistanceField` protocol for extraction, plus
    :meth:`prune_bounds` for pruning. Not 1-Lipschitz where its witnesses disagree: use the
    trained field itself for queries and bounds.

    Parameters
    ----------
    field : Field
        The trained field (its ``mode`` and ``record["margin"]`` say signed or unsigned and
        the thickness).
    surface : InputSurface
    band : float, optional
        Half-width (object units) of the band around the input where its exact distance is
        used; it must span a marching-cubes cell on each side of the input. Default:
        :data:`BAND` of the input's diagonal.
    """

    def __init__(self, field, surface: InputSurface, band: float | None = None):
        self.field = field
        self.surface = surface
        self.unsigned = getattr(field, "mode", "signed") == "unsigned"
        if not self.unsigned and surface.kind == "curve":
            raise BadInputError("a signed field's detail needs triangles or points, not segments")
        if self.unsigned and surface.kind == "cloud":
            raise BadInputError("an unsigned field's detail needs triangles or segments")
        self.thickness = float(field.record.get("margin", 0.0)) if self.unsigned else 0.0
        self.band = float(band) if band is not None else BAND * surface.diagonal()
        # Distance from the input within which h is the input's own distance.
        self.reach = self.thickness + self.band
        self.on_input = ON_INPUT * surface.diagonal()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.field.bounds()

    def _field_at(self, x: torch.Tensor):
        """The trained field at rows of ``x``: ``f(idx) -> (k,) float64``."""

        def f(idx: np.ndarray) -> np.ndarray:
            if len(idx) == 0:
                return np.zeros(0)
            rows = torch.from_numpy(idx).to(x.device)
            with torch.no_grad():
                v = self.field(x.detach()[rows]).reshape(-1)
            return v.to("cpu", torch.float64).numpy()

        return f

    def _parts(self, x: torch.Tensor):
        P = x.detach().to("cpu", torch.float64).numpy()
        return self._field_at(x), P, self.surface.distance(P)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``h`` at ``x (n, 3)`` (object units); ``(n,)`` on ``x``'s device and dtype."""
        f, P, d = self._parts(x)
        h = self._values(f, P, d)[0]
        return torch.from_numpy(h).to(dtype=x.dtype, device=x.device)

    def exact(self, P: np.ndarray) -> np.ndarray:
        """Where ``h`` is the input's own distance (exact or IMLS) at ``P (k, 3)``: ``(k,) bool``.

        A surface point there came from the input, elsewhere from the trained field."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        if len(P) == 0:
            return np.zeros(0, dtype=bool)
        f, _, d = self._parts(torch.from_numpy(P.astype(np.float32)))
        return self._values(f, P, d)[1]

    def input_normals(self, P: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray]:
        """The input's own unit normals at points ``P (k, 3)`` where ``h`` comes from it,
        ``(k, 3)`` (either sign), and where they are known, ``(k,) bool``: a cloud's IMLS
        normal where its distance is trusted, the nearest triangle's within ``near`` of the
        input. Elsewhere (the field's own surface, unsigned fields) dual contouring takes
        central differences."""
        P = np.ascontiguousarray(P, dtype=np.float64)
        G, ok = np.zeros((len(P), 3)), np.zeros(len(P), dtype=bool)
        if self.unsigned or len(P) == 0:
            return G, ok
        if self.surface.kind == "cloud":
            at = np.flatnonzero(self.surface.distance(P) <= self.reach)
            _, trusted, n = self.surface.signed(P[at], normals=True)
            G[at[trusted]], ok[at[trusted]] = n[trusted], True
            return G, ok
        G, ok, d = self.surface.nearest_normals(P)
        return G, ok & (d <= near)

    def _values(self, f, P: np.ndarray, d: np.ndarray):
        """``h`` and where it is the input's own distance, both ``(k,)``.

        ``f(idx) -> (k,)``: the trained field at the points ``idx``. It is asked only where
        the input does not decide ``h`` alone: near a mesh most points are decided by the
        input, and the network is not evaluated there."""
        if self.unsigned:
            return d - self.thickness, np.ones(len(P), dtype=bool)
        h = np.zeros(len(P))
        exact = np.zeros(len(P), dtype=bool)
        todo = np.arange(len(P))
        if self.surface.kind == "cloud":
            # Near the points their IMLS distance, where it is trusted, is both witnesses at
            # once: sign and distance. The winding number decides the rest.
            near = np.flatnonzero(d <= self.reach)
            g, ok = self.surface.signed(P[near])
            h[near[ok]] = g[ok]
            exact[near[ok]] = True
            keep = np.ones(len(P), dtype=bool)
            keep[near[ok]] = False
            todo = np.flatnonzero(keep)
        s = self.surface.winding(P[todo]) - 0.5
        c, outside = np.abs(s), np.where(s > 0, -1.0, 1.0)
        dt = d[todo]
        # Within the band, where the winding number is sure it gives the sign and the exact
        # distance the magnitude, so the surface crosses at the input itself.
        near = (dt <= self.reach) & (c >= self.surface.trust)
        ht = np.empty(len(todo))
        ht[~near] = f(todo[~near])
        ht[near] = outside[near] * dt[near]
        exact[todo[near]] = True
        # Beyond it, the winding number overrides the field only as far as it is sure of
        # the input being closed there (FAR_TRUST): a scan's open side or a shell's hole
        # leaves it between, and the field closes them. The blend keeps h continuous in w,
        # so the two witnesses never meet in a jump that pruning cannot see.
        far = dt > self.reach
        a = np.clip((c[far] - FAR_TRUST[0]) / (FAR_TRUST[1] - FAR_TRUST[0]), 0.0, 1.0)
        ht[far] = a * outside[far] * np.abs(ht[far]) + (1.0 - a) * ht[far]

        if self.surface.kind != "cloud":
            # On the input itself the winding number jumps, so it is no witness there; the
            # distance (zero) is, whatever the sign. Gradients by central differences along
            # the surface sample exactly such points.
            on = (c < self.surface.trust) & (dt <= self.on_input)
            ht[on] = np.copysign(dt[on], ht[on])
            exact[todo[on]] = True
        h[todo] = ht
        return h, exact

    def prune_bounds(self, x: torch.Tensor, levels) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower bounds ``(n, L)`` for pruning extraction cells (see ``extract._may_hold``).

        Returns ``(two, one)``: ``two`` bounds the distance from ``x`` to wherever ``h`` may
        equal each level, ``one`` how far below a level ``h`` may reach near ``x``; both are
        1-Lipschitz in ``x``. Unsigned, ``h = d - thickness`` is itself 1-Lipschitz. Signed,
        ``h`` crosses a level only near the input or where the field ``f`` does:
        ``min(|f - level|, max(d - reach, 0))``.
        """
        P = x.detach().to("cpu", torch.float64).numpy()
        d = self.surface.distance(P)
        lv = torch.as_tensor(np.asarray(levels, dtype=np.float64), device=x.device)
        dd = torch.from_numpy(d).to(x.device)[:, None]
        if self.unsigned:
            below = dd - self.thickness - lv[None, :]
            return below.abs(), below
        far = (dd - self.reach).clamp_min(0.0)
        with torch.no_grad():
            f = self.field(x).reshape(-1)
        below = f.double()[:, None] - lv[None, :]
        return torch.minimum(below.abs(), far), torch.minimum(below, far)


def has_detail(field) -> bool:
    """True when ``field`` carries an input surface a :class:`DetailField` can use."""
    surface = getattr(field, "surface", None)
    if surface is None:
        return False
    unsigned = getattr(field, "mode", "signed") == "unsigned"
    return surface.kind != "cloud" if unsigned else surface.kind != "curve"


def surface_field(field, detail: bool = True, band: float | None = None):
    """What to extract a field's surface from: its :class:`DetailField` when it carries its
    input surface and ``detail`` is on (the :class:`ExactField` of a closed mesh in signed
    mode, which is what the detail field is there), else the field itself."""
    if isinstance(field, ExactField):
        return field
    if not (detail and has_detail(field)):
        return field
    surface = field.surface
    if getattr(field, "mode", "signed") == "signed" and surface.kind == "mesh" and surface.closed:
        return ExactField(surface, *field.bounds())
    return DetailField(field, surface, band)
