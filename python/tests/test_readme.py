"""README's Python quick start, run as written (in a fresh directory)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def quick_start(heading="Use it from Python"):
    text = README.read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"one python block under {heading!r}"
    return blocks[0]


def test_readme_python_quick_start_works_as_written(tmp_path):
    out = subprocess.run([sys.executable, "-c", quick_start()], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    print(out.stdout)
    # What the comments in the block say it prints.
    assert lines[0] == "[1] [0.03278688]", lines[0]  # RRF: 1/61 + 1/61
    assert lines[1] == "[[1], [2]]"
    assert lines[2].startswith("[{'id': 1, 'payload': {") and lines[2].endswith(" 1")
    assert (tmp_path / "quiver-py-data").is_dir()


def test_readme_ray_quick_start_works_as_written(tmp_path):
    pytest.importorskip("ray")
    # Loopback only (see test_ray.py).
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    out = subprocess.run([sys.executable, "-c", quick_start("Scale out on Ray")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    print(out.stdout)
    assert lines[0] == "[1, 3] []", lines
    assert lines[1] == "3 3", lines
    assert (tmp_path / "quiver-sharded" / "quiver-shards.json").is_file()
