"""Stage 2's clip set decodes the whole (small) training set up front, in parallel, instead of 32 clips per step.

On the H200 the first 8 steps of every lab Stage 2 run took about 3.5 s each, one mp4 decode per sample, before the
cache was warm (docs/lab/comparison.md): preloading gives the same samples without the serial decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sara.data.clipset import ClipSet
from stage2_testlib import make_clips


@pytest.mark.slow  # ffmpeg decodes of five clips
def test_preload_caches_every_clip_with_the_samples_a_lazy_read_gives(tmp_path: Path):
    make_clips(tmp_path, n=5)
    lazy, eager = ClipSet(tmp_path), ClipSet(tmp_path)
    assert eager.preload(workers=3) == 5
    assert len(eager._cache) == 5
    for i in range(5):
        a, b = lazy[i], eager[i]
        assert a.clip_id == b.clip_id and a.caption == b.caption
        np.testing.assert_array_equal(a.frames, b.frames)


def test_preload_skips_a_set_larger_than_the_cache(tmp_path: Path):
    make_clips(tmp_path, n=3)
    small_cache = ClipSet(tmp_path, cache_mb=0)
    assert small_cache.preload(workers=2) == 0
    assert not small_cache._cache
