"""pydl.io: .npz save/load without pickle, atomic writes, validation, model files and resuming."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import pydl
from pydl import nn, optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(seed=0, dropout=0.0):
    pydl.manual_seed(seed)
    layers = [nn.Linear(6, 16), nn.LeakyReLU(0.05), nn.Linear(16, 8), nn.ELU(0.7)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(8, 3), nn.Softmax(axis=-1)]
    return nn.Sequential(*layers)


def batches(n_steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(10, 6)).astype(np.float32), rng.normal(size=(10, 3)).astype(
        np.float32)) for _ in range(n_steps)]


def train_steps(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        loss = ((model(pydl.tensor(x)) - pydl.tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()


def assert_state_equal(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_tree_equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_tree_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_tree_equal(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


# --- npz surgery helpers: build deliberately broken files -------------------------------------

def read_members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=allow_pickle)
    return buf.getvalue()


def edit_header(path, fn):
    members = read_members(path)
    raw = np.lib.format.read_array(io.BytesIO(members["__pydl__.npy"]))
    header = json.loads(raw.tobytes().decode())
    header = fn(header)
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    members["__pydl__.npy"] = npy_bytes(np.frombuffer(text, np.uint8))
    write_members(path, members)


# --- round trips ------------------------------------------------------------------------------

def test_state_dict_round_trip_is_bit_exact_and_readable_by_numpy(tmp_path):
    model = make_model()
    path = tmp_path / "w.npz"
    pydl.save(model, path)
    loaded = pydl.load(path)
    assert_state_equal(model.state_dict(), loaded)
    plain = np.load(path, allow_pickle=False)
    assert set(plain.files) == {"__pydl__", *model.state_dict()}
    np.testing.assert_array_equal(plain["0.weight"], model[0].weight.data)


def test_nested_tree_keeps_types_and_values(tmp_path):
    rng = np.random.default_rng(0)
    tree = {
        "f32": rng.normal(size=(3, 4)).astype(np.float32),
        "f64": rng.normal(size=5),
        "i8": np.arange(-3, 3, dtype=np.int8),
        "u64": np.array([2 ** 64 - 1], dtype=np.uint64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 7), np.float32),
        "big_endian": np.arange(4, dtype=">f8"),
        "fortran": np.asfortranarray(rng.normal(size=(3, 2))),
        "epoch": 3, "lr": 0.1, "nan": float("nan"), "flag": True, "none": None,
        "name": "résumé", "np_scalar": np.float32(2.5), "pair": (1, 2.0), "ids": [4, 5, 6],
        "mixed": [1, "a", None], "empty_list": [], 7: {"nested": {"deep": np.ones(2)}},
    }
    path = tmp_path / "t.npz"
    pydl.save(tree, path)
    back = pydl.load(path)
    assert_tree_equal(tree, back)
    assert type(back["np_scalar"]) is np.float32


def test_optimizer_state_is_flattened_with_dotted_keys(tmp_path):
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train_steps(model, opt, batches(2))
    path = tmp_path / "opt.npz"
    pydl.save(opt, path)
    keys = set(np.load(path).files)
    assert {"state.0.momentum_buffer", "param_groups.0.lr", "param_groups.0.momentum",
            "param_groups.0.nesterov", "param_groups.0.params"} <= keys
    loaded = pydl.load(path)
    assert_tree_equal(opt.state_dict(), loaded)
    fresh = optim.SGD(model.parameters(), lr=0.5)
    fresh.load_state_dict(loaded)
    assert_tree_equal(opt.state_dict(), fresh.state_dict())


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda p: optim.Adam(p, lr=1e-2, betas=(0.8, 0.95)),
    lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
], ids=["sgd", "adam", "adamw"])
def test_checkpoint_resume_matches_uninterrupted_training(tmp_path, make_opt):
    data = batches(8)
    model = make_model()
    opt = make_opt(model.parameters())
    train_steps(model, opt, data[:4])
    pydl.save({"model": model, "optimizer": opt, "epoch": 4}, tmp_path / "ckpt.npz")
    train_steps(model, opt, data[4:])
    # Resume in a different model/optimizer built from another seed.
    other = make_model(seed=99)
    other_opt = make_opt(other.parameters())
    ckpt = pydl.load(tmp_path / "ckpt.npz")
    other.load_state_dict(ckpt["model"])
    other_opt.load_state_dict(ckpt["optimizer"])
    assert ckpt["epoch"] == 4
    train_steps(other, other_opt, data[4:])
    assert_state_equal(model.state_dict(), other.state_dict())


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: optim.Adam(p, lr=1e-2, eps=1e-6),
    lambda p: optim.AdamW(p, lr=1e-2),
], ids=["sgd", "adam", "adamw"])
def test_save_model_resume_with_optimizer_is_bit_exact(tmp_path, make_opt):
    data = batches(6)
    model = make_model(dropout=0.25).eval()
    opt = make_opt(model.parameters())
    train_steps(model, opt, data[:3])
    pydl.save_model(model, tmp_path / "m.npz", optimizer=opt)
    train_steps(model, opt, data[3:])
    loaded, loaded_opt = pydl.load_model(tmp_path / "m.npz", with_optimizer=True)
    assert type(loaded_opt) is type(opt)
    train_steps(loaded, loaded_opt, data[3:])
    assert_state_equal(model.state_dict(), loaded.state_dict())
    assert_tree_equal(opt.state_dict(), loaded_opt.state_dict())


def test_load_model_rebuilds_architecture_mode_and_frozen_flags(tmp_path):
    model = nn.Sequential(nn.Linear(4, 5, dtype=np.float64), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(5, 5, bias=False, dtype=np.float64), nn.Sigmoid(),
                          nn.Sequential(nn.Linear(5, 2, dtype=np.float64), nn.Tanh()),
                          nn.Softmax(axis=0))
    model[0].freeze()
    model.eval()
    pydl.save_model(model, tmp_path / "m.npz")
    loaded = pydl.load_model(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    assert loaded.training is False
    assert [p.requires_grad for p in loaded.parameters()] == \
        [p.requires_grad for p in model.parameters()]
    assert_state_equal(model.state_dict(), loaded.state_dict())
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(loaded(x).data, model(x).data)
    assert pydl.load_model(tmp_path / "m.npz", with_optimizer=True)[1] is None


def test_load_model_does_not_advance_the_random_generators(tmp_path):
    pydl.save_model(make_model(), tmp_path / "m.npz")
    pydl.manual_seed(5)
    expected = pydl.random.generator().random(3)
    pydl.manual_seed(5)
    pydl.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(pydl.random.generator().random(3), expected)


def test_save_model_rejects_unsupported_models(tmp_path):
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="Custom"):
        pydl.save_model(nn.Sequential(Custom()), tmp_path / "m.npz")
    model = make_model()
    stranger = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not in the model"):
        pydl.save_model(model, tmp_path / "m.npz", optimizer=stranger)
    assert not os.path.exists(tmp_path / "m.npz")


def test_save_rejects_unsupported_values(tmp_path):
    with pytest.raises(TypeError, match="dict, Module or Optimizer"):
        pydl.save(np.ones(3), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="'a.b'"):
        pydl.save({"a": {"b": object()}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dtype object"):
        pydl.save({"o": np.array([{}], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="'a.b'"):
        pydl.save({"a.b": np.ones(1), "a": {"b": np.ones(1)}}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


# --- atomicity --------------------------------------------------------------------------------

def test_failed_replace_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    old = make_model(seed=1)
    pydl.save(old, path)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        pydl.save(make_model(seed=2), path)
    monkeypatch.undo()
    assert_state_equal(old.state_dict(), pydl.load(path))
    assert os.listdir(tmp_path) == ["w.npz"]


def test_writer_crash_mid_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = make_model(seed=1)
    pydl.save_model(old, path)
    real_write = np.lib.format.write_array
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # BaseException: the temp file must still be removed
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        pydl.save_model(make_model(seed=2), path)
    monkeypatch.undo()
    assert_state_equal(old.state_dict(), pydl.load_model(path).state_dict())
    assert os.listdir(tmp_path) == ["m.npz"]


CHILD = textwrap.dedent("""
    import os, sys, numpy as np
    sys.path.insert(0, {root!r})
    import pydl
    path, mode = sys.argv[1], sys.argv[2]
    state = {{"w": np.zeros((1500, 1500), np.float32), "b": np.zeros(1500, np.float32)}}
    pydl.save(state, path)
    if mode == "exit":
        real = np.lib.format.write_array
        def die(fp, arr, **kw):
            real(fp, arr[: len(arr) // 2], **kw)   # half of the data, then the process dies
            os._exit(3)
        np.lib.format.write_array = die
        pydl.save({{"w": np.ones((1500, 1500), np.float32), "b": np.ones(1500, np.float32)}},
                  path)
    else:
        print("ready", flush=True)
        for k in range(1, 10 ** 6):
            pydl.save({{"w": np.full((1500, 1500), k, np.float32),
                       "b": np.full(1500, k, np.float32)}}, path)
""")


def run_child(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=ROOT))
    path = tmp_path / "big.npz"
    return path, subprocess.Popen([sys.executable, str(script), str(path), mode],
                                  stdout=subprocess.PIPE, text=True)


def test_process_exit_during_save_leaves_previous_file(tmp_path):
    path, proc = run_child(tmp_path, "exit")
    assert proc.wait(timeout=120) == 3
    state = pydl.load(path)
    assert not state["w"].any() and not state["b"].any()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_repeated_saves_leaves_a_complete_file(tmp_path):
    path, proc = run_child(tmp_path, "kill")
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.7)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    state = pydl.load(path)
    k = state["b"][0]
    assert np.all(state["w"] == k) and np.all(state["b"] == k)


# --- validation of damaged and foreign files --------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    model = make_model()
    path = tmp_path / "m.npz"
    pydl.save_model(model, path, optimizer=optim.Adam(model.parameters()))
    return path


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_file_raises_value_error(saved, keep):
    data = saved.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) - 1)
    saved.write_bytes(data[:n])
    with pytest.raises(ValueError, match="not a valid .npz|cannot read key"):
        pydl.load(saved)
    with pytest.raises(ValueError):
        pydl.load_model(saved)


def test_flipped_byte_in_member_is_detected(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("model.0.weight.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the stored array data: CRC mismatch
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.0.weight"):
        pydl.load(saved)


def test_non_npz_files_raise_value_error(tmp_path):
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="not a valid .npz"):
        pydl.load(garbage)
    npy = tmp_path / "a.npz"
    npy.write_bytes(npy_bytes(np.ones(3)))
    with pytest.raises(ValueError, match="not a valid .npz"):
        pydl.load(npy)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.ones(3))
    with pytest.raises(ValueError, match="__pydl__"):
        pydl.load(plain)
    with pytest.raises(FileNotFoundError):
        pydl.load(tmp_path / "missing.npz")


def test_object_array_is_rejected_without_unpickling(tmp_path, saved):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    members = read_members(saved)
    members["model.0.bias.npy"] = npy_bytes(np.array([Evil()], dtype=object), allow_pickle=True)
    write_members(saved, members)
    with pytest.raises(ValueError, match="model.0.bias"):
        pydl.load(saved)
    with pytest.raises(ValueError, match="model.0.bias"):
        pydl.load_model(saved)
    assert not marker.exists()


def test_missing_and_extra_keys_are_named(saved):
    members = read_members(saved)
    del members["model.2.bias.npy"]
    write_members(saved, members)
    with pytest.raises(ValueError, match="missing key 'model.2.bias'"):
        pydl.load(saved)
    members["model.2.bias.npy"] = npy_bytes(np.zeros(8, np.float32))
    members["sneaky.npy"] = npy_bytes(np.zeros(1))
    write_members(saved, members)
    with pytest.raises(ValueError, match="unexpected key.*sneaky"):
        pydl.load(saved)


@pytest.mark.parametrize("replacement, problem", [
    (np.zeros((16, 5), np.float32), "shape"),
    (np.zeros((16, 6), np.float64), "dtype"),
    (np.zeros((16, 6), "U1"), "dtype"),
])
def test_wrong_shape_or_dtype_is_named(saved, replacement, problem):
    members = read_members(saved)
    members["model.0.weight.npy"] = npy_bytes(replacement)
    write_members(saved, members)
    with pytest.raises(ValueError, match=f"'model.0.weight'.*{problem}|{problem}.*model.0.weight"):
        pydl.load_model(saved)


def test_weights_not_matching_architecture_are_named(saved):
    def shrink(header):
        header["architecture"]["layers"][0][1]["out_features"] = 15
        return header

    edit_header(saved, shrink)
    with pytest.raises(ValueError, match="'model.0.weight'"):
        pydl.load_model(saved)


@pytest.mark.parametrize("edit, message", [
    (lambda h: b"{not json", "not valid JSON"),
    (lambda h: dict(h, version=99), "version 99"),
    (lambda h: dict(h, format="other"), "not a pydl header"),
    (lambda h: dict(h, tree={"type": "pickle", "key": "x"}), "unknown entry type 'pickle'"),
    (lambda h: dict(h, content="tree"), "holds no architecture"),
])
def test_bad_header_raises_value_error(saved, edit, message):
    edit_header(saved, edit)
    with pytest.raises(ValueError, match=message):
        pydl.load_model(saved)


@pytest.mark.parametrize("layer, message", [
    ({"type": "ConvTranspose2d", "channels": 3}, "unknown layer type 'ConvTranspose2d'"),
    ({"type": "Conv2d", "channels": 3}, "Conv2d needs exactly the fields \\['config', 'type'\\]"),
    ({"type": "Conv2d", "config": {"in_channels": 1}}, "Conv2d config .* incomplete"),
    ({"type": "Dropout", "p": 1.5}, "Dropout"),
    ({"type": "Dropout", "p": "0.1"}, "invalid value"),
    ({"type": "ReLU", "inplace": True}, "exactly the fields"),
    ({"type": "Linear", "in_features": 8, "out_features": 3, "bias": True, "dtype": "object"},
     "invalid value"),
    ("ReLU", "object with a 'type'"),
])
def test_bad_architecture_raises_value_error(saved, layer, message):
    def replace(header):
        header["architecture"]["layers"][1][1] = layer
        return header

    edit_header(saved, replace)
    with pytest.raises(ValueError, match=message):
        pydl.load_model(saved)


def test_bad_optimizer_entry_raises_value_error(saved):
    def rename(header):
        header["optimizer"]["type"] = "RMSprop"
        return header

    edit_header(saved, rename)
    assert isinstance(pydl.load_model(saved), nn.Sequential)  # weights alone still load
    with pytest.raises(ValueError, match="unknown type 'RMSprop'"):
        pydl.load_model(saved, with_optimizer=True)


def test_loading_a_mismatched_checkpoint_leaves_the_model_unchanged(tmp_path):
    pydl.save(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)), tmp_path / "w.npz")
    model = make_model()
    before = model.state_dict()
    with pytest.raises(ValueError, match="'2.weight'"):
        model.load_state_dict(pydl.load(tmp_path / "w.npz"), strict=False)
    assert_state_equal(before, model.state_dict())


# --- hostile files: bombs, FIFOs, devices (issue 15, items 1) --------------------------------

def zeros_member(zf, name, nbytes, method):
    """Write `nbytes` of zeros as member `name`, streamed in 1 MiB pieces (never in memory)."""
    piece = bytes(1 << 20)
    info = zipfile.ZipInfo(name)
    info.compress_type = method
    with zf.open(info, "w", force_zip64=True) as out:
        for lo in range(0, nbytes, len(piece)):
            out.write(piece[:min(len(piece), nbytes - lo)])


def peak_python_memory(fn):
    """Run fn; return (its exception or None, peak bytes allocated through Python meanwhile)."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        err = None
    except Exception as e:  # noqa: BLE001 - the caller inspects it
        err = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return err, peak


@pytest.mark.timeout(60)
def test_an_extra_member_that_inflates_to_256_mib_is_refused_before_inflating(saved):
    members = read_members(saved)
    with zipfile.ZipFile(saved, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zeros_member(zf, "junk.npy", 256 << 20, zipfile.ZIP_DEFLATED)
    assert saved.stat().st_size < 2 << 20  # a small file
    start = time.perf_counter()
    err, peak = peak_python_memory(lambda: pydl.load_model(saved))
    assert isinstance(err, ValueError) and "unexpected key(s) ['junk']" in str(err)
    assert peak < 8 << 20, peak  # nothing inflated (the old loader inflated all 256 MiB first)
    assert time.perf_counter() - start < 2.0


@pytest.mark.timeout(60)
def test_a_described_member_that_is_a_deflate_bomb_is_refused(saved):
    members = read_members(saved)
    with zipfile.ZipFile(saved, "w") as zf:
        for name, data in members.items():
            if name != "model.0.weight.npy":
                zf.writestr(name, data)
        zeros_member(zf, "model.0.weight.npy", 256 << 20, zipfile.ZIP_DEFLATED)
    err, peak = peak_python_memory(lambda: pydl.load(saved))
    assert isinstance(err, ValueError) and "'model.0.weight' is compressed" in str(err)
    assert peak < 8 << 20, peak


def test_an_npy_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    # Header and npy header agree on a (2**31, 4) float32 array (32 GiB), the member holds 16
    # bytes: refused from the zip directory's size, nothing allocated.
    path = tmp_path / "huge.npz"
    pydl.save({"w": np.zeros((1, 4), np.float32)}, path)

    def claim_huge(header):
        header["tree"]["items"][0][1]["shape"] = [2 ** 31, 4]
        return header

    edit_header(path, claim_huge)
    members = read_members(path)
    npy = npy_bytes(np.zeros((1, 4), np.float32)).replace(b"(1, 4)", b"(2147483648, 4)")
    members["w.npy"] = npy
    write_members(path, members)
    err, peak = peak_python_memory(lambda: pydl.load(path))
    assert isinstance(err, ValueError) and "'w'" in str(err) and "zip directory" in str(err)
    assert peak < 8 << 20, peak


@pytest.mark.timeout(20)
def test_a_fifo_or_a_device_fails_fast_with_a_clear_message(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)  # no writer: the old loader blocked forever in open()
    for path in (fifo, "/dev/zero"):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="not a regular file"):
            pydl.load_model(path)
        assert time.perf_counter() - start < 1.0
    with pytest.raises(IsADirectoryError):
        pydl.load(tmp_path)


# --- saving over existing files, links and long names (issue 15, items 4 and 5) ---------------

def test_saving_over_a_file_keeps_its_permission_bits(tmp_path):
    path = tmp_path / "secret.npz"
    pydl.save_model(make_model(seed=1), path)
    for mode in (0o600, 0o640, 0o604):
        os.chmod(path, mode)
        pydl.save_model(make_model(seed=2), path)
        assert os.stat(path).st_mode & 0o777 == mode
    old_umask = os.umask(0o077)  # a new file still follows the umask
    try:
        pydl.save(make_model(), tmp_path / "new.npz")
    finally:
        os.umask(old_umask)
    assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o600


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "store" / "model.npz"
    real.parent.mkdir()
    pydl.save(make_model(seed=1), real)
    os.chmod(real, 0o600)
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    new = make_model(seed=2)
    pydl.save(new, link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert os.stat(real).st_mode & 0o777 == 0o600
    assert_state_equal(new.state_dict(), pydl.load(real))
    assert sorted(os.listdir(real.parent)) == ["model.npz"]  # no temporary file left behind


def test_saving_over_a_hard_link_replaces_the_file_as_documented(tmp_path):
    path, other = tmp_path / "a.npz", tmp_path / "b.npz"
    old = make_model(seed=1)
    pydl.save(old, path)
    os.link(path, other)
    new = make_model(seed=2)
    pydl.save(new, path)  # atomic replace: a new file; the other link keeps the old contents
    assert_state_equal(new.state_dict(), pydl.load(path))
    assert_state_equal(old.state_dict(), pydl.load(other))


def test_saving_onto_a_fifo_is_refused_and_leaves_it(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        pydl.save(make_model(), fifo)
    assert stat_is_fifo(fifo) and os.listdir(tmp_path) == ["pipe.npz"]


def stat_is_fifo(path):
    import stat
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def test_a_255_byte_file_name_works_and_errors_name_the_file(tmp_path):
    name = "m" * 251 + ".npz"  # 255 bytes, the usual NAME_MAX
    model = make_model(seed=3)
    pydl.save_model(model, tmp_path / name)
    assert_state_equal(model.state_dict(), pydl.load_model(tmp_path / name).state_dict())
    assert os.listdir(tmp_path) == [name]
    missing_dir = tmp_path / "no" / "such" / "dir" / "m.npz"
    with pytest.raises(FileNotFoundError, match="m.npz"):
        pydl.save(model, missing_dir)


def test_bytes_and_pathlike_paths_work(tmp_path):
    model = make_model(seed=4)

    class PathLike:
        def __fspath__(self):
            return str(tmp_path / "p.npz")

    for path in (os.fsencode(tmp_path / "b.npz"), PathLike(), tmp_path / "q.npz"):
        pydl.save_model(model, path)
        assert_state_equal(model.state_dict(), pydl.load_model(path).state_dict())
        pydl.save(model, path)
        assert_state_equal(model.state_dict(), pydl.load(path))


def test_save_model_records_each_modules_mode(tmp_path):
    # Only the model's flag was saved: a batch norm kept in eval mode came back in training.
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Linear(4, 2),
                                                                      nn.Dropout(0.5)))
    m.train()
    m[1].eval()
    m[2][1].eval()
    pydl.save_model(m, tmp_path / "m.npz")
    loaded = pydl.load_model(tmp_path / "m.npz")
    assert [t for _, t in nn._modes_of(loaded)] == [t for _, t in nn._modes_of(m)]
    m.eval()
    m[2].train()  # an eval model with one block in training, its dropout in eval
    m[2][1].eval()
    pydl.save_model(m, tmp_path / "m.npz")
    loaded = pydl.load_model(tmp_path / "m.npz")
    assert [t for _, t in nn._modes_of(loaded)] == [t for _, t in nn._modes_of(m)]
