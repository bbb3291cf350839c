"""Triangle meshes of planar regions with gmsh: a region bounded by closed curves, meshed at a target size.

A region is one outer curve and any number of holes, each a closed curve
given by its points (K, 2) in order (either orientation). A curve is
``smooth`` (a closed cubic spline through the points, meshed at the element
size) or a polygon (straight edges, every point a mesh vertex: the region is
then exactly the polygon, as convergence tests need). :func:`mesh_region`
returns ``points`` (N, 2) float64 and counter-clockwise ``triangles``
(M, 3) int64 over exactly the points they use.

gmsh runs headless in the calling process: initialised once per process
(silent, no signal handler, a fixed random seed, one thread) and left
initialised; each mesh starts from cleared models and reset options
(:func:`start_gmsh`), so the same region and size always give the same mesh,
whatever was meshed before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oplearn.errors import SolverError

@dataclass(frozen=True)
class Curve:
    """A closed boundary curve: ``points`` (K, 2), K >= 3, in order; ``smooth`` spline or polygon.

    ``sizes`` (a number or (K,)) sets the element size at the points (default: the region's size);
    between points and inside the region gmsh blends the sizes, never above the region's.
    """

    points: np.ndarray
    smooth: bool = True
    sizes: float | np.ndarray | None = None


class MeshingError(SolverError):
    """gmsh could not mesh a region (a self-intersecting curve, say); a sample draw treats it as failed."""


# Every option a mesher here sets, at its value for a fresh mesh: start_gmsh() resets them all before each
# mesh, so no mesh depends on which mesh the process made before (a size cap left by one would shrink the next).
GMSH_OPTIONS = {"General.Terminal": 0, "General.Verbosity": 0, "General.NumThreads": 1, "Mesh.RandomSeed": 1,
                "Mesh.Algorithm": 6, "Mesh.MeshSizeFromPoints": 1, "Mesh.MeshSizeExtendFromBoundary": 1,
                "Mesh.MeshSizeFromCurvature": 0, "Mesh.MeshSizeMin": 0.0, "Mesh.MeshSizeMax": 1e22}


def start_gmsh():
    """The gmsh module, initialised for this process (once, without signal handlers, so worker processes
    can use it), cleared of models and with :data:`GMSH_OPTIONS` set."""
    import gmsh

    if not gmsh.isInitialized():
        gmsh.initialize(argv=[], readConfigFiles=False, interruptible=False)
    for option, value in GMSH_OPTIONS.items():  # first, so that clear() is silent too
        gmsh.option.setNumber(option, value)
    gmsh.clear()
    return gmsh


def _curve_loop(gmsh, curve: Curve, size: float) -> int:
    points = np.asarray(curve.points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or not np.all(np.isfinite(points)):
        raise MeshingError(f"a boundary curve needs (K, 2) finite points with K >= 3, got shape {points.shape}")
    sizes = np.broadcast_to(size if curve.sizes is None else np.asarray(curve.sizes, dtype=np.float64), len(points))
    tags = [gmsh.model.geo.addPoint(float(x), float(y), 0.0, float(h)) for (x, y), h in zip(points, sizes)]
    if curve.smooth:
        edges = [gmsh.model.geo.addSpline(tags + [tags[0]])]
    else:
        edges = [gmsh.model.geo.addLine(tags[i], tags[(i + 1) % len(tags)]) for i in range(len(tags))]
    return gmsh.model.geo.addCurveLoop(edges)


def mesh_region(outer: Curve, size: float, holes: tuple[Curve, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the region inside ``outer`` and outside every hole with triangles of about ``size`` edge length.

    Returns ``points`` (N, 2) float64 and ``triangles`` (M, 3) int64, counter-clockwise.
    Raises :class:`MeshingError` when gmsh fails or returns no triangles.
    """
    if not size > 0:
        raise MeshingError(f"the element size must be > 0, got {size}")
    gmsh = start_gmsh()
    gmsh.model.add("region")
    try:
        loops = [_curve_loop(gmsh, curve, size) for curve in (outer, *holes)]
        gmsh.model.geo.addPlaneSurface(loops)
        gmsh.model.geo.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(2)
        tags, coordinates, _ = gmsh.model.mesh.getNodes()
        types, _, nodes = gmsh.model.mesh.getElements(2)
    except Exception as error:  # gmsh raises plain Exceptions with its log line
        raise MeshingError(f"gmsh could not mesh the region: {str(error).splitlines()[0] if str(error) else error}")
    finally:
        gmsh.model.remove()
    if 2 not in list(types):  # gmsh element type 2: 3-node triangle
        raise MeshingError("gmsh returned no triangles for the region")
    triangles_by_tag = np.asarray(nodes[list(types).index(2)], dtype=np.int64).reshape(-1, 3)
    lookup = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    lookup[tags.astype(np.int64)] = np.arange(len(tags))
    points = coordinates.reshape(-1, 3)[:, :2]
    used, triangles = np.unique(lookup[triangles_by_tag], return_inverse=True)
    points, triangles = points[used].copy(), triangles.reshape(-1, 3).astype(np.int64)
    return points, counter_clockwise(points, triangles)


def counter_clockwise(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``triangles`` with the clockwise ones' last two vertices swapped (positive signed areas)."""
    a, b, c = (points[triangles[:, j]] for j in range(3))
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flipped = triangles.copy()
    flipped[area2 < 0] = flipped[area2 < 0][:, [0, 2, 1]]
    return flipped


def star_curve(radii: np.ndarray, centre=(0.5, 0.5), smooth: bool = True) -> Curve:
    """The closed curve centre + r_j (cos theta_j, sin theta_j), theta_j = 2 pi j / K, from radii (K,) > 0."""
    theta = 2 * np.pi * np.arange(len(radii)) / len(radii)
    points = np.stack([centre[0] + radii * np.cos(theta), centre[1] + radii * np.sin(theta)], axis=1)
    return Curve(points, smooth)


def unit_square() -> Curve:
    """The boundary of [0, 1]^2 as a polygon (its corners stay mesh vertices)."""
    return Curve(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), smooth=False)


def signed_distance(points: np.ndarray, curve: Curve) -> np.ndarray:
    """Distance (N,) from each point to the polygon through ``curve.points``: > 0 outside it, < 0 inside."""
    vertices = np.asarray(curve.points, dtype=np.float64)
    start, end = vertices, np.roll(vertices, -1, axis=0)
    edge = end - start  # (K, 2)
    offset = points[:, None, :] - start[None]  # (N, K, 2)
    t = np.clip(np.einsum("nkd,kd->nk", offset, edge) / np.einsum("kd,kd->k", edge, edge), 0.0, 1.0)
    distance = np.linalg.norm(offset - t[..., None] * edge[None], axis=-1).min(axis=1)
    # inside test by the even-odd rule on the same polygon
    x, y = points[:, 0:1], points[:, 1:2]
    crosses = ((start[None, :, 1] > y) != (end[None, :, 1] > y)) & (
        x < start[None, :, 0] + (y - start[None, :, 1]) * edge[None, :, 0] / np.where(edge[:, 1] == 0, 1, edge[:, 1])
    )
    inside = crosses.sum(axis=1) % 2 == 1
    return np.where(inside, -distance, distance)
