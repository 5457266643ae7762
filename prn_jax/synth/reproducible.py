"""Bit-reproducible small linear algebra for data generation.

BLAS / SIMD reductions may round differently depending on memory alignment and thread count,
so the same sample computed in another process could differ in the last bit (and then in a
rasterised edge pixel). These helpers use plain Python floats or elementwise numpy ops in a
fixed order instead, so generated files are byte-identical across processes and runs.
"""

import math

import numpy as np


def combine(base, rows, coef):
    """base + sum_j coef[j] rows[j], accumulated in a fixed order with elementwise float32 ops.

    Unlike a BLAS matrix-vector product, the result does not depend on memory alignment or
    thread count, which keeps generated files byte-identical across processes.
    """
    out = np.array(base, np.float32).reshape(-1)
    term = np.empty_like(out)
    for row, c in zip(rows, np.asarray(coef, np.float32)):
        np.multiply(row, c, out=term)
        out += term
    return out


def rotation(angles):
    """3DDFA R = Rx(pitch) Ry(yaw) Rz(roll) (as `pose.rotation_matrix`) in plain Python floats,
    so it is bit-reproducible; (3, 3) float64."""
    (cx, cy, cz), (sx, sy, sz) = ([math.cos(a) for a in angles], [math.sin(a) for a in angles])
    rx = [[1, 0, 0], [0, cx, sx], [0, -sx, cx]]
    ry = [[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]]
    rz = [[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]]
    mul = lambda a, b: [
        [a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)] for i in range(3)
    ]
    return np.array(mul(mul(rx, ry), rz), np.float64)


def transform(vertices, pose_para):
    """s V R^T + t (3DDFA, camera frame y up) with elementwise ops; (n, 3) float32."""
    pose_para = [float(p) for p in pose_para]
    r = rotation(pose_para[:3])
    v = vertices.astype(np.float64)
    out = [
        pose_para[6] * (r[i, 0] * v[:, 0] + r[i, 1] * v[:, 1] + r[i, 2] * v[:, 2]) + pose_para[3 + i]
        for i in range(3)
    ]
    return np.stack(out, -1).astype(np.float32)
