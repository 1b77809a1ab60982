"""Stage 2 reads each step's clips through `sara.data.clipset.step_loader`: in the loop when every clip is in memory,
ahead of the loop by DataLoader workers when not. Either way a step gets exactly the clips its indices name, so a
run trains on the same samples (the data order is the training loop's: sara.train.stage2.step_indices)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from sara.data.clipset import ClipSet, step_loader
from sara.train.stage2 import batch_indices, step_indices, stream_positions
from stage2_testlib import make_clips


@pytest.mark.slow  # DataLoader worker processes
def test_workers_read_ahead_the_same_samples_the_loop_would_read(tmp_path: Path):
    make_clips(tmp_path, n=3)
    indices = functools.partial(step_indices, 3, 1024, 0, 1, 2)  # n, seed, rank, world, batch size
    lazy = ClipSet(tmp_path, cache_mb=0)  # nothing fits in memory: the loader takes workers
    assert not lazy.in_memory()
    loader = step_loader(lazy, indices, 1, 5)
    assert loader.num_workers > 0
    steps = list(loader)
    assert len(steps) == 4
    for step, (idx, samples) in zip(range(1, 5), steps):
        assert idx == batch_indices(3, stream_positions(step, 0, 1, 2), 1024)
        for i, s in zip(idx, samples):
            expected = lazy[i]
            assert s.clip_id == expected.clip_id and s.caption == expected.caption
            np.testing.assert_array_equal(s.frames, expected.frames)


def test_a_preloaded_set_is_read_in_the_loop(tmp_path: Path):
    make_clips(tmp_path, n=2)
    eager = ClipSet(tmp_path)
    eager.preload(workers=2)
    assert eager.in_memory() and step_loader(eager, lambda step: [0], 0, 1).num_workers == 0
