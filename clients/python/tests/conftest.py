import itertools
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)  # clients/python
# The package under test is the installed one (`pip install ./clients/python`, as
# users install it: its native module is built then), not the source tree.
sys.path[:0] = [HERE]

_n = itertools.count()


@pytest.fixture
def shm():
    """A fresh directory under /dev/shm for one test's rings."""
    d = f"/dev/shm/camhub-pytest-{os.getpid()}-{next(_n)}"
    os.mkdir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make(shm):
    """make(camera="cam", output="out", **kw): a test RingWriter in `shm`, closed after the test."""
    from ringwriter import RingWriter

    writers = []

    def mk(camera="cam", output="out", **kw):
        w = RingWriter(shm, camera, output, **kw)
        writers.append(w)
        return w

    yield mk
    for w in writers:
        w.close()
