"""The container image's install step, without Docker: the wheel plus containers/requirements.txt
in a clean venv (no system site-packages), then both entrypoints run from outside the repository
against moto server and DynamoDB Local. Proves the wheel holds everything the entrypoints import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.aws.stack import Stack, order_csv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# No PYTHONPATH, no virtualenv of the test run: only what the image would have.
CLEAN_ENV = {
    k: os.environ[k] for k in ("PATH", "HOME", "PIP_INDEX_URL", "PIP_CACHE_DIR") if k in os.environ
}
ROWS = [
    ("ORD1", "C1", "2025-07-06", "Electronics", "P1", 2, "199.99", "false"),
    ("ORD2", "C2", "2025-07-06", "Books", "P2", 1, "29.99", "true"),
]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the image: a clean venv with the wheel, and the scripts."""
    root = tmp_path_factory.mktemp("image")
    t0 = time.perf_counter()
    # What the Dockerfile's builder stage copies, and nothing else (no in-tree build dirs).
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "engine", src / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(src),
        ],
        check=True,
        cwd=root,
        env=CLEAN_ENV,
    )
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root / "venv")
    py = root / "venv" / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", *map(str, wheels.glob("*.whl"))], check=True, env=CLEAN_ENV)
    subprocess.run(
        [*pip, "-r", str(REPO / "containers" / "requirements.txt")], check=True, env=CLEAN_ENV
    )
    app = root / "app"  # the image's WORKDIR; the scripts go where the Dockerfile puts them
    (app / "containers").mkdir(parents=True)
    for script in ("validator.py", "transformer.py", "reprocess.py"):
        shutil.copy(REPO / "containers" / script, app / "containers" / script)
    print(f"image install step: {time.perf_counter() - t0:.1f} s")
    return root


def run_script(root: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    return subprocess.run(
        [str(root / "venv" / "bin" / "python"), f"containers/{script}"],
        cwd=root / "app",
        env={**CLEAN_ENV, **keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_installed_wheel_runs_both_entrypoints(image_root: Path, stack: Stack) -> None:
    probe = subprocess.run(
        [
            str(image_root / "venv" / "bin" / "python"),
            "-c",
            "import engine, sys; print(engine.__file__); print(sys.flags.no_user_site)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=image_root / "app",
        env=CLEAN_ENV,
    )
    assert "site-packages" in probe.stdout and str(REPO) not in probe.stdout

    key = "incoming/July 6+7 ü.csv"
    stack.upload(key, order_csv(ROWS))
    v = run_script(image_root, "validator.py", stack.env(key))
    assert v.returncode == 0, v.stdout + v.stderr
    t = run_script(image_root, "transformer.py", stack.env(key))
    assert t.returncode == 0, t.stdout + t.stderr
    lines = [json.loads(line) for line in t.stdout.splitlines()]
    steps = [line["step"] for line in lines if "step" in line]
    assert steps[:2] == ["read_cleaned", "lake_write"] and "publish" in steps
    assert all("duration_ms" in line for line in lines if "step" in line)
    assert t.stderr == ""
    assert len(stack.items(stack.category_table)) == 2

    bad = "incoming/bad.csv"
    stack.upload(bad, order_csv([("X1", "", "2025/07/06", "Toys", "P", 0, "-1", "maybe")]))
    r = run_script(image_root, "validator.py", stack.env(bad))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    json.loads(r.stdout.splitlines()[-1])  # every line is JSON

    env = stack.env(key)
    del env["S3_CLEANED_BUCKET"]
    c = run_script(image_root, "transformer.py", env)
    assert c.returncode == 2 and "S3_CLEANED_BUCKET" in c.stdout


def test_template_commands_match_where_the_dockerfile_puts_the_scripts() -> None:
    from cfnlint.decode import decode

    template, _ = decode(str(REPO / "orchestration" / "template.yaml"))
    assert template is not None
    commands = sorted(
        tuple(c["Command"])
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
    )
    assert commands == [("python", "containers/reprocess.py"),
                        ("python", "containers/transformer.py"),
                        ("python", "containers/validator.py")]
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile
    assert "containers/validator.py containers/transformer.py ./containers/" in dockerfile
    assert "containers/reprocess.py ./containers/" in dockerfile
    assert "ENTRYPOINT" not in dockerfile  # the task definition's command is the whole command


def test_the_wheel_s_order_kpis_script_sets_its_signal_handlers_before_the_rest(
        image_root: Path) -> None:
    """The console script is ``engine.console:entry``, whose handlers are set before the
    command line's modules are imported (~0.03 s sooner than ``engine.cli`` could)."""
    script = image_root / "venv" / "bin" / "order-kpis"
    assert "from engine.console import entry" in script.read_text(encoding="utf-8")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                       cwd=image_root / "app", env=CLEAN_ENV, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("order-kpis "), r.stdout + r.stderr
