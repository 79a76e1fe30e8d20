"""Test-session settings.

The suite's models are tiny, and torch's intra-op threads help them little but
slow everything down badly when the CPUs are shared (two threads fighting other
jobs for two cores ran the suite several times slower here). One thread keeps
timings steady; set ``CNNVIZ_TEST_THREADS`` to use more.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("CNNVIZ_TEST_THREADS", "1")))
