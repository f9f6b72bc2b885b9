"""Dense motion: the time-slice input. Causal, in working pixels, reset with the stream."""

import numpy as np

from stream_detector.detect import FLOW_SCALE, MotionField, to_gray_u8, with_motion


def textured(shift: int, size: tuple[int, int] = (64, 96)) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[0], size[1] + 16)).astype(np.uint8)
    base = np.kron(base[::4, ::4], np.ones((4, 4), np.uint8))[: size[0], : size[1] + 16]
    return np.ascontiguousarray(base[:, 8 - shift: 8 - shift + size[1]])


def test_flow_measures_a_known_shift_and_the_first_frame_has_none() -> None:
    field = MotionField(stabilise=False)
    flows = field(np.stack([textured(0), textured(2), textured(4)]))
    assert flows.shape == (3, 2, 64, 96)
    assert not flows[0].any()  # no predecessor: zero motion, never a guess
    centre = flows[1:, :, 16:48, 24:72]
    np.testing.assert_allclose(np.median(centre[:, 0]), 2 * FLOW_SCALE, atol=0.25)
    assert abs(np.median(centre[:, 1])) < 0.25


def test_stabilised_flow_takes_out_the_camera_s_own_motion_but_keeps_a_mover() -> None:
    """The whole picture shifting by 2 px (a shaking camera) is no motion; a patch moving over a
    still background keeps its 2 px, and so does the patch while the camera shakes."""
    still = textured(0)
    def with_patch(frame: np.ndarray, x: int) -> np.ndarray:
        out = frame.copy()
        out[20:44, x:x + 24] = textured(0, (24, 24))
        return out
    shaken = MotionField()(np.stack([textured(0), textured(2), textured(4)]))
    assert np.abs(np.median(shaken[1:, :, 16:48, 24:72])) < 0.05
    moving = MotionField()(np.stack([with_patch(still, 30), with_patch(still, 32)]))
    assert np.median(moving[1, 0, 26:38, 36:50]) > 0.75 * 2 * FLOW_SCALE
    assert abs(np.median(moving[1, 0, :10])) < 0.05
    both = MotionField()(np.stack([with_patch(textured(0), 30), with_patch(textured(2), 34)]))
    assert np.median(both[1, 0, 26:38, 40:52]) > 0.75 * 2 * FLOW_SCALE  # 4 px moved, 2 of them shake


def test_chunks_continue_the_stream_and_reset_forgets_it() -> None:
    frames = np.stack([textured(s) for s in (0, 1, 2, 3)])
    whole = MotionField()(frames)
    field = MotionField()
    parts = np.concatenate([field(frames[:2]), field(frames[2:])])
    np.testing.assert_allclose(parts, whole)
    field.reset()
    assert not field(frames[3:])[0].any()


def test_with_motion_appends_two_channels_from_preprocessed_frames() -> None:
    gray = np.stack([textured(s) for s in (0, 3)]).astype(np.float32) / 127.5 - 1.0
    assert (to_gray_u8(gray[:, None]) == np.stack([textured(0), textured(3)])).all()
    out = with_motion(gray[:, None], MotionField(stabilise=False))
    assert out.shape == (2, 3, 64, 96)
    np.testing.assert_array_equal(out[:, 0], gray)
    assert np.median(out[1, 1, 16:48, 24:72]) > 1.0
