"""pydl.distributed: data-parallel training over MPI.

The multi-process tests launch ``mpiexec -n 2`` (and 3) on tests/mpi_scenarios.py, each with a
timeout after which the whole process group is killed, and compare what every rank wrote with
each other (bit for bit) and with ONE process trained at the global batch (float64, 1e-10).
They fail, not skip, when mpi4py or mpiexec is missing: the test extra installs both.
The single-process tests check the sharding, interleaving and bucketing arithmetic against
numpy oracles and the errors before ``init()``.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pydl
import pydl.distributed as dist
from pydl import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "tests", "mpi_scenarios.py")
_spec = importlib.util.spec_from_file_location("mpi_scenarios", SCENARIOS)
sc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sc)


def run_mpi(nprocs, scenario, out, timeout=90, env=None):
    """Run a scenario under ``mpiexec -n nprocs``; return (returncode, stdout, stderr, seconds).

    On timeout the whole process group (mpiexec and every rank) is killed and the test fails.
    """
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.fail('mpi4py is missing: pip install -e ".[test]" installs it (pydl[mpi])')
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.fail('mpiexec is not on PATH: pip install "pydl[mpi]" brings the mpich wheel')
    environment = dict(os.environ, PYDL_NUM_THREADS="1", **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [mpiexec, "-n", str(nprocs), sys.executable, SCENARIOS, scenario, str(out)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a rank hung)\n"
                    f"stdout:\n{stdout}\nstderr:\n{stderr}")
    return proc.returncode, stdout, stderr, time.monotonic() - start


def load_ranks(out, name, world):
    ranks = []
    for r in range(world):
        with np.load(os.path.join(out, f"{name}-rank{r}.npz")) as f:
            ranks.append({k: f[k] for k in f.files})
    return ranks


# --- data-parallel training against one process at the global batch -------------------------
@pytest.fixture(scope="module", params=[2, 3], ids=["W2", "W3"])
def train_run(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"train{world}")
    rc, stdout, stderr, _ = run_mpi(world, "train", out)
    assert rc == 0, f"mpiexec failed (rc {rc})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return world, out, stdout, load_ranks(out, "train", world)


@pytest.fixture(scope="module")
def oracle_classifier():
    """One process, same data, rank 0's seed, batch = W * per-rank batch (per world size)."""
    def run(world):
        n = world * sc.PER_RANK_BATCH * 3
        x, y, x_val, y_val = sc.classifier_data(n)
        model, opt = sc.build_classifier(seed=0)
        trainer, history, stopper = sc.fit_classifier(model, opt, x, y, x_val, y_val,
                                                      world * sc.PER_RANK_BATCH)
        return model, trainer, history, stopper, (x_val, y_val)
    return run


def test_weights_and_logs_are_bit_identical_on_every_rank(train_run):
    world, _, _, ranks = train_run
    for r in range(1, world):
        assert sorted(ranks[r]) == sorted(ranks[0])
        for key, value in ranks[0].items():
            np.testing.assert_array_equal(ranks[r][key], value, err_msg=f"rank {r}: {key}")


def test_fit_equals_one_process_at_the_global_batch(train_run, oracle_classifier):
    world, _, _, ranks = train_run
    model, _, history, stopper, _ = oracle_classifier(world)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(ranks[0][f"c_{name}"], value, rtol=0, atol=1e-10,
                                   err_msg=name)
    assert sorted(k[2:] for k in ranks[0] if k.startswith("h_")) == sorted(history.history)
    for key, values in history.history.items():
        np.testing.assert_allclose(ranks[0][f"h_{key}"], values, rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    # Early stopping fired (so the comparison means something) at the same epoch.
    assert 0 < stopper.stopped_epoch < sc.EPOCHS * 3 - 1
    assert int(ranks[0]["stopped_epoch"]) == stopper.stopped_epoch
    assert int(ranks[0]["best_epoch"]) == stopper.best_epoch


def test_padded_epoch_and_graph_path_equal_one_process(train_run):
    """An epoch that is not a multiple of W is padded by wrapping (DistributedSampler): the run
    equals one process on the padded order at the global batch; frozen weights never move."""
    world, _, _, ranks = train_run
    n = world * sc.PER_RANK_BATCH * 3 + world - 1
    x, y = sc.regression_data(n)
    total = -(-n // world) * world
    padded = np.arange(total) % n
    model, opt = sc.build_regressor(seed=0)
    _, history = sc.fit_regressor(model, opt, x[padded], y[padded], world * sc.PER_RANK_BATCH)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(ranks[0][f"r_{name}"], value, rtol=0, atol=1e-10,
                                   err_msg=name)
    np.testing.assert_allclose(ranks[0]["r_h_loss"], history.history["loss"], rtol=1e-10)
    assert not ranks[0]["frozen_changed"]


def test_evaluate_and_predict_are_sharded_and_gathered(train_run, oracle_classifier):
    world, _, _, ranks = train_run
    _, trainer, _, _, (x_val, y_val) = oracle_classifier(world)
    scores = trainer.evaluate(x_val, y_val)
    np.testing.assert_allclose(ranks[0]["evaluate"], [scores["loss"], scores["accuracy"]],
                               rtol=1e-10)
    np.testing.assert_allclose(ranks[0]["predict"], trainer.predict(x_val), atol=1e-10)
    assert ranks[0]["predict1"].shape == (1, 3)  # fewer rows than ranks
    np.testing.assert_allclose(ranks[0]["predict1"], trainer.predict(x_val[:1]), atol=1e-10)


def test_files_and_progress_come_from_rank_0_only(train_run):
    world, out, stdout, ranks = train_run
    for stem in ("ckpt-rank{}.npz", "log-rank{}.csv", "plot-rank{}.png"):
        assert os.path.exists(os.path.join(out, stem.format(0))), stem
        for r in range(1, world):
            assert not os.path.exists(os.path.join(out, stem.format(r))), stem
    epochs = len(ranks[0]["h_loss"])
    assert stdout.count("Epoch 1/") == 1 and stdout.count(f"Epoch {epochs}/") == 1
    with open(os.path.join(out, "log-rank0.csv")) as f:
        assert len(f.read().strip().splitlines()) == epochs + 1


def test_allreduce_and_distributed_optimizer_against_numpy(train_run):
    world, _, _, ranks = train_run
    res = ranks[0]
    per_rank = np.stack([np.arange(7, dtype=np.float64) * (k + 1) - k for k in range(world)])
    np.testing.assert_allclose(res["allreduce_mean"], per_rank.mean(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(res["allreduce_sum"], per_rank.sum(axis=0))
    np.testing.assert_array_equal(res["allreduce_max"], per_rank.max(axis=0))
    np.testing.assert_array_equal(res["allreduce_min"], per_rank.min(axis=0))
    np.testing.assert_array_equal(res["allreduce_int"],
                                  np.arange(4) * sum(range(1, world + 1)))
    np.testing.assert_allclose(res["allreduce_tensor"], np.full((2, 3), (world - 1) / 2))
    np.testing.assert_allclose(res["allreduce_strided"],
                               np.arange(12.0).reshape(3, 4).T * (world - 1) / 2)
    # The same layers, and the closed-form SGD update with the ranks' mean gradient.
    pydl.manual_seed(0)
    layers = [nn.Linear(40, 30), nn.Linear(30, 20), nn.Linear(20, 3)]
    params = [p for layer in layers for p in layer.parameters()]
    mean_factor = sum(range(1, world + 1)) / world
    for i, p in enumerate(params):
        if i == 3:  # frozen: untouched
            expected = p.data
        elif i == 5:  # no gradient on rank 0: it counts as zero there
            expected = p.data - (sum(range(2, world + 1)) / world) * (i + 1)
        else:
            expected = p.data - mean_factor * (i + 1)
        np.testing.assert_allclose(res[f"do_{i}"], expected, rtol=1e-6, err_msg=f"param {i}")
        assert res[f"do_{i}"].dtype == p.data.dtype


# --- faults -------------------------------------------------------------------------------
def test_nan_on_one_rank_raises_on_every_rank_at_the_same_step(tmp_path):
    rc, stdout, stderr, _ = run_mpi(2, "nan", tmp_path)
    assert rc == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    ranks = load_ranks(tmp_path, "nan", 2)
    # Sample n-3 = 21 is rank 1's local sample 10: epoch 0, batch 10 // 4 = 2.
    for res in ranks:
        assert (int(res["epoch"]), int(res["batch"])) == (0, 2)
        assert res["finite"]
    for key in ranks[0]:
        np.testing.assert_array_equal(ranks[1][key], ranks[0][key], err_msg=key)
    # The weights are those after the two good steps: one process, two batches of 2 * 4.
    n = 2 * sc.PER_RANK_BATCH * 3
    x, y, _, _ = sc.classifier_data(n)
    model, opt = sc.build_classifier(seed=0)
    pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt).fit(
        x[:16], y[:16], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(ranks[0][f"w_{name}"], value, rtol=0, atol=1e-10)


def test_exception_on_one_rank_ends_the_job_with_the_error_shown(tmp_path):
    rc, stdout, stderr, seconds = run_mpi(2, "crash", tmp_path, timeout=60,
                                          env={"PYDL_TEST_CRASH": "raise"})
    assert rc != 0
    assert "RuntimeError: deliberate failure on rank 1" in stderr
    assert "aborting all ranks" in stderr


def test_sigkilled_rank_ends_the_job_within_seconds(tmp_path):
    rc, stdout, stderr, seconds = run_mpi(2, "crash", tmp_path, timeout=60,
                                          env={"PYDL_TEST_CRASH": "kill"})
    assert rc != 0
    assert seconds < 20, f"mpiexec took {seconds:.1f} s to end after a rank was killed"


def test_bad_inputs_raise_value_error_on_every_rank(tmp_path):
    rc, stdout, stderr, _ = run_mpi(2, "bad", tmp_path, timeout=60)
    assert rc == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    for res in load_ranks(tmp_path, "bad", 2):
        shapes, count, arrays, data, root = res["messages"].tolist()
        assert "parameter '2.weight' has shape" in shapes and "same model" in shapes
        assert "parameters" in count and "same model" in count
        assert "shape (3,)" in arrays and "shape (4,)" in arrays
        assert "[8, 9]" in data and "same full data set" in data
        assert "root must be a rank in [0, 2)" in root


# --- single process: arithmetic and errors before init() ----------------------------------
def test_importing_pydl_does_not_import_mpi4py():
    code = "import sys, pydl, pydl.distributed; assert 'mpi4py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_every_function_before_init_raises_runtime_error():
    assert not dist.is_initialized()
    model = nn.Linear(2, 2)
    calls = [dist.rank, dist.world_size, dist.barrier,
             lambda: dist.broadcast_parameters(model),
             lambda: dist.allreduce_(np.zeros(3)),
             lambda: dist.DistributedOptimizer(pydl.optim.SGD(model.parameters(), lr=0.1))]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"call pydl\.distributed\.init\(\) first"):
            call()


def test_missing_mpi4py_is_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pydl\[mpi\]"):
        dist.init()
    assert not dist.is_initialized()


def test_trainer_hooks_do_nothing_before_init():
    order = np.array([2, 0, 1])
    assert dist.shard_order(order, 3) is order and dist.shard_order(None, 3) is None
    assert dist.is_root() and dist.row_range(7) == (0, 7)
    assert np.isnan(dist.agree_finite(float("nan"))) and dist.agree_finite(1.5) == 1.5
    out = np.ones((4, 2))
    assert dist.gather_rows(out, 4) is out
    assert dist.reduce_epoch(None, 3.0, 4, None, None, 4) == (3.0, 4, None, None)


def padded_oracle(order, world):
    n = len(order)
    total = -(-n // world) * world
    return [order[i % n] for i in range(total)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12, 13])
def test_shard_indices_is_distributed_sampler_and_interleave_inverts_it(n, world):
    order = np.random.default_rng(n * 10 + world).permutation(n)
    padded = padded_oracle(order.tolist(), world)
    shards = [dist.shard_indices(order, r, world) for r in range(world)]
    for r, shard in enumerate(shards):
        assert shard.tolist() == padded[r::world]
        assert len(shard) == -(-n // world)
    assert sorted(set(np.concatenate(shards).tolist())) == list(range(n))
    assert dist._interleave(np.stack(shards)).tolist() == padded


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 4, 10, 11])
def test_row_counts_split_contiguously(n, world):
    counts = dist._row_counts(n, world)
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    assert counts == sorted(counts, reverse=True)


def test_bucket_plan_keeps_order_dtype_and_size():
    rng = np.random.default_rng(0)
    params = [nn.Parameter(np.zeros(int(rng.integers(1, 3000)),
                                    np.float32 if rng.random() < 0.7 else np.float64))
              for _ in range(60)]
    limit = 8192
    plan = dist._plan_buckets(params, limit)
    assert [id(p) for bucket in plan for p in bucket] == [id(p) for p in params]
    for bucket in plan:
        assert len({p.data.dtype for p in bucket}) == 1
        assert len(bucket) == 1 or sum(p.data.nbytes for p in bucket) <= limit
    for a, b in zip(plan, plan[1:]):  # greedy: the next parameter did not fit
        assert a[0].data.dtype != b[0].data.dtype or \
            sum(p.data.nbytes for p in a) + b[0].data.nbytes > limit


def test_distributed_example_trains_and_checkpoints_from_rank_0(tmp_path):
    example = os.path.join(ROOT, "examples", "distributed_mnist.py")
    rc, stdout, stderr, _ = run_mpi(2, "example", tmp_path, env={"PYDL_EXAMPLE": example})
    assert rc == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    accuracy = float(stdout.split("test accuracy ")[1].split(",")[0])
    assert accuracy > 0.9
    assert stdout.count("test accuracy") == 1
    assert os.path.exists(os.path.join(tmp_path, "digits_distributed.npz"))


def test_a_world_of_one_process_trains_as_without_init():
    """Without mpiexec, init() makes a world of one: everything works and nothing changes."""
    code = """if True:
        import numpy as np, pydl, pydl.distributed as dist
        from pydl import nn
        def run():
            pydl.manual_seed(3)
            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
            opt = pydl.optim.Adam(model.parameters(), lr=0.01)
            x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
            y = np.arange(50) % 3
            h = pydl.train.Trainer(model, pydl.losses.CrossEntropyLoss(), opt).fit(
                x, y, epochs=3, batch_size=8, verbose=0)
            return model.state_dict(), h.history
        before = run()
        dist.init()
        assert (dist.rank(), dist.world_size()) == (0, 1)
        dist.barrier()
        a = np.arange(3.0)
        assert dist.allreduce_(a) is a and a.tolist() == [0.0, 1.0, 2.0]
        after = run()
        assert after[1] == before[1]
        assert all(np.array_equal(after[0][k], v) for k, v in before[0].items())
        print("ok")
    """
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
