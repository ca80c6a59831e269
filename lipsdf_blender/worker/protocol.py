"""The worker protocol, version 1: the one place it is written down.

The Blender add-on never imports torch. It starts ``python -m lipsdf_blender.worker`` with an
interpreter that has torch, numpy and libigl (the folder that contains the package on
``PYTHONPATH``) and talks to it over the worker's stdin and stdout, one JSON object per line
(UTF-8, ``\\n``-terminated). The worker's stdout carries nothing else; its log and any stray
print go to stderr, which the client keeps as a ring buffer for crash reports.

Handshake
---------
The worker's first line, sent once it has imported torch::

    {"type": "handshake", "protocol": 1, "pid": 1234, "python": "3.11.2", "executable": "...",
     "torch": "2.13.0", "numpy": "1.26.4", "igl": "2.6.3", "lipsdf": "0.1.0", "cuda": "12.8",
     "device": {"type": "cuda", "name": "NVIDIA H100 (79 GiB)", "why_cpu": null},
     "threads": {"max": 2, "fair_share": true}}

``device.type`` is ``cuda``, ``mps`` or ``cpu``; for ``cpu``, ``why_cpu`` says why no GPU
is used. ``threads``: torch's CPU threads at most; ``fair_share``: whether they follow the
cores other processes leave free (``LIPSDF_FAIR_SHARE=0`` turns it off; it needs
``psutil``).
A client refuses a worker whose ``protocol`` differs from its own. A worker that forwards
its jobs to a Ray cluster (below) adds ``"remote": {"address": "ray://gpu-server:10001",
"fallback": true}``: what is configured; it connects on the first job.

Requests (client -> worker, on stdin)
-------------------------------------
``{"id": "3", "type": <job type>, "params": {...}, "job_dir": "/tmp/lipsdf-job-xyz"}``

Jobs run one at a time in the order they arrive (a queue); ``cancel`` and ``shutdown`` are
acted on at once, even while a job runs. Relative file names in ``params`` are taken inside
``job_dir``; big arrays travel as ``.npz`` files there (read with ``allow_pickle=False``).
Distances are in the object's own units; with ``matrix`` (the field object's 4x4 object to
world matrix, uniform scale) points and distances are in world units. ``device`` is
``auto`` (default), ``cpu``, ``cuda`` or ``mps``.

==========  ==================================================================================
type        params -> result files
==========  ==================================================================================
train       ``input`` (npz with ``vertices`` and ``faces`` | ``normals`` | ``edges``),
            ``kind`` (``mesh``/``points``/``curve``), ``preset``, ``mode``, ``seed``,
            ``device``, ``thickness``, ``overrides`` (Preset fields; ``samples`` as a dict),
            ``normals`` (points: ``auto``, the cloud's own when it has them, or
            ``estimate``), ``noise`` (points: noise level in object units, ``null`` or
            absent: estimated), ``init`` (optional: the ``.lipsdf`` of the input's
            previous version, in ``job_dir`` or absolute, e.g. the add-on's cache: training
            warm-starts from it when it fits, else starts from scratch and says why in a
            ``log``; a name that is not a ``.lipsdf`` or not a file is ``bad_input``),
            ``output`` -> ``{"field": path}``; ``info`` holds ``cloud`` (the record's,
            ``null`` for meshes and curves), ``seconds_labelling``, ``summary`` (one line
            for the user, ``null`` for meshes and curves) and ``warm_start`` (``null``
            without ``init``; else ``used``, ``from`` (the old input's hash), and either
            ``reason`` or ``steps``, ``cold_steps``, ``samples``, ``relabelled``,
            ``labels`` (``reused``/``recomputed``, ``labels_reason``))
extract     ``field`` (a ``.lipsdf`` path), ``levels`` (list, default ``[0]``),
            ``resolution``, ``device`` -> ``{"meshes": path}``; for ``[0]`` (a remesh)
            ``info`` holds ``detail_share`` (share of the area from the input, 0 to 1;
            ``null`` without the input's detail) and ``witnesses`` (it in words)
exact_remesh
            ``input`` (npz with ``vertices`` and ``faces``: a closed mesh, see below),
            ``preset`` and ``overrides`` (for the resolution a field trained with them
            would be remeshed at), ``resolution``, ``sharp``, ``faces``, ``device``
            -> ``{"meshes": path}`` (one level, 0); ``info`` as ``extract``'s, with
            ``empty`` (true: nothing inside, an inside-out mesh; train first). The remesh of
            a closed mesh in signed mode comes from its exact distance and winding number
            alone (no field), so it equals the remesh of any field trained on that input
            with those settings: the add-on asks for it *before* the ``train`` request of the
            same input and shows it at once (see "Early results" below). A mesh that is not
            closed is ``bad_input``; ``detail`` false too (without the input's detail the
            surface is the network's).
winding_preview
            ``input`` (npz with ``vertices`` and ``faces``: any mesh or soup), ``resolution``
            (4 to 512, default 64) -> ``{"meshes": path}`` (one level, 0): marching cubes of
            the input's exact distance, negative where its winding number is above 1/2, on a
            dense grid; closed; holes closed where the winding number crosses 1/2, as the
            training's labels close them. ``info``: ``empty`` (nothing inside: an inside-out
            or flat input). The preview of a mesh that needs training (see "Early results").
offset      ``field``, ``distances``, ``resolution``, ``exact`` (default true), ``device``
            -> ``{"meshes": path}``
csg         ``op`` (union/intersection/difference), ``fields`` (paths), ``blend``,
            ``matrices`` (one 4x4 list per field, optional), ``resolution``, ``device``
            -> ``{"meshes": path}``
sample      ``field``, ``n``, ``level``, ``seed``, ``resolution``, ``matrix`` -> ``{"points":
            path}`` (``points``, ``normals``: unit gradients); ``info.spacing``: nearest-
            neighbour distances (``mean``, ``min``, ``cv``)
project     ``field``, ``points`` (npz with ``points``), ``level``, ``iterations``,
            ``matrix`` -> ``{"points": path}`` (``points``, ``converged`` bool); safe steps
            ``|f - level|`` along the gradient (never across the level set);
            ``info.not_converged``
query       ``field``, ``points``, ``matrix``, ``exact`` (default false), ``resolution``,
            ``detail``, ``sharp`` -> ``{"values": path}`` (``values`` ``(n,)``,
            ``gradients`` ``(n, 3)``)
thickness   ``field``, ``points``, ``exact`` (default true), ``gap`` (>= 0, default 0: how
            far from the point the ball may stand), ``resolution``, ``detail``, ``sharp``
            -> ``{"values": path}`` (``thickness`` ``(n,)``: diameter of the largest empty
            ball touching the surface there, plus the gap; ``inf`` where none was found)
hollow      ``field``, ``wall`` (> 0), ``resolution``, ``detail``, ``sharp``, ``faces``
            -> ``{"meshes": path}`` (one closed mesh: the surface and the inward offset
            ``-wall``, turned inside out); ``info``: ``volume``, ``outer_volume``,
            ``inner_volume``, ``watertight``
slice       ``field``, ``matrix``, ``plane`` (4x4: the plane's ``[-1, 1]^2`` in its XY to
            world), ``pixels`` (``[w, h]``), ``spacing`` (isolines; 0: none) -> ``{"image":
            path}`` (``distance``, ``gradient_norm`` ``(h, w)``, ``rgba``, ``rgba_gradient``
            ``(h, w, 4)`` float32, row 0 at the bottom); ``info``: ``min``, ``max``,
            ``gradient_max``; ``pixels``: each side 1 to 4096, 16M pixels at most
render      ``fields``, ``matrices``, ``op`` (``union``/``intersection``/``difference``),
            ``blend``, ``camera`` (``matrix`` 4x4 camera to world, ``type`` ``persp``/
            ``ortho``, ``fov`` (horizontal, radians) or ``ortho_scale``, ``pixels``
            ``[w, h]``, ``clip`` ``[near, far]`` along the view axis, as Blender clips)
            -> ``{"image": path}`` (``rgba`` ``(h, w, 4)``, ``depth`` ``(h, w)`` (distance
            along the ray; inf: missed), row 0 at the bottom); ``info``: ``seconds``,
            ``steps_mean``, ``steps_max``, ``hits`` (pixels that hit); progress phase
            ``trace`` (step of at most 256)
grid        ``field``, ``voxel`` (object units, > 0), ``band`` (voxels, 1 to 64, default
            3), ``exact`` (default true: the exact distance to the field's remesh; false: the
            network), ``resolution``, ``detail``, ``sharp`` -> ``{"grid": path}`` (``ijk``
            ``(n, 3) int32`` voxel indices, centre ``ijk * voxel``; ``values`` ``(n,)
            float32`` signed distances, ``|values| < band * voxel``; ``voxel``, ``band``
            0-d); ``info``: ``voxels`` (n), ``dims`` (voxels along each axis), ``seconds``
cancel      ``id`` names the job to stop (running or queued): it ends with a ``cancelled``
            error within a second
shutdown    the worker cancels what runs and exits
==========  ==================================================================================

Every job takes an optional ``output`` file name; the default is ``<name>_<id>.<ext>`` in
``job_dir`` (``field_3.lipsdf``, ``meshes_4.npz``). A ``meshes`` file holds ``vertices_<i>``
``(n, 3) float64`` and ``faces_<i>`` ``(m, 3) int64`` for the ``i``-th level, distance or (for
CSG) the one result, and ``levels`` ``(k,)``; a ``points`` file holds ``points`` ``(n, 3)
float64``.

Early results
-------------
The worker has no partial messages: every job ends with one ``result``. A result shown early
is a job of its own, asked first. For a remesh of a closed mesh in signed mode with detail and
no up-to-date field, the add-on sends, one after the other to the same worker: a coarse
``exact_remesh`` (the preview: ``resolution`` 64, ``sharp`` false, ``faces`` 0; only when
the remesh is finer than that), the ``exact_remesh`` at the remesh's own settings, then
``train`` for the same input. It builds the object from the preview, puts the full remesh's
triangles into that object's mesh when they arrive, and stores the field when the training
ends (with its progress and cancel meanwhile). With several such meshes, every preview is
asked before every full remesh. The mesh does not change when the field arrives
(``exact_remesh`` and ``extract`` of the trained field give equal arrays), and training does
not depend on the remeshes before it (same seed and threads: the same field). Open meshes
and soups in signed mode (and a closed mesh with detail off): a ``winding_preview`` (64
cells) first, shown as the result object, then ``train`` and ``extract``, whose mesh replaces
the preview's in place. Clouds and curves: ``train`` first, then ``extract``.

Messages (worker -> client, on stdout)
--------------------------------------
- ``{"type": "progress", "id", "phase", "step", "total", "loss", "elapsed", "eta", "device"}``
  at least once a second while a job runs (``phase``: ``label``, ``train``, ``extract``,
  ...; ``loss`` and ``eta`` may be ``null``). The add-on's progress line names the phase.
- ``{"type": "log", "id", "level", "message"}``: something the user should know (for
  example a fall-back to the CPU after running out of GPU memory).
- ``{"type": "result", "id", "files": {name: absolute path}, "info": {...}}``.
- ``{"type": "error", "id", "kind", "message", "traceback"}`` with ``kind`` one of
  :data:`ERROR_KINDS`. ``message`` is meant for the user; ``traceback`` for a bug report.

Every job ends with exactly one ``result`` or ``error``. The worker exits when its stdin
closes or its parent process dies.

Error kinds: ``bad_input`` (fix the geometry or the settings), ``field_file`` (the
``.lipsdf`` is missing or damaged), ``cancelled``, ``out_of_memory`` (even the fall-back to
the CPU ran out), ``internal`` (a bug), ``crashed`` (made by the client: the worker process
died), ``protocol`` (a malformed request, another protocol version) and ``remote`` (the
Ray cluster the job was sent to cannot be reached or was lost; the message names its address
and says what the worker does next).

Forwarding to a Ray cluster
---------------------------
The worker reads two environment variables at start (the add-on sets them from its
preferences, *Run jobs on*):

- ``LIPSDF_WORKER_RAY``: the cluster's address, ``ray://host:10001`` (Ray Client) or
  ``host:6379`` (a node of the cluster); empty or absent: jobs run in this process;
- ``LIPSDF_WORKER_RAY_FALLBACK``: ``1`` (default) or ``0``.

With an address, the worker imports Ray, connects on the first job (progress phase
``connect``) and starts one actor on the cluster (on a GPU node where it has GPUs) that runs
each job with the same code as here (:mod:`.remote`). The files the params name travel with
the request (phase ``send``; inputs in ``job_dir``, fields by content, sent once), the
actor's ``progress`` and ``log`` messages are passed on as they come, ``cancel`` reaches the
remote job, and the result files are written into the local ``job_dir`` under the same
names, so the client sees no difference but ``info.ran_on`` (``cluster``, ``node``,
``device``). When the cluster cannot be reached before a job is sent, the job runs here
with a ``log`` warning under the fall-back, else it ends with ``remote``. A connection lost
during a job ends the job with ``remote``; under the fall-back the next jobs run here, else
the next job connects again.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

PROTOCOL_VERSION = 1

# Request types.
TRAIN, EXTRACT, OFFSET, CSG = "train", "extract", "offset", "csg"
EXACT_REMESH = "exact_remesh"
WINDING_PREVIEW = "winding_preview"
SAMPLE, PROJECT, QUERY = "sample", "project", "query"
THICKNESS, HOLLOW = "thickness", "hollow"
SLICE, RENDER, GRID = "slice", "render", "grid"
CANCEL, SHUTDOWN = "cancel", "shutdown"
JOB_TYPES = (
    *(TRAIN, EXTRACT, OFFSET, CSG, SAMPLE, PROJECT, QUERY),
    *(THICKNESS, HOLLOW, SLICE, RENDER, GRID, EXACT_REMESH, WINDING_PREVIEW),
)
REQUEST_TYPES = (*JOB_TYPES, CANCEL, SHUTDOWN)

# Message types.
HANDSHAKE, PROGRESS, LOG, RESULT, ERROR = "handshake", "progress", "log", "result", "error"
MESSAGE_TYPES = (HANDSHAKE, PROGRESS, LOG, RESULT, ERROR)
#: Messages that end a job.
FINAL = (RESULT, ERROR)

#: Error kinds: what the user can do differs for each.
BAD_INPUT = "bad_input"  # fix the geometry or the settings
FIELD_FILE = "field_file"  # the .lipsdf file is missing or damaged: train again
CANCELLED = "cancelled"  # the user asked for it
OUT_OF_MEMORY = "out_of_memory"  # even the CPU fall-back ran out: lower the preset
INTERNAL = "internal"  # a bug: report it with the traceback
CRASHED = "crashed"  # made by the client: the worker process died during the job
PROTOCOL = "protocol"  # a malformed request or a worker of another protocol version
REMOTE = "remote"  # the Ray cluster the job was forwarded to is unreachable or was lost
ERROR_KINDS = (
    BAD_INPUT,
    FIELD_FILE,
    CANCELLED,
    OUT_OF_MEMORY,
    INTERNAL,
    CRASHED,
    PROTOCOL,
    REMOTE,
)


class ProtocolError(ValueError):
    """A line that is not a protocol message."""


class RemoteError(Exception):
    """An error that already has its protocol kind, message and traceback: a forwarded job's
    own error, or the cluster lost (kind ``remote``). The server sends it unchanged."""

    def __init__(self, kind: str, message: str, tb: str = ""):
        super().__init__(message)
        self.kind, self.message, self.traceback = kind, message, tb


def _finite(obj):
    """Replace NaN and infinities (not valid JSON) by ``None``, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def encode(message: dict) -> str:
    """One message as a JSON line (with its ``\\n``); NaN becomes ``null``."""
    return json.dumps(_finite(message), allow_nan=False, separators=(",", ":")) + "\n"


def _loads(line: str | bytes):
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    # ValueError covers JSONDecodeError and integers longer than Python converts; a line
    # nested thousands deep raises RecursionError. Neither may escape: the worker's reader
    # thread would die and the worker would stop answering.
    return line, json.loads(line)


def decode(line: str | bytes) -> dict:
    """Parse one JSON line into a message dict; raises :class:`ProtocolError`."""
    try:
        line, message = _loads(line)
    except (ValueError, RecursionError) as exc:
        text = line if isinstance(line, str) else line.decode("utf-8", errors="replace")
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ProtocolError(f"not a JSON line: {text[:200]!r} ({reason[:200]})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"a message must be a JSON object with a 'type': {line[:200]!r}")
    return message


def request_id(line: str | bytes) -> str | None:
    """The ``id`` of a line that is a JSON object but not a valid message, else ``None``."""
    try:
        message = _loads(line)[1]
    except (ValueError, RecursionError):
        return None
    return str(message["id"]) if isinstance(message, dict) and "id" in message else None


def request(job_id: str, job_type: str, params: dict | None = None, job_dir=None) -> dict:
    """A request message; ``job_dir`` is made absolute."""
    if job_type not in REQUEST_TYPES:
        raise ProtocolError(f"unknown request type {job_type!r}; use one of {REQUEST_TYPES}")
    msg = {"id": str(job_id), "type": job_type, "params": dict(params or {})}
    if job_dir is not None:
        msg["job_dir"] = os.fspath(Path(job_dir).resolve())
    return msg


def save_arrays(path, **arrays) -> Path:
    """Write arrays to an ``.npz`` file atomically (so a reader never sees half a file)."""
    import numpy as np

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


def save_bytes(path, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to ``path`` atomically (so a reader never sees half a
    file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def load_arrays(path) -> dict:
    """Read every array of an ``.npz`` file (never unpickles)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_meshes(path) -> list[tuple]:
    """The ``(vertices, faces, level)`` triples of a ``meshes`` result file, in order."""
    a = load_arrays(path)
    return [
        (a[f"vertices_{i}"], a[f"faces_{i}"], float(level)) for i, level in enumerate(a["levels"])
    ]
