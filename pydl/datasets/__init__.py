"""Small datasets: the embedded 8x8 handwritten digits and synthetic 2-D classification sets.

- :func:`load_digits`: 1797 8x8 images of the digits 0-9, shipped inside the package (no download).
- :func:`make_moons`, :func:`make_blobs`: scikit-learn's generators of the same names and
  arguments (same shapes, label layout and geometry; the random numbers differ).
- :func:`make_spirals`: interleaved spiral arms, one class per arm.

Features are float32 and labels int64, ready for ``pydl.nn`` models and
``pydl.losses.CrossEntropyLoss``.
"""

import math
import numbers
from importlib import resources

import numpy as np

__all__ = ["Bunch", "load_digits", "make_blobs", "make_moons", "make_spirals"]

DIGITS_ATTRIBUTION = (
    "Optical Recognition of Handwritten Digits (test set, 1797 samples). E. Alpaydin and "
    "C. Kaynak, 1998. UCI Machine Learning Repository, https://doi.org/10.24432/C50P49. "
    "Licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Converted "
    "unchanged (pixel counts 0..16 and labels) to digits.npz from scikit-learn's copy.")

_DIGITS_DESCR = """Optical recognition of handwritten digits dataset
--------------------------------------------------

1797 samples, 10 classes (the digits 0-9, about 180 each), 64 features: an 8x8 image whose pixels
are integers in 0..16. NIST preprocessing turned 32x32 bitmaps of digits written by 43 people
into counts of the "on" pixels in non-overlapping 4x4 blocks. This is the test set of the UCI
data; its writers are disjoint from those of the UCI training set.

Source: E. Alpaydin and C. Kaynak (1998), "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, https://doi.org/10.24432/C50P49, license CC BY 4.0.
References: C. Kaynak (1995), Methods of Combining Multiple Classifiers and Their Applications to
Handwritten Digit Recognition, MSc thesis, Bogazici University; E. Alpaydin, C. Kaynak (1998),
Cascading Classifiers, Kybernetika.
"""


class Bunch(dict):
    """A dict whose keys are also attributes (``bunch.data is bunch["data"]``), as in sklearn."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __dir__(self):
        return list(self.keys())


def load_digits(return_X_y=False):
    """Load the embedded 8x8 handwritten digits (1797 samples, 10 classes), without downloading.

    Data: the test set of "Optical Recognition of Handwritten Digits" by E. Alpaydin and
    C. Kaynak, UCI Machine Learning Repository, 1998, https://doi.org/10.24432/C50P49, licensed
    CC BY 4.0 (see ``pydl/datasets/README.md``). The samples and their order are those of
    ``sklearn.datasets.load_digits()``.

    Args:
        return_X_y: Return ``(data, target)`` instead of a Bunch. Default False.

    Returns:
        A :class:`Bunch` with ``data`` (float32, (1797, 64), values 0..16 - scale them, e.g.
        ``/ 16``, before training), ``target`` (int64, (1797,), 0..9), ``images`` (float32,
        (1797, 8, 8)), ``feature_names`` (``"pixel_0_0"`` ... ``"pixel_7_7"``),
        ``target_names`` (int64 0..9) and ``DESCR``; or ``(data, target)``.

    Example:
        >>> X, y = pydl.datasets.load_digits(return_X_y=True)
        >>> X.shape, y[:5]
        ((1797, 64), array([0, 1, 2, 3, 4]))
    """
    with resources.files(__name__).joinpath("digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            images = npz["images"].astype(np.float32)
            target = npz["target"].astype(np.int64)
    data = images.reshape(len(images), -1)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, images=images,
                 feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
                 target_names=np.arange(10, dtype=np.int64), DESCR=_DIGITS_DESCR)


# --- synthetic data -----------------------------------------------------------------------------

def _rng(random_state):
    """Return a numpy Generator for ``random_state`` (None, an int, or a Generator)."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got "
                     f"{random_state!r}")


def _count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _scale(name, value):
    """Check a standard deviation: a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _finish(X, y, shuffle, rng):
    if shuffle:
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
    return np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)


def make_moons(n_samples=100, shuffle=True, noise=None, random_state=None):
    """Make two interleaving half circles (a 2-class, 2-D problem), as scikit-learn's make_moons.

    Class 0 lies on the upper half of the unit circle centred at (0, 0), class 1 on the lower
    half of the unit circle centred at (1, 0.5); points are evenly spaced along each arc.

    Args:
        n_samples: Total number of points, an int >= 1 (``n // 2`` in class 0, the rest in
            class 1), or a pair ``(n_class0, n_class1)``. Default 100.
        shuffle: Shuffle the samples (otherwise class 0 comes first). Default True.
        noise: Standard deviation of Gaussian noise added to every coordinate, or None (no
            noise). Default None.
        random_state: None (fresh randomness), an int seed or a ``numpy.random.Generator``.
            Default None.

    Returns:
        ``(X, y)``: float32 (n, 2) points and int64 (n,) labels in {0, 1}.

    Raises:
        ValueError: A bad ``n_samples``, a negative/NaN ``noise`` or a bad ``random_state``.

    Example:
        >>> X, y = pydl.datasets.make_moons(200, noise=0.1, random_state=0)
    """
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        n_total = _count("n_samples", n_samples)
        n_out, n_in = n_total // 2, n_total - n_total // 2
    else:
        try:
            n_out, n_in = n_samples
        except (TypeError, ValueError):
            raise ValueError(f"n_samples must be an int or a pair (n_class0, n_class1), got "
                             f"{n_samples!r}") from None
        n_out, n_in = _count("n_samples[0]", n_out, 0), _count("n_samples[1]", n_in, 0)
    noise = None if noise is None else _scale("noise", noise)
    rng = _rng(random_state)
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    if shuffle:
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
    if noise is not None:
        X = X + rng.normal(scale=noise, size=X.shape)
    return _finish(X, y, False, rng)


def make_blobs(n_samples=100, n_features=2, centers=None, cluster_std=1.0,
               center_box=(-10.0, 10.0), shuffle=True, random_state=None, return_centers=False):
    """Make isotropic Gaussian blobs, one class per blob, as scikit-learn's make_blobs.

    Args:
        n_samples: Total number of points split as evenly as possible between the blobs (the
            first ``n % n_centers`` blobs get one more), or a sequence with each blob's count.
            Default 100.
        n_features: Dimension of the points, >= 1 (ignored when ``centers`` is an array).
            Default 2.
        centers: Number of blobs (centres drawn uniformly in ``center_box``), an array of shape
            (n_centers, n_features), or None: 3 blobs, or ``len(n_samples)`` when it is a
            sequence. Default None.
        cluster_std: Standard deviation of every blob, or one per blob. Default 1.0.
        center_box: ``(low, high)`` bounds for random centres. Default (-10.0, 10.0).
        shuffle: Shuffle the samples (otherwise blob 0 comes first). Default True.
        random_state: None (fresh randomness), an int seed or a ``numpy.random.Generator``.
            Default None.
        return_centers: Also return the centres. Default False.

    Returns:
        ``(X, y)`` (float32 (n, n_features), int64 (n,) blob indices), plus the float64 centres
        (n_centers, n_features) when ``return_centers``.

    Raises:
        ValueError: Non-positive counts, inconsistent lengths of ``n_samples``, ``centers`` and
            ``cluster_std``, a negative std, an empty ``center_box`` or a bad ``random_state``.

    Example:
        >>> X, y = pydl.datasets.make_blobs(300, centers=4, cluster_std=0.5, random_state=0)
    """
    n_features = _count("n_features", n_features)
    rng = _rng(random_state)
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        counts = None
        n_total = _count("n_samples", n_samples)
    else:
        try:
            counts = [_count("n_samples[i]", n, 0) for n in n_samples]
        except TypeError:
            raise ValueError(f"n_samples must be an int or a sequence of ints, got "
                             f"{n_samples!r}") from None
        if not counts:
            raise ValueError("n_samples must not be an empty sequence")
    try:
        low, high = (float(v) for v in center_box)
    except (TypeError, ValueError):
        raise ValueError(f"center_box must be a pair (low, high), got {center_box!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"center_box must be finite with low <= high, got {center_box!r}")
    if centers is None:
        centers = 3 if counts is None else len(counts)
    if isinstance(centers, numbers.Integral) and not isinstance(centers, bool):
        n_centers = _count("centers", centers)
        centers = rng.uniform(low, high, size=(n_centers, n_features))
    else:
        centers = np.array(centers, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[0] < 1 or centers.shape[1] < 1 \
                or not np.all(np.isfinite(centers)):
            raise ValueError(f"centers must be an int or a finite (n_centers, n_features) array, "
                             f"got shape {centers.shape}")
        n_centers, n_features = centers.shape
    if counts is None:
        counts = [n_total // n_centers + (i < n_total % n_centers) for i in range(n_centers)]
    elif len(counts) != n_centers:
        raise ValueError(f"n_samples has {len(counts)} counts but there are {n_centers} centers")
    if isinstance(cluster_std, numbers.Real):
        stds = [_scale("cluster_std", cluster_std)] * n_centers
    else:
        stds = [_scale("cluster_std[i]", s) for s in cluster_std]
        if len(stds) != n_centers:
            raise ValueError(f"cluster_std has {len(stds)} values but there are {n_centers} "
                             f"centers")
    X = np.concatenate([rng.normal(loc=c, scale=s, size=(n, n_features))
                        for c, s, n in zip(centers, stds, counts)])
    y = np.repeat(np.arange(n_centers, dtype=np.int64), counts)
    X, y = _finish(X, y, shuffle, rng)
    return (X, y, centers) if return_centers else (X, y)


def make_spirals(n_samples=100, n_classes=2, noise=0.0, random_state=None, shuffle=True):
    """Make interleaved spiral arms, one class per arm (a classic non-linear 2-D problem).

    Arm ``k`` of ``n_classes`` is the curve ``r = t``, ``angle = 3*pi*t + 2*pi*k / n_classes``
    for ``t`` evenly spaced in [0, 1] (one and a half turns from the centre to radius 1), so
    the arms are rotated copies of each other. Points are evenly spaced in ``t``; Gaussian noise
    of standard deviation ``noise`` is then added to both coordinates.

    Args:
        n_samples: Total number of points, an int >= 1, split as evenly as possible between the
            arms (the first ``n % n_classes`` arms get one more). Default 100.
        n_classes: Number of arms (classes), >= 1. Default 2.
        noise: Standard deviation of the added Gaussian noise, >= 0. Default 0.0.
        random_state: None (fresh randomness), an int seed or a ``numpy.random.Generator``.
            Default None.
        shuffle: Shuffle the samples (otherwise arm 0 comes first). Default True.

    Returns:
        ``(X, y)``: float32 (n, 2) points and int64 (n,) arm indices.

    Raises:
        ValueError: Non-positive counts, a negative/NaN noise or a bad ``random_state``.

    Example:
        >>> X, y = pydl.datasets.make_spirals(300, n_classes=3, noise=0.05, random_state=0)
    """
    n_samples = _count("n_samples", n_samples)
    n_classes = _count("n_classes", n_classes)
    noise = _scale("noise", noise)
    rng = _rng(random_state)
    counts = [n_samples // n_classes + (k < n_samples % n_classes) for k in range(n_classes)]
    t = np.concatenate([np.linspace(0.0, 1.0, n) for n in counts])
    y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    angle = 3.0 * np.pi * t + 2.0 * np.pi * y / n_classes
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    if noise > 0:
        X = X + rng.normal(scale=noise, size=X.shape)
    return _finish(X, y, shuffle, rng)
