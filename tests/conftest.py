"""Shared fixtures: where the mocap data lives (never copied into the project) and the sample clips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"  # hand-written golden files of our own


def mocap_dir() -> Path:
    """``../shared/mocap`` beside the checkout, else ``$RTIK_MOCAP``."""
    here = REPO.parent / "shared" / "mocap"
    if here.is_dir():
        return here
    return Path(os.environ.get("RTIK_MOCAP", here))


@pytest.fixture(scope="session")
def mocap() -> Path:
    """The mocap folder; tests that need it are skipped where it is absent."""
    d = mocap_dir()
    if not d.is_dir():
        pytest.skip(f"mocap data not found at {d} (set RTIK_MOCAP)")
    return d


@pytest.fixture(scope="session")
def sample_clips(mocap) -> list[Path]:
    """The 20 sample BVH clips (validation split), sorted by name."""
    clips = sorted((mocap / "sample").glob("*.bvh"))
    if not clips:
        pytest.skip(f"no sample clips in {mocap / 'sample'}")
    return clips


@pytest.fixture(scope="session")
def pack_motion():
    """The mocap sample the test model pack's skeleton is built from (:func:`steppack.mocap_sample`), read once."""
    import steppack

    from rtik.formats import bvh

    path = steppack.mocap_sample()
    if path is None:
        pytest.skip("mocap sample not found")
    return bvh.read(path)


@pytest.fixture(scope="session")
def sample_motions(sample_clips):
    """Every sample clip read once per test session: ``[(path, Motion)]``."""
    from rtik.formats import bvh

    return [(p, bvh.read(p)) for p in sample_clips]


@pytest.fixture(scope="session")
def bandai_skeleton(sample_motions):
    """The 22-joint Bandai Namco skeleton (centimetres)."""
    return sample_motions[0][1].skeleton


@pytest.fixture(scope="session")
def pack():
    """The small random-weight test model pack of ``tests/steppack.py`` (built once, cached in ``cache/``)."""
    import steppack

    p = steppack.cached_pack()
    if p is None:
        pytest.skip("mocap sample not found (the test model pack's skeleton is built from it)")
    return p


@pytest.fixture(scope="session")
def ray_local():
    """One private local Ray cluster for the whole session, on 127.0.0.1 (rtik.serve.ray_cluster.connect: no
    dashboard, usage statistics off); skipped where Ray is not installed."""
    from rtik.serve import ray_cluster

    if not ray_cluster.available():
        pytest.skip("ray is not installed (pip install 'rtik[ray]')")
    ray = ray_cluster.connect(None, num_cpus=4)
    yield ray
    ray_cluster.shutdown()
