"""The feature bank: a ring per stream in shared tensors that grow without moving them."""

from __future__ import annotations

import torch

from stream_detector.model import FeatureBank


def test_feature_bank_gives_each_stream_its_ring_and_grows_without_moving_them() -> None:
    bank = FeatureBank(history=3, new=2)  # 5 rows per stream
    a, b = bank.join(), bank.join()
    assert (a, b) == (0, 1)
    assert bank.rows(b, [0, 4, 5, 7]) == [5, 9, 5, 7]  # frame t at t mod 5 of block 1
    frames = torch.arange(2.0).view(2, 1, 1, 1)
    bank.store(torch.tensor(bank.rows(a, [0, 1])), frames, frames * 10)
    assert bank.frames is not None and bank.frames.shape[0] == 10
    c = bank.join()  # a third stream: the tensors grow, block 0 keeps its rows
    bank.store(torch.tensor(bank.rows(c, [0])), frames[:1] + 7, frames[:1] + 70)
    assert bank.frames.shape[0] >= 15 and bank.frames[:2].flatten().tolist() == [0.0, 1.0]
    assert bank.features is not None and bank.features[10].item() == 70.0
    bank.leave(b)
    assert bank.join() == b  # a left block is reused
