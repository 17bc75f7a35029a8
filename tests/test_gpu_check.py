"""benchmarks/gpu_check.py is run on a GPU machine only when one is lent, for a few minutes; its dry run
on the CPU keeps every step of it working in between (the engine's events, configs and the plain loops
it compares with), so that device time is never spent finding a broken script."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_through_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run",
                             "--profile-first-epoch", "mobilenet_v3_small", "--bounds"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "all checks passed" in output
    lines = output.splitlines()
    for model in ("resnet18", "mobilenet_v3_small"):  # the dry run's networks (gpu_check.CPU_DRY_RUN)
        row = next(line for line in lines if line.startswith(model + " "))
        figures = [float(value) for value in row.replace(" / ", " ").split()[1:]]
        assert len(figures) == 16 and all(value > 0 for value in figures), row  # 12 rates, 4 first steps
        bounds = lines[lines.index(row) + 1]
        assert bounds.split()[0] == "bounds:" and "the loaders alone" in bounds, bounds
    assert any(line.startswith("feature extraction mobilenet_v3_small: engine ") for line in lines)
    for loop in ("engine", "plain loop"):  # --profile-first-epoch: each loop's profile
        header = next(i for i, line in enumerate(lines)
                      if line.startswith(f"mobilenet_v3_small, {loop}, one epoch in a fresh process under cProfile"))
        assert "function calls" in lines[header + 1] and "Ordered by: internal time" in "\n".join(lines[header:])
    assert not list(tmp_path.glob("tl_gpu_*"))  # its generated photos and runs are gone
