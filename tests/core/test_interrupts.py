"""A Ctrl-C held back while a native library loads (core/interrupts.py): nothing is raised inside the
block, and the interrupt reaches the handler that was in place as soon as the block ends."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tl_studio.core.interrupts import ctrl_c_deferred


@pytest.fixture
def default_handler():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_block_is_raised_after_it(default_handler):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for step in range(1000):  # bytecodes enough for Python to have run the signal's handler
                reached.append(step)
    assert len(reached) == 1000  # the block ran to its end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_handler_in_place_gets_the_ctrl_c_once_after_the_block(default_handler):
    calls = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    with ctrl_c_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))
        assert calls == []
    assert calls == [signal.SIGINT]


def test_without_a_ctrl_c_nothing_happens_and_a_block_outside_the_main_thread_just_runs(default_handler):
    with ctrl_c_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ran = []

    def in_a_thread():
        with ctrl_c_deferred():  # signal.signal would raise ValueError here
            ran.append(True)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert ran == [True]
