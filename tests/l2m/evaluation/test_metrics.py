"""pose_auc / mean_average_accuracy against the hand-computed values of benchmark_protocol.md §2.2."""
import math

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
