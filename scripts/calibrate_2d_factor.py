"""How much stronger is one cell's cytokine field in the 2D patch than in 3D tissue?

Steady state of ``D lap C - k C + q delta = 0`` on the lattice (site h = 20 um,
D = 20 um^2/s, tissue half-life 60 min), one secreting cell, solved with FFTs
on a periodic grid large next to the decay length sqrt(D/k) (~16 sites).
Prints the concentration per unit source (s, i.e. pg/mL per pg/mL/s) at
distance r in 2D (one-site-thick slab, no-flux faces) and in 3D, and their
ratio: the factor by which the slab overstates the field of an isolated
cell at r. Used in docs/calibration.md to justify tissue-scale EC50s.
"""

import math

import numpy as np


def green(ndim: int, n: int, h: float = 20.0, D: float = 20.0, half_life_min: float = 60.0):
    k = math.log(2.0) / (half_life_min * 60.0)
    f = np.fft.fftfreq(n) * 2 * np.pi
    grids = np.meshgrid(*([f] * ndim), indexing="ij")
    lap = sum(2.0 * (np.cos(g) - 1.0) for g in grids) * D / h ** 2
    src = np.zeros((n,) * ndim)
    src[(0,) * ndim] = 1.0
    return np.real(np.fft.ifftn(np.fft.fftn(src) / (k - lap)))


def main():
    g2 = green(2, 512)
    g3 = green(3, 160)
    print(" r(sites)   2D (s)    3D (s)   2D/3D")
    for r in (0, 1, 2, 3, 5, 8, 12, 16):
        a, b = g2[r, 0], g3[r, 0, 0]
        print(f"{r:8d} {a:9.3f} {b:9.3f} {a / b:7.1f}")


if __name__ == "__main__":
    main()
