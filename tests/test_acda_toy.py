"""The ACDA toy pattern detection demo (torch_bridge.app.demo), on a small map and few steps."""
import math

import numpy as np
import pytest

from torch_bridge.app.demo import make_patterns, make_scene, run


def test_patterns_distinct():
    pats = make_patterns()
    assert sorted(pats) == [3, 5, 7]
    for k, ps in pats.items():
        assert len(ps) == 3
        for i, p in enumerate(ps):
            assert p.shape == (k, k) and set(np.unique(p)) <= {-1.0, 1.0}
            for q in ps[:i]:
                assert not np.array_equal(p, q) and not np.array_equal(p, -q)
    again = make_patterns()
    assert all(np.array_equal(a, b) for k in pats for a, b in zip(pats[k], again[k]))


def test_scene():
    pats = make_patterns()
    s = make_scene(size=100, n_patterns=25, shift=20, seed=3)
    x, t = s["x"], s["t"]
    assert x.shape == t.shape == (100, 100) and x.dtype == np.float32
    assert t.sum() == 25 and len(s["centres"]) == 25
    counts = {k: int((s["centres"][:, 2] == k).sum()) for k in (3, 5, 7)}
    assert counts == {3: 9, 5: 8, 7: 8}
    for r, c, k in s["centres"]:
        assert t[r, c] == 1
        patch = x[r - k // 2:r + k // 2 + 1, c - k // 2:c + k // 2 + 1]
        assert any(np.array_equal(patch, p) for p in pats[k])
    # non-overlapping: reserved squares (7x7 grown by one pixel) are disjoint
    cs = s["centres"][:, :2]
    d = np.abs(cs[:, None, :] - cs[None, :, :]).max(-1) + np.eye(len(cs), dtype=int) * 99
    assert d.min() >= 5
    # the shifted scene is the scene moved 20 px down-right
    np.testing.assert_array_equal(s["x_shift"][20:, 20:], x[:-20, :-20])
    np.testing.assert_array_equal(s["t_shift"][20:, 20:], t[:-20, :-20])
    assert s["t_shift"][:20].sum() == 0 and s["t_shift"][:, :20].sum() == 0


def test_short_run(tmp_path):
    png = tmp_path / "toy.png"
    res = run("cpu", steps=40, out_png=str(png), seed=1, size=40, n_patterns=6, shift=10,
              window=10, progress=False, verbose=False)
    assert png.exists() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("conv", "acda"):
        r = res[name]
        h = r["loss_history"]
        assert len(h) == r["steps"] >= 20 and all(math.isfinite(v) for v in h)
        assert np.mean(h[-5:]) < h[0]
        assert math.isfinite(r["mse"]) and math.isfinite(r["mse_shifted"])
        assert r["equivariant"], r["equivariance"]
        assert r["equivariance"]["rel_diff"] <= 1e-5
    assert res["acda"]["equivariance"]["max_abs_out"] > 0


def test_bad_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        run("cpu", steps=1, out_png=None, size=20, n_patterns=2, shift=4, optimizer="rmsprop",
            progress=False, verbose=False)
