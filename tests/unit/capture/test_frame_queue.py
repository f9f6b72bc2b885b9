"""The frame queue: drops by named policy, counted; a consumer waits for the producer."""

from __future__ import annotations

import threading

from stream_detector.capture import DropPolicy, FrameQueue


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
