"""The judgements of core.system_info on made-up machines: no GPU needed."""

import logging

from tl_studio.core import system_info
from tl_studio.core.system_info import Accelerators, SystemReport, TorchBuild

CPU_BUILD = TorchBuild("2.13.0+cpu", "0.28.0+cpu", cuda=None)
CUDA_BUILD = TorchBuild("2.14.1+cu130", "0.29.1+cu130", cuda="13.0")


def report(build=CPU_BUILD, frozen=False, **found) -> SystemReport:
    return SystemReport("0.1.0", "3.11.7", "Linux", frozen, build, Accelerators(**found))


def test_no_gpu_needs_no_advice():
    plain = report()
    assert system_info.install_advice(plain) is None
    assert system_info.gpu_summary(plain) == "No GPU found: training runs on the CPU."


def test_cpu_build_beside_an_nvidia_gpu_gets_the_exact_cuda_install_command():
    advice = system_info.install_advice(report(nvidia_gpus=("NVIDIA RTX 4090",), driver_cuda="12.9"),
                                        python="/opt/venv/bin/python")
    assert advice == ("This PyTorch is the CPU-only build; install the CUDA build with: /opt/venv/bin/python -m "
                      "pip install --force-reinstall torch==2.13.0 torchvision==0.28.0 "
                      "--index-url https://download.pytorch.org/whl/cu128")


def test_the_newest_wheel_the_driver_can_run_is_chosen():
    assert system_info.wheel_tag_for_driver("13.1") == "cu130"
    assert system_info.wheel_tag_for_driver("12.8") == "cu128"
    assert system_info.wheel_tag_for_driver("12.6") == "cu126"
    assert system_info.wheel_tag_for_driver("11.8") is None
    assert system_info.wheel_tag_for_driver(None) == "cu126"


def test_a_driver_older_than_every_cuda_build_is_told_to_update():
    advice = system_info.install_advice(report(nvidia_gpus=("Tesla K80",), driver_cuda="11.4"))
    assert "update the NVIDIA driver" in advice and "11.4" in advice


def test_cuda_build_newer_than_the_driver_names_both_versions():
    advice = system_info.install_advice(report(CUDA_BUILD, nvidia_gpus=("RTX 3060",), driver_cuda="12.6"),
                                        python="python")
    assert "needs CUDA 13.0" in advice and "only CUDA 12.6" in advice
    assert advice.endswith("torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cu126")


def test_the_packaged_cpu_app_points_to_the_cuda_app_build():
    advice = system_info.install_advice(report(frozen=True, nvidia_gpus=("RTX 3060",), driver_cuda="13.0"))
    assert advice.endswith("make package TORCH_VARIANT=cuda")


def test_a_usable_gpu_is_reported_and_needs_no_advice():
    usable = report(CUDA_BUILD, nvidia_gpus=("H200",), driver_cuda="13.0", cuda_devices=("NVIDIA H200",))
    assert system_info.install_advice(usable) is None
    assert system_info.gpu_summary(usable) == "Training runs on the GPU: NVIDIA H200."
    assert "PyTorch 2.14.1+cu130 (CUDA 13.0)" in system_info.as_text(usable)


def test_diagnostics_carry_the_last_logged_error_with_its_traceback():
    system_info.record_errors()
    try:
        raise ValueError("the disk is full")
    except ValueError:
        logging.getLogger("tl_studio.gui.tasks").exception("background task failed")
    text = system_info.as_text(SystemReport("0.1.0", "3.11", "Linux", False, CPU_BUILD, Accelerators(),
                                            last_error=system_info.last_error()))
    assert "Last error: background task failed" in text
    assert "ValueError: the disk is full" in text


def test_the_real_machine_is_described_without_error():
    found = system_info.collect_report()
    assert found.torch.version and found.app_version
    assert system_info.gpu_summary(found)
