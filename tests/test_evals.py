"""The evaluator registry shared by training and `jaxssl eval`."""

import pytest

from jaxssl import evals


def test_unknown_evaluators_are_an_error_that_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"\['nn', 'svm'\]; valid: \['equivariance', 'finetune', 'knn', 'linear'"
    ):
        evals.get_evaluators(("knn", "nn", "svm"))
    assert list(evals.get_evaluators(("spectral", "knn"))) == ["spectral", "knn"]
