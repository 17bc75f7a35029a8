"""Process settings for batch commands (core/cpu_settings.py), in child processes since they are
process-wide: a batch's large activations, freed and asked for again by the next batch, no longer cost a
page fault per page; OpenMP's idle threads sleep, unless the user chose otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

# {settings} sets ``kept`` (what to print beside the page faults) and whatever it changes in the process
BATCHES = """
import resource, sys
import torch
{settings}
torch.set_num_threads(1)
images, weights = torch.rand(32, 8, 112, 112), torch.rand(32, 8, 3, 3)
def batch():  # a convolution and two element-wise steps: 51 MB blocks, as in a network's first layers
    torch.relu(torch.nn.functional.conv2d(images, weights, padding=1) * 2 + 1)
for _ in range(3):  # the heap grows to its size
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    batch()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    script = BATCHES.format(settings="""
from tl_studio.core.cpu_settings import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False""")
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; elsewhere the call does nothing")
def test_the_next_batch_reuses_freed_memory_without_faulting_it_in_again():
    kept, faults_kept = _faults("keep")
    _, faults_default = _faults("default")
    assert kept == "True"
    # blocks over glibc's largest mmap threshold (32 MiB) go back to the system when freed and come again
    # page by page: about 50,000 faults a batch
    assert faults_default > 100_000 and faults_kept < faults_default / 5


WAIT_POLICY = """
import os, sys
from tl_studio.core.cpu_settings import let_waiting_threads_sleep
took = let_waiting_threads_sleep()
import torch
print(took, os.environ.get("OMP_WAIT_POLICY"), let_waiting_threads_sleep())
"""


@pytest.mark.parametrize("users, expected", [(None, "True PASSIVE False"), ("ACTIVE", "True ACTIVE False")])
def test_openmp_threads_sleep_when_idle_unless_the_user_chose(users, expected):
    import os

    env = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    if users:
        env["OMP_WAIT_POLICY"] = users
    out = subprocess.run([sys.executable, "-c", WAIT_POLICY], capture_output=True, text=True, check=True, env=env)
    # set before torch loads OpenMP; once torch is in, the call says it is too late and changes nothing
    assert out.stdout.split() == expected.split()


EVERY_COMMAND = BATCHES.format(settings="""
import gc
from tl_studio.entry import main
code = main(["scan", sys.argv[2]])  # any command, as `tl-studio` runs it; this one fails at once (no folder)
kept = (code, gc.get_freeze_count() > 1000)""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; elsewhere the call does nothing")
def test_every_command_keeps_freed_memory_and_leaves_its_objects_to_the_exit(tmp_path):
    assert "keep_freed_memory()" not in EVERY_COMMAND  # the command does it, not this script
    out = subprocess.run([sys.executable, "-c", EVERY_COMMAND, "cli", str(tmp_path / "missing")],
                         capture_output=True, text=True, check=True).stdout
    kept, faults = out.rsplit(None, 1)
    # the command failed (exit code 2) and still left the settings: its objects frozen, out of the
    # collection at exit, and the batches after it reuse freed memory (see the test above)
    assert kept == "(2, True)"
    assert int(faults) < 100_000


IN_A_LONGER_PROCESS = """
import gc, sys
from tl_studio.cli.main import main
before = gc.get_freeze_count()
main(["scan", sys.argv[1]])
print(gc.get_freeze_count() - before)
"""


def test_a_command_called_inside_a_longer_lived_process_leaves_its_settings_alone(tmp_path):
    out = subprocess.run([sys.executable, "-c", IN_A_LONGER_PROCESS, str(tmp_path / "missing")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0"]  # nothing frozen: the caller's later garbage stays collectable



OPTIMIZERS = """
import sys
import torch
from tl_studio.core.cpu_settings import optimizers_without_dynamo
took = optimizers_without_dynamo() if sys.argv[1] == "set" else False
weight = torch.zeros(3, requires_grad=True)
target = torch.tensor([1.0, -2.0, 3.0])
lbfgs = torch.optim.LBFGS([weight], line_search_fn="strong_wolfe")
def closure():
    lbfgs.zero_grad()
    loss = (weight - target).pow(2).sum()
    loss.backward()
    return loss
lbfgs.step(closure)
sgd = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
sgd.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})
sgd.zero_grad()
loaded = "torch._dynamo" in sys.modules
import torch._dynamo  # loaded now: a second call has nothing left to save
print(took, loaded, torch.allclose(weight.detach(), target, atol=1e-4), optimizers_without_dynamo())
"""


@pytest.mark.parametrize("mode, expected", [("set", "True False True False"), ("default", "False True True False")])
def test_optimizers_are_made_zeroed_and_stepped_without_importing_the_compiler(mode, expected):
    out = subprocess.run([sys.executable, "-c", OPTIMIZERS, mode], capture_output=True, text=True, check=True).stdout
    # by default torch.optim imports torch._dynamo at an optimizer's first add_param_group; set aside, the
    # optimizers work the same (L-BFGS fits) and it is never loaded
    assert out.split() == expected.split()
