"""API fuzzing: schemathesis against the running api's OpenAPI — the admin API and every
webhook source (``tests/fuzz/plugins.toml`` configures them all) — finds no 5xx.
The same command is in the README's development section."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ClusterFactory

FUZZ_CONFIG = Path(__file__).parents[1] / "fuzz" / "plugins.toml"


def test_schemathesis_finds_no_server_error(make_cluster: ClusterFactory, tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    shutil.copy(FUZZ_CONFIG, config)
    hub = make_cluster(config, admin_token="fuzz-admin")
    hub.start_redis()
    hub.start_api()
    run = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{hub.base_url}/openapi.json",
         "-H", "Authorization: Bearer fuzz-admin", "--checks", "not_a_server_error",
         "--max-examples", "60", "--no-color", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("Test cases:")[-1].split("\n")[1]
    log = (hub.logs / "api.log").read_text()
    assert "Traceback" not in log, log[-3000:]
