"""The matcher registry: names, and the identity the result caches store next to the conf."""
import subprocess
import sys

import pytest

from l2m_sfm.matchers import MATCHERS, matcher_identity


def test_sparse_identity_is_empty_and_cheap():
    code = ("import sys; from l2m_sfm.matchers import matcher_identity; "
            "assert matcher_identity('sift', {}) == {} and matcher_identity('gt', {'scene': 'x'}) == {}; "
            "print(sorted(m for m in ('torch', 'l2m.models.zoo', 'kornia') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_l2m_identity_through_the_registry():
    assert "l2m-tiny" in MATCHERS
    ident = matcher_identity("l2m-tiny", {"weights": "random", "coarse_res": 64})
    assert ident["variant"] == "l2m-tiny" and ident["model_conf"]["coarse_res"] == 64
    assert ident["weights"] == "random"
    assert matcher_identity("l2m-tiny", {"weights": "random", "variant": "l2m-vitb"})["variant"] == "l2m-vitb"
    with pytest.raises(ValueError, match="available"):
        matcher_identity("nope", {})
