"""A background task's thread runs below the window's priority and torch gets every core (Linux), or
torch leaves a core to the window (elsewhere); the window's own thread is never lowered."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from tl_studio.gui import cpu_share


def _nice_of(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_a_background_thread_gives_way_to_the_window_and_torch_gets_every_core():
    seen = {}

    def task():
        before = _nice_of(threading.get_native_id())
        cpu_share.share_the_cpu_with_the_window()
        torch.rand(256, 256) @ torch.rand(256, 256)  # starts this thread's OpenMP threads
        seen.update(before=before, after=_nice_of(threading.get_native_id()), threads=torch.get_num_threads())

    window_nice = _nice_of(threading.get_native_id())
    worker = threading.Thread(target=task)
    worker.start()
    worker.join()
    assert seen["after"] == max(seen["before"], cpu_share.BACKGROUND_NICE)
    assert seen["threads"] == cpu_share.work_threads() == (os.cpu_count() or 2)
    cpu_share.share_the_cpu_with_the_window()  # called in the window's thread by mistake: not lowered
    assert _nice_of(threading.get_native_id()) == window_nice


def test_without_thread_priorities_torch_leaves_a_core_to_the_window(monkeypatch):
    monkeypatch.setattr(cpu_share, "lowers_background_priority", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cpu_share.work_threads() == 3
    assert cpu_share.explain_cpu("CPU (4 threads)") == "CPU (3 of 4 cores; one is left to keep the window responsive)"
    monkeypatch.setattr(cpu_share, "lowers_background_priority", lambda: True)
    assert cpu_share.explain_cpu("CPU (4 threads)") == "CPU (4 threads; the window keeps priority)"
    assert cpu_share.explain_cpu("CPU (4 threads)", short=True) == "CPU (4 threads)"
