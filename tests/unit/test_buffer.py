import threading

import torch

from stream_detector.buffer import DropPolicy, FeatureRing, FrameQueue


def test_feature_ring_keeps_newest_and_counts_all() -> None:
    ring = FeatureRing(capacity=3)
    ring.keep(torch.arange(2.0).view(2, 1, 1, 1), torch.arange(2.0).view(2, 1, 1, 1), 2)
    assert len(ring) == 2 and ring.seen == 2
    run = torch.arange(6.0).view(6, 1, 1, 1)  # its history (0, 1) and four new frames
    ring.keep(run, run, 4)
    assert len(ring) == 3 and ring.seen == 6
    assert ring.frames is not None and ring.frames.flatten().tolist() == [3.0, 4.0, 5.0]
    ring.clear()
    assert len(ring) == 0 and ring.seen == 0


def test_queue_drop_oldest_keeps_freshest_and_counts() -> None:
    q: FrameQueue[int] = FrameQueue(2, DropPolicy.DROP_OLDEST)
    assert q.put(1) and q.put(2)
    assert not q.put(3)
    assert q.dropped == 1 and q.get_all() == [2, 3]


def test_queue_drop_newest_refuses_new_item() -> None:
    q: FrameQueue[int] = FrameQueue(2, DropPolicy.DROP_NEWEST)
    q.put(1), q.put(2), q.put(3)
    assert q.dropped == 1 and q.get_all() == [1, 2]


def test_queue_get_waits_for_producer_and_times_out() -> None:
    q: FrameQueue[int] = FrameQueue(4)
    assert q.get(timeout=0.01) is None
    threading.Timer(0.05, q.put, args=(7,)).start()
    assert q.get(timeout=2.0) == 7
