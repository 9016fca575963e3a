"""Shared fixtures: a tiny test plugin registered for the duration of a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.plugins import temporary_plugin

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker process per core already: a second intra-op thread per worker only makes
    # the two workers take turns on the cores (tests that measure threads set their own).
    # OMP_NUM_THREADS reaches the subprocesses the tests start and ONNX Runtime sessions
    # (deepseek.loader); threadpoolctl limits this process's BLAS.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


class TinyNet(torch.nn.Module):
    """A small MLP with no batch-dependent layers."""

    def __init__(self, n_in: int = 8, hidden: int = 16, n_out: int = 3) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TinyConv(torch.nn.Module):
    """A small CNN with a buffer (BatchNorm) for summary/size checks."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.head = torch.nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.head(y.mean(dim=(2, 3)))


@pytest.fixture
def tiny_plugin(tmp_path):
    """Registers models ``test-tiny`` (with packaged weights) and ``test-conv``, a reader, a
    metric and a pipeline, then removes them."""
    from deepseek.loader import save_model
    from deepseek.report import PipelineResult, Table

    torch.manual_seed(0)
    weights = save_model(TinyNet(), tmp_path / "weights" / "test-tiny.safetensors",
                         architecture="test-tiny", config={})

    class Plugin:
        __version__ = "9.9.9"

        @staticmethod
        @hookimpl
        def register_models(register):
            register("test-tiny", TinyNet, config={"n_in": 8, "hidden": 16, "n_out": 3},
                     weights=str(weights), description="tiny MLP for tests",
                     inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 8]}])
            register("test-conv", TinyConv, config={"channels": 4},
                     inputs=[{"name": "image", "dtype": "float32", "shape": [-1, 1, 8, 8]}])

        @staticmethod
        @hookimpl
        def register_readers(register):
            register("test-reader", lambda path: open(path).read(), description="reads text")

        @staticmethod
        @hookimpl
        def register_metrics(register):
            register("test-accuracy",
                     lambda p, r: {"accuracy": float((p == r).mean())})

        @staticmethod
        @hookimpl
        def register_pipelines(register):
            def pipeline(input=None, out_dir=None, quiet=False):
                return PipelineResult(pipeline="test-pipeline", title="Test pipeline",
                                      metrics={"score": 0.75},
                                      tables=[Table("rows", ["a", "b"], [[1, 2.5]])],
                                      input=str(input) if input else None)

            register("test-pipeline", pipeline, description="returns a fixed result")

    with temporary_plugin(Plugin, name="test-plugin"):
        yield Plugin


# ---------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def postgres_url():
    """A fresh database on a PostgreSQL server: the one ``$DEEPSEEK_TEST_POSTGRES_URL``
    names (``.ci/run`` starts one), or a throwaway cluster. Skipped with the reason when
    neither can be had, unless ``$DEEPSEEK_REQUIRE_POSTGRES=1`` (CI), which makes it fail."""
    import os
    import shutil
    import tempfile
    import uuid

    from .pg import start_postgres, stop_postgres

    server = None
    url = os.environ.get("DEEPSEEK_TEST_POSTGRES_URL")
    pg_dir = None
    if not url:
        # under /tmp itself: the postgres user cannot enter pytest's private folders
        pg_dir = Path(tempfile.mkdtemp(prefix="deepseek-pg-"))
        started = start_postgres(pg_dir)
        if isinstance(started, str):
            shutil.rmtree(pg_dir, ignore_errors=True)
            if os.environ.get("DEEPSEEK_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL is required here and could not be started: {started}")
            pytest.skip(f"no PostgreSQL server: {started}")
        url, server = started
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (the tune extra brings it)")
    name = f"deepseek_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("DEEPSEEK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {url} is required and unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unreachable: {exc}")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    base = url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()
        if server is not None:
            stop_postgres(server)
        if pg_dir is not None:
            shutil.rmtree(pg_dir, ignore_errors=True)
