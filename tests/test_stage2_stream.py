"""Stage 2's sample stream (sara/train/stage2.py): which clip and which random draws every step of every rank
gets, and the FG masks on the V-JEPA grid. Exact resume and "2 ranks x batch 1 = 1 rank x batch 2" rest on these."""

from __future__ import annotations

import torch

from sara.train.stage2 import batch_indices, fg_on_grid, sample_seed, stream_positions


def test_stream_positions_interleave_ranks_within_a_step():
    assert stream_positions(3, 1, 2, 2) == [14, 15]  # step 3 of rank 1 of 2, batch 2: (3 * 2 + 1) * 2 + 0, + 1
    assert stream_positions(0, 0, 1, 3) == [0, 1, 2]
    steps = [p for step in range(4) for rank in range(3) for p in stream_positions(step, rank, 3, 2)]
    assert steps == list(range(24))  # every position once, in order: nothing skipped or drawn twice


def test_data_order_and_draws_depend_only_on_the_stream_position():
    # 2 ranks x batch 1 and 1 rank x batch 2 consume the same clips in the same order
    two = [batch_indices(5, stream_positions(s, r, 2, 1), 0)[0] for s in range(6) for r in range(2)]
    one = [i for s in range(6) for i in batch_indices(5, stream_positions(s, 0, 1, 2), 0)]
    assert two == one
    assert sorted(one[:5]) == list(range(5)) and sorted(one[5:10]) == list(range(5))  # each epoch is a permutation
    # every (seed, position) draws from its own generator: no two collide, and each is a valid torch seed
    seeds = [sample_seed(seed, pos) for seed in range(4) for pos in range(2000)]
    assert len(set(seeds)) == len(seeds) and all(0 <= x < 2**63 - 1 for x in seeds)
    assert sample_seed(2**62, 3) < 2**63 - 1  # huge seeds wrap into range


def test_sample_seeds_are_the_ones_earlier_runs_drew_with():
    """A checkpoint resumes with the draws it was trained with only while this mapping stays the same: any change
    to it (a constant, an operator, the modulus) makes a resumed run train on other timesteps and noise."""
    golden = {(0, 0): 12345, (1024, 5): 1024055012, (7, 123456): 984660430, (2**62, 3): 4611686018427924007}
    assert {k: sample_seed(*k) for k in golden} == golden
    assert all(type(sample_seed(*k)) is int for k in golden)  # torch.Generator.manual_seed takes an int


def test_each_epoch_is_its_own_permutation_and_the_seed_changes_them():
    n = 8
    order = batch_indices(n, list(range(4 * n)), seed=3)
    epochs = [order[e * n:(e + 1) * n] for e in range(4)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 4  # reshuffled every epoch
    assert epochs[0] == torch.randperm(n, generator=torch.Generator().manual_seed(3)).tolist()  # seed + 7 * epoch
    assert epochs[2] == torch.randperm(n, generator=torch.Generator().manual_seed(3 + 14)).tolist()
    assert batch_indices(n, list(range(n)), seed=4) != epochs[0]


def test_fg_on_grid_picks_the_frames_pools_each_patch_and_averages_each_tubelet():
    """FG fraction per patch (area), mean over the tubelet's two frames, FG when strictly more than half."""
    fg = torch.zeros(1, 6, 4, 4, dtype=torch.bool)  # (B, F, H, W); patches of 2 x 2 pixels on a (2, 2) grid
    fg[0, 0, :2, :2] = True  # frame 0: top-left patch full
    fg[0, 2, :2, :2] = True  # frame 2: top-left full -> tubelet 0 top-left: 1.0
    fg[0, 0, :2, 2:3] = True  # frame 0: top-right half -> with frame 2 empty there: 0.25
    fg[0, 2, 2:, :2] = True  # frame 2: bottom-left full, frame 0 empty there: 0.5, not more than half
    fg[0, 3, 2:, 2:] = True  # frame 3 is not picked: bottom-right stays BG
    fg[0, 4, 2:, 2:] = True
    fg[0, 5, 2:, 2:] = True  # frames 4 and 5 full bottom-right -> tubelet 1 bottom-right: 1.0
    fg[0, 4, :2, :2] = True
    fg[0, 5, :2, :1] = True  # top-left: 1.0 and 0.5 -> 0.75
    out = fg_on_grid(fg, torch.tensor([0, 2, 4, 5]), (2, 2, 2))
    assert out.shape == (1, 2, 4) and out.dtype == torch.bool
    assert out[0].tolist() == [[True, False, False, False], [True, False, False, True]]
