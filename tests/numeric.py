"""The slow, obvious reference for gradients: one pair of full cost evaluations per parameter."""

from __future__ import annotations

import numpy as np

from cifarcli.config import loss_named


def naive_gradients(X, Y, W, b, lam, h=1e-6, loss="softmax"):
    """Centred differences of the loss's compute_cost, parameter by parameter: (gW K × d, gb K × 1)."""
    compute_cost = loss_named(loss).compute_cost
    W, b = W.copy(), b.copy()
    grads = []
    for theta in (W, b):
        g = np.zeros_like(theta)
        for idx in np.ndindex(theta.shape):
            old = theta[idx]
            theta[idx] = old + h
            up = compute_cost(X, Y, W, b, lam)
            theta[idx] = old - h
            down = compute_cost(X, Y, W, b, lam)
            theta[idx] = old
            g[idx] = (up - down) / (2 * h)
        grads.append(g)
    return grads
