"""pose_auc / mean_average_accuracy against the hand-computed values of benchmark_protocol.md §2.2."""
import math

import numpy as np
import pytest

from l2m.evaluation.metrics import mean_average_accuracy, pose_auc


def test_auc_with_a_failure_hand_computed():
    # points (0,0) (1,1/3) (2,2/3) (5,2/3): area 1/6 + 1/2 + 2 = 8/3, divided by 5
    assert pose_auc([1, 2, math.inf], [5]) == pytest.approx([8 / 15], abs=1e-12)


def test_auc_order_does_not_matter():
    assert pose_auc([math.inf, 2, 1], [5]) == pytest.approx([8 / 15], abs=1e-12)


def test_error_equal_to_threshold_does_not_count():
    assert pose_auc([1, 2, math.inf], [1]) == [0.0]
    assert pose_auc([5.0], [5]) == [0.0]


def test_single_error_and_several_thresholds():
    # (0,0) (2.5,1) (5,1): 1.25 + 2.5 = 3.75 -> 0.75; at T=10: (1.25 + 7.5)/10 = 0.875
    assert pose_auc([2.5], [5, 10]) == pytest.approx([0.75, 0.875], abs=1e-12)


def test_all_zero_errors_give_one_and_all_failures_give_zero():
    assert pose_auc([0, 0, 0], [5, 10, 20]) == pytest.approx([1, 1, 1])
    assert pose_auc([math.inf] * 4, [5, 10, 20]) == [0, 0, 0]
    assert pose_auc([90.0] * 4, [5, 10, 20]) == [0, 0, 0]  # RoMa's failure value


def test_nan_counts_as_failure_and_empty_is_zero():
    assert pose_auc([1, 2, float("nan")], [5]) == pytest.approx([8 / 15])
    assert pose_auc([], [5, 10]) == [0.0, 0.0]


def test_failures_lower_recall_but_not_the_integral_shape():
    # two perfect pairs and two failures: recall saturates at 1/2 after the first errors
    assert pose_auc([0, 0, math.inf, math.inf], [5]) == pytest.approx([0.5])


def test_mean_average_accuracy_is_the_mean_of_the_three_aucs():
    errors = [1, 2, math.inf]
    # T=10: (0,0) (1,1/3) (2,2/3) (10,2/3): area 1/6 + 1/2 + 16/3 = 6 -> 0.6
    # T=20: area 1/6 + 1/2 + 12 = 38/3 -> 19/30
    assert pose_auc(errors, [5, 10, 20]) == pytest.approx([8 / 15, 0.6, 19 / 30])
    assert mean_average_accuracy(errors) == pytest.approx((8 / 15 + 0.6 + 19 / 30) / 3)


# ------------------------------------------------------------------------------------------- Map-free metrics
def test_virtual_grid_is_the_map_free_grid():
    from l2m.evaluation.metrics import virtual_grid

    P = virtual_grid()
    assert P.shape == (196, 3)
    assert np.allclose(P.min(0), [-0.9, -0.45, 1.8]) and np.allclose(P.max(0), [0.9, 0.45, 3.6])
    assert np.allclose(np.unique(P[:, 2]), 1.8 + 0.3 * np.arange(7))


def _K(f=500.0, w=2000, h=2000):
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]), w, h


def _pose(R=np.eye(3), t=(0.2, -0.1, 0.5)):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def test_vcre_is_zero_for_the_true_pose():
    from l2m.evaluation.metrics import vcre

    K, w, h = _K()
    ang = 0.3
    R = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    assert vcre(_pose(R), _pose(R), K, w, h) < 1e-9


def test_vcre_of_a_sideways_shift_is_f_delta_mean_inverse_depth():
    """Estimated query camera shifted 0.1 m along its x axis: every virtual point moves f·0.1/z px, so
    VCRE = 500 · 0.1 · mean(1/z) over z = 1.8, 2.1, ..., 3.6 = 50 · 2.73293 / 7 = 19.521 px (hand-computed)."""
    from l2m.evaluation.metrics import vcre

    K, w, h = _K()
    T_gt = _pose()
    T_est = T_gt.copy()
    T_est[0, 3] += 0.1
    assert vcre(T_est, T_gt, K, w, h) == pytest.approx(19.521, abs=2e-3)


def test_vcre_clips_projections_to_the_image():
    """Projections are clipped to the image: a point outside it under both poses (clipped to the same corner)
    adds 0, and VCRE never exceeds the image diagonal."""
    from l2m.evaluation.metrics import vcre

    K = np.array([[500.0, 0, 50], [0, 500.0, 50], [0, 0, 1]])
    T_gt = _pose()
    T_est = T_gt.copy()
    T_est[0, 3] += 5.0  # 5 m: every point moves far to the right
    pts = np.array([[0.9, 0.45, 1.8]])  # projects to (300, 175): clipped to (100, 100) under both poses
    assert vcre(T_est, T_gt, K, 100, 100, points=pts) == 0.0
    assert vcre(T_est, T_gt, K, 100, 100) <= np.hypot(100, 100)


def test_precision_recall_auc_hand_values():
    """Ranked by confidence: accepted, rejected, accepted, out of 4 queries (one failure without estimate):
    AP = 1·(1/4) + (2/3)·(1/4) = 5/12."""
    from l2m.evaluation.metrics import precision_recall_auc

    assert precision_recall_auc([9, 5, 7], [True, True, False], 4) == pytest.approx(5 / 12)
    assert precision_recall_auc([1, 2], [True, True], 2) == pytest.approx(1.0)
    assert precision_recall_auc([], [], 3) == 0.0
