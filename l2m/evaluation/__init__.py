"""Relative-pose estimation under named protocols and pose metrics, shared by training validation (l2m.train)
and the benchmark harness (l2m_bench)."""
