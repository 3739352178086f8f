"""Kernel cache: keyed by everything that changes the code, atomic, corrupt entries rebuilt
(also truncated libraries with matching checksums, also in a read-only cache), stale temporaries
swept, and a second process loads instead of compiling."""
import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
import tvm.s_tir as s_tir

from dynfilter_tvm import build as build_mod, cache, dispatch, registry
from dynfilter_tvm.build import build, plan, schedule
from dynfilter_tvm.files import sha256_file
from dynfilter_tvm.target import cpu_target, target_name
from dynfilter_tvm.workload import Workload

PARAMS = dict(B=1, C=3, H=7, W=9, G=1, k=3, s=1, d=1, combine="mul")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNFILTER_TVM_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_memory", {})
    monkeypatch.setattr(cache, "stats", dict.fromkeys(cache.stats, 0))
    return tmp_path


def _run_fwd(fn):
    x = torch.randn(1, 1, 3, 7, 9)
    s = torch.randn(1, 1, 3, 3, 7, 9)
    c = torch.randn(1, 1, 3, 3, 3)
    out = torch.empty(1, 1, 3, 7, 9)
    fn(x, s, c, out)
    from torch_bridge.reference import ddf_reference
    ref = ddf_reference(x.view(1, 3, 7, 9), c.view(1, 3, 3, 3), s.view(1, 9, 7, 9))
    torch.testing.assert_close(out.view(1, 3, 7, 9), ref)


def _entry_files(root):
    libs = sorted(root.rglob("*.so"))
    assert len(libs) == 1
    return libs[0], libs[0].with_suffix(".json")


def test_build_then_memory_then_disk(fresh_cache):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    _run_fwd(cache.get(wl, tgt))
    assert cache.stats["built"] == 1
    cache.get(wl, tgt)
    assert cache.stats["memory_hits"] == 1
    cache.clear_memory()
    _run_fwd(cache.get(wl, tgt))
    assert cache.stats == {"built": 1, "disk_hits": 1, "memory_hits": 1, "rejected": 0}
    lib, meta = _entry_files(fresh_cache)
    assert lib.parent.name.startswith("llvm-")
    key = json.loads(meta.read_text())["key"]
    # keyed by the build serving the call: the generic kernel by default on CPU
    assert key["tvm"] == tvm.__version__ and key["workload"] == dispatch.select(wl, tgt).to_json()
    assert key["workload"]["params"]["H"] is None
    assert key["schedule"].startswith("default:") and "mcpu" in key["target"]
    assert not list(fresh_cache.rglob("*.tmp*")), "temporary files left behind"


def test_workloads_equal_exactly_when_their_keys_are():
    """1, 1.0 and True are equal in Python but key (and build) differently: memory hits, keyed
    by the Workload object, must not mix them up."""
    made = [Workload.make("ddf", "fwd", dict(PARAMS, d=v), "float32") for v in (1, 1.0, True)]
    made += [Workload.make("x", "y", {"t": t}, "float32") for t in ((1, 2), (1.0, 2), [1, 2])]
    for a in made:
        for b in made:
            assert (a == b) == (a.key() == b.key()), (a.key(), b.key())
            assert hash(a) == hash(b) or a != b
    assert made[0] == Workload.from_json(json.loads(made[0].key())) and made[3] == made[5]


def test_memory_hit_is_not_served_to_an_equal_valued_workload(fresh_cache):
    tgt = cpu_target()
    fn = cache.get(Workload.make("ddf", "fwd", PARAMS, "float32"), tgt)
    try:  # d = 1.0 keys differently (and does not build: a float loop extent)
        other = cache.get(Workload.make("ddf", "fwd", dict(PARAMS, d=1.0), "float32"), tgt)
    except Exception:
        other = None
    assert other is not fn


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign_key", "missing_meta", "bad_json"])
def test_damaged_entry_is_rebuilt(fresh_cache, damage):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    cache.get(wl, tgt)
    lib, meta = _entry_files(fresh_cache)
    if damage == "truncate":
        lib.write_bytes(lib.read_bytes()[:100])
    elif damage == "garbage":
        data = bytearray(lib.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = os.urandom(64)
        lib.write_bytes(bytes(data))
    elif damage == "foreign_key":
        m = json.loads(meta.read_text())
        m["key"]["tvm"] = "0.0.0"
        meta.write_text(json.dumps(m))
    elif damage == "missing_meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    cache.clear_memory()
    _run_fwd(cache.get(wl, tgt))
    assert cache.stats["built"] == 2 and cache.stats["disk_hits"] == 0
    assert cache.stats["rejected"] == (0 if damage == "missing_meta" else 1)
    cache.clear_memory()
    cache.get(wl, tgt)  # the rebuilt entry is intact
    assert cache.stats["disk_hits"] == 1


def test_read_only_cache_with_bad_entry_builds_in_memory(fresh_cache, monkeypatch, caplog):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    cache.get(wl, tgt)
    lib, meta = _entry_files(fresh_cache)
    lib.write_bytes(b"garbage")
    cache.clear_memory()
    # We run as root, where chmod does not stop writes: the folder refuses deletes and writes instead.
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).startswith(str(fresh_cache)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_unlink(path, *args, **kwargs)

    writes = []

    def atomic_write(path, write):
        writes.append(path)
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(cache, "atomic_write", atomic_write)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        _run_fwd(cache.get(wl, tgt))
    assert cache.stats["built"] == 2 and cache.stats["rejected"] == 1
    assert writes == [], "tried to store into a folder that refused a delete"
    assert len(caplog.records) == 1 and "cannot be deleted" in caplog.text
    assert lib.read_bytes() == b"garbage" and meta.exists()
    _run_fwd(cache.get(wl, tgt))  # from memory now
    assert cache.stats["memory_hits"] == 1


def test_stale_temporaries_are_deleted_fresh_ones_kept(fresh_cache):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    folder = fresh_cache / target_name(tgt)
    folder.mkdir()
    # Named as files.atomic_write names them; a killed build leaves them behind.
    old, fresh = folder / ".0123abcd.so.k3j4h5g6.tmp.so", folder / ".0123abcd.json.a1b2c3d4.tmp.json"
    for tmp in (old, fresh):
        tmp.write_bytes(b"partial")
    past = time.time() - cache.STALE_TMP_AGE_S - 60
    os.utime(old, (past, past))
    cache.get(wl, tgt)
    assert not old.exists(), "stale temporary left behind"
    assert fresh.exists(), "deleted a temporary another process may be writing"


@pytest.mark.parametrize("size", ["recorded", "rewritten", "absent"])
def test_truncated_library_with_matching_checksum_is_rebuilt(fresh_cache, size):
    """dlopen of this library dies of SIGBUS: it runs in a child so a crash fails the test only."""
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    cache.get(wl, tgt)
    lib, meta = _entry_files(fresh_cache)
    full = lib.stat().st_size
    lib.write_bytes(lib.read_bytes()[:full // 2])
    m = json.loads(meta.read_text())
    m["sha256"] = sha256_file(lib)  # a torn write or tampering the checksum cannot catch
    if size == "rewritten":
        m["size"] = full // 2
    elif size == "absent":  # metadata from before sizes were recorded
        m.pop("size", None)
    meta.write_text(json.dumps(m))
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from test_cache import PARAMS, _run_fwd; from dynfilter_tvm import cache;"
        "from dynfilter_tvm.target import cpu_target; from dynfilter_tvm.workload import Workload;"
        "_run_fwd(cache.get(Workload.make('ddf', 'fwd', PARAMS, 'float32'), cpu_target()));"
        "print(cache.stats['rejected'], cache.stats['built'])"
    )
    env = dict(os.environ, DYNFILTER_TVM_CACHE=str(fresh_cache))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"child died ({run.returncode}): {run.stderr[-2000:]}"
    assert run.stdout.split() == ["1", "1"]
    assert lib.stat().st_size == full and json.loads(meta.read_text())["size"] == full


def test_entry_without_recorded_size_still_loads(fresh_cache):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    cache.get(wl, tgt)
    _, meta = _entry_files(fresh_cache)
    m = json.loads(meta.read_text())
    m.pop("size", None)
    meta.write_text(json.dumps(m))
    cache.clear_memory()
    _run_fwd(cache.get(wl, tgt))
    assert cache.stats["disk_hits"] == 1 and cache.stats["rejected"] == 0


def test_key_changes_with_everything_that_changes_code(monkeypatch):
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    base = cache.full_key(wl, tgt, "default:aaaa")
    variants = [
        cache.full_key(Workload.make("ddf", "fwd", dict(PARAMS, W=10), "float32"), tgt, "default:aaaa"),
        cache.full_key(Workload.make("ddf", "fwd", dict(PARAMS, combine="add"), "float32"), tgt, "default:aaaa"),
        cache.full_key(Workload.make("ddf", "fwd", PARAMS, "float16"), tgt, "default:aaaa"),
        cache.full_key(Workload.make("ddf", "dx", PARAMS, "float32"), tgt, "default:aaaa"),
        cache.full_key(wl, cpu_target(mcpu="skylake"), "default:aaaa"),
        cache.full_key(wl, cpu_target(num_cores=64), "default:aaaa"),
        cache.full_key(wl, tgt, "default:bbbb"),
    ]
    assert base["pipeline"] == build_mod.pipeline_digest()  # the TIR pipeline's code (launch bounds)
    monkeypatch.setattr(cache, "pipeline_digest", lambda: "0" * 16)
    variants.append(cache.full_key(wl, tgt, "default:aaaa"))
    digests = {cache._digest(k) for k in [base, *variants]}
    assert len(digests) == len(variants) + 1


def test_schedule_id_follows_schedule_source(monkeypatch):
    import schedules
    wl, tgt = Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()
    _, before = schedule(wl, tgt)
    assert plan(wl, tgt)[0] == before
    monkeypatch.setattr(schedules.inspect, "getsource", lambda mod: "edited = 'source'")
    _, after = schedule(wl, tgt)
    assert before != after == plan(wl, tgt)[0]


def test_code_digest_follows_code_not_comments(tmp_path, monkeypatch):
    """A comment or docstring edit keeps the digest (shipped bundles and caches stay valid);
    any edit to the code changes it."""
    import importlib
    import schedules
    monkeypatch.syspath_prepend(str(tmp_path))
    versions = {
        "base": 'def f(x):\n    """Doc."""\n    return x + 1\n',
        "comments": '# a comment\ndef f(x):\n    """Other doc."""\n    return x + 1  # why\n',
        "nodoc": 'def f(x):\n    return x + 1\n',
        "code": 'def f(x):\n    """Doc."""\n    return x + 2\n',
        "docless_code": 'def f(x):\n    return "Doc."\n',
    }
    digests = {}
    for name, text in versions.items():
        (tmp_path / f"digest_{name}.py").write_text(text)
        digests[name] = schedules.code_digest(importlib.import_module(f"digest_{name}"))
    assert digests["base"] == digests["comments"] == digests["nodoc"]
    assert len({digests["base"], digests["code"], digests["docless_code"]}) == 3


# Python 3.11's ast.dump of this source, docstrings dropped: the reference text of the digest on
# every Python (bundles, caches and tuning logs carry the hashes between machines; a GPU machine
# with Python 3.12 found every kernel of the shipped bundle "stale" when ast.dump itself was hashed).
DIGEST_SOURCE = 'def f(a, *, b=None):\n    """Doc."""\n    return f"{a!r}:{b}", None\nclass C(B):\n    x: int = 1\n'
DIGEST_TEXT = (
    "Module(body=[FunctionDef(name='f', args=arguments(posonlyargs=[], args=[arg(arg='a')], kwonlyargs=[arg(arg='b')], "
    "kw_defaults=[Constant(value=None)], defaults=[]), body=[Return(value=Tuple(elts=[JoinedStr(values=["
    "FormattedValue(value=Name(id='a', ctx=Load()), conversion=114), Constant(value=':'), FormattedValue(value="
    "Name(id='b', ctx=Load()), conversion=-1)]), Constant(value=None)], ctx=Load()))], decorator_list=[]), "
    "ClassDef(name='C', bases=[Name(id='B', ctx=Load())], keywords=[], body=[AnnAssign(target=Name(id='x', "
    "ctx=Store()), annotation=Name(id='int', ctx=Load()), value=Constant(value=1), simple=1)], decorator_list=[])], "
    "type_ignores=[])")


def test_code_digest_text_is_the_same_on_every_python():
    import ast

    import schedules
    assert schedules._tree_text(DIGEST_SOURCE) == DIGEST_TEXT
    if sys.version_info[:2] == (3, 11):  # the reference format: equal to ast.dump for every module we ship
        root = Path(schedules.__file__).parents[1]
        for path in [*root.glob("dynfilter_tvm/**/*.py"), *root.glob("schedules/*.py")]:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
                    node.body = body[1:] or [ast.Pass()]
            assert schedules._tree_text(path.read_text()) == ast.dump(tree), path


def test_code_digest_ignores_what_newer_pythons_add():
    """3.12 gives every function and class an empty ``type_params`` field and leaves empty text
    parts in f-strings; neither may change the digest text."""
    import ast

    import schedules
    tree = ast.parse("def f(a):\n    return f'{a}'\n")
    fn = tree.body[0]
    joined = fn.body[0].value
    plain = schedules._dump(tree)
    newer = type("FunctionDef", (ast.FunctionDef,), {"_fields": (*ast.FunctionDef._fields, "type_params")})
    tree.body[0] = newer(**{f: getattr(fn, f) for f in ast.FunctionDef._fields}, type_params=[])
    joined.values = [ast.Constant(value=""), *joined.values, ast.Constant(value="")]
    assert schedules._dump(tree) == plain
    joined.values.append(ast.Constant(value="!"))  # real text still counts
    assert schedules._dump(tree) != plain


def test_cache_off_keeps_memory_only(fresh_cache, monkeypatch):
    monkeypatch.setenv("DYNFILTER_TVM_CACHE", "off")
    _run_fwd(cache.get(Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target()))
    assert not list(fresh_cache.rglob("*"))


def test_second_process_does_not_recompile(fresh_cache):
    script = (
        "import time, torch; t = time.perf_counter();"
        "from torch_bridge.functional import ddf; from dynfilter_tvm import cache;"
        "x = torch.randn(1, 3, 7, 9, requires_grad=True); c = torch.randn(1, 3, 3, 3, requires_grad=True);"
        "s = torch.randn(1, 9, 7, 9, requires_grad=True); ddf(x, c, s).sum().backward();"
        "print(cache.stats['built'], cache.stats['disk_hits'], time.perf_counter() - t)"
    )
    env = dict(os.environ, DYNFILTER_TVM_CACHE=str(fresh_cache))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    (built1, hits1, t1), (built2, hits2, t2) = [r.stdout.split() for r in runs]
    assert (built1, hits1) == ("4", "0")  # fwd + three gradient kernels
    assert (built2, hits2) == ("0", "4")
    print(f"cold first call {float(t1):.2f} s, warm (second process) {float(t2):.2f} s")


@pytest.mark.parametrize("kernel", ["fwd", "dx", "ds", "dc"])
@pytest.mark.parametrize("params", [PARAMS, dict(B=2, C=4, H=6, W=11, G=2, k=5, s=2, d=1, combine="add")],
                         ids=["s1", "s2"])
def test_default_schedule_equals_unscheduled(kernel, params):
    """Schedules change loops, never results: same numbers as the plain loop nest."""
    wl, tgt = Workload.make("ddf", kernel, params, "float32"), cpu_target()
    naive = build(wl, tgt, s_tir.Schedule(registry.prim_func(wl)).mod)
    fast = build(wl, tgt)
    rng = np.random.default_rng(0)
    tensors = registry.compute(wl)
    arrays = [rng.standard_normal([int(n) for n in t.shape]).astype("float32") for t in tensors[:-1]]
    outs = []
    for lib in (naive, fast):
        out = np.zeros([int(n) for n in tensors[-1].shape], "float32")
        # Through torch's allocator: TVM kernels expect 64-byte aligned buffers.
        args = [torch.from_numpy(a).clone() for a in arrays] + [torch.from_numpy(out).clone()]
        lib(*args)
        outs.append(args[-1].numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
