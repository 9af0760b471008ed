"""pydl.datasets: the embedded digits (scikit-learn as the oracle) and the synthetic generators."""

import os

import numpy as np
import pytest

import pydl
from pydl import datasets


# --- digits -----------------------------------------------------------------------------------

def test_digits_shapes_dtypes_and_ranges():
    d = datasets.load_digits()
    assert d.data.shape == (1797, 64) and d.data.dtype == np.float32
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.float32
    assert d.target.shape == (1797,) and d.target.dtype == np.int64
    assert d.data.min() == 0 and d.data.max() == 16
    assert np.array_equal(d.data, np.round(d.data))
    np.testing.assert_array_equal(d.images.reshape(1797, 64), d.data)
    np.testing.assert_array_equal(d.target_names, np.arange(10))
    assert len(d.feature_names) == 64 and d.feature_names[9] == "pixel_1_1"
    assert "Alpaydin" in d.DESCR and "CC BY 4.0" in d.DESCR
    assert d["data"] is d.data
    counts = np.bincount(d.target)
    assert counts.sum() == 1797 and counts.min() >= 170 and counts.max() <= 185


def test_digits_return_X_y():
    X, y = datasets.load_digits(return_X_y=True)
    d = datasets.load_digits()
    np.testing.assert_array_equal(X, d.data)
    np.testing.assert_array_equal(y, d.target)


def test_digits_equal_scikit_learn_exactly():
    import sklearn.datasets as sk
    ref = sk.load_digits()
    d = datasets.load_digits()
    np.testing.assert_array_equal(d.data, ref.data)
    np.testing.assert_array_equal(d.images, ref.images)
    np.testing.assert_array_equal(d.target, ref.target)
    np.testing.assert_array_equal(np.bincount(d.target), np.bincount(ref.target))


def test_digits_file_is_small_and_attributed():
    here = os.path.dirname(datasets.__file__)
    assert os.path.getsize(os.path.join(here, "digits.npz")) < 100_000
    readme = open(os.path.join(here, "README.md"), encoding="utf-8").read()
    for text in ("Alpaydin", "Kaynak", "UCI", "1998", "CC BY 4.0"):
        assert text in readme and text in datasets.DIGITS_ATTRIBUTION
        assert text in datasets.load_digits.__doc__


# --- make_moons -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_moons_without_noise_lie_on_the_half_circles(n):
    X, y = datasets.make_moons(n, random_state=0)
    assert X.shape == (n, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert (y == 0).sum() == n // 2 and (y == 1).sum() == n - n // 2
    upper, lower = X[y == 0].astype(np.float64), X[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1, atol=1e-6)
    assert np.all(upper[:, 1] >= -1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, atol=1e-6)
    assert np.all(lower[:, 1] <= 0.5 + 1e-6)


def test_moons_match_scikit_learn_without_shuffle():
    import sklearn.datasets as sk
    for n in (5, 50, (3, 8)):
        X, y = datasets.make_moons(n, shuffle=False)
        X_ref, y_ref = sk.make_moons(n, shuffle=False)
        np.testing.assert_allclose(X, X_ref, atol=1e-6)
        np.testing.assert_array_equal(y, y_ref)


def test_moons_noise_shuffle_and_determinism():
    a = datasets.make_moons(400, noise=0.1, random_state=3)
    b = datasets.make_moons(400, noise=0.1, random_state=3)
    c = datasets.make_moons(400, noise=0.1, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], np.sort(a[1]))  # shuffled
    clean, _ = datasets.make_moons(400, random_state=3)
    # same shuffle, then noise: the residual is the N(0, 0.1^2) noise
    residual = a[0] - clean
    assert abs(residual.std() - 0.1) < 0.01 and abs(residual.mean()) < 0.01
    gen = np.random.default_rng(0)
    datasets.make_moons(10, noise=0.1, random_state=gen)


# --- make_blobs -------------------------------------------------------------------------------

def test_blobs_layout_and_centers():
    X, y, centers = datasets.make_blobs(1000, n_features=3, centers=4, cluster_std=0.5,
                                        random_state=0, return_centers=True)
    assert X.shape == (1000, 3) and X.dtype == np.float32 and y.dtype == np.int64
    assert centers.shape == (4, 3) and np.all(np.abs(centers) <= 10)
    np.testing.assert_array_equal(np.bincount(y), [250] * 4)
    for k in range(4):
        pts = X[y == k]
        np.testing.assert_allclose(pts.mean(0), centers[k], atol=0.15)
        np.testing.assert_allclose(pts.std(0), 0.5, atol=0.08)


def test_blobs_counts_given_centers_and_stds():
    X, y = datasets.make_blobs(10, shuffle=False, random_state=1)
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])  # sklearn's split of 10/3
    X, y = datasets.make_blobs([5, 0, 7], centers=[[0, 0], [5, 5], [100, -100]],
                               cluster_std=[0.0, 1.0, 0.0], shuffle=False)
    np.testing.assert_array_equal(y, [0] * 5 + [2] * 7)
    np.testing.assert_array_equal(X[:5], 0)
    np.testing.assert_array_equal(X[5:], np.tile([100, -100], (7, 1)))
    X, y = datasets.make_blobs([3, 4], n_features=5, random_state=0)
    assert X.shape == (7, 5)
    a = datasets.make_blobs(50, random_state=7)
    b = datasets.make_blobs(50, random_state=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_blobs_layout_matches_scikit_learn():
    import sklearn.datasets as sk
    for n, centers in ((10, None), (11, 4), ([2, 5, 1], None)):
        _, y = datasets.make_blobs(n, centers=centers, shuffle=False, random_state=0)
        _, y_ref = sk.make_blobs(n, centers=centers, shuffle=False, random_state=0)
        np.testing.assert_array_equal(y, y_ref)


# --- make_spirals -----------------------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(100, 2), (301, 3), (5, 5), (3, 4)])
def test_spirals_without_noise_follow_their_arm(n, k):
    X, y = datasets.make_spirals(n, n_classes=k, random_state=0)
    assert X.shape == (n, 2) and X.dtype == np.float32 and y.dtype == np.int64
    counts = np.bincount(y, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    Xd = X.astype(np.float64)
    r = np.hypot(Xd[:, 0], Xd[:, 1])
    assert np.all(r <= 1 + 1e-6)
    far = r > 1e-3  # the angle is undefined at the centre
    expected = 3 * np.pi * r + 2 * np.pi * y / k
    diff = np.angle(np.exp(1j * (np.arctan2(Xd[:, 1], Xd[:, 0]) - expected)))
    np.testing.assert_allclose(diff[far], 0, atol=1e-4)


def test_spirals_noise_and_determinism():
    a = datasets.make_spirals(200, 3, noise=0.2, random_state=1)
    b = datasets.make_spirals(200, 3, noise=0.2, random_state=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    _, y = datasets.make_spirals(9, 3, shuffle=False)
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 3))


# --- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: datasets.make_moons(0), "n_samples"),
    (lambda: datasets.make_moons(2.5), "n_samples"),
    (lambda: datasets.make_moons((1, 2, 3)), "n_samples"),
    (lambda: datasets.make_moons(10, noise=-0.1), "noise"),
    (lambda: datasets.make_moons(10, noise=float("nan")), "noise"),
    (lambda: datasets.make_moons(10, random_state="x"), "random_state"),
    (lambda: datasets.make_moons(10, random_state=-1), "random_state"),
    (lambda: datasets.make_blobs(-5), "n_samples"),
    (lambda: datasets.make_blobs(10, n_features=0), "n_features"),
    (lambda: datasets.make_blobs(10, centers=0), "centers"),
    (lambda: datasets.make_blobs(10, centers=[1, 2]), "centers"),
    (lambda: datasets.make_blobs([3, 4], centers=[[0, 0]]), "centers"),
    (lambda: datasets.make_blobs(10, centers=2, cluster_std=[1, 2, 3]), "cluster_std"),
    (lambda: datasets.make_blobs(10, cluster_std=-1), "cluster_std"),
    (lambda: datasets.make_blobs(10, center_box=(1, -1)), "center_box"),
    (lambda: datasets.make_spirals(0), "n_samples"),
    (lambda: datasets.make_spirals(10, n_classes=0), "n_classes"),
    (lambda: datasets.make_spirals(10, noise=-1), "noise"),
    (lambda: datasets.make_spirals(10, noise=float("inf")), "noise"),
])
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_package_exports():
    assert pydl.datasets.load_digits is datasets.load_digits
    for name in datasets.__all__:
        assert hasattr(datasets, name)
