"""UV coordinates for a disc-topology mesh that has none: a harmonic (Tutte-style) embedding.

The boundary loop goes to the perimeter of the unit square by arc length; every interior
vertex is the weighted average of its neighbours (a sparse linear solve). With positive
weights ('uniform') Tutte's theorem makes the map a bijection onto the square (no flipped
triangles); 'cotangent' (conformal, as for BFM's 3DMM-STN layout) is smoother but can fold
where the mesh has obtuse triangles.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg


def boundary_loop(triangles):
    """Ordered vertex indices of the mesh's single boundary loop.

    Raises ValueError if the boundary is empty or not one simple loop (not a disc).
    """
    triangles = np.asarray(triangles, np.int64)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    undirected = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    directed = edges[counts[inverse.ravel()] == 1]  # boundary edges keep the triangle's direction
    if len(directed) == 0:
        raise ValueError("triangles: mesh has no boundary (not a disc)")
    successor = dict(zip(directed[:, 0].tolist(), directed[:, 1].tolist()))
    if len(successor) != len(directed):
        raise ValueError("triangles: boundary is not a simple loop (non-manifold vertex)")
    loop = [int(directed[0, 0])]
    while True:
        nxt = successor[loop[-1]]
        if nxt == loop[0]:
            break
        loop.append(nxt)
        if len(loop) > len(directed):
            raise ValueError("triangles: boundary is not a simple loop")
    if len(loop) != len(directed):
        raise ValueError(
            f"triangles: {len(directed)} boundary edges but the loop has {len(loop)}: "
            "several boundaries (not a disc)"
        )
    return np.asarray(loop)


def _square_perimeter(t):
    """t in [0, 1) along the perimeter, counter-clockwise from (0, 0) -> (m, 2) points."""
    s = 4 * np.asarray(t)
    side, frac = np.floor(s).astype(int) % 4, s - np.floor(s)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], float)
    return corners[side] + frac[:, None] * (corners[side + 1] - corners[side])


def _edge_weights(vertices, triangles, kind):
    """Per-triangle-corner weights of the edge opposite each corner: (t, 3)."""
    if kind == "uniform":
        return np.full(triangles.shape, 0.5)
    if kind != "cotangent":
        raise ValueError(f"weights: expected 'uniform' or 'cotangent', got {kind!r}")
    p = vertices[triangles]  # (t, 3, 3)
    weights = np.empty(triangles.shape)
    for corner in range(3):
        a = p[:, (corner + 1) % 3] - p[:, corner]
        b = p[:, (corner + 2) % 3] - p[:, corner]
        cross = np.linalg.norm(np.cross(a, b), axis=-1)
        weights[:, corner] = 0.5 * (a * b).sum(-1) / np.maximum(cross, 1e-12)
    return weights


def harmonic_uv_embedding(vertices, triangles, weights="uniform"):
    """UVs in [0, 1]^2 for a disc mesh (see module docstring).

    Args:
      vertices: (n, 3) float. triangles: (t, 3) int 0-based, consistently oriented.
      weights: 'uniform' (Tutte, bijective) or 'cotangent' (conformal).
    Returns:
      (n, 2) float64 UV; the boundary loop runs counter-clockwise around the square when the
      triangles are counter-clockwise as seen from the side the caller treats as front.
    """
    vertices = np.asarray(vertices, np.float64)
    triangles = np.asarray(triangles, np.int64)
    n = len(vertices)
    loop = boundary_loop(triangles)
    lengths = np.linalg.norm(vertices[np.roll(loop, -1)] - vertices[loop], axis=-1)
    t = np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) / lengths.sum()
    uv = np.zeros((n, 2))
    uv[loop] = _square_perimeter(t)
    # The weight of edge (i, j) is added from each triangle corner opposite it.
    w = _edge_weights(vertices, triangles, weights)
    rows = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]])
    cols = np.concatenate([triangles[:, 2], triangles[:, 0], triangles[:, 1]])
    vals = np.concatenate([w[:, 0], w[:, 1], w[:, 2]])
    adjacency = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    laplacian = scipy.sparse.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    interior = np.setdiff1d(np.arange(n), loop)
    lap = laplacian.tocsr()
    system = lap[interior][:, interior].tocsc()
    rhs = -lap[interior][:, loop] @ uv[loop]
    uv[interior] = np.column_stack([scipy.sparse.linalg.spsolve(system, rhs[:, i]) for i in range(2)])
    return uv
