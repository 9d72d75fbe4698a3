"""The benchmark's CPU accounting (/proc): a process tree's CPU seconds and the machine's."""

from __future__ import annotations

import subprocess
import sys

from streams.loadtest import _cpu_of_tree, _machine_cpu


def test_the_cpu_of_a_tree_counts_its_grandchildren() -> None:
    # a child that starts a grandchild burning about 0.5 s of CPU, then waits for it
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
        "sys.stdin.readline()\n"  # alive until told, so the tree is still there to be read
        "p.wait()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        before = _cpu_of_tree([child.pid])
        busy0, all0 = _machine_cpu()
        # wait for the grandchild to finish its burn while it is still a live process
        deadline = 50
        while _cpu_of_tree([child.pid]) - before < 0.4 and deadline:
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.1)"], check=True)
            deadline -= 1
        used = _cpu_of_tree([child.pid]) - before
        busy1, all1 = _machine_cpu()
    finally:
        assert child.stdin is not None
        child.stdin.write(b"\n")
        child.stdin.close()
        child.wait(10)
    assert used >= 0.4, used
    assert busy1 > busy0
    assert all1 > all0
