"""The published numbers travel with the package: a wheel built from this checkout, installed
elsewhere, reads them without the repository."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_installed_wheel_reads_the_published_tables(tmp_path):
    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    # A clean copy: a build/ folder left in the checkout could carry stale modules into the wheel.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                    "-w", str(wheels)], check=True, capture_output=True, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True, cwd=tmp_path)
    probe = ("import llava_patch.paper.published as p; "
             "print(p.__file__); print(len(p.load_published()), len(p.load_efficiency()))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    location, counts = result.stdout.split("\n")[:2]
    assert location.startswith(str(target))  # the installed copy, not this checkout
    assert counts == "815 77"
