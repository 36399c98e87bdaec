"""Pose-error functions against hand-computed values for known, non-zero errors (an under-reporting metric fails)."""
import math

import numpy as np
import pytest

from l2m.geometry import relative_pose, relative_pose_error, rotation_error_deg, translation_angle_deg


def rot(axis, deg: float) -> np.ndarray:
    """Rodrigues: rotation by `deg` degrees about `axis`."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(deg)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


@pytest.mark.parametrize("R_est, R_gt, expected", [
    (rot([0, 0, 1], 30), np.eye(3), 30.0),
    (rot([0, 0, 1], 30), rot([0, 0, 1], -12.5), 42.5),  # same axis: the angles subtract
    (rot([1, 1, 1], 45), np.eye(3), 45.0),
    (rot([1, 0, 0], 90) @ rot([0, 1, 0], 90), np.eye(3), 120.0),  # two quarter turns = 120 deg about (1,1,1)
    (rot([0, 1, 0], 179), rot([0, 1, 0], -179), 2.0),  # wraps around: 358 deg apart is 2 deg
    (rot([0, 1, 0], 180), np.eye(3), 180.0),
])
def test_rotation_error_is_the_angle_between_rotations(R_est, R_gt, expected):
    assert rotation_error_deg(R_est, R_gt) == pytest.approx(expected, abs=1e-6)
    assert rotation_error_deg(R_gt, R_est) == pytest.approx(expected, abs=1e-6)  # symmetric


@pytest.mark.parametrize("t_est, t_gt, fold, expected", [
    ([1, 0, 0], [1, 1, 0], True, 45.0),
    ([2, 0, 0], [0, 0, 5], True, 90.0),  # scale-free
    ([-1, 1, 0], [1, 0, 0], False, 135.0),
    ([-1, 1, 0], [1, 0, 0], True, 45.0),  # sign unknown (essential matrix): folded to [0, 90]
    ([1, 0, 0], [-3, 0, 0], True, 0.0),
    ([1, 0, 0], [-3, 0, 0], False, 180.0),
    ([1, math.sqrt(3), 0], [1, 0, 0], True, 60.0),
])
def test_translation_angle_has_hand_computed_values(t_est, t_gt, fold, expected):
    assert translation_angle_deg(np.array(t_est, float), np.array(t_gt, float), fold) == pytest.approx(expected,
                                                                                                          abs=1e-6)


def test_translation_angle_of_a_zero_translation_is_infinite():
    assert math.isinf(translation_angle_deg(np.zeros(3), np.array([1.0, 0, 0])))


def test_relative_pose_error_of_a_known_wrong_estimate():
    """GT: camera 1 is camera 0 turned 20 deg about y and moved along x. Estimate: 25 deg turn, translation
    direction rotated 10 deg in the x-z plane and scaled by 3 -> errors (5, 10) deg."""
    T0 = pose(rot([0, 0, 1], 7), [0.1, -0.2, 0.3])
    T_0to1 = pose(rot([0, 1, 0], 20), [1.0, 0.0, 0.0])
    T1 = T_0to1 @ T0
    gt = relative_pose(T0, T1)
    np.testing.assert_allclose(gt, T_0to1, atol=1e-12)
    t_est = 3 * rot([0, 1, 0], 10) @ np.array([1.0, 0.0, 0.0])
    err_R, err_t = relative_pose_error(rot([0, 1, 0], 25), t_est, gt)
    assert err_R == pytest.approx(5.0, abs=1e-6)
    assert err_t == pytest.approx(10.0, abs=1e-6)
    # an exact estimate scores zero; the reversed translation is 180 deg unfolded, 0 folded
    assert relative_pose_error(gt[:3, :3], gt[:3, 3], gt) == pytest.approx((0.0, 0.0), abs=1e-5)
    assert relative_pose_error(gt[:3, :3], -gt[:3, 3], gt, fold_sign=False)[1] == pytest.approx(180.0, abs=1e-5)
