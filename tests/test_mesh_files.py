"""Meshes the viewer opens (.glb, .gltf, .obj, .ply through trimesh): a broken file gives one
FieldkitError line, never a traceback or a hang.

The property tests flip bytes in, and cut short, a small valid .glb and .obj that trimesh
wrote: every mutant must either open (and be ready for the browser) or raise FieldkitError.
`FIELDKIT_FUZZ_EXAMPLES` sets the cases per format (default 100); the cases are derandomized,
so a run is repeatable.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from fieldkit.errors import FieldkitError

hypothesis = pytest.importorskip("hypothesis", reason="needs hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("FIELDKIT_FUZZ_EXAMPLES", "100"))
CASE_SECONDS = 10.0  # far above what a 1 kB mesh takes to open or refuse (milliseconds): more is a hang
MAX_FLIPS = 8


def valid_mesh_bytes(suffix: str) -> bytes:
    """The demo's blue box (8 vertices, 12 triangles, vertex colours), as trimesh writes it."""
    from fieldkit.viewer.demo import box_mesh

    data = box_mesh().export(file_type=suffix.lstrip("."))
    return data.encode() if isinstance(data, str) else data


@st.composite
def mutants(draw, original: bytes) -> bytes:
    """`original` with up to MAX_FLIPS bytes XORed with a non-zero value, then maybe cut short."""
    data = bytearray(original)
    flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=MAX_FLIPS))
    for position, mask in flips:
        data[position] ^= mask
    cut = draw(st.one_of(st.none(), st.integers(0, len(data) - 1)))
    mutated = bytes(data[:cut] if cut is not None else data)
    hypothesis.assume(mutated != original)
    return mutated


def open_for_the_browser(path):
    """What the viewer does with a mesh file: opens it and builds the GLB that the browser loads."""
    from fieldkit.viewer.assets import open_asset
    from fieldkit.viewer.native import mesh_glb

    asset = open_asset(path)
    assert len(mesh_glb(asset.model)) > 0
    return asset


def opens_or_refuses(path) -> str:
    """'opened' or 'refused' (FieldkitError, one line) within CASE_SECONDS; anything else raises, and
    fails the test."""
    started = time.monotonic()
    try:
        open_for_the_browser(path)
        outcome = "opened"
    except FieldkitError as error:
        assert "\n" not in str(error), f"a multi-line error: {error}"
        outcome = "refused"
    assert time.monotonic() - started < CASE_SECONDS, f"{path.name} took {time.monotonic() - started:.1f} s"
    return outcome


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_flipped_or_truncated_meshes_open_or_raise_one_error_line(suffix, tmp_path_factory):
    original = valid_mesh_bytes(suffix)
    folder = tmp_path_factory.mktemp(f"fuzz{suffix.replace('.', '-')}")
    outcomes = {"opened": 0, "refused": 0}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(mutants(original))
    def check(data: bytes) -> None:
        path = folder / f"mutant{suffix}"
        path.write_bytes(data)
        outcomes[opens_or_refuses(path)] += 1

    check()
    assert outcomes["refused"] > 0, "no mutant was refused: the mutations do not reach the parser"


def write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_the_unmutated_box_opens(suffix, tmp_path):
    assert opens_or_refuses(write(tmp_path, f"box{suffix}", valid_mesh_bytes(suffix))) == "opened"


@pytest.mark.parametrize("name, data, message", [
    ("empty.glb", b"", "empty"),
    ("empty.obj", b"", "empty"),
    ("empty.ply", b"", "empty"),
    ("blank.obj", "# nothing but a comment\n\n", "no triangles"),
    ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangles"),
    ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("inf.obj", "v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("text.glb", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "not a readable .glb mesh"),
    ("png.obj", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "no triangles to show; is it a .obj mesh"),
    ("faces.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "mesh"),
    ("json.gltf", "{\"asset\": {\"version\": \"2.0\"}, \"meshes\": [{}]}", "mesh"),
    ("garbage.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nend_header\n", "mesh"),
])
def test_empty_wrong_format_and_nan_meshes_give_one_error_line(tmp_path, name, data, message):
    with pytest.raises(FieldkitError, match=message) as caught:
        open_for_the_browser(write(tmp_path, name, data))
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_a_nan_vertex_in_a_glb_is_refused(tmp_path):
    from fieldkit.viewer.demo import box_mesh

    mesh = box_mesh()
    vertices = np.asarray(mesh.vertices).copy()
    vertices[3, 1] = np.nan
    mesh.vertices = vertices
    path = write(tmp_path, "nan.glb", mesh.export(file_type="glb"))
    with pytest.raises(FieldkitError, match="NaN or infinite"):
        open_for_the_browser(path)
